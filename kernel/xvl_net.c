// SPDX-License-Identifier: GPL-2.0
/*
 * What the transport does differently for a virtio-net device (the stock
 * virtio_net driver on top):
 *
 *  - queue numbers: the device's control queue is 2 * max_virtqueue_pairs
 *    (PROTOCOL.md 9); a driver that did not negotiate MQ puts it at 2, so
 *    that queue is mapped to the device's.  MQ is hidden from the driver
 *    when the doorbell vectors do not suffice for every queue pair (each
 *    queue needs a vector of its own, xvl_vq.c); one pair then runs.
 *  - rx queues hold their buffers for as long as no frame comes: they are
 *    not stalled requests, and a killed rx queue keeps them (completing
 *    them empty would make virtio_net refill and fail them in a loop);
 *  - with MRG_RXBUF a frame spans num_buffers used entries, which the
 *    device may publish one at a time: used entries reach virtio_ring only
 *    whole frames at a time (virtio_net drops a frame whose buffers are not
 *    all there yet);
 *  - a control command the transport fails is acked VIRTIO_NET_ERR;
 *  - link state: with STATUS negotiated the driver reads LINK_UP from the
 *    cached config space; the transport clears it while the device side is
 *    away or the device is dead (the driver turns the carrier off) and
 *    reads the device's again when it is back.
 */
#include <asm/unaligned.h>
#include <linux/delay.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>

#include "xvl_virtio.h"

#define XVL_NET_HDR_LEN		sizeof(struct virtio_net_hdr_mrg_rxbuf)
#define XVL_NET_HDR_NUM_BUFFERS	offsetof(struct virtio_net_hdr_mrg_rxbuf, num_buffers)
#define XVL_NET_SEEN_WAIT_MS	500

static bool is_net(const struct xvl_vdev *xd)
{
	return xd->info.virtio_id == VIRTIO_ID_NET;
}

static bool has(const struct xvl_vdev *xd, unsigned int bit)
{
	return xd->features & BIT_ULL(bit);
}

/* The device's control queue (the last one), or U16_MAX without CTRL_VQ. */
static u16 ctrl_queue(const struct xvl_vdev *xd)
{
	return has(xd, VIRTIO_NET_F_CTRL_VQ) ? xd->info.num_queues - 1 : U16_MAX;
}

static bool is_rx(const struct xvl_vq *q)
{
	return is_net(q->xd) && !(q->index & 1) && q->index != ctrl_queue(q->xd);
}

/* Whether nq queues of this device can each have a vector (polling: always). */
static bool vectors_suffice(const struct xvl_vdev *xd, unsigned int nq)
{
	struct xvl_win *w = xd->win;
	u32 limit = min_t(u32, w->nvec, xvl_mbox_peer_vectors(&w->mb));
	unsigned int i, need = 0;

	if (w->poller)
		return true;
	for (i = 0; i < nq && i < XVL_MAX_QUEUES; i++)
		if (!w->qvec[xd->index][i])
			need++;
	return w->next_vector + need <= limit;
}

/* Device-specific features offered to the driver. */
u64 xvl_net_features(const struct xvl_vdev *xd, u64 features)
{
	if (!is_net(xd) || !(features & BIT_ULL(VIRTIO_NET_F_MQ)))
		return features;
	if (!vectors_suffice(xd, xd->info.num_queues)) {
		dev_info(&xd->vdev.dev,
			 "%u doorbell vectors are too few for %u queues: one queue pair, MQ not offered\n",
			 xd->win->nvec, xd->info.num_queues);
		features &= ~BIT_ULL(VIRTIO_NET_F_MQ);
	}
	return features;
}

/*
 * The device queue behind the driver's queue drv of nvqs.  Without MQ the
 * driver's control queue is 2; the device's stays at 2 * max_pairs.
 */
unsigned int xvl_net_queue_index(const struct xvl_vdev *xd, unsigned int drv, unsigned int nvqs)
{
	if (!is_net(xd) || !has(xd, VIRTIO_NET_F_CTRL_VQ) || has(xd, VIRTIO_NET_F_MQ))
		return drv;
	return drv == 2 && nvqs == 3 ? xd->info.num_queues - 1 : drv;
}

/* The device holds this queue's buffers without a deadline (net rx). */
bool xvl_vdev_holds_buffers(const struct xvl_vq *q)
{
	return is_rx(q);
}

/* Status byte written into a request the transport fails, or -1: none. */
int xvl_vdev_fail_status(const struct xvl_vq *q)
{
	if (q->xd->info.virtio_id == VIRTIO_ID_BLOCK)
		return VIRTIO_BLK_S_IOERR;
	if (is_net(q->xd) && q->index == ctrl_queue(q->xd))
		return VIRTIO_NET_ERR;
	return -1;
}

/* num_buffers of the frame starting in head id (used length len); 1 if unreadable. */
static u16 frame_buffers(struct xvl_vq *q, u32 id, u32 len)
{
	const struct vring_desc *d = &q->priv.desc[id];
	u64 addr = le64_to_cpu(d->addr);
	const u8 *p;
	u16 nb;

	if (len < XVL_NET_HDR_LEN || le32_to_cpu(d->len) < XVL_NET_HDR_LEN)
		return 1;
	p = xvl_mem_ptr(&q->xd->win->mem, addr + XVL_NET_HDR_NUM_BUFFERS, 2);
	if (!p)
		return 1;
	nb = get_unaligned_le16(p);
	/* 0, or more than the device holds: can never be whole; the driver drops it. */
	return nb && nb <= q->inflight ? nb : 1;
}

/*
 * Of n new window used entries, how many end on a frame boundary (net rx
 * with MRG_RXBUF; all n otherwise).  Ids are only peeked at here: collect()
 * checks every entry as always.  q->lock held.
 */
u16 xvl_vdev_used_ready(struct xvl_vq *q, u16 n)
{
	u16 k = 0;

	if (!is_rx(q) || !has(q->xd, VIRTIO_NET_F_MRG_RXBUF))
		return n;
	while (k < n) {
		struct vring_used_elem *e = &q->wused->ring[(u16)(q->win_used_seen + k) % q->num];
		u32 id = le32_to_cpu(READ_ONCE(e->id));
		u32 len = le32_to_cpu(READ_ONCE(e->len));
		u16 nb;

		if (id >= q->num)
			return n;	/* collect() kills the queue at this entry */
		nb = frame_buffers(q, id, len);
		if (nb > n - k)
			break;		/* the rest of this frame is not there yet */
		k += nb;
	}
	return k;
}

/* Set or clear LINK_UP in the cached config space and tell the driver. */
static void set_link(struct xvl_vdev *xd, bool up)
{
	unsigned int at = offsetof(struct virtio_net_config, status);
	u16 st;

	if (!is_net(xd) || !has(xd, VIRTIO_NET_F_STATUS) || xd->info.config_len < at + 2)
		return;
	st = get_unaligned_le16(xd->config + at);
	if (!!(st & VIRTIO_NET_S_LINK_UP) == up)
		return;
	put_unaligned_le16(up ? st | VIRTIO_NET_S_LINK_UP : st & ~VIRTIO_NET_S_LINK_UP,
			   xd->config + at);
	WRITE_ONCE(xd->config_gen, xd->config_gen + 1);
	xd->reads_at_down = READ_ONCE(xd->config_reads);
	dev_info(&xd->vdev.dev, "link %s\n", up ? "up" : "down (device side away or device dead)");
	if (xd->registered)
		virtio_config_changed(&xd->vdev);
}

/* The device side is away (link lost) or the device is dead: carrier off. */
void xvl_net_link_down(struct xvl_vdev *xd)
{
	set_link(xd, false);
}

/*
 * Before the link is reported up again: let the driver read the down state
 * first (its config work reads the status once per change), or it would
 * never turn the carrier off and on.  Bounded; process context.
 */
void xvl_net_wait_link_seen(struct xvl_vdev *xd)
{
	unsigned int i;

	if (!is_net(xd) || !has(xd, VIRTIO_NET_F_STATUS) || !xd->registered)
		return;
	for (i = 0; i < XVL_NET_SEEN_WAIT_MS / 10; i++) {
		if (READ_ONCE(xd->config_reads) != xd->reads_at_down)
			return;
		usleep_range(10000, 11000);
	}
}

/* Config space fetched again after recovery: the device's own status counts. */
void xvl_net_link_restored(struct xvl_vdev *xd)
{
	if (is_net(xd) && xd->registered)
		virtio_config_changed(&xd->vdev);
}
