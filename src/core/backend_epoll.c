/* SPDX-License-Identifier: MIT */
/*
 * The poll backend on epoll. The loop registers each fd once, edge-
 * triggered for both directions, and keeps the readiness bits itself
 * (loop.c): one epoll_ctl per fd lifetime instead of one per wait.
 * backend_uring.c implements the same five functions on io_uring;
 * backend.c picks one per loop.
 */
#include "internal.h"

#include <sys/epoll.h>
#include <unistd.h>

int aw_epoll_init(aw_backend *b)
{
	b->fd = epoll_create1(EPOLL_CLOEXEC);
	return b->fd < 0 ? -errno : 0;
}

void aw_epoll_fini(aw_backend *b)
{
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
}

int aw_epoll_add(aw_backend *b, int fd, uint64_t data)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		.data.u64 = data,
	};
	if (epoll_ctl(b->fd, EPOLL_CTL_ADD, fd, &ev) != 0)
		return -errno;
	return 0;
}

int aw_epoll_del(aw_backend *b, int fd)
{
	if (epoll_ctl(b->fd, EPOLL_CTL_DEL, fd, NULL) != 0)
		return -errno;
	return 0;
}

int aw_epoll_poll(aw_backend *b, aw_time timeout, aw_backend_ready_fn *on_ready, void *ctx)
{
	struct epoll_event evs[256];
	int ms;
	if (timeout < 0)
		ms = -1;
	else if (timeout == 0)
		ms = 0;
	else if (timeout > AW_MS(INT_MAX))
		ms = INT_MAX;
	else
		ms = (int)((timeout + AW_MS(1) - 1) / AW_MS(1)); /* round up: never wake early */
	int n = epoll_wait(b->fd, evs, 256, ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		uint32_t e = evs[i].events;
		bool err = e & (EPOLLERR | EPOLLHUP);
		on_ready(ctx, evs[i].data.u64, err || (e & (EPOLLIN | EPOLLRDHUP | EPOLLPRI)),
			 err || (e & EPOLLOUT), err || (e & EPOLLRDHUP));
	}
	return n;
}
