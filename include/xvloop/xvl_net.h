/* SPDX-License-Identifier: MIT */
/*
 * xvloop client API, network devices: a virtio-net driver (virtio 1.x,
 * section 5.1) on a client of include/xvloop/xvl.h.
 *
 * A net device has one or more queue pairs (a receive and a transmit
 * queue each) and, when the device offers it, a control queue.  A pair is
 * used by one thread at a time (its receive and transmit sides may be used
 * by two).  Frames are plain Ethernet frames; the virtio_net_hdr is built
 * and checked by the library, its offload fields are in struct
 * xvl_net_frame.
 *
 * Transmit: a frame whose bytes lie inside the window (xvl_buf_alloc) goes
 * to the device zero-copy and must not change until xvl_net_tx_reclaim
 * returns its user pointer; any other frame is copied into the window.
 * Receive: xvl_net_rx_burst lends frames that still lie in the window
 * (zero copy) until the next receive call on that pair; xvl_net_rx_copy
 * copies them out.  The device is not trusted: every used entry, length,
 * num_buffers and header it writes is checked, a frame that breaks the
 * rules is dropped and counted (struct xvl_net_stats), a ring violation
 * breaks the device (-ENODEV).  A lent frame's bytes are in shared memory:
 * the device could still change them, so parse them as untrusted input.
 *
 * Errors are negative errno values; xvl_client_errmsg() has the words.
 */
#ifndef XVLOOP_XVL_NET_H
#define XVLOOP_XVL_NET_H

#include "xvloop/xvl.h"

#ifdef __cplusplus
extern "C" {
#endif

struct xvl_net;

#define XVL_NET_MAX_PAIRS 7u /* queue pairs a device open here can use */

struct xvl_net_opts {
	size_t size;            /* sizeof(struct xvl_net_opts): XVL_NET_OPTS_INIT */
	int device;             /* index; -1 = the first net device */
	uint16_t pairs;         /* queue pairs to use; 0 = 1; capped to what the device offers */
	uint16_t queue_size;    /* power of two, 0 = 256, at most 1024 */
	bool poll;              /* busy-poll: no notifications */
	bool no_offloads;       /* do not negotiate checksum and segmentation offloads */
	bool no_mrg_rxbuf;      /* do not negotiate VIRTIO_NET_F_MRG_RXBUF */
	bool promisc;           /* ask for promiscuous receive (control queue, CTRL_RX) */
	/* New fields go here, at the end; zero must mean the old behaviour. */
};
/* struct xvl_net_opts o = {XVL_NET_OPTS_INIT, .device = -1}; */
#define XVL_NET_OPTS_INIT .size = sizeof(struct xvl_net_opts)

struct xvl_net_info {
	uint8_t mac[6];
	uint16_t mtu;           /* bytes of payload after the Ethernet header */
	uint16_t max_pairs;     /* queue pairs the device offers */
	uint16_t pairs;         /* queue pairs in use */
	uint16_t queue_size;
	bool link_up;           /* at the last look (xvl_net_link_status) */
	bool ctrl;              /* a control queue is in use */
	bool csum, tso;         /* transmit offloads usable (checksum; TSO4 and TSO6) */
	bool rx_csum, rx_tso;   /* received frames may carry offload metadata */
	uint32_t rx_buf_size;   /* bytes per receive buffer, header included */
	uint64_t features;      /* negotiated */
	char name[32];
};

/* Per-frame offload flags (struct xvl_net_frame.flags). */
#define XVL_NET_TX_CSUM    1u /* checksum from csum_start, stored at csum_start + csum_offset */
#define XVL_NET_RX_CSUM_OK 2u /* received: the checksum is known good (DATA_VALID) */
/* gso_type values, as virtio's. */
#define XVL_NET_GSO_NONE  0u
#define XVL_NET_GSO_TCPV4 1u
#define XVL_NET_GSO_TCPV6 4u

struct xvl_net_frame {
	void *data;             /* the Ethernet frame (tx: in the window = zero copy) */
	uint32_t len;           /* bytes (rx_copy: capacity on input, bytes on output) */
	uint16_t flags;         /* XVL_NET_TX_CSUM / XVL_NET_RX_CSUM_OK (and tx: NEEDS_CSUM seen on rx) */
	uint8_t gso_type;       /* XVL_NET_GSO_*: the frame is to be segmented into gso_size pieces */
	uint16_t gso_size;
	uint16_t hdr_len;       /* bytes of headers before the segmented payload */
	uint16_t csum_start;
	uint16_t csum_offset;
	void *user;             /* tx: returned by xvl_net_tx_reclaim */
};

struct xvl_net_stats {
	uint64_t rx_frames, rx_bytes;
	uint64_t tx_frames, tx_bytes;
	uint64_t rx_dropped;    /* frames the device delivered that broke the rules */
	uint64_t rx_truncated;  /* rx_copy: frames longer than the caller's buffer */
	uint64_t rx_bad_len;    /* used lengths beyond the buffer or shorter than a header */
	uint64_t rx_bad_buffers; /* num_buffers 0, beyond the ring, or more than were returned */
	uint64_t rx_bad_hdr;    /* headers refused by the offload checks */
	uint64_t tx_dropped;    /* frames refused by xvl_net_tx_burst (malformed) */
};

/* Open a net device on c.  o may be NULL (the first net device, defaults);
 * else o->size must be set (XVL_NET_OPTS_INIT), or -EINVAL. */
int xvl_net_open(struct xvl_client *c, const struct xvl_net_opts *o, struct xvl_net **n);
/* Closes n: the device stops using its queues before their memory is freed.  NULL is a no-op. */
void xvl_net_close(struct xvl_net *n);
/* What was negotiated at open (link_up as last seen). */
void xvl_net_get_info(const struct xvl_net *n, struct xvl_net_info *info);
/* Counters over every pair since open. */
void xvl_net_get_stats(const struct xvl_net *n, struct xvl_net_stats *st);

/*
 * Queue up to count frames on pair's transmit queue and notify the device.
 * Frames in the window go zero-copy (those of at most 256 bytes are copied
 * into the ring's slot, cheaper for the device to read, and come back
 * through xvl_net_tx_reclaim all the same), others are copied.  Returns how many
 * were taken (fewer when the ring is full: reclaim, then try again),
 * -EINVAL for a malformed first frame (length, offload fields), -ENODEV
 * when the device is broken.
 */
int xvl_net_tx_burst(struct xvl_net *n, uint16_t pair, const struct xvl_net_frame *frames,
		     unsigned count);
/*
 * Take back up to max zero-copy frames of pair the device has sent: their
 * user pointers go to users (may be NULL to discard them), and their
 * buffers may be reused.  A copied frame is done with once tx_burst took
 * it and does not come back here.  Returns how many.
 */
int xvl_net_tx_reclaim(struct xvl_net *n, uint16_t pair, void **users, unsigned max);

/*
 * Receive up to max frames from pair without blocking, zero copy: each
 * frame's data points into the window (a frame the device spread over
 * several buffers is joined in private memory) and stays valid until the
 * next receive call on the pair, which gives its buffers back to the device.
 * Returns how many, or -ENODEV when the device is broken.
 */
int xvl_net_rx_burst(struct xvl_net *n, uint16_t pair, struct xvl_net_frame *frames, unsigned max);
/*
 * Receive up to max frames from pair, copied into the caller's buffers
 * frames[i].data of frames[i].len bytes each (len then says how many
 * bytes the frame had; a longer frame is cut and counted in rx_truncated).
 */
int xvl_net_rx_copy(struct xvl_net *n, uint16_t pair, struct xvl_net_frame *frames, unsigned max);
/*
 * Block until pair has received frames or timeout_ms passes (-1 = forever).
 * >0 when frames are ready, 0 on timeout, -ENODEV when the device went away.
 */
int xvl_net_wait(struct xvl_net *n, uint16_t pair, int timeout_ms);
/*
 * A pollable fd that becomes readable when pair's receive queue has frames
 * (or the link changed, or the device broke); -1 in poll mode.  Once
 * asked for, the receive calls reset it, so a level-triggered loop does not spin.
 */
int xvl_net_queue_fd(struct xvl_net *n, uint16_t pair);

/*
 * The link: 1 up, 0 down, -ENODEV when the device is broken.  Looks at the
 * server's events first (a config change re-reads the STATUS field).
 */
int xvl_net_link_status(struct xvl_net *n);

/* Ask for promiscuous receive on or off (control queue); -EOPNOTSUPP without CTRL_RX. */
int xvl_net_set_promisc(struct xvl_net *n, bool on);
/* Set the device's MAC address (control queue); -EOPNOTSUPP without CTRL_MAC_ADDR. */
int xvl_net_set_mac(struct xvl_net *n, const uint8_t mac[6]);

#ifdef __cplusplus
}
#endif

#endif
