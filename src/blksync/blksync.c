/* SPDX-License-Identifier: MIT */
/* Blocking, thread-safe byte I/O on an xvloop block device; see blksync.h. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "blksync.h"

#define SECTOR 512u
#define XBS_MAX_QUEUES 16
#define SLEEP_MS 50           /* a sleeper looks at the link this often */
#define NO_ROOM_WAIT_MS 10000
#define RANGE_PIECE (1u << 30)  /* discard / write-zeroes bytes per request (no data moves) */ /* window full with nothing of ours in flight: give up after */

/*
 * Per queue.  Invariants: mu is held by whoever touches the queue in the
 * client library (submit, kick, complete, wait); at most one thread is the
 * sleeper (sleeper true), polling fd with mu released; every other waiter
 * sleeps on cv, and is woken whenever completions were handed out or the
 * sleeper returns.  A thread that reaps while someone sleeps on fd (having
 * drained fd, so poll would not return) signals wake_fd.
 */
struct xbs_q {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool sleeper;
	int fd;      /* the queue's completion notifications */
	int wake_fd; /* wakes the sleeper when another thread reaped its completions */
	uint16_t idx;
};

struct xbs {
	struct xvl_client *c;
	struct xvl_blk *b;
	struct xvl_blk_info info;
	unsigned nq;
	atomic_uint next;
	struct xbs_q q[XBS_MAX_QUEUES];
};

/* One caller's request: its pieces in flight and the first error among them. */
struct xbs_req {
	unsigned pending;
	int result;
};

/* ------------------------------------------------------------ open / close */

static int pick_device(struct xvl_client *c, const char *dev, char *err, size_t errlen)
{
	if (!dev) {
		for (unsigned i = 0; i < xvl_client_num_devices(c); i++) {
			struct xvl_dev_desc d;
			if (xvl_client_device(c, i, &d) == 0 && d.virtio_id == 2)
				return (int)i;
		}
		snprintf(err, errlen, "the server offers no block device");
		return -ENODEV;
	}
	char *end;
	long i = strtol(dev, &end, 10);
	if (*dev && !*end && i >= 0 && (unsigned long)i < xvl_client_num_devices(c))
		return (int)i;
	int r = xvl_client_find(c, dev);
	if (r < 0)
		snprintf(err, errlen, "no device called '%s' (the server offers %u device(s))", dev,
			 xvl_client_num_devices(c));
	return r < 0 ? -ENODEV : r;
}

static unsigned queue_count(struct xvl_client *c, int dev, const struct xbs_opts *o)
{
	const char *env = getenv("XVL_RECONNECT_MS");
	if (o->reconnect_ms || (env && atoi(env) > 0))
		return 1;
	struct xvl_dev_desc d = {.num_queues = 1};
	xvl_client_device(c, (unsigned)dev, &d);
	unsigned n = o->queues ? o->queues : d.num_queues;
	if (n > d.num_queues)
		n = d.num_queues;
	if (n > XBS_MAX_QUEUES)
		n = XBS_MAX_QUEUES;
	return n ? n : 1;
}

int xbs_open(struct xbs **out, const struct xbs_opts *o, char *err, size_t errlen)
{
	struct xbs *s = calloc(1, sizeof(*s));
	if (!s)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	struct xvl_client_opts co = {XVL_CLIENT_OPTS_INIT, .name = o->client_name ? o->client_name : "xvl-blksync",
				     .window_size = o->window_size, .reconnect_ms = o->reconnect_ms};
	int rc = xvl_client_connect(&s->c, o->uri, &co, err, errlen);
	if (rc < 0) {
		free(s);
		return rc;
	}
	int dev = pick_device(s->c, o->device, err, errlen);
	if (dev < 0) {
		xbs_close(s);
		return dev;
	}
	struct xvl_blk_opts bo = {XVL_BLK_OPTS_INIT, .device = dev,
				  .num_queues = (uint16_t)queue_count(s->c, dev, o)};
	rc = xvl_blk_open(s->c, &bo, &s->b);
	if (rc < 0) {
		snprintf(err, errlen, "cannot open the device: %s", xvl_client_errmsg(s->c));
		xbs_close(s);
		return rc;
	}
	xvl_blk_get_info(s->b, &s->info);
	s->nq = s->info.num_queues ? s->info.num_queues : 1;
	if (s->nq > XBS_MAX_QUEUES)
		s->nq = XBS_MAX_QUEUES;
	for (unsigned i = 0; i < s->nq; i++) {
		pthread_mutex_init(&s->q[i].mu, NULL);
		pthread_cond_init(&s->q[i].cv, NULL);
		s->q[i].idx = (uint16_t)i;
		s->q[i].fd = xvl_blk_queue_fd(s->b, (uint16_t)i);
		s->q[i].wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	*out = s;
	return 0;
}

void xbs_close(struct xbs *s)
{
	if (!s)
		return;
	if (s->b) {
		xvl_blk_close(s->b);
		for (unsigned i = 0; i < s->nq; i++) {
			if (s->q[i].wake_fd >= 0)
				close(s->q[i].wake_fd);
			pthread_mutex_destroy(&s->q[i].mu);
			pthread_cond_destroy(&s->q[i].cv);
		}
	}
	if (s->c)
		xvl_client_close(s->c);
	free(s);
}

void xbs_info(const struct xbs *s, struct xvl_blk_info *info)
{
	*info = s->info;
}

/* ------------------------------------------------------------ the engine */

/* Hand every completion on q to its owner (mu held).  Returns how many. */
static int reap(struct xbs *s, struct xbs_q *q)
{
	struct xvl_blk_cpl cpl[32];
	int total = 0, n;
	do {
		n = xvl_blk_complete(s->b, q->idx, cpl, 32);
		for (int i = 0; i < n; i++) {
			struct xbs_req *r = cpl[i].user;
			if (cpl[i].result < 0 && !r->result)
				r->result = cpl[i].result;
			r->pending--;
		}
		total += n > 0 ? n : 0;
	} while (n == 32);
	if (total) {
		pthread_cond_broadcast(&q->cv);
		if (q->sleeper && q->wake_fd >= 0)
			eventfd_write(q->wake_fd, 1);
	}
	return total;
}

/* Wait until some completion on q was handed out, or a while passed (mu held). */
static void wait_progress(struct xbs *s, struct xbs_q *q)
{
	if (reap(s, q))
		return;
	if (q->sleeper) {
		pthread_cond_wait(&q->cv, &q->mu);
		return;
	}
	if (q->fd < 0) { /* no notification fd: the library waits (briefly, lock held) */
		xvl_blk_wait(s->b, q->idx, 1);
		reap(s, q);
		return;
	}
	q->sleeper = true;
	pthread_mutex_unlock(&q->mu);
	struct pollfd p[2] = {{.fd = q->fd, .events = POLLIN}, {.fd = q->wake_fd, .events = POLLIN}};
	int pr = poll(p, 2, SLEEP_MS);
	pthread_mutex_lock(&q->mu);
	q->sleeper = false;
	eventfd_t v;
	if (pr > 0 && p[1].revents)
		eventfd_read(q->wake_fd, &v);
	if (pr == 0)
		xvl_blk_wait(s->b, q->idx, 0); /* reads the link: notices a server gone */
	reap(s, q);
	pthread_cond_broadcast(&q->cv); /* someone else may sleep on the fd now */
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * The window has no room for a copy: wait for our own pieces if any, else
 * for other queues' (lock released).  -ENOMEM once nothing frees room.
 */
static int wait_room(struct xbs *s, struct xbs_q *q, struct xbs_req *r, uint64_t *since)
{
	xvl_blk_kick(s->b, q->idx);
	if (r->pending || xvl_blk_inflight(s->b, q->idx)) {
		wait_progress(s, q);
		*since = 0;
		return 0;
	}
	if (!*since)
		*since = now_ms();
	else if (now_ms() - *since > NO_ROOM_WAIT_MS)
		return -ENOMEM;
	pthread_mutex_unlock(&q->mu);
	usleep(200);
	pthread_mutex_lock(&q->mu);
	return 0;
}

/* Submit op over [off, off+len) in pieces (max_transfer for data), wait for all. */
static int run(struct xbs *s, uint8_t op, uint64_t off, uint8_t *buf, uint64_t len)
{
	struct xbs_q *q = &s->q[atomic_fetch_add(&s->next, 1) % s->nq];
	struct xbs_req r = {0};
	uint64_t done = 0, since = 0;
	bool once = op == XVL_BLK_FLUSH;
	pthread_mutex_lock(&q->mu);
	while (done < len || once) {
		uint64_t max = buf ? s->info.max_transfer : RANGE_PIECE;
		uint64_t n = len - done < max ? len - done : max;
		struct xvl_blk_req req = {.op = op, .offset = off + done, .buf = buf ? buf + done : NULL,
					  .len = (uint32_t)n, .user = &r};
		int rc = xvl_blk_submit(s->b, q->idx, &req);
		if (rc == -EAGAIN) {
			rc = wait_room(s, q, &r, &since);
			if (rc == 0)
				continue;
		}
		if (rc < 0) {
			r.result = rc;
			break;
		}
		r.pending++;
		done += n;
		once = false;
	}
	xvl_blk_kick(s->b, q->idx);
	while (r.pending)
		wait_progress(s, q);
	pthread_mutex_unlock(&q->mu);
	return r.result;
}

static bool inside(const struct xbs *s, uint64_t len, uint64_t off)
{
	return off <= s->info.capacity && len <= s->info.capacity - off;
}

/* Read the whole sector at sec, and either copy part of it out or merge part in and write it. */
static int partial(struct xbs *s, uint64_t sec, uint32_t at, uint8_t *user, uint32_t n, bool write)
{
	uint8_t tmp[SECTOR] __attribute__((aligned(64)));
	int rc = run(s, XVL_BLK_READ, sec, tmp, SECTOR);
	if (rc < 0)
		return rc;
	if (!write) {
		memcpy(user, tmp + at, n);
		return 0;
	}
	memcpy(tmp + at, user, n);
	return run(s, XVL_BLK_WRITE, sec, tmp, SECTOR);
}

/* Split [off, off+len) into a partial head sector, whole sectors, a partial tail sector. */
static int bytes_io(struct xbs *s, uint8_t *buf, uint64_t len, uint64_t off, bool write)
{
	if (!inside(s, len, off))
		return -EINVAL;
	while (len) {
		uint32_t at = (uint32_t)(off % SECTOR);
		if (at || len < SECTOR) {
			uint32_t n = SECTOR - at < len ? SECTOR - at : (uint32_t)len;
			int rc = partial(s, off - at, at, buf, n, write);
			if (rc < 0)
				return rc;
			buf += n, off += n, len -= n;
			continue;
		}
		uint64_t whole = len & ~(uint64_t)(SECTOR - 1);
		int rc = run(s, write ? XVL_BLK_WRITE : XVL_BLK_READ, off, buf, whole);
		if (rc < 0)
			return rc;
		buf += whole, off += whole, len -= whole;
	}
	return 0;
}

int xbs_read(struct xbs *s, void *buf, uint64_t len, uint64_t off)
{
	return bytes_io(s, buf, len, off, false);
}

int xbs_write(struct xbs *s, const void *buf, uint64_t len, uint64_t off)
{
	if (s->info.read_only)
		return -EROFS;
	return bytes_io(s, (uint8_t *)(uintptr_t)buf, len, off, true);
}

static int ranged(struct xbs *s, uint8_t op, bool have, uint64_t len, uint64_t off)
{
	if (!have)
		return -EOPNOTSUPP;
	if (s->info.read_only)
		return -EROFS;
	if (!inside(s, len, off) || (off | len) % SECTOR)
		return -EINVAL;
	return len ? run(s, op, off, NULL, len) : 0;
}

int xbs_discard(struct xbs *s, uint64_t len, uint64_t off)
{
	return ranged(s, XVL_BLK_DISCARD, s->info.discard, len, off);
}

int xbs_write_zeroes(struct xbs *s, uint64_t len, uint64_t off)
{
	return ranged(s, XVL_BLK_WRITE_ZEROES, s->info.write_zeroes, len, off);
}

int xbs_flush(struct xbs *s)
{
	return s->info.flush ? run(s, XVL_BLK_FLUSH, 0, NULL, 0) : 0;
}
