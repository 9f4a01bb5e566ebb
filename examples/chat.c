/* SPDX-License-Identifier: MIT */
/*
 * chat — one room, many WebSocket clients, a task per socket.
 *
 *     build/examples/chat --port 8000
 *     open http://127.0.0.1:8000/   (the page connects to ws://.../ws)
 *
 * Each socket's handler reads its messages (AW_FOR over the socket) and
 * broadcasts them; a writer task per client sends what is queued for it.
 * The queue per client is bounded (QUEUE_CAP messages): broadcasting never
 * waits (aw_queue_try_put), and a client whose queue is full — it reads
 * slower than the room talks — is dropped: its writer closes it with 1008
 * ("too slow"), or, if the socket itself is stuck, the send times out and
 * the connection is reset. The others never wait for it.
 *
 * GET /        the page (a static string: HTML and JavaScript)
 * GET /ws      the room (WebSocket; text messages up to 64 KiB); a client
 *              may name itself with ?name=...
 * GET /stats   {"clients": N, "messages": N, "dropped": N}
 */
#include <awith/http.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_CAP 256

/* A message shared by every client's queue: freed by the last one. */
typedef struct note {
	unsigned refs;
	size_t len;
	char text[];
} note;

typedef struct client {
	aw_ws *ws;
	aw_queue q;                   /* note *; bounded */
	bool dropped;                 /* its queue overflowed */
	char name[32];
	struct client *prev, *next;
} client;

typedef struct room {
	client *clients;
	size_t count;
	unsigned long long messages, dropped;
} room;

static room the_room;

static void note_unref(note *n)
{
	if (n && --n->refs == 0)
		free(n);
}

/* Put the text in every client's queue, without waiting: a full queue
 * drops its client (its writer then closes it). */
static void broadcast(room *r, const char *text, size_t len)
{
	note *n = malloc(sizeof *n + len + 1);
	if (!n)
		return;
	n->refs = 1;
	n->len = len;
	memcpy(n->text, text, len);
	n->text[len] = '\0';
	r->messages++;
	for (client *c = r->clients; c; c = c->next) {
		if (c->dropped)
			continue;
		if (aw_queue_try_put(&c->q, n) == 0) {
			n->refs++;
			continue;
		}
		aw_error_clear();   /* full: this client is too slow */
		c->dropped = true;
		r->dropped++;
		aw_queue_close(&c->q);
	}
	note_unref(n);
}

/* The writer: what the room says, to this client. */
static int writer(void *arg)
{
	client *c = arg;
	bool gone = false;   /* the socket has ended: drain the queue only */
	for (;;) {
		void *item;
		int rc = aw_queue_get(&c->q, &item);
		if (rc == -AW_ECLOSED) {
			aw_error_clear();
			break;
		}
		if (rc < 0)
			return rc;
		note *n = item;
		if (c->dropped || gone) {   /* do not feed a client we gave up on */
			note_unref(n);
			continue;
		}
		rc = aw_ws_send(c->ws, AW_WS_TEXT, n->text, n->len);
		note_unref(n);
		if (rc < 0) {
			aw_error_clear();   /* the client left or is stuck: the socket has ended */
			gone = true;
		}
	}
	if (c->dropped && aw_ws_close_code(c->ws) == 0)
		return aw_ws_close(c->ws, AW_WS_POLICY, "too slow");
	return 0;
}

static int chat(aw_ws *ws, aw_http_request *req, void *ud)
{
	room *r = ud;
	client c = { .ws = ws };
	const char *name = NULL;
	if (aw_http_query(req, "name", &name) < 0 || !name || !*name)
		aw_error_clear(), name = NULL;
	static unsigned long long guests;
	if (name)
		snprintf(c.name, sizeof c.name, "%s", name);
	else
		snprintf(c.name, sizeof c.name, "guest%llu", ++guests);
	int rc = aw_queue_init(&c.q, QUEUE_CAP);
	if (rc < 0)
		return rc;
	c.next = r->clients;
	if (r->clients)
		r->clients->prev = &c;
	r->clients = &c;
	r->count++;

	char line[128];
	int n = snprintf(line, sizeof line, "* %s joined", c.name);
	broadcast(r, line, (size_t)n);
	aw_group g;
	aw_ws_msg *msg;
	AW_WITH(aw_ws_mgr(ws), aw_group_init(&g)) {
		if (aw_group_spawn(&g, writer, &c, "chat-writer") < 0)
			break;
		AW_FOR(msg, aw_ws_messages(ws)) {
			/* "name: text" to everyone (the sender too) */
			size_t nl = strlen(c.name);
			char *out = malloc(nl + 2 + msg->len);
			if (!out)
				continue;
			memcpy(out, c.name, nl);
			memcpy(out + nl, ": ", 2);
			memcpy(out + nl + 2, msg->data, msg->len);
			broadcast(r, out, nl + 2 + msg->len);
			free(out);
		}
		aw_queue_close(&c.q);   /* the writer sends what is queued, then ends */
	}
	/* leave the room */
	if (c.prev)
		c.prev->next = c.next;
	else
		r->clients = c.next;
	if (c.next)
		c.next->prev = c.prev;
	r->count--;
	void *item;
	while (aw_queue_try_get(&c.q, &item) == 0)
		note_unref(item);
	aw_error_clear();   /* -EAGAIN: empty */
	aw_queue_destroy(&c.q);
	n = snprintf(line, sizeof line, "* %s left%s", c.name, c.dropped ? " (too slow)" : "");
	broadcast(r, line, (size_t)n);
	return 0;
}

static const char page[] =
	"<!doctype html>\n"
	"<html><head><meta charset=\"utf-8\"><title>awith chat</title>\n"
	"<style>body{font:15px sans-serif;margin:2em}#log{list-style:none;padding:0}"
	"#log li{padding:2px 0}input{width:30em}</style></head>\n"
	"<body><h1>awith chat</h1>\n"
	"<p id=\"state\">connecting</p>\n"
	"<ul id=\"log\"></ul>\n"
	"<form id=\"f\"><input id=\"text\" autocomplete=\"off\" placeholder=\"say something\"> "
	"<button>send</button></form>\n"
	"<script>\n"
	"const q = new URLSearchParams(location.search);\n"
	"const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws' +\n"
	"  (q.get('name') ? '?name=' + encodeURIComponent(q.get('name')) : '');\n"
	"const ws = new WebSocket(url);\n"
	"const log = document.getElementById('log');\n"
	"function show(t) { const li = document.createElement('li'); li.textContent = t; log.appendChild(li); }\n"
	"ws.onopen = () => {\n"
	"  document.getElementById('state').textContent = 'connected';\n"
	"  if (q.get('say')) ws.send(q.get('say'));   // for scripted runs\n"
	"};\n"
	"ws.onmessage = (e) => show(e.data);\n"
	"// Scripted runs (?expect=N): keep a request in flight until N lines\n"
	"// have arrived (or 100 tries): headless chromium's virtual time waits\n"
	"// for requests, not for WebSocket messages, before it dumps the page.\n"
	"(async () => {\n"
	"  const n = +(q.get('expect') || 0);\n"
	"  for (let i = 0; i < 100 && log.children.length < n; i++) {\n"
	"    await fetch('/stats');\n"
	"    await new Promise((r) => setTimeout(r, 50));\n"
	"  }\n"
	"})();\n"
	"ws.onclose = (e) => { document.getElementById('state').textContent = 'closed ' + e.code; };\n"
	"document.getElementById('f').onsubmit = (e) => {\n"
	"  e.preventDefault();\n"
	"  const t = document.getElementById('text');\n"
	"  if (t.value) ws.send(t.value);\n"
	"  t.value = '';\n"
	"};\n"
	"</script></body></html>\n";

static int index_page(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	return aw_http_send(res, 200, "text/html; charset=utf-8", page, sizeof page - 1);
}

static int stats(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	room *r = ud;
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_object(w);
	aw_jw_key(w, "clients");
	aw_jw_int(w, (long long)r->count);
	aw_jw_key(w, "messages");
	aw_jw_int(w, (long long)r->messages);
	aw_jw_key(w, "dropped");
	aw_jw_int(w, (long long)r->dropped);
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

int main(int argc, char **argv)
{
	aw_app *app;
	if (aw_app_new(&app, "chat") < 0)
		return 1;
	aw_ws_opts o = {
		.max_message = 64 * 1024,
		.accept = AW_WS_TEXT,
		.send_timeout = AW_SEC(2),   /* a stuck client is reset after 2 s */
	};
	if (aw_app_route(app, "GET", "/", index_page, NULL) < 0 || aw_app_route(app, "GET", "/stats", stats, &the_room) < 0 ||
	    aw_app_ws(app, "/ws", chat, &the_room, &o) < 0) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return 1;
	}
	int rc = aw_app_main(app, argc, argv);
	aw_app_free(app);
	return rc == 0 ? 0 : 1;
}
