/* SPDX-License-Identifier: MIT */
/*
 * A well-behaved client (the public API, include/xvloop/xvl.h) facing the
 * hostile device of hostile_device.c.
 *
 *   hostile_client SOCKET CASE
 *
 * Submits 4 reads of 4 KiB, then collects completions for up to 5 s and
 * checks, as CASE expects:
 *   - no request is reported twice, none is lost;
 *   - no request reports success unless the device really completed it;
 *   - after a used-ring violation, EVENT BROKEN or a lost link, every
 *     pending request fails with -ENODEV/-EIO and new ones are refused;
 *   - a bad status byte is an error for that request, not success;
 *   - a device that stops answering makes the blocking helpers return
 *     -ETIMEDOUT with a message saying so.
 * Prints what it saw; exit status 0 when every check held, 1 otherwise.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xvloop/xvl.h"

#define NREQ 4
#define LEN  4096u

static int failures;

#define CHECK(cond, ...)                                                                         \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "hostile_client: FAIL: ");                               \
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

static bool is_failure(int r) { return r == -ENODEV || r == -EIO; }

int main(int argc, char **argv)
{
	struct xvl_client *c;
	struct xvl_blk *b;
	char err[256];

	if (argc != 3) {
		fprintf(stderr, "usage: hostile_client SOCKET CASE\n");
		return 2;
	}
	const char *cs = argv[2];
	bool silent = !strcmp(cs, "silent");
	/* used_len_big: real completions with an oversized used len: clamped, not fatal
	 * (src/core/virtq.c, 2ab90e5); the status byte decides, nothing past the buffer is read */
	bool good = !strcmp(cs, "good") || !strcmp(cs, "used_len_big");
	bool bad_status = !strcmp(cs, "bad_status"), dbl = !strcmp(cs, "double_completion");
	struct xvl_client_opts o = {XVL_CLIENT_OPTS_INIT, .name = "hostile-client", .window_size = 4u << 20,
				    .timeout_ms = silent ? 1000 : 5000};
	int rc = xvl_client_connect(&c, argv[1], &o, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "hostile_client: FAIL: connect: %s\n", err);
		return 1;
	}
	rc = xvl_blk_open(c, NULL, &b);
	if (rc < 0) {
		fprintf(stderr, "hostile_client: FAIL: open: %s\n", xvl_client_errmsg(c));
		xvl_client_close(c);
		return 1;
	}

	uint8_t *buf[NREQ];
	for (unsigned i = 0; i < NREQ; i++) {
		buf[i] = xvl_buf_alloc(c, LEN);
		CHECK(buf[i], "window buffer");
		if (!buf[i])
			return 1;
		memset(buf[i], 0xaa, LEN);
	}

	if (silent) {
		/* A blocking helper against a device that never completes. */
		uint64_t t0 = now_ms();
		rc = xvl_blk_read(b, 0, buf[0], LEN);
		uint64_t dt = now_ms() - t0;
		const char *msg = xvl_client_errmsg(c);
		printf("silent: xvl_blk_read -> %d (%s) after %llu ms: \"%s\"\n", rc, strerror(-rc),
		       (unsigned long long)dt, msg);
		CHECK(rc == -ETIMEDOUT, "blocking read returned %d, want -ETIMEDOUT", rc);
		CHECK(strstr(msg, "no completion") != NULL, "message \"%s\" does not say what timed out",
		      msg);
		CHECK(dt >= 900 && dt < 5000, "timed out after %llu ms, want ~1000",
		      (unsigned long long)dt);
		xvl_blk_close(b);
		xvl_client_close(c);
		return failures ? 1 : 0;
	}

	for (unsigned i = 0; i < NREQ; i++) {
		struct xvl_blk_req r = {.op = XVL_BLK_READ, .offset = (uint64_t)i * LEN, .buf = buf[i],
					.len = LEN, .user = (void *)(uintptr_t)(i + 1)};
		rc = xvl_blk_submit(b, 0, &r);
		CHECK(rc == 0, "submit %u: %d", i, rc);
	}
	xvl_blk_kick(b, 0);

	int result[NREQ];
	unsigned seen[NREQ] = {0}, got = 0, bogus = 0;
	uint64_t deadline = now_ms() + 5000;
	while (got < NREQ && now_ms() < deadline) {
		struct xvl_blk_cpl cpl[8];
		xvl_blk_wait(b, 0, 200);
		int n = xvl_blk_complete(b, 0, cpl, 8);
		CHECK(n >= 0, "complete returned %d", n);
		for (int k = 0; k < n; k++) {
			uintptr_t u = (uintptr_t)cpl[k].user;
			if (u < 1 || u > NREQ) {
				bogus++;
				continue;
			}
			if (seen[u - 1]++ == 0)
				got++;
			result[u - 1] = cpl[k].result;
		}
	}
	printf("%s: %u of %d requests completed:", cs, got, NREQ);
	for (unsigned i = 0; i < NREQ; i++)
		printf(" %s", seen[i] ? (result[i] == 0 ? "ok" : strerror(-result[i])) : "-");
	printf("\n");
	CHECK(bogus == 0, "%u completions with a token never submitted", bogus);
	for (unsigned i = 0; i < NREQ; i++) {
		CHECK(seen[i] == 1, "request %u reported %u times", i, seen[i]);
		if (!seen[i])
			continue;
		if (good)
			CHECK(result[i] == 0, "request %u: %d on a good device", i, result[i]);
		else if (bad_status)
			CHECK(i == 0 ? result[i] == -EIO : result[i] == 0,
			      "request %u: %d (status byte 7 must be -EIO, the rest ok)", i, result[i]);
		else if (dbl && i == 0)
			CHECK(result[i] == 0 || is_failure(result[i]), "request 0: %d", result[i]);
		else
			CHECK(is_failure(result[i]),
			      "request %u reported %d, want -ENODEV/-EIO: it never completed", i,
			      result[i]);
	}

	/* After: a broken device refuses new work at once; a working one serves it. */
	rc = xvl_blk_read(b, 0, buf[0], LEN);
	printf("%s: next read -> %d (%s); client says \"%s\"\n", cs, rc, rc ? strerror(-rc) : "ok",
	       xvl_client_errmsg(c));
	if (good || bad_status)
		CHECK(rc == 0, "read on a working device: %d", rc);
	else
		CHECK(rc == -ENODEV, "read on a broken device: %d, want -ENODEV", rc);

	xvl_blk_close(b);
	xvl_client_close(c);
	return failures ? 1 : 0;
}
