/* SPDX-License-Identifier: MIT */
/*
 * nbdkit plugin: serve an xvloop block device over NBD, so that every NBD
 * client (qemu-img, nbdcopy, nbdinfo, fio's nbd engine, the kernel's
 * nbd-client) can use it.  It runs on the driver side: the device side still
 * sees only the window.
 *
 *   nbdkit [-U SOCKET] xvloop uri=xvl:/run/xvl.sock [device=disk0] [queues=N]
 *          [window-size=BYTES]
 *
 * Thread model PARALLEL: the server lets one client attach a device, so the
 * plugin opens it once (one client, one window) and every connection and
 * every nbdkit worker thread shares its queues through src/blksync: a lock
 * per queue, requests taking the queues in turn, many in flight on each.  Requests of any byte alignment are accepted (partial sectors are
 * read-modify-written); NBD's limits are advertised with .block_size.
 *
 * Mapping to virtio-blk:
 *   pread/pwrite    IN/OUT, split at the device's max transfer
 *   FUA             the write, then FLUSH (virtio-blk has no FUA bit)
 *   flush           FLUSH; a device without VIRTIO_BLK_F_FLUSH is
 *                   write-through, so a flush succeeds at once
 *   trim            DISCARD of the whole sectors inside the range (advisory);
 *                   offered only with VIRTIO_BLK_F_DISCARD
 *   zero            WRITE_ZEROES for whole sectors, written zeroes for the
 *                   partial ones; without VIRTIO_BLK_F_WRITE_ZEROES it fails
 *                   with EOPNOTSUPP and nbdkit writes zeroes itself (and a
 *                   FAST_ZERO request fails with ENOTSUP, as NBD requires)
 *   can_write       not read-only (ro=on on the server, or nbdkit -r)
 *   errors          -EIO -> EIO, -EROFS -> EPERM, -EOPNOTSUPP -> ENOTSUP,
 *                   -ENODEV (device broken or server gone) -> EIO,
 *                   -ENOMEM (window full) -> ENOMEM
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blksync.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL
#define MAX_REQUEST (32u << 20) /* nbdkit's own limit on a request */

/* What nbdkit was told on its command line (nbdkit plugins configure globally). */
static struct xbs_opts cfg = {.client_name = "nbdkit-xvloop"};
static char *cfg_uri, *cfg_device;

static int xvloop_config(const char *key, const char *value)
{
	if (!strcmp(key, "uri")) {
		free(cfg_uri);
		cfg_uri = strdup(value);
		return cfg_uri ? 0 : -1;
	}
	if (!strcmp(key, "device")) {
		free(cfg_device);
		cfg_device = strdup(value);
		return cfg_device ? 0 : -1;
	}
	if (!strcmp(key, "queues")) {
		char *end;
		unsigned long n = strtoul(value, &end, 10);
		if (!*value || *end || n < 1 || n > 16) {
			nbdkit_error("queues=%s: expected a number in 1..16", value);
			return -1;
		}
		cfg.queues = (unsigned)n;
		return 0;
	}
	if (!strcmp(key, "window-size")) {
		int64_t n = nbdkit_parse_size(value);
		if (n <= 0)
			return -1;
		cfg.window_size = (uint64_t)n;
		return 0;
	}
	nbdkit_error("unknown parameter '%s' (expected uri, device, queues, window-size)", key);
	return -1;
}

static int xvloop_config_complete(void)
{
	if (!cfg_uri) {
		nbdkit_error("uri=xvl:SOCKET is required (the xvl server to connect to)");
		return -1;
	}
	cfg.uri = cfg_uri;
	cfg.device = cfg_device;
	return 0;
}

/*
 * The one attachment of the device, shared by every connection: the server
 * lets one client attach a device at a time.  Opened before nbdkit forks into
 * the background (the client library has no threads, so its sockets, eventfds
 * and the MAP_SHARED window carry over into the child), so that a server or
 * device that is not there stops nbdkit from starting, with the reason.
 */
static struct xbs *dev;

static int xvloop_get_ready(void)
{
	char err[300];
	if (xbs_open(&dev, &cfg, err, sizeof(err)) < 0) {
		nbdkit_error("%s: %s", cfg.uri, err);
		return -1;
	}
	struct xvl_blk_info in;
	xbs_info(dev, &in);
	nbdkit_debug("xvloop: device %s, %" PRIu64 " bytes, %u queue(s), max transfer %u",
		     in.name, in.capacity, in.num_queues, in.max_transfer);
	return 0;
}

static void xvloop_unload(void)
{
	xbs_close(dev);
	free(cfg_uri);
	free(cfg_device);
}

static void *xvloop_open(int readonly)
{
	(void)readonly; /* nbdkit -r: nbdkit refuses writes itself */
	return dev;
}

static struct xvl_blk_info info_of(void *h)
{
	struct xvl_blk_info in;
	xbs_info(h, &in);
	return in;
}

static int64_t xvloop_get_size(void *h)
{
	return (int64_t)info_of(h).capacity;
}

static int xvloop_block_size(void *h, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
	struct xvl_blk_info in = info_of(h);
	*minimum = 1; /* any alignment works; below a sector it costs a read-modify-write */
	*preferred = in.block_size > 4096 ? in.block_size : 4096;
	*maximum = MAX_REQUEST;
	return 0;
}

static int xvloop_can_write(void *h) { return !info_of(h).read_only; }
static int xvloop_can_flush(void *h) { return 1; }
static int xvloop_can_trim(void *h) { return info_of(h).discard && !info_of(h).read_only; }
static int xvloop_can_zero(void *h) { return !info_of(h).read_only; }
static int xvloop_can_fast_zero(void *h) { return info_of(h).write_zeroes; }
static int xvloop_can_fua(void *h) { return NBDKIT_FUA_NATIVE; }
static int xvloop_is_rotational(void *h) { return 0; }
/* Every connection reaches the same device; a flush on one covers writes completed on all. */
static int xvloop_can_multi_conn(void *h) { return 1; }

static int nbd_errno(int rc)
{
	switch (rc) {
	case -EROFS: return EPERM;
	case -EOPNOTSUPP: return ENOTSUP;
	case -ENOMEM: return ENOMEM;
	case -EINVAL: return EINVAL;
	case -ENOSPC: return ENOSPC;
	default: return EIO;
	}
}

static int failed(const char *what, uint32_t count, uint64_t offset, int rc)
{
	nbdkit_error("xvloop: %s of %" PRIu32 " bytes at %" PRIu64 ": %s", what, count, offset,
		     strerror(-rc));
	nbdkit_set_error(nbd_errno(rc));
	return -1;
}

static int xvloop_pread(void *h, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	int rc = xbs_read(h, buf, count, offset);
	return rc < 0 ? failed("read", count, offset, rc) : 0;
}

static int xvloop_flush(void *h, uint32_t flags)
{
	int rc = xbs_flush(h);
	return rc < 0 ? failed("flush", 0, 0, rc) : 0;
}

static int xvloop_pwrite(void *h, const void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	int rc = xbs_write(h, buf, count, offset);
	if (rc < 0)
		return failed("write", count, offset, rc);
	return flags & NBDKIT_FLAG_FUA ? xvloop_flush(h, 0) : 0;
}

static int xvloop_trim(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
	uint64_t lo = (offset + 511) & ~511ull, hi = (offset + count) & ~511ull;
	int rc = hi > lo ? xbs_discard(h, hi - lo, lo) : 0;
	if (rc < 0)
		return failed("trim", count, offset, rc);
	return flags & NBDKIT_FLAG_FUA ? xvloop_flush(h, 0) : 0;
}

/* Written zeroes for [off, off+n), n < 512 + a sector's worth; used at the edges. */
static int zero_bytes(void *h, uint64_t off, uint64_t n)
{
	static const uint8_t zeroes[512];
	return n ? xbs_write(h, zeroes, n, off) : 0;
}

static int xvloop_zero(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
	if (!info_of(h).write_zeroes) {
		/* EOPNOTSUPP: nbdkit writes zeroes itself; a fast zero must fail with ENOTSUP */
		nbdkit_set_error(flags & NBDKIT_FLAG_FAST_ZERO ? ENOTSUP : EOPNOTSUPP);
		return -1;
	}
	uint64_t end = offset + count, lo = (offset + 511) & ~511ull, hi = end & ~511ull;
	int rc;
	if (hi <= lo) {
		rc = zero_bytes(h, offset, count);
	} else {
		rc = zero_bytes(h, offset, lo - offset);
		if (rc == 0)
			rc = xbs_write_zeroes(h, hi - lo, lo);
		if (rc == 0)
			rc = zero_bytes(h, hi, end - hi);
	}
	if (rc < 0)
		return failed("zero", count, offset, rc);
	return flags & NBDKIT_FLAG_FUA ? xvloop_flush(h, 0) : 0;
}

static struct nbdkit_plugin plugin = {
	.name = "xvloop",
	.longname = "xvloop cross-compartment virtio-blk",
	.version = "0.1.0",
	.description = "Serve a block device of an xvloop server over NBD.",
	.config = xvloop_config,
	.config_complete = xvloop_config_complete,
	.config_help = "uri=xvl:SOCKET     (required) the xvl server (or vhost-user:SOCKET)\n"
		       "device=NAME|INDEX  the device (default: the first block device)\n"
		       "queues=N           queues per connection (default: all the device offers)\n"
		       "window-size=BYTES  shared window per connection (default 64M)",
	.magic_config_key = "uri",
	.get_ready = xvloop_get_ready,
	.unload = xvloop_unload,
	.open = xvloop_open,
	.get_size = xvloop_get_size,
	.block_size = xvloop_block_size,
	.can_write = xvloop_can_write,
	.can_flush = xvloop_can_flush,
	.can_trim = xvloop_can_trim,
	.can_zero = xvloop_can_zero,
	.can_fast_zero = xvloop_can_fast_zero,
	.can_fua = xvloop_can_fua,
	.can_multi_conn = xvloop_can_multi_conn,
	.is_rotational = xvloop_is_rotational,
	.pread = xvloop_pread,
	.pwrite = xvloop_pwrite,
	.flush = xvloop_flush,
	.trim = xvloop_trim,
	.zero = xvloop_zero,
	.errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN(plugin)
