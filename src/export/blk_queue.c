/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk requests on one vring of the frontend, forwarded to the
 * xvloop queue of the same index.
 *
 * The guest is not trusted: each head and descriptor is read once and
 * copied out, chains are bounded by the size of their table (the ring, or
 * an indirect table as the head) and EXP_MAX_SEGS, every
 * buffer must lie inside the memory table.  A malformed request completes
 * with VIRTIO_BLK_S_IOERR (or is dropped when it has no status byte to
 * write); a ring that breaks the protocol (a head out of range or already in
 * flight, an avail index that jumps) is marked broken and served no more.
 * Neither touches the xvloop device or its other users.
 *
 * Data never goes to the device side from guest RAM: a request is cut into
 * parts of at most the client's max_transfer, each part gets one window
 * buffer (xvl_buf_alloc) that written data are gathered into and read data
 * scattered from, so the device compartment sees only the window.  (The
 * client's own bounce path copies one contiguous buffer per request; a
 * guest request is a scatter list, so the export gathers it itself, once,
 * straight into the window.)  The guest is offered seg_max x size_max of at
 * most EXP_MAX_PARTS parts, so it sends large requests whole, as it would to
 * a disk.  When the window heap or the queue is full, requests wait in a
 * FIFO (pend) and are submitted as earlier ones complete.
 *
 * Inflight tracking (vhost-user.rst, "Inflight I/O tracking", split rings):
 * a head is marked inflight (with a rising counter) as soon as it is read
 * from the avail ring; on completion last_batch_head is set, used->idx
 * published, then the mark cleared and used_idx recorded.  A restarted
 * export finds the marks in the area the frontend kept for it, repairs the
 * one step a crash can have cut short, and resubmits the marked heads in
 * counter order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export_int.h"
#include "xvl_atomic.h"

static void log_ring(struct exp_vring *vr, const char *what)
{
	if (!vr->ex->o->quiet)
		fprintf(stderr, "xvl export: queue %u: %s\n", vr->q, what);
}

static void break_ring(struct exp_vring *vr, const char *why)
{
	if (!vr->broken)
		log_ring(vr, why);
	vr->broken = true;
}

uint64_t exp_infl_queue_bytes(uint16_t queue_size)
{
	uint64_t n = sizeof(struct exp_infl_queue) + (uint64_t)queue_size * sizeof(struct exp_infl_desc);
	return (n + 63) & ~63ull;
}

/* ------------------------------------------------------------ config */

/* Segment size offered: seg_max segments of it make at most EXP_MAX_PARTS client requests. */
static uint32_t size_max_of(const struct xvl_blk_info *in)
{
	uint32_t s = (uint32_t)(((uint64_t)in->max_transfer * EXP_MAX_PARTS / EXP_SEG_MAX) & ~4095ull);
	return s < 4096 ? 4096 : s;
}

/* Segments offered: fewer than EXP_SEG_MAX when the client's max transfer is tiny. */
static uint32_t seg_max_of(const struct xvl_blk_info *in)
{
	uint64_t n = (uint64_t)in->max_transfer * EXP_MAX_PARTS / size_max_of(in);
	return n < 1 ? 1 : n > EXP_SEG_MAX ? EXP_SEG_MAX : (uint32_t)n;
}

uint64_t exp_blk_features(const struct exp_export *ex)
{
	const struct xvl_blk_info *in = &ex->info;
	uint64_t f = (1ull << XVL_F_VERSION_1) | (1ull << 30) /* VHOST_USER_F_PROTOCOL_FEATURES */ |
		     (1ull << XVL_F_INDIRECT_DESC) | (1ull << XVL_F_EVENT_IDX) |
		     (1ull << XVL_BLK_F_SIZE_MAX) | (1ull << XVL_BLK_F_SEG_MAX) |
		     (1ull << XVL_BLK_F_BLK_SIZE) | (1ull << XVL_BLK_F_MQ);
	if (in->read_only)
		f |= 1ull << XVL_BLK_F_RO;
	if (in->flush)
		f |= 1ull << XVL_BLK_F_FLUSH;
	if (in->discard && !in->read_only)
		f |= 1ull << XVL_BLK_F_DISCARD;
	if (in->write_zeroes && !in->read_only)
		f |= 1ull << XVL_BLK_F_WRITE_ZEROES;
	return f;
}

static void put32(uint8_t *cfg, unsigned off, uint32_t v)
{
	v = xvl_le32(v);
	memcpy(cfg + off, &v, 4);
}

void exp_blk_config(const struct exp_export *ex, uint8_t cfg[XVL_BLK_CFG_SIZE])
{
	const struct xvl_blk_info *in = &ex->info;
	uint64_t cap = xvl_le64(in->capacity / XVL_BLK_SECTOR_SIZE);
	uint16_t nq = xvl_le16(ex->nq);
	uint32_t bs = in->block_size ? in->block_size : XVL_BLK_SECTOR_SIZE;
	uint32_t max_sectors = in->max_transfer / XVL_BLK_SECTOR_SIZE;

	memset(cfg, 0, XVL_BLK_CFG_SIZE);
	memcpy(cfg + XVL_BLK_CFG_CAPACITY, &cap, 8);
	put32(cfg, XVL_BLK_CFG_SIZE_MAX, size_max_of(in));
	put32(cfg, XVL_BLK_CFG_SEG_MAX, seg_max_of(in));
	put32(cfg, XVL_BLK_CFG_BLK_SIZE, bs);
	memcpy(cfg + XVL_BLK_CFG_NUM_QUEUES, &nq, 2);
	put32(cfg, XVL_BLK_CFG_MAX_DISCARD, max_sectors);
	put32(cfg, XVL_BLK_CFG_MAX_DISCARD_SEG, 1);
	put32(cfg, XVL_BLK_CFG_DISCARD_ALIGN, bs / XVL_BLK_SECTOR_SIZE);
	put32(cfg, XVL_BLK_CFG_MAX_WZ, max_sectors);
	put32(cfg, XVL_BLK_CFG_MAX_WZ_SEG, 1);
}

/* ------------------------------------------------------------ ring access */

static uint16_t avail_idx(const struct exp_vring *vr)
{
	return xvl_rd16_acquire(&vr->avail->idx);
}

static void push_used(struct exp_vring *vr, uint16_t head, uint32_t len)
{
	struct xvl_vring_used_elem *e = &vr->used->ring[vr->used_idx % vr->num];
	xvl_wr32(&e->id, head);
	xvl_wr32(&e->len, len);
	uint16_t next = (uint16_t)(vr->used_idx + 1);
	if (vr->infl) {
		vr->infl->desc[head].next = vr->infl->last_batch_head;
		vr->infl->last_batch_head = head;
		xvl_wmb();
	}
	xvl_wr16_release(&vr->used->idx, next);
	vr->used_idx = next;
	if (vr->infl) {
		xvl_wmb();
		vr->infl->desc[head].inflight = 0;
		xvl_wmb();
		vr->infl->used_idx = next;
	}
	vr->need_call = true;
	vr->done++;
}

/* ------------------------------------------------------------ segments */

static size_t copy_segs(const struct exp_seg *s, unsigned n, uint64_t skip, void *out, size_t len,
			bool to_guest)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		if (skip >= s[i].len) {
			skip -= s[i].len;
			continue;
		}
		size_t k = s[i].len - skip;
		if (k > len - done)
			k = len - done;
		if (to_guest)
			memcpy(s[i].host + skip, (uint8_t *)out + done, k);
		else
			memcpy((uint8_t *)out + done, s[i].host + skip, k);
		done += k;
		skip = 0;
	}
	return done;
}

/* Append a descriptor's buffer, split at region boundaries.  <0: outside memory or too many. */
static int add_segs(struct exp_vring *vr, struct exp_req *r, uint64_t gpa, uint32_t len,
		    bool writable)
{
	while (len) {
		uint8_t *host;
		uint64_t k = exp_mem_piece(&vr->ex->mem, gpa, &host);
		if (k == 0)
			return -EFAULT;
		if (k > len)
			k = len;
		if (r->nr + r->nw >= EXP_MAX_SEGS)
			return -E2BIG;
		r->segs[r->nr + r->nw] = (struct exp_seg){ host, (uint32_t)k };
		if (writable)
			r->nw++;
		else
			r->nr++;
		gpa += k;
		len -= (uint32_t)k;
	}
	return 0;
}

/*
 * An indirect table (VIRTIO_F_INDIRECT_DESC) as the chain's first
 * descriptor: the table must lie in one region, be 16-byte aligned, and hold
 * 1..XVL_VQ_MAX_SIZE entries.  NULL otherwise.
 */
static const struct xvl_vring_desc *indirect_table(struct exp_vring *vr, uint64_t addr, uint32_t len)
{
	if (!(vr->ex->acked & (1ull << XVL_F_INDIRECT_DESC)) || len == 0 || len % 16 ||
	    len / 16 > XVL_VQ_MAX_SIZE || addr % 16)
		return NULL;
	return (const struct xvl_vring_desc *)exp_mem_gpa(&vr->ex->mem, addr, len);
}

/*
 * Walk the chain of r->head: readable segments first, then writable ones.
 * Returns 0, or -EFAULT / -E2BIG / -EINVAL / -ELOOP for a chain that cannot
 * be served.  The last writable descriptor seen is kept in r->st_addr /
 * r->st_len even then, so that such a request can still get its IOERR.
 * The walk is bounded by the size of the table it is in (ring or indirect).
 */
static int parse_chain(struct exp_vring *vr, struct exp_req *r)
{
	const struct xvl_vring_desc *tab = vr->desc;
	unsigned size = vr->num, hops = 0;
	uint16_t i = r->head;
	bool writable = false, indirect = false;
	int err = 0;
	r->nr = r->nw = 0;
	r->rlen = r->wlen = 0;
	r->st_len = 0;
	for (;;) {
		if (hops++ >= size)
			return -ELOOP;
		uint64_t addr = xvl_rd64(&tab[i].addr);
		uint32_t len = xvl_rd32(&tab[i].len);
		uint16_t flags = xvl_rd16(&tab[i].flags);
		uint16_t next = xvl_rd16(&tab[i].next);
		if (flags & XVL_VRING_DESC_F_INDIRECT) {
			/* only as the head, never nested, never chained on */
			if (indirect || hops != 1 || (flags & XVL_VRING_DESC_F_NEXT))
				return -EINVAL;
			if (!(tab = indirect_table(vr, addr, len)))
				return -EFAULT;
			size = len / 16;
			hops = 0;
			i = 0;
			indirect = true;
			continue;
		}
		if (flags & XVL_VRING_DESC_F_WRITE) {
			writable = true;
			r->st_addr = addr;
			r->st_len = len;
		} else if (writable) {
			return -EINVAL; /* readable after writable */
		}
		if (len && !err) {
			err = add_segs(vr, r, addr, len, writable);
			if (writable)
				r->wlen += len;
			else
				r->rlen += len;
			if (r->rlen > (1u << 30) || r->wlen > (1u << 30))
				err = -E2BIG;
		}
		if (!(flags & XVL_VRING_DESC_F_NEXT))
			return err;
		if (next >= size)
			return -EINVAL;
		i = next;
	}
}

/* A chain that cannot be served: only its status byte (last writable byte) is written, if it can be. */
static void status_only(struct exp_vring *vr, struct exp_req *r)
{
	uint8_t *host = NULL;
	if (r->st_len)
		host = exp_mem_gpa(&vr->ex->mem, r->st_addr + r->st_len - 1, 1);
	r->nr = 0;
	r->nw = host ? 1 : 0;
	r->wlen = host ? 1 : 0;
	if (host)
		r->segs[0] = (struct exp_seg){ host, 1 };
	r->type = 0xff;
}

/* ------------------------------------------------------------ requests */

static uint8_t status_of(int result)
{
	if (result == 0)
		return XVL_BLK_S_OK;
	return result == -EOPNOTSUPP ? XVL_BLK_S_UNSUPP : XVL_BLK_S_IOERR;
}

/* Complete r: write the status byte, give the head back (every part is done). */
static void finish(struct exp_vring *vr, struct exp_req *r)
{
	uint8_t st = status_of(r->result);
	uint32_t used_len = 0;
	if (r->nw) {
		if (st == XVL_BLK_S_OK && r->type == XVL_BLK_T_IN)
			used_len = r->dlen;
		else if (st == XVL_BLK_S_OK && r->type == XVL_BLK_T_GET_ID)
			used_len = r->wlen - 1 < XVL_BLK_ID_BYTES ? r->wlen - 1 : XVL_BLK_ID_BYTES;
		copy_segs(r->segs + r->nr, r->nw, r->wlen - 1, &st, 1, true);
		used_len++;
	}
	r->state = REQ_FREE;
	push_used(vr, r->head, used_len);
}

static bool is_data(const struct exp_req *r)
{
	return r->type == XVL_BLK_T_IN || r->type == XVL_BLK_T_OUT;
}

/* Split r into parts the client takes in one request each. */
static void plan_parts(struct exp_export *ex, struct exp_req *r)
{
	uint32_t mt = ex->info.max_transfer;
	r->result = 0;
	r->next_part = r->outstanding = 0;
	if (!is_data(r)) {
		r->nparts = 1;
		r->part[0] = (struct exp_part){ r, NULL, 0,
						r->type == XVL_BLK_T_GET_ID ? XVL_BLK_ID_BYTES : 0 };
		return;
	}
	r->nparts = (uint8_t)((r->dlen + mt - 1) / mt);
	if (r->nparts > 1)
		ex->n_split++;
	for (unsigned p = 0; p < r->nparts; p++) {
		uint32_t skip = p * mt;
		r->part[p] = (struct exp_part){ r, NULL, skip, r->dlen - skip < mt ? r->dlen - skip : mt };
	}
}

/* Header and payload of a parsed chain into r; <0: complete with that result. */
static int decode(struct exp_vring *vr, struct exp_req *r)
{
	struct xvl_blk_outhdr h;
	if (r->rlen < sizeof(h) || r->wlen < 1)
		return -EINVAL;
	copy_segs(r->segs, r->nr, 0, &h, sizeof(h), false);
	r->type = (uint8_t)xvl_le32(h.type);
	if (xvl_le32(h.type) > 0xff)
		r->type = 0xff;
	r->sector = xvl_le64(h.sector);
	r->dlen = 0;
	r->off = 0;
	switch (r->type) {
	case XVL_BLK_T_IN:
	case XVL_BLK_T_OUT:
		r->dlen = r->type == XVL_BLK_T_IN ? r->wlen - 1 : r->rlen - (uint32_t)sizeof(h);
		if (r->dlen == 0 || r->dlen % XVL_BLK_SECTOR_SIZE ||
		    r->dlen > EXP_MAX_PARTS * (uint64_t)vr->ex->info.max_transfer ||
		    r->sector > UINT64_MAX / XVL_BLK_SECTOR_SIZE)
			return -EINVAL;
		r->off = r->sector * XVL_BLK_SECTOR_SIZE;
		return 0;
	case XVL_BLK_T_FLUSH:
	case XVL_BLK_T_GET_ID:
		return 0;
	case XVL_BLK_T_DISCARD:
	case XVL_BLK_T_WRITE_ZEROES: {
		struct xvl_blk_dwz d;
		if (r->rlen != sizeof(h) + sizeof(d))
			return -EINVAL; /* max_discard_seg = max_write_zeroes_seg = 1 */
		copy_segs(r->segs, r->nr, sizeof(h), &d, sizeof(d), false);
		uint64_t sector = xvl_le64(d.sector);
		uint32_t n = xvl_le32(d.num_sectors);
		if (r->type == XVL_BLK_T_DISCARD && (xvl_le32(d.flags) & 1))
			return -EOPNOTSUPP;
		if (n == 0 || n > UINT32_MAX / XVL_BLK_SECTOR_SIZE ||
		    sector > UINT64_MAX / XVL_BLK_SECTOR_SIZE)
			return -EINVAL;
		r->off = sector * XVL_BLK_SECTOR_SIZE;
		r->dlen = n * XVL_BLK_SECTOR_SIZE;
		return 0;
	}
	default:
		return -EOPNOTSUPP;
	}
}

static void pend_push(struct exp_vring *vr, uint16_t head)
{
	vr->pend[(vr->pend_first + vr->pend_n) % vr->num] = head;
	vr->pend_n++;
}

/* A head read from the avail ring (or resubmitted after a restart). */
static void take_head(struct exp_vring *vr, uint16_t head)
{
	if (head >= vr->num) {
		break_ring(vr, "the guest offered a descriptor head beyond the ring: queue stopped");
		return;
	}
	struct exp_req *r = &vr->reqs[head];
	if (r->state != REQ_FREE) {
		break_ring(vr, "the guest offered a head that is still in flight: queue stopped");
		return;
	}
	if (vr->infl) {
		vr->infl->desc[head].counter = ++vr->counter;
		xvl_wmb();
		vr->infl->desc[head].inflight = 1;
	}
	r->head = head;
	r->segs = vr->seg_pool + (size_t)head * EXP_MAX_SEGS;
	int rc = parse_chain(vr, r);
	if (rc == 0)
		rc = decode(vr, r);
	if (rc < 0) {
		status_only(vr, r);
		r->result = rc == -EOPNOTSUPP ? rc : -EIO;
		finish(vr, r);
		return;
	}
	vr->ex->n_reqs++;
	plan_parts(vr->ex, r);
	r->state = REQ_PENDING;
	pend_push(vr, head);
}

static unsigned submitted_total(const struct exp_export *ex)
{
	unsigned n = 0;
	for (unsigned q = 0; q < ex->nq; q++)
		n += ex->vr[q].submitted;
	return n;
}

static const uint8_t op_of[] = {
	[XVL_BLK_T_IN] = XVL_BLK_READ, [XVL_BLK_T_OUT] = XVL_BLK_WRITE,
	[XVL_BLK_T_FLUSH] = XVL_BLK_FLUSH, [XVL_BLK_T_GET_ID] = XVL_BLK_GET_ID,
	[XVL_BLK_T_DISCARD] = XVL_BLK_DISCARD, [XVL_BLK_T_WRITE_ZEROES] = XVL_BLK_WRITE_ZEROES,
};

/* Part p of r completed: scatter what it read, finish r after its last part. */
static void part_done(struct exp_vring *vr, struct exp_part *p, int result)
{
	struct exp_req *r = p->r;
	if (result == 0 && r->type == XVL_BLK_T_IN)
		copy_segs(r->segs + r->nr, r->nw, p->skip, p->buf, p->len, true);
	else if (result == 0 && r->type == XVL_BLK_T_GET_ID && r->wlen > 1)
		copy_segs(r->segs + r->nr, r->nw, 0, p->buf,
			  r->wlen - 1 < XVL_BLK_ID_BYTES ? r->wlen - 1 : XVL_BLK_ID_BYTES, true);
	if (result < 0 && r->result == 0)
		r->result = result;
	if (p->buf)
		xvl_buf_free(vr->ex->c, p->buf);
	p->buf = NULL;
	r->outstanding--;
	vr->submitted--;
	if (!r->outstanding && r->next_part == r->nparts)
		finish(vr, r);
}

/*
 * Submit the parts of r not yet submitted.  0: all are (r leaves the FIFO);
 * -EAGAIN: the window or the queue is full, the rest waits.
 */
static int try_submit(struct exp_vring *vr, struct exp_req *r)
{
	struct exp_export *ex = vr->ex;
	while (r->next_part < r->nparts) {
		struct exp_part *p = &r->part[r->next_part];
		if (p->len) {
			p->buf = xvl_buf_alloc(ex->c, p->len);
			if (!p->buf)
				return -EAGAIN;
			if (r->type == XVL_BLK_T_OUT)
				copy_segs(r->segs, r->nr, sizeof(struct xvl_blk_outhdr) + p->skip, p->buf,
					  p->len, false);
		}
		struct xvl_blk_req q = { .op = op_of[r->type], .offset = r->off + p->skip, .buf = p->buf,
					 .len = is_data(r) ? p->len : r->dlen, .user = p };
		if (r->type == XVL_BLK_T_FLUSH || r->type == XVL_BLK_T_GET_ID)
			q.len = 0;
		int rc = xvl_blk_submit(ex->b, vr->q, &q);
		if (rc < 0) {
			if (p->buf)
				xvl_buf_free(ex->c, p->buf);
			p->buf = NULL;
			if (rc == -EAGAIN)
				return -EAGAIN;
			r->result = rc;
			r->next_part = r->nparts; /* the rest is not sent */
			break;
		}
		r->next_part++;
		r->outstanding++;
		vr->submitted++;
	}
	r->state = REQ_SUBMITTED;
	if (!r->outstanding)
		finish(vr, r);
	return 0;
}

static void submit_pending(struct exp_vring *vr)
{
	bool any = false;
	while (vr->pend_n) {
		struct exp_req *r = &vr->reqs[vr->pend[vr->pend_first]];
		unsigned before = vr->submitted;
		int rc = try_submit(vr, r);
		any |= vr->submitted != before;
		if (rc == -EAGAIN) {
			if (submitted_total(vr->ex) != 0)
				break;
			/* nothing in flight will ever free room: it cannot fit */
			log_ring(vr, "a request larger than the window's free heap failed");
			r->result = -EIO;
			finish(vr, r);
		}
		vr->pend_first = (uint16_t)((vr->pend_first + 1) % vr->num);
		vr->pend_n--;
	}
	if (any)
		xvl_blk_kick(vr->ex->b, vr->q);
}

/* EVENT_IDX: the avail index the guest kicks after (used->ring[num]). */
static void set_avail_event(struct exp_vring *vr)
{
	xvl_wr16_release((uint16_t *)&vr->used->ring[vr->num], vr->last_avail);
	xvl_mb(); /* then look at avail->idx again: a request added meanwhile may not kick */
}

void exp_vring_kick(struct exp_vring *vr)
{
	if (!vr->started || !vr->enabled)
		return;
	for (unsigned round = 0; round < 8 && !vr->broken; round++) {
		uint16_t avail = avail_idx(vr);
		uint16_t n = (uint16_t)(avail - vr->last_avail);
		if (n == 0) {
			if (!vr->event_idx)
				break;
			set_avail_event(vr);
			if (avail_idx(vr) == vr->last_avail)
				break;
			continue;
		}
		if (n > vr->num) {
			break_ring(vr, "the guest's avail index ran ahead of the ring: queue stopped");
			break;
		}
		for (uint16_t k = 0; k < n && !vr->broken; k++) {
			uint16_t head = xvl_rd16(&vr->avail->ring[vr->last_avail % vr->num]);
			vr->last_avail++;
			take_head(vr, head);
		}
	}
	submit_pending(vr);
}

void exp_vring_complete(struct exp_vring *vr)
{
	struct xvl_blk_cpl cpl[32];
	int n;
	if (!vr->started)
		return;
	while ((n = xvl_blk_complete(vr->ex->b, vr->q, cpl, 32)) > 0)
		for (int i = 0; i < n; i++) {
			part_done(vr, cpl[i].user, cpl[i].result);
		}
	for (unsigned q = 0; q < vr->ex->nq; q++)
		if (vr->ex->vr[q].pend_n)
			submit_pending(&vr->ex->vr[q]);
}

/* Whether the guest asked to hear of used entries up to now (EVENT_IDX, else the NO_INTERRUPT flag). */
static bool guest_wants_call(struct exp_vring *vr)
{
	xvl_mb(); /* used->idx is published before used_event is read */
	if (!vr->event_idx)
		return !(xvl_rd16(&vr->avail->flags) & XVL_VRING_AVAIL_F_NO_INTERRUPT);
	uint16_t event = xvl_rd16(&vr->avail->ring[vr->num]);
	uint16_t old = vr->signalled_used, now = vr->used_idx;
	bool valid = vr->signalled_valid;
	vr->signalled_used = now;
	vr->signalled_valid = true;
	return !valid || (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

void exp_vring_notify(struct exp_vring *vr)
{
	if (vr->need_call && vr->started && vr->call_fd >= 0 && guest_wants_call(vr))
		xvl_os_eventfd_signal(vr->call_fd);
	vr->need_call = false;
}

/* ------------------------------------------------------------ start and stop */

static void free_ring_state(struct exp_vring *vr)
{
	free(vr->reqs);
	free(vr->seg_pool);
	free(vr->pend);
	vr->reqs = NULL;
	vr->seg_pool = NULL;
	vr->pend = NULL;
	vr->pend_n = vr->pend_first = 0;
	vr->desc = NULL;
	vr->avail = NULL;
	vr->used = NULL;
	vr->infl = NULL;
	vr->started = false;
}

static int translate_rings(struct exp_vring *vr, struct xvl_errbuf *eb)
{
	const struct exp_mem *m = &vr->ex->mem;
	uint64_t n = vr->num;
	void *d = exp_mem_uva(m, vr->desc_uva, 16 * n);
	void *a = exp_mem_uva(m, vr->avail_uva, 6 + 2 * n);
	void *u = exp_mem_uva(m, vr->used_uva, 6 + 8 * n);
	if (!d || !a || !u)
		return xvl_err(eb, -EFAULT, "queue %u: a ring (desc %#llx avail %#llx used %#llx, %u entries) is outside guest memory",
			       vr->q, (unsigned long long)vr->desc_uva, (unsigned long long)vr->avail_uva,
			       (unsigned long long)vr->used_uva, vr->num);
	if ((uintptr_t)d % 16 || (uintptr_t)a % 2 || (uintptr_t)u % 4)
		return xvl_err(eb, -EINVAL, "queue %u: a ring is misaligned", vr->q);
	vr->desc = d;
	vr->avail = a;
	vr->used = u;
	return 0;
}

static int by_counter(const void *a, const void *b, void *arg)
{
	const struct exp_infl_queue *iq = arg;
	uint64_t x = iq->desc[*(const uint16_t *)a].counter, y = iq->desc[*(const uint16_t *)b].counter;
	return x < y ? -1 : x > y;
}

/*
 * The inflight area of this queue: fresh (initialise it) or left by an
 * export that stopped without completing everything (recover: finish the
 * step a crash may have cut short, resubmit the marked heads oldest first).
 */
static void recover_inflight(struct exp_vring *vr)
{
	struct exp_export *ex = vr->ex;
	vr->infl = NULL;
	if (!ex->infl_map || vr->q >= ex->infl_nq)
		return;
	if (ex->infl_qsize != vr->num) {
		log_ring(vr, "ring size differs from the inflight area's: inflight tracking off");
		return;
	}
	struct exp_infl_queue *iq =
		(void *)((uint8_t *)ex->infl_map + vr->q * exp_infl_queue_bytes(ex->infl_qsize));
	uint16_t used = xvl_rd16_acquire(&vr->used->idx);
	vr->infl = iq;
	if (iq->version != 1 || iq->desc_num != vr->num) {
		memset(iq, 0, exp_infl_queue_bytes(vr->num));
		iq->version = 1;
		iq->desc_num = vr->num;
		iq->used_idx = used;
		return;
	}
	if (iq->used_idx != used) {
		if (iq->last_batch_head < vr->num)
			iq->desc[iq->last_batch_head].inflight = 0;
		iq->used_idx = used;
	}
	uint16_t heads[XVL_VQ_MAX_SIZE];
	unsigned n = 0;
	for (uint16_t h = 0; h < vr->num; h++) {
		if (iq->desc[h].inflight == 1)
			heads[n++] = h;
		if (iq->desc[h].counter > vr->counter)
			vr->counter = iq->desc[h].counter;
	}
	vr->used_idx = used;
	vr->last_avail = (uint16_t)(used + n);
	if (n == 0)
		return;
	qsort_r(heads, n, sizeof(heads[0]), by_counter, iq);
	if (!ex->o->quiet)
		fprintf(stderr, "xvl export: queue %u: resubmitting %u request(s) left in flight\n",
			vr->q, n);
	for (unsigned i = 0; i < n && !vr->broken; i++)
		take_head(vr, heads[i]);
}

int exp_vring_start(struct exp_vring *vr, struct xvl_errbuf *eb)
{
	if (vr->started)
		return 0;
	if (!vr->num || !vr->addr_set || !vr->ex->mem.n)
		return xvl_err(eb, -EINVAL, "queue %u started before its size, addresses and the memory table",
			       vr->q);
	int rc = translate_rings(vr, eb);
	if (rc < 0)
		return rc;
	vr->reqs = calloc(vr->num, sizeof(*vr->reqs));
	vr->seg_pool = calloc((size_t)vr->num * EXP_MAX_SEGS, sizeof(*vr->seg_pool));
	vr->pend = calloc(vr->num, sizeof(*vr->pend));
	if (!vr->reqs || !vr->seg_pool || !vr->pend) {
		free_ring_state(vr);
		return xvl_err(eb, -ENOMEM, "queue %u: out of memory", vr->q);
	}
	vr->broken = false;
	vr->event_idx = (vr->ex->acked >> XVL_F_EVENT_IDX) & 1;
	vr->signalled_valid = false;
	vr->submitted = 0;
	vr->counter = 0;
	vr->last_avail = vr->base;
	vr->used_idx = xvl_rd16_acquire(&vr->used->idx);
	vr->started = true;
	recover_inflight(vr);
	submit_pending(vr);
	exp_vring_kick(vr);
	exp_vring_notify(vr);
	return 0;
}

void exp_vring_abandon(struct exp_vring *vr)
{
	if (vr->started)
		free_ring_state(vr);
	vr->submitted = 0;
}

int exp_vring_stop(struct exp_vring *vr, struct xvl_errbuf *eb)
{
	if (!vr->started)
		return 0;
	uint64_t deadline = xvl_os_now_ns() + (uint64_t)vr->ex->o->drain_ms * 1000000ull;
	while (vr->pend_n || vr->submitted) {
		submit_pending(vr);
		if (!vr->submitted && !vr->pend_n)
			break;
		if (xvl_os_now_ns() > deadline) {
			exp_vring_notify(vr);
			return xvl_err(eb, -ETIMEDOUT,
				       "queue %u: the device did not complete %u request(s) within %u ms",
				       vr->q, vr->submitted + vr->pend_n, vr->ex->o->drain_ms);
		}
		int rc = xvl_blk_wait(vr->ex->b, vr->q, 100);
		if (rc < 0 && rc != -ENODEV)
			return xvl_err(eb, rc, "queue %u: waiting for the device failed", vr->q);
		exp_vring_complete(vr);
	}
	exp_vring_notify(vr);
	vr->base = vr->last_avail;
	free_ring_state(vr);
	return 0;
}
