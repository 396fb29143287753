/* SPDX-License-Identifier: MIT */
/*
 * For tests/e2e/net_bridge.sh (built by it): two net devices of one server,
 * each on its own client connection, opened with PAIRS queue pairs.  Prints
 * what was negotiated, sets a MAC address and promiscuous mode through the
 * control queue, then for each pair p sends COUNT frames on TX's pair p and
 * counts what arrives on each pair of RX (a forwarder in between, such as
 * dpdk-testpmd in io mode, maps queue p to queue p).
 *
 *   net_mq_prog SOCK TX RX PAIRS COUNT [WARMUP_MS]
 *
 * Output lines (the script checks them):
 *   info DEV max_pairs N pairs N ctrl 0|1 mtu N mac M
 *   ctrl DEV set_mac RC mac_now M promisc RC
 *   pair P sent N got_on_P N got_elsewhere N
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xvloop/xvl.h"
#include "xvloop/xvl_net.h"

#define ETHERTYPE_PROBE 0x88b5
#define FRAME_LEN 64u

static struct xvl_net *open_dev(const char *sock, const char *name, unsigned pairs,
				struct xvl_client **cp)
{
	char err[256] = "";
	struct xvl_net *n;

	if (xvl_client_connect(cp, sock, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "connect: %s\n", err);
		exit(1);
	}
	struct xvl_net_opts o = {XVL_NET_OPTS_INIT, .device = xvl_client_find(*cp, name),
				 .pairs = (uint16_t)pairs};
	if (o.device < 0 || xvl_net_open(*cp, &o, &n) < 0) {
		fprintf(stderr, "open %s: %s\n", name, xvl_client_errmsg(*cp));
		exit(1);
	}
	return n;
}

static void mac_text(const uint8_t *m, char *out)
{
	sprintf(out, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

static void print_info(const char *name, struct xvl_net *n)
{
	struct xvl_net_info in;
	char mac[18];

	xvl_net_get_info(n, &in);
	mac_text(in.mac, mac);
	printf("info %s max_pairs %u pairs %u ctrl %d mtu %u mac %s\n", name, in.max_pairs,
	       in.pairs, in.ctrl, in.mtu, mac);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Receive on every pair of n for up to ms; count frames carrying tag on pair want. */
static void drain(struct xvl_net *n, unsigned pairs, uint8_t tag, unsigned want, unsigned expect,
		  unsigned ms, unsigned *on_pair, unsigned *elsewhere)
{
	struct xvl_net_frame fr[32];
	uint64_t end = now_ms() + ms;

	while (now_ms() < end && *on_pair < expect) {
		unsigned any = 0;
		for (unsigned p = 0; p < pairs; p++) {
			int got = xvl_net_rx_burst(n, (uint16_t)p, fr, 32);
			if (got < 0) {
				fprintf(stderr, "rx: %s\n", strerror(-got));
				exit(1);
			}
			for (int i = 0; i < got; i++) {
				const uint8_t *f = fr[i].data;
				if (fr[i].len < 16 || f[12] != (ETHERTYPE_PROBE >> 8) ||
				    f[13] != (ETHERTYPE_PROBE & 0xff) || f[14] != tag)
					continue;
				if (p == want)
					(*on_pair)++;
				else
					(*elsewhere)++;
			}
			any += (unsigned)got;
		}
		if (!any)
			xvl_net_wait(n, (uint16_t)want, 10);
	}
}

int main(int argc, char **argv)
{
	struct xvl_client *ct, *cr;

	if (argc != 6 && argc != 7)
		return fprintf(stderr, "usage: net_mq_prog SOCK TX RX PAIRS COUNT [WARMUP_MS]\n"), 2;
	unsigned pairs = (unsigned)atoi(argv[4]), count = (unsigned)atoi(argv[5]);
	unsigned warm_ms = argc == 7 ? (unsigned)atoi(argv[6]) : 12000;
	struct xvl_net *tx = open_dev(argv[1], argv[2], pairs, &ct);
	struct xvl_net *rx = open_dev(argv[1], argv[3], pairs, &cr);
	print_info(argv[2], tx);
	print_info(argv[3], rx);

	/* control queue: a locally administered MAC, and promiscuous receive */
	const uint8_t newmac[6] = {0x02, 0x78, 0x76, 0x6c, 0x00, 0x01};
	struct xvl_net_info in;
	char mac[18];
	int rc_mac = xvl_net_set_mac(rx, newmac);
	int rc_pr = xvl_net_set_promisc(rx, true);
	xvl_net_get_info(rx, &in);
	mac_text(in.mac, mac);
	printf("ctrl %s set_mac %d mac_now %s promisc %d\n", argv[3], rc_mac, mac, rc_pr);
	fflush(stdout);

	struct xvl_net_info ti;
	xvl_net_get_info(tx, &ti);
	if (ti.pairs < pairs)
		pairs = ti.pairs;
	for (unsigned p = 0; p < pairs; p++) {
		uint8_t f[FRAME_LEN];
		memset(f, 0, sizeof(f));
		memset(f, 0xff, 6); /* broadcast */
		memcpy(f + 6, ti.mac, 6);
		f[12] = ETHERTYPE_PROBE >> 8;
		f[13] = ETHERTYPE_PROBE & 0xff;
		unsigned sent = 0, on_pair = 0, elsewhere = 0;
		/*
		 * warm-up: until the forwarder passes one, on any pair (both sessions up; OVS
		 * polls a newly enabled queue only once its main thread has reconfigured the
		 * port, seconds on a loaded machine), at most warm_ms
		 */
		f[14] = 0x90;
		uint64_t t0 = now_ms();
		while (now_ms() - t0 < warm_ms && on_pair == 0 && elsewhere == 0) {
			struct xvl_net_frame fr = {.data = f, .len = sizeof(f)};
			xvl_net_tx_burst(tx, (uint16_t)p, &fr, 1);
			xvl_net_tx_reclaim(tx, (uint16_t)p, NULL, 64);
			drain(rx, pairs, 0x90, p, 1, 20, &on_pair, &elsewhere);
		}
		printf("warm-up pair %u: %s after %llu ms\n", p, on_pair || elsewhere ? "through" : "nothing",
		       (unsigned long long)(now_ms() - t0));
		drain(rx, pairs, 0x90, p, 1000, 50, &on_pair, &elsewhere); /* stragglers */
		on_pair = elsewhere = 0;
		f[14] = (uint8_t)(0xa0 + p);
		for (unsigned i = 0; i < count; i++) {
			struct xvl_net_frame fr = {.data = f, .len = sizeof(f)};
			int r = xvl_net_tx_burst(tx, (uint16_t)p, &fr, 1); /* copied: not in the window */
			if (r == 1)
				sent++;
			xvl_net_tx_reclaim(tx, (uint16_t)p, NULL, 64);
			if (i % 16 == 15) /* do not outrun the forwarder's rings */
				drain(rx, pairs, (uint8_t)(0xa0 + p), p, sent, 2, &on_pair, &elsewhere);
		}
		drain(rx, pairs, (uint8_t)(0xa0 + p), p, sent, 2000, &on_pair, &elsewhere);
		printf("pair %u sent %u got_on_%u %u got_elsewhere %u\n", p, sent, p, on_pair,
		       elsewhere);
		fflush(stdout);
	}
	xvl_net_close(rx);
	xvl_net_close(tx);
	xvl_client_close(cr);
	xvl_client_close(ct);
	return 0;
}
