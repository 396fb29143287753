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
	int rc = xvl_os_peer_eventfd_signal(&d->srv->guard, q->call_fd);
	if (rc == 0) {
		d->st_notifies++;
	} else if (rc == -ETIMEDOUT) {
		srv_dev_break(d, -EWOULDBLOCK, "queue %u: the call eventfd was made blocking",
			      q->index);
	} else if (rc != -EAGAIN) { /* -EAGAIN: at its maximum, a wakeup is pending anyway */
		srv_dev_break(d, rc, "queue %u: signalling the call eventfd failed", q->index);
	}
}

void srv_req_done(struct srv_req *r, uint8_t status)
{
	struct srv_queue *q = r->q;
	struct srv_dev *d = q->dev;

	r->busy = false;
	q->inflight--;
	if (!srv_dev_running(d) || !q->enabled) {
		/* the driver reset or was told: the rings are no longer ours to write */
		if (d->state == SRV_DEV_DRAINING && !q->inflight)
			srv_dev_drained(d);
		return;
	}
	xvl_store_relaxed(r->status, status);
	xvl_vq_dev_push(&q->vq, r->head, used_len(r, status));
	d->st_requests++;
	if (status == XVL_BLK_S_OK)
		d->st_bytes += r->bytes;
	else
		d->st_errors++;
}

static uint8_t cqe_status(const struct srv_req *r, int res)
{
	if (res < 0)
		return XVL_BLK_S_IOERR;
	if ((r->type == XVL_BLK_T_IN || r->type == XVL_BLK_T_OUT) && (uint64_t)res != r->bytes)
		return XVL_BLK_S_IOERR;
	return XVL_BLK_S_OK;
}

void srv_reap_ring(struct srv *s)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	if (!s->ring_ok)
		return;
	io_uring_for_each_cqe(&s->ring, head, cqe) {
		struct srv_req *r = io_uring_cqe_get_data(cqe);
		struct srv_queue *q = r->q;
		srv_req_done(r, cqe_status(r, cqe->res));
		q->more = q->enabled; /* notify, and look for new work, on the next pass */
		n++;
	}
	io_uring_cq_advance(&s->ring, n);
}
