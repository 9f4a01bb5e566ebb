/* SPDX-License-Identifier: MIT */
/*
 * Numbers in the C locale, whatever locale the process chose.
 *
 * JSON and PostgreSQL's text format write a decimal point; strtod and
 * printf use the decimal point of LC_NUMERIC, so a program that called
 * setlocale(LC_ALL, "") under de_DE wrote {"price":1,5} and could not read
 * back "1.5". Every conversion of a double in the library goes through
 * these two functions, which use a C locale object made once per process
 * (strtod_l; printf has no _l form, so the thread's locale is switched
 * with uselocale around it: per thread, no lock, nothing global changes).
 */
#include "cnum.h"

#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
	c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

static locale_t the_c_locale(void)
{
	pthread_once(&c_locale_once, make_c_locale);
	return c_locale;
}

double aw__strtod_c(const char *s, char **end)
{
	locale_t c = the_c_locale();
	/* Without a locale object (newlocale failed: no memory) the process's
	 * locale is the best left. */
	return c ? strtod_l(s, end, c) : strtod(s, end);
}

int aw__snprintf_c(char *buf, size_t len, const char *fmt, ...)
{
	locale_t c = the_c_locale();
	locale_t old = c ? uselocale(c) : (locale_t)0;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	if (c)
		uselocale(old);
	return n;
}
