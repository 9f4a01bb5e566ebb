/* SPDX-License-Identifier: MIT */
/*
 * tfb — the six TechEmpower Framework Benchmarks test types on awith, by
 * their public requirements (the "Framework Benchmarks" wiki's test type
 * pages): what a framework's entry in that suite would be.
 *
 *   GET /json          {"message":"Hello, World!"}, serialised per request
 *   GET /db            one random row of World as {"id":N,"randomNumber":M}
 *   GET /queries?queries=N   N random rows (N clamped to 1..500; missing or
 *                      not a number: 1), each its own SELECT
 *   GET /fortunes      every row of Fortune plus one added at request time,
 *                      sorted by message, as an HTML table with every
 *                      message escaped
 *   GET /updates?queries=N   N random rows read one by one, each given a
 *                      new random number, written back in one batched
 *                      UPDATE, and answered as /queries does
 *   GET /plaintext     "Hello, World!" as text/plain (the benchmark sends
 *                      it pipelined 16 deep: the server answers pipelined
 *                      requests in one write)
 *
 * Every response carries Server and Date (the rules ask for both).
 *
 * The database is PostgreSQL with TechEmpower's schema (examples/tfb/
 * schema.sql: World with 10,000 rows, Fortune with the 12 standard
 * messages), reached through the pool in the app's lifespan, in pipeline
 * mode: the tasks of all requests share a few connections, each with many
 * statements in flight. The N reads of /queries and /updates run in a task
 * group of at most FANOUT tasks, so they are in flight together rather
 * than N round trips one after another; the rules require that each row
 * be read by its own query, which they are.
 *
 *     $ psql "$DATABASE_URL" -f examples/tfb/schema.sql
 *     $ DATABASE_URL=postgresql://... ./tfb --port 8080 [--workers N] [--pool N]
 *     $ curl -s 'http://127.0.0.1:8080/queries?queries=3'
 *     [{"id":4174,"randomNumber":331},{"id":51,"randomNumber":6212},...]
 *
 * Errors: a failed query makes the handler return its error, which the
 * app answers with a 503 (database unavailable) or 500 and logs with its
 * cause chain; never a partial 200.
 */
#include <awith/http.h>
#include <awith/pg.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
	WORLD_ROWS = 10000,
	MAX_QUERIES = 500,
	FANOUT = 4,           /* reads in flight per request at most: enough to
	                         overlap a request's round trips when few
	                         requests run; many requests keep the pipeline
	                         full on their own */
	UPDATE_RETRIES = 3,   /* a deadlock between two batched updates: retry */
};

static size_t pool_size = 4;

/* ---- random ids ----------------------------------------------------------------- */

/* xorshift64*: one state per process (one loop per thread, and each
 * SO_REUSEPORT worker is a process of its own, seeded apart). */
static uint64_t rng_state;

static void rng_seed(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	rng_state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^ 0x9e3779b97f4a7c15ULL;
}

/* 1..WORLD_ROWS */
static int random_id(void)
{
	if (!rng_state)
		rng_seed();
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (int)((rng_state * 2685821657736338717ULL) >> 33) % WORLD_ROWS + 1;
}

/* v >= 0 in decimal at out, NUL-terminated (out has room for 11 digits and
 * the NUL); returns the digits' count. By hand: snprintf("%d") was the
 * larger part of a row's own cost here (callgrind, bench/tfb.sh
 * --profile db). */
static size_t decimal(char *out, int v)
{
	char tmp[12];
	size_t n = 0;
	unsigned u = (unsigned)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
	return n;
}

/* ---- the pool, opened by the lifespan ----------------------------------------------- */

static int lifespan(aw_gen *g, void *arg)
{
	(void)arg;
	const char *url = getenv("DATABASE_URL");
	if (!url || !*url)
		return aw_raise(-EINVAL, "DATABASE_URL is not set (e.g. postgresql://user:pw@127.0.0.1:5432/db)");
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &(aw_pg_pool_opts){ .dsn = url, .min_size = 1, .max_size = pool_size,
							   .acquire_timeout = AW_SEC(5), .pipeline = true })) {
		int err = aw_gen_yield(g, pm.pool);   /* the server runs here */
		if (err)
			return err;
	}
	return aw_error_pending();
}

static aw_pg_pool *pool_of(aw_http_request *req)
{
	return aw_app_state(aw_http_app(req));
}

/* ---- rows of World -------------------------------------------------------------- */

typedef struct world {
	int id, random_number;
} world;

/* SELECT one row of World by id into *w. */
static int world_read(aw_pg_pool *pool, world *w)
{
	char id[16];
	decimal(id, w->id);
	aw_pg_result *r;
	int rc = aw_pg_pool_query(pool, &r, "SELECT id, randomnumber FROM world WHERE id = $1", AW_PG_ARGS(id));
	if (rc < 0)
		return rc;
	int64_t v = 0;
	if (aw_pg_nrows(r) != 1)
		rc = aw_raise(-ENOENT, "world row %d is missing (was examples/tfb/schema.sql loaded?)", w->id);
	else
		rc = aw_pg_get_int(r, 0, 1, &v);
	aw_pg_result_free(r);
	w->random_number = (int)v;
	return rc < 0 ? rc : 0;
}

/* Reads rows[0..n) (ids already drawn) with up to FANOUT tasks in flight,
 * each taking the next row until none is left. */
typedef struct world_batch {
	aw_pg_pool *pool;
	world *rows;
	int n, next;
} world_batch;

static int world_reader(void *arg)
{
	world_batch *b = arg;
	while (b->next < b->n) {
		int rc = world_read(b->pool, &b->rows[b->next++]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int world_read_all(aw_pg_pool *pool, world *rows, int n)
{
	for (int i = 0; i < n; i++)
		rows[i].id = random_id();
	if (n == 1)
		return world_read(pool, &rows[0]);
	world_batch b = { .pool = pool, .rows = rows, .n = n };
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < n && i < FANOUT; i++)
			if (aw_group_spawn(&g, world_reader, &b, "tfb-read") < 0)
				break;
	}
	return aw_error_pending();
}

static void world_json(aw_jw *w, const world *row)
{
	aw_jw_object(w);
	aw_jw_key(w, "id");
	aw_jw_int(w, row->id);
	aw_jw_key(w, "randomNumber");
	aw_jw_int(w, row->random_number);
	aw_jw_object_end(w);
}

/* The queries parameter as the rules read it: missing, empty or not a
 * number is 1; below 1 is 1; above 500 is 500. */
static int queries_param(aw_http_request *req, int *out)
{
	const char *v = NULL;
	int rc = aw_http_query(req, "queries", &v);
	if (rc < 0)
		return rc;
	char *end;
	long n = v ? strtol(v, &end, 10) : 1;
	if (!v || end == v || *end)
		n = 1;
	*out = n < 1 ? 1 : n > MAX_QUERIES ? MAX_QUERIES : (int)n;
	return 0;
}

/* ---- the handlers ------------------------------------------------------------------- */

static int server_header(aw_http_response *res)
{
	return aw_http_set_header(res, "Server", "awith");
}

static int json_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	(void)ud;
	int rc = server_header(res);
	if (rc < 0)
		return rc;
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_object(w);
	aw_jw_key(w, "message");
	aw_jw_string(w, "Hello, World!");
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

static int plaintext_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	(void)ud;
	int rc = server_header(res);
	return rc < 0 ? rc : aw_http_send(res, 200, "text/plain", "Hello, World!", 13);
}

static int db_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	world row = { .id = random_id() };
	int rc = world_read(pool_of(req), &row);
	if (rc < 0 || (rc = server_header(res)) < 0)
		return rc;
	aw_jw *w = aw_http_json_begin(res, 200);
	world_json(w, &row);
	return aw_http_json_end(w);
}

static int rows_answer(aw_http_response *res, const world *rows, int n)
{
	int rc = server_header(res);
	if (rc < 0)
		return rc;
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_array(w);
	for (int i = 0; i < n; i++)
		world_json(w, &rows[i]);
	aw_jw_array_end(w);
	return aw_http_json_end(w);
}

static int queries_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	int n;
	int rc = queries_param(req, &n);
	if (rc < 0)
		return rc;
	world rows[MAX_QUERIES];
	rc = world_read_all(pool_of(req), rows, n);
	return rc < 0 ? rc : rows_answer(res, rows, n);
}

/* ---- updates ------------------------------------------------------------------------ */

static int by_id(const void *a, const void *b)
{
	const world *x = *(const world *const *)a, *y = *(const world *const *)b;
	return (x->id > y->id) - (x->id < y->id);
}

/* Writes "{a,b,c}" (a PostgreSQL int[] literal) to buf, which has room for
 * n numbers of at most 5 digits (ids and random numbers are 1..10000) and
 * their commas, braces and NUL: 6 n + 3 bytes. */
static size_t int_array(char *buf, const world *const *rows, int n, bool ids)
{
	size_t len = 0;
	buf[len++] = '{';
	for (int i = 0; i < n; i++) {
		if (i)
			buf[len++] = ',';
		len += decimal(buf + len, ids ? rows[i]->id : rows[i]->random_number);
	}
	buf[len++] = '}';
	buf[len] = '\0';
	return len;
}

/* One UPDATE for the whole batch, rows in id order (two requests locking
 * the same rows in the same order cannot deadlock each other; a statement
 * the server refused is tried again, up to UPDATE_RETRIES times: it writes
 * fixed values, so running it again is harmless). It goes down the pool's
 * pipeline like the reads: an exclusive acquire would wait for a pipe to
 * go idle, which under load it never does (it was 3x slower than Python
 * that way). An id drawn twice gets one new number,
 * so the answer shows what the table holds. */
static int world_write_all(aw_pg_pool *pool, world *rows, int n)
{
	const world *sorted[MAX_QUERIES];
	for (int i = 0; i < n; i++)
		sorted[i] = &rows[i];
	qsort(sorted, (size_t)n, sizeof *sorted, by_id);
	for (int i = 1; i < n; i++)
		if (sorted[i]->id == sorted[i - 1]->id)
			((world *)sorted[i])->random_number = sorted[i - 1]->random_number;
	/* 500 numbers of at most 5 digits and a comma each, twice. */
	char ids[MAX_QUERIES * 6 + 4], numbers[MAX_QUERIES * 6 + 4];
	int_array(ids, sorted, n, true);
	int_array(numbers, sorted, n, false);
	static const char sql[] = "UPDATE world SET randomnumber = v.r"
				  " FROM (SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS r) AS v"
				  " WHERE world.id = v.id";
	for (int attempt = 1;; attempt++) {
		aw_pg_result *r;
		int rc = aw_pg_pool_query(pool, &r, sql, AW_PG_ARGS(ids, numbers));
		if (rc == 0) {
			aw_pg_result_free(r);
			return 0;
		}
		if (rc != -AW_EPG || attempt == UPDATE_RETRIES)
			return rc;
		aw_error_clear();   /* a deadlock, most likely: the server rolled it back; again */
	}
}

static int updates_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	int n;
	int rc = queries_param(req, &n);
	if (rc < 0)
		return rc;
	world rows[MAX_QUERIES];
	aw_pg_pool *pool = pool_of(req);
	if ((rc = world_read_all(pool, rows, n)) < 0)
		return rc;
	for (int i = 0; i < n; i++)
		rows[i].random_number = random_id();
	if ((rc = world_write_all(pool, rows, n)) < 0)
		return rc;
	return rows_answer(res, rows, n);
}

/* ---- fortunes ---------------------------------------------------------------------- */

typedef struct fortune {
	int id;
	const char *message;
	size_t len;
} fortune;

static int by_message(const void *a, const void *b)
{
	const fortune *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->message, y->message, n);   /* UTF-8: byte order is code point order */
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* A growing HTML buffer; `failed` once an allocation failed. */
typedef struct html {
	char *p;
	size_t len, cap;
	bool failed;
} html;

static void html_put(html *h, const char *s, size_t n)
{
	if (h->failed)
		return;
	if (h->len + n > h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 4096;
		while (cap < h->len + n)
			cap *= 2;
		char *p = realloc(h->p, cap);
		if (!p) {
			h->failed = true;
			return;
		}
		h->p = p;
		h->cap = cap;
	}
	memcpy(h->p + h->len, s, n);
	h->len += n;
}
#define HTML_LIT(h, s) html_put((h), (s), sizeof(s) - 1)

/* The five characters that could change the markup, as entities. */
static void html_escaped(html *h, const char *s, size_t n)
{
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		const char *e;
		switch (s[i]) {
		case '&': e = "&amp;"; break;
		case '<': e = "&lt;"; break;
		case '>': e = "&gt;"; break;
		case '"': e = "&quot;"; break;
		case '\'': e = "&#39;"; break;
		default: continue;
		}
		html_put(h, s + run, i - run);
		html_put(h, e, strlen(e));
		run = i + 1;
	}
	html_put(h, s + run, n - run);
}

static int fortunes_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	aw_pg_result *r;
	int rc = aw_pg_pool_query(pool_of(req), &r, "SELECT id, message FROM fortune", AW_PG_NOARGS);
	if (rc < 0)
		return rc;
	int n = aw_pg_nrows(r);
	fortune *f = malloc(((size_t)n + 1) * sizeof *f);
	html h = { 0 };
	if (!f) {
		rc = aw_raise(-ENOMEM, "no memory for %d fortunes", n + 1);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		int64_t id;
		if ((rc = aw_pg_get_int(r, i, 0, &id)) < 0 || (rc = aw_pg_get_str(r, i, 1, &f[i].message)) < 0)
			goto out;
		f[i].id = (int)id;
		f[i].len = aw_pg_len(r, i, 1);
	}
	static const char added[] = "Additional fortune added at request time.";
	f[n++] = (fortune){ 0, added, sizeof added - 1 };
	qsort(f, (size_t)n, sizeof *f, by_message);
	HTML_LIT(&h, "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
		     "<tr><th>id</th><th>message</th></tr>");
	for (int i = 0; i < n; i++) {
		char id[16];
		HTML_LIT(&h, "<tr><td>");
		html_put(&h, id, decimal(id, f[i].id));
		HTML_LIT(&h, "</td><td>");
		html_escaped(&h, f[i].message, f[i].len);
		HTML_LIT(&h, "</td></tr>");
	}
	HTML_LIT(&h, "</table></body></html>");
	if (h.failed)
		rc = aw_raise(-ENOMEM, "no memory for the fortunes page");
	else if ((rc = server_header(res)) == 0)
		rc = aw_http_send(res, 200, "text/html; charset=utf-8", h.p, h.len);
out:
	free(h.p);
	free(f);
	aw_pg_result_free(r);
	return rc;
}

/* ---- main -------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	/* --pool N is ours (connections per worker); the rest goes to
	 * aw_app_main (--port, --host, --workers ...). */
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--pool")) {
			char *end;
			long n = strtol(argv[i + 1], &end, 10);
			if (*end || n < 1 || n > 1000) {
				fprintf(stderr, "usage: tfb [--port N] [--host H] [--workers N] [--pool N]\n");
				return 2;
			}
			pool_size = (size_t)n;
			memmove(&argv[i], &argv[i + 2], (size_t)(argc - i - 1) * sizeof *argv);
			argc -= 2;
			i--;
		}
	aw_app *app;
	if (aw_app_new(&app, "tfb") < 0)
		return 1;
	if (aw_app_lifespan(app, lifespan, NULL) || aw_app_route(app, "GET", "/json", json_handler, NULL) ||
	    aw_app_route(app, "GET", "/plaintext", plaintext_handler, NULL) ||
	    aw_app_route(app, "GET", "/db", db_handler, NULL) ||
	    aw_app_route(app, "GET", "/queries", queries_handler, NULL) ||
	    aw_app_route(app, "GET", "/updates", updates_handler, NULL) ||
	    aw_app_route(app, "GET", "/fortunes", fortunes_handler, NULL)) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return 1;
	}
	int rc = aw_app_main(app, argc, argv);
	aw_app_free(app);
	return rc;
}
