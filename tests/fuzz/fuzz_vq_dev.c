/* SPDX-License-Identifier: MIT */
/*
 * Device side against a hostile driver: the fuzz input is the window as the
 * driver left it.  The device pops and pushes until the ring is empty or
 * broken; every segment it is handed must lie inside the window, and any
 * other outcome than a clean pop, "empty", -EIO or -E2BIG is a bug.
 *
 * Input: flags byte, max_segs byte, avail_base (2 bytes LE), then the window
 * from offset 0 (the rest of the window is zero).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtq.h"
#include "xvl_err.h"

#define FZ_WIN_SIZE  8192u
#define FZ_DESC_OFF  0x100u /* room for 16 descriptors */
#define FZ_AVAIL_OFF 0x200u
#define FZ_USED_OFF  0x240u
#define FZ_HDR       4u
#define FZ_MAX_SEGS  32u

/* Flags byte. */
#define FZ_INDIRECT  0x01u
#define FZ_EVENT_IDX 0x02u
#define FZ_DEFER     0x04u /* keep chains in flight, complete them in reverse */
#define FZ_NO_NOTIFY 0x08u /* device polls with notifications disabled */
#define FZ_NUM_SHIFT 4     /* num = 1 << (bits % 5): 1..16 */

static _Alignas(4096) uint8_t fz_win[FZ_WIN_SIZE];

static void fz_layout(struct xvl_vq_layout *l, uint8_t flags)
{
	l->num = (uint16_t)(1u << ((flags >> FZ_NUM_SHIFT) % 5));
	l->desc = FZ_DESC_OFF;
	l->avail = FZ_AVAIL_OFF;
	l->used = FZ_USED_OFF;
}

/* What the device was handed must be inside the window and well ordered. */
static void fz_check_elem(const struct xvl_vq_elem *e, unsigned max_segs, uint16_t num)
{
	uint64_t out = 0, in = 0;
	unsigned i, n = (unsigned)e->n_out + e->n_in;

	if (n > max_segs || e->head >= num)
		abort();
	for (i = 0; i < n; i++) {
		const struct xvl_seg *s = &e->seg[i];

		if (s->off > FZ_WIN_SIZE || s->len > FZ_WIN_SIZE - s->off ||
		    (uint8_t *)s->ptr != fz_win + s->off || s->write != (i >= e->n_out))
			abort();
		if (s->write)
			in += s->len;
		else
			out += s->len;
	}
	if (out != e->out_bytes || in != e->in_bytes)
		abort();
}

/* Touch every byte the device was given: sanitizers catch any stray pointer. */
static void fz_serve(const struct xvl_vq_elem *e)
{
	volatile uint8_t sink = 0;
	unsigned i;

	for (i = 0; i < (unsigned)e->n_out + e->n_in; i++) {
		uint8_t *p = e->seg[i].ptr;

		if (!e->seg[i].len)
			continue;
		if (e->seg[i].write) {
			memset(p, 0xa5, e->seg[i].len);
		} else {
			sink ^= p[0];
			sink ^= p[e->seg[i].len - 1];
		}
	}
	(void)sink;
}

static uint32_t fz_len(const struct xvl_vq_elem *e)
{
	return e->in_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)e->in_bytes;
}

static void fz_push(struct xvl_vq_dev *dev, uint16_t head, uint32_t len)
{
	if (xvl_vq_dev_push(dev, head, len) != 0)
		abort();
	(void)xvl_vq_dev_notify_prepare(dev);
}

static void fz_expect_broken(struct xvl_vq_dev *dev, struct xvl_vq_elem *e, int rc)
{
	if ((rc != -EIO && rc != -E2BIG) || !dev->broken)
		abort();
	if (xvl_vq_dev_pop(dev, e, FZ_MAX_SEGS) != -EIO || xvl_vq_dev_push(dev, 0, 0) != -EIO)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xvl_mem m = { fz_win, FZ_WIN_SIZE };
	struct xvl_vq_layout l;
	struct xvl_vq_dev dev;
	struct xvl_seg seg[FZ_MAX_SEGS];
	struct xvl_vq_elem e = { .seg = seg };
	uint16_t deferred[16], deferred_len[16];
	unsigned n_deferred = 0, max_segs, round;
	uint8_t flags;
	int rc;

	if (size < FZ_HDR)
		return 0;
	flags = data[0];
	max_segs = 1 + data[1] % FZ_MAX_SEGS;
	memset(fz_win, 0, sizeof(fz_win));
	memcpy(fz_win, data + FZ_HDR, size - FZ_HDR < FZ_WIN_SIZE ? size - FZ_HDR : FZ_WIN_SIZE);
	fz_layout(&l, flags);
	if (xvl_vq_dev_init(&dev, &m, &l, flags & FZ_EVENT_IDX, flags & FZ_INDIRECT,
			    (uint16_t)(data[2] | data[3] << 8), (uint16_t)(data[2] | data[3] << 8)))
		abort();
	if (flags & FZ_NO_NOTIFY)
		xvl_vq_dev_disable_notify(&dev);

	/* Bounded: every round pops one chain, and at most num can be pending. */
	for (round = 0; round < 4u * l.num + 4; round++) {
		rc = xvl_vq_dev_pop(&dev, &e, max_segs);
		if (rc < 0) {
			fz_expect_broken(&dev, &e, rc);
			break;
		}
		if (rc == 0) {
			while (n_deferred) {
				n_deferred--;
				fz_push(&dev, deferred[n_deferred], deferred_len[n_deferred]);
			}
			if (!xvl_vq_dev_enable_notify(&dev))
				break;
			continue;
		}
		fz_check_elem(&e, max_segs, l.num);
		if (dev.inflight > l.num)
			abort();
		fz_serve(&e);
		if ((flags & FZ_DEFER) && n_deferred < l.num) {
			deferred[n_deferred] = e.head;
			deferred_len[n_deferred++] = (uint16_t)(fz_len(&e) & 0xffff);
		} else {
			fz_push(&dev, e.head, fz_len(&e));
		}
	}
	return 0;
}
