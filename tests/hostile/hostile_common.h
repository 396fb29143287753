/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the hostile test peers (tests/hostile/).
 * They speak the link protocol through src/core/proto.h and the OS layer.
 */
#ifndef XVL_HOSTILE_COMMON_H
#define XVL_HOSTILE_COMMON_H

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "os.h"
#include "proto.h"

static const char *h_prog = "hostile";

static void h_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void h_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", h_prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void h_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void h_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: FAIL: ", h_prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static int h_send(int sock, const struct xvl_msg *m, const int *fds, unsigned nfds)
{
	uint8_t buf[XVL_MSG_MAX_SIZE];
	int n = xvl_msg_encode(m, buf, sizeof(buf));
	if (n < 0)
		return n;
	return xvl_os_send(sock, buf, (size_t)n, fds, nfds);
}

/* One message within timeout_ms: 1, 0 on timeout, -ENOTCONN on close, or a decode error.
 * Received descriptors are returned in fds (when not NULL) or closed. */
static int h_recv(int sock, struct xvl_msg *m, int timeout_ms, int *fds, unsigned *nfds)
{
	uint8_t buf[XVL_MSG_MAX_SIZE];
	int lfds[XVL_OS_MAX_FDS];
	unsigned n_fds = 0;
	struct pollfd p = {.fd = sock, .events = POLLIN};
	int pr = poll(&p, 1, timeout_ms);
	if (pr == 0)
		return 0;
	if (pr < 0)
		return -errno;
	long n = xvl_os_recv(sock, buf, sizeof(buf), lfds, XVL_OS_MAX_FDS, &n_fds);
	if (n == 0)
		return -ENOTCONN;
	if (n < 0)
		return (int)n;
	for (unsigned i = 0; i < n_fds; i++) {
		if (fds)
			fds[i] = lfds[i];
		else
			close(lfds[i]);
	}
	if (nfds)
		*nfds = n_fds;
	int rc = xvl_msg_decode(buf, (size_t)n, m);
	return rc < 0 ? rc : 1;
}

#endif
