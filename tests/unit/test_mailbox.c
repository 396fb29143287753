/* SPDX-License-Identifier: MIT */
/* The mailbox link: handshake, both directions, full rings, resync after restarts, hostile peers. */
#include <errno.h>
#include <string.h>

#include "mailbox.h"
#include "tap.h"
#include "xvl_atomic.h"

#define WIN_SIZE (256u * 1024)
#define MBOX_OFF 0x2000u

static _Alignas(4096) uint8_t window[WIN_SIZE];

static struct xvl_mem win(void) { return (struct xvl_mem){.base = window, .size = WIN_SIZE}; }

static uint32_t *mword(uint32_t off) { return (uint32_t *)(void *)(window + MBOX_OFF + off); }

/* A formatted window with a mailbox of n slots, a connected device and driver. */
static int pair(struct xvl_mbox *drv, struct xvl_mbox *dev, unsigned n)
{
	struct xvl_mem m = win();
	memset(window, 0, sizeof(window));
	if (xvl_win_format(&m) < 0 || xvl_mbox_format(drv, &m, MBOX_OFF, n, 4) < 0)
		return -1;
	if (xvl_mbox_open(dev, &m, 8) < 0 || xvl_mbox_connect(drv) < 0)
		return -2;
	if (xvl_mbox_connected(drv) != 0)
		return -3; /* not before the device accepted */
	if (xvl_mbox_accept(dev) != 1 || xvl_mbox_connected(drv) != 1)
		return -4;
	return 0;
}

static struct xvl_msg req(uint16_t type, uint32_t seq, uint32_t dev)
{
	struct xvl_msg m = {.type = type, .seq = seq};
	m.u.dev.dev = dev;
	return m;
}

static int send_req(struct xvl_mbox *mb, uint16_t type, uint32_t seq, uint32_t dev)
{
	struct xvl_msg m = req(type, seq, dev);
	return xvl_mbox_send(mb, &m);
}

static int encode_req(uint16_t type, uint32_t seq, uint8_t *buf, size_t cap)
{
	struct xvl_msg m = req(type, seq, 0);
	return xvl_msg_encode(&m, buf, cap);
}

static void test_layout(void)
{
	CHECK(xvl_mbox_size(16) == 20480 && xvl_mbox_size(1) == 4096 && xvl_mbox_size(64) == 77824,
	      "mailbox sizes: 16 slots 20 KiB, 1 slot 4 KiB, 64 slots 76 KiB");
	CHECK(xvl_mbox_size(0) == 0 && xvl_mbox_size(3) == 0 && xvl_mbox_size(128) == 0,
	      "slot counts that are not a power of two in 1..64 are refused");

	struct xvl_mem m = win();
	struct xvl_mbox drv, dev;
	memset(window, 0, sizeof(window));
	CHECK(xvl_mbox_open(&dev, &m, 1) == -EAGAIN, "open before the window is formatted: -EAGAIN");
	xvl_win_format(&m);
	CHECK(xvl_mbox_open(&dev, &m, 1) == -ENOENT, "a window without a mailbox: -ENOENT");
	CHECK(xvl_mbox_format(&drv, &m, MBOX_OFF + 8, 16, 1) == -EINVAL, "unaligned mailbox refused");
	CHECK(xvl_mbox_format(&drv, &m, WIN_SIZE - 4096, 16, 1) == -EINVAL, "mailbox past the end refused");
	CHECK(xvl_mbox_format(&drv, &m, 0, 16, 1) == -EINVAL, "mailbox over the header refused");
	CHECK(xvl_mbox_format(&drv, &m, MBOX_OFF, 16, 65) == -EINVAL, "more than 64 vectors refused");
	CHECK(xvl_mbox_format(&drv, &m, MBOX_OFF, 16, 3) == 0, "format");
	const struct xvl_win_hdr *h = (const void *)window;
	CHECK(xvl_rd32(&h->link) == XVL_WIN_LINK_MAILBOX && xvl_rd32(&h->n_entries) == 1 &&
		      xvl_rd32(&h->table[0].type) == XVL_WIN_MAILBOX && xvl_rd64(&h->table[0].off) == MBOX_OFF &&
		      xvl_rd64(&h->table[0].len) == 20480,
	      "the header says mailbox and the layout table records type 7 at its offset");
	CHECK(xvl_rd32(mword(XVL_MBOX_OFF_MAGIC)) == XVL_MBOX_MAGIC &&
		      xvl_rd32(mword(XVL_MBOX_OFF_SLOTSIZE)) == XVL_MBOX_SLOT_SIZE,
	      "mailbox magic and slot size in place");
	CHECK(xvl_mbox_open(&dev, &m, 2) == 0 && xvl_mbox_peer_vectors(&dev) == 3,
	      "device opens it and reads the driver's vector count");
	CHECK(xvl_rd32(mword(XVL_MBOX_OFF_DEV_EPOCH)) == 1 && xvl_rd32(mword(XVL_MBOX_OFF_DEV_ACK)) == 0,
	      "device instance 1, no session");
	CHECK(xvl_mbox_send(&dev, &(struct xvl_msg){.type = XVL_MSG_EVENT}) == -ENOTCONN,
	      "device cannot send without a session");
	CHECK(xvl_mbox_accept(&dev) == 0, "nothing to accept before the driver connects");

	/* Hostile layouts the device must refuse. */
	xvl_wr16((uint16_t *)(void *)(window + MBOX_OFF + XVL_MBOX_OFF_NSLOTS), 12);
	CHECK(xvl_mbox_open(&dev, &m, 2) == -EINVAL, "n_slots not a power of two refused");
	xvl_wr16((uint16_t *)(void *)(window + MBOX_OFF + XVL_MBOX_OFF_NSLOTS), 64);
	CHECK(xvl_mbox_open(&dev, &m, 2) == -EINVAL, "n_slots larger than the recorded region refused");
	xvl_wr16((uint16_t *)(void *)(window + MBOX_OFF + XVL_MBOX_OFF_NSLOTS), 16);
	xvl_wr16((uint16_t *)(void *)(window + MBOX_OFF + XVL_MBOX_OFF_VERSION), 2);
	CHECK(xvl_mbox_open(&dev, &m, 2) == -EPROTONOSUPPORT, "another mailbox version refused");
	xvl_wr16((uint16_t *)(void *)(window + MBOX_OFF + XVL_MBOX_OFF_VERSION), 1);
	xvl_win_record(&m, XVL_WIN_MAILBOX, 0, 0, 0x10000, 20480);
	CHECK(xvl_mbox_open(&dev, &m, 2) == -EINVAL, "two mailbox entries refused");
	struct xvl_win_hdr *hw = (void *)window;
	xvl_wr32(&hw->n_entries, 1);
	xvl_wr64(&hw->table[0].off, WIN_SIZE - 4096);
	CHECK(xvl_mbox_open(&dev, &m, 2) == -EINVAL, "a mailbox entry reaching past the window refused");
}

static void test_exchange(void)
{
	struct xvl_mbox drv, dev;
	struct xvl_msg m;
	CHECK(pair(&drv, &dev, 16) == 0, "handshake: device accepts the driver's epoch");
	CHECK(xvl_mbox_peer_vectors(&drv) == 8 && xvl_mbox_peer_vectors(&dev) == 4,
	      "each side sees the other's vector count");
	CHECK(xvl_mbox_recv(&dev, &m) == 0 && !xvl_mbox_pending(&dev), "nothing pending yet");

	struct xvl_msg hello = {.type = XVL_MSG_HELLO, .seq = 1};
	hello.u.hello.major = 1;
	strcpy(hello.u.hello.name, "drv");
	CHECK(xvl_mbox_send(&drv, &hello) == 0 && xvl_mbox_pending(&dev), "driver sends HELLO");
	CHECK(xvl_mbox_recv(&dev, &m) == 1 && m.type == XVL_MSG_HELLO && m.seq == 1 &&
		      !strcmp(m.u.hello.name, "drv"),
	      "device receives it intact");
	struct xvl_msg rep = m;
	rep.flags = XVL_MSG_F_REPLY;
	rep.u.hello.n_devices = 3;
	CHECK(xvl_mbox_send(&dev, &rep) == 0, "device replies");
	struct xvl_msg ev = {.type = XVL_MSG_EVENT};
	ev.u.event = (struct xvl_m_event){.dev = 2, .code = XVL_EVENT_BROKEN, .reason = -EIO};
	strcpy(ev.u.event.msg, "disk on fire");
	CHECK(xvl_mbox_send(&dev, &ev) == 0, "device sends an EVENT");
	CHECK(xvl_mbox_recv(&drv, &m) == 1 && xvl_msg_is_reply(&m) && m.u.hello.n_devices == 3,
	      "driver gets the reply first");
	CHECK(xvl_mbox_recv(&drv, &m) == 1 && m.type == XVL_MSG_EVENT && m.u.event.reason == -EIO &&
		      !strcmp(m.u.event.msg, "disk on fire"),
	      "then the EVENT");

	struct xvl_msg q = {.type = XVL_MSG_SET_QUEUE, .seq = 5};
	q.u.queue = (struct xvl_m_queue){.dev = 1, .queue = 3, .num = 128,
					 .flags = XVL_QUEUE_F_ENABLE | XVL_QUEUE_F_VECTORS,
					 .desc = 0x4000, .avail = 0x5000, .used = 0x6000,
					 .kick_vector = 4, .call_vector = 2};
	CHECK(xvl_msg_nfds(&q) == 0, "SET_QUEUE with vectors needs no fds");
	CHECK(xvl_mbox_send(&drv, &q) == 0 && xvl_mbox_recv(&dev, &m) == 1 &&
		      m.u.queue.kick_vector == 4 && m.u.queue.call_vector == 2 && m.u.queue.used == 0x6000,
	      "SET_QUEUE carries its doorbell vectors");

	/* Full ring, then wrap-around many times over a small ring. */
	CHECK(pair(&drv, &dev, 4) == 0, "4-slot mailbox");
	int sent = 0;
	while (sent < 10 && xvl_mbox_send(&drv, &(struct xvl_msg){.type = XVL_MSG_GET_STATUS, .seq = (uint32_t)sent}) == 0)
		sent++;
	CHECK(sent == 4, "a full ring takes exactly its slots (%d)", sent);
	CHECK(send_req(&drv, XVL_MSG_GET_STATUS, 99, 0) == -EAGAIN, "then -EAGAIN");
	bool order = true;
	unsigned got = 0;
	for (uint32_t i = 0; i < 1000; i++) {
		while (xvl_mbox_recv(&dev, &m) == 1) {
			order &= m.seq == got;
			got++;
		}
		if (send_req(&drv, XVL_MSG_GET_STATUS, (uint32_t)sent, 0) == 0)
			sent++;
	}
	while (xvl_mbox_recv(&dev, &m) == 1) {
		order &= m.seq == got;
		got++;
	}
	CHECK(order && got == (unsigned)sent && sent > 900, "%d messages through 4 slots in order", sent);
}

static void test_device_restart(void)
{
	struct xvl_mbox drv, dev, dev2;
	struct xvl_msg m;
	struct xvl_mem w = win();
	CHECK(pair(&drv, &dev, 8) == 0, "pair for the restart test");
	CHECK(send_req(&drv, XVL_MSG_ATTACH, 10, 0) == 0 && send_req(&drv, XVL_MSG_GET_STATUS, 11, 0) == 0,
	      "two requests outstanding when the device dies");
	CHECK(xvl_mbox_recv(&dev, &m) == 1 && m.seq == 10, "the old device read the first one");
	/* kill -9: a new device instance opens the same window. */
	CHECK(xvl_mbox_open(&dev2, &w, 8) == 0, "a new device instance opens the kept window");
	CHECK(xvl_mbox_recv(&drv, &m) == -ECONNRESET, "the driver sees the link reset");
	CHECK(send_req(&drv, XVL_MSG_HELLO, 12, 0) == -ENOTCONN, "and cannot send on it");
	CHECK(xvl_mbox_connect(&drv) == 0 && xvl_mbox_connected(&drv) == 0, "driver starts a new session");
	CHECK(xvl_mbox_accept(&dev2) == 1 && xvl_mbox_connected(&drv) == 1, "the new instance accepts it");
	CHECK(xvl_mbox_recv(&dev2, &m) == 0, "the old session's unread request is not delivered");
	CHECK(send_req(&drv, XVL_MSG_GET_STATUS, 13, 0) == 0 && xvl_mbox_recv(&dev2, &m) == 1 &&
		      m.seq == 13,
	      "the resubmitted request arrives once");
	CHECK(xvl_mbox_recv(&dev2, &m) == 0, "and nothing else");
	m.flags = XVL_MSG_F_REPLY;
	m.u.st = (struct xvl_m_status){0};
	CHECK(xvl_mbox_send(&dev2, &m) == 0 && xvl_mbox_recv(&drv, &m) == 1 && m.seq == 13, "its reply arrives");

	/* The driver begins another session: the device's current one ends. */
	CHECK(xvl_mbox_connect(&drv) == 0 && xvl_mbox_recv(&dev2, &m) == -ECONNRESET,
	      "a new driver session resets the device's link");
	CHECK(xvl_mbox_accept(&dev2) == 1 && xvl_mbox_connected(&drv) == 1, "and is accepted");
	xvl_mbox_close(&drv);
	CHECK(xvl_mbox_recv(&dev2, &m) == -ECONNRESET && xvl_mbox_accept(&dev2) == 0,
	      "driver close: device sees a reset and nothing to accept");
	CHECK(xvl_mbox_connect(&drv) == 0 && xvl_mbox_accept(&dev2) == 1 && xvl_mbox_connected(&drv) == 1,
	      "a session after a close");
	xvl_mbox_close(&dev2);
	CHECK(xvl_mbox_recv(&drv, &m) == -ECONNRESET, "device close: driver sees a reset");

	/* Re-format of the window: the device must find the mailbox again. */
	CHECK(xvl_mbox_connect(&drv) == 0 && xvl_mbox_accept(&dev2) == 1, "session before the re-format");
	xvl_win_format(&w);
	CHECK(xvl_mbox_recv(&dev2, &m) == -ESTALE && xvl_mbox_accept(&dev2) == -ESTALE,
	      "a re-formatted window: -ESTALE");
}

/* Write raw bytes into the next req slot and publish it, as a hostile driver would. */
static void raw_req(struct xvl_mbox *drv, uint32_t len, uint32_t epoch, const void *msg, size_t n)
{
	uint32_t prod = xvl_rd32(mword(XVL_MBOX_OFF_REQ_PROD));
	uint8_t *slot = window + MBOX_OFF + XVL_MBOX_OFF_SLOTS + (prod & (drv->n_slots - 1)) * XVL_MBOX_SLOT_SIZE;
	xvl_wr32((uint32_t *)(void *)slot, len);
	xvl_wr32((uint32_t *)(void *)(slot + 4), epoch);
	memcpy(slot + 16, msg, n);
	xvl_wr32(mword(XVL_MBOX_OFF_REQ_PROD), prod + 1);
	drv->tx = prod + 1;
}

static void test_hostile(void)
{
	struct xvl_mbox drv, dev;
	struct xvl_msg m;
	uint8_t good[XVL_MSG_MAX_SIZE];
	int n;

	CHECK(pair(&drv, &dev, 8) == 0, "pair for hostile tests");
	raw_req(&drv, 4000, drv.session, "", 0);
	CHECK(xvl_mbox_recv(&dev, &m) == -EMSGSIZE && strstr(xvl_mbox_why(&dev), "length"),
	      "a slot length over 512 breaks the link: %s", xvl_mbox_why(&dev));
	CHECK(xvl_mbox_recv(&drv, &m) == -ECONNRESET, "the driver sees the link closed");
	CHECK(xvl_mbox_recv(&dev, &m) == -EMSGSIZE, "the broken link stays broken");

	CHECK(pair(&drv, &dev, 8) == 0, "fresh pair");
	n = encode_req(XVL_MSG_GET_STATUS, 1, good, sizeof(good));
	raw_req(&drv, (uint32_t)n, drv.session + 7, good, (size_t)n);
	CHECK(xvl_mbox_recv(&dev, &m) == -EPROTO, "a slot of another epoch breaks the link");

	CHECK(pair(&drv, &dev, 8) == 0, "fresh pair");
	raw_req(&drv, (uint32_t)n, drv.session, good, (size_t)n - 1);
	good[12] ^= 0x40; /* payload length no longer matches */
	raw_req(&drv, (uint32_t)n, drv.session, good, (size_t)n);
	CHECK(xvl_mbox_recv(&dev, &m) == 1, "a well-formed request first");
	CHECK(xvl_mbox_recv(&dev, &m) == -EBADMSG && strstr(xvl_mbox_why(&dev), "malformed"),
	      "a malformed message breaks the link: %s", xvl_mbox_why(&dev));
	CHECK(xvl_mbox_accept(&dev) == 0, "the broken session is not accepted again");
	CHECK(xvl_mbox_connect(&drv) == 0 && xvl_mbox_accept(&dev) == 1 && xvl_mbox_connected(&drv) == 1,
	      "the driver's next session is");

	CHECK(pair(&drv, &dev, 8) == 0, "fresh pair");
	xvl_wr32(mword(XVL_MBOX_OFF_REQ_PROD), 9);
	CHECK(xvl_mbox_recv(&dev, &m) == -EPROTO, "a producer index more than a ring ahead breaks the link");

	CHECK(pair(&drv, &dev, 8) == 0, "fresh pair");
	struct xvl_msg rep = req(XVL_MSG_GET_STATUS, 1, 0);
	rep.flags = XVL_MSG_F_REPLY;
	n = xvl_msg_encode(&rep, good, sizeof(good));
	raw_req(&drv, (uint32_t)n, drv.session, good, (size_t)n);
	CHECK(xvl_mbox_recv(&dev, &m) == -EPROTO, "a reply sent to the device breaks the link");

	CHECK(pair(&drv, &dev, 8) == 0, "fresh pair");
	CHECK(send_req(&dev, XVL_MSG_ATTACH, 1, 0) == 0 && xvl_mbox_recv(&drv, &m) == -EPROTO,
	      "a request sent to the driver breaks the link: %s", xvl_mbox_why(&drv));
	CHECK(xvl_rd32(mword(XVL_MBOX_OFF_DRV_EPOCH)) & XVL_MBOX_EPOCH_CLOSED, "and the device sees it closed");

	CHECK(pair(&drv, &dev, 2) == 0, "fresh pair");
	xvl_wr32(mword(XVL_MBOX_OFF_REQ_CONS), 5);
	CHECK(send_req(&drv, XVL_MSG_ATTACH, 1, 0) == -EPROTO,
	      "a consumer index ahead of the producer breaks the driver's link");

	CHECK(pair(&drv, &dev, 2) == 0, "fresh pair");
	xvl_wr32(mword(XVL_MBOX_OFF_DEV_ACK), 0);
	CHECK(send_req(&drv, XVL_MSG_ATTACH, 1, 0) == -ECONNRESET,
	      "a device that withdraws its acknowledgement resets the link");

	CHECK(pair(&drv, &dev, 2) == 0, "fresh pair");
	xvl_mbox_connect(&drv);
	xvl_wr32(mword(XVL_MBOX_OFF_DEV_VECTORS), 1000);
	CHECK(xvl_mbox_accept(&dev) == 1 && xvl_mbox_connected(&drv) == -EINVAL,
	      "a device announcing 1000 vectors is refused");
}

int main(void)
{
	test_layout();
	test_exchange();
	test_device_restart();
	test_hostile();
	return tap_done();
}
