/* SPDX-License-Identifier: MIT */
/*
 * The window header, the bump allocator for rings and slots, and the buddy
 * heap for I/O buffers.  Portable core: no OS calls, no allocation, no
 * globals; builds with -ffreestanding.
 */
#include "xvl_types.h"

#include "window.h"
#include "xvl_atomic.h"
#include "xvl_err.h"

_Static_assert(sizeof(struct xvl_win_entry) == 24, "layout entry is 24 bytes");
_Static_assert(sizeof(struct xvl_win_hdr) <= XVL_WIN_HDR_SIZE, "header fits its page");
_Static_assert(XVL_WIN_MIN_SIZE > XVL_WIN_HDR_SIZE, "a window holds more than its header");

/* ---------------------------------------------------------------- header */

int xvl_win_format(struct xvl_mem *m)
{
	if (!m || !m->base || m->size < XVL_WIN_MIN_SIZE)
		return -EINVAL;
	struct xvl_win_hdr *h = (struct xvl_win_hdr *)m->base;

	/* A re-layout of a window that already held ours bumps its generation. */
	uint64_t gen = 1;
	if (xvl_rd32(&h->magic) == XVL_WIN_MAGIC)
		gen = xvl_rd64(&h->generation) + 1;

	__builtin_memset(m->base, 0, XVL_WIN_HDR_SIZE);
	xvl_wr16(&h->version_major, XVL_WIN_VERSION_MAJOR);
	xvl_wr16(&h->version_minor, XVL_WIN_VERSION_MINOR);
	xvl_wr64(&h->size, m->size);
	xvl_wr32(&h->hdr_size, XVL_WIN_HDR_SIZE);
	xvl_wr32(&h->n_entries, 0);
	xvl_wr64(&h->generation, gen);
	/* The magic last: whoever sees it sees a complete header. */
	xvl_wmb();
	xvl_wr32(&h->magic, XVL_WIN_MAGIC);
	return 0;
}

int xvl_win_check(const struct xvl_mem *m)
{
	if (!m || !m->base || m->size < XVL_WIN_MIN_SIZE)
		return -EINVAL;                 /* too small to hold a window */
	const struct xvl_win_hdr *h = (const struct xvl_win_hdr *)m->base;

	if (xvl_rd32(&h->magic) != XVL_WIN_MAGIC)
		return -EINVAL;                 /* not a window (or not formatted yet) */
	xvl_rmb();
	if (xvl_rd16(&h->version_major) != XVL_WIN_VERSION_MAJOR)
		return -EPROTONOSUPPORT;        /* a layout we do not speak */
	if (xvl_rd64(&h->size) != m->size)
		return -EINVAL;                 /* the peer laid out another size */
	if (xvl_rd32(&h->hdr_size) != XVL_WIN_HDR_SIZE)
		return -EINVAL;
	if (xvl_rd32(&h->n_entries) > XVL_WIN_MAX_ENTRIES)
		return -EINVAL;
	return 0;
}

int xvl_win_record(struct xvl_mem *m, uint32_t type, uint16_t dev, uint16_t queue,
		   uint64_t off, uint64_t len)
{
	if (!m || !m->base || m->size < XVL_WIN_MIN_SIZE)
		return -EINVAL;
	if (!xvl_mem_ptr(m, off, len))
		return -EINVAL;
	struct xvl_win_hdr *h = (struct xvl_win_hdr *)m->base;
	uint32_t n = xvl_rd32(&h->n_entries);
	if (n >= XVL_WIN_MAX_ENTRIES)
		return -ENOSPC;
	struct xvl_win_entry *e = &h->table[n];
	xvl_wr32(&e->type, type);
	xvl_wr16(&e->dev, dev);
	xvl_wr16(&e->queue, queue);
	xvl_wr64(&e->off, off);
	xvl_wr64(&e->len, len);
	xvl_wmb();
	xvl_wr32(&h->n_entries, n + 1);
	return 0;
}

/* ---------------------------------------------------------------- bump */

void xvl_bump_init(struct xvl_bump *b, uint64_t start, uint64_t end)
{
	/* Offset 0 means failure: never hand it out. */
	b->next = start ? start : 1;
	b->end = end;
}

uint64_t xvl_bump_alloc(struct xvl_bump *b, uint64_t len, uint64_t align)
{
	if (align == 0)
		align = 1;
	if (len == 0 || (align & (align - 1)) != 0)
		return 0;
	uint64_t o = b->next + (align - 1);
	if (o < b->next)
		return 0;                       /* overflow */
	o &= ~(align - 1);
	if (o > b->end || len > b->end - o || o == 0)
		return 0;
	b->next = o + len;
	return o;
}

/* ---------------------------------------------------------------- heap */

#define HEAP_NONE     UINT32_MAX
#define HEAP_ORDERS   64u                /* free_head[] entries */
#define HEAP_MAX_MIN  40u                /* largest min_order accepted */
#define ST_FREE       0x80u              /* state: head of a free block */
#define ST_ORDER(s)   ((unsigned)((s) & 0x7fu) - 1u)

/* Blocks of 1 << min_order in len bytes, or 0 when the parameters are unusable. */
static uint64_t heap_nblocks(uint64_t len, unsigned min_order)
{
	if (min_order > HEAP_MAX_MIN)
		return 0;
	uint64_t n = len >> min_order;
	return n >= HEAP_NONE ? 0 : n;
}

size_t xvl_heap_meta_size(uint64_t len, unsigned min_order)
{
	uint64_t n = heap_nblocks(len, min_order);
	/* free_head[HEAP_ORDERS], next[n], prev[n] (uint32), then state[n] (uint8). */
	return (size_t)(HEAP_ORDERS * sizeof(uint32_t) + n * (2 * sizeof(uint32_t) + 1));
}

static inline uint64_t blk_off(const struct xvl_heap *h, uint32_t i)
{
	return h->off + ((uint64_t)i << h->min_order);
}

static inline uint32_t blk_idx(const struct xvl_heap *h, uint64_t off)
{
	return (uint32_t)((off - h->off) >> h->min_order);
}

static void list_push(struct xvl_heap *h, unsigned k, uint32_t i)
{
	uint32_t head = h->free_head[k];
	h->next[i] = head;
	h->prev[i] = HEAP_NONE;
	if (head != HEAP_NONE)
		h->prev[head] = i;
	h->free_head[k] = i;
	h->state[i] = (uint8_t)(ST_FREE | (k + 1));
}

static void list_remove(struct xvl_heap *h, unsigned k, uint32_t i)
{
	uint32_t n = h->next[i], p = h->prev[i];
	if (p != HEAP_NONE)
		h->next[p] = n;
	else
		h->free_head[k] = n;
	if (n != HEAP_NONE)
		h->prev[n] = p;
	h->state[i] = 0;
}

/*
 * Bit scans by halving: __builtin_clzll/ctzll become libgcc calls on some
 * targets (riscv64 without Zbb), which a bare-metal core cannot rely on.
 */
static unsigned log2_floor(uint64_t v)
{
	unsigned r = 0;
	for (unsigned s = 32; s; s >>= 1) {
		if (v >> s) {
			v >>= s;
			r += s;
		}
	}
	return r;
}

static unsigned trailing_zeros(uint64_t v)
{
	unsigned r = 0;
	if (!v)
		return 64;
	for (unsigned s = 32; s; s >>= 1) {
		if (!(v & ((1ull << s) - 1))) {
			v >>= s;
			r += s;
		}
	}
	return r;
}

int xvl_heap_init(struct xvl_heap *h, uint64_t off, uint64_t len, unsigned min_order, void *meta)
{
	if (!h || !meta || ((uintptr_t)meta & (sizeof(uint32_t) - 1)) || len == 0)
		return -EINVAL;
	uint64_t n_meta = heap_nblocks(len, min_order);
	if (n_meta == 0 || off + len < off)
		return -EINVAL;

	/* Manage whole minimum blocks, aligned to their size in window offsets. */
	uint64_t unit = 1ull << min_order;
	uint64_t start = (off + unit - 1) & ~(unit - 1);
	uint64_t end = (off + len) & ~(unit - 1);
	if (start < off || end <= start || start == 0)
		return -EINVAL;                 /* nothing left, or would hand out offset 0 */
	uint64_t n = (end - start) >> min_order;
	if (n > n_meta)
		return -EINVAL;

	uint8_t *m = meta;
	h->off = start;
	h->len = end - start;
	h->min_order = min_order;
	h->max_order = min_order;
	h->nblocks = (unsigned)n;
	h->free_head = (uint32_t *)(void *)m;
	h->next = (uint32_t *)(void *)(m + HEAP_ORDERS * sizeof(uint32_t));
	h->prev = h->next + n;
	h->state = (uint8_t *)(h->prev + n);
	h->bytes_free = end - start;
	for (unsigned k = 0; k < HEAP_ORDERS; k++)
		h->free_head[k] = HEAP_NONE;
	__builtin_memset(h->state, 0, (size_t)n);

	/* Cover [start, end) with the largest naturally aligned blocks. */
	for (uint64_t o = start; o < end;) {
		unsigned k = trailing_zeros(o);
		unsigned fit = log2_floor(end - o);
		if (fit < k)
			k = fit;
		if (k > 62)
			k = 62;
		list_push(h, k, blk_idx(h, o));
		if (k > h->max_order)
			h->max_order = k;
		o += 1ull << k;
	}
	return 0;
}

uint64_t xvl_heap_alloc(struct xvl_heap *h, uint64_t len)
{
	if (len == 0 || len > (1ull << h->max_order))
		return 0;
	unsigned k = len <= 1 ? 0 : log2_floor(len - 1) + 1;
	if (k < h->min_order)
		k = h->min_order;

	unsigned j = k;
	while (j <= h->max_order && h->free_head[j] == HEAP_NONE)
		j++;
	if (j > h->max_order)
		return 0;

	uint32_t i = h->free_head[j];
	list_remove(h, j, i);
	while (j > k) {                         /* split: keep the low half, free the high */
		j--;
		list_push(h, j, i + (uint32_t)(1u << (j - h->min_order)));
	}
	h->state[i] = (uint8_t)(k + 1);
	h->bytes_free -= 1ull << k;
	return blk_off(h, i);
}

int xvl_heap_free(struct xvl_heap *h, uint64_t off)
{
	if (off < h->off || off - h->off >= h->len || ((off - h->off) & ((1ull << h->min_order) - 1)))
		return -EINVAL;
	uint32_t i = blk_idx(h, off);
	uint8_t s = h->state[i];
	if (s == 0 || (s & ST_FREE))
		return -EINVAL;                 /* not a block start, or already free */

	unsigned k = ST_ORDER(s);
	h->state[i] = 0;
	h->bytes_free += 1ull << k;
	uint64_t end = h->off + h->len;
	while (k < h->max_order) {
		uint64_t b = off ^ (1ull << k);
		if (b < h->off || b >= end || (1ull << k) > end - b)
			break;
		uint32_t bi = blk_idx(h, b);
		if (h->state[bi] != (uint8_t)(ST_FREE | (k + 1)))
			break;
		list_remove(h, k, bi);
		if (b < off)
			off = b;
		k++;
	}
	list_push(h, k, blk_idx(h, off));
	return 0;
}
