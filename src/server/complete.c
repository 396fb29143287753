/* SPDX-License-Identifier: MIT */
/*
 * Request completion: the used entry, the used-buffer notification, and
 * the file backends' io_uring completions.
 *
 * A request finishes exactly once (srv_req_done).  Its used entry is written
 * only while its device is RUNNING and the queue served (devstate.c); the
 * last completion of a DRAINING device lets the device state machine send
 * the reply it deferred.  The used length is what the device wrote into the
 * chain: the data of a successful read (or GET_ID) plus the status byte;
 * the status byte alone for everything else, failed reads included.
 */
#include <errno.h>

#include "srv.h"
#include "virtio_blk.h"
#include "xvl_atomic.h"

static uint32_t used_len(const struct srv_req *r, uint8_t status)
{
	if (status != XVL_BLK_S_OK)
		return 1;
	if (r->type == XVL_BLK_T_IN)
		return (uint32_t)r->bytes + 1;
	if (r->type == XVL_BLK_T_GET_ID)
		return XVL_BLK_ID_BYTES + 1;
	return 1;
}

void srv_queue_notify(struct srv_queue *q)
{
	struct srv_dev *d = q->dev;
	if (q->call_fd < 0 || !xvl_vq_dev_notify_prepare(&q->vq))
		return;
	int rc = xvl_os_peer_eventfd_signal(srv_queue_guard(q), q->call_fd);
	(void)d;
	if (rc == 0) {
		xvl_store_relaxed(&q->st_notifies, q->st_notifies + 1);
	} else if (rc == -ETIMEDOUT) {
		srv_queue_break(q, -EWOULDBLOCK, "queue %u: the call eventfd was made blocking",
				q->index);
	} else if (rc != -EAGAIN) { /* -EAGAIN: at its maximum, a wakeup is pending anyway */
		srv_queue_break(q, rc, "queue %u: signalling the call eventfd failed", q->index);
	}
}

uint64_t srv_dev_requests(const struct srv_dev *d)
{
	uint64_t n = d->st_requests; /* net devices count per device */
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++) /* a worker may be counting */
		n += xvl_load_relaxed(&d->q[i].st_requests);
	return n;
}

void srv_req_done(struct srv_req *r, uint8_t status)
{
	struct srv_queue *q = r->q;

	r->busy = false;
	q->inflight--;
	if (!q->live) {
		/* the driver reset or was told: the rings are no longer ours to write */
		srv_queue_idle_check(q);
		return;
	}
	xvl_store_relaxed(r->status, status);
	xvl_vq_dev_push(&q->vq, r->head, used_len(r, status));
	xvl_store_relaxed(&q->st_requests, q->st_requests + 1);
	if (status == XVL_BLK_S_OK)
		xvl_store_relaxed(&q->st_bytes, q->st_bytes + r->bytes);
	else
		xvl_store_relaxed(&q->st_errors, q->st_errors + 1);
}

static uint8_t cqe_status(const struct srv_req *r, int res)
{
	if (res < 0)
		return XVL_BLK_S_IOERR;
	if ((r->type == XVL_BLK_T_IN || r->type == XVL_BLK_T_OUT) && (uint64_t)res != r->bytes)
		return XVL_BLK_S_IOERR;
	return XVL_BLK_S_OK;
}

void srv_reap(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(ring, head, cqe) {
		struct srv_req *r = io_uring_cqe_get_data(cqe);
		struct srv_queue *q = r->q;
		srv_req_done(r, cqe_status(r, cqe->res));
		q->more = q->live; /* notify, and look for new work, on the next pass */
		n++;
	}
	io_uring_cq_advance(ring, n);
}

void srv_reap_ring(struct srv *s)
{
	if (s->ring_ok)
		srv_reap(&s->ring);
}
