/* SPDX-License-Identifier: MIT */
/*
 * The library's threading rule under ThreadSanitizer: one connection, one
 * block device, N queues, one thread per queue (what the fio engine does
 * with thread=1).  Each thread writes a pattern to its own region through
 * its own queue (submit/kick/wait/complete, QD 8), then reads it back and
 * checks it.  Built with -fsanitize=thread by tests/e2e/hostile.sh.
 *
 *   tsan_queues SOCKET DEVICE THREADS ROUNDS
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xvloop/xvl.h"

#define QD  8
#define LEN 4096u

struct job {
	struct xvl_blk *b;
	uint16_t q;
	unsigned rounds;
	uint8_t *buf[QD];  /* in the window, allocated by the main thread */
	int err;
	uint64_t bytes;
};

static int run_batch(struct job *j, uint8_t op, uint64_t base)
{
	for (unsigned i = 0; i < QD; i++) {
		struct xvl_blk_req r = {.op = op, .offset = base + (uint64_t)i * LEN, .buf = j->buf[i],
					.len = LEN, .user = j->buf[i]};
		int rc = xvl_blk_submit(j->b, j->q, &r);
		if (rc < 0)
			return rc;
	}
	xvl_blk_kick(j->b, j->q);
	unsigned done = 0;
	while (done < QD) {
		struct xvl_blk_cpl cpl[QD];
		int w = xvl_blk_wait(j->b, j->q, 5000);
		if (w <= 0)
			return w ? w : -ETIMEDOUT;
		int n = xvl_blk_complete(j->b, j->q, cpl, QD);
		if (n < 0)
			return n;
		for (int k = 0; k < n; k++)
			if (cpl[k].result)
				return cpl[k].result;
		done += (unsigned)n;
	}
	j->bytes += QD * LEN;
	return 0;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	uint64_t region = (uint64_t)j->q * QD * LEN;
	for (unsigned r = 0; r < j->rounds && !j->err; r++) {
		for (unsigned i = 0; i < QD; i++)
			memset(j->buf[i], (int)(r * 31 + i + j->q * 7), LEN);
		j->err = run_batch(j, XVL_BLK_WRITE, region);
		if (j->err)
			break;
		for (unsigned i = 0; i < QD; i++)
			memset(j->buf[i], 0, LEN);
		j->err = run_batch(j, XVL_BLK_READ, region);
		for (unsigned i = 0; i < QD && !j->err; i++)
			for (unsigned k = 0; k < LEN; k++)
				if (j->buf[i][k] != (uint8_t)(r * 31 + i + j->q * 7)) {
					j->err = -EILSEQ;
					break;
				}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char err[256];
	struct xvl_client *c;
	struct xvl_blk *b;
	if (argc != 5) {
		fprintf(stderr, "usage: tsan_queues SOCKET DEVICE THREADS ROUNDS\n");
		return 2;
	}
	unsigned nt = (unsigned)atoi(argv[3]), rounds = (unsigned)atoi(argv[4]);
	if (nt < 1 || nt > 8)
		return 2;
	if (xvl_client_connect(&c, argv[1], NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "tsan_queues: %s\n", err);
		return 1;
	}
	struct xvl_blk_opts o = {XVL_BLK_OPTS_INIT, .device = atoi(argv[2]), .num_queues = (uint16_t)nt};
	if (xvl_blk_open(c, &o, &b) < 0) {
		fprintf(stderr, "tsan_queues: open: %s\n", xvl_client_errmsg(c));
		return 1;
	}
	struct xvl_blk_info info;
	xvl_blk_get_info(b, &info);
	if (info.num_queues != nt) {
		fprintf(stderr, "tsan_queues: %u queues open, %u asked\n", info.num_queues, nt);
		return 1;
	}
	struct job j[8];
	pthread_t t[8];
	for (unsigned i = 0; i < nt; i++) {
		j[i] = (struct job){.b = b, .q = (uint16_t)i, .rounds = rounds};
		for (unsigned k = 0; k < QD; k++)
			j[i].buf[k] = xvl_buf_alloc(c, LEN);
		pthread_create(&t[i], NULL, worker, &j[i]);
	}
	int rc = 0;
	uint64_t bytes = 0;
	for (unsigned i = 0; i < nt; i++) {
		pthread_join(t[i], NULL);
		if (j[i].err) {
			fprintf(stderr, "tsan_queues: queue %u: %s\n", i, strerror(-j[i].err));
			rc = 1;
		}
		bytes += j[i].bytes;
	}
	printf("%u threads, %u queues, %llu bytes moved and checked\n", nt, nt,
	       (unsigned long long)bytes);
	xvl_blk_close(b);
	xvl_client_close(c);
	return rc;
}
