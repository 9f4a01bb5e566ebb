/* SPDX-License-Identifier: MIT */
/*
 * The live ledger page (aw_app_debug_page): an opt-in route that serves one
 * HTML page (src/http/debug_page.html, embedded at build time by
 * embed_text.py) and the JSON it polls every second: every task of the
 * serving loop with where it waits and for how long, what it holds (entered
 * where, since when), the recent slow steps and deadlock reports, the
 * loop's gauges and the registered gauge sources (pg pools).
 *
 * The JSON is written in one go from aw_ledger_visit's callbacks into the
 * response's JSON writer, which only appends to a buffer: nothing waits
 * between the first task and the last, so the picture is consistent.
 *
 * Access: loopback peers only unless opts->any_peer (others get 404: the
 * page does not say it exists), and the token when one is set (401 with
 * WWW-Authenticate: Bearer). Both checks run before anything is written.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* debug_page.html's bytes (generated debug_page_html.c, embed_text.py). */
extern const char aw__debug_page_html[];
extern const size_t aw__debug_page_html_len;

struct aw_app_debug {
	char *page_path;   /* prefix */
	char *json_path;   /* prefix "/ledger.json" */
	char *events_path; /* prefix "/events" (server-sent events) */
	char *token;       /* NULL: none */
	bool any_peer;
};

void aw__app_debug_free(aw_app_debug *d)
{
	if (!d)
		return;
	free(d->page_path);
	free(d->json_path);
	free(d->events_path);
	free(d->token);
	free(d);
}

bool aw__http_addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_UNIX)
		return true;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}

static bool peer_is_loopback(const aw_http_request *req)
{
	if (!req->conn || !req->conn->s)
		return false;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getpeername(aw_stream_fd(req->conn->s), (struct sockaddr *)&ss, &sl) != 0)
		return false;
	return aw__http_addr_is_loopback((const struct sockaddr *)&ss);
}

/* Equal without an early exit (the time does not tell how much matched). */
static bool same_secret(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	unsigned char diff = alen != blen;
	for (size_t i = 0; i < alen; i++)
		diff |= (unsigned char)(a[i] ^ b[i % (blen ? blen : 1)]);
	return diff == 0;
}

static bool token_ok(aw_http_request *req, const char *token)
{
	aw_str h = aw_http_header(req, "Authorization");
	if (h.p && h.len > 7 && !strncasecmp(h.p, "Bearer ", 7) && same_secret(h.p + 7, h.len - 7, token))
		return true;
	const char *q = NULL;
	if (aw_http_query(req, "token", &q) < 0) {
		aw_error_clear();   /* a malformed query is a wrong token, not a 400 */
		return false;
	}
	return q && same_secret(q, strlen(q), token);
}

/* 0 when the request may see the page; else the response was sent (the
 * handler returns what this returns: 0, or the send's error). *done set. */
static int check_access(const aw_app_debug *d, aw_http_request *req, aw_http_response *res, bool *done)
{
	*done = true;
	if (!d->any_peer && !peer_is_loopback(req))
		return aw_http_send(res, 404, "application/json", "{\"detail\":\"Not Found\"}", 22);
	if (d->token && !token_ok(req, d->token)) {
		int rc = aw_http_set_header(res, "WWW-Authenticate", "Bearer realm=\"awith debug\"");
		if (rc < 0)
			return rc;
		return aw_http_text(res, 401, "a token is required: Authorization: Bearer TOKEN or ?token=TOKEN\n");
	}
	*done = false;
	return 0;
}

static int no_store(aw_http_response *res)
{
	int rc = aw_http_set_header(res, "Cache-Control", "no-store");
	if (!rc)
		rc = aw_http_set_header(res, "X-Content-Type-Options", "nosniff");
	return rc;
}

static int page_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	const aw_app_debug *d = ud;
	bool done;
	int rc = check_access(d, req, res, &done);
	if (done)
		return rc;
	if ((rc = no_store(res)) < 0)
		return rc;
	/* No external resources, no inline event handlers: the CSP says so. */
	rc = aw_http_set_header(res, "Content-Security-Policy",
				"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
				"connect-src 'self'; img-src data:");
	if (rc < 0)
		return rc;
	return aw_http_send(res, 200, "text/html; charset=utf-8", aw__debug_page_html, aw__debug_page_html_len);
}

/* ---- the JSON -------------------------------------------------------------------- */

typedef struct json_ctx {
	aw_jw *w;
	bool in_task;          /* a task object (and its holds array) is open */
	bool orphans_open;     /* the "orphans" array is open */
	bool events_open;
	bool gauges_open;
	unsigned source;       /* the gauge source whose object is open */
	bool source_open;
} json_ctx;

/* Milliseconds, to 0.01 ms (the page shows at most that). */
static double ms(aw_time t) { return (double)(t / 10000) / 100.0; }

/* The JSON writer refuses invalid UTF-8 (the whole response would fail);
 * a task name cut at 31 bytes may end inside a character, and describe()
 * lines and file names are whatever the program made them. Such a string
 * goes out with its non-ASCII bytes as '?'. */
static bool utf8_valid(const unsigned char *p)
{
	while (*p) {
		unsigned c = *p++;
		int n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 && c >= 0xc2 ? 1 : (c & 0xf0) == 0xe0 ? 2
			: (c & 0xf8) == 0xf0 && c <= 0xf4 ? 3 : -1;
		if (n < 0)
			return false;
		for (int i = 0; i < n; i++)
			if ((*p++ & 0xc0) != 0x80)
				return false;
	}
	return true;
}

static void put_str(aw_jw *w, const char *s)
{
	if (!s)
		s = "";
	if (utf8_valid((const unsigned char *)s)) {
		aw_jw_string(w, s);
		return;
	}
	char buf[512];
	size_t n = 0;
	for (; s[n] && n < sizeof buf - 1; n++)
		buf[n] = (unsigned char)s[n] < 0x80 ? s[n] : '?';
	aw_jw_string_len(w, buf, n);
}

static void put_loc(aw_jw *w, const char *key, const aw_loc *loc)
{
	aw_jw_key(w, key);
	if (!loc || !loc->file) {
		aw_jw_null(w);
		return;
	}
	aw_jw_object(w);
	aw_jw_key(w, "file");
	put_str(w, loc->file);
	aw_jw_key(w, "line");
	aw_jw_int(w, loc->line);
	aw_jw_key(w, "func");
	put_str(w, loc->func ? loc->func : "");
	aw_jw_object_end(w);
}

static void close_task(json_ctx *j)
{
	if (j->in_task) {
		aw_jw_array_end(j->w);   /* holds */
		aw_jw_object_end(j->w);  /* the task */
		j->in_task = false;
	}
}

static void on_loop(void *ctx, const aw_loop_gauges *g)
{
	json_ctx *j = ctx;
	aw_jw *w = j->w;
	aw_jw_key(w, "pid");
	aw_jw_int(w, g->pid);
	aw_jw_key(w, "loop");
	aw_jw_object(w);
	aw_jw_key(w, "tasks");
	aw_jw_int(w, (long long)g->tasks);
	aw_jw_key(w, "running");
	aw_jw_int(w, (long long)g->running);
	aw_jw_key(w, "ready");
	aw_jw_int(w, (long long)g->ready);
	aw_jw_key(w, "waiting");
	aw_jw_int(w, (long long)g->waiting);
	aw_jw_key(w, "manual");
	aw_jw_int(w, (long long)g->manual);
	aw_jw_key(w, "switches");
	aw_jw_int(w, (long long)g->switches);
	aw_jw_key(w, "slow_steps");
	aw_jw_int(w, (long long)g->slow_steps);
	aw_jw_key(w, "thread_jobs");
	aw_jw_int(w, (long long)g->thread_jobs);
	aw_jw_object_end(w);
	aw_jw_key(w, "tasks");
	aw_jw_array(w);
}

static void on_task(void *ctx, const aw_task_info *t)
{
	json_ctx *j = ctx;
	aw_jw *w = j->w;
	close_task(j);
	aw_jw_object(w);
	aw_jw_key(w, "id");
	aw_jw_int(w, (long long)t->id);
	aw_jw_key(w, "name");
	put_str(w, t->name);
	aw_jw_key(w, "state");
	put_str(w, t->state);
	put_loc(w, "where", t->where);
	aw_jw_key(w, "waiting_ms");
	aw_jw_double(w, ms(t->waiting));
	aw_jw_key(w, "cancelled");
	aw_jw_bool(w, t->cancelled);
	aw_jw_key(w, "holds");
	aw_jw_array(w);
	j->in_task = true;
}

static void on_hold(void *ctx, const aw_task_info *t, const aw_hold_info *h)
{
	json_ctx *j = ctx;
	aw_jw *w = j->w;
	if (!t && !j->orphans_open) {
		close_task(j);
		aw_jw_array_end(w);   /* tasks */
		aw_jw_key(w, "orphans");
		aw_jw_array(w);
		j->orphans_open = true;
	}
	aw_jw_object(w);
	aw_jw_key(w, "what");
	put_str(w, h->what);
	aw_jw_key(w, "detail");
	put_str(w, h->detail);
	put_loc(w, "at", h->loc);
	aw_jw_key(w, "age_ms");
	aw_jw_double(w, ms(h->age));
	aw_jw_key(w, "manual");
	aw_jw_bool(w, h->manual);
	aw_jw_object_end(w);
}

/* After the tasks and holds: make sure "tasks" and "orphans" are closed. */
static void end_ledger(json_ctx *j)
{
	if (j->orphans_open || j->events_open || j->gauges_open)
		return;
	close_task(j);
	aw_jw_array_end(j->w);   /* tasks */
	aw_jw_key(j->w, "orphans");
	aw_jw_array(j->w);
	j->orphans_open = true;
}

static void on_event(void *ctx, const aw_loop_event *e)
{
	json_ctx *j = ctx;
	aw_jw *w = j->w;
	if (!j->events_open) {
		end_ledger(j);
		aw_jw_array_end(w);   /* orphans */
		aw_jw_key(w, "events");
		aw_jw_array(w);
		j->events_open = true;
	}
	aw_jw_object(w);
	aw_jw_key(w, "kind");
	put_str(w, e->kind == AW_LOOP_EVENT_DEADLOCK ? "deadlock" : "slow step");
	aw_jw_key(w, "ago_ms");
	aw_jw_double(w, ms(e->ago));
	aw_jw_key(w, "duration_ms");
	aw_jw_double(w, ms(e->duration));
	aw_jw_key(w, "task");
	put_str(w, e->task);
	put_loc(w, "resumed_at", e->resumed_at);
	put_loc(w, "waits_at", e->waits_at);
	aw_jw_key(w, "text");
	put_str(w, e->text);
	aw_jw_object_end(w);
}

static void end_events(json_ctx *j)
{
	if (j->events_open || j->gauges_open)
		return;
	end_ledger(j);
	aw_jw_array_end(j->w);   /* orphans */
	aw_jw_key(j->w, "events");
	aw_jw_array(j->w);
	j->events_open = true;
}

static void on_gauge(void *ctx, unsigned source, const char *source_name, const char *name, double value)
{
	json_ctx *j = ctx;
	aw_jw *w = j->w;
	if (!j->gauges_open) {
		end_events(j);
		aw_jw_array_end(w);   /* events */
		aw_jw_key(w, "gauges");
		aw_jw_array(w);
		j->gauges_open = true;
	}
	if (!j->source_open || j->source != source) {
		if (j->source_open) {
			aw_jw_object_end(w);   /* values */
			aw_jw_object_end(w);   /* the source */
		}
		aw_jw_object(w);
		aw_jw_key(w, "source");
		put_str(w, source_name);
		aw_jw_key(w, "index");
		aw_jw_int(w, source);
		aw_jw_key(w, "values");
		aw_jw_object(w);
		j->source = source;
		j->source_open = true;
	}
	aw_jw_key(w, name);
	aw_jw_double(w, value);
}

static void end_gauges(json_ctx *j)
{
	if (!j->gauges_open) {
		end_events(j);
		aw_jw_array_end(j->w);   /* events */
		aw_jw_key(j->w, "gauges");
		aw_jw_array(j->w);
		j->gauges_open = true;
	}
	if (j->source_open) {
		aw_jw_object_end(j->w);
		aw_jw_object_end(j->w);
		j->source_open = false;
	}
	aw_jw_array_end(j->w);   /* gauges */
}

/* The whole ledger.json object, from one aw_ledger_visit walk (nothing
 * waits in between). Returns 0 or -ESRCH (no loop). */
static int write_ledger(aw_jw *w, const char *app, const char *served_by)
{
	json_ctx j = { .w = w };
	aw_jw_object(w);
	aw_jw_key(w, "app");
	put_str(w, app);
	aw_jw_key(w, "served_by");
	put_str(w, served_by);
	/* The walk: loop gauges first (it opens "tasks"), then the rest. */
	aw_ledger_visitor v = {
		.ctx = &j,
		.loop = on_loop,
		.task = on_task,
		.hold = on_hold,
		.event = on_event,
		.gauge = on_gauge,
	};
	int rc = aw_ledger_visit(&v);
	if (rc < 0)
		return rc;
	end_gauges(&j);
	aw_jw_object_end(w);
	return 0;
}

static int json_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	const aw_app_debug *d = ud;
	bool done;
	int rc = check_access(d, req, res, &done);
	if (done)
		return rc;
	if ((rc = no_store(res)) < 0)
		return rc;
	aw_jw *w = aw_http_json_begin(res, 200);
	rc = write_ledger(w, req->app ? req->app->name : "", aw_task_name(aw_task_current()));
	if (rc < 0)
		return aw_raise(rc, "aw_ledger_visit: no loop");
	return aw_http_json_end(w);
}

/* ---- server-sent events: the same JSON, pushed every second ------------------- */

typedef struct sse_state {
	aw_http_request *req;
	aw_buf buf;
	aw_chunk chunk;
} sse_state;

/* One event per second until the client leaves (the write fails, and the
 * yield hands that back) or the request's deadline ends the stream (the
 * browser's EventSource reconnects after `retry`). */
static int sse_gen(aw_gen *g, void *arg)
{
	sse_state *st = arg;
	const char *app = st->req->app ? st->req->app->name : "";
	for (int64_t n = 0;; n++) {
		st->buf.len = 0;
		static const char head[] = "retry: 1000\ndata: ";
		if (aw__buf_put(&st->buf, head, sizeof head - 1))
			return aw_raise(-ENOMEM, "debug events: out of memory");
		aw_jw w = { .out = &st->buf };
		int rc = write_ledger(&w, app, aw_task_name(aw_task_current()));
		if (rc < 0)
			return aw_raise(rc, "aw_ledger_visit: no loop");
		if (w.err)
			return w.err;   /* raised by the writer */
		if (aw__buf_put(&st->buf, "\n\n", 2))
			return aw_raise(-ENOMEM, "debug events: out of memory");
		st->chunk = (aw_chunk){ st->buf.p, st->buf.len, n };
		int err = aw_gen_yield(g, &st->chunk);
		if (err)
			return err == -AW_ECLOSED ? 0 : err;
		if ((rc = aw_sleep(AW_SEC(1))) < 0)
			return rc;
	}
}

static int events_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	const aw_app_debug *d = ud;
	bool done;
	int rc = check_access(d, req, res, &done);
	if (done)
		return rc;
	if ((rc = no_store(res)) < 0)
		return rc;
	sse_state st = { .req = req };
	aw_gen_iter gi;
	rc = aw_http_stream(res, 200, "text/event-stream", aw_gen_iter_init(&gi, "debug events", sse_gen, &st));
	aw__buf_free(&st.buf);
	return rc;
}

/* ---- registration ------------------------------------------------------------------- */

static char *concat(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = aw__malloc(la + lb + 1);
	if (s) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb + 1);
	}
	return s;
}

int aw_app_debug_page(aw_app *app, const char *prefix, const aw_app_debug_opts *opts)
{
	if (!app)
		return aw_raise(-EINVAL, "aw_app_debug_page: no app");
	if (app->debug)
		return aw_raise(-EEXIST, "aw_app_debug_page: the page is on already (at %s)", app->debug->page_path);
	if (!prefix || prefix[0] != '/' || strchr(prefix, '{') || strchr(prefix, '?') ||
	    (strlen(prefix) > 1 && prefix[strlen(prefix) - 1] == '/'))
		return aw_raise(-EINVAL, "aw_app_debug_page: the path must start with '/', not end with one, "
					 "and have no {param} or '?' (e.g. \"/debug/awith\")");
	if (opts && opts->token && !*opts->token)
		return aw_raise(-EINVAL, "aw_app_debug_page: an empty token (NULL for none)");
	aw_app_debug *d = aw__calloc(1, sizeof *d);
	if (!d)
		return aw_raise(-ENOMEM, "aw_app_debug_page: out of memory");
	d->page_path = aw__strdup(prefix);
	d->json_path = concat(strcmp(prefix, "/") ? prefix : "", "/ledger.json");
	d->events_path = concat(strcmp(prefix, "/") ? prefix : "", "/events");
	d->token = opts && opts->token ? aw__strdup(opts->token) : NULL;
	d->any_peer = opts && opts->any_peer;
	if (!d->page_path || !d->json_path || !d->events_path || (opts && opts->token && !d->token)) {
		aw__app_debug_free(d);
		return aw_raise(-ENOMEM, "aw_app_debug_page: out of memory");
	}
	/* The app owns d from here (aw_app_free frees it), also when a route
	 * cannot be added: the other may point to it. */
	app->debug = d;
	int rc = aw_app_route(app, "GET", d->page_path, page_handler, d);
	if (!rc)
		rc = aw_app_route(app, "GET", d->json_path, json_handler, d);
	if (!rc)
		rc = aw_app_route(app, "GET", d->events_path, events_handler, d);
	return rc;
}
