/* SPDX-License-Identifier: MIT */
/*
 * vhost-user-blk export internals shared by its three parts:
 *   guest_mem.c   the frontend's memory table: mapping, address translation
 *   vu_backend.c  the vhost-user protocol (backend side) and the event loop
 *   blk_queue.c   virtio-blk requests on a vring, forwarded to an xvloop queue,
 *                 with inflight tracking (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD)
 */
#ifndef XVL_EXPORT_INT_H
#define XVL_EXPORT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "export.h"
#include "virtio_blk.h"
#include "virtq.h"

#define EXP_MAX_QUEUES  16
#define EXP_MAX_REGIONS 8     /* VHOST_MEMORY_BASELINE_NREGIONS */
#define EXP_SEG_MAX     126   /* data segments per request offered to the guest */
#define EXP_MAX_SEGS    (EXP_SEG_MAX + 34) /* + header, status, region splits */

/* ------------------------------------------------------------ guest memory */

struct exp_region {
	uint64_t gpa, size, uaddr;
	uint8_t *host;        /* gpa maps here */
	void *map;            /* the mmap (from file offset 0, mmap_offset + size long) */
	size_t map_len;
};

struct exp_mem {
	unsigned n;
	struct exp_region r[EXP_MAX_REGIONS];
};

/* A region as sent by the frontend in SET_MEM_TABLE. */
struct exp_region_msg {
	uint64_t gpa, size, uaddr, mmap_offset;
};

/* Map n regions (fds consumed on success and failure).  Validates sizes
 * against each file, overflow, and overlap in both address spaces. */
int exp_mem_map(struct exp_mem *m, const struct exp_region_msg *r, const int *fds, unsigned n,
		struct xvl_errbuf *eb);
void exp_mem_unmap(struct exp_mem *m);
/* fd cannot shrink: already sealed so, or sealed now (memfd with sealing allowed). */
bool exp_fd_sealed(int fd);
/* Host pointer for [gpa, gpa+len) when it lies inside one region, else NULL. */
uint8_t *exp_mem_gpa(const struct exp_mem *m, uint64_t gpa, uint64_t len);
/* Same for a frontend virtual address (ring addresses). */
uint8_t *exp_mem_uva(const struct exp_mem *m, uint64_t uva, uint64_t len);
/* Bytes of [gpa, ...) inside the region holding gpa, with *host; 0 when gpa is in none. */
uint64_t exp_mem_piece(const struct exp_mem *m, uint64_t gpa, uint8_t **host);

/* ------------------------------------------------------------ inflight area */

/* Per descriptor head, as in vhost-user.rst "Inflight I/O tracking" (split rings). */
struct exp_infl_desc {
	uint8_t inflight;
	uint8_t padding[5];
	uint16_t next;
	uint64_t counter;
};
struct exp_infl_queue {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t last_batch_head;
	uint16_t used_idx;
	struct exp_infl_desc desc[];
};
_Static_assert(sizeof(struct exp_infl_desc) == 16, "inflight descriptor");
_Static_assert(sizeof(struct exp_infl_queue) == 16, "inflight queue header");

/* Bytes one queue of queue_size descriptors takes in the area (64-byte aligned). */
uint64_t exp_infl_queue_bytes(uint16_t queue_size);

/* ------------------------------------------------------------ queues */

struct exp_seg {
	uint8_t *host;
	uint32_t len;
};

enum exp_req_state { REQ_FREE = 0, REQ_PENDING, REQ_SUBMITTED };

#define EXP_MAX_PARTS 8 /* a request is split into parts of at most the client's max_transfer */

struct exp_req;
struct exp_part {
	struct exp_req *r;
	void *buf;             /* window buffer, NULL for none */
	uint32_t skip;         /* data offset in the request */
	uint32_t len;          /* buffer bytes */
};

struct exp_req {
	uint8_t state;
	uint8_t type;          /* XVL_BLK_T_* */
	uint16_t head;
	uint16_t nr, nw;       /* device-readable, device-writable segments */
	uint32_t rlen, wlen;   /* their byte totals */
	uint64_t st_addr;      /* the last writable descriptor (for the status byte) */
	uint32_t st_len;
	uint64_t sector;
	struct exp_seg *segs;  /* nr readable then nw writable (the vring's pool) */
	uint64_t off;          /* device offset (bytes) */
	uint32_t dlen;         /* data bytes (READ / WRITE), range (DISCARD / WRITE_ZEROES) */
	int result;            /* first error of any part */
	uint8_t nparts, next_part, outstanding;
	struct exp_part part[EXP_MAX_PARTS];
};

struct exp_export;

struct exp_vring {
	struct exp_export *ex;
	uint16_t q;
	/* set up by the frontend */
	uint16_t num;
	uint64_t desc_uva, avail_uva, used_uva;
	bool addr_set;
	uint16_t base;         /* SET_VRING_BASE */
	int kick_fd, call_fd, err_fd;
	bool enabled;          /* SET_VRING_ENABLE (starts disabled with PROTOCOL_FEATURES) */
	/* running state */
	bool started;          /* kick fd received, rings translated */
	bool broken;           /* the guest broke the ring protocol: no more requests */
	struct xvl_vring_desc *desc;
	struct xvl_vring_avail *avail;
	struct xvl_vring_used *used;
	uint16_t last_avail, used_idx;
	struct exp_infl_queue *infl;  /* NULL without INFLIGHT_SHMFD */
	uint64_t counter;
	struct exp_req *reqs;          /* num entries, indexed by head */
	struct exp_seg *seg_pool;      /* num * EXP_MAX_SEGS */
	uint16_t *pend;                /* FIFO of heads waiting for the window (num entries) */
	uint16_t pend_first, pend_n;
	unsigned submitted;
	bool need_call;
	bool event_idx;                /* VIRTIO_RING_F_EVENT_IDX negotiated */
	uint16_t signalled_used;       /* used index the frontend was last told about */
	bool signalled_valid;
	uint64_t done;                 /* requests completed (statistics) */
};

struct exp_export {
	struct xvl_client *c;
	struct xvl_blk *b;
	struct xvl_blk_info info;
	const struct xvl_export_opts *o;
	uint16_t nq;
	uint64_t features;             /* offered to the frontend */
	uint64_t acked;                /* SET_FEATURES */
	uint64_t protocol;             /* negotiated protocol features */
	struct exp_mem mem;
	void *infl_map;
	uint64_t infl_size;
	int infl_fd;
	uint16_t infl_nq, infl_qsize;
	uint64_t n_reqs, n_split;      /* requests of this frontend; split into parts */
	struct exp_vring vr[EXP_MAX_QUEUES];
};

/* The virtio-blk config space (60 bytes) the export presents. */
void exp_blk_config(const struct exp_export *ex, uint8_t cfg[XVL_BLK_CFG_SIZE]);
/* Feature bits offered, from the device's info. */
uint64_t exp_blk_features(const struct exp_export *ex);

/* Start vr (rings translated, inflight recovered, resubmitted).  <0: bad rings, vr stays stopped. */
int exp_vring_start(struct exp_vring *vr, struct xvl_errbuf *eb);
/* Stop vr: every request taken from the ring completed first (up to drain_ms). */
int exp_vring_stop(struct exp_vring *vr, struct xvl_errbuf *eb);
/* After a failed stop, on the way out: forget vr's requests (their completions are never collected). */
void exp_vring_abandon(struct exp_vring *vr);
/* Take new requests from the avail ring and submit them. */
void exp_vring_kick(struct exp_vring *vr);
/* Collect completions of the xvloop queue behind vr. */
void exp_vring_complete(struct exp_vring *vr);
/* Signal the frontend when requests were completed since the last call. */
void exp_vring_notify(struct exp_vring *vr);

#endif
