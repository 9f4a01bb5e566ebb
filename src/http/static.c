/* SPDX-License-Identifier: MIT */
/*
 * Static directories: aw_app_static mounts a directory under a URL prefix.
 *
 * A mount is two routes: GET "<prefix>/{path...}" (HEAD follows GET) and
 * GET "<prefix>", which redirects to "<prefix>/". A request is served in
 * four steps:
 *
 *  1. The path. The router hands over the rest of the path decoded (%2F
 *     is '/', %2e%2e is ".."): a ".." segment, a leading '/' (from "//")
 *     and, unless the mount allows them, names starting with '.' are 404
 *     before anything is opened. A %00 never gets here (the router's 400);
 *     a double encoding (%252e) decodes once, to a name with a '%' in it.
 *  2. The file, confined to the root by the kernel: openat2 with
 *     RESOLVE_BENEATH (as aw_http_file_in). First on the loop with
 *     RESOLVE_CACHED (Linux 5.12): the kernel opens the file only if every
 *     step is in its lookup caches, so the loop never waits for a disk, and
 *     the answer is the same as the full lookup's; when a step is not
 *     cached (EAGAIN), or RESOLVE_CACHED is not there, the same resolution
 *     runs again on the thread pool without it. The root is opened per
 *     request (a "current -> release-N" symlink switched by a deploy is
 *     seen at once). A directory: named without its trailing '/' it is a
 *     301 to the name with it (relative links in its page then work), with
 *     it its index file; no listings. With the client's Accept-Encoding
 *     allowing gzip, NAME.gz next to NAME is served instead, with
 *     Content-Encoding: gzip.
 *  3. Validators and conditions (RFC 9110 section 13.2.2's order):
 *     If-Match / If-Unmodified-Since (412), If-None-Match /
 *     If-Modified-Since (304), then Range with If-Range. The ETag is strong,
 *     made of the file's mtime (to the nanosecond) and size; Last-Modified
 *     is its mtime.
 *  4. The body. Up to SMALL_BODY bytes are read into the connection's
 *     output buffer behind the head (preadv2 RWF_NOWAIT on the loop, from
 *     the page cache; the thread pool when the pages are not there), so
 *     the head and body leave in one write and pipelined answers together.
 *     Larger bodies go with sendfile (aw_stream_sendfile) after the head,
 *     the whole rest in each call, each call with a fresh send_idle
 *     deadline (it returns short when the deadline passes after progress).
 */
#include "internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SMALL_BODY (64 * 1024)

#ifndef RESOLVE_CACHED
#define RESOLVE_CACHED 0x20
#endif

struct aw_static_mount {
	aw_static_mount *next;
	aw_app *app;
	char *prefix;          /* "" for "/", else "/static" (no trailing '/') */
	char *root;
	char *index;           /* NULL: directories have none */
	char *cache_control;   /* NULL: none */
	bool dotfiles;
	bool precompressed;
	bool listing;
};

/* Set when an on-loop RESOLVE_CACHED open is refused as such (a kernel
 * before 5.12: EINVAL; no openat2 or a seccomp filter: ENOSYS, EPERM):
 * every later request goes to the thread pool at once. */
static atomic_bool no_cached_open;

void aw__static_free_all(aw_app *app)
{
	for (aw_static_mount *m = app->statics, *next; m; m = next) {
		next = m->next;
		free(m->prefix);
		free(m->root);
		free(m->index);
		free(m->cache_control);
		free(m);
	}
	app->statics = NULL;
}

/* ---- opening, confined ------------------------------------------------------------ */

typedef struct static_job {
	const aw_static_mount *m;
	const char *rel;          /* decoded, checked */
	bool want_gz;             /* the client takes gzip: try NAME.gz */
	bool cached;              /* on the loop: RESOLVE_CACHED, no waiting */
	bool no_openat2;
	/* results */
	int fd;                   /* the file to send (maybe the .gz), or -1 */
	struct stat st;
	bool gz;
	bool listing;             /* fd is a directory to list */
	bool dir_redirect;        /* a directory named without its trailing '/' */
	int status;               /* 403 or 404 for the client, or 0 */
	const char *why;          /* why 403, for the log */
	int err;                  /* errno of a server-side failure; EAGAIN: not cached */
	char path[4096];          /* the file's path under root (its type) */
} static_job;

static int open_cached(int dirfd, const char *path, uint64_t flags, uint64_t resolve)
{
#ifdef SYS_openat2
	struct open_how how = { .flags = flags, .resolve = resolve | RESOLVE_CACHED };
	int fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
	if (fd < 0 && (errno == EINVAL || errno == ENOSYS || errno == EPERM)) {
		atomic_store_explicit(&no_cached_open, true, memory_order_relaxed);
		errno = EAGAIN;
	}
	return fd;
#else
	(void)dirfd, (void)path, (void)flags, (void)resolve;
	atomic_store_explicit(&no_cached_open, true, memory_order_relaxed);
	errno = EAGAIN;
	return -1;
#endif
}

static int open_file(static_job *j, int rootfd, const char *path)
{
	if (j->cached)
		return open_cached(rootfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
				   RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
	return aw__http_open_under(rootfd, path, j->m->root, &j->no_openat2);
}

static void job_fail(static_job *j, int e)
{
	j->status = aw__http_open_status(e, &j->why);
	if (!j->status)
		j->err = e;   /* EAGAIN from the loop: not cached, try again off it */
}

/* Open rel under the root, its index for a directory, its .gz variant.
 * On the loop (j->cached) it never waits: a step that would is EAGAIN. */
static int static_resolve(void *arg)
{
	static_job *j = arg;
	const aw_static_mount *m = j->m;
	j->fd = -1;
	j->status = j->err = 0;
	j->gz = j->dir_redirect = j->listing = false;
	int rootfd = j->cached ? open_cached(AT_FDCWD, m->root, O_PATH | O_DIRECTORY | O_CLOEXEC, 0)
			       : open(m->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		j->err = errno;
		return 0;
	}
	size_t n = strlen(j->rel);
	if (n + sizeof "/" + strlen(m->index ? m->index : "") + sizeof ".gz" > sizeof j->path) {
		j->status = 404;
		goto out;
	}
	memcpy(j->path, n ? j->rel : ".", n ? n + 1 : 2);
	int fd = open_file(j, rootfd, j->path);
	if (fd < 0 || fstat(fd, &j->st) != 0)
		goto fail;
	if (S_ISDIR(j->st.st_mode)) {
		int dirfd = fd;
		fd = -1;
		if (n && j->rel[n - 1] != '/') {
			close(dirfd);
			j->dir_redirect = true;
			goto out;
		}
		if (m->index) {
			/* Its index, resolved from the root again. */
			while (n && j->path[n - 1] == '/')
				n--;
			int k = n ? snprintf(j->path, sizeof j->path, "%.*s/%s", (int)n, j->rel, m->index)
				  : snprintf(j->path, sizeof j->path, "%s", m->index);
			(void)k;
			fd = open_file(j, rootfd, j->path);
		}
		if (fd < 0 && (!m->index || errno == ENOENT) && m->listing) {
			j->fd = dirfd;   /* no index: its listing (the mount asked for it) */
			j->listing = true;
			goto out;
		}
		int e = errno;
		close(dirfd);
		if (!m->index) {
			j->status = 404;   /* no listing */
			goto out;
		}
		errno = e;
		if (fd < 0 || fstat(fd, &j->st) != 0)
			goto fail;
	}
	if (!S_ISREG(j->st.st_mode)) {
		close(fd);   /* a device, a FIFO, a socket, a directory as index */
		j->status = 404;
		goto out;
	}
	if (j->want_gz) {
		size_t pl = strlen(j->path);
		char gzpath[sizeof j->path];
		memcpy(gzpath, j->path, pl);
		memcpy(gzpath + pl, ".gz", 4);
		int gfd = open_file(j, rootfd, gzpath);
		struct stat gst;
		if (gfd >= 0 && fstat(gfd, &gst) == 0 && S_ISREG(gst.st_mode)) {
			close(fd);
			fd = gfd;
			j->st = gst;
			j->gz = true;
		} else if (gfd >= 0) {
			close(gfd);
		} else if (errno == EAGAIN && j->cached) {
			close(fd);   /* not cached: decide off the loop */
			j->err = EAGAIN;
			goto out;
		}
		/* Any other failure (none there, or a .gz leading out): the
		 * plain file is what is served. */
	}
	j->fd = fd;
	goto out;
fail:;
	int e = errno;
	if (fd >= 0)
		close(fd);
	job_fail(j, e);
out:
	close(rootfd);
	return 0;
}

static int hdr(aw_http_response *res, const char *name, const char *value);

/* ---- directory listings (opt-in) --------------------------------------------------- */

#define LISTING_MAX 10000

typedef struct listing_job {
	int fd;                   /* the directory (taken: closed by the job) */
	bool dotfiles;
	const char *title;        /* the request's path, decoded */
	char *html;               /* malloc'd */
	size_t len;
	int err;
} listing_job;

typedef struct dentry_name {
	char *name;
	bool dir;
} dentry_name;

static int name_cmp(const void *a, const void *b)
{
	return strcmp(((const dentry_name *)a)->name, ((const dentry_name *)b)->name);
}

static void put_html(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		default: fputc(*s, f);
		}
	}
}

/* A name in an href: everything but unreserved characters %-encoded. */
static void put_href(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("-._~", ch))
			fputc(ch, f);
		else
			fprintf(f, "%%%02X", ch);
	}
}

/* Off the loop: read the directory, sorted, as an HTML page of links. */
static int listing_in_thread(void *arg)
{
	listing_job *j = arg;
	DIR *d = fdopendir(j->fd);
	if (!d) {
		j->err = errno;
		close(j->fd);
		return 0;
	}
	dentry_name *names = NULL;
	size_t n = 0, cap = 0, more = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' && (!j->dotfiles || !e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
			continue;
		if (n == LISTING_MAX) {
			more++;
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			dentry_name *nn = realloc(names, cap * sizeof *names);
			if (!nn)
				break;
			names = nn;
		}
		bool dir = e->d_type == DT_DIR;
		struct stat st;
		if (e->d_type == DT_UNKNOWN && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			dir = S_ISDIR(st.st_mode);
		if (!(names[n].name = strdup(e->d_name)))
			break;
		names[n++].dir = dir;
	}
	closedir(d);
	qsort(names, n, sizeof *names, name_cmp);
	FILE *f = open_memstream(&j->html, &j->len);
	if (f) {
		fputs("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Index of ", f);
		put_html(f, j->title);
		fputs("</title></head>\n<body><h1>Index of ", f);
		put_html(f, j->title);
		fputs("</h1>\n<ul>\n<li><a href=\"../\">../</a></li>\n", f);
		for (size_t i = 0; i < n; i++) {
			fputs("<li><a href=\"", f);
			put_href(f, names[i].name);
			fputs(names[i].dir ? "/\">" : "\">", f);
			put_html(f, names[i].name);
			fputs(names[i].dir ? "/</a></li>\n" : "</a></li>\n", f);
		}
		fputs("</ul>\n", f);
		if (more)
			fprintf(f, "<p>and %zu more</p>\n", more);
		fputs("</body></html>\n", f);
		if (fclose(f) != 0)
			j->err = ENOMEM;
	} else {
		j->err = ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i].name);
	free(names);
	return 0;
}

static int send_listing(aw_http_request *req, aw_http_response *res, const aw_static_mount *m, int fd)
{
	aw_http_conn *c = res->conn;
	aw_str path = aw_http_path(req);
	char *title = aw__arena_alloc(&c->arena, path.len + 1);
	if (!title || aw__http_pct_decode(path.p, path.len, title, false) < 0) {
		close(fd);
		return aw_raise(-ENOMEM, "static directory listing: no memory");
	}
	listing_job j = { .fd = fd, .dotfiles = m->dotfiles, .title = title };
	int rc = aw_to_thread(listing_in_thread, &j);
	if (rc < 0) {
		free(j.html);
		return rc;
	}
	if (j.err) {
		free(j.html);
		return aw_raise(-j.err, "static directory %s: listing %s: %s", m->root, title, strerror(j.err));
	}
	rc = hdr(res, "Cache-Control", "no-cache");
	if (!rc)
		rc = aw__http_queue_response(c, 200, "text/html; charset=utf-8", 24, j.html, j.len);
	free(j.html);
	return rc;
}

/* ---- request headers ------------------------------------------------------------------ */

static bool str_eq(aw_str s, const char *lit)
{
	size_t n = strlen(lit);
	return s.len == n && strncasecmp(s.p, lit, n) == 0;
}

static const char *skip_ows(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

/* Does Accept-Encoding allow gzip? "gzip" (or "x-gzip") with a q above 0,
 * or "*" with one when gzip is not named. */
static bool accepts_gzip(aw_str ae)
{
	if (!ae.p)
		return false;
	const char *p = ae.p, *e = ae.p + ae.len;
	int named = -1, star = -1;
	while (p < e) {
		p = skip_ows(p, e);
		const char *t = p;
		while (p < e && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
			p++;
		aw_str tok = { t, (size_t)(p - t) };
		bool zero = false;
		const char *item_end = memchr(p, ',', (size_t)(e - p));
		if (!item_end)
			item_end = e;
		/* Parameters: only q matters. */
		for (const char *q = p; q < item_end; q++) {
			if (*q == ';') {
				const char *v = skip_ows(q + 1, item_end);
				if (item_end - v >= 2 && (v[0] == 'q' || v[0] == 'Q') && v[1] == '=') {
					v += 2;
					zero = v < item_end && *v == '0';
					for (const char *d = v + 1; zero && d < item_end && *d != ' ' && *d != ';'; d++)
						zero = *d == '.' || *d == '0';
				}
			}
		}
		if (str_eq(tok, "gzip") || str_eq(tok, "x-gzip"))
			named = !zero;
		else if (str_eq(tok, "*"))
			star = !zero;
		p = item_end < e ? item_end + 1 : e;
	}
	return named >= 0 ? named == 1 : star == 1;
}

static const char *const wdays[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
				      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* An HTTP-date (IMF-fixdate), whatever the locale. */
static void http_date(time_t t, char out[32])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, 32, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
		 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int parse_num(const char **p, const char *e, int digits_min, int digits_max)
{
	int v = 0, n = 0;
	while (*p < e && **p >= '0' && **p <= '9' && n < digits_max) {
		v = v * 10 + (**p - '0');
		(*p)++;
		n++;
	}
	return n >= digits_min ? v : -1;
}

static int parse_month(const char **p, const char *e)
{
	if (e - *p < 3)
		return -1;
	for (int i = 0; i < 12; i++)
		if (strncmp(*p, months[i], 3) == 0) {
			*p += 3;
			return i;
		}
	return -1;
}

static bool parse_hms(const char **p, const char *e, struct tm *tm)
{
	tm->tm_hour = parse_num(p, e, 2, 2);
	if (*p >= e || *(*p)++ != ':')
		return false;
	tm->tm_min = parse_num(p, e, 2, 2);
	if (*p >= e || *(*p)++ != ':')
		return false;
	tm->tm_sec = parse_num(p, e, 2, 2);
	return tm->tm_hour >= 0 && tm->tm_hour < 24 && tm->tm_min >= 0 && tm->tm_min < 60 && tm->tm_sec >= 0 &&
	       tm->tm_sec < 61;
}

/* The three HTTP-date forms (RFC 9110 5.6.7): IMF-fixdate "Sun, 06 Nov
 * 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT", asctime
 * "Sun Nov  6 08:49:37 1994". -1 if it is none of them. */
static time_t parse_http_date(aw_str s)
{
	if (!s.p)
		return -1;
	const char *p = s.p, *e = s.p + s.len;
	struct tm tm = { 0 };
	const char *sp = p;
	while (sp < e && *sp != ',' && *sp != ' ')
		sp++;
	if (sp >= e)
		return -1;
	if (*sp == ',') {
		p = sp + 1;
		if (p >= e || *p++ != ' ')
			return -1;
		tm.tm_mday = parse_num(&p, e, 2, 2);
		if (p >= e)
			return -1;
		if (*p == ' ') {   /* IMF-fixdate */
			p++;
			if ((tm.tm_mon = parse_month(&p, e)) < 0 || p >= e || *p++ != ' ')
				return -1;
			tm.tm_year = parse_num(&p, e, 4, 4) - 1900;
		} else if (*p == '-') {   /* RFC 850 */
			p++;
			if ((tm.tm_mon = parse_month(&p, e)) < 0 || p >= e || *p++ != '-')
				return -1;
			int y = parse_num(&p, e, 2, 2);
			if (y < 0)
				return -1;
			tm.tm_year = y < 70 ? y + 100 : y;   /* two digits: 1970-2069 */
		} else {
			return -1;
		}
		if (p >= e || *p++ != ' ' || !parse_hms(&p, e, &tm))
			return -1;
		if (e - p != 4 || memcmp(p, " GMT", 4) != 0)
			return -1;
	} else {   /* asctime */
		p = sp + 1;
		if ((tm.tm_mon = parse_month(&p, e)) < 0 || p >= e || *p++ != ' ')
			return -1;
		if (p < e && *p == ' ')
			p++;
		tm.tm_mday = parse_num(&p, e, 1, 2);
		if (p >= e || *p++ != ' ' || !parse_hms(&p, e, &tm) || p >= e || *p++ != ' ')
			return -1;
		tm.tm_year = parse_num(&p, e, 4, 4) - 1900;
		if (p != e)
			return -1;
	}
	if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_year < 70)
		return -1;
	return timegm(&tm);
}

/* Does an If-None-Match / If-Match list hold our tag ("\"...\"")? Weak
 * comparison ignores W/; strong comparison never matches a weak tag. */
static bool etag_list_matches(aw_str list, const char *tag, bool strong)
{
	const char *p = list.p, *e = list.p + list.len;
	size_t tl = strlen(tag);
	while (p < e) {
		while (p < e && (*p == ' ' || *p == '\t' || *p == ','))
			p++;
		if (p >= e)
			break;
		if (*p == '*')
			return true;
		bool weak = false;
		if (e - p >= 2 && p[0] == 'W' && p[1] == '/') {
			weak = true;
			p += 2;
		}
		if (p >= e || *p != '"')
			return false;   /* malformed: no match */
		const char *q = memchr(p + 1, '"', (size_t)(e - p - 1));
		if (!q)
			return false;
		size_t n = (size_t)(q + 1 - p);
		if (n == tl && memcmp(p, tag, tl) == 0 && !(strong && weak))
			return true;
		p = q + 1;
	}
	return false;
}

/* Range: bytes=first-last | first- | -suffix, one range. 0: none to apply
 * (absent, another unit, malformed, several ranges: the whole file);
 * 1: [*off, *off + *len); -1: not satisfiable (416). */
static int parse_range(aw_str h, uint64_t size, uint64_t *off, uint64_t *len)
{
	if (!h.p || h.len < 6 || strncasecmp(h.p, "bytes=", 6) != 0)
		return 0;
	const char *p = h.p + 6, *e = h.p + h.len;
	if (memchr(p, ',', (size_t)(e - p)))
		return 0;   /* several ranges: answered with the whole file */
	p = skip_ows(p, e);
	bool has_first = false, has_last = false;
	uint64_t first = 0, last = 0;
	while (p < e && *p >= '0' && *p <= '9') {
		if (first > (UINT64_MAX - 9) / 10)
			return 0;
		first = first * 10 + (uint64_t)(*p++ - '0');
		has_first = true;
	}
	if (p >= e || *p++ != '-')
		return 0;
	while (p < e && *p >= '0' && *p <= '9') {
		if (last > (UINT64_MAX - 9) / 10)
			return 0;
		last = last * 10 + (uint64_t)(*p++ - '0');
		has_last = true;
	}
	p = skip_ows(p, e);
	if (p != e || (!has_first && !has_last))
		return 0;
	if (!has_first) {   /* the last `last` bytes */
		if (last == 0 || size == 0)
			return -1;
		*len = last < size ? last : size;
		*off = size - *len;
		return 1;
	}
	if (has_last && last < first)
		return 0;   /* invalid: ignored */
	if (first >= size)
		return -1;
	if (!has_last || last >= size)
		last = size - 1;
	*off = first;
	*len = last - first + 1;
	return 1;
}

/* ---- answering -------------------------------------------------------------------------- */

static int hdr(aw_http_response *res, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	if (aw__buf_reserve(&res->hdrs, nl + vl + 4))
		return aw_raise(-ENOMEM, "static file: no memory for a header");
	aw__buf_put(&res->hdrs, name, nl);
	aw__buf_put(&res->hdrs, ": ", 2);
	aw__buf_put(&res->hdrs, value, vl);
	aw__buf_put(&res->hdrs, "\r\n", 2);
	return 0;
}

static int redirect_slash(aw_http_request *req, aw_http_response *res)
{
	aw_http_conn *c = res->conn;
	aw_str path = aw_http_path(req);
	size_t ql = req->query.p ? req->query.len + 1 : 0;
	char *loc = aw__arena_alloc(&c->arena, path.len + 2 + ql + 1);
	if (!loc)
		return aw_raise(-ENOMEM, "static file: no memory for a redirect");
	memcpy(loc, path.p, path.len);
	loc[path.len] = '/';
	size_t n = path.len + 1;
	if (ql) {
		loc[n++] = '?';
		memcpy(loc + n, req->query.p, req->query.len);
		n += req->query.len;
	}
	loc[n] = 0;
	int rc = hdr(res, "Location", loc);
	if (rc)
		return rc;
	static const char body[] = "{\"detail\":\"Moved Permanently\"}";
	return aw__http_queue_response(c, 301, "application/json", 16, body, sizeof body - 1);
}

/* The body, [off, off + len) of fd, behind the head queued in c->out. */
static int send_body(aw_http_conn *c, int fd, uint64_t off, uint64_t len, size_t head_at)
{
	if (c->h2) {
		/* HTTP/2: DATA frames under the client's window (h2.c). */
		(void)head_at;
		char *buf = malloc(64 * 1024);
		if (!buf)
			return aw_raise(-ENOMEM, "static file: no memory");
		int rc = 0;
		for (uint64_t sent = 0; !rc && sent < len;) {
			size_t want = len - sent < 64 * 1024 ? (size_t)(len - sent) : 64 * 1024;
			ssize_t r = aw_file_pread(fd, buf, want, (off_t)(off + sent));
			if (r <= 0) {
				rc = r < 0 ? (int)r : aw_raise(-EIO, "static file: it shrank while being sent");
				break;
			}
			c->res.body_bytes += (size_t)r;
			rc = aw__h2_write(c, buf, (size_t)r);
			sent += (uint64_t)r;
		}
		free(buf);
		return rc;
	}
	aw_http_response *res = &c->res;
	if (len <= SMALL_BODY) {
		if (aw__buf_reserve(&c->out, (size_t)len)) {
			c->out.len = head_at;
			res->sent = false;
			return aw_raise(-ENOMEM, "static file: no memory for a %llu-byte body", (unsigned long long)len);
		}
		size_t got = 0;
		/* From the page cache without waiting, if it is all there
		 * (EAGAIN: not cached; EOPNOTSUPP: a kernel or file system
		 * without RWF_NOWAIT; 0: the end, checked below). */
		while (got < len) {
			struct iovec iov = { c->out.p + c->out.len + got, (size_t)len - got };
			ssize_t r = preadv2(fd, &iov, 1, (off_t)(off + got), RWF_NOWAIT);
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		while (got < len) {
			ssize_t r = aw_file_pread(fd, c->out.p + c->out.len + got, (size_t)len - got, (off_t)(off + got));
			if (r < 0 || r == 0) {
				/* Nothing of this answer has left: take it back
				 * and let the handler's error answer instead. */
				c->out.len = head_at;
				res->sent = false;
				res->status = 0;
				if (r == 0)
					return aw_raise(-EIO, "static file: it shrank while being read (%zu of %llu bytes)",
							got, (unsigned long long)len);
				return (int)r;
			}
			got += (size_t)r;
		}
		c->out.len += (size_t)len;
		res->body_bytes = (size_t)len;
		if (c->out.len >= SMALL_BODY)
			return aw__http_flush(c);
		return 0;
	}
	int rc = aw__http_flush(c);
	uint64_t sent = 0;
	while (!rc && sent < len) {
		/* The rest in one call; a short count (the client slower than
		 * send_idle, but reading) goes on with a fresh deadline: the
		 * limit is on a client that stops reading, not on file size. */
		ssize_t r = aw_stream_sendfile(c->s, fd, (off_t)(off + sent), (size_t)(len - sent),
					       aw__http_after(c->lim->send_idle));
		if (r < 0) {
			rc = (int)r;
			break;
		}
		if (r == 0)
			rc = aw_raise(-EIO, "static file: it shrank while being sent (%llu of %llu bytes)",
				      (unsigned long long)sent, (unsigned long long)len);
		sent += (uint64_t)r;
		res->body_bytes = (size_t)sent;
	}
	if (rc)
		res->close = true;   /* the body is cut short: only closing tells */
	return rc;
}

static int serve(aw_http_request *req, aw_http_response *res, const aw_static_mount *m, static_job *j)
{
	aw_http_conn *c = res->conn;
	const struct stat *st = &j->st;
	uint64_t size = (uint64_t)st->st_size;
	char etag[80], lastmod[32];
	snprintf(etag, sizeof etag, "\"%llx.%lx-%llx%s\"", (unsigned long long)st->st_mtim.tv_sec,
		 (unsigned long)st->st_mtim.tv_nsec, (unsigned long long)size, j->gz ? "-gz" : "");
	http_date(st->st_mtim.tv_sec, lastmod);
	time_t mtime = st->st_mtim.tv_sec;
	int rc = 0;
	if (m->cache_control)
		rc = hdr(res, "Cache-Control", m->cache_control);
	if (!rc && m->precompressed)
		rc = hdr(res, "Vary", "Accept-Encoding");
	if (!rc)
		rc = hdr(res, "ETag", etag);
	if (!rc)
		rc = hdr(res, "Last-Modified", lastmod);
	if (rc)
		return rc;

	/* Preconditions, in RFC 9110's order. */
	aw_str im = aw_http_header(req, "If-Match");
	if (im.p) {
		if (!etag_list_matches(im, etag, true))
			return aw__http_queue_response(c, 412, NULL, 0, NULL, 0);
	} else {
		time_t ius = parse_http_date(aw_http_header(req, "If-Unmodified-Since"));
		if (ius >= 0 && mtime > ius)
			return aw__http_queue_response(c, 412, NULL, 0, NULL, 0);
	}
	aw_str inm = aw_http_header(req, "If-None-Match");
	if (inm.p) {
		if (etag_list_matches(inm, etag, false))
			return aw__http_queue_response(c, 304, NULL, 0, NULL, 0);
	} else {
		time_t ims = parse_http_date(aw_http_header(req, "If-Modified-Since"));
		if (ims >= 0 && mtime <= ims)
			return aw__http_queue_response(c, 304, NULL, 0, NULL, 0);
	}

	const char *ctype = aw__http_mime_type(j->path, strlen(j->path));
	if (j->gz && (rc = hdr(res, "Content-Encoding", "gzip")))
		return rc;
	if ((rc = hdr(res, "X-Content-Type-Options", "nosniff")) || (rc = hdr(res, "Accept-Ranges", "bytes")))
		return rc;

	/* Range (GET only: RFC 9110 14.2), unless If-Range says the client's
	 * copy is another version. */
	int status = 200;
	uint64_t off = 0, len = size;
	aw_str range = req->is_head ? (aw_str){ NULL, 0 } : aw_http_header(req, "Range");
	if (range.p) {
		aw_str ir = aw_http_header(req, "If-Range");
		bool apply = true;
		if (ir.p) {
			if (ir.len && (ir.p[0] == '"' || (ir.len > 1 && ir.p[0] == 'W' && ir.p[1] == '/')))
				apply = etag_list_matches(ir, etag, true);
			else
				apply = parse_http_date(ir) == mtime;
		}
		int r = apply ? parse_range(range, size, &off, &len) : 0;
		char cr[96];
		if (r < 0) {
			snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
			if ((rc = hdr(res, "Content-Range", cr)))
				return rc;
			static const char body[] = "{\"detail\":\"Range Not Satisfiable\"}";
			return aw__http_queue_response(c, 416, "application/json", 16, body, sizeof body - 1);
		}
		if (r > 0) {
			status = 206;
			snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)off,
				 (unsigned long long)(off + len - 1), (unsigned long long)size);
			if ((rc = hdr(res, "Content-Range", cr)))
				return rc;
		}
	}
	size_t head_at = c->out.len;
	rc = aw__http_queue_head(c, status, ctype, len);
	if (rc || req->is_head || !len)
		return rc;
	return send_body(c, j->fd, off, len, head_at);
}

/* A relative path that must not be opened: a ".." segment, absolute (from
 * "//"), or, unless allowed, a name starting with '.'. */
static bool rel_refused(const char *rel, bool dotfiles)
{
	if (rel[0] == '/')
		return true;
	for (const char *s = rel;;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 2 && s[0] == '.' && s[1] == '.')
			return true;
		if (n && s[0] == '.' && !dotfiles)
			return true;
		if (!e)
			return false;
		s = e + 1;
	}
}

static int static_get(aw_http_request *req, aw_http_response *res, void *ud)
{
	const aw_static_mount *m = ud;
	aw_http_conn *c = res->conn;
	const char *rel = aw_http_param(req, "path");
	if (!rel && m->prefix[0])   /* the prefix itself, without its '/' */
		return redirect_slash(req, res);
	if (!rel)
		rel = "";   /* "/" mounted at "/" */
	if (rel_refused(rel, m->dotfiles))
		return aw__http_queue_error(c, 404, "Not Found", NULL);
	static_job j = { .m = m, .rel = rel, .fd = -1 };
	size_t rl = strlen(rel);
	j.want_gz = m->precompressed && !(rl >= 3 && strcasecmp(rel + rl - 3, ".gz") == 0) &&
		    accepts_gzip(aw_http_header(req, "Accept-Encoding"));
	j.cached = !atomic_load_explicit(&no_cached_open, memory_order_relaxed);
	if (j.cached)
		static_resolve(&j);
	if (!j.cached || j.err == EAGAIN) {
		if (j.fd >= 0)
			close(j.fd);
		j.cached = false;
		int rc = aw_to_thread(static_resolve, &j);
		if (rc) {
			if (j.fd >= 0)
				close(j.fd);
			return rc;
		}
	}
	if (j.err)
		return aw_raise(-j.err, "static directory %s: %s under %s: %s", m->prefix[0] ? m->prefix : "/", rel,
				m->root, strerror(j.err));
	if (j.dir_redirect)
		return redirect_slash(req, res);
	if (j.status == 403) {
		aw__http_log_limited(c->app, NULL, "static directory %s: %s under %s: 403 (%s)",
				     m->prefix[0] ? m->prefix : "/", rel, m->root, j.why);
		return aw__http_queue_error(c, 403, "Forbidden", NULL);
	}
	if (j.status)
		return aw__http_queue_error(c, j.status, "Not Found", NULL);
	if (j.listing)
		return send_listing(req, res, m, j.fd);
	int rc = serve(req, res, m, &j);
	close(j.fd);
	return rc;
}

bool aw__http_is_static_route(const aw_route *r)
{
	return r->fn == static_get;
}

/* ---- mounting ------------------------------------------------------------------------------ */

static bool prefix_ok(const char *p)
{
	if (p[0] != '/')
		return false;
	if (p[1] == 0)
		return true;
	size_t n = strlen(p);
	if (p[n - 1] == '/')
		return false;
	for (const char *s = p; *s; s++)
		if (*s == '{' || *s == '}' || *s == '%' || *s == '?' || *s == '#' || (unsigned char)*s <= ' ' ||
		    (s[0] == '/' && s[1] == '/'))
			return false;
	return true;
}

int aw_app_static(aw_app *app, const char *prefix, const char *dir, const aw_static_opts *opts)
{
	if (!app)
		return aw_raise(-EINVAL, "aw_app_static: no app");
	if (!prefix || !prefix_ok(prefix))
		return aw_raise(-EINVAL, "aw_app_static: prefix '%s' must start with '/', not end with one (unless it "
				"is \"/\"), and hold no {, }, %%, ?, #, \"//\" or spaces", prefix ? prefix : "(null)");
	if (!dir || !*dir)
		return aw_raise(-EINVAL, "aw_app_static(%s): no directory", prefix);
	if (opts && opts->index && (strchr(opts->index, '/') || strcmp(opts->index, ".") == 0 ||
				   strcmp(opts->index, "..") == 0))
		return aw_raise(-EINVAL, "aw_app_static(%s): index '%s' must be a file name", prefix, opts->index);
	struct stat st;
	if (stat(dir, &st) != 0)
		return aw_raise(-errno, "aw_app_static(%s): directory %s: %m", prefix, dir);
	if (!S_ISDIR(st.st_mode))
		return aw_raise(-ENOTDIR, "aw_app_static(%s): %s is not a directory", prefix, dir);
	aw_static_mount *m = aw__calloc(1, sizeof *m);
	if (!m)
		return aw_raise(-ENOMEM, "aw_app_static: no memory");
	m->app = app;
	m->prefix = aw__strdup(prefix[1] ? prefix : "");
	m->root = aw__strdup(dir);
	const char *index = opts && opts->index ? opts->index : "index.html";
	m->index = *index ? aw__strdup(index) : NULL;
	m->cache_control = opts && opts->cache_control ? aw__strdup(opts->cache_control) : NULL;
	m->dotfiles = opts && opts->dotfiles;
	m->listing = opts && opts->listing;
	m->precompressed = !(opts && opts->no_precompressed);
	if (!m->prefix || !m->root || (*index && !m->index) || (opts && opts->cache_control && !m->cache_control)) {
		free(m->prefix), free(m->root), free(m->index), free(m->cache_control), free(m);
		return aw_raise(-ENOMEM, "aw_app_static: no memory");
	}
	if (m->cache_control)
		for (const char *s = m->cache_control; *s; s++)
			if ((unsigned char)*s < 0x20 || *s == 0x7f) {
				free(m->prefix), free(m->root), free(m->index), free(m->cache_control), free(m);
				return aw_raise(-EINVAL, "aw_app_static(%s): control character in cache_control", prefix);
			}
	/* Owned by the app from here (freed with it), whatever follows. */
	m->next = app->statics;
	app->statics = m;
	char tmpl[4200];
	if (snprintf(tmpl, sizeof tmpl, "%s/{path...}", m->prefix) >= (int)sizeof tmpl)
		return aw_raise(-EINVAL, "aw_app_static: prefix too long");
	int rc = aw_app_route(app, "GET", tmpl, static_get, m);
	if (rc)
		return rc;
	/* "/static" → "/static/"; for "/" the root is served by "/" itself. */
	return aw_app_route(app, "GET", prefix, static_get, m);
}
