/* SPDX-License-Identifier: MIT */
/*
 * vhost-user-net bridge: what the server does as the frontend of a
 * type=net,backend=vhost-user device.  The rest of the bridge (session,
 * window as the backend's only memory, loss and return) is bridge.c's,
 * shared with blk.
 *
 * Split of the work, as QEMU's vhost-user-net frontend splits it:
 *   - the backend (DPDK's net_vhost, OVS-DPDK's dpdkvhostuser ports) serves
 *     the rx and tx rings of every queue pair, and nothing else: a
 *     vhost-user-net backend never sees the control queue (DPDK's vhost
 *     library parses one only for VDUSE, not for vhost-user);
 *   - the server makes the config space (MAC from the spec, STATUS, max
 *     queue pairs, MTU) and serves the control queue itself.  It is the one
 *     queue of a bridged device the server touches: a hostile driver's
 *     command is copied out and parsed by xvl_net_ctrl_parse (fuzzed);
 *   - multi-queue: every pair the driver set up is handed to the backend at
 *     DRIVER_OK, the pairs beyond VQ_PAIRS_SET disabled (SET_VRING_ENABLE 0);
 *     VQ_PAIRS_SET later turns pairs on and off with SET_VRING_ENABLE, sent
 *     without a reply asked and without blocking (the loop owns the socket);
 *   - MTU: offered when the backend offers VIRTIO_NET_F_MTU, the value from
 *     the spec (1500 without), told to the backend with NET_SET_MTU when it
 *     has that protocol feature;
 *   - rx mode and MAC table commands are answered OK and kept, not applied:
 *     frames go between the driver's rings and the backend without the
 *     server, so it cannot filter them (the backend, a switch, forwards by
 *     its own rules).  MAC ADDR_SET changes the config space's MAC.
 * Features offered: the backend's among those xvloop's drivers understand
 * (offloads, MRG_RXBUF, MTU, MQ), plus MAC, STATUS, CTRL_VQ, CTRL_RX and
 * CTRL_MAC_ADDR, which are the frontend's and not passed on to the backend
 * (srv_bridge_features).
 */
#include <errno.h>
#include <string.h>

#include "bridge.h"
#include "net.h"
#include "srv_net.h"
#include "virtio_net.h"
#include "xvl_atomic.h"

#define BRIDGE_NET_FEATURES                                                                      \
	((1ull << XVL_F_VERSION_1) | (1ull << XVL_F_INDIRECT_DESC) | (1ull << XVL_F_EVENT_IDX) |  \
	 (1ull << XVL_NET_F_MRG_RXBUF) | (1ull << XVL_NET_F_CSUM) | (1ull << XVL_NET_F_GUEST_CSUM) | \
	 (1ull << XVL_NET_F_HOST_TSO4) | (1ull << XVL_NET_F_HOST_TSO6) |                            \
	 (1ull << XVL_NET_F_GUEST_TSO4) | (1ull << XVL_NET_F_GUEST_TSO6) | (1ull << XVL_NET_F_MTU))
#define BRIDGE_NET_FRONTEND                                                                      \
	((1ull << XVL_NET_F_MAC) | (1ull << XVL_NET_F_STATUS) | (1ull << XVL_NET_F_CTRL_VQ) |     \
	 (1ull << XVL_NET_F_CTRL_RX) | (1ull << XVL_NET_F_CTRL_MAC_ADDR))
#define CTRL_BUDGET    64u  /* control commands per round */
#define CTRL_MAC_TABLE 64u  /* MAC table entries accepted (kept as counts only) */
#define CTRL_MAX       (2u + 8u + 2u * CTRL_MAC_TABLE * XVL_ETH_ALEN) /* command bytes */
#define CTRL_LOG       20u  /* control messages logged per device set-up */

static bool dfeat(const struct srv_dev *d, unsigned bit)
{
	return d->driver_features & (1ull << bit);
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void default_mac(const struct srv_dev *d, uint8_t mac[XVL_ETH_ALEN])
{
	if (d->spec.has_mac)
		memcpy(mac, d->spec.mac, XVL_ETH_ALEN);
	else
		srv_net_default_mac(d->spec.name, mac);
}

/* ------------------------------------------------------------ probe */

/* Queue pairs offered: the spec's queues= (1 without), within what the backend serves. */
static uint16_t probe_pairs(struct srv_dev *d, const struct xvl_vhost *v)
{
	uint16_t backend = (uint16_t)(v->num_queues / 2); /* rings, see bridge_job.c */
	uint16_t want = d->spec.queues ? d->spec.queues : 1;

	if (!(v->features & (1ull << XVL_NET_F_MQ)))
		backend = 1;
	if (want > backend) {
		srv_log(d->srv, "device %s: queues=%u asked, the vhost-user backend %s serves %u "
			"pair(s)%s", d->spec.name, want, d->spec.path, backend,
			v->features & (1ull << XVL_NET_F_MQ) ? "" : " (no VIRTIO_NET_F_MQ)");
		want = backend;
	}
	if (want > (XVL_MAX_QUEUES - 1) / 2)
		want = (XVL_MAX_QUEUES - 1) / 2;
	return want;
}

int srv_bridge_net_probe(struct srv_dev *d, const struct xvl_vhost *v, struct xvl_errbuf *eb)
{
	struct br_net *bn = &d->br->net;
	uint8_t *c = d->config;

	if (v->num_queues < 2)
		return xvl_err(eb, -EPROTO, "vhost-user backend %s: GET_QUEUE_NUM: %u ring(s), a "
			       "net backend needs an rx and a tx ring", d->spec.path, v->num_queues);
	uint16_t pairs = probe_pairs(d, v);
	uint64_t f = (v->features & BRIDGE_NET_FEATURES) | BRIDGE_NET_FRONTEND;
	if (pairs > 1)
		f |= 1ull << XVL_NET_F_MQ;
	if (d->spec.mtu && !(f & (1ull << XVL_NET_F_MTU)))
		srv_log(d->srv, "device %s: mtu=%u not offered: the vhost-user backend %s has no "
			"VIRTIO_NET_F_MTU", d->spec.name, d->spec.mtu, d->spec.path);
	bn->max_pairs = pairs;
	bn->mtu = d->spec.mtu ? d->spec.mtu : 1500;
	bn->active_pairs = 1;
	memset(c, 0, sizeof(d->config));
	default_mac(d, c + XVL_NET_CFG_MAC);
	put_le16(c + XVL_NET_CFG_STATUS, XVL_NET_S_LINK_UP); /* the backend answered */
	put_le16(c + XVL_NET_CFG_MAX_PAIRS, pairs);
	if (f & (1ull << XVL_NET_F_MTU))
		put_le16(c + XVL_NET_CFG_MTU, bn->mtu);
	memset(c + XVL_NET_CFG_SPEED, 0xff, 4); /* unknown */
	c[XVL_NET_CFG_DUPLEX] = 0xff;
	d->config_len = XVL_NET_CFG_SIZE;
	d->features = f;
	d->num_queues = (uint16_t)(2u * pairs + 1u); /* and the control queue */
	d->vh_probed = true;
	return 0;
}

uint64_t srv_bridge_features(const struct srv_dev *d)
{
	if (d->spec.type != XVL_DEV_NET)
		return d->driver_features;
	return d->driver_features & ~BRIDGE_NET_FRONTEND;
}

uint16_t srv_bridge_net_mtu(const struct srv_dev *d)
{
	if (d->spec.type != XVL_DEV_NET || !dfeat(d, XVL_NET_F_MTU))
		return 0;
	return d->br->net.mtu;
}

/* ------------------------------------------------------------ queues */

int srv_bridge_ctrlq(const struct srv_dev *d)
{
	if (d->spec.type != XVL_DEV_NET || !d->br || !dfeat(d, XVL_NET_F_CTRL_VQ))
		return -1;
	return xvl_net_ctrlq(dfeat(d, XVL_NET_F_MQ) ? d->br->net.max_pairs : 1);
}

bool srv_bridge_is_ctrlq(const struct srv_queue *q)
{
	return q->dev->spec.kind == XVL_BK_VHOST && srv_bridge_ctrlq(q->dev) == (int)q->index;
}

uint16_t srv_bridge_backend_queues(const struct srv_dev *d)
{
	if (d->spec.type != XVL_DEV_NET)
		return d->num_queues;
	return (uint16_t)(2u * (dfeat(d, XVL_NET_F_MQ) ? d->br->net.max_pairs : 1u));
}

bool srv_bridge_ring_start(struct srv_dev *d, uint16_t ring)
{
	struct br_net *bn = &d->br->net;

	if (d->spec.type != XVL_DEV_NET)
		return true;
	bool on = ring / 2u < bn->active_pairs;
	bn->given |= 1u << ring;
	if (on)
		bn->enabled |= 1u << ring;
	return on;
}

static void ctrl_log(struct srv_dev *d, const char *fmt, const char *a, unsigned b)
{
	struct br_net *bn = &d->br->net;

	if (bn->ctrl_cmds + bn->ctrl_refused > CTRL_LOG)
		return;
	srv_log(d->srv, fmt, d->spec.name, a, b);
}

/*
 * Tell the backend which of the rings it holds to serve: pairs below
 * active_pairs on, the others off.  Only while the session is up; a
 * session being started catches up when it is (srv_bridge_net_up).
 */
static int sync_rings(struct srv_dev *d)
{
	struct br_net *bn = &d->br->net;
	struct xvl_errbuf eb;

	if (d->br->state != BR_UP)
		return 0;
	for (uint16_t r = 0; r < XVL_MAX_QUEUES; r++) {
		uint32_t bit = 1u << r;
		bool want = r / 2u < bn->active_pairs;
		if (!(bn->given & bit) || want == !!(bn->enabled & bit))
			continue;
		int rc = xvl_vhost_vring_enable_nowait(&d->vh, r, want, &eb);
		if (rc < 0) {
			srv_log(d->srv, "device %s: %s", d->spec.name, eb.msg);
			srv_bridge_lost(d); /* the connection was dropped: as if the backend went */
			return rc;
		}
		bn->enabled ^= bit;
	}
	return 0;
}

void srv_bridge_net_up(struct srv_dev *d)
{
	if (d->spec.type == XVL_DEV_NET)
		sync_rings(d);
}

void srv_bridge_net_reset(struct srv_dev *d)
{
	struct br_net *bn = &d->br->net;

	if (d->spec.type != XVL_DEV_NET)
		return;
	bn->active_pairs = 1;
	bn->given = bn->enabled = 0;
	xvl_net_rxmode_reset(&bn->rx);
	bn->n_uni = bn->n_multi = 0;
	bn->ctrl_cmds = bn->ctrl_refused = 0;
	if (d->vh_probed)
		default_mac(d, d->config + XVL_NET_CFG_MAC);
}

/* ------------------------------------------------------------ control queue */

static uint8_t ctrl_apply(struct srv_dev *d, const struct xvl_net_ctrl *c)
{
	struct br_net *bn = &d->br->net;

	switch (c->cls) {
	case XVL_NET_CTRL_RX:
		return xvl_net_rxmode_apply(&bn->rx, c);
	case XVL_NET_CTRL_MAC:
		if (c->cmd == XVL_NET_CTRL_MAC_ADDR_SET) {
			if (xvl_eth_is_multicast(c->u.mac))
				return XVL_NET_ERR;
			memcpy(d->config + XVL_NET_CFG_MAC, c->u.mac, XVL_ETH_ALEN);
			return XVL_NET_OK;
		}
		bn->n_uni = c->u.table.n_uni;
		bn->n_multi = c->u.table.n_multi;
		return XVL_NET_OK;
	case XVL_NET_CTRL_MQ: {
		uint16_t old = bn->active_pairs;
		bn->active_pairs = c->u.pairs; /* the parser bounded it by max_pairs */
		if (old != c->u.pairs)
			ctrl_log(d, "device %s: %s %u queue pair(s) (VQ_PAIRS_SET)",
				 d->br->state == BR_UP ? "the backend serves" : "will serve",
				 c->u.pairs);
		return sync_rings(d) < 0 ? XVL_NET_ERR : XVL_NET_OK;
	}
	default:
		return XVL_NET_ERR;
	}
}

/* Copy the chain's device-readable bytes into buf; false when there are more than cap. */
static bool gather(const struct xvl_vq_elem *e, uint8_t *buf, uint32_t cap)
{
	if (e->out_bytes > cap)
		return false;
	for (unsigned i = 0; i < e->n_out; i++) {
		memcpy(buf, e->seg[i].ptr, e->seg[i].len);
		buf += e->seg[i].len;
	}
	return true;
}

/* One command: the chain is class, command, data (readable), then the ack byte (writable). */
static void ctrl_one(struct srv_queue *q, const struct xvl_vq_elem *e)
{
	struct srv_dev *d = q->dev;
	struct br_net *bn = &d->br->net;
	const struct xvl_seg *ack_seg = e->n_in ? &e->seg[e->n_out] : NULL;
	uint8_t buf[CTRL_MAX], ack = XVL_NET_ERR;
	struct xvl_net_ctrl c;
	const struct xvl_net_ctrl_limits lim = {
		.max_pairs = bn->max_pairs,
		.max_mac_table = CTRL_MAC_TABLE,
		.rx = dfeat(d, XVL_NET_F_CTRL_RX),
		.mac_addr = dfeat(d, XVL_NET_F_CTRL_MAC_ADDR),
		.mq = dfeat(d, XVL_NET_F_MQ),
	};

	if (!ack_seg || ack_seg->len == 0) {
		srv_dev_break(d, -EPROTO, "control chain %u has no ack byte", e->head);
		return;
	}
	if (!gather(e, buf, sizeof(buf))) {
		ctrl_log(d, "device %s: control command refused: %s %u bytes", "more than",
			 CTRL_MAX);
	} else {
		int rc = xvl_net_ctrl_parse(buf, (uint32_t)e->out_bytes, &lim, &c);
		if (rc == 0)
			ack = ctrl_apply(d, &c);
		else
			ctrl_log(d, "device %s: control command refused: %s (class %u)",
				 rc == -EOPNOTSUPP ? "not negotiated or unknown" : "malformed",
				 e->out_bytes ? buf[0] : 0);
	}
	if (ack == XVL_NET_OK)
		bn->ctrl_cmds++;
	else
		bn->ctrl_refused++;
	xvl_store_relaxed((uint8_t *)ack_seg->ptr, ack);
	xvl_vq_dev_push(&q->vq, e->head, 1);
	d->st_requests++;
}

void srv_bridge_net_ctrl(struct srv_queue *q)
{
	struct srv_dev *d = q->dev;
	struct xvl_vq_elem e = {.seg = q->seg};
	unsigned budget = CTRL_BUDGET;

	q->more = false;
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
			ctrl_one(q, &e);
			budget--;
		}
		srv_queue_notify(q);
		if (!budget) {
			q->more = true;
			return;
		}
		if (q->poll || !srv_dev_running(d) || !xvl_vq_dev_enable_notify(&q->vq))
			return;
	}
}

/* ------------------------------------------------------------ link */

void srv_bridge_net_link(struct srv_dev *d, bool up)
{
	if (d->spec.type != XVL_DEV_NET)
		return;
	/* going down: clear LINK_UP; coming back: the probe has set it again already */
	if (!up)
		put_le16(d->config + XVL_NET_CFG_STATUS, 0);
	srv_log(d->srv, "device %s: link %s", d->spec.name, up ? "up" : "down");
	if (d->conn)
		srv_dev_event(d, XVL_EVENT_CONFIG, 0, up ? "link up" : "link down");
}
