/* SPDX-License-Identifier: MIT */
/*
 * vhost-user bridge: serves a client's virtio-blk device with an unmodified
 * vhost-user-blk backend (qemu-storage-daemon, DPDK's vhost_blk, ...).
 * This file is the glue between the server and the backend's state machine
 * (bridge_state.c: states, transitions, invariants) and its jobs
 * (bridge_job.c: every call to the backend, off the event loop).
 *
 * The backend gets the client's window as its one and only memory region
 * and the client's rings inside it.  Notifications go straight between the
 * client and the backend (the client's kick and call eventfds are handed
 * over), or, with relay=on, through eventfds the server owns and forwards.
 * Queues the driver polls (no kick or call eventfd: a mailbox link without
 * doorbells) are relayed too, and a thread watches their avail index and
 * kicks the backend (bridge_poll.c).  The server never changes the rings of
 * a bridged device.
 *
 * Each client attachment gets its own vhost-user session: it starts at
 * DRIVER_OK and ends at reset.  When the backend goes away the device waits
 * (the attachment and the client's queue descriptors stay) and the server
 * tries to reach the backend again every RETRY_MS; once the old backend
 * instance has exited (its pidfd) and the backend answers again, the
 * device is reset and the client told to set it up again (EVENT RESTART)
 * and resubmit what had not completed.  After reconnect_ms without a
 * backend the device is marked broken and the client fails what is pending.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "bridge.h"

#define RETRY_MS 100u       /* LOST/WAITING: check and probe this often */
#define PROBE_GAP_MS 500u   /* DEV_INFO-triggered probes: at most one per this */
#define OPEN_WAIT_MS 1000u  /* at server start, wait this long for the first probe */
#define CLOSE_WAIT_MS 1000u /* at server stop, wait this long for a job still out */

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

/* Turn what the backend said (a probe job's outputs) into the device's features,
 * queues and config space. */
static int probe_apply(struct srv_dev *d, const struct xvl_vhost *v, uint8_t *cfg,
		       struct xvl_errbuf *eb)
{
	uint64_t features = v->features & BRIDGE_FEATURES;
	uint16_t nq = 1;
	int rc;

	if (d->spec.type == XVL_DEV_NET)
		return srv_bridge_net_probe(d, v, eb); /* bridge_net.c */
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
	memcpy(d->config, cfg, XVL_BLK_CFG_SIZE);
	d->config_len = XVL_BLK_CFG_SIZE;
	d->features = features;
	d->num_queues = nq;
	d->capacity = sectors * XVL_BLK_SECTOR_SIZE;
	d->block_size = bs;
	return 0;
}

/* ------------------------------------------------------------ notifications */

/* The backend gets the server's eventfds: relay=on, or a queue the driver polls. */
static bool relayed(const struct srv_dev *d, const struct srv_queue *q)
{
	return d->spec.relay || q->poll || q->kick_fd < 0 || q->call_fd < 0;
}

static void relay_close(struct srv_queue *q)
{
	struct srv *s = q->dev->srv;

	if (q->relay_call >= 0) {
		if (q->call_fd >= 0) /* watched only when there is a call fd to forward to */
			srv_unwatch(s, q->relay_call);
		close(q->relay_call);
	}
	if (q->relay_kick >= 0) {
		if (q->kick_fd >= 0)
			srv_unwatch(s, q->kick_fd); /* the kick watch exists only in relay mode */
		close(q->relay_kick);
	}
	q->relay_kick = q->relay_call = -1;
}

static void relay_close_all(struct srv_dev *d)
{
	br_poller_stop(d); /* it uses the relay eventfds and reads the window */
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++)
		relay_close(&d->q[i]);
}

/* Server-owned eventfds the backend uses; the client's kicks are forwarded to them. */
static int relay_open(struct srv_queue *q, struct xvl_errbuf *eb)
{
	struct srv *s = q->dev->srv;

	q->relay_kick = xvl_os_eventfd();
	q->relay_call = xvl_os_eventfd();
	/* a polled queue's calls have nobody to ring: the avail poller drains them */
	if (q->relay_kick < 0 || q->relay_call < 0 ||
	    (q->call_fd >= 0 && srv_watch(s, q->relay_call, &q->relay_call_w, W_RELAY_CALL, q) < 0)) {
		int rc = -errno;
		if (q->relay_call >= 0)
			close(q->relay_call);
		if (q->relay_kick >= 0)
			close(q->relay_kick);
		q->relay_kick = q->relay_call = -1;
		return xvl_err(eb, rc, "device %s queue %u: relay eventfds: %s", q->dev->spec.name,
			       q->index, strerror(-rc));
	}
	if (q->kick_fd >= 0 && srv_watch(s, q->kick_fd, &q->kick_w, W_KICK, q) < 0) {
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
	bool up = d->br && d->br->state == BR_UP;

	(void)s;
	if (from_client) { /* on_event drained the client's kick fd */
		if (up && q->relay_kick >= 0)
			xvl_os_eventfd_signal(q->relay_kick);
		return;
	}
	if (q->relay_call < 0 || !xvl_os_eventfd_drain(q->relay_call))
		return;
	if (up && q->call_fd >= 0) {
		xvl_os_peer_eventfd_signal(&d->srv->guard, q->call_fd); /* the client's: never blocks */
		d->st_notifies++;
	}
}

/* ------------------------------------------------------------ helpers */

static bool queue_set_up(const struct srv_queue *q)
{
	return q->configured;
}

/* The queues the client set up, and the largest of them (polled ones included: bridge_poll.c). */
static int check_queues(struct srv_dev *d, uint16_t *nq, uint16_t *qsize, struct xvl_errbuf *eb)
{
	*nq = 0;
	*qsize = 0;
	for (uint16_t i = 0; i < srv_bridge_backend_queues(d); i++) { /* net: not the ctrl queue */
		const struct srv_queue *q = &d->q[i];
		if (!queue_set_up(q))
			continue;
		*nq = (uint16_t)(i + 1);
		if (q->vq.num > *qsize)
			*qsize = q->vq.num;
	}
	if (*nq == 0)
		return xvl_err(eb, -EINVAL, "device %s: DRIVER_OK without any queue set up",
			       d->spec.name);
	return 0;
}

/* Errors that mean "the backend is not there (any more)", worth waiting for. */
static bool retryable(int rc)
{
	return rc == -ENOENT || rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -EPIPE ||
	       rc == -EAGAIN || rc == -ENOTCONN;
}

static bool attached(const struct srv_dev *d)
{
	return d->conn && !d->conn->closing;
}

static void send_event(struct srv_dev *d, uint32_t code, int reason, const char *msg)
{
	if (!attached(d))
		return;
	srv_dev_event(d, code, reason, msg); /* queued, never blocks (conn.c) */
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void vh_reset(struct xvl_vhost *v)
{
	memset(v, 0, sizeof(*v));
	v->sock = -1;
	v->inflight_fd = -1;
}

/* ------------------------------------------------------------ taint */

/* The instance behind pid/pidfd had the session window and may still write into it. */
static void taint(struct srv_dev *d, int pid, int *pidfd)
{
	struct srv_bridge *b = d->br;

	close_fd(&b->taint_pidfd);
	b->tainted = true;
	b->taint_pid = pid;
	b->taint_pidfd = *pidfd;
	*pidfd = -1;
	b->taint_dev = b->sess_dev;
	b->taint_ino = b->sess_ino;
}

/* Clears the taint once its instance has exited; true while it may still live. */
static bool taint_alive(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;

	if (b->tainted && br_pidfd_exited(b->taint_pidfd)) {
		srv_log(d->srv, "device %s: the old vhost-user backend instance (pid %d) has exited",
			d->spec.name, b->taint_pid);
		b->tainted = false;
		close_fd(&b->taint_pidfd);
	}
	return b->tainted;
}

/* Would a session on the attached client's window meet a live old instance? */
static bool window_tainted(struct srv_dev *d)
{
	struct stat st;

	if (!taint_alive(d))
		return false;
	if (fstat(d->conn->win.fd, &st) == 0 &&
	    ((uint64_t)st.st_dev != d->br->taint_dev || (uint64_t)st.st_ino != d->br->taint_ino))
		return false; /* another window: the old instance has nothing of it */
	return true;
}

/* ------------------------------------------------------------ timer */

static void timer_stop(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;

	if (b->timer < 0)
		return;
	srv_unwatch(d->srv, b->timer);
	close_fd(&b->timer);
}

static int timer_start(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;
	struct itimerspec its = {
		.it_interval = {.tv_nsec = RETRY_MS * 1000000l},
		.it_value = {.tv_nsec = RETRY_MS * 1000000l},
	};

	timer_stop(d);
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (timerfd_settime(fd, 0, &its, NULL) < 0 ||
	    srv_watch(d->srv, fd, &b->timer_w, W_VHOST_TIMER, d) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	b->timer = fd;
	b->deadline_ns = xvl_os_now_ns() + (uint64_t)d->spec.reconnect_ms * 1000000ull;
	return 0;
}

/* Give up waiting: a client attached sees the device broken, otherwise it goes offline. */
static void give_up(struct srv_dev *d, int reason, const char *why)
{
	timer_stop(d);
	srv_log(d->srv, "device %s: %s%s", d->spec.name, why, attached(d) ? "" : "; offline");
	if (!attached(d)) {
		br_enter(d, BR_OFFLINE);
		return;
	}
	br_enter(d, BR_BROKEN);
	srv_dev_break(d, reason, "%s", why);
}

/* The session is gone in disorder (or cannot start yet): wait, from LOST. */
static void await_backend(struct srv_dev *d, const char *what)
{
	char why[512];

	if (!d->spec.reconnect_ms || timer_start(d) < 0) {
		snprintf(why, sizeof(why), "vhost-user backend %s %s", d->spec.path, what);
		br_enter(d, BR_LOST);
		give_up(d, -ECONNRESET, why);
		return;
	}
	br_enter(d, BR_LOST);
	srv_log(d->srv, "device %s: vhost-user backend %s %s; waiting up to %u ms for it to "
		"come back%s", d->spec.name, d->spec.path, what, d->spec.reconnect_ms,
		d->br->tainted ? " and for the old instance to exit" : "");
}

/* ------------------------------------------------------------ jobs */

static struct br_job *job_new(struct srv_dev *d, enum br_job_kind kind)
{
	struct br_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->kind = kind;
	snprintf(j->path, sizeof(j->path), "%s", d->spec.path);
	j->listen_fd = -1;
	if (d->br->listen_fd >= 0) {
		j->listen_fd = fcntl(d->br->listen_fd, F_DUPFD_CLOEXEC, 0);
		if (j->listen_fd < 0) {
			free(j);
			return NULL;
		}
	}
	j->no_config = d->spec.type == XVL_DEV_NET; /* bridge_net.c makes it */
	j->win_fd = j->pidfd = -1;
	vh_reset(&j->vh);
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++)
		j->q[i].kick = j->q[i].call = -1;
	j->done_fd = fcntl(d->br->job_fd, F_DUPFD_CLOEXEC, 0);
	if (j->done_fd < 0) {
		if (j->listen_fd >= 0)
			close(j->listen_fd);
		free(j);
		return NULL;
	}
	return j;
}

static int job_launch(struct srv_dev *d, struct br_job *j, struct xvl_errbuf *eb)
{
	if (br_job_run(j) < 0) {
		int rc = j->rc;
		*eb = j->eb;
		br_job_free(j);
		return rc;
	}
	d->br->job = j;
	return 0;
}

/* One short session off the loop: handshake, config, disconnect. */
static void probe_launch(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;
	struct xvl_errbuf eb;
	struct br_job *j;

	if (b->job)
		return;
	b->last_probe_ns = xvl_os_now_ns();
	j = job_new(d, BR_JOB_PROBE);
	if (!j) {
		srv_log(d->srv, "device %s: no memory for a backend probe", d->spec.name);
		return;
	}
	if (job_launch(d, j, &eb) < 0) {
		srv_log(d->srv, "device %s: %s", d->spec.name, eb.msg);
		return;
	}
	if (b->state == BR_OFFLINE)
		br_enter(d, BR_PROBING);
}

void srv_bridge_probe_if_needed(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;

	if (b->state != BR_OFFLINE || b->job ||
	    xvl_os_now_ns() - b->last_probe_ns < PROBE_GAP_MS * 1000000ull)
		return;
	probe_launch(d);
}

static int start_job_queues(struct srv_dev *d, struct br_job *j, struct xvl_errbuf *eb)
{
	const uint8_t *base = d->conn->win.mem.base;

	for (uint16_t i = 0; i < j->nq; i++) {
		struct srv_queue *q = &d->q[i];
		struct br_job_queue *jq = &j->q[i];
		if (!queue_set_up(q))
			continue;
		if (relayed(d, q)) {
			int rc = relay_open(q, eb);
			if (rc < 0)
				return rc;
		}
		jq->on = true;
		jq->enable = srv_bridge_ring_start(d, i);
		jq->l = (struct xvl_vq_layout){
			.num = q->vq.num,
			.desc = (uint64_t)((const uint8_t *)q->vq.desc - base),
			.avail = (uint64_t)((const uint8_t *)q->vq.avail - base),
			.used = (uint64_t)((const uint8_t *)q->vq.used - base),
		};
		jq->base = q->vq.last_avail;
		jq->kick = fcntl(relayed(d, q) ? q->relay_kick : q->kick_fd, F_DUPFD_CLOEXEC, 0);
		jq->call = fcntl(relayed(d, q) ? q->relay_call : q->call_fd, F_DUPFD_CLOEXEC, 0);
		if (jq->kick < 0 || jq->call < 0)
			return xvl_err(eb, -errno, "device %s queue %u: dup: %s", d->spec.name, i,
				       strerror(errno));
	}
	return 0;
}

/* READY -> STARTING: hand the window and the rings to the backend, off the loop. */
static int start_launch(struct srv_dev *d, uint16_t nq, uint16_t qsize, struct xvl_errbuf *eb)
{
	const struct xvl_os_window *w = &d->conn->win;
	struct srv_bridge *b = d->br;
	struct br_job *j = job_new(d, BR_JOB_START);
	struct stat st;
	int rc;

	if (!j)
		return xvl_err(eb, -ENOMEM, "device %s: out of memory", d->spec.name);
	j->features = srv_bridge_features(d); /* net: without what only the frontend has */
	j->mtu = srv_bridge_net_mtu(d);
	j->win_fd = fcntl(w->fd, F_DUPFD_CLOEXEC, 0);
	j->win_size = w->mem.size;
	j->win_base = (uintptr_t)w->mem.base;
	j->nq = nq;
	j->qsize = qsize;
	rc = j->win_fd < 0 || fstat(j->win_fd, &st) < 0
		     ? xvl_err(eb, -errno, "device %s: window fd: %s", d->spec.name, strerror(errno))
		     : start_job_queues(d, j, eb);
	if (rc == 0) {
		b->sess_dev = (uint64_t)st.st_dev;
		b->sess_ino = (uint64_t)st.st_ino;
		rc = job_launch(d, j, eb);
		j = NULL; /* launched, or freed by job_launch */
	}
	if (rc < 0) {
		br_job_free(j);
		relay_close_all(d);
		return rc;
	}
	b->job_unwanted = false;
	br_enter(d, BR_STARTING);
	return 0;
}

/* Start now, or after the old instance is gone; rc < 0: the device cannot start. */
static int start_or_wait(struct srv_dev *d, struct xvl_errbuf *eb)
{
	uint16_t nq, qsize;
	int rc = check_queues(d, &nq, &qsize, eb);

	if (rc < 0)
		return rc;
	if (window_tainted(d)) {
		if (d->br->taint_pidfd < 0)
			srv_log(d->srv, "device %s: an earlier vhost-user backend instance (pid %d) "
				"had this window and cannot be confirmed gone (no pidfd of it)",
				d->spec.name, d->br->taint_pid);
		await_backend(d, "may still have this window (an earlier instance is alive)");
		return 0;
	}
	return start_launch(d, nq, qsize, eb);
}

int srv_bridge_start(struct srv_dev *d, struct xvl_errbuf *eb)
{
	struct srv_bridge *b = d->br;

	switch (b->state) {
	case BR_READY:
		return start_or_wait(d, eb);
	case BR_STOPPING: {
		uint16_t nq, qsize;
		int rc = check_queues(d, &nq, &qsize, eb);
		if (rc == 0)
			b->start_wanted = true; /* once the old session is stopped */
		return rc;
	}
	default:
		return xvl_err(eb, -EAGAIN, "device %s: its vhost-user backend is %s; set the "
			       "device up again after EVENT RESTART", d->spec.name,
			       br_state_name(b->state));
	}
}

/* ------------------------------------------------------------ jobs landing */

static void probe_log(struct srv_dev *d, const struct xvl_vhost *v)
{
	srv_log(d->srv, "device %s: vhost-user backend %s: features 0x%llx (0x%llx offered "
		"to clients), protocol features 0x%llx, %u queue(s), %llu bytes",
		d->spec.name, d->spec.path, (unsigned long long)v->features,
		(unsigned long long)d->features, (unsigned long long)v->protocol_features,
		d->num_queues, (unsigned long long)d->capacity);
}

/* WAITING, and the backend answers: reset the device, have the client set it up afresh. */
static void bridge_restart(struct srv_dev *d)
{
	timer_stop(d);
	br_enter(d, BR_READY);
	srv_log(d->srv, "device %s: vhost-user backend %s is back; client %s sets the device up "
		"again", d->spec.name, d->spec.path, d->conn ? d->conn->name : "(none)");
	srv_dev_reset(d);
	srv_bridge_net_link(d, true);
	send_event(d, XVL_EVENT_RESTART, 0, "vhost-user backend is back");
}

static void probe_landed(struct srv_dev *d, struct br_job *j)
{
	struct srv_bridge *b = d->br;
	struct xvl_errbuf eb = j->eb;
	int rc = j->rc;

	if (rc == 0)
		rc = probe_apply(d, &j->vh, j->cfg, &eb);
	if (rc == 0)
		probe_log(d, &j->vh);
	if (b->state == BR_PROBING) {
		if (rc < 0)
			srv_log(d->srv, "device %s: %s; the device is offline until the backend "
				"answers", d->spec.name, eb.msg);
		br_enter(d, rc == 0 ? BR_READY : BR_OFFLINE);
		return;
	}
	if (b->state != BR_WAITING)
		return; /* given up meanwhile */
	if (rc == 0) {
		bridge_restart(d);
	} else if (!retryable(rc)) {
		srv_log(d->srv, "device %s: %s", d->spec.name, eb.msg);
		give_up(d, rc, eb.msg);
	}
}

static void stopped(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;
	struct xvl_errbuf eb;

	if (b->start_wanted && attached(d)) {
		b->start_wanted = false;
		br_enter(d, BR_READY);
		int rc = start_or_wait(d, &eb);
		if (rc < 0) {
			srv_log(d->srv, "%s", eb.msg);
			srv_dev_break(d, rc, "%s", eb.msg);
		}
	} else {
		b->start_wanted = false;
		br_enter(d, BR_READY);
	}
	srv_dev_drained(d); /* a DETACH or RESET waiting for the stop is answered */
}

/* Move the session's connection into a STOP job (UP -> STOPPING). */
static void stop_launch(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;
	struct br_job *j = job_new(d, BR_JOB_STOP);
	struct xvl_errbuf eb;

	srv_unwatch(d->srv, d->vh.sock);
	if (j) {
		j->vh = d->vh;
		vh_reset(&d->vh);
		j->nq = srv_bridge_backend_queues(d); /* net: not the control queue */
		for (uint16_t i = 0; i < j->nq; i++)
			j->q[i].on = queue_set_up(&d->q[i]);
		j->pid = b->pid;
		j->pidfd = b->pidfd;
		b->pidfd = -1;
		if (job_launch(d, j, &eb) == 0) {
			br_enter(d, BR_STOPPING);
			return;
		}
		srv_log(d->srv, "device %s: %s", d->spec.name, eb.msg);
	}
	/* No job: close without stopping the rings, and remember who had the window. */
	xvl_vhost_close(&d->vh);
	taint(d, b->pid, &b->pidfd);
	br_enter(d, BR_STOPPING);
	stopped(d);
}

static void start_landed(struct srv_dev *d, struct br_job *j)
{
	struct srv_bridge *b = d->br;

	if (b->job_unwanted) { /* reset while starting: stop what was started */
		b->job_unwanted = false;
		if (j->rc == 0) {
			d->vh = j->vh;
			vh_reset(&j->vh);
			b->pid = j->pid;
			b->pidfd = j->pidfd;
			j->pidfd = -1;
			b->state = BR_UP; /* for the moment it takes to hand it to a STOP job */
			stop_launch(d);
			return;
		}
		if (j->mem_sent)
			taint(d, j->pid, &j->pidfd);
		stopped(d);
		return;
	}
	if (j->rc < 0) {
		relay_close_all(d);
		if (j->mem_sent)
			taint(d, j->pid, &j->pidfd);
		srv_log(d->srv, "device %s: %s", d->spec.name, j->eb.msg);
		if (retryable(j->rc)) {
			await_backend(d, "went away while its session started");
		} else {
			br_enter(d, BR_BROKEN);
			srv_dev_break(d, j->rc, "%s", j->eb.msg);
		}
		return;
	}
	d->vh = j->vh;
	vh_reset(&j->vh);
	b->pid = j->pid;
	b->pidfd = j->pidfd;
	j->pidfd = -1;
	if (srv_watch(d->srv, d->vh.sock, &d->vh_w, W_VHOST, d) < 0) {
		xvl_vhost_close(&d->vh);
		relay_close_all(d);
		taint(d, b->pid, &b->pidfd);
		br_enter(d, BR_BROKEN);
		srv_dev_break(d, -errno, "device %s: watching the backend socket failed",
			      d->spec.name);
		return;
	}
	br_enter(d, BR_UP);
	srv_bridge_net_up(d); /* VQ_PAIRS_SET while starting */
	if (b->state != BR_UP)
		return; /* the backend did not take it: lost */
	/* Kicks that came while starting were not relayed: one now covers them. */
	bool polled = false;
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++) {
		if (d->q[i].relay_kick >= 0)
			xvl_os_eventfd_signal(d->q[i].relay_kick);
		polled |= d->q[i].relay_kick >= 0 && d->q[i].poll;
	}
	struct xvl_errbuf eb;
	if (polled && br_poller_start(d, &eb) < 0) { /* a thread: fails only out of resources */
		srv_log(d->srv, "%s", eb.msg);
		srv_dev_break(d, -EAGAIN, "%s", eb.msg); /* the client's reset stops the session */
		return;
	}
	srv_log(d->srv, "device %s: vhost-user backend %s (pid %d%s) serves %u queue(s), features "
		"0x%llx, notifications %s%s", d->spec.name, d->spec.path, b->pid,
		b->pidfd >= 0 ? ", watched" : ", not watchable: a loss will break the device", j->nq,
		(unsigned long long)d->driver_features,
		polled ? "polled (the server kicks)" : d->spec.relay ? "relayed" : "direct",
		d->vh.inflight_fd >= 0 ? ", inflight area shared" : "");
}

static void stop_landed(struct srv_dev *d, struct br_job *j)
{
	if (j->rc < 0) {
		srv_log(d->srv, "device %s: %s", d->spec.name, j->eb.msg);
		taint(d, j->pid, &j->pidfd); /* not stopped in order: it may still serve */
	}
	stopped(d);
}

void srv_bridge_job_done(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;
	struct br_job *j = b->job;

	xvl_os_eventfd_drain(b->job_fd);
	if (!j)
		return;
	br_job_join(j);
	b->job = NULL;
	switch (j->kind) {
	case BR_JOB_PROBE: probe_landed(d, j); break;
	case BR_JOB_START: start_landed(d, j); break;
	case BR_JOB_STOP: stop_landed(d, j); break;
	}
	br_job_free(j);
}

/* ------------------------------------------------------------ loss and return */

void srv_bridge_lost(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;
	char c;
	ssize_t n = d->vh.sock >= 0 ? recv(d->vh.sock, &c, 1, MSG_PEEK | MSG_DONTWAIT) : 0;

	if (b->state != BR_UP || (n < 0 && (errno == EAGAIN || errno == EINTR)))
		return;
	srv_unwatch(d->srv, d->vh.sock);
	xvl_vhost_close(&d->vh);
	relay_close_all(d);
	taint(d, b->pid, &b->pidfd); /* it had the window and was not stopped */
	if (n > 0) {
		br_enter(d, BR_BROKEN);
		srv_dev_break(d, -EPROTO, "vhost-user backend %s sent an unsolicited message",
			      d->spec.path);
		return;
	}
	srv_bridge_net_link(d, false);
	await_backend(d, "went away");
}

void srv_bridge_retry(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;
	uint64_t ticks;
	char why[512];

	if (b->timer < 0 || (read(b->timer, &ticks, sizeof(ticks)) < 0 && errno == EAGAIN))
		return;
	bool late = xvl_os_now_ns() >= b->deadline_ns;
	if (b->state == BR_LOST) {
		if (attached(d) && window_tainted(d)) {
			if (!late)
				return;
			snprintf(why, sizeof(why), "vhost-user backend %s: the old instance (pid %d) "
				 "did not exit within %u ms; it may still write into the window",
				 d->spec.path, b->taint_pid, d->spec.reconnect_ms);
			give_up(d, -ETIMEDOUT, why);
			return;
		}
		br_enter(d, BR_WAITING);
	}
	if (b->state != BR_WAITING)
		return;
	if (late) {
		snprintf(why, sizeof(why), "vhost-user backend %s did not come back within %u ms",
			 d->spec.path, d->spec.reconnect_ms);
		give_up(d, -ETIMEDOUT, why);
		return;
	}
	probe_launch(d); /* one at a time: none while the last is still out */
}

void srv_bridge_stop(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;

	if (!b)
		return;
	relay_close_all(d);
	switch (b->state) {
	case BR_UP:
		stop_launch(d);
		break;
	case BR_STARTING:
		b->job_unwanted = true;
		br_enter(d, BR_STOPPING);
		break;
	case BR_STOPPING:
		b->start_wanted = false;
		break;
	case BR_BROKEN:
		br_enter(d, BR_READY);
		break;
	default: /* OFFLINE, PROBING, READY: nothing runs; LOST, WAITING: keep waiting */
		break;
	}
	srv_bridge_net_reset(d); /* after stop_launch: it reads which rings the backend has */
}

bool srv_bridge_busy(const struct srv_dev *d)
{
	return d->br && d->br->state == BR_STOPPING;
}

/* ------------------------------------------------------------ backend ops */

static int vhost_open(struct srv_dev *d, struct xvl_errbuf *eb)
{
	struct srv_bridge *b = calloc(1, sizeof(*b));

	if (!b)
		return xvl_err(eb, -ENOMEM, "device %s: out of memory", d->spec.name);
	d->br = b;
	b->state = BR_OFFLINE;
	b->timer = b->pidfd = b->taint_pidfd = b->listen_fd = -1;
	b->job_fd = xvl_os_eventfd();
	vh_reset(&d->vh);
	d->vh_probed = false;
	d->features = 0; /* offline until the backend has answered */
	d->num_queues = 1;
	d->config_len = 0;
	if (b->job_fd < 0 || srv_watch(d->srv, b->job_fd, &b->job_w, W_VHOST_JOB, d) < 0)
		return xvl_err(eb, -errno, "device %s: eventfd: %s", d->spec.name, strerror(errno));
	if (d->spec.listen) {
		b->listen_fd = xvl_vhost_listen(d->spec.path, eb);
		if (b->listen_fd < 0)
			return b->listen_fd;
		srv_log(d->srv, "device %s: waiting for the vhost-user backend to connect to %s",
			d->spec.name, d->spec.path);
	}
	probe_launch(d); /* srv_bridge_settle() waits for it */
	return 0;
}

void srv_bridge_settle(struct srv *s)
{
	uint64_t end = xvl_os_now_ns() + OPEN_WAIT_MS * 1000000ull;

	for (;;) {
		struct pollfd p[XVL_SERVER_MAX_DEVS];
		struct srv_dev *dev[XVL_SERVER_MAX_DEVS];
		unsigned n = 0;
		uint64_t now = xvl_os_now_ns();

		for (unsigned i = 0; i < s->n_devs; i++) {
			struct srv_dev *d = &s->dev[i];
			if (d->br && d->br->job) {
				p[n] = (struct pollfd){.fd = d->br->job_fd, .events = POLLIN};
				dev[n++] = d;
			}
		}
		if (n == 0 || now >= end)
			break;
		if (poll(p, n, (int)((end - now) / 1000000ull) + 1) <= 0)
			continue; /* timed out (the clock check ends it) or EINTR */
		for (unsigned i = 0; i < n; i++)
			if (p[i].revents & POLLIN)
				srv_bridge_job_done(dev[i]);
	}
	for (unsigned i = 0; i < s->n_devs; i++) {
		struct srv_dev *d = &s->dev[i];
		if (d->br && d->br->state == BR_PROBING)
			srv_log(s, "device %s: vhost-user backend %s has not answered within %u ms; "
				"the device is offline until it does", d->spec.name, d->spec.path,
				OPEN_WAIT_MS);
	}
}

static void vhost_submit(struct srv_dev *d, struct srv_req *r)
{
	(void)d;
	srv_req_done(r, XVL_BLK_S_IOERR); /* the backend serves the rings itself */
}

/*
 * Server shutdown: the loop has stopped.  A job still out (an orderly stop, usually) gets
 * CLOSE_WAIT_MS to finish; one stuck on a backend that does not answer is abandoned and
 * frees itself when its call times out, so SIGTERM is not held up by a backend.
 */
static void vhost_close(struct srv_dev *d)
{
	struct srv_bridge *b = d->br;
	struct pollfd p = {.events = POLLIN};

	if (!b)
		return;
	p.fd = b->job_fd;
	if (b->job && poll(&p, 1, CLOSE_WAIT_MS) == 1) {
		br_job_join(b->job);
		br_job_free(b->job);
		b->job = NULL;
	}
	if (b->job) {
		srv_log(d->srv, "device %s: vhost-user backend %s does not answer; not waiting for it",
			d->spec.name, d->spec.path);
		br_job_abandon(b->job);
		b->job = NULL;
	}
	timer_stop(d);
	if (d->vh.sock >= 0)
		srv_unwatch(d->srv, d->vh.sock);
	xvl_vhost_close(&d->vh);
	relay_close_all(d);
	close_fd(&b->pidfd);
	close_fd(&b->taint_pidfd);
	if (b->listen_fd >= 0) {
		close_fd(&b->listen_fd);
		unlink(d->spec.path); /* the socket this server made */
	}
	if (b->job_fd >= 0) {
		srv_unwatch(d->srv, b->job_fd);
		close(b->job_fd);
	}
	free(b);
	d->br = NULL;
}

const struct srv_backend_ops srv_vhost_ops = {
	.open = vhost_open,
	.submit = vhost_submit,
	.close = vhost_close,
};
