/* SPDX-License-Identifier: MIT */
/*
 * In-memory backends.  null: completes every request at once and moves no
 * data (the floor of what the transport costs).  ram: a private memory
 * disk, lost when the server exits.  Both complete inline.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "srv.h"
#include "virtio_blk.h"

static int mem_setup(struct srv_dev *d, struct xvl_errbuf *eb)
{
	if (d->spec.size < XVL_BLK_SECTOR_SIZE)
		return xvl_err(eb, -EINVAL, "device %s: backend needs size=BYTES (at least 512)",
			       d->spec.name);
	d->capacity = d->spec.size & ~(uint64_t)(XVL_BLK_SECTOR_SIZE - 1);
	d->block_size = XVL_BLK_SECTOR_SIZE;
	d->features |= (1ull << XVL_BLK_F_FLUSH) | (1ull << XVL_BLK_F_DISCARD) |
		       (1ull << XVL_BLK_F_WRITE_ZEROES);
	return 0;
}

static void null_submit(struct srv_dev *d, struct srv_req *r)
{
	srv_req_done(r, XVL_BLK_S_OK);
}

static int ram_open(struct srv_dev *d, struct xvl_errbuf *eb)
{
	int rc = mem_setup(d, eb);
	if (rc < 0)
		return rc;
	void *p = mmap(NULL, d->capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
		       MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return xvl_err(eb, -ENOMEM, "device %s: cannot reserve %llu bytes of RAM",
			       d->spec.name, (unsigned long long)d->capacity);
	d->ram = p;
	return 0;
}

static void copy_iov(struct srv_req *r, uint8_t *disk, bool to_disk)
{
	for (unsigned i = 0; i < r->niov; i++) {
		if (to_disk)
			memcpy(disk, r->iov[i].iov_base, r->iov[i].iov_len);
		else
			memcpy(r->iov[i].iov_base, disk, r->iov[i].iov_len);
		disk += r->iov[i].iov_len;
	}
}

static void ram_submit(struct srv_dev *d, struct srv_req *r)
{
	uint8_t *at = d->ram + r->sector * XVL_BLK_SECTOR_SIZE;
	switch (r->type) {
	case XVL_BLK_T_IN:
		copy_iov(r, at, false);
		break;
	case XVL_BLK_T_OUT:
		copy_iov(r, at, true);
		break;
	case XVL_BLK_T_DISCARD:
	case XVL_BLK_T_WRITE_ZEROES:
		memset(at, 0, r->bytes);
		r->written = 0;
		break;
	default:
		break;
	}
	srv_req_done(r, XVL_BLK_S_OK);
}

static void ram_close(struct srv_dev *d)
{
	if (d->ram)
		munmap(d->ram, d->capacity);
	d->ram = NULL;
}

static void null_close(struct srv_dev *d)
{
}

const struct srv_backend_ops srv_null_ops = {
	.open = mem_setup,
	.submit = null_submit,
	.close = null_close,
};

const struct srv_backend_ops srv_ram_ops = {
	.open = ram_open,
	.submit = ram_submit,
	.close = ram_close,
};
