/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.x, section 2.7), driver and device sides.
 *
 * Memory model: everything the peer can write is read once through the
 * xvl_rd* helpers and copied into locals before it is checked and used.
 * Publication is release/acquire on the ring indices; the event-index and
 * flags handshakes need store->load ordering, hence the full fences.
 */
#include "xvl_types.h"

#include "virtq.h"
#include "xvl_atomic.h"
#include "xvl_err.h"

/* Far from any index the peer can reach: parks an event index (suppression). */
#define EVENT_PARK_DISTANCE 0x8000u

/* ------------------------------------------------------------------ layout */

static bool is_pow2(unsigned x)
{
	return x && !(x & (x - 1));
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	/* Callers pass ranges already checked to lie in the window: no overflow. */
	return a < b + blen && b < a + alen;
}

static bool range_in_window(const struct xvl_mem *m, uint64_t off, uint64_t len)
{
	return xvl_mem_ptr(m, off, len) != NULL;
}

int xvl_vq_layout_check(const struct xvl_mem *m, const struct xvl_vq_layout *l)
{
	uint64_t dlen, alen, ulen;

	if (!m || !l || !m->base)
		return -EINVAL;
	/* Atomic 64-bit loads need natural alignment relative to real addresses. */
	if ((uintptr_t)m->base & 15)
		return -EINVAL;
	if (!is_pow2(l->num) || l->num > XVL_VQ_MAX_SIZE)
		return -EINVAL;
	if ((l->desc & 15) || (l->avail & 1) || (l->used & 3))
		return -EINVAL;
	dlen = xvl_vq_desc_bytes(l->num);
	alen = xvl_vq_avail_bytes(l->num);
	ulen = xvl_vq_used_bytes(l->num);
	if (!range_in_window(m, l->desc, dlen) || !range_in_window(m, l->avail, alen) ||
	    !range_in_window(m, l->used, ulen))
		return -EINVAL;
	if (ranges_overlap(l->desc, dlen, l->avail, alen) ||
	    ranges_overlap(l->desc, dlen, l->used, ulen) ||
	    ranges_overlap(l->avail, alen, l->used, ulen))
		return -EINVAL;
	return 0;
}

/* Descriptor as copied out of the window: checked and used, never re-read. */
struct desc_copy {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

static void desc_read(const struct xvl_vring_desc *d, struct desc_copy *c)
{
	c->addr = xvl_rd64(&d->addr);
	c->len = xvl_rd32(&d->len);
	c->flags = xvl_rd16(&d->flags);
	c->next = xvl_rd16(&d->next);
}

static void desc_write(struct xvl_vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
		       uint16_t next)
{
	xvl_put64(&d->addr, addr);
	xvl_put32(&d->len, len);
	xvl_put16(&d->flags, flags);
	xvl_put16(&d->next, next);
}

/* used_event trails the avail ring; avail_event trails the used ring. */
static uint16_t *used_event_of(struct xvl_vring_avail *avail, uint16_t num)
{
	return &avail->ring[num];
}

static uint16_t *avail_event_of(struct xvl_vring_used *used, uint16_t num)
{
	return (uint16_t *)&used->ring[num];
}

/* ------------------------------------------------------------------ driver */

struct xvl_vq_drv_slot {
	uint64_t token;
	uint64_t in_bytes; /* device-writable bytes of the chain: bound for used len */
	uint16_t ndesc;    /* ring descriptors the chain holds (1 when indirect) */
	bool busy;         /* submitted, not yet completed or detached */
};

size_t xvl_vq_drv_priv_size(uint16_t num)
{
	return (size_t)num * (sizeof(struct xvl_vq_drv_slot) + sizeof(uint16_t));
}

static int drv_break(struct xvl_vq_drv *vq)
{
	vq->broken = true;
	return -EIO;
}

static bool indirect_region_ok(const struct xvl_mem *m, const struct xvl_vq_layout *l,
			       uint64_t ind_off, uint16_t ind_max)
{
	uint64_t len = xvl_vq_desc_bytes(l->num) * ind_max;

	if (!ind_max || (ind_off & 15) || !range_in_window(m, ind_off, len))
		return false;
	return !ranges_overlap(ind_off, len, l->desc, xvl_vq_desc_bytes(l->num)) &&
	       !ranges_overlap(ind_off, len, l->avail, xvl_vq_avail_bytes(l->num)) &&
	       !ranges_overlap(ind_off, len, l->used, xvl_vq_used_bytes(l->num));
}

static void drv_reset_rings(struct xvl_vq_drv *vq)
{
	__builtin_memset(vq->desc, 0, xvl_vq_desc_bytes(vq->num));
	__builtin_memset(vq->avail, 0, xvl_vq_avail_bytes(vq->num));
	__builtin_memset(vq->used, 0, xvl_vq_used_bytes(vq->num));
}

static void drv_reset_free_list(struct xvl_vq_drv *vq)
{
	uint16_t i;

	/* Every link stays < num, even the tail's: no garbage index ever exists. */
	for (i = 0; i < vq->num; i++)
		vq->next[i] = (uint16_t)((i + 1u) & (vq->num - 1u));
	__builtin_memset(vq->slot, 0, sizeof(*vq->slot) * vq->num);
	vq->free_head = 0;
	vq->num_free = vq->num;
}

int xvl_vq_drv_init(struct xvl_vq_drv *vq, const struct xvl_mem *m, const struct xvl_vq_layout *l,
		    bool event_idx, uint64_t ind_off, uint16_t ind_max, void *priv)
{
	if (!vq || !priv || xvl_vq_layout_check(m, l))
		return -EINVAL;
	if ((uintptr_t)priv & (_Alignof(struct xvl_vq_drv_slot) - 1))
		return -EINVAL;
	if (ind_off && !indirect_region_ok(m, l, ind_off, ind_max))
		return -EINVAL;

	__builtin_memset(vq, 0, sizeof(*vq));
	vq->mem = *m;
	vq->desc = (struct xvl_vring_desc *)(m->base + l->desc);
	vq->avail = (struct xvl_vring_avail *)(m->base + l->avail);
	vq->used = (struct xvl_vring_used *)(m->base + l->used);
	vq->num = l->num;
	vq->event_idx = event_idx;
	vq->ind_off = ind_off;
	vq->ind_max = ind_off ? ind_max : 0;
	vq->slot = priv;
	vq->next = (uint16_t *)(vq->slot + l->num);
	drv_reset_free_list(vq);
	drv_reset_rings(vq);
	return 0;
}

unsigned xvl_vq_drv_inflight(const struct xvl_vq_drv *vq)
{
	/* Each add publishes one avail entry; each completion or detach consumes one. */
	return (uint16_t)(vq->avail_idx - vq->last_used);
}

static bool sg_in_window(const struct xvl_vq_drv *vq, const struct xvl_sg *sg, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		if (!range_in_window(&vq->mem, sg[i].off, sg[i].len))
			return false;
	return true;
}

static uint16_t sg_flags(unsigned i, unsigned n_out)
{
	return i < n_out ? 0 : XVL_VRING_DESC_F_WRITE;
}

static uint16_t take_free(struct xvl_vq_drv *vq)
{
	uint16_t head = vq->free_head;

	vq->free_head = vq->next[head];
	vq->num_free--;
	return head;
}

/* Chain n ring descriptors from the free list; the private next[] keeps the links. */
static uint16_t add_direct(struct xvl_vq_drv *vq, const struct xvl_sg *sg, unsigned n,
			   unsigned n_out)
{
	uint16_t head = vq->free_head, d = head;
	unsigned i;

	for (i = 0; i + 1 < n; i++) {
		desc_write(&vq->desc[d], sg[i].off, sg[i].len,
			   sg_flags(i, n_out) | XVL_VRING_DESC_F_NEXT, vq->next[d]);
		d = vq->next[d];
	}
	desc_write(&vq->desc[d], sg[i].off, sg[i].len, sg_flags(i, n_out), 0);
	vq->free_head = vq->next[d];
	vq->num_free = (uint16_t)(vq->num_free - n);
	return head;
}

/* One ring descriptor pointing at the head's own table (validated at init). */
static uint16_t add_indirect(struct xvl_vq_drv *vq, const struct xvl_sg *sg, unsigned n,
			     unsigned n_out)
{
	uint16_t head = take_free(vq);
	uint64_t table_off = vq->ind_off + xvl_vq_desc_bytes(vq->ind_max) * head;
	struct xvl_vring_desc *table = (struct xvl_vring_desc *)(vq->mem.base + table_off);
	unsigned i;

	for (i = 0; i + 1 < n; i++)
		desc_write(&table[i], sg[i].off, sg[i].len,
			   sg_flags(i, n_out) | XVL_VRING_DESC_F_NEXT, (uint16_t)(i + 1));
	desc_write(&table[i], sg[i].off, sg[i].len, sg_flags(i, n_out), 0);
	desc_write(&vq->desc[head], table_off, (uint32_t)xvl_vq_desc_bytes(n),
		   XVL_VRING_DESC_F_INDIRECT, 0);
	return head;
}

static uint64_t sg_in_bytes(const struct xvl_sg *sg, unsigned n_out, unsigned n)
{
	uint64_t sum = 0;
	unsigned i;

	for (i = n_out; i < n; i++)
		sum += sg[i].len;
	return sum;
}

/* Count one index step since the last decision, saturating at one full wrap. */
static void count_step(uint32_t *moved)
{
	if (*moved < 0x10000u)
		++*moved;
}

static void stage_avail(struct xvl_vq_drv *vq, uint16_t head)
{
	xvl_put16(&vq->avail->ring[vq->avail_idx & (vq->num - 1)], head);
	vq->avail_idx++;
	count_step(&vq->added);
}

void xvl_vq_drv_publish(struct xvl_vq_drv *vq)
{
	if (vq->broken || vq->avail_pub == vq->avail_idx)
		return;
	vq->avail_pub = vq->avail_idx;
	/* Release: descriptors, tables and the ring entries are visible before the index. */
	xvl_wr16_release(&vq->avail->idx, vq->avail_idx);
}

int xvl_vq_drv_add(struct xvl_vq_drv *vq, const struct xvl_sg *sg, unsigned n_out, unsigned n_in,
		   uint64_t token)
{
	int rc = xvl_vq_drv_stage(vq, sg, n_out, n_in, token);

	if (rc == 0)
		xvl_vq_drv_publish(vq);
	return rc;
}

int xvl_vq_drv_stage(struct xvl_vq_drv *vq, const struct xvl_sg *sg, unsigned n_out,
		     unsigned n_in, uint64_t token)
{
	unsigned n;
	bool use_table;
	uint16_t head;

	if (vq->broken)
		return -EIO;
	if (!sg || n_out > UINT16_MAX || n_in > UINT16_MAX)
		return -EINVAL;
	n = n_out + n_in;
	use_table = vq->ind_off && n > 1;
	if (!n || n > (use_table ? vq->ind_max : vq->num) || !sg_in_window(vq, sg, n))
		return -EINVAL;
	if (vq->num_free < (use_table ? 1 : n))
		return -ENOSPC;

	head = use_table ? add_indirect(vq, sg, n, n_out) : add_direct(vq, sg, n, n_out);
	vq->slot[head].token = token;
	vq->slot[head].in_bytes = sg_in_bytes(sg, n_out, n);
	vq->slot[head].ndesc = (uint16_t)(use_table ? 1 : n);
	vq->slot[head].busy = true;
	stage_avail(vq, head);
	return 0;
}

/*
 * Does the peer want to hear that our index moved from *last to now?  Our
 * index store must be visible before we sample its wishes (full fence).
 * *moved counts the steps since the last decision: 65536 of them bring a
 * 16-bit index back to *last, and the event-index test cannot tell that
 * from no movement, so a full wrap always notifies.
 */
static bool peer_wants_notify(bool event_idx, uint16_t *last, uint32_t *moved, uint16_t now,
			      const uint16_t *peer_event, const uint16_t *peer_flags,
			      uint16_t suppress_flag)
{
	uint16_t old = *last;
	uint32_t steps = *moved;

	xvl_mb();
	*last = now;
	*moved = 0;
	if (steps >= 0x10000u)
		return true;
	if (now == old)
		return false;
	if (event_idx)
		return xvl_vq_need_event(xvl_rd16(peer_event), now, old);
	return !(xvl_rd16(peer_flags) & suppress_flag);
}

bool xvl_vq_drv_kick_prepare(struct xvl_vq_drv *vq)
{
	if (vq->broken)
		return false;
	xvl_vq_drv_publish(vq);
	return peer_wants_notify(vq->event_idx, &vq->kicked_idx, &vq->added, vq->avail_idx,
				 avail_event_of(vq->used, vq->num), &vq->used->flags,
				 XVL_VRING_USED_F_NO_NOTIFY);
}

/* Return a chain's descriptors to the free list, walking only private links. */
static void release_chain(struct xvl_vq_drv *vq, uint16_t head)
{
	struct xvl_vq_drv_slot *s = &vq->slot[head];
	uint16_t tail = head, i;

	for (i = 1; i < s->ndesc; i++)
		tail = vq->next[tail];
	vq->next[tail] = vq->free_head;
	vq->free_head = head;
	vq->num_free = (uint16_t)(vq->num_free + s->ndesc);
	s->busy = false;
}

static void drv_note_consumed(struct xvl_vq_drv *vq)
{
	if (!vq->event_idx || vq->cb_off)
		return;
	/* Ask for a signal at the next completion; fence so a re-check can't miss it. */
	xvl_wr16(used_event_of(vq->avail, vq->num), vq->last_used);
	xvl_mb();
}

int xvl_vq_drv_get_used(struct xvl_vq_drv *vq, uint64_t *token, uint32_t *len)
{
	struct xvl_vring_used_elem *ue;
	uint16_t used_idx, ready;
	uint32_t id, ulen;

	if (vq->broken)
		return -EIO;
	/* Entries up to the index read last are published: read it again only when they are
	 * taken (the driver's stores to the line cost a transfer per read). */
	ready = (uint16_t)(vq->used_seen - vq->last_used);
	if (!ready) {
		used_idx = xvl_rd16_acquire(&vq->used->idx);
		ready = (uint16_t)(used_idx - vq->last_used);
		if (!ready)
			return 0;
		/* checked once per read: later takes shrink ready and inflight alike */
		if (ready > xvl_vq_drv_inflight(vq))
			return drv_break(vq);
		vq->used_seen = used_idx;
	}

	ue = &vq->used->ring[vq->last_used & (vq->num - 1)];
	id = xvl_rd32(&ue->id);
	ulen = xvl_rd32(&ue->len);
	if (id >= vq->num || !vq->slot[id].busy)
		return drv_break(vq);
	/*
	 * A length beyond the writable bytes is clamped, not fatal: nothing past
	 * them is ever read, and some backends (DPDK's vhost_blk example) report
	 * the data length of a write there.  Counted so it can be seen.
	 */
	if (ulen > vq->slot[id].in_bytes) {
		ulen = vq->slot[id].in_bytes;
		vq->len_clamped++;
	}

	*token = vq->slot[id].token;
	*len = ulen;
	release_chain(vq, (uint16_t)id);
	vq->last_used++;
	drv_note_consumed(vq);
	return 1;
}

/*
 * Ask the peer for notifications from position pos on: through the event
 * field with event idx, else by clearing the suppress flag.  Then re-check
 * the peer's index (store before load: pairs with the peer's fence) and
 * say whether it already moved past pos.
 */
static bool notify_arm(bool event_idx, uint16_t *event, uint16_t *flags, uint16_t pos,
		       const uint16_t *peer_idx)
{
	if (event_idx)
		xvl_wr16(event, pos);
	else
		xvl_wr16(flags, 0);
	xvl_mb();
	/* Relaxed: after the fence, and the caller reads the ring through get_used/pop. */
	return xvl_rd16(peer_idx) != pos;
}

/* Suppress notifications: park the event field far ahead, or set the flag. */
static void notify_park(bool event_idx, uint16_t *event, uint16_t *flags, uint16_t flag,
			uint16_t pos)
{
	if (event_idx)
		xvl_wr16(event, (uint16_t)(pos + EVENT_PARK_DISTANCE));
	else
		xvl_wr16(flags, flag);
}

/* A predicate for spin loops: relaxed, get_used re-reads the index with acquire. */
bool xvl_vq_drv_has_used(const struct xvl_vq_drv *vq)
{
	return xvl_rd16(&vq->used->idx) != vq->last_used;
}

bool xvl_vq_drv_enable_cb(struct xvl_vq_drv *vq)
{
	/* Broken: report "pending" so the caller calls get_used and sees -EIO. */
	if (vq->broken)
		return true;
	vq->cb_off = false;
	return notify_arm(vq->event_idx, used_event_of(vq->avail, vq->num), &vq->avail->flags,
			  vq->last_used, &vq->used->idx);
}

void xvl_vq_drv_disable_cb(struct xvl_vq_drv *vq)
{
	if (vq->broken)
		return;
	vq->cb_off = true;
	notify_park(vq->event_idx, used_event_of(vq->avail, vq->num), &vq->avail->flags,
		    XVL_VRING_AVAIL_F_NO_INTERRUPT, vq->last_used);
}

int xvl_vq_drv_detach(struct xvl_vq_drv *vq, uint64_t *token)
{
	uint16_t i;

	for (i = 0; i < vq->num; i++) {
		if (!vq->slot[i].busy)
			continue;
		/* The ring no longer matches what the device saw: no way back but re-init. */
		vq->broken = true;
		*token = vq->slot[i].token;
		release_chain(vq, i);
		vq->last_used++;
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ device */

static int dev_break(struct xvl_vq_dev *vq, int err)
{
	vq->broken = true;
	return err;
}

int xvl_vq_dev_init(struct xvl_vq_dev *vq, const struct xvl_mem *m, const struct xvl_vq_layout *l,
		    bool event_idx, bool indirect, uint16_t avail_base, uint16_t used_base)
{
	uint16_t inflight = (uint16_t)(avail_base - used_base);

	if (!vq || xvl_vq_layout_check(m, l) || inflight > l->num)
		return -EINVAL;
	__builtin_memset(vq, 0, sizeof(*vq));
	vq->mem = *m;
	vq->desc = (struct xvl_vring_desc *)(m->base + l->desc);
	vq->avail = (struct xvl_vring_avail *)(m->base + l->avail);
	vq->used = (struct xvl_vring_used *)(m->base + l->used);
	vq->num = l->num;
	vq->last_avail = avail_base;
	vq->avail_seen = avail_base;
	vq->used_idx = used_base;
	vq->used_pub = used_base;
	vq->signalled_used = used_base;
	vq->inflight = inflight;
	vq->event_idx = event_idx;
	vq->indirect = indirect;
	return 0;
}

/* Where the walk of one chain stands: the table it is in and its bounds. */
struct chain_walk {
	const struct xvl_vring_desc *table;
	uint32_t size;  /* entries in table: the bound for next and for the step count */
	uint32_t steps; /* descriptors visited in this table (loop detection) */
	bool in_table;  /* inside an indirect table */
	bool seen_write;
};

/*
 * Switch the walk to the indirect table d describes.  The table must be
 * negotiated, not nested, not chained on, a whole non-zero number of
 * descriptors, inside the window and 8-byte aligned (it is read with
 * 64-bit atomic loads).
 */
static int enter_indirect(const struct xvl_vq_dev *vq, struct chain_walk *w,
			  const struct desc_copy *d, uint32_t *idx)
{
	const void *t;

	if (!vq->indirect || w->in_table || (d->flags & XVL_VRING_DESC_F_NEXT))
		return -EIO;
	if (!d->len || (d->len & 15) || (d->addr & 7))
		return -EIO;
	t = xvl_mem_ptr(&vq->mem, d->addr, d->len);
	if (!t)
		return -EIO;
	w->table = t;
	w->size = d->len / 16;
	w->steps = 0;
	w->in_table = true;
	*idx = 0;
	return 0;
}

static int add_segment(const struct xvl_vq_dev *vq, struct chain_walk *w,
		       const struct desc_copy *d, struct xvl_vq_elem *e, unsigned max_segs)
{
	bool write = d->flags & XVL_VRING_DESC_F_WRITE;
	void *p = xvl_mem_ptr(&vq->mem, d->addr, d->len);
	struct xvl_seg *s;

	if (!p || (!write && w->seen_write))
		return -EIO;
	if ((unsigned)e->n_out + e->n_in >= max_segs)
		return -E2BIG;
	s = &e->seg[e->n_out + e->n_in];
	s->ptr = p;
	s->off = d->addr;
	s->len = d->len;
	s->write = write;
	if (write) {
		w->seen_write = true;
		e->n_in++;
		e->in_bytes += d->len;
	} else {
		e->n_out++;
		e->out_bytes += d->len;
	}
	return 0;
}

/* Copy out and check every descriptor of the chain at head into e. */
static int walk_chain(const struct xvl_vq_dev *vq, uint16_t head, struct xvl_vq_elem *e,
		      unsigned max_segs)
{
	struct chain_walk w = { .table = vq->desc, .size = vq->num };
	struct desc_copy d;
	uint32_t idx = head;
	int rc;

	e->head = head;
	e->n_out = e->n_in = 0;
	e->out_bytes = e->in_bytes = 0;
	for (;;) {
		/* A chain longer than its table must revisit a descriptor: a loop. */
		if (++w.steps > w.size)
			return -EIO;
		desc_read(&w.table[idx], &d);
		if (d.flags & XVL_VRING_DESC_F_INDIRECT) {
			rc = enter_indirect(vq, &w, &d, &idx);
			if (rc)
				return rc;
			continue;
		}
		rc = add_segment(vq, &w, &d, e, max_segs);
		if (rc)
			return rc;
		if (!(d.flags & XVL_VRING_DESC_F_NEXT))
			return 0;
		idx = d.next;
		if (idx >= w.size)
			return -EIO;
	}
}

static void dev_note_consumed(struct xvl_vq_dev *vq)
{
	if (!vq->event_idx || vq->notify_off)
		return;
	/* Ask for a kick when the driver publishes past what we consumed. */
	xvl_wr16(avail_event_of(vq->used, vq->num), vq->last_avail);
	xvl_mb();
}

int xvl_vq_dev_pop(struct xvl_vq_dev *vq, struct xvl_vq_elem *e, unsigned max_segs)
{
	uint16_t avail_idx, pending, head;
	int rc;

	if (vq->broken)
		return -EIO;
	/* Chains up to the index read last are published: read it again only when they are
	 * taken (the driver's stores to the line cost a transfer per read). */
	pending = (uint16_t)(vq->avail_seen - vq->last_avail);
	if (!pending) {
		avail_idx = xvl_rd16_acquire(&vq->avail->idx);
		pending = (uint16_t)(avail_idx - vq->last_avail);
		if (!pending)
			return 0;
		/* Available plus in flight can never exceed the heads that exist (checked once
		 * per read: pops, unpops and pushes keep the sum within it). */
		if (pending > vq->num - vq->inflight)
			return dev_break(vq, -EIO);
		vq->avail_seen = avail_idx;
	}
	head = xvl_rd16(&vq->avail->ring[vq->last_avail & (vq->num - 1)]);
	if (head >= vq->num)
		return dev_break(vq, -EIO);
	rc = walk_chain(vq, head, e, max_segs);
	if (rc)
		return dev_break(vq, rc);
	vq->last_avail++;
	vq->inflight++;
	dev_note_consumed(vq);
	return 1;
}

int xvl_vq_dev_unpop(struct xvl_vq_dev *vq, uint16_t n)
{
	if (vq->broken)
		return -EIO;
	if (n > vq->inflight)
		return -EINVAL;
	vq->last_avail = (uint16_t)(vq->last_avail - n);
	vq->inflight = (uint16_t)(vq->inflight - n);
	return 0;
}

int xvl_vq_dev_fill(struct xvl_vq_dev *vq, uint16_t head, uint32_t len)
{
	struct xvl_vring_used_elem *ue;

	if (vq->broken)
		return -EIO;
	if (head >= vq->num || !vq->inflight)
		return -EINVAL;
	ue = &vq->used->ring[vq->used_idx & (vq->num - 1)];
	xvl_put32(&ue->id, head);
	xvl_put32(&ue->len, len);
	vq->used_idx++;
	count_step(&vq->pushed);
	vq->inflight--;
	return 0;
}

void xvl_vq_dev_publish(struct xvl_vq_dev *vq)
{
	if (vq->broken || vq->used_pub == vq->used_idx)
		return;
	vq->used_pub = vq->used_idx;
	/* Release: the elements are visible before the index that exposes them. */
	xvl_wr16_release(&vq->used->idx, vq->used_idx);
}

int xvl_vq_dev_push(struct xvl_vq_dev *vq, uint16_t head, uint32_t len)
{
	int rc = xvl_vq_dev_fill(vq, head, len);

	if (rc == 0)
		xvl_vq_dev_publish(vq);
	return rc;
}

bool xvl_vq_dev_notify_prepare(struct xvl_vq_dev *vq)
{
	if (vq->broken)
		return false;
	xvl_vq_dev_publish(vq);
	return peer_wants_notify(vq->event_idx, &vq->signalled_used, &vq->pushed, vq->used_idx,
				 used_event_of(vq->avail, vq->num), &vq->avail->flags,
				 XVL_VRING_AVAIL_F_NO_INTERRUPT);
}

bool xvl_vq_dev_enable_notify(struct xvl_vq_dev *vq)
{
	/* Broken: report "available" so the caller pops and sees -EIO. */
	if (vq->broken)
		return true;
	vq->notify_off = false;
	return notify_arm(vq->event_idx, avail_event_of(vq->used, vq->num), &vq->used->flags,
			  vq->last_avail, &vq->avail->idx);
}

void xvl_vq_dev_disable_notify(struct xvl_vq_dev *vq)
{
	if (vq->broken)
		return;
	vq->notify_off = true;
	notify_park(vq->event_idx, avail_event_of(vq->used, vq->num), &vq->used->flags,
		    XVL_VRING_USED_F_NO_NOTIFY, vq->last_avail);
}

bool xvl_vq_dev_has_avail(struct xvl_vq_dev *vq)
{
	if (vq->broken)
		return true;
	/* Relaxed, as has_used: pop re-reads the index with acquire. */
	return xvl_rd16(&vq->avail->idx) != vq->last_avail;
}
