// SPDX-License-Identifier: GPL-2.0
/*
 * The window heap: everything after the header and the mailbox, handed out
 * in 256-byte granules by a gen_pool whose "physical" addresses are window
 * offsets.  gen_pool allocates without locks, so the DMA ops may use it in
 * atomic context.
 *
 * Beside it, in private memory, one struct xvl_bounce per granule: what a
 * mapping that starts there bounces for.  The device side can write every
 * byte of the window but none of these records, so nothing it does can
 * redirect a copy-out.
 */
#include <linux/genalloc.h>
#include <linux/vmalloc.h>

#include "xvl_virtio.h"

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

void xvl_heap_free_off(struct xvl_win *w, u64 off, size_t size)
{
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
