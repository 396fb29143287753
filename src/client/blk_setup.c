/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk driver, set-up: opening a device (feature negotiation, the
 * config space, the queues' window memory and rings) and closing it.
 *
 * Each queue owns one heap block of the window holding its rings, its
 * per-head indirect tables and one 64-byte request slot per ring entry
 * (request header, discard range, id buffer, status byte).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blk_int.h"
#include "opts.h"

/* Features this driver understands. */
#define BLK_DRIVER_FEATURES                                                                      \
	((1ull << XVL_F_VERSION_1) | (1ull << XVL_F_INDIRECT_DESC) | (1ull << XVL_F_EVENT_IDX) |  \
	 (1ull << XVL_BLK_F_SIZE_MAX) | (1ull << XVL_BLK_F_SEG_MAX) | (1ull << XVL_BLK_F_RO) |    \
	 (1ull << XVL_BLK_F_BLK_SIZE) | (1ull << XVL_BLK_F_FLUSH) | (1ull << XVL_BLK_F_MQ) |      \
	 (1ull << XVL_BLK_F_DISCARD) | (1ull << XVL_BLK_F_WRITE_ZEROES) |                         \
	 (1ull << XVL_BLK_F_TOPOLOGY))

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

struct queue_area {
	uint64_t desc, avail, used, ind, slots, total;
};

static struct queue_area plan_area(uint16_t num, bool indirect)
{
	struct queue_area a = {0};
	a.avail = align_up(xvl_vq_desc_bytes(num), 64);
	a.used = align_up(a.avail + xvl_vq_avail_bytes(num), 64);
	a.ind = align_up(a.used + xvl_vq_used_bytes(num), 64);
	a.slots = a.ind + (indirect ? 16ull * IND_MAX * num : 0);
	a.total = a.slots + (uint64_t)SLOT_BYTES * num;
	return a;
}

static int config_u32(struct xvl_blk *b, uint32_t off, uint32_t *v)
{
	uint8_t raw[4];
	int rc = xvl_dev_get_config(b->c, b->dev, off, raw, 4);
	*v = (uint32_t)raw[0] | (uint32_t)raw[1] << 8 | (uint32_t)raw[2] << 16 | (uint32_t)raw[3] << 24;
	return rc;
}

static int read_config(struct xvl_blk *b)
{
	struct xvl_blk_info *in = &b->info;
	uint8_t cap[8];
	uint32_t v;
	int rc = xvl_dev_get_config(b->c, b->dev, XVL_BLK_CFG_CAPACITY, cap, 8);
	if (rc < 0)
		return rc;
	uint64_t sectors = 0;
	for (int i = 7; i >= 0; i--)
		sectors = sectors << 8 | cap[i];
	if (sectors > (UINT64_MAX / XVL_BLK_SECTOR_SIZE))
		return xvl_err(&b->c->eb, -EPROTO, "device reports an impossible capacity");
	in->capacity = sectors * XVL_BLK_SECTOR_SIZE;
	in->block_size = XVL_BLK_SECTOR_SIZE;
	if (blk_has(in->features, XVL_BLK_F_BLK_SIZE) && config_u32(b, XVL_BLK_CFG_BLK_SIZE, &v) == 0 &&
	    v >= 512 && v <= 65536 && !(v & (v - 1)))
		in->block_size = v;
	if (blk_has(in->features, XVL_BLK_F_SEG_MAX) && config_u32(b, XVL_BLK_CFG_SEG_MAX, &v) == 0)
		in->seg_max = v;
	if (blk_has(in->features, XVL_BLK_F_SIZE_MAX) && config_u32(b, XVL_BLK_CFG_SIZE_MAX, &v) == 0)
		in->size_max = v;
	if (in->size_max && in->size_max < XVL_BLK_SECTOR_SIZE)
		return xvl_err(&b->c->eb, -EPROTO,
			       "device %u allows %u bytes per segment, less than a sector", b->dev,
			       in->size_max);
	return 0;
}

/*
 * Largest request the device's limits and our chain shape allow, derived
 * from the split blk_io.c really does (blk_seg_step): at most `segs` data
 * segments of `step` bytes.
 */
static uint32_t max_transfer(const struct xvl_blk_info *in)
{
	uint64_t segs = DATA_SEGS_MAX;
	if (in->seg_max && in->seg_max < segs)
		segs = in->seg_max;
	uint32_t step = blk_seg_step(in);
	uint64_t m = step ? segs * step : MAX_TRANSFER; /* no size_max: one segment per request */
	return (uint32_t)(m < MAX_TRANSFER ? m : MAX_TRANSFER);
}

int blk_negotiate(struct xvl_blk *b, const struct xvl_blk_opts *o, uint64_t offered)
{
	uint64_t want = BLK_DRIVER_FEATURES;
	if (o->no_indirect)
		want &= ~(1ull << XVL_F_INDIRECT_DESC);
	if (o->no_event_idx)
		want &= ~(1ull << XVL_F_EVENT_IDX);
	if (!blk_has(offered, XVL_F_VERSION_1))
		return xvl_err(&b->c->eb, -EPROTONOSUPPORT,
			       "device %u does not offer VIRTIO_F_VERSION_1", b->dev);
	b->info.features = offered & want;
	int rc = xvl_dev_set_status(b->c, b->dev, XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER);
	if (rc == 0)
		rc = xvl_dev_set_features(b->c, b->dev, b->info.features);
	if (rc == 0)
		rc = xvl_dev_set_status(b->c, b->dev,
					XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER |
						XVL_STATUS_FEATURES_OK);
	return rc;
}

static int queue_alloc(struct xvl_blk *b, struct blk_queue *bq, uint16_t num)
{
	bool indirect = blk_has(b->info.features, XVL_F_INDIRECT_DESC);
	struct queue_area a = plan_area(num, indirect);

	bq->num = num;
	bq->area = xvl_client_heap_alloc(b->c, a.total);
	bq->vq_priv = calloc(1, xvl_vq_drv_priv_size(num));
	bq->slot = calloc(num, sizeof(*bq->slot));
	bq->free_slot = calloc(num, sizeof(*bq->free_slot));
	bq->resubmit = calloc(num, sizeof(*bq->resubmit));
	bq->held = calloc(num, sizeof(*bq->held));
	if (!bq->area || !bq->vq_priv || !bq->slot || !bq->free_slot || !bq->resubmit || !bq->held)
		return xvl_err(&b->c->eb, -ENOMEM,
			       "no room for a queue of %u entries (%llu bytes) in the window; "
			       "use a bigger window or smaller queues",
			       num, (unsigned long long)a.total);
	bq->layout = (struct xvl_vq_layout){.num = num, .desc = bq->area + a.desc,
					    .avail = bq->area + a.avail, .used = bq->area + a.used};
	bq->ind_off = indirect ? bq->area + a.ind : 0;
	bq->slots_off = bq->area + a.slots;
	bq->slots = b->c->win.mem.base + bq->slots_off;
	for (uint16_t i = 0; i < num; i++)
		bq->free_slot[i] = (uint16_t)(num - 1 - i);
	bq->n_free = num;
	if (!(b->poll && b->c->mode == XVL_MODE_LINK)) {
		bq->kick_fd = xvl_os_eventfd();
		bq->call_fd = xvl_os_eventfd();
		if (bq->kick_fd < 0 || bq->call_fd < 0)
			return xvl_err(&b->c->eb, -errno, "eventfd: %s", strerror(errno));
	}
	return 0;
}

/* Fresh, empty rings (at open, and again when the device restarts). */
int blk_rings_init(struct xvl_blk *b, struct blk_queue *bq)
{
	int rc = xvl_vq_drv_init(&bq->vq, &b->c->win.mem, &bq->layout,
				 blk_has(b->info.features, XVL_F_EVENT_IDX), bq->ind_off,
				 bq->ind_off ? IND_MAX : 0, bq->vq_priv);
	if (rc < 0)
		return xvl_err(&b->c->eb, rc, "cannot set up queue rings");
	if (b->poll)
		xvl_vq_drv_disable_cb(&bq->vq);
	return 0;
}

/* Tell the device where queue qi is. */
int blk_queue_announce(struct xvl_blk *b, uint16_t qi)
{
	struct blk_queue *bq = &b->q[qi];
	struct xvl_queue_setup qs = {.queue = qi,
				     .layout = bq->layout,
				     .kick_fd = bq->kick_fd,
				     .call_fd = bq->call_fd,
				     .poll = b->poll && b->c->mode == XVL_MODE_LINK};
	return xvl_dev_setup_queue(b->c, b->dev, &qs);
}

static int queue_start(struct xvl_blk *b, uint16_t qi, uint16_t num)
{
	struct blk_queue *bq = &b->q[qi];
	int rc = queue_alloc(b, bq, num);
	if (rc == 0)
		rc = blk_rings_init(b, bq);
	if (rc < 0)
		return rc;
	xvl_win_record(&b->c->win.mem, XVL_WIN_DESC, (uint16_t)b->dev, qi, bq->layout.desc,
		       xvl_vq_desc_bytes(num));
	return blk_queue_announce(b, qi);
}

/* At close the device has been detached (or is gone): quarantined blocks go back too. */
static void queue_free(struct xvl_blk *b, struct blk_queue *bq)
{
	if (bq->slot)
		for (unsigned i = 0; i < bq->num; i++)
			xvl_client_heap_free(b->c, bq->slot[i].bounce);
	xvl_client_heap_free(b->c, bq->area);
	if (bq->kick_fd >= 0)
		close(bq->kick_fd);
	if (bq->call_fd >= 0)
		close(bq->call_fd);
	free(bq->vq_priv);
	free(bq->slot);
	free(bq->free_slot);
	free(bq->resubmit);
	free(bq->held);
	if (bq->lock_init)
		pthread_mutex_destroy(&bq->lock);
	memset(bq, 0, sizeof(*bq));
	bq->kick_fd = bq->call_fd = -1;
}

static int pick_device(struct xvl_client *c, int want)
{
	if (want >= 0) {
		if ((unsigned)want >= c->n_dev)
			return xvl_err(&c->eb, -ENODEV, "no device %d (the peer has %u)", want, c->n_dev);
		if (c->dev[want].virtio_id != XVL_VIRTIO_ID_BLOCK)
			return xvl_err(&c->eb, -ENODEV, "device %d (%s) is not a block device", want,
				       c->dev[want].name);
		return want;
	}
	for (unsigned i = 0; i < c->n_dev; i++)
		if (c->dev[i].virtio_id == XVL_VIRTIO_ID_BLOCK)
			return (int)i;
	return xvl_err(&c->eb, -ENODEV, "the peer has no block device");
}

static int open_device(struct xvl_blk *b, const struct xvl_blk_opts *o)
{
	const struct xvl_dev_desc *d = &b->c->dev[b->dev];
	uint16_t qsize = o->queue_size ? o->queue_size : DEFAULT_QUEUE_SIZE;
	if (qsize > d->max_queue_size)
		qsize = d->max_queue_size;
	if (qsize == 0 || qsize > XVL_VQ_MAX_SIZE || (qsize & (qsize - 1)))
		return xvl_err(&b->c->eb, -EINVAL, "queue size %u is not a power of two in 1..%u",
			       qsize, XVL_VQ_MAX_SIZE);
	b->opts = *o;
	b->offered = d->features;
	int rc = xvl_dev_attach(b->c, b->dev);
	if (rc == 0)
		rc = blk_negotiate(b, o, d->features);
	if (rc == 0)
		rc = read_config(b);
	if (rc < 0)
		return rc;
	uint16_t nq = o->num_queues ? o->num_queues : 1;
	if (nq > d->num_queues)
		nq = d->num_queues;
	if (nq > XVL_MAX_QUEUES) /* client.c caps DEV_INFO already; q[] holds no more */
		nq = XVL_MAX_QUEUES;
	if (nq > 1 && !blk_has(b->info.features, XVL_BLK_F_MQ) && b->c->mode == XVL_MODE_LINK)
		nq = 1;
	for (uint16_t i = 0; i < nq; i++) {
		rc = queue_start(b, i, qsize);
		if (rc < 0)
			return rc;
		b->nq = (uint16_t)(i + 1);
	}
	struct xvl_blk_info *in = &b->info;
	in->num_queues = nq;
	in->queue_size = qsize;
	in->read_only = blk_has(in->features, XVL_BLK_F_RO);
	in->flush = blk_has(in->features, XVL_BLK_F_FLUSH);
	in->discard = blk_has(in->features, XVL_BLK_F_DISCARD);
	in->write_zeroes = blk_has(in->features, XVL_BLK_F_WRITE_ZEROES);
	in->max_transfer = max_transfer(in);
	snprintf(in->name, sizeof(in->name), "%s", d->name);
	return blk_set_driver_ok(b);
}

int blk_set_driver_ok(struct xvl_blk *b)
{
	return xvl_dev_set_status(b->c, b->dev,
				  XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER |
					  XVL_STATUS_FEATURES_OK | XVL_STATUS_DRIVER_OK);
}

int xvl_blk_open(struct xvl_client *c, const struct xvl_blk_opts *o, struct xvl_blk **out)
{
	static const struct xvl_blk_opts defaults = {XVL_BLK_OPTS_INIT, .device = -1};
	struct xvl_blk_opts own;
	char bad[256];
	*out = NULL;
	if (o && xvl_opts_take(&own, sizeof(own), o, XVL_BLK_OPTS_SIZE_0_1, "struct xvl_blk_opts",
			       bad, sizeof(bad)) < 0)
		return xvl_err(&c->eb, -EINVAL, "%s", bad);
	o = o ? &own : &defaults;
	int dev = pick_device(c, o->device);
	if (dev < 0)
		return dev;
	if (c->open[dev])
		return xvl_err(&c->eb, -EBUSY, "device %d is already open on this client", dev);
	struct xvl_blk *b = calloc(1, sizeof(*b));
	if (!b)
		return xvl_err(&c->eb, -ENOMEM, "out of memory");
	b->c = c;
	b->dev = (uint32_t)dev;
	b->poll = o->poll || xvl_client_link_polls(c); /* a link without doorbells: poll */
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++) {
		b->q[i].kick_fd = b->q[i].call_fd = -1;
		pthread_mutex_init(&b->q[i].lock, NULL);
		b->q[i].lock_init = true;
	}
	c->open[dev] = b;
	int rc = open_device(b, o);
	if (rc < 0) {
		struct xvl_errbuf why = c->eb; /* closing talks to the server too: keep the cause */
		xvl_blk_close(b);
		c->eb = why;
		return rc;
	}
	*out = b;
	return 0;
}

void xvl_blk_close(struct xvl_blk *b)
{
	if (!b)
		return;
	/* The device must stop touching the rings before their memory is reused. */
	xvl_dev_detach(b->c, b->dev, b->nq);
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++)
		queue_free(b, &b->q[i]);
	b->c->open[b->dev] = NULL;
	free(b);
}

void xvl_blk_get_info(const struct xvl_blk *b, struct xvl_blk_info *info)
{
	*info = b->info;
}
