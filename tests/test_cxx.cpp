/* SPDX-License-Identifier: MIT */
/*
 * Tests: the block statement from C++17 (g++ and clang++). The same
 * AW_WITH, AW_TIMEOUT, AW_FOR, generator managers and task groups as in C,
 * with the same rules: exits run exactly once, LIFO, on every way out, and
 * see the error the block is left with.
 */
extern "C" {
#include "harness.h"
}
#include <awith/core.h>

#include <cstring>
#include <string>

namespace {

struct recorder {
	aw_mgr mgr;
	std::string *log;
	const char *name;
	int seen = 1;
};

int rec_exit(aw_mgr *m, int err)
{
	recorder *r = reinterpret_cast<recorder *>(m);
	r->seen = err;
	*r->log += std::string("exit ") + r->name + "(" + std::to_string(err) + ") ";
	return err;
}

const aw_mgr_ops rec_ops = { "recorder", nullptr, rec_exit, nullptr };

struct scenario {
	std::string log;
	int pending = 0, rc = 0, items = 0, sleep_rc = 0;
	bool fired = false;
};

int nested_inner(scenario *sc)
{
	recorder a{ { &rec_ops }, &sc->log, "a" }, b{ { &rec_ops }, &sc->log, "b" };
	AW_WITH(&a.mgr, &b.mgr) {
		sc->log += "body ";
		return aw_raise(-EIO, "from C++");
	}
	return 0;
}

int nested_main(void *arg)
{
	scenario *sc = static_cast<scenario *>(arg);
	sc->rc = nested_inner(sc);
	sc->pending = aw_error_pending();
	aw_error_clear();
	return 0;
}

int timeout_main(void *arg)
{
	scenario *sc = static_cast<scenario *>(arg);
	AW_WITH(AW_TIMEOUT(AW_MS(10))) {
		sc->sleep_rc = aw_sleep(AW_SEC(10));
	}
	sc->pending = aw_error_pending();
	aw_error_clear();
	aw_scope s;
	AW_WITH(aw_move_on_init(&s, AW_MS(5))) {
		(void)!aw_catch(aw_sleep(AW_SEC(10)), 0);
	}
	sc->fired = s.fired;
	return aw_error_pending();
}

int resource_gen(aw_gen *g, void *arg)
{
	scenario *sc = static_cast<scenario *>(arg);
	sc->log += "setup ";
	static int value = 42;
	int err = aw_gen_yield(g, &value);
	sc->log += "teardown(" + std::to_string(err) + ") ";
	return err;
}

int child(void *arg)
{
	scenario *sc = static_cast<scenario *>(arg);
	int rc = aw_sleep(AW_MS(1));
	if (rc)
		return rc;
	sc->items++;
	return 0;
}

int gen_group_main(void *arg)
{
	scenario *sc = static_cast<scenario *>(arg);
	aw_gen g;
	AW_WITH(aw_gen_init(&g, "resource", resource_gen, sc)) {
		sc->rc = *static_cast<int *>(aw_gen_value(&g));
	}
	aw_group grp;
	AW_WITH(aw_group_init(&grp)) {
		for (int i = 0; i < 3; i++)
			if (aw_group_spawn(&grp, child, sc, "child"))
				break;
	}
	return aw_error_pending();
}

int countdown(aw_gen *g, void *arg)
{
	(void)arg;
	static int vals[3] = { 3, 2, 1 };
	for (int &v : vals) {
		int rc = aw_gen_yield(g, &v);
		if (rc)
			return rc == -AW_ECLOSED ? 0 : rc;
	}
	return 0;
}

int for_main(void *arg)
{
	scenario *sc = static_cast<scenario *>(arg);
	aw_gen_iter gi;
	int *x;
	AW_FOR(x, aw_gen_iter_init(&gi, "countdown", countdown, nullptr)) {
		sc->items += *x;
		if (*x == 2)
			break;
	}
	return aw_error_pending();
}

} // namespace

AW_TEST(cxx_with_runs_exits_lifo_on_return_and_they_see_the_error)
{
	scenario sc;
	CHECK_EQ(aw_run(nested_main, &sc), 0);
	CHECK_STR(sc.log.c_str(), "body exit b(-5) exit a(-5) ");
	CHECK_EQ(sc.rc, -EIO);
	CHECK_EQ(sc.pending, -EIO);
}

AW_TEST(cxx_timeout_and_move_on_scopes_fire)
{
	scenario sc;
	CHECK_EQ(aw_run(timeout_main, &sc), 0);
	CHECK_EQ(sc.sleep_rc, -ETIMEDOUT);
	CHECK_EQ(sc.pending, -ETIMEDOUT);
	CHECK(sc.fired);
}

AW_TEST(cxx_generator_manager_and_task_group)
{
	scenario sc;
	CHECK_EQ(aw_run(gen_group_main, &sc), 0);
	CHECK_STR(sc.log.c_str(), "setup teardown(0) ");
	CHECK_EQ(sc.rc, 42);
	CHECK_EQ(sc.items, 3);
}

AW_TEST(cxx_for_over_a_generator_iterator_closes_it_on_break)
{
	scenario sc;
	CHECK_EQ(aw_run(for_main, &sc), 0);
	CHECK_EQ(sc.items, 5);
}
