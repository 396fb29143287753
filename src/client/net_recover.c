/* SPDX-License-Identifier: MIT */
/*
 * virtio-net driver, recovery: the device asked to be set up again (EVENT
 * RESTART), or the server went away and the client may reconnect
 * (reconnect_ms).  Unlike blk, nothing is resubmitted: frames on the old
 * rings are lost, as on a NIC reset.  Zero-copy transmit frames the device
 * held go to the reclaim list (the caller gets its buffers back), the
 * receive buffers go back on fresh rings, a half-joined frame is dropped
 * and counted.
 *
 * States (per device; changed only with every queue lock of the device and
 * the client's recover_lock held):
 *   RUNNING --restart/link_dead--> (recovery) --> RUNNING, or BROKEN
 *   BROKEN is final (every call -ENODEV; close frees the memory).
 * The link is one per client: whichever device notices the loss first
 * reconnects it (xvl_client_recover) and every open device of the client
 * is set up again, blk and net alike.  A net device that notices it while
 * block devices are open runs the block devices' recovery (which needs
 * their queue locks); after a relink, xvl_net_relinked flags every net
 * device to ATTACH again at its next call.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "net_int.h"

#define EBUSY_RETRY_US 20000

static void lock_queues(struct xvl_net *n, bool lock)
{
	for (unsigned p = 0; p < XVL_NET_MAX_PAIRS; p++) {
		struct net_queue *q[2] = {&n->rx[p], &n->tx[p]};
		for (unsigned i = 0; i < 2; i++) {
			if (lock)
				pthread_mutex_lock(&q[i]->lock);
			else
				pthread_mutex_unlock(&q[i]->lock);
		}
	}
	if (lock)
		pthread_mutex_lock(&n->ctrl.lock);
	else
		pthread_mutex_unlock(&n->ctrl.lock);
}

/* Take every buffer back from the old rings. */
static void salvage(struct xvl_net *n, struct net_queue *q, enum net_qkind k)
{
	uint64_t token;
	if (!q->area)
		return;
	while (xvl_vq_drv_detach(&q->vq, &token) == 1) {
		uint16_t t = (uint16_t)token;
		if (k == Q_RX) {
			q->unposted[q->n_unposted++] = t;
		} else if (k == Q_TX) {
			struct net_txslot *ts = &q->ts[t];
			xvl_client_heap_free(n->c, ts->bounce);
			ts->bounce = 0;
			ts->busy = false;
			if (ts->zero_copy)
				q->done[(uint16_t)(q->done_head + q->n_done++) % q->num] = t;
			else
				q->free_slot[q->n_free++] = t;
		}
	}
	if (k == Q_RX && q->pend) {
		q->pend = false;
		q->st.rx_dropped++;
	}
}

static int attach_within(struct xvl_net *n)
{
	uint64_t deadline = xvl_os_now_ns() + (uint64_t)n->c->reconnect_ms * 1000000ull;
	int rc;
	while ((rc = xvl_dev_attach(n->c, n->dev)) == -EBUSY && xvl_os_now_ns() < deadline)
		usleep(EBUSY_RETRY_US);
	return rc;
}

static int set_up_again(struct xvl_net *n)
{
	struct xvl_client *c = n->c;
	int rc = 0;
	if (xvl_load_acquire(&n->reattach)) {
		if (c->dev[n->dev].virtio_id != XVL_VIRTIO_ID_NET || c->dev[n->dev].features != n->offered)
			return xvl_err(&c->eb, -ENODEV, "device %u came back as another device", n->dev);
		rc = attach_within(n);
	}
	if (rc == 0)
		rc = net_negotiate(n, n->offered);
	for (uint16_t p = 0; rc == 0 && p < n->info.pairs; p++) {
		rc = net_queue_rings(n, &n->rx[p], Q_RX, xvl_net_rxq(p));
		if (rc == 0)
			rc = net_queue_rings(n, &n->tx[p], Q_TX, xvl_net_txq(p));
	}
	if (rc == 0 && n->info.ctrl)
		rc = net_queue_rings(n, &n->ctrl, Q_CTRL, n->ctrl_index);
	if (rc == 0)
		rc = xvl_dev_set_status(c, n->dev,
					XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER |
						XVL_STATUS_FEATURES_OK | XVL_STATUS_DRIVER_OK);
	if (rc == 0 && n->info.pairs > 1)
		rc = net_set_pairs(n, n->info.pairs);
	if (rc == 0 && n->opts.promisc) {
		uint8_t on = 1;
		rc = net_ctrl_command_locked(n, XVL_NET_CTRL_RX, XVL_NET_CTRL_RX_PROMISC, &on, 1);
	}
	for (uint16_t p = 0; rc == 0 && p < n->info.pairs; p++)
		rc = net_rx_refill(n, &n->rx[p]);
	return rc;
}

static void restart_device(struct xvl_net *n)
{
	xvl_store_release(&n->restart, false);
	__atomic_add_fetch(&n->c->n_restarts, 1, __ATOMIC_RELAXED);
	for (unsigned p = 0; p < n->info.pairs; p++) {
		salvage(n, &n->rx[p], Q_RX);
		salvage(n, &n->tx[p], Q_TX);
	}
	salvage(n, &n->ctrl, Q_CTRL);
	int rc = set_up_again(n);
	xvl_store_release(&n->reattach, false);
	if (rc < 0 && xvl_client_link_dead(n->c) && n->c->reconnect_ms) {
		xvl_store_release(&n->restart, true); /* gone again: the next call starts over */
		xvl_store_release(&n->reattach, true);
		return;
	}
	if (rc < 0) {
		char why[64];
		snprintf(why, sizeof(why), "not set up again after a restart: %s", strerror(-rc));
		xvl_net_mark_broken(n, rc, why);
	}
}

static bool blk_open_on(const struct xvl_client *c)
{
	for (unsigned d = 0; d < XVL_MAX_DEVICES; d++)
		if (c->open[d])
			return true;
	return false;
}

/* The link is back (xvl_client_recover): every net device of the client attaches again at its next call. */
void xvl_net_relinked(struct xvl_client *c)
{
	for (unsigned d = 0; d < XVL_MAX_DEVICES; d++) {
		struct xvl_net *m = c->open_net[d];
		if (!m || net_broken(m))
			continue;
		xvl_store_release(&m->reattach, true);
		xvl_net_request_restart(m); /* and wakes its sleepers */
	}
}

void net_recover(struct xvl_net *n)
{
	struct xvl_client *c = n->c;
	pthread_mutex_lock(&c->recover_lock);
	lock_queues(n, true);
	if (xvl_client_link_dead(c) && !net_broken(n)) {
		if (!c->reconnect_ms)
			xvl_net_mark_broken(n, -ENOTCONN, "the server went away");
		else if (blk_open_on(c))
			xvl_blk_recover_all(c); /* relinks, sets the block devices up again, flags us */
		else if (xvl_client_recover(c) < 0)
			xvl_net_mark_broken(n, -ENOTCONN, "the server did not come back");
	}
	if (net_needs_recovery(n) && xvl_load_acquire(&n->restart))
		restart_device(n);
	lock_queues(n, false);
	pthread_mutex_unlock(&c->recover_lock);
	for (unsigned p = 0; p < n->info.pairs; p++) /* sleepers come and look */
		if (n->rx[p].call_fd >= 0)
			xvl_os_eventfd_signal(n->rx[p].call_fd);
}

void xvl_net_request_restart(struct xvl_net *n)
{
	xvl_store_release(&n->restart, true);
	for (unsigned p = 0; p < XVL_NET_MAX_PAIRS; p++)
		if (n->rx[p].call_fd >= 0)
			xvl_os_eventfd_signal(n->rx[p].call_fd);
}
