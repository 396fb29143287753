/* SPDX-License-Identifier: MIT */
/* OS layer: error messages, eventfds, the monotonic clock. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "os.h"

int xvl_err(struct xvl_errbuf *eb, int rc, const char *fmt, ...)
{
	if (eb) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(eb->msg, sizeof(eb->msg), fmt, ap);
		va_end(ap);
	}
	return rc;
}

int xvl_os_eventfd(void)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int xvl_os_eventfd_signal(int fd)
{
	uint64_t one = 1;
	for (;;) {
		ssize_t n = write(fd, &one, sizeof(one));
		if (n == (ssize_t)sizeof(one))
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		/* Counter at its maximum: the peer has a wakeup pending anyway. */
		if (n < 0 && errno == EAGAIN)
			return 0;
		return n < 0 ? -errno : -EIO;
	}
}

uint64_t xvl_os_eventfd_drain(int fd)
{
	uint64_t v;
	for (;;) {
		ssize_t n = read(fd, &v, sizeof(v));
		if (n == (ssize_t)sizeof(v))
			return v;
		if (n < 0 && errno == EINTR)
			continue;
		return 0; /* EAGAIN: nothing pending */
	}
}

int xvl_os_is_eventfd(int fd)
{
	char path[64], link[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return errno == ENOENT && access("/proc/self/fd", F_OK) < 0 ? -ENOSYS : -errno;
	link[n] = '\0';
	return strcmp(link, "anon_inode:[eventfd]") == 0;
}

/* The guard's signal: delivery only interrupts the blocked call. */
#define GUARD_SIGNAL (SIGRTMIN + 2)

static void guard_handler(int sig)
{
	(void)sig;
}

int xvl_os_guard_init(struct xvl_os_guard *g)
{
	struct sigaction sa;
	struct sigevent sev;
	timer_t t;

	g->ok = 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = guard_handler; /* no SA_RESTART: the blocked call returns EINTR */
	sigemptyset(&sa.sa_mask);
	if (sigaction(GUARD_SIGNAL, &sa, NULL) < 0)
		return -errno;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = GUARD_SIGNAL;
	sev._sigev_un._tid = (int)syscall(SYS_gettid);
	if (timer_create(CLOCK_MONOTONIC, &sev, &t) < 0)
		return -errno;
	g->timer = (void *)t;
	g->ok = 1;
	g->armed = 0;
	return 0;
}

void xvl_os_guard_fini(struct xvl_os_guard *g)
{
	if (g->ok)
		timer_delete((timer_t)g->timer);
	g->ok = 0;
}

/* Periodic while armed: any guarded call that blocks is interrupted within ms. */
static void guard_arm(struct xvl_os_guard *g, long ms)
{
	struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	struct itimerspec its = {.it_interval = t, .it_value = t};
	timer_settime((timer_t)g->timer, 0, &its, NULL);
}

void xvl_os_guard_release(struct xvl_os_guard *g)
{
	if (!g->armed)
		return;
	guard_arm(g, 0);
	g->armed = 0;
}

/*
 * One read or write of 8 bytes under the guard; EINTR means it blocked (an
 * eventfd read or write that does not block cannot be interrupted).  The
 * guard is armed at the first guarded call and stays armed until
 * xvl_os_guard_release: one pair of timer calls per loop pass, not per call.
 */
static int guarded_rw(struct xvl_os_guard *g, int fd, uint64_t *v, int write_it)
{
	if (!g->ok)
		return -ENOSYS;
	if (!g->armed) {
		guard_arm(g, XVL_OS_PEER_EFD_MS);
		g->armed = 1;
	}
	ssize_t n = write_it ? write(fd, v, sizeof(*v)) : read(fd, v, sizeof(*v));
	if (n == (ssize_t)sizeof(*v))
		return 0;
	if (n >= 0)
		return -EIO;
	return errno == EINTR ? -ETIMEDOUT : -errno;
}

int xvl_os_peer_eventfd_signal(struct xvl_os_guard *g, int fd)
{
	uint64_t one = 1;
	return guarded_rw(g, fd, &one, 1);
}

int xvl_os_peer_eventfd_drain(struct xvl_os_guard *g, int fd, uint64_t *v)
{
	*v = 0;
	int rc = guarded_rw(g, fd, v, 0);
	if (rc == -EAGAIN) {
		*v = 0;
		return 0;
	}
	return rc;
}

uint64_t xvl_os_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
