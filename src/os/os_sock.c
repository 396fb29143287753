/* SPDX-License-Identifier: MIT */
/* OS layer: Unix sockets for the link and for vhost-user, with descriptor passing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "os.h"

/* Most descriptors one message may carry (the kernel's SCM_MAX_FD). */
#define RECV_FDS_MAX 253
/* Longest wait for the rest of a message already begun on a non-blocking stream. */
#define STREAM_WAIT_MS 5000

static int fill_addr(struct sockaddr_un *sa, const char *path, struct xvl_errbuf *eb)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!path || !*path)
		return xvl_err(eb, -EINVAL, "empty socket path");
	size_t n = strlen(path);
	if (n >= sizeof(sa->sun_path))
		return xvl_err(eb, -ENAMETOOLONG,
			       "socket path '%s' is %zu bytes, the limit is %zu; use a shorter path",
			       path, n, sizeof(sa->sun_path) - 1);
	memcpy(sa->sun_path, path, n + 1);
	return 0;
}

int xvl_os_listen(const char *path, struct xvl_errbuf *eb)
{
	struct sockaddr_un sa;
	struct stat st;
	int rc = fill_addr(&sa, path, eb);
	if (rc < 0)
		return rc;

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return xvl_err(eb, -EEXIST,
				       "'%s' exists and is not a socket; refusing to remove it", path);
		/* A socket file: stale unless someone still accepts on it. */
		int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (probe >= 0) {
			int c = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
			int e = errno;
			close(probe);
			if (c == 0 || (e != ECONNREFUSED && e != ENOENT))
				return xvl_err(eb, -EADDRINUSE,
					       "'%s' is in use by a running server; stop it first", path);
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			int e = errno;
			return xvl_err(eb, -e, "removing stale socket '%s' failed: %s", path,
				       strerror(e));
		}
	}

	/*
	 * Bound and listening under a temporary name first, then renamed into
	 * place: a client that sees the path never meets a socket that is bound
	 * but not yet listening (ECONNREFUSED), however the scheduler interleaves.
	 */
	struct sockaddr_un tmp;
	char tpath[sizeof(sa.sun_path)];
	int n = snprintf(tpath, sizeof(tpath), "%s.%d~", path, (int)getpid());
	bool staged = n > 0 && (size_t)n < sizeof(tpath) && fill_addr(&tmp, tpath, NULL) == 0;
	if (staged)
		unlink(tpath);

	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return xvl_err(eb, -errno, "socket(AF_UNIX, SOCK_SEQPACKET) failed: %s",
			       strerror(errno));
	const struct sockaddr_un *at = staged ? &tmp : &sa;
	if (bind(fd, (const struct sockaddr *)at, sizeof(*at)) < 0) {
		int e = errno;
		close(fd);
		return xvl_err(eb, -e, "bind to '%s' failed: %s", path, strerror(e));
	}
	if (listen(fd, 16) < 0 || (staged && rename(tpath, path) < 0)) {
		int e = errno;
		close(fd);
		unlink(staged ? tpath : path);
		return xvl_err(eb, -e, "listen on '%s' failed: %s", path, strerror(e));
	}
	return fd;
}

static int connect_type(const char *path, int type, struct xvl_errbuf *eb)
{
	struct sockaddr_un sa;
	int rc = fill_addr(&sa, path, eb);
	if (rc < 0)
		return rc;
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return xvl_err(eb, -errno, "socket(AF_UNIX) failed: %s", strerror(errno));
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		if (errno != EINTR)
			break;
	}
	int e = errno;
	close(fd);
	return xvl_err(eb, -e, "connect to '%s' failed: %s%s", path, strerror(e),
		       e == ENOENT || e == ECONNREFUSED ? " (is the peer running?)" :
		       e == EPROTOTYPE ? " (the peer uses another socket type)" : "");
}

int xvl_os_connect(const char *path, struct xvl_errbuf *eb)
{
	return connect_type(path, SOCK_SEQPACKET, eb);
}

int xvl_os_connect_stream(const char *path, struct xvl_errbuf *eb)
{
	return connect_type(path, SOCK_STREAM, eb);
}

static int wait_for(int sock, short ev)
{
	struct pollfd p = { .fd = sock, .events = ev };
	for (;;) {
		int n = poll(&p, 1, STREAM_WAIT_MS);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

void xvl_os_put_rights(struct msghdr *mh, void *ctl, const int *fds, unsigned nfds)
{
	memset(ctl, 0, CMSG_SPACE(sizeof(int) * nfds));
	mh->msg_control = ctl;
	mh->msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
	struct cmsghdr *c = CMSG_FIRSTHDR(mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
}

int xvl_os_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * XVL_OS_MAX_FDS)];
		struct cmsghdr align;
	} u;
	size_t done = 0;
	bool first = true;

	if (nfds > XVL_OS_MAX_FDS || (nfds && !fds))
		return -EINVAL;
	/* One sendmsg for SEQPACKET; a stream may take several, fds ride with the first. */
	do {
		struct iovec iov = { .iov_base = (char *)buf + done, .iov_len = len - done };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (first && nfds)
			xvl_os_put_rights(&mh, u.b, fds, nfds);
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && !first) {
				int rc = wait_for(sock, POLLOUT);
				if (rc < 0)
					return rc;
				continue;
			}
			return -errno;
		}
		first = false;
		done += (size_t)n;
	} while (done < len);
	return 0;
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/*
 * Collect SCM_RIGHTS descriptors of mh into fds[*nfds..max_fds); ones that
 * do not fit are closed at once and counted in *extra.
 */
static void take_fds(struct msghdr *mh, int *fds, unsigned max_fds, unsigned *nfds,
		     unsigned *extra)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0))
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const unsigned char *d = CMSG_DATA(c);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, d + i * sizeof(int), sizeof(int));
			if (fds && *nfds < max_fds) {
				fds[(*nfds)++] = fd;
			} else {
				close(fd);
				++*extra;
			}
		}
	}
}

long xvl_os_recv(int sock, void *buf, size_t cap, int *fds, unsigned max_fds, unsigned *nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * RECV_FDS_MAX)];
		struct cmsghdr align;
	} u;
	unsigned got = 0, extra = 0;
	ssize_t n;
	struct msghdr mh;

	if (nfds)
		*nfds = 0;
	for (;;) {
		struct iovec iov = { .iov_base = buf, .iov_len = cap };
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = u.b;
		mh.msg_controllen = sizeof(u.b);
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		if (n >= 0 || errno != EINTR)
			break;
	}
	if (n < 0)
		return -errno;
	take_fds(&mh, fds, max_fds, &got, &extra);
	if (extra || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || n == 0) {
		/* Oversized message, too many descriptors, or close: keep nothing. */
		close_fds(fds, got);
		return n == 0 && !extra && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ? 0 : -EMSGSIZE;
	}
	if (nfds)
		*nfds = got;
	else
		close_fds(fds, got);
	return (long)n;
}

int xvl_os_recv_exact(int sock, void *buf, size_t len, int *fds, unsigned max_fds, unsigned *nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * RECV_FDS_MAX)];
		struct cmsghdr align;
	} u;
	unsigned got = 0, extra = 0;
	bool ctrunc = false;
	size_t done = 0;
	int rc = 0;

	if (nfds)
		*nfds = 0;
	while (done < len) {
		struct iovec iov = { .iov_base = (char *)buf + done, .iov_len = len - done };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = u.b, .msg_controllen = sizeof(u.b) };
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && done == 0 && got == 0) {
				rc = -EAGAIN; /* nothing consumed: the caller may retry */
				break;
			}
			if (errno == EAGAIN) {
				rc = wait_for(sock, POLLIN);
				if (rc < 0)
					break;
				continue;
			}
			rc = -errno;
			break;
		}
		take_fds(&mh, fds, max_fds, &got, &extra);
		if (mh.msg_flags & MSG_CTRUNC)
			ctrunc = true;
		if (n == 0) {
			rc = -ECONNRESET;
			break;
		}
		done += (size_t)n;
	}
	/* The whole message was read (the stream stays in step) but its descriptors were not all kept. */
	if (rc == 0 && (extra || ctrunc))
		rc = -EMSGSIZE;
	if (rc < 0) {
		close_fds(fds, got);
		return rc;
	}
	if (nfds)
		*nfds = got;
	else
		close_fds(fds, got);
	return 0;
}

int xvl_os_peer_uid(int sock, uint32_t *uid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	*uid = (uint32_t)cr.uid;
	return 0;
}
