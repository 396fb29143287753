/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk driver over xvloop queues.
 *
 * Each queue owns one heap block of the window holding its rings, its
 * per-head indirect tables and one 64-byte request slot per ring entry
 * (request header, discard range, id buffer, status byte).  Data goes
 * zero-copy when the caller's buffer is in the window and through a
 * bounce block of the window heap otherwise.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Features this driver understands. */
#define BLK_DRIVER_FEATURES                                                                      \
	((1ull << XVL_F_VERSION_1) | (1ull << XVL_F_INDIRECT_DESC) | (1ull << XVL_F_EVENT_IDX) |  \
	 (1ull << XVL_BLK_F_SIZE_MAX) | (1ull << XVL_BLK_F_SEG_MAX) | (1ull << XVL_BLK_F_RO) |    \
	 (1ull << XVL_BLK_F_BLK_SIZE) | (1ull << XVL_BLK_F_FLUSH) | (1ull << XVL_BLK_F_MQ) |      \
	 (1ull << XVL_BLK_F_DISCARD) | (1ull << XVL_BLK_F_WRITE_ZEROES) |                         \
	 (1ull << XVL_BLK_F_TOPOLOGY))

/* Everything needed to build a request's chain again after a device restart. */
struct blk_slot {
	void *user;
	void *app_buf;       /* caller's buffer when it is copied through the window */
	uint64_t bounce;     /* window offset of the bounce block, 0 = zero copy */
	uint64_t data;       /* window offset of the data */
	uint64_t offset;     /* bytes on the device */
	uint32_t len;
	uint8_t op;
};

struct blk_queue {
	struct xvl_vq_drv vq;
	void *vq_priv;
	uint64_t area;       /* heap block with rings, indirect tables, slots */
	struct xvl_vq_layout layout;
	uint64_t ind_off;
	uint8_t *slots;      /* local address of the slot array in the window */
	uint64_t slots_off;
	struct blk_slot *slot;
	uint16_t *free_slot;
	uint16_t n_free;
	int kick_fd;
	int call_fd;
	uint64_t last_link_check;
	bool fd_exported;         /* the caller polls call_fd itself: complete() drains it */
	uint16_t *resubmit;       /* slots to submit again after a restart */
	unsigned n_resubmit;      /* kept until they are back in a ring: a restart can be cut short */
	struct xvl_blk_cpl *held; /* completions found while restarting, not yet returned */
	unsigned n_held;
};

struct xvl_blk {
	struct xvl_client *c;
	uint32_t dev;
	bool poll;
	bool broken;
	bool restart;        /* the device asked to be set up again (EVENT RESTART) */
	int broken_reason;
	char broken_msg[64];
	uint64_t offered;    /* device features at open */
	struct xvl_blk_opts opts;
	struct xvl_blk_info info;
	uint16_t nq;
	struct blk_queue q[XVL_MAX_QUEUES];
};

/* ------------------------------------------------------------ set-up */

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

static bool has(uint64_t features, unsigned bit) { return features & (1ull << bit); }

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
	if (has(in->features, XVL_BLK_F_BLK_SIZE) && config_u32(b, XVL_BLK_CFG_BLK_SIZE, &v) == 0 &&
	    v >= 512 && v <= 65536 && !(v & (v - 1)))
		in->block_size = v;
	if (has(in->features, XVL_BLK_F_SEG_MAX) && config_u32(b, XVL_BLK_CFG_SEG_MAX, &v) == 0)
		in->seg_max = v;
	if (has(in->features, XVL_BLK_F_SIZE_MAX) && config_u32(b, XVL_BLK_CFG_SIZE_MAX, &v) == 0)
		in->size_max = v;
	return 0;
}

/* Largest request the device's limits and our chain shape allow. */
static uint32_t max_transfer(const struct xvl_blk_info *in)
{
	uint64_t segs = DATA_SEGS_MAX;
	if (in->seg_max && in->seg_max < segs)
		segs = in->seg_max;
	uint64_t m = MAX_TRANSFER;
	if (in->size_max && in->size_max >= 4096 && segs * in->size_max < m)
		m = segs * (in->size_max & ~4095u);
	return (uint32_t)m;
}

static int negotiate(struct xvl_blk *b, const struct xvl_blk_opts *o, uint64_t offered)
{
	uint64_t want = BLK_DRIVER_FEATURES;
	if (o->no_indirect)
		want &= ~(1ull << XVL_F_INDIRECT_DESC);
	if (o->no_event_idx)
		want &= ~(1ull << XVL_F_EVENT_IDX);
	if (!has(offered, XVL_F_VERSION_1))
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
	bool indirect = has(b->info.features, XVL_F_INDIRECT_DESC);
	struct queue_area a = plan_area(num, indirect);

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
static int queue_rings_init(struct xvl_blk *b, struct blk_queue *bq)
{
	int rc = xvl_vq_drv_init(&bq->vq, &b->c->win.mem, &bq->layout,
				 has(b->info.features, XVL_F_EVENT_IDX), bq->ind_off,
				 bq->ind_off ? IND_MAX : 0, bq->vq_priv);
	if (rc < 0)
		return xvl_err(&b->c->eb, rc, "cannot set up queue rings");
	if (b->poll)
		xvl_vq_drv_disable_cb(&bq->vq);
	return 0;
}

/* Tell the device where queue qi is. */
static int queue_announce(struct xvl_blk *b, uint16_t qi)
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
		rc = queue_rings_init(b, bq);
	if (rc < 0)
		return rc;
	xvl_win_record(&b->c->win.mem, XVL_WIN_DESC, (uint16_t)b->dev, qi, bq->layout.desc,
		       xvl_vq_desc_bytes(num));
	return queue_announce(b, qi);
}

static void queue_free(struct xvl_blk *b, struct blk_queue *bq)
{
	if (bq->slot)
		for (unsigned i = 0; i < bq->vq.num; i++)
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
		rc = negotiate(b, o, d->features);
	if (rc == 0)
		rc = read_config(b);
	if (rc < 0)
		return rc;
	uint16_t nq = o->num_queues ? o->num_queues : 1;
	if (nq > d->num_queues)
		nq = d->num_queues;
	if (nq > 1 && !has(b->info.features, XVL_BLK_F_MQ) && b->c->mode == XVL_MODE_LINK)
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
	in->read_only = has(in->features, XVL_BLK_F_RO);
	in->flush = has(in->features, XVL_BLK_F_FLUSH);
	in->discard = has(in->features, XVL_BLK_F_DISCARD);
	in->write_zeroes = has(in->features, XVL_BLK_F_WRITE_ZEROES);
	in->max_transfer = max_transfer(in);
	snprintf(in->name, sizeof(in->name), "%s", d->name);
	return xvl_dev_set_status(b->c, b->dev,
				  XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER |
					  XVL_STATUS_FEATURES_OK | XVL_STATUS_DRIVER_OK);
}

int xvl_blk_open(struct xvl_client *c, const struct xvl_blk_opts *o, struct xvl_blk **out)
{
	static const struct xvl_blk_opts defaults = {.device = -1};
	if (!o)
		o = &defaults;
	*out = NULL;
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
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++)
		b->q[i].kick_fd = b->q[i].call_fd = -1;
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

void xvl_blk_mark_broken(struct xvl_blk *b, int reason, const char *why)
{
	if (b->broken)
		return;
	b->broken = true;
	b->broken_reason = reason;
	snprintf(b->broken_msg, sizeof(b->broken_msg), "%s", why);
	for (unsigned i = 0; i < b->nq; i++)
		xvl_vq_drv_set_broken(&b->q[i].vq);
	snprintf(b->c->eb.msg, sizeof(b->c->eb.msg), "device %u broken: %s", b->dev, why);
}

/* ------------------------------------------------------------ submission */

static int check_range(const struct xvl_blk *b, const struct xvl_blk_req *r)
{
	if (r->offset % XVL_BLK_SECTOR_SIZE || r->len % XVL_BLK_SECTOR_SIZE)
		return -EINVAL;
	if (r->offset > b->info.capacity || r->len > b->info.capacity - r->offset)
		return -EINVAL;
	return 0;
}

static int check_request(const struct xvl_blk *b, const struct xvl_blk_req *r)
{
	switch (r->op) {
	case XVL_BLK_READ:
	case XVL_BLK_WRITE:
		if (r->len == 0 || r->len > b->info.max_transfer || !r->buf)
			return -EINVAL;
		if (r->op == XVL_BLK_WRITE && b->info.read_only)
			return -EROFS;
		return check_range(b, r);
	case XVL_BLK_FLUSH:
		return b->info.flush ? 0 : -EOPNOTSUPP;
	case XVL_BLK_DISCARD:
	case XVL_BLK_WRITE_ZEROES:
		if ((r->op == XVL_BLK_DISCARD && !b->info.discard) ||
		    (r->op == XVL_BLK_WRITE_ZEROES && !b->info.write_zeroes))
			return -EOPNOTSUPP;
		if (b->info.read_only)
			return -EROFS;
		return r->len ? check_range(b, r) : -EINVAL;
	case XVL_BLK_GET_ID:
		return r->buf ? 0 : -EINVAL;
	default:
		return -EINVAL;
	}
}

static const uint32_t blk_type[] = {
	[XVL_BLK_READ] = XVL_BLK_T_IN,
	[XVL_BLK_WRITE] = XVL_BLK_T_OUT,
	[XVL_BLK_FLUSH] = XVL_BLK_T_FLUSH,
	[XVL_BLK_DISCARD] = XVL_BLK_T_DISCARD,
	[XVL_BLK_WRITE_ZEROES] = XVL_BLK_T_WRITE_ZEROES,
	[XVL_BLK_GET_ID] = XVL_BLK_T_GET_ID,
};

/* Write the device-readable header (and range) of slot s from private state. */
static void fill_slot(struct blk_queue *bq, uint16_t s)
{
	const struct blk_slot *sl = &bq->slot[s];
	uint8_t *p = bq->slots + (uint64_t)s * SLOT_BYTES;
	struct xvl_blk_outhdr h = {.type = xvl_le32(blk_type[sl->op]),
				   .sector = xvl_le64(sl->offset / XVL_BLK_SECTOR_SIZE)};
	memcpy(p + SLOT_HDR, &h, sizeof(h));
	if (sl->op == XVL_BLK_DISCARD || sl->op == XVL_BLK_WRITE_ZEROES) {
		struct xvl_blk_dwz d = {.sector = xvl_le64(sl->offset / XVL_BLK_SECTOR_SIZE),
					.num_sectors = xvl_le32(sl->len / XVL_BLK_SECTOR_SIZE)};
		memcpy(p + SLOT_DWZ, &d, sizeof(d));
	}
	p[SLOT_STATUS] = STATUS_UNSET;
}

/* Window offset of the request's data: the caller's buffer or a bounce block. */
static int place_data(struct xvl_blk *b, struct blk_slot *sl, const struct xvl_blk_req *r)
{
	int64_t o = xvl_mem_off(&b->c->win.mem, r->buf, r->len);
	if (o > 0) {
		sl->data = (uint64_t)o;
		return 0;
	}
	sl->bounce = xvl_client_heap_alloc(b->c, r->len);
	if (!sl->bounce)
		return -EAGAIN;
	sl->app_buf = r->buf;
	if (r->op == XVL_BLK_WRITE)
		memcpy(b->c->win.mem.base + sl->bounce, r->buf, r->len);
	sl->data = sl->bounce;
	return 0;
}

/* Split [off, off+len) into segments of at most size_max bytes. */
static unsigned add_data_segs(const struct xvl_blk *b, struct xvl_sg *sg, uint64_t off, uint32_t len)
{
	uint32_t step = b->info.size_max >= 4096 ? (b->info.size_max & ~4095u) : len;
	unsigned n = 0;
	while (len) {
		uint32_t l = len < step ? len : step;
		sg[n++] = (struct xvl_sg){.off = off, .len = l};
		off += l;
		len -= l;
	}
	return n;
}

static void build_chain(const struct xvl_blk *b, const struct blk_queue *bq, uint16_t s,
			struct xvl_sg *sg, unsigned *n_out, unsigned *n_in)
{
	const struct blk_slot *sl = &bq->slot[s];
	uint64_t slot = bq->slots_off + (uint64_t)s * SLOT_BYTES;
	unsigned n = 0;

	sg[n++] = (struct xvl_sg){.off = slot + SLOT_HDR, .len = sizeof(struct xvl_blk_outhdr)};
	*n_out = 1;
	switch (sl->op) {
	case XVL_BLK_READ:
	case XVL_BLK_WRITE: {
		unsigned d = add_data_segs(b, sg + n, sl->data, sl->len);
		*n_out = sl->op == XVL_BLK_WRITE ? 1 + d : 1;
		n += d;
		break;
	}
	case XVL_BLK_DISCARD:
	case XVL_BLK_WRITE_ZEROES:
		sg[n++] = (struct xvl_sg){.off = slot + SLOT_DWZ, .len = sizeof(struct xvl_blk_dwz)};
		*n_out = 2;
		break;
	case XVL_BLK_GET_ID:
		sg[n++] = (struct xvl_sg){.off = slot + SLOT_ID, .len = XVL_BLK_ID_BYTES};
		break;
	default:
		break;
	}
	sg[n++] = (struct xvl_sg){.off = slot + SLOT_STATUS, .len = 1};
	*n_in = n - *n_out;
}

/* Expose slot s to the device. */
static int expose_slot(struct xvl_blk *b, struct blk_queue *bq, uint16_t s)
{
	struct xvl_sg sg[IND_MAX];
	unsigned n_out, n_in;

	fill_slot(bq, s);
	build_chain(b, bq, s, sg, &n_out, &n_in);
	return xvl_vq_drv_add(&bq->vq, sg, n_out, n_in, s);
}

static void release_slot(struct xvl_blk *b, struct blk_queue *bq, uint16_t s)
{
	xvl_client_heap_free(b->c, bq->slot[s].bounce);
	memset(&bq->slot[s], 0, sizeof(bq->slot[s]));
	bq->free_slot[bq->n_free++] = s;
}

int xvl_blk_submit(struct xvl_blk *b, uint16_t q, const struct xvl_blk_req *r)
{
	if (q >= b->nq)
		return -EINVAL;
	if (b->broken)
		return -ENODEV;
	int rc = check_request(b, r);
	if (rc < 0)
		return rc;
	struct blk_queue *bq = &b->q[q];
	if (!bq->n_free)
		return -EAGAIN;
	uint16_t s = bq->free_slot[--bq->n_free];
	struct blk_slot *sl = &bq->slot[s];
	*sl = (struct blk_slot){.user = r->user, .offset = r->offset, .len = r->len, .op = r->op,
				.app_buf = r->op == XVL_BLK_GET_ID ? r->buf : NULL};
	if (r->op == XVL_BLK_READ || r->op == XVL_BLK_WRITE)
		rc = place_data(b, sl, r);
	if (rc == 0)
		rc = expose_slot(b, bq, s);
	if (rc < 0) {
		release_slot(b, bq, s);
		return rc == -ENOSPC ? -EAGAIN : rc == -EIO ? -ENODEV : rc;
	}
	return 0;
}

int xvl_blk_kick(struct xvl_blk *b, uint16_t q)
{
	if (q >= b->nq)
		return -EINVAL;
	struct blk_queue *bq = &b->q[q];
	if (bq->kick_fd < 0 || !xvl_vq_drv_kick_prepare(&bq->vq))
		return 0;
	return xvl_os_eventfd_signal(bq->kick_fd);
}

/* ------------------------------------------------------------ completion */

static int status_result(uint8_t status)
{
	switch (status) {
	case XVL_BLK_S_OK:
		return 0;
	case XVL_BLK_S_UNSUPP:
		return -EOPNOTSUPP;
	default:
		return -EIO; /* IOERR, or a device that never wrote the status byte */
	}
}

static void finish(struct xvl_blk *b, struct blk_queue *bq, uint16_t s, int result,
		   struct xvl_blk_cpl *cpl)
{
	struct blk_slot *sl = &bq->slot[s];
	uint8_t *p = bq->slots + (uint64_t)s * SLOT_BYTES;

	if (result == 0 && sl->op == XVL_BLK_READ && sl->bounce)
		memcpy(sl->app_buf, b->c->win.mem.base + sl->bounce, sl->len);
	if (result == 0 && sl->op == XVL_BLK_GET_ID)
		memcpy(sl->app_buf, p + SLOT_ID, XVL_BLK_ID_BYTES);
	cpl->user = sl->user;
	cpl->result = result;
	release_slot(b, bq, s);
}

/* After the device broke: every outstanding request completes with -ENODEV. */
static int complete_broken(struct xvl_blk *b, struct blk_queue *bq, struct xvl_blk_cpl *cpl,
			   unsigned max)
{
	unsigned n = 0;
	uint64_t token;
	while (n < max && xvl_vq_drv_detach(&bq->vq, &token) == 1)
		finish(b, bq, (uint16_t)token, -ENODEV, &cpl[n++]);
	return (int)n;
}

static int reap(struct xvl_blk *b, struct blk_queue *bq, struct xvl_blk_cpl *cpl, unsigned max)
{
	unsigned n = 0;
	while (n < max) {
		uint64_t token;
		uint32_t len;
		int rc = xvl_vq_drv_get_used(&bq->vq, &token, &len);
		if (rc == 0)
			break;
		if (rc < 0) {
			xvl_blk_mark_broken(b, -EPROTO, "device broke the virtqueue rules");
			return (int)n + complete_broken(b, bq, cpl + n, max - n);
		}
		uint8_t st = xvl_load_relaxed(bq->slots + token * SLOT_BYTES + SLOT_STATUS);
		finish(b, bq, (uint16_t)token, status_result(st), &cpl[n++]);
	}
	return (int)n;
}

/* ------------------------------------------------------------ restart */

void xvl_blk_request_restart(struct xvl_blk *b)
{
	b->restart = true;
}

/*
 * Keep what the device completed (held for the caller), take back what it
 * did not (to submit again).  Returns how many are to be submitted again.
 */
static void salvage(struct xvl_blk *b, struct blk_queue *bq)
{
	uint64_t token;
	uint32_t len;

	while (xvl_vq_drv_get_used(&bq->vq, &token, &len) == 1) {
		uint8_t st = xvl_load_relaxed(bq->slots + token * SLOT_BYTES + SLOT_STATUS);
		finish(b, bq, (uint16_t)token, status_result(st), &bq->held[bq->n_held++]);
	}
	while (xvl_vq_drv_detach(&bq->vq, &token) == 1)
		bq->resubmit[bq->n_resubmit++] = (uint16_t)token;
}

/* Fresh rings holding the taken-back requests; then the list is theirs no more. */
static int requeue(struct xvl_blk *b, uint16_t qi)
{
	struct blk_queue *bq = &b->q[qi];
	int rc = queue_rings_init(b, bq);
	for (unsigned i = 0; rc == 0 && i < bq->n_resubmit; i++)
		rc = expose_slot(b, bq, bq->resubmit[i]);
	if (rc < 0)
		return rc;
	bq->n_resubmit = 0;
	return queue_announce(b, qi);
}

/*
 * The device lost its state (its backend or the whole server restarted):
 * set it up again on fresh rings and submit again every request that had
 * not completed.  Completions found on the old rings are returned first.
 */
int xvl_blk_restart(struct xvl_blk *b, bool attach)
{
	int rc = 0;

	b->restart = false;
	b->c->n_restarts++;
	for (uint16_t i = 0; i < b->nq; i++)
		salvage(b, &b->q[i]);
	if (attach)
		rc = xvl_dev_attach(b->c, b->dev);
	if (rc == 0)
		rc = negotiate(b, &b->opts, b->offered);
	for (uint16_t i = 0; rc == 0 && i < b->nq; i++)
		rc = requeue(b, i);
	if (rc == 0)
		rc = xvl_dev_set_status(b->c, b->dev,
					XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER |
						XVL_STATUS_FEATURES_OK | XVL_STATUS_DRIVER_OK);
	if (rc < 0 && b->c->link_dead && b->c->reconnect_ms)
		return rc; /* the server went away again: recovery starts over, nothing is lost */
	if (rc < 0) {
		xvl_blk_mark_broken(b, rc, "could not set the device up again after a restart");
		return rc;
	}
	for (uint16_t i = 0; i < b->nq; i++)
		if (b->q[i].kick_fd >= 0)
			xvl_os_eventfd_signal(b->q[i].kick_fd);
	return 0;
}

/* Restart and reconnection work that a waiting or completing caller does. */
static int recover(struct xvl_blk *b)
{
	int rc = xvl_client_recover(b->c);
	if (rc == 0 && b->restart && !b->broken)
		rc = xvl_blk_restart(b, false);
	return rc;
}

int xvl_blk_complete(struct xvl_blk *b, uint16_t q, struct xvl_blk_cpl *cpl, unsigned max)
{
	if (q >= b->nq)
		return -EINVAL;
	struct blk_queue *bq = &b->q[q];
	unsigned held = 0;
	while (held < max && bq->n_held)
		cpl[held++] = bq->held[--bq->n_held];
	if (held)
		return (int)held;
	if (b->restart || b->c->link_dead)
		recover(b);
	if (b->broken)
		return complete_broken(b, bq, cpl, max);
	if (bq->fd_exported)
		xvl_os_eventfd_drain(bq->call_fd);
	int n = reap(b, bq, cpl, max);
	/*
	 * get_used keeps used_event moving and xvl_blk_wait arms before it sleeps;
	 * only a caller sleeping on the fd itself needs the re-arm and re-check here
	 * (a store and a full fence per call, which a spinning caller would pay).
	 */
	if (n >= 0 && (unsigned)n < max && bq->fd_exported && !b->broken &&
	    xvl_vq_drv_enable_cb(&bq->vq))
		n += reap(b, bq, cpl + n, max - (unsigned)n);
	return n;
}

static int wait_spinning(struct xvl_blk *b, struct blk_queue *bq, int timeout_ms)
{
	uint64_t start = xvl_os_now_ns();
	for (;;) {
		if (xvl_vq_drv_has_used(&bq->vq) || b->broken || bq->n_held || b->restart || b->c->link_dead)
			return 1;
		uint64_t now = xvl_os_now_ns();
		if (now - bq->last_link_check > LINK_CHECK_NS) {
			bq->last_link_check = now;
			xvl_client_poll_link(b->c);
		}
		if (timeout_ms >= 0 && now - start >= (uint64_t)timeout_ms * 1000000ull)
			return 0;
		xvl_cpu_relax();
	}
}

/* Busy-wait up to spin_us for a completion; true when one (or news) came. */
static bool spin_briefly(struct xvl_blk *b, struct blk_queue *bq)
{
	uint64_t end = xvl_os_now_ns() + (uint64_t)b->opts.spin_us * 1000u;
	do {
		if (xvl_vq_drv_has_used(&bq->vq) || b->broken || b->restart || b->c->link_dead)
			return true;
		xvl_cpu_relax();
	} while (xvl_os_now_ns() < end);
	return false;
}

static int wait_sleeping(struct xvl_blk *b, struct blk_queue *bq, int timeout_ms)
{
	if (b->opts.spin_us && spin_briefly(b, bq))
		return 1;
	struct pollfd p[2] = {{.fd = bq->call_fd, .events = POLLIN},
			      {.fd = b->c->mode == XVL_MODE_LINK ? b->c->sock : -1, .events = POLLIN}};
	for (;;) {
		if (b->broken || bq->n_held || b->restart || b->c->link_dead)
			return 1;
		if (xvl_vq_drv_enable_cb(&bq->vq))
			return 1;
		int pr = poll(p, 2, timeout_ms);
		if (pr == 0)
			return 0;
		if (pr < 0 && errno != EINTR)
			return -errno;
		if (p[1].revents)
			xvl_client_poll_link(b->c);
		if (p[0].revents) {
			xvl_os_eventfd_drain(bq->call_fd);
			return 1;
		}
	}
}

int xvl_blk_wait(struct xvl_blk *b, uint16_t q, int timeout_ms)
{
	if (q >= b->nq)
		return -EINVAL;
	struct blk_queue *bq = &b->q[q];
	if (b->restart || b->c->link_dead)
		recover(b);
	if (bq->n_held)
		return 1;
	if (b->broken)
		return xvl_vq_drv_inflight(&bq->vq) ? 1 : -ENODEV;
	if (b->poll || bq->call_fd < 0)
		return wait_spinning(b, bq, timeout_ms);
	return wait_sleeping(b, bq, timeout_ms);
}

int xvl_blk_queue_fd(struct xvl_blk *b, uint16_t q)
{
	if (q >= b->nq || b->poll)
		return -1;
	b->q[q].fd_exported = true;
	return b->q[q].call_fd;
}

unsigned xvl_blk_inflight(const struct xvl_blk *b, uint16_t q)
{
	return q < b->nq ? xvl_vq_drv_inflight(&b->q[q].vq) : 0;
}

/* ------------------------------------------------------------ blocking helpers */

static int run_one(struct xvl_blk *b, struct xvl_blk_req *r)
{
	int rc = xvl_blk_submit(b, 0, r);
	if (rc == -EAGAIN && !xvl_blk_inflight(b, 0))
		return xvl_err(&b->c->eb, -ENOMEM, "no room in the window for a %u-byte copy", r->len);
	if (rc == -EAGAIN)
		return xvl_err(&b->c->eb, -EBUSY, "queue 0 is busy; blocking helpers need it idle");
	if (rc < 0)
		return rc;
	xvl_blk_kick(b, 0);
	for (;;) {
		struct xvl_blk_cpl cpl;
		int n = xvl_blk_complete(b, 0, &cpl, 1);
		if (n == 1)
			return cpl.result;
		if (n < 0)
			return n;
		int w = xvl_blk_wait(b, 0, (int)b->c->timeout_ms);
		if (w == 0)
			return xvl_err(&b->c->eb, -ETIMEDOUT, "no completion within %u ms",
				       b->c->timeout_ms);
		if (w < 0)
			return w;
	}
}

int xvl_blk_read(struct xvl_blk *b, uint64_t offset, void *buf, uint32_t len)
{
	struct xvl_blk_req r = {.op = XVL_BLK_READ, .offset = offset, .buf = buf, .len = len};
	return run_one(b, &r);
}

int xvl_blk_write(struct xvl_blk *b, uint64_t offset, const void *buf, uint32_t len)
{
	struct xvl_blk_req r = {.op = XVL_BLK_WRITE, .offset = offset, .buf = (void *)buf, .len = len};
	return run_one(b, &r);
}

int xvl_blk_flush(struct xvl_blk *b)
{
	struct xvl_blk_req r = {.op = XVL_BLK_FLUSH};
	return run_one(b, &r);
}

int xvl_blk_discard(struct xvl_blk *b, uint64_t offset, uint32_t len)
{
	struct xvl_blk_req r = {.op = XVL_BLK_DISCARD, .offset = offset, .len = len};
	return run_one(b, &r);
}

int xvl_blk_write_zeroes(struct xvl_blk *b, uint64_t offset, uint32_t len)
{
	struct xvl_blk_req r = {.op = XVL_BLK_WRITE_ZEROES, .offset = offset, .len = len};
	return run_one(b, &r);
}

int xvl_blk_get_id(struct xvl_blk *b, char id[21])
{
	char raw[XVL_BLK_ID_BYTES];
	struct xvl_blk_req r = {.op = XVL_BLK_GET_ID, .buf = raw};
	int rc = run_one(b, &r);
	if (rc == 0) {
		memcpy(id, raw, XVL_BLK_ID_BYTES);
		id[XVL_BLK_ID_BYTES] = '\0';
	}
	return rc;
}
