/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk driver, the I/O path: building and exposing request chains,
 * reaping completions, waiting.  Data goes zero-copy when the caller's
 * buffer is in the window and through a bounce block of the window heap
 * otherwise.  Anything that is not normal operation (a restart, a lost
 * link, a broken device) is handed to blk_recover.c.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blk_int.h"

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

/*
 * Segment size: size_max rounded down to a page (to a sector when it is
 * smaller than a page; read_config refuses less than a sector).
 * max_transfer (blk_setup.c) is derived from this same step.
 */
uint32_t blk_seg_step(const struct xvl_blk_info *in)
{
	if (!in->size_max)
		return 0;
	if (in->size_max >= 4096)
		return in->size_max & ~4095u;
	return in->size_max & ~(XVL_BLK_SECTOR_SIZE - 1);
}

/* Split [off, off+len) into at most max segments; -EINVAL if it needs more. */
static int add_data_segs(const struct xvl_blk *b, struct xvl_sg *sg, unsigned max, uint64_t off,
			 uint32_t len)
{
	uint32_t step = blk_seg_step(&b->info);
	if (!step)
		step = len;
	unsigned n = 0;
	while (len) {
		if (n == max)
			return -EINVAL;
		uint32_t l = len < step ? len : step;
		sg[n++] = (struct xvl_sg){.off = off, .len = l};
		off += l;
		len -= l;
	}
	return (int)n;
}

/* Fill sg (IND_MAX entries) with slot s's chain. */
static int build_chain(const struct xvl_blk *b, const struct blk_queue *bq, uint16_t s,
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
		unsigned segs = DATA_SEGS_MAX;
		if (b->info.seg_max && b->info.seg_max < segs)
			segs = b->info.seg_max;
		int d = add_data_segs(b, sg + n, segs, sl->data, sl->len);
		if (d < 0)
			return d;
		*n_out = sl->op == XVL_BLK_WRITE ? 1 + (unsigned)d : 1;
		n += (unsigned)d;
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
	return 0;
}

/* Expose slot s to the device. */
int blk_expose_slot(struct xvl_blk *b, struct blk_queue *bq, uint16_t s)
{
	struct xvl_sg sg[IND_MAX];
	unsigned n_out, n_in;

	fill_slot(bq, s);
	int rc = build_chain(b, bq, s, sg, &n_out, &n_in);
	if (rc == 0)
		rc = xvl_vq_drv_add(&bq->vq, sg, n_out, n_in, s);
	if (rc == 0)
		bq->slot[s].state = SLOT_RING;
	return rc;
}

static void release_slot(struct xvl_blk *b, struct blk_queue *bq, uint16_t s)
{
	xvl_client_heap_free(b->c, bq->slot[s].bounce);
	memset(&bq->slot[s], 0, sizeof(bq->slot[s]));
	bq->free_slot[bq->n_free++] = s;
}

static int submit_locked(struct xvl_blk *b, struct blk_queue *bq, const struct xvl_blk_req *r)
{
	if (blk_broken(b))
		return -ENODEV;
	int rc = check_request(b, r);
	if (rc < 0)
		return rc;
	if (!bq->n_free)
		return -EAGAIN;
	uint16_t s = bq->free_slot[--bq->n_free];
	struct blk_slot *sl = &bq->slot[s];
	*sl = (struct blk_slot){.user = r->user, .offset = r->offset, .len = r->len, .op = r->op,
				.app_buf = r->op == XVL_BLK_GET_ID ? r->buf : NULL};
	if (r->op == XVL_BLK_READ || r->op == XVL_BLK_WRITE)
		rc = place_data(b, sl, r);
	if (rc == 0)
		rc = blk_expose_slot(b, bq, s);
	if (rc < 0) {
		release_slot(b, bq, s);
		return rc == -ENOSPC ? -EAGAIN : rc == -EIO ? -ENODEV : rc;
	}
	return 0;
}

int xvl_blk_submit(struct xvl_blk *b, uint16_t q, const struct xvl_blk_req *r)
{
	if (q >= b->nq)
		return -EINVAL;
	struct blk_queue *bq = &b->q[q];
	pthread_mutex_lock(&bq->lock);
	int rc = submit_locked(b, bq, r);
	pthread_mutex_unlock(&bq->lock);
	return rc;
}

int xvl_blk_kick(struct xvl_blk *b, uint16_t q)
{
	if (q >= b->nq)
		return -EINVAL;
	struct blk_queue *bq = &b->q[q];
	int rc = 0;
	pthread_mutex_lock(&bq->lock);
	if (bq->kick_fd >= 0 && xvl_vq_drv_kick_prepare(&bq->vq))
		rc = xvl_os_eventfd_signal(bq->kick_fd);
	pthread_mutex_unlock(&bq->lock);
	return rc;
}

/* ------------------------------------------------------------ completion */

int blk_status_result(const struct blk_queue *bq, uint16_t s)
{
	switch (xvl_load_relaxed(bq->slots + (uint64_t)s * SLOT_BYTES + SLOT_STATUS)) {
	case XVL_BLK_S_OK:
		return 0;
	case XVL_BLK_S_UNSUPP:
		return -EOPNOTSUPP;
	default:
		return -EIO; /* IOERR, or a device that never wrote the status byte */
	}
}

void blk_deliver(struct xvl_blk *b, struct blk_queue *bq, uint16_t s, int result,
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
	if (b->state == BLK_SETTLED_QUARANTINE) {
		/* The device may still write into the bounce block: it stays allocated, the
		 * slot stays out of the free list (a broken device takes no new requests). */
		sl->state = SLOT_QUARANTINED;
		bq->n_quarantined++;
		return;
	}
	release_slot(b, bq, s);
}

/* Completions whose outcome is already known (found during a restart, or failed). */
static unsigned deliver_held(struct xvl_blk *b, struct blk_queue *bq, struct xvl_blk_cpl *cpl,
			     unsigned max)
{
	unsigned n = 0;
	while (n < max && bq->n_held) {
		uint16_t s = bq->held[--bq->n_held];
		blk_deliver(b, bq, s, bq->slot[s].result, &cpl[n++]);
	}
	return n;
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
			break;
		}
		blk_deliver(b, bq, (uint16_t)token, blk_status_result(bq, (uint16_t)token), &cpl[n++]);
	}
	return (int)n;
}

static int complete_locked(struct xvl_blk *b, uint16_t q, struct xvl_blk_cpl *cpl, unsigned max)
{
	struct blk_queue *bq = &b->q[q];
	unsigned held = deliver_held(b, bq, cpl, max);
	if (held)
		return (int)held;
	if (blk_needs_recovery(b))
		blk_recover_from_queue(b, q);
	if (blk_broken(b))
		return (int)deliver_held(b, bq, cpl, max);
	if (bq->fd_exported)
		xvl_os_eventfd_drain(bq->call_fd);
	int n = reap(b, bq, cpl, max);
	/*
	 * get_used keeps used_event moving and xvl_blk_wait arms before it sleeps;
	 * only a caller sleeping on the fd itself needs the re-arm and re-check here
	 * (a store and a full fence per call, which a spinning caller would pay).
	 */
	if ((unsigned)n < max && bq->fd_exported && !blk_broken(b) && xvl_vq_drv_enable_cb(&bq->vq))
		n += reap(b, bq, cpl + n, max - (unsigned)n);
	if (blk_broken(b) && (unsigned)n < max) { /* a ring violation: fail the rest now */
		blk_recover_from_queue(b, q);
		n += (int)deliver_held(b, bq, cpl + n, max - (unsigned)n);
	}
	return n;
}

int xvl_blk_complete(struct xvl_blk *b, uint16_t q, struct xvl_blk_cpl *cpl, unsigned max)
{
	if (q >= b->nq)
		return -EINVAL;
	pthread_mutex_lock(&b->q[q].lock);
	int n = complete_locked(b, q, cpl, max);
	pthread_mutex_unlock(&b->q[q].lock);
	return n;
}

/* News that the caller must come back to complete() for. */
static bool has_news(const struct xvl_blk *b, const struct blk_queue *bq)
{
	return bq->n_held || blk_broken(b) || blk_restart_wanted(b) || xvl_client_link_dead(b->c);
}

static int wait_spinning(struct xvl_blk *b, struct blk_queue *bq, int timeout_ms)
{
	uint64_t start = xvl_os_now_ns();
	for (;;) {
		if (xvl_vq_drv_has_used(&bq->vq) || has_news(b, bq))
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

/*
 * How long to spin before sleeping.  spin_us set: that, fixed.  Otherwise
 * adaptive (the idea of Linux's hybrid polling): spin for twice what recent
 * waits took (an average over about 8), at most spin_adapt_us; when waits
 * take longer than that bound the device is slow and a wake-up is cheap next
 * to it: sleep at once.  With nothing measured yet, spin up to the bound.
 */
static uint64_t spin_window_ns(const struct xvl_blk *b, const struct blk_queue *bq)
{
	if (b->opts.spin_us)
		return (uint64_t)b->opts.spin_us * 1000u;
	if (b->opts.spin_adapt_us < 0)
		return 0;
	uint64_t max = (uint64_t)(b->opts.spin_adapt_us ? (unsigned)b->opts.spin_adapt_us
							: XVL_BLK_SPIN_ADAPT_US) * 1000u;
	if (!bq->wait_avg_ns)
		return max;
	if (bq->wait_avg_ns > max)
		return 0;
	return 2 * bq->wait_avg_ns < max ? 2 * bq->wait_avg_ns : max;
}

static void wait_took(struct blk_queue *bq, uint64_t ns)
{
	bq->wait_avg_ns = bq->wait_avg_ns ? bq->wait_avg_ns - bq->wait_avg_ns / 8 + ns / 8 : ns;
}

/* Busy-wait up to window ns for a completion; true when one (or news) came. */
static bool spin_briefly(struct xvl_blk *b, struct blk_queue *bq, uint64_t window)
{
	uint64_t end = xvl_os_now_ns() + window;
	do {
		if (xvl_vq_drv_has_used(&bq->vq) || has_news(b, bq))
			return true;
		xvl_cpu_relax();
	} while (xvl_os_now_ns() < end);
	return false;
}

/* Sleeps in poll() without the queue lock, so that recovery can run meanwhile. */
static int sleep_for_news(struct xvl_blk *b, struct blk_queue *bq, int timeout_ms)
{
	for (;;) {
		if (has_news(b, bq) || xvl_vq_drv_enable_cb(&bq->vq))
			return 1;
		struct pollfd p[2] = {{.fd = bq->call_fd, .events = POLLIN},
				      {.fd = xvl_client_link_fd(b->c), .events = POLLIN}};
		pthread_mutex_unlock(&bq->lock);
		int pr = poll(p, 2, timeout_ms);
		int e = errno;
		pthread_mutex_lock(&bq->lock);
		if (pr == 0)
			return 0;
		if (pr < 0 && e != EINTR)
			return -e;
		if (p[1].revents)
			xvl_client_poll_link(b->c);
		if (p[0].revents) {
			xvl_os_eventfd_drain(bq->call_fd);
			return 1;
		}
	}
}

static int wait_sleeping(struct xvl_blk *b, struct blk_queue *bq, int timeout_ms)
{
	uint64_t t0 = xvl_os_now_ns();
	uint64_t window = timeout_ms || b->opts.spin_us ? spin_window_ns(b, bq) : 0;
	if (window && spin_briefly(b, bq, window)) {
		wait_took(bq, xvl_os_now_ns() - t0);
		return 1;
	}
	int rc = sleep_for_news(b, bq, timeout_ms);
	if (rc == 1 && timeout_ms)
		wait_took(bq, xvl_os_now_ns() - t0);
	return rc;
}

static int wait_locked(struct xvl_blk *b, uint16_t q, int timeout_ms)
{
	struct blk_queue *bq = &b->q[q];
	if (blk_needs_recovery(b))
		blk_recover_from_queue(b, q);
	if (bq->n_held)
		return 1;
	if (blk_broken(b))
		return -ENODEV;
	if (b->poll || bq->call_fd < 0)
		return wait_spinning(b, bq, timeout_ms);
	return wait_sleeping(b, bq, timeout_ms);
}

int xvl_blk_wait(struct xvl_blk *b, uint16_t q, int timeout_ms)
{
	if (q >= b->nq)
		return -EINVAL;
	pthread_mutex_lock(&b->q[q].lock);
	int rc = wait_locked(b, q, timeout_ms);
	pthread_mutex_unlock(&b->q[q].lock);
	return rc;
}

int xvl_blk_queue_fd(struct xvl_blk *b, uint16_t q)
{
	if (q >= b->nq || b->poll)
		return -1;
	pthread_mutex_lock(&b->q[q].lock);
	b->q[q].fd_exported = true;
	pthread_mutex_unlock(&b->q[q].lock);
	return b->q[q].call_fd;
}

unsigned xvl_blk_inflight(const struct xvl_blk *b, uint16_t q)
{
	if (q >= b->nq)
		return 0;
	struct blk_queue *bq = (struct blk_queue *)&b->q[q];
	pthread_mutex_lock(&bq->lock);
	unsigned n = blk_outstanding(bq);
	pthread_mutex_unlock(&bq->lock);
	return n;
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
