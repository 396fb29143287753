/* SPDX-License-Identifier: MIT */
/*
 * virtio-net driver internals, shared by its parts:
 *   net_setup.c  open/close: negotiation, config, queue memory and rings,
 *                the control queue, link state
 *   net_io.c     transmit, receive (with the checks on what the device
 *                returns), waiting
 *
 * Each queue owns one heap block of the window: its rings, its indirect
 * tables (tx) and its buffers (rx: one receive buffer per ring entry; tx:
 * one slot per ring entry holding the virtio_net_hdr and, for a copied
 * frame that fits, the frame right after it).
 *
 * Locking: a queue's lock is held by every call on it; the link lock
 * (client.c) is innermost.  Flags set from the link (broken, config
 * changed) are atomics.
 */
#ifndef XVL_NET_INT_H
#define XVL_NET_INT_H

#include <pthread.h>

#include "client.h"
#include "net.h"
#include "virtio_blk.h" /* XVL_VIRTIO_ID_NET */
#include "xvl_atomic.h"
#include "xvloop/xvl_net.h"

#define NET_DEFAULT_QUEUE_SIZE 256
#define NET_MRG_BUF_SIZE  2048u     /* receive buffer with MRG_RXBUF, header included */
#define NET_MAX_GSO_FRAME (65535u + XVL_ETH_HLEN + XVL_ETH_VLAN_LEN)
#define NET_MERGE_BYTES   (2u * NET_MAX_GSO_FRAME) /* private space to join merged frames */
#define NET_LINK_CHECK_NS 1000000ull

/* A transmit slot: what the device holds for one frame. */
struct net_txslot {
	void *user;
	uint64_t bounce;     /* heap block for a copied frame too big for the slot, or 0 */
	bool busy;           /* on the ring */
	bool zero_copy;      /* the caller's buffer: the slot waits for xvl_net_tx_reclaim */
};

struct net_queue {
	pthread_mutex_t lock;
	bool lock_init;
	struct xvl_vq_drv vq;
	void *vq_priv;
	uint64_t area;
	struct xvl_vq_layout layout;
	uint64_t ind_off;
	uint64_t bufs_off;   /* rx buffers / tx slots */
	uint32_t buf_size;   /* bytes each */
	uint16_t num;
	int kick_fd, call_fd;
	bool fd_exported;
	uint64_t last_link_check;
	/* tx */
	struct net_txslot *ts;
	uint16_t *free_slot;
	uint16_t n_free;
	uint16_t *done;      /* slots completed, in order, for reclaim */
	uint16_t done_head, n_done;
	/* rx */
	uint16_t *lent;      /* buffers lent to the caller by the last rx_burst */
	uint16_t n_lent;
	uint16_t *unposted;  /* buffers not on the ring (to repost) */
	uint16_t n_unposted;
	uint8_t *merge;      /* NET_MERGE_BYTES private, joined frames */
	/* A frame spread over buffers the device had not all returned yet (resumed next burst). */
	bool pend;
	bool pend_bad;       /* too long: its buffers are taken and dropped */
	struct xvl_net_hdr pend_h;
	uint16_t pend_left;  /* buffers still to come */
	uint32_t pend_have;  /* bytes joined at merge + pend_off */
	uint32_t pend_off;
	uint64_t len_clamped_seen;
	struct xvl_net_stats st;
};

struct xvl_net {
	struct xvl_client *c;
	uint32_t dev;
	bool poll;
	bool broken;          /* atomic */
	bool config_changed;  /* atomic: EVENT CONFIG came */
	bool restart;         /* atomic: set the device up again (EVENT RESTART, a reconnection) */
	bool reattach;        /* with restart: the link was re-established, ATTACH first */
	uint64_t offered;     /* device features at open: a restarted device must offer the same */
	int broken_reason;
	char broken_msg[64];
	struct xvl_net_opts opts;
	struct xvl_net_info info;
	struct xvl_net_accept accept;
	uint16_t nq;          /* queues set up on the device: 2 * pairs (+ ctrl) */
	uint16_t ctrl_index;  /* queue index of the control queue */
	struct net_queue rx[XVL_NET_MAX_PAIRS];
	struct net_queue tx[XVL_NET_MAX_PAIRS];
	struct net_queue ctrl;
	pthread_mutex_t state_lock; /* link status re-read */
};

static inline bool net_has(uint64_t f, unsigned bit) { return f & (1ull << bit); }
static inline bool net_broken(const struct xvl_net *n) { return xvl_load_acquire(&n->broken); }

/* net_setup.c */
int net_ctrl_command(struct xvl_net *n, uint8_t cls, uint8_t cmd, const void *data, uint32_t len);
/* Post every buffer of rx that is not on the ring. */
int net_rx_refill(struct xvl_net *n, struct net_queue *q);

int net_ctrl_command_locked(struct xvl_net *n, uint8_t cls, uint8_t cmd, const void *data,
			    uint32_t len);
/* Queue set-up shared by open and restart: fresh rings, announced to the device. */
enum net_qkind { Q_RX, Q_TX, Q_CTRL };
int net_queue_rings(struct xvl_net *n, struct net_queue *q, enum net_qkind k, uint16_t qi);
int net_negotiate(struct xvl_net *n, uint64_t offered);
int net_set_pairs(struct xvl_net *n, uint16_t pairs);

/* net_io.c */
void net_queue_kick(struct net_queue *q);

/* net_recover.c */
static inline bool net_needs_recovery(const struct xvl_net *n)
{
	return !net_broken(n) && (xvl_load_acquire(&n->restart) || xvl_client_link_dead(n->c));
}
/* With no queue lock held: reconnect and/or set the device up again, or break it. */
void net_recover(struct xvl_net *n);

#endif
