/* SPDX-License-Identifier: MIT */
/*
 * The request-id middleware (awith/middleware.h, aw_http_mw_request_id).
 * The server already gives every request its id before anything else runs
 * (server.c: the log context, the access log, rejected heads too); this
 * middleware decides what the client sees: every response carries the id
 * (the server writes it into the head, so streamed and error responses do
 * too), under the header chosen, from which the client's id is read.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct rid {
	char *header;
	bool default_header;
	bool ignore_incoming;
} rid;

static int rid_enter(void *self, aw_http_request *req, aw_http_response *res, void *state)
{
	(void)res, (void)state;
	rid *o = self;
	aw_http_conn *c = req->conn;
	if (o->ignore_incoming) {
		char id[20];
		aw__http_request_id_make(id);
		aw__http_request_id_set(c, id, strlen(id));
	} else if (!o->default_header) {
		aw_str v = aw_http_header(req, o->header);
		if (aw__http_request_id_ok(v)) {
			aw__http_request_id_set(c, v.p, v.len);
		} else if (c->echo_request_id) {
			/* The id came from X-Request-ID, not from our header:
			 * a fresh one, as for a client that sent none. */
			char id[20];
			aw__http_request_id_make(id);
			aw__http_request_id_set(c, id, strlen(id));
		}
	}
	c->request_id_header = o->header;
	c->echo_request_id = true;
	return 0;
}

static void rid_free(void *self)
{
	rid *o = self;
	free(o->header);
	free(o);
}

static bool token_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
		      *s == '_'))
			return false;
	return true;
}

int aw_http_mw_request_id(aw_http_mw **out, const aw_http_request_id_opts *opts)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_http_mw_request_id: out is NULL");
	*out = NULL;
	const char *h = opts && opts->header ? opts->header : "X-Request-ID";
	if (!token_ok(h) || strlen(h) > 64)
		return aw_raise(-EINVAL, "aw_http_mw_request_id: '%s' is not a header name (letters, digits, '-', '_')", h);
	if (strcasecmp(h, "Content-Length") == 0 || strcasecmp(h, "Transfer-Encoding") == 0 ||
	    strcasecmp(h, "Connection") == 0)
		return aw_raise(-EINVAL, "aw_http_mw_request_id: %s is the server's", h);
	rid *o = aw__calloc(1, sizeof *o);
	if (!o || !(o->header = aw__strdup(h))) {
		free(o);
		return aw_raise(-ENOMEM, "aw_http_mw_request_id: no memory");
	}
	o->default_header = strcasecmp(h, "X-Request-ID") == 0;
	o->ignore_incoming = opts && opts->ignore_incoming;
	static const aw_http_mw_ops ops = { .name = "request id", .enter = rid_enter, .free = rid_free };
	return aw_http_mw_new(out, &ops, o);
}
