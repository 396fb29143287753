/* SPDX-License-Identifier: MIT */
/*
 * Hostile DRIVER peer aimed at the server's state machine and event loop
 * (issue 9, items 10, 11, 16-20, and the protocol-agreement points).
 *
 *   server_attack SOCKET CASE [HOLD_SECONDS [FILE]]
 *
 * Speaks the link protocol by hand against a live `xvl server` whose device
 * 0 is a file device (FILE: its backing file, for case reset_inflight) and
 * device 1 a RAM device.  Prints "PASS what" / "FAIL what: why" lines; for
 * the cases that leave the server idle afterwards it then prints "READY"
 * and keeps its link open for HOLD_SECONDS, so that the script can measure
 * the server's CPU time over that idle second (a spinning server shows
 * ~100 ticks).  Exit status 0 when every check passed.
 *
 * Cases: toggle, toggle_detach, reset_inflight, enable_flag, unread,
 * callfd_full, callfd_flip, callfd_max, callfd_pipe, kickfd_hup, conn_limit,
 * hello_timeout, bases, proto, blk.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "hostile_common.h"
#include "virtio_blk.h"
#include "virtq.h"
#include "window.h"
#include "xvl_atomic.h"

#define WIN_SIZE (4u << 20)
#define NUM      256u
#define DESC     0x1000u
#define AVAIL    0x2000u
#define USED     0x3000u
#define REQ      0x8000u  /* request headers, 16 bytes each, 64 apart */
#define STATUS   0xc000u  /* status bytes, one per head */
#define DATA     0x100000u /* 1 MiB data buffer */
#define WAIT_MS  3000
#define ST_BASE  (XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_DRIVER)
#define ST_FEAT  (ST_BASE | XVL_STATUS_FEATURES_OK)
#define ST_OK    (ST_FEAT | XVL_STATUS_DRIVER_OK)

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

struct peer {
	int sock;
	uint32_t seq;
	uint32_t dev;
	uint64_t offered;
	int memfd;
	struct xvl_mem mem;
	struct xvl_vq_drv vq;
	void *priv;
	int kick, call;
	bool broken; /* EVENT BROKEN seen */
	char broken_msg[64];
	uint32_t event_seq;    /* of the first EVENT seen */
	uint16_t event_flags;
	bool event_while_waiting; /* it came while a reply was awaited */
};

/* Request/reply, events noted on the way.  Returns the reply status, or
 * -ETIMEDOUT / -ENOTCONN when there is none. */
static int call_fd(struct peer *p, struct xvl_msg *req, const int *fds, unsigned nfds,
		   struct xvl_msg *rep, int wait_ms)
{
	req->seq = ++p->seq;
	int rc = h_send(p->sock, req, fds, nfds);
	if (rc < 0)
		return rc;
	for (;;) {
		rc = h_recv(p->sock, rep, wait_ms, NULL, NULL);
		if (rc == 0)
			return -ETIMEDOUT;
		if (rc < 0)
			return rc == -ECONNRESET ? -ENOTCONN : rc;
		if (rep->type == XVL_MSG_EVENT && !xvl_msg_is_reply(rep)) {
			if (rep->u.event.code == XVL_EVENT_BROKEN && !p->broken) {
				p->broken = true;
				p->event_seq = rep->seq;
				p->event_flags = rep->flags;
				p->event_while_waiting = true;
				snprintf(p->broken_msg, sizeof(p->broken_msg), "%s", rep->u.event.msg);
			}
			continue;
		}
		if (!xvl_msg_is_reply(rep) || rep->seq != req->seq || rep->type != req->type)
			h_die("%s: unexpected %s from the server", xvl_msg_name(req->type),
			      xvl_msg_name(rep->type));
		return rep->status;
	}
}

static int call(struct peer *p, struct xvl_msg *req, const int *fds, unsigned nfds,
		struct xvl_msg *rep)
{
	return call_fd(p, req, fds, nfds, rep, WAIT_MS);
}

static void must(int rc, const char *what)
{
	if (rc < 0)
		h_die("%s refused: %s", what, strerror(-rc));
}

static int set_status(struct peer *p, uint32_t st, uint32_t *now)
{
	struct xvl_msg req = {.type = XVL_MSG_SET_STATUS}, rep;
	req.u.st.dev = p->dev;
	req.u.st.status = st;
	int rc = call(p, &req, NULL, 0, &rep);
	if (now)
		*now = rc == 0 ? rep.u.st.status : 0;
	return rc;
}

static int simple(struct peer *p, uint16_t type)
{
	struct xvl_msg req = {.type = type}, rep;
	req.u.dev.dev = p->dev;
	return call(p, &req, NULL, 0, &rep);
}

static int hello_on(struct peer *p, uint16_t major, const char *name)
{
	struct xvl_msg req = {.type = XVL_MSG_HELLO}, rep;
	req.u.hello.major = major;
	snprintf(req.u.hello.name, sizeof(req.u.hello.name), "%s", name);
	return call(p, &req, NULL, 0, &rep);
}

static void peer_connect(struct peer *p)
{
	struct xvl_errbuf eb;
	/* the socket file exists from bind(); listen() follows */
	for (int i = 0; i < 100; i++) {
		p->sock = xvl_os_connect(sock_path, &eb);
		if (p->sock >= 0 || p->sock != -ECONNREFUSED)
			break;
		usleep(20000);
	}
	if (p->sock < 0)
		h_die("connect %s: %s", sock_path, eb.msg);
}

static void make_window(struct peer *p)
{
	p->memfd = memfd_create("attack-window", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (p->memfd < 0 || ftruncate(p->memfd, WIN_SIZE) < 0)
		h_die("memfd: %s", strerror(errno));
	void *m = mmap(NULL, WIN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, p->memfd, 0);
	if (m == MAP_FAILED)
		h_die("mmap: %s", strerror(errno));
	p->mem.base = m;
	p->mem.size = WIN_SIZE;
	must(xvl_win_format(&p->mem), "window format");
}

/* HELLO, DEV_INFO, SET_WINDOW, ATTACH. */
static void attach(struct peer *p, uint32_t dev)
{
	struct xvl_msg req = {.type = XVL_MSG_DEV_INFO}, rep;
	p->dev = dev;
	p->kick = p->call = -1;
	peer_connect(p);
	must(hello_on(p, XVL_PROTO_MAJOR, "server-attack"), "HELLO");
	req.u.dev.dev = dev;
	must(call(p, &req, NULL, 0, &rep), "DEV_INFO");
	p->offered = rep.u.info.features;
	make_window(p);
	req = (struct xvl_msg){.type = XVL_MSG_SET_WINDOW};
	req.u.window.size = WIN_SIZE;
	must(call(p, &req, &p->memfd, 1, &rep), "SET_WINDOW");
	must(simple(p, XVL_MSG_ATTACH), "ATTACH");
	p->priv = aligned_alloc(64, (xvl_vq_drv_priv_size(NUM) + 63) & ~(size_t)63);
	if (!p->priv)
		h_die("out of memory");
}

static void features(struct peer *p)
{
	struct xvl_msg req = {.type = XVL_MSG_SET_FEATURES}, rep;
	uint32_t now;
	must(set_status(p, ST_BASE, NULL), "SET_STATUS ACK|DRIVER");
	req.u.feat.dev = p->dev;
	req.u.feat.features = 1ull << XVL_F_VERSION_1;
	must(call(p, &req, NULL, 0, &rep), "SET_FEATURES");
	must(set_status(p, ST_FEAT, &now), "SET_STATUS FEATURES_OK");
	if (!(now & XVL_STATUS_FEATURES_OK))
		h_die("FEATURES_OK not accepted (0x%x)", now);
}

/* SET_QUEUE 0 with the given flags and fds (kick, call); the ring is fresh. */
static int set_queue(struct peer *p, uint32_t flags, int kick, int call_efd)
{
	struct xvl_vq_layout l = {.num = NUM, .desc = DESC, .avail = AVAIL, .used = USED};
	must(xvl_vq_drv_init(&p->vq, &p->mem, &l, false, 0, 0, p->priv), "driver ring init");
	struct xvl_msg req = {.type = XVL_MSG_SET_QUEUE}, rep;
	req.u.queue = (struct xvl_m_queue){.dev = p->dev, .queue = 0, .num = NUM, .flags = flags,
					   .desc = DESC, .avail = AVAIL, .used = USED};
	int fds[2] = {kick, call_efd};
	return call(p, &req, fds, flags & XVL_QUEUE_F_POLL ? 0 : 2, &rep);
}

/* Features, a queue with fresh eventfds (or POLL), DRIVER_OK. */
static void setup(struct peer *p, bool poll)
{
	features(p);
	if (!poll) {
		if (p->kick >= 0)
			close(p->kick);
		if (p->call >= 0)
			close(p->call);
		p->kick = xvl_os_eventfd();
		p->call = xvl_os_eventfd();
	}
	must(set_queue(p, XVL_QUEUE_F_ENABLE | (poll ? XVL_QUEUE_F_POLL : 0), p->kick, p->call),
	     "SET_QUEUE");
	uint32_t now;
	must(set_status(p, ST_OK, &now), "SET_STATUS DRIVER_OK");
	if (!(now & XVL_STATUS_DRIVER_OK))
		h_die("DRIVER_OK not accepted (0x%x)", now);
}

/* Queue one request of type at sector with len data bytes at DATA (token = head slot). */
static int submit(struct peer *p, uint32_t type, uint64_t sector, uint32_t len, uint64_t token)
{
	uint64_t hdr = REQ + 64 * (token % 256), st = STATUS + token % 256;
	struct xvl_blk_outhdr bh = {.type = xvl_le32(type), .sector = xvl_le64(sector)};
	memcpy(p->mem.base + hdr, &bh, sizeof(bh));
	p->mem.base[st] = 0xff;
	struct xvl_sg sg[3] = {{hdr, 16}, {DATA, len}, {st, 1}};
	bool out = type == XVL_BLK_T_OUT;
	if (!len) {
		sg[1] = sg[2];
		return xvl_vq_drv_add(&p->vq, sg, 1, 1, token);
	}
	return xvl_vq_drv_add(&p->vq, sg, out ? 2 : 1, out ? 1 : 2, token);
}

/* Wait for one completion; 1 with token and the raw used length, 0 on timeout, -EIO when the ring broke. */
static int wait_used(struct peer *p, uint64_t *token, uint32_t *len, int ms)
{
	uint64_t deadline = xvl_os_now_ns() + (uint64_t)ms * 1000000ull;
	for (;;) {
		int rc = xvl_vq_drv_get_used(&p->vq, token, len);
		if (rc == 1) /* what the device wrote, before the driver's clamp */
			*len = xvl_rd32(&p->vq.used->ring[(uint16_t)(p->vq.last_used - 1) & (NUM - 1)].len);
		if (rc != 0)
			return rc;
		if (xvl_os_now_ns() > deadline)
			return 0;
		usleep(1000);
	}
}

static void kick(struct peer *p)
{
	if (p->kick >= 0)
		xvl_os_eventfd_signal(p->kick);
}

/* One read through the live queue must complete OK within WAIT_MS. */
static bool good_io(struct peer *p, const char *what)
{
	uint64_t tok;
	uint32_t len;
	if (submit(p, XVL_BLK_T_IN, 0, 4096, 7) < 0) {
		result(false, what, "cannot queue a request");
		return false;
	}
	kick(p);
	int rc = wait_used(p, &tok, &len, WAIT_MS);
	if (rc != 1 || tok != 7 || p->mem.base[STATUS + 7] != XVL_BLK_S_OK) {
		result(false, what, "request %s (rc %d, status %u)",
		       rc == 0 ? "never completed" : "failed", rc, p->mem.base[STATUS + 7]);
		return false;
	}
	return true;
}

/* A second connection's HELLO must be answered within ms. */
static void second_client_hello(int ms, const char *what)
{
	struct peer q = {0};
	peer_connect(&q);
	uint64_t t0 = xvl_os_now_ns();
	int rc = ({
		struct xvl_msg req = {.type = XVL_MSG_HELLO}, rep;
		req.u.hello.major = XVL_PROTO_MAJOR;
		snprintf(req.u.hello.name, sizeof(req.u.hello.name), "bystander");
		call_fd(&q, &req, NULL, 0, &rep, ms);
	});
	unsigned took = (unsigned)((xvl_os_now_ns() - t0) / 1000000);
	result(rc == 0, what, "HELLO of another client: %s after %u ms",
	       rc == -ETIMEDOUT ? "no reply" : strerror(-rc), took);
	close(q.sock);
}

static void hold(unsigned secs)
{
	printf("READY\n");
	fflush(stdout);
	sleep(secs);
}

/* ---------------------------------------------------------------- cases */

/* Item 10: DRIVER_OK cleared without a reset, then set again. */
static void case_toggle(unsigned secs)
{
	struct peer p = {0};
	attach(&p, 1);
	setup(&p, true);
	uint32_t now = 0;
	int rc = set_status(&p, ST_FEAT, &now);
	result(rc == -EPERM, "SET_STATUS clearing DRIVER_OK without a reset refused (EPERM)",
	       "rc %d, status now 0x%x", rc, now);
	for (int i = 0; i < 3; i++) {
		set_status(&p, ST_FEAT, NULL);
		set_status(&p, ST_OK, NULL);
	}
	rc = set_status(&p, ST_OK, &now);
	result(rc == 0 && (now & XVL_STATUS_DRIVER_OK) && !(now & XVL_STATUS_NEEDS_RESET),
	       "SET_STATUS DRIVER_OK again while running is accepted and changes nothing",
	       "rc %d, status 0x%x", rc, now);
	if (good_io(&p, "the poll queue serves after the toggles"))
		result(true, "the poll queue serves after the toggles", " ");
	close(p.sock); /* the server resets the device: no poll queue is left */
	hold(secs);
}

/* Item 20: SET_STATUS 0xb/0xf toggles followed by DETACH. */
static void case_toggle_detach(unsigned secs)
{
	struct peer p = {0};
	attach(&p, 1);
	setup(&p, true);
	for (int i = 0; i < 4; i++) {
		set_status(&p, ST_FEAT, NULL);
		set_status(&p, ST_OK, NULL);
	}
	int rc = simple(&p, XVL_MSG_DETACH);
	result(rc == 0, "DETACH after SET_STATUS 0xb/0xf toggles", "rc %d", rc);
	hold(secs); /* the link stays open: only the detached device is gone */
	close(p.sock);
}

/*
 * Item 11: SET_STATUS 0 while a FLUSH (fsync of many dirty pages) is in
 * flight must behave like RESET: the reply waits for it, after which the
 * device can be set up again at once.
 */
static void case_reset_inflight(const char *file)
{
	struct peer p = {0};
	int fd = open(file, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		h_die("open %s: %s", file, strerror(errno));
	static uint8_t junk[1 << 20];
	for (unsigned i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 13 + 1);
	attach(&p, 0);
	setup(&p, false);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 48; i++) /* 48 MiB of dirty pages for the FLUSH to write */
			if (pwrite(fd, junk, sizeof(junk), (off_t)i << 20) < 0)
				h_die("pwrite: %s", strerror(errno));
		submit(&p, XVL_BLK_T_FLUSH, 0, 0, 1);
		for (uint64_t t = 2; t < 40; t++)
			submit(&p, XVL_BLK_T_IN, t * 2048, 1u << 20, t);
		kick(&p);
		usleep(2000);
		uint64_t t0 = xvl_os_now_ns();
		int rc = set_status(&p, 0, NULL);
		unsigned took = (unsigned)((xvl_os_now_ns() - t0) / 1000);
		if (rc != 0) {
			result(false, "SET_STATUS 0 with I/O in flight", "rc %d", rc);
			break;
		}
		printf("# SET_STATUS 0 answered after %u us\n", took);
		/* set up again at once, on fresh rings */
		features(&p);
		p.kick = xvl_os_eventfd();
		p.call = xvl_os_eventfd();
		rc = set_queue(&p, XVL_QUEUE_F_ENABLE, p.kick, p.call);
		if (rc != 0) {
			result(false, "set up again right after SET_STATUS 0 (treated like RESET)",
			       "SET_QUEUE: %s (a request of before the reset was still in flight)",
			       strerror(-rc));
			break;
		}
		must(set_status(&p, ST_OK, NULL), "DRIVER_OK");
		if (!good_io(&p, "set up again right after SET_STATUS 0 (treated like RESET)"))
			break;
		usleep(300 * 1000); /* any stale completion lands now */
		if (!good_io(&p, "set up again right after SET_STATUS 0 (treated like RESET)"))
			break;
		if (p.broken) {
			result(false, "set up again right after SET_STATUS 0 (treated like RESET)",
			       "device broken: %s", p.broken_msg);
			break;
		}
		if (round == 2)
			result(true, "set up again right after SET_STATUS 0 (treated like RESET), 3 rounds",
			       " ");
	}
	close(fd);
	close(p.sock);
}

/* SET_QUEUE without ENABLE: the queue is not served. */
static void case_enable_flag(void)
{
	struct peer p = {0};
	const char *what = "a queue set without ENABLE is not served after DRIVER_OK";
	attach(&p, 1);
	features(&p);
	p.kick = xvl_os_eventfd();
	p.call = xvl_os_eventfd();
	must(set_queue(&p, 0, p.kick, p.call), "SET_QUEUE without ENABLE");
	must(set_status(&p, ST_OK, NULL), "DRIVER_OK");
	uint64_t tok;
	uint32_t len;
	submit(&p, XVL_BLK_T_IN, 0, 4096, 3);
	kick(&p);
	int rc = wait_used(&p, &tok, &len, 300);
	result(rc == 0, what, "it was served (rc %d)", rc);
	/* with ENABLE after a reset it is */
	must(simple(&p, XVL_MSG_RESET), "RESET");
	setup(&p, false);
	if (good_io(&p, "the same queue set with ENABLE is served"))
		result(true, "the same queue set with ENABLE is served", " ");
	close(p.sock);
}

/* Item 17: a client that never reads its replies. */
static void case_unread(void)
{
	struct peer p = {0};
	peer_connect(&p);
	must(hello_on(&p, XVL_PROTO_MAJOR, "never-reads"), "HELLO");
	uint8_t buf[XVL_MSG_MAX_SIZE];
	struct xvl_msg m = {.type = XVL_MSG_DEV_INFO};
	unsigned sent = 0;
	uint64_t until = xvl_os_now_ns() + 1500000000ull;
	while (sent < 50000 && xvl_os_now_ns() < until) {
		m.seq = ++p.seq;
		int n = xvl_msg_encode(&m, buf, sizeof(buf));
		ssize_t w = send(p.sock, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno == EAGAIN) {
			usleep(1000);
			continue;
		}
		if (w < 0)
			break;
		sent++;
	}
	printf("# sent %u DEV_INFO requests without reading a reply\n", sent);
	second_client_hello(1000, "another client is served while one never reads its link");
	/* the never-reading client is either still served or dropped, never the others */
	struct xvl_msg rep;
	int rc = h_recv(p.sock, &rep, 1000, NULL, NULL);
	printf("# the flooding client: %s\n", rc == 1 ? "its replies arrive" : "link dropped");
	close(p.sock);
	second_client_hello(1000, "another client is served after the flood");
}

/*
 * Item 18: call fds that would block the server's write.  variant 0: a
 * blocking eventfd at its maximum from the start; 1: a non-blocking one the
 * peer makes blocking (shared open file description) and fills; 2: a
 * non-blocking one at its maximum (EAGAIN: the wakeup is pending, nothing
 * to do, no spinning, the device keeps working).
 */
static void case_callfd(int variant, unsigned secs)
{
	struct peer p = {0};
	attach(&p, 1);
	features(&p);
	p.kick = xvl_os_eventfd();
	int callfd = variant == 0 ? eventfd(0, EFD_CLOEXEC) : xvl_os_eventfd();
	uint64_t big = 0xfffffffffffffffeull;
	if (variant != 1 && write(callfd, &big, sizeof(big)) != sizeof(big))
		h_die("eventfd write: %s", strerror(errno));
	int rc = set_queue(&p, XVL_QUEUE_F_ENABLE, p.kick, callfd);
	if (rc < 0) {
		result(true, "call eventfd accepted or refused", " ");
		printf("# SET_QUEUE refused: %s\n", strerror(-rc));
	} else {
		must(set_status(&p, ST_OK, NULL), "DRIVER_OK");
		if (variant == 1) { /* the shared open file description: clear O_NONBLOCK, fill it */
			fcntl(callfd, F_SETFL, 0);
			if (write(callfd, &big, sizeof(big)) != sizeof(big))
				h_die("eventfd write: %s", strerror(errno));
		}
		unsigned done = 0;
		for (int i = 0; i < 8; i++) {
			uint64_t tok;
			uint32_t len;
			submit(&p, XVL_BLK_T_IN, 0, 512, (uint64_t)i);
			kick(&p);
			done += wait_used(&p, &tok, &len, 200) == 1;
		}
		struct xvl_msg req = {.type = XVL_MSG_GET_STATUS}, rep;
		req.u.dev.dev = p.dev;
		rc = call(&p, &req, NULL, 0, &rep);
		uint32_t st = rc == 0 ? rep.u.st.status : 0;
		if (variant == 2)
			result(done == 8 && !(st & XVL_STATUS_NEEDS_RESET),
			       "a non-blocking call eventfd at its maximum: requests still complete, "
			       "device not broken", "%u of 8 completed, status 0x%x", done, st);
		else
			result((st & XVL_STATUS_NEEDS_RESET) && p.broken,
			       "a call eventfd that blocks breaks its device (EVENT BROKEN, NEEDS_RESET)",
			       "status 0x%x, event %s", st, p.broken ? p.broken_msg : "none");
		if (p.broken)
			printf("# EVENT BROKEN: %s\n", p.broken_msg);
		if (p.broken)
			result(p.event_seq == 0 && p.event_flags == 0 && p.event_while_waiting,
			       "the EVENT has seq 0 and flags 0 and came while a reply was awaited",
			       "seq %u flags 0x%x", p.event_seq, p.event_flags);
	}
	if (variant == 2) {
		hold(secs);
		close(p.sock);
		close(callfd);
		return;
	}
	second_client_hello(1000, variant == 0 ?
		"another client is served while a call eventfd sits at its maximum (blocking)" :
		"another client is served after the peer cleared O_NONBLOCK on its call eventfd");
	close(p.sock);
	close(callfd);
	second_client_hello(1000, "and after that client is gone");
}

static void case_callfd_pipe(void)
{
	struct peer p = {0};
	int pp[2];
	attach(&p, 1);
	features(&p);
	p.kick = xvl_os_eventfd();
	if (pipe2(pp, O_CLOEXEC) < 0)
		h_die("pipe: %s", strerror(errno));
	int rc = set_queue(&p, XVL_QUEUE_F_ENABLE, p.kick, pp[1]);
	result(rc == -EINVAL, "a pipe as call fd refused (EINVAL)", "rc %d", rc);
	int ev = xvl_os_eventfd();
	rc = set_queue(&p, XVL_QUEUE_F_ENABLE, pp[0], ev);
	result(rc == -EINVAL, "a pipe as kick fd refused (EINVAL)", "rc %d", rc);
	int tfd = memfd_create("not-an-eventfd", MFD_CLOEXEC);
	rc = set_queue(&p, XVL_QUEUE_F_ENABLE, tfd, ev);
	result(rc == -EINVAL, "a memfd as kick fd refused (EINVAL)", "rc %d", rc);
	close(p.sock);
}

/* Item 19: a hung-up pipe as kick fd. */
static void case_kickfd_hup(unsigned secs)
{
	struct peer p = {0};
	int pp[2];
	attach(&p, 1);
	features(&p);
	if (pipe2(pp, O_CLOEXEC) < 0)
		h_die("pipe: %s", strerror(errno));
	close(pp[1]); /* hung up */
	p.call = xvl_os_eventfd();
	int rc = set_queue(&p, XVL_QUEUE_F_ENABLE, pp[0], p.call);
	result(rc == -EINVAL, "a hung-up pipe as kick fd refused (EINVAL)", "rc %d", rc);
	if (rc == 0)
		set_status(&p, ST_OK, NULL);
	hold(secs);
	close(p.sock);
}

/*
 * Connection limit: 256 connections are served; the 257th is closed at once,
 * the others keep working; once one goes, a new one is served again.
 */
static void case_conn_limit(void)
{
	static struct peer p[257];
	unsigned n = 0;
	for (; n < 256; n++) {
		peer_connect(&p[n]);
		if (hello_on(&p[n], XVL_PROTO_MAJOR, "many") != 0)
			break;
	}
	result(n == 256, "256 connections served at once", "only %u", n);
	peer_connect(&p[256]);
	int rc = hello_on(&p[256], XVL_PROTO_MAJOR, "one-too-many");
	result(rc == -ENOTCONN || rc == -ECONNRESET || rc == -EPIPE,
	       "the 257th connection is closed by the server", "rc %d", rc);
	close(p[256].sock);
	struct xvl_msg req = {.type = XVL_MSG_GET_STATS}, rep;
	rc = call(&p[17], &req, NULL, 0, &rep);
	result(rc == 0, "the others keep working", "rc %d", rc);
	close(p[0].sock);
	usleep(100000);
	peer_connect(&p[256]);
	rc = hello_on(&p[256], XVL_PROTO_MAJOR, "after-one-left");
	result(rc == 0, "after one left, a new connection is served", "rc %d", rc);
	for (unsigned i = 1; i <= 256; i++)
		close(p[i].sock);
}

/* HELLO timeout: a connection that says nothing is closed after 10 s. */
static void case_hello_timeout(void)
{
	struct peer p = {0}, q = {0};
	struct xvl_msg m;
	peer_connect(&p);
	peer_connect(&q);
	must(hello_on(&q, XVL_PROTO_MAJOR, "talks"), "HELLO");
	uint64_t t0 = xvl_os_now_ns();
	int rc = h_recv(p.sock, &m, 14000, NULL, NULL);
	unsigned took = (unsigned)((xvl_os_now_ns() - t0) / 1000000);
	result(rc == -ENOTCONN && took >= 9000 && took <= 12500,
	       "a connection without HELLO is closed after 10 s", "rc %d after %u ms", rc, took);
	struct xvl_msg req = {.type = XVL_MSG_GET_STATS}, rep;
	rc = call(&q, &req, NULL, 0, &rep);
	result(rc == 0, "a connection that said HELLO is kept", "rc %d", rc);
	close(p.sock);
	close(q.sock);
}

/*
 * avail_base / used_base: the device reads the available ring from entry
 * avail_base on and writes used entries from used_base on; different values
 * (chains in flight the device has no record of) are refused.
 */
static void case_bases(void)
{
	struct peer p = {0};
	attach(&p, 1);
	features(&p);
	memset(p.mem.base + DESC, 0, USED + 0x1000 - DESC);
	/* rings as a driver resuming at 9 has them: both indices at 9 */
	xvl_wr16(&((struct xvl_vring_avail *)(p.mem.base + AVAIL))->idx, 9);
	xvl_wr16(&((struct xvl_vring_used *)(p.mem.base + USED))->idx, 9);
	p.kick = xvl_os_eventfd();
	p.call = xvl_os_eventfd();
	struct xvl_msg req = {.type = XVL_MSG_SET_QUEUE}, rep;
	req.u.queue = (struct xvl_m_queue){.dev = p.dev, .queue = 0, .num = NUM,
					   .flags = XVL_QUEUE_F_ENABLE, .avail_base = 5,
					   .used_base = 9, .desc = DESC, .avail = AVAIL, .used = USED};
	int fds[2] = {p.kick, p.call};
	int rc = call(&p, &req, fds, 2, &rep);
	result(rc == -EINVAL, "avail_base 5 with used_base 9 refused (EINVAL)", "rc %d", rc);
	req.u.queue.avail_base = 9;
	must(call(&p, &req, fds, 2, &rep), "SET_QUEUE with bases 9/9");
	must(set_status(&p, ST_OK, NULL), "DRIVER_OK");
	/* one read chain at head 3: header, 512 bytes, status */
	struct xvl_vring_desc *d = (struct xvl_vring_desc *)(p.mem.base + DESC);
	struct xvl_blk_outhdr bh = {.type = xvl_le32(XVL_BLK_T_IN)};
	memcpy(p.mem.base + REQ, &bh, sizeof(bh));
	p.mem.base[STATUS] = 0xff;
	d[3] = (struct xvl_vring_desc){.addr = REQ, .len = 16, .flags = XVL_VRING_DESC_F_NEXT, .next = 4};
	d[4] = (struct xvl_vring_desc){.addr = DATA, .len = 512,
				       .flags = XVL_VRING_DESC_F_NEXT | XVL_VRING_DESC_F_WRITE, .next = 5};
	d[5] = (struct xvl_vring_desc){.addr = STATUS, .len = 1, .flags = XVL_VRING_DESC_F_WRITE};
	struct xvl_vring_avail *av = (struct xvl_vring_avail *)(p.mem.base + AVAIL);
	struct xvl_vring_used *us = (struct xvl_vring_used *)(p.mem.base + USED);
	av->ring[9] = 3;
	xvl_wr16_release(&av->idx, 10);
	kick(&p);
	uint64_t until = xvl_os_now_ns() + 2000000000ull;
	while (xvl_rd16_acquire(&us->idx) != 10 && !p.broken && xvl_os_now_ns() < until)
		usleep(1000);
	uint16_t idx = xvl_rd16_acquire(&us->idx);
	result(idx == 10 && us->ring[9].id == 3 && us->ring[9].len == 513 &&
		       p.mem.base[STATUS] == XVL_BLK_S_OK,
	       "avail_base = used_base = 9: avail entry 9 served, used entry 9 written, used.idx 10",
	       "used.idx %u, used[9] id %u len %u, status %u", idx, us->ring[9].id,
	       us->ring[9].len, p.mem.base[STATUS]);
	close(p.sock);
}

/* ---------------------------------------------------------------- protocol pins */

static void case_proto(void)
{
	struct peer p = {0};
	struct xvl_msg req, rep;
	int rc;

	/* a refused HELLO leaves the connection unusable */
	peer_connect(&p);
	rc = hello_on(&p, 99, "v99");
	result(rc == -EPROTONOSUPPORT, "HELLO major 99 refused (EPROTONOSUPPORT)", "rc %d", rc);
	rc = hello_on(&p, XVL_PROTO_MAJOR, "then-v1");
	result(rc == -EPROTO, "HELLO 1.0 after a refused HELLO refused (EPROTO): link unusable",
	       "rc %d", rc);
	close(p.sock);

	/* a second HELLO on a working link */
	peer_connect(&p);
	must(hello_on(&p, XVL_PROTO_MAJOR, "twice"), "HELLO");
	rc = hello_on(&p, XVL_PROTO_MAJOR, "twice");
	result(rc == -EALREADY, "a second HELLO refused (EALREADY)", "rc %d", rc);

	/* HELLO reply: our minor, caps POLL */
	close(p.sock);
	peer_connect(&p);
	req = (struct xvl_msg){.type = XVL_MSG_HELLO};
	req.u.hello.major = XVL_PROTO_MAJOR;
	req.u.hello.minor = 7; /* a later minor: the server answers with its own */
	req.u.hello.caps = 0xffffffffu;
	rc = call(&p, &req, NULL, 0, &rep);
	result(rc == 0 && rep.u.hello.minor == XVL_PROTO_MINOR && rep.u.hello.caps == XVL_CAP_POLL,
	       "HELLO 1.7 with unknown caps accepted; reply minor 0, caps POLL",
	       "rc %d minor %u caps 0x%x", rc, rep.u.hello.minor, rep.u.hello.caps);

	/* a descriptor on a message that takes none: refused with EBADMSG, link kept */
	int stray = xvl_os_eventfd();
	req = (struct xvl_msg){.type = XVL_MSG_GET_STATS};
	rc = call(&p, &req, &stray, 1, &rep);
	result(rc == -EBADMSG, "a descriptor on GET_STATS refused (EBADMSG)", "rc %d", rc);
	req = (struct xvl_msg){.type = XVL_MSG_GET_STATS};
	rc = call(&p, &req, NULL, 0, &rep);
	result(rc == 0, "the link works after that refusal", "rc %d", rc);
	close(stray);

	/* a client-sent EVENT */
	req = (struct xvl_msg){.type = XVL_MSG_EVENT};
	rc = call(&p, &req, NULL, 0, &rep);
	result(rc == -EOPNOTSUPP, "a client-sent EVENT answered EOPNOTSUPP", "rc %d", rc);

	/* reserved fields are ignored: SET_FEATURES' second word (on an unattached device:
	 * the answer is the -EPERM of the device check, not a closed link) */
	{
		uint8_t raw[XVL_MSG_MAX_SIZE];
		req = (struct xvl_msg){.type = XVL_MSG_SET_FEATURES, .seq = ++p.seq};
		int n = xvl_msg_encode(&req, raw, sizeof(raw));
		raw[16 + 4] = 0x5a;
		xvl_os_send(p.sock, raw, (size_t)n, NULL, 0);
		rc = h_recv(p.sock, &rep, WAIT_MS, NULL, NULL);
		result(rc == 1 && rep.status == -EPERM,
		       "a non-zero reserved word (SET_FEATURES) is ignored, not malformed",
		       "rc %d status %d", rc, rep.status);
	}

	/* SET_CONFIG */
	req = (struct xvl_msg){.type = XVL_MSG_SET_CONFIG};
	req.u.cfg.len = 4;
	rc = call(&p, &req, NULL, 0, &rep);
	result(rc == -EPERM, "SET_CONFIG refused (EPERM)", "rc %d", rc);

	/* a SET_CONFIG longer than 256 bytes is malformed: the link closes */
	{
		struct peer o = {0};
		uint8_t raw[XVL_MSG_MAX_SIZE];
		peer_connect(&o);
		must(hello_on(&o, XVL_PROTO_MAJOR, "long-config"), "HELLO");
		req = (struct xvl_msg){.type = XVL_MSG_SET_CONFIG, .seq = 9};
		req.u.cfg.len = 256;
		int n = xvl_msg_encode(&req, raw, sizeof(raw));
		raw[16 + 8] = 1; /* len 257 (one byte more than sent: wrong either way) */
		raw[16 + 9] = 1;
		xvl_os_send(o.sock, raw, (size_t)n, NULL, 0);
		rc = h_recv(o.sock, &rep, WAIT_MS, NULL, NULL);
		result(rc == -ENOTCONN || rc == -ECONNRESET,
		       "a SET_CONFIG with len over 256 is malformed: the link closes", "rc %d", rc);
		close(o.sock);
	}

	/* a window with a wrong major, then a good one on the same link (retry allowed) */
	make_window(&p);
	uint16_t *major = (uint16_t *)(p.mem.base + 4);
	*major = 2;
	req = (struct xvl_msg){.type = XVL_MSG_SET_WINDOW};
	req.u.window.size = WIN_SIZE;
	rc = call(&p, &req, &p.memfd, 1, &rep);
	result(rc == -EPROTONOSUPPORT, "a window of major version 2 refused (EPROTONOSUPPORT)",
	       "rc %d", rc);
	*major = 1;
	rc = call(&p, &req, &p.memfd, 1, &rep);
	result(rc == 0, "SET_WINDOW retried after a refusal is accepted", "rc %d", rc);
	close(p.sock);
	munmap(p.mem.base, WIN_SIZE);
	close(p.memfd);

	/* SET_STATUS transitions */
	attach(&p, 1);
	uint32_t now;
	rc = set_status(&p, XVL_STATUS_ACKNOWLEDGE | XVL_STATUS_NEEDS_RESET, &now);
	result(rc == -EINVAL, "SET_STATUS with NEEDS_RESET from the driver refused (EINVAL)",
	       "rc %d", rc);
	rc = set_status(&p, XVL_STATUS_ACKNOWLEDGE | 0x10, &now);
	result(rc == -EINVAL, "SET_STATUS with an unknown bit (0x10) refused (EINVAL)", "rc %d",
	       rc);
	must(set_status(&p, ST_BASE, NULL), "ACK|DRIVER");
	rc = set_status(&p, ST_BASE | XVL_STATUS_DRIVER_OK, &now);
	result(rc == -EPERM, "DRIVER_OK without FEATURES_OK refused (EPERM)", "rc %d", rc);
	rc = set_status(&p, XVL_STATUS_ACKNOWLEDGE, &now);
	result(rc == -EPERM, "SET_STATUS clearing DRIVER refused (EPERM)", "rc %d", rc);
	must(simple(&p, XVL_MSG_RESET), "RESET");
	setup(&p, false);
	rc = set_queue(&p, XVL_QUEUE_F_ENABLE, p.kick, p.call);
	result(rc == -EPERM, "SET_QUEUE after DRIVER_OK refused (EPERM)", "rc %d", rc);
	rc = set_status(&p, ST_OK | XVL_STATUS_FAILED, &now);
	result(rc == 0 && (now & XVL_STATUS_FAILED), "SET_STATUS FAILED accepted", "rc %d", rc);
	submit(&p, XVL_BLK_T_IN, 0, 512, 9);
	kick(&p);
	uint64_t tok;
	uint32_t len;
	rc = wait_used(&p, &tok, &len, 300);
	result(rc == 0, "a FAILED device serves no more requests", "rc %d", rc);
	must(set_status(&p, 0, NULL), "SET_STATUS 0");
	/* rings in the window header page */
	features(&p);
	req = (struct xvl_msg){.type = XVL_MSG_SET_QUEUE};
	req.u.queue = (struct xvl_m_queue){.dev = p.dev, .num = 16, .flags = XVL_QUEUE_F_ENABLE |
					   XVL_QUEUE_F_POLL, .desc = 0x100, .avail = 0x300,
					   .used = 0x400};
	rc = call(&p, &req, NULL, 0, &rep);
	result(rc == -EINVAL, "rings in the window header page refused (EINVAL)", "rc %d", rc);
	close(p.sock);
}

/* Used lengths and answers of the virtio-blk model (device 0: a 64 MiB file). */
static void case_blk(void)
{
	struct peer p = {0};
	uint64_t tok;
	uint32_t len;
	attach(&p, 0);
	setup(&p, false);
	struct {
		const char *what;
		uint32_t type;
		uint64_t sector;
		uint32_t len;
		uint8_t status;
		uint32_t used;
	} t[] = {
		{"a read past the capacity: IOERR, used length 1 (status byte only)", XVL_BLK_T_IN,
		 (64u << 20) / 512 - 1, 4096, XVL_BLK_S_IOERR, 1},
		{"a good read of 4 KiB: used length 4097", XVL_BLK_T_IN, 0, 4096, XVL_BLK_S_OK,
		 4097},
		{"an unknown request type: UNSUPP, used length 1", 99, 0, 512, XVL_BLK_S_UNSUPP, 1},
		{"GET_ID: used length 21, the device name", XVL_BLK_T_GET_ID, 0, 20, XVL_BLK_S_OK,
		 21},
	};
	for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		submit(&p, t[i].type, t[i].sector, t[i].len, i);
		kick(&p);
		int rc = wait_used(&p, &tok, &len, WAIT_MS);
		uint8_t st = p.mem.base[STATUS + i];
		result(rc == 1 && st == t[i].status && len == t[i].used, t[i].what,
		       "rc %d status %u used length %u", rc, st, len);
	}
	char id[21] = {0};
	memcpy(id, p.mem.base + DATA, 20);
	result(!strcmp(id, "f0"), "GET_ID names the device", "got '%s'", id);
	/* DISCARD with the unmap flag: a readable segment with the range */
	uint64_t hdr = REQ, seg = REQ + 64, st = STATUS + 40;
	struct xvl_blk_outhdr bh = {.type = xvl_le32(XVL_BLK_T_DISCARD)};
	struct xvl_blk_dwz z = {.sector = xvl_le64(8), .num_sectors = xvl_le32(8),
				.flags = xvl_le32(1)};
	memcpy(p.mem.base + hdr, &bh, sizeof(bh));
	memcpy(p.mem.base + seg, &z, sizeof(z));
	struct xvl_sg sg[3] = {{hdr, 16}, {seg, sizeof(z)}, {st, 1}};
	xvl_vq_drv_add(&p.vq, sg, 2, 1, 40);
	kick(&p);
	int rc = wait_used(&p, &tok, &len, WAIT_MS);
	result(rc == 1 && p.mem.base[st] == XVL_BLK_S_OK && len == 1,
	       "DISCARD with the unmap flag: OK, used length 1", "rc %d status %u used length %u",
	       rc, p.mem.base[st], len);
	close(p.sock);
}

int main(int argc, char **argv)
{
	h_prog = "server_attack";
	if (argc < 3) {
		h_log("usage: server_attack SOCKET CASE [HOLD_SECONDS [FILE]]");
		return 2;
	}
	sock_path = argv[1];
	const char *c = argv[2];
	unsigned secs = argc > 3 ? (unsigned)atoi(argv[3]) : 2;
	if (!strcmp(c, "toggle"))
		case_toggle(secs);
	else if (!strcmp(c, "toggle_detach"))
		case_toggle_detach(secs);
	else if (!strcmp(c, "reset_inflight") && argc > 4)
		case_reset_inflight(argv[4]);
	else if (!strcmp(c, "enable_flag"))
		case_enable_flag();
	else if (!strcmp(c, "unread"))
		case_unread();
	else if (!strcmp(c, "callfd_full"))
		case_callfd(0, secs);
	else if (!strcmp(c, "callfd_flip"))
		case_callfd(1, secs);
	else if (!strcmp(c, "callfd_max"))
		case_callfd(2, secs);
	else if (!strcmp(c, "callfd_pipe"))
		case_callfd_pipe();
	else if (!strcmp(c, "kickfd_hup"))
		case_kickfd_hup(secs);
	else if (!strcmp(c, "conn_limit"))
		case_conn_limit();
	else if (!strcmp(c, "hello_timeout"))
		case_hello_timeout();
	else if (!strcmp(c, "bases"))
		case_bases();
	else if (!strcmp(c, "proto"))
		case_proto();
	else if (!strcmp(c, "blk"))
		case_blk();
	else
		h_die("unknown case %s", c);
	return failures ? 1 : 0;
}
