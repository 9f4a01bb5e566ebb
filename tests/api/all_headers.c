/* SPDX-License-Identifier: MIT */
/* Compiled (not linked) by tests/check_api.sh as C (gnu11 and c11) and as
 * C++17 (g++, clang++) with -Wall -Wextra -Werror: every public header,
 * together, in the order a program includes them and in reverse, must
 * compile cleanly. */
#ifdef AW_REVERSE
#include <awith/schema.h>
#include <awith/metrics.h>
#include <awith/pg.h>
#include <awith/ext.h>
#include <awith/log.h>
#include <awith/client.h>
#include <awith/http.h>
#include <awith/io.h>
#include <awith/core.h>
#include <awith/version.h>
#else
#include <awith/version.h>
#include <awith/core.h>
#include <awith/log.h>
#include <awith/io.h>
#include <awith/http.h>
#include <awith/client.h>
#include <awith/pg.h>
#include <awith/ext.h>
#include <awith/metrics.h>
#include <awith/schema.h>
#endif

/* The inline functions are instantiated, not only declared. */
int aw_api_headers_used(aw_lock *l, aw_sem *s, aw_gen *g, aw_queue *q);
int aw_api_headers_used(aw_lock *l, aw_sem *s, aw_gen *g, aw_queue *q)
{
	aw_mgr *m1 = aw_lock_mgr(l);
	aw_mgr *m2 = aw_sem_mgr(s);
	aw_chunk ch = { 0, 0, 0 };
	return (m1 != m2) + (aw_gen_value(g) != 0) + (int)aw_queue_len(q) + (int)ch.len;
}
