/* SPDX-License-Identifier: MIT */
#include "pg_util.h"

#include <stdio.h>

/* postgresql://user:pass@host:port/db[?query] */
char *pg_url_with(const char *url, const char *user, const char *password, const char *db)
{
	const char *p = strstr(url, "://");
	if (!p)
		return strdup(url);
	p += 3;
	const char *at = strchr(p, '@');
	const char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
	const char *hostp = at ? at + 1 : p;
	const char *slash = strchr(hostp, '/');
	const char *q = slash ? strchr(slash, '?') : NULL;
	char u[128] = "", pw[128] = "", d[128] = "", host[256] = "";
	if (at) {
		size_t ul = colon ? (size_t)(colon - p) : (size_t)(at - p);
		snprintf(u, sizeof u, "%.*s", (int)ul, p);
		if (colon)
			snprintf(pw, sizeof pw, "%.*s", (int)(at - colon - 1), colon + 1);
	}
	snprintf(host, sizeof host, "%.*s", (int)(slash ? slash - hostp : (long)strlen(hostp)), hostp);
	if (slash)
		snprintf(d, sizeof d, "%.*s", (int)(q ? q - slash - 1 : (long)strlen(slash + 1)), slash + 1);
	char *out = NULL;
	if (asprintf(&out, "postgresql://%s%s%s%s%s/%s%s", user ? user : u,
		     (password ? *password : *pw) ? ":" : "", password ? password : pw,
		     (user ? *user : *u) ? "@" : "", host, db ? db : d, q ? q : "") < 0)
		return NULL;
	return out;
}
