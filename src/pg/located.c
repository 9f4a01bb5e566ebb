/* SPDX-License-Identifier: MIT */
/*
 * The public pg calls that record their caller's location the one way every
 * public waiting call does (core.h: a same-named macro stores AW_HERE in
 * aw__where before the call): read it on entry, before any wait moves it,
 * and hand it to the located form, which puts it in the ledger.
 */
#include "internal.h"

int (aw_pg_connect)(aw_pg_conn **out, const char *dsn, const aw_pg_opts *opts)
{
	return aw_pg_connect_at(aw__where, out, dsn, opts);
}

int (aw_pg_pool_open)(aw_pg_pool **out, const aw_pg_pool_opts *opts)
{
	return aw_pg_pool_open_at(aw__where, out, opts);
}

int (aw_pg_pool_acquire)(aw_pg_pool *p, aw_pg_conn **out)
{
	return aw_pg_pool_acquire_at(aw__where, p, out);
}
