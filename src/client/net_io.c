/* SPDX-License-Identifier: MIT */
/*
 * virtio-net driver, the data path: transmit (zero copy for frames in the
 * window longer than NET_TX_INLINE, a copy otherwise), receive (frames lent in place, joined when the
 * device spread one over several buffers, or copied out), waiting.
 *
 * Everything the device returns is checked before use: the used id and
 * length (the core's virtqueue driver side), the 12-byte header (copied out
 * of the window first, then xvl_net_frame_check against what was
 * negotiated), num_buffers against the ring and against the buffers the
 * device really returned, and the joined length.  A frame that fails is
 * dropped, counted, and its buffers go back to the ring; a ring violation
 * breaks the device.  A burst takes at most `max` used entries plus the
 * buffers of one frame, so a device flooding the ring cannot keep a caller
 * in here.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "net_int.h"

#define NET_TX_INLINE 256u /* window frames up to this long are copied into the tx slot */

/* Publish the chains staged since the last call (one avail idx store a burst), then kick. */
void net_queue_kick(struct net_queue *q)
{
	xvl_vq_drv_publish(&q->vq);
	if (q->kick_fd >= 0 && xvl_vq_drv_kick_prepare(&q->vq))
		xvl_os_eventfd_signal(q->kick_fd);
}

static void *win_ptr(const struct xvl_net *n, uint64_t off) { return n->c->win.mem.base + off; }

/* -ENODEV, with why in the client's message. */
static int net_gone(struct xvl_net *n)
{
	return xvl_err(&n->c->eb, -ENODEV, "net device %s is broken: %s", n->info.name,
		       n->broken_msg);
}

static int pair_ok(struct xvl_net *n, uint16_t pair)
{
	if (pair >= n->info.pairs)
		return -EINVAL;
	if (net_needs_recovery(n))
		net_recover(n);
	return net_broken(n) ? net_gone(n) : 0;
}

/* ------------------------------------------------------------ transmit */

/* Take back what the device finished; copied frames free their slot at once. */
static void tx_reap(struct xvl_net *n, struct net_queue *q)
{
	uint64_t token;
	uint32_t len;
	int rc;
	while ((rc = xvl_vq_drv_get_used(&q->vq, &token, &len)) == 1) {
		uint16_t s = (uint16_t)token;
		struct net_txslot *ts = &q->ts[s];
		ts->busy = false;
		if (ts->bounce) {
			xvl_client_heap_free(n->c, ts->bounce);
			ts->bounce = 0;
		}
		if (ts->zero_copy) /* zero copy: kept until xvl_net_tx_reclaim hands back user */
			q->done[(uint16_t)(q->done_head + q->n_done++) % q->num] = s;
		else
			q->free_slot[q->n_free++] = s;
	}
	if (rc < 0)
		xvl_net_mark_broken(n, -EPROTO, "device broke a transmit ring");
}

/* The header for frame f, checked against what the device accepts. */
static int tx_header(const struct xvl_net *n, const struct xvl_net_frame *f, uint8_t *raw)
{
	struct xvl_net_hdr h = {.gso_type = f->gso_type, .gso_size = f->gso_size,
				.hdr_len = f->hdr_len};
	if (f->flags & XVL_NET_TX_CSUM) {
		h.flags = XVL_NET_HDR_F_NEEDS_CSUM;
		h.csum_start = f->csum_start;
		h.csum_offset = f->csum_offset;
	}
	uint64_t feat = n->info.features;
	struct xvl_net_accept a = {
		.max_frame = n->accept.max_frame,
		.max_gso_frame = NET_MAX_GSO_FRAME,
		.csum = net_has(feat, XVL_NET_F_CSUM),
		.tso4 = net_has(feat, XVL_NET_F_HOST_TSO4),
		.tso6 = net_has(feat, XVL_NET_F_HOST_TSO6),
	};
	if (!f->data || xvl_net_frame_check(&h, f->len, &a) != XVL_NET_FRAME_OK)
		return -EINVAL;
	xvl_net_hdr_encode(&h, raw);
	return 0;
}

static int tx_one(struct xvl_net *n, struct net_queue *q, const struct xvl_net_frame *f)
{
	uint8_t raw[XVL_NET_HDR_SIZE];
	if (tx_header(n, f, raw) < 0) {
		q->st.tx_dropped++;
		return -EINVAL;
	}
	if (!q->n_free)
		return -ENOSPC;
	uint16_t s = q->free_slot[q->n_free - 1];
	struct net_txslot *ts = &q->ts[s];
	uint64_t slot = q->bufs_off + (uint64_t)s * q->buf_size;
	struct xvl_sg sg[2];
	unsigned nsg = 1;
	int64_t zc = xvl_mem_off(&n->c->win.mem, f->data, f->len);
	/* A short frame is copied into the slot beside its header even when it is in the
	 * window: one descriptor and one buffer for the device to read instead of an indirect
	 * table and two buffers (it still comes back through xvl_net_tx_reclaim). */
	bool inline_copy = zc > 0 && f->len <= NET_TX_INLINE &&
			   XVL_NET_HDR_SIZE + f->len <= q->buf_size;

	*ts = (struct net_txslot){.user = f->user, .zero_copy = zc > 0};
	if (zc > 0 && !inline_copy) {
		memcpy(win_ptr(n, slot), raw, sizeof(raw));
		sg[0] = (struct xvl_sg){.off = slot, .len = XVL_NET_HDR_SIZE};
		sg[1] = (struct xvl_sg){.off = (uint64_t)zc, .len = f->len};
		nsg = 2;
	} else {
		uint64_t at = slot;
		if (XVL_NET_HDR_SIZE + f->len > q->buf_size) {
			ts->bounce = xvl_client_heap_alloc(n->c, XVL_NET_HDR_SIZE + f->len);
			if (!ts->bounce)
				return -ENOSPC;
			at = ts->bounce;
		}
		uint8_t *p = win_ptr(n, at);
		memcpy(p, raw, sizeof(raw));
		memcpy(p + XVL_NET_HDR_SIZE, f->data, f->len);
		sg[0] = (struct xvl_sg){.off = at, .len = XVL_NET_HDR_SIZE + f->len};
	}
	int rc = xvl_vq_drv_stage(&q->vq, sg, nsg, 0, s); /* published by net_queue_kick */
	if (rc < 0) {
		xvl_client_heap_free(n->c, ts->bounce);
		*ts = (struct net_txslot){0};
		if (rc == -EIO)
			xvl_net_mark_broken(n, -EPROTO, "transmit ring broken");
		return rc == -EIO ? -ENODEV : -ENOSPC;
	}
	ts->busy = true;
	q->n_free--;
	q->st.tx_frames++;
	q->st.tx_bytes += f->len;
	return 0;
}

int xvl_net_tx_burst(struct xvl_net *n, uint16_t pair, const struct xvl_net_frame *frames,
		     unsigned count)
{
	int rc = pair_ok(n, pair);
	if (rc < 0)
		return rc;
	struct net_queue *q = &n->tx[pair];
	unsigned i = 0;
	pthread_mutex_lock(&q->lock);
	tx_reap(n, q);
	for (; i < count; i++) {
		rc = tx_one(n, q, &frames[i]);
		if (rc < 0)
			break;
	}
	if (i)
		net_queue_kick(q);
	pthread_mutex_unlock(&q->lock);
	if (i == 0 && rc < 0 && rc != -ENOSPC)
		return rc;
	return net_broken(n) && i == 0 ? net_gone(n) : (int)i;
}

int xvl_net_tx_reclaim(struct xvl_net *n, uint16_t pair, void **users, unsigned max)
{
	if (pair >= n->info.pairs)
		return -EINVAL;
	struct net_queue *q = &n->tx[pair];
	unsigned k = 0;
	pthread_mutex_lock(&q->lock);
	if (!net_broken(n))
		tx_reap(n, q);
	while (k < max && q->n_done) {
		uint16_t s = q->done[q->done_head];
		q->done_head = (uint16_t)((q->done_head + 1) % q->num);
		q->n_done--;
		if (users)
			users[k] = q->ts[s].user;
		k++;
		q->ts[s] = (struct net_txslot){0};
		q->free_slot[q->n_free++] = s;
	}
	pthread_mutex_unlock(&q->lock);
	return (int)k;
}

/* ------------------------------------------------------------ receive */

static void rx_drop(struct net_queue *q, uint16_t b, uint64_t *counter)
{
	q->unposted[q->n_unposted++] = b;
	q->st.rx_dropped++;
	(*counter)++;
}

/* Did the core clamp the length of the entry just taken (the device claimed more)? */
static bool rx_len_clamped(struct net_queue *q)
{
	if (q->vq.len_clamped == q->len_clamped_seen)
		return false;
	q->len_clamped_seen = q->vq.len_clamped;
	return true;
}

static void fill_meta(struct xvl_net_frame *f, const struct xvl_net_hdr *h)
{
	f->flags = 0;
	if (h->flags & XVL_NET_HDR_F_NEEDS_CSUM)
		f->flags |= XVL_NET_TX_CSUM;
	if (h->flags & XVL_NET_HDR_F_DATA_VALID)
		f->flags |= XVL_NET_RX_CSUM_OK;
	f->gso_type = h->gso_type;
	f->gso_size = h->gso_size;
	f->hdr_len = h->hdr_len;
	f->csum_start = h->csum_start;
	f->csum_offset = h->csum_offset;
	f->user = NULL;
}

/*
 * The rest of the pending frame (spread over several buffers): joined at
 * merge + pend_off as the device returns its buffers, which go back to the
 * ring at once.  1: the frame is whole and good (in *f), 0: it was dropped,
 * -1: buffers are still missing (the device may publish them one by one:
 * resumed by the next burst) or the ring broke.
 */
static int rx_continue(struct xvl_net *n, struct net_queue *q, struct xvl_net_frame *f)
{
	uint8_t *dst = q->merge + q->pend_off;
	while (q->pend_left) {
		uint64_t token;
		uint32_t len;
		int rc = xvl_vq_drv_get_used(&q->vq, &token, &len);
		if (rc < 0) {
			q->pend = false;
			xvl_net_mark_broken(n, -EPROTO, "device broke a receive ring");
		}
		if (rc <= 0)
			return -1;
		uint16_t b = (uint16_t)token;
		q->unposted[q->n_unposted++] = b;
		q->pend_left--;
		if (rx_len_clamped(q) || (uint64_t)q->pend_have + len > NET_MAX_GSO_FRAME) {
			if (!q->pend_bad)
				q->st.rx_bad_len++;
			q->pend_bad = true;
		}
		if (q->pend_bad)
			continue;
		memcpy(dst + q->pend_have, win_ptr(n, q->bufs_off + (uint64_t)b * q->buf_size), len);
		q->pend_have += len;
	}
	q->pend = false;
	if (!q->pend_bad && xvl_net_frame_check(&q->pend_h, q->pend_have, &n->accept) != XVL_NET_FRAME_OK) {
		q->pend_bad = true;
		q->st.rx_bad_hdr++;
	}
	if (q->pend_bad) {
		q->st.rx_dropped++;
		return 0;
	}
	f->data = dst;
	f->len = q->pend_have;
	fill_meta(f, &q->pend_h);
	q->st.rx_frames++;
	q->st.rx_bytes += f->len;
	return 1;
}

/* Take one used entry and make a frame of it.  1: a frame, 0: dropped, -1: nothing more. */
static int rx_one(struct xvl_net *n, struct net_queue *q, struct xvl_net_frame *f,
		  uint32_t *merge_used)
{
	uint64_t token;
	uint32_t len;
	int rc = xvl_vq_drv_get_used(&q->vq, &token, &len);
	if (rc <= 0) {
		if (rc < 0)
			xvl_net_mark_broken(n, -EPROTO, "device broke a receive ring");
		return -1;
	}
	uint16_t b = (uint16_t)token;
	uint8_t *buf = win_ptr(n, q->bufs_off + (uint64_t)b * q->buf_size);
	if (rx_len_clamped(q) || len < XVL_NET_HDR_SIZE) {
		rx_drop(q, b, &q->st.rx_bad_len);
		return 0;
	}
	uint8_t raw[XVL_NET_HDR_SIZE];
	struct xvl_net_hdr h;
	memcpy(raw, buf, sizeof(raw)); /* the device could change it: decode a copy */
	xvl_net_hdr_decode(raw, &h);
	uint32_t flen = len - XVL_NET_HDR_SIZE;
	if (h.num_buffers == 0 || h.num_buffers > n->accept.max_buffers) {
		rx_drop(q, b, &q->st.rx_bad_buffers);
		return 0;
	}
	if (h.num_buffers == 1) {
		if (xvl_net_frame_check(&h, flen, &n->accept) != XVL_NET_FRAME_OK) {
			rx_drop(q, b, &q->st.rx_bad_hdr);
			return 0;
		}
		f->data = buf + XVL_NET_HDR_SIZE;
		f->len = flen;
		q->lent[q->n_lent++] = b;
	} else {
		if (flen > NET_MAX_GSO_FRAME) {
			rx_drop(q, b, &q->st.rx_bad_len);
			return 0;
		}
		memcpy(q->merge + *merge_used, buf + XVL_NET_HDR_SIZE, flen);
		q->unposted[q->n_unposted++] = b;
		q->pend = true;
		q->pend_bad = false;
		q->pend_h = h;
		q->pend_left = (uint16_t)(h.num_buffers - 1);
		q->pend_have = flen;
		q->pend_off = *merge_used;
		int r = rx_continue(n, q, f);
		if (r == 1)
			*merge_used += f->len;
		return r;
	}
	fill_meta(f, &h);
	q->st.rx_frames++;
	q->st.rx_bytes += f->len;
	return 1;
}

/* The buffers lent by the last burst go back to the device. */
static void rx_give_back(struct net_queue *q)
{
	while (q->n_lent)
		q->unposted[q->n_unposted++] = q->lent[--q->n_lent];
}

static void rx_look_at_link(struct xvl_net *n, struct net_queue *q)
{
	uint64_t now = xvl_os_now_ns();
	if (now - q->last_link_check > NET_LINK_CHECK_NS) {
		q->last_link_check = now;
		xvl_client_poll_link(n->c);
	}
}

static int rx_burst_locked(struct xvl_net *n, struct net_queue *q, struct xvl_net_frame *frames,
			   unsigned max)
{
	rx_give_back(q);
	if (q->fd_exported)
		xvl_os_eventfd_drain(q->call_fd);
	rx_look_at_link(n, q);
	unsigned got = 0, taken = 0;
	uint32_t merge_used = 0;
	if (q->pend) { /* the last burst left a frame whose buffers were not all back */
		memmove(q->merge, q->merge + q->pend_off, q->pend_have);
		q->pend_off = 0;
		int r = rx_continue(n, q, &frames[0]);
		if (r < 0 && net_broken(n))
			return net_gone(n);
		if (r < 0) {
			net_rx_refill(n, q);
			return 0;
		}
		got = (unsigned)r;
		merge_used = r ? frames[0].len : 0;
	}
	/* Bounded: max used entries (plus one frame's buffers each), and room to join a frame. */
	while (got < max && taken < max + q->num && !net_broken(n) &&
	       merge_used <= NET_MERGE_BYTES - NET_MAX_GSO_FRAME) {
		int r = rx_one(n, q, &frames[got], &merge_used);
		if (r < 0)
			break;
		taken++;
		got += (unsigned)r;
	}
	if (net_broken(n)) {
		rx_give_back(q);
		return got ? (int)got : net_gone(n);
	}
	/* A caller sleeping on the fd: re-arm, and wake it again if frames came meanwhile. */
	if (q->fd_exported && got < max && xvl_vq_drv_enable_cb(&q->vq))
		xvl_os_eventfd_signal(q->call_fd);
	net_rx_refill(n, q);
	return (int)got;
}

int xvl_net_rx_burst(struct xvl_net *n, uint16_t pair, struct xvl_net_frame *frames, unsigned max)
{
	int rc = pair_ok(n, pair);
	if (rc < 0)
		return rc;
	struct net_queue *q = &n->rx[pair];
	pthread_mutex_lock(&q->lock);
	rc = rx_burst_locked(n, q, frames, max);
	pthread_mutex_unlock(&q->lock);
	return rc;
}

int xvl_net_rx_copy(struct xvl_net *n, uint16_t pair, struct xvl_net_frame *frames, unsigned max)
{
	int rc = pair_ok(n, pair);
	if (rc < 0)
		return rc;
	struct net_queue *q = &n->rx[pair];
	struct xvl_net_frame tmp[32];
	unsigned done = 0;
	pthread_mutex_lock(&q->lock);
	while (done < max) {
		unsigned want = max - done < 32 ? max - done : 32;
		rc = rx_burst_locked(n, q, tmp, want);
		if (rc <= 0)
			break;
		for (int i = 0; i < rc; i++) {
			struct xvl_net_frame *f = &frames[done + (unsigned)i];
			uint32_t cap = f->len;
			void *dst = f->data;
			*f = tmp[i];
			f->data = dst;
			if (tmp[i].len > cap)
				q->st.rx_truncated++;
			memcpy(dst, tmp[i].data, tmp[i].len < cap ? tmp[i].len : cap);
		}
		done += (unsigned)rc;
		if ((unsigned)rc < want)
			break;
	}
	rx_give_back(q);
	net_rx_refill(n, q);
	pthread_mutex_unlock(&q->lock);
	return done ? (int)done : rc < 0 ? rc : 0;
}

/* ------------------------------------------------------------ waiting */

static bool rx_news(const struct xvl_net *n, const struct net_queue *q)
{
	return xvl_vq_drv_has_used(&q->vq) || net_broken(n) || xvl_load_acquire(&n->restart) ||
	       xvl_load_acquire(&n->config_changed) || xvl_client_link_dead(n->c);
}

static int wait_spinning(struct xvl_net *n, struct net_queue *q, int timeout_ms)
{
	uint64_t start = xvl_os_now_ns();
	for (;;) {
		if (rx_news(n, q))
			return 1;
		uint64_t now = xvl_os_now_ns();
		if (now - q->last_link_check > NET_LINK_CHECK_NS) {
			q->last_link_check = now;
			xvl_client_poll_link(n->c);
		}
		if (timeout_ms >= 0 && now - start >= (uint64_t)timeout_ms * 1000000ull)
			return 0;
		xvl_cpu_relax();
	}
}

static int wait_sleeping(struct xvl_net *n, struct net_queue *q, int timeout_ms)
{
	for (;;) {
		pthread_mutex_lock(&q->lock);
		bool ready = rx_news(n, q) || xvl_vq_drv_enable_cb(&q->vq);
		pthread_mutex_unlock(&q->lock);
		if (ready)
			return 1;
		struct pollfd p[2] = {{.fd = q->call_fd, .events = POLLIN},
				      {.fd = xvl_client_link_fd(n->c), .events = POLLIN}};
		int pr = poll(p, 2, timeout_ms);
		if (pr == 0)
			return 0;
		if (pr < 0 && errno != EINTR)
			return -errno;
		if (p[1].revents)
			xvl_client_poll_link(n->c);
		if (p[0].revents) {
			xvl_os_eventfd_drain(q->call_fd);
			return 1;
		}
	}
}

int xvl_net_wait(struct xvl_net *n, uint16_t pair, int timeout_ms)
{
	int rc = pair_ok(n, pair);
	if (rc < 0)
		return rc;
	struct net_queue *q = &n->rx[pair];
	rc = n->poll || q->call_fd < 0 ? wait_spinning(n, q, timeout_ms)
				       : wait_sleeping(n, q, timeout_ms);
	return rc >= 0 && net_broken(n) ? net_gone(n) : rc;
}

int xvl_net_queue_fd(struct xvl_net *n, uint16_t pair)
{
	if (pair >= n->info.pairs || n->poll)
		return -1;
	struct net_queue *q = &n->rx[pair];
	pthread_mutex_lock(&q->lock);
	q->fd_exported = true;
	xvl_vq_drv_enable_cb(&q->vq);
	pthread_mutex_unlock(&q->lock);
	return q->call_fd;
}
