/* SPDX-License-Identifier: MIT */
/*
 * Server internals of virtio-net devices: the device model (netdev.c), the
 * built-in L2 switch (netsw.c) and the tap backend (backend_tap.c).
 *
 * Every byte of a tx frame is read from the driver's window once.  The
 * virtio_net_hdr and the Ethernet header (what decisions look at: offload
 * checks, forwarding, the spoof check) are copied into private staging
 * memory first and validated there (xvl_net_frame_check); the rest goes
 * straight from the sender's tx buffers into the receiver's rx buffers
 * (struct srv_net_frame).  Frames going to several ports, to tap, or
 * needing their checksum filled in are staged whole first (read once,
 * written from the copy).  Nothing is queued inside the server: a frame a
 * receiver has no buffers for is dropped and counted at that receiver, so a
 * port that never refills its rx ring cannot hold up the others.
 */
#ifndef XVL_SRV_NET_H
#define XVL_SRV_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "l2sw.h"
#include "net.h"
#include "srv.h"

#define SRV_NET_MAX_FRAME (65535u + XVL_ETH_HLEN + XVL_ETH_VLAN_LEN) /* with GSO */
#define SRV_NET_STAGE     (XVL_NET_HDR_SIZE + SRV_NET_MAX_FRAME)
#define SRV_NET_MAC_TABLE 64u /* MAC filter entries (unicast + multicast) */
#define NET_MAX_MRG       64u /* rx buffers (chains) one frame may span */
#define SRV_NET_RX_SEGS   1024u /* segments of the rx chains one frame is written into */

/* Why frames were dropped: per device, shown in the log at close. */
enum srv_net_drop {
	NET_DROP_TX_BAD,     /* tx frame refused by xvl_net_frame_check */
	NET_DROP_TX_SPOOF,   /* source MAC not the port's (spoof=on) */
	NET_DROP_RX_NOBUF,   /* no (or too small) rx buffers posted */
	NET_DROP_RX_OFFLOAD, /* GSO frame the receiver did not negotiate */
	NET_DROP_RX_LONG,    /* longer than the receiver takes */
	NET_DROP_BACKEND,    /* the backend refused it (tap write failed) */
	NET_DROP_KINDS
};

struct srv_switch;

/*
 * A frame on its way through the device: its header (decoded from a
 * private copy), its first priv_len bytes in private memory, and the rest
 * still in the sender's window, chain bytes from rest_off on (NULL chain:
 * all of it private).  priv has room for the whole frame (the sender's
 * stage), so srv_net_frame_flatten can bring the rest in, once.
 */
struct srv_net_frame {
	struct xvl_net_hdr h;
	uint8_t *priv;
	uint32_t priv_len;
	uint32_t len;
	const struct xvl_vq_elem *chain;
	uint64_t rest_off;
};

struct srv_net {
	struct srv_dev *dev;
	uint8_t mac[XVL_ETH_ALEN];
	uint16_t mtu;
	uint16_t max_pairs;
	uint16_t active_pairs;       /* MQ VQ_PAIRS_SET, 1 until then */
	bool link_up;
	/* rx mode (CTRL_RX) and MAC filter (CTRL_MAC TABLE_SET) */
	struct xvl_net_rxmode rx;
	uint32_t n_uni, n_multi;
	uint8_t uni[SRV_NET_MAC_TABLE][XVL_ETH_ALEN];
	uint8_t multi[SRV_NET_MAC_TABLE][XVL_ETH_ALEN];
	/* switch backend */
	struct srv_switch *sw;
	uint16_t port;
	uint64_t burst_ns;           /* the clock when this burst of tx chains began (ageing) */
	/* tap backend */
	int tap_fd[XVL_MAX_QUEUES / 2];
	struct srv_watch tap_w[XVL_MAX_QUEUES / 2];
	bool tap_watched[XVL_MAX_QUEUES / 2]; /* in the epoll set (from DRIVER_OK to a reset) */
	bool tap_waiting[XVL_MAX_QUEUES / 2]; /* rx ring was empty: tap not read until a kick */
	uint16_t tap_queues;
	/* rx queues with used entries not yet notified (bit per pair) */
	uint32_t rx_pending;
	uint64_t drops[NET_DROP_KINDS];
	uint64_t log_budget;         /* messages about dropped frames left (rate limit) */
	struct xvl_vq_elem rx_el[NET_MAX_MRG]; /* the chains a frame is being written into */
	struct xvl_seg rx_seg[SRV_NET_RX_SEGS];
	uint8_t stage[SRV_NET_STAGE];
};

/* netdev.c: the device model. */
extern const struct srv_backend_ops srv_net_ops;
/* The MAC a device gets when its spec names none: 52:54:00 + 3 bytes of a hash of its name. */
void srv_net_default_mac(const char *name, uint8_t mac[6]);
void srv_net_queue_process(struct srv_queue *q);
/* A switch port's rx queue: the switch drops rather than waits for buffers, so its refills
 * need no kick and the queue is never armed (each armed refill would cost the driver an
 * eventfd write and wake the server). */
bool srv_net_kick_unwanted(const struct srv_queue *q);
/* Deliver one frame (hdr as received, frame bytes after it) to pair's rx queue of d.
 * Returns 0, or -ENOBUFS / -EMSGSIZE / -EOPNOTSUPP when dropped (counted at d).
 * The used entries are published by srv_net_flush, a frame's all in one index update. */
int srv_net_rx(struct srv_dev *d, uint16_t pair, struct xvl_net_hdr *h, uint8_t *frame,
	       uint32_t len);
int srv_net_rx_frame(struct srv_dev *d, uint16_t pair, struct srv_net_frame *f);
/* Copy the rest of f from the sender's window into its private memory (once). */
void srv_net_frame_flatten(struct srv_net_frame *f);
/* Does d's rx filter take a frame for dst? */
bool srv_net_rx_wanted(const struct srv_net *n, const uint8_t *dst);
/* Publish and notify the rx queues that got frames since the last call (every net device of s). */
void srv_net_flush(struct srv *s);
/* DRIVER_OK was accepted (devstate.c). */
void srv_net_start(struct srv_dev *d);
/* The driver reset the device (devstate.c): forget rx mode, MAC table and learnt addresses. */
void srv_net_reset(struct srv_dev *d);
void srv_net_drop(struct srv_dev *d, enum srv_net_drop why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Fill NEEDS_CSUM's checksum into the frame; the header then says DATA_VALID. */
void srv_net_csum_fill(struct xvl_net_hdr *h, uint8_t *frame, uint32_t len);

/* netsw.c: the built-in switch. */
int srv_sw_attach(struct srv_dev *d, struct xvl_errbuf *eb);
void srv_sw_detach(struct srv_dev *d);
void srv_sw_input(struct srv_dev *d, uint16_t pair, struct srv_net_frame *f);
void srv_sw_port_reset(struct srv_dev *d);

/* backend_tap.c */
int srv_tap_open(struct srv_dev *d, struct xvl_errbuf *eb);
void srv_tap_close(struct srv_dev *d);
void srv_tap_output(struct srv_dev *d, uint16_t pair, const uint8_t *buf, uint32_t len);
/* DRIVER_OK: offloads per the driver's features, start reading; a reset stops it. */
void srv_tap_start(struct srv_dev *d);
void srv_tap_stop(struct srv_dev *d);
void srv_tap_rx_refilled(struct srv_dev *d, uint16_t pair);

#endif
