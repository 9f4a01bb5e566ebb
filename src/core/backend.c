/* SPDX-License-Identifier: MIT */
/*
 * Which poll backend a loop runs on, chosen at run time: aw_config.backend,
 * else the AWITH_BACKEND environment variable (epoll, uring, auto), else
 * auto. Auto takes io_uring when the build has it (meson feature io_uring)
 * and the kernel lets this process set up a ring, and falls back to epoll
 * otherwise, saying why once per process: a kernel without io_uring
 * (ENOSYS), the kernel.io_uring_disabled sysctl (EPERM), a seccomp policy
 * that refuses io_uring_setup (EPERM or ENOSYS), a memlock limit (ENOMEM).
 * The other backend functions only dispatch on the kind chosen here.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#if AW_HAVE_IO_URING
static atomic_int fallback_said;   /* the auto fallback is said once per process */
#endif

/* The choice from AWITH_BACKEND, or -1 when the value is unknown. */
static int choice_from_env(void)
{
	const char *v = getenv("AWITH_BACKEND");
	if (!v || !*v || strcmp(v, "auto") == 0)
		return AW_BACKEND_AUTO;
	if (strcmp(v, "epoll") == 0)
		return AW_BACKEND_EPOLL;
	if (strcmp(v, "uring") == 0 || strcmp(v, "io_uring") == 0)
		return AW_BACKEND_URING;
	return -1;
}

#if AW_HAVE_IO_URING
/* Why the kernel refused, in words for the log. */
static const char *refusal(int rc, const char *why)
{
	if (why)
		return why;
	if (rc == -ENOSYS)
		return "the kernel has no io_uring, or a seccomp policy hides it (ENOSYS)";
	if (rc == -EPERM)
		return "io_uring_setup refused (EPERM): the kernel.io_uring_disabled sysctl or a seccomp policy";
	if (rc == -ENOMEM)
		return "io_uring_setup: no memory for the ring (ENOMEM; RLIMIT_MEMLOCK on older kernels)";
	return aw_strerror(rc);
}
#endif

int aw_backend_init(aw_backend *b, int choice, FILE *log)
{
	b->kind = 0;
	b->fd = -1;
	b->uring = NULL;
	b->recvq = NULL;
	if (choice == AW_BACKEND_DEFAULT) {
		choice = choice_from_env();
		if (choice < 0) {
			fprintf(log, "awith: AWITH_BACKEND=%s: unknown backend (epoll, uring or auto)\n",
				getenv("AWITH_BACKEND"));
			return -EINVAL;
		}
	}
	if (choice != AW_BACKEND_AUTO && choice != AW_BACKEND_EPOLL && choice != AW_BACKEND_URING) {
		fprintf(log, "awith: aw_config.backend=%d: unknown backend\n", choice);
		return -EINVAL;
	}
	if (choice != AW_BACKEND_EPOLL) {
#if AW_HAVE_IO_URING
		const char *why = NULL;
		int rc = aw_uring_init(b, &why);
		if (rc == 0) {
			b->kind = AW_BACKEND_KIND_URING;
			return 0;
		}
		if (choice == AW_BACKEND_URING) {
			fprintf(log, "awith: io_uring backend requested but unavailable: %s\n", refusal(rc, why));
			return rc;
		}
		if (!atomic_exchange(&fallback_said, 1))
			fprintf(log, "awith: io_uring unavailable (%s); the loop uses epoll\n", refusal(rc, why));
#else
		if (choice == AW_BACKEND_URING) {
			fprintf(log, "awith: io_uring backend requested, but this build has none "
				     "(configure with -Dio_uring=enabled and liburing)\n");
			return -ENOSYS;
		}
		/* Auto in a build without io_uring is plain epoll: nothing to say. */
#endif
	}
	int rc = aw_epoll_init(b);
	if (rc == 0)
		b->kind = AW_BACKEND_KIND_EPOLL;
	return rc;
}

void aw_backend_fini(aw_backend *b)
{
#if AW_HAVE_IO_URING
	if (b->kind == AW_BACKEND_KIND_URING) {
		aw_uring_fini(b);
		b->kind = 0;
		return;
	}
#endif
	if (b->kind == AW_BACKEND_KIND_EPOLL)
		aw_epoll_fini(b);
	b->kind = 0;
}

int aw_backend_add(aw_backend *b, int fd, uint64_t data)
{
#if AW_HAVE_IO_URING
	if (b->kind == AW_BACKEND_KIND_URING)
		return aw_uring_add(b, fd, data);
#endif
	return aw_epoll_add(b, fd, data);
}

int aw_backend_del(aw_backend *b, int fd)
{
#if AW_HAVE_IO_URING
	if (b->kind == AW_BACKEND_KIND_URING)
		return aw_uring_del(b, fd);
#endif
	return aw_epoll_del(b, fd);
}

int aw_backend_poll(aw_backend *b, aw_time timeout, aw_backend_ready_fn *on_ready, void *ctx)
{
#if AW_HAVE_IO_URING
	if (b->kind == AW_BACKEND_KIND_URING)
		return aw_uring_poll(b, timeout, on_ready, ctx);
#endif
	return aw_epoll_poll(b, timeout, on_ready, ctx);
}

const char *aw_backend_name(const aw_backend *b)
{
	return b->kind == AW_BACKEND_KIND_URING ? "io_uring" : b->kind == AW_BACKEND_KIND_EPOLL ? "epoll" : NULL;
}

const char *aw_loop_backend(void)
{
	aw_loop *l = aw__loop;
	return l ? aw_backend_name(&l->backend) : NULL;
}
