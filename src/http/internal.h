/* SPDX-License-Identifier: MIT */
/*
 * Internal structures of the http layer (src/http/), shared by its files.
 *
 * One connection is one task (server.c) that owns an aw_http_conn on its
 * own stack: the llhttp parser, the request and response being served, the
 * output buffer, a per-request arena. The request's head stays in the
 * stream's read buffer (zero copy): header names, values and the target are
 * offsets from `base`, the first byte of the request line.
 */
#ifndef AW_HTTP_INTERNAL_H
#define AW_HTTP_INTERNAL_H

#include "awith/core.h"
#include "awith/ext.h"
#include "awith/io.h"
#include "../common/alloc.h"
#include "../common/util.h"
#include "../common/cnum.h"
#include "awith/http.h"
#include "awith/middleware.h"

#include <string.h>

#include <llhttp.h>

#define AW_HTTP_MAX_PARAMS 16
/* Chunk extensions: total bytes of names and values per message. */
#define AW_HTTP_CHUNK_EXT_MAX 1024
/* An unread request body up to this size is read and dropped after the
 * response so that the connection can be kept; a larger one closes it. */
#define AW_HTTP_DRAIN_MAX (256 * 1024)

typedef struct aw_http_conn aw_http_conn;
typedef struct aw_http_server aw_http_server;
typedef struct aw_route aw_route;
typedef struct aw_http_metrics aw_http_metrics;
typedef struct aw_metric aw_metric;

/* metrics.c: a route's (or the unmatched requests') series, found once
 * and kept: the duration histogram and, per (method, status) seen, the
 * request counter. Filled lock-free by whichever loop serves the route
 * first (a series pointer published with a compare-and-swap; the same
 * pointer for every loop, since the registry returns one series per
 * label values). */
#define AW_HTTP_MCACHE 16
typedef struct aw_http_mkey {
	uint32_t key;              /* method << 16 | status */
	aw_metric *requests;
} aw_http_mkey;
typedef struct aw_http_mcache {
	_Atomic(aw_metric *) duration;
	_Atomic(aw_http_mkey *) by_status[AW_HTTP_MCACHE];
} aw_http_mcache;
typedef struct aw_rnode aw_rnode;

/* The loop's clock, read at the top of its current iteration: close enough
 * for timeouts of seconds, and free (no clock_gettime per request). */
static inline aw_time aw__http_now(void)
{
	return aw_loop_now();
}

static inline aw_time aw__http_after(aw_time dur)
{
	aw_time now = aw__http_now();
	return dur >= AW_NEVER - now ? AW_NEVER : now + (dur < 0 ? 0 : dur);
}

/* ---- a bump allocator per request ---------------------------------------- */

typedef struct aw_arena_block {
	struct aw_arena_block *next;
	size_t cap;
	char data[];
} aw_arena_block;

typedef struct aw_arena {
	char *p;
	size_t left;
	aw_arena_block *blocks;   /* extra blocks, freed at reset */
	char first[2048] __attribute__((aligned(16)));
} aw_arena;

void aw__arena_init(aw_arena *a);
void aw__arena_reset(aw_arena *a);
/* 16-byte aligned; NULL when out of memory. */
void *aw__arena_alloc(aw_arena *a, size_t n);
char *aw__arena_strndup(aw_arena *a, const char *s, size_t n);

/* ---- growable byte buffers ------------------------------------------------ */

typedef struct aw_buf {
	char *p;
	size_t len, cap;
} aw_buf;

int aw__buf_reserve(aw_buf *b, size_t more);
static inline int aw__buf_put(aw_buf *b, const void *p, size_t n)
{
	if (AW_UNLIKELY(b->len + n > b->cap) && aw__buf_reserve(b, n))
		return -ENOMEM;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}
void aw__buf_free(aw_buf *b);

/* ---- requests ------------------------------------------------------------- */

/* A header: offsets from the request's base. */
typedef struct aw_http_hdr {
	uint32_t name, name_len, value, value_len;
} aw_http_hdr;

typedef struct aw_http_pparam {
	const char *name;      /* the template's name (owned by the route) */
	size_t name_len;
	char *value;           /* decoded, NUL-terminated, in the arena */
} aw_http_pparam;

typedef struct aw_http_qpair {
	char *name, *value;    /* decoded, NUL-terminated, in the arena */
} aw_http_qpair;

typedef struct aw_http_deprec aw_http_deprec;

enum { AW_BODY_NONE, AW_BODY_LENGTH, AW_BODY_CHUNKED };

struct aw_http_request {
	aw_http_conn *conn;
	aw_app *app;
	const char *base;          /* the head's first byte */
	char *head_copy;           /* the head moved out of the read buffer */
	uint32_t head_len;
	uint32_t method_off, method_len;
	uint32_t target_off, target_len;
	aw_str path;               /* inside the target (absolute-form: after the authority) */
	aw_str query;              /* after '?' (p NULL: none) */
	uint8_t method;            /* llhttp_method_t */
	uint8_t minor;
	bool keep_alive;           /* what the client asked for */
	bool is_head;
	bool expect_continue, continue_sent;
	aw_http_hdr *hdrs;
	uint32_t nhdrs;

	/* body */
	uint8_t body_mode;
	uint64_t content_length;   /* AW_BODY_LENGTH */
	uint64_t body_seen;        /* body bytes delivered so far */
	bool body_complete;        /* the message's last byte was parsed */
	bool body_loaded;          /* aw_http_body ran to the end */
	const char *body;
	size_t body_len;
	aw_buf body_buf;
	void *json;                /* json_t *, decref'd when done */

	/* routing */
	const aw_route *route;
	unsigned nparams;
	aw_http_pparam params[AW_HTTP_MAX_PARAMS];
	bool query_parsed;
	bool query_bad;
	unsigned nquery;
	aw_http_qpair *qpairs;

	/* dependencies */
	aw_exitstack deps;
	aw_http_deprec *deplist;

	aw_time started;
	aw_time deadline;
	const char *bad_request;   /* our own message for a 400 (static or arena) */

	/* tracing (trace.c) */
	aw_span span;              /* the server span, open while traced */
	bool traced;
	int trace_err;             /* the handler's error code, for the span */

	/* schema.c: validation problems and parsed input (in the arena) */
	struct aw_http_valid *valid;
};

/* ---- responses ------------------------------------------------------------ */

struct aw_jw {
	aw_http_response *res;
	aw_buf *out;
	int status;
	int err;
	int depth;
	bool after_key;
	uint64_t is_obj;      /* bit d: level d is an object */
	uint64_t has_item;    /* bit d: level d has an item already */
};

/* trailers.c: a response's trailer fields (aw_http_declare_trailer), in
 * the request's arena; res->tr is NULL until one is declared. */
#define AW_HTTP_TRAILERS_MAX 16
#define AW_HTTP_TRAILER_BYTES (8 * 1024)
typedef struct aw_http_trailer {
	const char *name;          /* as declared */
	const char *lname;         /* lowercased (HTTP/2) */
	const char *value;         /* NULL: not set, not sent */
	size_t nlen, vlen;
} aw_http_trailer;
typedef struct aw_http_trailers {
	unsigned n;
	size_t bytes;              /* names and values set, for the limit */
	aw_http_trailer v[AW_HTTP_TRAILERS_MAX];
} aw_http_trailers;

struct aw_http_response {
	aw_http_conn *conn;
	aw_http_request *req;
	int status;               /* sent (or being sent) */
	bool sent;                /* a complete response was queued */
	bool head_written;        /* bytes of this response left the server */
	bool close;               /* close the connection after it */
	bool user_date;
	bool user_server;
	bool in_json;             /* between json_begin and json_end */
	size_t body_bytes;        /* for the access log */
	aw_buf hdrs;              /* "Name: value\r\n"... set by the handler */
	aw_jw jw;
	/* Middleware (middleware.c): while `hold`, a complete response is
	 * kept here instead of being queued, so that the middleware exits can
	 * still change it; aw__http_release_held queues it. */
	bool hold;
	bool held;                /* a complete response is held */
	bool from_error;          /* ... made by the error mapping, from mapped_err */
	int mapped_err;
	const char *held_ctype;   /* in the arena */
	size_t held_ctype_len;
	aw_buf held_body;
	size_t hdrs_keep;         /* headers set before the handler ran (an error keeps them) */
	size_t out_mark;          /* c->out.len before this response's head */
	aw_http_trailers *tr;     /* trailers.c: declared trailers (NULL: none) */
	bool tr_open;             /* aw_http_stream's iterator runs: values may change */
};

/* ---- connections ------------------------------------------------------------ */

enum { PS_NONE, PS_FIELD, PS_VALUE };
enum { PHASE_HEAD, PHASE_BODY, PHASE_TRAILERS, PHASE_DONE };

struct aw_http_conn {
	aw_http_server *srv;       /* NULL in the fuzz harness */
	aw_app *app;
	const aw_http_limits *lim;
	aw_stream *s;              /* NULL in the fuzz harness */
	aw_task *task;
	aw_http_conn *prev, *next;

	llhttp_t parser;
	/* parsing */
	int phase;
	int pstate;                /* PS_*: which span the last callback extended */
	const char *cb_base;       /* the head's first byte, for span offsets */
	size_t fed;                /* bytes from the head's start given to llhttp */
	size_t line_end;           /* offset of the end of the request line (0: not yet) */
	aw_http_hdr *hdrs;
	uint32_t hdr_cap;
	uint32_t host_count;
	uint32_t host_idx;
	bool te_seen;
	bool te_not_chunked;       /* a Transfer-Encoding other than chunked */
	bool expect_other;         /* an Expect we do not know */
	bool version_done;
	uint32_t version_off, version_len;
	int pause_why;             /* PAUSE_*: why llhttp stopped */
	uint32_t trailer_count;
	size_t trailer_bytes;
	size_t ext_total, ext_name_len, ext_val_len;
	char scan_prev;            /* trailer scan: the byte before */
	int reject;                /* status of a rejection (0: none) */
	const char *reject_msg;

	/* body delivery (callbacks write here) */
	int sink;                  /* SINK_* */
	char *sink_buf;            /* SINK_COPY: destination */
	size_t sink_len, sink_cap;
	const char *span_p;        /* SINK_SPAN: the single span seen */
	size_t span_n;
	int span_count;
	size_t pos;                /* bytes after the stream's read position already parsed */
	uint64_t body_fed;         /* bytes of the body phase given to llhttp (framing included) */

	aw_http_request req;
	aw_http_response res;
	aw_buf out;                /* responses not yet written */
	aw_buf body;               /* scratch: the JSON writer's body */
	aw_arena arena;

	bool body_timeout;         /* the body stalled longer than body_idle */
	bool idle;                 /* between requests (may be cancelled to drain) */
	bool in_request;
	bool peer_gone;            /* the client closed while its handler ran: 499 */
	bool hup_seen;             /* the loop saw the peer close its side (the hook ran) */
	aw_scope *handler_scope;   /* while the handler runs: cancelled when the client goes */
	uint64_t requests;
	aw_time accepted;
	char peer[64];             /* the client's address (access log) */
	char request_id[132];      /* this request's id (log context, X-Request-ID) */
	bool tls;                  /* the handshake is done: the stream speaks TLS */
	char *peer_subject;        /* the verified client certificate's subject (malloc'd) */
	bool echo_request_id;      /* the client sent it: answer with it */
	const char *request_id_header; /* the header that echoes it (NULL: X-Request-ID) */
	int8_t peer_key_state;     /* peer_key: 0 not read yet, 1 set, -1 none (Unix socket) */
	uint8_t peer_key[16];      /* the client's address, IPv4 mapped (rate limit) */

	/* HTTP/2 (h2.c): h2 is set on a stream's own conn (its request and
	 * response; the response functions emit frames instead of HTTP/1.1
	 * bytes); h2c on the connection's conn while it speaks HTTP/2. */
	struct aw_h2_stream *h2;
	struct aw_h2 *h2c;
	struct aw_ws *ws;          /* ws.c: the WebSocket this connection became (while its handler runs) */
};

enum { SINK_NONE, SINK_COPY, SINK_ACCUM, SINK_SPAN, SINK_DISCARD };
enum { PAUSE_NONE, PAUSE_HEAD, PAUSE_LAST_CHUNK, PAUSE_DONE };

/* request.c: parsing with llhttp plus our checks. */
/* Reset the parser and state for the next request. */
void aw__http_conn_reset(aw_http_conn *c);
void aw__http_conn_setup(aw_http_conn *c, aw_app *app, const aw_http_limits *lim);
void aw__http_conn_free(aw_http_conn *c);
/* Feed the buffered bytes of the head (data..data+len is everything from
 * the head's first byte). Returns 1 when the head is complete (req is
 * filled in), 0 if more is needed, or a rejection status (>= 400) with
 * c->reject_msg. `eof`: no more bytes will come. */
int aw__http_feed_head(aw_http_conn *c, const char *data, size_t len);
/* Feed body bytes (at most len). *used counts the bytes parsed. Returns
 * 0 (more needed), 1 (message complete), or a rejection status. Body
 * bytes go to the sink set in c. */
int aw__http_feed_body(aw_http_conn *c, const char *data, size_t len, size_t *used);
/* The status to answer an llhttp error with. */
int aw__http_error_status(aw_http_conn *c, llhttp_errno_t e, const char *data, size_t len);
/* Finish the request after the head: target form, path and query. */
int aw__http_prepare_request(aw_http_conn *c);

/* router.c */
typedef struct aw_router {
	aw_rnode *root;
	size_t nroutes;
} aw_router;
void aw__router_free(aw_router *r);
int aw__router_add(aw_router *r, const char *method, const char *path, aw_http_handler fn, void *ud,
		   const aw_http_route_opts *opts);
/* Match req's path and method. Returns 0 with req->route and params set,
 * 404, 405 (allow filled with "GET, HEAD" etc.), or 400 (bad encoding). */
int aw__router_match(const aw_router *r, aw_http_request *req, char *allow, size_t allow_len);
/* Call fn for every route (in no particular order). */
void aw__router_each(const aw_router *r, void (*fn)(const aw_route *route, void *arg), void *arg);
struct aw_route {
	char *method;              /* "GET", ..., "*" */
	size_t mlen;
	char *path;                /* the template */
	aw_http_handler fn;
	void *ud;
	aw_http_route_opts opts;
	aw_http_mcache mcache;     /* metrics.c */
	char *names[AW_HTTP_MAX_PARAMS];
	unsigned nnames;
	aw_route *next;            /* other methods on the same node */
};
/* Percent-decode [s, s+n) into out (room for n+1); plus: '+' is a space.
 * Returns the length, or -1 for a bad escape or a NUL byte. */
ssize_t aw__http_pct_decode(const char *s, size_t n, char *out, bool plus);

/* response.c */
void aw__http_response_reset(aw_http_response *res);
/* Queue a complete response (head + body) in c->out. */
int aw__http_queue_response(aw_http_conn *c, int status, const char *ctype, size_t ctype_len,
			    const void *body, size_t len);
/* A rejection or error response with a JSON {"detail": msg}. */
int aw__http_queue_error(aw_http_conn *c, int status, const char *detail, const char *allow);
/* Queue only the head of a response whose body of `len` bytes the caller
 * writes itself after it (static files: appended to c->out, or sent with
 * aw_stream_sendfile after aw__http_flush). Marks the response sent. */
int aw__http_queue_head(aw_http_conn *c, int status, const char *ctype, uint64_t len);
/* Open `rel` under the directory rootfd (the path `root`), confined to it:
 * openat2 RESOLVE_BENEATH, or where it is missing (then *no_openat2 is set)
 * openat and a check of the opened file's real path. -1 with errno
 * (EXDEV or ELOOP: a step out of root). Blocking: call off the loop. */
int aw__http_open_under(int rootfd, const char *rel, const char *root, bool *no_openat2);
/* What a failed open of a file under a root answers: 404 (missing), 403
 * (a symlink out of the root, permission; *why says which), or 0 for an
 * error that is not the client's (the caller raises it). Shared by
 * aw_http_file_in and the static directories. */
int aw__http_open_status(int e, const char **why);
/* trailers.c: whether values were set, the head's "Trailer: a, b\r\n"
 * (its length, then written at o: returns the end), and the HTTP/1.1
 * end of a chunked body ("0\r\n", the fields, "\r\n") appended to b. */
bool aw__http_trailers_set(const aw_http_response *res);
size_t aw__http_trailer_header_len(const aw_http_response *res);
char *aw__http_trailer_header_put(const aw_http_response *res, char *o);
int aw__http_trailer_section(const aw_http_response *res, aw_buf *b);
/* mime.c: the content type for a file name by its extension. */
const char *aw__http_mime_type(const char *path, size_t len);
/* Write c->out to the stream. */
int aw__http_flush(aw_http_conn *c);
const char *aw__http_reason(int status);
/* "Date: ...\r\n" for now (cached per second). */
const char *aw__http_date_line(size_t *len);

/* app.c */
struct aw_app {
	char *name;
	aw_http_limits limits;
	aw_router router;
	aw_gen_fn lifespan;
	void *lifespan_arg;
	struct aw_hook { int (*fn)(aw_app *, void *); void *arg; } *startup, *shutdown;
	size_t nstartup, nshutdown;
	void *state;
	FILE *access_log;
	int access_format;          /* aw_access_log_format */
	FILE *error_log;
	aw_http_server *srv;        /* while serving */
	aw_signals *sig;            /* while serving */
	bool stop_requested;
	bool started;               /* the lifespan's startup completed */
	aw_http_metrics *metrics;   /* aw_app_metrics; NULL: off */
	int worker;                 /* worker index under aw_app_run, -1: none */
	int nworkers;               /* workers under aw_app_run (0: one process) */
	int supervisor;             /* the supervisor's pid (workers) */
	struct aw_app_debug *debug; /* aw_app_debug_page (debug.c); NULL: off */
	struct aw_static_mount *statics; /* aw_app_static (static.c), freed with the app */
	struct aw_app_tls *tls;     /* aw_app_tls (tls.c); NULL: off */
	/* health.c: readiness checks; draining: a shutdown began */
	struct aw_ready_check { char *name; aw_app_ready_fn fn; void *arg; } *checks;
	size_t nchecks;
	bool health_on;
	bool draining;
	/* handover.c: generations and inherited sockets */
	bool listener_shared;       /* the listener is shared with other
	                               processes: stopping must not shut it
	                               down, only stop accepting */
	bool handing_over;          /* stopping for a new generation */
	int started_fd;             /* worker -> supervisor: "I serve" (-1) */
	int ready_fd;               /* AWITH_READY_FD from the old generation (-1) */
	bool run_managed;           /* under aw_app_run (announces readiness) */
	char *pid_file;
	const int *gen_fds;         /* single process: the listening socket(s), */
	int gen_nfds;
	int gen_ntls;               /* the last gen_ntls of them the TLS port's */
	struct aw__mw_chain { struct aw_http_mw **v; size_t n; } mw;  /* aw_app_use (middleware.c) */
	struct aw_http_group *groups;   /* aw_app_group: owned */
	struct aw__errmap *errmap;      /* aw_app_error_status (errmap.c) */
	struct aw_ws_route *ws_routes; /* aw_app_ws (ws.c): the routes' options, freed with the app */
	struct aw_http_spec_route *spec_routes; /* aw_app_route_spec (schema.c) */
	struct aw_openapi *openapi; /* aw_app_openapi (openapi.c); NULL: off */
	aw_http2_opts h2;           /* aw_app_http2 (h2.c) */
};
/* health.c */
void aw__app_health_free(aw_app *app);
/* handover.c */
int aw__listen_fds(int *first, uint64_t *tls);
int aw__listen_socket(const char *host, int port, bool reuseport, int *fd_out, int *port_out);
int aw__handover_spawn(aw_app *app, const int *fds, int n, int ntls, pid_t *child, int *ready_rd);
void aw__generation_init(aw_app *app);
void aw__generation_ready(aw_app *app);
void aw__generation_exit(aw_app *app);
void aw__app_announce_started(aw_app *app);
int aw__handover_single(aw_app *app);
typedef struct aw__mw_chain aw__mw_chain;

/* middleware.c */
void aw__app_mw_free(aw_app *app);
/* Run the chain's enters, then inner(arg) (unless an enter answered or
 * failed), map a failure to a held response, run the exits LIFO with the
 * error in flight. Returns the error the request leaves with (in flight). */
int aw__mw_run(aw_http_conn *c, const aw__mw_chain *chain, int (*inner)(void *arg), void *arg);
/* Queue the held response, if any, and stop holding. */
void aw__http_release_held(aw_http_conn *c);
/* Add a header the library composed (name a token, value without control
 * characters: not checked again, unlike aw_http_set_header). */
int aw__http_header_put(aw_http_response *res, const char *name, size_t nlen, const char *value, size_t vlen);
/* Drop the produced response if none of it has left: false if it has. */
bool aw__http_response_retract(aw_http_conn *c);
/* The client's address as 16 bytes (cached per connection); false for a
 * Unix socket. */
bool aw__http_peer_key(aw_http_conn *c, uint8_t out[16]);
/* errmap.c: turn the request's failure `err` (e: the error, may be NULL)
 * into a held or queued error response, unless bytes of a response have
 * left (then the connection is closed). Returns the status. */
int aw__http_map_error(aw_http_conn *c, int err, const aw_error *e);
void aw__errmap_free(aw_app *app);
/* server.c: request ids. */
void aw__http_request_id_make(char *out);   /* 16 hex digits + NUL */
bool aw__http_request_id_ok(aw_str v);
void aw__http_request_id_set(aw_http_conn *c, const char *id, size_t len);
FILE *aw__app_log(const aw_app *app);
/* static.c: static directories. */
typedef struct aw_static_mount aw_static_mount;
void aw__static_free_all(aw_app *app);
/* A route of a static mount (left out of the OpenAPI document). */
bool aw__http_is_static_route(const aw_route *r);
/* schema.c: a route added with a spec is registered with
 * aw__http_spec_handler and one of these as its ud. */
struct aw_route_spec;
typedef struct aw_http_spec_route {
	struct aw_http_spec_route *next;
	aw_http_handler fn;
	void *ud;
	const struct aw_route_spec *spec;
} aw_http_spec_route;
int aw__http_spec_handler(aw_http_request *req, aw_http_response *res, void *ud);
void aw__http_spec_routes_free(aw_app *app);
/* The app's answer to -AW_EHTTP_VALIDATION: queue the 422 with the
 * request's recorded problems (aw_http_validation_detail); false when
 * there are none (then the caller answers as for any 422). */
bool aw__http_queue_validation(aw_http_conn *c);
/* The deepest nesting of [ and { in JSON text (strings skipped), stopping
 * as soon as it passes limit. */
size_t aw__json_depth(const char *p, size_t n, size_t limit);
/* openapi.c */
void aw__http_openapi_free(aw_app *app);
/* debug.c: the live ledger page. */
typedef struct aw_app_debug aw_app_debug;
void aw__app_debug_free(aw_app_debug *d);
/* A loopback (127.0.0.0/8, ::1, ::ffff:127.x) or Unix-socket address. */
struct sockaddr;
bool aw__http_addr_is_loopback(const struct sockaddr *sa);
/* Run the matched handler for a parsed request, with the deadline and
 * dependencies; queue or write the response. Returns 0, or a negative
 * code when the connection must close. */
int aw__app_dispatch(aw_http_conn *c);
/* Unwind the request's dependencies with `err` (after the response). */
void aw__app_deps_unwind(aw_http_request *req, int err);

/* trace.c: the request's server span. begin: after the head is parsed
 * (traceparent/tracestate read); route: named "METHOD template" once
 * routed; enter: make it the task's context (returns the previous one, to
 * put back with aw_trace_swap); end: record it with the response's
 * status. */
void aw__http_trace_begin(aw_http_conn *c);
void aw__http_trace_route(aw_http_request *r);
aw_trace *aw__http_trace_enter(aw_http_request *r);
void aw__http_trace_end(aw_http_conn *c);
/* metrics.c */
/* A request was answered (or rejected) with c->res.status: count it under
 * its route, method and status, and its duration since r->started (when
 * taken). */
void aw__http_metrics_request_done(aw_http_conn *c);
void aw__http_metrics_in_flight(aw_app *app, int delta);
void aw__http_metrics_connections(aw_app *app, int delta);
void aw__http_metrics_free(aw_app *app);
/* Workers: serve this worker's metrics to the other workers (a task on
 * a private socket) while the app serves. */
int aw__http_metrics_peer_start(aw_app *app, aw_group *g);
/* The supervisor: make / remove the directory of the workers' sockets. */
int aw__http_metrics_workers_prepare(aw_app *app);
void aw__http_metrics_workers_done(aw_app *app);
void aw__http_mcache_free(aw_http_mcache *mc);

/* ws.c: WebSocket routes. The route's handler does the upgrade and runs
 * the socket; the server drains a socket with going_away (close 1001: a
 * reader waiting for bytes is woken). */
struct aw_ws_route;
int aw__ws_route_handler(aw_http_request *req, aw_http_response *res, void *ud);
void aw__ws_routes_free(struct aw_ws_route *rt);
void aw__ws_going_away(aw_ws *ws);

/* server.c */
/* Open connections of one client address (max_connections_per_client). */
typedef struct aw_http_peer {
	struct aw_http_peer *next;
	uint8_t addr[16];          /* IPv4 as ::ffff:a.b.c.d */
	size_t count;
} aw_http_peer;
#define AW_HTTP_PEER_BUCKETS 1024

/* One listening socket of the server, with its own accept loop. */
typedef struct aw_http_lsock {
	aw_listener *l;
	bool tls;                  /* connections start with a TLS handshake */
	bool accepting;
	aw_scope accept_scope;
	aw_http_server *srv;
} aw_http_lsock;
#define AW_HTTP_MAX_LISTENERS 16

struct aw_http_server {
	aw_app *app;
	aw_http_lsock *ls;         /* the listeners (the caller's array) */
	size_t nls;
	aw_http_conn *conns;
	size_t nconns;             /* connection tasks alive (started or not) */
	bool draining;
	aw_time first_request_end; /* draining: until when a connection with no request yet may bring one */
	bool stop;
	aw_event drained;          /* set when nconns drops to 0 while draining */
	aw_scope *grace;           /* while waiting for busy connections */
	bool hurry;                /* a second signal: no more grace */
	aw_error *error;           /* why accepting stopped, if not asked to */
	aw_http_peer **peers;      /* AW_HTTP_PEER_BUCKETS, when the per-client cap is on */
	int spare_fd;              /* reserved for refusing clients when out of fds (-1: none) */
	uint64_t refused;          /* connections refused over a cap or out of fds */
	uint64_t refused_logged;
	aw_time refused_log_at;    /* refusals are logged at most once a second */
};
/* Accept on every listener until stopped (or one fails), then drain the
 * connections. */
int aw__http_server_run(aw_app *app, aw_http_lsock *ls, size_t n);
void aw__http_server_stop(aw_http_server *srv);
/* The client of c closed its side while a handler runs: cancel the
 * handler (c->handler_scope) unless its route opted out, its body is still
 * unread (its reads see the end), or later pipelined requests are waiting.
 * Called by the fd's hup hook, and when a handler starts or a body ends
 * after the hup was seen. */
void aw__http_conn_check_peer(aw_http_conn *c);
/* Cancel the connections still busy now, without waiting for the grace. */
void aw__http_server_hurry(aw_http_server *srv);

/* A parsed request's bookkeeping around its dispatch, shared by HTTP/1.1
 * (handle_request) and HTTP/2 streams (h2.c): begin takes the start time,
 * the request id and the in-flight gauge; end writes the access record
 * (proto "HTTP/2.0" for a stream), counts the metrics, ends the span and
 * drops the request id. */
void aw__http_request_begin(aw_http_conn *c);
void aw__http_request_end(aw_http_conn *c);

/* h2.c: HTTP/2. */
void aw__http2_defaults(aw_http2_opts *o);
static inline bool aw__http_h2_enabled(const aw_app *app) { return app->h2.enabled; }
/* The client opened c with the HTTP/2 connection preface (h2c prior
 * knowledge; still unread in c->s), or ALPN chose "h2": serve the
 * connection as HTTP/2 until it ends. Returns when every stream's task has
 * ended; the caller closes c->s. */
void aw__http_h2_serve(aw_http_conn *c);
/* Wake the connection's task (shutdown began: send GOAWAY now, or, for
 * a connection that has not opened a stream yet, once its first stream
 * came or srv->first_request_end passed). */
void aw__http_h2_kick(aw_http_conn *c);
/* An HTTP/2 connection that has not opened a stream yet (nothing
 * processed, none running): at shutdown it gets the first-request window
 * an HTTP/1 connection gets (server.c). */
bool aw__http_h2_awaits_first_stream(const aw_http_conn *c);
/* A stream's response (response.c calls these when c->h2 is set). */
int aw__h2_respond(aw_http_conn *c, int status, const char *ctype, size_t ctype_len, const void *body, size_t len);
/* The head of a streamed response: content length known or not;
 * body_follows false ends the stream with the head. */
int aw__h2_head(aw_http_conn *c, int status, const char *ctype, bool known, uint64_t len, bool body_follows);
/* Waits: queue body bytes (DATA under the client's window). */
int aw__h2_write(aw_http_conn *c, const void *p, size_t n);
/* Waits until the queued body bytes have left. */
int aw__h2_flush(aw_http_conn *c);
/* The request body (server.c's aw_http_body / aw_http_body_read). */
ssize_t aw__h2_body_read(aw_http_conn *c, void *buf, size_t n);
int aw__h2_body_all(aw_http_conn *c);
/* tls.c: HTTPS. */
/* Serve a new connection: for a TLS listener, the handshake first (bounded
 * by the handshake timeout; a failure is counted, logged rate-limited, and
 * the connection given up: returns with nothing served); then HTTP/2 if
 * ALPN selected "h2" and the app serves it, else serve_h1(c). */
void aw__http_conn_serve(aw_http_conn *c, bool tls, void (*serve_h1)(aw_http_conn *c));
/* Before serving: make sure the TLS context's ALPN list matches what the
 * app serves now (HTTP/2 may have been turned on after aw_app_tls). */
int aw__http_tls_prepare(aw_app *app);
/* SIGHUP in a serving process (app.c's signal watcher). */
void aw__http_tls_on_sighup(aw_app *app);
/* The supervisor (no loop): reload its own copy, for the workers it will
 * fork; failures are logged. */
void aw__http_tls_reload_supervisor(aw_app *app);
void aw__http_tls_free(aw_app *app);
/* The TLS listener's address under aw_app_run. */
const char *aw__http_tls_host(const aw_app *app);
int aw__http_tls_port(const aw_app *app);
void aw__http_tls_set_port(aw_app *app, int port);

/* Log one line (with the app's name) and optionally an error. */
void aw__http_log_error(const aw_app *app, const aw_error *e, const char *fmt, ...) AW_PRINTF(3, 4);
/* The same for a message that can come once per request or connection (a
 * failed handler, a failed accept): rate-limited per call site
 * (aw_log_allow; "awith http [app]: N similar messages suppressed"). */
void aw__http_log_error_site(aw_log_site *site, const aw_app *app, const aw_error *e, const char *fmt, ...)
	AW_PRINTF(4, 5);
#define aw__http_log_limited(app, e, ...) aw__http_log_error_site(AW_LOG_SITE, (app), (e), __VA_ARGS__)

#endif
