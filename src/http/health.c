/* SPDX-License-Identifier: MIT */
/*
 * Health routes for load balancers: liveness (the loop answers) and
 * readiness (the app can serve now: started, not draining, every check
 * passes). haproxy's `option httpchk GET /readyz` takes an instance out of
 * rotation as soon as readiness fails, which is what drain_delay relies
 * on: the readiness route fails first, the balancer stops sending, and
 * only then does the server stop accepting.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

bool aw_app_draining(const aw_app *app)
{
	return app && (app->draining || app->stop_requested || (app->srv && app->srv->draining));
}

static int h_live(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	if (aw_http_set_header(res, "Cache-Control", "no-store"))
		aw_error_clear();
	return aw_http_send(res, 200, "application/json", "{\"status\":\"alive\"}", 18);
}

static int unready(aw_http_response *res, const char *check, const char *detail)
{
	aw_jw *w = aw_http_json_begin(res, 503);
	aw_jw_object(w);
	aw_jw_key(w, "status");
	aw_jw_string(w, check ? "unready" : detail);
	if (check) {
		aw_jw_key(w, "check");
		aw_jw_string(w, check);
		aw_jw_key(w, "detail");
		aw_jw_string(w, detail);
	}
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

static int h_ready(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	aw_app *app = aw_http_app(req);
	if (aw_http_set_header(res, "Cache-Control", "no-store"))
		aw_error_clear();
	if (aw_app_draining(app))
		return unready(res, NULL, "draining");
	if (!app->started)
		return unready(res, NULL, "starting");
	for (size_t i = 0; i < app->nchecks; i++) {
		struct aw_ready_check *ck = &app->checks[i];
		int rc = 0;
		char detail[256] = "";
		aw_scope sc;
		AW_WITH(aw_timeout_init(&sc, AW_SEC(2))) {
			rc = ck->fn(app, ck->arg);
		}
		if (!rc)
			rc = aw_error_pending();
		if (rc < 0) {
			const aw_error *e = aw_error_current();
			snprintf(detail, sizeof detail, "%s", e ? e->msg : aw_strerror(rc));
			aw_error_clear();
			return unready(res, ck->name, detail);
		}
		aw_error_clear();
	}
	return aw_http_send(res, 200, "application/json", "{\"status\":\"ready\"}", 18);
}

static bool path_ok(const char *p)
{
	return p && p[0] == '/' && !strchr(p, '{');
}

int aw_app_health(aw_app *app, const char *live_path, const char *ready_path)
{
	if (!app)
		return aw_raise(-EINVAL, "aw_app_health: no app");
	if (!live_path && !ready_path)
		return aw_raise(-EINVAL, "aw_app_health: no path");
	if ((live_path && !path_ok(live_path)) || (ready_path && !path_ok(ready_path)))
		return aw_raise(-EINVAL, "aw_app_health: a path must start with '/' and have no {param}");
	if (app->health_on)
		return aw_raise(-EALREADY, "aw_app_health: already on");
	if (app->srv)
		return aw_raise(-EBUSY, "aw_app_health: the app is serving");
	int rc;
	if (live_path && (rc = aw_app_route(app, "GET", live_path, h_live, NULL)) < 0)
		return rc;
	if (ready_path && (rc = aw_app_route(app, "GET", ready_path, h_ready, NULL)) < 0)
		return rc;
	app->health_on = true;
	return 0;
}

int aw_app_ready_check(aw_app *app, const char *name, aw_app_ready_fn fn, void *arg)
{
	if (!app || !fn)
		return aw_raise(-EINVAL, "aw_app_ready_check: no app or no function");
	struct aw_ready_check *v = aw__realloc(app->checks, (app->nchecks + 1) * sizeof *v);
	if (!v)
		return aw_raise(-ENOMEM, "aw_app_ready_check: no memory");
	app->checks = v;
	char *n = aw__strdup(name ? name : "check");
	if (!n)
		return aw_raise(-ENOMEM, "aw_app_ready_check: no memory");
	v[app->nchecks++] = (struct aw_ready_check){ n, fn, arg };
	return 0;
}

void aw__app_health_free(aw_app *app)
{
	for (size_t i = 0; i < app->nchecks; i++)
		free(app->checks[i].name);
	free(app->checks);
	free(app->pid_file);
}
