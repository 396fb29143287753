/* SPDX-License-Identifier: MIT */
/*
 * vhost-user backend side (QEMU docs/interop/vhost-user.rst) for the
 * vhost-user-blk export, and its event loop.
 *
 * Why our own code and not DPDK's librte_vhost (Debian libdpdk-dev 22.11):
 *  - librte_vhost needs rte_eal_init first.  Measured here with --no-huge
 *    --no-pci -m 64: 159 ms to start, 23 MB resident (157 MB mapped), three
 *    extra threads, 26 shared libraries, and a multi-process socket under
 *    /var/run/dpdk that each instance must keep apart with --file-prefix.
 *    An export per disk, started by libvirt or a partitioner in
 *    milliseconds inside a confined driver compartment (seccomp, no /var/run
 *    access), pays all of that for nothing.
 *  - It runs its own vhost-events thread and callbacks, so the one-thread,
 *    one-queue-at-a-time rule of the xvloop client (xvl.h) would need locks
 *    and hand-offs between its threads and ours.
 *  - It gives vrings, not virtio-blk: the request parsing, the copy into the
 *    window, inflight bookkeeping and GET_CONFIG would still be ours
 *    (DPDK's own vhost_blk example carries all of it itself).
 *  - The message layout is already in the project (src/vhost, the frontend
 *    the server uses to drive qemu-storage-daemon and DPDK), and the subset
 *    a blk backend needs is small: about 20 requests, each checked here.
 *
 * Virtio features offered: VERSION_1, INDIRECT_DESC, EVENT_IDX and the blk
 * ones the device has (blk_queue.c).
 * Protocol features offered: MQ, REPLY_ACK, CONFIG, INFLIGHT_SHMFD.  No
 * dirty logging, no postcopy, no backend channel, no CONFIGURE_MEM_SLOTS
 * (the frontend sends the whole table, up to 8 regions).
 *
 * Every message is checked before use: its size against the request's
 * payload, the descriptors it carries, ring sizes, ring addresses inside the
 * memory table, the inflight area against its file.  A message that breaks
 * framing drops the connection; a bad value fails that request (REPLY_ACK
 * reports it) and leaves the rings as they were.  The frontend can only hurt
 * its own disk: the xvloop device is reached only through the client API.
 *
 * One thread, one frontend at a time (the next one waits in the listen
 * backlog).  When the frontend goes, every request taken from its rings is
 * completed first (the guest RAM stays mapped until then), then the next
 * frontend is accepted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "export_int.h"

enum {
	VU_GET_FEATURES = 1, VU_SET_FEATURES = 2, VU_SET_OWNER = 3, VU_RESET_OWNER = 4,
	VU_SET_MEM_TABLE = 5, VU_SET_VRING_NUM = 8, VU_SET_VRING_ADDR = 9,
	VU_SET_VRING_BASE = 10, VU_GET_VRING_BASE = 11, VU_SET_VRING_KICK = 12,
	VU_SET_VRING_CALL = 13, VU_SET_VRING_ERR = 14, VU_GET_PROTOCOL_FEATURES = 15,
	VU_SET_PROTOCOL_FEATURES = 16, VU_GET_QUEUE_NUM = 17, VU_SET_VRING_ENABLE = 18,
	VU_GET_CONFIG = 24, VU_SET_CONFIG = 25, VU_GET_INFLIGHT_FD = 31, VU_SET_INFLIGHT_FD = 32,
};

#define VU_HDR_SIZE        12u
#define VU_VERSION         0x1u
#define VU_FLAG_REPLY      0x4u
#define VU_FLAG_NEED_REPLY 0x8u
#define VU_MAX_PAYLOAD     512u
#define VU_MAX_CONFIG      256u
#define VU_VRING_IDX_MASK  0xffull
#define VU_VRING_NOFD      (1ull << 8)
#define VU_PF_MQ           0
#define VU_PF_REPLY_ACK    3
#define VU_PF_CONFIG       9
#define VU_PF_INFLIGHT     12
#define VU_PF_OFFERED ((1ull << VU_PF_MQ) | (1ull << VU_PF_REPLY_ACK) | (1ull << VU_PF_CONFIG) | \
		       (1ull << VU_PF_INFLIGHT))

struct vu_msg {
	uint32_t req, flags, size;
	union {
		uint64_t u64;
		struct { uint32_t index, num; } state;
		struct { uint32_t index, flags; uint64_t desc, used, avail, log; } addr;
		struct { uint32_t nregions, padding; struct exp_region_msg r[EXP_MAX_REGIONS]; } mem;
		struct { uint32_t offset, size, flags; uint8_t data[VU_MAX_CONFIG]; } cfg;
		struct { uint64_t mmap_size, mmap_offset; uint16_t num_queues, queue_size; } infl;
		uint8_t raw[VU_MAX_PAYLOAD];
	} p;
	int fds[XVL_OS_MAX_FDS];
	unsigned nfds;
};

static void logf_(const struct exp_export *ex, const char *fmt, const char *a)
{
	if (!ex->o->quiet) {
		fputs("xvl export: ", stderr);
		fprintf(stderr, fmt, a);
		fputc('\n', stderr);
	}
}

static void close_fds(struct vu_msg *m, unsigned from)
{
	for (unsigned i = from; i < m->nfds; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	m->nfds = 0;
}

/* ------------------------------------------------------------ replies */

static int send_reply(int sock, const struct vu_msg *m, const void *payload, uint32_t size,
		      const int *fds, unsigned nfds)
{
	uint8_t buf[VU_HDR_SIZE + VU_MAX_PAYLOAD];
	uint32_t h[3] = { m->req, VU_VERSION | VU_FLAG_REPLY, size };
	memcpy(buf, h, VU_HDR_SIZE);
	memcpy(buf + VU_HDR_SIZE, payload, size);
	return xvl_os_send(sock, buf, VU_HDR_SIZE + size, fds, nfds);
}

static int reply_u64(int sock, const struct vu_msg *m, uint64_t v)
{
	return send_reply(sock, m, &v, sizeof(v), NULL, 0);
}

/* ------------------------------------------------------------ vrings */

static struct exp_vring *ring_of(struct exp_export *ex, uint64_t index, struct xvl_errbuf *eb)
{
	if (index >= ex->nq) {
		xvl_err(eb, -EINVAL, "queue %llu does not exist (the export offers %u)",
			(unsigned long long)index, ex->nq);
		return NULL;
	}
	return &ex->vr[index];
}

static void replace_fd(int *slot, int fd)
{
	if (*slot >= 0)
		close(*slot);
	*slot = fd;
}

struct loop {
	int ep, listen, sock;
};

static int ep_add(int ep, int fd, uint64_t tag)
{
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = tag };
	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

#define TAG_LISTEN 1ull
#define TAG_SOCK   2ull
#define TAG_KICK   (1ull << 32)
#define TAG_CPL    (2ull << 32)

static int stop_all(struct exp_export *ex, struct xvl_errbuf *eb)
{
	for (unsigned q = 0; q < ex->nq; q++) {
		int rc = exp_vring_stop(&ex->vr[q], eb);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Handle a request on the rings.  <0 with eb: the request failed. */
static int ring_msg(struct exp_export *ex, struct loop *l, struct vu_msg *m, struct xvl_errbuf *eb)
{
	struct exp_vring *vr;
	switch (m->req) {
	case VU_SET_VRING_NUM:
		if (!(vr = ring_of(ex, m->p.state.index, eb)))
			return -EINVAL;
		if (vr->started)
			return xvl_err(eb, -EBUSY, "SET_VRING_NUM on running queue %u", vr->q);
		if (m->p.state.num == 0 || m->p.state.num > XVL_VQ_MAX_SIZE ||
		    (m->p.state.num & (m->p.state.num - 1)))
			return xvl_err(eb, -EINVAL, "queue size %u (a power of two up to %u)",
				       m->p.state.num, XVL_VQ_MAX_SIZE);
		vr->num = (uint16_t)m->p.state.num;
		return 0;
	case VU_SET_VRING_ADDR:
		if (!(vr = ring_of(ex, m->p.addr.index, eb)))
			return -EINVAL;
		if (vr->started)
			return xvl_err(eb, -EBUSY, "SET_VRING_ADDR on running queue %u", vr->q);
		vr->desc_uva = m->p.addr.desc;
		vr->avail_uva = m->p.addr.avail;
		vr->used_uva = m->p.addr.used;
		vr->addr_set = true;
		return 0;
	case VU_SET_VRING_BASE:
		if (!(vr = ring_of(ex, m->p.state.index, eb)))
			return -EINVAL;
		if (vr->started)
			return xvl_err(eb, -EBUSY, "SET_VRING_BASE on running queue %u", vr->q);
		if (m->p.state.num > 0xffff)
			return xvl_err(eb, -EINVAL, "ring base %u", m->p.state.num);
		vr->base = (uint16_t)m->p.state.num;
		return 0;
	case VU_SET_VRING_ENABLE:
		if (!(vr = ring_of(ex, m->p.state.index, eb)))
			return -EINVAL;
		vr->enabled = m->p.state.num != 0;
		exp_vring_kick(vr);
		return 0;
	case VU_SET_VRING_KICK:
	case VU_SET_VRING_CALL:
	case VU_SET_VRING_ERR: {
		bool nofd = m->p.u64 & VU_VRING_NOFD;
		if (!(vr = ring_of(ex, m->p.u64 & VU_VRING_IDX_MASK, eb)))
			return -EINVAL;
		if (nofd != (m->nfds == 0))
			return xvl_err(eb, -EINVAL, "vring fd flag and descriptors disagree");
		int fd = nofd ? -1 : m->fds[0];
		close_fds(m, 1); /* any descriptors beyond the one */
		if (m->req == VU_SET_VRING_CALL) {
			replace_fd(&vr->call_fd, fd);
			return 0;
		}
		if (m->req == VU_SET_VRING_ERR) {
			replace_fd(&vr->err_fd, fd);
			return 0;
		}
		if (fd < 0)
			return xvl_err(eb, -EOPNOTSUPP, "queue %u: polling without a kick fd is not supported",
				       vr->q);
		if (vr->kick_fd >= 0)
			epoll_ctl(l->ep, EPOLL_CTL_DEL, vr->kick_fd, NULL);
		replace_fd(&vr->kick_fd, fd);
		int rc = ep_add(l->ep, fd, TAG_KICK | vr->q);
		if (rc < 0)
			return xvl_err(eb, rc, "epoll: %s", strerror(-rc));
		if (!(ex->acked & (1ull << 30)))
			vr->enabled = true; /* rings start enabled without PROTOCOL_FEATURES */
		return exp_vring_start(vr, eb);
	}
	default:
		return xvl_err(eb, -EOPNOTSUPP, "unsupported request");
	}
}

/* ------------------------------------------------------------ memory and inflight */

static int set_mem_table(struct exp_export *ex, struct vu_msg *m, struct xvl_errbuf *eb)
{
	uint32_t n = m->p.mem.nregions;
	if (n == 0 || n > EXP_MAX_REGIONS || m->size != 8 + n * sizeof(struct exp_region_msg))
		return xvl_err(eb, -EINVAL, "memory table of %u regions in %u bytes", n, m->size);
	if (m->nfds != n)
		return xvl_err(eb, -EINVAL, "memory table of %u regions with %u descriptors", n, m->nfds);
	bool was[EXP_MAX_QUEUES];
	for (unsigned q = 0; q < ex->nq; q++)
		was[q] = ex->vr[q].started;
	int rc = stop_all(ex, eb);
	if (rc < 0)
		return rc;
	exp_mem_unmap(&ex->mem);
	m->nfds = 0;
	rc = exp_mem_map(&ex->mem, m->p.mem.r, m->fds, n, eb);
	if (rc < 0)
		return rc;
	for (unsigned q = 0; q < ex->nq; q++)
		if (was[q] && (rc = exp_vring_start(&ex->vr[q], eb)) < 0)
			return rc;
	return 0;
}

static void drop_inflight(struct exp_export *ex)
{
	if (ex->infl_map)
		munmap(ex->infl_map, ex->infl_size);
	ex->infl_map = NULL;
	ex->infl_size = 0;
	ex->infl_nq = ex->infl_qsize = 0;
}

static int check_infl_shape(const struct exp_export *ex, uint16_t nq, uint16_t qs,
			    struct xvl_errbuf *eb)
{
	if (nq == 0 || nq > ex->nq || qs == 0 || qs > XVL_VQ_MAX_SIZE || (qs & (qs - 1)))
		return xvl_err(eb, -EINVAL, "inflight area for %u queues of %u (the export has %u queues, sizes up to %u)",
			       nq, qs, ex->nq, XVL_VQ_MAX_SIZE);
	return 0;
}

static int get_inflight(struct exp_export *ex, int sock, struct vu_msg *m, struct xvl_errbuf *eb)
{
	uint16_t nq = m->p.infl.num_queues, qs = m->p.infl.queue_size;
	int rc = check_infl_shape(ex, nq, qs, eb);
	if (rc < 0)
		return rc;
	uint64_t size = nq * exp_infl_queue_bytes(qs);
	int fd = memfd_create("xvl-export-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return xvl_err(eb, -errno, "memfd_create: %s", strerror(errno));
	void *p = MAP_FAILED;
	if (ftruncate(fd, (off_t)size) == 0)
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		rc = xvl_err(eb, -errno, "inflight area of %llu bytes: %s", (unsigned long long)size,
			     strerror(errno));
		close(fd);
		return rc;
	}
	fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
	drop_inflight(ex);
	ex->infl_map = p;
	ex->infl_size = size;
	ex->infl_nq = nq;
	ex->infl_qsize = qs;
	struct vu_msg r = *m;
	r.p.infl.mmap_size = size;
	r.p.infl.mmap_offset = 0;
	rc = send_reply(sock, m, &r.p.infl, 24, &fd, 1);
	close(fd);
	if (rc == 0 && !ex->o->quiet)
		fprintf(stderr, "xvl export: new inflight area for %u queue(s) of %u\n", nq, qs);
	return rc;
}

static int set_inflight(struct exp_export *ex, struct vu_msg *m, struct xvl_errbuf *eb)
{
	uint16_t nq = m->p.infl.num_queues, qs = m->p.infl.queue_size;
	uint64_t size = m->p.infl.mmap_size, off = m->p.infl.mmap_offset;
	struct stat st;
	if (m->nfds != 1)
		return xvl_err(eb, -EINVAL, "SET_INFLIGHT_FD without a descriptor");
	int rc = check_infl_shape(ex, nq, qs, eb);
	if (rc < 0)
		return rc;
	if (size != nq * exp_infl_queue_bytes(qs) || off % 4096 || off + size < off)
		return xvl_err(eb, -EINVAL, "inflight area of %llu bytes at %llu for %u queues of %u",
			       (unsigned long long)size, (unsigned long long)off, nq, qs);
	if (fstat(m->fds[0], &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < off + size)
		return xvl_err(eb, -EINVAL, "the inflight area is beyond its file");
	if (!exp_fd_sealed(m->fds[0]))
		return xvl_err(eb, -EINVAL, "the inflight area's file can shrink (hand back the memfd GET_INFLIGHT_FD gave)");
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fds[0], (off_t)off);
	if (p == MAP_FAILED)
		return xvl_err(eb, -errno, "inflight area: mmap: %s", strerror(errno));
	drop_inflight(ex);
	ex->infl_map = p;
	ex->infl_size = size;
	ex->infl_nq = nq;
	ex->infl_qsize = qs;
	if (!ex->o->quiet)
		fprintf(stderr, "xvl export: inflight area from the frontend, %u queue(s) of %u\n", nq, qs);
	return 0;
}

/* ------------------------------------------------------------ one message */

static const uint32_t payload_size[] = {
	[VU_SET_FEATURES] = 8, [VU_SET_VRING_NUM] = 8, [VU_SET_VRING_ADDR] = 40,
	[VU_SET_VRING_BASE] = 8, [VU_GET_VRING_BASE] = 8, [VU_SET_VRING_KICK] = 8,
	[VU_SET_VRING_CALL] = 8, [VU_SET_VRING_ERR] = 8, [VU_SET_PROTOCOL_FEATURES] = 8,
	[VU_SET_VRING_ENABLE] = 8, [VU_GET_INFLIGHT_FD] = 24, [VU_SET_INFLIGHT_FD] = 24,
};

/* Exactly the payload the request has (variable ones are checked by their handler). */
static int check_size(const struct vu_msg *m, struct xvl_errbuf *eb)
{
	if (m->req < sizeof(payload_size) / sizeof(payload_size[0]) && payload_size[m->req] &&
	    m->size != payload_size[m->req])
		return xvl_err(eb, -EINVAL, "request %u with %u payload bytes (expected %u)", m->req,
			       m->size, payload_size[m->req]);
	if (m->req == VU_GET_CONFIG && m->size < 12)
		return xvl_err(eb, -EINVAL, "GET_CONFIG with %u payload bytes", m->size);
	return 0;
}

static int get_config(struct exp_export *ex, int sock, struct vu_msg *m, struct xvl_errbuf *eb)
{
	uint32_t off = m->p.cfg.offset, len = m->p.cfg.size;
	if (len > VU_MAX_CONFIG || off > VU_MAX_CONFIG || off + len > VU_MAX_CONFIG ||
	    m->size != 12 + len)
		return xvl_err(eb, -EINVAL, "GET_CONFIG of %u bytes at %u", len, off);
	uint8_t full[VU_MAX_CONFIG] = {0};
	exp_blk_config(ex, full);
	struct vu_msg r = *m;
	memcpy(r.p.cfg.data, full + off, len);
	return send_reply(sock, m, &r.p.cfg, 12 + len, NULL, 0);
}

/*
 * One request.  Returns 1 when a reply was sent (or none is due), 0 when a
 * REPLY_ACK may follow with the result in *res, <0 to drop the connection.
 */
static int dispatch(struct exp_export *ex, struct loop *l, struct vu_msg *m, int *res,
		    struct xvl_errbuf *eb)
{
	int sock = l->sock;
	*res = check_size(m, eb);
	if (*res < 0)
		return 0;
	switch (m->req) {
	case VU_GET_FEATURES:
		return reply_u64(sock, m, ex->features) ?: 1;
	case VU_SET_FEATURES:
		if (m->p.u64 & ~ex->features)
			*res = xvl_err(eb, -EINVAL, "features %#llx beyond those offered %#llx",
				       (unsigned long long)m->p.u64, (unsigned long long)ex->features);
		else
			ex->acked = m->p.u64;
		return 0;
	case VU_GET_PROTOCOL_FEATURES:
		return reply_u64(sock, m, VU_PF_OFFERED) ?: 1;
	case VU_SET_PROTOCOL_FEATURES:
		if (m->p.u64 & ~VU_PF_OFFERED)
			*res = xvl_err(eb, -EINVAL, "protocol features %#llx not offered",
				       (unsigned long long)m->p.u64);
		else
			ex->protocol = m->p.u64;
		return 0;
	case VU_GET_QUEUE_NUM:
		return reply_u64(sock, m, ex->nq) ?: 1;
	case VU_SET_OWNER:
	case VU_RESET_OWNER:
		return 0;
	case VU_SET_MEM_TABLE:
		*res = set_mem_table(ex, m, eb);
		return *res == -ETIMEDOUT ? *res : 0;
	case VU_GET_CONFIG:
		*res = get_config(ex, sock, m, eb);
		return *res < 0 ? *res : 1;
	case VU_GET_INFLIGHT_FD:
		*res = get_inflight(ex, sock, m, eb);
		return *res < 0 ? *res : 1;
	case VU_SET_INFLIGHT_FD:
		*res = set_inflight(ex, m, eb);
		return 0;
	case VU_GET_VRING_BASE: {
		struct exp_vring *vr = ring_of(ex, m->p.state.index, eb);
		if (!vr)
			return -EINVAL;
		int rc = exp_vring_stop(vr, eb);
		if (rc < 0)
			return rc;
		if (vr->kick_fd >= 0)
			epoll_ctl(l->ep, EPOLL_CTL_DEL, vr->kick_fd, NULL);
		replace_fd(&vr->kick_fd, -1);
		struct vu_msg r = *m;
		r.p.state.num = vr->base;
		return send_reply(sock, m, &r.p.state, 8, NULL, 0) ?: 1;
	}
	case VU_SET_VRING_NUM:
	case VU_SET_VRING_ADDR:
	case VU_SET_VRING_BASE:
	case VU_SET_VRING_ENABLE:
	case VU_SET_VRING_KICK:
	case VU_SET_VRING_CALL:
	case VU_SET_VRING_ERR:
		*res = ring_msg(ex, l, m, eb);
		return 0;
	default:
		*res = xvl_err(eb, -EOPNOTSUPP, "request %u is not supported", m->req);
		return 0;
	}
}

static int read_msg(int sock, struct vu_msg *m, struct xvl_errbuf *eb)
{
	uint32_t h[3];
	unsigned extra = 0;
	m->nfds = 0;
	int rc = xvl_os_recv_exact(sock, h, sizeof(h), m->fds, XVL_OS_MAX_FDS, &m->nfds);
	if (rc == -ECONNRESET)
		return xvl_err(eb, rc, "disconnected");
	if (rc < 0)
		return rc == -EAGAIN ? rc : xvl_err(eb, rc, "frontend connection: %s", strerror(-rc));
	m->req = h[0];
	m->flags = h[1];
	m->size = h[2];
	if ((m->flags & 0x3) != VU_VERSION || (m->flags & VU_FLAG_REPLY) || m->size > VU_MAX_PAYLOAD) {
		close_fds(m, 0);
		return xvl_err(eb, -EPROTO, "frontend sent a bad header (request %u, flags %#x, size %u)",
			       m->req, m->flags, m->size);
	}
	memset(&m->p, 0, sizeof(m->p));
	if (m->size) {
		rc = xvl_os_recv_exact(sock, m->p.raw, m->size, m->fds + m->nfds,
				       XVL_OS_MAX_FDS - m->nfds, &extra);
		m->nfds += extra;
		if (rc < 0) {
			close_fds(m, 0);
			return xvl_err(eb, rc, "frontend connection: %s", strerror(-rc));
		}
	}
	return 0;
}

static bool has_own_reply(uint32_t req)
{
	return req == VU_GET_FEATURES || req == VU_GET_PROTOCOL_FEATURES || req == VU_GET_QUEUE_NUM ||
	       req == VU_GET_VRING_BASE || req == VU_GET_CONFIG || req == VU_GET_INFLIGHT_FD;
}

static const char *req_name(uint32_t r, char buf[24])
{
	switch (r) {
	case VU_SET_MEM_TABLE: return "SET_MEM_TABLE";
	case VU_SET_VRING_KICK: return "SET_VRING_KICK";
	case VU_SET_VRING_ADDR: return "SET_VRING_ADDR";
	case VU_SET_VRING_NUM: return "SET_VRING_NUM";
	case VU_SET_INFLIGHT_FD: return "SET_INFLIGHT_FD";
	case VU_GET_INFLIGHT_FD: return "GET_INFLIGHT_FD";
	case VU_GET_CONFIG: return "GET_CONFIG";
	case VU_SET_FEATURES: return "SET_FEATURES";
	default: snprintf(buf, 24, "request %u", r); return buf;
	}
}

/* Serve one message.  <0: drop the connection (-ETIMEDOUT: the device is stuck, give up). */
static int serve_msg(struct exp_export *ex, struct loop *l, struct xvl_errbuf *eb)
{
	struct vu_msg m;
	int rc = read_msg(l->sock, &m, eb);
	if (rc == -EAGAIN)
		return 0;
	if (rc < 0)
		return rc;
	int res = 0;
	rc = dispatch(ex, l, &m, &res, eb);
	close_fds(&m, 0);
	if (rc < 0)
		return rc;
	if (res < 0) {
		char what[300], name[24];
		snprintf(what, sizeof(what), "%s failed: %s", req_name(m.req, name), eb->msg);
		logf_(ex, "%s", what);
	}
	if (rc == 0 && (m.flags & VU_FLAG_NEED_REPLY) && (ex->protocol & (1ull << VU_PF_REPLY_ACK)) &&
	    !has_own_reply(m.req))
		return reply_u64(l->sock, &m, res < 0 ? 1 : 0);
	return 0;
}

/* ------------------------------------------------------------ connections */

static void reset_rings(struct exp_export *ex, struct loop *l)
{
	for (unsigned q = 0; q < ex->nq; q++) {
		struct exp_vring *vr = &ex->vr[q];
		exp_vring_abandon(vr);
		if (vr->kick_fd >= 0)
			epoll_ctl(l->ep, EPOLL_CTL_DEL, vr->kick_fd, NULL);
		replace_fd(&vr->kick_fd, -1);
		replace_fd(&vr->call_fd, -1);
		replace_fd(&vr->err_fd, -1);
		vr->num = 0;
		vr->addr_set = false;
		vr->enabled = false;
		vr->base = 0;
	}
	exp_mem_unmap(&ex->mem);
	drop_inflight(ex);
	ex->acked = ex->protocol = 0;
}

static int disconnect(struct exp_export *ex, struct loop *l, struct xvl_errbuf *eb)
{
	int rc = stop_all(ex, eb);
	if (!ex->o->quiet)
		fprintf(stderr, "xvl export: frontend done: %llu requests, %llu split into parts\n",
			(unsigned long long)ex->n_reqs, (unsigned long long)ex->n_split);
	ex->n_reqs = ex->n_split = 0;
	epoll_ctl(l->ep, EPOLL_CTL_DEL, l->sock, NULL);
	close(l->sock);
	l->sock = -1;
	reset_rings(ex, l);
	ep_add(l->ep, l->listen, TAG_LISTEN);
	return rc;
}

static int listen_on(const char *path, unsigned mode, struct xvl_errbuf *eb)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path))
		return xvl_err(eb, -ENAMETOOLONG, "socket path too long: %s", path);
	strcpy(a.sun_path, path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return xvl_err(eb, -errno, "socket: %s", strerror(errno));
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		/* a stale socket is replaced, a live one refused */
		int t = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = t >= 0 && connect(t, (struct sockaddr *)&a, sizeof(a)) == 0;
		if (t >= 0)
			close(t);
		if (live) {
			close(s);
			return xvl_err(eb, -EADDRINUSE, "%s is in use by a running export", path);
		}
		unlink(path);
	}
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 4) < 0) {
		int e = errno;
		close(s);
		return xvl_err(eb, -e, "listen on %s: %s", path, strerror(e));
	}
	if (mode && chmod(path, mode) < 0) {
		int e = errno;
		close(s);
		return xvl_err(eb, -e, "chmod %s: %s", path, strerror(e));
	}
	return s;
}

/*
 * Take the next frontend.  The listening socket leaves the epoll set while
 * one is connected, so a second frontend waits in the backlog (its first
 * messages unanswered) until the first one is gone and cleaned up.
 */
static void accept_one(struct exp_export *ex, struct loop *l)
{
	int s = accept4(l->listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (s < 0)
		return;
	if (ep_add(l->ep, s, TAG_SOCK) < 0) {
		close(s);
		return;
	}
	l->sock = s;
	epoll_ctl(l->ep, EPOLL_CTL_DEL, l->listen, NULL);
	logf_(ex, "%s", "frontend connected");
}

static void on_ring_event(struct exp_export *ex, uint64_t tag)
{
	unsigned q = (unsigned)(tag & 0xffff);
	if (q >= ex->nq)
		return;
	struct exp_vring *vr = &ex->vr[q];
	if ((tag & ~0xffffffffull) == TAG_KICK) {
		if (vr->kick_fd >= 0)
			xvl_os_eventfd_drain(vr->kick_fd);
		exp_vring_kick(vr);
	} else {
		exp_vring_complete(vr);
	}
}

/*
 * The client notices a lost server (and reconnects, with reconnect_ms) only
 * inside its calls; its link socket is not ours to poll.  While requests are
 * out, look every LINK_TICK_MS: xvl_blk_wait(…, 0) checks the link, then
 * completions (failed with -ENODEV, or resubmitted after recovery) are
 * collected as usual.
 */
#define LINK_TICK_MS 100

static bool any_submitted(const struct exp_export *ex)
{
	for (unsigned q = 0; q < ex->nq; q++)
		if (ex->vr[q].submitted)
			return true;
	return false;
}

static void link_tick(struct exp_export *ex)
{
	for (unsigned q = 0; q < ex->nq; q++) {
		struct exp_vring *vr = &ex->vr[q];
		if (!vr->submitted)
			continue;
		xvl_blk_wait(ex->b, (uint16_t)q, 0);
		exp_vring_complete(vr);
	}
}

static int loop_run(struct exp_export *ex, struct loop *l, volatile sig_atomic_t *stop,
		    struct xvl_errbuf *eb)
{
	struct epoll_event ev[32];
	uint64_t last_tick = xvl_os_now_ns();
	while (!*stop) {
		bool busy = any_submitted(ex);
		int n = epoll_wait(l->ep, ev, 32, busy ? LINK_TICK_MS : 500);
		uint64_t now = xvl_os_now_ns();
		if (busy && now - last_tick >= LINK_TICK_MS * 1000000ull) {
			last_tick = now;
			link_tick(ex);
		}
		if (n < 0 && errno != EINTR)
			return xvl_err(eb, -errno, "epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			uint64_t tag = ev[i].data.u64;
			if (tag == TAG_LISTEN) {
				accept_one(ex, l);
			} else if (tag == TAG_SOCK) {
				if (l->sock < 0)
					continue;
				int rc = serve_msg(ex, l, eb);
				if (rc < 0) {
					logf_(ex, "frontend gone (%s)", eb->msg);
					int drc = disconnect(ex, l, eb);
					if (drc < 0 || rc == -ETIMEDOUT)
						return drc < 0 ? drc : rc;
					if (ex->o->once)
						return 0;
					n = 0; /* ring tags of this batch are stale */
				}
			} else {
				on_ring_event(ex, tag);
			}
		}
		for (unsigned q = 0; q < ex->nq; q++)
			exp_vring_notify(&ex->vr[q]);
	}
	return 0;
}

int xvl_export_vhost_blk(struct xvl_client *c, struct xvl_blk *b,
			 const struct xvl_export_opts *o, volatile sig_atomic_t *stop,
			 struct xvl_errbuf *eb)
{
	struct exp_export *ex = calloc(1, sizeof(*ex));
	if (!ex)
		return xvl_err(eb, -ENOMEM, "out of memory");
	ex->c = c;
	ex->b = b;
	ex->o = o;
	xvl_blk_get_info(b, &ex->info);
	ex->nq = ex->info.num_queues > EXP_MAX_QUEUES ? EXP_MAX_QUEUES : ex->info.num_queues;
	ex->features = exp_blk_features(ex);
	for (unsigned q = 0; q < EXP_MAX_QUEUES; q++)
		ex->vr[q] = (struct exp_vring){ .ex = ex, .q = (uint16_t)q, .kick_fd = -1,
						 .call_fd = -1, .err_fd = -1 };
	struct loop l = { .ep = epoll_create1(EPOLL_CLOEXEC), .listen = -1, .sock = -1 };
	int rc = l.ep < 0 ? xvl_err(eb, -errno, "epoll_create1: %s", strerror(errno)) : 0;
	if (rc == 0 && (l.listen = listen_on(o->socket, o->socket_mode, eb)) < 0)
		rc = l.listen;
	if (rc == 0)
		rc = ep_add(l.ep, l.listen, TAG_LISTEN);
	for (unsigned q = 0; rc == 0 && q < ex->nq; q++) {
		int fd = xvl_blk_queue_fd(b, (uint16_t)q);
		if (fd < 0)
			rc = xvl_err(eb, -EINVAL, "queue %u of the device has no completion fd", q);
		else
			rc = ep_add(l.ep, fd, TAG_CPL | q);
	}
	if (rc == 0) {
		if (!o->quiet)
			fprintf(stderr, "xvl export: serving %s (%llu bytes, %u queues) on %s\n",
				ex->info.name, (unsigned long long)ex->info.capacity, ex->nq, o->socket);
		rc = loop_run(ex, &l, stop, eb);
	}
	if (l.sock >= 0) {
		struct xvl_errbuf e2;
		int drc = disconnect(ex, &l, &e2);
		if (rc == 0 && drc < 0) {
			*eb = e2;
			rc = drc;
		}
	}
	if (l.listen >= 0) {
		close(l.listen);
		unlink(o->socket);
	}
	if (l.ep >= 0)
		close(l.ep);
	reset_rings(ex, &l);
	free(ex);
	return rc;
}
