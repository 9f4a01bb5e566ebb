/* SPDX-License-Identifier: MIT */
/*
 * Rate-limited logging per message site (awith/core.h, "Rate-limited
 * logging"). A site is a static record at the call site; its counters
 * change under one process-wide lock, since workers of one process may run
 * loops on several threads. The window is fixed (not sliding): `burst`
 * messages from the start of an interval, then none until it ends. Cheap
 * when dropping: a lock, a clock read, two compares.
 */
#include "internal.h"

#include <pthread.h>
#include <stdarg.h>

#define DEFAULT_BURST 10
#define DEFAULT_INTERVAL AW_SEC(5)

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned log_burst = DEFAULT_BURST;
static aw_time log_interval = DEFAULT_INTERVAL;
static aw_log_site *dropping;   /* sites that dropped something, ever */

void aw_log_limit_set(unsigned burst, aw_time interval)
{
	pthread_mutex_lock(&log_lock);
	log_burst = burst;
	log_interval = interval > 0 ? interval : DEFAULT_INTERVAL;
	pthread_mutex_unlock(&log_lock);
}

bool aw_log_allow(aw_log_site *site, uint64_t *suppressed)
{
	if (suppressed)
		*suppressed = 0;
	if (!site)
		return true;
	bool ok;
	pthread_mutex_lock(&log_lock);
	if (log_burst == 0) {
		ok = true;
	} else {
		aw_time now = aw_now();
		if (site->printed == 0 || now - site->window >= log_interval) {
			site->window = now;
			site->printed = 0;
		}
		ok = site->printed < log_burst;
		if (ok) {
			site->printed++;
		} else {
			site->suppressed++;
			if (!site->listed) {
				site->listed = true;
				site->next = dropping;
				dropping = site;
			}
		}
	}
	if (ok) {
		if (suppressed)
			*suppressed = site->suppressed;
		site->suppressed = 0;
	}
	pthread_mutex_unlock(&log_lock);
	return ok;
}

bool aw_log_ratelimited_at(aw_log_site *site, FILE *out, const aw_error *e, const char *fmt, ...)
{
	uint64_t dropped;
	if (!aw_log_allow(site, &dropped))
		return false;
	if (!out)
		out = stderr;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	flockfile(out);
	if (dropped)
		fprintf(out, "awith: %llu similar messages suppressed (%s:%d)\n", (unsigned long long)dropped,
			site ? site->loc.file : "?", site ? site->loc.line : 0);
	fprintf(out, "%s\n", line);
	if (e)
		aw_error_print(out, e);
	fflush(out);
	funlockfile(out);
	return true;
}

void aw_log_flush(FILE *out)
{
	if (!out)
		out = stderr;
	pthread_mutex_lock(&log_lock);
	for (aw_log_site *s = dropping; s; s = s->next) {
		if (!s->suppressed)
			continue;
		fprintf(out, "awith: %llu similar messages suppressed (%s:%d)\n", (unsigned long long)s->suppressed,
			s->loc.file, s->loc.line);
		s->suppressed = 0;
	}
	pthread_mutex_unlock(&log_lock);
	fflush(out);
}
