/* SPDX-License-Identifier: MIT */
/*
 * Doubles to and from text in the C locale, whatever the process's locale
 * (JSON and PostgreSQL's text format want a '.'). Not installed: cnum.c is
 * compiled into each library that formats or parses numbers (hidden), so
 * no layer depends on another for it.
 */
#ifndef AW_COMMON_CNUM_H
#define AW_COMMON_CNUM_H

#include <stddef.h>

double aw__strtod_c(const char *s, char **end);
int aw__snprintf_c(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
