/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.x, section 2.7), driver and device sides.
 *
 * Both sides address ring memory and buffers by window offset.  The peer is
 * untrusted: the device side copies every descriptor out of the table before
 * use and checks index, length, flags and window bounds; the driver side
 * checks every used-ring entry against what it actually submitted.  A
 * violation marks the queue broken (virtio NEEDS_RESET semantics) and every
 * later call returns -EIO; the caller then fails the pending requests.
 *
 * Private bookkeeping (free list, tokens, chain shadows) is kept out of the
 * window in caller-provided memory, so the peer cannot corrupt it.
 *
 * Portable core: no OS calls, no allocation.  Ordering via xvl_atomic.h.
 */
#ifndef XVL_VIRTQ_H
#define XVL_VIRTQ_H

#include "xvl_types.h"

#include "window.h"

#define XVL_VQ_MAX_SIZE 1024u

/* Descriptor flags. */
#define XVL_VRING_DESC_F_NEXT     1
#define XVL_VRING_DESC_F_WRITE    2
#define XVL_VRING_DESC_F_INDIRECT 4
/* Ring flags. */
#define XVL_VRING_AVAIL_F_NO_INTERRUPT 1
#define XVL_VRING_USED_F_NO_NOTIFY     1

/* Feature bits that live at the transport/ring level. */
#define XVL_F_INDIRECT_DESC 28
#define XVL_F_EVENT_IDX     29
#define XVL_F_VERSION_1     32

/* Ring layouts in the window (all fields little-endian). */
struct xvl_vring_desc {
	uint64_t addr; /* window offset */
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
struct xvl_vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[]; /* num entries, then used_event */
};
struct xvl_vring_used_elem {
	uint32_t id;
	uint32_t len;
};
struct xvl_vring_used {
	uint16_t flags;
	uint16_t idx;
	struct xvl_vring_used_elem ring[]; /* num entries, then avail_event */
};

static inline uint64_t xvl_vq_desc_bytes(unsigned num) { return 16ull * num; }
static inline uint64_t xvl_vq_avail_bytes(unsigned num) { return 6ull + 2ull * num; }
static inline uint64_t xvl_vq_used_bytes(unsigned num) { return 6ull + 8ull * num; }

/* Where a queue's rings are, as window offsets. */
struct xvl_vq_layout {
	uint16_t num;   /* queue size: power of two, 1..XVL_VQ_MAX_SIZE */
	uint64_t desc;  /* 16-byte aligned */
	uint64_t avail; /* 2-byte aligned */
	uint64_t used;  /* 4-byte aligned */
};

/*
 * Validate a layout against a window: num a power of two within limits,
 * alignment, every ring entirely inside the window, rings not overlapping
 * each other.  Returns 0 or -EINVAL.
 */
int xvl_vq_layout_check(const struct xvl_mem *m, const struct xvl_vq_layout *l);

/* Event-index rule of the specification (vring_need_event). */
static inline bool xvl_vq_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old_idx);
}

/* One buffer of a chain: a window offset and a length. */
struct xvl_sg {
	uint64_t off;
	uint32_t len;
};

/* ------------------------------------------------------------------ driver */

struct xvl_vq_drv_slot; /* private per-head bookkeeping, defined in virtq.c */

struct xvl_vq_drv {
	struct xvl_mem mem;
	struct xvl_vring_desc *desc;
	struct xvl_vring_avail *avail;
	struct xvl_vring_used *used;
	uint16_t num;
	uint16_t free_head;
	uint16_t num_free;
	uint16_t avail_idx;   /* next avail index to publish (shadow) */
	uint16_t avail_pub;   /* avail idx as last published */
	uint16_t kicked_idx;  /* avail idx at the last notification decision */
	uint32_t added;       /* adds since then, saturating at 65536 (16-bit wrap guard) */
	uint16_t last_used;   /* next used index to consume */
	uint16_t used_seen;   /* used idx as last read: entries up to it need no new read */
	bool event_idx;
	bool broken;
	uint64_t ind_off;     /* window offset of num tables of ind_max descriptors, or 0 */
	uint16_t ind_max;
	struct xvl_vq_drv_slot *slot; /* num entries, private memory */
	uint16_t *next;       /* num entries: private shadow of desc[].next / free list */
	bool cb_off;          /* used-buffer notifications suppressed (disable_cb) */
	uint64_t len_clamped; /* used lengths beyond the writable bytes, clamped */
};

/* Bytes of private memory xvl_vq_drv_init needs for a queue of num entries. */
size_t xvl_vq_drv_priv_size(uint16_t num);

/*
 * Set up the driver side over rings at l (validated), zeroing the rings.
 * ind_off/ind_max: optional per-head indirect tables (ind_off 0 = none);
 * each head i owns [ind_off + i*16*ind_max, +16*ind_max).  priv: private
 * memory of xvl_vq_drv_priv_size(l->num) bytes, 8-byte aligned.
 */
int xvl_vq_drv_init(struct xvl_vq_drv *vq, const struct xvl_mem *m, const struct xvl_vq_layout *l,
		    bool event_idx, uint64_t ind_off, uint16_t ind_max, void *priv);

/*
 * Expose a chain: n_out device-readable buffers followed by n_in
 * device-writable ones.  Uses an indirect table when configured and the
 * chain has more than one buffer.  Publishes the new avail idx (release).
 * token is returned by xvl_vq_drv_get_used.  Returns 0, -ENOSPC when the
 * ring is full, -EINVAL for a buffer outside the window or too many
 * buffers, -EIO when the queue is broken.
 */
int xvl_vq_drv_add(struct xvl_vq_drv *vq, const struct xvl_sg *sg, unsigned n_out, unsigned n_in,
		   uint64_t token);

/*
 * xvl_vq_drv_add without publishing: the chain is in the ring, the avail
 * idx not moved until xvl_vq_drv_publish (or kick_prepare), so a burst costs
 * the device one index read, not one a chain.  Same returns as add.
 */
int xvl_vq_drv_stage(struct xvl_vq_drv *vq, const struct xvl_sg *sg, unsigned n_out,
		     unsigned n_in, uint64_t token);
/* Publish every chain staged so far in one avail idx store (release); nothing if none. */
void xvl_vq_drv_publish(struct xvl_vq_drv *vq);

/* After adds: does the device want a notification?  (event idx or flags)  Publishes first. */
bool xvl_vq_drv_kick_prepare(struct xvl_vq_drv *vq);

/*
 * Take one completion.  Returns 1 with *token and *len (bytes the device
 * says it wrote, clamped to the chain's writable bytes and counted in
 * len_clamped when it claimed more), 0 when nothing is pending, -EIO when
 * broken (the device wrote an id it does not hold, or moved used idx by
 * more than is outstanding).
 */
int xvl_vq_drv_get_used(struct xvl_vq_drv *vq, uint64_t *token, uint32_t *len);

/* Ask for (enable) or suppress (disable) used-buffer notifications.
 * enable returns true if completions are already pending (re-check needed)
 * or the queue is broken (get_used then reports -EIO). */
bool xvl_vq_drv_enable_cb(struct xvl_vq_drv *vq);
void xvl_vq_drv_disable_cb(struct xvl_vq_drv *vq);

/* Has the device published completions not taken yet (acquire load of used idx)? */
bool xvl_vq_drv_has_used(const struct xvl_vq_drv *vq);

/* Requests outstanding (submitted, not completed). */
unsigned xvl_vq_drv_inflight(const struct xvl_vq_drv *vq);

/*
 * Reclaim one outstanding request without the device (after the queue is
 * broken or the device reset).  Returns 1 with its token, 0 when none left.
 * Detaching marks the queue broken: re-init it before reuse.
 */
int xvl_vq_drv_detach(struct xvl_vq_drv *vq, uint64_t *token);

/* Mark broken from outside (e.g. the link reported the device failed). */
static inline void xvl_vq_drv_set_broken(struct xvl_vq_drv *vq) { vq->broken = true; }

/* ------------------------------------------------------------------ device */

struct xvl_vq_dev {
	struct xvl_mem mem;
	struct xvl_vring_desc *desc;
	struct xvl_vring_avail *avail;
	struct xvl_vring_used *used;
	uint16_t num;
	uint16_t last_avail;     /* next avail index to consume */
	uint16_t avail_seen;     /* avail idx as last read: chains up to it need no new read */
	uint16_t used_idx;       /* next used index to publish (shadow) */
	uint16_t used_pub;       /* used idx as last published */
	uint16_t signalled_used; /* used idx at the last notification decision */
	uint32_t pushed;         /* pushes since then, saturating at 65536 (16-bit wrap guard) */
	uint16_t inflight;       /* popped, not yet pushed */
	bool event_idx;
	bool indirect;           /* VIRTIO_F_INDIRECT_DESC negotiated */
	bool broken;
	bool notify_off;         /* available-buffer notifications suppressed */
};

/* One buffer of a popped chain, already checked against the window. */
struct xvl_seg {
	void *ptr;     /* local address */
	uint64_t off;  /* window offset */
	uint32_t len;
	bool write;    /* device-writable */
};

/* A popped request: head id and its segments (readable ones first). */
struct xvl_vq_elem {
	uint16_t head;
	uint16_t n_out;   /* device-readable segments */
	uint16_t n_in;    /* device-writable segments */
	uint64_t out_bytes;
	uint64_t in_bytes;
	struct xvl_seg *seg; /* caller storage, n_out + n_in used */
};

/*
 * Set up the device side over a driver's rings at l (validated).  Does not
 * touch ring memory.  avail_base/used_base: where to resume (0 for a fresh
 * queue; after reconnect, the values the driver or a saved state gives).
 */
int xvl_vq_dev_init(struct xvl_vq_dev *vq, const struct xvl_mem *m, const struct xvl_vq_layout *l,
		    bool event_idx, bool indirect, uint16_t avail_base, uint16_t used_base);

/*
 * Take the next available chain.  Every descriptor is copied before use;
 * chains are bounded by the queue size (and the indirect table size),
 * nested indirect tables, readable-after-writable, zero-length or
 * misaligned (not 8-byte) tables and buffers outside the window are
 * refused.  e->seg must hold max_segs.
 * Returns 1 with *e filled, 0 when the ring is empty, -EIO when the driver
 * broke the ring (queue now broken), -E2BIG when a chain has more than
 * max_segs buffers (queue now broken too: the chain cannot be answered).
 */
int xvl_vq_dev_pop(struct xvl_vq_dev *vq, struct xvl_vq_elem *e, unsigned max_segs);

/*
 * Give back the last n chains popped and not pushed, unread, so the next
 * pop returns them again (a receive that found too few buffers).  Returns 0,
 * -EINVAL when fewer than n are in flight, -EIO when broken.
 */
int xvl_vq_dev_unpop(struct xvl_vq_dev *vq, uint16_t n);

/* Return a chain: write the used entry and publish used idx (release). */
int xvl_vq_dev_push(struct xvl_vq_dev *vq, uint16_t head, uint32_t len);

/*
 * Return a chain without publishing it: the used entry is written, used idx
 * is not moved until xvl_vq_dev_publish.  For answers the driver must see
 * whole (a merged virtio-net frame's buffers: one index update) or in one
 * batch.  Same returns as push.
 */
int xvl_vq_dev_fill(struct xvl_vq_dev *vq, uint16_t head, uint32_t len);

/* Publish every entry filled so far in one used idx store (release); nothing if none. */
void xvl_vq_dev_publish(struct xvl_vq_dev *vq);

/* After pushes: does the driver want a used-buffer notification?  Publishes filled entries first. */
bool xvl_vq_dev_notify_prepare(struct xvl_vq_dev *vq);

/* Ask for (enable) or suppress (disable) available-buffer notifications.
 * enable returns true if chains are already available (re-check needed)
 * or the queue is broken (pop then reports -EIO); so does has_avail. */
bool xvl_vq_dev_enable_notify(struct xvl_vq_dev *vq);
void xvl_vq_dev_disable_notify(struct xvl_vq_dev *vq);

/* Is a chain available (acquire load of avail idx)? */
bool xvl_vq_dev_has_avail(struct xvl_vq_dev *vq);

#endif
