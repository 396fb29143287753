/* SPDX-License-Identifier: MIT */
/*
 * Worker threads: each serves the queues the control thread gave it, with
 * its own epoll set (the queues' kick eventfds, a wake eventfd, its ring), its own
 * io_uring (restricted to the file backend's operations) and its own guard
 * for peers' eventfds.  No lock on the data path: a queue belongs to one
 * thread at a time.
 *
 * Hand-off (the only shared state; both mailboxes are a mutex-protected
 * array and an eventfd):
 *
 *   control                          worker
 *   queue_serve: worker, handed=1 ──ATTACH──▶ own it: live=1, watch kick fd
 *   queue_unserve: enabled=0      ──DETACH──▶ live=0, unwatch kick fd; once
 *                                              inflight == 0 ──RELEASED──▶
 *   RELEASED: handed=0, finish a deferred queue_clear, srv_dev_drained
 *
 *   A ring rule broken (worker): live=0 ──BROKEN──▶ control: srv_dev_break,
 *   whose queue_unserve sends the DETACH.
 *
 * Invariants:
 *   - Between ATTACH and RELEASED the worker alone touches the queue's vq,
 *     req[], inflight, more, live, seg and counters; the control thread counts
 *     the queue as in flight (a reset goes DRAINING), closes none of its fds and
 *     frees no req[].  The mutex of each mailbox orders the hand-off.
 *   - Each queue has at most one ATTACH and one DETACH outstanding (a queue
 *     is served again only after RELEASED, see devstate.c), and the worker
 *     posts at most one BROKEN and one RELEASED per hand-off: the mailboxes
 *     cannot overflow.
 *   - The worker writes nothing to a ring after DETACH; between the control
 *     thread's decision and the DETACH it may complete requests as a running
 *     device would: replies to resets wait for RELEASED.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "srv.h"
#include "xvl_atomic.h"

#define WORKER_RING_DEPTH 1024
#define WORKER_EVENTS     64
#define WORKER_SKIP       32
#define SRV_TOTAL_QUEUES  (XVL_SERVER_MAX_DEVS * XVL_MAX_QUEUES)
#define MAILBOX_SIZE      (2u * SRV_TOTAL_QUEUES)

enum srv_cmd_op { CMD_ATTACH, CMD_DETACH, CMD_BROKEN, CMD_RELEASED };

struct srv_cmd {
	enum srv_cmd_op op;
	struct srv_queue *q;
	int reason;
	char msg[64];
};

struct srv_mailbox {
	pthread_mutex_t lock;
	unsigned n;
	struct srv_cmd c[MAILBOX_SIZE];
	struct srv_cmd taken[MAILBOX_SIZE]; /* the taker's copy, outside the lock */
};

struct srv_worker {
	struct srv *srv;
	unsigned index;
	int cpu;
	pthread_t th;
	bool started;
	int epfd;
	int wake_fd;
	struct io_uring ring;
	bool ring_ok;
	unsigned ring_pending;
	struct xvl_os_guard guard;
	struct srv_mailbox box; /* control -> this worker */
	struct srv_queue *own[SRV_TOTAL_QUEUES];
	unsigned n_own;
	unsigned n_poll;        /* owned live queues in POLL mode: never sleep */
	struct srv_poll poll;
	uint64_t last_work_ns;
	int stop;               /* atomic */
};

/* ------------------------------------------------------------ mailboxes */

static void mailbox_post(struct srv_mailbox *b, int efd, const struct srv_cmd *c)
{
	uint64_t one = 1;
	pthread_mutex_lock(&b->lock);
	if (b->n < MAILBOX_SIZE) /* bounded by the invariants above */
		b->c[b->n++] = *c;
	pthread_mutex_unlock(&b->lock);
	if (write(efd, &one, sizeof(one)) < 0)
		return; /* at its maximum: a wake-up is pending anyway */
}

/* Take every posted command (in order) into b->taken; returns how many. */
static unsigned mailbox_take(struct srv_mailbox *b, int efd)
{
	struct srv_cmd *out = b->taken;
	uint64_t v;
	if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return 0;
	pthread_mutex_lock(&b->lock);
	unsigned n = b->n;
	memcpy(out, b->c, n * sizeof(*out));
	b->n = 0;
	pthread_mutex_unlock(&b->lock);
	return n;
}

static void post_news(struct srv_queue *q, enum srv_cmd_op op, int reason, const char *msg)
{
	struct srv *s = q->dev->srv;
	struct srv_cmd c = {.op = op, .q = q, .reason = reason};
	if (msg)
		snprintf(c.msg, sizeof(c.msg), "%s", msg);
	mailbox_post(s->news, s->news_fd, &c);
}

/* ------------------------------------------------------------ serving-thread helpers */

struct io_uring_sqe *srv_queue_sqe(struct srv_queue *q)
{
	struct srv_worker *w = q->worker;
	if (!w)
		return srv_get_sqe(q->dev->srv);
	if (!w->ring_ok)
		return NULL;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	if (!sqe) {
		io_uring_submit(&w->ring);
		w->ring_pending = 0;
		sqe = io_uring_get_sqe(&w->ring);
	}
	if (sqe)
		w->ring_pending++;
	return sqe;
}

struct xvl_os_guard *srv_queue_guard(struct srv_queue *q)
{
	return q->worker ? &q->worker->guard : &q->dev->srv->guard;
}

void srv_queue_break(struct srv_queue *q, int reason, const char *fmt, ...)
{
	char msg[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!q->worker) {
		srv_dev_break(q->dev, reason, "%s", msg);
		return;
	}
	if (!q->live)
		return;
	q->live = false; /* nothing more is written to this ring */
	post_news(q, CMD_BROKEN, reason, msg);
}

static void worker_forget(struct srv_worker *w, struct srv_queue *q)
{
	for (unsigned i = 0; i < w->n_own; i++)
		if (w->own[i] == q) {
			w->own[i] = w->own[--w->n_own];
			return;
		}
}

void srv_queue_idle_check(struct srv_queue *q)
{
	struct srv_dev *d = q->dev;
	if (!q->worker) {
		if (d->state == SRV_DEV_DRAINING && !q->inflight)
			srv_dev_drained(d);
		return;
	}
	if (!q->w_detach || q->inflight)
		return;
	q->w_detach = false;
	worker_forget(q->worker, q);
	post_news(q, CMD_RELEASED, 0, NULL);
}

/* ------------------------------------------------------------ control thread side */

void srv_worker_attach(struct srv_queue *q)
{
	struct srv_cmd c = {.op = CMD_ATTACH, .q = q};
	q->handed = true;
	mailbox_post(&q->worker->box, q->worker->wake_fd, &c);
}

void srv_worker_detach(struct srv_queue *q)
{
	struct srv_cmd c = {.op = CMD_DETACH, .q = q};
	mailbox_post(&q->worker->box, q->worker->wake_fd, &c);
}

void srv_worker_news(struct srv *s)
{
	unsigned n = mailbox_take(s->news, s->news_fd);
	const struct srv_cmd *news = s->news->taken;
	for (unsigned i = 0; i < n; i++) {
		struct srv_queue *q = news[i].q;
		if (news[i].op == CMD_BROKEN)
			srv_dev_break(q->dev, news[i].reason, "%s", news[i].msg);
		else if (news[i].op == CMD_RELEASED)
			srv_queue_released(q);
	}
}

/* ------------------------------------------------------------ the worker */

static void worker_take_commands(struct srv_worker *w)
{
	unsigned n = mailbox_take(&w->box, w->wake_fd);
	const struct srv_cmd *cmd = w->box.taken;
	for (unsigned i = 0; i < n; i++) {
		struct srv_queue *q = cmd[i].q;
		if (cmd[i].op == CMD_ATTACH) {
			w->own[w->n_own++] = q;
			q->live = true;
			q->more = true; /* pick up anything queued before DRIVER_OK */
			if (q->poll) {
				w->n_poll++;
				/* nobody kicks a polled queue: park avail_event once */
				xvl_vq_dev_disable_notify(&q->vq);
			} else {
				struct epoll_event ev = {.events = EPOLLIN, .data.ptr = q};
				if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, q->kick_fd, &ev) < 0)
					srv_queue_break(q, -errno, "queue %u: cannot watch its kick fd",
							q->index);
			}
		} else if (cmd[i].op == CMD_DETACH) {
			if (q->poll)
				w->n_poll--;
			else
				epoll_ctl(w->epfd, EPOLL_CTL_DEL, q->kick_fd, NULL);
			q->live = false;
			q->more = false;
			q->w_detach = true;
			srv_queue_idle_check(q);
		}
	}
}

static void worker_kicked(struct srv_worker *w, struct srv_queue *q, uint32_t events)
{
	uint64_t v;
	if (!q->live)
		return;
	if (events & (EPOLLERR | EPOLLHUP)) {
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, q->kick_fd, NULL);
		srv_queue_break(q, -EPIPE, "queue %u: kick fd hung up", q->index);
		return;
	}
	int rc = xvl_os_peer_eventfd_drain(&w->guard, q->kick_fd, &v);
	if (rc < 0) {
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, q->kick_fd, NULL);
		srv_queue_break(q, rc, "queue %u: kick eventfd %s", q->index,
				rc == -ETIMEDOUT ? "was made blocking" : "failed");
		return;
	}
	q->more = true;
}

/* Serve the owned queues; returns the chains popped. */
static unsigned worker_serve(struct srv_worker *w, bool polling, bool *busy)
{
	unsigned work = 0;
	*busy = false;
	for (unsigned i = 0; i < w->n_own; i++) {
		struct srv_queue *q = w->own[i];
		if (!q->live || (!q->poll && !q->more && !polling))
			continue;
		work += srv_queue_process(q, polling);
		*busy |= q->more;
	}
	return work;
}

/* Before sleeping: turn notifications back on; true if work came meanwhile. */
static bool worker_rearm(struct srv_worker *w)
{
	bool work = false;
	for (unsigned i = 0; i < w->n_own; i++) {
		struct srv_queue *q = w->own[i];
		if (q->live && !q->poll && xvl_vq_dev_enable_notify(&q->vq)) {
			q->more = true;
			work = true;
		}
	}
	return work;
}

static void worker_loop(struct srv_worker *w)
{
	struct epoll_event ev[WORKER_EVENTS];
	bool busy = false, polling = false;
	bool worked = false;       /* the last pass found work */
	unsigned quiet_passes = 0; /* passes without epoll_wait since the last one */

	while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
		int timeout = busy || polling || w->n_poll ? 0 : -1;
		if (timeout < 0 && worker_rearm(w))
			timeout = 0;
		uint64_t t0 = 0;
		if (timeout < 0) {
			xvl_os_guard_release(&w->guard); /* no peer eventfd is touched while we sleep */
			t0 = xvl_os_now_ns();
		}
		/* While the queues give work, their kicks are off: look at the epoll set (commands,
		 * kicks of other queues) only every WORKER_SKIP passes, not at a syscall a pass. */
		int n = 0;
		if (timeout < 0 || !worked || ++quiet_passes >= WORKER_SKIP) {
			quiet_passes = 0;
			n = epoll_wait(w->epfd, ev, WORKER_EVENTS, timeout);
			if (n < 0 && errno != EINTR)
				break;
		}
		if (timeout < 0)
			srv_poll_adapt(&w->poll, xvl_os_now_ns() - t0);
		for (int i = 0; i < n; i++) {
			if (ev[i].data.ptr == w)
				continue; /* the ring: reaped below */
			if (ev[i].data.ptr)
				worker_kicked(w, ev[i].data.ptr, ev[i].events);
			else
				worker_take_commands(w);
		}
		unsigned reaped = 0;
		if (w->ring_ok && io_uring_cq_ready(&w->ring)) {
			reaped = io_uring_cq_ready(&w->ring);
			srv_reap(&w->ring);
		}
		unsigned work = worker_serve(w, polling, &busy) + reaped;
		if (w->ring_pending) {
			io_uring_submit(&w->ring);
			w->ring_pending = 0;
		}
		uint64_t now = xvl_os_now_ns();
		worked = work > 0;
		if (work || n > 0)
			w->last_work_ns = now;
		polling = srv_poll_keep(&w->poll, w->last_work_ns, now);
	}
}

/* Restricted as the control thread's ring is (backend_file.c), created before the
 * server forbids new rings (srv_ring_seal). */
static int worker_ring_setup(struct srv_worker *w)
{
	if (srv_ring_create(&w->ring, WORKER_RING_DEPTH) < 0)
		return 0; /* file backends will answer IOERR; the others do not need it */
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w}; /* completions wake us */
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->ring.ring_fd, &ev) < 0) {
		io_uring_queue_exit(&w->ring);
		return 0;
	}
	w->ring_ok = true;
	return 0;
}

static void *worker_main(void *arg)
{
	struct srv_worker *w = arg;
	if (w->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
		if (rc)
			srv_log(w->srv, "worker %u: not pinned to CPU %d (%s); it runs where the "
				"process may", w->index, w->cpu, strerror(rc));
	}
	if (xvl_os_guard_init(&w->guard) < 0)
		srv_log(w->srv, "worker %u: no guard timer for peers' eventfds", w->index);
	worker_loop(w);
	xvl_os_guard_fini(&w->guard);
	return NULL;
}

int srv_workers_start(struct srv *s, struct xvl_errbuf *eb)
{
	s->news_fd = -1;
	if (!s->opts.n_cpus)
		return 0;
	s->news = calloc(1, sizeof(*s->news));
	s->workers = calloc(s->opts.n_cpus, sizeof(*s->workers));
	if (!s->news || !s->workers)
		return xvl_err(eb, -ENOMEM, "out of memory");
	pthread_mutex_init(&s->news->lock, NULL);
	s->news_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->news_fd < 0 || srv_watch(s, s->news_fd, &s->news_w, W_WORKER, NULL) < 0)
		return xvl_err(eb, -errno, "worker eventfd: %s", strerror(errno));
	for (unsigned i = 0; i < s->opts.n_cpus; i++) {
		struct srv_worker *w = &s->workers[i];
		w->srv = s;
		w->index = i;
		w->cpu = s->opts.cpus[i];
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		pthread_mutex_init(&w->box.lock, NULL);
		srv_poll_init(&w->poll, s->poll.max_ns);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
		if (w->epfd < 0 || w->wake_fd < 0 ||
		    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake_fd, &ev) < 0)
			return xvl_err(eb, -errno, "worker %u: %s", i, strerror(errno));
		worker_ring_setup(w);
		int rc = pthread_create(&w->th, NULL, worker_main, w);
		if (rc)
			return xvl_err(eb, -rc, "worker %u: cannot start a thread: %s", i,
				       strerror(rc));
		w->started = true;
		s->n_workers = i + 1;
	}
	return 0;
}

void srv_workers_stop(struct srv *s)
{
	for (unsigned i = 0; s->workers && i < s->opts.n_cpus; i++) {
		struct srv_worker *w = &s->workers[i];
		uint64_t one = 1;
		if (w->started) {
			__atomic_store_n(&w->stop, 1, __ATOMIC_RELAXED);
			if (write(w->wake_fd, &one, sizeof(one)) < 0)
				srv_log(s, "worker %u: cannot wake it", i);
			pthread_join(w->th, NULL);
			w->started = false;
		}
		if (w->ring_ok)
			io_uring_queue_exit(&w->ring);
		w->ring_ok = false;
		if (w->epfd > 0)
			close(w->epfd);
		if (w->wake_fd > 0)
			close(w->wake_fd);
		w->epfd = w->wake_fd = -1;
	}
	free(s->workers);
	s->workers = NULL;
	s->n_workers = 0;
	if (s->news_fd >= 0) {
		srv_unwatch(s, s->news_fd);
		close(s->news_fd);
	}
	s->news_fd = -1;
	free(s->news);
	s->news = NULL;
}

/* Which worker serves queue j of device i: spread over the workers. */
struct srv_worker *srv_worker_for(struct srv *s, unsigned dev, unsigned queue)
{
	if (!s->n_workers)
		return NULL;
	return &s->workers[(dev + queue) % s->n_workers];
}
