// SPDX-License-Identifier: MIT
/* Tracing across real processes: curl sends a W3C traceparent to the
 * server; the handler sees the same trace id under a new span id and the
 * server's log has the span with its duration; malformed headers start a
 * new trace; a handler's client request carries the context to a second
 * server, and the ids chain (curl → server A → A's client span → server B). */
#include "harness.h"
#include "http_util.h"

#include <awith/client.h>
#include <awith/log.h>

#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"
#define TP_VALID "00-" TID "-" PID "-01"

/* "trace=<32 hex> span=<16 hex> same=<0|1> state=<tracestate>" */
static int whoami_text(aw_http_request *req, char *out, size_t len)
{
	const aw_trace *t = aw_http_request_trace(req);
	if (!t)
		return snprintf(out, len, "untraced");
	char tid[33], sid[17];
	aw_trace_hex(t->trace_id, 16, tid);
	aw_trace_hex(t->span_id, 8, sid);
	return snprintf(out, len, "trace=%s span=%s same=%d state=%s", tid, sid, aw_trace_current() == t,
			t->tracestate ? t->tracestate : "");
}

static int h_whoami(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	char out[1024];
	whoami_text(req, out, sizeof out);
	return aw_http_text(res, 200, out);
}

static int h_fail(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)res, (void)ud;
	return aw_raise(-EIO, "the backend is down");
}

static int downstream_port;   /* server B, set before server A forks */

/* Calls server B's /whoami with the session; answers "A: <whoami> | B: <B's body>".
 * ud non-NULL: with an explicit traceparent header of the caller's own. */
static int h_hop(aw_http_request *req, aw_http_response *res, void *ud)
{
	char url[64], mine[1024], out[2300];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/whoami", downstream_port);
	whoami_text(req, mine, sizeof mine);
	const char *explicit_hdrs[] = { "traceparent: 00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01", NULL };
	aw_client_session s;
	int rc = 0;
	AW_WITH(aw_client_session_init(&s, NULL)) {
		aw_client_response r;
		aw_client_request rq = { .url = url, .headers = ud ? explicit_hdrs : NULL };
		AW_WITH(aw_client_response_init(&r, &s, &rq)) {
			snprintf(out, sizeof out, "A: %s | B: %s", mine, aw_client_response_text(&r));
			rc = aw_http_text(res, 200, out);
		}
	}
	return rc < 0 ? rc : aw_error_pending();
}

static aw_app *make_app(void)
{
	/* Span records in the log, as logfmt, to the child's stderr (the
	 * test reads it). */
	aw_log_format_set(AW_LOG_LOGFMT);
	aw_log_level_set(AW_LOG_DEBUG);
	aw_app *app;
	if (aw_app_new(&app, "trace") < 0)
		return NULL;
	if (aw_app_route(app, "GET", "/whoami", h_whoami, NULL) < 0 ||
	    aw_app_route(app, "GET", "/users/{id}", h_whoami, NULL) < 0 ||
	    aw_app_route(app, "GET", "/fail", h_fail, NULL) < 0 ||
	    aw_app_route(app, "GET", "/hop", h_hop, NULL) < 0 ||
	    aw_app_route(app, "GET", "/hop-explicit", h_hop, (void *)1) < 0)
		return NULL;
	return app;
}

/* The value of `field` (up to a space) in the first log line that
 * contains every one of the NULL-terminated `needles`. */
static bool log_field(const char *log, const char *field, char *out, size_t len, ...)
{
	for (const char *p = log; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char line[2048];
		snprintf(line, sizeof line, "%.*s", (int)n, p);
		va_list ap;
		va_start(ap, len);
		bool all = true;
		const char *needle;
		while ((needle = va_arg(ap, const char *)))
			if (!strstr(line, needle))
				all = false;
		va_end(ap);
		char key[64];
		snprintf(key, sizeof key, " %s=", field);
		const char *f = strstr(line, key);
		if (all && f) {
			f += strlen(key);
			size_t k = strcspn(f, " ");
			snprintf(out, len, "%.*s", (int)k, f);
			return true;
		}
		p = nl ? nl + 1 : NULL;
	}
	return false;
}

static bool whoami_field(const char *body, const char *field, char *out, size_t len)
{
	char key[32];
	snprintf(key, sizeof key, "%s=", field);
	const char *f = strstr(body, key);
	if (!f)
		return false;
	f += strlen(key);
	size_t k = strcspn(f, " |");
	snprintf(out, len, "%.*s", (int)k, f);
	return true;
}

AW_TEST(server_continues_the_callers_trace_under_a_new_span_and_logs_it_with_its_duration)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char url[128], body[2048];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/users/42", s.port);
	CHECK_EQ(run_curl(body, sizeof body, "-s", "-H", "traceparent: " TP_VALID, "-H",
			  "tracestate: congo=t61rcWkgMzE, rojo=00f067aa0ba902b7", url, NULL),
		 0);
	CHECK_EQ(srv_stop(&s), 0);
	char trace[64], span[64], state[600];
	CHECK(whoami_field(body, "trace", trace, sizeof trace));
	CHECK(whoami_field(body, "span", span, sizeof span));
	CHECK(strcmp(trace, TID) == 0);
	CHECK_EQ(strlen(span), 16);
	CHECK(strcmp(span, PID) != 0);
	CHECK(strstr(body, "same=1") != NULL);     /* the handler's current context */
	CHECK(whoami_field(body, "state", state, sizeof state));
	CHECK(strcmp(state, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7") == 0);

	char needle[128], parent[64], dur[64], status[16];
	snprintf(needle, sizeof needle, "span_id=%s", span);
	const char *log = s.logdata;   /* kept until the next server stops */
	CHECK(log_field(log, "parent_id", parent, sizeof parent, "span=\"GET /users/{id}\" kind=server",
			"trace_id=" TID, needle, NULL));
	CHECK(strcmp(parent, PID) == 0);
	CHECK(log_field(log, "duration_ms", dur, sizeof dur, needle, NULL));
	CHECK(strchr(dur, '.') != NULL);
	CHECK(log_field(log, "status", status, sizeof status, needle, NULL));
	CHECK(strcmp(status, "200") == 0);
	/* the record is the request's: it carries the request id */
	char rid[64];
	CHECK(log_field(log, "request_id", rid, sizeof rid, needle, NULL));
	CHECK(strlen(rid) > 0);
}

AW_TEST(server_without_a_traceparent_starts_a_new_sampled_trace_with_no_parent)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char url[128], body[2048];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/whoami", s.port);
	CHECK_EQ(run_curl(body, sizeof body, "-s", "-H", "tracestate: congo=t61rcWkgMzE", url, NULL), 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/nowhere", s.port);
	char body2[512];
	CHECK_EQ(run_curl(body2, sizeof body2, "-s", url, NULL), 0);
	CHECK_EQ(srv_stop(&s), 0);
	char trace[64], span[64], needle[128], parent[64] = "x", sampled[8], state[64] = "x", kind[16];
	CHECK(whoami_field(body, "trace", trace, sizeof trace));
	CHECK(whoami_field(body, "span", span, sizeof span));
	CHECK_EQ(strlen(trace), 32);
	CHECK(whoami_field(body, "state", state, sizeof state));
	CHECK_EQ(state[0], 0);   /* tracestate without a traceparent is ignored */
	snprintf(needle, sizeof needle, "span_id=%s", span);
	const char *log = s.logdata;   /* kept until the next server stops */
	CHECK(log_field(log, "kind", kind, sizeof kind, needle, NULL));
	CHECK(strcmp(kind, "server") == 0);
	CHECK(!log_field(log, "parent_id", parent, sizeof parent, needle, NULL));   /* a root */
	CHECK(log_field(log, "sampled", sampled, sizeof sampled, needle, NULL));
	CHECK(strcmp(sampled, "true") == 0);
	/* no route: named by the method alone, with the 404 */
	char status[16];
	CHECK(log_field(log, "status", status, sizeof status, "span=GET kind=server", NULL));
	CHECK(strcmp(status, "404") == 0);
}

AW_TEST(server_starts_a_new_trace_for_each_malformed_traceparent)
{
	static const char *const bad[] = {
		"00-00000000000000000000000000000000-" PID "-01",      /* zero trace id */
		"00-" TID "-0000000000000000-01",                      /* zero parent id */
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01",      /* uppercase */
		"00-" TID "-" PID "-0A",                               /* uppercase flags */
		"00-4bf92f3577b34da6a3ce929d0e0e473z-" PID "-01",      /* not hex */
		"00-4bf92f3577b34da6a3ce929d0e0e473-" PID "-01",       /* trace id too short */
		"00-" TID "-00f067aa0ba902b-01",                       /* parent id too short */
		"00-" TID "-" PID "-1",                                /* flags too short */
		"00-" TID "-" PID "-01-extra",                         /* version 00 too long */
		"ff-" TID "-" PID "-01",                               /* version ff */
		"0-" TID "-" PID "-01",                                /* version too short */
		"00_" TID "_" PID "_01",                               /* separators */
		"garbage",
	};
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/whoami", s.port);
	char seen[sizeof bad / sizeof *bad + 1][40];
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char hdr[256], body[2048], trace[64], state[64] = "x";
		snprintf(hdr, sizeof hdr, "traceparent: %s", bad[i]);
		CHECK_EQ(run_curl(body, sizeof body, "-s", "-H", hdr, "-H", "tracestate: congo=t61rcWkgMzE", url, NULL), 0);
		if (!whoami_field(body, "trace", trace, sizeof trace) || strlen(trace) != 32 || !strcmp(trace, TID) ||
		    !strcmp(trace, "00000000000000000000000000000000") || !strcasecmp(trace, TID)) {
			aw_test_fail(__FILE__, __LINE__, "'%s' was taken: %s", bad[i], body);
			break;
		}
		CHECK(whoami_field(body, "state", state, sizeof state));
		CHECK_EQ(state[0], 0);   /* its tracestate goes with it */
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(seen[j], trace) != 0);   /* each one a new trace */
		snprintf(seen[i], sizeof seen[i], "%s", trace);
	}
	/* the header twice: which one is the caller's? neither */
	char body[2048], trace[64];
	CHECK_EQ(run_curl(body, sizeof body, "-s", "-H", "traceparent: " TP_VALID, "-H",
			  "traceparent: 00-" TID "-1111111111111111-01", url, NULL), 0);
	CHECK(whoami_field(body, "trace", trace, sizeof trace));
	CHECK(strcmp(trace, TID) != 0);
	/* a later version with more fields is read by the ones it shares */
	CHECK_EQ(run_curl(body, sizeof body, "-s", "-H", "traceparent: cc-" TID "-" PID "-01-more", url, NULL), 0);
	CHECK(whoami_field(body, "trace", trace, sizeof trace));
	CHECK(strcmp(trace, TID) == 0);
	CHECK_EQ(srv_stop(&s), 0);
	if (aw_test_failed())
		fprintf(stderr, "%s", s.logdata);
}

AW_TEST(server_span_of_a_failed_handler_records_500_and_its_error)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char url[128], body[512];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/fail", s.port);
	CHECK_EQ(run_curl(body, sizeof body, "-s", "-H", "traceparent: " TP_VALID, url, NULL), 0);
	CHECK_EQ(srv_stop(&s), 0);
	char status[16], err[16];
	const char *log = s.logdata;   /* kept until the next server stops */
	CHECK(log_field(log, "status", status, sizeof status, "span=\"GET /fail\"", NULL));
	CHECK(strcmp(status, "500") == 0);
	CHECK(log_field(log, "error_code", err, sizeof err, "span=\"GET /fail\"", NULL));
	CHECK_EQ(atoi(err), -EIO);
}

/* curl → A (/hop) → A's client → B (/whoami): one trace; B's server span
 * is a child of A's client span, which is a child of A's server span,
 * which is a child of curl's. */
AW_TEST(client_request_from_a_handler_carries_the_trace_and_the_ids_chain_across_two_servers)
{
	srv b, a;
	CHECK_EQ(srv_start(&b, make_app), 0);
	downstream_port = b.port;
	CHECK_EQ(srv_start(&a, make_app), 0);
	char url[128], body[4096];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/hop", a.port);
	CHECK_EQ(run_curl(body, sizeof body, "-s", "-H", "traceparent: " TP_VALID, "-H", "tracestate: congo=t61rcWkgMzE",
			  url, NULL), 0);
	CHECK_EQ(srv_stop(&a), 0);
	char *alog = srv_log(&a);   /* a copy: stopping b replaces a.logdata */
	CHECK_EQ(srv_stop(&b), 0);
	const char *blog = b.logdata;
	const char *bpart = strstr(body, "| B: ");
	if (!bpart) {
		free(alog);
		CHECK(bpart != NULL);
	}
	char a_trace[64], a_span[64], b_trace[64], b_span[64], b_state[64];
	bool ok = whoami_field(body, "trace", a_trace, sizeof a_trace) && whoami_field(body, "span", a_span, sizeof a_span) &&
		  whoami_field(bpart, "trace", b_trace, sizeof b_trace) && whoami_field(bpart, "span", b_span, sizeof b_span) &&
		  whoami_field(bpart, "state", b_state, sizeof b_state);
	char needle[128], client_span[64] = "", client_parent[64] = "", client_status[16] = "", b_parent[64] = "";
	if (ok) {
		snprintf(needle, sizeof needle, "parent_id=%s", a_span);
		log_field(alog, "span_id", client_span, sizeof client_span, "kind=client", needle, NULL);
		log_field(alog, "parent_id", client_parent, sizeof client_parent, "kind=client", NULL);
		log_field(alog, "status", client_status, sizeof client_status, "kind=client", NULL);
		snprintf(needle, sizeof needle, "span_id=%s", b_span);
		log_field(blog, "parent_id", b_parent, sizeof b_parent, "kind=server", needle, NULL);
	}
	free(alog);
	CHECK(ok);
	CHECK(strcmp(a_trace, TID) == 0);
	CHECK(strcmp(b_trace, TID) == 0);                 /* one trace across both */
	CHECK(strcmp(client_parent, a_span) == 0);        /* A's client span: child of A's server span */
	CHECK_EQ(strlen(client_span), 16);
	CHECK(strcmp(b_parent, client_span) == 0);        /* B's server span: child of A's client span */
	CHECK(strcmp(b_span, client_span) != 0);
	CHECK(strcmp(client_status, "200") == 0);
	CHECK(strcmp(b_state, "congo=t61rcWkgMzE") == 0); /* tracestate went along */
}

AW_TEST(client_sends_the_callers_own_traceparent_when_it_set_one)
{
	srv b, a;
	CHECK_EQ(srv_start(&b, make_app), 0);
	downstream_port = b.port;
	CHECK_EQ(srv_start(&a, make_app), 0);
	char url[128], body[4096];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/hop-explicit", a.port);
	CHECK_EQ(run_curl(body, sizeof body, "-s", "-H", "traceparent: " TP_VALID, url, NULL), 0);
	CHECK_EQ(srv_stop(&a), 0);
	CHECK_EQ(srv_stop(&b), 0);
	const char *bpart = strstr(body, "| B: ");
	CHECK(bpart != NULL);
	char b_trace[64], b_state[64];
	CHECK(whoami_field(bpart, "trace", b_trace, sizeof b_trace));
	CHECK(strcmp(b_trace, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") == 0);
	char needle[] = "parent_id=bbbbbbbbbbbbbbbb";
	char found[64];
	CHECK(log_field(b.logdata, "trace_id", found, sizeof found, needle, NULL));
	CHECK(whoami_field(bpart, "state", b_state, sizeof b_state));
	CHECK_EQ(b_state[0], 0);   /* not the context's tracestate: the caller's header stands alone */
}

/* A raw socket as the peer: the exact header bytes the client sends. */
typedef struct raw_peer {
	int lfd, port;
	char got[4096];
} raw_peer;

static int client_main(void *arg)
{
	raw_peer *p = arg;
	aw_trace remote;
	if (aw_trace_parse(&remote, TP_VALID, strlen(TP_VALID)) < 0)
		return -1;
	remote.tracestate = "rojo=00f067aa0ba902b7";
	aw_span parent;
	aw_span_begin(&parent, "job", AW_SPAN_INTERNAL, &remote, true);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/x", p->port);
	aw_client_session s;
	int rc = 0;
	AW_WITH(aw_client_session_init(&s, NULL)) {
		aw_client_response r;
		AW_WITH(aw_client_get_init(&r, &s, url)) {
			rc = aw_client_response_status(&r) == 204 ? 0 : -1;
		}
	}
	/* the parent's own id, for the check: written where got ends */
	char sid[17];
	aw_trace_hex(parent.ctx.span_id, 8, sid);
	aw_span_end(&parent, 0);
	snprintf(p->got + strlen(p->got), sizeof p->got - strlen(p->got), "\nPARENT %s", sid);
	return rc < 0 ? rc : aw_error_pending();
}

static void *raw_thread(void *arg)
{
	raw_peer *p = arg;
	int fd = accept(p->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	size_t n = 0;
	while (n < sizeof p->got - 1 && !strstr(p->got, "\r\n\r\n")) {
		ssize_t r = read(fd, p->got + n, sizeof p->got - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		p->got[n] = 0;
	}
	const char resp[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
	if (write(fd, resp, sizeof resp - 1) < 0)
		p->got[0] = 0;
	close(fd);
	return NULL;
}

AW_TEST(client_sends_traceparent_with_a_new_span_id_and_tracestate_to_a_raw_socket)
{
	raw_peer p;
	memset(&p, 0, sizeof p);
	p.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	CHECK_EQ(bind(p.lfd, (struct sockaddr *)&a, sizeof a), 0);
	CHECK_EQ(listen(p.lfd, 4), 0);
	socklen_t al = sizeof a;
	getsockname(p.lfd, (struct sockaddr *)&a, &al);
	p.port = ntohs(a.sin_port);
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, raw_thread, &p), 0);
	int rc = aw_run(client_main, &p);
	pthread_join(th, NULL);
	close(p.lfd);
	CHECK_EQ(rc, 0);
	const char *parent = strstr(p.got, "\nPARENT ");
	CHECK(parent != NULL);
	parent += 8;
	/* traceparent: 00-<same trace>-<a new span id, not the parent's>-01 */
	const char *tp = strcasestr(p.got, "\r\ntraceparent: 00-" TID "-");
	CHECK(tp != NULL);
	tp += strlen("\r\ntraceparent: 00-" TID "-");
	CHECK(strncmp(tp + 16, "-01\r\n", 5) == 0);
	CHECK(strncmp(tp, parent, 16) != 0);
	CHECK(strncmp(tp, PID, 16) != 0);
	CHECK(strcasestr(p.got, "\r\ntracestate: rojo=00f067aa0ba902b7\r\n") != NULL);
}

static int untraced_main(void *arg)
{
	raw_peer *p = arg;
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/x", p->port);
	aw_client_session s;
	int rc = 0;
	AW_WITH(aw_client_session_init(&s, NULL)) {
		aw_client_response r;
		AW_WITH(aw_client_get_init(&r, &s, url)) { rc = aw_client_response_status(&r) == 204 ? 0 : -1; }
	}
	return rc < 0 ? rc : aw_error_pending();
}

AW_TEST(client_outside_any_trace_sends_no_traceparent)
{
	raw_peer p;
	memset(&p, 0, sizeof p);
	p.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	CHECK_EQ(bind(p.lfd, (struct sockaddr *)&a, sizeof a), 0);
	CHECK_EQ(listen(p.lfd, 4), 0);
	socklen_t al = sizeof a;
	getsockname(p.lfd, (struct sockaddr *)&a, &al);
	p.port = ntohs(a.sin_port);
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, raw_thread, &p), 0);
	int rc = aw_run(untraced_main, &p);
	pthread_join(th, NULL);
	close(p.lfd);
	CHECK_EQ(rc, 0);
	CHECK(strstr(p.got, "GET /x") != NULL);
	CHECK(strcasestr(p.got, "traceparent") == NULL);
	CHECK(strcasestr(p.got, "tracestate") == NULL);
}
