/* SPDX-License-Identifier: MIT */
/*
 * Middleware as managers (awith/middleware.h): the chain around a request,
 * route groups, the held response that middleware exits may still change.
 *
 * Per request, each middleware of a chain gets a small manager in the
 * request's arena (its aw_mgr, the request, its state) and is entered onto
 * an exit stack: the exits then run LIFO with the core's own rules (every
 * exit runs, shielded; one that fails hands its error on with the old one
 * as its cause; returning 0 suppresses) — the same machinery that unwinds
 * the per-request dependencies. Nothing here is a new error rule.
 *
 * Groups need nothing from the router: a group's route is registered with
 * the full template and a trampoline handler that runs the groups' chains
 * (outermost first) around the route's own handler.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <netinet/in.h>

struct aw_http_mw {
	aw_mgr_ops mops;         /* name, enter/exit bridges to ops */
	aw_http_mw_ops ops;
	void *self;
	char *name;
	unsigned refs;
	/* generator-style: */
	aw_gen_fn gen_fn;
	void *gen_arg;
};

/* One middleware entered for one request (in the request's arena). */
typedef struct mw_inst {
	aw_mgr mgr;
	aw_http_mw *mw;
	aw_http_request *req;
	aw_http_response *res;
	void *state;
} mw_inst;

static int inst_enter(aw_mgr *m)
{
	mw_inst *i = AW_CONTAINER_OF(m, mw_inst, mgr);
	return i->mw->ops.enter ? i->mw->ops.enter(i->mw->self, i->req, i->res, i->state) : 0;
}

static int inst_exit(aw_mgr *m, int err)
{
	mw_inst *i = AW_CONTAINER_OF(m, mw_inst, mgr);
	if (!i->mw->ops.exit)
		return err;
	int rc = i->mw->ops.exit(i->mw->self, i->req, i->res, i->state, err);
	if (rc < 0 && rc != err && !(i->res->from_error && i->res->mapped_err == rc)) {
		/* Mapped to another code, or the exit failed: the exits
		 * further out see the response made from it (an exit that
		 * answers an error itself suppresses it). */
		aw__http_map_error(i->req->conn, rc, aw_error_pending() == rc ? aw_error_current() : NULL);
	}
	return rc;
}

/* ---- the middleware objects ----------------------------------------------------- */

static int mw_make(aw_http_mw **out, const aw_http_mw_ops *ops, void *self)
{
	aw_http_mw *mw = aw__calloc(1, sizeof *mw);
	char *name = aw__strdup(ops->name ? ops->name : "middleware");
	if (!mw || !name) {
		free(mw);
		free(name);
		if (ops->free)
			ops->free(self);
		return aw_raise(-ENOMEM, "middleware: no memory");
	}
	mw->ops = *ops;
	mw->ops.name = name;
	mw->name = name;
	mw->self = self;
	mw->refs = 1;
	mw->mops = (aw_mgr_ops){ .name = name, .enter = inst_enter, .exit = inst_exit };
	*out = mw;
	return 0;
}

int aw_http_mw_new(aw_http_mw **out, const aw_http_mw_ops *ops, void *self)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_http_mw_new: out is NULL");
	*out = NULL;
	if (!ops || (!ops->enter && !ops->exit)) {
		if (ops && ops->free)
			ops->free(self);
		return aw_raise(-EINVAL, "aw_http_mw_new: no enter and no exit");
	}
	return mw_make(out, ops, self);
}

aw_http_mw *aw_http_mw_ref(aw_http_mw *mw)
{
	if (mw)
		mw->refs++;
	return mw;
}

void aw_http_mw_free(aw_http_mw *mw)
{
	if (!mw || --mw->refs)
		return;
	if (mw->ops.free)
		mw->ops.free(mw->self);
	free(mw->name);
	free(mw);
}

/* Generator-style: the state is the generator and the request it serves. */
typedef struct gen_state {
	aw_gen gen;
	aw_http_request *req;
	aw_http_response *res;
} gen_state;

static int gen_enter(void *self, aw_http_request *req, aw_http_response *res, void *state)
{
	aw_http_mw *mw = self;
	gen_state *st = state;
	st->req = req;
	st->res = res;
	aw_mgr *m = aw_gen_init(&st->gen, mw->name, mw->gen_fn, mw->gen_arg);
	return m->ops->enter(m);
}

static int gen_exit(void *self, aw_http_request *req, aw_http_response *res, void *state, int err)
{
	(void)self, (void)req, (void)res;
	gen_state *st = state;
	return st->gen.mgr.ops->exit(&st->gen.mgr, err);
}

int aw_http_mw_gen(aw_http_mw **out, const char *name, aw_gen_fn fn, void *arg)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_http_mw_gen: out is NULL");
	*out = NULL;
	if (!fn)
		return aw_raise(-EINVAL, "aw_http_mw_gen: no function");
	aw_http_mw_ops ops = { .name = name ? name : "middleware", .state_size = sizeof(gen_state),
			       .enter = gen_enter, .exit = gen_exit };
	int rc = mw_make(out, &ops, NULL);
	if (rc)
		return rc;
	(*out)->self = *out;
	(*out)->gen_fn = fn;
	(*out)->gen_arg = arg;
	return 0;
}

aw_http_request *aw_http_mw_request(aw_gen *g)
{
	return g ? AW_CONTAINER_OF(g, gen_state, gen)->req : NULL;
}

aw_http_response *aw_http_mw_response(aw_gen *g)
{
	return g ? AW_CONTAINER_OF(g, gen_state, gen)->res : NULL;
}

static int chain_add(aw__mw_chain *ch, aw_http_mw *mw, const char *who)
{
	if (!mw)
		return aw_raise(-EINVAL, "%s: no middleware (did its constructor fail?)", who);
	aw_http_mw **v = aw__realloc(ch->v, (ch->n + 1) * sizeof *v);
	if (!v) {
		aw_http_mw_free(mw);
		return aw_raise(-ENOMEM, "%s: no memory", who);
	}
	v[ch->n++] = mw;
	ch->v = v;
	return 0;
}

static void chain_free(aw__mw_chain *ch)
{
	for (size_t i = 0; i < ch->n; i++)
		aw_http_mw_free(ch->v[i]);
	free(ch->v);
	ch->v = NULL;
	ch->n = 0;
}

int aw_app_use(aw_app *app, aw_http_mw *mw)
{
	if (!app) {
		aw_http_mw_free(mw);
		return aw_raise(-EINVAL, "aw_app_use: no app");
	}
	if (app->srv) {
		aw_http_mw_free(mw);
		return aw_raise(-EBUSY, "aw_app_use: the app is serving");
	}
	return chain_add(&app->mw, mw, "aw_app_use");
}

/* ---- running a chain ------------------------------------------------------------ */

int aw__mw_run(aw_http_conn *c, const aw__mw_chain *chain, int (*inner)(void *arg), void *arg)
{
	aw_http_request *r = &c->req;
	aw_http_response *res = &c->res;
	bool was_holding = res->hold;
	res->hold = true;
	aw_exitstack st;
	(void)aw_exitstack_init(&st);
	int err = 0;
	bool answered = false;
	for (size_t i = 0; i < chain->n; i++) {
		aw_http_mw *mw = chain->v[i];
		mw_inst *in = aw__arena_alloc(&c->arena, sizeof *in + mw->ops.state_size);
		if (!in) {
			err = aw_raise(-ENOMEM, "middleware '%s': no memory", mw->name);
			break;
		}
		*in = (mw_inst){ .mgr = { &mw->mops }, .mw = mw, .req = r, .res = res, .state = in + 1 };
		if (mw->ops.state_size)
			memset(in + 1, 0, mw->ops.state_size);
		int rc = aw_exitstack_enter(&st, &in->mgr);
		if (rc < 0) {
			err = rc;
			break;
		}
		if (res->sent) {
			answered = true;   /* an enter answered: auth, a rate limit, a preflight */
			break;
		}
	}
	if (!err && !answered) {
		res->hdrs_keep = res->hdrs.len;
		err = inner(arg);
		if (err > 0)
			err = 0;
		if (err < 0 && !aw_error_pending())
			(void)!aw_raise(err, "the handler returned %d (%s)", err, aw_strerror(err));
		if (!err)
			err = aw_error_pending();   /* returned 0 with an error in flight */
	}
	if (err < 0 && !(res->sent && res->from_error && res->mapped_err == err))
		aw__http_map_error(c, err, aw_error_current());
	err = aw_exitstack_unwind(&st, err);
	if (err < 0 && !(res->sent && res->from_error && res->mapped_err == err)) {
		/* The error the request leaves with is not the one answered
		 * (an exit failed, or returned a bare code): answer with it;
		 * an unhandled error never leaves as a 2xx. */
		aw__http_map_error(c, err, aw_error_current());
	}
	res->hold = was_holding;
	if (!was_holding)
		aw__http_release_held(c);
	return err;
}

void aw__http_release_held(aw_http_conn *c)
{
	aw_http_response *res = &c->res;
	res->hold = false;
	if (!res->held)
		return;
	res->held = false;
	res->sent = false;
	/* The body stays in held_body until the next request: a large one is
	 * written from there. */
	if (aw__http_queue_response(c, res->status, res->held_ctype, res->held_ctype_len, res->held_body.p,
				    res->held_body.len)) {
		res->close = true;
		aw_error_clear();
	}
}

bool aw__http_response_retract(aw_http_conn *c)
{
	aw_http_response *res = &c->res;
	if (!res->sent)
		return true;
	if (res->held) {
		res->held = res->sent = res->from_error = false;
		res->status = 0;
		res->held_body.len = 0;
		return true;
	}
	/* Queued and not flushed: its bytes are still ours. */
	if (res->head_written || c->out.len < res->out_mark)
		return false;
	c->out.len = res->out_mark;
	res->sent = false;
	res->status = 0;
	res->body_bytes = 0;
	return true;
}

/* ---- the response, seen from a middleware ---------------------------------------- */

int aw__http_header_put(aw_http_response *res, const char *name, size_t nlen, const char *value, size_t vlen)
{
	if (res->sent && !res->held)
		return aw_raise(-EALREADY, "%.*s: the response is leaving", (int)nlen, name);
	if (aw__buf_reserve(&res->hdrs, nlen + vlen + 4))
		return aw_raise(-ENOMEM, "%.*s: no memory for the header", (int)nlen, name);
	char *o = res->hdrs.p + res->hdrs.len;
	memcpy(o, name, nlen);
	o[nlen] = ':';
	o[nlen + 1] = ' ';
	memcpy(o + nlen + 2, value, vlen);
	o[nlen + 2 + vlen] = '\r';
	o[nlen + 3 + vlen] = '\n';
	res->hdrs.len += nlen + vlen + 4;
	return 0;
}

int aw_http_response_status(const aw_http_response *res)
{
	return res && res->sent ? res->status : 0;
}

bool aw_http_response_editable(const aw_http_response *res)
{
	return res && res->held;
}

/* The headers are "Name: value\r\n" lines in res->hdrs. */
static bool hdr_next(const aw_buf *b, size_t *pos, aw_str *name, aw_str *value, size_t *start)
{
	if (*pos >= b->len)
		return false;
	const char *p = b->p + *pos, *end = b->p + b->len;
	const char *eol = memchr(p, '\r', (size_t)(end - p));
	const char *colon = memchr(p, ':', (size_t)(end - p));
	if (!eol || !colon || colon > eol)
		return false;
	*start = *pos;
	*name = (aw_str){ p, (size_t)(colon - p) };
	const char *v = colon + 1;
	while (v < eol && *v == ' ')
		v++;
	*value = (aw_str){ v, (size_t)(eol - v) };
	*pos = (size_t)(eol + 2 - b->p);
	return true;
}

aw_str aw_http_response_header(const aw_http_response *res, const char *name)
{
	aw_str none = { NULL, 0 };
	if (!res || !name)
		return none;
	if (strcasecmp(name, "Content-Type") == 0)
		return res->held && res->held_ctype ? (aw_str){ res->held_ctype, res->held_ctype_len } : none;
	size_t pos = 0, start, nl = strlen(name);
	aw_str n, v;
	while (hdr_next(&res->hdrs, &pos, &n, &v, &start))
		if (n.len == nl && strncasecmp(n.p, name, nl) == 0)
			return v;
	return none;
}

int aw_http_response_remove_header(aw_http_response *res, const char *name)
{
	if (!res || !name)
		return aw_raise(-EINVAL, "aw_http_response_remove_header: no response or name");
	if (!res->held && res->sent)
		return aw_raise(-EALREADY, "aw_http_response_remove_header: the response is leaving");
	if (strcasecmp(name, "Content-Type") == 0) {
		res->held_ctype = NULL;
		res->held_ctype_len = 0;
		return 0;
	}
	size_t pos = 0, start, nl = strlen(name);
	aw_str n, v;
	while (hdr_next(&res->hdrs, &pos, &n, &v, &start)) {
		if (n.len != nl || strncasecmp(n.p, name, nl) != 0)
			continue;
		size_t len = pos - start;
		memmove(res->hdrs.p + start, res->hdrs.p + pos, res->hdrs.len - pos);
		res->hdrs.len -= len;
		if (res->hdrs_keep > start)
			res->hdrs_keep = res->hdrs_keep >= pos ? res->hdrs_keep - len : start;
		pos = start;
	}
	return 0;
}

int aw_http_response_body(const aw_http_response *res, const char **body, size_t *len)
{
	if (!body || !len)
		return aw_raise(-EINVAL, "aw_http_response_body: body or len is NULL");
	*body = NULL;
	*len = 0;
	if (!res || !res->held)
		return aw_raise(-EALREADY, "aw_http_response_body: no held response");
	*body = res->held_body.p ? res->held_body.p : "";
	*len = res->held_body.len;
	return 0;
}

int aw_http_response_set_body(aw_http_response *res, const void *body, size_t len)
{
	if (!res || !res->held)
		return aw_raise(-EALREADY, "aw_http_response_set_body: no held response");
	if (!body && len)
		return aw_raise(-EINVAL, "aw_http_response_set_body: NULL body with length %zu", len);
	if (body == res->held_body.p && len <= res->held_body.len) {
		res->held_body.len = len;
		return 0;
	}
	aw_buf nb = { 0 };
	if (len && aw__buf_put(&nb, body, len))
		return aw_raise(-ENOMEM, "aw_http_response_set_body: no memory for %zu bytes", len);
	aw__buf_free(&res->held_body);
	res->held_body = nb;
	return 0;
}

int aw_http_response_clear(aw_http_response *res)
{
	if (!res)
		return aw_raise(-EINVAL, "aw_http_response_clear: no response");
	if (!aw__http_response_retract(res->conn))
		return aw_raise(-EALREADY, "aw_http_response_clear: bytes of the response have left");
	res->hdrs.len = res->hdrs_keep < res->hdrs.len ? res->hdrs_keep : res->hdrs.len;
	res->in_json = false;
	return 0;
}

const char *aw_http_request_id(const aw_http_request *req)
{
	return req && req->conn ? req->conn->request_id : "";
}

bool aw__http_peer_key(aw_http_conn *c, uint8_t out[16])
{
	if (!c->peer_key_state) {
		c->peer_key_state = -1;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		if (c->s && getpeername(aw_stream_fd(c->s), (struct sockaddr *)&ss, &sl) == 0) {
			if (ss.ss_family == AF_INET) {
				memset(c->peer_key, 0, 10);
				c->peer_key[10] = c->peer_key[11] = 0xff;
				memcpy(c->peer_key + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
				c->peer_key_state = 1;
			} else if (ss.ss_family == AF_INET6) {
				memcpy(c->peer_key, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
				c->peer_key_state = 1;
			}
		}
	}
	if (c->peer_key_state < 0)
		return false;
	memcpy(out, c->peer_key, 16);
	return true;
}

/* ---- route groups ------------------------------------------------------------ */

#define GROUP_DEPTH 16

typedef struct group_route {
	struct aw_http_group *g;
	aw_http_handler fn;
	void *ud;
	struct group_route *next;
} group_route;

struct aw_http_group {
	aw_app *app;
	struct aw_http_group *parent;
	struct aw_http_group *next;   /* the app's list */
	char *prefix;                 /* the whole prefix, parents' included ("" for none) */
	unsigned depth;
	aw__mw_chain mw;
	group_route *routes;
};

static int group_make(aw_app *app, aw_http_group *parent, const char *prefix, aw_http_group **out,
		      const char *who)
{
	if (!out)
		return aw_raise(-EINVAL, "%s: out is NULL", who);
	*out = NULL;
	if (!app)
		return aw_raise(-EINVAL, "%s: no app (or no parent group)", who);
	if (app->srv)
		return aw_raise(-EBUSY, "%s: the app is serving", who);
	if (!prefix || prefix[0] != '/')
		return aw_raise(-EINVAL, "%s: the prefix '%s' must start with '/'", who, prefix ? prefix : "(null)");
	size_t n = strlen(prefix);
	while (n > 0 && prefix[n - 1] == '/')
		n--;
	if (parent && parent->depth + 1 >= GROUP_DEPTH)
		return aw_raise(-EINVAL, "%s: groups nest %d deep at most", who, GROUP_DEPTH - 1);
	aw_http_group *g = aw__calloc(1, sizeof *g);
	size_t pl = parent ? strlen(parent->prefix) : 0;
	char *full = aw__malloc(pl + n + 1);
	if (!g || !full) {
		free(g);
		free(full);
		return aw_raise(-ENOMEM, "%s: no memory", who);
	}
	if (pl)
		memcpy(full, parent->prefix, pl);
	memcpy(full + pl, prefix, n);
	full[pl + n] = 0;
	g->app = app;
	g->parent = parent;
	g->depth = parent ? parent->depth + 1 : 1;
	g->prefix = full;
	g->next = app->groups;
	app->groups = g;
	*out = g;
	return 0;
}

int aw_app_group(aw_app *app, const char *prefix, aw_http_group **out)
{
	return group_make(app, NULL, prefix, out, "aw_app_group");
}

int aw_http_group_group(aw_http_group *parent, const char *prefix, aw_http_group **out)
{
	return group_make(parent ? parent->app : NULL, parent, prefix, out, "aw_http_group_group");
}

int aw_http_group_use(aw_http_group *g, aw_http_mw *mw)
{
	if (!g) {
		aw_http_mw_free(mw);
		return aw_raise(-EINVAL, "aw_http_group_use: no group");
	}
	if (g->app->srv) {
		aw_http_mw_free(mw);
		return aw_raise(-EBUSY, "aw_http_group_use: the app is serving");
	}
	return chain_add(&g->mw, mw, "aw_http_group_use");
}

typedef struct tramp {
	aw_http_conn *c;
	const group_route *gr;
	aw_http_group *path[GROUP_DEPTH];
	unsigned depth, i;
} tramp;

static int tramp_inner(void *arg)
{
	tramp *t = arg;
	while (t->i < t->depth) {
		aw_http_group *g = t->path[t->i++];
		if (g->mw.n)
			return aw__mw_run(t->c, &g->mw, tramp_inner, t);
	}
	return t->gr->fn(&t->c->req, &t->c->res, t->gr->ud);
}

/* The handler of a group's route: the groups' middleware, outermost
 * first, around the route's own handler. */
static int group_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)res;
	const group_route *gr = ud;
	tramp t = { .c = req->conn, .gr = gr };
	for (aw_http_group *g = gr->g; g; g = g->parent)
		t.depth++;
	unsigned k = t.depth;
	for (aw_http_group *g = gr->g; g; g = g->parent)
		t.path[--k] = g;
	return tramp_inner(&t);
}

int aw_http_group_route(aw_http_group *g, const char *method, const char *path, aw_http_handler fn, void *ud)
{
	if (!g)
		return aw_raise(-EINVAL, "aw_http_group_route: no group");
	if (!path || path[0] != '/')
		return aw_raise(-EINVAL, "aw_http_group_route: the path '%s' must start with '/'", path ? path : "(null)");
	if (!fn)
		return aw_raise(-EINVAL, "aw_http_group_route(%s %s%s): no handler", method ? method : "?", g->prefix, path);
	size_t pl = strlen(g->prefix), n = strlen(path);
	bool root = n == 1 && pl > 0;   /* "/" under a prefix: the prefix itself */
	char *full = aw__malloc(pl + n + 2);
	group_route *gr = aw__calloc(1, sizeof *gr);
	if (!full || !gr) {
		free(full);
		free(gr);
		return aw_raise(-ENOMEM, "aw_http_group_route: no memory");
	}
	memcpy(full, g->prefix, pl);
	if (root)
		full[pl] = 0;
	else
		memcpy(full + pl, path, n + 1);
	if (!full[0]) {
		full[0] = '/';
		full[1] = 0;
	}
	*gr = (group_route){ .g = g, .fn = fn, .ud = ud };
	int rc = aw_app_route(g->app, method, full, group_handler, gr);
	free(full);
	if (rc) {
		free(gr);
		return rc;
	}
	gr->next = g->routes;
	g->routes = gr;
	return 0;
}

void aw__app_mw_free(aw_app *app)
{
	chain_free(&app->mw);
	for (aw_http_group *g = app->groups; g;) {
		aw_http_group *next = g->next;
		chain_free(&g->mw);
		for (group_route *r = g->routes; r;) {
			group_route *rn = r->next;
			free(r);
			r = rn;
		}
		free(g->prefix);
		free(g);
		g = next;
	}
	app->groups = NULL;
	aw__errmap_free(app);
}
