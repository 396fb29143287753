/* SPDX-License-Identifier: MIT */
/*
 * virtio-net device model (virtio 1.x section 5.1): config space, the
 * transmit queues (chain -> private copy -> checks -> backend), receive
 * delivery into the driver's rx buffers (mergeable or not) and the control
 * queue.  The backends are the built-in switch (netsw.c) and tap
 * (backend_tap.c).
 *
 * What a hostile driver can do and what follows:
 *   - a tx frame that is too long, too short or whose virtio_net_hdr asks
 *     for offloads not negotiated or points outside the frame: dropped and
 *     counted (GET_STATS errors), the chain completed, the device runs on;
 *   - a tx chain with device-writable buffers, an rx chain with readable
 *     ones, a control chain without a writable ack byte: the device breaks
 *     (NEEDS_RESET, EVENT BROKEN) -- they cannot be answered as the spec says;
 *   - ring rules (buffers outside the window, loops, ...): virtq.c breaks it;
 *   - a control command out of range: ack VIRTIO_NET_ERR, nothing changes;
 *   - no rx buffers: frames for it are dropped and counted at that device.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv_net.h"
#include "virtio_net.h"
#include "xvl_atomic.h"

#define NET_BUDGET       256u /* chains per queue per round */
#define NET_CTRL_MAX     (2u + 8u + 2u * SRV_NET_MAC_TABLE * XVL_ETH_ALEN) /* command bytes */
#define NET_LOG_BUDGET   20u  /* dropped-frame messages per device before going quiet */
#define NET_PUBLISH_EVERY 32u /* tx chains between publishing used entries (notified per pass) */

static bool nfeat(const struct srv_dev *d, unsigned bit)
{
	return d->driver_features & (1ull << bit);
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

void srv_net_drop(struct srv_dev *d, enum srv_net_drop why, const char *fmt, ...)
{
	struct srv_net *n = d->net;
	char msg[160];
	va_list ap;

	n->drops[why]++;
	d->st_errors++;
	if (!n->log_budget)
		return;
	n->log_budget--;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	srv_log(d->srv, "device %s: frame dropped: %s%s", d->spec.name, msg,
		n->log_budget ? "" : " (further drops are counted, not logged)");
}

/* ------------------------------------------------------------ config */

static void fill_config(struct srv_dev *d)
{
	struct srv_net *n = d->net;
	uint8_t *c = d->config;
	memset(c, 0, sizeof(d->config));
	memcpy(c + XVL_NET_CFG_MAC, n->mac, XVL_ETH_ALEN);
	put_le16(c + XVL_NET_CFG_STATUS, n->link_up ? XVL_NET_S_LINK_UP : 0);
	put_le16(c + XVL_NET_CFG_MAX_PAIRS, n->max_pairs);
	put_le16(c + XVL_NET_CFG_MTU, n->mtu);
	memset(c + XVL_NET_CFG_SPEED, 0xff, 4); /* unknown */
	c[XVL_NET_CFG_DUPLEX] = 0xff;
	d->config_len = XVL_NET_CFG_SIZE;
}

/* Stable default MAC: 52:54:00 and 3 bytes of FNV-1a over the device name. */
void srv_net_default_mac(const char *name, uint8_t mac[6])
{
	uint32_t h = 2166136261u;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

#define NET_OFFERED                                                                           \
	((1ull << XVL_NET_F_MAC) | (1ull << XVL_NET_F_MTU) | (1ull << XVL_NET_F_STATUS) |        \
	 (1ull << XVL_NET_F_MRG_RXBUF) | (1ull << XVL_NET_F_CSUM) |                              \
	 (1ull << XVL_NET_F_GUEST_CSUM) | (1ull << XVL_NET_F_HOST_TSO4) |                        \
	 (1ull << XVL_NET_F_HOST_TSO6) | (1ull << XVL_NET_F_GUEST_TSO4) |                        \
	 (1ull << XVL_NET_F_GUEST_TSO6) | (1ull << XVL_NET_F_CTRL_VQ) |                          \
	 (1ull << XVL_NET_F_CTRL_RX) | (1ull << XVL_NET_F_CTRL_MAC_ADDR))

static int net_open(struct srv_dev *d, struct xvl_errbuf *eb)
{
	const struct xvl_dev_spec *sp = &d->spec;
	struct srv_net *n = calloc(1, sizeof(*n));
	if (!n)
		return xvl_err(eb, -ENOMEM, "device %s: out of memory", sp->name);
	d->net = n;
	n->dev = d;
	n->mtu = sp->mtu ? sp->mtu : 1500;
	n->max_pairs = sp->queues ? sp->queues : 1;
	n->active_pairs = 1;
	xvl_net_rxmode_reset(&n->rx); /* as a NIC without CTRL_RX commands: everything is taken */
	n->log_budget = NET_LOG_BUDGET;
	for (unsigned i = 0; i < XVL_MAX_QUEUES / 2; i++)
		n->tap_fd[i] = -1;
	if (sp->has_mac)
		memcpy(n->mac, sp->mac, XVL_ETH_ALEN);
	else
		srv_net_default_mac(sp->name, n->mac);
	d->num_queues = (uint16_t)(2u * n->max_pairs + 1u);
	d->features |= NET_OFFERED;
	if (n->max_pairs > 1)
		d->features |= 1ull << XVL_NET_F_MQ;
	int rc = sp->kind == XVL_BK_TAP ? srv_tap_open(d, eb) : srv_sw_attach(d, eb);
	if (rc < 0)
		return rc;
	n->link_up = true; /* switch: a port is always connected; tap: the interface is open */
	fill_config(d);
	srv_log(d->srv, "device %s: virtio-net, %s %s, mac %02x:%02x:%02x:%02x:%02x:%02x, mtu %u, "
		"%u queue pair(s)", sp->name, sp->kind == XVL_BK_TAP ? "tap" : "switch",
		sp->kind == XVL_BK_TAP ? sp->ifname : sp->sw, n->mac[0], n->mac[1], n->mac[2],
		n->mac[3], n->mac[4], n->mac[5], n->mtu, n->max_pairs);
	return 0;
}

static void net_close(struct srv_dev *d)
{
	struct srv_net *n = d->net;
	if (!n)
		return;
	if (d->spec.kind == XVL_BK_TAP)
		srv_tap_close(d);
	else
		srv_sw_detach(d);
	uint64_t all = 0;
	for (unsigned i = 0; i < NET_DROP_KINDS; i++)
		all += n->drops[i];
	if (all)
		srv_log(d->srv, "device %s: frames dropped: %llu bad tx, %llu spoofed, %llu no rx "
			"buffer, %llu offload, %llu too long, %llu backend", d->spec.name,
			(unsigned long long)n->drops[NET_DROP_TX_BAD],
			(unsigned long long)n->drops[NET_DROP_TX_SPOOF],
			(unsigned long long)n->drops[NET_DROP_RX_NOBUF],
			(unsigned long long)n->drops[NET_DROP_RX_OFFLOAD],
			(unsigned long long)n->drops[NET_DROP_RX_LONG],
			(unsigned long long)n->drops[NET_DROP_BACKEND]);
	free(n);
	d->net = NULL;
}

const struct srv_backend_ops srv_net_ops = {
	.open = net_open,
	.submit = NULL, /* net queues are served by srv_net_queue_process */
	.close = net_close,
};

void srv_net_start(struct srv_dev *d)
{
	if (d->spec.kind == XVL_BK_TAP)
		srv_tap_start(d);
}

void srv_net_reset(struct srv_dev *d)
{
	struct srv_net *n = d->net;
	if (d->spec.kind == XVL_BK_TAP)
		srv_tap_stop(d);
	n->active_pairs = 1;
	xvl_net_rxmode_reset(&n->rx);
	n->n_uni = n->n_multi = 0;
	n->rx_pending = 0;
	if (d->spec.has_mac)
		memcpy(n->mac, d->spec.mac, XVL_ETH_ALEN);
	else
		srv_net_default_mac(d->spec.name, n->mac);
	fill_config(d);
	if (d->spec.kind == XVL_BK_SWITCH)
		srv_sw_port_reset(d);
}

/* ------------------------------------------------------------ checksums */

static uint32_t csum_add(uint32_t sum, const uint8_t *p, uint32_t len)
{
	for (; len > 1; p += 2, len -= 2)
		sum += (uint32_t)p[0] << 8 | p[1];
	if (len)
		sum += (uint32_t)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* The field at csum_start + csum_offset holds the pseudo-header sum (the
 * driver's part); the device adds the bytes from csum_start on.  The
 * offsets were checked against len by xvl_net_frame_check. */
void srv_net_csum_fill(struct xvl_net_hdr *h, uint8_t *frame, uint32_t len)
{
	uint8_t *field = frame + h->csum_start + h->csum_offset;
	uint32_t sum = csum_add(0, frame + h->csum_start, len - h->csum_start);
	uint16_t v = (uint16_t)~sum;
	field[0] = (uint8_t)(v >> 8);
	field[1] = (uint8_t)v;
	h->flags = (uint8_t)((h->flags & ~XVL_NET_HDR_F_NEEDS_CSUM) | XVL_NET_HDR_F_DATA_VALID);
}

/* ------------------------------------------------------------ receive */

bool srv_net_rx_wanted(const struct srv_net *n, const uint8_t *dst)
{
	if (xvl_eth_is_broadcast(dst))
		return !n->rx.nobcast;
	if (xvl_eth_is_multicast(dst)) {
		if (n->rx.nomulti)
			return false;
		if (n->rx.promisc || n->rx.allmulti || !n->n_multi)
			return true;
		for (uint32_t i = 0; i < n->n_multi; i++)
			if (!memcmp(n->multi[i], dst, XVL_ETH_ALEN))
				return true;
		return false;
	}
	if (n->rx.nouni)
		return false;
	if (n->rx.promisc || n->rx.alluni || !memcmp(dst, n->mac, XVL_ETH_ALEN))
		return true;
	for (uint32_t i = 0; i < n->n_uni; i++)
		if (!memcmp(n->uni[i], dst, XVL_ETH_ALEN))
			return true;
	return false;
}

/* Does the receiver take h's offloads as they are?  NEEDS_CSUM is filled in by the caller. */
static bool rx_gso_ok(const struct srv_dev *d, const struct xvl_net_hdr *h)
{
	switch (h->gso_type & ~XVL_NET_HDR_GSO_ECN) {
	case XVL_NET_HDR_GSO_NONE: return true;
	case XVL_NET_HDR_GSO_TCPV4: return nfeat(d, XVL_NET_F_GUEST_TSO4);
	case XVL_NET_HDR_GSO_TCPV6: return nfeat(d, XVL_NET_F_GUEST_TSO6);
	default: return false;
	}
}

/* Where a frame is read from: pieces in order (header, private bytes, the chain's rest). */
struct frame_src {
	struct {
		const uint8_t *p;
		uint32_t len;
	} pc[SRV_MAX_SEGS + 4];
	unsigned n, i;
	uint32_t off;
};

static void src_add(struct frame_src *c, const void *p, uint64_t len)
{
	if (len && c->n < sizeof(c->pc) / sizeof(c->pc[0]))
		c->pc[c->n++] = (typeof(c->pc[0])){p, (uint32_t)len};
}

/* raw (the header to write) then f's bytes, each read once when copied. */
static void src_init(struct frame_src *c, const uint8_t *raw, const struct srv_net_frame *f)
{
	c->n = c->i = 0;
	c->off = 0;
	src_add(c, raw, XVL_NET_HDR_SIZE);
	src_add(c, f->priv, f->priv_len);
	if (!f->chain)
		return;
	uint64_t skip = f->rest_off;
	for (unsigned i = 0; i < f->chain->n_out; i++) {
		const struct xvl_seg *s = &f->chain->seg[i];
		if (skip >= s->len) {
			skip -= s->len;
			continue;
		}
		src_add(c, (const uint8_t *)s->ptr + skip, s->len - skip);
		skip = 0;
	}
}

/* Copy the next len bytes of the source to dst; false when the source ran out. */
static bool src_copy(struct frame_src *c, uint8_t *dst, uint32_t len)
{
	while (len) {
		if (c->i == c->n)
			return false;
		uint32_t left = c->pc[c->i].len - c->off;
		uint32_t take = left < len ? left : len;
		memcpy(dst, c->pc[c->i].p + c->off, take);
		dst += take;
		len -= take;
		c->off += take;
		if (c->off == c->pc[c->i].len) {
			c->i++;
			c->off = 0;
		}
	}
	return true;
}

void srv_net_frame_flatten(struct srv_net_frame *f)
{
	if (!f->chain)
		return;
	struct frame_src c;
	uint8_t raw[XVL_NET_HDR_SIZE] = {0};
	src_init(&c, raw, f);
	c.i = f->priv_len ? 2 : 1; /* past the header and the private bytes */
	src_copy(&c, f->priv + f->priv_len, f->len - f->priv_len);
	f->priv_len = f->len;
	f->chain = NULL;
}

/* Pop rx chains of q until they hold need bytes (one chain without MRG_RXBUF), their
 * segments kept in n->rx_seg.  Returns the chains taken (in n->rx_el), 0 when there are
 * not enough (every chain given back), -EIO when the device broke. */
static int rx_take(struct srv_queue *q, uint32_t need, bool mrg)
{
	struct srv_dev *d = q->dev;
	struct srv_net *n = d->net;
	unsigned nc = 0, used_segs = 0;
	uint64_t got = 0;

	while (got < need) {
		if (nc == (mrg ? NET_MAX_MRG : 1u) || SRV_NET_RX_SEGS - used_segs < SRV_MAX_SEGS + 2)
			goto give_back;
		struct xvl_vq_elem *e = &n->rx_el[nc];
		*e = (struct xvl_vq_elem){.seg = n->rx_seg + used_segs};
		int rc = xvl_vq_dev_pop(&q->vq, e, SRV_MAX_SEGS + 2);
		if (rc == 0)
			goto give_back;
		if (rc < 0) {
			srv_dev_break(d, rc, "queue %u: driver broke the ring rules (%s)", q->index,
				      rc == -E2BIG ? "chain too long" : "bad ring");
			return -EIO;
		}
		if (e->n_out) {
			srv_dev_break(d, -EPROTO, "queue %u: rx chain %u has device-readable buffers",
				      q->index, e->head);
			return -EIO;
		}
		used_segs += e->n_in;
		got += e->in_bytes;
		nc++;
	}
	if (n->rx_el[0].in_bytes < XVL_NET_HDR_SIZE)
		goto give_back;
	return (int)nc;
give_back:
	xvl_vq_dev_unpop(&q->vq, (uint16_t)nc);
	return 0;
}

/* Write hdr + frame into the nc chains rx_take took; their used entries are filled, not
 * published: srv_net_flush publishes them, the frame's all in one index update (a driver
 * must never see part of a merged frame: Linux's virtio_net counts it as missing buffers). */
static void rx_fill(struct srv_queue *q, unsigned nc, const uint8_t *hdr,
		    const struct srv_net_frame *f)
{
	struct srv_net *n = q->dev->net;
	uint32_t total = XVL_NET_HDR_SIZE + f->len, off = 0;
	struct frame_src c;

	src_init(&c, hdr, f);
	for (unsigned i = 0; i < nc; i++) {
		const struct xvl_vq_elem *e = &n->rx_el[i];
		uint32_t take = e->in_bytes < total - off ? (uint32_t)e->in_bytes : total - off;
		uint32_t left = take;
		for (unsigned k = 0; k < e->n_in && left; k++) {
			uint32_t chunk = e->seg[k].len < left ? e->seg[k].len : left;
			src_copy(&c, e->seg[k].ptr, chunk);
			left -= chunk;
		}
		xvl_vq_dev_fill(&q->vq, e->head, take);
		off += take;
	}
}

int srv_net_rx(struct srv_dev *d, uint16_t pair, struct xvl_net_hdr *h, uint8_t *frame,
	       uint32_t len)
{
	struct srv_net_frame f = {.h = *h, .priv = frame, .priv_len = len, .len = len};
	return srv_net_rx_frame(d, pair, &f);
}

int srv_net_rx_frame(struct srv_dev *d, uint16_t pair, struct srv_net_frame *f)
{
	struct srv_net *n = d->net;
	if (!srv_dev_running(d))
		return -ENOBUFS;
	if (pair >= n->active_pairs)
		pair = (uint16_t)(pair % n->active_pairs);
	struct srv_queue *q = &d->q[xvl_net_rxq(pair)];
	if (!q->enabled) {
		srv_net_drop(d, NET_DROP_RX_NOBUF, "rx queue %u is not enabled", q->index);
		return -ENOBUFS;
	}
	if (!rx_gso_ok(d, &f->h)) {
		srv_net_drop(d, NET_DROP_RX_OFFLOAD, "segmentation offload %u not negotiated by the "
			     "receiver", f->h.gso_type);
		return -EOPNOTSUPP;
	}
	uint32_t len = f->len;
	uint32_t max = f->h.gso_type ? SRV_NET_MAX_FRAME : n->mtu + XVL_ETH_HLEN + XVL_ETH_VLAN_LEN;
	if (len > max) {
		srv_net_drop(d, NET_DROP_RX_LONG, "%u bytes, the receiver takes %u", len, max);
		return -EMSGSIZE;
	}
	if ((f->h.flags & XVL_NET_HDR_F_NEEDS_CSUM) && !nfeat(d, XVL_NET_F_GUEST_CSUM)) {
		/* in the sender's copy: later receivers reuse it */
		srv_net_frame_flatten(f);
		srv_net_csum_fill(&f->h, f->priv, len);
	}
	struct xvl_net_hdr rh = f->h;
	if (!nfeat(d, XVL_NET_F_GUEST_CSUM))
		rh.flags &= (uint8_t)~XVL_NET_HDR_F_DATA_VALID;
	bool mrg = nfeat(d, XVL_NET_F_MRG_RXBUF);
	int nc = rx_take(q, XVL_NET_HDR_SIZE + len, mrg);
	if (nc < 0)
		return -ENOBUFS;
	if (nc == 0) {
		srv_net_drop(d, NET_DROP_RX_NOBUF, "no rx buffers for %u bytes on queue %u", len,
			     q->index);
		return -ENOBUFS;
	}
	rh.num_buffers = (uint16_t)nc;
	uint8_t raw[XVL_NET_HDR_SIZE];
	xvl_net_hdr_encode(&rh, raw);
	rx_fill(q, (unsigned)nc, raw, f);
	n->rx_pending |= 1u << pair;
	d->st_requests++;
	d->st_bytes += len;
	return 0;
}

/* Publish what the rx queues got so far, not notifying (that waits for the burst's end). */
static void rx_publish(struct srv *s)
{
	for (unsigned i = 0; i < s->n_devs; i++) {
		struct srv_net *n = s->dev[i].net;
		if (!n || !n->rx_pending)
			continue;
		for (uint16_t p = 0; p < n->max_pairs; p++)
			if (n->rx_pending & (1u << p))
				xvl_vq_dev_publish(&s->dev[i].q[xvl_net_rxq(p)].vq);
	}
}

void srv_net_flush(struct srv *s)
{
	for (unsigned i = 0; i < s->n_devs; i++) {
		struct srv_net *n = s->dev[i].net;
		if (!n || !n->rx_pending)
			continue;
		for (uint16_t p = 0; p < n->max_pairs; p++) {
			if (!(n->rx_pending & (1u << p)))
				continue;
			struct srv_queue *q = &s->dev[i].q[xvl_net_rxq(p)];
			xvl_vq_dev_publish(&q->vq); /* whole frames only: see rx_fill */
			srv_queue_notify(q);
		}
		n->rx_pending = 0;
	}
}

/* ------------------------------------------------------------ transmit */

static void tx_accept(const struct srv_dev *d, struct xvl_net_accept *a)
{
	const struct srv_net *n = d->net;
	bool tso = nfeat(d, XVL_NET_F_HOST_TSO4) || nfeat(d, XVL_NET_F_HOST_TSO6);
	*a = (struct xvl_net_accept){
		.max_frame = n->mtu + XVL_ETH_HLEN + XVL_ETH_VLAN_LEN,
		.max_gso_frame = tso ? SRV_NET_MAX_FRAME : n->mtu + XVL_ETH_HLEN + XVL_ETH_VLAN_LEN,
		.csum = nfeat(d, XVL_NET_F_CSUM),
		.tso4 = nfeat(d, XVL_NET_F_HOST_TSO4),
		.tso6 = nfeat(d, XVL_NET_F_HOST_TSO6),
		.max_buffers = 1,
	};
}

/* Copy the chain's readable bytes (at most cap) into dst; false when it holds more. */
static bool gather_all(const struct xvl_vq_elem *e, uint8_t *dst, uint64_t cap)
{
	if (e->out_bytes > cap)
		return false;
	for (unsigned i = 0; i < e->n_out; i++) {
		memcpy(dst, e->seg[i].ptr, e->seg[i].len);
		dst += e->seg[i].len;
	}
	return true;
}

/* Copy the chain's first len readable bytes (it holds at least that many) into dst. */
static void gather_head(const struct xvl_vq_elem *e, uint8_t *dst, uint32_t len)
{
	for (unsigned i = 0; i < e->n_out && len; i++) {
		uint32_t take = e->seg[i].len < len ? e->seg[i].len : len;
		memcpy(dst, e->seg[i].ptr, take);
		dst += take;
		len -= take;
	}
}

/* The frame's header and what decisions look at (addresses, type) are staged and checked;
 * the switch copies the rest from the window straight into the receiver. */
static void tx_to_switch(struct srv_dev *d, uint16_t pair, const struct xvl_vq_elem *e)
{
	struct srv_net *n = d->net;
	struct xvl_net_accept a;
	struct srv_net_frame f = {.priv = n->stage + XVL_NET_HDR_SIZE, .chain = e};

	f.len = (uint32_t)e->out_bytes - XVL_NET_HDR_SIZE;
	f.priv_len = f.len < XVL_ETH_HLEN ? f.len : XVL_ETH_HLEN;
	f.rest_off = XVL_NET_HDR_SIZE + f.priv_len;
	gather_head(e, n->stage, XVL_NET_HDR_SIZE + f.priv_len);
	xvl_net_hdr_decode(n->stage, &f.h);
	tx_accept(d, &a);
	enum xvl_net_verdict v = xvl_net_frame_check(&f.h, f.len, &a);
	if (v != XVL_NET_FRAME_OK) {
		srv_net_drop(d, NET_DROP_TX_BAD, "tx frame of %u bytes: %s", f.len,
			     xvl_net_verdict_name(v));
		return;
	}
	srv_sw_input(d, pair, &f);
}

/* tap takes the frame as one buffer: staged whole, checked, written. */
static void tx_to_tap(struct srv_dev *d, uint16_t pair, const struct xvl_vq_elem *e)
{
	struct srv_net *n = d->net;
	struct xvl_net_accept a;
	struct xvl_net_hdr h;
	uint32_t len = (uint32_t)e->out_bytes - XVL_NET_HDR_SIZE;

	gather_all(e, n->stage, SRV_NET_STAGE);
	xvl_net_hdr_decode(n->stage, &h);
	tx_accept(d, &a);
	enum xvl_net_verdict v = xvl_net_frame_check(&h, len, &a);
	if (v != XVL_NET_FRAME_OK) {
		srv_net_drop(d, NET_DROP_TX_BAD, "tx frame of %u bytes: %s", len,
			     xvl_net_verdict_name(v));
		return;
	}
	srv_tap_output(d, pair, n->stage, (uint32_t)e->out_bytes);
}

/* The used entry is filled; srv_net_queue_process publishes a batch of them at once. */
static void tx_one(struct srv_queue *q, const struct xvl_vq_elem *e)
{
	struct srv_dev *d = q->dev;
	uint16_t pair = (uint16_t)(q->index / 2);

	if (e->out_bytes > SRV_NET_STAGE) {
		srv_net_drop(d, NET_DROP_TX_BAD, "tx chain of %llu bytes, at most %u taken",
			     (unsigned long long)e->out_bytes, SRV_NET_STAGE);
	} else if (e->out_bytes < XVL_NET_HDR_SIZE) {
		srv_net_drop(d, NET_DROP_TX_BAD, "tx chain of %llu bytes has no virtio_net_hdr",
			     (unsigned long long)e->out_bytes);
	} else if (d->spec.kind == XVL_BK_TAP) {
		tx_to_tap(d, pair, e);
	} else {
		tx_to_switch(d, pair, e);
	}
	xvl_vq_dev_fill(&q->vq, e->head, 0);
}

/* ------------------------------------------------------------ control queue */

static uint8_t ctrl_apply(struct srv_dev *d, const struct xvl_net_ctrl *c)
{
	struct srv_net *n = d->net;
	switch (c->cls) {
	case XVL_NET_CTRL_RX:
		return xvl_net_rxmode_apply(&n->rx, c);
	case XVL_NET_CTRL_MAC:
		if (c->cmd == XVL_NET_CTRL_MAC_ADDR_SET) {
			if (xvl_eth_is_multicast(c->u.mac))
				return XVL_NET_ERR;
			if (d->spec.spoof && memcmp(c->u.mac, n->mac, XVL_ETH_ALEN)) {
				srv_log(d->srv, "device %s: MAC address change refused (spoof=on)",
					d->spec.name);
				return XVL_NET_ERR;
			}
			memcpy(n->mac, c->u.mac, XVL_ETH_ALEN);
			memcpy(d->config + XVL_NET_CFG_MAC, n->mac, XVL_ETH_ALEN);
			return XVL_NET_OK;
		}
		if (c->u.table.n_uni > SRV_NET_MAC_TABLE || c->u.table.n_multi > SRV_NET_MAC_TABLE)
			return XVL_NET_ERR;
		n->n_uni = c->u.table.n_uni;
		n->n_multi = c->u.table.n_multi;
		memcpy(n->uni, c->u.table.uni, (size_t)n->n_uni * XVL_ETH_ALEN);
		memcpy(n->multi, c->u.table.multi, (size_t)n->n_multi * XVL_ETH_ALEN);
		return XVL_NET_OK;
	case XVL_NET_CTRL_MQ:
		n->active_pairs = c->u.pairs; /* the parser bounded it by max_pairs */
		return XVL_NET_OK;
	default:
		return XVL_NET_ERR;
	}
}

static void ctrl_one(struct srv_queue *q, const struct xvl_vq_elem *e)
{
	struct srv_dev *d = q->dev;
	struct srv_net *n = d->net;
	uint8_t buf[NET_CTRL_MAX];

	const struct xvl_seg *last = e->n_in ? &e->seg[e->n_out + e->n_in - 1] : NULL;
	if (!last || last->len == 0) {
		srv_dev_break(d, -EPROTO, "control chain %u has no ack byte", e->head);
		return;
	}
	uint8_t ack = XVL_NET_ERR;
	struct xvl_net_ctrl_limits lim = {
		.max_pairs = n->max_pairs,
		.max_mac_table = SRV_NET_MAC_TABLE,
		.rx = nfeat(d, XVL_NET_F_CTRL_RX),
		.mac_addr = nfeat(d, XVL_NET_F_CTRL_MAC_ADDR),
		.mq = nfeat(d, XVL_NET_F_MQ),
	};
	struct xvl_net_ctrl c;
	if (gather_all(e, buf, sizeof(buf))) {
		int rc = xvl_net_ctrl_parse(buf, (uint32_t)e->out_bytes, &lim, &c);
		if (rc == 0)
			ack = ctrl_apply(d, &c);
		else
			srv_log(d->srv, "device %s: control command %u.%u refused: %s", d->spec.name,
				e->out_bytes > 0 ? buf[0] : 0, e->out_bytes > 1 ? buf[1] : 0,
				rc == -EOPNOTSUPP ? "not negotiated or unknown" : "malformed");
	} else {
		srv_log(d->srv, "device %s: control command of %llu bytes refused (at most %u)",
			d->spec.name, (unsigned long long)e->out_bytes, NET_CTRL_MAX);
	}
	xvl_store_relaxed((uint8_t *)last->ptr + last->len - 1, ack);
	xvl_vq_dev_push(&q->vq, e->head, 1);
}

/* ------------------------------------------------------------ queues */

static bool serve_one(struct srv_queue *q, const struct xvl_vq_elem *e)
{
	struct srv_dev *d = q->dev;
	if (q->index == xvl_net_ctrlq(d->net->max_pairs)) {
		ctrl_one(q, e);
		return srv_dev_running(d);
	}
	if (e->n_in) {
		srv_dev_break(d, -EPROTO, "queue %u: tx chain %u has device-writable buffers",
			      q->index, e->head);
		return false;
	}
	tx_one(q, e);
	return srv_dev_running(d);
}

bool srv_net_kick_unwanted(const struct srv_queue *q)
{
	const struct srv_dev *d = q->dev;
	return d->net && d->spec.kind == XVL_BK_SWITCH && q->index % 2 == 0 &&
	       q->index != xvl_net_ctrlq(d->net->max_pairs);
}

void srv_net_queue_process(struct srv_queue *q)
{
	struct srv_dev *d = q->dev;
	struct xvl_vq_elem e = {.seg = q->seg};
	unsigned budget = NET_BUDGET;

	q->more = false;
	if (q->index % 2 == 0 && q->index != xvl_net_ctrlq(d->net->max_pairs)) {
		/* rx: buffers were posted; only tap waits for them (the switch drops instead,
		 * so its drivers need not kick rx queues at all) */
		if (d->spec.kind == XVL_BK_TAP)
			srv_tap_rx_refilled(d, (uint16_t)(q->index / 2));
		else if (!q->poll && !q->vq.notify_off)
			xvl_vq_dev_disable_notify(&q->vq);
		return;
	}
	/* A polling pass over an armed, empty queue: one read, no stores to the shared ring
	 * (each would cost the driver a cache-line transfer) */
	if (!q->poll && !q->vq.notify_off && !xvl_vq_dev_has_avail(&q->vq))
		return;
	d->net->burst_ns = xvl_os_now_ns(); /* one clock read a burst: ageing counts minutes */
	for (;;) {
		if (!q->poll)
			xvl_vq_dev_disable_notify(&q->vq);
		while (budget && srv_dev_running(d)) {
			int rc = xvl_vq_dev_pop(&q->vq, &e, SRV_MAX_SEGS + 2);
			if (rc == 0)
				break;
			if (rc < 0) {
				srv_dev_break(d, rc, "queue %u: driver broke the ring rules (%s)",
					      q->index, rc == -E2BIG ? "chain too long" : "bad ring");
				break;
			}
			if (!serve_one(q, &e))
				break;
			if (--budget % NET_PUBLISH_EVERY == 0) {
				xvl_vq_dev_publish(&q->vq);
				rx_publish(d->srv);
			}
		}
		xvl_vq_dev_publish(&q->vq);
		srv_queue_notify(q);
		srv_net_flush(d->srv);
		if (!budget) {
			q->more = true;
			return;
		}
		if (q->poll || !srv_dev_running(d) || !xvl_vq_dev_enable_notify(&q->vq))
			return;
	}
}
