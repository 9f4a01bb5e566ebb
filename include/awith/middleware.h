/* SPDX-License-Identifier: MIT */
/*
 * awith/middleware.h — middleware as async context managers, route groups,
 * the error table of an app, and the middleware every service needs
 * (request id, CORS, Server-Timing, gzip/deflate, a per-client rate limit).
 * Part of the http layer (libawith-http, pkg-config awith-http).
 *
 * A middleware wraps every request of an app (aw_app_use) or of a route
 * group (aw_http_group_use) the way AW_WITH wraps a block: its enter runs
 * before the handler, its exit after the response has been produced, and
 * the exit sees the error the request is leaving with. Registration order
 * is the enter order; exits run in reverse (LIFO), every one of them,
 * shielded from cancellation, as nested blocks exit.
 *
 *     aw_http_mw *id, *cors, *gz;
 *     static const char *const origins[] = { "https://app.example", NULL };
 *     if (aw_http_mw_request_id(&id, NULL) || aw_app_use(app, id) ||
 *         aw_http_mw_cors(&cors, &(aw_http_cors_opts){ .origins = origins }) || aw_app_use(app, cors) ||
 *         aw_http_mw_gzip(&gz, NULL) || aw_app_use(app, gz))
 *         ...
 *
 *     aw_http_group *api;
 *     aw_app_group(app, "/api/v1", &api);
 *     aw_http_group_use(api, auth);                 // only for /api/v1/...
 *     aw_http_group_route(api, "GET", "/users/{id}", get_user, NULL);
 *
 * How a request goes (docs/http.md, "Middleware"):
 *   1. the app's middleware enter in order; one whose enter sends a
 *      response (auth, rate limit, a CORS preflight) answers the request:
 *      routing, the handler and the middleware after it do not run (its own
 *      exit and the exits of those before it do);
 *   2. routing (404 and 405 are responses like any other: the app's
 *      middleware exits see them), then the route's groups' middleware,
 *      outermost group first;
 *   3. the handler. If it fails, its error is turned into a response at
 *      once (the app's error table, below) and stays in flight;
 *   4. the exits, innermost first, each with the error in flight (0 if
 *      none). An exit may edit the response (headers, body), replace it
 *      (aw_http_response_clear, then send another), suppress the error
 *      (return 0: the response stays what it is; the way an exit answers
 *      an error itself) or map it to another code (return it, raised: the
 *      response is made again from the new code at once). An exit that
 *      fails gets its error answered the same way: whatever was held, an
 *      unhandled error never leaves as a 2xx;
 *   5. the response leaves; then the dependencies' teardown (http.h).
 *
 * While middleware wraps a request, a complete response (aw_http_send,
 * aw_http_text, aw_http_json, the JSON writer, an error) is held until the
 * last exit has run, so that exits can still change it; streamed responses
 * (aw_http_stream, aw_http_file) leave as they are written and exits see
 * them as not editable. Holding copies the body once.
 */
#ifndef AWITH_MIDDLEWARE_H
#define AWITH_MIDDLEWARE_H

#include "awith/http.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every declaration from here to the matching pop is the public API. */
#pragma GCC visibility push(default)

/* ------------------------------------------------------------------------ */
/* Middleware                                                 aw_http_mw(3) */

typedef struct aw_http_mw aw_http_mw;   /* opaque, reference-counted */

/* A class-style middleware: its operations and its settings (`self`).
 * Both functions run in the request's task and may wait.
 *   enter: 0 to go on (having sent a response answers the request, see
 *          above), or a negative error (raised): the request fails with it
 *          as a handler's would, and this middleware's exit does not run
 *          (a manager whose enter failed is not exited).
 *   exit:  gets the error in flight (0: none); returns it to let it go
 *          on, 0 to suppress it, another code to replace it (raised: the
 *          old error becomes its cause), as aw_mgr_ops.exit. NULL: none.
 *   state: state_size bytes per request, zeroed, shared by this
 *          middleware's enter and exit (e.g. when the request started);
 *          valid until the request is done.
 *   free:  called with self when the last reference goes (NULL: none). */
typedef struct aw_http_mw_ops {
	const char *name;   /* for diagnostics (the manager's name) */
	size_t state_size;
	int (*enter)(void *self, aw_http_request *req, aw_http_response *res, void *state);
	int (*exit)(void *self, aw_http_request *req, aw_http_response *res, void *state, int err);
	void (*free)(void *self);
} aw_http_mw_ops;

/* A middleware from ops (copied) and self. 0, or -EINVAL (no ops, no
 * enter and no exit), -ENOMEM (then ops->free(self) has run); raised. */
int aw_http_mw_new(aw_http_mw **out, const aw_http_mw_ops *ops, void *self) AW_MUST_USE;
/* A generator-style middleware (aw_gen, core.h): fn sets up, yields once
 * (aw_gen_yield returns the request's error: its teardown sees it and may
 * suppress or replace it, as a generator manager's), tears down. From
 * inside fn, aw_http_mw_request(g) and aw_http_mw_response(g) are the
 * request and its response. Each request runs fn on a small stack of its
 * own (a switch each way): a class-style middleware costs less. */
int aw_http_mw_gen(aw_http_mw **out, const char *name, aw_gen_fn fn, void *arg) AW_MUST_USE;
aw_http_request *aw_http_mw_request(aw_gen *g);
aw_http_response *aw_http_mw_response(aw_gen *g);
/* One more reference (to use one middleware in several places: aw_app_use
 * and aw_http_group_use each take one). Returns mw. */
aw_http_mw *aw_http_mw_ref(aw_http_mw *mw);
/* Drop a reference (NULL: nothing). */
void aw_http_mw_free(aw_http_mw *mw);

/* Wrap every request of the app (404 and 405 answers included). Takes the caller's reference to mw
 * (also on failure). Call before serving: -EBUSY while serving, -EINVAL
 * for a NULL app or mw (a constructor that failed), -ENOMEM; raised. */
int aw_app_use(aw_app *app, aw_http_mw *mw) AW_MUST_USE;

/* ------------------------------------------------------------------------ */
/* Route groups                                            aw_http_group(3) */

/* A set of routes under a shared path prefix with their own middleware,
 * which wraps only those routes (after routing, inside the app's
 * middleware; an outer group's before an inner one's). Owned by the app
 * (freed by aw_app_free). The prefix starts with '/', may hold {param}
 * segments, and a trailing '/' is dropped ("/" alone: no prefix). Call
 * before serving. -EINVAL (bad prefix, NULL app/parent), -ENOMEM; raised.
 * A route's full template (prefix + path) must be valid for aw_app_route.
 * Note: a CORS preflight is an OPTIONS request, routed like any other; put
 * CORS on the app, not on a group. */
typedef struct aw_http_group aw_http_group;
int aw_app_group(aw_app *app, const char *prefix, aw_http_group **out) AW_MUST_USE;
/* A group inside a group: prefix and middleware are added to the parent's. */
int aw_http_group_group(aw_http_group *parent, const char *prefix, aw_http_group **out) AW_MUST_USE;
/* Add middleware to the group (takes the reference, as aw_app_use). */
int aw_http_group_use(aw_http_group *g, aw_http_mw *mw) AW_MUST_USE;
/* aw_app_route for prefix + path ("/" for the prefix itself). */
int aw_http_group_route(aw_http_group *g, const char *method, const char *path, aw_http_handler fn,
			void *ud) AW_MUST_USE;

/* ------------------------------------------------------------------------ */
/* The response, seen from a middleware                 aw_http_response_status(3) */

/* The status of the response produced so far (0: none yet). */
int aw_http_response_status(const aw_http_response *res);
/* True when a complete response is held (its status, headers and body may
 * still change); false when none was produced yet or it is leaving
 * (streamed: its head is written). */
bool aw_http_response_editable(const aw_http_response *res);
/* A header of the produced response by case-insensitive name (the
 * first), Content-Type included; p NULL when absent. Valid until the
 * response changes. */
aw_str aw_http_response_header(const aw_http_response *res, const char *name);
/* Remove every header of that name from the response (0: none were set
 * or removed), Content-Type included. -EALREADY if not editable. */
int aw_http_response_remove_header(aw_http_response *res, const char *name) AW_MUST_USE;
/* The held body (not after it was streamed: -EALREADY, raised). */
int aw_http_response_body(const aw_http_response *res, const char **body, size_t *len) AW_MUST_USE;
/* Replace the held body (copied; Content-Length follows it).
 * -EALREADY if not editable, -ENOMEM; raised. */
int aw_http_response_set_body(aw_http_response *res, const void *body, size_t len) AW_MUST_USE;
/* Drop the produced response and its headers (those set by middleware
 * enters stay), so that another can be sent. 0 (also when there was
 * none), or -EALREADY when bytes of it have left (raised). */
int aw_http_response_clear(aw_http_response *res) AW_MUST_USE;

/* The request's id (http.h, aw_app_error_log): the client's X-Request-ID
 * when sane, else one made by the server; NUL-terminated, valid until the
 * request is done. */
const char *aw_http_request_id(const aw_http_request *req);

/* ------------------------------------------------------------------------ */
/* Errors become responses in one place                 aw_app_error_status(3) */

/* A handler returns (or leaves in flight) a negative error; the app turns
 * it into the response, and handlers need no error code of their own.
 * The body is JSON: {"detail": "..."}, with "request_id" added for 5xx.
 * The table is searched last-registered first, then the defaults:
 *
 *   -EBADMSG (bad JSON, bad query or body)   400, the parse error
 *   -AW_EHTTP_BAD_REQUEST / _UNAUTHORIZED / _FORBIDDEN / _NOT_FOUND /
 *   _CONFLICT / _VALIDATION                  400 401 403 404 409 422,
 *                                            the error's message
 *   -AW_ETOOLONG (body over the limit)       413
 *   -ETIMEDOUT (a deadline passed, the request's or a pool's acquire)
 *                                            504
 *   -AW_ECLOSED (a pool closed), -EAGAIN (a server starting up or
 *   shutting down), -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH,
 *   -ENETUNREACH, -AW_EDNS, and the pg layer's -AW_EPG_TOO_MANY: the
 *   pool or a service unavailable (a pool that backs off fails acquires
 *   with the last connect's code)            503
 *   -ECANCELED  499 when the client left, 503 while shutting down
 *   anything else                            500 "Internal Server Error"
 *
 * and a request that failed in its body's framing keeps its 400/408/413.
 * A 5xx is logged once, after the middleware exits, with the whole error
 * and its cause chain (rate-limited per place, http.h
 * aw_app_error_log); 4xx are the client's and are not logged. The rule
 * that keeps an outage or a bug from passing as success: an unhandled
 * error never becomes a 2xx — a response the handler sent and then failed
 * is replaced by the error's as long as none of it has left (a streamed
 * one that failed is cut short: the connection closes). A cancellation
 * (the client gone, a shutdown) that comes after the handler answered
 * lets the answer go.
 *
 * Map codes first..last (negative codes, either order; first == last for
 * one code; e.g. every pg code: -AW_EPG_BASE, -(AW_EPG_BASE + 0xff)) to
 * `status` (400-599) and `detail` (copied; NULL: the error's own message
 * for a status below 500 — write such messages for the client — and the
 * status's reason phrase for 5xx, which never show internals). -EINVAL
 * (bad status, codes not negative), -EBUSY (serving), -ENOMEM; raised. */
int aw_app_error_status(aw_app *app, int first, int last, int status, const char *detail) AW_MUST_USE;

/* ------------------------------------------------------------------------ */
/* Shipped middleware                                    aw_http_mw_cors(3) */

/* Request id. The server gives every request an id (aw_http_request_id:
 * the client's X-Request-ID when sane, else a made one) for the logs, and
 * echoes a client's. This middleware makes every response carry it (made
 * ones too, error responses and streamed ones alike) under `header`, and
 * with a header other than X-Request-ID reads the client's from that one.
 * ignore_incoming: always make a new id (a public edge that must not let
 * clients choose what the logs say). */
typedef struct aw_http_request_id_opts {
	const char *header;      /* NULL: "X-Request-ID" (copied) */
	bool ignore_incoming;
} aw_http_request_id_opts;
int aw_http_mw_request_id(aw_http_mw **out, const aw_http_request_id_opts *opts) AW_MUST_USE;

/* CORS (the Fetch standard's CORS protocol). A request without Origin
 * passes untouched. A preflight (OPTIONS with Origin and
 * Access-Control-Request-Method) is answered here: 204 with
 * Access-Control-Allow-Origin, -Methods, -Headers, -Max-Age (and
 * -Credentials) when the origin, the method and every requested header are
 * allowed, else 400 {"detail": "CORS preflight refused: ..."}. Other
 * requests from an allowed origin get Access-Control-Allow-Origin (and
 * -Credentials, -Expose-Headers) on whatever response they end with,
 * errors included; from other origins, no CORS header (the browser then
 * withholds the response). "Vary: Origin" whenever the answer depends on
 * the origin. With credentials, "*" origins are answered with the
 * request's own Origin (the standard forbids "*" with credentials). */
typedef struct aw_http_cors_opts {
	const char *const *origins;  /* NULL-terminated list of exact origins
	                                ("https://a.example:8443"); "*": any.
	                                NULL: none (every preflight refused) */
	const char *methods;         /* allowed methods, "GET, POST"; "*": any;
	                                NULL: "GET, HEAD, POST" */
	const char *headers;         /* allowed request headers, comma-separated
	                                (case-insensitive); "*": any; NULL: none
	                                beyond the CORS-safelisted ones */
	const char *expose_headers;  /* response headers scripts may read; NULL: none */
	bool credentials;            /* Access-Control-Allow-Credentials: true */
	int max_age;                 /* preflight cache, seconds; 0: 600; < 0: none */
} aw_http_cors_opts;
int aw_http_mw_cors(aw_http_mw **out, const aw_http_cors_opts *opts) AW_MUST_USE;

/* Server-Timing: "Server-Timing: <name>;dur=<ms>" on every held response,
 * the time from this middleware's enter to its exit in milliseconds (3
 * decimals). name NULL: "app" (a token; -EINVAL otherwise). Streamed
 * responses get none (their head left before the time was known). */
int aw_http_mw_timing(aw_http_mw **out, const char *name) AW_MUST_USE;

/* gzip or deflate (zlib) of held responses, as the client's
 * Accept-Encoding allows: q-values honoured (q=0 refuses; "*" covers
 * codings not named; gzip preferred at equal q). Not compressed: bodies
 * under min_size, responses without a body (1xx, 204, 304),
 * 206, responses that already have a Content-Encoding or say
 * Cache-Control: no-transform, and content types that are compressed
 * already (image/ but svg, audio/, video/, font/woff*, zip, gzip, zstd,
 * bzip2, xz, 7z, application/octet-stream); nor when the result would not
 * be smaller. A compressible response gets "Vary: Accept-Encoding" whether
 * or not this client got it compressed; a compressed one gets
 * Content-Encoding, its new Content-Length, and a strong ETag made weak.
 * HEAD answers say what GET would (the same headers). */
typedef struct aw_http_gzip_opts {
	size_t min_size;   /* 0: 1024 bytes */
	int level;         /* zlib level 1-9; 0: 6 */
} aw_http_gzip_opts;
int aw_http_mw_gzip(aw_http_mw **out, const aw_http_gzip_opts *opts) AW_MUST_USE;

/* A per-client-address rate limit: a token bucket per IP address (IPv6
 * per whole address, as max_connections_per_client), `burst` tokens,
 * refilled at `rate` per second; a request takes one. A client with an
 * empty bucket is answered here, 429 {"detail": "too many requests"} with
 * Retry-After (whole seconds until a token is back, at least 1). Memory is
 * bounded: a table of max_clients slots (rounded up to a power of two, 32
 * bytes each) is allocated at creation; a new address takes an empty slot
 * near its hash (within 8), or one whose bucket has refilled, or the least
 * recently seen one there, which then starts again with a full bucket —
 * so under a flood of distinct addresses the limit is lenient rather than
 * the memory unbounded. Unix-socket clients
 * are not limited. Per process (each worker of aw_app_run has its own
 * buckets); thread-safe. Behind a proxy every client has its address:
 * use it where clients connect directly. -EINVAL: rate <= 0, burst < 1. */
typedef struct aw_http_rate_limit_opts {
	double rate;          /* tokens per second, > 0 */
	double burst;         /* bucket size, >= 1; 0: max(rate, 1) */
	size_t max_clients;   /* 0: 10000 */
} aw_http_rate_limit_opts;
int aw_http_mw_rate_limit(aw_http_mw **out, const aw_http_rate_limit_opts *opts) AW_MUST_USE;

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
