/* SPDX-License-Identifier: MIT */
/* Data-integrity workload; see workload.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "workload.h"
#include <stdio.h>

#define SECTOR 512u
#define MAX_QUEUES 16
#define MAX_QD 256
#define LAT_SAMPLES (1u << 21)

enum { OP_READ, OP_WRITE };

struct wl_io {
	bool busy;
	uint8_t op;
	uint16_t q;
	uint64_t off;
	uint32_t len;
	uint32_t gen;
	uint64_t t0;
	uint8_t *buf;
};

struct wl {
	struct xvl_client *c;
	struct xvl_blk *b;
	const struct wl_opts *o;
	struct wl_result *r;
	uint16_t nq;
	unsigned qd;
	uint32_t max_transfer;
	uint64_t sectors;
	uint32_t *gen;     /* per sector: generation of the last acknowledged write, 0 = unknown */
	uint8_t *busy;     /* per sector: a request in flight covers it */
	uint32_t next_gen;
	uint64_t rng;
	struct wl_io io[MAX_QUEUES][MAX_QD];
	unsigned inflight[MAX_QUEUES];
	uint64_t *lat;
	uint64_t n_lat;
	/* the phase being run */
	struct wl_phase *ph;
	uint64_t cursor;   /* sequential phases */
	uint64_t left;     /* random phase: requests still to submit */
	uint64_t deadline;
	bool random;
	uint8_t seq_op;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t rnd(struct wl *w)
{
	w->rng += 0x9e3779b97f4a7c15ull;
	return mix64(w->rng);
}

static uint64_t pattern_word(const struct wl *w, uint64_t sector, uint32_t gen, unsigned i)
{
	return mix64(w->o->seed ^ (sector * 0x100000001b3ull) ^ ((uint64_t)gen << 40) ^ i);
}

static void fill_pattern(const struct wl *w, uint8_t *buf, uint64_t off, uint32_t len, uint32_t gen)
{
	for (uint32_t s = 0; s < len / SECTOR; s++) {
		uint64_t sector = off / SECTOR + s;
		uint64_t *p = (uint64_t *)(void *)(buf + (uint64_t)s * SECTOR);
		for (unsigned i = 0; i < SECTOR / 8; i++)
			p[i] = pattern_word(w, sector, gen, i);
	}
}

static void problem(struct wl *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Keep the first problem seen: the one the user should look at. */
static void problem(struct wl *w, const char *fmt, ...)
{
	va_list ap;
	if (w->r->first_problem[0])
		return;
	va_start(ap, fmt);
	vsnprintf(w->r->first_problem, sizeof(w->r->first_problem), fmt, ap);
	va_end(ap);
}

static void check_pattern(struct wl *w, const struct wl_io *io)
{
	for (uint32_t s = 0; s < io->len / SECTOR; s++) {
		uint64_t sector = io->off / SECTOR + s;
		uint32_t gen = w->gen[sector];
		if (!gen)
			continue;
		const uint64_t *p = (const uint64_t *)(const void *)(io->buf + (uint64_t)s * SECTOR);
		for (unsigned i = 0; i < SECTOR / 8; i++) {
			if (p[i] != pattern_word(w, sector, gen, i)) {
				w->r->mismatches++;
				problem(w, "data mismatch at byte offset %llu (expected generation %u)",
					(unsigned long long)(sector * SECTOR + i * 8), gen);
				break;
			}
		}
		w->r->bytes_verified += SECTOR;
	}
}

static void mark(struct wl *w, uint64_t off, uint32_t len, uint8_t busy)
{
	memset(w->busy + off / SECTOR, busy, len / SECTOR);
}

static bool overlaps(const struct wl *w, uint64_t off, uint32_t len)
{
	for (uint64_t s = off / SECTOR; s < (off + len) / SECTOR; s++)
		if (w->busy[s])
			return true;
	return false;
}

/* ------------------------------------------------------------ request choice */

static bool next_sequential(struct wl *w, uint8_t *op, uint64_t *off, uint32_t *len)
{
	uint64_t size = w->sectors * SECTOR;
	if (w->cursor >= size)
		return false;
	*op = w->seq_op;
	*off = w->cursor;
	uint64_t l = w->o->fill_len < w->max_transfer ? w->o->fill_len : w->max_transfer;
	*len = (uint32_t)(l < size - w->cursor ? l : size - w->cursor);
	w->cursor += *len;
	return true;
}

static bool next_random(struct wl *w, uint8_t *op, uint64_t *off, uint32_t *len)
{
	if (!w->left || (w->deadline && now_ns() > w->deadline))
		return false;
	uint32_t lo = w->o->min_len / SECTOR, hi = w->o->max_len / SECTOR;
	if (hi > w->max_transfer / SECTOR)
		hi = w->max_transfer / SECTOR;
	if (hi > w->sectors)
		hi = (uint32_t)w->sectors;
	if (lo > hi)
		lo = hi;
	for (int tries = 0; tries < 8; tries++) {
		uint32_t n = lo + (uint32_t)(rnd(w) % (hi - lo + 1));
		uint64_t s = rnd(w) % (w->sectors - n + 1);
		if (overlaps(w, s * SECTOR, n * SECTOR))
			continue;
		*op = rnd(w) & 1 ? OP_WRITE : OP_READ;
		*off = s * SECTOR;
		*len = n * SECTOR;
		w->left--;
		return true;
	}
	return false; /* crowded: try again after some completions */
}

/* ------------------------------------------------------------ engine */

static int submit_one(struct wl *w, uint16_t q, struct wl_io *io)
{
	struct xvl_blk_req req = {.op = io->op == OP_WRITE ? XVL_BLK_WRITE : XVL_BLK_READ,
				  .offset = io->off, .buf = io->buf, .len = io->len, .user = io};
	if (io->op == OP_WRITE) {
		io->gen = ++w->next_gen;
		fill_pattern(w, io->buf, io->off, io->len, io->gen);
	}
	io->t0 = now_ns();
	int rc = xvl_blk_submit(w->b, q, &req);
	if (rc < 0)
		return rc;
	io->busy = true;
	mark(w, io->off, io->len, 1);
	w->inflight[q]++;
	return 0;
}

static struct wl_io *free_io(struct wl *w, uint16_t q)
{
	for (unsigned i = 0; i < w->qd; i++)
		if (!w->io[q][i].busy)
			return &w->io[q][i];
	return NULL;
}

/* Fill queue q up to the queue depth; returns requests submitted or a negative errno. */
static int refill(struct wl *w, uint16_t q)
{
	int n = 0;
	while (w->inflight[q] < w->qd) {
		struct wl_io *io = free_io(w, q);
		uint8_t op;
		bool more = w->random ? next_random(w, &op, &io->off, &io->len)
				      : next_sequential(w, &op, &io->off, &io->len);
		if (!more)
			break;
		io->op = op;
		io->q = q;
		int rc = submit_one(w, q, io);
		if (rc == -EAGAIN) {
			if (w->random)
				w->left++;
			else
				w->cursor -= io->len;
			break;
		}
		if (rc < 0)
			return rc;
		n++;
	}
	if (n)
		xvl_blk_kick(w->b, q);
	return n;
}

static void record_latency(struct wl *w, uint64_t ns)
{
	if (w->n_lat < LAT_SAMPLES)
		w->lat[w->n_lat++] = ns;
}

static void on_complete(struct wl *w, const struct xvl_blk_cpl *cpl)
{
	struct wl_io *io = cpl->user;
	if (!io->busy) {
		w->r->duplicates++;
		problem(w, "a request at byte offset %llu completed twice",
			(unsigned long long)io->off);
		return;
	}
	record_latency(w, now_ns() - io->t0);
	io->busy = false;
	w->inflight[io->q]--;
	mark(w, io->off, io->len, 0);
	if (cpl->result < 0) {
		w->r->errors++;
		problem(w, "request at byte offset %llu failed (%s)", (unsigned long long)io->off,
			strerror(-cpl->result));
		if (io->op == OP_WRITE)
			memset(w->gen + io->off / SECTOR, 0, io->len / SECTOR * sizeof(uint32_t));
		return;
	}
	w->ph->ops++;
	w->ph->bytes += io->len;
	if (io->op == OP_WRITE) {
		for (uint64_t s = io->off / SECTOR; s < (io->off + io->len) / SECTOR; s++)
			w->gen[s] = io->gen;
	} else {
		check_pattern(w, io);
	}
}

static int reap_all(struct wl *w)
{
	struct xvl_blk_cpl cpl[64];
	int total = 0;
	for (uint16_t q = 0; q < w->nq; q++) {
		int n = xvl_blk_complete(w->b, q, cpl, 64);
		if (n < 0)
			return n;
		for (int i = 0; i < n; i++)
			on_complete(w, &cpl[i]);
		total += n;
	}
	return total;
}

static unsigned total_inflight(const struct wl *w)
{
	unsigned n = 0;
	for (uint16_t q = 0; q < w->nq; q++)
		n += w->inflight[q];
	return n;
}

static int wait_some(struct wl *w)
{
	for (uint16_t q = 0; q < w->nq; q++) {
		if (!w->inflight[q])
			continue;
		int rc = xvl_blk_wait(w->b, q, w->nq > 1 ? 1 : 10000);
		if (rc != 0 || w->nq == 1)
			return rc < 0 ? rc : 0;
	}
	return 0;
}

static int lat_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void finish_phase(struct wl *w, uint64_t t0)
{
	w->ph->ns = now_ns() - t0;
	if (w->n_lat) {
		qsort(w->lat, w->n_lat, sizeof(w->lat[0]), lat_cmp);
		w->ph->lat_p50_us = (double)w->lat[w->n_lat / 2] / 1000.0;
		w->ph->lat_p99_us = (double)w->lat[(w->n_lat * 99) / 100] / 1000.0;
	}
	w->n_lat = 0;
}

static bool phase_done(const struct wl *w)
{
	if (w->random)
		return !w->left || (w->deadline && now_ns() > w->deadline);
	return w->cursor >= w->sectors * SECTOR;
}

static int run_phase(struct wl *w, const char *name, bool random, uint8_t seq_op)
{
	w->ph = &w->r->phase[w->r->n_phases++];
	w->ph->name = name;
	w->random = random;
	w->seq_op = seq_op;
	w->cursor = 0;
	w->left = w->o->random_ops;
	w->deadline = random && w->o->time_limit_ns ? now_ns() + w->o->time_limit_ns : 0;
	uint64_t t0 = now_ns();
	for (;;) {
		int submitted = 0;
		for (uint16_t q = 0; q < w->nq; q++) {
			int n = refill(w, q);
			if (n < 0)
				return n;
			submitted += n;
		}
		int done = reap_all(w);
		if (done < 0)
			return done;
		if (!total_inflight(w) && phase_done(w))
			break;
		if (!total_inflight(w) && !submitted && !done)
			return -EAGAIN; /* nothing in flight and nothing could be submitted */
		if (!done && total_inflight(w)) {
			int rc = wait_some(w);
			if (rc < 0)
				return rc;
		}
	}
	finish_phase(w, t0);
	return 0;
}

static int alloc_buffers(struct wl *w)
{
	uint32_t len = w->o->max_len > w->o->fill_len ? w->o->max_len : w->o->fill_len;
	if (len > w->max_transfer)
		len = w->max_transfer;
	for (uint16_t q = 0; q < w->nq; q++) {
		for (unsigned i = 0; i < w->qd; i++) {
			uint8_t *p = w->o->copy ? aligned_alloc(4096, len) : xvl_buf_alloc(w->c, len);
			if (!p) {
				problem(w, "no room for %u x %u buffers of %u bytes in %s: use a larger "
					"--window-size, or a smaller --qd, --queues or --max",
					w->nq, w->qd, len, w->o->copy ? "memory" : "the window");
				return -ENOMEM;
			}
			w->io[q][i].buf = p;
		}
	}
	return 0;
}

static void free_buffers(struct wl *w)
{
	for (uint16_t q = 0; q < w->nq; q++) {
		for (unsigned i = 0; i < w->qd; i++) {
			if (w->o->copy)
				free(w->io[q][i].buf);
			else
				xvl_buf_free(w->c, w->io[q][i].buf);
		}
	}
}

static int setup(struct wl *w)
{
	struct xvl_blk_info info;
	xvl_blk_get_info(w->b, &info);
	uint64_t size = w->o->size && w->o->size < info.capacity ? w->o->size : info.capacity;
	w->sectors = size / SECTOR;
	w->nq = info.num_queues > MAX_QUEUES ? MAX_QUEUES : info.num_queues;
	w->qd = w->o->qd ? w->o->qd : 1;
	if (w->qd > MAX_QD)
		w->qd = MAX_QD;
	if (w->qd > info.queue_size)
		w->qd = info.queue_size;
	w->max_transfer = info.max_transfer;
	w->rng = w->o->seed;
	if (!w->sectors) {
		problem(w, "the device (%llu bytes) is smaller than one 512-byte sector",
			(unsigned long long)info.capacity);
		return -EINVAL;
	}
	w->gen = calloc(w->sectors, sizeof(*w->gen));
	w->busy = calloc(w->sectors, 1);
	w->lat = malloc(LAT_SAMPLES * sizeof(*w->lat));
	if (!w->gen || !w->busy || !w->lat)
		return -ENOMEM;
	return alloc_buffers(w);
}

int wl_run(struct xvl_client *c, struct xvl_blk *b, const struct wl_opts *o, struct wl_result *r)
{
	struct wl *w = calloc(1, sizeof(*w));
	int rc;

	memset(r, 0, sizeof(*r));
	if (!w)
		return -ENOMEM;
	*w = (struct wl){.c = c, .b = b, .o = o, .r = r};
	rc = setup(w);
	if (rc == 0 && o->fill)
		rc = run_phase(w, "fill", false, OP_WRITE);
	if (rc == 0 && o->random_ops)
		rc = run_phase(w, "random", true, 0);
	if (rc == 0 && o->final_check)
		rc = run_phase(w, "verify", false, OP_READ);
	if (rc < 0 && !r->first_problem[0])
		snprintf(r->first_problem, sizeof(r->first_problem), "the workload stopped: %s",
			 strerror(-rc));
	free_buffers(w);
	free(w->gen);
	free(w->busy);
	free(w->lat);
	free(w);
	if (rc < 0)
		return rc;
	return r->mismatches || r->errors || r->duplicates ? -EIO : 0;
}

void wl_print(FILE *f, const struct wl_result *r)
{
	for (unsigned i = 0; i < r->n_phases; i++) {
		const struct wl_phase *p = &r->phase[i];
		double s = (double)p->ns / 1e9;
		fprintf(f, "  %-7s %8llu requests %10.1f MiB  %8.1f MiB/s %9.0f IOPS  latency p50 %.1f us p99 %.1f us\n",
			p->name, (unsigned long long)p->ops, (double)p->bytes / 1048576.0,
			s > 0 ? (double)p->bytes / 1048576.0 / s : 0.0, s > 0 ? (double)p->ops / s : 0.0,
			p->lat_p50_us, p->lat_p99_us);
	}
	fprintf(f, "  verified %.1f MiB, %llu mismatches, %llu failed requests, %llu completed twice\n",
		(double)r->bytes_verified / 1048576.0, (unsigned long long)r->mismatches,
		(unsigned long long)r->errors, (unsigned long long)r->duplicates);
	if (r->first_problem[0])
		fprintf(f, "  first problem: %s\n", r->first_problem);
}
