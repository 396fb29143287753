/* SPDX-License-Identifier: MIT */
/*
 * blkfs: xvloop block devices as regular files in a FUSE mount (libfuse3).
 *
 * The mount's root directory holds one file per device, named by the
 * device, whose size is the device's capacity.  read, write, fsync (a
 * virtio-blk FLUSH) and mmap work as on any file: the kernel's page cache
 * sits in front (no direct_io), so a shared writable mapping is written back
 * through FUSE writes.  A write that starts at or past the end fails with
 * EFBIG and writes nothing; one that crosses the end is cut there (a short
 * count, as on a full disk: the kernel splits writes at page boundaries
 * anyway, so no all-or-nothing rule could hold); partial sectors are
 * read-modify-written.  The size cannot change (truncate to another size:
 * EPERM; so `dd` needs conv=notrunc, as for any fixed-size target); no file
 * can be created or removed.  libfuse's multi-threaded loop serves requests;
 * each device's queues are shared by the FUSE threads through src/blksync.
 */
#ifndef XVL_BLKFS_H
#define XVL_BLKFS_H

#include <stdbool.h>
#include <time.h>

#include "blksync.h"

#define BLKFS_MAX_FILES 16

struct blkfs_file {
	struct xbs *dev;
	char name[32];
};

struct blkfs_opts {
	const char *mountpoint;
	const char *fsname;       /* shown in /proc/mounts as the source */
	bool foreground;
	bool allow_other;
	bool debug;
	bool single_thread;
	time_t started;           /* the files' times (set by blkfs_run) */
	unsigned n_files;
	struct blkfs_file files[BLKFS_MAX_FILES];
};

/* Mount, serve until unmounted (fusermount3 -u, umount) or signalled.  0 or a libfuse failure (1). */
int blkfs_run(struct blkfs_opts *o);

#endif
