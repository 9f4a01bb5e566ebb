/* SPDX-License-Identifier: MIT */
/*
 * Small memory helpers of the http layer: growable byte buffers (the
 * output buffer, the JSON writer's body) and a per-request bump allocator
 * (decoded parameters, query pairs, dependency records) whose first block
 * lives inside the connection, so a typical request allocates nothing.
 */
#include "internal.h"
#include "awith/log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int aw__buf_reserve(aw_buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return 0;
	if (more > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	size_t cap = b->cap ? b->cap : 1024;
	while (cap < b->len + more)
		cap *= 2;
	char *p = aw__realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

void aw__buf_free(aw_buf *b)
{
	free(b->p);
	*b = (aw_buf){ 0 };
}

void aw__arena_init(aw_arena *a)
{
	a->p = a->first;
	a->left = sizeof a->first;
	a->blocks = NULL;
}

void aw__arena_reset(aw_arena *a)
{
	while (a->blocks) {
		aw_arena_block *b = a->blocks;
		a->blocks = b->next;
		free(b);
	}
	a->p = a->first;
	a->left = sizeof a->first;
}

void *aw__arena_alloc(aw_arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (AW_UNLIKELY(n > a->left)) {
		if (n > SIZE_MAX / 2)
			return NULL;
		size_t cap = n > 4096 ? n : 4096;
		aw_arena_block *b = aw__malloc(sizeof *b + cap + 16);
		if (!b)
			return NULL;
		b->next = a->blocks;
		b->cap = cap;
		a->blocks = b;
		a->p = (char *)(((uintptr_t)b->data + 15) & ~(uintptr_t)15);
		a->left = cap;
	}
	void *r = a->p;
	a->p += n;
	a->left -= n;
	return r;
}

char *aw__arena_strndup(aw_arena *a, const char *s, size_t n)
{
	char *r = aw__arena_alloc(a, n + 1);
	if (r) {
		memcpy(r, s, n);
		r[n] = 0;
	}
	return r;
}

/* The server's own records (awith/log.h): level error with an error,
 * else info (rate-limited sites: warn); the app's name as a field; the
 * default sink writes them to the app's error log. */
static void log_line(aw_log_site *site, const aw_app *app, const aw_error *e, const char *fmt, va_list ap)
{
	char line[512];
	vsnprintf(line, sizeof line, fmt, ap);
	aw_log_field f[] = { AW_KV_STR("app", app && app->name ? app->name : "app") };
	aw_log_record r = { .level = e ? AW_LOG_ERROR : site ? AW_LOG_WARN : AW_LOG_INFO,
			    .msg = line,
			    .error = e,
			    .fields = f,
			    .nfields = 1 };
	aw_log_emit_opts o = { .out = aw__app_log(app) };
	(void)aw_log_emit(site, &r, &o);
}

void aw__http_log_error(const aw_app *app, const aw_error *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_line(NULL, app, e, fmt, ap);
	va_end(ap);
}

void aw__http_log_error_site(aw_log_site *site, const aw_app *app, const aw_error *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_line(site, app, e, fmt, ap);
	va_end(ap);
}
