/* SPDX-License-Identifier: MIT */
/*
 * A hostile DEVICE peer: a fake xvloop server.
 *
 *   hostile_device SOCKET CASE
 *   hostile_device --window PATH CASE...
 *
 * Listens on SOCKET, accepts one client and answers the link protocol
 * plausibly (one virtio-blk device "evil" of 1 MiB, one queue), maps the
 * client's window and runs the device side of its queue.  Then, as CASE
 * says, it misbehaves on the used ring (see cases[] below).  It does not
 * check anything itself: tests/hostile/hostile_client.c does.  It exits
 * when the client goes away.
 *
 * With --window it is the device side of the mailbox link in the window
 * file PATH (PROTOCOL.md section 7; the queues polled), for a driver that
 * formats the window itself, such as xvl_virtio.ko in a guest
 * (tests/e2e/kmod.sh).  Each time the driver formats the window again it
 * takes the next CASE.  It serves honestly (reads return zeros) until the
 * driver writes sector TRIGGER_SECTOR, so that a kernel driver gets past
 * its probe; then it misbehaves on the first request it holds.  It runs
 * until killed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hostile_common.h"
#include "mailbox.h"
#include "virtio_blk.h"
#include "virtq.h"
#include "window.h"
#include "xvl_atomic.h"

#define CAPACITY (1u << 20)
#define NSEG     16u
#define TRIGGER_SECTOR 1024u /* --window: a write here arms the misbehaviour */

enum hcase {
	C_USED_ID_UNSUBMITTED, /* used id that was never submitted */
	C_USED_ID_OOB,         /* used id >= queue size */
	C_USED_LEN_BIG,        /* real completions whose used len exceeds the writable bytes */
	C_USED_IDX_JUMP,       /* used idx moves by more than is outstanding */
	C_DOUBLE,              /* one request completed properly, then its id again */
	C_BAD_STATUS,          /* status byte 7 on one request, the rest complete well */
	C_SILENT,              /* never completes anything; the link stays up */
	C_EVENT_BROKEN,        /* says EVENT BROKEN while requests are pending */
	C_LINK_DROP,           /* closes the link while requests are pending */
	C_GOOD,                /* behaves (control) */
};

static const struct {
	const char *name;
	enum hcase c;
} cases[] = {
	{"used_id_unsubmitted", C_USED_ID_UNSUBMITTED},
	{"used_id_oob", C_USED_ID_OOB},
	{"used_len_big", C_USED_LEN_BIG},
	{"used_idx_jump", C_USED_IDX_JUMP},
	{"double_completion", C_DOUBLE},
	{"bad_status", C_BAD_STATUS},
	{"silent", C_SILENT},
	{"event_broken", C_EVENT_BROKEN},
	{"link_drop", C_LINK_DROP},
	{"good", C_GOOD},
};

struct fake {
	int sock;
	enum hcase c;
	struct xvl_os_window win;
	bool has_win;
	uint32_t status;
	bool mbox_mode;         /* --window: the mailbox link, polled queues */
	struct xvl_mbox mb;
	bool armed;             /* misbehave from now on (socket mode: always) */
	unsigned threshold;     /* requests held before misbehaving */
	struct xvl_vq_layout l;
	bool queue_set;
	int kick, call;
	struct xvl_vq_dev vq;
	bool running;
	uint8_t disk[CAPACITY];
	/* requests popped and held (not yet completed) */
	struct xvl_vq_elem held[64];
	struct xvl_seg segs[64][NSEG];
	unsigned n_held;
	bool misbehaved;
};

static void reply(struct fake *f, const struct xvl_msg *req, struct xvl_msg *rep, int status)
{
	rep->type = req->type;
	rep->flags = XVL_MSG_F_REPLY;
	rep->seq = req->seq;
	rep->status = status;
	if (f->mbox_mode)
		xvl_mbox_send(&f->mb, rep);
	else
		h_send(f->sock, rep, NULL, 0);
}

static void fill_config(uint8_t *cfg)
{
	memset(cfg, 0, XVL_BLK_CFG_SIZE);
	uint64_t sectors = CAPACITY / XVL_BLK_SECTOR_SIZE;
	for (int i = 0; i < 8; i++)
		cfg[XVL_BLK_CFG_CAPACITY + i] = (uint8_t)(sectors >> (8 * i));
	cfg[XVL_BLK_CFG_SEG_MAX] = NSEG - 2;
}

static void on_msg(struct fake *f, const struct xvl_msg *m, int *fds, unsigned nfds)
{
	struct xvl_msg rep = {0};
	uint8_t cfg[XVL_BLK_CFG_SIZE];
	struct xvl_errbuf eb;
	int rc = 0;

	switch (m->type) {
	case XVL_MSG_HELLO:
		rep.u.hello = (struct xvl_m_hello){.major = XVL_PROTO_MAJOR, .n_devices = 1};
		snprintf(rep.u.hello.name, sizeof(rep.u.hello.name), "hostile-device");
		break;
	case XVL_MSG_DEV_INFO:
		if (m->u.dev.dev != 0) {
			rc = -ENODEV;
			break;
		}
		rep.u.info = (struct xvl_m_dev_info){
			.dev = 0, .virtio_id = XVL_VIRTIO_ID_BLOCK, .num_queues = 1,
			.max_queue_size = 256, .config_len = XVL_BLK_CFG_SIZE,
			.features = (1ull << XVL_F_VERSION_1) | (1ull << XVL_BLK_F_SEG_MAX) |
				    (1ull << XVL_BLK_F_FLUSH)};
		snprintf(rep.u.info.name, sizeof(rep.u.info.name), "evil");
		break;
	case XVL_MSG_SET_WINDOW:
		if (f->mbox_mode || nfds != 1 || f->has_win) {
			rc = -EBADMSG;
			break;
		}
		rc = xvl_os_window_map(&f->win, fds[0], m->u.window.size, &eb);
		fds[0] = -1;
		f->has_win = rc == 0;
		break;
	case XVL_MSG_GET_CONFIG:
		fill_config(cfg);
		if (m->u.cfg.off > sizeof(cfg) || m->u.cfg.len > sizeof(cfg) - m->u.cfg.off) {
			rc = -ERANGE;
			break;
		}
		rep.u.cfg.len = m->u.cfg.len;
		memcpy(rep.u.cfg.data, cfg + m->u.cfg.off, m->u.cfg.len);
		break;
	case XVL_MSG_SET_QUEUE:
		if (f->mbox_mode ? !(m->u.queue.flags & XVL_QUEUE_F_POLL) : (nfds != 2 || !f->has_win)) {
			rc = -EBADMSG;
			break;
		}
		f->l = (struct xvl_vq_layout){.num = m->u.queue.num, .desc = m->u.queue.desc,
					      .avail = m->u.queue.avail, .used = m->u.queue.used};
		rc = xvl_vq_dev_init(&f->vq, &f->win.mem, &f->l, false, false, 0, 0);
		if (rc == 0 && !f->mbox_mode) {
			f->kick = fds[0];
			f->call = fds[1];
			fds[0] = fds[1] = -1;
		}
		f->queue_set = rc == 0;
		break;
	case XVL_MSG_SET_STATUS:
		f->status = m->u.st.status;
		if (f->status & XVL_STATUS_DRIVER_OK)
			f->running = f->queue_set;
		if (f->status == 0)
			f->running = false;
		/* fall through */
	case XVL_MSG_GET_STATUS:
		rep.u.st.dev = 0;
		rep.u.st.status = f->status;
		break;
	case XVL_MSG_DETACH:
	case XVL_MSG_RESET:
		f->running = false;
		f->status = 0;
		break;
	case XVL_MSG_GET_STATS:
		rep.u.stats.dev = 0;
		break;
	default:
		/* ATTACH, SET_FEATURES, SET_CONFIG: fine */
		break;
	}
	reply(f, m, &rep, rc);
}

static void signal_call(struct fake *f)
{
	if (!f->mbox_mode)
		xvl_os_eventfd_signal(f->call);
}

static void raw_used(struct fake *f, uint32_t id, uint32_t len, uint16_t new_idx)
{
	struct xvl_vring_used_elem *ue = &f->vq.used->ring[f->vq.used_idx & (f->l.num - 1)];
	xvl_wr32(&ue->id, id);
	xvl_wr32(&ue->len, len);
	xvl_wr16_release(&f->vq.used->idx, new_idx);
	f->vq.used_idx = new_idx;
	signal_call(f);
}

static uint8_t *status_of(const struct xvl_vq_elem *e)
{
	const struct xvl_seg *s = &e->seg[e->n_out + e->n_in - 1];
	return (uint8_t *)s->ptr + s->len - 1;
}

/* Serve e for real (reads zero-fill, writes are taken) and complete it with st. */
static void complete(struct fake *f, const struct xvl_vq_elem *e, uint8_t st)
{
	uint32_t written = 0;
	for (unsigned i = e->n_out; i + 1 < (unsigned)e->n_out + e->n_in; i++) {
		memset(e->seg[i].ptr, 0, e->seg[i].len);
		written += e->seg[i].len;
	}
	xvl_store_relaxed(status_of(e), st);
	xvl_vq_dev_push(&f->vq, e->head, written + 1);
	signal_call(f);
}

static void send_broken(struct fake *f)
{
	struct xvl_msg ev = {.type = XVL_MSG_EVENT};
	ev.u.event = (struct xvl_m_event){.dev = 0, .code = XVL_EVENT_BROKEN, .reason = -EIO};
	snprintf(ev.u.event.msg, sizeof(ev.u.event.msg), "hostile device gives up");
	if (f->mbox_mode)
		xvl_mbox_send(&f->mb, &ev);
	else
		h_send(f->sock, &ev, NULL, 0);
}

/* --window: is e the driver's write of TRIGGER_SECTOR? */
static bool is_trigger(const struct xvl_vq_elem *e)
{
	const uint8_t *h = e->n_out ? (const uint8_t *)e->seg[0].ptr : NULL;
	uint64_t sector = 0;

	if (!h || e->seg[0].len < 16 || h[0] != XVL_BLK_T_OUT)
		return false;
	for (int i = 0; i < 8; i++)
		sector |= (uint64_t)h[8 + i] << (8 * i);
	return sector == TRIGGER_SECTOR;
}

/* The client announced how many requests to expect by submitting them: misbehave once 4 are held. */
static void misbehave(struct fake *f)
{
	const struct xvl_vq_elem *a = &f->held[0];
	uint16_t idx = f->vq.used_idx;

	f->misbehaved = true;
	h_log("misbehaving with %u requests held", f->n_held);
	switch (f->c) {
	case C_USED_ID_UNSUBMITTED: {
		/* a head the client did not use: heads are 0, 3, 6, 9 for 3-descriptor chains */
		uint32_t id = 1;
		for (unsigned i = 0; i < f->n_held; i++)
			if (f->held[i].head == id)
				id = 2;
		raw_used(f, id, 1, (uint16_t)(idx + 1));
		break;
	}
	case C_USED_ID_OOB:
		raw_used(f, f->l.num + 5u, 1, (uint16_t)(idx + 1));
		break;
	case C_USED_LEN_BIG:
		/* Real completions (status written), each claiming more than the chain holds. */
		for (unsigned i = 0; i < f->n_held; i++) {
			const struct xvl_vq_elem *e = &f->held[i];
			xvl_store_relaxed(status_of(e), XVL_BLK_S_OK);
			raw_used(f, e->head, i == 3 ? UINT32_MAX : (uint32_t)e->in_bytes + 1 + 4096 * i,
				 (uint16_t)(f->vq.used_idx + 1));
		}
		f->n_held = 0;
		break;
	case C_USED_IDX_JUMP:
		xvl_store_relaxed(status_of(a), XVL_BLK_S_OK);
		raw_used(f, a->head, 1, (uint16_t)(idx + f->n_held + 1));
		break;
	case C_DOUBLE:
		complete(f, a, XVL_BLK_S_OK);
		raw_used(f, a->head, 1, (uint16_t)(f->vq.used_idx + 1));
		break;
	case C_BAD_STATUS:
		complete(f, a, 7);
		for (unsigned i = 1; i < f->n_held; i++)
			complete(f, &f->held[i], XVL_BLK_S_OK);
		f->n_held = 0;
		break;
	case C_SILENT:
		break;
	case C_EVENT_BROKEN:
		send_broken(f);
		break;
	case C_LINK_DROP:
		h_log("dropping the link");
		exit(0);
	case C_GOOD:
		for (unsigned i = 0; i < f->n_held; i++)
			complete(f, &f->held[i], XVL_BLK_S_OK);
		f->n_held = 0;
		f->misbehaved = false; /* keep serving */
		break;
	}
}

static void serve(struct fake *f)
{
	for (;;) {
		struct xvl_vq_elem *e = &f->held[f->n_held % 64];
		e->seg = f->segs[f->n_held % 64];
		int rc = xvl_vq_dev_pop(&f->vq, e, NSEG);
		if (rc <= 0) {
			if (rc < 0)
				h_log("the client broke the ring (%d)", rc);
			return;
		}
		if (!f->armed) {
			f->armed = is_trigger(e);
			complete(f, e, XVL_BLK_S_OK);
			continue;
		}
		if (f->misbehaved) {
			if (f->c == C_BAD_STATUS || f->c == C_GOOD || f->c == C_USED_LEN_BIG)
				complete(f, e, XVL_BLK_S_OK);
			continue; /* after misbehaving, stay quiet */
		}
		f->n_held++;
		if (f->n_held >= f->threshold || f->c == C_GOOD)
			misbehave(f);
	}
}

static enum hcase case_of(const char *name)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (!strcmp(name, cases[i].name))
			return cases[i].c;
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
		f->queue_set = f->running = f->armed = f->misbehaved = false;
		f->n_held = 0;
		f->threshold = 1;
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
	static struct fake f = {.kick = -1, .call = -1, .armed = true, .threshold = 4};
	struct xvl_errbuf eb;
	bool found = false;

	h_prog = "hostile_device";
	if (argc >= 4 && !strcmp(argv[1], "--window"))
		run_window(&f, argv[2], argv + 3, argc - 3);
	if (argc != 3) {
		fprintf(stderr, "usage: hostile_device SOCKET CASE | --window PATH CASE...\ncases:");
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
			fprintf(stderr, " %s", cases[i].name);
		fputc('\n', stderr);
		return 2;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (!strcmp(argv[2], cases[i].name)) {
			f.c = cases[i].c;
			found = true;
		}
	if (!found)
		h_die("unknown case %s", argv[2]);
	int ls = xvl_os_listen(argv[1], &eb);
	if (ls < 0)
		h_die("%s", eb.msg);
	f.sock = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	if (f.sock < 0)
		h_die("accept: %s", strerror(errno));
	for (;;) {
		struct pollfd p[2] = {{.fd = f.sock, .events = POLLIN},
				      {.fd = f.running ? f.kick : -1, .events = POLLIN}};
		if (poll(p, 2, 1000) < 0 && errno != EINTR)
			h_die("poll: %s", strerror(errno));
		if (p[0].revents) {
			struct xvl_msg m;
			int fds[XVL_OS_MAX_FDS];
			unsigned nfds = 0;
			int rc = h_recv(f.sock, &m, 0, fds, &nfds);
			if (rc == -ENOTCONN || rc == -ECONNRESET)
				break;
			if (rc == 1)
				on_msg(&f, &m, fds, nfds);
			for (unsigned i = 0; rc == 1 && i < nfds; i++)
				if (fds[i] >= 0)
					close(fds[i]);
		}
		if (f.running && (p[1].revents || f.c == C_GOOD)) {
			xvl_os_eventfd_drain(f.kick);
			serve(&f);
		}
	}
	h_log("client gone");
	xvl_os_window_close(&f.win);
	close(f.sock);
	close(ls);
	unlink(argv[1]);
	return 0;
}
