/* SPDX-License-Identifier: MIT */
/*
 * Small memory helpers of the http layer: growable byte buffers (the
 * output buffer, the JSON writer's body) and a per-request bump allocator
 * (decoded parameters, query pairs, dependency records) whose first block
 * lives inside the connection, so a typical request allocates nothing.
 */
#include "internal.h"

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

static void log_line(const aw_app *app, const aw_error *e, uint64_t dropped, const char *fmt, va_list ap)
{
	FILE *out = aw__app_log(app);
	const char *name = app && app->name ? app->name : "app";
	char line[512];
	vsnprintf(line, sizeof line, fmt, ap);
	flockfile(out);
	if (dropped)
		fprintf(out, "awith http [%s]: %llu similar messages suppressed\n", name, (unsigned long long)dropped);
	/* One write for the line, so lines from workers do not interleave. */
	fprintf(out, "awith http [%s]: %s\n", name, line);
	if (e)
		aw_error_print(out, e);
	fflush(out);
	funlockfile(out);
}

void aw__http_log_error(const aw_app *app, const aw_error *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_line(app, e, 0, fmt, ap);
	va_end(ap);
}

void aw__http_log_error_site(aw_log_site *site, const aw_app *app, const aw_error *e, const char *fmt, ...)
{
	uint64_t dropped;
	if (!aw_log_allow(site, &dropped))
		return;
	va_list ap;
	va_start(ap, fmt);
	log_line(app, e, dropped, fmt, ap);
	va_end(ap);
}
