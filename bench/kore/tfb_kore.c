/* SPDX-License-Identifier: MIT */
/*
 * Kore 4.1 (Debian's kore package) serving three TechEmpower test types,
 * for bench/tfb.sh: JSON serialisation, single query and plaintext, written
 * in Kore's own idiom (a handler per route; the query as an asynchronous
 * state machine on Kore's pgsql layer, as Kore's pgsql example does).
 * Built by bench/tfb.sh as a shared object that `kore -c` loads:
 *
 *     cc -shared -fPIC $(cat /usr/share/kore/features) -I/usr/include/kore \
 *        bench/kore/tfb_kore.c -o tfb_kore.so
 *
 * The database comes from the environment (KORE_TFB_DSN, a libpq
 * connection string) at init.
 */
#include <kore/kore.h>
#include <kore/http.h>
#include <kore/pgsql.h>
#include <kore/seccomp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int init(int);
int tfb_json(struct http_request *);
int tfb_plaintext(struct http_request *);
int tfb_db(struct http_request *);

static int db_setup(struct http_request *);
static int db_query(struct http_request *);
static int db_wait(struct http_request *);
static int db_read(struct http_request *);
static int db_error(struct http_request *);
static int db_done(struct http_request *);

/* Kore 4.1's worker sandbox predates glibc 2.33's use of newfstatat for
 * stat(), which libpq calls when it looks for ~/.pgpass and friends while
 * connecting; allow it (and listing a directory), nothing else. */
KORE_SECCOMP_FILTER("tfb", KORE_SYSCALL_ALLOW(newfstatat), KORE_SYSCALL_ALLOW(getdents64));

enum { ST_SETUP, ST_QUERY, ST_WAIT, ST_READ, ST_ERROR, ST_DONE };

static struct http_state db_states[] = {
	{ "SETUP", db_setup }, { "QUERY", db_query }, { "WAIT", db_wait },
	{ "READ", db_read },   { "ERROR", db_error }, { "DONE", db_done },
};

struct db_request {
	struct kore_pgsql sql;
	int id, number;
	char id_text[16];
};

int init(int state)
{
	const char *dsn = getenv("KORE_TFB_DSN");
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	if (state == KORE_MODULE_LOAD && dsn && !kore_pgsql_register("db", dsn))
		return KORE_RESULT_ERROR;
	return KORE_RESULT_OK;
}

int tfb_json(struct http_request *req)
{
	static const char body[] = "{\"message\":\"Hello, World!\"}";
	http_response_header(req, "content-type", "application/json");
	http_response(req, 200, body, sizeof body - 1);
	return KORE_RESULT_OK;
}

int tfb_plaintext(struct http_request *req)
{
	http_response_header(req, "content-type", "text/plain");
	http_response(req, 200, "Hello, World!", 13);
	return KORE_RESULT_OK;
}

int tfb_db(struct http_request *req)
{
	return http_state_run(db_states, sizeof db_states / sizeof db_states[0], req);
}

static int db_setup(struct http_request *req)
{
	struct db_request *st = http_state_exists(req) ? http_state_get(req) : http_state_create(req, sizeof *st, NULL);
	kore_pgsql_init(&st->sql);
	kore_pgsql_bind_request(&st->sql, req);
	if (!kore_pgsql_setup(&st->sql, "db", KORE_PGSQL_ASYNC)) {
		if (st->sql.state == KORE_PGSQL_STATE_INIT) {
			req->fsm_state = ST_SETUP;   /* no free connection yet: we are woken */
			return HTTP_STATE_RETRY;
		}
		kore_pgsql_logerror(&st->sql);
		req->fsm_state = ST_ERROR;
	} else {
		req->fsm_state = ST_QUERY;
	}
	return HTTP_STATE_CONTINUE;
}

static int db_query(struct http_request *req)
{
	struct db_request *st = http_state_get(req);
	st->id = rand() % 10000 + 1;
	snprintf(st->id_text, sizeof st->id_text, "%d", st->id);
	req->fsm_state = ST_WAIT;
	if (!kore_pgsql_query_params(&st->sql, "SELECT randomnumber FROM world WHERE id = $1", 0, 1,
				     KORE_PGSQL_PARAM_TEXT(st->id_text)))
		req->fsm_state = ST_ERROR;
	return HTTP_STATE_CONTINUE;
}

static int db_wait(struct http_request *req)
{
	struct db_request *st = http_state_get(req);
	switch (st->sql.state) {
	case KORE_PGSQL_STATE_WAIT:
		return HTTP_STATE_RETRY;
	case KORE_PGSQL_STATE_COMPLETE:
		req->fsm_state = ST_DONE;
		break;
	case KORE_PGSQL_STATE_RESULT:
		req->fsm_state = ST_READ;
		break;
	case KORE_PGSQL_STATE_ERROR:
		kore_pgsql_logerror(&st->sql);
		req->fsm_state = ST_ERROR;
		break;
	default:
		kore_pgsql_continue(&st->sql);
		break;
	}
	return HTTP_STATE_CONTINUE;
}

static int db_read(struct http_request *req)
{
	struct db_request *st = http_state_get(req);
	if (kore_pgsql_ntuples(&st->sql) == 1)
		st->number = atoi(kore_pgsql_getvalue(&st->sql, 0, 0));
	kore_pgsql_continue(&st->sql);
	req->fsm_state = ST_WAIT;
	return HTTP_STATE_CONTINUE;
}

static int db_error(struct http_request *req)
{
	struct db_request *st = http_state_get(req);
	kore_pgsql_cleanup(&st->sql);
	http_state_cleanup(req);
	http_response(req, 500, NULL, 0);
	return HTTP_STATE_COMPLETE;
}

static int db_done(struct http_request *req)
{
	struct db_request *st = http_state_get(req);
	char body[64];
	int n = snprintf(body, sizeof body, "{\"id\":%d,\"randomNumber\":%d}", st->id, st->number);
	kore_pgsql_cleanup(&st->sql);
	http_state_cleanup(req);
	http_response_header(req, "content-type", "application/json");
	http_response(req, 200, body, (size_t)n);
	return HTTP_STATE_COMPLETE;
}
