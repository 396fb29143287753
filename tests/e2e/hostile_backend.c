/* SPDX-License-Identifier: MIT */
/*
 * Hostile vhost-user backends for tests/e2e/hostile_bridge.sh (built by it).
 *
 *   hostile_backend proxy LISTEN UPSTREAM
 *	Forwards each frontend connection on LISTEN to a new connection to the
 *	real backend at UPSTREAM, message by message with their fds.  It keeps
 *	the window it was given (SET_MEM_TABLE) mapped.  SIGUSR1: drop the
 *	current connections but live on, window still mapped -- a backend
 *	instance whose connection ended while the process survived.  SIGUSR2:
 *	search the window for the string $HB_MAGIC and say where it is (what a
 *	backend can read of the client's other devices).
 *
 *   hostile_backend noaccept LISTEN
 *	Listens and never accepts: connects queue until the backlog is full,
 *	then block (or fail with EAGAIN when non-blocking).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t drop, spy;
static void *win;
static size_t win_len;

static void on_usr1(int sig)
{
	(void)sig;
	drop = 1;
}

static void on_usr2(int sig)
{
	(void)sig;
	spy = 1;
}

/* SIGUSR2: what can this backend read of the window?  Looks for $HB_MAGIC. */
static void spy_window(void)
{
	const char *magic = getenv("HB_MAGIC");
	size_t n = magic ? strlen(magic) : 0;

	if (!win || !n) {
		fprintf(stderr, "hostile_backend: no window to look at\n");
		return;
	}
	for (size_t off = 0; off + n <= win_len; off++)
		if (memcmp((const char *)win + off, magic, n) == 0) {
			fprintf(stderr, "hostile_backend: found %s at offset %zu of the %zu-byte "
				"window\n", magic, off, win_len);
			return;
		}
	fprintf(stderr, "hostile_backend: %s not found in the %zu-byte window\n", magic, win_len);
}

static int sock_at(const char *path, int listening)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0)
		return -1;
	if (listening) {
		unlink(path);
		if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 0) < 0)
			return -1;
		return fd;
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

struct msg {
	uint32_t req, flags, size;
	uint8_t p[4096];
	int fds[8];
	unsigned nfds;
};

static int recv_msg(int fd, struct msg *m)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = {m, 12};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};

	m->nfds = 0;
	if (recvmsg(fd, &mh, MSG_WAITALL | MSG_CMSG_CLOEXEC) != 12 || m->size > sizeof(m->p))
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			m->nfds = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(m->fds, CMSG_DATA(c), m->nfds * sizeof(int));
		}
	if (m->size && recv(fd, m->p, m->size, MSG_WAITALL) != (ssize_t)m->size)
		return -1;
	return 0;
}

static int send_msg(int fd, const struct msg *m)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = {(void *)m, 12 + m->size};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (m->nfds) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * m->nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * m->nfds);
		memcpy(CMSG_DATA(c), m->fds, sizeof(int) * m->nfds);
	}
	return sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t)(12 + m->size) ? 0 : -1;
}

/* Keep the window mapped, as a backend serving it would. */
static void keep_window(const struct msg *m)
{
	struct stat st;
	uint64_t region = 0;

	if (m->req != 5 || m->nfds != 1 || win || fstat(m->fds[0], &st) < 0)
		return;
	win = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fds[0], 0);
	if (win == MAP_FAILED) {
		win = NULL;
		return;
	}
	win_len = (size_t)st.st_size;
	if (m->size >= 24)
		memcpy(&region, m->p + 16, 8); /* the one region's size */
	fprintf(stderr, "hostile_backend: holding the window (%lld bytes; memory table region "
		"of %llu bytes)\n", (long long)st.st_size, (unsigned long long)region);
}

static int forward(int from, int to, int from_front)
{
	struct msg m;
	int rc;

	if (recv_msg(from, &m) < 0)
		return -1;
	if (from_front)
		keep_window(&m);
	rc = send_msg(to, &m);
	for (unsigned i = 0; i < m.nfds; i++)
		close(m.fds[i]);
	return rc;
}

static int proxy(const char *listen_path, const char *upstream)
{
	int lfd = sock_at(listen_path, 1), front = -1, back = -1;

	if (lfd < 0) {
		perror("hostile_backend: listen");
		return 1;
	}
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		struct pollfd p[3] = {{lfd, POLLIN, 0}, {front, POLLIN, 0}, {back, POLLIN, 0}};
		int n = poll(p, 3, 100);
		if (spy) {
			spy = 0;
			spy_window();
		}
		if (drop) {
			drop = 0;
			fprintf(stderr, "hostile_backend: dropping the connection, living on\n");
			if (front >= 0)
				close(front);
			if (back >= 0)
				close(back);
			front = back = -1;
			continue;
		}
		if (n <= 0)
			continue;
		if (front < 0 && (p[0].revents & POLLIN)) {
			front = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			back = front >= 0 ? sock_at(upstream, 0) : -1;
			if (back < 0 && front >= 0) {
				close(front);
				front = -1;
			}
			continue;
		}
		bool end = false;
		if (front >= 0 && (p[1].revents & (POLLIN | POLLHUP)))
			end = forward(front, back, 1) < 0;
		if (!end && back >= 0 && (p[2].revents & (POLLIN | POLLHUP)))
			end = forward(back, front, 0) < 0;
		if (end) {
			close(front);
			close(back);
			front = back = -1;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "proxy"))
		return proxy(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "noaccept")) {
		if (sock_at(argv[2], 1) < 0)
			return 1;
		for (;;)
			pause();
	}
	fprintf(stderr, "usage: hostile_backend proxy LISTEN UPSTREAM | noaccept LISTEN\n");
	return 2;
}
