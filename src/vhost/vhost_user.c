/* SPDX-License-Identifier: MIT */
/*
 * vhost-user frontend: drives an unmodified vhost-user device backend over
 * a SOCK_STREAM Unix socket (protocol as in QEMU's docs/interop/vhost-user.rst).
 *
 * The backend is handed one memory region only: the window, at guest
 * physical address 0.  Every reply is checked before its payload is used;
 * any transport or framing error drops the connection (the stream can no
 * longer be trusted to be in step), received descriptors are never leaked.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vhost.h"

/* ------------------------------------------------------------ wire format */

enum vu_req {
	VU_GET_FEATURES = 1,
	VU_SET_FEATURES = 2,
	VU_SET_OWNER = 3,
	VU_SET_MEM_TABLE = 5,
	VU_SET_VRING_NUM = 8,
	VU_SET_VRING_ADDR = 9,
	VU_SET_VRING_BASE = 10,
	VU_GET_VRING_BASE = 11,
	VU_SET_VRING_KICK = 12,
	VU_SET_VRING_CALL = 13,
	VU_GET_PROTOCOL_FEATURES = 15,
	VU_SET_PROTOCOL_FEATURES = 16,
	VU_GET_QUEUE_NUM = 17,
	VU_SET_VRING_ENABLE = 18,
	VU_NET_SET_MTU = 20,
	VU_GET_CONFIG = 24,
	VU_GET_INFLIGHT_FD = 31,
	VU_SET_INFLIGHT_FD = 32,
};

#define VU_HDR_SIZE         12u
#define VU_VERSION          0x1u
#define VU_VERSION_MASK     0x3u
#define VU_FLAG_REPLY       0x4u
#define VU_FLAG_NEED_REPLY  0x8u
#define VU_MAX_CONFIG       256u
#define VU_MAX_PAYLOAD      512u
#define VU_VRING_NOFD       (1ull << 8)
#define VU_TIMEOUT_S        10
#define VU_CONNECT_MS       2000u
#define VU_CONNECT_STEP_MS  20u
#define VU_MAX_INFLIGHT     (256ull << 20)

#define VU_PF_KNOWN ((1ull << XVL_VHOST_PF_MQ) | (1ull << XVL_VHOST_PF_REPLY_ACK) | \
		     (1ull << XVL_VHOST_PF_NET_MTU) | (1ull << XVL_VHOST_PF_CONFIG) | \
		     (1ull << XVL_VHOST_PF_INFLIGHT_SHMFD))

struct vu_state {
	uint32_t index;
	uint32_t num;
};

struct vu_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc;
	uint64_t used;
	uint64_t avail;
	uint64_t log;
};

struct vu_mem_one {
	uint32_t nregions;
	uint32_t padding;
	uint64_t gpa;
	uint64_t size;
	uint64_t uaddr;
	uint64_t mmap_offset;
};

struct vu_cfg {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t data[VU_MAX_CONFIG];
};

struct vu_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
	/* natural padding to 24 bytes is part of the wire format */
};

_Static_assert(sizeof(struct vu_state) == 8, "vring state");
_Static_assert(sizeof(struct vu_addr) == 40, "vring addr");
_Static_assert(sizeof(struct vu_mem_one) == 40, "memory table with one region");
_Static_assert(sizeof(struct vu_inflight) == 24, "inflight description");
_Static_assert(sizeof(struct vu_cfg) <= VU_MAX_PAYLOAD, "config");

/* One request and what its reply must look like. */
struct vu_io {
	uint32_t req;
	const void *in;
	uint32_t in_size;
	const int *fds;
	unsigned nfds;
	void *out;         /* reply payload; NULL: no reply (REPLY_ACK when negotiated) */
	uint32_t out_size;
	int *fd_out;       /* the reply must carry exactly one descriptor */
};

static const char *vu_name(uint32_t req)
{
	switch (req) {
	case VU_GET_FEATURES: return "GET_FEATURES";
	case VU_SET_FEATURES: return "SET_FEATURES";
	case VU_SET_OWNER: return "SET_OWNER";
	case VU_SET_MEM_TABLE: return "SET_MEM_TABLE";
	case VU_SET_VRING_NUM: return "SET_VRING_NUM";
	case VU_SET_VRING_ADDR: return "SET_VRING_ADDR";
	case VU_SET_VRING_BASE: return "SET_VRING_BASE";
	case VU_GET_VRING_BASE: return "GET_VRING_BASE";
	case VU_SET_VRING_KICK: return "SET_VRING_KICK";
	case VU_SET_VRING_CALL: return "SET_VRING_CALL";
	case VU_GET_PROTOCOL_FEATURES: return "GET_PROTOCOL_FEATURES";
	case VU_SET_PROTOCOL_FEATURES: return "SET_PROTOCOL_FEATURES";
	case VU_GET_QUEUE_NUM: return "GET_QUEUE_NUM";
	case VU_SET_VRING_ENABLE: return "SET_VRING_ENABLE";
	case VU_NET_SET_MTU: return "NET_SET_MTU";
	case VU_GET_CONFIG: return "GET_CONFIG";
	case VU_GET_INFLIGHT_FD: return "GET_INFLIGHT_FD";
	case VU_SET_INFLIGHT_FD: return "SET_INFLIGHT_FD";
	default: return "request";
	}
}

/* ------------------------------------------------------------ errors */

/* "vhost-user backend PATH: STEP: detail" */
static int vu_fail(const struct xvl_vhost *v, const char *step, struct xvl_errbuf *eb, int rc,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int vu_fail(const struct xvl_vhost *v, const char *step, struct xvl_errbuf *eb, int rc,
		   const char *fmt, ...)
{
	char detail[192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return xvl_err(eb, rc, "vhost-user backend %s: %s: %s", v->path, step, detail);
}

static const char *vu_transport_text(int rc)
{
	switch (rc) {
	case -ECONNRESET:
	case -EPIPE:
		return "connection closed";
	case -EAGAIN:
		return "no reply (timed out)";
	default:
		return strerror(-rc);
	}
}

/* Drop the connection: after a framing or transport error the stream is out of step. */
static void vu_drop(struct xvl_vhost *v)
{
	if (v->sock >= 0)
		close(v->sock);
	v->sock = -1;
}

static int vu_transport_fail(struct xvl_vhost *v, uint32_t req, int rc, struct xvl_errbuf *eb)
{
	vu_drop(v);
	if (rc == -ECONNRESET || rc == -EPIPE)
		rc = -ECONNRESET;
	return vu_fail(v, vu_name(req), eb, rc, "%s", vu_transport_text(rc));
}

static void vu_close_fds(const int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static bool vu_has_pf(const struct xvl_vhost *v, unsigned bit)
{
	return (v->protocol_features >> bit) & 1;
}

static bool vu_has_protocol_features(const struct xvl_vhost *v)
{
	return (v->features >> XVL_VHOST_F_PROTOCOL_FEATURES) & 1;
}

/* ------------------------------------------------------------ reply checks */

int xvl_vhost_check_reply_hdr(const void *hdr12, uint32_t request, uint32_t expect_size,
			      struct xvl_errbuf *eb)
{
	uint32_t h[3];

	memcpy(h, hdr12, sizeof(h));
	if (h[0] != request)
		return xvl_err(eb, -EPROTO, "%s: reply carries request id %u", vu_name(request), h[0]);
	if ((h[1] & VU_VERSION_MASK) != VU_VERSION)
		return xvl_err(eb, -EPROTO, "%s: reply has protocol version %u, expected %u",
			       vu_name(request), h[1] & VU_VERSION_MASK, VU_VERSION);
	if (!(h[1] & VU_FLAG_REPLY))
		return xvl_err(eb, -EPROTO, "%s: reply flag not set (flags 0x%x)", vu_name(request),
			       h[1]);
	if (expect_size > VU_MAX_PAYLOAD || h[2] != expect_size)
		return xvl_err(eb, -EMSGSIZE, "%s: reply payload of %u bytes, expected %u",
			       vu_name(request), h[2], expect_size);
	return (int)h[2];
}

/* Hand the reply's descriptors to io->fd_out, or close them all and complain. */
static int vu_take_fds(struct xvl_vhost *v, const struct vu_io *io, int *fds, unsigned nfds,
		       struct xvl_errbuf *eb)
{
	unsigned want = io->fd_out ? 1 : 0;

	if (nfds != want) {
		vu_close_fds(fds, nfds);
		return vu_fail(v, vu_name(io->req), eb, -EPROTO,
			       "reply carries %u file descriptors, expected %u", nfds, want);
	}
	if (io->fd_out)
		*io->fd_out = fds[0];
	return 0;
}

static int vu_recv(struct xvl_vhost *v, const struct vu_io *io, struct xvl_errbuf *eb)
{
	uint8_t hdr[VU_HDR_SIZE];
	int fds[2 * XVL_OS_MAX_FDS];
	unsigned nfds = 0, more = 0;
	struct xvl_errbuf tmp;
	int rc;

	rc = xvl_os_recv_exact(v->sock, hdr, sizeof(hdr), fds, XVL_OS_MAX_FDS, &nfds);
	if (rc < 0)
		return vu_transport_fail(v, io->req, rc, eb);
	rc = xvl_vhost_check_reply_hdr(hdr, io->req, io->out_size, &tmp);
	if (rc < 0) {
		vu_close_fds(fds, nfds);
		vu_drop(v);
		return xvl_err(eb, rc, "vhost-user backend %s: %s", v->path, tmp.msg);
	}
	if (io->out_size) {
		rc = xvl_os_recv_exact(v->sock, io->out, io->out_size, fds + nfds, XVL_OS_MAX_FDS,
				       &more);
		nfds += more;
		if (rc < 0) {
			vu_close_fds(fds, nfds);
			return vu_transport_fail(v, io->req, rc, eb);
		}
	}
	return vu_take_fds(v, io, fds, nfds, eb);
}

/* ------------------------------------------------------------ requests */

static int vu_send(struct xvl_vhost *v, const struct vu_io *io, uint32_t flags,
		   struct xvl_errbuf *eb)
{
	uint8_t buf[VU_HDR_SIZE + VU_MAX_PAYLOAD];
	uint32_t hdr[3] = { io->req, VU_VERSION | flags, io->in_size };
	int rc;

	if (io->in_size > VU_MAX_PAYLOAD)
		return vu_fail(v, vu_name(io->req), eb, -EMSGSIZE, "request too large");
	memcpy(buf, hdr, sizeof(hdr));
	if (io->in_size)
		memcpy(buf + VU_HDR_SIZE, io->in, io->in_size);
	rc = xvl_os_send(v->sock, buf, VU_HDR_SIZE + io->in_size, io->fds, io->nfds);
	if (rc < 0)
		return vu_transport_fail(v, io->req, rc, eb);
	return 0;
}

/* Send io; read its reply, or the REPLY_ACK status for requests without one. */
static int vu_call(struct xvl_vhost *v, const struct vu_io *io, struct xvl_errbuf *eb)
{
	bool ack = !io->out && vu_has_pf(v, XVL_VHOST_PF_REPLY_ACK);
	uint64_t status = 0;
	struct vu_io ack_io = { .req = io->req, .out = &status, .out_size = sizeof(status) };
	int rc;

	if (v->sock < 0)
		return vu_fail(v, vu_name(io->req), eb, -ENOTCONN, "not connected");
	rc = vu_send(v, io, ack ? VU_FLAG_NEED_REPLY : 0, eb);
	if (rc < 0)
		return rc;
	if (io->out)
		return vu_recv(v, io, eb);
	if (!ack)
		return 0;
	rc = vu_recv(v, &ack_io, eb);
	if (rc < 0)
		return rc;
	if (status != 0)
		return vu_fail(v, vu_name(io->req), eb, -EIO, "backend refused (status %llu)",
			       (unsigned long long)status);
	return 0;
}

static int vu_get_u64(struct xvl_vhost *v, uint32_t req, uint64_t *val, struct xvl_errbuf *eb)
{
	struct vu_io io = { .req = req, .out = val, .out_size = sizeof(*val) };
	return vu_call(v, &io, eb);
}

static int vu_set_u64(struct xvl_vhost *v, uint32_t req, uint64_t val, struct xvl_errbuf *eb)
{
	struct vu_io io = { .req = req, .in = &val, .in_size = sizeof(val) };
	return vu_call(v, &io, eb);
}

static int vu_set_state(struct xvl_vhost *v, uint32_t req, uint32_t index, uint32_t num,
			struct xvl_errbuf *eb)
{
	struct vu_state s = { .index = index, .num = num };
	struct vu_io io = { .req = req, .in = &s, .in_size = sizeof(s) };
	return vu_call(v, &io, eb);
}

/* SET_VRING_KICK / SET_VRING_CALL: queue index, fd attached, or the no-fd flag. */
static int vu_set_vring_fd(struct xvl_vhost *v, uint32_t req, uint16_t q, int fd,
			   struct xvl_errbuf *eb)
{
	uint64_t val = q | (fd < 0 ? VU_VRING_NOFD : 0);
	struct vu_io io = { .req = req, .in = &val, .in_size = sizeof(val),
			    .fds = &fd, .nfds = fd < 0 ? 0 : 1 };
	return vu_call(v, &io, eb);
}

/* ------------------------------------------------------------ handshake */

/*
 * connect() that cannot hang: the socket is non-blocking while connecting.
 * A Unix listener whose backlog is full answers EAGAIN at once; that is
 * retried every VU_CONNECT_STEP_MS until VU_CONNECT_MS have passed.
 */
static int vu_connect(struct xvl_vhost *v, struct xvl_errbuf *eb)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timespec step = {0, VU_CONNECT_STEP_MS * 1000000L};
	int fd, e = 0;

	if (strlen(v->path) >= sizeof(sa.sun_path))
		return vu_fail(v, "connect", eb, -ENAMETOOLONG, "path too long");
	memcpy(sa.sun_path, v->path, strlen(v->path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return vu_fail(v, "connect", eb, -errno, "socket: %s", strerror(errno));
	for (unsigned i = 0; i <= VU_CONNECT_MS / VU_CONNECT_STEP_MS; i++) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			e = 0;
			break;
		}
		e = errno;
		if (e != EAGAIN && e != EINTR)
			break;
		if (e == EAGAIN)
			nanosleep(&step, NULL);
	}
	if (e == 0 && fcntl(fd, F_SETFL, 0) < 0)
		e = errno;
	if (e != 0) {
		close(fd);
		if (e == EAGAIN)
			return vu_fail(v, "connect", eb, -EAGAIN, "connect to '%s': the backend "
				       "accepts no connection (backlog full for %u ms)", v->path,
				       VU_CONNECT_MS);
		return vu_fail(v, "connect", eb, -e, "connect to '%s' failed: %s%s", v->path,
			       strerror(e), e == ENOENT || e == ECONNREFUSED ?
			       " (is the peer running?)" : e == EPROTOTYPE ?
			       " (the peer uses another socket type)" : "");
	}
	return fd;
}

int xvl_vhost_listen(const char *path, struct xvl_errbuf *eb)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return xvl_err(eb, -ENAMETOOLONG, "vhost-user socket %s: path too long", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return xvl_err(eb, -EEXIST, "vhost-user socket %s: a file that is not a socket "
				       "is in the way", path);
		unlink(path); /* a stale socket of an earlier run */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return xvl_err(eb, -errno, "vhost-user socket %s: socket: %s", path, strerror(errno));
	/* Whoever connects gets the window as its memory: owner only, before anyone can. */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, 4) < 0) {
		rc = -errno;
		close(fd);
		return xvl_err(eb, rc, "vhost-user socket %s: bind/listen: %s", path, strerror(-rc));
	}
	return fd;
}

/* Wait up to accept_ms for the backend to connect to listen_fd; the connection, blocking. */
static int vu_accept(struct xvl_vhost *v, struct xvl_errbuf *eb)
{
	struct pollfd p = {.fd = v->listen_fd, .events = POLLIN};
	int n = poll(&p, 1, (int)v->accept_ms);

	if (n < 0)
		return vu_fail(v, "accept", eb, -errno, "poll: %s", strerror(errno));
	if (n == 0)
		return vu_fail(v, "accept", eb, -EAGAIN, "the backend did not connect within %u ms",
			       v->accept_ms);
	int fd = accept4(v->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) /* EAGAIN: it went again meanwhile */
		return vu_fail(v, "accept", eb, errno == EAGAIN ? -EAGAIN : -errno, "accept: %s",
			       strerror(errno));
	return fd;
}

static int vu_open(struct xvl_vhost *v, struct xvl_errbuf *eb)
{
	struct timeval tv = { .tv_sec = VU_TIMEOUT_S };
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	int fd = v->listen_fd >= 0 ? vu_accept(v, eb) : vu_connect(v, eb);

	if (fd < 0)
		return fd;
	/* A backend that stops answering must not hang the caller forever. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		int rc = -errno;
		close(fd);
		return vu_fail(v, "connect", eb, rc, "socket timeouts: %s", strerror(-rc));
	}
	/* Who the backend is (0: in a pid namespace we cannot see). */
	v->peer_pid = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 && clen == sizeof(cred))
		v->peer_pid = cred.pid;
	v->sock = fd;
	return 0;
}

static int vu_negotiate_protocol(struct xvl_vhost *v, struct xvl_errbuf *eb)
{
	uint64_t offered = 0, want;
	int rc = vu_get_u64(v, VU_GET_PROTOCOL_FEATURES, &offered, eb);

	if (rc < 0)
		return rc;
	want = offered & VU_PF_KNOWN;
	/* REPLY_ACK applies from the next request on, not to this one. */
	rc = vu_set_u64(v, VU_SET_PROTOCOL_FEATURES, want, eb);
	if (rc < 0)
		return rc;
	v->protocol_features = want;
	return 0;
}

static int vu_get_queue_num(struct xvl_vhost *v, struct xvl_errbuf *eb)
{
	uint64_t n = 0;
	int rc;

	v->num_queues = 1;
	if (!vu_has_pf(v, XVL_VHOST_PF_MQ))
		return 0;
	rc = vu_get_u64(v, VU_GET_QUEUE_NUM, &n, eb);
	if (rc < 0)
		return rc;
	if (n == 0)
		return vu_fail(v, "GET_QUEUE_NUM", eb, -EPROTO, "backend offers 0 queues");
	v->num_queues = n > XVL_VHOST_MAX_QUEUES ? XVL_VHOST_MAX_QUEUES : (uint16_t)n;
	return 0;
}

static int vu_handshake(struct xvl_vhost *v, struct xvl_errbuf *eb)
{
	struct vu_io owner = { .req = VU_SET_OWNER };
	int rc;

	v->features = 0;
	v->protocol_features = 0;
	v->num_queues = 0;
	v->mem.base = NULL;
	v->mem.size = 0;
	rc = vu_open(v, eb);
	if (rc < 0)
		return rc;
	rc = vu_get_u64(v, VU_GET_FEATURES, &v->features, eb);
	if (rc < 0)
		return rc;
	if (!((v->features >> XVL_F_VERSION_1) & 1))
		return vu_fail(v, "GET_FEATURES", eb, -EPROTONOSUPPORT,
			       "features 0x%llx lack VIRTIO_F_VERSION_1",
			       (unsigned long long)v->features);
	rc = vu_call(v, &owner, eb);
	if (rc < 0)
		return rc;
	if (vu_has_protocol_features(v)) {
		rc = vu_negotiate_protocol(v, eb);
		if (rc < 0)
			return rc;
	}
	return vu_get_queue_num(v, eb);
}

static int vu_start(struct xvl_vhost *v, const char *path, int listen_fd, unsigned wait_ms,
		    struct xvl_errbuf *eb)
{
	int rc;

	memset(v, 0, sizeof(*v));
	v->sock = -1;
	v->inflight_fd = -1;
	v->listen_fd = listen_fd;
	v->accept_ms = wait_ms;
	if (strlen(path) >= sizeof(v->path))
		return xvl_err(eb, -ENAMETOOLONG, "vhost-user backend %s: path too long", path);
	memcpy(v->path, path, strlen(path) + 1);
	rc = vu_handshake(v, eb);
	if (rc < 0)
		xvl_vhost_close(v);
	return rc;
}

int xvl_vhost_connect(struct xvl_vhost *v, const char *path, struct xvl_errbuf *eb)
{
	return vu_start(v, path, -1, 0, eb);
}

int xvl_vhost_accept(struct xvl_vhost *v, const char *path, int listen_fd, unsigned wait_ms,
		     struct xvl_errbuf *eb)
{
	if (listen_fd < 0)
		return xvl_err(eb, -EBADF, "vhost-user backend %s: no listening socket", path);
	return vu_start(v, path, listen_fd, wait_ms, eb);
}

int xvl_vhost_reconnect(struct xvl_vhost *v, struct xvl_errbuf *eb)
{
	int rc;

	vu_drop(v);
	rc = vu_handshake(v, eb);
	if (rc < 0)
		vu_drop(v);
	return rc;
}

static void vu_inflight_release(struct xvl_vhost *v)
{
	if (v->inflight)
		munmap(v->inflight, v->inflight_size);
	if (v->inflight_fd >= 0)
		close(v->inflight_fd);
	v->inflight = NULL;
	v->inflight_fd = -1;
	v->inflight_size = 0;
	v->inflight_offset = 0;
	v->inflight_queues = 0;
	v->inflight_qsize = 0;
}

void xvl_vhost_close(struct xvl_vhost *v)
{
	vu_drop(v);
	vu_inflight_release(v);
	v->mem.base = NULL;
	v->mem.size = 0;
}

/* ------------------------------------------------------------ features, config */

int xvl_vhost_set_features(struct xvl_vhost *v, uint64_t features, struct xvl_errbuf *eb)
{
	if (features & ~v->features)
		return vu_fail(v, "SET_FEATURES", eb, -EINVAL,
			       "features 0x%llx not offered (offered 0x%llx)",
			       (unsigned long long)(features & ~v->features),
			       (unsigned long long)v->features);
	if (!((features >> XVL_F_VERSION_1) & 1))
		return vu_fail(v, "SET_FEATURES", eb, -EINVAL, "VIRTIO_F_VERSION_1 not accepted");
	if (vu_has_protocol_features(v))
		features |= 1ull << XVL_VHOST_F_PROTOCOL_FEATURES;
	return vu_set_u64(v, VU_SET_FEATURES, features, eb);
}

/*
 * Always asks for the config space from offset 0 and copies the wanted
 * range out: backends such as qemu-storage-daemon 7.2 ignore the offset
 * (QEMU itself only ever reads from 0).
 */
int xvl_vhost_get_config(struct xvl_vhost *v, uint32_t off, void *buf, uint32_t len,
			 struct xvl_errbuf *eb)
{
	struct vu_cfg req = { .offset = 0, .size = off + len }, rep;
	uint32_t sz = (uint32_t)offsetof(struct vu_cfg, data) + off + len;
	struct vu_io io = { .req = VU_GET_CONFIG, .in = &req, .in_size = sz,
			    .out = &rep, .out_size = sz };
	int rc;

	if (!vu_has_pf(v, XVL_VHOST_PF_CONFIG))
		return vu_fail(v, "GET_CONFIG", eb, -ENOTSUP, "backend does not offer CONFIG");
	if (len == 0 || len > VU_MAX_CONFIG || off > VU_MAX_CONFIG - len)
		return vu_fail(v, "GET_CONFIG", eb, -EINVAL, "bad range %u+%u", off, len);
	rc = vu_call(v, &io, eb);
	if (rc < 0)
		return rc;
	if (rep.offset != 0 || rep.size != off + len)
		return vu_fail(v, "GET_CONFIG", eb, -EPROTO, "reply for %u+%u, asked 0+%u",
			       rep.offset, rep.size, off + len);
	memcpy(buf, rep.data + off, len);
	return 0;
}

/* ------------------------------------------------------------ memory */

int xvl_vhost_set_mem_table(struct xvl_vhost *v, int win_fd, uint64_t win_size, void *local_base,
			    struct xvl_errbuf *eb)
{
	struct vu_mem_one m = {
		.nregions = 1,
		.gpa = 0,
		.size = win_size,
		.uaddr = (uint64_t)(uintptr_t)local_base,
		.mmap_offset = 0,
	};
	struct vu_io io = { .req = VU_SET_MEM_TABLE, .in = &m, .in_size = sizeof(m),
			    .fds = &win_fd, .nfds = 1 };
	int rc;

	if (win_fd < 0 || win_size == 0 || !local_base)
		return vu_fail(v, "SET_MEM_TABLE", eb, -EINVAL, "no window");
	rc = vu_call(v, &io, eb);
	if (rc < 0)
		return rc;
	v->mem.base = local_base;
	v->mem.size = win_size;
	return 0;
}

static int vu_inflight_set(struct xvl_vhost *v, struct xvl_errbuf *eb)
{
	struct vu_inflight in = {
		.mmap_size = v->inflight_size,
		.mmap_offset = v->inflight_offset,
		.num_queues = v->inflight_queues,
		.queue_size = v->inflight_qsize,
	};
	struct vu_io io = { .req = VU_SET_INFLIGHT_FD, .in = &in, .in_size = sizeof(in),
			    .fds = &v->inflight_fd, .nfds = 1 };
	return vu_call(v, &io, eb);
}

/* Check the area the backend described and map it. Takes ownership of fd. */
static int vu_inflight_map(struct xvl_vhost *v, int fd, const struct vu_inflight *r,
			   struct xvl_errbuf *eb)
{
	long pg = sysconf(_SC_PAGESIZE);
	struct stat st;
	void *p;

	if (r->mmap_size == 0 || r->mmap_size > VU_MAX_INFLIGHT || r->mmap_offset % (uint64_t)pg ||
	    r->mmap_offset > VU_MAX_INFLIGHT || fstat(fd, &st) < 0 ||
	    (uint64_t)st.st_size < r->mmap_offset + r->mmap_size) {
		close(fd);
		return vu_fail(v, "GET_INFLIGHT_FD", eb, -EPROTO, "bad area: %llu bytes at %llu",
			       (unsigned long long)r->mmap_size,
			       (unsigned long long)r->mmap_offset);
	}
	p = mmap(NULL, r->mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)r->mmap_offset);
	if (p == MAP_FAILED) {
		int rc = -errno;
		close(fd);
		return vu_fail(v, "GET_INFLIGHT_FD", eb, rc, "mmap: %s", strerror(-rc));
	}
	v->inflight_fd = fd;
	v->inflight = p;
	v->inflight_size = r->mmap_size;
	v->inflight_offset = r->mmap_offset;
	return 0;
}

static int vu_inflight_get(struct xvl_vhost *v, uint16_t nq, uint16_t qsize,
			   struct xvl_errbuf *eb)
{
	struct vu_inflight req = { .num_queues = nq, .queue_size = qsize }, rep;
	int fd = -1;
	struct vu_io io = { .req = VU_GET_INFLIGHT_FD, .in = &req, .in_size = sizeof(req),
			    .out = &rep, .out_size = sizeof(rep), .fd_out = &fd };
	int rc = vu_call(v, &io, eb);

	if (rc < 0)
		return rc;
	rc = vu_inflight_map(v, fd, &rep, eb);
	if (rc < 0)
		return rc;
	v->inflight_queues = nq;
	v->inflight_qsize = qsize;
	return 0;
}

int xvl_vhost_setup_inflight(struct xvl_vhost *v, uint16_t num_queues, uint16_t queue_size,
			     bool reuse, struct xvl_errbuf *eb)
{
	int rc;

	if (!vu_has_pf(v, XVL_VHOST_PF_INFLIGHT_SHMFD))
		return 0;
	if (num_queues == 0 || num_queues > v->num_queues || queue_size == 0 ||
	    queue_size > XVL_VQ_MAX_SIZE)
		return vu_fail(v, "GET_INFLIGHT_FD", eb, -EINVAL, "%u queues of %u", num_queues,
			       queue_size);
	if (reuse && v->inflight_fd >= 0) {
		if (num_queues != v->inflight_queues || queue_size != v->inflight_qsize)
			return vu_fail(v, "SET_INFLIGHT_FD", eb, -EINVAL,
				       "area made for %u queues of %u, not %u of %u",
				       v->inflight_queues, v->inflight_qsize, num_queues,
				       queue_size);
		return vu_inflight_set(v, eb);
	}
	vu_inflight_release(v);
	rc = vu_inflight_get(v, num_queues, queue_size, eb);
	if (rc < 0)
		return rc;
	return vu_inflight_set(v, eb);
}

/* ------------------------------------------------------------ vrings */

static int vu_check_queue(struct xvl_vhost *v, const char *step, uint16_t q,
			  struct xvl_errbuf *eb)
{
	if (q >= v->num_queues)
		return vu_fail(v, step, eb, -EINVAL, "queue %u, backend has %u", q, v->num_queues);
	return 0;
}

static int vu_set_vring_addr(struct xvl_vhost *v, uint16_t q, const struct xvl_vq_layout *l,
			     struct xvl_errbuf *eb)
{
	uint64_t base = (uint64_t)(uintptr_t)v->mem.base;
	struct vu_addr a = {
		.index = q,
		.flags = 0,
		.desc = base + l->desc,
		.used = base + l->used,
		.avail = base + l->avail,
		.log = 0,
	};
	struct vu_io io = { .req = VU_SET_VRING_ADDR, .in = &a, .in_size = sizeof(a) };
	return vu_call(v, &io, eb);
}

int xvl_vhost_setup_vring(struct xvl_vhost *v, uint16_t q, const struct xvl_vq_layout *l,
			  uint16_t base, int kick_fd, int call_fd, bool enable,
			  struct xvl_errbuf *eb)
{
	int rc = vu_check_queue(v, "SET_VRING_NUM", q, eb);

	if (rc < 0)
		return rc;
	if (!v->mem.base)
		return vu_fail(v, "SET_VRING_ADDR", eb, -EINVAL, "no memory table set");
	if (xvl_vq_layout_check(&v->mem, l) < 0)
		return vu_fail(v, "SET_VRING_ADDR", eb, -EINVAL, "queue %u: bad ring layout", q);
	rc = vu_set_state(v, VU_SET_VRING_NUM, q, l->num, eb);
	if (rc >= 0)
		rc = vu_set_state(v, VU_SET_VRING_BASE, q, base, eb);
	if (rc >= 0)
		rc = vu_set_vring_addr(v, q, l, eb);
	/* Call before kick: the backend may start serving as soon as it has the kick fd. */
	if (rc >= 0)
		rc = vu_set_vring_fd(v, VU_SET_VRING_CALL, q, call_fd, eb);
	if (rc >= 0)
		rc = vu_set_vring_fd(v, VU_SET_VRING_KICK, q, kick_fd, eb);
	/* Without PROTOCOL_FEATURES a ring is enabled by its kick fd: enable cannot be refused. */
	if (rc >= 0 && vu_has_protocol_features(v))
		rc = vu_set_state(v, VU_SET_VRING_ENABLE, q, enable, eb);
	return rc;
}

int xvl_vhost_start_vring(struct xvl_vhost *v, uint16_t q, const struct xvl_vq_layout *l,
			  uint16_t base, int kick_fd, int call_fd, struct xvl_errbuf *eb)
{
	return xvl_vhost_setup_vring(v, q, l, base, kick_fd, call_fd, true, eb);
}

/*
 * No NEED_REPLY flag (REPLY_ACK lets the frontend choose per message), so no
 * reply ever comes: the caller's loop, which reads this socket only to see
 * the backend go, stays in step.  MSG_DONTWAIT: a backend that stopped
 * reading its socket gets -EAGAIN, never a blocked caller.
 */
int xvl_vhost_vring_enable_nowait(struct xvl_vhost *v, uint16_t q, bool on,
				  struct xvl_errbuf *eb)
{
	struct vu_state st = { .index = q, .num = on };
	uint32_t hdr[3] = { VU_SET_VRING_ENABLE, VU_VERSION, sizeof(st) };
	uint8_t buf[VU_HDR_SIZE + sizeof(st)];
	int rc = vu_check_queue(v, "SET_VRING_ENABLE", q, eb);

	if (rc < 0)
		return rc;
	if (v->sock < 0)
		return vu_fail(v, "SET_VRING_ENABLE", eb, -ENOTCONN, "not connected");
	if (!vu_has_protocol_features(v))
		return vu_fail(v, "SET_VRING_ENABLE", eb, -EOPNOTSUPP,
			       "the backend has no PROTOCOL_FEATURES: its rings cannot be disabled");
	memcpy(buf, hdr, sizeof(hdr));
	memcpy(buf + VU_HDR_SIZE, &st, sizeof(st));
	ssize_t n = send(v->sock, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n == (ssize_t)sizeof(buf))
		return 0;
	rc = n < 0 ? -errno : -EAGAIN; /* a short send leaves the stream out of step */
	vu_drop(v);
	return vu_fail(v, "SET_VRING_ENABLE", eb, rc, "%s", rc == -EAGAIN ?
		       "the backend does not read its socket" : strerror(-rc));
}

int xvl_vhost_net_set_mtu(struct xvl_vhost *v, uint16_t mtu, struct xvl_errbuf *eb)
{
	if (!vu_has_pf(v, XVL_VHOST_PF_NET_MTU))
		return 0;
	return vu_set_u64(v, VU_NET_SET_MTU, mtu, eb);
}


int xvl_vhost_stop_vring(struct xvl_vhost *v, uint16_t q, uint16_t *base, struct xvl_errbuf *eb)
{
	struct vu_state s = { .index = q }, rep;
	struct vu_io io = { .req = VU_GET_VRING_BASE, .in = &s, .in_size = sizeof(s),
			    .out = &rep, .out_size = sizeof(rep) };
	int rc = vu_check_queue(v, "GET_VRING_BASE", q, eb);

	if (rc >= 0 && vu_has_protocol_features(v))
		rc = vu_set_state(v, VU_SET_VRING_ENABLE, q, 0, eb);
	if (rc >= 0)
		rc = vu_call(v, &io, eb);
	if (rc < 0)
		return rc;
	if (rep.index != q || rep.num > UINT16_MAX)
		return vu_fail(v, "GET_VRING_BASE", eb, -EPROTO, "reply queue %u base %u for queue %u",
			       rep.index, rep.num, q);
	*base = (uint16_t)rep.num;
	return 0;
}
