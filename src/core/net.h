/* SPDX-License-Identifier: MIT */
/*
 * virtio-net frames and control commands as either side receives them from
 * a peer it does not trust: the 12-byte virtio_net_hdr decoded from a copy
 * and checked against the frame it describes and the offloads the receiver
 * negotiated; control-queue commands parsed from a copy with every count
 * checked against the bytes that carry it.  Nothing here looks at memory
 * the peer can still change: callers copy out of the window first.
 *
 * Portable core: no OS calls, no allocation.
 */
#ifndef XVL_NET_H
#define XVL_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio_net.h"

/* A virtio_net_hdr in host byte order. */
struct xvl_net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
};

void xvl_net_hdr_decode(const void *raw, struct xvl_net_hdr *h);
void xvl_net_hdr_encode(const struct xvl_net_hdr *h, void *raw);

/* What a receiver of frames accepts: from its negotiated features. */
struct xvl_net_accept {
	uint32_t max_frame;     /* bytes after the virtio header, without GSO (MTU + 14 + 4) */
	uint32_t max_gso_frame; /* with GSO (at most 65535 + 14 + 4 in practice) */
	bool csum;              /* NEEDS_CSUM allowed (CSUM / GUEST_CSUM) */
	bool tso4, tso6, ecn;   /* HOST_/GUEST_ TSO4, TSO6, ECN */
	bool ufo;               /* HOST_/GUEST_ UFO */
	uint16_t max_buffers;   /* num_buffers bound: 1 without MRG_RXBUF */
	bool check_buffers;     /* receive side: num_buffers is meaningful */
};

/* Why a frame was refused (0 = accepted); counted per reason by callers. */
enum xvl_net_verdict {
	XVL_NET_FRAME_OK = 0,
	XVL_NET_FRAME_SHORT,       /* shorter than an Ethernet header */
	XVL_NET_FRAME_LONG,        /* longer than the receiver takes */
	XVL_NET_FRAME_FLAGS,       /* unknown header flags */
	XVL_NET_FRAME_CSUM,        /* checksum offload not negotiated, or offsets outside the frame */
	XVL_NET_FRAME_GSO,         /* GSO type not negotiated, unknown, or without NEEDS_CSUM */
	XVL_NET_FRAME_GSO_SIZE,    /* gso_size 0 or beyond the frame */
	XVL_NET_FRAME_HDR_LEN,     /* hdr_len beyond the frame */
	XVL_NET_FRAME_NUM_BUFFERS, /* num_buffers 0 or beyond what was offered */
	XVL_NET_FRAME_VERDICTS
};

/*
 * Check header h of a frame of frame_len bytes (after the virtio header)
 * against what the receiver accepts.  With a->check_buffers, num_buffers
 * must be 1..a->max_buffers; frame_len is then the first buffer's share.
 */
enum xvl_net_verdict xvl_net_frame_check(const struct xvl_net_hdr *h, uint32_t frame_len,
					 const struct xvl_net_accept *a);
const char *xvl_net_verdict_name(enum xvl_net_verdict v);

/* A control command, parsed. */
struct xvl_net_ctrl {
	uint8_t cls;
	uint8_t cmd;
	union {
		uint8_t on;            /* RX class */
		uint8_t mac[XVL_ETH_ALEN]; /* MAC ADDR_SET */
		uint16_t vid;          /* VLAN */
		uint16_t pairs;        /* MQ VQ_PAIRS_SET */
		uint64_t offloads;     /* GUEST_OFFLOADS SET */
		struct {               /* MAC TABLE_SET: entries inside the parsed buffer */
			uint32_t n_uni, n_multi;
			const uint8_t *uni, *multi; /* n_* * 6 bytes each */
		} table;
	} u;
};

/* What the device implements: bounds for the parser. */
struct xvl_net_ctrl_limits {
	uint16_t max_pairs;      /* max_virtqueue_pairs offered */
	uint32_t max_mac_table;  /* unicast + multicast entries accepted */
	bool rx, mac_addr, vlan, mq, guest_offloads, announce; /* negotiated classes */
};

/*
 * Parse the device-readable bytes of one control command (class, command,
 * data; the ack byte is not part of buf).  buf must be a private copy: the
 * table pointers point into it.  Returns 0, -EINVAL (malformed: lengths,
 * counts, values out of range) or -EOPNOTSUPP (class or command not
 * negotiated or unknown); the device answers XVL_NET_ERR for either.
 */
int xvl_net_ctrl_parse(const uint8_t *buf, uint32_t len, const struct xvl_net_ctrl_limits *l,
		       struct xvl_net_ctrl *c);

/* The receive-mode switches the CTRL_RX class sets (virtio 1.2 5.1.6.5.1). */
struct xvl_net_rxmode {
	bool promisc, allmulti, alluni, nomulti, nouni, nobcast;
};

/* As a NIC before any CTRL_RX command: promiscuous, nothing else set. */
void xvl_net_rxmode_reset(struct xvl_net_rxmode *m);
/* Apply a parsed CTRL_RX command c: XVL_NET_OK, or XVL_NET_ERR for another command. */
uint8_t xvl_net_rxmode_apply(struct xvl_net_rxmode *m, const struct xvl_net_ctrl *c);

static inline bool xvl_eth_is_multicast(const uint8_t *mac) { return mac[0] & 1; }
static inline bool xvl_eth_is_broadcast(const uint8_t *mac)
{
	return (mac[0] & mac[1] & mac[2] & mac[3] & mac[4] & mac[5]) == 0xff;
}

#endif
