/* SPDX-License-Identifier: MIT */
/*
 * Signals as waits: a block that holds a set of signals blocked on the loop
 * thread and readable through a signalfd, so a task can wait for SIGTERM
 * like for any other event (Python's loop.add_signal_handler, without the
 * handler).
 *
 * The loop's other threads (the pool, the watchdog) block every signal, so
 * a process-directed signal can only land on the loop thread, where it stays
 * pending until the signalfd is read.
 *
 * The signal mask is per thread, while blocks are per task: two tasks of
 * one loop may enter and leave signal blocks in any order. Restoring "the
 * mask as it was at enter" (SIG_SETMASK old) would then unblock a signal
 * another task's block still waits for, and that signal would take its
 * default action (usually: kill the process). So the thread keeps a count
 * of blocks holding each signal: enter blocks what it lists; exit unblocks
 * a signal only when the last block holding it leaves, and only if it was
 * not blocked already before the first one entered. For properly nested
 * blocks this is exactly "restore the previous mask".
 */
#include "internal.h"

#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define AW_SIGNALS_MAX ((int)(sizeof((aw_signals *)0)->signals / sizeof(int)))

/* Per thread (each loop has its own thread and mask): how many entered
 * blocks hold each signal, and whether it was blocked before the first. */
static __thread unsigned sig_holders[_NSIG];
static __thread sigset_t sig_preblocked;

static bool sig_listed_twice(const aw_signals *s, int i)
{
	for (int k = 0; k < i; k++)
		if (s->signals[k] == s->signals[i])
			return true;
	return false;
}

/* Enter: check the list, block the signals, open the signalfd. */
static int signals_enter(aw_mgr *m)
{
	aw_signals *s = AW_CONTAINER_OF(m, aw_signals, mgr);
	s->fd = -1;
	if (s->count < 1 || s->count > AW_SIGNALS_MAX)
		return aw_raise(-EINVAL, "aw_signals: %d signals given; 1 to %d can be waited for", s->count,
				AW_SIGNALS_MAX);
	sigset_t set;
	sigemptyset(&set);
	for (int i = 0; i < s->count; i++) {
		int sig = s->signals[i];
		if (sig < 1 || sig >= _NSIG)
			return aw_raise(-EINVAL, "aw_signals: %d is not a signal number", sig);
		/* KILL and STOP cannot be blocked; the synchronous faults are
		 * the program's own bug, not an event to wait for. */
		if (sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE ||
		    sig == SIGILL)
			return aw_raise(-EINVAL, "aw_signals: %s cannot be waited for", strsignal(sig));
		sigaddset(&set, sig);
	}
	sigset_t old_mask;   /* what was blocked before (not kept: see sig_preblocked) */
	if (pthread_sigmask(SIG_BLOCK, &set, &old_mask) != 0)
		return aw_raise(-EINVAL, "aw_signals: cannot block the signals");
	for (int i = 0; i < s->count; i++) {
		int sig = s->signals[i];
		if (sig_listed_twice(s, i))
			continue;
		if (sig_holders[sig]++ == 0) {
			if (sigismember(&old_mask, sig))
				sigaddset(&sig_preblocked, sig);
			else
				sigdelset(&sig_preblocked, sig);
		}
	}
	int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0) {
		int rc = aw_raise(-errno, "aw_signals: signalfd: %m");
		(void)m->ops->exit(m, 0);   /* undo the mask */
		return rc;
	}
	s->fd = fd;
	return 0;
}

/* Exit: close the signalfd, then unblock what this block was the last to
 * hold (see the top of the file). A signal that arrived after the last wait
 * is delivered as usual once unblocked: it is not lost. */
static int signals_exit(aw_mgr *m, int err)
{
	aw_signals *s = AW_CONTAINER_OF(m, aw_signals, mgr);
	if (s->fd >= 0)
		aw_fd_close(s->fd);
	s->fd = -1;
	sigset_t unblock;
	sigemptyset(&unblock);
	for (int i = 0; i < s->count; i++) {
		int sig = s->signals[i];
		if (sig_listed_twice(s, i) || sig_holders[sig] == 0)
			continue;
		if (--sig_holders[sig] == 0 && !sigismember(&sig_preblocked, sig))
			sigaddset(&unblock, sig);
	}
	pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
	return err;
}

static void signals_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_signals *s = AW_CONTAINER_OF(m, aw_signals, mgr);
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < s->count && i < AW_SIGNALS_MAX && used < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%d", i ? " " : "signals ", s->signals[i]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static const aw_mgr_ops signals_ops = {
	.name = "signals",
	.enter = signals_enter,
	.exit = signals_exit,
	.describe = signals_describe,
};

/* Prepare s to wait for the `count` signals in sigs (copied):
 * AW_WITH(aw_signals_init(&s, (int[]){SIGINT, SIGTERM}, 2)) { ... }.
 * Enter fails with -EINVAL for more than 8 (or no) signals, a number that
 * is not a signal, or one that cannot be waited for (KILL, STOP, SEGV, BUS,
 * FPE, ILL). Listing a signal twice is harmless. */
aw_mgr *aw_signals_init(aw_signals *s, const int *sigs, int count)
{
	memset(s, 0, sizeof *s);
	s->mgr.ops = &signals_ops;
	s->fd = -1;
	s->count = count;
	if (count > 0 && count <= AW_SIGNALS_MAX && sigs)
		memcpy(s->signals, sigs, (size_t)count * sizeof *sigs);
	else if (count > 0 && !sigs)
		s->count = -1;   /* refused at enter */
	return &s->mgr;
}

/* Waits: the next of the block's signals, by number (> 0). Signals that
 * arrived before the call are returned first, one per call, in the
 * kernel's order. Returns -ETIMEDOUT at `deadline` ("waiting for signals
 * timed out"), the cancel code, or -EINVAL outside the block. */
int (aw_signals_wait)(aw_signals *s, aw_time deadline)
{
	if (!s || s->fd < 0)
		return aw_raise(-EINVAL, "aw_signals_wait: the signals block is not entered");
	for (;;) {
		struct signalfd_siginfo si;
		ssize_t n = read(s->fd, &si, sizeof si);
		if (n == (ssize_t)sizeof si)
			return (int)si.ssi_signo;
		if (n >= 0)
			return aw_raise(-EIO, "aw_signals_wait: short read of %zd bytes from the signalfd", n);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return aw_raise(-errno, "aw_signals_wait: read from the signalfd: %m");
		int rc = (aw_fd_wait)(s->fd, AW_READABLE, deadline);
		if (rc == -ETIMEDOUT && deadline != AW_NEVER && aw_now() >= deadline) {
			const aw_error *e = aw_error_current();
			if (e && !e->origin)   /* our deadline, not an enclosing scope's */
				return aw_raise(-ETIMEDOUT, "waiting for signals timed out");
		}
		if (rc)
			return rc;
	}
}
