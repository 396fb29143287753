// SPDX-License-Identifier: GPL-2.0
/*
 * DMA operations of the window: the stock virtio drivers map their buffers
 * as usual, and every mapping is a bounce buffer in the window heap.  The
 * DMA address is the window offset, which is what the device side
 * understands.  map copies in (TO_DEVICE, BIDIRECTIONAL), unmap copies out
 * (FROM_DEVICE, BIDIRECTIONAL) into the buffer the private record names,
 * never into anything the window says.
 */
#include <linux/dma-map-ops.h>
#include <linux/highmem.h>
#include <linux/scatterlist.h>

#include "xvl_virtio.h"

static struct xvl_win *dev_to_win(struct device *dev)
{
	return dev_get_drvdata(dev);
}

/* Copy between a (possibly multi-page) buffer at phys and the window. */
static void xvl_copy(phys_addr_t phys, void *win, size_t size, bool to_win)
{
	while (size) {
		struct page *page = pfn_to_page(PHYS_PFN(phys));
		size_t in_page = offset_in_page(phys);
		size_t n = min_t(size_t, size, PAGE_SIZE - in_page);
		void *va = kmap_local_page(page);

		if (to_win)
			memcpy(win, va + in_page, n);
		else
			memcpy(va + in_page, win, n);
		kunmap_local(va);
		phys += n;
		win += n;
		size -= n;
	}
}

static bool copies_in(enum dma_data_direction dir)
{
	return dir == DMA_TO_DEVICE || dir == DMA_BIDIRECTIONAL;
}

static bool copies_out(enum dma_data_direction dir)
{
	return dir == DMA_FROM_DEVICE || dir == DMA_BIDIRECTIONAL;
}

static dma_addr_t xvl_map_phys(struct device *dev, phys_addr_t phys, size_t size,
			       enum dma_data_direction dir, unsigned long attrs)
{
	struct xvl_win *w = dev_to_win(dev);
	struct xvl_bounce *rec;
	void *buf;
	u64 off;

	if (!w || !size || size > XVL_MAX_MAPPING)
		return DMA_MAPPING_ERROR;
	buf = xvl_heap_map_alloc(w, size, &off);
	if (!buf) {
		dev_warn_ratelimited(dev, "window heap full: %zu-byte mapping refused\n", size);
		return DMA_MAPPING_ERROR;
	}
	rec = xvl_bounce_rec(w, off);
	if (WARN_ON_ONCE(!rec)) {
		xvl_heap_free_off(w, off, size);
		return DMA_MAPPING_ERROR;
	}
	rec->orig = phys;
	rec->size = size;
	rec->dir = dir;
	rec->coherent = 0;
	if (copies_in(dir) && !(attrs & DMA_ATTR_SKIP_CPU_SYNC))
		xvl_copy(phys, buf, size, true);
	return off;
}

/* The record of a mapping that starts at addr and is size bytes, or NULL. */
static struct xvl_bounce *find_mapping(struct device *dev, dma_addr_t addr, size_t size)
{
	struct xvl_win *w = dev_to_win(dev);
	struct xvl_bounce *rec;

	if (!w)
		return NULL;
	rec = xvl_bounce_rec(w, addr);
	if (!rec || !rec->size || rec->coherent || rec->size != size) {
		dev_err_ratelimited(dev, "unmap of %zu bytes at window offset %#llx that is no mapping\n",
				    size, (unsigned long long)addr);
		return NULL;
	}
	return rec;
}

static void xvl_unmap_phys(struct device *dev, dma_addr_t addr, size_t size,
			   enum dma_data_direction dir, unsigned long attrs)
{
	struct xvl_win *w = dev_to_win(dev);
	struct xvl_bounce *rec = find_mapping(dev, addr, size);

	if (!rec)
		return;
	if (copies_out(rec->dir) && !(attrs & DMA_ATTR_SKIP_CPU_SYNC))
		xvl_copy(rec->orig, w->mem.base + addr, rec->size, false);
	rec->size = 0;
	rec->orig = 0;
	xvl_heap_free_off(w, addr, size);
}

static dma_addr_t xvl_map_page(struct device *dev, struct page *page, unsigned long offset,
			       size_t size, enum dma_data_direction dir, unsigned long attrs)
{
	return xvl_map_phys(dev, page_to_phys(page) + offset, size, dir, attrs);
}

static void xvl_unmap_page(struct device *dev, dma_addr_t addr, size_t size,
			   enum dma_data_direction dir, unsigned long attrs)
{
	xvl_unmap_phys(dev, addr, size, dir, attrs);
}

static void xvl_unmap_sg(struct device *dev, struct scatterlist *sgl, int nents,
			 enum dma_data_direction dir, unsigned long attrs)
{
	struct scatterlist *sg;
	int i;

	for_each_sg(sgl, sg, nents, i) {
		if (sg_dma_len(sg))
			xvl_unmap_phys(dev, sg_dma_address(sg), sg_dma_len(sg), dir, attrs);
	}
}

static int xvl_map_sg(struct device *dev, struct scatterlist *sgl, int nents,
		      enum dma_data_direction dir, unsigned long attrs)
{
	struct scatterlist *sg;
	int i;

	for_each_sg(sgl, sg, nents, i) {
		sg->dma_address = xvl_map_phys(dev, sg_phys(sg), sg->length, dir, attrs);
		if (sg->dma_address == DMA_MAPPING_ERROR) {
			xvl_unmap_sg(dev, sgl, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
			return -ENOMEM;
		}
		sg_dma_len(sg) = sg->length;
	}
	return nents;
}

static void xvl_sync_for_cpu(struct device *dev, dma_addr_t addr, size_t size,
			     enum dma_data_direction dir)
{
	struct xvl_win *w = dev_to_win(dev);
	struct xvl_bounce *rec = w ? xvl_bounce_rec(w, addr) : NULL;

	if (rec && rec->size && !rec->coherent && size <= rec->size && copies_out(rec->dir))
		xvl_copy(rec->orig, w->mem.base + addr, size, false);
}

static void xvl_sync_for_device(struct device *dev, dma_addr_t addr, size_t size,
				enum dma_data_direction dir)
{
	struct xvl_win *w = dev_to_win(dev);
	struct xvl_bounce *rec = w ? xvl_bounce_rec(w, addr) : NULL;

	if (rec && rec->size && !rec->coherent && size <= rec->size && copies_in(rec->dir))
		xvl_copy(rec->orig, w->mem.base + addr, size, true);
}

static void *xvl_alloc(struct device *dev, size_t size, dma_addr_t *dma_handle, gfp_t gfp,
		       unsigned long attrs)
{
	struct xvl_win *w = dev_to_win(dev);
	struct xvl_bounce *rec;
	void *va;
	u64 off;

	if (!w)
		return NULL;
	size = PAGE_ALIGN(size);
	va = xvl_heap_alloc_off(w, size, PAGE_SIZE, &off);
	if (!va)
		return NULL;
	rec = xvl_bounce_rec(w, off);
	rec->orig = 0;
	rec->size = size;
	rec->coherent = 1;
	memset(va, 0, size);
	*dma_handle = off;
	return va;
}

static void xvl_free(struct device *dev, size_t size, void *vaddr, dma_addr_t dma_handle,
		     unsigned long attrs)
{
	struct xvl_win *w = dev_to_win(dev);
	struct xvl_bounce *rec;

	if (!w)
		return;
	size = PAGE_ALIGN(size);
	rec = xvl_bounce_rec(w, dma_handle);
	if (!rec || !rec->coherent || rec->size != size ||
	    vaddr != w->mem.base + dma_handle) {
		dev_err(dev, "free of %zu coherent bytes at %#llx that were not allocated\n",
			size, (unsigned long long)dma_handle);
		return;
	}
	rec->size = 0;
	rec->coherent = 0;
	xvl_heap_free_off(w, dma_handle, size);
}

static int xvl_dma_supported(struct device *dev, u64 mask)
{
	return 1;
}

static size_t xvl_max_mapping_size(struct device *dev)
{
	return XVL_MAX_MAPPING;
}

const struct dma_map_ops xvl_dma_ops = {
	.alloc = xvl_alloc,
	.free = xvl_free,
	.map_page = xvl_map_page,
	.unmap_page = xvl_unmap_page,
	.map_sg = xvl_map_sg,
	.unmap_sg = xvl_unmap_sg,
	.sync_single_for_cpu = xvl_sync_for_cpu,
	.sync_single_for_device = xvl_sync_for_device,
	.dma_supported = xvl_dma_supported,
	.max_mapping_size = xvl_max_mapping_size,
};
