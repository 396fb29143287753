/* SPDX-License-Identifier: MIT */
/*
 * A well-behaved client (the public API) facing the hostile device of
 * hostile_device.c in the cases of issue 9: values the driver side takes
 * from the server, and the restart/recovery path.
 *
 *   client_recovery SOCKET CASE
 *
 * Every case checks that each request is reported exactly once, that
 * nothing is reported as done that was not, that no slot stays busy once
 * everything was reported (xvl_blk_inflight() is 0), and what the case
 * adds (see run_case()).  Exit status 0 when every check held.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xvloop/xvl.h"

#define NREQ 4
#define LEN  4096u
#define MAXR 16

static int failures;
static const char *cs;

#define CHECK(cond, ...)                                                                         \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "client_recovery: %s: FAIL: ", cs);                      \
			fprintf(stderr, __VA_ARGS__);                                            \
			fputc('\n', stderr);                                                     \
			failures++;                                                              \
		}                                                                                \
	} while (0)

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool is(const char *c) { return !strcmp(cs, c); }

struct tally {
	unsigned seen[MAXR];
	int result[MAXR];
	unsigned got, bogus;
};

static void count(struct tally *t, const struct xvl_blk_cpl *cpl, int n, unsigned nreq)
{
	for (int k = 0; k < n; k++) {
		uintptr_t u = (uintptr_t)cpl[k].user;
		if (u < 1 || u > nreq) {
			t->bogus++;
			continue;
		}
		if (t->seen[u - 1]++ == 0)
			t->got++;
		t->result[u - 1] = cpl[k].result;
	}
}

/* Collect completions of nreq requests (max at a time) for up to ms. */
static void collect(struct xvl_blk *b, struct tally *t, unsigned nreq, unsigned max, unsigned ms)
{
	uint64_t deadline = now_ms() + ms;
	while (t->got < nreq && now_ms() < deadline) {
		struct xvl_blk_cpl cpl[8];
		xvl_blk_wait(b, 0, 200);
		int n = xvl_blk_complete(b, 0, cpl, max);
		CHECK(n >= 0, "complete returned %d", n);
		if (n > 0)
			count(t, cpl, n, nreq);
	}
}

static void report(const struct tally *t, unsigned nreq, bool want_ok)
{
	printf("%s: %u of %u requests completed:", cs, t->got, nreq);
	for (unsigned i = 0; i < nreq; i++)
		printf(" %s", t->seen[i] ? (t->result[i] == 0 ? "ok" : strerror(-t->result[i])) : "-");
	printf("\n");
	CHECK(t->bogus == 0, "%u completions with a token never submitted", t->bogus);
	for (unsigned i = 0; i < nreq; i++) {
		CHECK(t->seen[i] == 1, "request %u reported %u times", i, t->seen[i]);
		if (!t->seen[i])
			continue;
		if (want_ok)
			CHECK(t->result[i] == 0, "request %u: %d, want success", i, t->result[i]);
		else
			CHECK(t->result[i] == -ENODEV || t->result[i] == -EIO,
			      "request %u: %d, want -ENODEV/-EIO", i, t->result[i]);
	}
}

static void submit_reads(struct xvl_blk *b, uint8_t **buf, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct xvl_blk_req r = {.op = XVL_BLK_READ, .offset = (uint64_t)i * LEN, .buf = buf[i],
					.len = LEN, .user = (void *)(uintptr_t)(i + 1)};
		int rc = xvl_blk_submit(b, 0, &r);
		CHECK(rc == 0, "submit %u: %d", i, rc);
	}
	xvl_blk_kick(b, 0);
}

/* Queue size 4, a restart with 4 completions on the rings, a second one timed to find
 * 4 more while the first 4 are still held: 12 reads, the queue kept full. */
static void held_overflow(struct xvl_blk *b, uint8_t *data)
{
	enum { TOTAL = 12 };
	struct tally t = {0};
	unsigned next = 0;
	uint64_t deadline = now_ms() + 8000;
	while (t.got < TOTAL && now_ms() < deadline) {
		while (next < TOTAL) {
			struct xvl_blk_req r = {.op = XVL_BLK_READ, .offset = (uint64_t)next * LEN,
						.buf = data + (uint64_t)next * LEN, .len = LEN,
						.user = (void *)(uintptr_t)(next + 1)};
			int rc = xvl_blk_submit(b, 0, &r);
			if (rc == -EAGAIN)
				break;
			CHECK(rc == 0, "submit %u: %d", next, rc);
			next++;
		}
		xvl_blk_kick(b, 0);
		usleep(50 * 1000); /* the device completes what it got before we look again */
		xvl_blk_wait(b, 0, 200);
		struct xvl_blk_cpl cpl;
		int n = xvl_blk_complete(b, 0, &cpl, 1); /* one at a time: completions stay held */
		CHECK(n >= 0, "complete: %d", n);
		if (n > 0)
			count(&t, &cpl, n, TOTAL);
	}
	report(&t, TOTAL, true);
}

/* After the device broke: nothing may write into buffers the client gave back or reuses. */
static void check_untouched(struct xvl_client *c, uint8_t **zc, unsigned n_zc)
{
	uint8_t *fresh[NREQ];
	for (unsigned i = 0; i < n_zc; i++)
		memset(zc[i], 0x11, LEN);
	for (unsigned i = 0; i < NREQ; i++) {
		fresh[i] = xvl_buf_alloc(c, LEN);
		CHECK(fresh[i], "window buffer after the break");
		if (fresh[i])
			memset(fresh[i], 0x22, LEN);
	}
	usleep(700 * 1000);
	unsigned bad = 0;
	for (unsigned i = 0; i < n_zc; i++)
		for (unsigned k = 0; k < LEN; k++)
			bad += zc[i][k] != 0x11;
	for (unsigned i = 0; i < NREQ; i++)
		for (unsigned k = 0; fresh[i] && k < LEN; k++)
			bad += fresh[i][k] != 0x22;
	printf("%s: %u bytes changed in buffers given back or reused after the break\n", cs, bad);
	CHECK(bad == 0, "%u bytes written by the device after its requests were reported", bad);
	for (unsigned i = 0; i < NREQ; i++)
		xvl_buf_free(c, fresh[i]);
}

static int run_case(struct xvl_client *c, struct xvl_blk *b)
{
	struct xvl_blk_info in;
	xvl_blk_get_info(b, &in);
	uint8_t *wbuf[NREQ], *mbuf[NREQ], *use[NREQ];
	for (unsigned i = 0; i < NREQ; i++) {
		wbuf[i] = xvl_buf_alloc(c, LEN);
		mbuf[i] = malloc(LEN);
		if (!wbuf[i] || !mbuf[i])
			return -ENOMEM;
		use[i] = wbuf[i];
	}
	if (is("queues_32")) {
		printf("%s: opened %u queues of %u entries\n", cs, in.num_queues, in.queue_size);
		CHECK(in.num_queues >= 1 && in.num_queues <= 16, "%u queues open", in.num_queues);
		CHECK(in.queue_size <= 1024, "queue size %u", in.queue_size);
	}
	if (is("size_max_odd") || is("size_max_small")) {
		uint8_t *big = malloc(in.max_transfer + 512);
		printf("%s: size_max %u seg_max %u -> max_transfer %u\n", cs, in.size_max, in.seg_max,
		       in.max_transfer);
		int rc = xvl_blk_read(b, 0, big, in.max_transfer);
		printf("%s: read of max_transfer bytes -> %d\n", cs, rc);
		CHECK(rc == 0, "read of %u bytes: %d (%s)", in.max_transfer, rc, xvl_client_errmsg(c));
		rc = xvl_blk_read(b, 0, big, in.max_transfer + 512);
		CHECK(rc == -EINVAL, "read of max_transfer + 512: %d, want -EINVAL", rc);
		free(big);
	}
	if (is("held_overflow")) {
		uint8_t *data = malloc(12 * LEN);
		held_overflow(b, data);
		free(data);
	} else {
		bool stale = is("stale_write") || is("stale_drop") || is("stale_violation");
		bool want_ok = is("queues_32") || is("size_max_odd") || is("size_max_small") ||
			       is("attach_busy") || is("impostor_allowed");
		if (stale) /* bounce blocks for some (all with no link left), zero copy for the rest */
			for (unsigned i = 0; i < NREQ; i++)
				use[i] = (is("stale_drop") || i < 2) ? mbuf[i] : wbuf[i];
		struct tally t = {0};
		submit_reads(b, use, NREQ);
		collect(b, &t, NREQ, 8, 6000);
		report(&t, NREQ, want_ok);
		if (stale)
			check_untouched(c, is("stale_drop") ? NULL : wbuf + 2, is("stale_drop") ? 0 : 2);
		int rc = xvl_blk_read(b, 0, wbuf[0], LEN);
		printf("%s: next read -> %d; client says \"%s\"\n", cs, rc, xvl_client_errmsg(c));
		CHECK(want_ok ? rc == 0 : rc == -ENODEV, "next read: %d", rc);
	}
	unsigned left = xvl_blk_inflight(b, 0);
	printf("%s: %u requests still held by the client\n", cs, left);
	CHECK(left == 0, "%u slots still busy after every request was reported", left);
	for (unsigned i = 0; i < NREQ; i++) {
		xvl_buf_free(c, wbuf[i]);
		free(mbuf[i]);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct xvl_client *c;
	struct xvl_blk *b;
	char err[256];

	if (argc != 3) {
		fprintf(stderr, "usage: client_recovery SOCKET CASE\n");
		return 2;
	}
	cs = argv[2];
	bool recon = is("attach_busy") || is("reconnect_impostor") || is("die_in_restart") ||
		     is("fewer_queues");
	struct xvl_client_opts o = {XVL_CLIENT_OPTS_INIT, .name = "client-recovery", .window_size = 4u << 20,
				    .timeout_ms = 3000, .reconnect_ms = recon ? 1500 : 0};
	int rc = xvl_client_connect(&c, argv[1], &o, err, sizeof(err));
	if (is("impostor")) {
		printf("%s: connect -> %d: %s\n", cs, rc, rc ? err : "connected");
		CHECK(rc == -EPERM && strstr(err, "uid"), "connect to a peer of another uid: %d", rc);
		if (rc == 0)
			xvl_client_close(c);
		return failures ? 1 : 0;
	}
	if (rc < 0) {
		fprintf(stderr, "client_recovery: %s: FAIL: connect: %s\n", cs, err);
		return 1;
	}
	struct xvl_blk_opts bo = {XVL_BLK_OPTS_INIT, .device = -1,
				  .num_queues = is("queues_32") ? 32 : is("fewer_queues") ? 2 : 1};
	rc = xvl_blk_open(c, &bo, &b);
	if (rc < 0) {
		fprintf(stderr, "client_recovery: %s: FAIL: open: %s\n", cs, xvl_client_errmsg(c));
		xvl_client_close(c);
		return 1;
	}
	rc = run_case(c, b);
	CHECK(rc == 0, "set-up: %d", rc);
	xvl_blk_close(b);
	xvl_client_close(c);
	return failures ? 1 : 0;
}
