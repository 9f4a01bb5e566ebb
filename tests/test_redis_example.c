/* SPDX-License-Identifier: MIT */
/*
 * Tests: the hiredis wrapper of examples/redis_client.c beyond what its
 * main shows — the paths a user copying it would hit: values bigger than
 * hiredis's read buffer and than the socket's send buffer, many tasks on
 * one connection, a connection killed under a waiting command and under a
 * subscription, a cancelled subscription loop, a plain command on a
 * subscribed connection. The example file is compiled in (its main
 * renamed), so these test exactly the code users copy.
 *
 * Needs a redis-server: AW_REDIS_SOCKET is its unix socket, AW_REDIS_PID
 * its process (one test stops it for a moment) — tests/check_redis_example.sh
 * starts one and runs this program.
 */
#define main redis_client_main
#include "../examples/redis_client.c"
#undef main

#include "harness.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

AW_TEST_REQUIRE_ENV("AW_REDIS_SOCKET", "AW_REDIS_REQUIRED");

static const char *sock(void) { return getenv("AW_REDIS_SOCKET"); }

/* ---- big values ------------------------------------------------------------ */

enum { BIG = 3 * 1024 * 1024 + 17 };

static int main_big(void *arg)
{
	(void)arg;
	redis_conn r;
	char *v = malloc(BIG);
	for (size_t i = 0; i < BIG; i++)
		v[i] = (char)('a' + i % 26);
	AW_WITH(redis_conn_init(&r, sock(), 0, aw_deadline_after(AW_SEC(5)))) {
		redisReply *rep;
		/* 3 MiB out: more than the socket takes at once (the driver waits
		 * for room); 3 MiB back: ~200 of hiredis's 16 KiB reads (the
		 * driver reads on while the socket has data). */
		EXPECT_EQ(redis_command(&r, NULL, "SET t:big %b", v, (size_t)BIG), 0);
		EXPECT_EQ(redis_command(&r, &rep, "GET t:big"), 0);
		if (rep) {
			EXPECT_EQ(rep->len, BIG);
			EXPECT(memcmp(rep->str, v, BIG) == 0);
			redis_reply_free(rep);
		}
		EXPECT_EQ(redis_command(&r, NULL, "DEL t:big"), 0);
	}
	free(v);
	EXPECT_EQ(aw_error_pending(), 0);
	return 0;
}

AW_TEST(redis_values_bigger_than_the_socket_buffers_cross_both_ways)
{
	EXPECT_EQ(aw_run(main_big, NULL), 0);
}

/* A reply that is all in the socket at once, several of hiredis's 16 KiB
 * reads long: one edge, then the driver must read on by itself. */
static int main_midsize(void *arg)
{
	(void)arg;
	redis_conn r;
	static char v[100 * 1024];
	memset(v, 'x', sizeof v);
	AW_WITH(redis_conn_init(&r, sock(), 0, aw_deadline_after(AW_SEC(5)))) {
		EXPECT_EQ(redis_command(&r, NULL, "SET t:mid %b", v, sizeof v), 0);
		for (int i = 0; i < 5; i++) {
			redisReply *rep;
			AW_WITH(AW_TIMEOUT(AW_SEC(2))) {
				EXPECT_EQ(redis_command(&r, &rep, "GET t:mid"), 0);
			}
			if (aw_error_pending())
				break;
			EXPECT_EQ(rep->len, sizeof v);
			redis_reply_free(rep);
		}
	}
	EXPECT_EQ(aw_error_pending(), 0);
	return 0;
}

AW_TEST(redis_a_reply_already_in_the_socket_is_read_to_its_end)
{
	EXPECT_EQ(aw_run(main_midsize, NULL), 0);
}

/* A write the server does not take (it is stopped): the driver waits for
 * room instead of retrying the write in a loop. */
typedef struct stopped {
	pid_t pid;
	aw_time for_;
} stopped;

static int resume_task(void *arg)
{
	stopped *s = arg;
	int rc = aw_sleep(s->for_);
	kill(s->pid, SIGCONT);
	return rc;
}

static double cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int main_stopped(void *arg)
{
	(void)arg;
	redis_conn r;
	enum { SIZE = 2 * 1024 * 1024 };   /* well over the socket buffers */
	char *v = calloc(1, SIZE);
	stopped s = { (pid_t)atol(getenv("AW_REDIS_PID")), AW_MS(500) };
	AW_WITH(redis_conn_init(&r, sock(), 0, aw_deadline_after(AW_SEC(5)))) {
		aw_task *t;
		EXPECT(s.pid > 0 && kill(s.pid, SIGSTOP) == 0);
		EXPECT_EQ(aw_spawn(&t, resume_task, &s, "resume"), 0);
		double cpu0 = cpu_seconds();
		aw_time t0 = aw_now();
		EXPECT_EQ(redis_command(&r, NULL, "SET t:stopped %b", v, (size_t)SIZE), 0);
		double cpu = cpu_seconds() - cpu0;
		EXPECT(aw_now() - t0 >= AW_MS(500));   /* it did have to wait */
		/* ... without spinning: a loop retrying the write would burn the
		 * whole 500 ms (the old driver never even yielded: the loop hung);
		 * what is left is hiredis's own copying of 2 MiB. */
		if (getenv("AW_REDIS_SHOW_CPU") || cpu >= 0.35)
			fprintf(stderr, "%.3f s of CPU for a 500 ms wait\n", cpu);
		EXPECT(cpu < 0.35);
		EXPECT_EQ(aw_task_join(t), 0);
		EXPECT_EQ(redis_command(&r, NULL, "DEL t:stopped"), 0);
	}
	kill(s.pid, SIGCONT);
	free(v);
	EXPECT_EQ(aw_error_pending(), 0);
	return 0;
}

AW_TEST(redis_a_write_the_server_does_not_take_waits_without_spinning)
{
	EXPECT_EQ(aw_run(main_stopped, NULL), 0);
}

/* ---- many tasks, one connection ------------------------------------------- */

enum { NTASKS = 20, NINCR = 50 };

static int incr_task(void *arg)
{
	redis_conn *r = arg;
	for (int i = 0; i < NINCR; i++) {
		int rc = redis_command(r, NULL, "INCR t:shared");
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int main_shared(void *arg)
{
	(void)arg;
	redis_conn r;
	AW_WITH(redis_conn_init(&r, sock(), 0, aw_deadline_after(AW_SEC(5)))) {
		EXPECT_EQ(redis_command(&r, NULL, "DEL t:shared"), 0);
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < NTASKS; i++)
				EXPECT_EQ(aw_group_spawn(&g, incr_task, &r, "incr"), 0);
		}
		redisReply *rep;
		EXPECT_EQ(redis_command(&r, &rep, "GET t:shared"), 0);
		if (rep) {
			EXPECT_EQ(atoi(rep->str), NTASKS * NINCR);
			redis_reply_free(rep);
		}
	}
	EXPECT_EQ(aw_error_pending(), 0);
	return 0;
}

AW_TEST(redis_many_tasks_share_one_connection_and_each_gets_its_reply)
{
	EXPECT_EQ(aw_run(main_shared, NULL), 0);
}

/* ---- the server drops the connection -------------------------------------- */

typedef struct killed {
	redis_conn *r;
	int rc;
	char msg[256];
} killed;

static int blpop_task(void *arg)
{
	killed *k = arg;
	k->rc = redis_command(k->r, NULL, "BLPOP t:never 0");
	snprintf(k->msg, sizeof k->msg, "%s", aw_error_current() ? aw_error_current()->msg : "");
	aw_error_clear();
	return 0;
}

/* CLIENT KILL the connection whose CLIENT ID is id, from r. */
static int kill_client(redis_conn *r, long long id)
{
	char ids[32];
	snprintf(ids, sizeof ids, "%lld", id);
	return redis_command(r, NULL, "CLIENT KILL ID %s", ids);
}

static long long client_id(redis_conn *r)
{
	redisReply *rep;
	if (redis_command(r, &rep, "CLIENT ID") < 0)
		return -1;
	long long id = rep->integer;
	redis_reply_free(rep);
	return id;
}

static int main_killed(void *arg)
{
	(void)arg;
	redis_conn a, b;
	killed k = { &a, 1, "" };
	AW_WITH(redis_conn_init(&a, sock(), 0, aw_deadline_after(AW_SEC(5))),
		redis_conn_init(&b, sock(), 0, aw_deadline_after(AW_SEC(5)))) {
		long long id = client_id(&a);
		aw_task *t;
		EXPECT_EQ(aw_spawn(&t, blpop_task, &k, "blpop"), 0);
		EXPECT_EQ(aw_sleep(AW_MS(20)), 0);   /* the BLPOP is on the server */
		EXPECT_EQ(kill_client(&b, id), 0);
		EXPECT_EQ(aw_task_join(t), 0);
		EXPECT_EQ(k.rc, -REDIS_ECLOSED);
		EXPECT(strstr(k.msg, "BLPOP: connection to unix:") != NULL);
		/* Later commands fail at once, with the reason. */
		EXPECT_EQ(redis_command(&a, NULL, "PING"), -REDIS_ECLOSED);
		EXPECT(strstr(aw_error_current()->msg, "closed connection") != NULL);
		aw_error_clear();
		EXPECT_EQ(redis_command(&b, NULL, "PING"), 0);   /* the other one is fine */
	}
	EXPECT_EQ(aw_error_pending(), 0);   /* closing a dead connection is no error */
	return 0;
}

AW_TEST(redis_a_killed_connection_fails_the_waiting_command_and_later_ones_with_eclosed)
{
	EXPECT_EQ(aw_run(main_killed, NULL), 0);
}

typedef struct subkill {
	redis_conn *r;
	int got, rc;
	aw_event subscribed;
} subkill;

static int listen_task(void *arg)
{
	subkill *s = arg;
	redis_sub sub;
	redis_message *msg;
	AW_FOR(msg, redis_subscribe_init(&sub, s->r, "t:chan")) {
		(void)msg;
		s->got++;
		aw_event_set(&s->subscribed);
	}
	s->rc = aw_error_pending();
	aw_error_clear();
	return 0;
}

static int main_sub_killed(void *arg)
{
	(void)arg;
	redis_conn a, b;
	subkill s = { .r = &a };
	aw_event_init(&s.subscribed);
	AW_WITH(redis_conn_init(&a, sock(), 0, aw_deadline_after(AW_SEC(5))),
		redis_conn_init(&b, sock(), 0, aw_deadline_after(AW_SEC(5)))) {
		long long id = client_id(&a);
		aw_task *t;
		EXPECT_EQ(aw_spawn(&t, listen_task, &s, "listen"), 0);
		/* The first message proves the subscription is live. */
		for (int i = 0; i < 500 && !aw_event_is_set(&s.subscribed); i++) {
			EXPECT_EQ(redis_command(&b, NULL, "PUBLISH t:chan hello"), 0);
			EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
		}
		EXPECT(aw_event_is_set(&s.subscribed));
		/* A plain command from another task on the subscribed connection. */
		EXPECT_EQ(redis_command(&a, NULL, "PING"), -REDIS_ESUBSCRIBED);
		aw_error_clear();
		EXPECT_EQ(kill_client(&b, id), 0);
		EXPECT_EQ(aw_task_join(t), 0);
		EXPECT(s.got >= 1);
		EXPECT_EQ(s.rc, -REDIS_ECLOSED);   /* the loop ends with the connection */
	}
	EXPECT_EQ(aw_error_pending(), 0);
	return 0;
}

AW_TEST(redis_a_killed_subscription_ends_the_loop_with_eclosed)
{
	EXPECT_EQ(aw_run(main_sub_killed, NULL), 0);
}

/* ---- a subscription loop left by a timeout --------------------------------- */

static int main_sub_timeout(void *arg)
{
	(void)arg;
	redis_conn r;
	AW_WITH(redis_conn_init(&r, sock(), 0, aw_deadline_after(AW_SEC(5)))) {
		redis_sub sub;
		redis_message *msg;
		int n = 0;
		aw_scope to;
		AW_WITH(aw_timeout_init(&to, AW_MS(50))) {
			AW_FOR(msg, redis_subscribe_init(&sub, &r, "t:quiet")) {
				(void)msg;
				n++;
			}
		}
		EXPECT_EQ(n, 0);
		EXPECT_EQ(aw_error_pending(), -ETIMEDOUT);
		aw_error_clear();
		/* The exit unsubscribed: the connection takes plain commands again,
		 * and the server counts no subscriber. */
		redisReply *rep;
		EXPECT_EQ(redis_command(&r, &rep, "PUBSUB NUMSUB t:quiet"), 0);
		if (rep) {
			EXPECT_EQ(rep->elements, 2);
			EXPECT_EQ(rep->element[1]->integer, 0);
			redis_reply_free(rep);
		}
		/* And it can subscribe again. */
		AW_WITH(aw_timeout_init(&to, AW_MS(20))) {
			AW_FOR(msg, redis_subscribe_init(&sub, &r, "t:quiet")) {
				(void)msg;
			}
		}
		EXPECT_EQ(aw_error_pending(), -ETIMEDOUT);
		aw_error_clear();
		EXPECT_EQ(redis_command(&r, NULL, "PING"), 0);
	}
	EXPECT_EQ(aw_error_pending(), 0);
	return 0;
}

AW_TEST(redis_a_subscription_loop_left_by_a_timeout_unsubscribes_and_keeps_the_connection)
{
	EXPECT_EQ(aw_run(main_sub_timeout, NULL), 0);
}

/* ---- a cancelled command, another task's command on the same connection -- */

typedef struct pair {
	redis_conn *r;
	int rc;
} pair;

static int get_task(void *arg)
{
	pair *p = arg;
	p->rc = redis_command(p->r, NULL, "GET t:nothing");
	aw_error_clear();
	return 0;
}

static int main_cancel_shared(void *arg)
{
	(void)arg;
	redis_conn r;
	AW_WITH(redis_conn_init(&r, sock(), 0, aw_deadline_after(AW_SEC(5)))) {
		int rc = 1;
		pair p = { &r, 1 };
		aw_task *t;
		AW_WITH(AW_TIMEOUT(AW_MS(30))) {
			rc = redis_command(&r, NULL, "BLPOP t:never 0");
		}
		EXPECT_EQ(rc, -ETIMEDOUT);
		aw_error_clear();
		/* A task whose command queued behind the BLPOP would wait forever
		 * on a kept connection: here it fails at once. */
		EXPECT_EQ(aw_spawn(&t, get_task, &p, "get"), 0);
		EXPECT_EQ(aw_task_join(t), 0);
		EXPECT_EQ(p.rc, -REDIS_ECLOSED);
	}
	EXPECT_EQ(aw_error_pending(), 0);
	return 0;
}

AW_TEST(redis_a_timed_out_command_closes_its_connection_for_every_task)
{
	EXPECT_EQ(aw_run(main_cancel_shared, NULL), 0);
}

/* ---- a server that never answers ------------------------------------------ */

/* A unix socket that listens and never accepts: the connect completes (the
 * kernel's backlog), the PING is never answered. */
static int silent_server(char *path, size_t len)
{
	snprintf(path, len, "/tmp/aw-redis-silent-%d.sock", (int)getpid());
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 8) < 0)
		return -1;
	return fd;
}

static int main_silent(void *arg)
{
	(void)arg;
	char path[108];
	int lfd = silent_server(path, sizeof path);
	EXPECT(lfd >= 0);
	redis_conn r;
	bool body = false;
	/* The connect's own deadline. */
	aw_time t0 = aw_now();
	AW_WITH(redis_conn_init(&r, path, 0, aw_deadline_after(AW_MS(50))))
		body = true;
	EXPECT(!body);
	EXPECT_EQ(aw_error_pending(), -ETIMEDOUT);
	EXPECT(aw_now() - t0 >= AW_MS(50));
	aw_error_clear();
	/* A timeout scope around the block: the enter is cancelled, and still
	 * closes the socket and joins its driver before it returns. */
	AW_WITH(AW_TIMEOUT(AW_MS(30))) {
		AW_WITH(redis_conn_init(&r, path, 0, AW_NEVER))
			body = true;
	}
	EXPECT(!body);
	EXPECT_EQ(aw_error_pending(), -ETIMEDOUT);
	aw_error_clear();
	EXPECT(r.driver == NULL && r.ac == NULL);
	close(lfd);
	unlink(path);
	return 0;
}

AW_TEST(redis_a_connect_to_a_server_that_never_answers_ends_at_its_deadline_or_scope)
{
	/* The loop reports a driver task left unjoined (a cancelled join in the
	 * enter's cleanup) to its log at the end: there must be nothing. */
	char *log = NULL;
	size_t len = 0;
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.log = open_memstream(&log, &len);
	EXPECT_EQ(aw_run_config(&cfg, main_silent, NULL), 0);
	fclose(cfg.log);
	EXPECT_STR_EQ(log, "");
	free(log);
}

/* ---- error codes ------------------------------------------------------------ */

AW_TEST(redis_error_codes_have_messages_in_their_own_range)
{
	EXPECT_EQ(REDIS_EBASE, AW_ERANGE_USER);
	EXPECT_STR_EQ(aw_strerror(-REDIS_ECLOSED), "the redis connection is closed");
	EXPECT_STR_EQ(aw_strerror(-REDIS_EREPLY), "the redis server replied with an error");
	EXPECT_STR_EQ(aw_strerror(-REDIS_ECONNECT), "cannot connect to the redis server");
	EXPECT_STR_EQ(aw_strerror(-ETIMEDOUT), "Connection timed out");   /* errno codes as before */
}
