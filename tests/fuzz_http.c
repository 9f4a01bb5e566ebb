/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness over the whole request path without sockets: llhttp
 * and our checks (src/http/request.c), the target and the router
 * (router.c), query and parameter decoding, header lookups, request bodies
 * (Content-Length and chunked, with trailers), and the error response and
 * JSON writer (response.c, jsonw.c). Pipelined requests in one input are
 * parsed one after the other, as the server does.
 *
 * The input is fed the way the network would: in pieces whose sizes come
 * from the first byte, so spans split across reads are exercised too.
 *
 * Built only with clang (-fsanitize=fuzzer, plus ASan/UBSan in build-asan);
 * tests/meson.build compiles the parsing sources into it with coverage and
 * registers a short run over tests/fuzz_corpus/http/.
 */
#include "../src/http/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int h_noop(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)res, (void)ud;
	return 0;
}

static aw_app *app;

static void setup(void)
{
	if (aw_app_new(&app, "fuzz") < 0)
		abort();
	aw_http_limits *l = aw_app_limits(app);
	l->request_line = 512;
	l->header_bytes = 2048;
	l->header_count = 20;
	l->body_bytes = 4096;
	if (aw_app_route(app, "GET", "/", h_noop, NULL) < 0)
		abort();
	if (aw_app_route(app, "GET", "/users/me", h_noop, NULL) < 0)
		abort();
	if (aw_app_route(app, "GET", "/users/{id}", h_noop, NULL) < 0)
		abort();
	if (aw_app_route(app, "PUT", "/users/{id}", h_noop, NULL) < 0)
		abort();
	if (aw_app_route(app, "GET", "/users/{id}/posts/{post}", h_noop, NULL) < 0)
		abort();
	if (aw_app_route(app, "*", "/any/{x}", h_noop, NULL) < 0)
		abort();
	if (aw_app_route(app, "POST", "/items", h_noop, NULL) < 0)
		abort();
	aw_error_clear();
}

/* Look at everything a handler could look at. */
static void use_request(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	char allow[160];
	int st = aw__router_match(&app->router, r, allow, sizeof allow);
	if (st == 0) {
		for (unsigned i = 0; i < r->nparams; i++)
			(void)aw_http_param(r, r->params[i].name);
		(void)aw_http_param(r, "id");
	}
	const char *q;
	if (aw_http_query(r, "a", &q) < 0 || aw_http_query(r, "", &q) < 0)
		aw_error_clear();   /* a malformed query is what fuzzing finds: -EBADMSG */
	aw_str n, v;
	size_t total = 0;
	for (size_t i = 0; aw_http_header_at(r, i, &n, &v); i++)
		total += n.len + v.len;
	(void)total;
	(void)aw_http_header(r, "host");
	(void)aw_http_header(r, "Content-Type");
	aw_str m = aw_http_method(r), t = aw_http_target(r), p = aw_http_path(r);
	(void)m, (void)t, (void)p;
	aw_error_clear();
}

/* The JSON writer over a string from the input, then the error response. */
static void use_writer(aw_http_conn *c, const uint8_t *data, size_t size)
{
	aw__http_response_reset(&c->res);
	aw_jw *w = aw_http_json_begin(&c->res, 200);
	aw_jw_object(w);
	aw_jw_key(w, "s");
	aw_jw_string_len(w, (const char *)data, size);
	aw_jw_key(w, "n");
	aw_jw_int(w, (long long)size - 1000);
	aw_jw_key(w, "d");
	aw_jw_double(w, (double)size / 7.0);
	aw_jw_object_end(w);
	(void)aw_http_json_end(w);
	aw__http_response_reset(&c->res);
	aw__http_queue_error(c, 400, c->reject_msg, NULL);
	c->out.len = 0;
	aw_error_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!app)
		setup();
	if (!size)
		return 0;
	size_t step = (size_t)(data[0] % 64) + 1;   /* network read sizes */
	data++;
	size--;
	aw_http_conn *c = calloc(1, sizeof *c);
	aw__http_conn_setup(c, app, &app->limits);
	c->hdrs = malloc(c->hdr_cap * sizeof *c->hdrs);
	size_t pos = 0;   /* start of the current request */
	for (int req = 0; req < 8 && pos < size; req++) {
		aw__http_conn_reset(c);
		/* the head, arriving `step` bytes at a time */
		size_t have = 0;
		int st = 0;
		while (st == 0) {
			if (pos + have >= size)
				break;
			have += step;
			if (pos + have > size)
				have = size - pos;
			st = aw__http_feed_head(c, (const char *)data + pos, have);
		}
		if (st != 1) {
			use_writer(c, data + pos, size - pos);
			break;
		}
		aw_http_request *r = &c->req;
		size_t at = pos + r->head_len;
		st = aw__http_prepare_request(c);
		if (st) {
			use_writer(c, data + pos, r->head_len);
			break;
		}
		use_request(c);
		/* the body, in pieces, collected whole */
		c->sink = SINK_ACCUM;
		int b = r->body_mode == AW_BODY_NONE ? 1 : 0;
		if (r->body_mode == AW_BODY_NONE) {
			size_t used;
			b = aw__http_feed_body(c, (const char *)data + at, 0, &used);
		}
		while (b == 0 && at < size) {
			size_t n = size - at < step ? size - at : step;
			size_t used = 0;
			b = aw__http_feed_body(c, (const char *)data + at, n, &used);
			at += used;
			if (b == 0 && used == 0)
				break;
		}
		if (b != 1)
			break;   /* incomplete or rejected: the connection would close */
		if (r->body_mode != AW_BODY_NONE && r->body_buf.len != r->body_seen)
			abort();   /* every body byte reached the sink exactly once */
		pos = at;
	}
	aw__http_conn_free(c);
	free(c);
	aw_error_clear();
	return 0;
}
