/* SPDX-License-Identifier: MIT */
/*
 * awith/client.h — HTTP client session on libcurl's multi-socket API, driven
 * by the awith loop (aiohttp's ClientSession, in C).
 *
 *     aw_client_session s;
 *     AW_WITH(aw_client_session_init(&s, &(aw_client_opts){ .base_url = "http://127.0.0.1:8080" })) {
 *         aw_client_response r;
 *         AW_WITH(aw_client_get_init(&r, &s, "/users/1")) {
 *             printf("%d %s\n", aw_client_response_status(&r), aw_client_response_text(&r));
 *         }
 *     }
 *
 * A session owns one CURLM (the connection pool: keep-alive reuse, limits
 * on connections in total and per host), default headers, an optional base
 * URL and default timeouts. Its exit closes every connection.
 *
 * No extra threads: curl tells the session which sockets and which timeout
 * to watch (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION); the session
 * runs one small watcher task per socket (aw_fd_wait_any, then
 * curl_multi_socket_action) and one timer task, and wakes the task whose
 * transfer completed.
 *
 * A response is a manager: entering it performs the request and reads the
 * body whole (up to a size limit); its exit releases the transfer (the
 * connection goes back to the pool). Errors (returned negated and raised):
 *   -EINVAL           a bad request or option (the message says which)
 *   -ECONNREFUSED     nothing listens
 *   -AW_EDNS          the host name could not be resolved
 *   -ETIMEDOUT        the total timeout, the connect timeout (which also
 *                     covers waiting for a free connection slot) or the
 *                     read idle timeout passed (the message says which)
 *   -AW_ETOOLONG      the body is over the size limit
 *   -ELOOP            more redirects than the limit
 *   -AW_ETLS_VERIFY   the peer's certificate did not verify
 *   -AW_ETLS          another TLS failure
 *   -ECONNRESET       the server closed the connection early / sent nothing
 *   -EPROTO           a malformed response
 *   -EIO              any other transfer failure (message has curl's text)
 * and a streamed request body's source error as the source raised it.
 *
 * Proxies come from the usual environment variables, read by curl for each
 * transfer: http_proxy, HTTPS_PROXY (https_proxy), ALL_PROXY, and no_proxy
 * (NO_PROXY) for the hosts to reach directly; aw_client_opts.proxy
 * overrides them. HTTP/2 is used over TLS when the server offers it (ALPN),
 * and concurrent requests to the same host then share one connection
 * (multiplexing); plain http:// stays HTTP/1.1 unless asked for
 * (AW_CLIENT_HTTP2_PRIOR_KNOWLEDGE).
 *
 * A session or a response entered with the manual API (aw_enter) and never
 * exited is reported at loop end with where it was entered, and its
 * connections, transfers and memory are released then.
 */
#ifndef AWITH_CLIENT_H
#define AWITH_CLIENT_H

#include <awith/core.h>
#include <awith/io.h>   /* -AW_EDNS, -AW_ETLS, -AW_ETLS_VERIFY */

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every declaration from here to the matching pop is the public API: the
 * library is built with -fvisibility=hidden, so exactly these are exported. */
#pragma GCC visibility push(default)

struct json_t;   /* jansson's json_t */
struct aw_stream;  /* io.h */

/* ------------------------------------------------------------------------ */
/* Sessions: the connection pool and its defaults     aw_client_session(3) */

/* HTTP versions (aw_client_opts.http_version). */
enum {
	AW_CLIENT_HTTP_DEFAULT = 0,       /* HTTP/2 over TLS when the server offers
	                                     it, HTTP/1.1 otherwise */
	AW_CLIENT_HTTP1_1,                /* HTTP/1.1 only */
	AW_CLIENT_HTTP2_PRIOR_KNOWLEDGE,  /* HTTP/2 without asking first, also
	                                     for http:// (h2c) */
};

/* Safe defaults: a session never waits forever on a server that stalls.
 * A timeout left 0 (in aw_client_opts) takes these; aw_client_session_init
 * writes them into the session's opts, so s.opts shows what applies. Turn
 * one off explicitly with AW_NEVER (a negative timeout is -EINVAL). */
#define AW_CLIENT_DEFAULT_TIMEOUT         AW_SEC(300)  /* total, as aiohttp */
#define AW_CLIENT_DEFAULT_CONNECT_TIMEOUT AW_SEC(30)
#define AW_CLIENT_DEFAULT_READ_TIMEOUT    AW_SEC(60)   /* read idle */

typedef struct aw_client_opts {
	const char *base_url;          /* prefixed to request URLs that have no
	                                  scheme ("/x" -> base_url + "/x") */
	const char *const *headers;    /* default headers, "Name: value",
	                                  NULL-terminated; copied */
	long max_connections;          /* total open connections; 0: no limit */
	long max_host_connections;     /* per host; 0: no limit */
	aw_time timeout;               /* default total timeout per request
	                                  (duration); 0: AW_CLIENT_DEFAULT_TIMEOUT
	                                  (300 s); AW_NEVER: none */
	aw_time connect_timeout;       /* default connect timeout, counted from
	                                  the start of the request: it covers
	                                  waiting for a free connection slot
	                                  (the limits above), resolving and
	                                  connecting (TLS handshake included);
	                                  0: AW_CLIENT_DEFAULT_CONNECT_TIMEOUT
	                                  (30 s); AW_NEVER: none (curl's own
	                                  300 s for connecting still applies) */
	size_t max_body;               /* default body size limit; 0: 8 MiB */
	const char *ca_file;           /* CA bundle for TLS verification */
	bool insecure;                 /* turn TLS verification off (tests only) */
	int max_redirects;             /* follow up to this many; 0: default
	                                  (10); < 0: do not follow */
	aw_time read_timeout;          /* default read idle timeout: once the
	                                  connection is up, a request fails
	                                  with -ETIMEDOUT when no byte of the
	                                  response arrives (and none of a
	                                  streamed request body leaves) for this
	                                  long; 0: AW_CLIENT_DEFAULT_READ_TIMEOUT
	                                  (60 s); AW_NEVER: none */
	bool cookies;                  /* keep a cookie jar for the session's
	                                  life: cookies that responses set are
	                                  sent with later requests (off: none
	                                  are kept or sent) */
	const char *proxy;             /* NULL: from the environment (see
	                                  above); "": no proxy at all; else the
	                                  proxy URL for every request */
	int http_version;              /* AW_CLIENT_HTTP_* */
} aw_client_opts;

typedef struct aw_client aw_client;     /* internal state */

typedef struct aw_client_session {
	aw_mgr mgr;
	aw_client_opts opts;
	aw_client *impl;                /* set while entered */
} aw_client_session;

/* Prepare a session (allocates nothing); enter creates the pool, exit closes
 * every connection. opts may be NULL; its strings must outlive the block.
 * Timeouts left 0 are replaced by the AW_CLIENT_DEFAULT_* values in s->opts
 * (here and again at enter, for opts set after init). */
aw_mgr *aw_client_session_init(aw_client_session *s, const aw_client_opts *opts);

/* ------------------------------------------------------------------------ */
/* Requests and responses                            aw_client_response(3) */

/* A streamed request body's source: called from a task of the request's
 * own, it may wait (read a file, a socket, a queue). Fill buf with up to n
 * bytes and return how many (> 0), 0 at the end of the body, or a negative
 * error (raised): the request then fails with that error. */
typedef ssize_t (*aw_client_body_fn)(void *arg, void *buf, size_t n);

typedef struct aw_client_request {
	const char *method;             /* default "GET" ("POST" when a body is set) */
	const char *url;                /* absolute, or relative to base_url */
	const char *const *headers;     /* extra headers, NULL-terminated */
	const char *const *query;       /* query parameters: name, value, name,
	                                   value, ..., NULL; each URL-encoded and
	                                   appended to the URL with '?' (or '&'
	                                   when it has a query already). A name
	                                   without a value is -EINVAL */
	const void *body;               /* request body bytes (may contain NULs) */
	size_t body_len;                /* its length; for body_fn/body_stream:
	                                   the exact length if known (sent as
	                                   Content-Length), 0: unknown (sent
	                                   chunked) */
	const struct json_t *json;      /* or: a JSON body (Content-Type set) */
	aw_client_body_fn body_fn;      /* or: a body read from a source as it
	                                   is sent (backpressure: the source is
	                                   asked for more only when curl has sent
	                                   what it had) */
	void *body_arg;                 /* body_fn's argument */
	struct aw_stream *body_stream;  /* or: a body read from a stream to its
	                                   end (the stream stays the caller's) */
	aw_time timeout;                /* 0: the session's; AW_NEVER: none */
	aw_time connect_timeout;        /* 0: the session's; AW_NEVER: none */
	aw_time read_timeout;           /* 0: the session's; AW_NEVER: none */
	size_t max_body;                /* 0: the session's */
} aw_client_request;

typedef struct aw_client_xfer aw_client_xfer;   /* internal */

typedef struct aw_client_response {
	aw_mgr mgr;
	aw_client_session *session;
	aw_client_request req;          /* copied at init; strings borrowed */
	aw_client_xfer *x;              /* set while entered */
	bool stream;                    /* body streamed (aw_client_stream_init) */
} aw_client_response;

/* Prepare a request whose response is a manager: enter sends it and reads
 * the body whole (waits); exit releases the transfer. req's strings and
 * body are borrowed until enter returns; a body source (body_fn/arg,
 * body_stream) until the upload is over (at the latest when the response
 * block ends). At most one of body, json, body_fn and body_stream. A body
 * from a source is not resent on a redirect that keeps the method (307,
 * 308): that fails with -EIO. */
aw_mgr *aw_client_response_init(aw_client_response *r, aw_client_session *s, const aw_client_request *req);
/* Shorthands. */
aw_mgr *aw_client_get_init(aw_client_response *r, aw_client_session *s, const char *url);
aw_mgr *aw_client_post_json_init(aw_client_response *r, aw_client_session *s, const char *url,
			    const struct json_t *json);

/* The same, but enter waits only for the final response's status and
 * headers; the body is then read with aw_client_response_chunks. The
 * transfer pauses (curl stops reading the socket) while the task is not
 * asking for the next chunk: backpressure. Leaving the block before the
 * end of the body closes the connection instead of returning it to the
 * pool. */
aw_mgr *aw_client_stream_init(aw_client_response *r, aw_client_session *s, const aw_client_request *req);

/* ------------------------------------------------------------------------ */
/* Streamed response bodies                            aw_client_chunks(3) */

typedef struct aw_client_chunks {
	aw_iter iter;
	aw_client_response *r;
	aw_chunk chunk;
	bool taken;
} aw_client_chunks;

/* An async iterator over the body of a streamed response, in the chunks
 * the network delivers (aw_chunk *, core.h; offset counts the body bytes
 * before the chunk). The iterator comes first, as in every *_chunks call:
 *
 *     aw_client_chunks it;
 *     aw_chunk *ch;
 *     AW_FOR(ch, aw_client_response_chunks(&it, &r)) { fwrite(ch->data, 1, ch->len, out); }
 *
 * A transfer failure in the middle of the body ends the loop with the
 * error in flight (the codes listed at the top). */
aw_iter *aw_client_response_chunks(aw_client_chunks *it, aw_client_response *r);

/* ------------------------------------------------------------------------ */
/* Reading a response, inside its block          aw_client_response_status(3) */

int aw_client_response_status(const aw_client_response *r);
/* The last value of header `name` (case-insensitive) of the final response,
 * or NULL. Valid until the block ends. */
const char *aw_client_response_header(const aw_client_response *r, const char *name);
/* The body bytes (*len set); NUL-terminated too (so text works). Not for
 * streamed responses (NULL). */
const char *aw_client_response_body(const aw_client_response *r, size_t *len);
const char *aw_client_response_text(const aw_client_response *r);
/* The effective URL (after redirects, with the query parameters). */
const char *aw_client_response_url(const aw_client_response *r);
/* The HTTP version of the response: 10, 11, 20 or 30 (major * 10 + minor);
 * 0 outside of a response block. */
int aw_client_response_http_version(const aw_client_response *r);
/* Parse the body as JSON: *out is a new reference (json_decref it).
 * -EPROTO (raised, with jansson's message) if it is not JSON. */
int aw_client_response_json(const aw_client_response *r, struct json_t **out) AW_MUST_USE;
/* Raise-for-status: 0 for 1xx-3xx; for 4xx/5xx raises and returns
 * -EREMOTEIO with a message carrying the status and the start of the body
 * (up to 200 bytes). */
int aw_client_response_raise_for_status(const aw_client_response *r) AW_MUST_USE;

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* AWITH_CLIENT_H */
