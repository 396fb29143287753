/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk driver internals, shared by its three parts:
 *   blk_setup.c    open/close: negotiation, queue memory, rings
 *   blk_io.c       submission, completion, waiting
 *   blk_recover.c  the restart/break state machine (salvage, held,
 *                  resubmit, quiesce); states and invariants are written there.
 *
 * Locking (a client may be shared by threads, one per queue):
 *   - bq->lock is held by every call on queue bq (submit, kick, complete,
 *     wait except while it sleeps in poll()); in normal operation only the
 *     queue's owner takes it, so it is never contended.
 *   - Recovery (a restart, a reconnection, quiescing a broken device) runs
 *     with c->recover_lock and then EVERY queue lock of every open device,
 *     taken in order (device index, then queue index), so no queue owner is
 *     inside the driver while rings and slots change.  A queue owner drops
 *     its own queue lock before it asks for recovery.
 *   - The link lock (client.c) is innermost: never held while taking a
 *     queue lock.  Flags set from the link (broken, restart, link_dead) are
 *     atomics, readable without a lock.
 */
#ifndef XVL_BLK_INT_H
#define XVL_BLK_INT_H

#include <pthread.h>

#include "client.h"
#include "virtio_blk.h"
#include "xvl_atomic.h"

#define DEFAULT_QUEUE_SIZE 256
#define IND_MAX            8u  /* descriptors per indirect table: header, data, status */
#define DATA_SEGS_MAX      (IND_MAX - 2)
#define MAX_TRANSFER       (1u << 20)
#define SLOT_BYTES         64u
#define SLOT_HDR           0u
#define SLOT_DWZ           16u
#define SLOT_ID            32u
#define SLOT_STATUS        56u
#define STATUS_UNSET       0xffu
#define LINK_CHECK_NS      (1000000ull) /* how often a spinning waiter looks at the link */

/* Where a request slot is; see the state machine in blk_recover.c. */
enum slot_state {
	SLOT_FREE = 0,   /* on free_slot[]; owns nothing */
	SLOT_RING,       /* on the current rings: the device owns its buffers */
	SLOT_HELD,       /* outcome known (result), on held[], not yet given to the caller */
	SLOT_PARKED,     /* taken back from lost rings, on resubmit[], to go on fresh rings */
	SLOT_QUARANTINED /* reported failed, but the device may still write: kept until close */
};

/* Everything needed to build a request's chain again after a device restart. */
struct blk_slot {
	void *user;
	void *app_buf;       /* caller's buffer when it is copied through the window */
	uint64_t bounce;     /* window offset of the bounce block, 0 = zero copy */
	uint64_t data;       /* window offset of the data */
	uint64_t offset;     /* bytes on the device */
	uint32_t len;
	uint8_t op;
	uint8_t state;       /* enum slot_state */
	int result;          /* SLOT_HELD: what the caller will be told */
};

struct blk_queue {
	pthread_mutex_t lock;
	bool lock_init;
	struct xvl_vq_drv vq;
	void *vq_priv;
	uint64_t area;       /* heap block with rings, indirect tables, slots */
	struct xvl_vq_layout layout;
	uint64_t ind_off;
	uint8_t *slots;      /* local address of the slot array in the window */
	uint64_t slots_off;
	uint16_t num;
	struct blk_slot *slot;
	uint16_t *free_slot;
	uint16_t n_free;
	int kick_fd;
	int call_fd;
	uint64_t last_link_check;
	uint64_t wait_avg_ns;     /* what waits took lately (adaptive spin, blk_io.c) */
	bool fd_exported;         /* the caller polls call_fd itself: complete() drains it */
	uint16_t *resubmit;       /* SLOT_PARKED slots */
	unsigned n_resubmit;
	uint16_t *held;           /* SLOT_HELD slots */
	unsigned n_held;
	unsigned n_quarantined;
};

/*
 * Where the device is in the restart/break state machine (blk_recover.c,
 * which lists the allowed transitions).  Changed only with every queue lock
 * held.  The inputs come as atomic flags from any thread: `restart` (EVENT
 * RESTART), `broken` (EVENT BROKEN, a ring violation, a failed restart) and
 * the client's link_dead.
 */
enum blk_state {
	BLK_RUNNING = 0,     /* rings live; slots FREE, RING or HELD */
	BLK_SALVAGED,        /* rings taken back: slots FREE, HELD or PARKED; set-up under way */
	BLK_SETTLED_SAFE,    /* broken, RESET answered: nothing touches the buffers any more */
	BLK_SETTLED_QUARANTINE, /* broken, the device could not be stopped: bounce blocks kept */
	BLK_N_STATES
};

struct xvl_blk {
	struct xvl_client *c;
	uint32_t dev;
	bool poll;
	bool broken;         /* atomic: set from the link or a queue owner */
	bool restart;        /* atomic: the device asked to be set up again (EVENT RESTART) */
	int state;           /* enum blk_state; changed under every queue lock */
	int broken_reason;
	char broken_msg[64];
	uint64_t offered;    /* device features at open */
	struct xvl_blk_opts opts;
	struct xvl_blk_info info;
	uint16_t nq;
	struct blk_queue q[XVL_MAX_QUEUES];
};

static inline bool blk_has(uint64_t features, unsigned bit) { return features & (1ull << bit); }
static inline bool blk_broken(const struct xvl_blk *b) { return xvl_load_acquire(&b->broken); }
static inline bool blk_restart_wanted(const struct xvl_blk *b) { return xvl_load_acquire(&b->restart); }

/* blk_setup.c */
int blk_negotiate(struct xvl_blk *b, const struct xvl_blk_opts *o, uint64_t offered);
int blk_rings_init(struct xvl_blk *b, struct blk_queue *bq);
int blk_queue_announce(struct xvl_blk *b, uint16_t qi);
int blk_set_driver_ok(struct xvl_blk *b);

/* blk_io.c */
/* Bytes per data segment of a split request; 0: no size_max, one segment. */
uint32_t blk_seg_step(const struct xvl_blk_info *in);
int blk_expose_slot(struct xvl_blk *b, struct blk_queue *bq, uint16_t s);
int blk_status_result(const struct blk_queue *bq, uint16_t s);
/* Give slot s's outcome to the caller in *cpl and free (or quarantine) the slot. */
void blk_deliver(struct xvl_blk *b, struct blk_queue *bq, uint16_t s, int result,
		 struct xvl_blk_cpl *cpl);

/* blk_recover.c */
/* Does the device need the recovery path (restart, reconnection, quiescing)? */
bool blk_needs_recovery(const struct xvl_blk *b);
/* From a queue owner holding q's lock: run recovery with every queue quiet. */
void blk_recover_from_queue(struct xvl_blk *b, uint16_t q);
/* Busy slots the caller will still be told about (not quarantined). */
unsigned blk_outstanding(const struct blk_queue *bq);

#endif
