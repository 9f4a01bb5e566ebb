/* SPDX-License-Identifier: MIT */
/*
 * pg's error range (AW_EPG_BASE, awith/pg.h): its messages, registered with
 * aw_strerror when the library is loaded. Every object of the pg layer
 * includes awith/pg.h, which refers to aw__pg_error_range, so a static link
 * of any program using the layer's header takes this file and its
 * constructor too.
 */
#include "internal.h"

const char aw__pg_error_range = 1;

static const char *pg_strerror(int code)
{
	switch (code) {
	case AW_EPG: return "the database server rejected the statement";
	case AW_EPG_AUTH: return "database authentication failed";
	case AW_EPG_NODB: return "the database does not exist";
	case AW_EPG_TOO_MANY: return "the database server has no connection slot left";
	case AW_EPG_NULL: return "the value is SQL NULL";
	case AW_EPG_TYPE: return "the value does not have the requested type";
	default: return NULL;
	}
}

__attribute__((constructor)) static void pg_errors_register(void)
{
	(void)aw_error_range_register(AW_EPG_BASE, "pg", pg_strerror);
}
