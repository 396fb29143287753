/* SPDX-License-Identifier: MIT */
/*
 * badpeer: a hostile driver side that speaks the link protocol by hand.
 * Used by tests/e2e/bad_input.sh against a running `xvl server`.
 *
 *   badpeer SOCKET [SCENARIO...]
 *
 * Each scenario opens its own connection, sends one kind of bad input and
 * checks that the server refuses it: an error reply (negative status) for a
 * well-formed request it does not accept, a closed link for malformed bytes.
 * Prints one line per check: "PASS description" or "FAIL description: why".
 * Exit status 0 when every check passed.  Without SCENARIO, runs them all
 * (except "shrink", which is run on its own by the script).
 *
 * Built against the project's own encoder (src/core/proto.h) and OS layer
 * (src/os/os.h) so that only the one thing under test is wrong.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "os.h"
#include "proto.h"
#include "virtq.h"
#include "window.h"

#define WIN_SIZE (1u << 20)
#define REPLY_MS 3000

static const char *sock_path;
static int failures;
static uint32_t seq;

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

static int peer_connect(void)
{
	struct xvl_errbuf eb;
	int s = xvl_os_connect(sock_path, &eb);
	if (s < 0) {
		printf("FAIL connect: %s\n", eb.msg);
		failures++;
	}
	return s;
}

static int send_raw(int s, const void *buf, size_t len, const int *fds, unsigned nfds)
{
	return xvl_os_send(s, buf, len, fds, nfds);
}

static int send_msg(int s, struct xvl_msg *m, const int *fds, unsigned nfds)
{
	uint8_t buf[XVL_MSG_MAX_SIZE];
	m->seq = ++seq;
	int n = xvl_msg_encode(m, buf, sizeof(buf));
	if (n < 0)
		return n;
	return send_raw(s, buf, (size_t)n, fds, nfds);
}

/*
 * Wait for one message.  Returns 1 with *m decoded, 0 when the server closed
 * the link, -ETIMEDOUT when nothing came, other negative errno otherwise.
 */
static int recv_msg(int s, struct xvl_msg *m)
{
	uint8_t buf[XVL_MSG_MAX_SIZE];
	int fds[XVL_OS_MAX_FDS];
	unsigned nfds = 0;
	struct pollfd p = {.fd = s, .events = POLLIN};
	int pr = poll(&p, 1, REPLY_MS);
	if (pr == 0)
		return -ETIMEDOUT;
	if (pr < 0)
		return -errno;
	long n = xvl_os_recv(s, buf, sizeof(buf), fds, XVL_OS_MAX_FDS, &nfds);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	if (n == 0 || n == -ECONNRESET)
		return 0;
	if (n < 0)
		return (int)n;
	int rc = xvl_msg_decode(buf, (size_t)n, m);
	return rc < 0 ? rc : 1;
}

/* Send m, get its reply (skipping events): 1 reply, 0 closed, <0 error. */
static int call(int s, struct xvl_msg *m, const int *fds, unsigned nfds, struct xvl_msg *rep)
{
	int rc = send_msg(s, m, fds, nfds);
	if (rc < 0)
		return rc == -EPIPE || rc == -ECONNRESET ? 0 : rc;
	for (;;) {
		rc = recv_msg(s, rep);
		if (rc != 1)
			return rc;
		if (rep->type == XVL_MSG_EVENT && !xvl_msg_is_reply(rep))
			continue;
		if (!xvl_msg_is_reply(rep) || rep->seq != m->seq || rep->type != m->type)
			return -EPROTO;
		return 1;
	}
}

/* The request must be answered with a negative status (want: that errno, or 0 for any). */
static void expect_refused(int s, struct xvl_msg *m, const int *fds, unsigned nfds, int want,
			   const char *what)
{
	struct xvl_msg rep;
	int rc = call(s, m, fds, nfds, &rep);
	if (rc == 1 && rep.status < 0 && (!want || rep.status == want))
		result(true, what, NULL);
	else if (rc == 1 && rep.status < 0)
		result(false, what, "refused with %s, expected %s", strerror(-rep.status),
		       strerror(-want));
	else if (rc == 1)
		result(false, what, "accepted (status %d)", rep.status);
	else if (rc == 0)
		result(false, what, "the server closed the link instead of replying with an error");
	else
		result(false, what, "no reply: %s", strerror(-rc));
}

/* The link must be closed by the server (a malformed message). */
static void expect_closed(int s, const char *what)
{
	struct xvl_msg rep;
	int rc;
	do
		rc = recv_msg(s, &rep);
	while (rc == 1 && rep.type == XVL_MSG_EVENT);
	if (rc == 0)
		result(true, what, NULL);
	else if (rc == 1)
		result(false, what, "the server answered %s status %d instead of closing the link",
		       xvl_msg_name(rep.type), rep.status);
	else
		result(false, what, "link neither closed nor answered: %s", strerror(-rc));
}

/* A request that must succeed on the way to the bad one. */
static bool step(int s, struct xvl_msg *m, const int *fds, unsigned nfds, struct xvl_msg *rep,
		 const char *what)
{
	struct xvl_msg r;
	if (!rep)
		rep = &r;
	int rc = call(s, m, fds, nfds, rep);
	if (rc == 1 && rep->status == 0)
		return true;
	result(false, what, "setup step %s failed: rc %d status %d", xvl_msg_name(m->type), rc,
	       rc == 1 ? rep->status : 0);
	return false;
}

static bool hello(int s, const char *what)
{
	struct xvl_msg m = {.type = XVL_MSG_HELLO};
	m.u.hello.major = XVL_PROTO_MAJOR;
	m.u.hello.minor = XVL_PROTO_MINOR;
	snprintf(m.u.hello.name, sizeof(m.u.hello.name), "badpeer");
	return step(s, &m, NULL, 0, NULL, what);
}

static bool attach(int s, uint32_t dev, const char *what)
{
	struct xvl_msg m = {.type = XVL_MSG_ATTACH};
	m.u.dev.dev = dev;
	return step(s, &m, NULL, 0, NULL, what);
}

static bool set_status(int s, uint32_t st, const char *what)
{
	struct xvl_msg m = {.type = XVL_MSG_SET_STATUS}, rep;
	m.u.st.status = st;
	if (!step(s, &m, NULL, 0, &rep, what))
		return false;
	if (rep.u.st.status != st) {
		result(false, what, "setup: status 0x%x set, 0x%x read back", st, rep.u.st.status);
		return false;
	}
	return true;
}

static bool set_features(int s, uint64_t f, const char *what)
{
	struct xvl_msg m = {.type = XVL_MSG_SET_FEATURES};
	m.u.feat.features = f;
	return step(s, &m, NULL, 0, NULL, what);
}

/* A well-formed window of size bytes (formatted header). */
static bool make_window(struct xvl_os_window *w, uint64_t size, const char *what)
{
	struct xvl_errbuf eb;
	if (xvl_os_window_create(w, NULL, size, &eb) < 0 || xvl_win_format(&w->mem) < 0) {
		result(false, what, "window: %s", eb.msg);
		return false;
	}
	return true;
}

static bool send_window(int s, struct xvl_os_window *w, const char *what)
{
	struct xvl_msg m = {.type = XVL_MSG_SET_WINDOW};
	m.u.window.size = w->mem.size;
	return step(s, &m, &w->fd, 1, NULL, what);
}

#define ST_FEAT (XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER | XVL_STATUS_FEATURES_OK)

/* HELLO, ATTACH 0, [window], ACK|DRIVER, VERSION_1, FEATURES_OK. */
static bool setup_dev(int s, struct xvl_os_window *w, const char *what)
{
	return hello(s, what) && attach(s, 0, what) && (!w || send_window(s, w, what)) &&
	       set_status(s, XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER, what) &&
	       set_features(s, 1ull << XVL_F_VERSION_1, what) && set_status(s, ST_FEAT, what);
}

/* A SET_QUEUE for queue 0 of device 0 with eventfds; rings at 64 KiB. */
static void queue_msg(struct xvl_msg *m, uint16_t num)
{
	*m = (struct xvl_msg){.type = XVL_MSG_SET_QUEUE};
	m->u.queue.num = num;
	m->u.queue.flags = XVL_QUEUE_F_ENABLE;
	m->u.queue.desc = 64 * 1024;
	m->u.queue.avail = 128 * 1024;
	m->u.queue.used = 192 * 1024;
}

static void eventfds(int *fds)
{
	fds[0] = xvl_os_eventfd();
	fds[1] = xvl_os_eventfd();
}

/* ---------------------------------------------------------------- scenarios */

static void sc_version(void)
{
	const char *what = "HELLO with protocol major version 99 refused (EPROTONOSUPPORT)";
	int s = peer_connect();
	if (s < 0)
		return;
	struct xvl_msg m = {.type = XVL_MSG_HELLO};
	m.u.hello.major = 99;
	snprintf(m.u.hello.name, sizeof(m.u.hello.name), "badpeer-v99");
	expect_refused(s, &m, NULL, 0, -EPROTONOSUPPORT, what);
	struct xvl_msg a = {.type = XVL_MSG_ATTACH};
	expect_refused(s, &a, NULL, 0, 0, "ATTACH after a refused HELLO refused");
	close(s);

	/* HELLO must be the first request */
	s = peer_connect();
	if (s < 0)
		return;
	expect_refused(s, &a, NULL, 0, 0, "ATTACH before any HELLO refused");
	struct xvl_os_window w = {.fd = -1};
	if (make_window(&w, WIN_SIZE, "SET_WINDOW before any HELLO refused")) {
		struct xvl_msg sw = {.type = XVL_MSG_SET_WINDOW};
		sw.u.window.size = WIN_SIZE;
		expect_refused(s, &sw, &w.fd, 1, 0, "SET_WINDOW before any HELLO refused");
	}
	xvl_os_window_close(&w);
	close(s);
}

static void sc_truncated(void)
{
	int s = peer_connect();
	if (s < 0)
		return;
	uint8_t buf[XVL_MSG_MAX_SIZE];
	struct xvl_msg m = {.type = XVL_MSG_HELLO, .seq = 1};
	m.u.hello.major = XVL_PROTO_MAJOR;
	int n = xvl_msg_encode(&m, buf, sizeof(buf));
	send_raw(s, buf, 10, NULL, 0); /* not even a whole header */
	expect_closed(s, "message truncated inside the header: link closed");
	close(s);

	s = peer_connect();
	if (s < 0)
		return;
	send_raw(s, buf, (size_t)n - 7, NULL, 0); /* header says more payload than sent */
	expect_closed(s, "HELLO with its payload cut short: link closed");
	close(s);

	s = peer_connect();
	if (s < 0)
		return;
	if (hello(s, "DEV_INFO with no payload after a good HELLO: link closed")) {
		struct xvl_msg d = {.type = XVL_MSG_DEV_INFO, .seq = 2};
		n = xvl_msg_encode(&d, buf, sizeof(buf));
		uint32_t zero = 0;
		memcpy(buf + 12, &zero, 4); /* len 0, sent without the u32 dev */
		send_raw(s, buf, XVL_MSG_HDR_SIZE, NULL, 0);
		expect_closed(s, "DEV_INFO with no payload after a good HELLO: link closed");
	}
	close(s);
}

static void sc_oversized(void)
{
	int s = peer_connect();
	if (s < 0)
		return;
	static uint8_t big[64 * 1024];
	struct xvl_msg m = {.type = XVL_MSG_HELLO, .seq = 1};
	m.u.hello.major = XVL_PROTO_MAJOR;
	int n = xvl_msg_encode(&m, big, sizeof(big));
	uint32_t len = sizeof(big) - XVL_MSG_HDR_SIZE;
	memcpy(big + 12, &len, 4);
	(void)n;
	send_raw(s, big, sizeof(big), NULL, 0);
	expect_closed(s, "64 KiB message (over the 512-byte maximum): link closed");
	close(s);

	s = peer_connect();
	if (s < 0)
		return;
	n = xvl_msg_encode(&m, big, sizeof(big));
	send_raw(s, big, (size_t)n + 8, NULL, 0); /* trailing bytes after a valid HELLO */
	expect_closed(s, "HELLO with 8 extra trailing bytes: link closed");
	close(s);

	s = peer_connect();
	if (s < 0)
		return;
	n = xvl_msg_encode(&m, big, sizeof(big));
	len = 0xffffffffu; /* length field claims 4 GiB */
	memcpy(big + 12, &len, 4);
	send_raw(s, big, (size_t)n, NULL, 0);
	expect_closed(s, "length field of 4 GiB: link closed");
	close(s);
}

static void sc_unknown_type(void)
{
	const char *what = "unknown message type 99: refused (error reply or closed link)";
	int s = peer_connect();
	if (s < 0)
		return;
	if (!hello(s, what)) {
		close(s);
		return;
	}
	uint8_t buf[XVL_MSG_HDR_SIZE + 4] = {0};
	uint16_t type = 99;
	uint32_t sq = 77, len = 4;
	memcpy(buf, &type, 2);
	memcpy(buf + 4, &sq, 4);
	memcpy(buf + 12, &len, 4);
	send_raw(s, buf, sizeof(buf), NULL, 0);
	struct xvl_msg rep;
	int rc = recv_msg(s, &rep);
	if (rc == 0)
		result(true, what, NULL);
	else if (rc == 1 && xvl_msg_is_reply(&rep) && rep.status < 0)
		result(true, what, NULL);
	else if (rc < 0 && rc != -ETIMEDOUT)
		result(true, what, NULL); /* a reply we cannot decode either: type 99 echoed */
	else
		result(false, what, "rc %d status %d", rc, rc == 1 ? rep.status : 0);
	close(s);

	s = peer_connect();
	if (s < 0)
		return;
	struct xvl_msg r = {.type = XVL_MSG_HELLO, .flags = XVL_MSG_F_REPLY};
	send_msg(s, &r, NULL, 0);
	expect_closed(s, "a reply sent to the server: link closed");
	close(s);
}

static void sc_unknown_dev(void)
{
	int s = peer_connect();
	if (s < 0)
		return;
	if (!hello(s, "DEV_INFO of an unknown device")) {
		close(s);
		return;
	}
	struct xvl_msg m = {.type = XVL_MSG_DEV_INFO};
	m.u.dev.dev = 63;
	expect_refused(s, &m, NULL, 0, -ENODEV, "DEV_INFO of device 63 (unknown) refused (ENODEV)");
	m.u.dev.dev = 0xffffffffu;
	expect_refused(s, &m, NULL, 0, -ENODEV, "DEV_INFO of device 0xffffffff refused (ENODEV)");
	m = (struct xvl_msg){.type = XVL_MSG_ATTACH};
	m.u.dev.dev = 63;
	expect_refused(s, &m, NULL, 0, -ENODEV, "ATTACH of device 63 (unknown) refused (ENODEV)");
	m.u.dev.dev = 0x80000000u;
	expect_refused(s, &m, NULL, 0, -ENODEV, "ATTACH of device 0x80000000 refused (ENODEV)");
	m = (struct xvl_msg){.type = XVL_MSG_GET_CONFIG};
	m.u.cfg.dev = 63;
	m.u.cfg.len = 8;
	expect_refused(s, &m, NULL, 0, 0, "GET_CONFIG of device 63 refused");
	m = (struct xvl_msg){.type = XVL_MSG_GET_CONFIG};
	m.u.cfg.off = 0xfffffff0u;
	m.u.cfg.len = 32;
	expect_refused(s, &m, NULL, 0, 0, "GET_CONFIG at offset 0xfffffff0 refused");
	m = (struct xvl_msg){.type = XVL_MSG_SET_STATUS};
	m.u.st.status = XVL_STATUS_ACKNOWLEDGE;
	expect_refused(s, &m, NULL, 0, 0, "SET_STATUS on a device this link did not attach refused");
	close(s);
}

static void sc_features(void)
{
	const char *what = "SET_FEATURES without VERSION_1 refused";
	int s = peer_connect();
	if (s < 0)
		return;
	if (hello(s, what) && attach(s, 0, what) &&
	    set_status(s, XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER, what)) {
		struct xvl_msg m = {.type = XVL_MSG_SET_FEATURES}, rep;
		m.u.feat.features = 1ull << XVL_F_EVENT_IDX;
		expect_refused(s, &m, NULL, 0, 0, what);
		m.u.feat.features = (1ull << XVL_F_VERSION_1) | (1ull << 50);
		expect_refused(s, &m, NULL, 0, 0, "SET_FEATURES with an unknown feature bit (50) refused");
		/* FEATURES_OK without an accepted feature set must not stick */
		m = (struct xvl_msg){.type = XVL_MSG_SET_STATUS};
		m.u.st.status = ST_FEAT;
		int rc = call(s, &m, NULL, 0, &rep);
		const char *w2 = "FEATURES_OK without VERSION_1 negotiated does not stick";
		if (rc == 1 && (rep.status < 0 || !(rep.u.st.status & XVL_STATUS_FEATURES_OK)))
			result(true, w2, NULL);
		else
			result(false, w2, "rc %d status %d device status 0x%x", rc, rep.status,
			       rep.u.st.status);
	}
	close(s);
}

static void sc_queue_no_window(void)
{
	const char *what = "SET_QUEUE before SET_WINDOW refused";
	int s = peer_connect();
	if (s < 0)
		return;
	if (setup_dev(s, NULL, what)) {
		struct xvl_msg m;
		int fds[2];
		eventfds(fds);
		queue_msg(&m, 64);
		expect_refused(s, &m, fds, 2, 0, what);
		close(fds[0]);
		close(fds[1]);
	}
	close(s);
}

static void sc_queue_bad(void)
{
	const char *what = "SET_QUEUE with bad parameters";
	struct xvl_os_window w = {.fd = -1};
	int s = peer_connect();
	if (s < 0)
		return;
	if (make_window(&w, WIN_SIZE, what) && setup_dev(s, &w, what)) {
		struct xvl_msg m;
		int fds[2];
		eventfds(fds);
		queue_msg(&m, 1000);
		expect_refused(s, &m, fds, 2, 0, "SET_QUEUE with queue size 1000 (not a power of two) refused");
		queue_msg(&m, 0);
		expect_refused(s, &m, fds, 2, 0, "SET_QUEUE with queue size 0 refused");
		queue_msg(&m, 2048);
		expect_refused(s, &m, fds, 2, 0, "SET_QUEUE with queue size 2048 (over 1024) refused");
		queue_msg(&m, 256);
		m.u.queue.desc = WIN_SIZE - 16;
		expect_refused(s, &m, fds, 2, 0, "SET_QUEUE with the descriptor table running past the window end refused");
		queue_msg(&m, 256);
		m.u.queue.used = WIN_SIZE + 4096;
		expect_refused(s, &m, fds, 2, 0, "SET_QUEUE with the used ring outside the window refused");
		queue_msg(&m, 256);
		m.u.queue.avail = UINT64_MAX - 1;
		expect_refused(s, &m, fds, 2, 0, "SET_QUEUE with the avail ring at 2^64-2 (overflow) refused");
		queue_msg(&m, 256);
		m.u.queue.avail = m.u.queue.desc + 16;
		expect_refused(s, &m, fds, 2, 0, "SET_QUEUE with overlapping rings refused");
		queue_msg(&m, 256);
		m.u.queue.queue = 15;
		expect_refused(s, &m, fds, 2, 0, "SET_QUEUE for a queue the device does not have refused");
		queue_msg(&m, 256);
		expect_refused(s, &m, NULL, 0, 0, "SET_QUEUE without its kick/call eventfds refused");
		/* and a good one still works on the same link afterwards */
		queue_msg(&m, 256);
		struct xvl_msg rep;
		int rc = call(s, &m, fds, 2, &rep);
		result(rc == 1 && rep.status == 0, "a valid SET_QUEUE on the same link is still accepted",
		       "rc %d status %d", rc, rc == 1 ? rep.status : 0);
		close(fds[0]);
		close(fds[1]);
	}
	close(s);
	xvl_os_window_close(&w);
}

static void sc_window(void)
{
	/* fd smaller than the size claimed */
	const char *what = "SET_WINDOW claiming 64 MiB for a 1 MiB memfd refused";
	struct xvl_os_window w = {.fd = -1};
	int s = peer_connect();
	if (s >= 0 && make_window(&w, WIN_SIZE, what) && hello(s, what)) {
		struct xvl_msg m = {.type = XVL_MSG_SET_WINDOW};
		m.u.window.size = 64u << 20;
		expect_refused(s, &m, &w.fd, 1, 0, what);
		m.u.window.size = 0;
		expect_refused(s, &m, &w.fd, 1, 0, "SET_WINDOW of size 0 refused");
		m.u.window.size = WIN_SIZE;
		expect_refused(s, &m, NULL, 0, 0, "SET_WINDOW without a file descriptor refused");
		int two[2] = {w.fd, w.fd};
		expect_refused(s, &m, two, 2, 0, "SET_WINDOW with two file descriptors refused");
		int nfd = open("/dev/null", O_RDWR | O_CLOEXEC);
		expect_refused(s, &m, &nfd, 1, 0, "SET_WINDOW with /dev/null as the window refused");
		close(nfd);
		/* right size, but no window header */
		memset(w.mem.base, 0, XVL_WIN_HDR_SIZE);
		expect_refused(s, &m, &w.fd, 1, 0, "SET_WINDOW with an unformatted header refused");
		xvl_win_format(&w.mem);
		struct xvl_msg rep;
		int rc = call(s, &m, &w.fd, 1, &rep);
		result(rc == 1 && rep.status == 0, "a valid SET_WINDOW on the same link is still accepted",
		       "rc %d status %d", rc, rc == 1 ? rep.status : 0);
		expect_refused(s, &m, &w.fd, 1, 0, "a second SET_WINDOW on the same link refused");
	}
	if (s >= 0)
		close(s);
	xvl_os_window_close(&w);
}

/*
 * Many descriptors on a message that takes none: refused with -EBADMSG (a
 * reply; the link stays usable), and none stays open in the server.
 */
static void sc_fd_flood(void)
{
	const char *what = "HELLO carrying 8 stray file descriptors refused (EBADMSG)";
	int s = peer_connect();
	if (s < 0)
		return;
	int fds[8];
	for (int i = 0; i < 8; i++)
		fds[i] = xvl_os_eventfd();
	struct xvl_msg m = {.type = XVL_MSG_HELLO};
	m.u.hello.major = XVL_PROTO_MAJOR;
	expect_refused(s, &m, fds, 8, -EBADMSG, what);
	for (int i = 0; i < 8; i++)
		close(fds[i]);
	if (hello(s, "the link answers a HELLO without descriptors after that refusal"))
		result(true, "the link answers a HELLO without descriptors after that refusal", NULL);
	close(s);
}

/* Connections that set up a device and a queue, then vanish without a word. */
static void sc_abandon(void)
{
	const char *what = "attached device with window and queues, link dropped mid-setup";
	for (int i = 0; i < 4; i++) {
		struct xvl_os_window w = {.fd = -1};
		int s = peer_connect();
		if (s < 0)
			return;
		if (make_window(&w, WIN_SIZE, what) && setup_dev(s, &w, what)) {
			struct xvl_msg m;
			int fds[2];
			eventfds(fds);
			queue_msg(&m, 256);
			if (i & 1) {
				struct xvl_msg rep;
				if (call(s, &m, fds, 2, &rep) == 1 && rep.status == 0 && i == 3)
					set_status(s, ST_FEAT | XVL_STATUS_DRIVER_OK, what);
			}
			close(fds[0]);
			close(fds[1]);
		}
		close(s);
		xvl_os_window_close(&w);
	}
	result(true, what, NULL);
}

/*
 * A driver that shrinks its window after handing it over: the server must
 * not die of SIGBUS when it next touches the rings.
 */
static void sc_shrink(void)
{
	const char *what = "window shrunk to 0 bytes after SET_WINDOW, then kicked";
	int s = peer_connect();
	if (s < 0)
		return;
	/* a memfd without seals, formatted as a window */
	int fd = memfd_create("badpeer-window", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, WIN_SIZE) < 0) {
		result(false, what, "memfd: %s", strerror(errno));
		close(s);
		return;
	}
	struct xvl_os_window w;
	struct xvl_errbuf eb;
	if (xvl_os_window_map(&w, fd, WIN_SIZE, &eb) < 0) {
		result(false, what, "map: %s", eb.msg);
		close(s);
		return;
	}
	xvl_win_format(&w.mem);
	struct xvl_msg m = {.type = XVL_MSG_SET_WINDOW}, rep;
	if (!hello(s, what) || !attach(s, 0, what))
		goto out;
	m.u.window.size = WIN_SIZE;
	int rc = call(s, &m, &w.fd, 1, &rep);
	if (rc == 1 && rep.status < 0) {
		result(true, what, NULL); /* refused an unsealed window: fine */
		goto out;
	}
	if (!(rc == 1 && set_status(s, XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER, what)))
		goto out;
	if (!(set_features(s, 1ull << XVL_F_VERSION_1, what) && set_status(s, ST_FEAT, what)))
		goto out;
	int fds[2];
	eventfds(fds);
	queue_msg(&m, 256);
	rc = call(s, &m, fds, 2, &rep);
	if (rc == 1 && rep.status < 0) {
		result(true, what, NULL);
		goto out2;
	}
	if (!set_status(s, ST_FEAT | XVL_STATUS_DRIVER_OK, what))
		goto out2;
	/* pretend a request is there, shrink the memfd, kick */
	struct xvl_vring_avail *av = (void *)(w.mem.base + m.u.queue.avail);
	av->idx = 1;
	if (ftruncate(w.fd, 0) < 0) {
		result(false, what, "ftruncate: %s", strerror(errno));
		goto out2;
	}
	xvl_os_eventfd_signal(fds[0]);
	usleep(300 * 1000);
	/* the server must still answer on this link or have closed it; it must be alive */
	m = (struct xvl_msg){.type = XVL_MSG_GET_STATUS};
	rc = call(s, &m, NULL, 0, &rep);
	if (rc < 0) {
		result(false, what, "no answer: %s", strerror(-rc));
		goto out2;
	}
	/* and a new connection is still served */
	struct xvl_errbuf eb2;
	int s2 = xvl_os_connect(sock_path, &eb2);
	if (s2 < 0) {
		result(false, what, "the server is gone: %s", eb2.msg);
		goto out2;
	}
	struct xvl_msg h = {.type = XVL_MSG_HELLO};
	h.u.hello.major = XVL_PROTO_MAJOR;
	rc = call(s2, &h, NULL, 0, &rep);
	result(rc == 1 && rep.status == 0, what, "a new connection got no HELLO reply (rc %d)", rc);
	close(s2);
out2:
	close(fds[0]);
	close(fds[1]);
out:
	close(s);
	munmap(w.mem.base, WIN_SIZE);
	close(w.fd);
}

struct scenario {
	const char *name;
	void (*fn)(void);
	bool in_all;
};

static const struct scenario scenarios[] = {
	{"version", sc_version, true},   {"truncated", sc_truncated, true},
	{"oversized", sc_oversized, true}, {"unknown-type", sc_unknown_type, true},
	{"unknown-dev", sc_unknown_dev, true}, {"features", sc_features, true},
	{"queue-no-window", sc_queue_no_window, true}, {"queue-bad", sc_queue_bad, true},
	{"window", sc_window, true},     {"fd-flood", sc_fd_flood, true},
	{"abandon", sc_abandon, true},   {"shrink", sc_shrink, false},
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: badpeer SOCKET [SCENARIO...]\n");
		return 2;
	}
	sock_path = argv[1];
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		bool run = argc == 2 ? scenarios[i].in_all : false;
		for (int a = 2; a < argc; a++)
			run |= !strcmp(argv[a], scenarios[i].name);
		if (run)
			scenarios[i].fn();
	}
	return failures ? 1 : 0;
}
