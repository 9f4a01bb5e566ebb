/* SPDX-License-Identifier: MIT */
/*
 * The rate-limit middleware (awith/middleware.h, aw_http_mw_rate_limit):
 * a token bucket per client address, in a table of fixed size.
 *
 * The table is open-addressed with a probe window of PROBE slots. An
 * address looks for itself in its window; a new one takes an empty slot,
 * else a slot whose bucket has refilled (a full bucket is the same as no
 * entry), else the least recently seen of the window. So memory is fixed
 * at creation whatever the number of addresses, and what a flood of
 * addresses can do is make the limit forget some clients (they start
 * again with a full bucket), never grow the process.
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PROBE 8

typedef struct bucket {
	uint8_t addr[16];
	aw_time last;        /* 0: empty slot */
	double tokens;
} bucket;

typedef struct ratelimit {
	double rate, burst;
	aw_time full_after;  /* an idle bucket is full again after this */
	size_t cap;          /* a power of two >= max_clients */
	bucket *slots;
	pthread_mutex_t lock;
} ratelimit;

static size_t slot_of(const uint8_t a[16], size_t cap)
{
	uint64_t h = 1469598103934665603ULL;
	for (int i = 0; i < 16; i++)
		h = (h ^ a[i]) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

/* Take a token for addr at time now: 0, or the seconds until one is back. */
static long take(ratelimit *o, const uint8_t addr[16], aw_time now)
{
	pthread_mutex_lock(&o->lock);
	size_t i0 = slot_of(addr, o->cap);
	bucket *b = NULL, *free_slot = NULL, *oldest = NULL;
	for (size_t k = 0; k < PROBE; k++) {
		bucket *s = &o->slots[(i0 + k) & (o->cap - 1)];
		if (s->last && memcmp(s->addr, addr, 16) == 0) {
			b = s;
			break;
		}
		if (!free_slot && (!s->last || now - s->last >= o->full_after))
			free_slot = s;
		if (!oldest || s->last < oldest->last)
			oldest = s;
	}
	if (b) {
		b->tokens += (double)(now - b->last) / 1e9 * o->rate;
		if (b->tokens > o->burst)
			b->tokens = o->burst;
	} else {
		b = free_slot ? free_slot : oldest;
		memcpy(b->addr, addr, 16);
		b->tokens = o->burst;
	}
	b->last = now ? now : 1;
	long wait = 0;
	if (b->tokens >= 1) {
		b->tokens -= 1;
	} else {
		double need = (1 - b->tokens) / o->rate;   /* seconds, rounded up (no libm) */
		wait = need > 1e6 ? 1000000 : (long)need;
		if ((double)wait < need)
			wait++;
		if (wait < 1)
			wait = 1;
	}
	pthread_mutex_unlock(&o->lock);
	return wait;
}

static int rl_enter(void *self, aw_http_request *req, aw_http_response *res, void *state)
{
	(void)state;
	ratelimit *o = self;
	uint8_t addr[16];
	if (!aw__http_peer_key(req->conn, addr))
		return 0;   /* a Unix socket: no address to limit */
	long wait = take(o, addr, aw_now());
	if (!wait)
		return 0;
	char v[24];
	snprintf(v, sizeof v, "%ld", wait);
	if (aw_http_set_header(res, "Retry-After", v))
		aw_error_clear();
	static const char body[] = "{\"detail\":\"too many requests\"}";
	return aw_http_send(res, 429, "application/json", body, sizeof body - 1);
}

static void rl_free(void *self)
{
	ratelimit *o = self;
	pthread_mutex_destroy(&o->lock);
	free(o->slots);
	free(o);
}

int aw_http_mw_rate_limit(aw_http_mw **out, const aw_http_rate_limit_opts *opts)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_http_mw_rate_limit: out is NULL");
	*out = NULL;
	if (!opts || !(opts->rate > 0) || !(opts->rate < 1e12))
		return aw_raise(-EINVAL, "aw_http_mw_rate_limit: rate must be > 0 tokens a second");
	double burst = opts->burst ? opts->burst : (opts->rate > 1 ? opts->rate : 1);
	if (!(burst >= 1) || !(burst < 1e15))
		return aw_raise(-EINVAL, "aw_http_mw_rate_limit: burst must be at least 1");
	size_t max = opts->max_clients ? opts->max_clients : 10000;
	if (max > ((size_t)1 << 26))
		return aw_raise(-EINVAL, "aw_http_mw_rate_limit: max_clients %zu is too many (at most 2^26)", max);
	size_t cap = PROBE;
	while (cap < max)
		cap <<= 1;
	ratelimit *o = aw__calloc(1, sizeof *o);
	if (!o || !(o->slots = aw__calloc(cap, sizeof *o->slots))) {
		free(o);
		return aw_raise(-ENOMEM, "aw_http_mw_rate_limit: no memory for %zu clients", max);
	}
	o->rate = opts->rate;
	o->burst = burst;
	o->cap = cap;
	double full = burst / opts->rate * 1e9;
	o->full_after = full > 1e18 ? AW_NEVER : (aw_time)full + 1;
	pthread_mutex_init(&o->lock, NULL);
	static const aw_http_mw_ops ops = { .name = "rate limit", .enter = rl_enter, .free = rl_free };
	return aw_http_mw_new(out, &ops, o);
}
