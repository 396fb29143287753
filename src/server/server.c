/* SPDX-License-Identifier: MIT */
/*
 * Server event loop and link handling.
 *
 * One thread, one epoll set: the listening socket, each client's link,
 * each queue's kick eventfd, the io_uring completion fd and a signalfd.
 * Queues in poll mode make the loop spin instead of sleeping.  A client's
 * window stays mapped until every request that points into it is done.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "srv.h"
#include "virtio_blk.h"

#define RING_DEPTH 1024
#define MAX_EVENTS 64

/* Transport features every device offers on top of its own. */
#define SRV_RING_FEATURES                                                                        \
	((1ull << XVL_F_VERSION_1) | (1ull << XVL_F_INDIRECT_DESC) | (1ull << XVL_F_EVENT_IDX))

/* One write per line, so that lines from several processes on one pipe stay whole. */
void srv_log(const struct srv *s, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	if (s->opts.quiet)
		return;
	int n = snprintf(line, sizeof(line), "xvl server: ");
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(2, line, (size_t)n) < 0)
		return; /* nowhere to report it */
}

int srv_watch(struct srv *s, int fd, struct srv_watch *w, enum srv_watch_kind kind, void *obj)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
	w->kind = kind;
	w->obj = obj;
	return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void srv_unwatch(struct srv *s, int fd)
{
	if (fd >= 0)
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
}

struct io_uring_sqe *srv_get_sqe(struct srv *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	if (!sqe) {
		io_uring_submit(&s->ring);
		s->ring_pending = 0;
		sqe = io_uring_get_sqe(&s->ring);
	}
	if (sqe)
		s->ring_pending++;
	return sqe;
}

/* ------------------------------------------------------------ devices */

static const struct srv_backend_ops *backend_ops(enum xvl_backend_kind k)
{
	switch (k) {
	case XVL_BK_FILE:
		return &srv_file_ops;
	case XVL_BK_NULL:
		return &srv_null_ops;
	case XVL_BK_RAM:
		return &srv_ram_ops;
	case XVL_BK_VHOST:
		return &srv_vhost_ops;
	}
	return NULL;
}

static int dev_open(struct srv *s, unsigned i, const struct xvl_dev_spec *spec,
		    struct xvl_errbuf *eb)
{
	struct srv_dev *d = &s->dev[i];

	d->srv = s;
	d->index = i;
	d->spec = *spec;
	d->fd = -1;
	d->vh.sock = -1;
	d->vh.inflight_fd = -1;
	d->ops = backend_ops(spec->kind);
	d->num_queues = spec->queues ? spec->queues : 1;
	d->max_queue_size = spec->queue_size ? spec->queue_size : XVL_VQ_MAX_SIZE;
	d->features = SRV_RING_FEATURES;
	if (spec->read_only)
		d->features |= 1ull << XVL_BLK_F_RO;
	if (d->num_queues > XVL_MAX_QUEUES)
		return xvl_err(eb, -EINVAL, "device %s: %u queues asked, at most %u", spec->name,
			       d->num_queues, XVL_MAX_QUEUES);
	for (unsigned q = 0; q < XVL_MAX_QUEUES; q++) {
		d->q[q] = (struct srv_queue){.dev = d, .index = (uint16_t)q, .kick_fd = -1,
					     .call_fd = -1, .relay_kick = -1, .relay_call = -1};
	}
	int rc = d->ops->open(d, eb);
	if (rc < 0)
		return rc;
	if (spec->kind != XVL_BK_VHOST) {
		d->features |= (1ull << XVL_BLK_F_SEG_MAX) | (1ull << XVL_BLK_F_BLK_SIZE);
		if (d->num_queues > 1)
			d->features |= 1ull << XVL_BLK_F_MQ;
		srv_blk_fill_config(d, d->num_queues, SRV_MAX_SEGS);
	}
	return 0;
}

static void queue_stop(struct srv_queue *q)
{
	struct srv *s = q->dev->srv;
	if (q->enabled && q->poll)
		s->poll_queues--;
	q->enabled = false;
	q->more = false;
	srv_unwatch(s, q->kick_fd);
	if (q->kick_fd >= 0)
		close(q->kick_fd);
	if (q->call_fd >= 0)
		close(q->call_fd);
	q->kick_fd = q->call_fd = -1;
	/* req[] stays while requests are in flight: their completions still land there */
	if (!q->inflight) {
		free(q->req);
		q->req = NULL;
	}
}

/* Stop serving the device's queues (reset); in-flight requests finish on their own. */
static void dev_reset(struct srv_dev *d)
{
	if (d->spec.kind == XVL_BK_VHOST)
		srv_bridge_stop(d);
	for (unsigned q = 0; q < XVL_MAX_QUEUES; q++)
		queue_stop(&d->q[q]);
	d->status = 0;
	d->driver_features = 0;
	d->broken = false;
}

void srv_dev_reset(struct srv_dev *d)
{
	dev_reset(d);
}

static unsigned dev_inflight(const struct srv_dev *d)
{
	unsigned n = 0;
	for (unsigned q = 0; q < XVL_MAX_QUEUES; q++)
		n += d->q[q].inflight;
	return n;
}

/* ------------------------------------------------------------ replies */

static void send_msg(struct srv_conn *c, struct xvl_msg *m)
{
	if (c->mbox) {
		srv_mbox_send(c, m);
		return;
	}
	uint8_t buf[XVL_MSG_MAX_SIZE];
	int n = xvl_msg_encode(m, buf, sizeof(buf));
	if (n > 0)
		xvl_os_send(c->fd, buf, (size_t)n, NULL, 0);
}

static void reply_status(struct srv_conn *c, const struct xvl_msg *req, int status)
{
	struct xvl_msg rep = {.type = req->type, .flags = XVL_MSG_F_REPLY, .seq = req->seq,
			      .status = status};
	send_msg(c, &rep);
}

/* ------------------------------------------------------------ connections */

static void conn_free(struct srv_conn *c)
{
	struct srv *s = c->srv;
	for (struct srv_conn **p = &s->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	if (!c->mbox) /* a mailbox session borrows the window of its mailbox */
		xvl_os_window_close(&c->win);
	free(c);
}

static bool conn_has_devices(const struct srv_conn *c)
{
	for (unsigned i = 0; i < c->srv->n_devs; i++)
		if (c->srv->dev[i].conn == c)
			return true;
	return false;
}

/* A device of a closing connection, or one being detached, has drained. */
static void dev_release_if_idle(struct srv_dev *d)
{
	struct srv_conn *c = d->conn;
	if (!c || dev_inflight(d))
		return;
	for (unsigned q = 0; q < XVL_MAX_QUEUES; q++)
		queue_stop(&d->q[q]);
	if (c->pending_detach_dev == (int)d->index) {
		struct xvl_msg req = {.type = c->pending_detach_type, .seq = c->pending_detach_seq};
		c->pending_detach_dev = -1;
		if (req.type == XVL_MSG_DETACH)
			d->conn = NULL;
		reply_status(c, &req, 0);
	}
	if (c->closing) {
		d->conn = NULL;
		if (!conn_has_devices(c))
			conn_free(c);
	}
}

static void conn_close(struct srv_conn *c)
{
	struct srv *s = c->srv;
	if (c->name[0]) /* a probe that never said HELLO is not worth a line */
		srv_log(s, "client %s disconnected", c->name);
	if (c->fd >= 0) {
		srv_unwatch(s, c->fd);
		close(c->fd);
	}
	c->fd = -1;
	if (c->mbox)
		srv_mbox_conn_closed(c);
	/*
	 * Not dev_release_if_idle() here: it frees c once the last device is
	 * released, and c is still used below.  Idle devices are released now;
	 * ones with requests in flight keep c until reap_ring() drains them.
	 */
	for (unsigned i = 0; i < s->n_devs; i++) {
		struct srv_dev *d = &s->dev[i];
		if (d->conn != c)
			continue;
		dev_reset(d);
		if (!dev_inflight(d))
			d->conn = NULL;
	}
	c->closing = true;
	if (!conn_has_devices(c))
		conn_free(c);
}

static void accept_conn(struct srv *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct srv_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->srv = s;
	c->fd = fd;
	c->win.fd = -1;
	c->pending_detach_dev = -1;
	if (srv_watch(s, fd, &c->w, W_CONN, c) < 0) {
		close(fd);
		free(c);
		return;
	}
	c->next = s->conns;
	s->conns = c;
}

/* ------------------------------------------------------------ link handlers */

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

static int on_hello(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep)
{
	snprintf(c->name, sizeof(c->name), "%s", m->u.hello.name);
	if (m->u.hello.major != XVL_PROTO_MAJOR) {
		srv_log(c->srv, "client %s speaks protocol %u.%u; refused", c->name, m->u.hello.major,
			m->u.hello.minor);
		return -EPROTONOSUPPORT;
	}
	c->hello_ok = true;
	rep->u.hello = (struct xvl_m_hello){.major = XVL_PROTO_MAJOR, .minor = XVL_PROTO_MINOR,
					    .caps = XVL_CAP_POLL, .n_devices = c->srv->n_devs};
	snprintf(rep->u.hello.name, sizeof(rep->u.hello.name), "%s",
		 c->srv->opts.name ? c->srv->opts.name : "xvl-server");
	srv_log(c->srv, "client %s connected", c->name);
	return 0;
}

static int on_dev_info(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep)
{
	if (m->u.dev.dev >= c->srv->n_devs)
		return -ENODEV;
	struct srv_dev *d = &c->srv->dev[m->u.dev.dev];
	if (d->spec.kind == XVL_BK_VHOST)
		srv_bridge_probe_if_needed(d);
	rep->u.info = (struct xvl_m_dev_info){.dev = d->index, .virtio_id = XVL_VIRTIO_ID_BLOCK,
					      .num_queues = d->num_queues,
					      .max_queue_size = d->max_queue_size,
					      .config_len = d->config_len, .features = d->features};
	snprintf(rep->u.info.name, sizeof(rep->u.info.name), "%s", d->spec.name);
	return 0;
}

static int on_attach(struct srv_conn *c, const struct xvl_msg *m)
{
	if (m->u.dev.dev >= c->srv->n_devs)
		return -ENODEV;
	struct srv_dev *d = &c->srv->dev[m->u.dev.dev];
	if (d->conn == c)
		return -EALREADY;
	if (d->conn)
		return -EBUSY;
	if (d->spec.kind == XVL_BK_VHOST && !d->vh_probed)
		return -EHOSTDOWN; /* its backend has not answered yet (the server log says why) */
	d->conn = c;
	d->status = 0;
	d->broken = false;
	srv_log(c->srv, "client %s attached device %s", c->name, d->spec.name);
	return 0;
}

static int on_set_window(struct srv_conn *c, const struct xvl_msg *m, int *fds, unsigned nfds)
{
	struct xvl_errbuf eb;
	if (c->mbox)
		return -EEXIST; /* the window is the one the mailbox is in */
	if (nfds != 1)
		return -EBADMSG;
	if (c->has_window)
		return -EEXIST;
	/* Sealed before the size check in map: the size checked is the size that stays. */
	if (xvl_os_window_seal(fds[0]) < 0) {
		srv_log(c->srv, "client %s: window refused: it is not a memfd sealed (or sealable) "
			"against shrinking, so the client could make the server fault by truncating it",
			c->name);
		return -EPERM;
	}
	int rc = xvl_os_window_map(&c->win, fds[0], m->u.window.size, &eb);
	fds[0] = -1; /* consumed */
	if (rc < 0) {
		srv_log(c->srv, "client %s: %s", c->name, eb.msg);
		return rc;
	}
	rc = xvl_win_check(&c->win.mem);
	if (rc < 0) {
		srv_log(c->srv, "client %s: window header is invalid (%d)", c->name, rc);
		xvl_os_window_close(&c->win);
		return rc;
	}
	c->has_window = true;
	return 0;
}

static int on_set_features(struct srv_conn *c, const struct xvl_msg *m)
{
	int err;
	struct srv_dev *d = owned_dev(c, m->u.feat.dev, &err);
	if (!d)
		return err;
	uint64_t f = m->u.feat.features;
	if ((f & ~d->features) || !(f & (1ull << XVL_F_VERSION_1)) ||
	    (d->status & XVL_STATUS_FEATURES_OK))
		return -EOPNOTSUPP;
	d->driver_features = f;
	return 0;
}

static int on_get_config(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep)
{
	if (m->u.cfg.dev >= c->srv->n_devs)
		return -ENODEV;
	const struct srv_dev *d = &c->srv->dev[m->u.cfg.dev];
	if (m->u.cfg.off > d->config_len || m->u.cfg.len > d->config_len - m->u.cfg.off)
		return -ERANGE;
	rep->u.cfg.len = m->u.cfg.len;
	memcpy(rep->u.cfg.data, d->config + m->u.cfg.off, m->u.cfg.len);
	return 0;
}

static bool feature(const struct srv_dev *d, unsigned bit)
{
	return d->driver_features & (1ull << bit);
}

static int queue_setup(struct srv_queue *q, const struct xvl_m_queue *mq, int *fds)
{
	struct srv_dev *d = q->dev;
	struct xvl_vq_layout l = {.num = mq->num, .desc = mq->desc, .avail = mq->avail,
				  .used = mq->used};
	int rc = xvl_vq_layout_check(&d->conn->win.mem, &l);
	if (rc < 0)
		return rc;
	if (mq->num > d->max_queue_size)
		return -EINVAL;
	if (q->inflight)
		return -EBUSY;
	queue_stop(q);
	rc = xvl_vq_dev_init(&q->vq, &d->conn->win.mem, &l, feature(d, XVL_F_EVENT_IDX),
			     feature(d, XVL_F_INDIRECT_DESC), mq->avail_base, mq->used_base);
	if (rc < 0)
		return rc;
	q->req = calloc(mq->num, sizeof(*q->req));
	if (!q->req)
		return -ENOMEM;
	q->poll = mq->flags & XVL_QUEUE_F_POLL;
	if (!q->poll) {
		q->kick_fd = fds[0];
		q->call_fd = fds[1];
		fds[0] = fds[1] = -1;
	}
	return 0;
}

static int on_set_queue(struct srv_conn *c, const struct xvl_msg *m, int *fds, unsigned nfds)
{
	int err;
	const struct xvl_m_queue *mq = &m->u.queue;
	struct srv_dev *d = owned_dev(c, mq->dev, &err);
	if (!d)
		return err;
	if (!c->has_window)
		return -ENXIO;
	if (mq->queue >= d->num_queues)
		return -EINVAL;
	if (nfds != xvl_msg_nfds(m))
		return -EBADMSG;
	/* The mailbox link names doorbell vectors; a queue there needs them (or POLL). */
	if (c->mbox && !(mq->flags & (XVL_QUEUE_F_POLL | XVL_QUEUE_F_VECTORS)))
		return -EINVAL;
	if (!(d->status & XVL_STATUS_FEATURES_OK) || (d->status & XVL_STATUS_DRIVER_OK))
		return -EPERM;
	int vfds[2] = {-1, -1};
	if ((mq->flags & XVL_QUEUE_F_VECTORS) && !(mq->flags & XVL_QUEUE_F_POLL)) {
		int vrc = srv_mbox_queue_fds(c, mq, vfds);
		if (vrc < 0)
			return vrc;
		fds = vfds;
	}
	int rc = queue_setup(&d->q[mq->queue], mq, fds);
	for (unsigned i = 0; i < 2; i++)
		if (vfds[i] >= 0)
			close(vfds[i]); /* not taken by queue_setup (it sets what it takes to -1) */
	if (rc < 0)
		srv_log(c->srv, "client %s: device %s queue %u refused: %s", c->name, d->spec.name,
			mq->queue, strerror(-rc));
	return rc;
}

/* DRIVER_OK: start serving every queue that was set up. */
static int dev_start(struct srv_dev *d)
{
	struct srv *s = d->srv;
	if (d->spec.kind == XVL_BK_VHOST) {
		struct xvl_errbuf eb;
		int rc = srv_bridge_start(d, &eb);
		if (rc < 0)
			srv_log(s, "%s", eb.msg);
		return rc;
	}
	for (unsigned i = 0; i < d->num_queues; i++) {
		struct srv_queue *q = &d->q[i];
		if (!q->req)
			continue;
		q->enabled = true;
		if (q->poll)
			s->poll_queues++;
		else if (srv_watch(s, q->kick_fd, &q->kick_w, W_KICK, q) < 0)
			return -errno;
		q->more = true; /* pick up anything queued before DRIVER_OK */
	}
	return 0;
}

static int on_set_status(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep)
{
	int err;
	struct srv_dev *d = owned_dev(c, m->u.st.dev, &err);
	if (!d)
		return err;
	uint32_t st = m->u.st.status;
	uint32_t was = d->status;
	if (st == 0) {
		dev_reset(d);
	} else {
		if ((st & XVL_STATUS_FEATURES_OK) && !(was & XVL_STATUS_FEATURES_OK) &&
		    !(d->driver_features & (1ull << XVL_F_VERSION_1)))
			st &= ~XVL_STATUS_FEATURES_OK; /* the driver sees it refused */
		d->status = st | (was & XVL_STATUS_NEEDS_RESET);
		if ((st & XVL_STATUS_DRIVER_OK) && !(was & XVL_STATUS_DRIVER_OK)) {
			int rc = dev_start(d);
			if (rc < 0) {
				d->status = (d->status & ~XVL_STATUS_DRIVER_OK) | XVL_STATUS_NEEDS_RESET;
				d->broken = true;
			}
		}
	}
	rep->u.st.dev = d->index;
	rep->u.st.status = d->status;
	return 0;
}

static int on_get_status(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep)
{
	int err;
	struct srv_dev *d = owned_dev(c, m->u.dev.dev, &err);
	if (!d)
		return err;
	rep->u.st.dev = d->index;
	rep->u.st.status = d->status;
	return 0;
}

/* DETACH and RESET: reply once no request of the device is in flight. */
static int on_detach_or_reset(struct srv_conn *c, const struct xvl_msg *m, bool *deferred)
{
	int err;
	struct srv_dev *d = owned_dev(c, m->u.dev.dev, &err);
	if (!d)
		return err;
	if (c->pending_detach_dev >= 0)
		return -EBUSY;
	dev_reset(d);
	if (dev_inflight(d)) {
		c->pending_detach_dev = (int)d->index;
		c->pending_detach_seq = m->seq;
		c->pending_detach_type = m->type;
		*deferred = true;
		return 0;
	}
	if (m->type == XVL_MSG_DETACH) {
		srv_log(c->srv, "client %s detached device %s", c->name, d->spec.name);
		d->conn = NULL;
	}
	return 0;
}

static int on_get_stats(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep)
{
	if (m->u.dev.dev >= c->srv->n_devs)
		return -ENODEV;
	const struct srv_dev *d = &c->srv->dev[m->u.dev.dev];
	rep->u.stats = (struct xvl_m_stats){.dev = d->index, .requests = d->st_requests,
					    .bytes = d->st_bytes, .errors = d->st_errors,
					    .notifies = d->st_notifies};
	return 0;
}

static void dispatch(struct srv_conn *c, const struct xvl_msg *m, int *fds, unsigned nfds)
{
	struct xvl_msg rep = {.type = m->type, .flags = XVL_MSG_F_REPLY, .seq = m->seq};
	bool deferred = false;
	int rc;

	/* HELLO must come first (and succeed): no version check, no service. */
	if (!c->hello_ok && m->type != XVL_MSG_HELLO) {
		rep.status = -EPROTO;
		send_msg(c, &rep);
		return;
	}
	switch (m->type) {
	case XVL_MSG_HELLO: rc = on_hello(c, m, &rep); break;
	case XVL_MSG_DEV_INFO: rc = on_dev_info(c, m, &rep); break;
	case XVL_MSG_ATTACH: rc = on_attach(c, m); break;
	case XVL_MSG_DETACH:
	case XVL_MSG_RESET: rc = on_detach_or_reset(c, m, &deferred); break;
	case XVL_MSG_SET_WINDOW: rc = on_set_window(c, m, fds, nfds); break;
	case XVL_MSG_SET_FEATURES: rc = on_set_features(c, m); break;
	case XVL_MSG_GET_CONFIG: rc = on_get_config(c, m, &rep); break;
	case XVL_MSG_SET_CONFIG: rc = -EPERM; break; /* virtio-blk config is read-only here */
	case XVL_MSG_SET_QUEUE: rc = on_set_queue(c, m, fds, nfds); break;
	case XVL_MSG_SET_STATUS: rc = on_set_status(c, m, &rep); break;
	case XVL_MSG_GET_STATUS: rc = on_get_status(c, m, &rep); break;
	case XVL_MSG_GET_STATS: rc = on_get_stats(c, m, &rep); break;
	default: rc = -EOPNOTSUPP; break;
	}
	if (deferred)
		return;
	rep.status = rc;
	send_msg(c, &rep);
}

void srv_conn_dispatch(struct srv_conn *c, const struct xvl_msg *m)
{
	dispatch(c, m, NULL, 0);
}

void srv_conn_close(struct srv_conn *c)
{
	conn_close(c);
}

static void on_conn_readable(struct srv_conn *c)
{
	uint8_t buf[XVL_MSG_MAX_SIZE];
	int fds[XVL_OS_MAX_FDS];
	unsigned nfds = 0;
	struct xvl_msg m;

	long n = xvl_os_recv(c->fd, buf, sizeof(buf), fds, XVL_OS_MAX_FDS, &nfds);
	if (n <= 0) {
		if (n < 0 && n != -ECONNRESET)
			srv_log(c->srv, "client %s: link error: %s", c->name, strerror((int)-n));
		conn_close(c);
		return;
	}
	int rc = xvl_msg_decode(buf, (size_t)n, &m);
	if (rc < 0 || xvl_msg_is_reply(&m)) {
		srv_log(c->srv, "client %s sent a malformed message (%s); closing its link",
			c->name[0] ? c->name : "(unnamed)", rc < 0 ? strerror(-rc) : "unexpected reply");
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		conn_close(c);
		return;
	}
	dispatch(c, &m, fds, nfds);
	for (unsigned i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* ------------------------------------------------------------ io_uring completions */

static uint8_t cqe_status(const struct srv_req *r, int res)
{
	if (res < 0)
		return XVL_BLK_S_IOERR;
	if ((r->type == XVL_BLK_T_IN || r->type == XVL_BLK_T_OUT) && (uint64_t)res != r->bytes)
		return XVL_BLK_S_IOERR;
	return XVL_BLK_S_OK;
}

static void reap_ring(struct srv *s)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	if (!s->ring_ok)
		return;
	io_uring_for_each_cqe(&s->ring, head, cqe) {
		struct srv_req *r = io_uring_cqe_get_data(cqe);
		struct srv_queue *q = r->q;
		srv_req_done(r, cqe_status(r, cqe->res));
		q->more = true; /* notify, and look for new work, on the next pass */
		n++;
		if (!q->enabled && !q->inflight)
			dev_release_if_idle(q->dev);
	}
	io_uring_cq_advance(&s->ring, n);
}

/* ------------------------------------------------------------ loop */

static bool service_queues(struct srv *s)
{
	bool busy = false;
	for (unsigned i = 0; i < s->n_devs; i++) {
		struct srv_dev *d = &s->dev[i];
		for (unsigned j = 0; j < d->num_queues; j++) {
			struct srv_queue *q = &d->q[j];
			if (!q->enabled || d->broken || (!q->poll && !q->more))
				continue;
			srv_queue_process(q);
			busy |= q->more;
		}
	}
	return busy;
}

static void on_event(struct srv *s, struct srv_watch *w)
{
	switch (w->kind) {
	case W_LISTEN:
		accept_conn(s);
		break;
	case W_SIGNAL: {
		struct signalfd_siginfo si;
		if (read(s->signal_fd, &si, sizeof(si)) == sizeof(si))
			s->stop = 1;
		break;
	}
	case W_RING:
		reap_ring(s);
		break;
	case W_CONN:
		on_conn_readable(w->obj);
		break;
	case W_KICK: {
		struct srv_queue *q = w->obj;
		xvl_os_eventfd_drain(q->kick_fd);
		if (q->dev->spec.kind == XVL_BK_VHOST)
			srv_bridge_relay(s, q, true);
		else
			q->more = true;
		break;
	}
	case W_RELAY_CALL:
		srv_bridge_relay(s, w->obj, false);
		break;
	case W_VHOST:
		srv_bridge_lost(w->obj);
		break;
	case W_VHOST_TIMER:
		srv_bridge_retry(w->obj);
		break;
	case W_MBOX:
	case W_IVSH_LISTEN:
	case W_IVSH_PEER:
		srv_mbox_on_event(s, w);
		break;
	}
}

int xvl_server_run(struct xvl_server *xs)
{
	struct srv *s = (struct srv *)xs;
	struct epoll_event ev[MAX_EVENTS];
	bool busy = false;

	srv_log(s, "serving %u device(s) on %s", s->n_devs,
		s->opts.listen ? s->opts.listen : s->opts.window);
	while (!s->stop) {
		int timeout = busy || s->poll_queues ? 0 : -1;
		long idle_us = srv_mbox_idle_us(s, busy);
		if (idle_us >= 0 && (timeout < 0 || idle_us == 0 || !busy))
			timeout = (int)((idle_us + 999) / 1000); /* polling a window link: bounded, adaptive */
		int n = epoll_wait(s->epfd, ev, MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < n; i++)
			on_event(s, ev[i].data.ptr);
		srv_mbox_poll(s);
		if (s->poll_queues)
			reap_ring(s);
		busy = service_queues(s);
		if (s->ring_pending) {
			io_uring_submit(&s->ring);
			s->ring_pending = 0;
		}
	}
	srv_log(s, "stopping");
	return 0;
}

void xvl_server_stop(struct xvl_server *xs)
{
	((struct srv *)xs)->stop = 1;
}

/* ------------------------------------------------------------ create / destroy */

static int setup_signals(struct srv *s, struct xvl_errbuf *eb)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN); /* a client that vanished must not kill the server */
	s->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (s->signal_fd < 0)
		return xvl_err(eb, -errno, "signalfd: %s", strerror(errno));
	return srv_watch(s, s->signal_fd, &s->signal_w, W_SIGNAL, NULL);
}

static int setup_ring(struct srv *s)
{
	if (io_uring_queue_init(RING_DEPTH, &s->ring, 0) < 0)
		return 0; /* file backends will say so; the others do not need it */
	s->ring_ok = true;
	return srv_watch(s, s->ring.ring_fd, &s->ring_w, W_RING, NULL);
}

static int server_setup(struct srv *s, struct xvl_errbuf *eb)
{
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0)
		return xvl_err(eb, -errno, "epoll: %s", strerror(errno));
	int rc = setup_signals(s, eb);
	if (rc == 0)
		rc = setup_ring(s);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < s->opts.n_devs; i++) {
		rc = dev_open(s, i, &s->opts.devs[i], eb);
		s->n_devs = i + 1;
		if (rc < 0)
			return rc;
	}
	rc = srv_mbox_setup(s, eb);
	if (rc < 0 || !s->opts.listen)
		return rc;
	s->listen_fd = xvl_os_listen(s->opts.listen, eb);
	if (s->listen_fd < 0)
		return s->listen_fd;
	return srv_watch(s, s->listen_fd, &s->listen_w, W_LISTEN, NULL);
}

int xvl_server_create(struct xvl_server **out, const struct xvl_server_opts *o,
		      struct xvl_errbuf *eb)
{
	*out = NULL;
	if (!o->listen && !o->window)
		return xvl_err(eb, -EINVAL, "no socket path to listen on and no window link");
	if (o->n_devs == 0 || o->n_devs > XVL_SERVER_MAX_DEVS)
		return xvl_err(eb, -EINVAL, "between 1 and %u devices needed, %u given",
			       XVL_SERVER_MAX_DEVS, o->n_devs);
	for (unsigned i = 0; i < o->n_devs; i++)
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(o->devs[i].name, o->devs[j].name))
				return xvl_err(eb, -EINVAL, "two devices are called %s", o->devs[i].name);
	struct srv *s = calloc(1, sizeof(*s));
	if (!s)
		return xvl_err(eb, -ENOMEM, "out of memory");
	s->opts = *o;
	s->epfd = s->listen_fd = s->signal_fd = -1;
	int rc = server_setup(s, eb);
	if (rc < 0) {
		xvl_server_destroy((struct xvl_server *)s);
		return rc;
	}
	*out = (struct xvl_server *)s;
	return 0;
}

void xvl_server_destroy(struct xvl_server *xs)
{
	struct srv *s = (struct srv *)xs;
	if (!s)
		return;
	srv_mbox_destroy(s);
	while (s->conns) {
		struct srv_conn *c = s->conns;
		if (!c->closing)
			conn_close(c);
		if (s->conns == c) /* still has requests in flight: drop it anyway */
			conn_free(c);
	}
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	for (unsigned i = 0; i < s->n_devs; i++) {
		struct srv_dev *d = &s->dev[i];
		for (unsigned q = 0; q < XVL_MAX_QUEUES; q++) {
			d->q[q].inflight = 0;
			queue_stop(&d->q[q]);
		}
		if (d->ops)
			d->ops->close(d);
	}
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(s->opts.listen);
	}
	if (s->signal_fd >= 0)
		close(s->signal_fd);
	if (s->epfd >= 0)
		close(s->epfd);
	free(s);
}
