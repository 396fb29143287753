/* SPDX-License-Identifier: MIT */
/* The ivshmem server and peer; see ivshmem.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ivshmem.h"

#define IVSH_PROTOCOL_VERSION 0
#define PEER_BURST_QUIET_MS 200 /* the introduction is over when the server stays quiet this long */

static int send_i64(int sock, int64_t v, int fd)
{
	uint8_t b[8];
	for (unsigned i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)v >> (8 * i));
	return xvl_os_send(sock, b, sizeof(b), fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

static int make_vectors(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		fds[i] = xvl_os_eventfd();
		if (fds[i] < 0) {
			int e = errno;
			close_fds(fds, i);
			return -e;
		}
	}
	return 0;
}

/* Stream socket: xvl_os_listen makes SEQPACKET, QEMU's chardev speaks stream. */
static int listen_stream(const char *path, struct xvl_errbuf *eb)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return xvl_err(eb, -ENAMETOOLONG, "ivshmem socket path too long: %s", path);
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return xvl_err(eb, -errno, "socket: %s", strerror(errno));
	unlink(path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 8) < 0) {
		int e = errno;
		close(fd);
		return xvl_err(eb, -e, "ivshmem socket %s: %s", path, strerror(e));
	}
	return fd;
}

int xvl_ivsh_server_create(struct xvl_ivsh_server *s, const char *path, uint64_t size,
			   unsigned n_vec, struct xvl_errbuf *eb)
{
	memset(s, 0, sizeof(*s));
	s->listen_fd = -1;
	s->win.fd = -1;
	for (unsigned i = 0; i < XVL_MBOX_MAX_VECTORS; i++)
		s->own[i] = -1;
	for (unsigned p = 0; p < XVL_IVSH_MAX_PEERS; p++) {
		s->peer[p].sock = -1;
		for (unsigned i = 0; i < XVL_MBOX_MAX_VECTORS; i++)
			s->peer[p].vec[i] = -1;
	}
	if (n_vec < 1 || n_vec > XVL_MBOX_MAX_VECTORS)
		return xvl_err(eb, -EINVAL, "ivshmem: 1..%u vectors, not %u", XVL_MBOX_MAX_VECTORS, n_vec);
	s->n_vec = n_vec;
	s->next_id = XVL_IVSH_SELF_ID + 1;
	snprintf(s->path, sizeof(s->path), "%s", path);
	/* A sealed memfd: no peer can shrink it under our mapping. */
	int rc = xvl_os_window_create(&s->win, "memfd", size, eb);
	if (rc == 0 && (rc = make_vectors(s->own, n_vec)) < 0)
		xvl_err(eb, rc, "ivshmem: eventfd: %s", strerror(-rc));
	if (rc == 0) {
		s->listen_fd = listen_stream(path, eb);
		rc = s->listen_fd < 0 ? s->listen_fd : 0;
	}
	if (rc < 0)
		xvl_ivsh_server_close(s);
	return rc;
}

/* Tell sock about peer p: its id n_vec times, each with one of its vectors. */
static int introduce(const struct xvl_ivsh_server *s, int sock, uint16_t id, const int *vec)
{
	for (unsigned i = 0; i < s->n_vec; i++) {
		int rc = send_i64(sock, id, vec[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int xvl_ivsh_server_accept(struct xvl_ivsh_server *s, struct xvl_errbuf *eb)
{
	int sock = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (sock < 0)
		return xvl_err(eb, -errno, "ivshmem: accept: %s", strerror(errno));
	int slot = -1;
	for (unsigned p = 0; p < XVL_IVSH_MAX_PEERS && slot < 0; p++)
		if (s->peer[p].sock < 0)
			slot = (int)p;
	if (slot < 0) {
		close(sock);
		return xvl_err(eb, -EBUSY, "ivshmem: already %u peers, refused one more", XVL_IVSH_MAX_PEERS);
	}
	struct xvl_ivsh_peer *np = &s->peer[slot];
	int rc = make_vectors(np->vec, s->n_vec);
	if (rc < 0) {
		close(sock);
		return xvl_err(eb, rc, "ivshmem: eventfd: %s", strerror(-rc));
	}
	np->id = s->next_id++;
	if (s->next_id == 0)
		s->next_id = XVL_IVSH_SELF_ID + 1;
	/* Blocking sends for the introduction: a few dozen small messages. */
	int fl = fcntl(sock, F_GETFL);
	fcntl(sock, F_SETFL, fl & ~O_NONBLOCK);
	rc = send_i64(sock, IVSH_PROTOCOL_VERSION, -1);
	if (rc == 0)
		rc = send_i64(sock, np->id, -1);
	if (rc == 0)
		rc = send_i64(sock, -1, s->win.fd);
	if (rc == 0)
		rc = introduce(s, sock, XVL_IVSH_SELF_ID, s->own);
	for (unsigned p = 0; rc == 0 && p < XVL_IVSH_MAX_PEERS; p++)
		if (p != (unsigned)slot && s->peer[p].sock >= 0)
			rc = introduce(s, sock, s->peer[p].id, s->peer[p].vec);
	if (rc == 0)
		rc = introduce(s, sock, np->id, np->vec);
	fcntl(sock, F_SETFL, fl | O_NONBLOCK);
	if (rc < 0) {
		close(sock);
		close_fds(np->vec, s->n_vec);
		return xvl_err(eb, rc, "ivshmem: introducing peer %u: %s", np->id, strerror(-rc));
	}
	np->sock = sock;
	for (unsigned p = 0; p < XVL_IVSH_MAX_PEERS; p++)
		if (p != (unsigned)slot && s->peer[p].sock >= 0)
			introduce(s, s->peer[p].sock, np->id, np->vec);
	return slot;
}

void xvl_ivsh_server_drop(struct xvl_ivsh_server *s, unsigned slot)
{
	if (slot >= XVL_IVSH_MAX_PEERS || s->peer[slot].sock < 0)
		return;
	struct xvl_ivsh_peer *gone = &s->peer[slot];
	close(gone->sock);
	gone->sock = -1;
	close_fds(gone->vec, s->n_vec);
	for (unsigned p = 0; p < XVL_IVSH_MAX_PEERS; p++)
		if (s->peer[p].sock >= 0)
			send_i64(s->peer[p].sock, gone->id, -1);
}

static int dup_all(const int *from, int *to, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		to[i] = fcntl(from[i], F_DUPFD_CLOEXEC, 3);
		if (to[i] < 0)
			return -errno;
	}
	return 0;
}

int xvl_ivsh_server_doorbell(const struct xvl_ivsh_server *s, unsigned slot, struct xvl_doorbell *db)
{
	xvl_doorbell_init(db);
	if (slot >= XVL_IVSH_MAX_PEERS || s->peer[slot].sock < 0)
		return -ENOENT;
	db->kind = XVL_DB_EVENTFD;
	db->n_own = db->n_peer = s->n_vec;
	int rc = dup_all(s->own, db->own, s->n_vec);
	if (rc == 0)
		rc = dup_all(s->peer[slot].vec, db->peer, s->n_vec);
	if (rc < 0)
		xvl_doorbell_close(db);
	return rc;
}

void xvl_ivsh_server_close(struct xvl_ivsh_server *s)
{
	for (unsigned p = 0; p < XVL_IVSH_MAX_PEERS; p++)
		if (s->peer[p].sock >= 0) {
			close(s->peer[p].sock);
			s->peer[p].sock = -1;
			close_fds(s->peer[p].vec, s->n_vec);
		}
	close_fds(s->own, s->n_vec);
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(s->path);
		s->listen_fd = -1;
	}
	xvl_os_window_close(&s->win);
}

/* ------------------------------------------------------------ peer side */

/* One message: 0 with *v (and *fd, -1 if none), -ETIMEDOUT when quiet for timeout_ms. */
static int recv_i64(int sock, int64_t *v, int *fd, int timeout_ms)
{
	struct pollfd p = {.fd = sock, .events = POLLIN};
	int pr = poll(&p, 1, timeout_ms);
	if (pr == 0)
		return -ETIMEDOUT;
	if (pr < 0)
		return -errno;
	uint8_t b[8];
	unsigned nfds = 0;
	*fd = -1;
	int rc = xvl_os_recv_exact(sock, b, sizeof(b), fd, 1, &nfds);
	if (rc < 0)
		return rc;
	if (!nfds)
		*fd = -1;
	uint64_t u = 0;
	for (unsigned i = 0; i < 8; i++)
		u |= (uint64_t)b[i] << (8 * i);
	*v = (int64_t)u;
	return 0;
}

static int peer_fail(int sock, int fd, struct xvl_errbuf *eb, int rc, const char *what)
{
	if (fd >= 0)
		close(fd);
	close(sock);
	return xvl_err(eb, rc, "ivshmem peer: %s", what);
}

int xvl_ivsh_peer_connect(const char *path, struct xvl_os_window *win, struct xvl_doorbell *db,
			  int *sock_out, struct xvl_errbuf *eb)
{
	xvl_doorbell_init(db);
	win->fd = -1;
	int sock = xvl_os_connect_stream(path, eb);
	if (sock < 0)
		return sock;
	int64_t v, id;
	int fd;
	int rc = recv_i64(sock, &v, &fd, 5000);
	if (rc < 0 || v != IVSH_PROTOCOL_VERSION || fd >= 0)
		return peer_fail(sock, fd, eb, rc < 0 ? rc : -EPROTO, "no protocol version 0 from the server");
	rc = recv_i64(sock, &id, &fd, 5000);
	if (rc < 0 || id < 0 || id > 65535 || fd >= 0)
		return peer_fail(sock, fd, eb, rc < 0 ? rc : -EPROTO, "no peer id from the server");
	rc = recv_i64(sock, &v, &fd, 5000);
	if (rc < 0 || v != -1 || fd < 0)
		return peer_fail(sock, fd, eb, rc < 0 ? rc : -EPROTO, "no shared memory from the server");
	struct stat st;
	if (fstat(fd, &st) < 0)
		return peer_fail(sock, fd, eb, -errno, "fstat of the shared memory failed");
	rc = xvl_os_window_map(win, fd, (uint64_t)st.st_size, eb);
	if (rc < 0) {
		close(sock);
		return rc;
	}
	db->kind = XVL_DB_EVENTFD;
	/* Vectors until the server goes quiet: ours (id) and the server side's (SELF_ID). */
	for (unsigned n = 0; n < 4 * XVL_IVSH_MAX_PEERS * XVL_MBOX_MAX_VECTORS; n++) {
		rc = recv_i64(sock, &v, &fd, db->n_own ? PEER_BURST_QUIET_MS : 5000);
		if (rc == -ETIMEDOUT && db->n_own)
			break;
		if (rc < 0)
			break;
		if (fd < 0)
			continue; /* a peer left: not ours to care about here */
		int *list = v == id ? db->own : v == XVL_IVSH_SELF_ID ? db->peer : NULL;
		unsigned *cnt = v == id ? &db->n_own : &db->n_peer;
		if (!list || *cnt >= XVL_MBOX_MAX_VECTORS) {
			close(fd); /* another guest's vectors */
			continue;
		}
		list[(*cnt)++] = fd;
	}
	if (!db->n_own || !db->n_peer) {
		xvl_doorbell_close(db);
		xvl_os_window_close(win);
		close(sock);
		return xvl_err(eb, -EPROTO, "ivshmem peer: the server at %s sent no vectors", path);
	}
	*sock_out = sock;
	return 0;
}
