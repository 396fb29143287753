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
 * when the client goes away (the cases that test reconnection accept a
 * second client on the same socket first).
 *
 * Cases for issue 9 (driver side, recovery) exercise what the client takes
 * from the server: DEV_INFO values (queues_32), config limits the split of
 * data must obey (size_max_odd, size_max_small: every chain is checked
 * against seg_max and size_max and failed with IOERR if it breaks them),
 * restarts (held_overflow, restart_broken, restart_refuse, attach_busy,
 * die_in_restart, fewer_queues), backend writes that land after the device broke
 * (stale_write after EVENT BROKEN and stale_violation after a bad used id,
 * with the link kept: RESET is answered only after the writes; stale_drop,
 * after closing the link), and whoever listens at the path (impostor: the same
 * device, run as uid 65534, reporting whether it was sent a window).
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
#include <time.h>

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
	C_QUEUES_32,           /* DEV_INFO: 32 queues, queue size 65535, config 4096 bytes */
	C_SIZE_MAX_ODD,        /* size_max 175000: 1 MiB split at 172032 needs 7 segments */
	C_SIZE_MAX_SMALL,      /* size_max 2048 with seg_max 3 */
	C_HELD_OVERFLOW,       /* queue size 4; EVENT RESTART with the first two DRIVER_OK replies */
	C_RESTART_BROKEN,      /* EVENT RESTART, then refuses SET_QUEUE and says EVENT BROKEN */
	C_RESTART_REFUSE,      /* EVENT RESTART, then refuses SET_FEATURES */
	C_ATTACH_BUSY,         /* drops the link, accepts again, ATTACH -EBUSY 5 times */
	C_STALE_WRITE,         /* EVENT BROKEN, writes into the buffers 300 ms later, then answers */
	C_STALE_DROP,          /* closes the link, writes into the buffers 300 ms later, exits */
	C_IMPOSTOR,            /* good, but runs as uid 65534 */
	C_DIE_IN_RESTART,      /* drops the link, accepts again, exits at the client's ATTACH */
	C_STALE_VIOLATION,     /* used id out of range, writes into the buffers 300 ms later */
	C_FEWER_QUEUES,        /* 2 queues; drops the link, comes back with 1 */
	C_MBOX_GARBAGE,        /* --window: moves its mailbox producer index a ring ahead (socket: silent) */
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
	{"queues_32", C_QUEUES_32},
	{"size_max_odd", C_SIZE_MAX_ODD},
	{"size_max_small", C_SIZE_MAX_SMALL},
	{"held_overflow", C_HELD_OVERFLOW},
	{"restart_broken", C_RESTART_BROKEN},
	{"restart_refuse", C_RESTART_REFUSE},
	{"attach_busy", C_ATTACH_BUSY},
	{"stale_write", C_STALE_WRITE},
	{"stale_drop", C_STALE_DROP},
	{"mbox_garbage", C_MBOX_GARBAGE},
	{"impostor", C_IMPOSTOR},
	{"die_in_restart", C_DIE_IN_RESTART},
	{"stale_violation", C_STALE_VIOLATION},
	{"fewer_queues", C_FEWER_QUEUES},
};

/* Cases that, once they have misbehaved, serve well (and check the limits). */
static bool serves_after(enum hcase c)
{
	return c == C_BAD_STATUS || c == C_GOOD || c == C_USED_LEN_BIG || c == C_QUEUES_32 ||
	       c == C_SIZE_MAX_ODD || c == C_SIZE_MAX_SMALL || c == C_HELD_OVERFLOW ||
	       c == C_ATTACH_BUSY || c == C_IMPOSTOR;
}

static bool always_good(enum hcase c)
{
	return c == C_GOOD || c == C_QUEUES_32 || c == C_SIZE_MAX_ODD || c == C_SIZE_MAX_SMALL ||
	       c == C_IMPOSTOR;
}

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
	unsigned n_conn;        /* clients accepted so far */
	unsigned n_restarts;    /* EVENT RESTARTs sent */
	bool restarting;        /* an EVENT RESTART was sent: the next set-up is refused (some cases) */
	unsigned busy_left;     /* ATTACHs still to answer -EBUSY */
	bool got_window;
};

static bool within_limits(const struct fake *f, const struct xvl_vq_elem *e);

static uint32_t cfg_seg_max(const struct fake *f)
{
	return f->c == C_SIZE_MAX_SMALL ? 3 : NSEG - 2;
}

static uint32_t cfg_size_max(const struct fake *f)
{
	return f->c == C_SIZE_MAX_ODD ? 175000u : f->c == C_SIZE_MAX_SMALL ? 2048u : 0;
}

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

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void fill_config(const struct fake *f, uint8_t *cfg)
{
	memset(cfg, 0, XVL_BLK_CFG_SIZE);
	uint64_t sectors = CAPACITY / XVL_BLK_SECTOR_SIZE;
	for (int i = 0; i < 8; i++)
		cfg[XVL_BLK_CFG_CAPACITY + i] = (uint8_t)(sectors >> (8 * i));
	put32(cfg + XVL_BLK_CFG_SEG_MAX, cfg_seg_max(f));
	put32(cfg + XVL_BLK_CFG_SIZE_MAX, cfg_size_max(f));
}

static void send_event(struct fake *f, uint32_t code)
{
	struct xvl_msg ev = {.type = XVL_MSG_EVENT};
	ev.u.event = (struct xvl_m_event){.dev = 0, .code = code, .reason = -EIO};
	snprintf(ev.u.event.msg, sizeof(ev.u.event.msg), "hostile device gives up");
	if (f->mbox_mode)
		xvl_mbox_send(&f->mb, &ev);
	else
		h_send(f->sock, &ev, NULL, 0);
}

static void dev_info(const struct fake *f, struct xvl_m_dev_info *d)
{
	*d = (struct xvl_m_dev_info){
		.dev = 0, .virtio_id = XVL_VIRTIO_ID_BLOCK, .num_queues = 1, .max_queue_size = 256,
		.config_len = XVL_BLK_CFG_SIZE,
		.features = (1ull << XVL_F_VERSION_1) | (1ull << XVL_BLK_F_SEG_MAX) |
			    (1ull << XVL_BLK_F_FLUSH)};
	if (f->c == C_QUEUES_32) {
		d->num_queues = 32;
		d->max_queue_size = 65535;
		d->config_len = 4096;
		d->features |= 1ull << XVL_BLK_F_MQ;
	}
	if (cfg_size_max(f))
		d->features |= 1ull << XVL_BLK_F_SIZE_MAX;
	if (f->c == C_FEWER_QUEUES) {
		d->num_queues = f->n_conn > 1 ? 1 : 2;
		d->features |= 1ull << XVL_BLK_F_MQ;
	}
	if (f->c == C_HELD_OVERFLOW) {
		d->max_queue_size = 4;
		d->features |= 1ull << XVL_F_INDIRECT_DESC; /* 4 requests in 4 descriptors */
	}
	snprintf(d->name, sizeof(d->name), "evil");
}

/* Some cases refuse a step of the set-up that follows their EVENT RESTART. */
static int refuse_after_restart(struct fake *f, const struct xvl_msg *m)
{
	if (!f->restarting)
		return 0;
	if (f->c == C_RESTART_REFUSE && m->type == XVL_MSG_SET_FEATURES) {
		h_log("refusing SET_FEATURES after RESTART");
		return -EIO;
	}
	if (f->c == C_RESTART_BROKEN && m->type == XVL_MSG_SET_QUEUE) {
		h_log("refusing SET_QUEUE after RESTART, device broken");
		send_event(f, XVL_EVENT_BROKEN);
		return -EIO;
	}
	return 0;
}

static void on_msg(struct fake *f, const struct xvl_msg *m, int *fds, unsigned nfds)
{
	struct xvl_msg rep = {0};
	uint8_t cfg[XVL_BLK_CFG_SIZE];
	struct xvl_errbuf eb;
	int rc = refuse_after_restart(f, m);

	if (rc < 0) {
		reply(f, m, &rep, rc);
		return;
	}
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
		dev_info(f, &rep.u.info);
		break;
	case XVL_MSG_ATTACH:
		if (f->c == C_DIE_IN_RESTART && f->n_conn > 1) {
			h_log("ATTACH on the second connection: dying for good");
			exit(0);
		}
		if (f->busy_left) {
			f->busy_left--;
			h_log("ATTACH: -EBUSY (still draining the old connection)");
			rc = -EBUSY;
		}
		break;
	case XVL_MSG_SET_WINDOW:
		if (nfds != 1 || f->has_win) {
			rc = -EBADMSG;
			break;
		}
		rc = xvl_os_window_map(&f->win, fds[0], m->u.window.size, &eb);
		fds[0] = -1;
		f->has_win = rc == 0;
		f->got_window = true;
		h_log("window received");
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
	case XVL_MSG_SET_QUEUE:
		if (f->mbox_mode ? !(m->u.queue.flags & XVL_QUEUE_F_POLL) : (nfds != 2 || !f->has_win)) {
			rc = -EBADMSG;
			break;
		}
		if (m->u.queue.queue != 0)
			break; /* other queues are accepted and never served */
		if (f->kick >= 0)
			close(f->kick);
		if (f->call >= 0)
			close(f->call);
		f->kick = f->call = -1;
		f->queue_set = false;
		f->n_held = 0;
		f->l = (struct xvl_vq_layout){.num = m->u.queue.num, .desc = m->u.queue.desc,
					      .avail = m->u.queue.avail, .used = m->u.queue.used};
		rc = xvl_vq_dev_init(&f->vq, &f->win.mem, &f->l, false, f->c == C_HELD_OVERFLOW, 0, 0);
		if (rc == 0 && !f->mbox_mode) {
			f->kick = fds[0];
			f->call = fds[1];
			fds[0] = fds[1] = -1;
		}
		f->queue_set = rc == 0;
		break;
	case XVL_MSG_SET_STATUS:
		f->status = m->u.st.status;
		if (f->status & XVL_STATUS_DRIVER_OK) {
			f->running = f->queue_set;
			f->restarting = false;
			if (f->c == C_HELD_OVERFLOW && f->n_restarts < 2) {
				/* timed: at open, then while the client restarts with held completions */
				f->n_restarts++;
				h_log("EVENT RESTART %u, before the DRIVER_OK reply", f->n_restarts);
				send_event(f, XVL_EVENT_RESTART);
			}
		}
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
	if (!within_limits(f, e)) {
		h_log("request of %u segments breaks seg_max %u / size_max %u: IOERR",
		      e->n_out + e->n_in, cfg_seg_max(f), cfg_size_max(f));
		st = XVL_BLK_S_IOERR;
	}
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
	send_event(f, XVL_EVENT_BROKEN);
}

/* Does e obey the seg_max and size_max this device announced? */
static bool within_limits(const struct fake *f, const struct xvl_vq_elem *e)
{
	unsigned data = e->n_out + e->n_in - 2; /* minus header and status */
	if (e->n_out + e->n_in < 2 || data > cfg_seg_max(f))
		return false;
	for (unsigned i = 1; i + 1 < (unsigned)e->n_out + e->n_in; i++)
		if (cfg_size_max(f) && e->seg[i].len > cfg_size_max(f))
			return false;
	return true;
}

/* What a backend still running after the device broke does: writes into the buffers. */
static void stale_writes(struct fake *f)
{
	struct timespec ts = {0, 300 * 1000000L};
	nanosleep(&ts, NULL);
	for (unsigned i = 0; i < f->n_held; i++) {
		const struct xvl_vq_elem *e = &f->held[i];
		for (unsigned k = e->n_out; k + 1 < (unsigned)e->n_out + e->n_in; k++)
			memset(e->seg[k].ptr, 0x5a, e->seg[k].len);
	}
	h_log("stale writes into %u requests' buffers done", f->n_held);
}

static void restart_device(struct fake *f)
{
	f->n_restarts++;
	f->restarting = true;
	f->running = false;
	h_log("EVENT RESTART %u", f->n_restarts);
	send_event(f, XVL_EVENT_RESTART);
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
	case C_MBOX_GARBAGE:
		/* The driver must break the link (and only it); it will come again. */
		if (f->mbox_mode)
			xvl_store_release((uint32_t *)(void *)(f->mb.base + XVL_MBOX_OFF_RSP_PROD),
					  f->mb.tx + 1000u);
		break;
	case C_EVENT_BROKEN:
		send_broken(f);
		break;
	case C_LINK_DROP:
		h_log("dropping the link");
		exit(0);
	case C_GOOD:
	case C_QUEUES_32:
	case C_SIZE_MAX_ODD:
	case C_SIZE_MAX_SMALL:
	case C_IMPOSTOR:
		for (unsigned i = 0; i < f->n_held; i++)
			complete(f, &f->held[i], XVL_BLK_S_OK);
		f->n_held = 0;
		f->misbehaved = false; /* keep serving */
		break;
	case C_HELD_OVERFLOW:
		/* The RESTARTs come with the DRIVER_OK replies (on_msg): the client, told before it
		 * looks at the rings, finds these completions there when it restarts. */
		for (unsigned i = 0; i < f->n_held; i++)
			complete(f, &f->held[i], XVL_BLK_S_OK);
		f->n_held = 0;
		f->misbehaved = false;
		break;
	case C_RESTART_BROKEN:
	case C_RESTART_REFUSE:
		restart_device(f);
		break;
	case C_ATTACH_BUSY:
		if (f->n_conn == 1) {
			h_log("dropping the link; accepting again");
			f->busy_left = 5;
			shutdown(f->sock, SHUT_RDWR);
			break;
		}
		for (unsigned i = 0; i < f->n_held; i++) /* the second connection is served well */
			complete(f, &f->held[i], XVL_BLK_S_OK);
		f->n_held = 0;
		f->misbehaved = false;
		break;
	case C_STALE_WRITE:
		send_broken(f);
		stale_writes(f);
		break;
	case C_STALE_VIOLATION:
		raw_used(f, f->l.num + 5u, 1, (uint16_t)(idx + 1));
		stale_writes(f);
		break;
	case C_FEWER_QUEUES:
		if (f->n_conn > 1) { /* one queue now: queue 0 is served, nothing else */
			for (unsigned i = 0; i < f->n_held; i++)
				complete(f, &f->held[i], XVL_BLK_S_OK);
			f->n_held = 0;
			f->misbehaved = false;
			break;
		}
		/* fall through */
	case C_DIE_IN_RESTART:
		h_log("dropping the link; accepting again");
		shutdown(f->sock, SHUT_RDWR);
		break;
	case C_STALE_DROP:
		h_log("closing the link");
		shutdown(f->sock, SHUT_RDWR);
		stale_writes(f);
		exit(0);
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
			if (serves_after(f->c))
				complete(f, e, XVL_BLK_S_OK);
			continue; /* after misbehaving, stay quiet */
		}
		f->n_held++;
		if (f->n_held >= f->threshold || always_good(f->c) || (f->c == C_ATTACH_BUSY && f->n_conn > 1))
			misbehave(f);
	}
}

static void serve_link(struct fake *f)
{
	for (;;) {
		struct pollfd p[2] = {{.fd = f->sock, .events = POLLIN},
				      {.fd = f->running ? f->kick : -1, .events = POLLIN}};
		if (poll(p, 2, 1000) < 0 && errno != EINTR)
			h_die("poll: %s", strerror(errno));
		if (p[0].revents) {
			struct xvl_msg m;
			int fds[XVL_OS_MAX_FDS];
			unsigned nfds = 0;
			int rc = h_recv(f->sock, &m, 0, fds, &nfds);
			if (rc == -ENOTCONN || rc == -ECONNRESET || (rc < 0 && (p[0].revents & POLLHUP)))
				return;
			if (rc == 1)
				on_msg(f, &m, fds, nfds);
			for (unsigned i = 0; rc == 1 && i < nfds; i++)
				if (fds[i] >= 0)
					close(fds[i]);
		}
		if (f->running && (p[1].revents || always_good(f->c) || f->c == C_HELD_OVERFLOW)) {
			xvl_os_eventfd_drain(f->kick);
			serve(f);
		}
	}
}

/* Forget the client that went away (its window, queue and requests). */
static void reset_state(struct fake *f)
{
	if (f->has_win)
		xvl_os_window_close(&f->win);
	if (f->kick >= 0)
		close(f->kick);
	if (f->call >= 0)
		close(f->call);
	close(f->sock);
	f->kick = f->call = -1;
	f->has_win = f->queue_set = f->running = f->misbehaved = false;
	f->n_held = 0;
	f->status = 0;
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
		f->queue_set = f->running = f->armed = f->misbehaved = f->restarting = false;
		f->n_held = f->n_restarts = f->busy_left = 0;
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
	if (f.c == C_IMPOSTOR && (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)))
		h_die("cannot become uid 65534: %s", strerror(errno));
	int ls = xvl_os_listen(argv[1], &eb);
	if (ls < 0)
		h_die("%s", eb.msg);
	/* attach_busy: a second client (the same one reconnecting) is served on a fresh state */
	bool again = f.c == C_ATTACH_BUSY || f.c == C_DIE_IN_RESTART || f.c == C_FEWER_QUEUES;
	unsigned max_conn = again ? 2 : 1;
	while (f.n_conn < max_conn) {
		f.sock = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		if (f.sock < 0)
			h_die("accept: %s", strerror(errno));
		f.n_conn++;
		serve_link(&f);
		reset_state(&f);
	}
	h_log("client gone%s", f.got_window ? " (it had sent a window)" : " (it never sent a window)");
	close(ls);
	unlink(argv[1]);
	return 0;
}
