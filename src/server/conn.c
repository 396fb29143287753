/* SPDX-License-Identifier: MIT */
/*
 * Connections and link I/O.
 *
 * Nothing here blocks.  Replies and EVENTs go out with a non-blocking send;
 * what the socket does not take waits in the connection's own queue
 * (SRV_OUTQ_MAX messages), and while anything waits there the server reads
 * no further request from that client (its requests stay in its socket):
 * a client that does not read its link only stalls itself.  EVENTs can
 * still arrive for it; one that would overflow the queue drops the
 * connection.  Connections beyond SRV_MAX_CONNS are closed at accept, and
 * one that has no accepted HELLO after SRV_HELLO_MS is closed.
 *
 * A connection is freed when its link is closed and it holds no device: a
 * device with requests in flight keeps its connection (and so the window
 * those requests point into) until it drained (devstate.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "srv.h"

/* ------------------------------------------------------------ lifetime */

static void conn_free(struct srv_conn *c)
{
	struct srv *s = c->srv;
	for (struct srv_conn **p = &s->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	s->n_conns--;
	if (!c->mbox) /* a mailbox session borrows the window of its mailbox */
		xvl_os_window_close(&c->win);
	free(c);
}

void srv_conn_free_if_unused(struct srv_conn *c)
{
	if (c->closing && !srv_conn_holds_devices(c))
		conn_free(c);
}

static void conn_close(struct srv_conn *c)
{
	struct srv *s = c->srv;
	if (c->closing)
		return;
	if (c->name[0]) /* a probe that never said HELLO is not worth a line */
		srv_log(s, "client %s disconnected", c->name);
	if (c->fd >= 0) {
		srv_unwatch(s, c->fd);
		close(c->fd);
	}
	c->fd = -1;
	c->closing = true;
	c->out_count = 0;
	if (c->mbox)
		srv_mbox_conn_closed(c);
	srv_dev_conn_closed(c);
	srv_conn_free_if_unused(c);
}

void srv_conn_close(struct srv_conn *c)
{
	conn_close(c);
}

static bool any_awaiting_hello(const struct srv *s)
{
	for (const struct srv_conn *c = s->conns; c; c = c->next)
		if (!c->closing && c->hello == SRV_HELLO_AWAITED)
			return true;
	return false;
}

void srv_conn_accept(struct srv *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	if (s->n_conns >= SRV_MAX_CONNS) {
		srv_log(s, "%u connections already: a new one is closed", SRV_MAX_CONNS);
		close(fd);
		return;
	}
	struct srv_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->srv = s;
	c->fd = fd;
	c->win.fd = -1;
	c->born_ns = xvl_os_now_ns();
	if (srv_watch(s, fd, &c->w, W_CONN, c) < 0) {
		close(fd);
		free(c);
		return;
	}
	c->next = s->conns;
	s->conns = c;
	s->n_conns++;
	srv_tick_arm(s, true);
}

void srv_conns_reap(struct srv *s)
{
	for (struct srv_conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		if (c->doomed && !c->closing)
			conn_close(c); /* may free c, never another connection */
	}
}

void srv_conns_tick(struct srv *s)
{
	uint64_t now = xvl_os_now_ns();
	for (struct srv_conn *c = s->conns; c; c = c->next) {
		if (c->closing || c->hello != SRV_HELLO_AWAITED ||
		    now - c->born_ns < SRV_HELLO_MS * 1000000ull)
			continue;
		srv_log(s, "a connection sent no HELLO within %u ms; closing it", SRV_HELLO_MS);
		c->doomed = true;
	}
	srv_conns_reap(s);
	srv_tick_arm(s, any_awaiting_hello(s));
}

void srv_conns_close_all(struct srv *s)
{
	while (s->conns) {
		struct srv_conn *c = s->conns;
		conn_close(c);
		if (s->conns == c) /* still has requests in flight: drop it anyway */
			conn_free(c);
	}
}

/* ------------------------------------------------------------ sending */

static void conn_doom(struct srv_conn *c, const char *why)
{
	if (c->doomed)
		return;
	srv_log(c->srv, "client %s: %s; dropping its link", c->name[0] ? c->name : "(unnamed)",
		why);
	c->doomed = true;
}

/* Try to hand one packet to the socket: 1 sent, 0 would block, -errno. */
static int try_send(struct srv_conn *c, const uint8_t *b, size_t len)
{
	for (;;) {
		ssize_t n = send(c->fd, b, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n == (ssize_t)len)
			return 1;
		if (n >= 0)
			return -EMSGSIZE; /* SEQPACKET: all or nothing */
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return 0;
		return -errno;
	}
}

/* Requests are read only while nothing waits to be sent. */
static void conn_watch_for(struct srv_conn *c)
{
	uint32_t ev = c->out_count ? EPOLLOUT : EPOLLIN;
	srv_watch_events(c->srv, c->fd, &c->w, ev);
}

static void conn_flush(struct srv_conn *c)
{
	bool had = c->out_count;
	while (c->out_count) {
		struct srv_out *o = &c->out[c->out_head];
		int rc = try_send(c, o->b, o->len);
		if (rc == 0)
			break;
		if (rc < 0) {
			conn_doom(c, strerror(-rc));
			return;
		}
		c->out_head = (c->out_head + 1) % SRV_OUTQ_MAX;
		c->out_count--;
	}
	if (had && !c->out_count)
		conn_watch_for(c);
}

void srv_conn_send(struct srv_conn *c, const struct xvl_msg *m)
{
	uint8_t buf[XVL_MSG_MAX_SIZE];
	if (!c || c->closing || c->doomed)
		return;
	if (c->mbox) {
		srv_mbox_send(c, m);
		return;
	}
	int n = xvl_msg_encode(m, buf, sizeof(buf));
	if (n <= 0)
		return;
	if (!c->out_count) {
		int rc = try_send(c, buf, (size_t)n);
		if (rc == 1)
			return;
		if (rc < 0) {
			conn_doom(c, strerror(-rc));
			return;
		}
	}
	if (c->out_count == SRV_OUTQ_MAX) {
		conn_doom(c, "it does not read its link (too many replies and events waiting)");
		return;
	}
	struct srv_out *o = &c->out[(c->out_head + c->out_count) % SRV_OUTQ_MAX];
	memcpy(o->b, buf, (size_t)n);
	o->len = (uint16_t)n;
	if (c->out_count++ == 0)
		conn_watch_for(c);
}

void srv_dev_event(struct srv_dev *d, uint32_t code, int reason, const char *msg)
{
	struct xvl_msg ev = {.type = XVL_MSG_EVENT};
	ev.u.event.dev = d->index;
	ev.u.event.code = code;
	ev.u.event.reason = reason;
	snprintf(ev.u.event.msg, sizeof(ev.u.event.msg), "%s", msg);
	srv_conn_send(d->conn, &ev);
}

/* ------------------------------------------------------------ receiving */

static void conn_readable(struct srv_conn *c)
{
	uint8_t buf[XVL_MSG_MAX_SIZE];
	int fds[XVL_OS_MAX_FDS];
	unsigned nfds = 0;
	struct xvl_msg m;

	long n = xvl_os_recv(c->fd, buf, sizeof(buf), fds, XVL_OS_MAX_FDS, &nfds);
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		if (n < 0 && n != -ECONNRESET)
			srv_log(c->srv, "client %s: link error: %s", c->name, strerror((int)-n));
		conn_close(c);
		return;
	}
	int rc = xvl_msg_decode(buf, (size_t)n, &m);
	if (rc < 0 || xvl_msg_is_reply(&m)) {
		srv_log(c->srv, "client %s sent a malformed message (%s); closing its link",
			c->name[0] ? c->name : "(unnamed)", rc < 0 ? strerror(-rc) : "unexpected reply");
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		conn_close(c);
		return;
	}
	srv_link_dispatch(c, &m, fds, nfds);
	for (unsigned i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

void srv_conn_event(struct srv_conn *c, uint32_t events)
{
	if (c->closing)
		return;
	if (events & EPOLLOUT)
		conn_flush(c);
	if (c->doomed)
		return;
	/* one request per wake-up; level-triggered, so the rest come on the next pass */
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->out_count)
		conn_readable(c);
}
