/* SPDX-License-Identifier: MIT */
/*
 * A hostile DRIVER peer for a live `xvl server`.
 *
 *   hostile_driver SOCKET DEVICE CASE [SECONDS]
 *
 * Connects like a real client (own memfd window, HELLO, ATTACH, features,
 * one queue of 256 entries with kick/call eventfds, DRIVER_OK), proves the
 * device works with one good request, then breaks the ring rules on the
 * live queue as CASE says.  For a ring violation it then checks that:
 *   - the server sends EVENT BROKEN for this device, with a negative reason;
 *   - GET_STATUS shows NEEDS_RESET;
 *   - after RESET the device can be set up again and a written pattern
 *     reads back intact.
 * Exit status 0 when the server behaved, 1 with a FAIL line when not.
 *
 * Cases (see usage()): ring violations, two set-up refusals (ring_oob,
 * window_shrink) and `silent` (submits, never talks again, sleeps SECONDS;
 * the test kills it to make it vanish mid-request).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>

#include "hostile_common.h"
#include "virtio_blk.h"
#include "virtq.h"
#include "window.h"
#include "xvl_atomic.h"

#define WIN_SIZE (1u << 20)
#define NUM      256u
#define DESC     0x1000u
#define AVAIL    0x2000u
#define USED     0x3000u
#define IND      0x4000u  /* indirect tables, up to 0x8000 */
#define REQ      0x8000u  /* request header (16 bytes) */
#define STATUS   0x8040u  /* status byte */
#define DATA     0x10000u /* data buffers */
#define BAD_HEAD 10u      /* first descriptor used by the raw (bad) chains */
#define WAIT_MS  5000

static bool unsealable; /* case window_unsealable */

struct hd {
	int sock;
	uint32_t seq;
	uint32_t dev;
	uint64_t offered;
	int memfd;
	struct xvl_mem mem;
	struct xvl_vq_drv vq;
	void *priv;
	int kick, call;
	/* EVENT BROKEN seen for our device */
	bool broken;
	int32_t broken_reason;
	char broken_msg[64];
};

static void note_event(struct hd *h, const struct xvl_msg *m)
{
	if (m->u.event.code == XVL_EVENT_BROKEN && m->u.event.dev == h->dev && !h->broken) {
		h->broken = true;
		h->broken_reason = m->u.event.reason;
		snprintf(h->broken_msg, sizeof(h->broken_msg), "%s", m->u.event.msg);
	}
}

/* Request/reply; events on the way are noted.  Returns the reply status. */
static int call(struct hd *h, struct xvl_msg *req, const int *fds, unsigned nfds,
		struct xvl_msg *rep)
{
	req->seq = ++h->seq;
	int rc = h_send(h->sock, req, fds, nfds);
	if (rc < 0)
		h_die("%s: send: %s", xvl_msg_name(req->type), strerror(-rc));
	for (;;) {
		rc = h_recv(h->sock, rep, WAIT_MS, NULL, NULL);
		if (rc == 0)
			h_die("%s: no reply within %d ms (server hung?)", xvl_msg_name(req->type), WAIT_MS);
		if (rc < 0)
			h_die("%s: link: %s (server died?)", xvl_msg_name(req->type), strerror(-rc));
		if (rep->type == XVL_MSG_EVENT && !xvl_msg_is_reply(rep)) {
			note_event(h, rep);
			continue;
		}
		if (!xvl_msg_is_reply(rep) || rep->seq != req->seq || rep->type != req->type)
			h_die("%s: unexpected %s from the server", xvl_msg_name(req->type),
			      xvl_msg_name(rep->type));
		return rep->status;
	}
}

static int set_status(struct hd *h, uint32_t st, uint32_t *now)
{
	struct xvl_msg req = {.type = XVL_MSG_SET_STATUS}, rep;
	req.u.st.dev = h->dev;
	req.u.st.status = st;
	int rc = call(h, &req, NULL, 0, &rep);
	if (now)
		*now = rep.u.st.status;
	return rc;
}

static uint32_t get_status(struct hd *h)
{
	struct xvl_msg req = {.type = XVL_MSG_GET_STATUS}, rep;
	req.u.dev.dev = h->dev;
	int rc = call(h, &req, NULL, 0, &rep);
	if (rc < 0)
		h_die("GET_STATUS refused: %s", strerror(-rc));
	return rep.u.st.status;
}

static void must(int rc, const char *what)
{
	if (rc < 0)
		h_die("%s refused: %s", what, strerror(-rc));
}

static void connect_and_attach(struct hd *h, const char *path)
{
	struct xvl_errbuf eb;
	struct xvl_msg req = {.type = XVL_MSG_HELLO}, rep;

	h->sock = xvl_os_connect(path, &eb);
	if (h->sock < 0)
		h_die("connect %s: %s", path, eb.msg);
	req.u.hello.major = XVL_PROTO_MAJOR;
	snprintf(req.u.hello.name, sizeof(req.u.hello.name), "hostile-driver");
	must(call(h, &req, NULL, 0, &rep), "HELLO");
	if (h->dev >= rep.u.hello.n_devices)
		h_die("server has %u devices, no %u", rep.u.hello.n_devices, h->dev);

	req = (struct xvl_msg){.type = XVL_MSG_DEV_INFO};
	req.u.dev.dev = h->dev;
	must(call(h, &req, NULL, 0, &rep), "DEV_INFO");
	h->offered = rep.u.info.features;

	/* Our own window: an unsealed memfd, so the peer could try to shrink it
	 * (or, case window_unsealable, one that can never be sealed). */
	h->memfd = memfd_create("hostile-window", MFD_CLOEXEC | (unsealable ? 0 : MFD_ALLOW_SEALING));
	if (h->memfd < 0 || ftruncate(h->memfd, WIN_SIZE) < 0)
		h_die("memfd: %s", strerror(errno));
	void *p = mmap(NULL, WIN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, h->memfd, 0);
	if (p == MAP_FAILED)
		h_die("mmap: %s", strerror(errno));
	h->mem.base = p;
	h->mem.size = WIN_SIZE;
	must(xvl_win_format(&h->mem), "window format");

	req = (struct xvl_msg){.type = XVL_MSG_SET_WINDOW};
	req.u.window.size = WIN_SIZE;
	int rc = call(h, &req, &h->memfd, 1, &rep);
	if (unsealable) {
		if (rc >= 0)
			h_die("a window that cannot be sealed against shrinking was accepted");
		printf("unsealable window refused: %s\n", strerror(-rc));
		exit(0);
	}
	must(rc, "SET_WINDOW");

	req = (struct xvl_msg){.type = XVL_MSG_ATTACH};
	req.u.dev.dev = h->dev;
	must(call(h, &req, NULL, 0, &rep), "ATTACH");
	h->priv = aligned_alloc(64, (xvl_vq_drv_priv_size(NUM) + 63) & ~(size_t)63);
	if (!h->priv)
		h_die("out of memory");
}

static int set_queue(struct hd *h, uint64_t desc, uint64_t avail, uint64_t used)
{
	struct xvl_msg req = {.type = XVL_MSG_SET_QUEUE}, rep;
	req.u.queue = (struct xvl_m_queue){.dev = h->dev, .queue = 0, .num = NUM,
					   .flags = XVL_QUEUE_F_ENABLE, .desc = desc,
					   .avail = avail, .used = used};
	int fds[2] = {h->kick, h->call};
	return call(h, &req, fds, 2, &rep);
}

/* Full device set-up from status 0: features, fresh rings, DRIVER_OK. */
static void setup_device(struct hd *h)
{
	const uint32_t base = XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER;
	uint32_t now = 0;
	struct xvl_msg req = {.type = XVL_MSG_SET_FEATURES}, rep;

	must(set_status(h, base, NULL), "SET_STATUS ACK|DRIVER");
	req.u.feat.dev = h->dev;
	req.u.feat.features =
		h->offered & ((1ull << XVL_F_VERSION_1) | (1ull << XVL_F_INDIRECT_DESC));
	must(call(h, &req, NULL, 0, &rep), "SET_FEATURES");
	must(set_status(h, base | XVL_STATUS_FEATURES_OK, &now), "SET_STATUS FEATURES_OK");
	if (!(now & XVL_STATUS_FEATURES_OK))
		h_die("FEATURES_OK not accepted (status 0x%x)", now);

	struct xvl_vq_layout l = {.num = NUM, .desc = DESC, .avail = AVAIL, .used = USED};
	must(xvl_vq_drv_init(&h->vq, &h->mem, &l, false, 0, 0, h->priv), "driver ring init");
	if (h->kick >= 0)
		close(h->kick);
	if (h->call >= 0)
		close(h->call);
	h->kick = xvl_os_eventfd();
	h->call = xvl_os_eventfd();
	if (h->kick < 0 || h->call < 0)
		h_die("eventfd: %s", strerror(errno));
	must(set_queue(h, DESC, AVAIL, USED), "SET_QUEUE");
	must(set_status(h, base | XVL_STATUS_FEATURES_OK | XVL_STATUS_DRIVER_OK, &now),
	     "SET_STATUS DRIVER_OK");
	if (!(now & XVL_STATUS_DRIVER_OK) || (now & XVL_STATUS_NEEDS_RESET))
		h_die("DRIVER_OK not accepted (status 0x%x)", now);
}

static void kick(struct hd *h)
{
	xvl_os_eventfd_signal(h->kick);
}

/* One good request through the real driver side; returns after its completion. */
static void good_io(struct hd *h, bool write, uint64_t sector, uint8_t seed)
{
	uint8_t *hdr = h->mem.base + REQ, *st = h->mem.base + STATUS, *data = h->mem.base + DATA;
	struct xvl_blk_outhdr bh = {.type = xvl_le32(write ? XVL_BLK_T_OUT : XVL_BLK_T_IN),
				    .sector = xvl_le64(sector)};
	struct xvl_sg sg[3] = {{REQ, 16}, {DATA, 4096}, {STATUS, 1}};
	uint64_t token;
	uint32_t len;

	memcpy(hdr, &bh, sizeof(bh));
	*st = 0xff;
	if (write)
		for (unsigned i = 0; i < 4096; i++)
			data[i] = (uint8_t)(seed + i * 7);
	else
		memset(data, 0, 4096);
	must(xvl_vq_drv_add(&h->vq, sg, write ? 2 : 1, write ? 1 : 2, 42), "good request add");
	kick(h);
	uint64_t deadline = xvl_os_now_ns() + WAIT_MS * 1000000ull;
	for (;;) {
		int rc = xvl_vq_drv_get_used(&h->vq, &token, &len);
		if (rc < 0)
			h_die("good request: the server broke the used ring");
		if (rc == 1)
			break;
		if (xvl_os_now_ns() > deadline)
			h_die("good request: no completion within %d ms", WAIT_MS);
		struct pollfd p = {.fd = h->call, .events = POLLIN};
		poll(&p, 1, 50);
		xvl_os_eventfd_drain(h->call);
	}
	if (token != 42 || *st != XVL_BLK_S_OK)
		h_die("good request: token %llu status %u", (unsigned long long)token, *st);
	if (!write)
		for (unsigned i = 0; i < 4096; i++)
			if (data[i] != (uint8_t)(seed + i * 7))
				h_die("good request: byte %u reads back 0x%02x", i, data[i]);
}

/* ------------------------------------------------------------ raw ring writes */

static struct xvl_vring_desc *D(struct hd *h, unsigned i) { return &h->vq.desc[i]; }

static void wdesc(struct xvl_vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
		  uint16_t next)
{
	xvl_wr64(&d->addr, addr);
	xvl_wr32(&d->len, len);
	xvl_wr16(&d->flags, flags);
	xvl_wr16(&d->next, next);
}

/* Put head in the next avail slot; publish when asked. */
static void put_avail(struct hd *h, uint16_t head, bool publish)
{
	xvl_wr16(&h->vq.avail->ring[h->vq.avail_idx & (NUM - 1)], head);
	h->vq.avail_idx++;
	if (publish)
		xvl_wr16_release(&h->vq.avail->idx, h->vq.avail_idx);
}

static void read_hdr(struct hd *h)
{
	struct xvl_blk_outhdr bh = {.type = xvl_le32(XVL_BLK_T_IN), .sector = 0};
	memcpy(h->mem.base + REQ, &bh, sizeof(bh));
}

/* A valid 3-descriptor read chain at first: hdr -> 4 KiB data -> status. */
static void valid_chain(struct hd *h, unsigned first)
{
	read_hdr(h);
	wdesc(D(h, first), REQ, 16, XVL_VRING_DESC_F_NEXT, (uint16_t)(first + 1));
	wdesc(D(h, first + 1), DATA, 4096, XVL_VRING_DESC_F_NEXT | XVL_VRING_DESC_F_WRITE,
	      (uint16_t)(first + 2));
	wdesc(D(h, first + 2), STATUS, 1, XVL_VRING_DESC_F_WRITE, 0);
}

#define F_N XVL_VRING_DESC_F_NEXT
#define F_W XVL_VRING_DESC_F_WRITE
#define F_I XVL_VRING_DESC_F_INDIRECT

static void indirect_head(struct hd *h, uint64_t table, uint32_t len)
{
	read_hdr(h);
	wdesc(D(h, BAD_HEAD), table, len, F_I, 0);
	put_avail(h, BAD_HEAD, true);
}

/* Each case leaves a rule-breaking chain on the live queue. */
static void case_head_oob(struct hd *h) { valid_chain(h, BAD_HEAD); put_avail(h, NUM + 3, true); }
static void case_head_ffff(struct hd *h) { put_avail(h, 0xffff, true); }

static void case_next_oob(struct hd *h)
{
	read_hdr(h);
	wdesc(D(h, BAD_HEAD), REQ, 16, F_N, 300);
	put_avail(h, BAD_HEAD, true);
}

static void case_loop(struct hd *h)
{
	read_hdr(h);
	wdesc(D(h, BAD_HEAD), REQ, 16, F_N, BAD_HEAD + 1);
	wdesc(D(h, BAD_HEAD + 1), DATA, 512, F_N, BAD_HEAD);
	put_avail(h, BAD_HEAD, true);
}

static void case_self_loop(struct hd *h)
{
	read_hdr(h);
	wdesc(D(h, BAD_HEAD), REQ, 16, F_N, BAD_HEAD);
	put_avail(h, BAD_HEAD, true);
}

static void case_buf_oob(struct hd *h)
{
	valid_chain(h, BAD_HEAD);
	wdesc(D(h, BAD_HEAD + 1), WIN_SIZE - 256, 4096, F_N | F_W, BAD_HEAD + 2);
	put_avail(h, BAD_HEAD, true);
}

static void case_buf_far(struct hd *h)
{
	valid_chain(h, BAD_HEAD);
	wdesc(D(h, BAD_HEAD + 1), 1ull << 40, 4096, F_N | F_W, BAD_HEAD + 2);
	put_avail(h, BAD_HEAD, true);
}

static void case_addr_overflow(struct hd *h)
{
	valid_chain(h, BAD_HEAD);
	wdesc(D(h, BAD_HEAD + 1), UINT64_MAX - 0xfff, 0x2000, F_N | F_W, BAD_HEAD + 2);
	put_avail(h, BAD_HEAD, true);
}

static void case_read_after_write(struct hd *h)
{
	valid_chain(h, BAD_HEAD);
	wdesc(D(h, BAD_HEAD + 2), STATUS, 1, F_W | F_N, BAD_HEAD + 3);
	wdesc(D(h, BAD_HEAD + 3), DATA + 8192, 512, 0, 0); /* readable after writable */
	put_avail(h, BAD_HEAD, true);
}

static void case_nested_indirect(struct hd *h)
{
	struct xvl_vring_desc *t = (void *)(h->mem.base + IND);
	wdesc(&t[0], IND + 512, 48, F_I, 0);
	indirect_head(h, IND, 32);
}

static void case_indirect_bad_size(struct hd *h)
{
	struct xvl_vring_desc *t = (void *)(h->mem.base + IND);
	wdesc(&t[0], REQ, 16, F_N, 1);
	wdesc(&t[1], STATUS, 1, F_W, 0);
	indirect_head(h, IND, 24); /* not a whole number of descriptors */
}

static void case_indirect_zero(struct hd *h) { indirect_head(h, IND, 0); }
static void case_indirect_oob(struct hd *h) { indirect_head(h, WIN_SIZE - 16, 64); }

static void case_indirect_next_oob(struct hd *h)
{
	struct xvl_vring_desc *t = (void *)(h->mem.base + IND);
	wdesc(&t[0], REQ, 16, F_N, 5); /* table has 2 entries */
	wdesc(&t[1], STATUS, 1, F_W, 0);
	indirect_head(h, IND, 32);
}

static void case_indirect_loop(struct hd *h)
{
	struct xvl_vring_desc *t = (void *)(h->mem.base + IND);
	wdesc(&t[0], REQ, 16, F_N, 1);
	wdesc(&t[1], DATA, 512, F_N, 0);
	indirect_head(h, IND, 32);
}

static void case_avail_jump(struct hd *h)
{
	valid_chain(h, BAD_HEAD);
	for (unsigned i = 0; i < NUM + 1; i++)
		put_avail(h, BAD_HEAD, false);
	xvl_wr16_release(&h->vq.avail->idx, h->vq.avail_idx); /* NUM + 1 new entries */
}

static void case_chain_too_long(struct hd *h)
{
	const unsigned n = 200; /* the server takes SRV_MAX_SEGS + 2 = 132 */
	read_hdr(h);
	wdesc(D(h, 0), REQ, 16, F_N, 1);
	for (unsigned i = 1; i + 1 < n; i++)
		wdesc(D(h, i), DATA + 512 * i, 512, F_N | F_W, (uint16_t)(i + 1));
	wdesc(D(h, n - 1), STATUS, 1, F_W, 0);
	put_avail(h, 0, true);
}

static void case_indirect_too_long(struct hd *h)
{
	const unsigned n = 200;
	struct xvl_vring_desc *t = (void *)(h->mem.base + IND);
	wdesc(&t[0], REQ, 16, F_N, 1);
	for (unsigned i = 1; i + 1 < n; i++)
		wdesc(&t[i], DATA + 512 * i, 512, F_N | F_W, (uint16_t)(i + 1));
	wdesc(&t[n - 1], STATUS, 1, F_W, 0);
	indirect_head(h, IND, 16 * n);
}

static void case_head_reuse(struct hd *h)
{
	/* The file backend keeps the first in flight (io_uring) while the second is popped. */
	valid_chain(h, BAD_HEAD);
	put_avail(h, BAD_HEAD, false);
	put_avail(h, BAD_HEAD, true);
}

static void case_no_status(struct hd *h)
{
	read_hdr(h);
	wdesc(D(h, BAD_HEAD), REQ, 16, 0, 0); /* nothing writable: no status byte */
	put_avail(h, BAD_HEAD, true);
}

static void case_status_zero_len(struct hd *h)
{
	/* The "status byte" is a zero-length buffer at window offset 0: writing
	 * "the last byte" of it would land one byte before the window. */
	read_hdr(h);
	wdesc(D(h, BAD_HEAD), REQ, 16, F_N, BAD_HEAD + 1);
	wdesc(D(h, BAD_HEAD + 1), 0, 0, F_W, 0);
	put_avail(h, BAD_HEAD, true);
}

struct ring_case {
	const char *name;
	void (*fn)(struct hd *h);
	const char *what;
};

static const struct ring_case ring_cases[] = {
	{"head_oob", case_head_oob, "avail ring names head num+3"},
	{"head_ffff", case_head_ffff, "avail ring names head 0xffff"},
	{"next_oob", case_next_oob, "descriptor next = 300 in a 256-entry table"},
	{"loop", case_loop, "descriptor loop a->b->a"},
	{"self_loop", case_self_loop, "descriptor loop a->a"},
	{"buf_oob", case_buf_oob, "buffer runs past the window end"},
	{"buf_far", case_buf_far, "buffer at 1 TiB, far outside the window"},
	{"addr_overflow", case_addr_overflow, "buffer addr+len overflows 64 bits"},
	{"read_after_write", case_read_after_write, "readable descriptor after a writable one"},
	{"nested_indirect", case_nested_indirect, "indirect table inside an indirect table"},
	{"indirect_bad_size", case_indirect_bad_size, "indirect table of 24 bytes"},
	{"indirect_zero", case_indirect_zero, "indirect table of 0 bytes"},
	{"indirect_oob", case_indirect_oob, "indirect table past the window end"},
	{"indirect_next_oob", case_indirect_next_oob, "next beyond the indirect table"},
	{"indirect_loop", case_indirect_loop, "loop inside an indirect table"},
	{"avail_jump", case_avail_jump, "avail idx jumps by num+1"},
	{"chain_too_long", case_chain_too_long, "direct chain of 200 descriptors"},
	{"indirect_too_long", case_indirect_too_long, "indirect chain of 200 descriptors"},
	{"head_reuse", case_head_reuse, "head made available again while in flight"},
	{"no_status", case_no_status, "chain with no writable status byte"},
	{"status_zero_len", case_status_zero_len, "status buffer of 0 bytes at offset 0"},
};

/* After the violation: EVENT BROKEN, NEEDS_RESET, then RESET and a working device. */
static void expect_broken_then_recover(struct hd *h, const char *what)
{
	uint64_t deadline = xvl_os_now_ns() + WAIT_MS * 1000000ull;
	while (!h->broken) {
		struct xvl_msg m;
		uint64_t now = xvl_os_now_ns();
		if (now >= deadline)
			h_die("%s: no EVENT BROKEN within %d ms", what, WAIT_MS);
		int rc = h_recv(h->sock, &m, (int)((deadline - now) / 1000000ull) + 1, NULL, NULL);
		if (rc < 0)
			h_die("%s: link lost: %s (server died?)", what, strerror(-rc));
		if (rc == 1 && m.type == XVL_MSG_EVENT && !xvl_msg_is_reply(&m))
			note_event(h, &m);
		else if (rc == 1)
			h_die("%s: unexpected %s from the server", what, xvl_msg_name(m.type));
	}
	if (h->broken_reason >= 0)
		h_die("%s: EVENT BROKEN with reason %d (want a negative errno)", what,
		      h->broken_reason);
	uint32_t st = get_status(h);
	if (!(st & XVL_STATUS_NEEDS_RESET))
		h_die("%s: GET_STATUS 0x%x has no NEEDS_RESET", what, st);
	printf("broken: reason %d (%s), \"%s\", status 0x%x\n", h->broken_reason,
	       strerror(-h->broken_reason), h->broken_msg, st);

	struct xvl_msg req = {.type = XVL_MSG_RESET}, rep;
	req.u.dev.dev = h->dev;
	must(call(h, &req, NULL, 0, &rep), "RESET");
	st = get_status(h);
	if (st != 0)
		h_die("status 0x%x after RESET", st);
	h->broken = false;
	setup_device(h);
	good_io(h, true, 8, 0x5a);
	good_io(h, false, 8, 0x5a);
	if (h->broken)
		h_die("device broke again after reset");
	printf("recovered: reset, set up again, 4 KiB written and read back intact\n");
}

/* Rings outside or across the window are refused at SET_QUEUE; the device stays usable. */
static void case_ring_oob(struct hd *h)
{
	const uint32_t base = XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER | XVL_STATUS_FEATURES_OK;
	struct {
		uint64_t d, a, u;
		const char *what;
	} bad[] = {
		{DESC, AVAIL, WIN_SIZE - 8, "used ring past the window end"},
		{WIN_SIZE, AVAIL, USED, "descriptor table at the window end"},
		{UINT64_MAX - 15, AVAIL, USED, "descriptor table at 2^64-16"},
		{DESC, 1ull << 40, USED, "avail ring at 1 TiB"},
		{DESC + 8, AVAIL, USED, "misaligned descriptor table"},
		{DESC, DESC + 16, USED, "avail ring overlapping the descriptors"},
	};
	must(set_status(h, 0, NULL), "reset");
	setup_device(h); /* also checks a valid layout is taken */
	must(set_status(h, 0, NULL), "reset");
	must(set_status(h, XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER, NULL), "ACK");
	struct xvl_msg req = {.type = XVL_MSG_SET_FEATURES}, rep;
	req.u.feat.dev = h->dev;
	req.u.feat.features = 1ull << XVL_F_VERSION_1;
	must(call(h, &req, NULL, 0, &rep), "SET_FEATURES");
	must(set_status(h, base, NULL), "FEATURES_OK");
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = set_queue(h, bad[i].d, bad[i].a, bad[i].u);
		if (rc >= 0)
			h_die("SET_QUEUE with %s was accepted", bad[i].what);
		printf("refused: %s: %s\n", bad[i].what, strerror(-rc));
	}
	must(set_status(h, 0, NULL), "reset");
	setup_device(h);
	good_io(h, true, 16, 0x33);
	good_io(h, false, 16, 0x33);
	printf("device still works after %zu refused layouts\n", sizeof(bad) / sizeof(bad[0]));
}

/* The window must not be shrinkable under the server (that would SIGBUS it). */
static void case_window_shrink(struct hd *h)
{
	if (ftruncate(h->memfd, 0) == 0) {
		/* Show what it does: the next ring access of the server faults. */
		h_log("the window could be shrunk after SET_WINDOW; kicking a request");
		valid_chain(h, BAD_HEAD);
		put_avail(h, BAD_HEAD, true);
		kick(h);
		sleep(1);
		h_die("the client could shrink the window under the server's mapping");
	}
	printf("shrink refused: %s\n", strerror(errno));
	good_io(h, true, 24, 0x11);
	good_io(h, false, 24, 0x11);
}

static int finish(struct hd *h)
{
	close(h->sock);
	close(h->kick);
	close(h->call);
	close(h->memfd);
	munmap(h->mem.base, WIN_SIZE);
	free(h->priv);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: hostile_driver SOCKET DEVICE CASE [SECONDS]\ncases:");
	for (size_t i = 0; i < sizeof(ring_cases) / sizeof(ring_cases[0]); i++)
		fprintf(stderr, " %s", ring_cases[i].name);
	fprintf(stderr, " ring_oob window_shrink window_unsealable silent list\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct hd h = {.kick = -1, .call = -1};
	h_prog = "hostile_driver";
	if (argc == 2 && !strcmp(argv[1], "list")) {
		for (size_t i = 0; i < sizeof(ring_cases) / sizeof(ring_cases[0]); i++)
			printf("%s\t%s\n", ring_cases[i].name, ring_cases[i].what);
		return 0;
	}
	if (argc < 4)
		usage();
	const char *cs = argv[3];
	h.dev = (uint32_t)strtoul(argv[2], NULL, 0);
	unsealable = !strcmp(cs, "window_unsealable");
	connect_and_attach(&h, argv[1]);
	setup_device(&h);
	good_io(&h, true, 0, 0x77);
	good_io(&h, false, 0, 0x77);

	for (size_t i = 0; i < sizeof(ring_cases) / sizeof(ring_cases[0]); i++) {
		if (strcmp(cs, ring_cases[i].name))
			continue;
		ring_cases[i].fn(&h);
		kick(&h);
		expect_broken_then_recover(&h, ring_cases[i].what);
		return finish(&h);
	}
	if (!strcmp(cs, "ring_oob")) {
		case_ring_oob(&h);
	} else if (!strcmp(cs, "window_shrink")) {
		case_window_shrink(&h);
	} else if (!strcmp(cs, "silent")) {
		/* Submit, kick, then never send anything again nor consume the completion. */
		valid_chain(&h, BAD_HEAD);
		put_avail(&h, BAD_HEAD, true);
		kick(&h);
		printf("silent: request submitted, now silent\n");
		fflush(stdout);
		unsigned secs = argc > 4 ? (unsigned)atoi(argv[4]) : 5;
		struct xvl_msg m;
		int rc = h_recv(h.sock, &m, (int)secs * 1000, NULL, NULL);
		if (rc < 0)
			h_die("silent: the server dropped the link: %s", strerror(-rc));
		if (rc == 1)
			h_die("silent: the server sent %s to a silent (but legal) peer",
			      xvl_msg_name(m.type));
		printf("silent: %u s, no event, link still up\n", secs);
	} else {
		usage();
	}
	return finish(&h);
}
