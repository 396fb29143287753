/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk device model: turns popped chains into backend requests.
 *
 * Chains come from an untrusted driver.  The virtqueue layer has already
 * checked every segment against the window; here the request itself is
 * checked: header present, status byte writable, data a whole number of
 * sectors inside the capacity.  A malformed request is answered with
 * IOERR/UNSUPP; only a chain that cannot be answered at all breaks the
 * device.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "srv.h"
#include "virtio_blk.h"
#include "xvl_atomic.h"

#define BUDGET_PER_ROUND 512u

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void srv_blk_fill_config(struct srv_dev *d, uint16_t num_queues, uint32_t seg_max)
{
	uint8_t *c = d->config;
	memset(c, 0, sizeof(d->config));
	put_le(c + XVL_BLK_CFG_CAPACITY, d->capacity / XVL_BLK_SECTOR_SIZE, 8);
	put_le(c + XVL_BLK_CFG_SEG_MAX, seg_max, 4);
	put_le(c + XVL_BLK_CFG_BLK_SIZE, d->block_size, 4);
	put_le(c + XVL_BLK_CFG_NUM_QUEUES, num_queues, 2);
	put_le(c + XVL_BLK_CFG_MAX_DISCARD, 1u << 22, 4);
	put_le(c + XVL_BLK_CFG_MAX_DISCARD_SEG, 1, 4);
	put_le(c + XVL_BLK_CFG_DISCARD_ALIGN, d->block_size / XVL_BLK_SECTOR_SIZE, 4);
	put_le(c + XVL_BLK_CFG_MAX_WZ, 1u << 22, 4);
	put_le(c + XVL_BLK_CFG_MAX_WZ_SEG, 1, 4);
	c[XVL_BLK_CFG_WZ_UNMAP] = 1;
	d->config_len = XVL_BLK_CFG_SIZE;
}

/* Copy the first len readable bytes of the chain into dst. */
static bool gather(const struct xvl_vq_elem *e, uint64_t skip, void *dst, uint64_t len)
{
	uint8_t *out = dst;
	for (unsigned i = 0; i < e->n_out && len; i++) {
		uint64_t l = e->seg[i].len;
		if (skip >= l) {
			skip -= l;
			continue;
		}
		uint64_t take = l - skip < len ? l - skip : len;
		memcpy(out, (uint8_t *)e->seg[i].ptr + skip, take);
		out += take;
		len -= take;
		skip = 0;
	}
	return len == 0;
}

/* iovecs over [skip, total - trim) of the segments first..first+n. */
static bool map_iov(struct srv_req *r, const struct xvl_seg *seg, unsigned n, uint64_t skip,
		    uint64_t trim)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < n; i++)
		total += seg[i].len;
	if (skip + trim > total)
		return false;
	uint64_t want = total - skip - trim;
	r->niov = 0;
	r->bytes = want;
	for (unsigned i = 0; i < n && want; i++) {
		uint64_t l = seg[i].len;
		if (skip >= l) {
			skip -= l;
			continue;
		}
		uint64_t take = l - skip < want ? l - skip : want;
		if (r->niov == SRV_MAX_SEGS)
			return false;
		r->iov[r->niov++] = (struct iovec){(uint8_t *)seg[i].ptr + skip, take};
		want -= take;
		skip = 0;
	}
	return true;
}

static uint8_t check_range(const struct srv_dev *d, uint64_t sector, uint64_t bytes)
{
	if (bytes % XVL_BLK_SECTOR_SIZE)
		return XVL_BLK_S_IOERR;
	uint64_t cap = d->capacity / XVL_BLK_SECTOR_SIZE;
	if (sector > cap || bytes / XVL_BLK_SECTOR_SIZE > cap - sector)
		return XVL_BLK_S_IOERR;
	return XVL_BLK_S_OK;
}

/* Sets up r from the chain; returns a status to answer at once, or 0xff to submit. */
static uint8_t parse_request(struct srv_dev *d, struct srv_req *r, const struct xvl_vq_elem *e)
{
	const uint64_t hdr_len = sizeof(struct xvl_blk_outhdr);
	struct xvl_blk_outhdr h;

	if (!gather(e, 0, &h, hdr_len))
		return XVL_BLK_S_IOERR;
	r->type = xvl_le32(h.type);
	r->sector = xvl_le64(h.sector);
	const struct xvl_seg *in = e->seg + e->n_out;
	switch (r->type) {
	case XVL_BLK_T_IN:
		if (!map_iov(r, in, e->n_in, 0, 1))
			return XVL_BLK_S_IOERR;
		r->written = (uint32_t)r->bytes;
		return check_range(d, r->sector, r->bytes) ?: 0xff;
	case XVL_BLK_T_OUT:
		if (d->spec.read_only)
			return XVL_BLK_S_IOERR;
		if (!map_iov(r, e->seg, e->n_out, hdr_len, 0))
			return XVL_BLK_S_IOERR;
		return check_range(d, r->sector, r->bytes) ?: 0xff;
	case XVL_BLK_T_FLUSH:
		r->bytes = 0;
		return 0xff;
	case XVL_BLK_T_GET_ID:
		if (e->in_bytes < XVL_BLK_ID_BYTES + 1 || !map_iov(r, in, e->n_in, 0, 1))
			return XVL_BLK_S_IOERR;
		r->bytes = XVL_BLK_ID_BYTES;
		return 0xfe; /* answered by the model itself */
	case XVL_BLK_T_DISCARD:
	case XVL_BLK_T_WRITE_ZEROES: {
		struct xvl_blk_dwz z;
		if (d->spec.read_only || e->out_bytes != hdr_len + sizeof(z) ||
		    !gather(e, hdr_len, &z, sizeof(z)))
			return XVL_BLK_S_IOERR;
		r->sector = xvl_le64(z.sector);
		r->bytes = (uint64_t)xvl_le32(z.num_sectors) * XVL_BLK_SECTOR_SIZE;
		/* WRITE_ZEROES: the unmap flag, carried to the backend in written (the used
		 * length does not come from it, see complete.c) */
		r->written = r->type == XVL_BLK_T_WRITE_ZEROES ? (xvl_le32(z.flags) & 1) : 0;
		uint8_t st = check_range(d, r->sector, r->bytes);
		return st ?: 0xff;
	}
	default:
		return XVL_BLK_S_UNSUPP;
	}
}

/* GET_ID: the device name, NUL-padded to 20 bytes. */
static void answer_get_id(struct srv_dev *d, struct srv_req *r)
{
	char id[XVL_BLK_ID_BYTES] = {0};
	memcpy(id, d->spec.name, strnlen(d->spec.name, sizeof(id))); /* NUL-padded, not terminated when 20 long */
	uint64_t left = XVL_BLK_ID_BYTES;
	const char *src = id;
	for (unsigned i = 0; i < r->niov && left; i++) {
		uint64_t n = r->iov[i].iov_len < left ? r->iov[i].iov_len : left;
		memcpy(r->iov[i].iov_base, src, n);
		src += n;
		left -= n;
	}
	r->written = XVL_BLK_ID_BYTES;
	srv_req_done(r, XVL_BLK_S_OK);
}

static void serve_chain(struct srv_queue *q, const struct xvl_vq_elem *e)
{
	struct srv_dev *d = q->dev;
	struct srv_req *r = &q->req[e->head];

	if (r->busy) {
		srv_queue_break(q, -EPROTO, "queue %u: head %u reused while in flight", q->index,
				e->head);
		return;
	}
	/* The status byte is the last byte of the last (writable) segment: it must exist.
	 * A zero-length one would put it one byte before that segment, outside the chain
	 * (before the window itself when the segment sits at offset 0). */
	if (e->n_in == 0 || e->seg[e->n_out + e->n_in - 1].len == 0) {
		srv_queue_break(q, -EPROTO, "queue %u: chain %u has no status byte", q->index,
				e->head);
		return;
	}
	const struct xvl_seg *last = &e->seg[e->n_out + e->n_in - 1];
	*r = (struct srv_req){.q = q, .head = e->head, .busy = true,
			      .status = (uint8_t *)last->ptr + last->len - 1};
	q->inflight++;
	uint8_t st = parse_request(d, r, e);
	if (st == 0xfe)
		answer_get_id(d, r);
	else if (st != 0xff)
		srv_req_done(r, st);
	else
		d->ops->submit(d, r);
}

unsigned srv_queue_process(struct srv_queue *q, bool quiet)
{
	struct xvl_vq_elem e = {.seg = q->seg};
	unsigned budget = BUDGET_PER_ROUND;
	unsigned done = 0;

	q->more = false;
	for (;;) {
		if (!q->poll)
			xvl_vq_dev_disable_notify(&q->vq);
		while (budget && q->live) {
			int rc = xvl_vq_dev_pop(&q->vq, &e, SRV_MAX_SEGS + 2);
			if (rc == 0)
				break;
			if (rc < 0) {
				srv_queue_break(q, rc, "queue %u: driver broke the ring rules (%s)",
						q->index, rc == -E2BIG ? "chain too long" : "bad ring");
				return done;
			}
			serve_chain(q, &e);
			budget--;
			done++;
		}
		if (q->live)
			srv_queue_notify(q);
		if (!budget) {
			q->more = true;
			return done;
		}
		if (quiet || q->poll || !q->live || !xvl_vq_dev_enable_notify(&q->vq))
			return done;
	}
}
