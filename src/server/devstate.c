/* SPDX-License-Identifier: MIT */
/*
 * The device state machine: what a driver may do to a device, when.
 *
 * States (enum srv_dev_state, srv.h):
 *
 *   FREE ──ATTACH──▶ SETUP ──SET_STATUS +DRIVER_OK──▶ RUNNING
 *                      ▲  ▲                             │
 *                      │  └───── reset, nothing ────────┤ driver breaks a ring rule,
 *                      │         in flight              │ start fails, backend gone:
 *                      │                                ▼ STOPPED (NEEDS_RESET, EVENT BROKEN)
 *                      │                                  SET_STATUS +FAILED: STOPPED
 *                      └── last completion ── DRAINING ◀── reset with requests in flight
 *
 *   "reset" is SET_STATUS 0, RESET, DETACH or the link closing, from SETUP,
 *   RUNNING or STOPPED.  With nothing in flight it takes effect at once
 *   (DETACH and a closed link then go to FREE); otherwise the device is
 *   DRAINING and the reply (none for a closed link) is sent, and the device
 *   freed for DETACH / a closed link, when the last request completes.
 *
 * Status writes (SET_STATUS s != 0), checked in this order:
 *   DRAINING: -EBUSY.  Bits other than ACKNOWLEDGE, DRIVER, FEATURES_OK,
 *   DRIVER_OK, FAILED: -EINVAL (NEEDS_RESET belongs to the device).  A bit
 *   the device has set that s clears: -EPERM (only a reset clears bits).
 *   STOPPED: only FAILED may be added (-EPERM).  FEATURES_OK needs
 *   ACKNOWLEDGE|DRIVER (-EPERM) and is left clear in the reply without
 *   acceptable features.  DRIVER_OK needs FEATURES_OK (-EPERM).  Writing the
 *   bits already set changes nothing.
 *
 * Invariants:
 *   - d->conn != NULL  <=>  state != FREE.
 *   - A queue is served (q->enabled) only while its device is RUNNING, and
 *     only if it is configured (SET_QUEUE with ENABLE accepted).
 *   - s->poll_queues == the number of queues in POLL mode the control
 *     thread serves, summed over all devices: only queue_serve() and
 *     queue_unserve() change it, and each changes it only when q->enabled
 *     flips on a queue not handed to a worker.
 *   - A queue handed to a worker thread (q->handed, worker.c) counts as in
 *     flight until the worker released it: a reset goes DRAINING and its
 *     reply waits; its fds and req[] stay until then (q->clear_pending).
 *   - A request in flight (q->inflight) points into its connection's window
 *     and into q->req[]: neither is released, nor the queue set up again,
 *     until it completed.  SET_QUEUE needs SETUP, which a device with
 *     requests in flight is not (it is RUNNING, STOPPED or DRAINING).
 *   - Nothing is written to a ring unless its device is RUNNING and the
 *     queue served; completions that finish otherwise are dropped (the
 *     driver has reset or been told the device is broken).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "srv.h"
#include "window.h"

#define STATUS_DRIVER_BITS                                                                   \
	(XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER | XVL_STATUS_FEATURES_OK |                 \
	 XVL_STATUS_DRIVER_OK | XVL_STATUS_FAILED)

bool srv_dev_running(const struct srv_dev *d)
{
	return d->state == SRV_DEV_RUNNING;
}

static unsigned dev_inflight(const struct srv_dev *d)
{
	unsigned n = 0;
	for (unsigned q = 0; q < XVL_MAX_QUEUES; q++) /* a worker's queue: in flight till released */
		n += d->q[q].handed ? 1 : d->q[q].inflight;
	return n + srv_bridge_busy(d); /* a vhost backend being stopped counts as in flight */
}

/* ------------------------------------------------------------ queues */

static int queue_serve(struct srv_queue *q)
{
	struct srv *s = q->dev->srv;
	if (!q->configured || q->enabled)
		return 0;
	if (q->handed)
		return -EBUSY; /* cannot happen: serving again needs a reset, which waits for it */
	/*
	 * Bridged queues are the backend's; a net device's queues stay on this
	 * thread too: the switch writes into the rx rings of the other ports of
	 * the same switch, which must all be served by one thread.
	 */
	q->worker = q->dev->spec.kind == XVL_BK_VHOST || q->dev->net
			    ? NULL
			    : srv_worker_for(s, q->dev->index, q->index);
	if (q->worker) {
		q->enabled = true;
		srv_worker_attach(q); /* the worker parks avail_event of a polled queue */
		return 0;
	}
	if (!q->poll && srv_watch(s, q->kick_fd, &q->kick_w, W_KICK, q) < 0)
		return -errno;
	if (q->poll) {
		s->poll_queues++;
		/* Nobody kicks a polled queue: park avail_event once, so pops skip its update and fence. */
		xvl_vq_dev_disable_notify(&q->vq);
	}
	q->enabled = true;
	q->live = true;
	q->more = true; /* pick up anything queued before DRIVER_OK */
	return 0;
}

static void queue_unserve(struct srv_queue *q)
{
	struct srv *s = q->dev->srv;
	if (!q->enabled)
		return;
	if (q->handed) { /* once per hand-off: enabled flips once */
		q->enabled = false;
		srv_worker_detach(q);
		return;
	}
	if (q->poll)
		s->poll_queues--;
	else
		srv_unwatch(s, q->kick_fd);
	q->enabled = false;
	q->live = false;
	q->more = false;
}

/* Forget the queue's set-up; req[] stays while requests are in flight. */
static void queue_clear(struct srv_queue *q)
{
	queue_unserve(q);
	if (q->handed) { /* the worker still uses the fds and req[]: at RELEASED */
		q->clear_pending = true;
		return;
	}
	if (q->kick_fd >= 0)
		close(q->kick_fd);
	if (q->call_fd >= 0)
		close(q->call_fd);
	q->kick_fd = q->call_fd = -1;
	q->configured = false;
	q->poll = false;
	if (!q->inflight) {
		free(q->req);
		q->req = NULL;
	}
}

void srv_queue_released(struct srv_queue *q)
{
	struct srv_dev *d = q->dev;
	q->handed = false;
	q->worker = NULL;
	if (q->clear_pending) {
		q->clear_pending = false;
		queue_clear(q);
	}
	if (d->state == SRV_DEV_DRAINING)
		srv_dev_drained(d);
}

/* ------------------------------------------------------------ transitions */

static void dev_stop_serving(struct srv_dev *d)
{
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++)
		queue_unserve(&d->q[i]);
}

/* The reset part every "reset" shares; leaves SETUP (status 0) or DRAINING. */
static void dev_reset_now(struct srv_dev *d)
{
	if (d->spec.kind == XVL_BK_VHOST)
		srv_bridge_stop(d);
	if (d->net)
		srv_net_reset(d);
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++)
		queue_clear(&d->q[i]);
	d->status = 0;
	d->driver_features = 0;
	d->state = dev_inflight(d) ? SRV_DEV_DRAINING : SRV_DEV_SETUP;
}

void srv_dev_reset(struct srv_dev *d)
{
	if (d->state == SRV_DEV_FREE)
		return;
	dev_reset_now(d);
}

static void dev_unbind(struct srv_dev *d)
{
	d->conn = NULL;
	d->state = SRV_DEV_FREE;
	d->release_when_drained = d->reply_when_drained = false;
}

/* Back to FREE; its connection goes too if its link is closed and it holds nothing else. */
static void dev_free(struct srv_dev *d)
{
	struct srv_conn *c = d->conn;
	dev_unbind(d);
	if (c)
		srv_conn_free_if_unused(c);
}

void srv_dev_drained(struct srv_dev *d)
{
	if (d->state != SRV_DEV_DRAINING || dev_inflight(d))
		return;
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++)
		queue_clear(&d->q[i]); /* frees the req[] kept for the completions */
	d->state = SRV_DEV_SETUP;
	if (d->reply_when_drained) {
		struct xvl_msg rep = {.type = d->pending_type, .flags = XVL_MSG_F_REPLY,
				      .seq = d->pending_seq};
		rep.u.st.dev = d->index; /* SET_STATUS 0: the status now, 0 */
		d->reply_when_drained = false;
		srv_conn_send(d->conn, &rep);
	}
	if (d->release_when_drained)
		dev_free(d);
}

void srv_dev_conn_closed(struct srv_conn *c)
{
	struct srv *s = c->srv;
	for (unsigned i = 0; i < s->n_devs; i++) {
		struct srv_dev *d = &s->dev[i];
		if (d->conn != c)
			continue;
		dev_reset_now(d);
		d->reply_when_drained = false;
		if (d->state == SRV_DEV_DRAINING)
			d->release_when_drained = true;
		else
			dev_unbind(d); /* the caller frees c when it holds nothing */
	}
}

bool srv_conn_holds_devices(const struct srv_conn *c)
{
	for (unsigned i = 0; i < c->srv->n_devs; i++)
		if (c->srv->dev[i].conn == c)
			return true;
	return false;
}

void srv_dev_shutdown(struct srv_dev *d)
{
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++) {
		d->q[i].inflight = 0; /* the ring is gone: no completion will come */
		d->q[i].handed = false; /* the workers are stopped (xvl_server_destroy) */
		d->q[i].worker = NULL;
		queue_clear(&d->q[i]);
	}
	d->conn = NULL;
	d->state = SRV_DEV_FREE;
}

void srv_dev_break(struct srv_dev *d, int reason, const char *fmt, ...)
{
	char msg[64];
	va_list ap;

	if (d->state == SRV_DEV_FREE || d->state == SRV_DEV_DRAINING ||
	    (d->status & XVL_STATUS_NEEDS_RESET))
		return;
	d->state = SRV_DEV_STOPPED;
	d->status |= XVL_STATUS_NEEDS_RESET;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	srv_log(d->srv, "device %s broken: %s", d->spec.name, msg);
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++)
		if (!d->q[i].handed) /* a worker's queue stops at DETACH */
			d->q[i].vq.broken = true;
	dev_stop_serving(d);
	srv_dev_event(d, XVL_EVENT_BROKEN, reason, msg);
}

/* DRIVER_OK: serve every configured queue (or start the vhost session).  Runs once per
 * set-up: only from SETUP. */
static int dev_start(struct srv_dev *d)
{
	if (d->spec.kind == XVL_BK_VHOST) {
		struct xvl_errbuf eb;
		int rc = srv_bridge_start(d, &eb);
		if (rc < 0)
			srv_log(d->srv, "%s", eb.msg);
		int cq = srv_bridge_ctrlq(d); /* net: the control queue is the server's */
		if (rc == 0 && cq >= 0)
			rc = queue_serve(&d->q[cq]);
		return rc;
	}
	for (unsigned i = 0; i < d->num_queues; i++) {
		int rc = queue_serve(&d->q[i]);
		if (rc < 0)
			return rc;
	}
	if (d->net)
		srv_net_start(d);
	return 0;
}

/* ------------------------------------------------------------ kicks */

void srv_queue_kicked(struct srv_queue *q, uint32_t events)
{
	struct srv_dev *d = q->dev;
	uint64_t v;

	if (events & (EPOLLERR | EPOLLHUP)) {
		srv_unwatch(d->srv, q->kick_fd);
		srv_dev_break(d, -EPIPE, "queue %u: kick fd hung up", q->index);
		return;
	}
	int rc = xvl_os_peer_eventfd_drain(&d->srv->guard, q->kick_fd, &v);
	if (rc < 0) {
		srv_unwatch(d->srv, q->kick_fd);
		srv_dev_break(d, rc, "queue %u: kick eventfd %s", q->index,
			      rc == -ETIMEDOUT ? "was made blocking" : "failed");
		return;
	}
	if (d->spec.kind == XVL_BK_VHOST && !srv_bridge_is_ctrlq(q))
		srv_bridge_relay(d->srv, q, true);
	else
		q->more = true;
}

/* ------------------------------------------------------------ link requests */

/* The device named in a request, attached by this connection. */
static struct srv_dev *owned_dev(struct srv_conn *c, uint32_t dev, int *err)
{
	if (dev >= c->srv->n_devs) {
		*err = -ENODEV;
		return NULL;
	}
	struct srv_dev *d = &c->srv->dev[dev];
	if (d->conn != c) {
		*err = -EPERM;
		return NULL;
	}
	return d;
}

/* owned_dev, and not DRAINING (-EBUSY): a device with a reply pending takes no request. */
static struct srv_dev *settled_dev(struct srv_conn *c, uint32_t dev, int *err)
{
	struct srv_dev *d = owned_dev(c, dev, err);
	if (d && d->state == SRV_DEV_DRAINING) {
		*err = -EBUSY;
		return NULL;
	}
	return d;
}

int srv_dev_on_attach(struct srv_conn *c, const struct xvl_msg *m)
{
	if (m->u.dev.dev >= c->srv->n_devs)
		return -ENODEV;
	struct srv_dev *d = &c->srv->dev[m->u.dev.dev];
	if (d->conn == c)
		return -EALREADY;
	if (d->conn)
		return -EBUSY; /* another holder, or a previous one still draining */
	if (d->spec.kind == XVL_BK_VHOST && !d->vh_probed)
		return -EHOSTDOWN; /* its backend has not answered yet (the server log says why) */
	d->conn = c;
	d->status = 0;
	d->driver_features = 0;
	d->state = SRV_DEV_SETUP;
	srv_log(c->srv, "client %s attached device %s", c->name, d->spec.name);
	return 0;
}

/* RESET, DETACH and SET_STATUS 0: reply once no request of the device is in flight. */
static int dev_request_reset(struct srv_dev *d, const struct xvl_msg *m, bool *deferred)
{
	bool detach = m->type == XVL_MSG_DETACH;
	dev_reset_now(d);
	if (d->state == SRV_DEV_DRAINING) {
		d->reply_when_drained = true;
		d->release_when_drained = detach;
		d->pending_type = m->type;
		d->pending_seq = m->seq;
		*deferred = true;
		return 0;
	}
	if (detach) {
		srv_log(d->srv, "client %s detached device %s", d->conn->name, d->spec.name);
		dev_free(d);
	}
	return 0;
}

int srv_dev_on_detach_or_reset(struct srv_conn *c, const struct xvl_msg *m, bool *deferred)
{
	int err;
	struct srv_dev *d = settled_dev(c, m->u.dev.dev, &err);
	if (!d)
		return err;
	return dev_request_reset(d, m, deferred);
}

int srv_dev_on_set_features(struct srv_conn *c, const struct xvl_msg *m)
{
	int err;
	struct srv_dev *d = settled_dev(c, m->u.feat.dev, &err);
	if (!d)
		return err;
	uint64_t f = m->u.feat.features;
	if ((f & ~d->features) || !(f & (1ull << XVL_F_VERSION_1)) ||
	    (d->status & XVL_STATUS_FEATURES_OK) || d->state != SRV_DEV_SETUP)
		return -EOPNOTSUPP;
	d->driver_features = f;
	return 0;
}

static bool feature(const struct srv_dev *d, unsigned bit)
{
	return d->driver_features & (1ull << bit);
}

/* The kick and call fds must be eventfds: nothing else is read or written. */
static int check_eventfds(struct srv_conn *c, const int *fds)
{
	for (unsigned i = 0; i < 2; i++) {
		int rc = xvl_os_is_eventfd(fds[i]);
		if (rc == 1)
			continue;
		srv_log(c->srv, "client %s: the %s fd of SET_QUEUE is not an eventfd%s%s", c->name,
			i ? "call" : "kick", rc < 0 ? ": " : "", rc < 0 ? strerror(-rc) : "");
		return -EINVAL;
	}
	return 0;
}

/* Rings lie after the window header, which belongs to the window's format. */
static bool rings_after_header(const struct xvl_m_queue *mq)
{
	return mq->desc >= XVL_WIN_HDR_SIZE && mq->avail >= XVL_WIN_HDR_SIZE &&
	       mq->used >= XVL_WIN_HDR_SIZE;
}

static int queue_setup(struct srv_queue *q, const struct xvl_m_queue *mq, int *fds)
{
	struct srv_dev *d = q->dev;
	struct xvl_vq_layout l = {.num = mq->num, .desc = mq->desc, .avail = mq->avail,
				  .used = mq->used};
	int rc = xvl_vq_layout_check(&d->conn->win.mem, &l);
	if (rc < 0 || mq->num > d->max_queue_size || !rings_after_header(mq))
		return -EINVAL;
	/* avail_base != used_base would resume with chains in flight that this device has
	 * no record of and could never complete */
	if (mq->avail_base != mq->used_base)
		return -EINVAL;
	bool poll = mq->flags & XVL_QUEUE_F_POLL;
	if (!poll && check_eventfds(d->conn, fds) < 0)
		return -EINVAL;
	if (q->inflight || q->handed)
		return -EBUSY; /* cannot happen in SETUP (see the invariants); kept as a guard */
	queue_clear(q);
	if (!(mq->flags & XVL_QUEUE_F_ENABLE))
		return 0; /* a queue set without ENABLE is disabled: not served */
	rc = xvl_vq_dev_init(&q->vq, &d->conn->win.mem, &l, feature(d, XVL_F_EVENT_IDX),
			     feature(d, XVL_F_INDIRECT_DESC), mq->avail_base, mq->used_base);
	if (rc < 0)
		return rc;
	q->req = calloc(mq->num, sizeof(*q->req));
	if (!q->req)
		return -ENOMEM;
	q->poll = poll;
	if (!poll) {
		q->kick_fd = fds[0];
		q->call_fd = fds[1];
		fds[0] = fds[1] = -1;
	}
	q->configured = true;
	return 0;
}

int srv_dev_on_set_queue(struct srv_conn *c, const struct xvl_msg *m, int *fds)
{
	int err;
	const struct xvl_m_queue *mq = &m->u.queue;
	struct srv_dev *d = settled_dev(c, mq->dev, &err);
	if (!d)
		return err;
	if (!c->has_window)
		return -ENXIO;
	if (mq->queue >= d->num_queues)
		return -EINVAL;
	if (d->state != SRV_DEV_SETUP || !(d->status & XVL_STATUS_FEATURES_OK))
		return -EPERM;
	int rc = queue_setup(&d->q[mq->queue], mq, fds);
	if (rc < 0)
		srv_log(c->srv, "client %s: device %s queue %u refused: %s", c->name, d->spec.name,
			mq->queue, strerror(-rc));
	return rc;
}

/* Is the status write st allowed from the device's status now?  0 or the refusal. */
static int status_write_allowed(const struct srv_dev *d, uint32_t st)
{
	uint32_t cur = d->status & STATUS_DRIVER_BITS;
	uint32_t added = st & ~cur;
	if (st & ~STATUS_DRIVER_BITS)
		return -EINVAL;
	if (cur & ~st)
		return -EPERM; /* only a reset clears bits */
	if (d->state == SRV_DEV_STOPPED && (added & ~XVL_STATUS_FAILED))
		return -EPERM;
	if ((added & XVL_STATUS_FEATURES_OK) &&
	    (st & (XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER)) !=
		    (XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER))
		return -EPERM;
	if ((added & XVL_STATUS_DRIVER_OK) && !(st & XVL_STATUS_FEATURES_OK))
		return -EPERM;
	return 0;
}

static void dev_write_status(struct srv_dev *d, uint32_t st)
{
	uint32_t added = st & ~d->status;
	if ((added & XVL_STATUS_FEATURES_OK) && !feature(d, XVL_F_VERSION_1)) {
		st &= ~(XVL_STATUS_FEATURES_OK | XVL_STATUS_DRIVER_OK); /* the driver sees it refused */
		added &= ~(XVL_STATUS_FEATURES_OK | XVL_STATUS_DRIVER_OK);
	}
	d->status = st | (d->status & XVL_STATUS_NEEDS_RESET);
	if (added & XVL_STATUS_FAILED) {
		d->state = SRV_DEV_STOPPED; /* the driver gave up: serve nothing until a reset */
		dev_stop_serving(d);
		return;
	}
	if ((added & XVL_STATUS_DRIVER_OK) && d->state == SRV_DEV_SETUP) {
		d->state = SRV_DEV_RUNNING;
		if (dev_start(d) < 0) {
			dev_stop_serving(d);
			d->status = (d->status & ~XVL_STATUS_DRIVER_OK) | XVL_STATUS_NEEDS_RESET;
			d->state = SRV_DEV_STOPPED;
		}
	}
}

int srv_dev_on_set_status(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep,
			  bool *deferred)
{
	int err;
	struct srv_dev *d = settled_dev(c, m->u.st.dev, &err);
	if (!d)
		return err;
	uint32_t st = m->u.st.status;
	if (st == 0) {
		dev_request_reset(d, m, deferred);
	} else {
		int rc = status_write_allowed(d, st);
		if (rc < 0)
			return rc;
		dev_write_status(d, st);
	}
	rep->u.st.dev = d->index;
	rep->u.st.status = d->status;
	return 0;
}

int srv_dev_on_get_status(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep)
{
	int err;
	struct srv_dev *d = owned_dev(c, m->u.dev.dev, &err);
	if (!d)
		return err;
	rep->u.st.dev = d->index;
	rep->u.st.status = d->status;
	return 0;
}
