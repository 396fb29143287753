/* SPDX-License-Identifier: MIT */
/*
 * vhost-user bridge: serves a client's virtio-blk device with an unmodified
 * vhost-user-blk backend (qemu-storage-daemon, DPDK's vhost_blk, ...).
 *
 * The backend gets the client's window as its one and only memory region
 * and the client's rings inside it.  Notifications go straight between the
 * client and the backend (the client's kick and call eventfds are handed
 * over), or, with relay=on, through eventfds the server owns and forwards.
 * Either way the server never touches the rings of a bridged device.
 *
 * Each client attachment gets its own vhost-user session: it starts at
 * DRIVER_OK and ends at reset.  When the backend goes away the device waits
 * (the attachment and the client's queue descriptors stay) and the server
 * tries to reach the backend again every RETRY_MS; once it answers, the
 * device is reset and the client told to set it up again (EVENT RESTART)
 * and resubmit what had not completed.  After reconnect_ms without a
 * backend the device is marked broken and the client fails what is pending.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "srv.h"
#include "virtio_blk.h"

#define RETRY_MS 100u

/* What xvloop drivers understand; the client is offered this ∩ the backend's features. */
#define BRIDGE_FEATURES                                                                          \
	((1ull << XVL_F_VERSION_1) | (1ull << XVL_F_INDIRECT_DESC) | (1ull << XVL_F_EVENT_IDX) |  \
	 (1ull << XVL_BLK_F_SIZE_MAX) | (1ull << XVL_BLK_F_SEG_MAX) | (1ull << XVL_BLK_F_RO) |    \
	 (1ull << XVL_BLK_F_BLK_SIZE) | (1ull << XVL_BLK_F_FLUSH) | (1ull << XVL_BLK_F_MQ) |      \
	 (1ull << XVL_BLK_F_DISCARD) | (1ull << XVL_BLK_F_WRITE_ZEROES) |                         \
	 (1ull << XVL_BLK_F_TOPOLOGY))

static uint64_t get_le(const uint8_t *p, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = bytes; i > 0; i--)
		v = v << 8 | p[i - 1];
	return v;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static bool has(uint64_t features, unsigned bit)
{
	return (features >> bit) & 1;
}

/* ------------------------------------------------------------ probing */

/* Queues offered to clients: what the backend has, within xvloop's and the spec's limits. */
static int probe_queues(const struct srv_dev *d, const struct xvl_vhost *v, uint64_t features,
			const uint8_t *cfg, uint16_t *nq, struct xvl_errbuf *eb)
{
	uint64_t n = 1;

	if (has(features, XVL_BLK_F_MQ)) {
		n = get_le(cfg + XVL_BLK_CFG_NUM_QUEUES, 2);
		if (n == 0)
			return xvl_err(eb, -EPROTO,
				       "vhost-user backend %s: GET_CONFIG: the backend offers 0 queues "
				       "(num_queues in its config space)", d->spec.path);
		if (n > v->num_queues)
			n = v->num_queues;
	}
	if (n > XVL_MAX_QUEUES)
		n = XVL_MAX_QUEUES;
	if (d->spec.queues && d->spec.queues < n)
		n = d->spec.queues;
	*nq = (uint16_t)n;
	return 0;
}

/* Turn what the backend said into the device's features, queues and config space. */
static int probe_read(struct srv_dev *d, struct xvl_vhost *v, struct xvl_errbuf *eb)
{
	uint8_t cfg[XVL_BLK_CFG_SIZE];
	uint64_t features = v->features & BRIDGE_FEATURES;
	uint16_t nq = 1;
	if (d->spec.type == XVL_DEV_NET)
		return srv_bridge_net_probe(d, v, eb); /* bridge_net.c */
	int rc = xvl_vhost_get_config(v, 0, cfg, sizeof(cfg), eb);

	if (rc < 0)
		return rc;
	if (d->spec.read_only)
		features |= 1ull << XVL_BLK_F_RO;
	rc = probe_queues(d, v, features, cfg, &nq, eb);
	if (rc < 0)
		return rc;
	uint64_t sectors = get_le(cfg + XVL_BLK_CFG_CAPACITY, 8);
	if (sectors > UINT64_MAX / XVL_BLK_SECTOR_SIZE)
		return xvl_err(eb, -EPROTO, "vhost-user backend %s: GET_CONFIG: capacity %llu sectors "
			       "is impossible", d->spec.path, (unsigned long long)sectors);
	uint32_t bs = (uint32_t)get_le(cfg + XVL_BLK_CFG_BLK_SIZE, 4);
	if (!has(features, XVL_BLK_F_BLK_SIZE) || bs < 512 || bs > 65536 || (bs & (bs - 1)))
		bs = XVL_BLK_SECTOR_SIZE;
	if (has(features, XVL_BLK_F_MQ))
		put_le16(cfg + XVL_BLK_CFG_NUM_QUEUES, nq);
	memcpy(d->config, cfg, sizeof(cfg));
	d->config_len = sizeof(cfg);
	d->features = features;
	d->num_queues = nq;
	d->capacity = sectors * XVL_BLK_SECTOR_SIZE;
	d->block_size = bs;
	d->vh_probed = true;
	return 0;
}

/* One short session: handshake, config, disconnect.  The backend serves the next frontend. */
static int bridge_probe(struct srv_dev *d, struct xvl_errbuf *eb)
{
	struct xvl_vhost v;
	int rc = xvl_vhost_connect(&v, d->spec.path, eb);

	if (rc == 0)
		rc = probe_read(d, &v, eb);
	if (rc == 0)
		srv_log(d->srv, "device %s: vhost-user backend %s: features 0x%llx (0x%llx offered "
			"to clients), protocol features 0x%llx, %u queue(s), %llu bytes",
			d->spec.name, d->spec.path, (unsigned long long)v.features,
			(unsigned long long)d->features, (unsigned long long)v.protocol_features,
			d->num_queues, (unsigned long long)d->capacity);
	xvl_vhost_close(&v);
	return rc;
}

void srv_bridge_probe_if_needed(struct srv_dev *d)
{
	struct xvl_errbuf eb;

	if (d->vh_probed || d->vh_up || d->vh_timer >= 0)
		return;
	if (bridge_probe(d, &eb) < 0)
		srv_log(d->srv, "device %s: %s", d->spec.name, eb.msg);
}

/* ------------------------------------------------------------ notifications */

static void relay_close(struct srv_queue *q)
{
	struct srv *s = q->dev->srv;

	if (q->relay_call >= 0) {
		srv_unwatch(s, q->relay_call);
		close(q->relay_call);
	}
	if (q->relay_kick >= 0) {
		srv_unwatch(s, q->kick_fd); /* the kick watch exists only in relay mode */
		close(q->relay_kick);
	}
	q->relay_kick = q->relay_call = -1;
}

/* Server-owned eventfds the backend uses; the client's kicks are forwarded to them. */
static int relay_open(struct srv_queue *q, struct xvl_errbuf *eb)
{
	struct srv *s = q->dev->srv;

	q->relay_kick = xvl_os_eventfd();
	q->relay_call = xvl_os_eventfd();
	if (q->relay_kick < 0 || q->relay_call < 0 ||
	    srv_watch(s, q->relay_call, &q->relay_call_w, W_RELAY_CALL, q) < 0) {
		int rc = -errno;
		if (q->relay_call >= 0)
			close(q->relay_call);
		if (q->relay_kick >= 0)
			close(q->relay_kick);
		q->relay_kick = q->relay_call = -1;
		return xvl_err(eb, rc, "device %s queue %u: relay eventfds: %s", q->dev->spec.name,
			       q->index, strerror(-rc));
	}
	if (srv_watch(s, q->kick_fd, &q->kick_w, W_KICK, q) < 0) {
		int rc = -errno;
		relay_close(q);
		return xvl_err(eb, rc, "device %s queue %u: watching the kick eventfd: %s",
			       q->dev->spec.name, q->index, strerror(-rc));
	}
	return 0;
}

void srv_bridge_relay(struct srv *s, struct srv_queue *q, bool from_client)
{
	struct srv_dev *d = q->dev;

	(void)s;
	if (from_client) { /* on_event drained the client's kick fd */
		if (d->vh_up && q->relay_kick >= 0)
			xvl_os_eventfd_signal(q->relay_kick);
		return;
	}
	if (q->relay_call < 0 || !xvl_os_eventfd_drain(q->relay_call))
		return;
	if (d->vh_up && q->call_fd >= 0) {
		xvl_os_peer_eventfd_signal(&d->srv->guard, q->call_fd); /* the client's: never blocks */
		d->st_notifies++;
	}
}

/* ------------------------------------------------------------ sessions */

static bool queue_set_up(const struct srv_queue *q)
{
	return q->req != NULL;
}

/* The queues the client set up must have eventfds: the backend cannot poll for us. */
static int check_queues(struct srv_dev *d, uint16_t *nq, uint16_t *qsize, struct xvl_errbuf *eb)
{
	*nq = 0;
	*qsize = 0;
	for (uint16_t i = 0; i < d->num_queues; i++) {
		const struct srv_queue *q = &d->q[i];
		if (!queue_set_up(q))
			continue;
		if (q->poll || q->kick_fd < 0 || q->call_fd < 0)
			return xvl_err(eb, -EOPNOTSUPP,
				       "device %s queue %u: poll mode is not available with a "
				       "vhost-user backend; open the device without polling",
				       d->spec.name, i);
		*nq = (uint16_t)(i + 1);
		if (q->vq.num > *qsize)
			*qsize = q->vq.num;
	}
	if (*nq == 0)
		return xvl_err(eb, -EINVAL, "device %s: DRIVER_OK without any queue set up",
			       d->spec.name);
	return 0;
}

/* Handshake and memory: the window is the backend's only memory. */
static int session_open(struct srv_dev *d, uint16_t nq, uint16_t qsize, struct xvl_errbuf *eb)
{
	const struct xvl_os_window *w = &d->conn->win;
	int rc = xvl_vhost_connect(&d->vh, d->spec.path, eb);

	if (rc < 0)
		return rc;
	if (nq > d->vh.num_queues)
		return xvl_err(eb, -EINVAL, "vhost-user backend %s: GET_QUEUE_NUM: %u queue(s), the "
			       "client set up %u", d->spec.path, d->vh.num_queues, nq);
	rc = xvl_vhost_set_features(&d->vh, srv_bridge_features(d), eb);
	if (rc == 0)
		rc = xvl_vhost_set_mem_table(&d->vh, w->fd, w->mem.size, w->mem.base, eb);
	if (rc == 0)
		rc = xvl_vhost_setup_inflight(&d->vh, nq, qsize, false, eb);
	return rc;
}

static int start_queue(struct srv_dev *d, struct srv_queue *q, struct xvl_errbuf *eb)
{
	const uint8_t *base = d->conn->win.mem.base;
	struct xvl_vq_layout l = {
		.num = q->vq.num,
		.desc = (uint64_t)((const uint8_t *)q->vq.desc - base),
		.avail = (uint64_t)((const uint8_t *)q->vq.avail - base),
		.used = (uint64_t)((const uint8_t *)q->vq.used - base),
	};
	int kick = q->kick_fd, call = q->call_fd;

	if (d->spec.relay) {
		int rc = relay_open(q, eb);
		if (rc < 0)
			return rc;
		kick = q->relay_kick;
		call = q->relay_call;
	}
	/* The backend starts where the client's rings start (vq.last_avail = the avail base). */
	return xvl_vhost_start_vring(&d->vh, q->index, &l, q->vq.last_avail, kick, call, eb);
}

/* End the session.  stop_rings: ask the backend for the ring state first (orderly stop). */
static void session_close(struct srv_dev *d, bool stop_rings)
{
	struct xvl_errbuf eb;
	uint16_t base;

	if (d->vh.sock >= 0)
		srv_unwatch(d->srv, d->vh.sock);
	for (uint16_t i = 0; stop_rings && i < d->num_queues && i < d->vh.num_queues; i++) {
		if (!queue_set_up(&d->q[i]) || d->vh.sock < 0)
			continue;
		if (xvl_vhost_stop_vring(&d->vh, i, &base, &eb) < 0)
			srv_log(d->srv, "device %s: %s", d->spec.name, eb.msg);
	}
	xvl_vhost_close(&d->vh);
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++)
		relay_close(&d->q[i]);
	d->vh_up = false;
}

/* Errors that mean "the backend is not there (any more)", worth waiting for. */
static bool retryable(int rc)
{
	return rc == -ENOENT || rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -EPIPE ||
	       rc == -EAGAIN || rc == -ENOTCONN;
}

static int wait_for_backend(struct srv_dev *d);

int srv_bridge_start(struct srv_dev *d, struct xvl_errbuf *eb)
{
	uint16_t nq, qsize;
	int rc;

	if (d->vh_up || d->vh_timer >= 0)
		return xvl_err(eb, -EBUSY, "device %s: a vhost-user session is already running",
			       d->spec.name);
	rc = check_queues(d, &nq, &qsize, eb);
	if (rc == 0)
		rc = session_open(d, nq, qsize, eb);
	for (uint16_t i = 0; rc == 0 && i < nq; i++)
		if (queue_set_up(&d->q[i]))
			rc = start_queue(d, &d->q[i], eb);
	if (rc == 0 && srv_watch(d->srv, d->vh.sock, &d->vh_w, W_VHOST, d) < 0)
		rc = xvl_err(eb, -errno, "device %s: watching the backend socket: %s",
			     d->spec.name, strerror(errno));
	if (rc < 0) {
		session_close(d, false);
		/* Lost while starting is lost: wait for it, then RESTART, as after a loss. */
		if (retryable(rc) && wait_for_backend(d) == 0)
			return 0;
		srv_dev_break(d, rc, "%s", eb->msg);
		return rc;
	}
	d->vh_up = true;
	srv_log(d->srv, "device %s: vhost-user backend %s serves %u queue(s), features 0x%llx, "
		"notifications %s%s", d->spec.name, d->spec.path, nq,
		(unsigned long long)d->driver_features, d->spec.relay ? "relayed" : "direct",
		d->vh.inflight_fd >= 0 ? ", inflight area shared" : "");
	return 0;
}

/* ------------------------------------------------------------ loss and return */

static void timer_stop(struct srv_dev *d)
{
	if (d->vh_timer < 0)
		return;
	srv_unwatch(d->srv, d->vh_timer);
	close(d->vh_timer);
	d->vh_timer = -1;
}

static int timer_start(struct srv_dev *d)
{
	struct itimerspec its = {
		.it_interval = {.tv_nsec = RETRY_MS * 1000000l},
		.it_value = {.tv_nsec = RETRY_MS * 1000000l},
	};
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (timerfd_settime(fd, 0, &its, NULL) < 0 ||
	    srv_watch(d->srv, fd, &d->vh_timer_w, W_VHOST_TIMER, d) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	d->vh_timer = fd;
	d->vh_deadline_ns = xvl_os_now_ns() + (uint64_t)d->spec.reconnect_ms * 1000000ull;
	return 0;
}

static void send_event(struct srv_dev *d, uint32_t code, int reason, const char *msg)
{
	srv_dev_event(d, code, reason, msg); /* queued, never blocks (conn.c) */
}

void srv_bridge_lost(struct srv_dev *d)
{
	char c;
	ssize_t n = d->vh.sock >= 0 ? recv(d->vh.sock, &c, 1, MSG_PEEK | MSG_DONTWAIT) : 0;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	session_close(d, false);
	if (n > 0) {
		srv_dev_break(d, -EPROTO, "vhost-user backend %s sent an unsolicited message",
			      d->spec.path);
		return;
	}
	if (!d->conn || d->conn->closing)
		return;
	srv_bridge_net_link(d, false);
	if (wait_for_backend(d) < 0)
		srv_dev_break(d, -ECONNRESET, "vhost-user backend %s went away", d->spec.path);
}

/* Retry the backend every 100 ms for up to reconnect_ms (0: do not wait). */
static int wait_for_backend(struct srv_dev *d)
{
	int rc = d->spec.reconnect_ms ? timer_start(d) : -ECONNRESET;
	if (rc == 0)
		srv_log(d->srv, "device %s: vhost-user backend %s went away; waiting up to %u ms "
			"for it to come back", d->spec.name, d->spec.path, d->spec.reconnect_ms);
	return rc;
}

/* Errors that mean "not (yet) back": keep trying until the deadline. */
/* The backend answers again: reset the device and have the client set it up afresh. */
static void bridge_restart(struct srv_dev *d)
{
	char msg[64];

	timer_stop(d);
	srv_log(d->srv, "device %s: vhost-user backend %s is back; client %s sets the device up "
		"again", d->spec.name, d->spec.path, d->conn ? d->conn->name : "(none)");
	srv_dev_reset(d);
	srv_bridge_net_link(d, true);
	snprintf(msg, sizeof(msg), "vhost-user backend is back");
	send_event(d, XVL_EVENT_RESTART, 0, msg);
}

void srv_bridge_retry(struct srv_dev *d)
{
	struct xvl_errbuf eb;
	uint64_t ticks;

	if (d->vh_timer < 0)
		return;
	if (read(d->vh_timer, &ticks, sizeof(ticks)) < 0 && errno == EAGAIN)
		return;
	int rc = bridge_probe(d, &eb);
	if (rc == 0) {
		bridge_restart(d);
		return;
	}
	if (!retryable(rc)) {
		timer_stop(d);
		srv_log(d->srv, "device %s: %s", d->spec.name, eb.msg);
		srv_dev_break(d, rc, "%s", eb.msg);
		return;
	}
	if (xvl_os_now_ns() < d->vh_deadline_ns)
		return;
	timer_stop(d);
	srv_log(d->srv, "device %s: vhost-user backend %s did not come back within %u ms (%s)",
		d->spec.name, d->spec.path, d->spec.reconnect_ms, eb.msg);
	srv_dev_break(d, -ETIMEDOUT, "vhost-user backend %s did not come back within %u ms",
		      d->spec.path, d->spec.reconnect_ms);
}

void srv_bridge_stop(struct srv_dev *d)
{
	timer_stop(d);
	if (d->vh_up || d->vh.sock >= 0)
		session_close(d, true);
}

/* ------------------------------------------------------------ backend ops */

static int vhost_open(struct srv_dev *d, struct xvl_errbuf *eb)
{
	struct xvl_errbuf err;

	(void)eb;
	d->vh_timer = -1;
	d->vh.sock = -1;
	d->vh.inflight_fd = -1;
	d->features = 0; /* offline until the backend has answered */
	d->num_queues = 1;
	d->config_len = 0;
	if (bridge_probe(d, &err) < 0)
		srv_log(d->srv, "device %s: %s; the device is offline until the backend answers",
			d->spec.name, err.msg);
	return 0;
}

static void vhost_submit(struct srv_dev *d, struct srv_req *r)
{
	(void)d;
	srv_req_done(r, XVL_BLK_S_IOERR); /* the backend serves the rings itself */
}

static void vhost_close(struct srv_dev *d)
{
	srv_bridge_stop(d);
}

const struct srv_backend_ops srv_vhost_ops = {
	.open = vhost_open,
	.submit = vhost_submit,
	.close = vhost_close,
};
