// SPDX-License-Identifier: MIT
/*
 * The server's side of tracing (awith/http.h, aw_http_request_trace): each
 * request gets a server span, a child of the caller's span when the
 * request carries a valid W3C `traceparent`, else the root of a new trace
 * (a malformed header is ignored, as the spec says, and so is its
 * tracestate). The span is the connection task's current context while
 * the handler and the dependencies' teardown run, so the client and pg
 * layers propagate it; it is recorded when the request is done, with the
 * response's status.
 */
#include "internal.h"

#include <strings.h>

/* A traceparent header that occurs more than once is malformed: which
 * one would be the caller's? */
static bool find_traceparent(const aw_http_request *r, aw_str *out)
{
	bool found = false;
	for (uint32_t i = 0; i < r->nhdrs; i++) {
		const aw_http_hdr *h = &r->hdrs[i];
		if (h->name_len == 11 && strncasecmp(r->base + h->name, "traceparent", 11) == 0) {
			if (found)
				return false;
			*out = (aw_str){ r->base + h->value, h->value_len };
			found = true;
		}
	}
	return found;
}

/* tracestate may come in several header lines: they are one list, joined
 * with commas (RFC 9110 5.3), then checked and trimmed to the limits. The
 * result lives in the request's arena. */
static const char *take_tracestate(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	size_t total = 0, count = 0;
	for (uint32_t i = 0; i < r->nhdrs; i++) {
		const aw_http_hdr *h = &r->hdrs[i];
		if (h->name_len == 10 && strncasecmp(r->base + h->name, "tracestate", 10) == 0) {
			total += h->value_len + 1;
			count++;
		}
	}
	if (!count)
		return NULL;
	char *joined = aw__arena_alloc(&c->arena, total + 1);
	char *out = aw__arena_alloc(&c->arena, AW_TRACESTATE_MAX + 1);
	if (!joined || !out)
		return NULL;   /* out of memory: the trace goes on without it */
	size_t w = 0;
	for (uint32_t i = 0; i < r->nhdrs; i++) {
		const aw_http_hdr *h = &r->hdrs[i];
		if (h->name_len == 10 && strncasecmp(r->base + h->name, "tracestate", 10) == 0) {
			if (w)
				joined[w++] = ',';
			memcpy(joined + w, r->base + h->value, h->value_len);
			w += h->value_len;
		}
	}
	return aw_tracestate_clean(joined, w, out, AW_TRACESTATE_MAX + 1) ? out : NULL;
}

void aw__http_trace_begin(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	aw_trace remote, *parent = NULL;
	aw_str tp;
	if (find_traceparent(r, &tp) && aw_trace_parse(&remote, tp.p, tp.len) == 0) {
		remote.tracestate = take_tracestate(c);
		parent = &remote;
	}
	/* Else the root of a new trace (not a child of whatever context the
	 * connection task may have inherited: each request is its own). */
	aw_trace fresh;
	if (!parent) {
		aw_trace_new(&fresh);
		parent = &fresh;
	}
	aw_span_begin(&r->span, NULL, AW_SPAN_SERVER, parent, false);
	if (parent == &fresh)
		memset(r->span.parent_id, 0, sizeof r->span.parent_id);
	r->trace_err = 0;
	/* The name until the route is known: the method alone. */
	r->span.name = aw__arena_strndup(&c->arena, r->base + r->method_off, r->method_len);
	if (!r->span.name)
		r->span.name = "HTTP";
	r->traced = true;
}

void aw__http_trace_route(aw_http_request *r)
{
	if (!r->traced || !r->route)
		return;
	/* "GET /users/{id}": two copies, not snprintf (which was a tenth of
	 * a small request's instructions, bench/tfb.sh --profile json). */
	size_t pl = strlen(r->route->path), n = r->method_len + 1 + pl;
	char *name = aw__arena_alloc(&r->conn->arena, n + 1);
	if (!name)
		return;
	memcpy(name, r->base + r->method_off, r->method_len);
	name[r->method_len] = ' ';
	memcpy(name + r->method_len + 1, r->route->path, pl + 1);
	r->span.name = name;
}

aw_trace *aw__http_trace_enter(aw_http_request *r)
{
	return r->traced ? aw_trace_swap(&r->span.ctx) : aw_trace_swap(NULL);
}

void aw__http_trace_end(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	if (!r->traced)
		return;
	r->traced = false;
	aw_span_set_status(&r->span, c->res.status);
	/* 5xx and 499 are the server's failures (or the client's leaving) as
	 * OpenTelemetry counts them; the error code says which. */
	int err = r->trace_err ? r->trace_err
		  : c->res.status >= 500 ? -EIO : c->res.status == 499 ? -ECANCELED : 0;
	aw_span_end(&r->span, err);
}

const aw_trace *aw_http_request_trace(const aw_http_request *req)
{
	return req && req->traced ? &req->span.ctx : NULL;
}
