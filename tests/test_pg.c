/* SPDX-License-Identifier: MIT */
/* Tests: PostgreSQL connections, queries, results, JSON, the statement
 * cache, server errors and cancellation (src/pg/conn.c, result.c), against
 * the real server in DATABASE_URL. */
#include "pg_util.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

AW_TEST_REQUIRE_ENV("DATABASE_URL", "AW_PG_REQUIRED");

/* ---- connecting ------------------------------------------------------------ */

static int connect_url_main(void *arg)
{
	(void)arg;
	const char *url = PG_URL();
	PCHECK(url);
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_connect(&c, url, NULL), 0);
	PCHECK(aw_pg_conn_ok(c));
	PCHECK(aw_pg_conn_pid(c) > 0);
	PCHECK(aw_pg_conn_tx_status(c) == 'I');
	aw_pg_result *r;
	PCHECK_RC(aw_pg_query(c, &r, "SELECT current_user, current_database()", AW_PG_NOARGS), 0);
	PCHECK_STR(aw_pg_text(r, 0, 0), "awith");
	PCHECK_STR(aw_pg_text(r, 0, 1), "awith_test");
	aw_pg_result_free(r);
	aw_pg_conn_close(c);

	/* The same server as key=value pairs. */
	char kv[512];
	const char *port = getenv("PGPORT"), *host = getenv("PGHOST");
	PCHECK(port && host);
	snprintf(kv, sizeof kv, "host=%s port=%s user=awith password=awith_pw dbname=awith_test", host, port);
	aw_pg_connection cm;
	int seen = 0;
	AW_WITH(aw_pg_connection_init(&cm, kv, NULL)) {
		PCHECK_RC(aw_pg_query(cm.conn, &r, "SELECT 1 + 1", AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "2");
		aw_pg_result_free(r);
		seen = 1;
	}
	PCHECK(seen == 1);
	PCHECK(cm.conn == NULL);
	return 0;
}

AW_TEST(pg_connect_with_url_and_key_value_dsn) { PG_RUN(connect_url_main, NULL); }

typedef struct bad_connect {
	const char *user, *password, *db;
	int want;
	const char *mention;
} bad_connect;

static int bad_connect_main(void *arg)
{
	bad_connect *b = arg;
	const char *url = PG_URL();
	PCHECK(url);
	char *u = pg_url_with(url, b->user, b->password, b->db);
	aw_pg_conn *c = (aw_pg_conn *)1;
	int rc = aw_pg_connect(&c, u, NULL);
	free(u);
	PCHECK_RC(rc, b->want);
	PCHECK(c == NULL);
	PCHECK(pg_error_mentions(b->mention));
	return 0;
}

AW_TEST(pg_connect_wrong_password_is_auth_error)
{
	bad_connect b = { NULL, "not-the-password", NULL, -AW_EPG_AUTH, "password authentication failed" };
	PG_RUN(bad_connect_main, &b);
}

AW_TEST(pg_connect_unknown_role_is_auth_error)
{
	bad_connect b = { "no_such_role", "x", NULL, -AW_EPG_AUTH, "no_such_role" };
	PG_RUN(bad_connect_main, &b);
}

AW_TEST(pg_connect_unknown_database_is_nodb_error)
{
	bad_connect b = { NULL, NULL, "no_such_db", -AW_EPG_NODB, "no_such_db" };
	PG_RUN(bad_connect_main, &b);
}

/* A port with nothing listening: bind one and close it. */
static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	bind(s, (struct sockaddr *)&a, sizeof a);
	getsockname(s, (struct sockaddr *)&a, &len);
	close(s);
	return ntohs(a.sin_port);
}

static int refused_main(void *arg)
{
	(void)arg;
	char url[128];
	snprintf(url, sizeof url, "postgresql://awith:awith_pw@127.0.0.1:%d/awith_test", free_port());
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_connect(&c, url, NULL), -ECONNREFUSED);
	PCHECK(pg_error_mentions("refused"));
	return 0;
}

AW_TEST(pg_connect_refused_is_econnrefused) { PG_RUN(refused_main, NULL); }

static int bad_dsn_main(void *arg)
{
	(void)arg;
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_connect(&c, "host=127.0.0.1 nonsense_option=1", NULL), -EINVAL);
	PCHECK(pg_error_mentions("invalid PostgreSQL DSN"));
	PCHECK_RC(aw_pg_connect(&c, "postgresql://[::1", NULL), -EINVAL);
	PCHECK_RC(aw_pg_connect(&c, NULL, NULL), -EINVAL);
	aw_pg_opts o;
	aw_pg_opts_default(&o);
	o.stmt_cache = -1;
	PCHECK_RC(aw_pg_connect(&c, "host=127.0.0.1", &o), -EINVAL);
	PCHECK(pg_error_mentions("stmt_cache"));
	return 0;
}

AW_TEST(pg_connect_bad_dsn_and_options_are_einval) { PG_RUN(bad_dsn_main, NULL); }

/* A server that accepts TCP connections and never answers the startup
 * message: the connect deadline must end the attempt. */
typedef struct silent {
	int lfd;
	int ticks;
	bool done;
} silent;

static int ticker(void *arg)
{
	silent *s = arg;
	while (!s->done) {
		s->ticks++;
		if (aw_sleep(AW_MS(10)) < 0)
			break;
	}
	return 0;
}

static int connect_timeout_main(void *arg)
{
	silent *s = arg;
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	getsockname(s->lfd, (struct sockaddr *)&a, &len);
	char url[128];
	snprintf(url, sizeof url, "postgresql://awith:awith_pw@127.0.0.1:%d/awith_test?sslmode=disable",
		 ntohs(a.sin_port));
	aw_task *t;
	PCHECK_RC(aw_spawn(&t, ticker, s, "ticker"), 0);
	aw_pg_opts o;
	aw_pg_opts_default(&o);
	o.connect_timeout = AW_MS(300);
	aw_time t0 = aw_now();
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_connect(&c, url, &o), -ETIMEDOUT);
	aw_time took = aw_now() - t0;
	PCHECK(pg_error_mentions("connect timeout"));
	s->done = true;
	PCHECK_RC(aw_task_join(t), 0);
	PCHECK(took >= AW_MS(250) && took < AW_SEC(3));
	/* The loop kept running other tasks while the connect waited. */
	PCHECK(s->ticks >= 10);
	return 0;
}

AW_TEST(pg_connect_timeout_is_etimedout_and_does_not_block_the_loop)
{
	silent s = { 0 };
	s.lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	CHECK(bind(s.lfd, (struct sockaddr *)&a, sizeof a) == 0);
	CHECK(listen(s.lfd, 8) == 0);
	PG_RUN(connect_timeout_main, &s);
	close(s.lfd);
}

/* ---- queries and results ------------------------------------------------------- */

static int typed_main(void *arg)
{
	(void)arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		aw_pg_rows q;
		AW_WITH(aw_pg_rows_init(&q, cm.conn,
				    "SELECT $1::int AS i, $2::float8 AS f, $3::bool AS b, $4::text AS t, "
				    "NULL::int AS n, 2.5::numeric AS num, '\\x00ff10'::bytea AS raw, "
				    "9223372036854775807::int8 AS big",
				    AW_PG_ARGS("42", "-1.5", "true", "héllo"))) {
			aw_pg_result *r = q.res;
			PCHECK(aw_pg_nrows(r) == 1);
			PCHECK(aw_pg_ncols(r) == 8);
			PCHECK_STR(aw_pg_colname(r, 3), "t");
			PCHECK(aw_pg_colnum(r, "num") == 5);
			PCHECK(aw_pg_colnum(r, "missing") == -1);
			PCHECK(aw_pg_coltype(r, 0) == 23);
			int64_t i;
			double f;
			bool b;
			const char *s;
			PCHECK_RC(aw_pg_get_int(r, 0, 0, &i), 0);
			PCHECK(i == 42);
			PCHECK_RC(aw_pg_get_int_by(r, 0, "big", &i), 0);
			PCHECK(i == INT64_MAX);
			PCHECK_RC(aw_pg_get_double(r, 0, 1, &f), 0);
			PCHECK(f == -1.5);
			PCHECK_RC(aw_pg_get_double_by(r, 0, "num", &f), 0);
			PCHECK(f == 2.5);
			PCHECK_RC(aw_pg_get_double(r, 0, 0, &f), 0);   /* ints widen */
			PCHECK(f == 42.0);
			PCHECK_RC(aw_pg_get_bool_by(r, 0, "b", &b), 0);
			PCHECK(b);
			PCHECK_RC(aw_pg_get_str(r, 0, 3, &s), 0);
			PCHECK_STR(s, "héllo");
			void *raw;
			size_t rawlen;
			PCHECK_RC(aw_pg_get_bytea(r, 0, 6, &raw, &rawlen), 0);
			PCHECK(rawlen == 3 && !memcmp(raw, "\x00\xff\x10", 3));
			free(raw);

			/* NULL and type mismatches are reported, not guessed. */
			PCHECK(aw_pg_isnull(r, 0, 4));
			PCHECK(aw_pg_text(r, 0, 4) == NULL);
			PCHECK_RC(aw_pg_get_int(r, 0, 4, &i), -AW_EPG_NULL);
			PCHECK_RC(aw_pg_get_int(r, 0, 3, &i), -AW_EPG_TYPE);
			PCHECK_RC(aw_pg_get_int(r, 0, 1, &i), -AW_EPG_TYPE);
			PCHECK_RC(aw_pg_get_bool(r, 0, 0, &b), -AW_EPG_TYPE);
			PCHECK_RC(aw_pg_get_double(r, 0, 3, &f), -AW_EPG_TYPE);
			PCHECK_RC(aw_pg_get_bytea(r, 0, 3, &raw, &rawlen), -AW_EPG_TYPE);
			PCHECK_RC(aw_pg_get_int(r, 1, 0, &i), -EINVAL);
			PCHECK_RC(aw_pg_get_int(r, 0, 99, &i), -EINVAL);
			PCHECK_RC(aw_pg_get_int_by(r, 0, "nope", &i), -EINVAL);
		}
		PCHECK(q.res == NULL);

		/* A NULL parameter is SQL NULL; parameters are never spliced
		 * into the SQL text. */
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(cm.conn, &r, "SELECT $1::text IS NULL, $2::text",
				      AW_PG_ARGS(NULL, "'); DROP TABLE x; --")), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "t");
		PCHECK_STR(aw_pg_text(r, 0, 1), "'); DROP TABLE x; --");
		aw_pg_result_free(r);

		/* Out of range getters. */
		int64_t big;
		PCHECK_RC(aw_pg_query(cm.conn, &r, "SELECT 99999999999999999999::numeric::text::int8", AW_PG_NOARGS),
			  -AW_EPG);
		PCHECK(!strcmp(aw_pg_last_error(cm.conn)->sqlstate, "22003"));
		PCHECK_RC(aw_pg_query(cm.conn, &r, "SELECT 4294967295::oid", AW_PG_NOARGS), 0);
		PCHECK_RC(aw_pg_get_int(r, 0, 0, &big), 0);
		PCHECK(big == 4294967295LL);
		aw_pg_result_free(r);
	}
	return aw_error_pending();
}

AW_TEST(pg_query_parameters_and_typed_getters_report_null_and_mismatch) { PG_RUN(typed_main, NULL); }

static int exec_main(void *arg)
{
	(void)arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		aw_pg_conn *c = cm.conn;
		PCHECK_RC(aw_pg_exec_script(c, "CREATE TEMP TABLE t_exec(id int, v text); "
					       "INSERT INTO t_exec VALUES (1,'a'),(2,'b'),(3,'c')"), 0);
		uint64_t rows = 99;
		PCHECK_RC(aw_pg_exec(c, &rows, "UPDATE t_exec SET v = $1 WHERE id >= $2", AW_PG_ARGS("z", "2")), 0);
		PCHECK(rows == 2);
		PCHECK_RC(aw_pg_exec(c, NULL, "DELETE FROM t_exec WHERE id = $1", AW_PG_ARGS("3")), 0);
		rows = 99;
		PCHECK_RC(aw_pg_exec(c, &rows, "SELECT 1/0", AW_PG_NOARGS), -AW_EPG);
		PCHECK(rows == 0);   /* a failure leaves no stale count */
		aw_error_clear();
		PCHECK_RC(pg_exec_rows(c, "INSERT INTO t_exec SELECT g, 'x' FROM generate_series(10, 14) g", AW_PG_NOARGS), 5);
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(c, &r, "SELECT count(*) FROM t_exec WHERE v = $1", AW_PG_ARGS("z")), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "1");
		aw_pg_result_free(r);
		PCHECK(aw_pg_conn_queries(c) == 6);
	}
	return aw_error_pending();
}

AW_TEST(pg_exec_returns_zero_and_the_affected_rows_through_its_out_parameter) { PG_RUN(exec_main, NULL); }

/* ---- JSON ------------------------------------------------------------------------ */

#define JSON_SQL                                                                             \
	"SELECT 1::int2 AS a, 2::int4 AS b, 3000000000::int8 AS c, 1.5::float4 AS d, "        \
	"'NaN'::float8 AS e, 12345678901234567890.125::numeric AS f, true AS g, false AS h, "    \
	"'tab\there \"q\" \\ é'::text AS i, '{\"k\": [1, 2]}'::json AS j, '{\"k\": 1}'::jsonb AS k, " \
	"'2024-05-01 12:30:00.5+00'::timestamptz AS l, '2024-05-01'::date AS m, "                \
	"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS n, '\\x0102'::bytea AS o, "              \
	"ARRAY[1, NULL, 3]::int4[] AS p, ARRAY['x y', 'NULL', NULL, 'q\"']::text[] AS q, "      \
	"ARRAY[[1.5, 2], [3, 4]]::numeric[] AS r, ARRAY[true, false] AS s, NULL::text AS t, "   \
	"'2024-01-02 03:04:05'::timestamp AS u, '{}'::int[] AS v, 'Infinity'::float8 AS w"

#define JSON_WANT                                                                            \
	"[{\"a\":1,\"b\":2,\"c\":3000000000,\"d\":1.5,\"e\":\"NaN\","                             \
	"\"f\":12345678901234567890.125,\"g\":true,\"h\":false,"                                   \
	"\"i\":\"tab\\there \\\"q\\\" \\\\ é\",\"j\":{\"k\": [1, 2]},\"k\":{\"k\": 1},"           \
	"\"l\":\"2024-05-01T12:30:00.5+00:00\",\"m\":\"2024-05-01\","                              \
	"\"n\":\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\",\"o\":\"\\\\x0102\","                      \
	"\"p\":[1,null,3],\"q\":[\"x y\",\"NULL\",null,\"q\\\"\"],"                                \
	"\"r\":[[1.5,2],[3,4]],\"s\":[true,false],\"t\":null,"                                     \
	"\"u\":\"2024-01-02T03:04:05\",\"v\":[],\"w\":\"Infinity\"}]"

static int json_main(void *arg)
{
	(void)arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		PCHECK_RC(pg_exec_rows(cm.conn, "SET TIME ZONE 'UTC'", AW_PG_NOARGS), 0);
		aw_pg_rows q;
		AW_WITH(aw_pg_rows_init(&q, cm.conn, JSON_SQL, AW_PG_NOARGS)) {
			char *text;
			size_t len;
			PCHECK_RC(aw_pg_result_json_text(q.res, &text, &len), 0);
			int same = !strcmp(text, JSON_WANT);
			if (!same)
				aw_test_fail(__FILE__, __LINE__, "json text:\n got %s\nwant %s", text, JSON_WANT);
			PCHECK(len == strlen(text));
			/* It is valid JSON. */
			json_error_t je;
			json_t *parsed = json_loads(text, JSON_DECODE_ANY, &je);
			free(text);
			PCHECK(parsed != NULL);
			json_decref(parsed);

			/* The jansson form agrees. */
			json_t *row;
			PCHECK_RC(aw_pg_row_to_json(q.res, 0, &row), 0);
			PCHECK(json_integer_value(json_object_get(row, "c")) == 3000000000LL);
			PCHECK(json_is_true(json_object_get(row, "g")));
			PCHECK(json_is_null(json_object_get(row, "t")));
			PCHECK(json_integer_value(json_object_get(json_object_get(row, "j"), "k") ? 
				json_array_get(json_object_get(json_object_get(row, "j"), "k"), 1) : NULL) == 2);
			PCHECK_STR(json_string_value(json_object_get(row, "l")), "2024-05-01T12:30:00.5+00:00");
			PCHECK(json_array_size(json_object_get(row, "p")) == 3);
			PCHECK(json_is_null(json_array_get(json_object_get(row, "p"), 1)));
			PCHECK(json_real_value(json_array_get(json_array_get(json_object_get(row, "r"), 0), 0)) == 1.5);
			PCHECK_STR(json_string_value(json_array_get(json_object_get(row, "q"), 3)), "q\"");
			json_decref(row);
			json_t *all;
			PCHECK_RC(aw_pg_result_to_json(q.res, &all), 0);
			PCHECK(json_array_size(all) == 1);
			json_decref(all);
			PCHECK_RC(aw_pg_row_to_json(q.res, 5, &row), -EINVAL);
		}
		/* Offsets other than whole hours are kept as the server wrote them. */
		PCHECK_RC(pg_exec_rows(cm.conn, "SET TIME ZONE 'Asia/Kolkata'", AW_PG_NOARGS), 0);
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(cm.conn, &r, "SELECT '2024-05-01 00:00:00+00'::timestamptz AS at", AW_PG_NOARGS), 0);
		char *text;
		PCHECK_RC(aw_pg_result_json_text(r, &text, NULL), 0);
		aw_pg_result_free(r);
		int ok = !strcmp(text, "[{\"at\":\"2024-05-01T05:30:00+05:30\"}]");
		if (!ok)
			aw_test_fail(__FILE__, __LINE__, "got %s", text);
		free(text);
	}
	return aw_error_pending();
}

AW_TEST(pg_result_to_json_converts_every_type) { PG_RUN(json_main, NULL); }

/* ---- server errors ------------------------------------------------------------------ */

static int error_main(void *arg)
{
	(void)arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		aw_pg_conn *c = cm.conn;
		aw_pg_result *r = (aw_pg_result *)1;
		PCHECK_RC(aw_pg_query(c, &r, "SELECT nosuchcolumn FROM pg_class", AW_PG_NOARGS), -AW_EPG);
		PCHECK(r == NULL);
		const aw_pg_error_info *e = aw_pg_last_error(c);
		PCHECK_STR(e->sqlstate, "42703");
		PCHECK_STR(e->severity, "ERROR");
		PCHECK(strstr(e->message, "nosuchcolumn") != NULL);
		PCHECK(e->position == 8);
		PCHECK(pg_error_mentions("42703"));
		PCHECK(pg_error_mentions("at character 8"));
		aw_error_clear();

		/* detail and hint */
		PCHECK_RC(aw_pg_exec_script(c, "CREATE TEMP TABLE t_err(id int primary key)"), 0);
		PCHECK_RC(pg_exec_rows(c, "INSERT INTO t_err VALUES ($1)", AW_PG_ARGS("1")), 1);
		PCHECK_RC(pg_exec_rows(c, "INSERT INTO t_err VALUES ($1)", AW_PG_ARGS("1")), -AW_EPG);
		e = aw_pg_last_error(c);
		PCHECK_STR(e->sqlstate, "23505");
		PCHECK(e->detail && strstr(e->detail, "(id)=(1)"));
		PCHECK(pg_error_mentions("DETAIL"));
		aw_error_clear();
		PCHECK_RC(pg_exec_rows(c, "SELECT 1/0", AW_PG_NOARGS), -AW_EPG);
		PCHECK_STR(aw_pg_last_error(c)->sqlstate, "22012");
		aw_error_clear();
		PCHECK_RC(pg_exec_rows(c, "SELECT $1::int", AW_PG_ARGS("not a number")), -AW_EPG);
		PCHECK_STR(aw_pg_last_error(c)->sqlstate, "22P02");
		aw_error_clear();
		/* Wrong parameter count is the server's error too. */
		PCHECK_RC(pg_exec_rows(c, "SELECT $1::int, $2::int", AW_PG_ARGS("1")), -AW_EPG);
		aw_error_clear();

		/* The connection stays usable and clean. */
		PCHECK(aw_pg_conn_ok(c));
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK_RC(aw_pg_query(c, &r, "SELECT 'still here'", AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "still here");
		aw_pg_result_free(r);
		PCHECK_STR(aw_pg_last_error(c)->sqlstate, "");

		/* Bad arguments. */
		PCHECK_RC(aw_pg_query(c, &r, NULL, AW_PG_NOARGS), -EINVAL);
		PCHECK_RC(aw_pg_query(c, &r, "SELECT 1", 2, NULL), -EINVAL);
		PCHECK_RC(aw_pg_query(c, &r, "SELECT 1", -1, NULL), -EINVAL);
		PCHECK_RC(aw_pg_query(NULL, &r, "SELECT 1", AW_PG_NOARGS), -EINVAL);
		PCHECK_RC(aw_pg_query(c, &r, "COPY (SELECT 1) TO STDOUT", AW_PG_NOARGS), -EINVAL);
		PCHECK(pg_error_mentions("COPY"));
		aw_error_clear();
		PCHECK(aw_pg_conn_ok(c));
		PCHECK_RC(aw_pg_query(c, &r, "SELECT 2", AW_PG_NOARGS), 0);
		aw_pg_result_free(r);
	}
	return aw_error_pending();
}

AW_TEST(pg_query_error_has_sqlstate_detail_position_and_connection_stays_usable)
{
	PG_RUN(error_main, NULL);
}

/* ---- the statement cache ------------------------------------------------------------ */

static int server_prepared(aw_pg_conn *c)
{
	aw_pg_result *r;
	if (aw_pg_query(c, &r, "SELECT count(*) FROM pg_prepared_statements", AW_PG_NOARGS) < 0)
		return -1;
	int n = atoi(aw_pg_text(r, 0, 0));
	aw_pg_result_free(r);
	return n;
}

static int cache_main(void *arg)
{
	(void)arg;
	aw_pg_opts o;
	aw_pg_opts_default(&o);
	o.stmt_cache = 3;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), &o)) {
		aw_pg_conn *c = cm.conn;
		aw_pg_result *r;
		for (int round = 0; round < 3; round++) {
			PCHECK_RC(aw_pg_query(c, &r, "SELECT $1::int + 1", AW_PG_ARGS("1")), 0);
			PCHECK_STR(aw_pg_text(r, 0, 0), "2");
			aw_pg_result_free(r);
		}
		/* One statement for three runs, plus the count query. */
		PCHECK(aw_pg_conn_cached(c) == 1);
		PCHECK(server_prepared(c) == 2);
		PCHECK(aw_pg_conn_cached(c) == 2);
		/* Past the limit the least recently used one goes, on the server too. */
		 PCHECK_RC(pg_exec_rows(c, "SELECT 'a'", AW_PG_NOARGS), 1);
		PCHECK_RC(pg_exec_rows(c, "SELECT $1::int + 1", AW_PG_ARGS("5")), 1);   /* touch */
		PCHECK_RC(pg_exec_rows(c, "SELECT 'b'", AW_PG_NOARGS), 1);              /* evicts count(*) */
		PCHECK(aw_pg_conn_cached(c) == 3);
		PCHECK(server_prepared(c) == 3);   /* count(*) evicted 'a'... and came back */
		PCHECK(aw_pg_conn_cached(c) == 3);

		/* DEALLOCATE ALL behind the cache's back: the next use notices
		 * (26000), forgets the cache and runs the query anyway. */
		PCHECK_RC(aw_pg_exec_script(c, "DEALLOCATE ALL"), 0);
		PCHECK(aw_pg_conn_cached(c) == 0);   /* the command tag told us */
		PCHECK_RC(aw_pg_query(c, &r, "SELECT $1::int + 1", AW_PG_ARGS("2")), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "3");
		aw_pg_result_free(r);

		/* A table whose shape changes under a cached statement (0A000):
		 * retried once, unprepared. */
		PCHECK_RC(aw_pg_exec_script(c, "CREATE TEMP TABLE t_shape(a int); INSERT INTO t_shape VALUES (1)"), 0);
		PCHECK_RC(aw_pg_query(c, &r, "SELECT * FROM t_shape", AW_PG_NOARGS), 0);
		PCHECK(aw_pg_ncols(r) == 1);
		aw_pg_result_free(r);
		PCHECK_RC(aw_pg_exec_script(c, "ALTER TABLE t_shape ADD COLUMN b text DEFAULT 'x'"), 0);
		PCHECK_RC(aw_pg_query(c, &r, "SELECT * FROM t_shape", AW_PG_NOARGS), 0);
		PCHECK(aw_pg_ncols(r) == 2);
		aw_pg_result_free(r);
	}
	return aw_error_pending();
}

AW_TEST(pg_statement_cache_reuses_and_evicts_least_recently_used) { PG_RUN(cache_main, NULL); }

static int nocache_main(void *arg)
{
	(void)arg;
	aw_pg_opts o;
	aw_pg_opts_default(&o);
	o.stmt_cache = 0;   /* pgbouncer transaction mode */
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), &o)) {
		for (int i = 0; i < 5; i++)
			PCHECK_RC(pg_exec_rows(cm.conn, "SELECT $1::int", AW_PG_ARGS("7")), 1);
		PCHECK(aw_pg_conn_cached(cm.conn) == 0);
		PCHECK(server_prepared(cm.conn) == 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_statement_cache_size_zero_prepares_nothing) { PG_RUN(nocache_main, NULL); }

/* ---- big results (edge-triggered waits) ------------------------------------------------ */

static int big_main(void *arg)
{
	(void)arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(cm.conn, &r,
				      "SELECT g, repeat('x', 100) FROM generate_series(1, $1::int) g",
				      AW_PG_ARGS("200000")), 0);
		PCHECK(aw_pg_nrows(r) == 200000);
		int64_t last;
		PCHECK_RC(aw_pg_get_int(r, 199999, 0, &last), 0);
		PCHECK(last == 200000);
		aw_pg_result_free(r);
		/* A big parameter (sent in many writes). */
		size_t n = 4 << 20;
		char *big = malloc(n + 1);
		memset(big, 'y', n);
		big[n] = 0;
		PCHECK_RC(aw_pg_query(cm.conn, &r, "SELECT length($1::text)", AW_PG_ARGS(big)), 0);
		free(big);
		PCHECK_STR(aw_pg_text(r, 0, 0), "4194304");
		aw_pg_result_free(r);
	}
	return aw_error_pending();
}

AW_TEST(pg_large_results_and_parameters_arrive_whole) { PG_RUN(big_main, NULL); }

/* ---- cancellation ------------------------------------------------------------------------ */

static int timeout_main(void *arg)
{
	(void)arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		aw_pg_conn *c = cm.conn;
		int pid = aw_pg_conn_pid(c);
		aw_time t0 = aw_now();
		int rc = 1;
		AW_WITH(AW_TIMEOUT(AW_MS(200))) {
			rc = pg_exec_rows(c, "SELECT pg_sleep(20)", AW_PG_NOARGS);
		}
		PCHECK_RC(rc, -ETIMEDOUT);
		/* The cancel request stopped the server: it did not sleep 20 s. */
		PCHECK(aw_now() - t0 < AW_SEC(5));
		/* Same connection, clean and reusable. */
		PCHECK(aw_pg_conn_ok(c));
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(aw_pg_conn_pid(c) == pid);
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(c, &r, "SELECT 'after'", AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "after");
		aw_pg_result_free(r);

		/* move_on around a query: its own timeout is swallowed. */
		aw_scope s;
		AW_WITH(aw_move_on_init(&s, AW_MS(100))) {
			rc = pg_exec_rows(c, "SELECT pg_sleep(20)", AW_PG_NOARGS);
			if (rc < 0)
				break;   /* leave with the error: the scope's exit sees it */
		}
		PCHECK_RC(rc, -ETIMEDOUT);
		PCHECK(s.fired);
		PCHECK(aw_error_pending() == 0);
		PCHECK(aw_pg_conn_ok(c));
		PCHECK_RC(pg_exec_rows(c, "SELECT 1", AW_PG_NOARGS), 1);
	}
	return aw_error_pending();
}

AW_TEST(pg_deadline_mid_query_cancels_on_the_server_and_connection_is_reusable) { PG_RUN(timeout_main, NULL); }

typedef struct cancel_ctx {
	aw_pg_conn *c;
	int rc;
	bool started;
} cancel_ctx;

static int sleeper(void *arg)
{
	cancel_ctx *x = arg;
	x->started = true;
	x->rc = pg_exec_rows(x->c, "SELECT pg_sleep(20)", AW_PG_NOARGS);
	return 0;
}

static int task_cancel_main(void *arg)
{
	(void)arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		cancel_ctx x = { cm.conn, 1, false };
		aw_task *t;
		aw_time t0 = aw_now();
		PCHECK_RC(aw_spawn(&t, sleeper, &x, "sleeper"), 0);
		PCHECK_RC(aw_sleep(AW_MS(150)), 0);
		PCHECK(x.started);
		aw_task_cancel(t);
		PCHECK_RC(aw_task_join(t), 0);
		PCHECK_RC(x.rc, -ECANCELED);
		PCHECK(aw_now() - t0 < AW_SEC(5));
		PCHECK(aw_pg_conn_ok(cm.conn));
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(cm.conn, &r, "SELECT 3", AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "3");
		aw_pg_result_free(r);
		/* The server saw a cancellation, not a finished sleep. */
		PCHECK_RC(aw_pg_query(cm.conn, &r,
				      "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
				      "AND query LIKE 'SELECT pg_sleep(20)%'",
				      AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "0");
		aw_pg_result_free(r);
	}
	return aw_error_pending();
}

AW_TEST(pg_task_cancel_mid_query_sends_a_cancel_request) { PG_RUN(task_cancel_main, NULL); }

static int busy_other(void *arg)
{
	cancel_ctx *x = arg;
	x->rc = pg_exec_rows(x->c, "SELECT 1", AW_PG_NOARGS);
	aw_error_clear();
	return 0;
}

static int busy_main(void *arg)
{
	(void)arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		cancel_ctx x = { cm.conn, 1, false };
		aw_task *t;
		PCHECK_RC(aw_spawn(&t, busy_other, &x, "other"), 0);
		PCHECK_RC(pg_exec_rows(cm.conn, "SELECT pg_sleep(0.1)", AW_PG_NOARGS), 1);
		PCHECK_RC(aw_task_join(t), 0);
		PCHECK_RC(x.rc, -EBUSY);
	}
	return aw_error_pending();
}

AW_TEST(pg_two_tasks_on_one_connection_is_ebusy_not_corruption) { PG_RUN(busy_main, NULL); }

typedef struct term_ctx {
	aw_pg_conn *victim;
	int rc;
} term_ctx;

static int victim_task(void *arg)
{
	term_ctx *x = arg;
	x->rc = pg_exec_rows(x->victim, "SELECT pg_sleep(20)", AW_PG_NOARGS);
	return 0;
}

static int terminate_main(void *arg)
{
	(void)arg;
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		term_ctx x = { a.conn, 1 };
		aw_task *t;
		PCHECK_RC(aw_spawn(&t, victim_task, &x, "victim"), 0);
		PCHECK_RC(aw_sleep(AW_MS(150)), 0);
		char pid[16];
		snprintf(pid, sizeof pid, "%d", aw_pg_conn_pid(a.conn));
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(b.conn, &r, "SELECT pg_terminate_backend($1::int)", AW_PG_ARGS(pid)), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "t");
		aw_pg_result_free(r);
		PCHECK_RC(aw_task_join(t), 0);
		PCHECK_RC(x.rc, -ECONNRESET);
		PCHECK(!aw_pg_conn_ok(a.conn));
		PCHECK(aw_pg_conn_tx_status(a.conn) == '?');
		PCHECK_RC(pg_exec_rows(a.conn, "SELECT 1", AW_PG_NOARGS), -ECONNRESET);
		PCHECK(pg_error_mentions("broken"));
		aw_error_clear();
	}
	return aw_error_pending();
}

AW_TEST(pg_terminated_backend_mid_query_is_econnreset_and_broken) { PG_RUN(terminate_main, NULL); }

/* ---- the ledger ----------------------------------------------------------------------- */

static int leak_main(void *arg)
{
	(void)arg;
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_connect(&c, PG_URL(), NULL), 0);
	PCHECK(aw_ledger_count() == 1);
	return 0;   /* never closed */
}

AW_TEST(pg_connection_never_closed_is_reported_with_where_it_was_opened)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *log = open_memstream(&buf, &len);
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.log = log;
	int rc = aw_run_config(&cfg, leak_main, NULL);
	fclose(log);
	CHECK_EQ(rc, 0);
	int ok = strstr(buf, "pg connection") && strstr(buf, "test_pg.c");
	if (!ok)
		aw_test_fail(__FILE__, __LINE__, "report: %s", buf);
	free(buf);
}

/* Timestamps past year 9999 are ISO-8601 too (the date is longer than
 * ten characters); BC dates stay the server's text. */
static int json_years_main(void *arg)
{
	(void)arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		PCHECK_RC(pg_exec_rows(cm.conn, "SET TIME ZONE 'UTC'", AW_PG_NOARGS), 0);
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(cm.conn, &r,
				      "SELECT '12345-06-07 08:09:10.5+00'::timestamptz AS a, "
				      "'10000-01-01 00:00:00'::timestamp AS b, "
				      "'9999-12-31 23:59:59+00'::timestamptz AS c, "
				      "'0044-03-15 12:00:00 BC'::timestamp AS d, "
				      "'infinity'::timestamptz AS e",
				      AW_PG_NOARGS), 0);
		char *text;
		PCHECK_RC(aw_pg_result_json_text(r, &text, NULL), 0);
		aw_pg_result_free(r);
		int ok = !strcmp(text, "[{\"a\":\"12345-06-07T08:09:10.5+00:00\",\"b\":\"10000-01-01T00:00:00\","
				 "\"c\":\"9999-12-31T23:59:59+00:00\",\"d\":\"0044-03-15 12:00:00 BC\","
				 "\"e\":\"infinity\"}]");
		if (!ok)
			aw_test_fail(__FILE__, __LINE__, "got %s", text);
		free(text);
	}
	return aw_error_pending();
}

AW_TEST(pg_result_to_json_writes_years_past_9999_as_iso_8601) { PG_RUN(json_years_main, NULL); }
