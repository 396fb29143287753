/* SPDX-License-Identifier: MIT */
/*
 * A hostile virtio-net DEVICE: a fake xvloop server with one net device
 * "evil" (rx, tx and control queue; MAC, MTU, STATUS, MRG_RXBUF, CTRL_VQ,
 * CTRL_RX, checksum offload; no TSO).  It sends every frame the driver
 * transmits back on the receive queue (a mirror), and per CASE misbehaves:
 *
 *   good        mirrors faithfully
 *   nb_zero     the first 3 frames come back with num_buffers 0
 *   nb_big      ... with num_buffers 300 (more than the ring holds)
 *   nb_lie      the first frame says num_buffers 3 in a single buffer
 *   len_big     the first 3: used length beyond the buffer (buffer + 100)
 *   len_short   the first 3: used length 4 (shorter than the header)
 *   bad_hdr     the first 3: gso_type TCPV4, which was not negotiated
 *   flood       fills every receive buffer it is given with 60-byte frames for 1.5 s
 *   used_id     the first frame comes back under an id the driver never used
 *   link_flap   after DRIVER_OK: link down (EVENT CONFIG), 300 ms later up again
 *   restart     400 ms after mirroring 6 frames: EVENT RESTART, then serves the set-up again
 *   mtu_small   config MTU 10            (open must fail)
 *   pairs_big   MQ with max_virtqueue_pairs 50 but 3 queues (open must fail)
 *   mcast_mac   a multicast MAC          (open must fail)
 *   ctrl_silent never answers the control queue
 *
 * It checks nothing itself: tests/hostile/net_hostile_client.c does.
 *
 *   net_hostile_device SOCKET CASE
 *   net_hostile_device --window PATH CASE...
 *
 * With --window it is the device side of the mailbox link in the window
 * file PATH (PROTOCOL.md section 7, polled queues) for a driver that formats
 * the window itself, such as xvl_virtio.ko with virtio_net in a guest
 * (tests/e2e/kmod_net_hostile.sh); each format of the window takes the next
 * CASE.  It runs until killed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "hostile_common.h"
#include "mailbox.h"
#include "net.h"
#include "virtio_blk.h"
#include "virtq.h"
#include "window.h"
#include "xvl_atomic.h"

#define NSEG 8u
#define NQ   3u

enum ncase { C_GOOD, C_NB_ZERO, C_NB_BIG, C_NB_LIE, C_LEN_BIG, C_LEN_SHORT, C_BAD_HDR, C_FLOOD,
	     C_USED_ID, C_LINK_FLAP, C_MTU_SMALL, C_PAIRS_BIG, C_MCAST_MAC, C_RESTART,
	     C_CTRL_SILENT };
static const char *const names[] = {"good", "nb_zero", "nb_big", "nb_lie", "len_big",
				    "len_short", "bad_hdr", "flood", "used_id", "link_flap",
				    "mtu_small", "pairs_big", "mcast_mac", "restart",
				    "ctrl_silent"};

struct fq {
	bool set;
	int kick, call;
	struct xvl_vq_dev vq;
};

struct fake {
	int sock;
	enum ncase c;
	struct xvl_os_window win;
	bool has_win;
	uint32_t status;
	bool running;
	struct fq q[NQ];
	uint16_t link;
	unsigned n_tx;
	uint64_t flood_end, flap_at;
	int flap_step;
	bool restarted;
	uint64_t restart_at;
	bool mbox_mode;         /* --window: the mailbox link, polled queues */
	struct xvl_mbox mb;
};

static void signal_call(const struct fq *q)
{
	if (q->call >= 0)
		xvl_os_eventfd_signal(q->call);
}

static void send_msg(struct fake *f, const struct xvl_msg *m)
{
	if (f->mbox_mode)
		xvl_mbox_send(&f->mb, m);
	else
		h_send(f->sock, m, NULL, 0);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void reply(struct fake *f, const struct xvl_msg *req, struct xvl_msg *rep, int status)
{
	rep->type = req->type;
	rep->flags = XVL_MSG_F_REPLY;
	rep->seq = req->seq;
	rep->status = status;
	send_msg(f, rep);
}

static void send_event(struct fake *f, uint32_t code)
{
	struct xvl_msg ev = {.type = XVL_MSG_EVENT};
	ev.u.event = (struct xvl_m_event){.dev = 0, .code = code};
	send_msg(f, &ev);
}

static uint64_t features(const struct fake *f)
{
	uint64_t v = (1ull << XVL_F_VERSION_1) | (1ull << XVL_NET_F_MAC) | (1ull << XVL_NET_F_MTU) |
		     (1ull << XVL_NET_F_STATUS) | (1ull << XVL_NET_F_MRG_RXBUF) |
		     (1ull << XVL_NET_F_CTRL_VQ) | (1ull << XVL_NET_F_CTRL_RX) |
		     (1ull << XVL_NET_F_CSUM) | (1ull << XVL_NET_F_GUEST_CSUM);
	if (f->c == C_PAIRS_BIG)
		v |= 1ull << XVL_NET_F_MQ;
	return v;
}

static void fill_config(const struct fake *f, uint8_t *cfg)
{
	static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc};
	memset(cfg, 0, XVL_NET_CFG_SIZE);
	memcpy(cfg + XVL_NET_CFG_MAC, mac, 6);
	if (f->c == C_MCAST_MAC)
		cfg[XVL_NET_CFG_MAC] = 0x01;
	cfg[XVL_NET_CFG_STATUS] = (uint8_t)f->link;
	cfg[XVL_NET_CFG_MAX_PAIRS] = f->c == C_PAIRS_BIG ? 50 : 1;
	uint16_t mtu = f->c == C_MTU_SMALL ? 10 : 1500;
	cfg[XVL_NET_CFG_MTU] = (uint8_t)mtu;
	cfg[XVL_NET_CFG_MTU + 1] = (uint8_t)(mtu >> 8);
}

static void on_msg(struct fake *f, const struct xvl_msg *m, int *fds, unsigned nfds)
{
	struct xvl_msg rep = {0};
	uint8_t cfg[XVL_NET_CFG_SIZE];
	struct xvl_errbuf eb;
	int rc = 0;
	switch (m->type) {
	case XVL_MSG_HELLO:
		rep.u.hello = (struct xvl_m_hello){.major = XVL_PROTO_MAJOR, .n_devices = 1};
		snprintf(rep.u.hello.name, sizeof(rep.u.hello.name), "net-hostile-device");
		break;
	case XVL_MSG_DEV_INFO:
		if (m->u.dev.dev != 0) {
			rc = -ENODEV;
			break;
		}
		rep.u.info = (struct xvl_m_dev_info){.dev = 0, .virtio_id = XVL_VIRTIO_ID_NET,
						     .num_queues = NQ, .max_queue_size = 256,
						     .config_len = XVL_NET_CFG_SIZE,
						     .features = features(f)};
		snprintf(rep.u.info.name, sizeof(rep.u.info.name), "evil");
		break;
	case XVL_MSG_SET_WINDOW:
		if (nfds != 1 || f->has_win) {
			rc = -EBADMSG;
			break;
		}
		rc = xvl_os_window_map(&f->win, fds[0], m->u.window.size, &eb);
		fds[0] = -1;
		f->has_win = rc == 0;
		break;
	case XVL_MSG_GET_CONFIG:
		fill_config(f, cfg);
		if (m->u.cfg.off > sizeof(cfg) || m->u.cfg.len > sizeof(cfg) - m->u.cfg.off) {
			rc = -ERANGE;
			break;
		}
		rep.u.cfg.len = m->u.cfg.len;
		memcpy(rep.u.cfg.data, cfg + m->u.cfg.off, m->u.cfg.len);
		break;
	case XVL_MSG_SET_QUEUE: {
		unsigned qi = m->u.queue.queue;
		if ((f->mbox_mode ? !(m->u.queue.flags & XVL_QUEUE_F_POLL) : nfds != 2) ||
		    !f->has_win || qi >= NQ) {
			rc = -EBADMSG;
			break;
		}
		struct fq *q = &f->q[qi];
		if (q->set) { /* set up again (after EVENT RESTART): the old rings are gone */
			if (q->kick >= 0)
				close(q->kick);
			if (q->call >= 0)
				close(q->call);
			q->kick = q->call = -1;
			q->set = false;
		}
		struct xvl_vq_layout l = {.num = m->u.queue.num, .desc = m->u.queue.desc,
					  .avail = m->u.queue.avail, .used = m->u.queue.used};
		rc = xvl_vq_dev_init(&q->vq, &f->win.mem, &l, false, true, 0, 0);
		if (rc == 0 && !f->mbox_mode) {
			q->kick = fds[0];
			q->call = fds[1];
			fds[0] = fds[1] = -1;
		}
		q->set = rc == 0;
		break;
	}
	case XVL_MSG_SET_STATUS:
		f->status = m->u.st.status;
		if ((f->status & XVL_STATUS_DRIVER_OK) && !f->running) {
			f->running = true;
			if (f->c == C_FLOOD)
				f->flood_end = now_ms() + 1500;
			if (f->c == C_LINK_FLAP)
				f->flap_at = now_ms() + 100;
		}
		if (f->status == 0)
			f->running = false;
		rep.u.st.status = f->status;
		break;
	case XVL_MSG_GET_STATUS:
		rep.u.st.status = f->status;
		break;
	case XVL_MSG_DETACH:
	case XVL_MSG_RESET:
		f->running = false;
		f->status = 0;
		break;
	default:
		break;
	}
	reply(f, m, &rep, rc);
}

/* Put one frame (data of len bytes, after a header with num_buffers nb) on the receive ring. */
static void deliver(struct fake *f, const uint8_t *data, uint32_t len, int variant)
{
	struct fq *q = &f->q[0];
	struct xvl_seg seg[NSEG];
	struct xvl_vq_elem e = {.seg = seg};
	if (!q->set || xvl_vq_dev_pop(&q->vq, &e, NSEG) != 1)
		return; /* no buffer: dropped, as a device does */
	if (e.n_in != 1 || e.seg[0].len < XVL_NET_HDR_SIZE + len) {
		xvl_vq_dev_push(&q->vq, e.head, 0);
		return;
	}
	struct xvl_net_hdr h = {.num_buffers = 1};
	uint32_t used = XVL_NET_HDR_SIZE + len;
	switch (variant) {
	case C_NB_ZERO: h.num_buffers = 0; break;
	case C_NB_BIG: h.num_buffers = 300; break;
	case C_NB_LIE: h.num_buffers = 3; break;
	case C_LEN_BIG: used = e.seg[0].len + 100; break;
	case C_LEN_SHORT: used = 4; break;
	case C_BAD_HDR:
		h.gso_type = XVL_NET_HDR_GSO_TCPV4;
		h.gso_size = 100;
		h.flags = XVL_NET_HDR_F_NEEDS_CSUM;
		h.csum_start = 34;
		h.csum_offset = 16;
		break;
	default: break;
	}
	uint8_t *p = e.seg[0].ptr;
	xvl_net_hdr_encode(&h, p);
	memcpy(p + XVL_NET_HDR_SIZE, data, len);
	if (variant == C_USED_ID) { /* an id the driver does not hold */
		struct xvl_vring_used_elem *ue = &q->vq.used->ring[q->vq.used_idx & (q->vq.num - 1)];
		xvl_wr32(&ue->id, q->vq.num + 7u);
		xvl_wr32(&ue->len, used);
		q->vq.used_idx++;
		xvl_wr16_release(&q->vq.used->idx, q->vq.used_idx);
	} else {
		xvl_vq_dev_push(&q->vq, e.head, used);
	}
	signal_call(q);
}

static void serve_tx(struct fake *f)
{
	struct fq *q = &f->q[1];
	struct xvl_seg seg[NSEG];
	static uint8_t frame[65536 + 64];
	for (int k = 0; k < 64; k++) {
		struct xvl_vq_elem e = {.seg = seg};
		if (!q->set || xvl_vq_dev_pop(&q->vq, &e, NSEG) != 1)
			return;
		uint32_t n = 0;
		for (unsigned i = 0; i < e.n_out; i++) {
			if (n + seg[i].len > sizeof(frame))
				break;
			memcpy(frame + n, seg[i].ptr, seg[i].len);
			n += seg[i].len;
		}
		xvl_vq_dev_push(&q->vq, e.head, 0);
		if (n < XVL_NET_HDR_SIZE)
			continue;
		int variant = C_GOOD;
		bool first3 = f->n_tx < 3;
		if ((f->c >= C_NB_ZERO && f->c <= C_BAD_HDR && f->c != C_NB_LIE && first3) ||
		    ((f->c == C_NB_LIE || f->c == C_USED_ID) && f->n_tx == 0))
			variant = (int)f->c;
		f->n_tx++;
		deliver(f, frame + XVL_NET_HDR_SIZE, n - XVL_NET_HDR_SIZE, variant);
	}
}

static void serve_ctrl(struct fake *f)
{
	struct fq *q = &f->q[2];
	struct xvl_seg seg[NSEG];
	struct xvl_vq_elem e = {.seg = seg};
	if (f->c == C_CTRL_SILENT)
		return; /* the driver's commands stay in the ring for good */
	while (q->set && xvl_vq_dev_pop(&q->vq, &e, NSEG) == 1) {
		if (e.n_in >= 1)
			*(uint8_t *)seg[e.n_out + e.n_in - 1].ptr = XVL_NET_OK;
		xvl_vq_dev_push(&q->vq, e.head, 1);
		signal_call(q);
	}
}

static void flood(struct fake *f)
{
	static const uint8_t junk[60] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5};
	for (int i = 0; i < 512 && xvl_vq_dev_has_avail(&f->q[0].vq); i++)
		deliver(f, junk, sizeof(junk), C_GOOD);
}

static void link_flap(struct fake *f)
{
	if (!f->flap_at || now_ms() < f->flap_at)
		return;
	f->link = f->flap_step == 0 ? 0 : XVL_NET_S_LINK_UP;
	send_event(f, XVL_EVENT_CONFIG);
	h_log("link %s", f->link ? "up" : "down");
	f->flap_at = ++f->flap_step < 2 ? now_ms() + 300 : 0;
}

/* What the device does between messages (both modes). */
static void serve(struct fake *f)
{
	serve_ctrl(f);
	serve_tx(f);
	if (f->c == C_FLOOD && now_ms() < f->flood_end)
		flood(f);
	if (f->c == C_LINK_FLAP)
		link_flap(f);
	if (f->c == C_RESTART && f->n_tx == 6 && !f->restart_at)
		f->restart_at = now_ms() + 400;
	if (f->c == C_RESTART && f->restart_at && now_ms() >= f->restart_at && !f->restarted) {
		f->restarted = true;
		f->running = false; /* until the driver says DRIVER_OK again */
		h_log("EVENT RESTART");
		send_event(f, XVL_EVENT_RESTART);
	}
}

static enum ncase case_of(const char *name)
{
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(name, names[i]))
			return (enum ncase)i;
	h_die("unknown case %s", name);
}

/*
 * --window PATH CASE...: the device side of the mailbox link in PATH, one
 * CASE per format of the window by the driver.  Never returns.
 */
static void run_window(struct fake *f, const char *path, char **cv, int cn)
{
	struct xvl_errbuf eb;
	int next = 0;

	f->mbox_mode = true;
	while (xvl_os_window_open_path(&f->win, path, 0, &eb) < 0)
		usleep(10000);
	f->has_win = true;
	for (;;) {
		if (next >= cn) {
			h_log("all cases done");
			pause();
			continue;
		}
		int rc = xvl_mbox_open(&f->mb, &f->win.mem, 0);
		if (rc == -EAGAIN || rc == -ENOENT) {
			usleep(2000);
			continue;
		}
		if (rc < 0)
			h_die("mailbox in %s: %d", path, rc);
		/* A fresh device for this format of the window, misbehaving as the next case says. */
		f->c = case_of(cv[next++]);
		f->status = 0;
		f->running = f->restarted = false;
		f->link = XVL_NET_S_LINK_UP;
		f->n_tx = 0;
		f->flood_end = f->flap_at = f->restart_at = 0;
		f->flap_step = 0;
		for (unsigned i = 0; i < NQ; i++)
			f->q[i] = (struct fq){.kick = -1, .call = -1};
		h_log("window generation %llu: case %s", (unsigned long long)f->mb.generation,
		      cv[next - 1]);
		for (;;) {
			struct xvl_msg m;
			rc = xvl_mbox_accept(&f->mb);
			if (rc == 1)
				f->running = false;
			while (rc >= 0 && (rc = xvl_mbox_recv(&f->mb, &m)) == 1)
				on_msg(f, &m, NULL, 0);
			if (rc == -ESTALE)
				break; /* formatted again: the next case */
			if (f->running)
				serve(f);
			usleep(100);
		}
	}
}

int main(int argc, char **argv)
{
	static struct fake f;
	struct xvl_errbuf eb;
	h_prog = "net_hostile_device";
	for (unsigned i = 0; i < NQ; i++)
		f.q[i] = (struct fq){.kick = -1, .call = -1};
	if (argc >= 4 && !strcmp(argv[1], "--window"))
		run_window(&f, argv[2], argv + 3, argc - 3);
	if (argc != 3)
		h_die("usage: net_hostile_device SOCKET CASE | --window PATH CASE...");
	f.c = case_of(argv[2]);
	f.link = XVL_NET_S_LINK_UP;
	int ls = xvl_os_listen(argv[1], &eb);
	if (ls < 0)
		h_die("%s", eb.msg);
	f.sock = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	if (f.sock < 0)
		h_die("accept: %s", strerror(errno));
	for (;;) {
		struct pollfd p = {.fd = f.sock, .events = POLLIN};
		if (poll(&p, 1, 1) < 0 && errno != EINTR)
			h_die("poll: %s", strerror(errno));
		if (p.revents) {
			struct xvl_msg m;
			int fds[XVL_OS_MAX_FDS];
			unsigned nfds = 0;
			int rc = h_recv(f.sock, &m, 0, fds, &nfds);
			if (rc == -ENOTCONN || rc == -ECONNRESET || (rc < 0 && (p.revents & POLLHUP)))
				break;
			if (rc == 1)
				on_msg(&f, &m, fds, nfds);
			for (unsigned i = 0; rc == 1 && i < nfds; i++)
				if (fds[i] >= 0)
					close(fds[i]);
		}
		if (f.running)
			serve(&f);
	}
	h_log("client gone");
	unlink(argv[1]);
	return 0;
}
