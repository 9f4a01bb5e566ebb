/* SPDX-License-Identifier: MIT */
/*
 * The app layer: routes, handler dispatch (per-request deadline, error
 * mapping, logging), per-request dependencies, and the lifespan.
 *
 * Dispatch: the router picks the handler; the handler runs inside a
 * fail_after scope at the request deadline, inside the app's middleware
 * (middleware.c) when there is any. Its error is taken off the task (so
 * that writing the error response cannot clobber it), mapped to a status
 * by the app's error table (errmap.c) whose body says nothing internal,
 * logged once with its cause chain if it is the server's fault, and put
 * back in flight for the dependencies'
 * teardown, which runs after the response has left (FastAPI's Depends with
 * yield): LIFO, shielded, every exit runs, and a failing teardown is logged.
 *
 * Lifespan: one generator manager (setup, yield, teardown) entered before
 * the server accepts and exited after the last connection closed; the
 * on_startup/on_shutdown hooks are a generator of the same kind entered
 * before it.
 */
#include "internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* ---- the app object ------------------------------------------------------------ */

int aw_app_new(aw_app **out, const char *name)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_app_new: out is NULL");
	*out = NULL;
	aw_app *app = aw__calloc(1, sizeof *app);
	if (!app)
		return aw_raise(-ENOMEM, "aw_app_new: out of memory");
	app->name = aw__strdup(name ? name : "app");
	if (!app->name) {
		free(app);
		return aw_raise(-ENOMEM, "aw_app_new: out of memory");
	}
	app->limits = (aw_http_limits){
		.request_line = 8 * 1024,
		.header_bytes = 16 * 1024,
		.header_count = 100,
		.body_bytes = 1024 * 1024,
		.header_timeout = AW_SEC(10),
		.body_idle = AW_SEC(10),
		.keepalive_idle = AW_SEC(5),
		.send_idle = AW_SEC(10),
		.request_deadline = AW_SEC(30),
		.shutdown_grace = AW_SEC(10),
		.max_connections = 10000,
		.max_connections_per_client = 0,
	};
	aw__http2_defaults(&app->h2);
	app->worker = -1;
	app->started_fd = -1;
	app->ready_fd = -1;
	*out = app;
	return 0;
}

void aw_app_free(aw_app *app)
{
	if (!app)
		return;
	aw__http_metrics_free(app);
	aw__app_mw_free(app);
	aw__router_free(&app->router);
	aw__app_debug_free(app->debug);
	aw__static_free_all(app);
	aw__http_tls_free(app);
	aw__app_health_free(app);
	aw__ws_routes_free(app->ws_routes);
	aw__http_spec_routes_free(app);
	aw__http_openapi_free(app);
	free(app->startup);
	free(app->shutdown);
	free(app->name);
	free(app);
}

/* aw_app_new returns NULL when out of memory; a caller that goes on with
 * that NULL gets -EINVAL from the calls that return a code and no effect
 * from the setters, never a crash. */
#define APP_OR_EINVAL(app, fn)                                                                  \
	do {                                                                                    \
		if (!(app))                                                                     \
			return aw_raise(-EINVAL, fn ": no app (did aw_app_new run out of memory?)"); \
	} while (0)

static aw_http_limits no_app_limits;   /* written by nobody who checks */

aw_http_limits *aw_app_limits(aw_app *app) { return app ? &app->limits : &no_app_limits; }
void *aw_app_state(aw_app *app) { return app ? app->state : NULL; }
void aw_app_set_state(aw_app *app, void *state)
{
	if (app)
		app->state = state;
}
void aw_app_access_log(aw_app *app, FILE *out)
{
	if (app)
		app->access_log = out;
}
void aw_app_access_log_format(aw_app *app, aw_access_log_format f)
{
	if (app && f >= AW_ACCESS_LOG_AUTO && f <= AW_ACCESS_LOG_JSON)
		app->access_format = f;
}
void aw_app_error_log(aw_app *app, FILE *out)
{
	if (app)
		app->error_log = out;
}

FILE *aw__app_log(const aw_app *app)
{
	return app && app->error_log ? app->error_log : stderr;
}

int aw_app_route(aw_app *app, const char *method, const char *path, aw_http_handler fn, void *ud)
{
	APP_OR_EINVAL(app, "aw_app_route");
	return aw__router_add(&app->router, method, path, fn, ud, NULL);
}

int aw_app_route_opts(aw_app *app, const char *method, const char *path, aw_http_handler fn, void *ud,
		      const aw_http_route_opts *opts)
{
	APP_OR_EINVAL(app, "aw_app_route_opts");
	return aw__router_add(&app->router, method, path, fn, ud, opts);
}

int aw_app_lifespan(aw_app *app, aw_gen_fn fn, void *arg)
{
	APP_OR_EINVAL(app, "aw_app_lifespan");
	if (app->srv)
		return aw_raise(-EBUSY, "aw_app_lifespan: the app is serving");
	app->lifespan = fn;
	app->lifespan_arg = arg;
	return 0;
}

static int add_hook(struct aw_hook **v, size_t *n, int (*fn)(aw_app *, void *), void *arg)
{
	if (!fn)
		return aw_raise(-EINVAL, "hook: no function");
	struct aw_hook *nv = aw__realloc(*v, (*n + 1) * sizeof *nv);
	if (!nv)
		return aw_raise(-ENOMEM, "hook: no memory");
	nv[(*n)++] = (struct aw_hook){ fn, arg };
	*v = nv;
	return 0;
}

int aw_app_on_startup(aw_app *app, int (*fn)(aw_app *app, void *arg), void *arg)
{
	APP_OR_EINVAL(app, "aw_app_on_startup");
	return add_hook(&app->startup, &app->nstartup, fn, arg);
}

int aw_app_on_shutdown(aw_app *app, int (*fn)(aw_app *app, void *arg), void *arg)
{
	APP_OR_EINVAL(app, "aw_app_on_shutdown");
	return add_hook(&app->shutdown, &app->nshutdown, fn, arg);
}

/* ---- dependencies ----------------------------------------------------------------- */

struct aw_http_deprec {
	aw_gen gen;
	aw_http_request *req;
	const aw_http_dep *dep;
	aw_http_deprec *next;
	bool entered;
};

aw_http_request *aw_http_dep_request(aw_gen *g)
{
	return AW_CONTAINER_OF(g, aw_http_deprec, gen)->req;
}

/* Under aw_cleanup_run: the exit of a dependency entered but not recorded. */
static int exit_now(void *arg, int err)
{
	aw_mgr *m = arg;
	int rc = m->ops->exit ? m->ops->exit(m, err) : err;
	return rc == err ? 0 : rc;   /* passing the error on is not a failure */
}

int aw_http_depends(aw_http_request *req, const aw_http_dep *dep, void **out)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_http_depends: out is NULL");
	*out = NULL;
	if (!dep || !dep->fn)
		return aw_raise(-EINVAL, "aw_http_depends: no dependency function");
	for (aw_http_deprec *d = req->deplist; d; d = d->next) {
		if (d->dep != dep)
			continue;
		if (!d->entered)
			return aw_raise(-EDEADLK, "dependency '%s' depends on itself", dep->name ? dep->name : "?");
		*out = aw_gen_value(&d->gen);
		return 0;
	}
	aw_http_deprec *d = aw__arena_alloc(&req->conn->arena, sizeof *d);
	if (!d)
		return aw_raise(-ENOMEM, "aw_http_depends: no memory");
	*d = (aw_http_deprec){ .req = req, .dep = dep, .next = req->deplist };
	req->deplist = d;
	aw_mgr *m = aw_gen_init(&d->gen, dep->name ? dep->name : "dependency", dep->fn, dep->arg);
	/* Enter first, push after: a dependency may itself depend on others,
	 * which are pushed (and so exit) before it. */
	int rc = m->ops->enter(m);
	if (rc) {
		req->deplist = d->next;
		if (aw_error_pending() != rc)
			return aw_raise(rc < 0 ? rc : -AW_EEXIT, "dependency '%s' failed: %s",
					dep->name ? dep->name : "?", aw_strerror(rc));
		return rc < 0 ? rc : -AW_EEXIT;
	}
	rc = aw_exitstack_push(&req->deps, m);
	if (rc) {
		/* Entered but cannot be recorded: exit it now, as an exit
		 * runs, keeping the push's error in flight. */
		if (aw_cleanup_run(exit_now, m, AW_NEVER) < 0)
			aw__http_log_error(aw_http_app(req), NULL, "dependency '%s': its exit failed",
					   dep->name ? dep->name : "?");
		req->deplist = d->next;
		return rc;
	}
	d->entered = true;
	*out = aw_gen_value(&d->gen);
	return 0;
}

void aw__app_deps_unwind(aw_http_request *req, int err)
{
	if (!req->deps.count) {
		if (req->deps.entries)
			if (aw_exitstack_unwind(&req->deps, 0) < 0)   /* frees the array */
				aw_error_clear();   /* nothing ran: cannot fail */
		return;
	}
	aw_error *mine = NULL;
	if (err) {
		/* The handler's error, in flight again for the teardowns. */
		mine = (aw_error *)aw_error_current();
		aw_error_hold(mine);
	}
	int rc = aw_exitstack_unwind(&req->deps, err);
	const aw_error *now = aw_error_current();
	if (rc && (rc != err || now != mine))
		aw__http_log_limited(req->app, now, "%.*s %.*s: a dependency's teardown failed", (int)req->method_len,
				     req->base + req->method_off, (int)req->path.len, req->path.p);
	aw_error_clear();
	aw_error_free(mine);
	req->deplist = NULL;
}

/* ---- dispatch ------------------------------------------------------------------- */

/* With the debug page on, a handler's task is called after its request
 * ("GET /users/42") while the handler runs: the page, aw_dump and the
 * slow-step reports then say which request a task serves. */
static void name_task(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	char name[32];
	snprintf(name, sizeof name, "%.*s %.*s", (int)r->method_len, r->base + r->method_off,
		 (int)(r->path.len < 28 ? r->path.len : 28), r->path.p);
	aw_task_set_name(aw_task_current(), name);
}

/* The routing outcome, for the innermost step of the app's middleware. */
typedef struct routed {
	aw_http_conn *c;
	int st;                    /* 0, or 404/405/400... to answer */
	char allow[160];
} routed;

/* Answer a routing failure or run the handler: the innermost step of the
 * app's middleware (404 and 405 are answers their exits see too). */
static int route_and_call(void *arg)
{
	routed *rt = arg;
	aw_http_conn *c = rt->c;
	aw_http_request *r = &c->req;
	aw_app *app = c->app;
	if (rt->st) {
		const char *detail = rt->st == 400 && r->bad_request ? r->bad_request : aw__http_reason(rt->st);
		if (aw__http_queue_error(c, rt->st, detail, rt->st == 405 ? rt->allow : NULL))
			aw_error_clear();
		return 0;
	}
	aw__http_trace_route(r);
	const aw_route *route = r->route;
	if (AW_UNLIKELY(app->debug != NULL))
		name_task(c);
	int err = route->fn(r, &c->res, route->ud);
	if (AW_UNLIKELY(app->debug != NULL))
		aw_task_set_name(aw_task_current(), "http-conn");
	return err;
}

int aw__app_dispatch(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	aw_http_response *res = &c->res;
	aw_app *app = c->app;
	routed rt = { .c = c };
	rt.st = aw__router_match(&app->router, r, rt.allow, sizeof rt.allow);
	if (rt.st && !app->mw.n) {
		/* No app middleware: answered here, outside the deadline. */
		const char *detail = rt.st == 400 && r->bad_request ? r->bad_request : aw__http_reason(rt.st);
		return aw__http_queue_error(c, rt.st, detail, rt.st == 405 ? rt.allow : NULL);
	}
	/* A WebSocket lives as long as its peer: no request deadline. */
	r->deadline = !rt.st && r->route->fn == aw__ws_route_handler ? AW_NEVER
									 : aw__http_after(c->lim->request_deadline);
	aw_exitstack_init(&r->deps);
	int err = 0, chained = 1;
	aw_error *e = NULL;
	aw_scope sc;
	aw_error_clear();
	AW_WITH(aw_deadline_init(&sc, r->deadline)) {
		c->handler_scope = &sc;
		c->peer_gone = false;
		if (AW_UNLIKELY(c->hup_seen))
			aw__http_conn_check_peer(c);
		if (app->mw.n) {
			/* Maps a failure to a held response before the exits. */
			err = chained = aw__mw_run(c, &app->mw, route_and_call, &rt);
		} else {
			aw__http_trace_route(r);
			const aw_route *route = r->route;
			if (AW_UNLIKELY(app->debug != NULL))
				name_task(c);
			err = route->fn(r, res, route->ud);
			if (AW_UNLIKELY(app->debug != NULL))
				aw_task_set_name(aw_task_current(), "http-conn");
		}
		c->handler_scope = NULL;
		if (err < 0) {
			/* The error in flight is the truth: exits on the
			 * handler's way out may have replaced what it returned
			 * (the old one is then the new one's cause). */
			if (!aw_error_pending())
				(void)!aw_raise(err, "the handler returned %d (%s)", err, aw_strerror(err));
			e = aw_error_take();
			err = e->code;
		}
	}
	c->handler_scope = NULL;
	if (err > 0)
		err = 0;
	if (!err && aw_error_pending()) {
		/* The block's exit failed (e.g. the deadline hit an exit), or
		 * the handler returned 0 with an error in flight. */
		err = aw_error_pending();
		e = aw_error_take();
	}
	if (err < 0) {
		r->trace_err = err;
		/* Made into a response already when middleware ran (before
		 * their exits, which may have replaced it). */
		int status = err == chained ? res->status : aw__http_map_error(c, err, e);
		if (status == 499 || res->status == 499) {
			/* nothing to log: the client left */
		} else if (status >= 500 || res->status >= 500) {
			aw__http_log_limited(app, e, "%.*s %.*s failed (%d)", (int)r->method_len, r->base + r->method_off,
					     (int)r->path.len, r->path.p, res->status ? res->status : status);
		}
	} else if (!res->sent) {
		if (res->in_json) {
			res->in_json = false;
			(void)!aw_raise(-EINVAL, "the handler began a JSON response and did not end it");
			aw__http_log_limited(app, aw_error_current(), "%.*s %.*s failed (500)", (int)r->method_len,
					     r->base + r->method_off, (int)r->path.len, r->path.p);
			aw_error_clear();
			aw__http_queue_error(c, 500, "Internal Server Error", NULL);
		} else if (res->status != 499) {
			aw__http_queue_response(c, 204, NULL, 0, NULL, 0);
		}
	}
	aw__http_release_held(c);
	if (r->deps.count) {
		/* After the response has left: flush first. */
		if (aw__http_flush(c)) {
			res->close = true;
			aw_error_clear();
		}
		if (e)
			aw_error_raise_obj(e);
		aw__app_deps_unwind(r, err);
		e = NULL;
	} else if (r->deps.entries) {
		if (aw_exitstack_unwind(&r->deps, 0) < 0)   /* nothing to run; frees */
			aw_error_clear();   /* nothing ran: cannot fail */
	}
	aw_error_free(e);
	aw_error_clear();
	return 0;
}

/* ---- lifespan and serving -------------------------------------------------------------- */

static int hooks_gen(aw_gen *g, void *arg)
{
	aw_app *app = arg;
	for (size_t i = 0; i < app->nstartup; i++) {
		int rc = app->startup[i].fn(app, app->startup[i].arg);
		if (rc)
			return rc < 0 ? rc : aw_raise(-EINVAL, "startup hook %zu returned %d", i, rc);
	}
	int err = aw_gen_yield(g, NULL);
	for (size_t i = app->nshutdown; i-- > 0;) {
		int rc = app->shutdown[i].fn(app, app->shutdown[i].arg);
		if (rc) {
			aw__http_log_error(app, aw_error_current(), "shutdown hook %zu failed", i);
			aw_error_clear();
		}
	}
	return err;
}

/* The lifespan around the server: its teardown sees the error the server
 * stops with. */
static int serve_lifespan(aw_app *app, aw_http_lsock *ls, size_t n)
{
	aw_exitstack life;
	aw_gen hooks, user;
	int rc = 0;
	AW_WITH(aw_exitstack_init(&life)) {
		if (app->nstartup || app->nshutdown) {
			rc = aw_exitstack_enter(&life, aw_gen_init(&hooks, "on_startup/on_shutdown", hooks_gen, app));
			if (rc)
				break;
		}
		if (app->lifespan) {
			rc = aw_exitstack_enter(&life, aw_gen_init(&user, "lifespan", app->lifespan, app->lifespan_arg));
			if (rc)
				break;
			if (aw_gen_value(&user))
				app->state = aw_gen_value(&user);
		}
		app->started = true;
		aw__app_announce_started(app);
		rc = aw__http_server_run(app, ls, n);
		if (rc)
			break;
	}
	if (!rc)
		rc = aw_error_pending();
	return rc;
}

/* SIGINT/SIGTERM: the first stops the server (after drain_delay, while
 * the readiness route already fails), a second one cancels the requests
 * still running without waiting for the rest of the grace. SIGUSR2 (under
 * aw_app_run only): in one process, start the next generation and stop
 * once it serves; in a worker, the supervisor's word that the next
 * generation serves: stop at once, without drain_delay. SIGHUP (watched
 * with TLS on): reload the certificate. */
static int signal_watcher(void *arg)
{
	aw_app *app = arg;
	for (int n = 0;;) {
		int sig = aw_signals_wait(app->sig, AW_NEVER);
		if (sig <= 0)
			return 0;
		if (sig == SIGHUP) {
			aw__http_tls_on_sighup(app);
			continue;
		}
		if (sig == SIGUSR2) {
			if (n > 0)
				continue;
			if (app->worker >= 0) {
				app->handing_over = true;
				n++;
				aw_app_stop(app);
				continue;
			}
			int r = aw__handover_single(app);
			if (r == -ECANCELED)
				return 0;
			if (r <= 0)
				continue;
			sig = r;   /* a SIGTERM while the next generation started */
		}
		if (n++ == 0) {
			aw_time delay = app->limits.drain_delay;
			app->draining = true;
			if (delay > 0 && !app->handing_over) {
				aw__http_log_error(app, NULL, "%s: not ready; stopping in %lld ms", strsignal(sig),
						   (long long)(delay / 1000000));
				int again = aw_signals_wait(app->sig, aw_now() + delay);
				if (again == -ECANCELED)
					return 0;
				aw_error_clear();
				if (again == SIGHUP)
					aw__http_tls_on_sighup(app);
				else if (again > 0 && again != SIGUSR2)
					n++;
			}
			aw__http_log_error(app, NULL, "%s: shutting down", strsignal(sig));
			aw_app_stop(app);
			if (n > 1 && app->srv)
				aw__http_server_hurry(app->srv);
		} else {
			aw__http_log_error(app, NULL, "%s again: cancelling the requests in flight", strsignal(sig));
			if (app->srv)
				aw__http_server_hurry(app->srv);
		}
	}
}

int aw_app_serve(aw_app *app, aw_listener *l)
{
	APP_OR_EINVAL(app, "aw_app_serve");
	return aw_app_serve_listeners(app, &(aw_app_listener){ l, false }, 1);
}

int aw_app_serve_listeners(aw_app *app, const aw_app_listener *lv, size_t n)
{
	APP_OR_EINVAL(app, "aw_app_serve_listeners");
	if (!lv || n == 0 || n > AW_HTTP_MAX_LISTENERS)
		return aw_raise(-EINVAL, "aw_app_serve_listeners: %zu listeners (1 to %d)", lv ? n : 0,
				AW_HTTP_MAX_LISTENERS);
	aw_http_lsock ls[AW_HTTP_MAX_LISTENERS];
	bool tls = false;
	for (size_t i = 0; i < n; i++) {
		if (!lv[i].l)
			return aw_raise(-EINVAL, "aw_app_serve_listeners: listener %zu is NULL", i);
		if (lv[i].tls && !app->tls)
			return aw_raise(-EINVAL, "aw_app_serve_listeners: listener %zu is a TLS listener, and the app "
					"has no TLS settings (aw_app_tls)", i);
		ls[i] = (aw_http_lsock){ .l = lv[i].l, .tls = lv[i].tls };
		tls |= lv[i].tls;
	}
	if (app->srv || app->sig)
		return aw_raise(-EBUSY, "aw_app_serve: the app is already serving");
	if (!aw_task_current())
		return aw_raise(-AW_ENOTASK, "aw_app_serve: not inside a task (call it from aw_run's main)");
	if (tls && aw__http_tls_prepare(app))
		return aw_error_pending();
	app->stop_requested = false;
	app->started = false;
	/* SIGUSR2 under aw_app_run (graceful restart); SIGHUP reloads the
	 * certificate when the app has TLS settings. */
	int sigs[4] = { SIGINT, SIGTERM }, nsigs = 2;
	if (app->run_managed)
		sigs[nsigs++] = SIGUSR2;
	if (app->tls)
		sigs[nsigs++] = SIGHUP;
	aw_signals sig;
	aw_group g;
	int rc = 0;
	aw_error *e = NULL;
	/* The signals stay ours until the lifespan's teardown is over: a
	 * second SIGTERM must not kill the process in the middle of it. */
	AW_WITH(aw_signals_init(&sig, sigs, nsigs), aw_group_init(&g)) {
		app->sig = &sig;
		if (aw_group_spawn(&g, signal_watcher, app, "http-signals"))
			aw_error_clear();
		if (aw__http_metrics_peer_start(app, &g))
			aw_error_clear();
		rc = serve_lifespan(app, ls, n);
		if (rc)
			e = aw_error_take();
		aw_group_cancel(&g);
		/* Signals that came during the teardown: handled (by stopping),
		 * not left pending to kill us when the block unblocks them. */
		while (aw_signals_wait(&sig, 0) > 0)
			;
		aw_error_clear();
		app->sig = NULL;
	}
	app->sig = NULL;
	/* Messages the rate limit dropped and has not reported yet (a flood
	 * that stopped): account for them before the server goes. */
	aw_log_flush(aw__app_log(app));
	if (app->access_log)
		fflush(app->access_log);   /* access records are not flushed one by one */
	if (e) {
		aw_error_raise_obj(e);
		rc = e->code;
	} else if (!rc) {
		rc = aw_error_pending();
	}
	return rc;
}

void aw_app_stop(aw_app *app)
{
	if (!app)
		return;
	app->stop_requested = true;
	if (app->srv)
		aw__http_server_stop(app->srv);
}

bool aw__app_started(const aw_app *app)
{
	return app->started;
}
