/* SPDX-License-Identifier: MIT */
/*
 * The server's mailbox link (docs/PROTOCOL.md section 7): the window is
 * found by path, handed over as fd:N, or created here as QEMU's ivshmem
 * server; the client's messages arrive in the mailbox inside it; queue
 * notifications are doorbell vectors, which are always eventfds (or
 * nothing: polling); in a guest, --window vfio:BDF makes them the MSI-X
 * vectors and VFIO ioeventfds of an ivshmem-doorbell device (vfio.h).  A session of the mailbox is one
 * struct srv_conn, exactly like one socket connection: link.c serves it
 * through the same srv_link_dispatch(); only sending (conn.c hands it to
 * srv_mbox_send), SET_WINDOW and SET_QUEUE's descriptors differ.
 *
 * Invariants: at most one live conn per mailbox (m->conn); a request is
 * taken from the mailbox only when its reply has a free slot and nothing is
 * held; messages that find the ring full (events, deferred replies) are
 * held in order (m->held) and sent before further requests are taken; a
 * driver that leaves 64 of them undelivered loses its session.  Nothing here blocks: a peer that stops answering only stops
 * its own link.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "doorbell.h"
#include "ivshmem.h"
#include "mailbox.h"
#include "srv.h"
#include "vfio.h"

#define HELD_MAX 64                 /* events held while the response ring is full */
#define SPIN_AFTER_WORK_NS 200000ull /* keep looking for this long after activity (polling) */
#define IVSH_DEFAULT_SIZE (64ull << 20)
#define IVSH_DEFAULT_VECTORS 8u

struct srv_mbox {
	struct srv *srv;
	char what[160];              /* "mailbox in PATH", for log lines */
	struct xvl_os_window win;
	bool win_mapped;
	const char *path;            /* window by path: mapped once it is big enough */
	struct xvl_mbox mb;
	bool opened;                 /* xvl_mbox_open succeeded for this window generation */
	struct xvl_doorbell db;
	struct srv_watch db_w;
	bool ivsh;                   /* we are the ivshmem server */
	bool relay;                  /* ... and only that: the window is served by a peer */
	struct xvl_ivsh_server is;
	struct srv_watch is_w;
	struct srv_watch peer_w[XVL_IVSH_MAX_PEERS];
	int peer_slot;               /* the ivshmem peer the doorbell rings, -1 none */
	struct srv_conn *conn;       /* the current session */
	struct xvl_msg held[HELD_MAX];
	unsigned n_held;
	struct xvl_backoff backoff;
	uint64_t last_work_ns;
	uint64_t last_requests;      /* the devices' request count when last looked at */
	uint64_t next_look_ns;       /* polling: not before this */
	int waiting_for;             /* the xvl_mbox_open error last logged, 0 none */
	bool db_dead;                /* vector 0 was made blocking by the driver: unwatched, poll */
};

/*
 * Look at the mailbox on a timer (adaptive backoff) rather than only when
 * rung: without a doorbell of our own; and, with one, until a session is up
 * and whenever the driver announced no vectors (a guest's user-space client
 * on a mapped BAR polls, and rings nobody).
 */
static bool polling(const struct srv_mbox *m)
{
	if (m->relay)
		return false; /* nothing of ours to look at */
	if (xvl_doorbell_fd(&m->db, XVL_MBOX_VEC_MAILBOX) < 0 || m->db_dead)
		return true;
	return !m->conn || xvl_mbox_peer_vectors(&m->mb) == 0;
}

/* ------------------------------------------------------------ set-up */

static int parse_ivsh(const char *spec, char *path, size_t cap, uint64_t *size, unsigned *nvec,
		      bool *relay, struct xvl_errbuf *eb)
{
	const char *comma = strchr(spec, ',');
	size_t n = comma ? (size_t)(comma - spec) : strlen(spec);
	if (!n || n >= cap)
		return xvl_err(eb, -EINVAL, "--window ivshmem:SOCKET: socket path missing or too long");
	memcpy(path, spec, n);
	path[n] = '\0';
	*size = IVSH_DEFAULT_SIZE;
	*nvec = IVSH_DEFAULT_VECTORS;
	for (const char *p = comma; p && *p; p = strchr(p + 1, ',')) {
		if (!strncmp(p, ",size=", 6)) {
			char v[32];
			snprintf(v, sizeof(v), "%.*s", (int)strcspn(p + 6, ","), p + 6);
			if (xvl_parse_size(v, size) < 0)
				return xvl_err(eb, -EINVAL, "--window ivshmem: bad size '%s'", v);
		} else if (!strncmp(p, ",vectors=", 9)) {
			*nvec = (unsigned)strtoul(p + 9, NULL, 10);
		} else if (!strncmp(p, ",relay", 6) && (p[6] == ',' || !p[6])) {
			*relay = true;
		} else {
			return xvl_err(eb, -EINVAL, "--window ivshmem: unknown option '%s'", p + 1);
		}
	}
	return 0;
}

static int setup_ivshmem(struct srv_mbox *m, const char *spec, struct xvl_errbuf *eb)
{
	char path[108];
	uint64_t size = 0;
	unsigned nvec = 0;
	int rc = parse_ivsh(spec, path, sizeof(path), &size, &nvec, &m->relay, eb);
	if (rc == 0)
		rc = xvl_ivsh_server_create(&m->is, path, size, nvec, eb);
	if (rc < 0)
		return rc;
	m->ivsh = true;
	if (m->relay)
		srv_log(m->srv, "ivshmem server on %s (relay): the window is served by one of its peers",
			path);
	m->win = m->is.win; /* owned by the ivshmem server; never closed through m->win */
	m->win_mapped = true;
	snprintf(m->what, sizeof(m->what), "mailbox in the ivshmem window of %s", path);
	return srv_watch(m->srv, m->is.listen_fd, &m->is_w, W_IVSH_LISTEN, m);
}

/* In a guest: window and doorbell are an ivshmem-doorbell device bound to vfio-pci. */
static int setup_vfio(struct srv_mbox *m, const char *spec, struct xvl_errbuf *eb)
{
	unsigned me = 0;
	if (m->srv->opts.doorbell && strcmp(m->srv->opts.doorbell, "none") != 0)
		return xvl_err(eb, -EINVAL, "--window vfio: brings its own doorbell; drop --doorbell");
	int rc = xvl_vfio_ivshmem_open(spec, &m->win, &m->db, &me, eb);
	if (rc < 0)
		return rc;
	m->win_mapped = true;
	snprintf(m->what, sizeof(m->what), "mailbox in the ivshmem BAR of %s", spec);
	srv_log(m->srv, "%s: ivshmem peer %u, %u MSI-X vectors, %llu-byte window, ringing peer %u "
		"(%s)", m->what, me, m->db.n_own, (unsigned long long)m->win.mem.size, m->db.peer_id,
		m->db.bar0 ? "BAR0 mapped" : "BAR0 not mappable: every ring through the kernel");
	return srv_watch(m->srv, xvl_doorbell_fd(&m->db, XVL_MBOX_VEC_MAILBOX), &m->db_w, W_MBOX, m);
}

static int setup_fd_or_path(struct srv_mbox *m, const char *spec, struct xvl_errbuf *eb)
{
	int rc = xvl_doorbell_parse(&m->db, m->srv->opts.doorbell, eb);
	if (rc < 0)
		return rc;
	if (!strncmp(spec, "fd:", 3)) {
		int fd = atoi(spec + 3);
		off_t end = fd >= 3 ? lseek(fd, 0, SEEK_END) : -1;
		if (end < 0)
			return xvl_err(eb, -EBADF, "--window %s: not an open window descriptor", spec);
		/* A window handed over at spawn must be sealed, as over the socket link. */
		if (xvl_os_window_seal(fd) < 0)
			return xvl_err(eb, -EPERM, "--window %s: not a memfd sealed against shrinking", spec);
		rc = xvl_os_window_map(&m->win, fd, (uint64_t)end, eb);
		if (rc < 0)
			return rc;
		m->win_mapped = true;
		snprintf(m->what, sizeof(m->what), "mailbox in window fd %d", fd);
	} else {
		m->path = spec;
		snprintf(m->what, sizeof(m->what), "mailbox in %s", spec);
	}
	int fd = xvl_doorbell_fd(&m->db, XVL_MBOX_VEC_MAILBOX);
	if (fd >= 0)
		return srv_watch(m->srv, fd, &m->db_w, W_MBOX, m);
	return 0;
}

int srv_mbox_setup(struct srv *s, struct xvl_errbuf *eb)
{
	if (!s->opts.window)
		return 0;
	struct srv_mbox *m = calloc(1, sizeof(*m));
	if (!m)
		return xvl_err(eb, -ENOMEM, "out of memory");
	m->srv = s;
	m->win.fd = -1;
	m->peer_slot = -1;
	xvl_doorbell_init(&m->db);
	s->mbox = m;
	if (!strncmp(s->opts.window, "ivshmem:", 8))
		return setup_ivshmem(m, s->opts.window + 8, eb);
	if (!strncmp(s->opts.window, "vfio:", 5))
		return setup_vfio(m, s->opts.window + 5, eb);
	return setup_fd_or_path(m, s->opts.window, eb);
}

void srv_mbox_destroy(struct srv *s)
{
	struct srv_mbox *m = s->mbox;
	if (!m)
		return;
	if (m->conn)
		srv_conn_close(m->conn);
	xvl_doorbell_close(&m->db);
	if (m->ivsh)
		xvl_ivsh_server_close(&m->is);
	else
		xvl_os_window_close(&m->win);
	free(m);
	s->mbox = NULL;
}

/* ------------------------------------------------------------ sessions */

/* The peer's eventfd may be one it can make block: through the server's guard. */
static void ring_peer(struct srv_mbox *m)
{
	if (m->db.kind == XVL_DB_EVENTFD && m->db.n_peer && m->db.peer[XVL_MBOX_VEC_MAILBOX] >= 0)
		xvl_os_peer_eventfd_signal(&m->srv->guard, m->db.peer[XVL_MBOX_VEC_MAILBOX]);
	else
		xvl_doorbell_ring(&m->db, XVL_MBOX_VEC_MAILBOX);
}

static void end_session(struct srv_mbox *m, const char *why)
{
	struct srv_conn *c = m->conn;
	if (!c)
		return;
	srv_log(m->srv, "%s: client %s: %s", m->what, c->name[0] ? c->name : "(unnamed)", why);
	srv_conn_close(c); /* calls srv_mbox_conn_closed */
}

void srv_mbox_conn_closed(struct srv_conn *c)
{
	struct srv_mbox *m = c->mbox;
	if (m && m->conn == c) {
		m->conn = NULL;
		m->n_held = 0;
	}
}

static void new_session(struct srv_mbox *m)
{
	struct srv *s = m->srv;
	if (m->conn)
		end_session(m, "began a new session");
	struct srv_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		xvl_mbox_close(&m->mb);
		return;
	}
	c->srv = s;
	c->fd = -1;
	c->born_ns = xvl_os_now_ns();
	c->mbox = m;
	c->win = m->win; /* borrowed (conn_free leaves it alone); the fd is for a vhost-user bridge */
	c->has_window = true;
	c->next = s->conns;
	s->conns = c;
	s->n_conns++;
	srv_tick_arm(s, true); /* the HELLO timeout applies here too */
	m->conn = c;
	m->n_held = 0;
}

/* Map a window given by path once it exists, and find its mailbox. */
static bool try_open(struct srv_mbox *m)
{
	struct xvl_errbuf eb;
	struct stat st;
	/* A window file the driver side has grown since: map it again at its new size. */
	if (m->path && m->win_mapped && fstat(m->win.fd, &st) == 0 && (uint64_t)st.st_size != m->win.mem.size) {
		xvl_os_window_close(&m->win);
		m->win_mapped = false;
	}
	if (!m->win_mapped) {
		if (xvl_os_window_open_path(&m->win, m->path, 0, &eb) < 0)
			return false;
		m->win_mapped = true;
	}
	int rc = xvl_mbox_open(&m->mb, &m->win.mem, m->db.n_own);
	if (rc == 0) {
		m->opened = true;
		m->waiting_for = 0;
		srv_log(m->srv, "%s: device side ready (instance %u)", m->what, m->mb.instance);
		/* A new instance: a driver of a previous one may be asleep on its queues. */
		ring_peer(m);
		return true;
	}
	if (rc != -EAGAIN) {
		static const char *const why[] = {[ENOENT] = "the window carries no mailbox",
						  [EINVAL] = "its mailbox is malformed",
						  [EPROTONOSUPPORT] = "its mailbox version is not 1"};
		unsigned e = (unsigned)-rc;
		const char *w = e < sizeof(why) / sizeof(why[0]) && why[e] ? why[e] : strerror(e);
		if (m->waiting_for != rc) /* once per state, not per look */
			srv_log(m->srv, "%s: waiting: %s", m->what, w);
		m->waiting_for = rc;
	}
	return false;
}

static void flush_held(struct srv_mbox *m)
{
	unsigned sent = 0;
	while (sent < m->n_held && xvl_mbox_send(&m->mb, &m->held[sent]) == 0)
		sent++;
	if (sent) {
		memmove(m->held, m->held + sent, (m->n_held - sent) * sizeof(m->held[0]));
		m->n_held -= sent;
		ring_peer(m);
	}
}

static void link_error(struct srv_mbox *m, int rc)
{
	if (rc == -ECONNRESET) {
		end_session(m, "closed the link or began another session");
	} else if (rc == -ESTALE) {
		end_session(m, "formatted the window again");
		m->opened = false;
	} else if (rc != -ENOTCONN) {
		char why[200];
		snprintf(why, sizeof(why), "malformed mailbox traffic (%s): %s; link closed",
			 strerror(-rc), xvl_mbox_why(&m->mb));
		end_session(m, why);
	}
}

/* Take requests while their replies have room; at most one ring's worth per call. */
static bool serve_requests(struct srv_mbox *m)
{
	bool any = false;
	for (unsigned i = 0; i < m->mb.n_slots && m->conn; i++) {
		flush_held(m);
		if (m->n_held || !xvl_mbox_can_send(&m->mb))
			break; /* back-pressure: the driver is not draining its replies */
		struct xvl_msg req;
		int rc = xvl_mbox_recv(&m->mb, &req);
		if (rc == 0)
			break;
		if (rc < 0) {
			link_error(m, rc);
			break;
		}
		any = true;
		srv_link_dispatch(m->conn, &req, NULL, 0);
	}
	return any;
}

void srv_mbox_poll(struct srv *s)
{
	struct srv_mbox *m = s->mbox;
	if (!m || m->relay)
		return;
	uint64_t now = xvl_os_now_ns();
	if (polling(m) && now < m->next_look_ns)
		return;
	if (!m->opened && !try_open(m))
		return;
	int rc = xvl_mbox_accept(&m->mb);
	if (rc == -ESTALE) {
		end_session(m, "formatted the window again");
		m->opened = false;
		return;
	}
	if (rc == 1) {
		new_session(m);
		unsigned dv = xvl_mbox_peer_vectors(&m->mb);
		srv_log(s, "%s: new session, driver %u doorbell vector(s), device %u: %s", m->what, dv,
			m->db.n_own, dv && !polling(m) ? "doorbells" : "polling");
	}
	bool any = rc == 1;
	if (m->conn)
		any |= serve_requests(m);
	if (any)
		m->last_work_ns = now;
}

long srv_mbox_idle_us(struct srv *s, bool busy)
{
	struct srv_mbox *m = s->mbox;
	if (!m || !polling(m))
		return -1;
	uint64_t now = xvl_os_now_ns();
	/* Polled queues that completed something count as activity too. */
	uint64_t reqs = 0;
	for (unsigned i = 0; i < s->n_devs; i++)
		reqs += srv_dev_requests(&s->dev[i]);
	if (reqs != m->last_requests) {
		m->last_requests = reqs;
		m->last_work_ns = now;
	}
	if (busy || now - m->last_work_ns < SPIN_AFTER_WORK_NS) {
		xvl_backoff_reset(&m->backoff);
		m->next_look_ns = 0;
		return 0;
	}
	unsigned us = xvl_backoff_next(&m->backoff);
	m->next_look_ns = now + (uint64_t)us * 1000u;
	return us;
}

void srv_mbox_on_event(struct srv *s, struct srv_watch *w)
{
	struct srv_mbox *m = w->obj;
	struct xvl_errbuf eb;
	switch (w->kind) {
	case W_MBOX: {
		/* The driver holds this eventfd too (to ring it): it may have made it blocking and
		 * emptied it after epoll said readable.  Through the guard, as a socket client's kicks. */
		uint64_t v;
		if (xvl_os_peer_eventfd_drain(&s->guard, xvl_doorbell_fd(&m->db, XVL_MBOX_VEC_MAILBOX), &v) == -ETIMEDOUT) {
			srv_log(s, "%s: the driver made the mailbox doorbell blocking; link closed, doorbell "
				"no longer watched (the mailbox is looked at on a timer)", m->what);
			srv_unwatch(s, xvl_doorbell_fd(&m->db, XVL_MBOX_VEC_MAILBOX));
			end_session(m, "made its mailbox doorbell blocking");
			m->db_dead = true;
			break;
		}
		srv_mbox_poll(s);
		break;
	}
	case W_IVSH_LISTEN: {
		int slot = xvl_ivsh_server_accept(&m->is, &eb);
		if (slot < 0) {
			srv_log(s, "%s", eb.msg);
			break;
		}
		srv_watch(s, m->is.peer[slot].sock, &m->peer_w[slot], W_IVSH_PEER, m);
		srv_log(s, "ivshmem: peer %u connected", m->is.peer[slot].id);
		if (m->relay)
			break; /* peers ring each other; QEMU routes it */
		/* The window has one driver side: the peer that came last (it formats the window). */
		if (m->peer_slot >= 0)
			srv_unwatch(s, xvl_doorbell_fd(&m->db, XVL_MBOX_VEC_MAILBOX));
		xvl_doorbell_close(&m->db);
		if (xvl_ivsh_server_doorbell(&m->is, (unsigned)slot, &m->db) == 0) {
			m->peer_slot = slot;
			m->db_dead = false;
			srv_watch(s, xvl_doorbell_fd(&m->db, XVL_MBOX_VEC_MAILBOX), &m->db_w, W_MBOX, m);
		}
		break;
	}
	case W_IVSH_PEER: {
		unsigned slot = (unsigned)(w - m->peer_w);
		srv_log(s, "ivshmem: peer %u left", m->is.peer[slot].id);
		srv_unwatch(s, m->is.peer[slot].sock);
		if ((int)slot == m->peer_slot) {
			end_session(m, "its ivshmem peer left");
			srv_unwatch(s, xvl_doorbell_fd(&m->db, XVL_MBOX_VEC_MAILBOX));
			xvl_doorbell_close(&m->db);
			m->peer_slot = -1;
		}
		xvl_ivsh_server_drop(&m->is, slot);
		break;
	}
	default:
		break;
	}
}

/* ------------------------------------------------------------ what server.c asks */

bool xvl_server_window_relays(const char *window)
{
	char path[108];
	uint64_t size;
	unsigned nvec;
	bool relay = false;
	struct xvl_errbuf eb;
	return window && !strncmp(window, "ivshmem:", 8) &&
	       parse_ivsh(window + 8, path, sizeof(path), &size, &nvec, &relay, &eb) == 0 && relay;
}

int srv_mbox_send(struct srv_conn *c, const struct xvl_msg *m)
{
	struct srv_mbox *mb = c->mbox;
	if (mb->conn != c)
		return -ENOTCONN; /* a session that ended: its replies have nowhere to go */
	/* Order is kept: while anything is held, later messages queue behind it. */
	int rc = mb->n_held ? -EAGAIN : xvl_mbox_send(&mb->mb, m);
	if (rc == -EAGAIN) {
		if (mb->n_held == HELD_MAX) {
			end_session(mb, "does not drain its mailbox (64 replies and events held); link closed");
			return -ENOBUFS;
		}
		mb->held[mb->n_held++] = *m; /* events, and deferred replies (DETACH) */
		return 0;
	}
	if (rc == 0)
		ring_peer(mb);
	else
		link_error(mb, rc);
	return rc;
}

int srv_mbox_queue_fds(struct srv_conn *c, const struct xvl_m_queue *mq, int fds[2])
{
	struct srv_mbox *m = c->mbox;
	fds[0] = fds[1] = -1;
	if (!m)
		return -EINVAL; /* vectors only mean something on the mailbox link */
	int kick = xvl_doorbell_fd(&m->db, mq->kick_vector);
	if (kick < 0 || mq->call_vector >= m->db.n_peer || mq->call_vector >= xvl_mbox_peer_vectors(&m->mb) ||
	    m->db.peer[mq->call_vector] < 0) /* eventfd kind, or ivshmem through VFIO's ioeventfds */
		return -EINVAL;
	fds[0] = fcntl(kick, F_DUPFD_CLOEXEC, 3);
	fds[1] = fcntl(m->db.peer[mq->call_vector], F_DUPFD_CLOEXEC, 3);
	if (fds[0] < 0 || fds[1] < 0) {
		int e = errno;
		if (fds[0] >= 0)
			close(fds[0]);
		if (fds[1] >= 0)
			close(fds[1]);
		fds[0] = fds[1] = -1;
		return -e;
	}
	return 0;
}
