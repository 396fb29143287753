/* SPDX-License-Identifier: MIT */
/*
 * The partitioner as QEMU's ivshmem server for a window with doorbells
 * (vectors = N): each VM on it is an ivshmem-doorbell peer.
 *
 * Unlike a general ivshmem server (src/os/ivshmem.c) there are exactly two
 * peers with fixed ids, XP_IVSH_DEVICE (0) for the device side and
 * XP_IVSH_DRIVER (1) for the driver, and their vector eventfds are made
 * once, when the window is, and held by the partitioner with the window.
 * A VM that is started (again) gets a socketpair, already filled with the
 * whole introduction (protocol version 0, its id, the window's memfd, the
 * other peer's vectors, its own vectors: QEMU's docs/specs/ivshmem-spec.rst),
 * as its descriptor 3 for `-chardev socket,fd=3`; the partitioner never
 * sends more (nothing changes later) but keeps its end open while that QEMU
 * lives: QEMU reads all but the first messages later, from its main loop, and
 * a hang-up would make it drop them.  So a restarted device VM rings
 * and is rung on the same eventfds as the one that died, and the driver's
 * QEMU needs no news of it: no peer-left or peer-joined messages, and the
 * driver module's default peer id (0) always names the device side.
 *
 * Invariant: for a window w with vectors, p->vec[w] holds its n_vec eventfd
 * pairs (dev: peer 0's, drv: peer 1's) from xp_ivsh_create() until the window
 * is released (xp_vectors_close).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "part_int.h"

#define IVSH_PROTOCOL_VERSION 0

static int send_i64(int sock, int64_t v, int fd)
{
	uint8_t b[8];
	for (unsigned i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)v >> (8 * i));
	return xvl_os_send(sock, b, sizeof(b), fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
}

void xp_ivsh_close(struct xp_inst *p, unsigned w)
{
	for (unsigned s = 0; s < 2; s++) {
		if (p->ivsh_sock[w][s] >= 0)
			close(p->ivsh_sock[w][s]);
		p->ivsh_sock[w][s] = -1;
	}
}

int xp_ivsh_create(struct xp_inst *p, unsigned w, struct xvl_errbuf *eb)
{
	return xp_vectors_make(p, w, p->cfg.wins[w].vectors, eb);
}

/* Vector v of peer s (XP_IVSH_DEVICE or XP_IVSH_DRIVER). */
static int peer_vector(const struct xp_inst *p, unsigned w, unsigned s, unsigned v)
{
	return s == XP_IVSH_DEVICE ? p->vec[w].dev[v] : p->vec[w].drv[v];
}

/* The introduction of peer `self` on sock (a few dozen 8-byte messages: the buffer holds them). */
static int introduce(const struct xp_inst *p, unsigned w, unsigned self, int sock)
{
	unsigned n = p->cfg.wins[w].vectors, other = 1 - self;
	int rc = send_i64(sock, IVSH_PROTOCOL_VERSION, -1);
	if (rc == 0)
		rc = send_i64(sock, self, -1);
	if (rc == 0)
		rc = send_i64(sock, -1, p->win_fd[w]);
	for (unsigned v = 0; rc == 0 && v < n; v++)
		rc = send_i64(sock, other, peer_vector(p, w, other, v));
	for (unsigned v = 0; rc == 0 && v < n; v++)
		rc = send_i64(sock, self, peer_vector(p, w, self, v));
	return rc;
}

int xp_ivsh_peer_fd(struct xp_inst *p, unsigned w, unsigned self, struct xvl_errbuf *eb)
{
	int sv[2];
	if (self > 1 || p->win_fd[w] < 0)
		return xvl_err(eb, -EBADF, "window %s: no window to introduce", p->cfg.wins[w].name);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return xvl_err(eb, -errno, "socketpair: %s", strerror(errno));
	int rc = introduce(p, w, self, sv[0]);
	if (rc < 0) {
		close(sv[0]);
		close(sv[1]);
		return xvl_err(eb, rc, "window %s: ivshmem introduction: %s", p->cfg.wins[w].name,
			       strerror(-rc));
	}
	/* QEMU's chardev drops what it has not read yet when it sees a hang-up: keep our end
	 * open while this peer's QEMU lives (until the slot is introduced again, or teardown) */
	if (p->ivsh_sock[w][self] >= 0)
		close(p->ivsh_sock[w][self]);
	p->ivsh_sock[w][self] = sv[0];
	return sv[1];
}
