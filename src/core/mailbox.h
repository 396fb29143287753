/* SPDX-License-Identifier: MIT */
/*
 * The mailbox link: the link messages of proto.h carried inside the window,
 * for compartments that share nothing but memory and (at most) a doorbell.
 * docs/PROTOCOL.md section 7 is the specification; this is its reference.
 *
 * The driver side (which formats the window) places the mailbox with
 * xvl_mbox_format(): it records a layout entry of type XVL_WIN_MAILBOX and
 * sets the window header's link field to XVL_WIN_LINK_MAILBOX.  The device
 * side finds it with xvl_mbox_open() (the one thing the layout table is
 * used for; everything read there is validated).
 *
 * Two single-producer single-consumer rings of fixed-size slots:
 *   req  driver -> device: requests
 *   rsp  device -> driver: replies and EVENTs
 * Each index word has exactly one writer.  A session is the driver's epoch
 * (drv_epoch) acknowledged by the device (dev_ack); a device instance is
 * dev_epoch.  A new session discards whatever the old one left in the
 * rings; a side that sees the peer's session or instance change gets
 * -ECONNRESET, exactly as if a socket link had closed, and recovers the
 * same way (the driver resubmits, see PROTOCOL.md section 5).
 *
 * No file descriptors travel: SET_WINDOW is implicit (the window is shared
 * already), SET_QUEUE carries XVL_QUEUE_F_VECTORS with doorbell vector
 * numbers.  Vector 0 of each side is its mailbox vector.  The core never
 * rings a doorbell itself: after xvl_mbox_send() the caller rings the
 * peer's vector 0 (or the peer polls).
 *
 * Portable core: no OS calls, no allocation, no globals, bounded loops,
 * explicit ordering (xvl_atomic.h).  Builds freestanding and inside a Linux
 * kernel module: its only includes are xvl_types.h (stdint/stddef/stdbool,
 * or <linux/types.h>/<linux/string.h> under __KERNEL__), proto.h, window.h.
 * Not thread-safe: one caller at a time per struct xvl_mbox.
 */
#ifndef XVL_MAILBOX_H
#define XVL_MAILBOX_H

#include "xvl_types.h"

#include "proto.h"
#include "window.h"

#define XVL_MBOX_MAGIC        0x4d4c5658u /* "XVLM" little-endian */
#define XVL_MBOX_VERSION      1u
#define XVL_MBOX_SLOT_HDR     16u
#define XVL_MBOX_SLOT_SIZE    576u        /* 16-byte slot header + 512-byte message, 64-aligned */
#define XVL_MBOX_MAX_SLOTS    64u         /* per ring; a power of two */
#define XVL_MBOX_DEF_SLOTS    16u
#define XVL_MBOX_MAX_VECTORS  64u         /* doorbell vectors one side may announce */
#define XVL_MBOX_VEC_MAILBOX  0u          /* each side's vector 0 is its mailbox vector */
#define XVL_MBOX_EPOCH_CLOSED 0x80000000u /* drv_epoch bit: the driver closed this session */

/* Byte offsets inside the mailbox region (PROTOCOL.md 7.2). */
#define XVL_MBOX_OFF_MAGIC       0x000u /* driver block */
#define XVL_MBOX_OFF_VERSION     0x004u
#define XVL_MBOX_OFF_NSLOTS      0x006u
#define XVL_MBOX_OFF_SLOTSIZE    0x008u
#define XVL_MBOX_OFF_DRV_VECTORS 0x00cu
#define XVL_MBOX_OFF_DRV_EPOCH   0x010u
#define XVL_MBOX_OFF_DEV_EPOCH   0x040u /* device block */
#define XVL_MBOX_OFF_DEV_ACK     0x044u
#define XVL_MBOX_OFF_DEV_VECTORS 0x048u
#define XVL_MBOX_OFF_REQ_PROD    0x080u /* driver writes */
#define XVL_MBOX_OFF_REQ_CONS    0x0c0u /* device writes */
#define XVL_MBOX_OFF_RSP_PROD    0x100u /* device writes */
#define XVL_MBOX_OFF_RSP_CONS    0x140u /* driver writes */
#define XVL_MBOX_OFF_SLOTS       0x180u /* req slots, then rsp slots */

/* Bytes a mailbox with n_slots per ring occupies (a multiple of 4096); 0 if n_slots is invalid. */
uint64_t xvl_mbox_size(unsigned n_slots);

/* One side's private view of a mailbox.  Fields are private to mailbox.c. */
struct xvl_mbox {
	struct xvl_mem mem;      /* the whole window */
	uint8_t *base;           /* the mailbox region */
	uint64_t off, len;       /* its place in the window */
	uint64_t generation;     /* window generation it was found in (device) */
	uint32_t n_slots;        /* validated copy */
	bool driver;             /* which side this is */
	uint32_t session;        /* drv_epoch of the current session; 0 = none */
	uint32_t last_broken;    /* device: the session it broke (not accepted again) */
	bool up;                 /* driver: the device acknowledged session */
	uint32_t instance;       /* driver: dev_epoch bound at accept; device: own dev_epoch */
	uint32_t tx;             /* own producer index (private copy) */
	uint32_t rx;             /* own consumer index (private copy) */
	uint32_t peer_vectors;   /* validated copy, read at session start */
	int broken;              /* 0, or the negative errno that broke the link */
	const char *why;         /* what broke it, for a message naming the link */
};

/*
 * Driver side.
 *
 * xvl_mbox_format: lay a mailbox of n_slots per ring (0 = default) at
 * [off, off + xvl_mbox_size(n_slots)) of an already formatted window,
 * record it in the layout table and set the header's link field.  off is
 * 64-byte aligned.  drv_vectors: doorbell vectors the driver side can be
 * rung on (0: it polls).  -EINVAL / -ENOSPC (layout table full).
 */
int xvl_mbox_format(struct xvl_mbox *mb, const struct xvl_mem *m, uint64_t off, unsigned n_slots,
		    uint32_t drv_vectors);
/* Start a new session (bumps drv_epoch); then poll xvl_mbox_connected(). */
int xvl_mbox_connect(struct xvl_mbox *mb);
/* 1 once the device accepted the session, 0 not yet, -errno (mailbox damaged). */
int xvl_mbox_connected(struct xvl_mbox *mb);

/*
 * Device side.
 *
 * xvl_mbox_open: find the mailbox through the window header, validate it
 * and announce a new device instance (dev_epoch + 1, no session).
 * -EAGAIN: the window is not formatted yet (try again later); -ENOENT: the
 * window carries no mailbox; -EINVAL / -EPROTONOSUPPORT: a malformed one.
 * dev_vectors: doorbell vectors the device side can be rung on.
 */
int xvl_mbox_open(struct xvl_mbox *mb, const struct xvl_mem *m, uint32_t dev_vectors);
/*
 * Accept the driver's session if there is a new one: 1 (a new session
 * began: forget everything about the previous one), 0 (nothing new), or
 * -ESTALE (the window was formatted again: xvl_mbox_open again).
 */
int xvl_mbox_accept(struct xvl_mbox *mb);

/*
 * Both sides.
 *
 * Send one message: 0, -EAGAIN (the ring is full: try again until the
 * caller's timeout), -ENOTCONN (no session), -ECONNRESET (the peer closed
 * or restarted), or the error that broke the link.  Then ring the peer.
 */
int xvl_mbox_send(struct xvl_mbox *mb, const struct xvl_msg *m);
/*
 * Receive one message: 1 (in *m), 0 (none waiting), -ENOTCONN,
 * -ECONNRESET (the peer closed or restarted), -ESTALE (device: window
 * formatted again), or -EBADMSG / -EPROTO / -EMSGSIZE / -EOPNOTSUPP (the
 * peer wrote something malformed: the link is broken, xvl_mbox_why()
 * says what, and the peer sees the link closed).
 */
int xvl_mbox_recv(struct xvl_mbox *mb, struct xvl_msg *m);
/* True when the peer has left room for one more message (a send would not be -EAGAIN). */
bool xvl_mbox_can_send(const struct xvl_mbox *mb);
/* Nonzero when a message is waiting (cheap; for pollers). */
bool xvl_mbox_pending(const struct xvl_mbox *mb);
/* End the session from this side: the peer gets -ECONNRESET. */
void xvl_mbox_close(struct xvl_mbox *mb);

/* Vectors the peer announced (valid once a session is up). */
static inline uint32_t xvl_mbox_peer_vectors(const struct xvl_mbox *mb) { return mb->peer_vectors; }
/* What broke the link, or "" when it is not broken. */
static inline const char *xvl_mbox_why(const struct xvl_mbox *mb) { return mb->why ? mb->why : ""; }

#endif
