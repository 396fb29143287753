/* SPDX-License-Identifier: MIT */
/*
 * Server event loop, and creating and destroying the server.
 *
 * One thread, one epoll set: the listening socket, each client's link,
 * each queue's kick eventfd, the io_uring completion fd, a signalfd and a
 * timerfd for the HELLO timeout.  Queues in poll mode make the loop spin
 * instead of sleeping; after activity the loop polls for a bounded time that
 * adapts (poll.c).  With --cpus, worker threads serve the built-in backends'
 * queues instead (worker.c) and this thread keeps the link and control.  The other jobs live in their own files:
 * connections and link I/O in conn.c, link requests in link.c, the device
 * state machine in devstate.c, request completion in complete.c, the
 * virtio-blk model in blkdev.c.  No call made from the loop may block on a
 * peer: sends are non-blocking (conn.c), peers' eventfds are signalled under
 * a guard (os.h), file I/O goes through io_uring.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
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

int srv_watch_events(struct srv *s, int fd, struct srv_watch *w, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};
	return epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

/* Re-arming would restart the period: a client connecting more often than once a
 * second must not keep the tick from firing, so only a change is applied. */
void srv_tick_arm(struct srv *s, bool on)
{
	struct itimerspec its = {{0, 0}, {0, 0}};
	if (s->tick_fd < 0 || s->tick_on == on)
		return;
	s->tick_on = on;
	if (on)
		its.it_interval.tv_sec = its.it_value.tv_sec = 1;
	timerfd_settime(s->tick_fd, 0, &its, NULL);
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
	case XVL_BK_SWITCH:
	case XVL_BK_TAP:
		return &srv_net_ops; /* virtio-net: netdev.c */
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
	d->state = SRV_DEV_FREE;
	for (unsigned q = 0; q < XVL_MAX_QUEUES; q++) {
		d->q[q] = (struct srv_queue){.dev = d, .index = (uint16_t)q, .kick_fd = -1,
					     .call_fd = -1, .relay_kick = -1, .relay_call = -1};
	}
	int rc = d->ops->open(d, eb);
	if (rc < 0)
		return rc;
	if (spec->kind != XVL_BK_VHOST && spec->type != XVL_DEV_NET) {
		d->features |= (1ull << XVL_BLK_F_SEG_MAX) | (1ull << XVL_BLK_F_BLK_SIZE);
		if (d->num_queues > 1)
			d->features |= 1ull << XVL_BLK_F_MQ;
		srv_blk_fill_config(d, d->num_queues, SRV_MAX_SEGS);
	}
	return 0;
}

/* ------------------------------------------------------------ loop */

/* Serve the queues this thread holds; returns the chains popped.  polling: look at
 * every queue, and leave notifications off (see poll.c). */
static unsigned service_queues(struct srv *s, bool polling, bool *busy)
{
	unsigned work = 0;
	*busy = false;
	for (unsigned i = 0; i < s->n_devs; i++) {
		struct srv_dev *d = &s->dev[i];
		for (unsigned j = 0; j < d->num_queues; j++) {
			struct srv_queue *q = &d->q[j];
			/* q->worker first: a worker's queue is not ours to look at */
			if (q->worker || !q->live ||
			    (d->spec.kind == XVL_BK_VHOST && !srv_bridge_is_ctrlq(q)) ||
			    (!q->poll && !q->more && !polling))
				continue;
			if (d->spec.kind == XVL_BK_VHOST)
				srv_bridge_net_ctrl(q); /* a bridged net device's control queue */
			else if (d->net)
				srv_net_queue_process(q); /* never a worker's: see devstate.c */
			else
				work += srv_queue_process(q, polling);
			*busy |= q->more;
		}
	}
	return work;
}

/* Before sleeping: notifications back on for the queues polled quietly; true if
 * work came meanwhile. */
static bool rearm_queues(struct srv *s)
{
	bool work = false;
	for (unsigned i = 0; i < s->n_devs; i++) {
		struct srv_dev *d = &s->dev[i];
		for (unsigned j = 0; d->spec.kind != XVL_BK_VHOST && j < d->num_queues; j++) {
			struct srv_queue *q = &d->q[j];
			if (!q->worker && q->live && !q->poll && !srv_net_kick_unwanted(q) &&
			    xvl_vq_dev_enable_notify(&q->vq)) {
				q->more = true;
				work = true;
			}
		}
	}
	return work;
}

static void on_tick(struct srv *s)
{
	uint64_t n;
	if (read(s->tick_fd, &n, sizeof(n)) == sizeof(n))
		srv_conns_tick(s);
}

static void on_event(struct srv *s, struct srv_watch *w, uint32_t events)
{
	/* Requests and the vhost bridge may make blocking calls they retry on EINTR
	 * (a backend's handshake): the eventfd guard must not be ticking then. */
	if (w->kind != W_KICK && w->kind != W_RING && w->kind != W_RELAY_CALL && w->kind != W_TAP)
		xvl_os_guard_release(&s->guard);
	switch (w->kind) {
	case W_LISTEN:
		srv_conn_accept(s);
		break;
	case W_TICK:
		on_tick(s);
		break;
	case W_SIGNAL: {
		struct signalfd_siginfo si;
		if (read(s->signal_fd, &si, sizeof(si)) == sizeof(si))
			s->stop = 1;
		break;
	}
	case W_RING:
		srv_reap_ring(s);
		break;
	case W_CONN:
		srv_conn_event(w->obj, events);
		break;
	case W_KICK:
		srv_queue_kicked(w->obj, events);
		break;
	case W_RELAY_CALL:
		srv_bridge_relay(s, w->obj, false);
		break;
	case W_VHOST:
		srv_bridge_lost(w->obj);
		break;
	case W_VHOST_TIMER:
		srv_bridge_retry(w->obj);
		break;
	case W_WORKER:
		srv_worker_news(s);
		break;
	case W_VHOST_JOB:
		srv_bridge_job_done(w->obj);
		break;
	case W_MBOX:
	case W_IVSH_LISTEN:
	case W_IVSH_PEER:
		srv_mbox_on_event(s, w);
		break;
	case W_TAP:
		srv_tap_event(w);
		break;
	}
}

int xvl_server_run(struct xvl_server *xs)
{
	struct srv *s = (struct srv *)xs;
	struct epoll_event ev[MAX_EVENTS];
	bool busy = false, polling = false;

	srv_log(s, "serving %u device(s) on %s with %u worker thread(s), polling up to %llu ns",
		s->n_devs, s->opts.listen ? s->opts.listen : s->opts.window, s->n_workers,
		(unsigned long long)s->poll.max_ns);
	while (!s->stop) {
		int timeout = busy || polling || s->poll_queues ? 0 : -1;
		if (timeout < 0 && rearm_queues(s))
			timeout = 0;
		long idle_us = srv_mbox_idle_us(s, busy);
		if (idle_us >= 0 && (timeout < 0 || (!busy && !polling)))
			timeout = (int)((idle_us + 999) / 1000); /* polling a window link: bounded, adaptive */
		uint64_t t0 = 0;
		if (timeout != 0) { /* no peer eventfd is touched while we sleep */
			xvl_os_guard_release(&s->guard);
			t0 = xvl_os_now_ns();
		}
		int n = epoll_wait(s->epfd, ev, MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (timeout != 0)
			srv_poll_adapt(&s->poll, xvl_os_now_ns() - t0);
		for (int i = 0; i < n; i++)
			on_event(s, ev[i].data.ptr, ev[i].events);
		srv_mbox_poll(s);
		unsigned work = 0;
		if ((s->poll_queues || polling) && s->ring_ok && io_uring_cq_ready(&s->ring)) {
			work += io_uring_cq_ready(&s->ring);
			srv_reap_ring(s);
		}
		work += service_queues(s, polling, &busy);
		uint64_t now = xvl_os_now_ns();
		if (work || n > 0)
			s->last_work_ns = now;
		polling = srv_poll_keep(&s->poll, s->last_work_ns, now);
		srv_conns_reap(s);
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
	if (srv_ring_create(&s->ring, RING_DEPTH) < 0) /* sealed after the workers' rings */
		return 0; /* file backends will say so; the others do not need it */
	s->ring_ok = true;
	return srv_watch(s, s->ring.ring_fd, &s->ring_w, W_RING, NULL);
}

/* The HELLO timeout: a timerfd armed while some connection awaits its HELLO. */
static int setup_tick(struct srv *s, struct xvl_errbuf *eb)
{
	s->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (s->tick_fd < 0)
		return xvl_err(eb, -errno, "timerfd: %s", strerror(errno));
	return srv_watch(s, s->tick_fd, &s->tick_w, W_TICK, NULL);
}

static int server_setup(struct srv *s, struct xvl_errbuf *eb)
{
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0)
		return xvl_err(eb, -errno, "epoll: %s", strerror(errno));
	int rc = xvl_os_guard_init(&s->guard);
	if (rc < 0)
		return xvl_err(eb, rc, "a timer to guard peers' eventfds: %s", strerror(-rc));
	rc = setup_signals(s, eb);
	if (rc == 0)
		rc = setup_tick(s, eb);
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
	srv_poll_init(&s->poll, s->opts.poll_max_ns == UINT32_MAX ? 0
				: s->opts.poll_max_ns ? s->opts.poll_max_ns
							: XVL_SERVER_POLL_NS);
	rc = srv_workers_start(s, eb); /* after the signal mask: threads inherit it */
	int sealed = rc == 0 ? srv_ring_seal() : 0;
	if (sealed < 0)
		rc = xvl_err(eb, sealed, "cannot forbid new io_urings: %s", strerror(-sealed));
	if (rc < 0)
		return rc;
	srv_bridge_settle(s); /* the bridged devices' first probes, all at once, bounded */
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
	if ((o->n_devs == 0 && !xvl_server_window_relays(o->window)) || o->n_devs > XVL_SERVER_MAX_DEVS)
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
	s->epfd = s->listen_fd = s->signal_fd = s->tick_fd = s->news_fd = -1;
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
	srv_workers_stop(s); /* first: then nothing else touches the queues */
	for (unsigned i = 0; i < s->n_devs; i++)
		srv_dev_shutdown(&s->dev[i]); /* before the connections: nothing waits for them */
	srv_mbox_destroy(s);
	srv_conns_close_all(s);
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	for (unsigned i = 0; i < s->n_devs; i++) {
		struct srv_dev *d = &s->dev[i];
		if (d->ops)
			d->ops->close(d);
	}
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(s->opts.listen);
	}
	if (s->signal_fd >= 0)
		close(s->signal_fd);
	if (s->tick_fd >= 0)
		close(s->tick_fd);
	xvl_os_guard_fini(&s->guard);
	if (s->epfd >= 0)
		close(s->epfd);
	free(s);
}
