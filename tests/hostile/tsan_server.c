/* SPDX-License-Identifier: MIT */
/*
 * The server's worker threads under ThreadSanitizer: one process holds an
 * xvloop server with two worker threads (the control thread runs in its own
 * thread here) and a client.  Each round the client connects, opens a RAM
 * device with 4 queues (so both workers serve two), writes and reads back a
 * pattern on every queue from one thread per queue, and then leaves in one of
 * three ways: a clean close (RESET, DETACH), a reset and reopen on the same
 * link, or the link closed with nothing said -- each one a hand-off of every
 * queue back from the workers (DETACH, RELEASED) while the control thread
 * drains the device.  Built with -fsanitize=thread by tests/e2e/server_workers.sh.
 *
 *   tsan_server SOCKET ROUNDS
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"
#include "xvloop/xvl.h"

#define NQ  4
#define QD  8
#define LEN 4096u

struct job {
	struct xvl_blk *b;
	uint16_t q;
	unsigned round;
	uint8_t *buf[QD];
	int err;
};

static int batch(struct job *j, uint8_t op)
{
	for (unsigned i = 0; i < QD; i++) {
		struct xvl_blk_req r = {.op = op, .offset = ((uint64_t)j->q * QD + i) * LEN,
					.buf = j->buf[i], .len = LEN, .user = j->buf[i]};
		int rc = xvl_blk_submit(j->b, j->q, &r);
		if (rc < 0)
			return rc;
	}
	xvl_blk_kick(j->b, j->q);
	for (unsigned done = 0; done < QD;) {
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
	return 0;
}

static void *queue_job(void *arg)
{
	struct job *j = arg;
	uint8_t v = (uint8_t)(j->round * 13 + j->q);
	for (unsigned i = 0; i < QD; i++)
		memset(j->buf[i], v + (int)i, LEN);
	j->err = batch(j, XVL_BLK_WRITE);
	for (unsigned i = 0; i < QD && !j->err; i++)
		memset(j->buf[i], 0, LEN);
	if (!j->err)
		j->err = batch(j, XVL_BLK_READ);
	for (unsigned i = 0; i < QD && !j->err; i++)
		for (unsigned k = 0; k < LEN; k++)
			if (j->buf[i][k] != (uint8_t)(v + i)) {
				j->err = -EILSEQ;
				break;
			}
	return NULL;
}

/* One pass over every queue of b, a thread each; 0 or the first error. */
static int pass(struct xvl_client *c, struct xvl_blk *b, unsigned round)
{
	struct job j[NQ];
	pthread_t t[NQ];
	int rc = 0;
	for (unsigned i = 0; i < NQ; i++) {
		j[i] = (struct job){.b = b, .q = (uint16_t)i, .round = round};
		for (unsigned k = 0; k < QD; k++)
			j[i].buf[k] = xvl_buf_alloc(c, LEN);
		pthread_create(&t[i], NULL, queue_job, &j[i]);
	}
	for (unsigned i = 0; i < NQ; i++) {
		pthread_join(t[i], NULL);
		if (j[i].err && !rc) {
			fprintf(stderr, "tsan_server: round %u queue %u: %s\n", round, i,
				strerror(-j[i].err));
			rc = j[i].err;
		}
		for (unsigned k = 0; k < QD; k++)
			xvl_buf_free(c, j[i].buf[k]);
	}
	return rc;
}

static int open_dev(struct xvl_client *c, struct xvl_blk **b)
{
	struct xvl_blk_opts o = {XVL_BLK_OPTS_INIT, .device = 0, .num_queues = NQ};
	if (xvl_blk_open(c, &o, b) < 0) {
		fprintf(stderr, "tsan_server: open: %s\n", xvl_client_errmsg(c));
		return -1;
	}
	return 0;
}

static void *serve(void *arg)
{
	return (void *)(long)xvl_server_run(arg);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: tsan_server SOCKET ROUNDS\n");
		return 2;
	}
	unsigned rounds = (unsigned)atoi(argv[2]);
	struct xvl_server_opts so = {.listen = argv[1], .n_devs = 1, .quiet = true, .n_cpus = 2,
				     .cpus = {-1, -1}};
	struct xvl_errbuf eb = {{0}};
	if (xvl_dev_spec_parse(&so.devs[0], "name=r0,backend=ram,size=4M,queues=4", &eb) < 0)
		return 2;
	struct xvl_server *s;
	if (xvl_server_create(&s, &so, &eb) < 0) { /* blocks SIGTERM: every thread inherits it */
		fprintf(stderr, "tsan_server: %s\n", eb.msg);
		return 1;
	}
	pthread_t st;
	pthread_create(&st, NULL, serve, s);

	int rc = 0;
	char err[256];
	unsigned r;
	for (r = 0; r < rounds && !rc; r++) {
		struct xvl_client *c;
		struct xvl_blk *b;
		if (xvl_client_connect(&c, argv[1], NULL, err, sizeof(err)) < 0) {
			fprintf(stderr, "tsan_server: %s\n", err);
			rc = 1;
			break;
		}
		if (open_dev(c, &b) < 0 || pass(c, b, r) < 0) {
			rc = 1;
		} else if (r % 3 == 1) { /* reset and set up again on the same link */
			xvl_blk_close(b);
			if (open_dev(c, &b) < 0 || pass(c, b, r) < 0)
				rc = 1;
			else
				xvl_blk_close(b);
		} else if (r % 3 == 0) {
			xvl_blk_close(b);
		} /* else: the link closes with the device set up */
		xvl_client_close(c);
	}
	kill(getpid(), SIGTERM); /* the server's signalfd: its loop returns */
	pthread_join(st, NULL);
	xvl_server_destroy(s);
	if (!rc)
		printf("%u rounds of %u queues on 2 workers, data checked\n", r, NQ);
	return rc;
}
