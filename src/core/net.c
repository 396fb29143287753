/* SPDX-License-Identifier: MIT */
/* virtio-net header checks and control-command parsing; see net.h. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "xvl_err.h"

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) | (uint32_t)get16(p + 2) << 16; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

void xvl_net_hdr_decode(const void *raw, struct xvl_net_hdr *h)
{
	const uint8_t *p = raw;

	h->flags = p[0];
	h->gso_type = p[1];
	h->hdr_len = get16(p + 2);
	h->gso_size = get16(p + 4);
	h->csum_start = get16(p + 6);
	h->csum_offset = get16(p + 8);
	h->num_buffers = get16(p + 10);
}

void xvl_net_hdr_encode(const struct xvl_net_hdr *h, void *raw)
{
	uint8_t *p = raw;

	p[0] = h->flags;
	p[1] = h->gso_type;
	put16(p + 2, h->hdr_len);
	put16(p + 4, h->gso_size);
	put16(p + 6, h->csum_start);
	put16(p + 8, h->csum_offset);
	put16(p + 10, h->num_buffers);
}

#define KNOWN_FLAGS (XVL_NET_HDR_F_NEEDS_CSUM | XVL_NET_HDR_F_DATA_VALID | XVL_NET_HDR_F_RSC_INFO)

/* The 16-bit checksum field written at csum_start + csum_offset must lie in the frame. */
static bool csum_ok(const struct xvl_net_hdr *h, uint32_t frame_len, const struct xvl_net_accept *a)
{
	if (!(h->flags & XVL_NET_HDR_F_NEEDS_CSUM))
		return true;
	if (!a->csum)
		return false;
	return (uint32_t)h->csum_start + h->csum_offset + 2u <= frame_len;
}

static bool gso_type_ok(uint8_t type, const struct xvl_net_accept *a)
{
	if ((type & XVL_NET_HDR_GSO_ECN) && !a->ecn)
		return false;
	switch (type & (uint8_t)~XVL_NET_HDR_GSO_ECN) {
	case XVL_NET_HDR_GSO_TCPV4:
		return a->tso4;
	case XVL_NET_HDR_GSO_TCPV6:
		return a->tso6;
	case XVL_NET_HDR_GSO_UDP:
		return a->ufo;
	default:
		return false;
	}
}

enum xvl_net_verdict xvl_net_frame_check(const struct xvl_net_hdr *h, uint32_t frame_len,
					 const struct xvl_net_accept *a)
{
	bool gso = h->gso_type != XVL_NET_HDR_GSO_NONE;

	if (a->check_buffers && (h->num_buffers == 0 || h->num_buffers > a->max_buffers))
		return XVL_NET_FRAME_NUM_BUFFERS;
	if (frame_len < XVL_ETH_HLEN)
		return XVL_NET_FRAME_SHORT;
	if (frame_len > (gso ? a->max_gso_frame : a->max_frame))
		return XVL_NET_FRAME_LONG;
	if (h->flags & ~KNOWN_FLAGS)
		return XVL_NET_FRAME_FLAGS;
	if (!csum_ok(h, frame_len, a))
		return XVL_NET_FRAME_CSUM;
	if (!gso)
		return XVL_NET_FRAME_OK;
	/* Segmentation needs the checksum to be filled in per segment (Linux refuses it too). */
	if (!gso_type_ok(h->gso_type, a) || !(h->flags & XVL_NET_HDR_F_NEEDS_CSUM))
		return XVL_NET_FRAME_GSO;
	if (h->gso_size == 0 || h->gso_size > frame_len)
		return XVL_NET_FRAME_GSO_SIZE;
	if (h->hdr_len > frame_len)
		return XVL_NET_FRAME_HDR_LEN;
	return XVL_NET_FRAME_OK;
}

const char *xvl_net_verdict_name(enum xvl_net_verdict v)
{
	static const char *const names[XVL_NET_FRAME_VERDICTS] = {
		[XVL_NET_FRAME_OK] = "ok",
		[XVL_NET_FRAME_SHORT] = "shorter than an Ethernet header",
		[XVL_NET_FRAME_LONG] = "longer than the receiver accepts",
		[XVL_NET_FRAME_FLAGS] = "unknown header flags",
		[XVL_NET_FRAME_CSUM] = "checksum offload not negotiated or outside the frame",
		[XVL_NET_FRAME_GSO] = "segmentation offload not negotiated or malformed",
		[XVL_NET_FRAME_GSO_SIZE] = "gso_size 0 or beyond the frame",
		[XVL_NET_FRAME_HDR_LEN] = "hdr_len beyond the frame",
		[XVL_NET_FRAME_NUM_BUFFERS] = "num_buffers 0 or beyond the buffers offered",
	};
	return (unsigned)v < XVL_NET_FRAME_VERDICTS ? names[v] : "?";
}

/* ------------------------------------------------------------ control queue */

static int parse_rx(const uint8_t *d, uint32_t n, uint8_t cmd, struct xvl_net_ctrl *c)
{
	if (cmd > XVL_NET_CTRL_RX_NOBCAST)
		return -EOPNOTSUPP;
	if (n != 1 || d[0] > 1)
		return -EINVAL;
	c->u.on = d[0];
	return 0;
}

/* One virtio_net_ctrl_mac: le32 entries, then entries * 6 bytes. */
static int mac_list(const uint8_t *d, uint32_t n, uint32_t *pos, uint32_t *count,
		    const uint8_t **macs)
{
	uint32_t e;

	if (n - *pos < 4)
		return -EINVAL;
	e = get32(d + *pos);
	*pos += 4;
	if (e > (n - *pos) / XVL_ETH_ALEN)
		return -EINVAL;
	*count = e;
	*macs = d + *pos;
	*pos += e * XVL_ETH_ALEN;
	return 0;
}

static int parse_mac(const uint8_t *d, uint32_t n, uint8_t cmd, const struct xvl_net_ctrl_limits *l,
		     struct xvl_net_ctrl *c)
{
	uint32_t pos = 0;

	if (cmd == XVL_NET_CTRL_MAC_ADDR_SET) {
		if (!l->mac_addr)
			return -EOPNOTSUPP;
		if (n != XVL_ETH_ALEN || xvl_eth_is_multicast(d))
			return -EINVAL;
		__builtin_memcpy(c->u.mac, d, XVL_ETH_ALEN);
		return 0;
	}
	if (cmd != XVL_NET_CTRL_MAC_TABLE_SET || !l->rx)
		return -EOPNOTSUPP;
	if (mac_list(d, n, &pos, &c->u.table.n_uni, &c->u.table.uni) < 0 ||
	    mac_list(d, n, &pos, &c->u.table.n_multi, &c->u.table.multi) < 0 || pos != n)
		return -EINVAL;
	if ((uint64_t)c->u.table.n_uni + c->u.table.n_multi > l->max_mac_table)
		return -EINVAL;
	return 0;
}

static int parse_u16(const uint8_t *d, uint32_t n, uint16_t *v)
{
	if (n != 2)
		return -EINVAL;
	*v = get16(d);
	return 0;
}

int xvl_net_ctrl_parse(const uint8_t *buf, uint32_t len, const struct xvl_net_ctrl_limits *l,
		       struct xvl_net_ctrl *c)
{
	const uint8_t *d = buf + 2;
	uint32_t n;

	if (!buf || len < 2)
		return -EINVAL;
	n = len - 2;
	c->cls = buf[0];
	c->cmd = buf[1];
	switch (c->cls) {
	case XVL_NET_CTRL_RX:
		return l->rx ? parse_rx(d, n, c->cmd, c) : -EOPNOTSUPP;
	case XVL_NET_CTRL_MAC:
		return parse_mac(d, n, c->cmd, l, c);
	case XVL_NET_CTRL_VLAN:
		if (!l->vlan || c->cmd > XVL_NET_CTRL_VLAN_DEL)
			return -EOPNOTSUPP;
		if (parse_u16(d, n, &c->u.vid) < 0 || c->u.vid >= 4096)
			return -EINVAL;
		return 0;
	case XVL_NET_CTRL_ANNOUNCE:
		if (!l->announce || c->cmd != XVL_NET_CTRL_ANNOUNCE_ACK)
			return -EOPNOTSUPP;
		return n == 0 ? 0 : -EINVAL;
	case XVL_NET_CTRL_MQ:
		if (!l->mq || c->cmd != XVL_NET_CTRL_MQ_VQ_PAIRS_SET)
			return -EOPNOTSUPP;
		if (parse_u16(d, n, &c->u.pairs) < 0 || c->u.pairs < XVL_NET_MQ_PAIRS_MIN ||
		    c->u.pairs > l->max_pairs)
			return -EINVAL;
		return 0;
	case XVL_NET_CTRL_GUEST_OFFLOADS:
		if (!l->guest_offloads || c->cmd != XVL_NET_CTRL_GUEST_OFFLOADS_SET)
			return -EOPNOTSUPP;
		if (n != 8)
			return -EINVAL;
		c->u.offloads = (uint64_t)get32(d) | (uint64_t)get32(d + 4) << 32;
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

void xvl_net_rxmode_reset(struct xvl_net_rxmode *m)
{
	*m = (struct xvl_net_rxmode){.promisc = true};
}

uint8_t xvl_net_rxmode_apply(struct xvl_net_rxmode *m, const struct xvl_net_ctrl *c)
{
	bool on = c->u.on;

	if (c->cls != XVL_NET_CTRL_RX)
		return XVL_NET_ERR;
	switch (c->cmd) {
	case XVL_NET_CTRL_RX_PROMISC: m->promisc = on; break;
	case XVL_NET_CTRL_RX_ALLMULTI: m->allmulti = on; break;
	case XVL_NET_CTRL_RX_ALLUNI: m->alluni = on; break;
	case XVL_NET_CTRL_RX_NOMULTI: m->nomulti = on; break;
	case XVL_NET_CTRL_RX_NOUNI: m->nouni = on; break;
	case XVL_NET_CTRL_RX_NOBCAST: m->nobcast = on; break;
	default: return XVL_NET_ERR;
	}
	return XVL_NET_OK;
}
