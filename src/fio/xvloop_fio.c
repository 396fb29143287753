/* SPDX-License-Identifier: MIT */
/*
 * fio external ioengine for xvloop block devices:
 *
 *   fio --ioengine=external:xvloop-fio.so --uri=xvl:/run/xvl.sock ...
 *
 * uri=xvl:PATH talks to an xvloop server (cross-compartment: the device is
 * served from another process that shares only the window with fio);
 * uri=vhost-user:PATH talks straight to a vhost-user-blk backend such as
 * qemu-storage-daemon (direct mode, the original virtio-loopback shape).
 *
 * Connections and queues.  fio forks one process per job by default: each
 * process then has its own connection and uses queue 0.  With thread=1 the
 * jobs of one process that name the same uri and device share one
 * connection, and each job thread owns one queue of it (a queue is used by
 * one thread at a time, which is the library's rule).  Sharing is needed
 * because a device has one driver at a time: a second connection to the
 * same xvloop device is refused (EBUSY) and a vhost-user backend serves one
 * frontend at a time.  Sharing stays safe with recovery on (XVL_RECONNECT_MS,
 * which the partitioner sets): the library serialises link calls and sets
 * every queue up again with the other job threads' queue calls held off
 * (tests/e2e/hostile_client.sh runs two job threads through server kills).
 *
 * Buffers.  zerocopy=1 (default) allocates fio's I/O buffers inside the
 * window (the iomem_alloc hook), so requests carry them without a copy;
 * zerocopy=0 gives fio ordinary memory and the library copies each request
 * through a bounce block of the window.
 *
 * Completions.  poll=0 (default) spins for a bounded time that adapts to
 * what recent waits took (the library's xvl_blk_wait; spin_us fixes it), then
 * sleeps on the queue's eventfd until the device signals; poll=1 asks the device side not to notify (the xvloop
 * server then polls the queue; a server device bridged to a vhost-user
 * backend refuses, since the server is not on that data path) and spins on
 * the used ring.  spin=1 keeps notifications in both directions but spins
 * in getevents instead of sleeping: the device side is woken by kicks as
 * usual, the job's thread never sleeps.  It works with every peer.
 *
 * The process-wide table of shared connections is the one piece of global
 * state; fio's external-engine ABI also requires the exported `ioengine`
 * symbol.  Neither lives in the xvloop library.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fio.h"
#include "optgroup.h"

#include "xvloop/xvl.h"

#define PROBE_WINDOW   (8ull << 20)
#define MIN_WINDOW     (64ull << 20)
#define MAX_QUEUE_SIZE 1024u

/* ------------------------------------------------------------ options */

struct xvl_fio_opts {
	void *pad;             /* fio treats an option at offset 0 as unset */
	char *uri;
	char *device;
	unsigned int queues;
	unsigned int queue_size;
	unsigned int zerocopy;
	unsigned int poll;
	unsigned int spin;
	unsigned int spin_us;
	unsigned int window_mb;
	char *window;
};

static struct fio_option xvl_fio_options[] = {
	{
		.name = "uri",
		.lname = "xvloop URI",
		.type = FIO_OPT_STR_STORE,
		.off1 = offsetof(struct xvl_fio_opts, uri),
		.help = "xvl:SOCKET (xvloop server, cross-compartment) or "
			"vhost-user:SOCKET (vhost-user-blk backend, direct)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "device",
		.lname = "xvloop device",
		.type = FIO_OPT_STR_STORE,
		.off1 = offsetof(struct xvl_fio_opts, device),
		.help = "Device index or name on the server (default: the first block device)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "queues",
		.lname = "xvloop queues",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct xvl_fio_opts, queues),
		.def = "0",
		.help = "Queues to open on a connection; each job thread uses one "
			"(0: with thread=1 one per job, at most 16; else 1)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "queue_size",
		.lname = "xvloop queue size",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct xvl_fio_opts, queue_size),
		.def = "0",
		.help = "Virtqueue entries, a power of two (0: 256, or iodepth rounded up)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "zerocopy",
		.lname = "xvloop zero-copy buffers",
		.type = FIO_OPT_BOOL,
		.off1 = offsetof(struct xvl_fio_opts, zerocopy),
		.def = "1",
		.help = "Allocate fio's I/O buffers inside the shared window (no copy)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "poll",
		.lname = "xvloop polling",
		.type = FIO_OPT_BOOL,
		.off1 = offsetof(struct xvl_fio_opts, poll),
		.def = "0",
		.help = "Busy-poll for completions instead of waiting for notifications",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "spin",
		.lname = "xvloop spin on completions",
		.type = FIO_OPT_BOOL,
		.off1 = offsetof(struct xvl_fio_opts, spin),
		.def = "0",
		.help = "Spin for completions but leave notifications on (works with "
			"vhost-user backends, which poll=1 does not)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "spin_us",
		.lname = "xvloop spin before sleeping",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct xvl_fio_opts, spin_us),
		.def = "0",
		.help = "In event mode, wait for a completion spinning up to this many "
			"microseconds before sleeping on the queue's eventfd (0: adaptive, "
			"twice what recent waits took, at most 50 us)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "window_mb",
		.lname = "xvloop window size",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct xvl_fio_opts, window_mb),
		.def = "0",
		.help = "Shared window size in MiB (0: sized from iodepth, block size and queues)",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "window",
		.lname = "xvloop window backing",
		.type = FIO_OPT_STR_STORE,
		.off1 = offsetof(struct xvl_fio_opts, window),
		.help = "Window backing: memfd (default), memfd-huge, hugetlbfs:PATH, shm:NAME",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = NULL,
	},
};

/* ------------------------------------------------------------ shared connections */

struct xvl_fio_conn {
	struct xvl_fio_conn *next;
	char *uri;
	char *device;
	struct xvl_client *c;
	struct xvl_blk *b;
	struct xvl_blk_info info;
	unsigned refs;
	unsigned next_queue;
	/* Taken around window-heap use (buffer allocation; every request in
	 * copy mode, where bounce blocks come from the heap) when threads share
	 * the connection: the library's heap is not thread-safe. */
	pthread_mutex_t heap_lock;
};

struct xvl_fio_table {
	pthread_mutex_t lock;
	struct xvl_fio_conn *conns;
};

/* fio gives job threads no shared context to hang this on: the engine's one global. */
static struct xvl_fio_table conn_table = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Per job thread. */
struct xvl_fio_data {
	struct xvl_fio_conn *conn;
	uint16_t q;
	bool shared;            /* other threads may use conn */
	bool lock_io;           /* copy mode on a shared connection */
	bool zerocopy;
	bool spin;
	void *iomem;            /* fio's buffers, when allocated in the window */
	unsigned queued;        /* submitted since the last commit */
	unsigned depth;
	unsigned n_events;
	struct io_u **events;
	struct xvl_blk_cpl *cpl;
};

static bool same(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

static uint64_t pow2_at_least(uint64_t v)
{
	uint64_t p = 1;
	while (p < v)
		p <<= 1;
	return p;
}

static unsigned long long max_bs(const struct thread_data *td)
{
	unsigned long long m = 4096;
	for (int d = 0; d < DDIR_RWDIR_CNT; d++)
		if (td->o.max_bs[d] > m)
			m = td->o.max_bs[d];
	return m;
}

/*
 * Window size: the queues' rings, and for each job thread its I/O buffers
 * (zero copy) or bounce blocks (copy).  The window heap is a buddy
 * allocator, so blocks are rounded up to a power of two: reserve twice.
 */
static uint64_t window_bytes(const struct thread_data *td, const struct xvl_fio_opts *o,
			     unsigned nq)
{
	if (o->window_mb)
		return (uint64_t)o->window_mb << 20;
	uint64_t per_thread = pow2_at_least(max_bs(td) * (td->o.iodepth ? td->o.iodepth : 1) +
					    (2u << 20));
	uint64_t need = 2 * per_thread * nq + (4u << 20) * nq;
	uint64_t w = pow2_at_least(need);
	return w < MIN_WINDOW ? MIN_WINDOW : w;
}

static int parse_device(const struct xvl_client *c, const char *dev)
{
	if (!dev || !*dev)
		return -1;
	char *end;
	long v = strtol(dev, &end, 10);
	if (*end == '\0' && v >= 0)
		return (int)v;
	int i = xvl_client_find(c, dev);
	return i < 0 ? -2 : i;
}

static uint16_t queue_size_for(const struct thread_data *td, const struct xvl_fio_opts *o)
{
	if (o->queue_size)
		return (uint16_t)o->queue_size;
	uint64_t q = pow2_at_least(td->o.iodepth ? td->o.iodepth : 1);
	if (q < 256)
		q = 256;
	return (uint16_t)(q > MAX_QUEUE_SIZE ? MAX_QUEUE_SIZE : q);
}

static const char *busy_hint(int rc, const char *uri)
{
	if (rc != -EBUSY && rc != -ETIMEDOUT)
		return "";
	if (!strncmp(uri, "vhost-user:", 11))
		return " (a vhost-user backend serves one frontend at a time: "
		       "run several jobs as threads with thread=1 so they share one connection)";
	return " (a device has one driver at a time: run several jobs on it as "
	       "threads with thread=1 so they share one connection)";
}

/* Connect and open the block device; on failure logs why. */
static int conn_open(struct thread_data *td, const struct xvl_fio_opts *o, uint64_t window,
		     uint16_t nq, uint16_t qsize, struct xvl_client **cp, struct xvl_blk **bp)
{
	char err[256];
	char name[32];
	snprintf(name, sizeof(name), "fio-%d", (int)getpid());
	struct xvl_client_opts co = {XVL_CLIENT_OPTS_INIT, .name = name, .window = o->window, .window_size = window};
	struct xvl_client *c;
	int rc = xvl_client_connect(&c, o->uri, &co, err, sizeof(err));
	if (rc < 0) {
		log_err("xvloop: connect: %s%s\n", err, busy_hint(rc, o->uri));
		return rc;
	}
	int dev = parse_device(c, o->device);
	if (dev == -2) {
		log_err("xvloop: %s has no device called '%s'\n", o->uri, o->device);
		xvl_client_close(c);
		return -ENODEV;
	}
	struct xvl_blk_opts bo = {XVL_BLK_OPTS_INIT, .device = dev, .num_queues = nq, .queue_size = qsize,
				  .poll = o->poll != 0, .spin_us = o->spin_us};
	struct xvl_blk *b;
	rc = xvl_blk_open(c, &bo, &b);
	if (rc < 0) {
		log_err("xvloop: %s: opening the block device: %s%s\n", o->uri, xvl_client_errmsg(c),
			busy_hint(rc, o->uri));
		xvl_client_close(c);
		return rc;
	}
	*cp = c;
	*bp = b;
	return 0;
}

/* ------------------------------------------------------------ setup (fio's main process) */

/*
 * Runs in fio's main process before jobs start: find the device's size.
 * The probe connection is closed again, so no connection is inherited by
 * the forked jobs.
 */
static int xvl_fio_setup(struct thread_data *td)
{
	struct xvl_fio_opts *o = td->eo;
	struct fio_file *f;
	unsigned i;

	if (!o->uri || !*o->uri) {
		log_err("xvloop: the uri option is required (xvl:SOCKET or vhost-user:SOCKET)\n");
		return 1;
	}
	if (!td->files_index) {
		add_file(td, "xvloop", 0, 0);
		td->o.nr_files = td->o.nr_files ? td->o.nr_files : 1;
		td->o.open_files++;
	}
	struct xvl_fio_opts probe = *o;
	probe.poll = 0;
	struct xvl_client *c;
	struct xvl_blk *b;
	if (conn_open(td, &probe, PROBE_WINDOW, 1, 16, &c, &b) < 0)
		return 1;
	struct xvl_blk_info info;
	xvl_blk_get_info(b, &info);
	xvl_client_close(c);

	for_each_file(td, f, i) {
		f->real_file_size = info.capacity;
		fio_file_set_size_known(f);
	}
	return 0;
}

/* ------------------------------------------------------------ init / cleanup (per job) */

static void conn_put(struct xvl_fio_conn *cn)
{
	pthread_mutex_lock(&conn_table.lock);
	if (--cn->refs == 0) {
		for (struct xvl_fio_conn **pp = &conn_table.conns; *pp; pp = &(*pp)->next)
			if (*pp == cn) {
				*pp = cn->next;
				break;
			}
		xvl_client_close(cn->c);
		pthread_mutex_destroy(&cn->heap_lock);
		free(cn->uri);
		free(cn->device);
		free(cn);
	}
	pthread_mutex_unlock(&conn_table.lock);
}

/* The shared connection for (uri, device), made on first use; takes a reference. */
static struct xvl_fio_conn *conn_get(struct thread_data *td, const struct xvl_fio_opts *o,
				     uint16_t *queue)
{
	struct xvl_fio_conn *cn;

	pthread_mutex_lock(&conn_table.lock);
	for (cn = conn_table.conns; cn; cn = cn->next)
		if (same(cn->uri, o->uri) && same(cn->device, o->device))
			break;
	if (!cn) {
		/* Default with threads: a queue for every job of this fio run (fio's
		 * thread_number; the library caps it to what the device offers).
		 * Not td->o.numjobs: fio sets it to 1 in the clones numjobs= makes,
		 * and any of them may get here first. */
		unsigned nq = o->queues ? o->queues : td->o.use_thread ? thread_number : 1;
		if (nq > 16 && !o->queues)
			nq = 16;
		if (nq == 0 || nq > 64) {
			log_err("xvloop: queues=%u is out of range 1..64\n", nq);
			goto fail;
		}
		cn = calloc(1, sizeof(*cn));
		if (!cn)
			goto fail;
		cn->uri = strdup(o->uri);
		cn->device = o->device ? strdup(o->device) : NULL;
		pthread_mutex_init(&cn->heap_lock, NULL);
		if (!cn->uri || conn_open(td, o, window_bytes(td, o, nq), (uint16_t)nq,
					  queue_size_for(td, o), &cn->c, &cn->b) < 0) {
			pthread_mutex_destroy(&cn->heap_lock);
			free(cn->uri);
			free(cn->device);
			free(cn);
			goto fail;
		}
		xvl_blk_get_info(cn->b, &cn->info);
		if (cn->info.num_queues < nq)
			log_info("xvloop: %s offers %u queue(s), %u asked for\n", o->uri,
				 cn->info.num_queues, nq);
		cn->next = conn_table.conns;
		conn_table.conns = cn;
	}
	if (cn->next_queue >= cn->info.num_queues) {
		log_err("xvloop: %s: more job threads than the %u queue(s) open on the connection; "
			"set queues= to the number of threads (the device offers at most its own "
			"queue count)\n",
			o->uri, cn->info.num_queues);
		goto fail; /* cn has at least one user: the thread that got queue 0 */
	}
	*queue = (uint16_t)cn->next_queue++;
	cn->refs++;
	pthread_mutex_unlock(&conn_table.lock);
	return cn;

fail:
	pthread_mutex_unlock(&conn_table.lock);
	return NULL;
}

static int xvl_fio_init(struct thread_data *td)
{
	struct xvl_fio_opts *o = td->eo;

	if (!o->uri || !*o->uri) {
		log_err("xvloop: the uri option is required (xvl:SOCKET or vhost-user:SOCKET)\n");
		return 1;
	}
	if (!td->o.use_thread && td->o.numjobs > 1)
		log_info("xvloop: numjobs=%u without thread=1: each job process opens its own "
			 "connection, and a device takes one driver at a time; use thread=1 to "
			 "share one connection with a queue per job\n",
			 td->o.numjobs);

	struct xvl_fio_data *d = calloc(1, sizeof(*d));
	if (!d)
		return 1;
	d->depth = td->o.iodepth ? td->o.iodepth : 1;
	d->events = calloc(d->depth, sizeof(*d->events));
	d->cpl = calloc(d->depth, sizeof(*d->cpl));
	d->zerocopy = o->zerocopy != 0;
	d->spin = o->spin != 0 && o->poll == 0;
	td->io_ops_data = d;
	if (!d->events || !d->cpl)
		return 1;
	d->conn = conn_get(td, o, &d->q);
	if (!d->conn)
		return 1;
	d->shared = td->o.use_thread != 0;
	d->lock_io = d->shared && !d->zerocopy;
	if (d->conn->info.max_transfer < max_bs(td)) {
		log_err("xvloop: block size %llu exceeds the device's largest request (%u bytes)\n",
			max_bs(td), d->conn->info.max_transfer);
		return 1;
	}
	return 0;
}

static void xvl_fio_cleanup(struct thread_data *td)
{
	struct xvl_fio_data *d = td->io_ops_data;
	if (!d)
		return;
	if (d->conn)
		conn_put(d->conn);
	free(d->events);
	free(d->cpl);
	free(d);
	td->io_ops_data = NULL;
}

/* ------------------------------------------------------------ buffers */

static int xvl_fio_iomem_alloc(struct thread_data *td, size_t total)
{
	struct xvl_fio_data *d = td->io_ops_data;

	if (!d || !d->conn)
		return 1;
	if (!d->zerocopy) {
		void *p;
		int rc = posix_memalign(&p, page_size, total);
		if (rc)
			return 1;
		td->orig_buffer = p;
		return 0;
	}
	pthread_mutex_lock(&d->conn->heap_lock);
	d->iomem = xvl_buf_alloc(d->conn->c, total);
	pthread_mutex_unlock(&d->conn->heap_lock);
	if (!d->iomem) {
		log_err("xvloop: no room for %zu bytes of I/O buffers in the window; "
			"raise window_mb\n", total);
		return 1;
	}
	td->orig_buffer = d->iomem;
	return 0;
}

static void xvl_fio_iomem_free(struct thread_data *td)
{
	struct xvl_fio_data *d = td->io_ops_data;

	if (d && d->iomem) {
		pthread_mutex_lock(&d->conn->heap_lock);
		xvl_buf_free(d->conn->c, d->iomem);
		pthread_mutex_unlock(&d->conn->heap_lock);
		d->iomem = NULL;
	} else {
		free(td->orig_buffer);
	}
	td->orig_buffer = NULL;
}

/* ------------------------------------------------------------ I/O */

static int submit(struct xvl_fio_data *d, const struct xvl_blk_req *r)
{
	if (d->lock_io)
		pthread_mutex_lock(&d->conn->heap_lock);
	int rc = xvl_blk_submit(d->conn->b, d->q, r);
	if (d->lock_io)
		pthread_mutex_unlock(&d->conn->heap_lock);
	return rc;
}

static enum fio_q_status xvl_fio_queue(struct thread_data *td, struct io_u *io_u)
{
	struct xvl_fio_data *d = td->io_ops_data;
	const struct xvl_blk_info *in = &d->conn->info;
	struct xvl_blk_req r = {.offset = io_u->offset, .buf = io_u->xfer_buf,
				.len = (uint32_t)io_u->xfer_buflen, .user = io_u};

	fio_ro_check(td, io_u);
	switch (io_u->ddir) {
	case DDIR_READ:
		r.op = XVL_BLK_READ;
		break;
	case DDIR_WRITE:
		r.op = XVL_BLK_WRITE;
		break;
	case DDIR_TRIM:
		if (!in->discard) {
			io_u->error = EOPNOTSUPP;
			return FIO_Q_COMPLETED;
		}
		r.op = XVL_BLK_DISCARD;
		r.buf = NULL;
		break;
	case DDIR_SYNC:
	case DDIR_DATASYNC:
	case DDIR_SYNC_FILE_RANGE:
		/* Without VIRTIO_BLK_F_FLUSH the device writes through: nothing to do. */
		if (!in->flush) {
			io_u->error = 0;
			return FIO_Q_COMPLETED;
		}
		r = (struct xvl_blk_req){.op = XVL_BLK_FLUSH, .user = io_u};
		break;
	default:
		io_u->error = EINVAL;
		return FIO_Q_COMPLETED;
	}
	if (io_u->xfer_buflen > UINT32_MAX) {
		io_u->error = EINVAL;
		return FIO_Q_COMPLETED;
	}

	int rc = submit(d, &r);
	if (rc == -EAGAIN) {
		if (d->queued || xvl_blk_inflight(d->conn->b, d->q))
			return FIO_Q_BUSY; /* fio commits, reaps, and comes back */
		io_u->error = ENOMEM;
		log_err("xvloop: the queue is empty but a %u-byte request does not fit in the "
			"window; raise window_mb\n", r.len);
		return FIO_Q_COMPLETED;
	}
	if (rc < 0) {
		io_u->error = -rc;
		return FIO_Q_COMPLETED;
	}
	d->queued++;
	return FIO_Q_QUEUED;
}

static int xvl_fio_commit(struct thread_data *td)
{
	struct xvl_fio_data *d = td->io_ops_data;

	if (!d->queued)
		return 0;
	d->queued = 0;
	int rc = xvl_blk_kick(d->conn->b, d->q);
	return rc < 0 ? rc : 0;
}

static int reap(struct xvl_fio_data *d, unsigned max)
{
	if (d->lock_io)
		pthread_mutex_lock(&d->conn->heap_lock);
	int n = xvl_blk_complete(d->conn->b, d->q, d->cpl, max);
	if (d->lock_io)
		pthread_mutex_unlock(&d->conn->heap_lock);
	for (int i = 0; i < n; i++) {
		struct io_u *u = d->cpl[i].user;
		u->error = d->cpl[i].result < 0 ? (unsigned)-d->cpl[i].result : 0;
		if (u->error)
			u->resid = u->xfer_buflen;
		d->events[d->n_events++] = u;
	}
	return n;
}

static int64_t ts_ms(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000 + t->tv_nsec / 1000000;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* spin=1: reap in a loop until min completions, the timeout, or a dead device. */
static int getevents_spin(struct xvl_fio_data *d, unsigned min, unsigned max,
			  const struct timespec *t)
{
	uint64_t deadline = t ? now_ns() + (uint64_t)ts_ms(t) * 1000000ull : 0;
	unsigned idle = 0;

	for (;;) {
		int n = reap(d, max - d->n_events);
		if (n < 0)
			return n;
		if (d->n_events >= min || d->n_events >= max)
			return (int)d->n_events;
		/* Now and then, let the library look at the link and the device state. */
		if (++idle % 4096 == 0) {
			int w = xvl_blk_wait(d->conn->b, d->q, 0);
			if (w < 0)
				return w;
			if (deadline && now_ns() >= deadline)
				return (int)d->n_events;
		}
		cpu_relax();
	}
}

/*
 * Take completions until at least min are in hand.  xvl_blk_wait sleeps on
 * the queue's eventfd in event mode and spins on the used ring in poll mode.
 */
static int xvl_fio_getevents(struct thread_data *td, unsigned int min, unsigned int max,
			     const struct timespec *t)
{
	struct xvl_fio_data *d = td->io_ops_data;
	int timeout_ms = t ? (int)ts_ms(t) : -1;

	d->n_events = 0;
	if (max > d->depth)
		max = d->depth;
	if (d->spin)
		return getevents_spin(d, min, max, t);
	for (;;) {
		int n = reap(d, max - d->n_events);
		if (n < 0)
			return n;
		if (d->n_events >= min || d->n_events >= max)
			break;
		int w = xvl_blk_wait(d->conn->b, d->q, timeout_ms);
		if (w < 0) {
			/* device gone with nothing left to fail: stop the job */
			log_err("xvloop: %s: %s\n", d->conn->uri, xvl_client_errmsg(d->conn->c));
			return w;
		}
		if (w == 0)
			break; /* timed out */
	}
	return (int)d->n_events;
}

static struct io_u *xvl_fio_event(struct thread_data *td, int event)
{
	struct xvl_fio_data *d = td->io_ops_data;
	return event >= 0 && (unsigned)event < d->n_events ? d->events[event] : NULL;
}

/* ------------------------------------------------------------ files */

static int xvl_fio_open_file(struct thread_data *td, struct fio_file *f)
{
	return 0;
}

static int xvl_fio_close_file(struct thread_data *td, struct fio_file *f)
{
	return 0;
}

static int xvl_fio_invalidate(struct thread_data *td, struct fio_file *f)
{
	return 0;
}

/* Sizes are set by ->setup; a file added later has no size until then. */
static int xvl_fio_get_file_size(struct thread_data *td, struct fio_file *f)
{
	return fio_file_size_known(f) ? 0 : EINVAL;
}

/* ------------------------------------------------------------ registration */

/* fio's dlopen loader looks this symbol up by name. */
struct ioengine_ops ioengine = {
	.name = "xvloop",
	.version = FIO_IOOPS_VERSION,
	.flags = FIO_DISKLESSIO | FIO_NOEXTEND | FIO_NODISKUTIL,
	.setup = xvl_fio_setup,
	.init = xvl_fio_init,
	.cleanup = xvl_fio_cleanup,
	.queue = xvl_fio_queue,
	.commit = xvl_fio_commit,
	.getevents = xvl_fio_getevents,
	.event = xvl_fio_event,
	.open_file = xvl_fio_open_file,
	.close_file = xvl_fio_close_file,
	.invalidate = xvl_fio_invalidate,
	.get_file_size = xvl_fio_get_file_size,
	.iomem_alloc = xvl_fio_iomem_alloc,
	.iomem_free = xvl_fio_iomem_free,
	.options = xvl_fio_options,
	.option_struct_size = sizeof(struct xvl_fio_opts),
};
