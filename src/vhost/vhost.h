/* SPDX-License-Identifier: MIT */
/*
 * vhost-user frontend (QEMU docs/interop/vhost-user.rst), the side that
 * QEMU plays: it drives an unmodified vhost-user device backend such as
 * qemu-storage-daemon or DPDK's vhost_blk example.
 *
 * Used by the server (bridge: the client's window is the backend's only
 * memory) and by the client (direct mode).  The backend is handed exactly
 * one memory region, the window, with guest-physical address 0, so the
 * window offsets in descriptors are the backend's addresses unchanged.
 *
 * Every reply is checked: request id, reply flag, size against the
 * request's expected payload, and the sizes the backend reports.
 */
#ifndef XVL_VHOST_H
#define XVL_VHOST_H

#include <stdbool.h>
#include <stdint.h>

#include "os.h"
#include "virtq.h"

#define XVL_VHOST_MAX_QUEUES 16

/* Protocol feature bits the frontend knows. */
#define XVL_VHOST_PF_MQ             0
#define XVL_VHOST_PF_REPLY_ACK      3
#define XVL_VHOST_PF_NET_MTU        4
#define XVL_VHOST_PF_CONFIG         9
#define XVL_VHOST_PF_INFLIGHT_SHMFD 12
/* Feature bit meaning GET/SET_PROTOCOL_FEATURES are available. */
#define XVL_VHOST_F_PROTOCOL_FEATURES 30

struct xvl_vhost {
	int sock;
	char path[108];
	uint64_t features;          /* offered by the backend */
	uint64_t protocol_features; /* negotiated */
	uint16_t num_queues;        /* GET_QUEUE_NUM, 1 without MQ */
	int inflight_fd;            /* -1 when INFLIGHT_SHMFD is not in use */
	void *inflight;             /* mapping of inflight_fd */
	uint64_t inflight_size;
	uint64_t inflight_offset;   /* mmap_offset the backend gave with inflight_fd */
	uint16_t inflight_queues;   /* num_queues / queue_size the area was made for */
	uint16_t inflight_qsize;
	struct xvl_mem mem;         /* the one region (set_mem_table); base NULL before */
	int peer_pid;               /* SO_PEERCRED pid of the backend; 0 when not visible */
	int listen_fd;              /* xvl_vhost_accept: the socket the backend connects to */
	unsigned accept_ms;         /* xvl_vhost_accept: how long to wait for it */
};

/*
 * Connect to the backend at path and run the handshake up to (not
 * including) memory setup: GET_FEATURES (VERSION_1 required), SET_OWNER,
 * GET/SET_PROTOCOL_FEATURES (REPLY_ACK, CONFIG, MQ, INFLIGHT_SHMFD as
 * offered), GET_QUEUE_NUM.  Errors name the backend and the step.
 * Blocks (it is meant for a thread of its own, or a client): connect()
 * gives up after 2 s of a full backlog, each reply after 10 s.
 */
int xvl_vhost_connect(struct xvl_vhost *v, const char *path, struct xvl_errbuf *eb);

/*
 * Listening mode (the backend is the socket's client: OVS-DPDK's
 * dpdkvhostuserclient ports, DPDK vhost with client=1).  xvl_vhost_listen
 * binds and listens on path (a stale socket file there is replaced; any
 * other file is refused; mode 0600 before it listens: whoever connects gets
 * the window) and returns the listening fd (non-blocking, CLOEXEC).  xvl_vhost_accept is xvl_vhost_connect with the connection
 * taken from listen_fd instead: it waits up to wait_ms for the backend to
 * connect (-EAGAIN when it did not).  listen_fd stays the caller's.
 */
int xvl_vhost_listen(const char *path, struct xvl_errbuf *eb);
int xvl_vhost_accept(struct xvl_vhost *v, const char *path, int listen_fd, unsigned wait_ms,
		     struct xvl_errbuf *eb);

/*
 * After the backend restarted (or any error that broke the connection):
 * close the socket and run the xvl_vhost_connect handshake again to
 * v->path, keeping the inflight area (then setup_inflight with reuse=true).
 * Memory table and vrings must be set up again by the caller.
 */
int xvl_vhost_reconnect(struct xvl_vhost *v, struct xvl_errbuf *eb);

/* Tear down the connection; releases the inflight mapping.  Idempotent;
 * v must have been through xvl_vhost_connect (a failed one too). */
void xvl_vhost_close(struct xvl_vhost *v);

/* SET_FEATURES with the driver's accepted features (PROTOCOL_FEATURES bit added as needed). */
int xvl_vhost_set_features(struct xvl_vhost *v, uint64_t features, struct xvl_errbuf *eb);

/* GET_CONFIG: len bytes of device config space from offset off (asked from
 * offset 0 on the wire: some backends ignore the offset field). */
int xvl_vhost_get_config(struct xvl_vhost *v, uint32_t off, void *buf, uint32_t len,
			 struct xvl_errbuf *eb);

/* SET_MEM_TABLE with exactly one region: the window fd, gpa 0, size, mapped at local_base here. */
int xvl_vhost_set_mem_table(struct xvl_vhost *v, int win_fd, uint64_t win_size, void *local_base,
			    struct xvl_errbuf *eb);

/*
 * GET_INFLIGHT_FD + SET_INFLIGHT_FD when the backend offers INFLIGHT_SHMFD
 * (no-op returning 0 otherwise).  Keeps the area across reconnects: pass
 * reuse=true after a backend restart to hand the same area back.
 */
int xvl_vhost_setup_inflight(struct xvl_vhost *v, uint16_t num_queues, uint16_t queue_size,
			     bool reuse, struct xvl_errbuf *eb);

/*
 * Start queue q: SET_VRING_NUM, SET_VRING_BASE(base), SET_VRING_ADDR (ring
 * offsets in l turned into addresses in the mem-table region),
 * SET_VRING_KICK(kick_fd), SET_VRING_CALL(call_fd), SET_VRING_ENABLE(1).
 * kick_fd/call_fd are passed, not consumed.  log: none.
 */
int xvl_vhost_start_vring(struct xvl_vhost *v, uint16_t q, const struct xvl_vq_layout *l,
			  uint16_t base, int kick_fd, int call_fd, struct xvl_errbuf *eb);

/* xvl_vhost_start_vring, but the ring is left disabled when !enable (a
 * virtio-net queue pair beyond the driver's VQ_PAIRS_SET). */
int xvl_vhost_setup_vring(struct xvl_vhost *v, uint16_t q, const struct xvl_vq_layout *l,
			  uint16_t base, int kick_fd, int call_fd, bool enable,
			  struct xvl_errbuf *eb);

/*
 * SET_VRING_ENABLE(on) for a ring already set up, sent without asking for
 * a reply and without blocking: for an event loop that owns the session's
 * socket (multi-queue VQ_PAIRS_SET while the backend serves).  A backend
 * that does not take the message (socket full) gets -EAGAIN and the
 * connection is dropped (sock -1).
 */
int xvl_vhost_vring_enable_nowait(struct xvl_vhost *v, uint16_t q, bool on,
				  struct xvl_errbuf *eb);

/* NET_SET_MTU when the backend negotiated the NET_MTU protocol feature (no-op otherwise). */
int xvl_vhost_net_set_mtu(struct xvl_vhost *v, uint16_t mtu, struct xvl_errbuf *eb);

/* Stop queue q: SET_VRING_ENABLE(0) then GET_VRING_BASE into *base. */
int xvl_vhost_stop_vring(struct xvl_vhost *v, uint16_t q, uint16_t *base, struct xvl_errbuf *eb);

/*
 * Check one reply header as read from the socket against the request:
 * returns the payload size to read next, or -EPROTO / -EMSGSIZE with eb
 * naming what is wrong.  Separate so it can be fuzzed.
 */
int xvl_vhost_check_reply_hdr(const void *hdr12, uint32_t request, uint32_t expect_size,
			      struct xvl_errbuf *eb);

#endif
