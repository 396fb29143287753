// SPDX-License-Identifier: GPL-2.0
/*
 * The window heap: everything after the header and the mailbox, handed out
 * in 256-byte granules by a gen_pool whose "physical" addresses are window
 * offsets.  gen_pool allocates without locks, so the DMA ops may use it in
 * atomic context.
 *
 * Streaming DMA mappings (xvl_dma.c: one or more per request) come first
 * from two sets of fixed-size slots carved out of the heap at setup, 256
 * bytes (virtio-blk headers and status bytes) and one page (a 4k block),
 * each a stack of free slots under a spinlock: gen_pool's bitmap search
 * and its cmpxchg loops cost more than the 4k copy itself on a busy heap.
 * Larger mappings, and any when a set is empty, go to gen_pool.
 *
 * Beside it, in private memory, one struct xvl_bounce per granule: what a
 * mapping that starts there bounces for.  The device side can write every
 * byte of the window but none of these records, so nothing it does can
 * redirect a copy-out.
 */
#include <linux/genalloc.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "xvl_virtio.h"

#define XVL_SLOTS_MAX		1024	/* per set */

/* Carve count slots of size bytes from the pool, at most a share of the heap; none is fine. */
static void slots_setup(struct xvl_win *w, struct xvl_slots *sl, u32 size, u64 share)
{
	u32 count = min_t(u64, XVL_SLOTS_MAX, share / size), i;
	void *va;

	spin_lock_init(&sl->lock);
	sl->size = size;
	sl->count = 0;
	sl->nfree = 0;
	if (!count)
		return;
	sl->free = kcalloc(count, sizeof(*sl->free), GFP_KERNEL);
	if (!sl->free)
		return;
	va = xvl_heap_alloc_off(w, (size_t)count * size, size, &sl->base);
	if (!va) {
		kfree(sl->free);
		sl->free = NULL;
		return;
	}
	for (i = 0; i < count; i++)
		sl->free[i] = count - 1 - i;
	sl->count = count;
	sl->nfree = count;
}

static void slots_teardown(struct xvl_win *w, struct xvl_slots *sl)
{
	if (sl->count && sl->nfree == sl->count)
		gen_pool_free(w->pool, (unsigned long)w->mem.base + sl->base,
			      (size_t)sl->count * sl->size);
	else if (sl->count)
		dev_err(w->dev, "window heap: %u bounce slots still mapped at removal\n",
			sl->count - sl->nfree);
	kfree(sl->free);
	sl->free = NULL;
	sl->count = 0;
}

static bool slots_own(const struct xvl_slots *sl, u64 off)
{
	return sl->count && off >= sl->base && off - sl->base < (u64)sl->count * sl->size;
}

int xvl_heap_setup(struct xvl_win *w, u64 off, u64 len)
{
	u64 granules;
	int ret;

	off = ALIGN(off, PAGE_SIZE);
	if (off >= w->mem.size)
		return -ENOSPC;
	len = min(len, w->mem.size - off) & PAGE_MASK;
	if (len < PAGE_SIZE)
		return -ENOSPC;

	w->pool = gen_pool_create(XVL_BOUNCE_SHIFT, dev_to_node(w->dev));
	if (!w->pool)
		return -ENOMEM;
	ret = gen_pool_add_virt(w->pool, (unsigned long)w->mem.base + off, off, len,
				dev_to_node(w->dev));
	if (ret)
		goto err_pool;

	granules = len >> XVL_BOUNCE_SHIFT;
	w->bounce = vzalloc(array_size(granules, sizeof(*w->bounce)));
	if (!w->bounce) {
		ret = -ENOMEM;
		goto err_pool;
	}
	w->heap_off = off;
	w->heap_len = len;
	slots_setup(w, &w->slots[0], 1 << XVL_BOUNCE_SHIFT, len / 16);
	slots_setup(w, &w->slots[1], PAGE_SIZE, len / 4);
	return 0;

err_pool:
	gen_pool_destroy(w->pool);
	w->pool = NULL;
	return ret;
}

void xvl_heap_teardown(struct xvl_win *w)
{
	if (!w->pool)
		return;
	slots_teardown(w, &w->slots[0]);
	slots_teardown(w, &w->slots[1]);
	/* gen_pool_destroy() BUG()s on blocks still out: report and leak instead. */
	if (gen_pool_avail(w->pool) != gen_pool_size(w->pool)) {
		dev_err(w->dev, "window heap: %zu bytes still mapped at removal; leaking the pool\n",
			gen_pool_size(w->pool) - gen_pool_avail(w->pool));
	} else {
		gen_pool_destroy(w->pool);
	}
	w->pool = NULL;
	vfree(w->bounce);
	w->bounce = NULL;
}

/* size bytes aligned to align (a power of two, at least one granule); NULL when full. */
void *xvl_heap_alloc_off(struct xvl_win *w, size_t size, size_t align, u64 *off)
{
	struct genpool_data_align data = { .align = max_t(size_t, align, 1 << XVL_BOUNCE_SHIFT) };
	unsigned long va;

	if (!size || size > w->heap_len)
		return NULL;
	va = gen_pool_alloc_algo(w->pool, size, gen_pool_first_fit_align, &data);
	if (!va)
		return NULL;
	*off = va - (unsigned long)w->mem.base;
	return (void *)va;
}

/*
 * A bounce buffer for a streaming mapping of size bytes (granule-aligned):
 * a slot when one fits, else from the pool.  NULL when the heap is full.
 * Any context.
 */
void *xvl_heap_map_alloc(struct xvl_win *w, size_t size, u64 *off)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(w->slots); i++) {
		struct xvl_slots *sl = &w->slots[i];
		unsigned long flags;
		bool got = false;

		if (size > sl->size || !sl->count)
			continue;
		spin_lock_irqsave(&sl->lock, flags);
		if (sl->nfree) {
			*off = sl->base + (u64)sl->free[--sl->nfree] * sl->size;
			got = true;
		}
		spin_unlock_irqrestore(&sl->lock, flags);
		if (got)
			return w->mem.base + *off;
	}
	return xvl_heap_alloc_off(w, size, 0, off);
}

/* Give back what xvl_heap_map_alloc() or xvl_heap_alloc_off() returned (same size). */
void xvl_heap_free_off(struct xvl_win *w, u64 off, size_t size)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(w->slots); i++) {
		struct xvl_slots *sl = &w->slots[i];
		unsigned long flags;

		if (!slots_own(sl, off))
			continue;
		spin_lock_irqsave(&sl->lock, flags);
		if (!WARN_ON_ONCE(sl->nfree >= sl->count))
			sl->free[sl->nfree++] = (off - sl->base) / sl->size;
		spin_unlock_irqrestore(&sl->lock, flags);
		return;
	}
	gen_pool_free(w->pool, (unsigned long)w->mem.base + off, size);
}

/* The record of the granule at window offset off, or NULL when off is not a granule of the heap. */
struct xvl_bounce *xvl_bounce_rec(struct xvl_win *w, u64 off)
{
	if (off < w->heap_off || off - w->heap_off >= w->heap_len)
		return NULL;
	if ((off - w->heap_off) & ((1 << XVL_BOUNCE_SHIFT) - 1))
		return NULL;
	return &w->bounce[(off - w->heap_off) >> XVL_BOUNCE_SHIFT];
}
