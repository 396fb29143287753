/* SPDX-License-Identifier: MIT */
/* OS layer: error messages, eventfds, the monotonic clock. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <sys/eventfd.h>
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

uint64_t xvl_os_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
