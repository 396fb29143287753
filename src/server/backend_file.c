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
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ------------------------------------------------------------ the ring */

/*
 * The only operations the server ever puts on its ring (file_submit above).
 * io_uring operations bypass seccomp's argument checks (an OPENAT or a
 * SENDMSG on the ring is not a system call), so the ring is created
 * disabled, restricted to these opcodes with no SQE flags and no register
 * operations, and only then enabled: the kernel refuses anything else with
 * -EACCES in the completion.
 */
static const uint8_t ring_ops[] = {
	IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_FALLOCATE,
};

static int ring_restrict(struct io_uring *ring)
{
	struct io_uring_restriction r[sizeof(ring_ops) + 1];
	unsigned n = 0;

	memset(r, 0, sizeof(r));
	for (unsigned i = 0; i < sizeof(ring_ops); i++) {
		r[n].opcode = IORING_RESTRICTION_SQE_OP;
		r[n++].sqe_op = ring_ops[i];
	}
	r[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
	r[n++].sqe_flags = 0;
	/* liburing 2.3 (Debian 12) declares io_uring_register_restrictions but does
	 * not export it: the register calls are made directly. */
	if (syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_RESTRICTIONS, r, n) < 0 ||
	    syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
		return -errno;
	return 0;
}

/*
 * Under a seccomp filter (the partitioner's device profile allows
 * io_uring_setup for this ring) a compromised server could make a second,
 * unrestricted ring.  Once ours exists, add a filter of our own that refuses
 * io_uring_setup.  Filters only ever add restrictions; outside a sandbox
 * (no filter yet) nothing is installed, so in-process users are unaffected.
 */
static bool under_seccomp_filter(void)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	const char *p = strstr(buf, "\nSeccomp:");
	return p && strtol(p + 9, NULL, 10) == SECCOMP_MODE_FILTER;
}

static int forbid_new_rings(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};

	if (!under_seccomp_filter())
		return 0;
	/* TSYNC: every thread (the server's workers) gets it, not only the caller */
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) < 0)
		return -errno;
	return 0;
}

int srv_ring_create(struct io_uring *ring, unsigned depth)
{
	int rc = io_uring_queue_init(depth, ring, IORING_SETUP_R_DISABLED);

	if (rc < 0)
		return rc;
	rc = ring_restrict(ring);
	if (rc < 0)
		io_uring_queue_exit(ring);
	return rc;
}

int srv_ring_seal(void)
{
	return forbid_new_rings();
}

int srv_ring_init(struct io_uring *ring, unsigned depth)
{
	int rc = srv_ring_create(ring, depth);
	if (rc == 0) {
		rc = srv_ring_seal();
		if (rc < 0)
			io_uring_queue_exit(ring);
	}
	return rc;
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
