/* SPDX-License-Identifier: MIT */
/*
 * Blocking, thread-safe byte I/O on one xvloop block device, for front-ends
 * whose callers are many threads issuing synchronous requests at arbitrary
 * byte offsets: the nbdkit plugin (src/nbdkit) and the FUSE mount
 * (src/fuse).
 *
 * One client, one device, Q queues.  Each queue has a lock; a request
 * takes the next queue in turn, submits its pieces (split at the device's
 * max transfer), and then waits for them.  Several threads may have
 * requests in flight on one queue: whoever holds the lock reaps every
 * completion on it and hands each to its owner; one waiter at a time sleeps
 * on the queue's notification fd with the lock released, the others on a
 * condition variable.  So a queue's depth is the number of threads using it,
 * not one.
 *
 * Byte ranges need not be sector-aligned: a read covering partial sectors
 * reads the whole sectors into a bounce buffer; a write does
 * read-modify-write of its first and last partial sectors (two writers
 * racing on the same sector may lose one's bytes, as on any disk).
 *
 * With recovery enabled (reconnect_ms, or XVL_RECONNECT_MS), which sets
 * every queue up again from whichever thread notices, only one queue is
 * used, so all I/O runs under one lock (src/client/blk.c's rule).
 */
#ifndef XVL_BLKSYNC_H
#define XVL_BLKSYNC_H

#include <stddef.h>
#include <stdint.h>

#include "xvloop/xvl.h"

struct xbs;

struct xbs_opts {
	const char *uri;          /* xvl:PATH, PATH or vhost-user:PATH */
	const char *device;       /* name or index; NULL: the first block device */
	const char *client_name;  /* shown by the server */
	unsigned queues;          /* 0: all the device offers (at most 16) */
	uint64_t window_size;     /* 0: the client's default */
	unsigned reconnect_ms;
};

/* Connect and open the device.  On failure err says why, in words a user can act on. */
int xbs_open(struct xbs **s, const struct xbs_opts *o, char *err, size_t errlen);
void xbs_close(struct xbs *s);
void xbs_info(const struct xbs *s, struct xvl_blk_info *info);

/* Any byte range inside the device.  0 or a negative errno (-EIO, -ENODEV, ...). */
int xbs_read(struct xbs *s, void *buf, uint64_t len, uint64_t off);
int xbs_write(struct xbs *s, const void *buf, uint64_t len, uint64_t off);
/* Sector-aligned ranges only (-EINVAL otherwise). -EOPNOTSUPP without the feature. */
int xbs_discard(struct xbs *s, uint64_t len, uint64_t off);
int xbs_write_zeroes(struct xbs *s, uint64_t len, uint64_t off);
/* A device without VIRTIO_BLK_F_FLUSH is write-through: then 0 at once. */
int xbs_flush(struct xbs *s);

#endif
