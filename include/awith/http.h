/* SPDX-License-Identifier: MIT */
/*
 * awith/http.h — a strict HTTP/1.1 server and a small web-app layer:
 * routes with path parameters, JSON in and out, lifespan, per-request
 * dependencies whose teardown runs after the response (FastAPI's Depends
 * with yield), graceful shutdown, worker processes on SO_REUSEPORT.
 *
 * The seed's FastAPI service, in C:
 *
 *     static int get_users(aw_http_request *req, aw_http_response *res, void *ud)
 *     {
 *         aw_pg_conn *db;
 *         int rc = aw_http_depends(req, &get_db, (void **)&db);   // entered once per request
 *         if (rc < 0)
 *             return rc;
 *         ...
 *         return aw_http_json(res, 200, rows);
 *     }
 *
 *     int main(int argc, char **argv)
 *     {
 *         aw_app *app;
 *         if (aw_app_new(&app, "users") < 0)
 *             return 1;
 *         aw_app_lifespan(app, lifespan, NULL);       // startup / yield / shutdown
 *         aw_app_route(app, "GET", "/users", get_users, NULL);
 *         return aw_app_main(app, argc, argv);        // --port N, SIGINT/SIGTERM
 *     }
 *
 * Parsing is llhttp (Node.js's parser, strict mode) compiled in from
 * Debian's node-llhttp, plus our own checks where llhttp leaves the choice
 * to the application. Header names, values and the target point into the
 * connection's read buffer until the request is done (zero copy).
 */
#ifndef AWITH_HTTP_H
#define AWITH_HTTP_H

#include "awith/core.h"
#include "awith/io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every declaration from here to the matching pop is the public API: the
 * library is built with -fvisibility=hidden, so exactly these are exported. */
#pragma GCC visibility push(default)

struct json_t;   /* jansson's json_t */

typedef struct aw_http_request aw_http_request;
typedef struct aw_http_response aw_http_response;
typedef struct aw_app aw_app;

/* http's error codes (returned negated, like errno codes): the http range
 * of awith/ext.h's error ranges. A handler returns one (raised, with a
 * message written for the client) and the app answers with its status
 * and the message as the detail (awith/middleware.h, aw_app_error_status,
 * for the whole table). */
enum {
	AW_EHTTP_BASE = 0x4200,
	AW_EHTTP_BAD_REQUEST,   /* 400: the request is wrong (message says how) */
	AW_EHTTP_UNAUTHORIZED,  /* 401: no valid credentials */
	AW_EHTTP_FORBIDDEN,     /* 403: not allowed for these credentials */
	AW_EHTTP_NOT_FOUND,     /* 404: no such resource */
	AW_EHTTP_CONFLICT,      /* 409: conflicts with the resource's state */
	AW_EHTTP_VALIDATION,    /* 422: a body or parameter failed validation */
	AW_EHTTP_TRAILER,       /* 500: a response trailer that cannot be sent
	                           (aw_http_declare_trailer says when) */
	AW_EHTTP_LAST
};
/* The layer's messages for aw_strerror come with its library; this
 * reference makes a static link take them along. */
extern const char aw__http_error_range;
static const char *const aw__http_error_range_ref __attribute__((used, unused)) = &aw__http_error_range;

/* A string slice (not NUL-terminated unless said so). */
typedef struct aw_str {
	const char *p;
	size_t len;
} aw_str;

/* ------------------------------------------------------------------------ */
/* Requests                                              aw_http_request(3) */

/* Every aw_str of a request (method, target, path, header names and
 * values) points into the connection's read buffer, or into a copy of the
 * head when the body had to be read into that buffer, and stays valid
 * until the request is done (after the response and the dependencies'
 * teardown). Values have their surrounding whitespace removed. */
aw_str aw_http_method(const aw_http_request *req);
aw_str aw_http_target(const aw_http_request *req);   /* raw request target */
/* The target without the query, not decoded; for an absolute-form target
 * ("http://host/p?q") the path after the authority ("/p"). */
aw_str aw_http_path(const aw_http_request *req);
int aw_http_version_minor(const aw_http_request *req); /* 0 or 1 */
/* Header value by case-insensitive name (the first one); len 0 and p NULL
 * if absent. */
aw_str aw_http_header(const aw_http_request *req, const char *name);
/* Iterate headers: i from 0 while it returns true. */
bool aw_http_header_at(const aw_http_request *req, size_t i, aw_str *name, aw_str *value);
/* Path parameter of the matched route ("/users/{id}" → "id"),
 * percent-decoded (%xx; so %2F gives '/' and "..%2f..%2fetc" gives
 * "../../etc": never join a parameter to a directory yourself, serve it
 * with aw_http_file_in), NUL-terminated, owned by the request; NULL if
 * absent. A %00 or an invalid escape in the path is a 400 before any
 * handler runs. */
const char *aw_http_param(const aw_http_request *req, const char *name);
/* Query parameter: 0 with *out the value, decoded (%xx and '+'),
 * NUL-terminated, owned by the request, the first one if repeated, or NULL
 * if absent (absence is not an error). The query is decoded on the first
 * call: an invalid %-escape or a %00 makes every call return -EBADMSG
 * (raised; a handler returning it answers 400), -ENOMEM if it cannot be
 * decoded; *out is NULL then. */
int aw_http_query(const aw_http_request *req, const char *name, const char **out) AW_MUST_USE;

/* Waits: the whole body (up to the server's body limit: -AW_ETOOLONG gives
 * the client 413; a malformed chunked body -EBADMSG: 400; a body that
 * stalls longer than body_idle -ETIMEDOUT: 408). Owned by the request; a
 * Content-Length body already in the read buffer is not copied. Sends
 * "100 Continue" first when the client asked for it. */
int aw_http_body(aw_http_request *req, const char **data, size_t *len) AW_MUST_USE;
/* Waits: the body parsed as JSON (jansson's json_t; declared here as
 * struct json_t, so this header does not include jansson.h — a program
 * that uses the value includes <jansson.h>, whose flags come with the
 * awith-http pkg-config module). Invalid JSON → -EBADMSG, and a handler
 * that returns it gives the client 400 with the parse error. The value is
 * owned by the request: json_incref it to keep it longer. */
int aw_http_json_body(aw_http_request *req, struct json_t **json) AW_MUST_USE;
/* Waits: stream the body in pieces (large uploads): returns bytes (> 0),
 * 0 at its end, or a negative error as aw_http_body. Not after
 * aw_http_body (-EALREADY), and aw_http_body not after this. A body the
 * handler leaves unread is read and dropped after the response (up to 256
 * KiB; beyond, or if the client waits for 100 Continue, the connection is
 * closed instead). */
ssize_t aw_http_body_read(aw_http_request *req, void *buf, size_t n) AW_MUST_USE;

/* The per-request deadline (server option), for the handler's own waits. */
aw_time aw_http_deadline(const aw_http_request *req);

/* The request's trace context (core.h, "Tracing context"): the server
 * span's — its trace id, its own span id, the flags and the tracestate.
 * A request with a valid W3C `traceparent` header continues the caller's
 * trace (the server span's parent is the header's parent-id, tracestate
 * kept up to 32 members / 512 characters); one without, or with a
 * malformed header (a bad version, wrong lengths, uppercase or non-hex
 * digits, an all-zero id, the header twice), starts a new trace and
 * ignores tracestate. It is also the running task's current context
 * (aw_trace_current) while the handler and the dependencies' teardown
 * run, so client requests and pg queries made for the request carry it
 * on. The span, named "METHOD /route/{template}" ("METHOD" alone when no
 * route matched), is recorded to the span sink when the request is done,
 * with the response's status and, for a handler that failed, its error
 * code (5xx without one: -EIO; 499: -ECANCELED). Valid until the request
 * is done; NULL outside a request. */
const aw_trace *aw_http_request_trace(const aw_http_request *req);

/* ------------------------------------------------------------------------ */
/* Responses                                            aw_http_response(3) */

/* Add a header (copied). -EINVAL for names that are not tokens, values
 * with CR, LF, NUL or other control characters (no header injection), and
 * Content-Length / Transfer-Encoding (the server frames the body).
 * "Connection: close" closes the connection after the response. The
 * server adds Date (unless set here), Content-Length or
 * Transfer-Encoding, and Connection when needed. */
int aw_http_set_header(aw_http_response *res, const char *name, const char *value) AW_MUST_USE;
/* Complete responses (each sends once; a second send is -EALREADY). The
 * status is 200-999. They are queued and leave when the handler returns
 * (the answers to pipelined requests leave together); bodies of 32 KiB
 * and more are written at once from the caller's memory. HEAD requests
 * get the headers only. */
int aw_http_send(aw_http_response *res, int status, const char *content_type, const void *body, size_t len) AW_MUST_USE;
int aw_http_text(aw_http_response *res, int status, const char *text) AW_MUST_USE;
/* JSON from jansson, serialised compactly; the value stays the caller's
 * (not stolen: json_decref it after). NULL is -EINVAL. */
int aw_http_json(aw_http_response *res, int status, const struct json_t *json) AW_MUST_USE;

/* The fast JSON writer: builds the body straight into the response buffer
 * with no DOM. Strings are escaped; numbers printed exactly. Nesting errors
 * (closing what is not open, a key outside an object) are -EINVAL. */
typedef struct aw_jw aw_jw;
aw_jw *aw_http_json_begin(aw_http_response *res, int status);
void aw_jw_object(aw_jw *w);
void aw_jw_object_end(aw_jw *w);
void aw_jw_array(aw_jw *w);
void aw_jw_array_end(aw_jw *w);
void aw_jw_key(aw_jw *w, const char *key);
void aw_jw_string(aw_jw *w, const char *s);
void aw_jw_string_len(aw_jw *w, const char *s, size_t len);
void aw_jw_int(aw_jw *w, long long v);
void aw_jw_double(aw_jw *w, double v);
void aw_jw_bool(aw_jw *w, bool v);
void aw_jw_null(aw_jw *w);
void aw_jw_raw(aw_jw *w, const char *json, size_t len);   /* already valid JSON */
/* Finish and queue the response. Returns 0 or the first error the writer
 * met (then nothing is sent: a handler returning it answers 500). Strings
 * must be valid UTF-8 (-EILSEQ); doubles are printed in the shortest form
 * that reads back exactly; NaN and infinities are -EINVAL. */
int aw_http_json_end(aw_jw *w) AW_MUST_USE;

/* Waits: streamed (chunked) response: each item of the async iterator is
 * an aw_chunk * (see core.h), written as it comes; the iterator is closed
 * however the response ends (including a client that went away: the
 * write's error is returned). HTTP/1.0 clients get the body unframed, up
 * to the connection's close. A body cut short closes the connection. */
int aw_http_stream(aw_http_response *res, int status, const char *content_type, aw_iter *chunks) AW_MUST_USE;
/* Response trailers (RFC 9110 6.5): fields sent after the body, for what
 * is known only once the body has been produced — a checksum of a
 * streamed body, a status computed at its end (gRPC's grpc-status).
 *
 * aw_http_declare_trailer announces a field before the response starts;
 * aw_http_set_trailer gives (or replaces) its value until the body ends:
 * for aw_http_stream, until its iterator ends (the iterator itself may
 * set them: a generator that hashes what it yields sets the checksum
 * before it returns); for a complete response (aw_http_send, _text,
 * _json, _json_end), before it is sent. Setting a field not declared
 * declares it while the response has not started; after, it is
 * -AW_EHTTP_TRAILER (an HTTP/1.1 client was told which fields to expect).
 * Once the body has ended: -EALREADY. A declared field never given a
 * value is not sent. On the wire:
 *   HTTP/1.1  the response is chunked (a complete response too: its body
 *             as one chunk), its head says `Trailer: name, ...`, and the
 *             fields follow the last chunk ("0\r\n");
 *   HTTP/2    a HEADERS frame with END_STREAM after the last DATA frame
 *             (names lowercased).
 * A trailer is never dropped silently; where it cannot go, the call that
 * would lose it fails with -AW_EHTTP_TRAILER (a handler that returns it
 * answers 500): declaring for an HTTP/1.0 request (no chunked coding),
 * a response with a Content-Length (aw_http_file, aw_http_file_in, after
 * a declaration). Two rules instead: a response without a body (HEAD,
 * 1xx, 204, 304) has no trailers either, and an error response that
 * replaces the handler's (the error table) carries none of its trailers.
 * A body cut short (the iterator fails, a write fails; on HTTP/2 also a
 * handler that fails after aw_http_stream returned) never ends cleanly
 * with its trailers: HTTP/1.1 closes the connection without the last
 * chunk, HTTP/2 resets the stream.
 * Names are tokens and values have no control character other than tab
 * (-EINVAL, as aw_http_set_header). Fields that frame, route,
 * authenticate or describe the message cannot be trailers
 * (-AW_EHTTP_TRAILER): Content-Length, Transfer-Encoding, Host, Trailer,
 * TE, Connection, Keep-Alive, Upgrade, Content-Type, Content-Encoding,
 * Content-Range, Cache-Control, Expect, Max-Forwards, Pragma, Range,
 * Authorization, Proxy-Authenticate, Proxy-Authorization,
 * WWW-Authenticate, Proxy-Connection, Set-Cookie, Cookie, Date, Location,
 * Retry-After, Vary, Age, Expires. Limits: 16 fields, 8 KiB of names and
 * values together (-AW_EHTTP_TRAILER beyond). The same name declared
 * twice is one field. Trailers are sent whether or not the request said
 * `TE: trailers` (RFC 9110 6.5.1 lets a server send them; a client that
 * did not say it may drop them): aw_http_accepts_trailers tells, and a
 * handler whose trailers the client must see (a gRPC status) checks it. */
int aw_http_declare_trailer(aw_http_response *res, const char *name) AW_MUST_USE;
int aw_http_set_trailer(aw_http_response *res, const char *name, const char *value) AW_MUST_USE;
/* The request's TE header lists "trailers" (RFC 9110 10.1.4: the client
 * and those it forwards for will not drop trailer fields). */
bool aw_http_accepts_trailers(const aw_http_request *req);
/* Waits: a file, read off the loop in 64 KiB pieces (aw_file_chunks) and
 * sent with its Content-Length; 404 if missing. content_type NULL: guessed
 * from the extension. */
int aw_http_file(aw_http_response *res, const char *path, const char *content_type) AW_MUST_USE;
/* Waits: the file `rel` under the directory `root`, confined to it: the
 * way to serve a path that comes from a request. `rel` is used as given
 * (not decoded again: route parameters arrive decoded, %2F as '/'). A
 * directory serves its index.html. Answers:
 *   404  rel is absolute or has a ".." segment (it names nothing under
 *        root), or the file (or index.html) does not exist, or it is not a
 *        regular file (device, FIFO, socket);
 *   403  a symlink on the way leads out of root (logged: the operator's
 *        link, refused), or the file cannot be read (EACCES).
 * Symlinks that stay inside root are followed. Resolution uses openat2
 * with RESOLVE_BENEATH (Linux 5.6+; the kernel refuses every step out of
 * root, symlinks and ".." included, atomically); where openat2 is missing
 * (ENOSYS) or filtered (EPERM), the file is opened and its real location
 * (/proc/self/fd) checked against root's real path. A NUL cannot reach it
 * from a request: %00 in a path is a 400 from the router. Hard links are
 * not detected (neither way can). Other failures (root missing) are raised
 * (500). Sent like aw_http_file, read off the loop in 64 KiB pieces. */
int aw_http_file_in(aw_http_response *res, const char *root, const char *rel, const char *content_type) AW_MUST_USE;

/* ------------------------------------------------------------------------ */
/* Handlers, routes, dependencies, lifespan                       aw_app(3) */

/* A handler returns 0 once it has sent a response (or without sending one:
 * then 204 is sent), or a negative error, which the app's error table
 * turns into the response (awith/middleware.h, aw_app_error_status: by
 * default -EBADMSG from aw_http_json_body or aw_http_query 400 with our
 * own message, -AW_ETOOLONG 413, AW_EHTTP_* codes their status with the
 * error's message, -ETIMEDOUT 504, a pool or service unavailable 503,
 * cancelled by a shutdown 503, anything else 500 whose body leaks nothing
 * internal and carries the request id); a 5xx is logged once with the
 * error's cause chain. A response the handler sent before failing is
 * replaced by the error's while none of it has left: an error never
 * becomes a 2xx. The error in flight is what counts (exits on the
 * handler's way out may have replaced what it returned). Error bodies are
 * JSON: {"detail": "..."} ("request_id" too for 5xx). */
typedef int (*aw_http_handler)(aw_http_request *req, aw_http_response *res, void *ud);

/* A dependency: a generator-style manager function (see aw_gen in core.h)
 * that yields the value the handler gets. Entered at most once per request
 * (the first aw_http_depends call), exited in reverse order after the
 * response has been sent — also when the handler failed or the client went
 * away — and its aw_gen_yield returns the handler's error (a teardown that
 * fails hands its error on to the ones after it, as nested blocks do).
 * Teardowns run shielded (they may wait even when the request was
 * cancelled); a failing one is logged with its cause chain and the
 * connection goes on. Declare them static: AW_HTTP_DEP(name, fn, arg). */
typedef struct aw_http_dep {
	const char *name;
	aw_gen_fn fn;
	void *arg;
} aw_http_dep;
/* Positional, so that C++17 (no designated initializers) can use it too. */
#define AW_HTTP_DEP(name_, fn_, arg_) { (name_), (fn_), (arg_) }
/* Waits (the first time per request): 0 with the dependency's value in
 * *out (what it yielded; NULL is a value like any other), or a negative
 * error (raised; *out is NULL): the dependency's own, -EINVAL for a NULL
 * dep or out, -ENOMEM. A dependency may ask for other dependencies (they
 * then exit after it); one that asks for itself gets -EDEADLK. */
int aw_http_depends(aw_http_request *req, const aw_http_dep *dep, void **out) AW_MUST_USE;
/* From inside a dependency's generator function: the request it serves
 * (to read headers, or to depend on other dependencies). */
aw_http_request *aw_http_dep_request(aw_gen *g);

typedef struct aw_http_limits {
	size_t request_line;     /* 414 beyond; default 8 KiB */
	size_t header_bytes;     /* 431 beyond; default 16 KiB */
	size_t header_count;     /* 431 beyond; default 100 */
	size_t body_bytes;       /* 413 beyond; default 1 MiB */
	aw_time header_timeout;  /* whole header must arrive; default 10 s */
	aw_time body_idle;       /* max gap inside a body; default 10 s */
	aw_time keepalive_idle;  /* idle connection closed; default 5 s */
	aw_time send_idle;       /* one response write may wait this long for
	                            the client to read; default 10 s */
	aw_time request_deadline;/* handler deadline; default 30 s */
	aw_time shutdown_grace;  /* in-flight requests finish; default 10 s */
	/* Connection caps (nginx's worker_connections and limit_conn). A new
	 * connection over a cap is answered at once with a fixed 503 (JSON
	 * body, Retry-After: 1, Connection: close) and closed, without reading
	 * its request; established connections are not affected. 0: no cap.
	 * max_connections: open connections per worker (per aw_app_serve);
	 * default 10000 (about 13 KB each while idle). Out of file descriptors
	 * (EMFILE/ENFILE) new clients get the same 503 through a reserved
	 * spare descriptor instead of waiting in the backlog.
	 * max_connections_per_client: open connections from one client IP
	 * address (IPv6 per whole address); default 0 (off: behind a proxy or
	 * a NAT, every client has the same address; set it when clients
	 * connect directly). Costs one getpeername per connection when on. */
	size_t max_connections;
	size_t max_connections_per_client;
	/* Drain on shutdown behind a load balancer: on SIGTERM/SIGINT the
	 * readiness route (aw_app_health) answers 503 at once, the server
	 * goes on accepting and serving for drain_delay (the balancer's
	 * health checks see it and stop sending), then stops as without it
	 * (stop accepting, shutdown_grace for the requests in flight). A
	 * second signal cuts the delay short. Not on a graceful restart
	 * (SIGUSR2: the next generation accepts on the same sockets).
	 * Default 0 (stop at once). */
	aw_time drain_delay;
} aw_http_limits;

/* HTTP/2 (RFC 9113) on Debian's libnghttp2: the same routes, handlers,
 * dependencies, limits (aw_http_limits: header bytes and count, body
 * bytes, body_idle, send_idle, request_deadline) and access log as
 * HTTP/1.1 ("HTTP/2.0" in its proto field). Spoken over cleartext when a
 * client opens with the HTTP/2 preface (h2c with prior knowledge: curl
 * --http2-prior-knowledge, h2load, nghttp), and over TLS when ALPN picks
 * "h2". Each stream is served by its own task, so a slow stream never
 * blocks the others; request bodies reach the handler under flow control
 * (the stream's window is given back as aw_http_body_read consumes), and
 * a response body's writes wait while the client's window is closed. A
 * stream the client resets (RST_STREAM) cancels its handler as a client
 * that goes away does (499 in the access log). A request may end with
 * trailers (read and dropped). Shutdown sends GOAWAY: streams already
 * open finish, new ones are refused, within shutdown_grace.
 * Limits (defaults in brackets; 0 when set means the default):
 *   max_concurrent_streams  open streams per connection [100]
 *                           (SETTINGS_MAX_CONCURRENT_STREAMS); streams
 *                           reset while their handler still runs count
 *                           too: beyond it the connection stops reading
 *                           until a handler ends
 *   max_header_list         decoded header list per request, RFC 9113's
 *                           size (name + value + 32 per field) [32 KiB];
 *                           beyond: 431 (the HTTP/1.1 header_bytes and
 *                           header_count limits apply as well)
 *   initial_window          per-stream receive window [64 KiB]: what a
 *                           client may send ahead of the handler's reads
 *   connection_window       the connection's receive window [1 MiB]
 *   max_resets, reset_window  rapid reset (CVE-2023-44487): more than
 *                           max_resets streams reset by the client within
 *                           reset_window [200 per 1 s] ends the connection
 *                           with GOAWAY ENHANCE_YOUR_CALM
 * Fixed: SETTINGS frames with more than 32 entries, more than 1000
 * queued control-frame acknowledgements (SETTINGS/PING floods) and more
 * than 8 CONTINUATION frames per header block end the connection
 * (nghttp2's bounds); an idle connection (no stream open) is closed with
 * GOAWAY after keepalive_idle. */
typedef struct aw_http2_opts {
	bool enabled;                     /* default true; false: the preface gets 505 */
	uint32_t max_concurrent_streams;
	uint32_t max_header_list;
	uint32_t initial_window;
	uint32_t connection_window;
	uint32_t max_resets;
	aw_time reset_window;
} aw_http2_opts;

/* The app's HTTP/2 options (change before serving); NULL for a NULL app. */
aw_http2_opts *aw_app_http2(aw_app *app);

/* A new app in *out (free it with aw_app_free). -ENOMEM (raised). Needs no
 * task: call it from main. */
int aw_app_new(aw_app **out, const char *name) AW_MUST_USE;
void aw_app_free(aw_app *app);
aw_http_limits *aw_app_limits(aw_app *app);   /* change before serving */
/* Route: method ("GET", "POST", ...; "*" any) and a path template with
 * {name} segments. A last segment {name...} takes the rest of the path
 * (one segment or more: "/files/{p...}" matches "/files/a/b.txt" with p
 * "a/b.txt" and "/files/" with p "", not "/files"), each segment
 * percent-decoded, joined with '/': serve it with aw_http_file_in or
 * aw_app_static, never by joining it to a directory yourself. Literal and
 * {name} routes are tried before it. 404 when no path matches, 405 with
 * Allow when the path matches for other methods. -EINVAL for a malformed
 * template ({name...} not last, a bad name). */
int aw_app_route(aw_app *app, const char *method, const char *path, aw_http_handler fn, void *ud) AW_MUST_USE;
/* Static directories: serve the files under `dir` at `prefix`
 * ("/static": GET /static/css/site.css is dir/css/site.css). Mounted as
 * two GET routes (HEAD follows GET; other methods get 405):
 * "<prefix>/{path...}" and "<prefix>" itself, which redirects (301) to
 * "<prefix>/"; the prefix "/" serves the whole site. Routes added
 * for paths under the prefix take precedence. Confined to dir as
 * aw_http_file_in is (openat2 RESOLVE_BENEATH: no "..", no symlink out of
 * dir, whatever the encoding: "%2e%2e", "%2f", "%252e" decode once, to a
 * name; %00 is the router's 400):
 *   200 the file, with Content-Type by extension, Content-Length,
 *       ETag (strong: mtime to the ns and size), Last-Modified,
 *       Accept-Ranges: bytes, X-Content-Type-Options: nosniff; the body
 *       read from the page cache into the response (up to 64 KiB) or
 *       sent with sendfile (aw_stream_sendfile) after the head;
 *   206 a single "Range: bytes=a-b" (a-, -n too) with Content-Range;
 *       several ranges are answered with the whole file (200); a range
 *       not satisfiable is 416 with "Content-Range: bytes * /SIZE"
 *       (without the space); If-Range (an ETag or the exact date) that
 *       does not match gives the whole file;
 *   304 If-None-Match matches the ETag (weak comparison; "*"), or, without
 *       If-None-Match, If-Modified-Since is not before the mtime;
 *   412 If-Match does not match (strong comparison), or, without it,
 *       If-Unmodified-Since is before the mtime;
 *   301 a directory named without its trailing '/' (to the name with it);
 *       a directory with it serves its index file (opts->index);
 *   404 missing, not a regular file, a ".." segment, an absolute path
 *       ("//"), a name starting with '.' (unless opts->dotfiles), a
 *       directory without an index file (unless opts->listing: by
 *       default there are no listings);
 *   403 a symlink on the way that leads out of dir (logged), or a file
 *       the server may not read.
 * Precompressed variants: when the client's Accept-Encoding allows gzip
 * and NAME.gz is a regular file next to NAME, NAME.gz is sent with
 * Content-Encoding: gzip and NAME's type (its own ETag); every answer says
 * Vary: Accept-Encoding. Off with opts->no_precompressed.
 * The directory is opened per request (a switched symlink to it is seen at
 * once). The opens run on the loop when the kernel has every step in its
 * caches (openat2 RESOLVE_CACHED, Linux 5.12), else on the thread pool:
 * the loop never waits for a disk to look a name up.
 * Returns 0, -EINVAL (bad prefix: must start with '/', not end with one
 * unless it is "/", no '{' '}' '%' '?' '#' "//" or spaces; an index with
 * a '/'), -ENOENT / -ENOTDIR (dir is not a directory: checked now),
 * -EEXIST (the prefix is routed already), -ENOMEM; raised. Call before
 * serving. */
typedef struct aw_static_opts {
	const char *index;          /* a directory's page; NULL: "index.html";
	                               "": none (a directory is 404) */
	const char *cache_control;  /* Cache-Control of every answer (copied);
	                               NULL: none (clients revalidate with the
	                               ETag and Last-Modified) */
	bool dotfiles;              /* serve names starting with '.' (default: 404) */
	bool no_precompressed;      /* never serve NAME.gz for NAME */
	bool listing;               /* a directory without an index file is
	                               answered with an HTML list of its
	                               names (sorted, escaped, dotfiles only
	                               with `dotfiles`, at most 10,000;
	                               Cache-Control: no-cache); default: 404 */
} aw_static_opts;
int aw_app_static(aw_app *app, const char *prefix, const char *dir, const aw_static_opts *opts) AW_MUST_USE;
/* A client that goes away: when the peer closes the connection (or only
 * its sending side: a half-close counts, as in nginx and Go) while the
 * handler runs, the handler's waits are cancelled (-ECANCELED; a pg query
 * in flight sends the server a cancel request), its dependencies' teardown
 * sees -ECANCELED, nothing is answered, and the access log says 499. Not
 * while the handler has a request body still to read (its reads see the
 * end of the stream instead), nor when pipelined requests that came before
 * the close still wait for their answers (then the handler finishes), nor
 * for a route with finish_when_client_gone. */
typedef struct aw_http_route_opts {
	bool finish_when_client_gone;   /* run to completion though the client left */
} aw_http_route_opts;
/* aw_app_route with options (opts NULL: the defaults, as aw_app_route). */
int aw_app_route_opts(aw_app *app, const char *method, const char *path, aw_http_handler fn, void *ud,
		      const aw_http_route_opts *opts) AW_MUST_USE;
/* The app's startup and shutdown as one generator-style function: setup,
 * aw_gen_yield(g, state), teardown (sees the error the server stops with).
 * aw_app_state() returns what it yielded. */
int aw_app_lifespan(aw_app *app, aw_gen_fn fn, void *arg) AW_MUST_USE;
/* The seed's on_event("startup"/"shutdown") hooks, a thin layer over the
 * lifespan: startup hooks run in order before serving, shutdown hooks in
 * reverse after. */
int aw_app_on_startup(aw_app *app, int (*fn)(aw_app *app, void *arg), void *arg) AW_MUST_USE;
int aw_app_on_shutdown(aw_app *app, int (*fn)(aw_app *app, void *arg), void *arg) AW_MUST_USE;
void *aw_app_state(aw_app *app);
void aw_app_set_state(aw_app *app, void *state);
/* The access log: one record per request answered, including requests
 * rejected before a handler ran (400 bad request line or header, 408,
 * 413, 414, 431, 505, 503 over capacity, 499 when the client left), on
 * channel "access" through the log sink (awith/log.h): the default sink
 * writes it to `out`; a callback sink receives it (with its fields) and
 * `out` is only the switch. NULL: off (default). Fields: method, path
 * (the request target as sent), proto, status, bytes (body bytes sent),
 * duration_ms, request_id, client (peer address), referer, user_agent.
 * Lines are not flushed one by one (stdio buffers them; a line-buffered or
 * unbuffered FILE writes each at once); aw_app_serve flushes `out` when it
 * returns. */
void aw_app_access_log(aw_app *app, FILE *out);
typedef enum aw_access_log_format {
	AW_ACCESS_LOG_AUTO,      /* combined when the log format is text,
	                            else the log format (json or logfmt) */
	AW_ACCESS_LOG_COMBINED,  /* Apache/nginx combined: %h - - [%t] "%r"
	                            %s %b "%{Referer}i" "%{User-agent}i", then
	                            the duration in ms and the request id */
	AW_ACCESS_LOG_JSON,      /* one JSON object per line, the log's
	                            standard fields plus the ones above */
} aw_access_log_format;
void aw_app_access_log_format(aw_app *app, aw_access_log_format f);
/* Where handler failures (with their cause chains), failed teardowns and
 * server events are logged: records through the log sink (awith/log.h,
 * levels and formats) whose default writes them to `out`; default stderr.
 * Messages that can come once per request or connection (a failed
 * handler, a failed teardown, a failed accept) are rate-limited per place
 * in the server that logs them (core.h, "Rate-limited logging": 10 per
 * 5 s by default, then "N similar messages suppressed"), so an outage
 * behind the handlers cannot flood the log.
 *
 * Request ids: each request's task carries the log context field
 * request_id (aw_log_context_set) while it is served: the client's
 * X-Request-ID when it is 1 to 128 visible ASCII characters, else one
 * made by the server (16 hex digits); the response carries it back as
 * X-Request-ID, and every record the handler writes has it. */
void aw_app_error_log(aw_app *app, FILE *out);
aw_app *aw_http_app(const aw_http_request *req);
/* Prometheus metrics (off by default): serve the process's registry
 * (awith/metrics.h: the core's, the pg and client layers', the program's
 * own) at GET `path` in the text exposition format, and count this app's
 * requests: awith_http_requests_total{route,method,status},
 * awith_http_request_duration_seconds{route} (histogram),
 * awith_http_requests_in_flight, awith_http_connections. `route` is the
 * matched template, or "(unmatched)" for 404, 405 and requests rejected
 * before routing. Under aw_app_run with several workers, a scrape of any
 * worker answers for all of them, every series labelled worker="N" (the
 * workers ask each other over private Unix sockets; one that does not
 * answer within a second is left out of that scrape). Call before
 * serving. -EINVAL (path not starting with '/'), -EALREADY (on already),
 * -EBUSY (serving), -ENOMEM; raised. aw_app_main turns it on with
 * --metrics PATH or AWITH_METRICS=PATH. docs/observability.md lists the
 * metrics. */
int aw_app_metrics(aw_app *app, const char *path) AW_MUST_USE;

/* The live ledger page: an opt-in debug route. GET <path> serves one HTML
 * page (plain HTML, CSS and JavaScript, no external resources) that polls
 * GET <path>/ledger.json every second and shows, live, every task of the
 * loop that served it: its name (a handler's task is named after its
 * request, "GET /users/42", while the page is on), state, where it waits
 * (file:line) and for how long; what it holds (pool connections,
 * transactions, locks, streams, temp files ... every manager of every
 * block it is in, and its manual ledger entries) with where each was
 * entered and for how long; the recent slow steps and deadlock reports;
 * the loop's gauges and each pg pool's (size, idle, in use, waiters) with
 * sparklines. GET <path>/events streams the same JSON as server-sent events
 * (text/event-stream, one a second, for `curl -N` or a page of your own;
 * a stream ends at the request deadline, and an EventSource reconnects
 * after its `retry: 1000`).
 * The JSON is aw_ledger_visit's walk (core.h), taken in one go
 * on the loop thread (a consistent picture). Under SO_REUSEPORT workers
 * each worker has its own loop and tasks: the page shows those of the
 * worker that answered, and says which (its pid).
 * Access: by default only loopback peers (127.0.0.0/8, ::1, Unix sockets);
 * any other peer gets 404, as if there were no such route. With a token,
 * a request must also carry "Authorization: Bearer TOKEN" or ?token=TOKEN
 * (the page passes its own ?token= on to the JSON), else 401. any_peer
 * lifts the loopback rule: then set a token (and use TLS in front).
 * Off by default; call before serving. path: "/debug/awith" for example
 * (starts with '/', no trailing '/', no {param}). Returns 0, -EINVAL (bad
 * path, empty token), -EEXIST (already on), -ENOMEM; raised. */
typedef struct aw_app_debug_opts {
	const char *token;    /* NULL: none (copied) */
	bool any_peer;        /* serve non-loopback peers too (set a token) */
} aw_app_debug_opts;
int aw_app_debug_page(aw_app *app, const char *path, const aw_app_debug_opts *opts) AW_MUST_USE;

/* ------------------------------------------------------------------------ */
/* HTTPS                                                      aw_app_tls(3) */

/* TLS for the app's TLS listeners (io's OpenSSL layer): TLS 1.2 and 1.3
 * only (a TLS 1.0 or 1.1 client is refused with a protocol_version
 * alert), forward-secret AEAD ciphers (AW_TLS_SERVER_CIPHERS, io.h) unless
 * `ciphers` says otherwise, ALPN offering "http/1.1" (and "h2" first when
 * the app serves HTTP/2); a client that offers neither, or no ALPN at all,
 * is served HTTP/1.1. One certificate: a client's SNI is not checked (as
 * nginx's default server, it gets this certificate whatever name it asked
 * for; a verifying client then refuses a name the certificate does not
 * cover). */
typedef struct aw_app_tls_opts {
	const char *cert_file;      /* PEM: the certificate, then its chain (required) */
	const char *key_file;       /* PEM: its private key (required) */
	/* Mutual TLS: client certificates must be signed by a CA in this PEM
	 * file, and are required unless client_cert_optional (then a client
	 * may send none, but one it sends must verify). The verified subject
	 * is aw_http_peer_cert_subject. NULL: no client certificates asked. */
	const char *client_ca_file;
	bool client_cert_optional;
	const char *ciphers;        /* TLS 1.2 (OpenSSL syntax); NULL: AW_TLS_SERVER_CIPHERS */
	const char *ciphersuites;   /* TLS 1.3; NULL: OpenSSL's default */
	/* The handshake must end this long after the connection was
	 * accepted, or the connection is closed (counted in
	 * awith_http_tls_handshakes_total{result="timeout"} and logged,
	 * rate-limited). 0: 10 s. */
	aw_time handshake_timeout;
	/* Where aw_app_run (and aw_app_main) listen with TLS, beside the
	 * cleartext port: host NULL is aw_app_run's host; port 0 picks a free
	 * port (logged). aw_app_serve_listeners ignores both. */
	const char *host;
	int port;
} aw_app_tls_opts;

/* Turn TLS on for the app: the files are loaded and checked now (so that
 * a bad path, a key that does not match its certificate or a bad cipher
 * list fails at startup: -AW_ETLS or -EINVAL with OpenSSL's reason), the
 * options copied. Call before serving (-EBUSY while serving); a second
 * call replaces the first. Needs no task. Returns 0, -EINVAL (NULL opts,
 * no cert or key file, a port out of range), -AW_ETLS, -ENOMEM; raised. */
int aw_app_tls(aw_app *app, const aw_app_tls_opts *opts) AW_MUST_USE;
/* Waits: load the certificate, key and client CA files again (off the
 * loop, on the thread pool) and use them for the handshakes that start
 * from now on; connections already open keep theirs and go on. A file that
 * cannot be loaded leaves the current certificate in use and returns its
 * error (-AW_ETLS, raised and logged). SIGHUP does the same while the app
 * serves (aw_app_serve, aw_app_run: each worker reloads; the supervisor
 * passes SIGHUP on to every worker, and keeps its own copy current for
 * the workers it restarts). Called in a worker, the other workers are
 * told too (through the supervisor: each reloads and logs its outcome);
 * the return value is this process's. -EINVAL: TLS is not on. */
int aw_app_tls_reload(aw_app *app) AW_MUST_USE;
/* The verified client certificate's subject, RFC 2253 form (nginx's
 * $ssl_client_s_dn: "CN=alice,O=Example"), owned by the connection; NULL
 * over cleartext, without client_ca_file, or when the client sent no
 * certificate (client_cert_optional). */
const char *aw_http_peer_cert_subject(const aw_http_request *req);
/* True when the request came over TLS. */
bool aw_http_is_tls(const aw_http_request *req);

/* A listener for aw_app_serve_listeners: `tls` serves it with the app's
 * TLS settings (aw_app_tls), else in cleartext. */
typedef struct aw_app_listener {
	aw_listener *l;
	bool tls;
} aw_app_listener;
/* Waits: aw_app_serve on several listeners at once (cleartext and TLS
 * side by side, e.g. 8080 and 8443): one accept loop each, one set of
 * connections, caps and shutdown for all. n is 1 to 16. -EINVAL for a TLS
 * listener without aw_app_tls, or bad arguments; otherwise as
 * aw_app_serve (a listener that cannot accept stops them all). */
int aw_app_serve_listeners(aw_app *app, const aw_app_listener *ls, size_t n) AW_MUST_USE;
/* Health routes for load balancers and orchestrators (haproxy's
 * `option httpchk`, Kubernetes' probes). GET live_path answers 200
 * {"status":"alive"} whenever the loop runs (it proves the process is not
 * stuck); GET ready_path answers 200 {"status":"ready"} only while the
 * app can serve: not before the lifespan's setup is done, not once a
 * shutdown began (drain_delay, or the stop itself: 503
 * {"status":"draining"}), and only when every readiness check passes
 * (503 {"status":"unready","check":NAME,"detail":"..."} naming the first
 * that failed). Either path may be NULL (no such route). Call before
 * serving; -EINVAL (a path not starting with '/', or both NULL),
 * -EALREADY (called before), -ENOMEM; raised. */
int aw_app_health(aw_app *app, const char *live_path, const char *ready_path) AW_MUST_USE;
/* A readiness check: returns 0 when ready, or a negative error (raised:
 * its message becomes the 503's detail, and it is cleared). Runs in the
 * readiness request's task, in registration order, each under a 2 s
 * deadline of its own (a check that waits longer fails with -ETIMEDOUT).
 * For a pg pool: aw_pg_pool_check (pg.h). */
typedef int (*aw_app_ready_fn)(aw_app *app, void *arg);
int aw_app_ready_check(aw_app *app, const char *name, aw_app_ready_fn fn, void *arg) AW_MUST_USE;
/* True once a shutdown began (a signal, aw_app_stop, a graceful restart
 * handing over): the readiness route then says 503. */
bool aw_app_draining(const aw_app *app);

/* Waits: serve on an open listener until SIGINT/SIGTERM (or
 * aw_app_stop): stop accepting (the listening socket is shut down, so new
 * connections are refused; the caller still closes it), let in-flight
 * requests finish within shutdown_grace (idle keep-alive connections are
 * closed at once; responses say Connection: close), cancel the rest (their
 * dependencies' teardown still runs), run the lifespan's teardown.
 * A second SIGINT/SIGTERM while draining cancels the requests still
 * running at once. Returns 0, or the error of the lifespan's setup or
 * teardown, or of a listener that cannot accept (closed, shut down). */
int aw_app_serve(aw_app *app, aw_listener *l) AW_MUST_USE;
/* Begin the shutdown of aw_app_serve (as SIGTERM does), from any task of
 * its loop (a handler too). */
void aw_app_stop(aw_app *app);
/* Run N worker processes (each its own loop) sharing host:port through
 * SO_REUSEPORT; a crashed worker is restarted; SIGTERM drains them all.
 * workers <= 1 serves in this process. Returns when all have stopped.
 * Each worker runs the app's lifespan (its own pools). A worker that
 * dies (signal or non-zero exit) is restarted, with a pause when it dies
 * within a second of starting; one whose startup failed (listen, or the
 * lifespan's setup) stops them all and aw_app_run fails with -ECHILD.
 * Runs its own loop(s): call it outside aw_run (-EBUSY inside a task).
 * Port 0 picks a free port (printed in the log). */
int aw_app_run(aw_app *app, const char *host, int port, int workers) AW_MUST_USE;
/* With aw_app_tls, aw_app_run also listens with TLS on the options'
 * host:port, and `port` -1 (AW_APP_NO_PORT) leaves the cleartext port
 * out (TLS only). */
#define AW_APP_NO_PORT (-1)
/* Listening sockets and graceful restart (docs/scale.md). aw_app_run
 * binds its listening sockets once, in the process that runs it: one, or
 * with workers one SO_REUSEPORT socket per worker, made by the supervisor
 * and inherited by worker i (a restarted worker takes the same socket, so
 * the connections queued on it are not lost). Sockets it is handed
 * instead, by the environment protocol of systemd's socket activation
 * (LISTEN_PID equal to this process's pid, LISTEN_FDS=N: descriptors 3 to
 * 3+N-1, listening stream sockets), are used as they are and host/port
 * are ignored: worker i takes socket i mod N (one socket shared by every
 * worker is fine). The variables are removed from the environment.
 *
 * SIGUSR2 to the process that ran aw_app_run (the supervisor with
 * workers) starts a graceful restart: it runs its own executable again
 * (the file now at the path of /proc/self/exe, so a new build installed
 * over it is what starts) with the same arguments and environment, handing
 * over its listening sockets by the same LISTEN_FDS protocol, plus
 * AWITH_READY_FD, a pipe the new generation writes to once it serves
 * (every worker's lifespan setup done). Then the old generation stops
 * accepting (the sockets stay open: the new one accepts on them, so no
 * connection is refused or lost in between) and drains as on SIGTERM but
 * without drain_delay; aw_app_run returns 0. If the new generation exits
 * or is not ready within 60 s, the old one logs it and goes on serving;
 * a SIGTERM/SIGINT meanwhile calls the restart off (the new generation
 * gets SIGTERM) and stops the old one as usual.
 * With aw_app_tls the TLS port's sockets are a second set, bound and
 * inherited the same way, and handed over too: after the cleartext ones,
 * named "https" in LISTEN_FDNAMES (the others "http"); inherited sockets
 * with no such name are all cleartext (the TLS port is then bound here).
 * SIGHUP reloads the certificates (aw_app_tls_reload). A
 * generation that is ready also tells systemd (NOTIFY_SOCKET: READY=1 and
 * MAINPID, for Type=notify with NotifyAccess=all; contrib/awith.service)
 * and writes its pid to the pid file when one is set (aw_app_main
 * --pid-file), which it removes when it exits if it still names it. */
int aw_app_pid_file(aw_app *app, const char *path) AW_MUST_USE;
/* main() for examples: parses --port N (default 8000; "off": no cleartext
 * port), --host H (default 127.0.0.1), --workers N (default 1),
 * --access-log, --metrics PATH (or the environment's AWITH_METRICS=PATH:
 * aw_app_metrics), --tls-cert FILE and --tls-key FILE (aw_app_tls; both or
 * neither), --tls-port N (default 8443), --tls-client-ca FILE (mutual
 * TLS), --tls-handshake-timeout MS, --pid-file PATH (aw_app_pid_file),
 * --drain-delay MS (limits.drain_delay), --health (aw_app_health at
 * /livez and /readyz) and calls aw_app_run. */
int aw_app_main(aw_app *app, int argc, char **argv) AW_MUST_USE;

/* ------------------------------------------------------------------------ */
/* WebSocket (RFC 6455)                                           aw_ws(3) */
/*
 * A route that accepts WebSockets; the handler runs once the upgrade is
 * done (the 101 has left), in the connection's task, and the connection
 * belongs to the socket until the handler returns:
 *
 *     static int echo(aw_ws *ws, aw_http_request *req, void *ud)
 *     {
 *         aw_ws_msg *msg;
 *         AW_WITH(aw_ws_mgr(ws)) {                  // exit: close handshake
 *             AW_FOR(msg, aw_ws_messages(ws)) {     // async for msg in ws
 *                 if (aw_ws_send(ws, msg->type, msg->data, msg->len) < 0)
 *                     break;
 *             }
 *         }
 *         return aw_error_pending();
 *     }
 *     ...
 *     aw_app_ws(app, "/echo", echo, NULL, NULL);
 *
 * The framing is our own (src/http/ws.c; docs/design.md says why not
 * libwslay). Every rule of the RFC that concerns a server is enforced:
 * client frames must be masked, reserved bits clear (no extension is
 * negotiated), control frames at most 125 bytes and not fragmented,
 * continuation frames only inside a fragmented message, text messages
 * valid UTF-8 (checked as the fragments arrive), close codes and reasons
 * valid. A violation fails the connection: the server sends a close frame
 * with the code (1002 protocol, 1007 invalid UTF-8, 1009 too big, 1003 a
 * message type the route does not accept) and closes. Pings are answered
 * with pongs by the reading task; the server pings a peer that has been
 * silent for ping_interval and drops one silent for idle_timeout.
 * A server shutdown (aw_app_stop, SIGTERM) closes every socket with 1001:
 * a task waiting for a message gets the end of the messages at once. The
 * server's access log, metrics and connection caps count a WebSocket as
 * its upgrade request (status 101, its duration the socket's life).
 */
typedef struct aw_ws aw_ws;

/* Message types (aw_ws_msg.type, aw_ws_send, aw_ws_opts.accept). */
enum { AW_WS_TEXT = 1, AW_WS_BINARY = 2 };

/* Close codes (RFC 6455, 7.4.1). 1005 and 1006 are never sent: they
 * report "the close frame had no code" and "the connection ended without
 * a close frame". */
enum {
	AW_WS_NORMAL = 1000,
	AW_WS_GOING_AWAY = 1001,      /* server shutdown, idle peer, cancelled handler */
	AW_WS_PROTOCOL_ERROR = 1002,
	AW_WS_UNSUPPORTED = 1003,     /* a message type the route does not accept */
	AW_WS_NO_STATUS = 1005,
	AW_WS_ABNORMAL = 1006,
	AW_WS_INVALID_DATA = 1007,    /* text that is not UTF-8 */
	AW_WS_POLICY = 1008,
	AW_WS_TOO_BIG = 1009,         /* over max_frame or max_message */
	AW_WS_INTERNAL_ERROR = 1011,  /* the handler failed */
	AW_WS_TRY_AGAIN_LATER = 1013,
};

/* A received message: data is valid until the next step of the messages
 * (or the next aw_ws_recv); a text message's data is valid UTF-8 and
 * NUL-terminated (len excludes the NUL). */
typedef struct aw_ws_msg {
	int type;                /* AW_WS_TEXT or AW_WS_BINARY */
	const char *data;
	size_t len;
} aw_ws_msg;

/* The route's options; zero fields take the defaults. */
typedef struct aw_ws_opts {
	/* Origin check, before the upgrade (403 and no upgrade when it
	 * fails): a NULL-terminated list of allowed origins, compared
	 * case-insensitively with the Origin header ("https://example.com",
	 * "http://localhost:8000"); a list holding "*" allows any. NULL (the
	 * default) allows a request without Origin (not a browser) and one
	 * whose Origin's host[:port] is the request's Host (same origin, as
	 * Go's gorilla/websocket). */
	const char *const *origins;
	/* Subprotocols the route speaks, NULL-terminated, in its order of
	 * preference: the first one of these that the client offers in
	 * Sec-WebSocket-Protocol is chosen and answered (aw_ws_protocol);
	 * none in common: the upgrade goes on without one (RFC 6455 4.2.2;
	 * the client decides whether to go on), unless require_protocol,
	 * then 400. */
	const char *const *protocols;
	bool require_protocol;
	unsigned accept;         /* AW_WS_TEXT | AW_WS_BINARY (0: both);
	                            another type closes with 1003 */
	size_t max_frame;        /* payload bytes per frame; default max_message */
	size_t max_message;      /* bytes per message, fragments together;
	                            default 1 MiB; beyond: closed with 1009 */
	aw_time ping_interval;   /* a ping after this long without a byte
	                            from the peer; default 20 s */
	aw_time idle_timeout;    /* the peer silent this long (no pong
	                            either): closed (1001 sent, 1006
	                            reported); default 60 s */
	aw_time send_timeout;    /* one send may wait this long for the peer
	                            to read (backpressure); default the
	                            app's send_idle (10 s); then the
	                            connection is dropped (-ETIMEDOUT) */
	aw_time close_timeout;   /* the close handshake waits this long for
	                            the peer's close frame; default 5 s */
} aw_ws_opts;

/* The handler: runs after the 101 was sent. ws and req (headers, path
 * parameters, query) stay valid until it returns: tasks that use the
 * socket must end before (spawn them in a task group inside the
 * handler, as examples/chat does). Its return value: 0 or an
 * error, as an HTTP handler's; a failure is logged, and the socket, if
 * still open, is closed with 1011 (1000 on success). Errors that only say
 * the peer left (-AW_ECLOSED, -EPIPE, -ECONNRESET from sends after the
 * socket ended) are not logged. */
typedef int (*aw_ws_handler)(aw_ws *ws, aw_http_request *req, void *ud);

/* A WebSocket route: GET path (a template like aw_app_route's) does the
 * opening handshake (RFC 6455 4.2): HTTP/1.1, Upgrade: websocket,
 * Connection: upgrade, Sec-WebSocket-Version: 13 (else 426 with
 * Sec-WebSocket-Version: 13), a Sec-WebSocket-Key of 16 bytes in base64
 * (else 400), the Origin check (403) and the subprotocol (400 only with
 * require_protocol); then 101 with Sec-WebSocket-Accept (SHA-1, base64)
 * and the chosen protocol, and fn runs. The request deadline does not
 * apply to it (a socket lives as long as its peer), nor does the
 * cancellation of a handler whose client half-closes (the socket sees
 * the end of the stream instead). opts is copied (the lists too); NULL:
 * the defaults. -EINVAL (NULL fn, bad template, idle_timeout not above
 * ping_interval), -ENOMEM; raised. */
int aw_app_ws(aw_app *app, const char *path, aw_ws_handler fn, void *ud, const aw_ws_opts *opts) AW_MUST_USE;

/* The socket's manager: enter does nothing (the socket is open), exit
 * closes it if it is still open: code 1000 when the block is left
 * without an error, 1001 when it is left cancelled (a server shutdown)
 * and 1011 for another error; then it waits up to close_timeout for the
 * peer's close frame. The exit lets the block's error go on. */
aw_mgr *aw_ws_mgr(aw_ws *ws);
/* The messages as an async iterator: AW_FOR(msg, aw_ws_messages(ws))
 * hands out aw_ws_msg *. The loop ends (normally, no error) when the
 * socket ends: the peer's close frame (answered), a protocol violation
 * (closed with its code), the end of the stream, an idle peer, a server
 * shutdown (1001), or aw_ws_close from another task; aw_ws_close_code
 * says which. It fails only with the task's cancellation (or a deadline
 * around it) and -AW_EBUSY_WAIT when another task is already reading.
 * Leaving the loop early does not close the socket (the manager does). */
aw_iter *aw_ws_messages(aw_ws *ws);
/* Waits: the next message, as one step of aw_ws_messages: 1 with *msg,
 * 0 once the socket has ended, or a negative error (raised): -ETIMEDOUT
 * at `deadline` (the socket stays open), -ECANCELED, -AW_EBUSY_WAIT. */
int aw_ws_recv(aw_ws *ws, aw_ws_msg **msg, aw_time deadline) AW_MUST_USE;
#define aw_ws_recv(ws, m, d) AW__AT((aw_ws_recv)((ws), (m), (d)))
/* Waits (backpressure): send one message (a single frame). Any number of
 * tasks may send on one socket: frames never interleave. It waits while
 * the connection's write buffer is full (the peer does not read), up to
 * send_timeout: then -ETIMEDOUT and the connection is dropped. Text must
 * be valid UTF-8 (-EILSEQ, nothing sent); type another than TEXT or
 * BINARY: -EINVAL. -AW_ECLOSED once a close frame was sent or received;
 * -EPIPE / -ECONNRESET when the connection broke. Raised. */
int aw_ws_send(aw_ws *ws, int type, const void *data, size_t len) AW_MUST_USE;
#define aw_ws_send(ws, t, d, n) AW__AT((aw_ws_send)((ws), (t), (d), (n)))
/* aw_ws_send of a NUL-terminated text. */
int aw_ws_send_text(aw_ws *ws, const char *text) AW_MUST_USE;
/* Waits: a ping with up to 125 bytes of payload (-EINVAL beyond); the
 * pong is consumed by the reading task (it counts as life, nothing more). */
int aw_ws_ping(aw_ws *ws, const void *data, size_t len) AW_MUST_USE;
/* Waits: the closing handshake: send a close frame with `code` (1000-
 * 4999 but 1004-1006, 1015; else -EINVAL) and `reason` (NULL or UTF-8
 * text of up to 123 bytes; -EINVAL otherwise), then wait up to
 * close_timeout for the peer's close frame — read by the task in
 * aw_ws_messages if one is, else here (messages that arrive meanwhile
 * are dropped). Returns 0 (also when the peer does not answer in time:
 * the connection ends anyway), or the cancel code. Once the socket has
 * ended: 0, nothing sent. Safe from any task. */
int aw_ws_close(aw_ws *ws, int code, const char *reason) AW_MUST_USE;
#define aw_ws_close(ws, c, r) AW__AT((aw_ws_close)((ws), (c), (r)))
/* 0 while open; then the code the socket ended with: the peer's close
 * code (1005 when its close frame had none), the code the server closed
 * with (a violation, aw_ws_close, shutdown 1001), or 1006 when the
 * connection ended without a close frame (dropped, idle, send timeout). */
int aw_ws_close_code(const aw_ws *ws);
/* True when the peer sent the close frame first (or dropped the
 * connection), false when the server began the close. Meaningful once
 * aw_ws_close_code is not 0. */
bool aw_ws_closed_by_peer(const aw_ws *ws);
/* The negotiated subprotocol, or NULL. */
const char *aw_ws_protocol(const aw_ws *ws);
/* The upgrade request (valid while the handler runs). */
aw_http_request *aw_ws_request(const aw_ws *ws);
/* A per-socket pointer for the program (NULL at first). */
void aw_ws_set_data(aw_ws *ws, void *data);
void *aw_ws_data(const aw_ws *ws);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
