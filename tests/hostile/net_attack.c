/* SPDX-License-Identifier: MIT */
/*
 * Raw virtio-net DRIVER peer against `xvl server`'s net devices (issue 13,
 * device side).  Speaks the link by hand, sets up rx/tx/ctrl queues in its
 * own windows and sends frames through the built-in switch.
 *
 *   net_attack SOCKET CASE [N]
 *
 * The server has switch ports a, b, c (devices 0, 1, 2; MTU 1500) and for
 * case spoof a port s (device 3) with spoof=on.  Prints "PASS what" /
 * "FAIL what: why" lines and "# ..." notes; exit status 0 when all passed.
 *
 * Cases:
 *   forward    broadcast reaches b and c byte for byte; unicast back goes to
 *              the learnt port only; a 1000-byte frame into b's 256-byte
 *              mergeable buffers (num_buffers 5); checksum offload filled in
 *              for a receiver without GUEST_CSUM
 *   badtx      oversized, short, header-less frames, GSO not negotiated,
 *              csum offsets outside the frame: dropped and counted, the tx
 *              chains completed, the port still forwards
 *   bctrl      devices 0, 1 are bridged (backend=vhost-user): the server's own
 *              control queue answers bad commands ERR, good ones OK; a chain
 *              without an ack byte breaks device 0 only
 *   ctrl       control commands out of range get VIRTIO_NET_ERR; rx mode
 *              takes effect; a control chain without an ack byte breaks
 *              that device only
 *   norefill   b never posts rx buffers: N broadcast frames from a all
 *              reach c, b's drops are counted
 *   rxoutside  b posts an rx buffer outside its window: b breaks, c still
 *              receives
 *   txwrite    a's tx chain has a device-writable buffer: a breaks, b and c
 *              go on
 *   spoof      port s (spoof=on): a foreign source MAC is dropped, its own
 *              passes, MAC_ADDR_SET is refused
 *   rate       N 64-byte frames a -> c; prints "# RATE frames/s"
 *   mrgwhole   N frames of 1514 bytes a -> b, b's mergeable rx buffers of 64
 *              bytes (24 a frame); b watches its used idx all the while: it
 *              must never expose part of a frame (one index update a frame)
 *   tapecho    device 0 is a tap device: answer ARP and ICMP echo for
 *              10.99.0.2 for N seconds (the tap's kernel side pings it)
 *   tapbreak   device 0 is a tap device: a readable rx chain, held N seconds
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>

#include "hostile_common.h"
#include "net.h"
#include "virtio_net.h"
#include "virtq.h"
#include "window.h"
#include "xvl_atomic.h"

#define WIN_SIZE (4u << 20)
#define NUM      256u
#define RING(q)  (0x1000u + (q) * 0x3000u) /* desc, avail +0x1000, used +0x2000 */
#define RXBUF    0x100000u                 /* NUM buffers of RXB bytes */
#define TXBUF    0x200000u                 /* NUM buffers of 2 KiB */
#define BIGBUF   0x300000u                 /* 128 KiB */
#define CTRLBUF  0x10000u
#define WAIT_MS  2000
#define ST_BASE  (XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER)
#define ST_FEAT  (ST_BASE | XVL_STATUS_FEATURES_OK)
#define ST_OK    (ST_FEAT | XVL_STATUS_DRIVER_OK)
#define F(b)     (1ull << (b))

static const char *sock_path;
static int failures;

static void result(bool pass, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void result(bool pass, const char *what, const char *fmt, ...)
{
	if (pass) {
		printf("PASS %s\n", what);
	} else {
		va_list ap;
		printf("FAIL %s: ", what);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
		failures++;
	}
	fflush(stdout);
}

struct port {
	const char *name;
	int sock;
	uint32_t seq;
	uint32_t dev;
	uint64_t features;
	uint8_t mac[6];
	int memfd;
	struct xvl_mem mem;
	struct xvl_vq_drv vq[3]; /* rx, tx, ctrl */
	void *priv[3];
	int kick[3], call[3];
	uint32_t rxb;            /* rx buffer size */
	bool broken;
	char broken_msg[64];
};

static void note_event(struct port *p, const struct xvl_msg *m)
{
	if (m->u.event.code == XVL_EVENT_BROKEN && !p->broken) {
		p->broken = true;
		snprintf(p->broken_msg, sizeof(p->broken_msg), "%s", m->u.event.msg);
	}
}

static int call(struct port *p, struct xvl_msg *req, const int *fds, unsigned nfds,
		struct xvl_msg *rep)
{
	req->seq = ++p->seq;
	int rc = h_send(p->sock, req, fds, nfds);
	if (rc < 0)
		return rc;
	for (;;) {
		rc = h_recv(p->sock, rep, WAIT_MS, NULL, NULL);
		if (rc == 0)
			return -ETIMEDOUT;
		if (rc < 0)
			return rc;
		if (rep->type == XVL_MSG_EVENT && !xvl_msg_is_reply(rep)) {
			note_event(p, rep);
			continue;
		}
		if (rep->seq != req->seq || rep->type != req->type)
			h_die("%s: unexpected %s", xvl_msg_name(req->type), xvl_msg_name(rep->type));
		return rep->status;
	}
}

/* Read events that arrived, for up to ms. */
static void drain_events(struct port *p, int ms)
{
	struct xvl_msg m;
	while (h_recv(p->sock, &m, ms, NULL, NULL) == 1)
		if (m.type == XVL_MSG_EVENT && !xvl_msg_is_reply(&m))
			note_event(p, &m);
}

static void must(int rc, const char *what)
{
	if (rc < 0)
		h_die("%s refused: %s", what, strerror(-rc));
}

static int set_status(struct port *p, uint32_t st)
{
	struct xvl_msg req = {.type = XVL_MSG_SET_STATUS}, rep;
	req.u.st.dev = p->dev;
	req.u.st.status = st;
	return call(p, &req, NULL, 0, &rep);
}

static uint64_t stat_errors(struct port *p)
{
	struct xvl_msg req = {.type = XVL_MSG_GET_STATS}, rep;
	req.u.dev.dev = p->dev;
	must(call(p, &req, NULL, 0, &rep), "GET_STATS");
	return rep.u.stats.errors;
}

/* Attach device dev with features want (masked by the offer); rx buffers of rxb bytes,
 * posted (NUM of them) unless post is false. */
static void port_open(struct port *p, const char *name, uint32_t dev, uint64_t want, uint32_t rxb,
		      bool post)
{
	struct xvl_errbuf eb;
	struct xvl_msg req = {.type = XVL_MSG_HELLO}, rep;
	memset(p, 0, sizeof(*p));
	p->name = name;
	p->dev = dev;
	p->rxb = rxb;
	for (int i = 0; i < 100; i++) {
		p->sock = xvl_os_connect(sock_path, &eb);
		if (p->sock >= 0 || p->sock != -ECONNREFUSED)
			break;
		usleep(20000);
	}
	if (p->sock < 0)
		h_die("connect %s: %s", sock_path, eb.msg);
	req.u.hello.major = XVL_PROTO_MAJOR;
	snprintf(req.u.hello.name, sizeof(req.u.hello.name), "net-attack-%s", name);
	must(call(p, &req, NULL, 0, &rep), "HELLO");
	req = (struct xvl_msg){.type = XVL_MSG_DEV_INFO};
	req.u.dev.dev = dev;
	must(call(p, &req, NULL, 0, &rep), "DEV_INFO");
	if (rep.u.info.virtio_id != 1 || rep.u.info.num_queues < 3)
		h_die("device %u is not a net device with a control queue (id %u, %u queues)", dev,
		      rep.u.info.virtio_id, rep.u.info.num_queues);
	p->features = rep.u.info.features & (want | F(XVL_F_VERSION_1));
	p->memfd = memfd_create("net-attack", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (p->memfd < 0 || ftruncate(p->memfd, WIN_SIZE) < 0)
		h_die("memfd: %s", strerror(errno));
	void *m = mmap(NULL, WIN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, p->memfd, 0);
	if (m == MAP_FAILED)
		h_die("mmap: %s", strerror(errno));
	p->mem = (struct xvl_mem){.base = m, .size = WIN_SIZE};
	must(xvl_win_format(&p->mem), "window format");
	req = (struct xvl_msg){.type = XVL_MSG_SET_WINDOW};
	req.u.window.size = WIN_SIZE;
	must(call(p, &req, &p->memfd, 1, &rep), "SET_WINDOW");
	req = (struct xvl_msg){.type = XVL_MSG_ATTACH};
	req.u.dev.dev = dev;
	must(call(p, &req, NULL, 0, &rep), "ATTACH");
	req = (struct xvl_msg){.type = XVL_MSG_GET_CONFIG};
	req.u.cfg = (struct xvl_m_config){.dev = dev, .off = 0, .len = XVL_NET_CFG_SIZE};
	must(call(p, &req, NULL, 0, &rep), "GET_CONFIG");
	memcpy(p->mac, rep.u.cfg.data + XVL_NET_CFG_MAC, 6);
	must(set_status(p, ST_BASE), "SET_STATUS");
	req = (struct xvl_msg){.type = XVL_MSG_SET_FEATURES};
	req.u.feat = (struct xvl_m_features){.dev = dev, .features = p->features};
	must(call(p, &req, NULL, 0, &rep), "SET_FEATURES");
	must(set_status(p, ST_FEAT), "SET_STATUS FEATURES_OK");
	for (unsigned q = 0; q < 3; q++) {
		struct xvl_vq_layout l = {.num = NUM, .desc = RING(q), .avail = RING(q) + 0x1000,
					  .used = RING(q) + 0x2000};
		p->priv[q] = aligned_alloc(64, (xvl_vq_drv_priv_size(NUM) + 63) & ~(size_t)63);
		must(xvl_vq_drv_init(&p->vq[q], &p->mem, &l, false, 0, 0, p->priv[q]), "ring init");
		p->kick[q] = xvl_os_eventfd();
		p->call[q] = xvl_os_eventfd();
		req = (struct xvl_msg){.type = XVL_MSG_SET_QUEUE};
		req.u.queue = (struct xvl_m_queue){.dev = dev, .queue = (uint16_t)q, .num = NUM,
						   .flags = XVL_QUEUE_F_ENABLE, .desc = l.desc,
						   .avail = l.avail, .used = l.used};
		int fds[2] = {p->kick[q], p->call[q]};
		must(call(p, &req, fds, 2, &rep), "SET_QUEUE");
	}
	if (post)
		for (unsigned i = 0; i < NUM; i++) {
			struct xvl_sg sg = {RXBUF + i * rxb, rxb};
			must(xvl_vq_drv_add(&p->vq[0], &sg, 0, 1, i), "post rx buffer");
		}
	must(set_status(p, ST_OK), "SET_STATUS DRIVER_OK");
}

static void port_close(struct port *p)
{
	close(p->sock);
	munmap(p->mem.base, WIN_SIZE);
	close(p->memfd);
	for (unsigned q = 0; q < 3; q++) {
		free(p->priv[q]);
		close(p->kick[q]);
		close(p->call[q]);
	}
}

static void kick(struct port *p, unsigned q)
{
	xvl_os_eventfd_signal(p->kick[q]);
}

/* Reclaim completed tx chains. */
static unsigned tx_reap(struct port *p)
{
	uint64_t tok;
	uint32_t len;
	unsigned n = 0;
	while (xvl_vq_drv_get_used(&p->vq[1], &tok, &len) == 1)
		n++;
	return n;
}

/* Queue one frame: header h and len bytes of data, in tx buffer slot (2 KiB, or BIGBUF
 * for longer ones); no kick. */
static int tx_add(struct port *p, const struct xvl_net_hdr *h, const uint8_t *data, uint32_t len,
		  unsigned slot)
{
	uint64_t off = len + XVL_NET_HDR_SIZE > 2048 ? BIGBUF : TXBUF + (slot % NUM) * 2048u;
	xvl_net_hdr_encode(h, p->mem.base + off);
	memcpy(p->mem.base + off + XVL_NET_HDR_SIZE, data, len);
	struct xvl_sg sg = {off, XVL_NET_HDR_SIZE + len};
	return xvl_vq_drv_add(&p->vq[1], &sg, 1, 0, slot);
}

/* Send one frame and wait until its tx chain is completed. */
static bool tx_one(struct port *p, const struct xvl_net_hdr *h, const uint8_t *data, uint32_t len)
{
	tx_reap(p);
	if (tx_add(p, h, data, len, 0) < 0)
		return false;
	kick(p, 1);
	uint64_t deadline = xvl_os_now_ns() + WAIT_MS * 1000000ull;
	while (xvl_os_now_ns() < deadline) {
		if (tx_reap(p))
			return true;
		usleep(200);
	}
	return false;
}

/* One received frame: its buffers' bytes (mergeable ones joined), header decoded.
 * Returns the frame length after the header, 0 when nothing came within ms, -1 when
 * the ring broke.  Buffers are posted again. */
static int rx_one(struct port *p, struct xvl_net_hdr *h, uint8_t *out, uint32_t cap, int ms)
{
	uint64_t deadline = xvl_os_now_ns() + (uint64_t)ms * 1000000ull;
	uint64_t tok;
	uint32_t len, got = 0;
	unsigned want = 1;
	for (unsigned i = 0; i < want;) {
		int rc = xvl_vq_drv_get_used(&p->vq[0], &tok, &len);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			if (xvl_os_now_ns() > deadline)
				return i ? -1 : 0;
			usleep(200);
			continue;
		}
		uint8_t *b = p->mem.base + RXBUF + tok * p->rxb;
		if (i == 0) {
			xvl_net_hdr_decode(b, h);
			want = h->num_buffers ? h->num_buffers : 1;
		}
		if (got + len <= cap) {
			memcpy(out + got, b, len);
			got += len;
		}
		struct xvl_sg sg = {RXBUF + tok * p->rxb, p->rxb};
		xvl_vq_drv_add(&p->vq[0], &sg, 0, 1, tok);
		i++;
	}
	if (got < XVL_NET_HDR_SIZE)
		return -1;
	memmove(out, out + XVL_NET_HDR_SIZE, got - XVL_NET_HDR_SIZE);
	return (int)(got - XVL_NET_HDR_SIZE);
}

static void frame(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint32_t len, uint8_t fill)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x88;
	f[13] = 0xb5; /* local experimental ethertype */
	for (uint32_t i = 14; i < len; i++)
		f[i] = (uint8_t)(fill + i);
}

static const uint8_t BCAST[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t FOREIGN[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};

/* Expect exactly the frame f (len) on p within ms (and its header's num_buffers). */
static void expect_frame(struct port *p, const uint8_t *f, uint32_t len, unsigned nbuf,
			 const char *what)
{
	static uint8_t buf[70000];
	struct xvl_net_hdr h;
	int n = rx_one(p, &h, buf, sizeof(buf), WAIT_MS);
	if (n <= 0)
		result(false, what, "nothing received (%d)", n);
	else if ((uint32_t)n != len || memcmp(buf, f, len))
		result(false, what, "%d bytes received, %u expected, or other bytes", n, len);
	else if (nbuf && h.num_buffers != nbuf)
		result(false, what, "num_buffers %u, %u expected", h.num_buffers, nbuf);
	else
		result(true, what, "not so");
}

static void expect_none(struct port *p, int ms, const char *what)
{
	static uint8_t buf[70000];
	struct xvl_net_hdr h;
	int n = rx_one(p, &h, buf, sizeof(buf), ms);
	result(n == 0, what, "a frame of %d bytes arrived", n);
}

#define BASE_F (F(XVL_NET_F_MAC) | F(XVL_NET_F_MTU) | F(XVL_NET_F_STATUS) | F(XVL_NET_F_CTRL_VQ) | \
		F(XVL_NET_F_CTRL_RX) | F(XVL_NET_F_CTRL_MAC_ADDR))

/* ------------------------------------------------------------ checksum helpers */

static uint32_t sum16(uint32_t s, const uint8_t *p, uint32_t n)
{
	for (; n > 1; p += 2, n -= 2)
		s += (uint32_t)p[0] << 8 | p[1];
	if (n)
		s += (uint32_t)p[0] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* An IPv4/UDP frame of len bytes whose UDP checksum field holds the pseudo-header sum
 * (as a driver leaves it with NEEDS_CSUM). */
static void udp_frame(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint32_t len)
{
	frame(f, dst, src, len, 7);
	f[12] = 0x08;
	f[13] = 0x00;
	uint8_t *ip = f + 14, *udp = ip + 20;
	uint16_t ulen = (uint16_t)(len - 34);
	memset(ip, 0, 20);
	ip[0] = 0x45;
	ip[2] = (uint8_t)((len - 14) >> 8);
	ip[3] = (uint8_t)(len - 14);
	ip[8] = 64;
	ip[9] = 17;
	uint8_t sa[4] = {10, 0, 0, 1}, da[4] = {10, 0, 0, 2};
	memcpy(ip + 12, sa, 4);
	memcpy(ip + 16, da, 4);
	uint16_t ic = (uint16_t)~fold(sum16(0, ip, 20));
	ip[10] = (uint8_t)(ic >> 8);
	ip[11] = (uint8_t)ic;
	udp[0] = 0x30; udp[1] = 0x39; udp[2] = 0x30; udp[3] = 0x3a;
	udp[4] = (uint8_t)(ulen >> 8);
	udp[5] = (uint8_t)ulen;
	uint32_t ps = sum16(0, ip + 12, 8) + 17 + ulen;
	uint16_t partial = fold(ps);
	udp[6] = (uint8_t)(partial >> 8);
	udp[7] = (uint8_t)partial;
}

static bool udp_csum_valid(const uint8_t *f, uint32_t len)
{
	const uint8_t *ip = f + 14, *udp = ip + 20;
	uint16_t ulen = (uint16_t)(len - 34);
	uint32_t s = sum16(0, ip + 12, 8) + 17 + ulen;
	s = sum16(s, udp, ulen);
	return fold(s) == 0xffff;
}

/* ------------------------------------------------------------ cases */

static void case_forward(void)
{
	struct port a, b, c;
	uint8_t f[2048];
	struct xvl_net_hdr h0 = {0};
	port_open(&a, "a", 0, BASE_F | F(XVL_NET_F_CSUM), 2048, true);
	port_open(&b, "b", 1, BASE_F | F(XVL_NET_F_MRG_RXBUF), 256, true);
	port_open(&c, "c", 2, BASE_F | F(XVL_NET_F_GUEST_CSUM), 2048, true);

	frame(f, BCAST, a.mac, 60, 1);
	result(tx_one(&a, &h0, f, 60), "forward: a's broadcast tx chain is completed", "timeout");
	expect_frame(&b, f, 60, 1, "forward: broadcast from a reaches b");
	expect_frame(&c, f, 60, 1, "forward: broadcast from a reaches c");
	frame(f, a.mac, b.mac, 100, 2);
	tx_one(&b, &h0, f, 100);
	expect_frame(&a, f, 100, 1, "forward: unicast b -> a (learnt) reaches a");
	expect_none(&c, 200, "forward: unicast b -> a does not reach c");
	frame(f, b.mac, a.mac, 1000, 3);
	tx_one(&a, &h0, f, 1000);
	/* 12 + 1000 bytes in 256-byte buffers: 4 buffers */
	expect_frame(&b, f, 1000, 4, "forward: 1000 bytes into b's 256-byte mergeable buffers, num_buffers 4");
	expect_none(&c, 200, "forward: unicast a -> b does not reach c");

	/* NEEDS_CSUM from a: b (no GUEST_CSUM) gets the checksum filled in */
	udp_frame(f, BCAST, a.mac, 200);
	struct xvl_net_hdr hc = {.flags = XVL_NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = 6};
	tx_one(&a, &hc, f, 200);
	static uint8_t got[70000];
	struct xvl_net_hdr rh;
	int n = rx_one(&b, &rh, got, sizeof(got), WAIT_MS);
	result(n == 200 && udp_csum_valid(got, 200) && !(rh.flags & XVL_NET_HDR_F_NEEDS_CSUM),
	       "forward: NEEDS_CSUM frame arrives with a valid UDP checksum at a receiver "
	       "without GUEST_CSUM", "len %d, flags %u, valid %d", n, rh.flags,
	       n == 200 && udp_csum_valid(got, 200));
	n = rx_one(&c, &rh, got, sizeof(got), WAIT_MS);
	result(n == 200 && udp_csum_valid(got, 200), "forward: and at c (GUEST_CSUM) valid too",
	       "len %d", n);
	port_close(&a);
	port_close(&b);
	port_close(&c);
}

static void case_badtx(void)
{
	struct port a, b;
	static uint8_t f[70000];
	struct xvl_net_hdr h0 = {0};
	port_open(&a, "a", 0, BASE_F | F(XVL_NET_F_CSUM), 2048, true);
	port_open(&b, "b", 1, BASE_F | F(XVL_NET_F_GUEST_CSUM) | F(XVL_NET_F_GUEST_TSO4) |
		  F(XVL_NET_F_MRG_RXBUF), 2048, true);
	uint64_t e0 = stat_errors(&a);
	struct {
		const char *what;
		struct xvl_net_hdr h;
		uint32_t len;
	} bad[] = {
		{"oversized frame (1519 bytes, MTU 1500)", {0}, 1519},
		{"oversized frame (65000 bytes)", {0}, 65000},
		{"frame shorter than an Ethernet header", {0}, 10},
		{"GSO TCPV4 without HOST_TSO4", {.flags = 1, .gso_type = XVL_NET_HDR_GSO_TCPV4,
						 .gso_size = 1000, .hdr_len = 54, .csum_start = 34,
						 .csum_offset = 16}, 1400},
		{"csum_start beyond the frame", {.flags = 1, .csum_start = 200, .csum_offset = 6}, 100},
		{"csum field beyond the frame", {.flags = 1, .csum_start = 90, .csum_offset = 16}, 100},
		{"unknown header flags", {.flags = 0x80}, 100},
	};
	unsigned nbad = sizeof(bad) / sizeof(bad[0]);
	for (unsigned i = 0; i < nbad; i++) {
		frame(f, BCAST, a.mac, bad[i].len, (uint8_t)i);
		char what[160];
		snprintf(what, sizeof(what), "badtx: %s: tx chain completed", bad[i].what);
		result(tx_one(&a, &bad[i].h, f, bad[i].len), what, "timeout");
	}
	/* a chain of 8 bytes: no virtio_net_hdr at all */
	memset(a.mem.base + TXBUF, 0, 8);
	struct xvl_sg sg = {TXBUF, 8};
	xvl_vq_drv_add(&a.vq[1], &sg, 1, 0, 99);
	kick(&a, 1);
	usleep(100000);
	expect_none(&b, 300, "badtx: none of the bad frames reached b");
	uint64_t e1 = stat_errors(&a);
	result(e1 - e0 == nbad + 1, "badtx: every bad frame counted as a drop (GET_STATS errors)",
	       "%llu counted, %u sent", (unsigned long long)(e1 - e0), nbad + 1);
	drain_events(&a, 50);
	result(!a.broken, "badtx: the sender's device keeps running", "broken: %s", a.broken_msg);
	frame(f, BCAST, a.mac, 1514, 9);
	tx_one(&a, &h0, f, 1514);
	expect_frame(&b, f, 1514, 0, "badtx: a full-size good frame still goes through");
	port_close(&a);
	port_close(&b);
}

/* Send a control command (class, cmd, data) and return the ack byte, or -1. */
static int ctrl_cmd(struct port *p, uint8_t cls, uint8_t cmd, const void *data, uint32_t len)
{
	uint8_t *buf = p->mem.base + CTRLBUF;
	buf[0] = cls;
	buf[1] = cmd;
	memcpy(buf + 2, data, len);
	buf[0x2000] = 0x77;
	struct xvl_sg sg[2] = {{CTRLBUF, 2 + len}, {CTRLBUF + 0x2000, 1}};
	if (xvl_vq_drv_add(&p->vq[2], sg, 1, 1, 1) < 0)
		return -1;
	kick(p, 2);
	uint64_t deadline = xvl_os_now_ns() + WAIT_MS * 1000000ull;
	uint64_t tok;
	uint32_t l;
	while (xvl_os_now_ns() < deadline) {
		if (xvl_vq_drv_get_used(&p->vq[2], &tok, &l) == 1)
			return buf[0x2000];
		usleep(200);
	}
	return -1;
}

/* Commands out of range, each answered VIRTIO_NET_ERR (a prefix names the case). */
static void ctrl_bad_commands(struct port *b, const char *cs)
{
	uint8_t one = 1, two = 2;
	uint16_t pairs = 9;
	uint8_t table[16] = {0xe8, 0x03, 0, 0}; /* 1000 unicast entries, no bytes for them */
	static uint8_t huge[6000];
	struct {
		const char *what;
		uint8_t cls, cmd;
		const void *d;
		uint32_t len;
	} bad[] = {
		{"MQ VQ_PAIRS_SET 9 without MQ", XVL_NET_CTRL_MQ, 0, &pairs, 2},
		{"unknown class 99", 99, 0, &one, 1},
		{"RX command 7", XVL_NET_CTRL_RX, 7, &one, 1},
		{"RX PROMISC value 2", XVL_NET_CTRL_RX, 0, &two, 1},
		{"RX PROMISC without its byte", XVL_NET_CTRL_RX, 0, &one, 0},
		{"MAC TABLE_SET claiming 1000 entries", XVL_NET_CTRL_MAC, 0, table, 8},
		{"MAC ADDR_SET of 5 bytes", XVL_NET_CTRL_MAC, 1, FOREIGN, 5},
		{"MAC ADDR_SET of a multicast address", XVL_NET_CTRL_MAC, 1, BCAST, 6},
		{"a 6000-byte command", XVL_NET_CTRL_MAC, 0, huge, sizeof(huge)},
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char what[128];
		snprintf(what, sizeof(what), "%s: %s is answered VIRTIO_NET_ERR", cs, bad[i].what);
		int ack = ctrl_cmd(b, bad[i].cls, bad[i].cmd, bad[i].d, bad[i].len);
		result(ack == XVL_NET_ERR, what, "ack %d", ack);
	}
}

static void case_ctrl(void)
{
	struct port a, b, c;
	uint8_t f[256];
	struct xvl_net_hdr h0 = {0};
	port_open(&a, "a", 0, BASE_F, 2048, true);
	port_open(&b, "b", 1, BASE_F, 2048, true);
	port_open(&c, "c", 2, BASE_F, 2048, true);
	uint8_t zero = 0;
	ctrl_bad_commands(&b, "ctrl");
	/* b leaves promiscuous mode: a unicast frame for another address is filtered */
	result(ctrl_cmd(&b, XVL_NET_CTRL_RX, XVL_NET_CTRL_RX_PROMISC, &zero, 1) == XVL_NET_OK,
	       "ctrl: RX PROMISC off is answered OK", "not so");
	frame(f, FOREIGN, a.mac, 80, 4);
	tx_one(&a, &h0, f, 80);
	expect_frame(&c, f, 80, 0, "ctrl: a frame for an unknown address floods to c (promiscuous)");
	expect_none(&b, 200, "ctrl: and not to b (promiscuous off)");
	frame(f, b.mac, a.mac, 80, 5);
	tx_one(&a, &h0, f, 80);
	expect_frame(&b, f, 80, 0, "ctrl: b still receives frames for its own address");
	expect_frame(&c, f, 80, 0, "ctrl: (c too: b's address was never learnt, so it floods)");
	/* a MAC ADDR_SET moves b's address */
	result(ctrl_cmd(&b, XVL_NET_CTRL_MAC, XVL_NET_CTRL_MAC_ADDR_SET, FOREIGN, 6) == XVL_NET_OK,
	       "ctrl: MAC ADDR_SET is answered OK", "not so");
	frame(f, FOREIGN, a.mac, 80, 6);
	tx_one(&a, &h0, f, 80);
	expect_frame(&b, f, 80, 0, "ctrl: b receives frames for its new address");
	expect_frame(&c, f, 80, 0, "ctrl: (c too: promiscuous, flooded)");
	/* a control chain without a writable ack byte: b breaks, a and c go on */
	struct xvl_sg sg = {CTRLBUF, 3};
	xvl_vq_drv_add(&b.vq[2], &sg, 1, 0, 2);
	kick(&b, 2);
	drain_events(&b, 500);
	result(b.broken, "ctrl: a control chain without an ack byte breaks b (EVENT BROKEN)",
	       "no EVENT BROKEN");
	frame(f, c.mac, a.mac, 80, 7);
	tx_one(&a, &h0, f, 80);
	expect_frame(&c, f, 80, 0, "ctrl: a and c still exchange frames");
	port_close(&a);
	port_close(&b);
	port_close(&c);
}

/* Send n frames from a as fast as the tx ring allows (with ahead > 0: at most ahead
 * frames beyond what rx has received, so that rx never runs out of buffers); returns
 * how many were queued. */
static unsigned tx_burst(struct port *a, const uint8_t *f, uint32_t len, unsigned n,
			 struct port *rx, unsigned *received, unsigned ahead)
{
	struct xvl_net_hdr h0 = {0};
	unsigned sent = 0, slot = 0;
	uint64_t deadline = xvl_os_now_ns() + 20000ull * 1000000ull, last_rx = xvl_os_now_ns();
	static uint8_t buf[4096];
	/* until everything is sent and, with rx, nothing more came for 200 ms */
	while ((sent < n || (rx && *received < n && xvl_os_now_ns() - last_rx < 200000000ull)) &&
	       xvl_os_now_ns() < deadline) {
		tx_reap(a);
		unsigned added = 0;
		while (sent < n && (!ahead || sent - *received < ahead) &&
		       tx_add(a, &h0, f, len, slot++) == 0) {
			sent++;
			added++;
		}
		if (added)
			kick(a, 1);
		if (rx) {
			struct xvl_net_hdr h;
			unsigned got = 0;
			while (rx_one(rx, &h, buf, sizeof(buf), 0) > 0) {
				(*received)++;
				got++;
			}
			if (got) {
				kick(rx, 0);
				last_rx = xvl_os_now_ns();
			}
		}
		if (!added)
			usleep(50);
	}
	return sent;
}

static void case_norefill(unsigned n)
{
	struct port a, b, c;
	uint8_t f[64];
	port_open(&a, "a", 0, BASE_F, 2048, true);
	port_open(&b, "b", 1, BASE_F, 2048, false);
	port_open(&c, "c", 2, BASE_F | F(XVL_NET_F_MRG_RXBUF), 2048, true);
	uint64_t e0 = stat_errors(&b);
	frame(f, BCAST, a.mac, 64, 1);
	unsigned got = 0;
	/* paced to c's 256 rx buffers: c never lacks one, so every loss would be a frame
	 * held up or dropped because of b */
	unsigned sent = tx_burst(&a, f, 64, n, &c, &got, 128);
	result(sent == n && got == n, "norefill: every broadcast frame from a reaches c while b "
	       "posts no rx buffers", "%u sent, %u received of %u", sent, got, n);
	uint64_t e1 = stat_errors(&b);
	result(e1 - e0 == n, "norefill: b counts a drop for each", "%llu drops",
	       (unsigned long long)(e1 - e0));
	drain_events(&b, 20);
	result(!b.broken, "norefill: b's device is not broken for it", "%s", b.broken_msg);
	port_close(&a);
	port_close(&b);
	port_close(&c);
}

static void case_rate(unsigned n)
{
	struct port a, c;
	uint8_t f[64];
	port_open(&a, "a", 0, BASE_F, 2048, true);
	port_open(&c, "c", 2, BASE_F, 2048, true);
	frame(f, c.mac, a.mac, 64, 1);
	unsigned got = 0;
	uint64_t e0 = stat_errors(&c), t0 = xvl_os_now_ns();
	unsigned sent = tx_burst(&a, f, 64, n, &c, &got, 0);
	double s = (double)(xvl_os_now_ns() - t0) / 1e9 - (got < n ? 0.2 : 0);
	uint64_t drops = stat_errors(&c) - e0;
	printf("# RATE %.0f frames/s received (%u of %u 64-byte frames a -> c in %.3f s; "
	       "%llu dropped at c for want of rx buffers)\n", got / s, got, n, s,
	       (unsigned long long)drops);
	result(sent == n && got + drops == n, "rate: every frame sent arrived or was counted as "
	       "dropped at the receiver", "%u sent, %u received, %llu dropped", sent, got,
	       (unsigned long long)drops);
	port_close(&a);
	port_close(&c);
}

/* Look at p's rx used ring from pos up to the published idx: whole frames only?  Returns
 * false when a frame there has fewer of its buffers published than its num_buffers says. */
static bool used_whole(struct port *p, uint16_t pos, uint16_t *idx_out)
{
	uint16_t idx = xvl_rd16_acquire(&p->vq[0].used->idx);
	*idx_out = idx;
	while (pos != idx) {
		uint32_t id = xvl_rd32(&p->vq[0].used->ring[pos & (NUM - 1)].id);
		struct xvl_net_hdr h;
		if (id >= NUM)
			return false;
		xvl_net_hdr_decode(p->mem.base + RXBUF + id * p->rxb, &h);
		if (!h.num_buffers || (uint16_t)(idx - pos) < h.num_buffers)
			return false;
		pos = (uint16_t)(pos + h.num_buffers);
	}
	return true;
}

static void case_mrgwhole(unsigned n)
{
	enum { LEN = 1514, AHEAD = 8, NBUF = (XVL_NET_HDR_SIZE + LEN + 63) / 64 };
	struct port a, b;
	static uint8_t f[LEN], got[LEN + 64];
	struct xvl_net_hdr h0 = {0};
	port_open(&a, "a", 0, BASE_F, 2048, true);
	port_open(&b, "b", 1, BASE_F | F(XVL_NET_F_MRG_RXBUF), 64, true);
	frame(f, b.mac, a.mac, LEN, 5);
	unsigned sent = 0, received = 0, bad = 0, partial = 0, slot = 0;
	uint64_t looks = 0, deadline = xvl_os_now_ns() + 20000ull * 1000000ull;
	while (received < n && xvl_os_now_ns() < deadline) {
		tx_reap(&a);
		unsigned added = 0;
		while (sent < n && sent - received < AHEAD && tx_add(&a, &h0, f, LEN, slot++) == 0) {
			sent++;
			added++;
		}
		if (added)
			kick(&a, 1);
		/* spin on the used idx while the server writes the frames */
		uint16_t idx, start = b.vq[0].last_used;
		uint64_t until = xvl_os_now_ns() + 100000000ull;
		for (unsigned spin = 1;; spin++) {
			looks++;
			if (!used_whole(&b, start, &idx))
				partial++;
			if ((uint16_t)(idx - start) >= NBUF * (sent - received))
				break;
			if (spin % 1024 == 0 && xvl_os_now_ns() > until)
				break;
		}
		struct xvl_net_hdr h;
		int len;
		while ((len = rx_one(&b, &h, got, sizeof(got), 0)) > 0) {
			received++;
			if (len != LEN || h.num_buffers != NBUF || memcmp(got, f, LEN))
				bad++;
		}
	}
	printf("# used idx looked at %llu times over %u frames of %u buffers\n",
	       (unsigned long long)looks, received, NBUF);
	result(received == n && !bad, "mrgwhole: every 1514-byte frame arrives whole in b's 64-byte "
	       "mergeable buffers", "%u sent, %u received, %u wrong", sent, received, bad);
	result(!partial, "mrgwhole: b's used idx never exposes part of a merged frame",
	       "seen %u times in %llu looks", partial, (unsigned long long)looks);
	port_close(&a);
	port_close(&b);
}

/* Patch the descriptor of the rx chain most recently posted at slot tok. */
static void case_rxoutside(void)
{
	struct port a, b, c;
	uint8_t f[64];
	struct xvl_net_hdr h0 = {0};
	port_open(&a, "a", 0, BASE_F, 2048, true);
	port_open(&b, "b", 1, BASE_F, 2048, false);
	port_open(&c, "c", 2, BASE_F, 2048, true);
	struct xvl_sg sg = {RXBUF, 2048};
	must(xvl_vq_drv_add(&b.vq[0], &sg, 0, 1, 0), "post rx buffer");
	/* the descriptor now says: WIN_SIZE - 1024, 2048 bytes (past the window's end) */
	struct xvl_vring_desc *d = b.vq[0].desc;
	for (unsigned i = 0; i < NUM; i++)
		if (xvl_le64(d[i].addr) == RXBUF)
			d[i].addr = xvl_le64(WIN_SIZE - 1024);
	frame(f, BCAST, a.mac, 64, 1);
	tx_one(&a, &h0, f, 64);
	expect_frame(&c, f, 64, 0, "rxoutside: c receives the broadcast");
	drain_events(&b, 500);
	result(b.broken, "rxoutside: b's rx buffer outside its window breaks b (EVENT BROKEN)",
	       "no EVENT BROKEN");
	if (b.broken)
		printf("# b: %s\n", b.broken_msg);
	frame(f, BCAST, a.mac, 64, 2);
	tx_one(&a, &h0, f, 64);
	expect_frame(&c, f, 64, 0, "rxoutside: a and c go on");
	drain_events(&a, 20);
	result(!a.broken, "rxoutside: a is not broken", "%s", a.broken_msg);
	port_close(&a);
	port_close(&b);
	port_close(&c);
}

static void case_txwrite(void)
{
	struct port a, b, c;
	uint8_t f[64];
	struct xvl_net_hdr h0 = {0};
	port_open(&a, "a", 0, BASE_F, 2048, true);
	port_open(&b, "b", 1, BASE_F, 2048, true);
	port_open(&c, "c", 2, BASE_F, 2048, true);
	frame(f, BCAST, a.mac, 64, 1);
	xvl_net_hdr_encode(&h0, a.mem.base + TXBUF);
	memcpy(a.mem.base + TXBUF + 12, f, 64);
	struct xvl_sg sg[2] = {{TXBUF, 76}, {TXBUF + 4096, 64}};
	xvl_vq_drv_add(&a.vq[1], sg, 1, 1, 5);
	kick(&a, 1);
	drain_events(&a, 500);
	result(a.broken, "txwrite: a tx chain with a device-writable buffer breaks a", "no EVENT");
	expect_none(&b, 200, "txwrite: its frame is not forwarded");
	frame(f, c.mac, b.mac, 64, 3);
	tx_one(&b, &h0, f, 64);
	expect_frame(&c, f, 64, 0, "txwrite: b and c go on");
	port_close(&a);
	port_close(&b);
	port_close(&c);
}

static void case_spoof(void)
{
	struct port s, b;
	uint8_t f[64];
	struct xvl_net_hdr h0 = {0};
	port_open(&s, "s", 3, BASE_F, 2048, true);
	port_open(&b, "b", 1, BASE_F, 2048, true);
	uint64_t e0 = stat_errors(&s);
	frame(f, BCAST, FOREIGN, 64, 1);
	tx_one(&s, &h0, f, 64);
	expect_none(&b, 300, "spoof: a frame with a foreign source MAC is not forwarded");
	result(stat_errors(&s) - e0 == 1, "spoof: and counted as a drop", "not so");
	frame(f, BCAST, s.mac, 64, 2);
	tx_one(&s, &h0, f, 64);
	expect_frame(&b, f, 64, 0, "spoof: the port's own source MAC passes");
	result(ctrl_cmd(&s, XVL_NET_CTRL_MAC, XVL_NET_CTRL_MAC_ADDR_SET, FOREIGN, 6) == XVL_NET_ERR,
	       "spoof: MAC ADDR_SET to another address is refused", "not so");
	port_close(&s);
	port_close(&b);
}

/* Answer ARP for IP and ICMP echo requests to it on device dev for secs seconds: the
 * far end of a tap.  Prints how many requests were answered. */
static void case_tapecho(uint32_t dev, unsigned secs)
{
	struct port t;
	static uint8_t f[70000];
	const uint8_t ip[4] = {10, 99, 0, 2};
	unsigned arp = 0, echo = 0, other = 0;
	port_open(&t, "t", dev, BASE_F, 2048, true);
	printf("# tapecho: answering for 10.99.0.2 as %02x:%02x:%02x:%02x:%02x:%02x\n", t.mac[0],
	       t.mac[1], t.mac[2], t.mac[3], t.mac[4], t.mac[5]);
	printf("READY\n");
	fflush(stdout);
	uint64_t end = xvl_os_now_ns() + secs * 1000000000ull;
	struct xvl_net_hdr h, h0 = {0};
	while (xvl_os_now_ns() < end) {
		int n = rx_one(&t, &h, f, sizeof(f), 100);
		if (n < 0)
			h_die("rx ring broke");
		kick(&t, 0);
		if (n < 42) {
			other += n > 0;
			continue;
		}
		uint8_t *eth = f, *pl = f + 14;
		if (eth[12] == 0x08 && eth[13] == 0x06 && pl[7] == 1 && !memcmp(pl + 24, ip, 4)) {
			uint8_t rep[42];
			memcpy(rep, eth + 6, 6);
			memcpy(rep + 6, t.mac, 6);
			rep[12] = 0x08; rep[13] = 0x06;
			memcpy(rep + 14, pl, 6);
			rep[20] = 0; rep[21] = 2;
			memcpy(rep + 22, t.mac, 6);
			memcpy(rep + 28, ip, 4);
			memcpy(rep + 32, pl + 8, 10); /* sender MAC + IP become target */
			tx_one(&t, &h0, rep, 42);
			arp++;
		} else if (eth[12] == 0x08 && eth[13] == 0x00 && pl[9] == 1 &&
			   !memcmp(pl + 16, ip, 4) && pl[20] == 8) {
			uint32_t ihl = (pl[0] & 15u) * 4u, tot = (uint32_t)pl[2] << 8 | pl[3];
			if (tot + 14 > (uint32_t)n || ihl < 20 || tot < ihl + 8)
				continue;
			uint8_t mac[6], a4[4];
			memcpy(mac, eth, 6);
			memcpy(eth, eth + 6, 6);
			memcpy(eth + 6, mac, 6);
			memcpy(a4, pl + 12, 4);
			memcpy(pl + 12, pl + 16, 4);
			memcpy(pl + 16, a4, 4);
			uint8_t *icmp = pl + ihl;
			icmp[0] = 0;
			icmp[2] = icmp[3] = 0;
			uint16_t cs = (uint16_t)~fold(sum16(0, icmp, tot - ihl));
			icmp[2] = (uint8_t)(cs >> 8);
			icmp[3] = (uint8_t)cs;
			tx_one(&t, &h0, f, 14 + tot);
			echo++;
		} else {
			other++;
		}
	}
	printf("# tapecho: %u ARP requests and %u echo requests answered, %u other frames\n", arp,
	       echo, other);
	result(echo > 0, "tapecho: echo requests came through the tap and were answered",
	       "%u answered", echo);
	port_close(&t);
}

/* Device 0 is a tap device: post one rx chain with a device-readable buffer, so the
 * first frame from the kernel breaks the device; hold the link for secs seconds while
 * the script makes the kernel send (and watches the server's CPU time). */
static void case_tapbreak(unsigned secs)
{
	struct port t;
	port_open(&t, "t", 0, BASE_F, 2048, false);
	struct xvl_sg sg[2] = {{RXBUF, 64}, {RXBUF + 4096, 2048}};
	must(xvl_vq_drv_add(&t.vq[0], sg, 1, 1, 0), "post a readable rx chain");
	printf("READY\n");
	fflush(stdout);
	drain_events(&t, (int)secs * 1000);
	result(t.broken, "tapbreak: a readable rx chain breaks the tap device when a frame comes",
	       "no EVENT BROKEN");
	port_close(&t);
}

/*
 * Devices 0 and 1 are bridged to a vhost-user-net backend (backend=vhost-user,
 * one pair): their control queue is the server's (bridge_net.c).  Bad
 * commands get VIRTIO_NET_ERR, good ones OK (MAC ADDR_SET shows in the config
 * space), a chain without an ack byte breaks device 0 only.
 */
static void case_bctrl(void)
{
	struct port a, b;
	uint8_t zero = 0;
	port_open(&a, "a", 0, BASE_F, 2048, true);
	port_open(&b, "b", 1, BASE_F, 2048, true);
	ctrl_bad_commands(&a, "bctrl");
	result(ctrl_cmd(&a, XVL_NET_CTRL_RX, XVL_NET_CTRL_RX_PROMISC, &zero, 1) == XVL_NET_OK,
	       "bctrl: RX PROMISC off is answered OK", "not so");
	result(ctrl_cmd(&a, XVL_NET_CTRL_MAC, XVL_NET_CTRL_MAC_ADDR_SET, FOREIGN, 6) == XVL_NET_OK,
	       "bctrl: MAC ADDR_SET is answered OK", "not so");
	struct xvl_msg req = {.type = XVL_MSG_GET_CONFIG}, rep;
	req.u.cfg = (struct xvl_m_config){.dev = a.dev, .off = 0, .len = XVL_NET_CFG_SIZE};
	must(call(&a, &req, NULL, 0, &rep), "GET_CONFIG");
	result(!memcmp(rep.u.cfg.data + XVL_NET_CFG_MAC, FOREIGN, 6),
	       "bctrl: the config space shows the new MAC", "it does not");
	/* 600 commands at once, more than a ring round: every one answered */
	unsigned answered = 0;
	for (unsigned i = 0; i < 600; i++)
		answered += ctrl_cmd(&a, XVL_NET_CTRL_RX, XVL_NET_CTRL_RX_ALLMULTI, &zero, 1) ==
			    XVL_NET_OK;
	result(answered == 600, "bctrl: 600 commands in a row are all answered OK", "%u of 600",
	       answered);
	struct xvl_sg sg = {CTRLBUF, 3};
	xvl_vq_drv_add(&a.vq[2], &sg, 1, 0, 2);
	kick(&a, 2);
	drain_events(&a, 500);
	result(a.broken, "bctrl: a control chain without an ack byte breaks that device (EVENT BROKEN)",
	       "no EVENT BROKEN");
	result(ctrl_cmd(&b, XVL_NET_CTRL_RX, XVL_NET_CTRL_RX_PROMISC, &zero, 1) == XVL_NET_OK,
	       "bctrl: the other bridged device still answers", "not so");
	port_close(&a);
	port_close(&b);
}

int main(int argc, char **argv)
{
	h_prog = "net_attack";
	if (argc < 3)
		h_die("usage: net_attack SOCKET CASE [N]");
	sock_path = argv[1];
	const char *c = argv[2];
	unsigned n = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 2000;
	if (!strcmp(c, "forward"))
		case_forward();
	else if (!strcmp(c, "badtx"))
		case_badtx();
	else if (!strcmp(c, "ctrl"))
		case_ctrl();
	else if (!strcmp(c, "bctrl"))
		case_bctrl();
	else if (!strcmp(c, "norefill"))
		case_norefill(n);
	else if (!strcmp(c, "rate"))
		case_rate(n);
	else if (!strcmp(c, "mrgwhole"))
		case_mrgwhole(n);
	else if (!strcmp(c, "rxoutside"))
		case_rxoutside();
	else if (!strcmp(c, "txwrite"))
		case_txwrite();
	else if (!strcmp(c, "tapbreak"))
		case_tapbreak(n);
	else if (!strcmp(c, "tapecho"))
		case_tapecho(0, n);
	else if (!strcmp(c, "spoof"))
		case_spoof();
	else
		h_die("unknown case %s", c);
	return failures ? 1 : 0;
}
