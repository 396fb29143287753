/* SPDX-License-Identifier: MIT */
/*
 * A well-behaved net client (the public API, include/xvloop/xvl_net.h)
 * facing tests/hostile/net_hostile_device.c.
 *
 *   net_hostile_client SOCKET CASE
 *
 * Sends 6 numbered 100-byte frames (3 zero copy from the window, 3 copied)
 * and receives what the device mirrors back, then checks, per case, which
 * frames arrived intact, what the driver counted as dropped and why, that
 * a broken device is reported (-ENODEV) and not crashed on, that a flood of
 * receives never makes one call take more than it was asked for while
 * transmit and the control queue keep working, that link changes are seen,
 * and that bad config values fail the open with a message.  Exit 0 when
 * every check held.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xvloop/xvl.h"
#include "xvloop/xvl_net.h"

#define NF   6
#define FLEN 100u

static int failures;
static const char *cs;

#define CHECK(cond, ...)                                                                         \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "net_hostile_client: %s: FAIL: ", cs);                   \
			fprintf(stderr, __VA_ARGS__);                                            \
			fputc('\n', stderr);                                                     \
			failures++;                                                              \
		}                                                                                \
	} while (0)

static bool is(const char *c) { return !strcmp(cs, c); }

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void make_frame(uint8_t *f, unsigned i)
{
	memset(f, 0, FLEN);
	memset(f, 0xff, 6);
	f[6] = 2;
	f[12] = 0x88;
	f[13] = 0xb5;
	for (unsigned k = 14; k < FLEN; k++)
		f[k] = (uint8_t)(i * 31 + k);
}

/* Which numbered frame is f, intact?  -1 if none. */
static int frame_no(const struct xvl_net_frame *f)
{
	uint8_t ref[FLEN];
	if (f->len != FLEN)
		return -1;
	for (unsigned i = 0; i < NF; i++) {
		make_frame(ref, i);
		if (!memcmp(ref, f->data, FLEN))
			return (int)i;
	}
	return -1;
}

static int open_case(const char *sock, struct xvl_client **c, struct xvl_net **n)
{
	struct xvl_client_opts co = {XVL_CLIENT_OPTS_INIT, .name = "net-hostile", .timeout_ms = 2000};
	char err[256];
	if (xvl_client_connect(c, sock, &co, err, sizeof(err)) < 0) {
		fprintf(stderr, "connect: %s\n", err);
		exit(1);
	}
	struct xvl_net_opts no = {XVL_NET_OPTS_INIT, .device = -1};
	return xvl_net_open(*c, &no, n);
}

static void send_frames(struct xvl_client *c, struct xvl_net *n, uint8_t *win_buf)
{
	static uint8_t local[NF][FLEN];
	struct xvl_net_frame f[NF];
	for (unsigned i = 0; i < NF; i++) {
		uint8_t *p = i < 3 ? win_buf + i * FLEN : local[i];
		make_frame(p, i);
		f[i] = (struct xvl_net_frame){.data = p, .len = FLEN, .user = (void *)(uintptr_t)(i + 1)};
	}
	int r = xvl_net_tx_burst(n, 0, f, NF);
	CHECK(r == NF, "tx_burst took %d of %d (%s)", r, NF, xvl_client_errmsg(c));
}

/* Receive for up to ms; seen[i] counts intact copies of frame i.  Returns frames or -errno. */
static int receive(struct xvl_net *n, unsigned ms, unsigned *seen, unsigned *other, unsigned max_burst)
{
	struct xvl_net_frame f[64];
	uint64_t end = now_ms() + ms;
	int total = 0;
	while (now_ms() < end) {
		int r = xvl_net_rx_burst(n, 0, f, max_burst);
		if (r < 0)
			return r;
		CHECK((unsigned)r <= max_burst, "rx_burst returned %d frames, asked for %u", r, max_burst);
		for (int i = 0; i < r; i++) {
			int k = frame_no(&f[i]);
			if (k >= 0)
				seen[k]++;
			else
				(*other)++;
		}
		total += r;
		if (r == 0) {
			int w = xvl_net_wait(n, 0, 20);
			if (w < 0)
				return w;
		}
	}
	return total;
}

static void check_drops(struct xvl_net *n, uint64_t want, const char *which, uint64_t got_reason)
{
	struct xvl_net_stats st;
	xvl_net_get_stats(n, &st);
	CHECK(st.rx_dropped == want, "rx_dropped %llu, expected %llu", (unsigned long long)st.rx_dropped,
	      (unsigned long long)want);
	CHECK(got_reason == want, "%s %llu, expected %llu", which, (unsigned long long)got_reason,
	      (unsigned long long)want);
	printf("dropped %llu (%s %llu)\n", (unsigned long long)st.rx_dropped, which,
	       (unsigned long long)got_reason);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: net_hostile_client SOCKET CASE\n");
		return 2;
	}
	cs = argv[2];
	struct xvl_client *c;
	struct xvl_net *n = NULL;
	int rc = open_case(argv[1], &c, &n);
	if (is("mtu_small") || is("pairs_big") || is("mcast_mac")) {
		CHECK(rc == -EPROTO, "open returned %d, expected -EPROTO", rc);
		printf("open refused: %s\n", xvl_client_errmsg(c));
		xvl_net_close(n);
		xvl_client_close(c);
		return failures ? 1 : 0;
	}
	if (rc < 0) {
		fprintf(stderr, "open: %s\n", xvl_client_errmsg(c));
		return 1;
	}
	if (is("good")) { /* the API's own checks, on a device that is open */
		struct xvl_net *n2;
		struct xvl_net_opts bad = {XVL_NET_OPTS_INIT, .device = 0};
		bad.size = 3; /* a struct of no version */
		CHECK(xvl_net_open(c, &bad, &n2) == -EINVAL, "opts with size 3 accepted");
		struct xvl_net_opts again = {XVL_NET_OPTS_INIT, .device = 0};
		CHECK(xvl_net_open(c, &again, &n2) == -EBUSY, "the same device opened twice");
		struct xvl_net_frame f = {.data = (void *)"short", .len = 5};
		CHECK(xvl_net_tx_burst(n, 0, &f, 1) == -EINVAL, "a 5-byte frame accepted");
		CHECK(xvl_net_tx_burst(n, 1, &f, 1) == -EINVAL, "pair 1 of 1 accepted");
		uint8_t big[1600] = {0};
		f = (struct xvl_net_frame){.data = big, .len = sizeof(big)};
		CHECK(xvl_net_tx_burst(n, 0, &f, 1) == -EINVAL, "a frame beyond the MTU without GSO accepted");
		f.len = 100;
		f.gso_type = XVL_NET_GSO_TCPV4;
		f.gso_size = 50;
		f.flags = XVL_NET_TX_CSUM;
		f.csum_start = 34;
		f.csum_offset = 16;
		CHECK(xvl_net_tx_burst(n, 0, &f, 1) == -EINVAL, "TSO accepted without HOST_TSO4");
		struct xvl_net_stats st0;
		xvl_net_get_stats(n, &st0);
		CHECK(st0.tx_dropped == 3 && st0.tx_frames == 0, "tx_dropped %llu tx_frames %llu",
		      (unsigned long long)st0.tx_dropped, (unsigned long long)st0.tx_frames);
		CHECK(xvl_net_set_promisc(n, true) == 0, "CTRL_RX promisc: %s", xvl_client_errmsg(c));
		uint8_t mac[6] = {0x02, 1, 2, 3, 4, 5};
		CHECK(xvl_net_set_mac(n, mac) == -EOPNOTSUPP, "MAC_ADDR_SET without CTRL_MAC_ADDR");
		struct xvl_net_info in;
		xvl_net_get_info(n, &in);
		CHECK(in.mtu == 1500 && in.link_up && in.ctrl && in.csum && !in.tso && in.rx_csum &&
			      in.mac[3] == 0xaa,
		      "info: mtu %u link %d ctrl %d csum %d tso %d", in.mtu, in.link_up, in.ctrl,
		      in.csum, in.tso);
	}
	uint8_t *wb = xvl_buf_alloc(c, NF * FLEN);
	CHECK(wb != NULL, "xvl_buf_alloc");
	unsigned seen[NF] = {0}, other = 0;
	struct xvl_net_stats st;

	if (is("link_flap")) {
		bool saw_down = false, saw_up_again = false;
		uint64_t end = now_ms() + 2000;
		while (now_ms() < end && !saw_up_again) {
			int l = xvl_net_link_status(n);
			CHECK(l >= 0, "link_status %d", l);
			saw_down |= l == 0;
			saw_up_again = saw_down && l == 1;
			xvl_net_wait(n, 0, 10);
		}
		CHECK(saw_down && saw_up_again, "link went down %d and up again %d", saw_down, saw_up_again);
		printf("link down and up again seen\n");
	} else if (is("restart")) {
		/* 6 frames, EVENT RESTART, the device set up again, 6 more: all 12 arrive. */
		send_frames(c, n, wb);
		int r = receive(n, 300, seen, &other, 64);
		CHECK(r == NF, "%d frames before the restart", r);
		uint64_t end = now_ms() + 2000;
		while (xvl_client_restarts(c) == 0 && now_ms() < end) {
			CHECK(xvl_net_link_status(n) == 1, "link during the restart");
			xvl_net_wait(n, 0, 10);
		}
		CHECK(xvl_client_restarts(c) == 1, "%u restarts", xvl_client_restarts(c));
		void *users[2 * NF];
		int k = xvl_net_tx_reclaim(n, 0, users, 2 * NF);
		CHECK(k == 3, "%d zero-copy frames back before the second round", k);
		send_frames(c, n, wb);
		r = receive(n, 300, seen, &other, 64);
		CHECK(r == NF, "%d frames after the restart", r);
		for (unsigned i = 0; i < NF; i++)
			CHECK(seen[i] == 2, "frame %u seen %u times", i, seen[i]);
		k = xvl_net_tx_reclaim(n, 0, users, 2 * NF);
		CHECK(k == 3, "%d zero-copy frames back after the second round", k);
		printf("restarted once, 12 of 12 frames mirrored\n");
	} else if (is("flood")) {
		/* While the device floods: every call bounded, transmit and control still work. */
		uint64_t t0 = now_ms();
		int r = receive(n, 700, seen, &other, 8);
		CHECK(r > 100, "only %d flood frames seen", r);
		CHECK(xvl_net_set_promisc(n, true) == 0, "control command during the flood: %s",
		      xvl_client_errmsg(c));
		send_frames(c, n, wb);
		r = receive(n, 1500, seen, &other, 64);
		CHECK(r >= 0, "receive after the flood: %d", r);
		printf("flood: %u frames in %llu ms, then the mirrored ones\n", other,
		       (unsigned long long)(now_ms() - t0));
		for (unsigned i = 0; i < NF; i++)
			CHECK(seen[i] == 1, "frame %u seen %u times after the flood", i, seen[i]);
	} else {
		send_frames(c, n, wb);
		int r = receive(n, 400, seen, &other, 64);
		xvl_net_get_stats(n, &st);
		if (is("used_id")) {
			CHECK(r == -ENODEV, "receive returned %d, expected -ENODEV", r);
			struct xvl_net_frame f = {.data = wb, .len = FLEN};
			CHECK(xvl_net_tx_burst(n, 0, &f, 1) == -ENODEV, "tx_burst on a broken device");
			printf("device broken: %s\n", xvl_client_errmsg(c));
		} else if (is("nb_lie")) {
			/* frame 0 claims 3 buffers: frames 1 and 2 are joined into it; 3..5 intact */
			CHECK(r == 4, "%d frames, expected 4 (one joined of 3 buffers, then 3)", r);
			CHECK(seen[3] == 1 && seen[4] == 1 && seen[5] == 1, "frames 3..5 intact: %u %u %u",
			      seen[3], seen[4], seen[5]);
			printf("%d frames, the last 3 intact\n", r);
		} else {
			unsigned bad = is("good") ? 0 : 3;
			CHECK(r == (int)(NF - bad), "%d frames received, expected %u", r, NF - bad);
			for (unsigned i = bad; i < NF; i++)
				CHECK(seen[i] == 1, "frame %u seen %u times", i, seen[i]);
			for (unsigned i = 0; i < bad; i++)
				CHECK(seen[i] == 0, "bad frame %u delivered", i);
			uint64_t reason = is("nb_zero") || is("nb_big") ? st.rx_bad_buffers
					  : is("len_big") || is("len_short") ? st.rx_bad_len
					  : is("bad_hdr") ? st.rx_bad_hdr : st.rx_dropped;
			check_drops(n, bad, is("nb_zero") || is("nb_big") ? "rx_bad_buffers"
					   : is("bad_hdr") ? "rx_bad_hdr" : "rx_bad_len", reason);
		}
		if (!is("used_id")) {
			void *users[NF];
			int k = xvl_net_tx_reclaim(n, 0, users, NF);
			CHECK(k == 3, "tx_reclaim gave back %d zero-copy frames, expected 3", k);
		}
	}
	xvl_buf_free(c, wb);
	xvl_net_close(n);
	xvl_client_close(c);
	return failures ? 1 : 0;
}
