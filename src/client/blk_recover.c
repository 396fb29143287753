/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk driver, recovery: the restart and break state machine.
 *
 * Device states (enum blk_state, blk_int.h; allowed[] below is the table):
 *
 *   RUNNING  --salvage (EVENT RESTART, or link back after a loss)--> SALVAGED
 *   SALVAGED --ATTACH (-EBUSY retried until reconnect_ms), negotiate,
 *              requeue each queue, DRIVER_OK--> RUNNING
 *   SALVAGED --salvage again (a step failed with the link lost again and
 *              reconnect_ms left: recovery starts over, and salvage takes back
 *              what a half-done requeue had put on fresh rings)--> SALVAGED
 *   RUNNING | SALVAGED --broken flag (EVENT BROKEN, a used-ring violation, a
 *              lost link without reconnect, a restart step failing otherwise,
 *              reconnect_ms running out in relink_until)--> settle():
 *              RESET answered (vhost: rings stopped)--> SETTLED_SAFE
 *              no link, or no answer-->                SETTLED_QUARANTINE
 *   SETTLED_* are final (until close).
 *
 * Slot states (enum slot_state, blk_int.h) and who owns the buffers:
 *
 *   FREE        on free_slot[]; owns nothing.
 *   RING        exposed on the current rings; the DEVICE may read/write the
 *               slot and the data (caller's zero-copy buffer or bounce block).
 *   HELD        outcome known (slot->result), on held[]; the client owns
 *               everything; blk_deliver() gives it to the caller.
 *   PARKED      taken back from rings the device lost; on resubmit[]; the
 *               client owns it until requeue exposes it again (-> RING).
 *   QUARANTINED reported to the caller as failed, but the device could not be
 *               stopped: the bounce block stays allocated and the slot out of
 *               the free list until close.
 *
 * Invariants:
 *   - every slot is in exactly one state, and on the list of that state:
 *     n_free + RING + n_held + n_resubmit + n_quarantined == num; so held[]
 *     and resubmit[] (num entries each) can never overflow;
 *   - a slot is freed (and its bounce block returned) only when its outcome
 *     is given to the caller, and that happens exactly once (blk_deliver);
 *   - a RING slot of a broken device is failed only after quiescing: RESET
 *     answered (the server replies once no backend I/O is in flight), or,
 *     with no link, into quarantine;
 *   - SETTLED_*: no slot is RING or PARKED (each is FREE, HELD until complete()
 *     gives it out, or QUARANTINED);
 *   - all of this runs with every queue lock held (blk_int.h), so no queue
 *     owner sees a half-moved slot.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "blk_int.h"

#define EBUSY_RETRY_US 20000

unsigned blk_outstanding(const struct blk_queue *bq)
{
	return bq->num ? (unsigned)(bq->num - bq->n_free) - bq->n_quarantined : 0;
}

/* ------------------------------------------------------------ flags from the link */

void xvl_blk_mark_broken(struct xvl_blk *b, int reason, const char *why)
{
	if (__atomic_exchange_n(&b->broken, true, __ATOMIC_ACQ_REL))
		return;
	b->broken_reason = reason;
	snprintf(b->broken_msg, sizeof(b->broken_msg), "%s", why);
	snprintf(b->c->eb.msg, sizeof(b->c->eb.msg), "device %u broken: %s", b->dev, why);
}

void xvl_blk_request_restart(struct xvl_blk *b)
{
	xvl_store_release(&b->restart, true);
}

static bool settled(const struct xvl_blk *b)
{
	return b->state == BLK_SETTLED_SAFE || b->state == BLK_SETTLED_QUARANTINE;
}

static const bool allowed[BLK_N_STATES][BLK_N_STATES] = {
	[BLK_RUNNING] = {[BLK_SALVAGED] = true, [BLK_SETTLED_SAFE] = true,
			 [BLK_SETTLED_QUARANTINE] = true},
	[BLK_SALVAGED] = {[BLK_SALVAGED] = true, [BLK_RUNNING] = true, [BLK_SETTLED_SAFE] = true,
			  [BLK_SETTLED_QUARANTINE] = true},
};

/* Move to state `to`; a transition outside allowed[] is a driver bug: it breaks the device. */
static bool enter(struct xvl_blk *b, enum blk_state to)
{
	if (allowed[b->state][to]) {
		b->state = to;
		return true;
	}
	char why[64];
	snprintf(why, sizeof(why), "internal: restart state %d -> %d refused", b->state, to);
	xvl_blk_mark_broken(b, -EFAULT, why);
	return false;
}

bool blk_needs_recovery(const struct xvl_blk *b)
{
	if (blk_broken(b))
		return !settled(b);
	return blk_restart_wanted(b) || xvl_client_link_dead(b->c);
}

/* ------------------------------------------------------------ slot moves */

static void hold(struct blk_queue *bq, uint16_t s, int result)
{
	bq->slot[s].state = SLOT_HELD;
	bq->slot[s].result = result;
	bq->held[bq->n_held++] = s;
}

/* RING -> HELD (completed on the old rings) or PARKED (not completed). */
static void salvage(struct blk_queue *bq)
{
	uint64_t token;
	uint32_t len;

	if (!bq->num)
		return;
	while (xvl_vq_drv_get_used(&bq->vq, &token, &len) == 1)
		hold(bq, (uint16_t)token, blk_status_result(bq, (uint16_t)token));
	while (xvl_vq_drv_detach(&bq->vq, &token) == 1) {
		bq->slot[token].state = SLOT_PARKED;
		bq->resubmit[bq->n_resubmit++] = (uint16_t)token;
	}
}

/* Fresh rings; PARKED -> RING in order.  What could not go back stays PARKED. */
static int requeue(struct xvl_blk *b, uint16_t qi)
{
	struct blk_queue *bq = &b->q[qi];
	int rc = blk_rings_init(b, bq);
	unsigned done = 0;
	while (rc == 0 && done < bq->n_resubmit) {
		rc = blk_expose_slot(b, bq, bq->resubmit[done]);
		if (rc == 0)
			done++;
	}
	memmove(bq->resubmit, bq->resubmit + done, (bq->n_resubmit - done) * sizeof(*bq->resubmit));
	bq->n_resubmit -= done;
	if (rc < 0)
		return xvl_err(&b->c->eb, rc, "cannot put request back on queue %u", qi);
	return blk_queue_announce(b, qi);
}

/* RING and PARKED -> HELD with -ENODEV (after quiescing). */
static void fail_outstanding(struct blk_queue *bq)
{
	uint64_t token;

	if (!bq->num)
		return;
	xvl_vq_drv_set_broken(&bq->vq);
	while (xvl_vq_drv_detach(&bq->vq, &token) == 1)
		hold(bq, (uint16_t)token, -ENODEV);
	for (unsigned i = 0; i < bq->n_resubmit; i++)
		hold(bq, bq->resubmit[i], -ENODEV);
	bq->n_resubmit = 0;
}

/* ------------------------------------------------------------ transitions */

/* BROKEN -> SETTLED: stop the device touching the buffers, then fail what is left. */
static void settle(struct xvl_blk *b)
{
	struct xvl_client *c = b->c;
	struct xvl_errbuf keep = c->eb; /* the reason it broke is what the caller wants to read */
	int rc = -ENOTCONN;

	if (c->mode == XVL_MODE_VHOST || !xvl_client_link_dead(c))
		rc = xvl_dev_reset(c, b->dev, b->nq);
	enter(b, rc == 0 ? BLK_SETTLED_SAFE : BLK_SETTLED_QUARANTINE);
	c->eb = keep;
	for (uint16_t i = 0; i < b->nq; i++)
		fail_outstanding(&b->q[i]);
}

/* ATTACH; a server still draining our old connection says -EBUSY for a while. */
static int attach_within(struct xvl_blk *b, uint64_t deadline)
{
	int rc;
	while ((rc = xvl_dev_attach(b->c, b->dev)) == -EBUSY && xvl_os_now_ns() < deadline)
		usleep(EBUSY_RETRY_US);
	return rc;
}

/*
 * RESTART_WANTED -> SALVAGED -> RUNNING, or BROKEN.  Completions found on
 * the old rings are returned first; everything else is submitted again.
 */
int xvl_blk_restart(struct xvl_blk *b, bool attach)
{
	struct xvl_client *c = b->c;
	int rc = 0;

	if (blk_broken(b))
		return -ENODEV;
	xvl_store_release(&b->restart, false);
	__atomic_add_fetch(&c->n_restarts, 1, __ATOMIC_RELAXED);
	if (!enter(b, BLK_SALVAGED))
		return -ENODEV;
	for (uint16_t i = 0; i < b->nq; i++)
		salvage(&b->q[i]);
	uint64_t deadline = xvl_os_now_ns() + (uint64_t)c->reconnect_ms * 1000000ull;
	if (attach)
		rc = attach_within(b, deadline);
	if (rc == 0)
		rc = blk_negotiate(b, &b->opts, b->offered);
	for (uint16_t i = 0; rc == 0 && i < b->nq; i++)
		rc = requeue(b, i);
	if (rc == 0)
		rc = blk_set_driver_ok(b);
	if (rc < 0 && xvl_client_link_dead(c) && c->reconnect_ms)
		return rc; /* the server went away again: recovery starts over, nothing is lost */
	if (rc < 0) {
		char why[64];
		snprintf(why, sizeof(why), "not set up again after a restart: %s", strerror(-rc));
		xvl_blk_mark_broken(b, rc, why);
		return rc;
	}
	enter(b, BLK_RUNNING);
	for (uint16_t i = 0; i < b->nq; i++)
		if (b->q[i].kick_fd >= 0)
			xvl_os_eventfd_signal(b->q[i].kick_fd);
	return 0;
}

/* ------------------------------------------------------------ running it */

static void lock_all_queues(struct xvl_client *c, bool lock)
{
	for (unsigned d = 0; d < XVL_MAX_DEVICES; d++) {
		struct xvl_blk *b = c->open[d];
		for (uint16_t i = 0; b && i < b->nq; i++) {
			if (lock)
				pthread_mutex_lock(&b->q[i].lock);
			else
				pthread_mutex_unlock(&b->q[i].lock);
		}
	}
}

/* Every open device: reconnect, restart, or settle, whatever it needs. */
static void recover_all(struct xvl_client *c)
{
	xvl_client_recover(c);
	for (unsigned d = 0; d < XVL_MAX_DEVICES; d++) {
		struct xvl_blk *b = c->open[d];
		if (b && !blk_broken(b) && blk_restart_wanted(b))
			xvl_blk_restart(b, false);
		if (b && blk_broken(b) && !settled(b))
			settle(b);
	}
	/* Owners asleep in xvl_blk_wait (or polling the queue fd) come and look. */
	for (unsigned d = 0; d < XVL_MAX_DEVICES; d++) {
		struct xvl_blk *b = c->open[d];
		for (uint16_t i = 0; b && i < b->nq; i++)
			if (b->q[i].call_fd >= 0)
				xvl_os_eventfd_signal(b->q[i].call_fd);
	}
}

void xvl_blk_recover_all(struct xvl_client *c)
{
	lock_all_queues(c, true);
	recover_all(c);
	lock_all_queues(c, false);
}

void blk_recover_from_queue(struct xvl_blk *b, uint16_t q)
{
	struct xvl_client *c = b->c;

	pthread_mutex_unlock(&b->q[q].lock);
	pthread_mutex_lock(&c->recover_lock);
	lock_all_queues(c, true);
	if (blk_needs_recovery(b))
		recover_all(c);
	lock_all_queues(c, false);
	pthread_mutex_unlock(&c->recover_lock);
	pthread_mutex_lock(&b->q[q].lock);
}
