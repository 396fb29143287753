/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user bridge when the driver polls (docs/PROTOCOL.md 8, "poll
 * mode"): a queue set up with POLL has no kick eventfd the backend could
 * be given, so the backend gets the server's relay eventfds and this
 * thread, one per bridged device session with such queues, watches the
 * polled queues' avail index in the window and kicks the backend's kick
 * eventfd when it moved.  The backend's call eventfd of a polled queue has
 * nobody to ring (the driver polls its used ring): the thread drains it.
 *
 * Timing: look again at once while the avail index moved in the last
 * SPIN_AFTER_WORK_NS, then sleep with xvl_backoff (50 µs doubling), at most
 * ACTIVE_MAX_US while it moved in the last ACTIVE_NS (a pause in a busy
 * stretch), up to 10 ms when idle for longer.  The sleep is a ppoll() on
 * stop_fd, so stopping never waits for a backoff.
 *
 * Hostile driver: the avail index is only compared with its last value (a
 * change means "kick"); nothing is indexed by it.  A driver that changes it
 * all the time costs this thread at most one eventfd write per look.
 * Invariants: the thread only reads the window and writes/reads the relay
 * eventfds; it is stopped (joined) before those are closed and before the
 * session's window can go (bridge.c calls br_poller_stop from
 * relay_close_all).
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"
#include "doorbell.h"
#include "xvl_atomic.h"

#define SPIN_AFTER_WORK_NS 200000ull  /* look again at once this long after a change */
#define ACTIVE_NS 100000000ull        /* a change within this: sleep at most ACTIVE_MAX_US */
#define ACTIVE_MAX_US 200u

struct br_poller {
	pthread_t thread;
	int stop_fd;
	unsigned n;
	struct {
		const uint16_t *avail_idx; /* in the window */
		int kick;                  /* the backend's kick eventfd (the queue's relay_kick) */
		int call;                  /* the backend's call eventfd, -1: the loop forwards it */
		uint16_t last;
	} q[XVL_MAX_QUEUES];
	atomic_uint_fast64_t kicks;
};

static bool look(struct br_poller *p)
{
	bool any = false;
	for (unsigned i = 0; i < p->n; i++) {
		uint16_t v = xvl_rd16_acquire(p->q[i].avail_idx);
		if (v != p->q[i].last) {
			p->q[i].last = v;
			xvl_os_eventfd_signal(p->q[i].kick);
			atomic_fetch_add_explicit(&p->kicks, 1, memory_order_relaxed);
			any = true;
		}
		if (p->q[i].call >= 0 && xvl_os_eventfd_drain(p->q[i].call))
			any = true; /* completions: the driver will add more soon */
	}
	return any;
}

/* Microseconds to sleep before the next look (0: look again now). */
static unsigned next_sleep_us(struct xvl_backoff *bo, uint64_t idle_ns)
{
	if (idle_ns < SPIN_AFTER_WORK_NS) {
		xvl_backoff_reset(bo);
		return 0;
	}
	unsigned us = xvl_backoff_next(bo);
	if (idle_ns < ACTIVE_NS && us > ACTIVE_MAX_US) /* a pause in a busy stretch: stay close */
		bo->us = us = ACTIVE_MAX_US;
	return us;
}

static void *poller_main(void *arg)
{
	struct br_poller *p = arg;
	struct xvl_backoff bo;
	uint64_t last_work = xvl_os_now_ns();
	xvl_backoff_reset(&bo);
	for (;;) {
		uint64_t now = xvl_os_now_ns();
		if (look(p))
			last_work = now;
		unsigned us = next_sleep_us(&bo, now - last_work);
		struct pollfd pf = {.fd = p->stop_fd, .events = POLLIN};
		struct timespec ts = {.tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000};
		if (ppoll(&pf, 1, &ts, NULL) > 0)
			break;
		if (!us)
			sched_yield(); /* spinning: leave the CPU to the backend and the driver */
	}
	return NULL;
}

int br_poller_start(struct srv_dev *d, struct xvl_errbuf *eb)
{
	struct srv_bridge *b = d->br;
	struct br_poller *p = calloc(1, sizeof(*p));
	if (!p)
		return xvl_err(eb, -ENOMEM, "device %s: out of memory", d->spec.name);
	for (unsigned i = 0; i < XVL_MAX_QUEUES && i < d->num_queues; i++) {
		const struct srv_queue *q = &d->q[i];
		if (!q->configured || !q->poll || q->relay_kick < 0)
			continue;
		p->q[p->n].avail_idx = &q->vq.avail->idx;
		p->q[p->n].kick = q->relay_kick;
		p->q[p->n].call = q->call_fd < 0 ? q->relay_call : -1;
		p->q[p->n].last = q->vq.last_avail; /* what the backend starts from */
		p->n++;
	}
	if (!p->n) {
		free(p);
		return 0;
	}
	p->stop_fd = xvl_os_eventfd();
	int rc = p->stop_fd < 0 ? p->stop_fd : -pthread_create(&p->thread, NULL, poller_main, p);
	if (rc < 0) {
		if (p->stop_fd >= 0)
			close(p->stop_fd);
		free(p);
		return xvl_err(eb, rc, "device %s: starting the avail poller: %s", d->spec.name,
			       strerror(-rc));
	}
	b->poller = p;
	srv_log(d->srv, "device %s: the driver polls %u queue(s): the server watches their avail "
		"index and kicks the backend", d->spec.name, p->n);
	return 0;
}

void br_poller_stop(struct srv_dev *d)
{
	struct br_poller *p = d->br ? d->br->poller : NULL;
	if (!p)
		return;
	xvl_os_eventfd_signal(p->stop_fd);
	pthread_join(p->thread, NULL);
	close(p->stop_fd);
	uint64_t k = atomic_load(&p->kicks);
	d->br->poller_kicks += k;
	srv_log(d->srv, "device %s: the avail poller stopped: %llu kick(s) forwarded to the backend",
		d->spec.name, (unsigned long long)k);
	d->br->poller = NULL;
	free(p);
}

uint64_t br_poller_kicks(const struct srv_dev *d)
{
	const struct br_poller *p = d->br ? d->br->poller : NULL;
	return (d->br ? d->br->poller_kicks : 0) + (p ? atomic_load(&((struct br_poller *)p)->kicks) : 0);
}
