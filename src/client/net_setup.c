/* SPDX-License-Identifier: MIT */
/*
 * virtio-net driver, set-up: opening a device (feature negotiation, the
 * config space, the queues' window memory and rings, the control queue,
 * the number of queue pairs), the link state, and closing it.
 *
 * Config values come from the device and are checked before use: a MAC
 * that is multicast, an MTU below 68, a max_virtqueue_pairs of 0 or beyond
 * the queues the device has are refused at open.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net_int.h"
#include "opts.h"

#define NET_OFFLOADS                                                                             \
	((1ull << XVL_NET_F_CSUM) | (1ull << XVL_NET_F_GUEST_CSUM) |                              \
	 (1ull << XVL_NET_F_HOST_TSO4) | (1ull << XVL_NET_F_HOST_TSO6) |                          \
	 (1ull << XVL_NET_F_GUEST_TSO4) | (1ull << XVL_NET_F_GUEST_TSO6))
#define NET_CTRL_FEATURES                                                                        \
	((1ull << XVL_NET_F_CTRL_VQ) | (1ull << XVL_NET_F_CTRL_RX) |                             \
	 (1ull << XVL_NET_F_CTRL_MAC_ADDR) | (1ull << XVL_NET_F_MQ))
/* Features this driver understands. */
#define NET_DRIVER_FEATURES                                                                      \
	((1ull << XVL_F_VERSION_1) | (1ull << XVL_F_INDIRECT_DESC) | (1ull << XVL_F_EVENT_IDX) |  \
	 (1ull << XVL_NET_F_MAC) | (1ull << XVL_NET_F_MTU) | (1ull << XVL_NET_F_STATUS) |         \
	 (1ull << XVL_NET_F_MRG_RXBUF) | NET_OFFLOADS | NET_CTRL_FEATURES)

#define NET_MTU_MIN      68u
#define NET_MTU_DEFAULT  1500u
#define NET_CTRL_QSIZE   16u
#define NET_CTRL_DATA    64u     /* bytes of command data this driver sends at most */
#define NET_CTRL_TIMEOUT_MS 2000

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

/* ------------------------------------------------------------ negotiation */

/*
 * Drop what the offered set cannot support: the spec's feature
 * dependencies (5.1.3.1), and what this driver cannot use with this device.
 */
static uint64_t net_want(const struct xvl_net_opts *o, uint64_t offered, unsigned num_queues)
{
	uint64_t f = offered & NET_DRIVER_FEATURES;
	if (o->no_offloads)
		f &= ~NET_OFFLOADS;
	if (o->no_mrg_rxbuf)
		f &= ~(1ull << XVL_NET_F_MRG_RXBUF);
	if (!net_has(f, XVL_NET_F_CSUM))
		f &= ~((1ull << XVL_NET_F_HOST_TSO4) | (1ull << XVL_NET_F_HOST_TSO6));
	/* Without mergeable buffers every receive buffer would need 64 KiB for TSO: not taken. */
	if (!net_has(f, XVL_NET_F_GUEST_CSUM) || !net_has(f, XVL_NET_F_MRG_RXBUF))
		f &= ~((1ull << XVL_NET_F_GUEST_TSO4) | (1ull << XVL_NET_F_GUEST_TSO6));
	if (num_queues < 3) /* no room for a control queue after pair 0 */
		f &= ~(1ull << XVL_NET_F_CTRL_VQ);
	if (!net_has(f, XVL_NET_F_CTRL_VQ))
		f &= ~NET_CTRL_FEATURES;
	return f;
}

int net_negotiate(struct xvl_net *n, uint64_t offered)
{
	const struct xvl_dev_desc *d = &n->c->dev[n->dev];
	if (!net_has(offered, XVL_F_VERSION_1))
		return xvl_err(&n->c->eb, -EPROTONOSUPPORT,
			       "device %u does not offer VIRTIO_F_VERSION_1", n->dev);
	n->info.features = net_want(&n->opts, offered, d->num_queues);
	n->offered = offered;
	int rc = xvl_dev_set_status(n->c, n->dev, XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER);
	if (rc == 0)
		rc = xvl_dev_set_features(n->c, n->dev, n->info.features);
	if (rc == 0)
		rc = xvl_dev_set_status(n->c, n->dev,
					XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER |
						XVL_STATUS_FEATURES_OK);
	return rc;
}

/* ------------------------------------------------------------ config */

static int config_u16(struct xvl_net *n, uint32_t off, uint16_t *v)
{
	uint8_t raw[2];
	int rc = xvl_dev_get_config(n->c, n->dev, off, raw, 2);
	*v = (uint16_t)(raw[0] | raw[1] << 8);
	return rc;
}

/* A locally administered unicast address when the device gives none. */
static void make_mac(struct xvl_net *n, uint8_t *mac)
{
	uint64_t t = xvl_os_now_ns() ^ ((uint64_t)getpid() << 20) ^ n->dev;
	mac[0] = 0x02;
	for (int i = 1; i < 6; i++)
		mac[i] = (uint8_t)(t >> (8 * i));
}

static int read_config(struct xvl_net *n)
{
	struct xvl_net_info *in = &n->info;
	const struct xvl_dev_desc *d = &n->c->dev[n->dev];
	uint16_t v = 0;
	int rc = 0;

	if (net_has(in->features, XVL_NET_F_MAC)) {
		rc = xvl_dev_get_config(n->c, n->dev, XVL_NET_CFG_MAC, in->mac, XVL_ETH_ALEN);
		if (rc < 0)
			return rc;
		if (xvl_eth_is_multicast(in->mac))
			return xvl_err(&n->c->eb, -EPROTO,
				       "device %u gives a multicast MAC address %02x:%02x:...", n->dev,
				       in->mac[0], in->mac[1]);
	} else {
		make_mac(n, in->mac);
	}
	in->mtu = NET_MTU_DEFAULT;
	if (net_has(in->features, XVL_NET_F_MTU)) {
		if ((rc = config_u16(n, XVL_NET_CFG_MTU, &v)) < 0)
			return rc;
		if (v < NET_MTU_MIN)
			return xvl_err(&n->c->eb, -EPROTO, "device %u gives an MTU of %u (below %u)",
				       n->dev, v, NET_MTU_MIN);
		in->mtu = v;
	}
	in->max_pairs = 1;
	if (net_has(in->features, XVL_NET_F_MQ)) {
		if ((rc = config_u16(n, XVL_NET_CFG_MAX_PAIRS, &v)) < 0)
			return rc;
		if (v < XVL_NET_MQ_PAIRS_MIN || v > XVL_NET_MQ_PAIRS_MAX ||
		    2u * v + 1u > d->num_queues)
			return xvl_err(&n->c->eb, -EPROTO,
				       "device %u offers %u queue pairs but %u queues (at most %u "
				       "are usable here)",
				       n->dev, v, d->num_queues, XVL_MAX_QUEUES);
		in->max_pairs = v;
	}
	in->link_up = true;
	if (net_has(in->features, XVL_NET_F_STATUS)) {
		if ((rc = config_u16(n, XVL_NET_CFG_STATUS, &v)) < 0)
			return rc;
		in->link_up = v & XVL_NET_S_LINK_UP;
	}
	return 0;
}

/* What a received frame may look like, from what was negotiated (net.h). */
static void set_accept(struct xvl_net *n, uint16_t num)
{
	uint64_t f = n->info.features;
	bool mrg = net_has(f, XVL_NET_F_MRG_RXBUF);
	n->accept = (struct xvl_net_accept){
		.max_frame = n->info.mtu + XVL_ETH_HLEN + XVL_ETH_VLAN_LEN,
		.max_gso_frame = NET_MAX_GSO_FRAME,
		.csum = net_has(f, XVL_NET_F_GUEST_CSUM),
		.tso4 = net_has(f, XVL_NET_F_GUEST_TSO4),
		.tso6 = net_has(f, XVL_NET_F_GUEST_TSO6),
		.max_buffers = mrg ? num : 1,
		.check_buffers = true,
	};
	n->info.csum = net_has(f, XVL_NET_F_CSUM);
	n->info.tso = net_has(f, XVL_NET_F_HOST_TSO4) && net_has(f, XVL_NET_F_HOST_TSO6);
	n->info.rx_csum = n->accept.csum;
	n->info.rx_tso = n->accept.tso4 || n->accept.tso6;
	n->info.ctrl = net_has(f, XVL_NET_F_CTRL_VQ);
	uint32_t whole = (uint32_t)align_up(XVL_NET_HDR_SIZE + n->accept.max_frame, 64);
	n->info.rx_buf_size = mrg && whole < NET_MRG_BUF_SIZE ? NET_MRG_BUF_SIZE : whole;
}

/* ------------------------------------------------------------ queues */

static int queue_alloc(struct xvl_net *n, struct net_queue *q, enum net_qkind k, uint16_t num)
{
	bool indirect = k == Q_TX && net_has(n->info.features, XVL_F_INDIRECT_DESC);
	uint32_t bsz = k == Q_RX   ? n->info.rx_buf_size
		       : k == Q_TX ? (uint32_t)align_up(XVL_NET_HDR_SIZE + n->accept.max_frame, 64)
				   : (uint32_t)align_up(2 + NET_CTRL_DATA + 1, 64);
	uint64_t avail = align_up(xvl_vq_desc_bytes(num), 64);
	uint64_t used = align_up(avail + xvl_vq_avail_bytes(num), 64);
	uint64_t ind = align_up(used + xvl_vq_used_bytes(num), 64);
	uint64_t bufs = align_up(ind + (indirect ? 32ull * num : 0), 64);
	uint64_t total = bufs + (uint64_t)bsz * (k == Q_CTRL ? 1 : num);

	q->num = num;
	q->buf_size = bsz;
	q->area = xvl_client_heap_alloc(n->c, total);
	q->vq_priv = calloc(1, xvl_vq_drv_priv_size(num));
	bool ok = q->area && q->vq_priv;
	if (k == Q_TX) {
		q->ts = calloc(num, sizeof(*q->ts));
		q->free_slot = calloc(num, sizeof(*q->free_slot));
		q->done = calloc(num, sizeof(*q->done));
		ok = ok && q->ts && q->free_slot && q->done;
	} else if (k == Q_RX) {
		q->lent = calloc(num, sizeof(*q->lent));
		q->unposted = calloc(num, sizeof(*q->unposted));
		q->merge = malloc(NET_MERGE_BYTES);
		ok = ok && q->lent && q->unposted && q->merge;
	}
	if (!ok)
		return xvl_err(&n->c->eb, -ENOMEM,
			       "no room for a queue of %u entries (%llu bytes) in the window; "
			       "use a bigger window or smaller queues",
			       num, (unsigned long long)total);
	q->layout = (struct xvl_vq_layout){.num = num, .desc = q->area,
					   .avail = q->area + avail, .used = q->area + used};
	q->ind_off = indirect ? q->area + ind : 0;
	q->bufs_off = q->area + bufs;
	for (uint16_t i = 0; k != Q_CTRL && i < num; i++) {
		if (k == Q_TX)
			q->free_slot[i] = (uint16_t)(num - 1 - i);
		else
			q->unposted[i] = (uint16_t)(num - 1 - i);
	}
	q->n_free = k == Q_TX ? num : 0;
	q->n_unposted = k == Q_RX ? num : 0;
	if (!(n->poll && k != Q_CTRL)) {
		q->kick_fd = xvl_os_eventfd();
		q->call_fd = xvl_os_eventfd();
		if (q->kick_fd < 0 || q->call_fd < 0)
			return xvl_err(&n->c->eb, -errno, "eventfd: %s", strerror(errno));
	}
	return 0;
}

int net_queue_rings(struct xvl_net *n, struct net_queue *q, enum net_qkind k, uint16_t qi)
{
	int rc = xvl_vq_drv_init(&q->vq, &n->c->win.mem, &q->layout,
				 net_has(n->info.features, XVL_F_EVENT_IDX), q->ind_off,
				 q->ind_off ? 2 : 0, q->vq_priv);
	if (rc < 0)
		return xvl_err(&n->c->eb, rc, "cannot set up the rings of queue %u", qi);
	q->len_clamped_seen = 0;
	if ((n->poll && k != Q_CTRL) || k == Q_TX) /* transmit completions are reaped, not awaited */
		xvl_vq_drv_disable_cb(&q->vq);
	xvl_win_record(&n->c->win.mem, XVL_WIN_DESC, (uint16_t)n->dev, qi, q->layout.desc,
		       xvl_vq_desc_bytes(q->num));
	struct xvl_queue_setup qs = {.queue = qi, .layout = q->layout, .kick_fd = q->kick_fd,
				     .call_fd = q->call_fd, .poll = n->poll && k != Q_CTRL};
	return xvl_dev_setup_queue(n->c, n->dev, &qs);
}

static int queue_start(struct xvl_net *n, struct net_queue *q, enum net_qkind k, uint16_t qi,
		       uint16_t num)
{
	int rc = queue_alloc(n, q, k, num);
	return rc < 0 ? rc : net_queue_rings(n, q, k, qi);
}

/* At close the device has been detached (or is gone). */
static void queue_free(struct xvl_net *n, struct net_queue *q)
{
	for (unsigned i = 0; q->ts && i < q->num; i++)
		xvl_client_heap_free(n->c, q->ts[i].bounce);
	xvl_client_heap_free(n->c, q->area);
	if (q->kick_fd >= 0)
		close(q->kick_fd);
	if (q->call_fd >= 0)
		close(q->call_fd);
	free(q->vq_priv);
	free(q->ts);
	free(q->free_slot);
	free(q->done);
	free(q->lent);
	free(q->unposted);
	free(q->merge);
	if (q->lock_init)
		pthread_mutex_destroy(&q->lock);
	memset(q, 0, sizeof(*q));
	q->kick_fd = q->call_fd = -1;
}

int net_rx_refill(struct xvl_net *n, struct net_queue *q)
{
	unsigned added = 0;
	while (q->n_unposted) {
		uint16_t b = q->unposted[q->n_unposted - 1];
		struct xvl_sg sg = {.off = q->bufs_off + (uint64_t)b * q->buf_size, .len = q->buf_size};
		int rc = xvl_vq_drv_stage(&q->vq, &sg, 0, 1, b); /* published by net_queue_kick */
		if (rc < 0) {
			if (rc == -EIO)
				xvl_net_mark_broken(n, -EPROTO, "device broke the receive ring");
			break;
		}
		q->n_unposted--;
		added++;
	}
	if (added)
		net_queue_kick(q);
	return net_broken(n) ? -ENODEV : 0;
}

/* ------------------------------------------------------------ control queue */

/* Wait for the control queue's one command to come back. */
static int ctrl_wait(struct xvl_net *n, uint32_t *len)
{
	struct net_queue *q = &n->ctrl;
	uint64_t end = xvl_os_now_ns() + NET_CTRL_TIMEOUT_MS * 1000000ull;
	for (;;) {
		uint64_t token;
		int rc = xvl_vq_drv_get_used(&q->vq, &token, len);
		if (rc < 0 || (rc == 1 && token != 0)) {
			xvl_net_mark_broken(n, -EPROTO, "device broke the control queue's ring");
			return -ENODEV;
		}
		if (rc == 1)
			return 0;
		if (net_broken(n))
			return -ENODEV;
		if (xvl_os_now_ns() >= end)
			return xvl_err(&n->c->eb, -ETIMEDOUT,
				       "device did not answer a control command within %d ms",
				       NET_CTRL_TIMEOUT_MS);
		struct pollfd p = {.fd = q->call_fd, .events = POLLIN};
		if (!xvl_vq_drv_enable_cb(&q->vq) && poll(&p, 1, 10) > 0)
			xvl_os_eventfd_drain(q->call_fd);
		xvl_client_poll_link(n->c);
	}
}

/*
 * Send one control command and wait for its ack: 0, -EIO when the device
 * said no, -EOPNOTSUPP without a control queue.
 */
int net_ctrl_command_locked(struct xvl_net *n, uint8_t cls, uint8_t cmd, const void *data,
			    uint32_t len)
{
	struct net_queue *q = &n->ctrl;
	if (!n->info.ctrl || !q->area)
		return -EOPNOTSUPP;
	if (len > NET_CTRL_DATA)
		return -EINVAL;
	if (net_broken(n))
		return -ENODEV;
	uint8_t *p = n->c->win.mem.base + q->bufs_off;
	p[0] = cls;
	p[1] = cmd;
	memcpy(p + 2, data, len);
	xvl_store_relaxed(&p[2 + len], (uint8_t)0xff);
	struct xvl_sg sg[2] = {{.off = q->bufs_off, .len = 2 + len},
			       {.off = q->bufs_off + 2 + len, .len = 1}};
	int rc = xvl_vq_drv_add(&q->vq, sg, 1, 1, 0);
	uint32_t used_len = 0;
	if (rc == 0) {
		net_queue_kick(q);
		rc = ctrl_wait(n, &used_len);
	} else {
		rc = rc == -EIO ? -ENODEV : rc;
	}
	if (rc == 0) {
		uint8_t ack = xvl_load_relaxed(&p[2 + len]);
		rc = used_len >= 1 && ack == XVL_NET_OK ? 0 : -EIO;
	}
	return rc;
}

int net_ctrl_command(struct xvl_net *n, uint8_t cls, uint8_t cmd, const void *data, uint32_t len)
{
	if (net_needs_recovery(n))
		net_recover(n);
	pthread_mutex_lock(&n->ctrl.lock);
	int rc = net_ctrl_command_locked(n, cls, cmd, data, len);
	pthread_mutex_unlock(&n->ctrl.lock);
	return rc;
}

int xvl_net_set_promisc(struct xvl_net *n, bool on)
{
	if (!net_has(n->info.features, XVL_NET_F_CTRL_RX))
		return -EOPNOTSUPP;
	uint8_t v = on;
	return net_ctrl_command(n, XVL_NET_CTRL_RX, XVL_NET_CTRL_RX_PROMISC, &v, 1);
}

int xvl_net_set_mac(struct xvl_net *n, const uint8_t mac[6])
{
	if (!net_has(n->info.features, XVL_NET_F_CTRL_MAC_ADDR))
		return -EOPNOTSUPP;
	if (xvl_eth_is_multicast(mac))
		return -EINVAL;
	int rc = net_ctrl_command(n, XVL_NET_CTRL_MAC, XVL_NET_CTRL_MAC_ADDR_SET, mac, 6);
	if (rc == 0)
		memcpy(n->info.mac, mac, 6);
	return rc;
}

int net_set_pairs(struct xvl_net *n, uint16_t pairs)
{
	uint8_t raw[2] = {(uint8_t)pairs, (uint8_t)(pairs >> 8)};
	int rc = net_ctrl_command_locked(n, XVL_NET_CTRL_MQ, XVL_NET_CTRL_MQ_VQ_PAIRS_SET, raw, 2);
	if (rc < 0)
		return xvl_err(&n->c->eb, rc, "device refused %u queue pairs (VQ_PAIRS_SET)", pairs);
	return 0;
}

/* ------------------------------------------------------------ link state */

void xvl_net_mark_broken(struct xvl_net *n, int reason, const char *why)
{
	if (net_broken(n))
		return;
	n->broken_reason = reason;
	snprintf(n->broken_msg, sizeof(n->broken_msg), "%s", why ? why : "device broken");
	xvl_store_release(&n->broken, true);
	for (unsigned p = 0; p < XVL_NET_MAX_PAIRS; p++) /* wake sleepers */
		if (n->rx[p].call_fd >= 0)
			xvl_os_eventfd_signal(n->rx[p].call_fd);
}

void xvl_net_config_changed(struct xvl_net *n)
{
	xvl_store_release(&n->config_changed, true);
	for (unsigned p = 0; p < XVL_NET_MAX_PAIRS; p++)
		if (n->rx[p].call_fd >= 0)
			xvl_os_eventfd_signal(n->rx[p].call_fd);
}

int xvl_net_link_status(struct xvl_net *n)
{
	xvl_client_poll_link(n->c);
	if (net_needs_recovery(n))
		net_recover(n);
	if (net_broken(n))
		return -ENODEV;
	pthread_mutex_lock(&n->state_lock);
	if (xvl_load_acquire(&n->config_changed) && net_has(n->info.features, XVL_NET_F_STATUS)) {
		uint16_t v;
		xvl_store_release(&n->config_changed, false);
		if (config_u16(n, XVL_NET_CFG_STATUS, &v) == 0)
			n->info.link_up = v & XVL_NET_S_LINK_UP;
	}
	int up = n->info.link_up;
	pthread_mutex_unlock(&n->state_lock);
	return net_broken(n) ? -ENODEV : up;
}

/* ------------------------------------------------------------ open, close */

static int pick_device(struct xvl_client *c, int want)
{
	if (want >= 0) {
		if ((unsigned)want >= c->n_dev)
			return xvl_err(&c->eb, -ENODEV, "no device %d (the peer has %u)", want, c->n_dev);
		if (c->dev[want].virtio_id != XVL_VIRTIO_ID_NET)
			return xvl_err(&c->eb, -ENODEV, "device %d (%s) is not a net device", want,
				       c->dev[want].name);
		return want;
	}
	for (unsigned i = 0; i < c->n_dev; i++)
		if (c->dev[i].virtio_id == XVL_VIRTIO_ID_NET)
			return (int)i;
	return xvl_err(&c->eb, -ENODEV, "the peer has no net device");
}

static int start_queues(struct xvl_net *n, uint16_t qsize)
{
	struct xvl_net_info *in = &n->info;
	uint16_t pairs = n->opts.pairs ? n->opts.pairs : 1;
	if (pairs > in->max_pairs)
		pairs = in->max_pairs;
	if (pairs > XVL_NET_MAX_PAIRS)
		pairs = XVL_NET_MAX_PAIRS;
	int rc = 0;
	for (uint16_t p = 0; p < pairs && rc == 0; p++) {
		rc = queue_start(n, &n->rx[p], Q_RX, xvl_net_rxq(p), qsize);
		if (rc == 0)
			rc = queue_start(n, &n->tx[p], Q_TX, xvl_net_txq(p), qsize);
		if (rc == 0)
			in->pairs = (uint16_t)(p + 1);
	}
	n->ctrl_index = xvl_net_ctrlq(net_has(in->features, XVL_NET_F_MQ) ? in->max_pairs : 1);
	if (rc == 0 && in->ctrl) {
		uint16_t cs = qsize < NET_CTRL_QSIZE ? qsize : NET_CTRL_QSIZE;
		rc = queue_start(n, &n->ctrl, Q_CTRL, n->ctrl_index, cs);
	}
	n->nq = (uint16_t)(in->ctrl ? n->ctrl_index + 1 : 2 * in->pairs);
	return rc;
}

static int open_device(struct xvl_net *n, const struct xvl_net_opts *o)
{
	const struct xvl_dev_desc *d = &n->c->dev[n->dev];
	uint16_t qsize = o->queue_size ? o->queue_size : NET_DEFAULT_QUEUE_SIZE;
	if (qsize > d->max_queue_size)
		qsize = d->max_queue_size;
	if (qsize < 2 || qsize > XVL_VQ_MAX_SIZE || (qsize & (qsize - 1)))
		return xvl_err(&n->c->eb, -EINVAL, "queue size %u is not a power of two in 2..%u",
			       qsize, XVL_VQ_MAX_SIZE);
	if (n->c->mode != XVL_MODE_LINK)
		return xvl_err(&n->c->eb, -EOPNOTSUPP,
			       "net devices are served through an xvloop server (xvl:PATH), "
			       "not a direct vhost-user connection");
	if (d->num_queues < 2)
		return xvl_err(&n->c->eb, -EPROTO, "net device %u has %u queue(s), needs 2", n->dev,
			       d->num_queues);
	n->opts = *o;
	int rc = xvl_dev_attach(n->c, n->dev);
	if (rc == 0)
		rc = net_negotiate(n, d->features);
	if (rc == 0)
		rc = read_config(n);
	if (rc < 0)
		return rc;
	set_accept(n, qsize);
	n->info.queue_size = qsize;
	snprintf(n->info.name, sizeof(n->info.name), "%s", d->name);
	rc = start_queues(n, qsize);
	if (rc == 0)
		rc = xvl_dev_set_status(n->c, n->dev,
					XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER |
						XVL_STATUS_FEATURES_OK | XVL_STATUS_DRIVER_OK);
	if (rc == 0 && n->info.pairs > 1)
		rc = net_set_pairs(n, n->info.pairs);
	if (rc == 0 && o->promisc)
		rc = xvl_net_set_promisc(n, true);
	for (uint16_t p = 0; p < n->info.pairs && rc == 0; p++)
		rc = net_rx_refill(n, &n->rx[p]);
	return rc;
}

static void init_queue(struct net_queue *q)
{
	q->kick_fd = q->call_fd = -1;
	pthread_mutex_init(&q->lock, NULL);
	q->lock_init = true;
}

int xvl_net_open(struct xvl_client *c, const struct xvl_net_opts *o, struct xvl_net **out)
{
	static const struct xvl_net_opts defaults = {XVL_NET_OPTS_INIT, .device = -1};
	struct xvl_net_opts own;
	char bad[256];
	*out = NULL;
	if (o && xvl_opts_take(&own, sizeof(own), o, sizeof(own), "struct xvl_net_opts", bad,
			       sizeof(bad)) < 0)
		return xvl_err(&c->eb, -EINVAL, "%s", bad);
	o = o ? &own : &defaults;
	int dev = pick_device(c, o->device);
	if (dev < 0)
		return dev;
	if (c->open[dev] || c->open_net[dev])
		return xvl_err(&c->eb, -EBUSY, "device %d is already open on this client", dev);
	struct xvl_net *n = calloc(1, sizeof(*n));
	if (!n)
		return xvl_err(&c->eb, -ENOMEM, "out of memory");
	n->c = c;
	n->dev = (uint32_t)dev;
	n->poll = o->poll;
	pthread_mutex_init(&n->state_lock, NULL);
	for (unsigned i = 0; i < XVL_NET_MAX_PAIRS; i++) {
		init_queue(&n->rx[i]);
		init_queue(&n->tx[i]);
	}
	init_queue(&n->ctrl);
	c->open_net[dev] = n;
	int rc = open_device(n, o);
	if (rc < 0) {
		struct xvl_errbuf why = c->eb; /* closing talks to the server too: keep the cause */
		xvl_net_close(n);
		c->eb = why;
		return rc;
	}
	*out = n;
	return 0;
}

void xvl_net_close(struct xvl_net *n)
{
	if (!n)
		return;
	/* The device must stop touching the rings before their memory is reused. */
	xvl_dev_detach(n->c, n->dev, n->nq);
	for (unsigned i = 0; i < XVL_NET_MAX_PAIRS; i++) {
		queue_free(n, &n->rx[i]);
		queue_free(n, &n->tx[i]);
	}
	queue_free(n, &n->ctrl);
	pthread_mutex_destroy(&n->state_lock);
	n->c->open_net[n->dev] = NULL;
	free(n);
}

void xvl_net_get_info(const struct xvl_net *n, struct xvl_net_info *info)
{
	*info = n->info;
}

void xvl_net_get_stats(const struct xvl_net *n, struct xvl_net_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (unsigned p = 0; p < n->info.pairs; p++) {
		const struct xvl_net_stats *r = &n->rx[p].st, *t = &n->tx[p].st;
		st->rx_frames += r->rx_frames;
		st->rx_bytes += r->rx_bytes;
		st->rx_dropped += r->rx_dropped;
		st->rx_truncated += r->rx_truncated;
		st->rx_bad_len += r->rx_bad_len;
		st->rx_bad_buffers += r->rx_bad_buffers;
		st->rx_bad_hdr += r->rx_bad_hdr;
		st->tx_frames += t->tx_frames;
		st->tx_bytes += t->tx_bytes;
		st->tx_dropped += t->tx_dropped;
	}
}
