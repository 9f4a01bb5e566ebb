/* SPDX-License-Identifier: MIT */
/*
 * Tests: numbers do not depend on the locale (issue 13). A program that
 * calls setlocale(LC_ALL, "") under a locale whose decimal point is ','
 * (de_DE.UTF-8, generated here with localedef into a private directory)
 * still writes JSON with '.' (the fast writer and jansson) and still reads
 * PostgreSQL's '.' in doubles.
 */
#include "harness.h"
#include "http_util.h"
#include "pg_util.h"

#include <jansson.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Switch this process to de_DE.UTF-8 (generated once per user into
 * /tmp/aw-locale-UID with localedef). false when that cannot be done. */
static bool use_german_numbers(void)
{
	char dir[64], cmd[256], probe[128];
	snprintf(dir, sizeof dir, "/tmp/aw-locale-%u", (unsigned)getuid());
	snprintf(probe, sizeof probe, "%s/de_DE.UTF-8/LC_NUMERIC", dir);
	if (access(probe, R_OK) != 0) {
		mkdir(dir, 0700);
		snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
		if (system(cmd) != 0 && access(probe, R_OK) != 0)
			return false;
	}
	setenv("LOCPATH", dir, 1);
	setenv("LC_ALL", "de_DE.UTF-8", 1);
	if (!setlocale(LC_ALL, ""))
		return false;
	return strcmp(localeconv()->decimal_point, ",") == 0;
}

AW_TEST(the_test_locale_really_writes_a_decimal_comma)
{
	CHECK(use_german_numbers());
	char buf[32];
	snprintf(buf, sizeof buf, "%.1f", 1.5);
	CHECK_STR(buf, "1,5");   /* what libc does: the library must not */
}

/* ---- JSON out, from a server running under de_DE --------------------------- */

static int h_writer(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_object(w);
	aw_jw_key(w, "price");
	aw_jw_double(w, 1.5);
	aw_jw_key(w, "tiny");
	aw_jw_double(w, 0.1);
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

static int h_jansson(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	json_t *o = json_pack("{s:f}", "price", 2.25);
	if (!o)
		return -ENOMEM;
	int rc = aw_http_json(res, 200, o);
	json_decref(o);
	return rc;
}

static int h_echo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	json_t *in = NULL;
	int rc = aw_http_json_body(req, &in);
	if (rc < 0)
		return rc;
	json_t *v = json_object_get(in, "x");
	char out[64];
	snprintf(out, sizeof out, "%s", json_is_real(v) && json_real_value(v) == 3.75 ? "read 3.75" : "misread");
	return aw_http_text(res, 200, out);
}

static aw_app *make_app(void)
{
	if (!use_german_numbers())
		return NULL;   /* the server does not start: the test fails */
	aw_app *app;
	if (aw_app_new(&app, "locale") < 0)
		return NULL;
	EXPECT_EQ(aw_app_route(app, "GET", "/writer", h_writer, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/jansson", h_jansson, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "POST", "/echo", h_echo, NULL), 0);
	return app;
}

AW_TEST(json_numbers_use_a_decimal_point_under_a_decimal_comma_locale)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	const char *get = "GET /writer HTTP/1.1\r\nHost: a\r\n\r\n";
	CHECK_EQ(http_once(s.port, get, strlen(get), &r, NULL), 200);
	CHECK_STR(r.body, "{\"price\":1.5,\"tiny\":0.1}");
	resp_free(&r);
	get = "GET /jansson HTTP/1.1\r\nHost: a\r\n\r\n";
	CHECK_EQ(http_once(s.port, get, strlen(get), &r, NULL), 200);
	CHECK_STR(r.body, "{\"price\":2.25}");
	resp_free(&r);
	const char *post = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
			   "Content-Length: 10\r\n\r\n{\"x\":3.75}";
	CHECK_EQ(http_once(s.port, post, strlen(post), &r, NULL), 200);
	CHECK_STR(r.body, "read 3.75");
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

/* ---- PostgreSQL's doubles in -------------------------------------------------- */

static int pg_main(void *arg)
{
	double *got = arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(cm.conn, &r, "SELECT 1.5::float8, 0.25::numeric", AW_PG_NOARGS), 0);
		PCHECK_RC(aw_pg_get_double(r, 0, 0, &got[0]), 0);
		PCHECK_RC(aw_pg_get_double(r, 0, 1, &got[1]), 0);
		char *json;
		size_t len;
		PCHECK_RC(aw_pg_result_json_text(r, &json, &len), 0);
		got[2] = strstr(json, "1.5") && strstr(json, "0.25") && !strstr(json, "1,5") ? 1 : 0;
		free(json);
		aw_pg_result_free(r);
	}
	return aw_error_pending();
}

AW_TEST(pg_doubles_are_read_with_a_decimal_point_under_a_decimal_comma_locale)
{
	if (!getenv("DATABASE_URL") || !*getenv("DATABASE_URL")) {
		if (getenv("AW_PG_REQUIRED") && *getenv("AW_PG_REQUIRED"))
			CHECK(!"DATABASE_URL is not set");
		printf("    (no DATABASE_URL: the PostgreSQL part is not run)\n");
		return;
	}
	CHECK(use_german_numbers());
	double got[3] = { 0, 0, 0 };
	PG_RUN(pg_main, got);
	CHECK(got[0] == 1.5);
	CHECK(got[1] == 0.25);
	CHECK(got[2] == 1);
}
