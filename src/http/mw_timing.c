/* SPDX-License-Identifier: MIT */
/*
 * The timing middleware (awith/middleware.h, aw_http_mw_timing): the time
 * from its enter to its exit as a Server-Timing metric, so a browser's
 * developer tools (or curl -v) show where the time of a request went.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct timing {
	char name[64];
	size_t len;
} timing;

typedef struct timing_state {
	aw_time t0;
} timing_state;

static int timing_enter(void *self, aw_http_request *req, aw_http_response *res, void *state)
{
	(void)self, (void)req, (void)res;
	((timing_state *)state)->t0 = aw_now();
	return 0;
}

static int timing_exit(void *self, aw_http_request *req, aw_http_response *res, void *state, int err)
{
	(void)req;
	timing *o = self;
	if (!aw_http_response_editable(res))
		return err;   /* streamed: its head has left */
	aw_time d = aw_now() - ((timing_state *)state)->t0;
	if (d < 0)
		d = 0;
	/* "name;dur=12.345" by hand: snprintf costs more than the rest of
	 * this middleware (it was 1,800 of its instructions per request). */
	char v[96], digits[24];
	size_t n = o->len;
	memcpy(v, o->name, n);
	memcpy(v + n, ";dur=", 5);
	n += 5;
	uint64_t ms = (uint64_t)d / 1000000, frac = (uint64_t)d / 1000 % 1000;
	int k = 0;
	do {
		digits[k++] = (char)('0' + ms % 10);
		ms /= 10;
	} while (ms);
	while (k)
		v[n++] = digits[--k];
	v[n++] = '.';
	v[n++] = (char)('0' + frac / 100);
	v[n++] = (char)('0' + frac / 10 % 10);
	v[n++] = (char)('0' + frac % 10);
	if (aw__http_header_put(res, "Server-Timing", 13, v, n))
		aw_error_clear();   /* no memory: the response goes without it */
	return err;
}

int aw_http_mw_timing(aw_http_mw **out, const char *name)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_http_mw_timing: out is NULL");
	*out = NULL;
	if (!name)
		name = "app";
	size_t n = strlen(name);
	bool ok = n > 0 && n < sizeof ((timing *)0)->name;
	for (size_t i = 0; ok && i < n; i++) {
		char ch = name[i];
		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		     ch == '_' || ch == '.';
	}
	if (!ok)
		return aw_raise(-EINVAL, "aw_http_mw_timing: '%s' is not a metric name (a token of up to 63 characters)", name);
	timing *o = aw__calloc(1, sizeof *o);
	if (!o)
		return aw_raise(-ENOMEM, "aw_http_mw_timing: no memory");
	memcpy(o->name, name, n + 1);
	o->len = n;
	static const aw_http_mw_ops ops = { .name = "timing", .state_size = sizeof(timing_state),
					    .enter = timing_enter, .exit = timing_exit, .free = free };
	return aw_http_mw_new(out, &ops, o);
}
