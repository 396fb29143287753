/* SPDX-License-Identifier: MIT */
/*
 * For bench/net-compare (built by it): the xvloop driver side as a pure
 * sender, the counterpart of testpmd's net_virtio_user in txonly mode.
 * Opens a net device, sends broadcast frames of SIZE bytes zero copy from a
 * pool of window buffers for SECONDS, and prints how many the device took.
 * The receiver (testpmd's net_vhost in rxonly, behind the server's bridge)
 * does the counting that matters.
 *
 *   net-blast SOCK DEVICE SIZE SECONDS [copy|nooff]
 *   -> "sent N frames in S s (M Mpps)"
 *
 * Zero copy, a frame is two descriptors (the header slot, the frame in the
 * window); with "copy" the frames come from private memory and the driver
 * copies each behind its header: one descriptor.  "nooff": no checksum or
 * segmentation offloads negotiated (as testpmd's virtio_user txonly).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xvloop/xvl.h"
#include "xvloop/xvl_net.h"

#define POOL  1024u
#define BURST 32u

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	static uint16_t free_idx[POOL];
	struct xvl_client *c;
	struct xvl_net *n;
	struct xvl_net_info in;
	char err[256] = "";

	if (argc != 5 && !(argc == 6 && (!strcmp(argv[5], "copy") || !strcmp(argv[5], "nooff"))))
		return fprintf(stderr, "usage: net-blast SOCK DEVICE SIZE SECONDS [copy|nooff]\n"), 2;
	bool copy = argc == 6 && !strcmp(argv[5], "copy");
	bool nooff = argc == 6 && !strcmp(argv[5], "nooff");
	unsigned size = (unsigned)atoi(argv[3]);
	double secs = atof(argv[4]);
	if (size < 60 || size > 1514)
		return fprintf(stderr, "net-blast: SIZE 60..1514\n"), 2;
	if (xvl_client_connect(&c, argv[1], NULL, err, sizeof(err)) < 0)
		return fprintf(stderr, "net-blast: connect: %s\n", err), 1;
	struct xvl_net_opts o = {XVL_NET_OPTS_INIT, .device = xvl_client_find(c, argv[2]),
				 .no_offloads = nooff};
	if (o.device < 0 || xvl_net_open(c, &o, &n) < 0)
		return fprintf(stderr, "net-blast: open %s: %s\n", argv[2], xvl_client_errmsg(c)), 1;
	xvl_net_get_info(n, &in);
	static uint8_t priv[POOL * 1514];
	uint8_t *pool = copy ? priv : xvl_buf_alloc(c, (size_t)POOL * size);
	if (!pool)
		return fprintf(stderr, "net-blast: no room in the window\n"), 1;
	for (unsigned i = 0; i < POOL; i++) {
		uint8_t *f = pool + (size_t)i * size;
		memset(f, 0, size);
		memset(f, 0xff, 6);
		memcpy(f + 6, in.mac, 6);
		f[12] = 0x88;
		f[13] = 0xb5;
		free_idx[i] = (uint16_t)i;
	}
	unsigned nfree = POOL;
	uint64_t sent = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
	struct xvl_net_frame fr[BURST];
	void *back[BURST * 4];
	for (unsigned k = 0;; k++) {
		unsigned nb = 0;
		while (nb < BURST && nfree) {
			uint16_t i = free_idx[--nfree];
			fr[nb++] = (struct xvl_net_frame){.data = pool + (size_t)i * size, .len = size,
							  .user = (void *)(uintptr_t)(i + 1)};
		}
		int r = xvl_net_tx_burst(n, 0, fr, nb);
		if (r < 0)
			return fprintf(stderr, "net-blast: tx: %s\n", xvl_client_errmsg(c)), 1;
		/* copied frames are ours again at once; zero-copy ones come back by reclaim */
		for (unsigned j = copy ? 0 : (unsigned)r; j < nb; j++)
			free_idx[nfree++] = (uint16_t)((uintptr_t)fr[j].user - 1);
		sent += (unsigned)r;
		int got = xvl_net_tx_reclaim(n, 0, back, BURST * 4);
		for (int j = 0; j < got; j++)
			free_idx[nfree++] = (uint16_t)((uintptr_t)back[j] - 1);
		if ((k & 63) == 0 && now_ns() >= end)
			break;
	}
	double dt = (double)(now_ns() - t0) / 1e9;
	printf("sent %llu frames in %.2f s (%.3f Mpps)\n", (unsigned long long)sent, dt,
	       (double)sent / dt / 1e6);
	xvl_net_close(n);
	xvl_client_close(c);
	return 0;
}
