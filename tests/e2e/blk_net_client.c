/* SPDX-License-Identifier: MIT */
/*
 * For tests/e2e/net_driver.sh (built by it): ONE client connection with a
 * block device and two net devices (two ports of one switch) open, and
 * reconnection on.  Each round writes a 4 KiB block and reads it back, and
 * sends a frame from net A to net B and receives it.  The script kills the
 * server and starts it again meanwhile: every device of the connection must
 * come back, blk and net alike.
 *
 *   blk_net_client SOCK BLK NETA NETB SECONDS [threads]
 *
 * With "threads", the block rounds and the net rounds run in two threads
 * sharing the connection, so either may be the one that notices the loss
 * and runs the recovery while the other is busy (built with TSan by
 * net_driver.sh when clang or gcc can).
 *
 * Prints "round N ok" for the first rounds and the first after a reconnect; exits 0 if at least 3 rounds worked after
 * a reconnect, 1 as soon as a device fails (the message says which).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xvloop/xvl.h"
#include "xvloop/xvl_net.h"

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int blk_round(struct xvl_client *c, struct xvl_blk *b, unsigned round)
{
	static char out[4096], in[4096];
	memset(out, (int)(round & 0xff), sizeof(out));
	snprintf(out, sizeof(out), "round %u", round);
	int rc = xvl_blk_write(b, 4096ull * (round % 16), out, sizeof(out));
	if (rc == 0)
		rc = xvl_blk_read(b, 4096ull * (round % 16), in, sizeof(in));
	if (rc < 0)
		return fprintf(stderr, "round %u: blk: %s\n", round, xvl_client_errmsg(c)), -1;
	if (memcmp(in, out, sizeof(in)))
		return fprintf(stderr, "round %u: blk: read back other data\n", round), -1;
	return 0;
}

/* A frame A -> B; B must receive it within 2 s.  -1: a device failed; 1: not received. */
static int net_round(struct xvl_client *c, struct xvl_net *a, struct xvl_net *b, unsigned round)
{
	struct xvl_net_info ia, ib;
	static unsigned char frame[128], rx[8][2048];
	xvl_net_get_info(a, &ia);
	xvl_net_get_info(b, &ib);
	memcpy(frame, ib.mac, 6);
	memcpy(frame + 6, ia.mac, 6);
	frame[12] = 0x88;
	frame[13] = 0xb6; /* local experimental ethertype */
	snprintf((char *)frame + 14, sizeof(frame) - 14, "xvl-blk-net round %u", round);
	struct xvl_net_frame f = {.data = frame, .len = sizeof(frame)};
	int rc = xvl_net_tx_burst(a, 0, &f, 1);
	if (rc < 0)
		return fprintf(stderr, "round %u: net tx: %s\n", round, xvl_client_errmsg(c)), -1;
	if (rc == 0)
		return 1; /* no room: the round does not count */
	double end = now_s() + 2.0;
	while (now_s() < end) {
		struct xvl_net_frame r[8];
		for (unsigned i = 0; i < 8; i++)
			r[i] = (struct xvl_net_frame){.data = rx[i], .len = sizeof(rx[i])};
		int got = xvl_net_rx_copy(b, 0, r, 8);
		if (got < 0)
			return fprintf(stderr, "round %u: net rx: %s\n", round, xvl_client_errmsg(c)), -1;
		for (int i = 0; i < got; i++)
			if (r[i].len == sizeof(frame) && !memcmp(r[i].data, frame, sizeof(frame)))
				return 0;
		if (!got && xvl_net_wait(b, 0, 50) < 0 && xvl_net_link_status(b) < 0)
			return fprintf(stderr, "round %u: net wait: %s\n", round, xvl_client_errmsg(c)), -1;
	}
	return 1;
}

struct side {
	struct xvl_client *c;
	struct xvl_blk *b;
	struct xvl_net *na, *nb;
	double end;
	bool do_blk, do_net;
	unsigned round, after, lost;
	int rc;
};

/* Rounds until the end time; a round that began after a reconnect and finished counts in after. */
static void *run_side(void *arg)
{
	struct side *s = arg;
	while (now_s() < s->end) {
		unsigned round = ++s->round, before = xvl_client_reconnects(s->c);
		int r = 0;
		if (s->do_blk && blk_round(s->c, s->b, round) < 0)
			r = -1;
		if (r == 0 && s->do_net)
			r = net_round(s->c, s->na, s->nb, round);
		if (r < 0) {
			s->rc = 1;
			break;
		}
		if (r == 1) {
			s->lost++;
			continue;
		}
		if (before && xvl_client_reconnects(s->c) == before)
			s->after++; /* a whole round on the connection set up again */
		if (round <= 3 || (before && s->after == 1)) {
			printf("%s round %u ok (reconnects %u)\n", s->do_blk ? s->do_net ? "blk+net" : "blk" : "net",
			       round, xvl_client_reconnects(s->c));
			fflush(stdout);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct xvl_client *c;
	struct xvl_blk *b;
	struct xvl_net *na, *nb;
	char err[256] = "";
	if (argc != 6 && !(argc == 7 && !strcmp(argv[6], "threads")))
		return fprintf(stderr, "usage: blk_net_client SOCK BLK NETA NETB SECONDS [threads]\n"), 2;
	struct xvl_client_opts co = {XVL_CLIENT_OPTS_INIT, .name = "blk+net", .reconnect_ms = 5000};
	int crc;
	/* the socket file appears at bind(), a moment before listen() */
	for (int tries = 0; (crc = xvl_client_connect(&c, argv[1], &co, err, sizeof(err))) == -ECONNREFUSED &&
			    tries < 100; tries++)
		nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
	if (crc < 0)
		return fprintf(stderr, "connect: %s\n", err), 1;
	struct xvl_blk_opts bo = {XVL_BLK_OPTS_INIT, .device = xvl_client_find(c, argv[2])};
	struct xvl_net_opts ao = {XVL_NET_OPTS_INIT, .device = xvl_client_find(c, argv[3])};
	struct xvl_net_opts bo2 = {XVL_NET_OPTS_INIT, .device = xvl_client_find(c, argv[4])};
	if (bo.device < 0 || ao.device < 0 || bo2.device < 0 || xvl_blk_open(c, &bo, &b) < 0 ||
	    xvl_net_open(c, &ao, &na) < 0 || xvl_net_open(c, &bo2, &nb) < 0)
		return fprintf(stderr, "open: %s\n", xvl_client_errmsg(c)), 1;
	double end = now_s() + atof(argv[5]);
	struct side one = {c, b, na, nb, end, true, true, 0, 0, 0, 0}, two = one;
	int rc;
	if (argc == 7) {
		pthread_t t;
		one.do_net = false;
		two.do_blk = false;
		if (pthread_create(&t, NULL, run_side, &two) != 0)
			return fprintf(stderr, "pthread_create failed\n"), 1;
		run_side(&one);
		pthread_join(t, NULL);
		printf("blk: %u rounds, %u after a reconnect; net: %u rounds, %u after a reconnect, %u frames "
		       "not received; %u reconnect(s)\n", one.round, one.after, two.round, two.after,
		       two.lost, xvl_client_reconnects(c));
		rc = one.rc || two.rc;
		if (!rc && (one.after < 3 || two.after < 3 || !xvl_client_reconnects(c)))
			rc = fprintf(stderr, "too few rounds after a reconnect\n") > 0;
	} else {
		run_side(&one);
		printf("%u rounds, %u after a reconnect, %u frames not received, %u reconnect(s)\n",
		       one.round, one.after, one.lost, xvl_client_reconnects(c));
		rc = one.rc;
		if (!rc && (one.after < 3 || !xvl_client_reconnects(c)))
			rc = fprintf(stderr, "too few rounds after a reconnect\n") > 0;
	}
	xvl_net_close(nb);
	xvl_net_close(na);
	xvl_blk_close(b);
	xvl_client_close(c);
	return rc;
}
