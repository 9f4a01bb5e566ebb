/* SPDX-License-Identifier: MIT */
/*
 * The router: method + path templates with {name} segments, kept as a tree
 * of path segments. Matching walks the request's decoded segments, literal
 * children first, then the parameter child, backtracking when a branch
 * dead-ends (so "/users/me" and "/users/{id}/posts" coexist). A path that
 * matches only for other methods is a 405 with Allow; none is a 404.
 *
 * Segments are compared after percent-decoding, each on its own: "%2F"
 * stays inside its segment (it is never a separator).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SEGMENTS 64

struct aw_rnode {
	char *seg;              /* literal segment; NULL for the parameter child */
	size_t seglen;
	aw_rnode *children;     /* literal children */
	aw_rnode *sibling;
	aw_rnode *param;        /* the {name} child */
	aw_route *routes;       /* handlers at this node, one per method */
};

ssize_t aw__http_pct_decode(const char *s, size_t n, char *out, bool plus)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '%') {
			if (i + 2 >= n)
				return -1;
			int hi = s[i + 1], lo = s[i + 2];
			int h = hi >= '0' && hi <= '9' ? hi - '0' : (hi | 32) >= 'a' && (hi | 32) <= 'f' ? (hi | 32) - 'a' + 10 : -1;
			int l = lo >= '0' && lo <= '9' ? lo - '0' : (lo | 32) >= 'a' && (lo | 32) <= 'f' ? (lo | 32) - 'a' + 10 : -1;
			if (h < 0 || l < 0)
				return -1;
			ch = (char)(h * 16 + l);
			if (!ch)
				return -1;
			i += 2;
		} else if (ch == '+' && plus) {
			ch = ' ';
		} else if (!ch) {
			return -1;
		}
		out[o++] = ch;
	}
	out[o] = 0;
	return (ssize_t)o;
}

static void node_free(aw_rnode *n)
{
	while (n) {
		aw_rnode *next = n->sibling;
		node_free(n->children);
		node_free(n->param);
		for (aw_route *r = n->routes; r;) {
			aw_route *rn = r->next;
			for (unsigned i = 0; i < r->nnames; i++)
				free(r->names[i]);
			free(r->method);
			free(r->path);
			aw__http_mcache_free(&r->mcache);
			free(r);
			r = rn;
		}
		free(n->seg);
		free(n);
		n = next;
	}
}

void aw__router_free(aw_router *r)
{
	node_free(r->root);
	r->root = NULL;
	r->nroutes = 0;
}

static bool method_ok(const char *m)
{
	if (strcmp(m, "*") == 0)
		return true;
	if (!*m || strlen(m) > 32)
		return false;
	for (const char *p = m; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_'))
			return false;
	return true;
}

static bool name_ok(const char *s, size_t n)
{
	if (!n || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_'))
			return false;
	return true;
}

int aw__router_add(aw_router *r, const char *method, const char *path, aw_http_handler fn, void *ud,
		   const aw_http_route_opts *opts)
{
	if (!method || !method_ok(method))
		return aw_raise(-EINVAL, "aw_app_route: invalid method '%s' (uppercase token or \"*\")",
				method ? method : "(null)");
	if (!path || path[0] != '/')
		return aw_raise(-EINVAL, "aw_app_route: path template '%s' must start with '/'", path ? path : "(null)");
	if (!fn)
		return aw_raise(-EINVAL, "aw_app_route(%s %s): no handler", method, path);
	aw_route *route = aw__calloc(1, sizeof *route);
	if (!route)
		return aw_raise(-ENOMEM, "aw_app_route: no memory");
	route->fn = fn;
	route->ud = ud;
	if (opts)
		route->opts = *opts;
	route->method = aw__strdup(method);
	route->mlen = strlen(method);
	route->path = aw__strdup(path);
	if (!route->method || !route->path)
		goto oom;
	if (!r->root && !(r->root = aw__calloc(1, sizeof *r->root)))
		goto oom;
	aw_rnode *node = r->root;
	const char *s = path + 1;
	size_t depth = 0;
	/* "/" alone: the root; otherwise one node per segment. */
	while (path[1] != 0) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (++depth > MAX_SEGMENTS) {
			free(route->method), free(route->path);
			for (unsigned i = 0; i < route->nnames; i++)
				free(route->names[i]);
			free(route);
			return aw_raise(-EINVAL, "aw_app_route: '%s' has more than %d segments", path, MAX_SEGMENTS);
		}
		bool param = n >= 2 && s[0] == '{' && s[n - 1] == '}';
		const char *bad = NULL;
		if (param && !name_ok(s + 1, n - 2))
			bad = "a parameter name is letters, digits and '_'";
		else if (param && route->nnames >= AW_HTTP_MAX_PARAMS)
			bad = "too many parameters";
		else if (!param && (memchr(s, '{', n) || memchr(s, '}', n)))
			bad = "a parameter must be a whole segment: /{name}/";
		else if (!param && memchr(s, '%', n))
			bad = "write literal segments decoded (no %xx)";
		if (bad) {
			int rc = aw_raise(-EINVAL, "aw_app_route: malformed template '%s': %s", path, bad);
			for (unsigned i = 0; i < route->nnames; i++)
				free(route->names[i]);
			free(route->method);
			free(route->path);
			free(route);
			return rc;
		}
		aw_rnode *next;
		if (param) {
			char *nm = aw__strndup(s + 1, n - 2);
			if (!nm)
				goto oom;
			for (unsigned i = 0; i < route->nnames; i++)
				if (strcmp(route->names[i], nm) == 0) {
					free(nm);
					int rc = aw_raise(-EINVAL, "aw_app_route: '%s' names a parameter twice", path);
					for (unsigned k = 0; k < route->nnames; k++)
						free(route->names[k]);
					free(route->method);
					free(route->path);
					free(route);
					return rc;
				}
			route->names[route->nnames++] = nm;
			if (!node->param && !(node->param = aw__calloc(1, sizeof *node->param)))
				goto oom;
			next = node->param;
		} else {
			for (next = node->children; next; next = next->sibling)
				if (next->seglen == n && memcmp(next->seg, s, n) == 0)
					break;
			if (!next) {
				next = aw__calloc(1, sizeof *next);
				if (!next || !(next->seg = aw__strndup(s, n))) {
					free(next);
					goto oom;
				}
				next->seglen = n;
				next->sibling = node->children;
				node->children = next;
			}
		}
		node = next;
		if (!e)
			break;
		s = e + 1;
	}
	for (aw_route *x = node->routes; x; x = x->next)
		if (strcmp(x->method, method) == 0) {
			int rc = aw_raise(-EEXIST, "aw_app_route: %s %s is already routed (as %s)", method, path, x->path);
			for (unsigned i = 0; i < route->nnames; i++)
				free(route->names[i]);
			free(route->method);
			free(route->path);
			free(route);
			return rc;
		}
	/* Append: routes are tried in the order they were added. */
	aw_route **tail = &node->routes;
	while (*tail)
		tail = &(*tail)->next;
	*tail = route;
	r->nroutes++;
	return 0;
oom:
	for (unsigned i = 0; i < route->nnames; i++)
		free(route->names[i]);
	free(route->method);
	free(route->path);
	free(route);
	return aw_raise(-ENOMEM, "aw_app_route: no memory");
}

/* ---- matching ------------------------------------------------------------------ */

typedef struct match_ctx {
	const char *method;
	size_t mlen;
	bool is_head;
	aw_str segs[MAX_SEGMENTS];
	size_t nseg;
	aw_str vals[AW_HTTP_MAX_PARAMS];
	const aw_route *found;
	char *allow;
	size_t allow_len, allow_used;
	bool path_matched;
} match_ctx;

static void allow_add(match_ctx *m, const char *method)
{
	if (!m->allow || !m->allow_len)
		return;
	size_t n = strlen(method);
	/* already listed? */
	for (const char *p = m->allow; (p = strstr(p, method));) {
		bool start = p == m->allow || p[-1] == ' ';
		bool end = p[n] == 0 || p[n] == ',';
		if (start && end)
			return;
		p += n;
	}
	size_t need = (m->allow_used ? 2 : 0) + n;
	if (m->allow_used + need + 1 > m->allow_len)
		return;
	if (m->allow_used) {
		memcpy(m->allow + m->allow_used, ", ", 2);
		m->allow_used += 2;
	}
	memcpy(m->allow + m->allow_used, method, n);
	m->allow_used += n;
	m->allow[m->allow_used] = 0;
}

static const aw_route *pick(match_ctx *m, const aw_rnode *node)
{
	const aw_route *any = NULL, *get = NULL;
	for (const aw_route *r = node->routes; r; r = r->next) {
		if (r->mlen == m->mlen && memcmp(r->method, m->method, m->mlen) == 0)
			return r;
		if (!any && r->method[0] == '*')
			any = r;
		if (!get && strcmp(r->method, "GET") == 0)
			get = r;
	}
	if (m->is_head && get)
		return get;
	return any;
}

static bool walk(match_ctx *m, const aw_rnode *node, size_t i, unsigned nvals)
{
	if (i == m->nseg) {
		if (!node->routes)
			return false;
		m->path_matched = true;
		const aw_route *r = pick(m, node);
		if (r) {
			m->found = r;
			return true;
		}
		for (const aw_route *x = node->routes; x; x = x->next) {
			allow_add(m, x->method);
			if (strcmp(x->method, "GET") == 0)
				allow_add(m, "HEAD");
		}
		return false;
	}
	const aw_str *s = &m->segs[i];
	for (const aw_rnode *ch = node->children; ch; ch = ch->sibling)
		if (ch->seglen == s->len && memcmp(ch->seg, s->p, s->len) == 0 && walk(m, ch, i + 1, nvals))
			return true;
	if (node->param && s->len && nvals < AW_HTTP_MAX_PARAMS) {
		m->vals[nvals] = *s;
		if (walk(m, node->param, i + 1, nvals + 1))
			return true;
	}
	return false;
}

int aw__router_match(const aw_router *r, aw_http_request *req, char *allow, size_t allow_len)
{
	aw_http_conn *c = req->conn;
	match_ctx m;
	m.method = req->base + req->method_off;
	m.mlen = req->method_len;
	m.is_head = req->is_head;
	m.nseg = 0;
	m.found = NULL;
	m.allow = allow;
	m.allow_len = allow_len;
	m.allow_used = 0;
	m.path_matched = false;
	if (allow && allow_len)
		allow[0] = 0;
	if (!r->root || !req->path.len || req->path.p[0] != '/')
		return 404;
	/* Split "/a/b" into "a", "b"; "/" is no segment at all. */
	const char *p = req->path.p + 1, *end = req->path.p + req->path.len;
	if (req->path.len > 1) {
		for (;;) {
			const char *slash = memchr(p, '/', (size_t)(end - p));
			const char *e = slash ? slash : end;
			if (m.nseg == MAX_SEGMENTS)
				return 404;
			aw_str seg = { p, (size_t)(e - p) };
			if (memchr(seg.p, '%', seg.len)) {
				char *d = aw__arena_alloc(&c->arena, seg.len + 1);
				if (!d)
					return 503;
				ssize_t dl = aw__http_pct_decode(seg.p, seg.len, d, false);
				if (dl < 0) {
					req->bad_request = "invalid percent-encoding (or a NUL byte) in the path";
					return 400;
				}
				seg = (aw_str){ d, (size_t)dl };
			}
			m.segs[m.nseg++] = seg;
			if (!slash)
				break;
			p = slash + 1;
		}
	}
	if (!walk(&m, r->root, 0, 0))
		return m.path_matched ? 405 : 404;
	const aw_route *route = m.found;
	req->route = route;
	req->nparams = route->nnames;
	for (unsigned i = 0; i < route->nnames; i++) {
		char *v = aw__arena_strndup(&c->arena, m.vals[i].p, m.vals[i].len);
		if (!v)
			return 503;
		req->params[i] = (aw_http_pparam){ route->names[i], strlen(route->names[i]), v };
	}
	return 0;
}

static void each_node(const aw_rnode *n, void (*fn)(const aw_route *, void *), void *arg)
{
	for (; n; n = n->sibling) {
		for (const aw_route *r = n->routes; r; r = r->next)
			fn(r, arg);
		each_node(n->children, fn, arg);
		each_node(n->param, fn, arg);
	}
}

void aw__router_each(const aw_router *r, void (*fn)(const aw_route *route, void *arg), void *arg)
{
	each_node(r->root, fn, arg);
}
