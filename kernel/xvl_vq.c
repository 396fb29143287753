// SPDX-License-Identifier: GPL-2.0
/*
 * Virtqueues with a private ring and a window ring.
 *
 * virtio_ring (vring_new_virtqueue) runs on a ring in private memory: it
 * reads its descriptors back from there when it frees a chain, so the
 * device side cannot rewrite what virtio_ring walks.  The device side sees
 * a second ring in the window.  The transport copies:
 *
 *   submit  (on notify)   new private avail entries and their chains ->
 *                         window descriptors and window avail ring;
 *   collect (irq / poll)  window used entries -> private used ring, each
 *                         one checked: at most as many as are outstanding,
 *                         id < num and a head the device holds, len clamped
 *                         to the chain's device-writable bytes.
 *
 * Invariants, under q->lock:
 *   - a head is set in q->outstanding from the submit that copied it until
 *     the collect (or fail) that returned it to virtio_ring; inflight is the
 *     number of bits set;
 *   - win_avail - win_used_seen == inflight while the device is live;
 *   - once q->dead, nothing is read from the window ring again: every
 *     outstanding head, and every head submitted later, is completed by the
 *     transport itself with an I/O error (the status byte of its device
 *     type, xvl_vdev_fail_status()), except the buffers of a net rx queue,
 *     which stay until the queue is deleted (xvl_net.c).
 *
 * A lone request (nothing else in flight) may be waited for by spinning,
 * see spin_for_lone().
 *
 * Buffers in the chains are DMA addresses from xvl_dma.c, that is window
 * offsets of bounce buffers; the descriptors are copied verbatim.  No
 * indirect descriptors and no event index are negotiated (xvl_vdev.c), so
 * every chain is in the private descriptor table.
 */
#include <linux/bitmap.h>
#include <linux/delay.h>
#include <linux/sched/clock.h>
#include <linux/slab.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>

#include "xvl_virtio.h"

#define XVL_VRING_ALIGN SMP_CACHE_BYTES
#define XVL_POLLED_WAIT_US	1000000	/* a driver-polled queue's request, at most */
#define XVL_POLLED_STEP_US	10

/* Spin only after this many submissions in a row found the queue empty (QD1, not a burst). */
#define XVL_LONE_RUN	8

static unsigned int spin_max_us = 50;
module_param(spin_max_us, uint, 0644);
MODULE_PARM_DESC(spin_max_us,
		 "Busy-wait at most this long (us, adapted below it) for a lone block request before sleeping on its interrupt; 0: never");

static bool xvl_vq_notify(struct virtqueue *vq);

/* Walk a private chain (bounded): its device-writable bytes and last writable descriptor. */
static int walk_chain(struct xvl_vq *q, u16 head, u32 *wlen, u16 *last_w)
{
	u16 i = head, n;
	u32 bytes = 0;

	*last_w = U16_MAX;
	for (n = 0; n < q->num; n++) {
		struct vring_desc *d = &q->priv.desc[i];
		u16 flags = le16_to_cpu(d->flags);

		q->wdesc[i] = *d;
		if (flags & VRING_DESC_F_WRITE) {
			bytes += le32_to_cpu(d->len);
			*last_w = i;
		}
		if (!(flags & VRING_DESC_F_NEXT)) {
			*wlen = bytes;
			return 0;
		}
		i = le16_to_cpu(d->next);
		if (i >= q->num)
			return -EINVAL;
	}
	return -ELOOP;
}

/* Hand one head back to virtio_ring through the private used ring.  q->lock held. */
static void push_used(struct xvl_vq *q, u16 id, u32 len)
{
	struct vring_used_elem *e = &q->priv.used->ring[q->priv_used % q->num];

	e->id = cpu_to_le32(id);
	e->len = cpu_to_le32(len);
	q->priv_used++;
	clear_bit(id, q->outstanding);
	q->inflight--;
}

static void publish_used(struct xvl_vq *q)
{
	/* Entries before the index virtio_ring reads (it pairs with virtio_rmb). */
	smp_store_release(&q->priv.used->idx, cpu_to_le16(q->priv_used));
}

/* Complete one outstanding head with an error, without the device.  q->lock held. */
static void fail_head(struct xvl_vq *q, u16 id)
{
	int st = xvl_vdev_fail_status(q);
	u16 lw = q->last_w[id];
	u32 len = 0;

	if (st >= 0 && lw < q->num) {
		struct vring_desc *d = &q->priv.desc[lw];
		u32 dlen = le32_to_cpu(d->len);
		u64 at = le64_to_cpu(d->addr) + dlen - 1;
		u8 *status = dlen ? xvl_mem_ptr(&q->xd->win->mem, at, 1) : NULL;

		/* The status byte is a bounce buffer: unmap copies it to the driver. */
		if (status) {
			WRITE_ONCE(*status, st);
			len = 1;
		}
	}
	push_used(q, id, len);
}

static unsigned int fail_all(struct xvl_vq *q)
{
	unsigned int n = 0;
	unsigned long id;

	/* net rx: the buffers stay here until the driver deletes the queue */
	if (xvl_vdev_holds_buffers(q))
		return 0;
	for_each_set_bit(id, q->outstanding, q->num) {
		fail_head(q, id);
		n++;
	}
	if (n)
		publish_used(q);
	return n;
}

/*
 * Copy new private avail entries to the window.  Returns whether the device
 * should be rung.  q->lock held.
 */
static bool submit(struct xvl_vq *q, const char **why)
{
	/* Pairs with virtio_ring's barrier before it publishes avail->idx. */
	u16 idx = le16_to_cpu(smp_load_acquire(&q->priv.avail->idx));
	u16 n = idx - q->priv_avail_seen;
	bool published = false;

	if (n > q->num) {
		*why = "private avail index ran ahead";
		return false;
	}
	while (n--) {
		u16 head = le16_to_cpu(q->priv.avail->ring[q->priv_avail_seen % q->num]);

		if (head >= q->num || test_bit(head, q->outstanding) ||
		    walk_chain(q, head, &q->wlen[head], &q->last_w[head])) {
			*why = "virtio_ring submitted a chain the transport cannot follow";
			return false;
		}
		q->priv_avail_seen++;
		set_bit(head, q->outstanding);
		q->inflight++;
		if (q->dead || q->stopped)
			continue;
		q->wavail->ring[q->win_avail % q->num] = cpu_to_le16(head);
		q->win_avail++;
		published = true;
	}
	if (!published)
		return false;
	if (q->inflight == 1) {
		q->lone_since = local_clock();
		q->lone_run = min_t(u8, q->lone_run + 1, XVL_LONE_RUN);
	} else {
		q->lone_since = 0;
		q->lone_run = 0;
	}
	/* Descriptors and ring entries before the index the device acquires. */
	smp_store_release(&q->wavail->idx, cpu_to_le16(q->win_avail));
	/* Publish, then read the device's flag (PROTOCOL.md 2: full fence). */
	smp_mb();
	return !(le16_to_cpu(READ_ONCE(q->wused->flags)) & VRING_USED_F_NO_NOTIFY);
}

/* A lone request took ns from its doorbell to its collection: average over about 8. */
static void lone_took(struct xvl_vq *q, u64 ns)
{
	u32 v = min_t(u64, ns, U32_MAX);

	q->lone_avg_ns = q->lone_avg_ns ? q->lone_avg_ns - q->lone_avg_ns / 8 + v / 8 : v;
	q->lone_since = 0;
}

/* Copy checked window used entries to the private ring.  q->lock held. */
static unsigned int collect(struct xvl_vq *q, const char **why)
{
	/* Pairs with the device's release of used->idx: entries after it. */
	u16 idx = le16_to_cpu(smp_load_acquire(&q->wused->idx));
	u16 n = idx - q->win_used_seen, done = 0;

	if (!n)
		return 0;
	if (n > q->inflight) {
		*why = "the device returned more buffers than it holds";
		return 0;
	}
	n = xvl_vdev_used_ready(q, n);
	while (done < n) {
		struct vring_used_elem *e = &q->wused->ring[q->win_used_seen % q->num];
		u32 id = le32_to_cpu(READ_ONCE(e->id));
		u32 len = le32_to_cpu(READ_ONCE(e->len));

		if (id >= q->num || !test_bit(id, q->outstanding)) {
			*why = "the device returned a buffer it does not hold";
			break;
		}
		push_used(q, id, min(len, q->wlen[id]));
		q->win_used_seen++;
		done++;
	}
	if (done)
		publish_used(q);
	if (done && !q->inflight && q->lone_since)
		lone_took(q, local_clock() - q->lone_since);
	return done;
}

/* Hand completions to the driver: as from its interrupt, or with bottom halves off. */
static void xvl_vq_deliver(struct xvl_vq *q, bool in_irq)
{
	if (in_irq) {
		vring_interrupt(0, q->vq);
		return;
	}
	local_bh_disable();
	vring_interrupt(0, q->vq);
	local_bh_enable();
}

/*
 * Collect what the device returned, or fail everything of a dead queue, and
 * hand it to the driver.  in_irq: called from the queue's interrupt handler
 * (else process context).  Returns whether anything completed.
 */
bool xvl_vq_poll(struct xvl_vq *q, bool in_irq)
{
	const char *why = NULL;
	unsigned long flags;
	unsigned int n;

	spin_lock_irqsave(&q->lock, flags);
	if (q->dead)
		n = fail_all(q);
	else if (q->stopped)
		n = 0;
	else
		n = collect(q, &why);
	spin_unlock_irqrestore(&q->lock, flags);
	if (n)
		xvl_vq_deliver(q, in_irq);
	if (why)
		xvl_vq_kill(q, why);
	return n;
}

/*
 * The device broke the rules on this queue (or went away): from now on its
 * requests fail.  The work item completes them, in process context.  Any
 * context.
 */
void xvl_vq_kill(struct xvl_vq *q, const char *why)
{
	unsigned long flags;
	bool first;

	spin_lock_irqsave(&q->lock, flags);
	first = !q->dead;
	q->dead = true;
	spin_unlock_irqrestore(&q->lock, flags);
	if (first) {
		dev_err(&q->xd->vdev.dev, "queue %u: %s; its requests fail from now on\n",
			q->index, why);
		xvl_net_link_down(q->xd);
	}
	schedule_work(&q->xd->win->dead_work);
}

/*
 * Recovery (PROTOCOL.md section 5, RESTART), in three steps:
 *  stop:   take what the old device instance completed, then hold every
 *          chain (outstanding ones and new ones) away from the window;
 *  reset:  zero the window rings, for a fresh SET_QUEUE;
 *  resume: after DRIVER_OK, place every outstanding head in the fresh
 *          avail ring again and let the queue run.
 * Nothing completed is lost or completed twice: a head is returned to
 * virtio_ring exactly once, by collect() or by fail_all().
 */
void xvl_vq_stop(struct xvl_vq *q)
{
	const char *why = NULL;
	unsigned long flags;
	unsigned int n = 0;

	spin_lock_irqsave(&q->lock, flags);
	if (!q->dead && !q->stopped)
		n = collect(q, &why);
	q->stopped = true;
	spin_unlock_irqrestore(&q->lock, flags);
	if (n)
		xvl_vq_deliver(q, false);
	if (why)
		xvl_vq_kill(q, why);
}

void xvl_vq_reset_window(struct xvl_vq *q)
{
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	memset(q->wdesc, 0, q->wsize);
	q->win_avail = 0;
	q->win_used_seen = 0;
	spin_unlock_irqrestore(&q->lock, flags);
}

void xvl_vq_resume(struct xvl_vq *q)
{
	struct xvl_win *w = q->xd->win;
	unsigned long flags, head;
	unsigned int n = 0;
	bool ring;

	spin_lock_irqsave(&q->lock, flags);
	if (q->dead) {
		spin_unlock_irqrestore(&q->lock, flags);
		return;
	}
	for_each_set_bit(head, q->outstanding, q->num) {
		walk_chain(q, head, &q->wlen[head], &q->last_w[head]);
		q->wavail->ring[q->win_avail % q->num] = cpu_to_le16(head);
		q->win_avail++;
		n++;
	}
	q->stopped = false;
	q->stall_since = 0;
	/* As in submit(): ring entries before the index the device acquires... */
	smp_store_release(&q->wavail->idx, cpu_to_le16(q->win_avail));
	/* ...and a full fence before reading the device's flag. */
	smp_mb();
	ring = !(le16_to_cpu(READ_ONCE(q->wused->flags)) & VRING_USED_F_NO_NOTIFY);
	spin_unlock_irqrestore(&q->lock, flags);
	if (n)
		dev_info(&q->xd->vdev.dev, "queue %u: %u request(s) submitted again\n", q->index,
			 n);
	if (!q->kick_vector)
		wake_up_process(w->poller);
	else if (ring)
		xvl_ring(w, q->kick_vector);
}

/*
 * A queue without a callback is polled by its driver (virtio_net's control
 * queue: virtqueue_get_buf() in a loop, maybe with bottom halves off), so
 * only the transport can move its used ring, and no work item or poller
 * may run meanwhile on a single CPU.  Wait here for the device, bounded;
 * what it has not completed by then (or while it is away) fails.
 */
static void complete_polled(struct xvl_vq *q)
{
	unsigned int us;

	for (us = 0;; us += XVL_POLLED_STEP_US) {
		const char *why = NULL;
		unsigned long flags;
		bool done, late = us >= XVL_POLLED_WAIT_US;

		spin_lock_irqsave(&q->lock, flags);
		if (!q->dead && !q->stopped)
			collect(q, &why);
		done = !q->inflight || q->dead || q->stopped || why || late;
		if (done)
			fail_all(q);
		spin_unlock_irqrestore(&q->lock, flags);
		if (why || (late && !q->dead))
			xvl_vq_kill(q, why ?: "the device did not answer within 1 s");
		if (done)
			return;
		udelay(XVL_POLLED_STEP_US);
	}
}

/*
 * How long to spin for a lone request (the idea of Linux's hybrid polling,
 * as the user-space client's spin_adapt): twice what recent lone requests
 * took, at most spin_max_us; when they take longer than that the device is
 * slow and an interrupt is cheap next to it: no spin.  q->lock held.
 */
static u64 spin_window_ns(const struct xvl_vq *q)
{
	u64 max = (u64)READ_ONCE(spin_max_us) * NSEC_PER_USEC;

	if (!q->lone_avg_ns)
		return max;
	if (q->lone_avg_ns > max)
		return 0;
	return min_t(u64, 2ull * q->lone_avg_ns, max);
}

/*
 * The request just rung is the only one in flight: busy-wait a short,
 * adaptive while for its completion instead of the interrupt round trip
 * (the device's doorbell, the interrupt, its entry, a wake-up).  Meanwhile
 * the window avail ring asks for no interrupt; afterwards the flag is
 * cleared and the ring looked at once more, so a completion that came in
 * between is collected here and one after it interrupts.  Only block
 * queues, only from task context with interrupts on: Linux 6.1's
 * virtio_blk notifies outside its queue lock, except a kick after a failed
 * add, which holds it with interrupts off and so never spins here.  What
 * is collected is delivered as from the poller.
 * The loop ends at the window whatever the device writes.
 */
static void spin_for_lone(struct xvl_vq *q)
{
	unsigned long flags;
	u64 window = 0, end;

	if (!READ_ONCE(spin_max_us) || q->xd->info.virtio_id != VIRTIO_ID_BLOCK ||
	    !in_task() || irqs_disabled())
		return;
	spin_lock_irqsave(&q->lock, flags);
	if (q->inflight == 1 && q->lone_since && q->lone_run >= XVL_LONE_RUN && !q->dead &&
	    !q->stopped && !q->spinning)
		window = spin_window_ns(q);
	if (window) {
		q->spinning = true;
		WRITE_ONCE(q->wavail->flags, cpu_to_le16(VRING_AVAIL_F_NO_INTERRUPT));
	}
	spin_unlock_irqrestore(&q->lock, flags);
	if (!window)
		return;
	end = local_clock() + window;
	while (READ_ONCE(q->inflight) &&
	       READ_ONCE(q->wused->idx) == cpu_to_le16(READ_ONCE(q->win_used_seen)) &&
	       local_clock() < end)
		cpu_relax();
	spin_lock_irqsave(&q->lock, flags);
	WRITE_ONCE(q->wavail->flags, 0);
	q->spinning = false;
	spin_unlock_irqrestore(&q->lock, flags);
	/* The flag is off before the last look (the device fences between used.idx and it). */
	smp_mb();
	xvl_vq_poll(q, false);
}

static bool xvl_vq_notify(struct virtqueue *vq)
{
	struct xvl_vq *q = vq->priv;
	struct xvl_win *w = q->xd->win;
	const char *why = NULL;
	unsigned long flags;
	bool ring, dead;

	spin_lock_irqsave(&q->lock, flags);
	ring = submit(q, &why);
	dead = q->dead;
	spin_unlock_irqrestore(&q->lock, flags);
	if (dead && !why && !vq->callback) {
		complete_polled(q);
		return true;
	}
	if (why || dead) {
		/* Completing from here would re-enter the driver: let a work item do it. */
		schedule_work(&w->dead_work);
		if (why)
			dev_err_ratelimited(&q->xd->vdev.dev, "queue %u: %s\n", q->index, why);
		return true;
	}
	if (!q->kick_vector) {
		WRITE_ONCE(w->last_activity, jiffies);
		wake_up_process(w->poller);
	} else if (ring) {
		xvl_ring(w, q->kick_vector);
	}
	if (!vq->callback)
		complete_polled(q);
	else
		spin_for_lone(q);
	return true;
}

void xvl_vq_dead_work(struct work_struct *work)
{
	struct xvl_win *w = container_of(work, struct xvl_win, dead_work);

	xvl_win_poll_vqs(w);
}

/*
 * A live device that holds requests and completes none of them for timeout
 * jiffies is treated as gone: its requests fail (the block layer of this
 * kernel would otherwise wait for them forever).
 */
static void check_stall(struct xvl_vq *q, unsigned long timeout)
{
	unsigned long flags;
	bool stalled = false;

	spin_lock_irqsave(&q->lock, flags);
	if (q->dead || q->stopped || !q->inflight || xvl_vdev_holds_buffers(q)) {
		q->stall_since = 0;
	} else if (!q->stall_since || q->progress_mark != q->win_used_seen) {
		q->progress_mark = q->win_used_seen;
		q->stall_since = jiffies;
	} else if (time_after(jiffies, q->stall_since + timeout)) {
		stalled = true;
	}
	spin_unlock_irqrestore(&q->lock, flags);
	if (stalled)
		xvl_vq_kill(q, "the device completed nothing it held within the I/O timeout");
}

void xvl_win_check_stalls(struct xvl_win *w, unsigned long timeout)
{
	unsigned int i;

	rcu_read_lock();
	for (i = 0; i < XVL_MAX_VQS; i++) {
		struct xvl_vq *q = rcu_dereference(w->vq_table[i]);

		if (q)
			check_stall(q, timeout);
	}
	rcu_read_unlock();
}

/* Poll every queue of the window once.  Returns whether anything completed. */
bool xvl_win_poll_vqs(struct xvl_win *w)
{
	bool busy = false;
	unsigned int i;

	rcu_read_lock();
	for (i = 0; i < XVL_MAX_VQS; i++) {
		struct xvl_vq *q = rcu_dereference(w->vq_table[i]);

		if (q && xvl_vq_poll(q, false))
			busy = true;
	}
	rcu_read_unlock();
	return busy;
}

/* A queue vector rang: poll the queues that use it (bounded work per interrupt). */
irqreturn_t xvl_vq_irq(int irq, void *data)
{
	struct xvl_vec *v = data;
	struct xvl_win *w = v->w;
	unsigned int i;

	rcu_read_lock();
	for (i = 0; i < XVL_MAX_VQS; i++) {
		struct xvl_vq *q = rcu_dereference(w->vq_table[i]);

		if (q && q->call_vector == v->vec)
			xvl_vq_poll(q, true);
	}
	rcu_read_unlock();
	return IRQ_HANDLED;
}

static int table_add(struct xvl_win *w, struct xvl_vq *q)
{
	unsigned int i;
	int ret = -ENOSPC;

	spin_lock(&w->vq_lock);
	for (i = 0; i < XVL_MAX_VQS; i++) {
		if (!rcu_access_pointer(w->vq_table[i])) {
			rcu_assign_pointer(w->vq_table[i], q);
			ret = 0;
			break;
		}
	}
	spin_unlock(&w->vq_lock);
	return ret;
}

static void table_del(struct xvl_win *w, struct xvl_vq *q)
{
	unsigned int i;

	spin_lock(&w->vq_lock);
	for (i = 0; i < XVL_MAX_VQS; i++) {
		if (rcu_access_pointer(w->vq_table[i]) == q)
			RCU_INIT_POINTER(w->vq_table[i], NULL);
	}
	spin_unlock(&w->vq_lock);
	synchronize_rcu();
}

/*
 * Each queue gets a vector of its own, the same number on both sides, the
 * first time it is set up, and keeps it across resets and restarts
 * (PROTOCOL.md 7.6: the device side takes a queue's vector as that queue's
 * notification).  A queue with no vector left on either side (a device side
 * with only the mailbox vector, or fewer than the queues) is polled: vector
 * 0, and the poller runs.  Invariant: a queue without a kick vector exists
 * only while w->poller runs.
 */
static int pick_vectors(struct xvl_vq *q)
{
	struct xvl_win *w = q->xd->win;
	u32 limit = min_t(u32, w->nvec, xvl_mbox_peer_vectors(&w->mb));
	u8 *v = &w->qvec[q->xd->index][q->index];

	q->call_vector = 0;
	q->kick_vector = 0;
	if (w->poller)
		return 0;
	if (!*v && w->next_vector < limit)
		*v = w->next_vector++;
	if (!*v || *v >= limit) {
		dev_info(&q->xd->vdev.dev,
			 "queue %u: no doorbell vector for it (%u on this side, %u on the device side): polled\n",
			 q->index, w->nvec, xvl_mbox_peer_vectors(&w->mb));
		return xvl_win_start_poller(w);
	}
	q->call_vector = *v;
	q->kick_vector = *v;
	return 0;
}

static void free_vq_mem(struct xvl_vq *q)
{
	struct xvl_win *w = q->xd->win;

	bitmap_free(q->outstanding);
	kfree(q->wlen);
	kfree(q->last_w);
	if (q->wdesc)
		xvl_heap_free_off(w, q->woff, q->wsize);
	if (q->priv_mem)
		free_pages_exact(q->priv_mem, q->priv_size);
	kfree(q);
}

struct xvl_vq *xvl_vq_create(struct xvl_vdev *xd, unsigned int index, unsigned int num,
			     vq_callback_t *callback, const char *name, bool ctx)
{
	struct xvl_win *w = xd->win;
	int ret = -ENOMEM;
	struct vring wr;
	struct xvl_vq *q;
	void *wmem;

	q = kzalloc(sizeof(*q), GFP_KERNEL);
	if (!q)
		return ERR_PTR(-ENOMEM);
	q->xd = xd;
	q->index = index;
	q->num = num;
	spin_lock_init(&q->lock);
	q->outstanding = bitmap_zalloc(num, GFP_KERNEL);
	q->wlen = kcalloc(num, sizeof(*q->wlen), GFP_KERNEL);
	q->last_w = kcalloc(num, sizeof(*q->last_w), GFP_KERNEL);
	q->priv_size = vring_size(num, XVL_VRING_ALIGN);
	q->priv_mem = alloc_pages_exact(q->priv_size, GFP_KERNEL | __GFP_ZERO);
	if (!q->outstanding || !q->wlen || !q->last_w || !q->priv_mem)
		goto err;
	vring_init(&q->priv, num, q->priv_mem, XVL_VRING_ALIGN);

	q->wsize = PAGE_ALIGN(vring_size(num, XVL_VRING_ALIGN));
	wmem = xvl_heap_alloc_off(w, q->wsize, PAGE_SIZE, &q->woff);
	if (!wmem)
		goto err;
	memset(wmem, 0, q->wsize);
	vring_init(&wr, num, wmem, XVL_VRING_ALIGN);
	q->wdesc = wr.desc;
	q->wavail = wr.avail;
	q->wused = wr.used;

	q->vq = vring_new_virtqueue(index, num, XVL_VRING_ALIGN, &xd->vdev, true, ctx,
				    q->priv_mem, xvl_vq_notify, callback, name);
	if (!q->vq)
		goto err;
	q->vq->priv = q;
	ret = pick_vectors(q);
	if (!ret)
		ret = table_add(w, q);
	if (ret) {
		vring_del_virtqueue(q->vq);
		goto err;
	}
	return q;
err:
	free_vq_mem(q);
	return ERR_PTR(ret);
}

void xvl_vq_destroy(struct xvl_vq *q)
{
	table_del(q->xd->win, q);
	vring_del_virtqueue(q->vq);
	free_vq_mem(q);
}

/* Tell the device side where the queue's window rings are (SET_QUEUE). */
int xvl_vq_announce(struct xvl_vq *q)
{
	struct xvl_win *w = q->xd->win;
	struct xvl_msg req = { .type = XVL_MSG_SET_QUEUE }, rsp;
	struct xvl_m_queue *m = &req.u.queue;
	u8 *base = (u8 *)q->wdesc;

	m->dev = q->xd->index;
	m->queue = q->index;
	m->num = q->num;
	m->flags = XVL_QUEUE_F_ENABLE;
	if (!q->call_vector) {
		m->flags |= XVL_QUEUE_F_POLL;
	} else {
		m->flags |= XVL_QUEUE_F_VECTORS;
		m->kick_vector = q->kick_vector;
		m->call_vector = q->call_vector;
	}
	m->desc = q->woff;
	m->avail = q->woff + ((u8 *)q->wavail - base);
	m->used = q->woff + ((u8 *)q->wused - base);
	return xvl_link_call(w, &req, &rsp);
}
