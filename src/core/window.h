/* SPDX-License-Identifier: MIT */
/*
 * The window: the one memory region two compartments share.
 *
 * Every address stored in the window is an offset from its start, so each
 * side maps it wherever it likes.  Layout (all little-endian):
 *
 *   0x0000  struct xvl_win_hdr       magic, version, size, layout table
 *   0x1000  rings and request slots  placed by the bump allocator
 *   ...     data heap                buddy allocator for I/O buffers
 *
 * Allocator state is private to the side that owns the window (the driver
 * side or the partitioner): nothing in the window is trusted for allocation.
 * The layout table is informational for the peer and for tools; the peer
 * learns every offset it uses from the link and validates it itself.
 *
 * Portable core: no OS calls, no allocation, freestanding.
 */
#ifndef XVL_WINDOW_H
#define XVL_WINDOW_H

#include "xvl_types.h"

#define XVL_WIN_MAGIC         0x574c5658u /* "XVLW" little-endian */
#define XVL_WIN_VERSION_MAJOR 1
#define XVL_WIN_VERSION_MINOR 1 /* 1: the link field */
#define XVL_WIN_HDR_SIZE      4096u
#define XVL_WIN_MAX_ENTRIES   120
#define XVL_WIN_MIN_SIZE      (64u * 1024)

/* Layout entry types. */
enum xvl_win_entry_type {
	XVL_WIN_FREE = 0,
	XVL_WIN_DESC = 1,     /* descriptor table of (dev, queue) */
	XVL_WIN_AVAIL = 2,    /* available ring */
	XVL_WIN_USED = 3,     /* used ring */
	XVL_WIN_INDIRECT = 4, /* per-head indirect descriptor tables */
	XVL_WIN_SLOTS = 5,    /* per-head request headers (e.g. virtio-blk outhdr + status) */
	XVL_WIN_HEAP = 6,     /* data buffers */
	XVL_WIN_MAILBOX = 7,  /* control mailbox (link over shared memory) */
};

/* What the header's link field says: where the two sides' link runs. */
enum xvl_win_link {
	XVL_WIN_LINK_FD = 0,      /* a socket outside the window (SET_WINDOW passed the fd) */
	XVL_WIN_LINK_MAILBOX = 1, /* the mailbox inside the window (mailbox.h, layout type 7) */
};

struct xvl_win_entry {
	uint32_t type;
	uint16_t dev;
	uint16_t queue;
	uint64_t off;
	uint64_t len;
};

struct xvl_win_hdr {
	uint32_t magic;
	uint16_t version_major;
	uint16_t version_minor;
	uint64_t size;        /* bytes in the window */
	uint32_t hdr_size;    /* XVL_WIN_HDR_SIZE */
	uint32_t n_entries;   /* used entries in table[] */
	uint64_t generation;  /* bumped by the owner on every re-layout */
	uint32_t link;        /* which link this window carries: enum xvl_win_link (minor >= 1) */
	uint8_t reserved[28];
	struct xvl_win_entry table[XVL_WIN_MAX_ENTRIES];
};

/* A window as mapped by one side. */
struct xvl_mem {
	uint8_t *base;
	uint64_t size;
};

/*
 * Pointer to [off, off+len) inside the window, or NULL when any byte of it
 * lies outside.  Overflow-safe; the single gate for peer-supplied offsets.
 */
static inline void *xvl_mem_ptr(const struct xvl_mem *m, uint64_t off, uint64_t len)
{
	if (off > m->size || len > m->size - off)
		return NULL;
	return m->base + off;
}

/* Offset of a local pointer into the window, or -1 when it is not inside. */
static inline int64_t xvl_mem_off(const struct xvl_mem *m, const void *p, uint64_t len)
{
	const uint8_t *b = (const uint8_t *)p;
	if (b < m->base || (uint64_t)(b - m->base) > m->size || len > m->size - (uint64_t)(b - m->base))
		return -1;
	return (int64_t)(b - m->base);
}

/* Write a fresh header: zeroes the header page, no entries. -EINVAL if size is too small. */
int xvl_win_format(struct xvl_mem *m);
/* Check a peer's header: magic, major version, size matches mapping, n_entries bounded. */
int xvl_win_check(const struct xvl_mem *m);
/* Append a layout entry (owner only). -ENOSPC when the table is full. */
int xvl_win_record(struct xvl_mem *m, uint32_t type, uint16_t dev, uint16_t queue,
		   uint64_t off, uint64_t len);

/* Bump allocator for rings and slots; private state owned by the window's owner. */
struct xvl_bump {
	uint64_t next;
	uint64_t end;
};
void xvl_bump_init(struct xvl_bump *b, uint64_t start, uint64_t end);
/* Returns the offset, or 0 when there is no room (offset 0 is the header, never handed out). */
uint64_t xvl_bump_alloc(struct xvl_bump *b, uint64_t len, uint64_t align);

/*
 * Buddy heap for I/O buffers inside [off, off+len) of the window.
 * Blocks are powers of two from 1 << min_order bytes; metadata lives in
 * caller memory of xvl_heap_meta_size() bytes.  O(log n), no allocation.
 */
struct xvl_heap {            /* fields are private to window.c */
	uint64_t off;        /* first byte managed (off rounded up to 1 << min_order) */
	uint64_t len;        /* bytes managed (whole minimum blocks) */
	unsigned min_order;
	unsigned max_order;  /* largest block order present at init */
	unsigned nblocks;    /* blocks of the minimum size */
	uint8_t *state;      /* per min-block: 0 = no block starts here, else order+1,
	                        | 0x80 when that block is free */
	uint32_t *free_head; /* per order: first free min-block index, UINT32_MAX = none */
	uint32_t *next;      /* per min-block: next free block in its order's list */
	uint32_t *prev;      /* per min-block: previous free block in its order's list */
	uint64_t bytes_free;
};
size_t xvl_heap_meta_size(uint64_t len, unsigned min_order);
int xvl_heap_init(struct xvl_heap *h, uint64_t off, uint64_t len, unsigned min_order, void *meta);
/* Offset of a block of at least len bytes, aligned to its own size; 0 when none free. */
uint64_t xvl_heap_alloc(struct xvl_heap *h, uint64_t len);
/* Free a block returned by xvl_heap_alloc. -EINVAL for an offset that is not one. */
int xvl_heap_free(struct xvl_heap *h, uint64_t off);

#endif
