/* SPDX-License-Identifier: MIT */
/*
 * Errors become responses in one place: the app's table from error codes
 * (or ranges) to a status and a detail, the defaults behind it, and the
 * http layer's error range (AW_EHTTP_*, awith/http.h) for aw_strerror.
 *
 * What the client sees is decided here; what the operator sees (the whole
 * error with its cause chain) is logged once by the dispatch, after the
 * middleware exits (app.c).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

const char aw__http_error_range = 1;

static const char *http_strerror(int code)
{
	switch (code) {
	case AW_EHTTP_BAD_REQUEST: return "bad request";
	case AW_EHTTP_UNAUTHORIZED: return "unauthorized";
	case AW_EHTTP_FORBIDDEN: return "forbidden";
	case AW_EHTTP_NOT_FOUND: return "not found";
	case AW_EHTTP_CONFLICT: return "conflict";
	case AW_EHTTP_VALIDATION: return "validation failed";
	case AW_EHTTP_TRAILER: return "trailer cannot be sent";
	default: return NULL;
	}
}

__attribute__((constructor)) static void http_errors_register(void)
{
	(void)aw_error_range_register(AW_EHTTP_BASE, "http", http_strerror);
}

/* The pg layer's range (awith/pg.h; not included: the http layer does not
 * link libawith-pg). The ranges of awith/ext.h are fixed. */
#define PG_RANGE 0x4400
#define PG_TOO_MANY (PG_RANGE + 4)   /* AW_EPG_TOO_MANY: no connection slot */

typedef struct errmap_entry {
	int lo, hi;            /* negative codes, lo <= hi */
	int status;
	char *detail;          /* NULL: the error's message (< 500) or the reason */
} errmap_entry;

struct aw__errmap {
	errmap_entry *v;
	size_t n;
};

int aw_app_error_status(aw_app *app, int first, int last, int status, const char *detail)
{
	if (!app)
		return aw_raise(-EINVAL, "aw_app_error_status: no app");
	if (app->srv)
		return aw_raise(-EBUSY, "aw_app_error_status: the app is serving");
	if (first >= 0 || last >= 0)
		return aw_raise(-EINVAL, "aw_app_error_status: codes are negative (-ENOENT, -AW_EHTTP_NOT_FOUND), "
				"got %d..%d", first, last);
	if (status < 400 || status > 599)
		return aw_raise(-EINVAL, "aw_app_error_status: status %d is not an error status (400-599)", status);
	if (!app->errmap && !(app->errmap = aw__calloc(1, sizeof *app->errmap)))
		return aw_raise(-ENOMEM, "aw_app_error_status: no memory");
	struct aw__errmap *m = app->errmap;
	char *d = NULL;
	if (detail && !(d = aw__strdup(detail)))
		return aw_raise(-ENOMEM, "aw_app_error_status: no memory");
	errmap_entry *v = aw__realloc(m->v, (m->n + 1) * sizeof *v);
	if (!v) {
		free(d);
		return aw_raise(-ENOMEM, "aw_app_error_status: no memory");
	}
	v[m->n++] = (errmap_entry){ first < last ? first : last, first < last ? last : first, status, d };
	m->v = v;
	return 0;
}

void aw__errmap_free(aw_app *app)
{
	if (!app->errmap)
		return;
	for (size_t i = 0; i < app->errmap->n; i++)
		free(app->errmap->v[i].detail);
	free(app->errmap->v);
	free(app->errmap);
	app->errmap = NULL;
}

/* The status and detail for err; *own: the detail is the error's message. */
static int status_for(aw_http_conn *c, int err, const char **detail, bool *own)
{
	aw_http_request *r = &c->req;
	*own = false;
	if (c->reject) {
		*detail = c->reject_msg;
		return c->reject;
	}
	if (c->body_timeout) {
		*detail = "the request body did not arrive in time";
		return 408;
	}
	if (err == -ECANCELED) {
		if (c->peer_gone) {
			*detail = "the client closed the connection";
			return 499;
		}
		if (c->srv && c->srv->draining) {
			*detail = "the server is shutting down";
			return 503;
		}
	}
	const struct aw__errmap *m = c->app->errmap;
	for (size_t i = m ? m->n : 0; i-- > 0;) {
		const errmap_entry *en = &m->v[i];
		if (err < en->lo || err > en->hi)
			continue;
		*detail = en->detail;
		if (!*detail) {
			*own = en->status < 500;
			*detail = aw__http_reason(en->status);
		}
		return en->status;
	}
	switch (err) {
	case -EBADMSG:
		*detail = r->bad_request ? r->bad_request : "Bad Request";
		return 400;
	case -AW_EHTTP_BAD_REQUEST: *own = true; *detail = "Bad Request"; return 400;
	case -AW_EHTTP_UNAUTHORIZED: *own = true; *detail = "Unauthorized"; return 401;
	case -AW_EHTTP_FORBIDDEN: *own = true; *detail = "Forbidden"; return 403;
	case -AW_EHTTP_NOT_FOUND: *own = true; *detail = "Not Found"; return 404;
	case -AW_EHTTP_CONFLICT: *own = true; *detail = "Conflict"; return 409;
	case -AW_EHTTP_VALIDATION: *own = true; *detail = "Unprocessable Content"; return 422;
	case -AW_ETOOLONG:
		*detail = "request body too large";
		return 413;
	case -ETIMEDOUT:
		*detail = aw_now() >= r->deadline ? "the request took too long" : "a service the request needs timed out";
		return 504;
	case -AW_ECLOSED:
	case -EAGAIN:
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -AW_EDNS:
	case -PG_TOO_MANY:
		*detail = "a service the request needs is unavailable";
		return 503;
	default:
		break;
	}
	*detail = "Internal Server Error";
	return 500;
}

/* {"detail": ...} with "request_id" for 5xx, as the mapped response. */
static void queue_mapped(aw_http_conn *c, int status, const char *detail)
{
	if (status < 500 || !c->request_id[0]) {
		aw__http_queue_error(c, status, detail, NULL);
		return;
	}
	/* The id is 1-128 visible ASCII characters: escape " and \ only. */
	char d[200], msg[480];
	snprintf(d, sizeof d, "%s", detail);
	size_t n = 0;
	for (const char *p = c->request_id; *p && n + 3 < sizeof msg; p++) {
		if (*p == '"' || *p == '\\')
			msg[n++] = '\\';
		msg[n++] = *p;
	}
	msg[n] = 0;
	/* aw__http_queue_error escapes its detail; build the body here. */
	aw_http_response *res = &c->res;
	res->hdrs.len = res->hdrs_keep < res->hdrs.len ? res->hdrs_keep : res->hdrs.len;
	char body[800];
	size_t bl = 0;
	bl += (size_t)snprintf(body, sizeof body, "{\"detail\":\"");
	for (const char *p = d; *p && bl + 8 < sizeof body; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '"' || ch == '\\')
			body[bl++] = '\\', body[bl++] = (char)ch;
		else if (ch < 0x20 || ch >= 0x7f)
			body[bl++] = '?';
		else
			body[bl++] = (char)ch;
	}
	bl += (size_t)snprintf(body + bl, sizeof body - bl, "\",\"request_id\":\"%s\"}", msg);
	if (bl >= sizeof body)
		bl = sizeof body - 1;
	if (aw__http_queue_response(c, status, "application/json", 16, body, bl))
		aw_error_clear();
}

int aw__http_map_error(aw_http_conn *c, int err, const aw_error *e)
{
	aw_http_response *res = &c->res;
	const char *detail;
	bool own;
	int status = status_for(c, err, &detail, &own);
	if (own && e && e->code == err && e->msg && *e->msg)
		detail = e->msg;
	if (c->reject || status == 408 || status == 499)
		res->close = true;
	/* Writing the response must not clobber the error in flight. */
	aw_error *keep = aw_error_take();
	if (err == -ECANCELED && res->sent) {
		/* Cancelled (the client left, a shutdown) after the handler
		 * answered: the answer goes, as it was (a half-closed client
		 * still reads it). */
	} else if (status == 499) {
		/* Nobody to answer: the access log says 499 (nginx's "client
		 * closed request"), the error log nothing. */
		res->status = 499;
	} else if (aw__http_response_retract(c)) {
		res->in_json = false;
		res->tr = NULL;   /* the handler's trailers do not go with the error's answer */
		/* Validation (schema.c) answers with every problem it found. */
		if (err != -AW_EHTTP_VALIDATION || !aw__http_queue_validation(c))
			queue_mapped(c, status, detail);
		aw_error_clear();
		if (res->held) {
			res->from_error = true;
			res->mapped_err = err;
		}
	} else {
		/* Bytes of a response have left (streamed): only closing the
		 * connection tells the client it is cut short. */
		res->close = true;
	}
	if (keep)
		aw_error_raise_obj(keep);
	return status;
}
