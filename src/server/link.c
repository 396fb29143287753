/* SPDX-License-Identifier: MIT */
/*
 * Link requests: one decoded message in, one reply out (or a reply the
 * device state machine defers, see devstate.c).
 *
 * Checked in this order for every request: HELLO state (nothing but HELLO
 * before one was accepted, -EPROTO; nothing at all after a refused one,
 * -EPROTO), the number of descriptors the message carries (exactly what
 * the type takes, else -EBADMSG), then the request's own checks.  A
 * refusal is always a reply with a negative status; the link stays up.
 * Only malformed bytes close the link (conn.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "srv.h"
#include "xvl_atomic.h"
#include "virtio_blk.h"

static int on_hello(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep)
{
	if (c->hello == SRV_HELLO_DONE)
		return -EALREADY;
	snprintf(c->name, sizeof(c->name), "%s", m->u.hello.name);
	if (m->u.hello.major != XVL_PROTO_MAJOR) {
		srv_log(c->srv, "client %s speaks protocol %u.%u; refused (this link stays unusable)",
			c->name, m->u.hello.major, m->u.hello.minor);
		c->hello = SRV_HELLO_REFUSED;
		return -EPROTONOSUPPORT;
	}
	c->hello = SRV_HELLO_DONE;
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
	rep->u.info = (struct xvl_m_dev_info){.dev = d->index, .virtio_id = d->spec.type == XVL_DEV_NET ? XVL_VIRTIO_ID_NET : XVL_VIRTIO_ID_BLOCK,
					      .num_queues = d->num_queues,
					      .max_queue_size = d->max_queue_size,
					      .config_len = d->config_len, .features = d->features};
	snprintf(rep->u.info.name, sizeof(rep->u.info.name), "%s", d->spec.name);
	return 0;
}

static int on_set_window(struct srv_conn *c, const struct xvl_msg *m, int *fds)
{
	struct xvl_errbuf eb;
	if (c->has_window)
		return -EEXIST;
	uint64_t cap = c->srv->opts.max_window ? c->srv->opts.max_window : XVL_SERVER_MAX_WINDOW;
	if (m->u.window.size > cap) { /* what the server faults in is charged to its cgroup */
		srv_log(c->srv, "client %s: window of %llu bytes refused: this server takes at most "
			"%llu (xvl server --max-window)", c->name,
			(unsigned long long)m->u.window.size, (unsigned long long)cap);
		return -EFBIG;
	}
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

static int on_get_stats(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep)
{
	if (m->u.dev.dev >= c->srv->n_devs)
		return -ENODEV;
	const struct srv_dev *d = &c->srv->dev[m->u.dev.dev];
	rep->u.stats = (struct xvl_m_stats){.dev = d->index, .requests = d->st_requests,
					    .bytes = d->st_bytes, .errors = d->st_errors,
					    .notifies = d->st_notifies};
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++) { /* a worker may be counting */
		const struct srv_queue *q = &d->q[i];
		rep->u.stats.requests += xvl_load_relaxed(&q->st_requests);
		rep->u.stats.bytes += xvl_load_relaxed(&q->st_bytes);
		rep->u.stats.errors += xvl_load_relaxed(&q->st_errors);
		rep->u.stats.notifies += xvl_load_relaxed(&q->st_notifies);
	}
	return 0;
}

/* The checks every request passes before its own; 0 or the refusal. */
static int admissible(const struct srv_conn *c, const struct xvl_msg *m, unsigned nfds)
{
	if (c->hello == SRV_HELLO_REFUSED)
		return -EPROTO;
	if (c->hello == SRV_HELLO_AWAITED && m->type != XVL_MSG_HELLO)
		return -EPROTO;
	/* The mailbox link: the window is the mailbox's, queues name doorbell vectors or poll. */
	if (c->mbox && m->type == XVL_MSG_SET_WINDOW)
		return -EEXIST;
	if (c->mbox && m->type == XVL_MSG_SET_QUEUE &&
	    !(m->u.queue.flags & (XVL_QUEUE_F_POLL | XVL_QUEUE_F_VECTORS)))
		return -EINVAL;
	if (nfds != xvl_msg_nfds(m))
		return -EBADMSG;
	return 0;
}

/* SET_QUEUE with doorbell vectors: they become the queue's kick and call eventfds. */
static int on_set_queue_vectors(struct srv_conn *c, const struct xvl_msg *m)
{
	int vfds[2];
	int rc = srv_mbox_queue_fds(c, &m->u.queue, vfds);
	if (rc < 0)
		return rc;
	rc = srv_dev_on_set_queue(c, m, vfds);
	for (unsigned i = 0; i < 2; i++)
		if (vfds[i] >= 0)
			close(vfds[i]); /* not taken (queue_setup sets what it takes to -1) */
	return rc;
}

static int handle(struct srv_conn *c, const struct xvl_msg *m, int *fds, struct xvl_msg *rep,
		  bool *deferred)
{
	if (m->type == XVL_MSG_SET_QUEUE && (m->u.queue.flags & XVL_QUEUE_F_VECTORS) &&
	    !(m->u.queue.flags & XVL_QUEUE_F_POLL))
		return on_set_queue_vectors(c, m);
	switch (m->type) {
	case XVL_MSG_HELLO: return on_hello(c, m, rep);
	case XVL_MSG_DEV_INFO: return on_dev_info(c, m, rep);
	case XVL_MSG_ATTACH: return srv_dev_on_attach(c, m);
	case XVL_MSG_DETACH:
	case XVL_MSG_RESET: return srv_dev_on_detach_or_reset(c, m, deferred);
	case XVL_MSG_SET_WINDOW: return on_set_window(c, m, fds);
	case XVL_MSG_SET_FEATURES: return srv_dev_on_set_features(c, m);
	case XVL_MSG_GET_CONFIG: return on_get_config(c, m, rep);
	case XVL_MSG_SET_CONFIG: return -EPERM; /* virtio-blk config is read-only here */
	case XVL_MSG_SET_QUEUE: return srv_dev_on_set_queue(c, m, fds);
	case XVL_MSG_SET_STATUS: return srv_dev_on_set_status(c, m, rep, deferred);
	case XVL_MSG_GET_STATUS: return srv_dev_on_get_status(c, m, rep);
	case XVL_MSG_GET_STATS: return on_get_stats(c, m, rep);
	default: return -EOPNOTSUPP; /* EVENT: the server's to send */
	}
}

void srv_link_dispatch(struct srv_conn *c, const struct xvl_msg *m, int *fds, unsigned nfds)
{
	struct xvl_msg rep = {.type = m->type, .flags = XVL_MSG_F_REPLY, .seq = m->seq};
	bool deferred = false;
	int rc = admissible(c, m, nfds);
	if (rc == 0)
		rc = handle(c, m, fds, &rep, &deferred);
	if (deferred)
		return;
	rep.status = rc;
	srv_conn_send(c, &rep);
}
