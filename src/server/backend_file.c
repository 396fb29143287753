/* SPDX-License-Identifier: MIT */
/*
 * File backend: requests go to the kernel through the server's io_uring,
 * with the iovecs pointing straight into the window (no copy).  Buffered
 * or O_DIRECT.  A write is acknowledged when the kernel has it; FLUSH is
 * fdatasync, so a server crash loses nothing the driver saw flushed, and
 * buffered data survives a server crash in the page cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srv.h"
#include "virtio_blk.h"

#ifndef BLKGETSIZE64
#include <linux/fs.h>
#endif
#include <sys/ioctl.h>

static int file_size(int fd, uint64_t *size)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int file_open(struct srv_dev *d, struct xvl_errbuf *eb)
{
	const struct xvl_dev_spec *sp = &d->spec;
	int flags = (sp->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (sp->direct ? O_DIRECT : 0);
	uint64_t size;

	if (!d->srv->ring_ok)
		return xvl_err(eb, -ENOSYS, "device %s: io_uring is not available", sp->name);
	d->fd = open(sp->path, flags);
	if (d->fd < 0)
		return xvl_err(eb, -errno, "device %s: cannot open %s: %s%s", sp->name, sp->path,
			       strerror(errno),
			       errno == EINVAL && sp->direct ? " (the file system may not support O_DIRECT)" : "");
	int rc = file_size(d->fd, &size);
	if (rc < 0)
		return xvl_err(eb, rc, "device %s: %s is not a regular file or block device", sp->name,
			       sp->path);
	if (sp->size && sp->size > size)
		return xvl_err(eb, -EINVAL, "device %s: %s has %llu bytes, %llu asked for", sp->name,
			       sp->path, (unsigned long long)size, (unsigned long long)sp->size);
	d->capacity = (sp->size ? sp->size : size) & ~(uint64_t)(XVL_BLK_SECTOR_SIZE - 1);
	if (d->capacity == 0)
		return xvl_err(eb, -EINVAL, "device %s: %s is smaller than one sector", sp->name,
			       sp->path);
	d->block_size = XVL_BLK_SECTOR_SIZE;
	d->features |= (1ull << XVL_BLK_F_FLUSH) | (1ull << XVL_BLK_F_DISCARD) |
		       (1ull << XVL_BLK_F_WRITE_ZEROES);
	return 0;
}

static void file_submit(struct srv_dev *d, struct srv_req *r)
{
	struct io_uring_sqe *sqe = srv_queue_sqe(r->q);
	off_t off = (off_t)(r->sector * XVL_BLK_SECTOR_SIZE);

	if (!sqe) {
		srv_req_done(r, XVL_BLK_S_IOERR);
		return;
	}
	switch (r->type) {
	case XVL_BLK_T_IN:
		io_uring_prep_readv(sqe, d->fd, r->iov, r->niov, off);
		break;
	case XVL_BLK_T_OUT:
		io_uring_prep_writev(sqe, d->fd, r->iov, r->niov, off);
		break;
	case XVL_BLK_T_FLUSH:
		io_uring_prep_fsync(sqe, d->fd, IORING_FSYNC_DATASYNC);
		break;
	case XVL_BLK_T_DISCARD:
		io_uring_prep_fallocate(sqe, d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
					(off_t)r->bytes);
		break;
	case XVL_BLK_T_WRITE_ZEROES:
		io_uring_prep_fallocate(sqe, d->fd,
					(r->written ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) |
						FALLOC_FL_KEEP_SIZE,
					off, (off_t)r->bytes);
		r->written = 0;
		break;
	}
	io_uring_sqe_set_data(sqe, r);
}

static void file_close(struct srv_dev *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

const struct srv_backend_ops srv_file_ops = {
	.open = file_open,
	.submit = file_submit,
	.close = file_close,
};
