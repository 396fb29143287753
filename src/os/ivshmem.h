/* SPDX-License-Identifier: MIT */
/*
 * xvloop as the ivshmem server (QEMU docs/specs/ivshmem-spec.rst, "The
 * ivshmem Client-Server Protocol"), and the peer side of that protocol for
 * host processes.
 *
 * The server creates the window (a sealed memfd) and, for itself and for
 * every peer that connects, n_vec eventfds (the vectors that peer is rung
 * on).  A peer is QEMU's ivshmem-doorbell (the guest then sees the window
 * as BAR2 and rings vectors through BAR0) or a host process using
 * xvl_ivsh_peer_connect.  The server itself is peer XVL_IVSH_SELF_ID and
 * serves the window through its own eventfds: nothing of a guest's RAM is
 * ever shared, only the window.
 *
 * Wire format (server to peer only): each message a little-endian int64,
 * optionally with one descriptor: version 0; the peer's id; -1 with the
 * window's memfd; for each other peer, its id n_vec times with that peer's
 * vector eventfds; the peer's own id n_vec times with its own eventfds.
 * Later: an id with a descriptor (a peer connected), without (it left).
 */
#ifndef XVL_IVSHMEM_H
#define XVL_IVSHMEM_H

#include <stdint.h>

#include "doorbell.h"
#include "os.h"

#define XVL_IVSH_MAX_PEERS 8
#define XVL_IVSH_SELF_ID 0

struct xvl_ivsh_peer {
	int sock;                         /* -1: free slot */
	uint16_t id;
	int vec[XVL_MBOX_MAX_VECTORS];    /* eventfds the peer is rung on */
};

struct xvl_ivsh_server {
	int listen_fd;
	char path[108];
	struct xvl_os_window win;         /* the sealed memfd, mapped */
	unsigned n_vec;
	int own[XVL_MBOX_MAX_VECTORS];    /* eventfds this side is rung on */
	struct xvl_ivsh_peer peer[XVL_IVSH_MAX_PEERS];
	uint16_t next_id;
};

/* Listen on path with a new window of size bytes and n_vec (1..64) vectors per peer. */
int xvl_ivsh_server_create(struct xvl_ivsh_server *s, const char *path, uint64_t size,
			   unsigned n_vec, struct xvl_errbuf *eb);
/* Accept one peer (listen_fd readable) and introduce it.  Its slot index, or -errno. */
int xvl_ivsh_server_accept(struct xvl_ivsh_server *s, struct xvl_errbuf *eb);
/* A peer's socket became readable or hung up: peers never send, so it left. */
void xvl_ivsh_server_drop(struct xvl_ivsh_server *s, unsigned slot);
/*
 * Fill db (kind eventfd, with dup()ed descriptors) for this side talking to
 * the peer in slot: own vectors are the server's, peer vectors the slot's.
 */
int xvl_ivsh_server_doorbell(const struct xvl_ivsh_server *s, unsigned slot, struct xvl_doorbell *db);
void xvl_ivsh_server_close(struct xvl_ivsh_server *s);

/*
 * A host process as an ivshmem peer: connect to the server at path, map
 * the window and fill db with this peer's vectors (own) and the server
 * side's (peer, id XVL_IVSH_SELF_ID).  *sock stays open (the server sees
 * us leave when it closes); close it after the window.
 */
int xvl_ivsh_peer_connect(const char *path, struct xvl_os_window *win, struct xvl_doorbell *db,
			  int *sock, struct xvl_errbuf *eb);

#endif
