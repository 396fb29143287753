/* SPDX-License-Identifier: MIT */
/*
 * xvl net ping|perf and their responder: probe frames of Ethernet type
 * 0x88b5 (IEEE 802 local experimental), laid out as
 *   0  destination MAC, 6 source MAC, 12 type 0x88b5
 *   14 "XVLP", 18 kind (enum probe_kind), 20 le32 seq, 24 le64 sender's time (ns),
 *   32 le64 frames and 40 le64 bytes counted (REPORT), then padding to the frame size.
 * The responder answers ECHO with REPLY (addresses swapped), counts SINK
 * frames, zeroes the count on RESET (answered by RESET_ACK) and tells it on
 * REPORT_REQ (answered by REPORT).  Frames are received as untrusted input:
 * only frames of at least 64 bytes with the magic are looked at.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "net_cmd.h"

#define PROBE_MIN    64u
#define PROBE_BURST  32u
#define PROBE_MAX    65535u

enum probe_kind { P_ECHO = 1, P_REPLY, P_SINK, P_RESET, P_RESET_ACK, P_REPORT_REQ, P_REPORT };

struct probe {
	uint8_t src[6];
	uint8_t kind;
	uint32_t seq;
	uint64_t t_ns, frames, bytes;
};

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = bytes; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

static void probe_build(uint8_t *f, unsigned len, const uint8_t *dst, const uint8_t *src,
			const struct probe *p)
{
	memset(f, 0, len);
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = NET_PROBE_ETHERTYPE >> 8;
	f[13] = NET_PROBE_ETHERTYPE & 0xff;
	memcpy(f + 14, "XVLP", 4);
	f[18] = p->kind;
	put_le(f + 20, p->seq, 4);
	put_le(f + 24, p->t_ns, 8);
	put_le(f + 32, p->frames, 8);
	put_le(f + 40, p->bytes, 8);
}

/* The frame's bytes are in shared memory: copy the fields once, then look at the copy. */
static bool probe_parse(const struct xvl_net_frame *fr, struct probe *p)
{
	uint8_t h[48];
	if (fr->len < PROBE_MIN)
		return false;
	memcpy(h, fr->data, sizeof(h));
	if (h[12] != NET_PROBE_ETHERTYPE >> 8 || h[13] != (NET_PROBE_ETHERTYPE & 0xff) ||
	    memcmp(h + 14, "XVLP", 4))
		return false;
	memcpy(p->src, h + 6, 6);
	p->kind = h[18];
	p->seq = (uint32_t)get_le(h + 20, 4);
	p->t_ns = get_le(h + 24, 8);
	p->frames = get_le(h + 32, 8);
	p->bytes = get_le(h + 40, 8);
	return true;
}

static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static int send_probe(struct xvl_net *n, const uint8_t *dst, const struct probe *p, unsigned len)
{
	static uint8_t buf[PROBE_MAX];
	struct xvl_net_info in;
	xvl_net_get_info(n, &in);
	probe_build(buf, len, dst, in.mac, p);
	struct xvl_net_frame f = {.data = buf, .len = len};
	for (int tries = 0; tries < 1000; tries++) {
		int r = xvl_net_tx_burst(n, 0, &f, 1);
		if (r != 0)
			return r < 0 ? r : 0;
		xvl_net_tx_reclaim(n, 0, NULL, 64);
	}
	return -EAGAIN;
}

/* Wait up to timeout_ms for a probe of kind (and seq, if want_seq); 1 found, 0 not, <0 error. */
static int await_probe(struct xvl_net *n, uint8_t kind, bool want_seq, uint32_t seq,
		       int timeout_ms, struct probe *out)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct xvl_net_frame fr[PROBE_BURST];
	while (!stop) {
		int got = xvl_net_rx_burst(n, 0, fr, PROBE_BURST);
		if (got < 0)
			return got;
		for (int i = 0; i < got; i++) {
			struct probe p;
			if (probe_parse(&fr[i], &p) && p.kind == kind && (!want_seq || p.seq == seq)) {
				*out = p;
				return 1;
			}
		}
		uint64_t t = now_ns();
		if (t >= end)
			return 0;
		if (got == 0) {
			int w = xvl_net_wait(n, 0, (int)((end - t) / 1000000ull) + 1);
			if (w < 0)
				return w;
		}
	}
	return 0;
}

static void fmt_mac(char *s, const uint8_t *m)
{
	snprintf(s, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

static void catch_signals(void)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* ------------------------------------------------------------ responder */

int net_do_responder(struct net_args *a, struct xvl_client *c, struct xvl_net *n)
{
	(void)a;
	(void)c;
	static uint8_t out[PROBE_BURST][PROBE_MAX];
	struct xvl_net_frame fr[PROBE_BURST], tx[PROBE_BURST];
	struct xvl_net_info in;
	uint64_t frames = 0, bytes = 0, answered = 0;
	char mac[18];
	xvl_net_get_info(n, &in);
	fmt_mac(mac, in.mac);
	catch_signals();
	fprintf(stderr, "xvl net: responder on %s (%s)\n", in.name, mac);
	while (!stop) {
		int got = xvl_net_rx_burst(n, 0, fr, PROBE_BURST);
		if (got < 0)
			return cli_fail(1, "net", "device gone: %s", xvl_client_errmsg(c));
		unsigned nt = 0;
		for (int i = 0; i < got; i++) {
			struct probe p;
			if (!probe_parse(&fr[i], &p))
				continue;
			uint8_t kind = p.kind == P_ECHO ? P_REPLY
				       : p.kind == P_RESET ? P_RESET_ACK
				       : p.kind == P_REPORT_REQ ? P_REPORT : 0;
			if (p.kind == P_SINK) {
				frames++;
				bytes += fr[i].len;
			}
			if (p.kind == P_RESET)
				frames = bytes = 0;
			if (!kind)
				continue;
			uint32_t len = p.kind == P_ECHO ? fr[i].len : PROBE_MIN;
			struct probe r = {.kind = kind, .seq = p.seq, .t_ns = p.t_ns,
					  .frames = frames, .bytes = bytes};
			probe_build(out[nt], len, p.src, in.mac, &r);
			if (p.kind == P_ECHO) /* the payload comes back as it was sent */
				memcpy(out[nt] + 48, (const uint8_t *)fr[i].data + 48, len - 48);
			tx[nt] = (struct xvl_net_frame){.data = out[nt], .len = len};
			nt++;
		}
		for (unsigned sent = 0; nt && sent < nt && !stop;) {
			int r = xvl_net_tx_burst(n, 0, tx + sent, nt - sent);
			if (r < 0)
				break;
			sent += (unsigned)r;
			answered += (unsigned)r;
		}
		if (got == 0 && xvl_net_wait(n, 0, 200) < 0)
			return cli_fail(1, "net", "device gone: %s", xvl_client_errmsg(c));
	}
	fprintf(stderr, "xvl net: responder answered %llu probes\n", (unsigned long long)answered);
	return 0;
}

/* ------------------------------------------------------------ ping */

int net_do_ping(struct net_args *a, struct xvl_client *c, struct xvl_net *n)
{
	uint8_t dst[6];
	memcpy(dst, broadcast, 6);
	if (a->peer)
		net_parse_mac(a->peer, dst);
	catch_signals();
	unsigned got = 0;
	double sum = 0, mn = 1e18, mx = 0;
	for (unsigned i = 0; i < a->count && !stop; i++) {
		struct probe p = {.kind = P_ECHO, .seq = i + 1, .t_ns = now_ns()}, r;
		int rc = send_probe(n, dst, &p, a->size);
		if (rc < 0)
			return cli_fail(1, "net", "cannot send: %s", xvl_client_errmsg(c));
		rc = await_probe(n, P_REPLY, true, p.seq, 1000, &r);
		if (rc < 0)
			return cli_fail(1, "net", "device gone: %s", xvl_client_errmsg(c));
		if (rc == 1) {
			double us = (double)(now_ns() - p.t_ns) / 1000.0;
			char mac[18];
			fmt_mac(mac, r.src);
			printf("%u bytes from %s: seq=%u time=%.1f us\n", a->size, mac, p.seq, us);
			fflush(stdout);
			got++;
			sum += us;
			mn = us < mn ? us : mn;
			mx = us > mx ? us : mx;
		} else {
			printf("seq=%u: no reply within 1000 ms\n", p.seq);
		}
		if (i + 1 < a->count && a->interval_ms)
			nanosleep(&(struct timespec){a->interval_ms / 1000,
						     (long)(a->interval_ms % 1000) * 1000000L},
				  NULL);
	}
	printf("%u sent, %u received, %.0f%% loss", a->count, got,
	       100.0 * (a->count - got) / (a->count ? a->count : 1));
	if (got)
		printf(", rtt min/avg/max %.1f/%.1f/%.1f us", mn, sum / got, mx);
	printf("\n");
	return got ? 0 : 1;
}

/* ------------------------------------------------------------ perf */

struct perf_row {
	unsigned size;
	double tx_pps, rx_pps, loss, p50_us, p99_us;
	unsigned rounds;
};

/* Ask with retries: the request or its answer may be dropped. */
static int ask(struct xvl_net *n, const uint8_t *dst, uint8_t kind, uint8_t answer,
	       struct probe *out)
{
	for (uint32_t t = 1; t <= 10 && !stop; t++) {
		struct probe p = {.kind = kind, .seq = 0x10000u + t};
		int rc = send_probe(n, dst, &p, PROBE_MIN);
		if (rc < 0)
			return rc;
		rc = await_probe(n, answer, true, p.seq, 200, out);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Sink frames from a pool of window buffers (zero copy), recycled through tx_reclaim. */
static int blast_zero_copy(struct xvl_client *c, struct xvl_net *n, const uint8_t *dst,
			   unsigned size, double secs, uint64_t *sent)
{
	enum { POOL = 1024 };
	static uint16_t free_idx[POOL];
	struct xvl_net_frame f[PROBE_BURST], rx[PROBE_BURST];
	void *back[PROBE_BURST * 4];
	struct xvl_net_info in;
	uint8_t *pool = xvl_buf_alloc(c, (size_t)POOL * size);
	if (!pool)
		return 1; /* no room in the window: the caller copies */
	xvl_net_get_info(n, &in);
	unsigned nfree = POOL;
	for (unsigned i = 0; i < POOL; i++) {
		struct probe p = {.kind = P_SINK, .seq = i};
		probe_build(pool + (size_t)i * size, size, dst, in.mac, &p);
		free_idx[i] = (uint16_t)i;
	}
	uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
	unsigned k = 0;
	int rc = 0;
	*sent = 0;
	while (!stop) {
		unsigned nb = 0;
		while (nb < PROBE_BURST && nfree) {
			uint16_t i = free_idx[--nfree];
			f[nb++] = (struct xvl_net_frame){.data = pool + (size_t)i * size, .len = size,
							 .user = (void *)(uintptr_t)(i + 1)};
		}
		int r = xvl_net_tx_burst(n, 0, f, nb);
		if (r < 0) {
			rc = r;
			break;
		}
		for (unsigned j = (unsigned)r; j < nb; j++) /* not taken: back to the pool */
			free_idx[nfree++] = (uint16_t)((uintptr_t)f[j].user - 1);
		*sent += (unsigned)r;
		int got = xvl_net_tx_reclaim(n, 0, back, PROBE_BURST * 4);
		for (int j = 0; j < got; j++)
			free_idx[nfree++] = (uint16_t)((uintptr_t)back[j] - 1);
		if ((++k & 63) == 0) {
			xvl_net_rx_burst(n, 0, rx, PROBE_BURST); /* keep our own ring moving */
			if (now_ns() >= end)
				break;
		}
	}
	/* Every buffer back from the device before the pool goes (else it stays allocated). */
	for (uint64_t t_end = now_ns() + 1000000000ull; nfree < POOL && now_ns() < t_end;) {
		int got = xvl_net_tx_reclaim(n, 0, back, PROBE_BURST * 4);
		for (int j = 0; j < got; j++)
			free_idx[nfree++] = (uint16_t)((uintptr_t)back[j] - 1);
	}
	if (nfree == POOL)
		xvl_buf_free(c, pool);
	return rc;
}

static int blast(struct xvl_client *c, struct xvl_net *n, const uint8_t *dst, unsigned size,
		 double secs, bool copy, uint64_t *sent)
{
	static uint8_t buf[PROBE_BURST][PROBE_MAX];
	struct xvl_net_frame f[PROBE_BURST];
	struct xvl_net_frame rx[PROBE_BURST];
	struct xvl_net_info in;
	if (!copy) {
		int rc = blast_zero_copy(c, n, dst, size, secs, sent);
		if (rc <= 0)
			return rc;
	}
	xvl_net_get_info(n, &in);
	for (unsigned i = 0; i < PROBE_BURST; i++) {
		struct probe p = {.kind = P_SINK, .seq = i};
		probe_build(buf[i], size, dst, in.mac, &p);
		f[i] = (struct xvl_net_frame){.data = buf[i], .len = size};
	}
	uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
	*sent = 0;
	unsigned k = 0;
	while (!stop) {
		int r = xvl_net_tx_burst(n, 0, f, PROBE_BURST);
		if (r < 0)
			return r;
		*sent += (unsigned)r;
		if ((++k & 63) == 0) {
			xvl_net_rx_burst(n, 0, rx, PROBE_BURST); /* keep our own ring moving */
			if (now_ns() >= end)
				break;
		}
	}
	return 0;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

static int latency(struct xvl_net *n, const uint8_t *dst, unsigned size, double secs,
		   struct perf_row *row)
{
	enum { MAX_ROUNDS = 200000 };
	static uint64_t rtt[MAX_ROUNDS];
	uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
	unsigned k = 0;
	for (uint32_t seq = 1; k < MAX_ROUNDS && !stop && now_ns() < end; seq++) {
		struct probe p = {.kind = P_ECHO, .seq = seq, .t_ns = now_ns()}, r;
		int rc = send_probe(n, dst, &p, size);
		if (rc == 0)
			rc = await_probe(n, P_REPLY, true, seq, 100, &r);
		if (rc < 0)
			return rc;
		if (rc == 1)
			rtt[k++] = now_ns() - p.t_ns;
	}
	qsort(rtt, k, sizeof(rtt[0]), cmp_u64);
	row->rounds = k;
	row->p50_us = k ? (double)rtt[k / 2] / 1000.0 : 0;
	row->p99_us = k ? (double)rtt[(k * 99) / 100] / 1000.0 : 0;
	return 0;
}

static int perf_size(struct xvl_client *c, struct xvl_net *n, const uint8_t *dst, unsigned size,
		     double secs, bool copy, struct perf_row *row)
{
	struct probe r;
	uint64_t sent;
	row->size = size;
	int rc = ask(n, dst, P_RESET, P_RESET_ACK, &r);
	if (rc <= 0)
		return rc < 0 ? rc : -ETIMEDOUT;
	uint64_t t0 = now_ns();
	if ((rc = blast(c, n, dst, size, secs, copy, &sent)) < 0)
		return rc;
	double dt = (double)(now_ns() - t0) / 1e9;
	nanosleep(&(struct timespec){0, 100000000L}, NULL);
	rc = ask(n, dst, P_REPORT_REQ, P_REPORT, &r);
	if (rc <= 0)
		return rc < 0 ? rc : -ETIMEDOUT;
	row->tx_pps = (double)sent / dt;
	row->rx_pps = (double)r.frames / dt;
	row->loss = sent ? 100.0 * (double)(sent - (r.frames < sent ? r.frames : sent)) / (double)sent : 0;
	return latency(n, dst, size, secs, row);
}

int net_do_perf(struct net_args *a, struct xvl_client *c, struct xvl_net *n)
{
	struct xvl_net_info in;
	struct probe r;
	uint8_t dst[6];
	xvl_net_get_info(n, &in);
	catch_signals();
	memcpy(dst, broadcast, 6);
	if (a->peer)
		net_parse_mac(a->peer, dst);
	/* Find the responder (its MAC, from its reply): the rest goes to it alone. */
	int rc = ask(n, dst, P_ECHO, P_REPLY, &r);
	if (rc <= 0)
		return cli_fail(1, "net", "no responder answers (start 'xvl net perf --responder' on "
				"another device of the switch)%s%s",
				rc < 0 ? ": " : "", rc < 0 ? xvl_client_errmsg(c) : "");
	memcpy(dst, r.src, 6);
	struct perf_row rows[32];
	unsigned nrows = 0;
	char *list = strdup(a->sizes), *save = NULL;
	if (!list)
		return cli_fail(1, "net", "out of memory");
	for (char *t = strtok_r(list, ",", &save); t && nrows < 32 && !stop;
	     t = strtok_r(NULL, ",", &save)) {
		uint64_t s;
		if (!cli_size("net", "--sizes", t, &s) || s < PROBE_MIN || s > PROBE_MAX) {
			cli_fail(2, "net", "--sizes: %s is not a frame size in %u..%u", t, PROBE_MIN,
				 PROBE_MAX);
			free(list);
			return 2;
		}
		if (s > (uint64_t)in.mtu + 14u) {
			fprintf(stderr, "xvl net: %llu B skipped: the MTU is %u\n",
				(unsigned long long)s, in.mtu);
			continue;
		}
		rc = perf_size(c, n, dst, (unsigned)s, a->time_s, a->copy, &rows[nrows]);
		if (rc < 0) {
			free(list);
			return cli_fail(1, "net", "%llu B: %s", (unsigned long long)s,
					rc == -ETIMEDOUT ? "the responder stopped answering"
							 : xvl_client_errmsg(c));
		}
		nrows++;
	}
	free(list);
	if (a->json) {
		printf("{\"device\": \"%s\", \"results\": [", in.name);
		for (unsigned i = 0; i < nrows; i++)
			printf("%s{\"size\": %u, \"tx_pps\": %.0f, \"rx_pps\": %.0f, \"loss_pct\": %.2f, "
			       "\"rtt_p50_us\": %.2f, \"rtt_p99_us\": %.2f, \"rounds\": %u}",
			       i ? ", " : "", rows[i].size, rows[i].tx_pps, rows[i].rx_pps, rows[i].loss,
			       rows[i].p50_us, rows[i].p99_us, rows[i].rounds);
		printf("]}\n");
		return 0;
	}
	printf("%8s %12s %12s %8s %10s %10s %10s\n", "size", "tx pps", "rx pps", "loss%", "rx Gbit/s",
	       "rtt p50us", "rtt p99us");
	for (unsigned i = 0; i < nrows; i++)
		printf("%8u %12.0f %12.0f %8.2f %10.3f %10.1f %10.1f\n", rows[i].size, rows[i].tx_pps,
		       rows[i].rx_pps, rows[i].loss, rows[i].rx_pps * rows[i].size * 8 / 1e9,
		       rows[i].p50_us, rows[i].p99_us);
	return 0;
}
