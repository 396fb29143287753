/* SPDX-License-Identifier: MIT */
/*
 * The client's mailbox link (docs/PROTOCOL.md section 7): the same link
 * messages as over the socket, in the mailbox the client lays out in its
 * own window; doorbell vectors instead of descriptors.  URIs:
 *
 *   window:PATH       a file (created and sized by us) both sides map; polling
 *   ivshmem:SOCKET    window and eventfd vectors from an ivshmem server
 *                     (`xvl server --window ivshmem:SOCKET`), as QEMU gets them
 *   mbox:             window and doorbell handed over at spawn:
 *                     XVL_WINDOW_FD / XVL_WINDOW_SIZE and XVL_DOORBELL
 *   ivshmem-server:SOCKET[,vectors=N][,wait=SECONDS]
 *                     be the ivshmem server on SOCKET ourselves: create the
 *                     window (sealed memfd) and eventfd vectors, wait for one
 *                     peer (QEMU's ivshmem-doorbell, whose guest runs the
 *                     device side, e.g. xvl server --window vfio:BDF) to
 *                     connect, and for its device side to accept the session
 *   vfio:BDF[,peer=N] in a QEMU guest: the ivshmem-doorbell device at BDF,
 *                     bound to vfio-pci (vfio.h): BAR2 is the window, rings
 *                     go to peer N (default 0, the ivshmem server) through
 *                     BAR0, the peer's rings arrive as MSI-X
 *
 * A vector is an eventfd on both counts (through VFIO, the kernel turns a
 * signal of peer[v] into the BAR0 write and MSI-X vector v into a signal
 * of own[v]), so a queue's kick and call descriptors (which blk.c created)
 * are made to refer to the vectors' eventfds with dup2(): the data path is
 * the same code as over the socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "doorbell.h"
#include "ivshmem.h"
#include "mailbox.h"
#include "vfio.h"

struct xvl_link_mbox {
	pthread_mutex_t lock;    /* threads sharing the client: one at a time in mb */
	struct xvl_mbox mb;
	struct xvl_doorbell db;
	int ivsh_sock;           /* ivshmem: our connection to the server, -1 otherwise */
	struct xvl_ivsh_server *ivsh_srv; /* ivshmem-server: the server we are, or NULL */
	unsigned first_connect_ms; /* ivshmem-server: the first handshake waits this long */
	char what[160];          /* "mailbox in PATH" for messages */
	char why[320];           /* the last error, with what */
	uint8_t vec_of[XVL_MAX_DEVICES][XVL_MAX_QUEUES]; /* a queue's vector, 0 = none yet */
	unsigned next_vec;       /* the next vector to give out */
	struct xvl_backoff backoff;
};

bool xvl_link_mbox_uri(const char *uri)
{
	return !strncmp(uri, "window:", 7) || !strncmp(uri, "ivshmem:", 8) || !strcmp(uri, "mbox:") ||
	       !strncmp(uri, "vfio:", 5) || !strncmp(uri, "ivshmem-server:", 15);
}

#define SERVE_DEFAULT_VECTORS 8u
#define SERVE_DEFAULT_WAIT_S 60u

/* "SOCKET[,vectors=N][,wait=SECONDS]" */
static int parse_serve(const char *spec, char *path, size_t cap, unsigned *nvec, unsigned *wait_s,
		       struct xvl_errbuf *eb)
{
	size_t n = strcspn(spec, ",");
	if (!n || n >= cap)
		return xvl_err(eb, -EINVAL, "ivshmem-server:SOCKET: socket path missing or too long");
	memcpy(path, spec, n);
	path[n] = '\0';
	*nvec = SERVE_DEFAULT_VECTORS;
	*wait_s = SERVE_DEFAULT_WAIT_S;
	for (const char *p = spec + n; *p; p += 1 + strcspn(p + 1, ",")) {
		unsigned long max = !strncmp(p, ",vectors=", 9) ? XVL_MBOX_MAX_VECTORS
				    : !strncmp(p, ",wait=", 6) ? 3600 : 0;
		const char *val = strchr(p, '=') ? strchr(p, '=') + 1 : p + 1;
		char *end;
		unsigned long v = strtoul(val, &end, 10);
		if (!max)
			return xvl_err(eb, -EINVAL, "ivshmem-server: unknown option '%.*s' (vectors=N, "
				       "wait=SECONDS)", (int)strcspn(p + 1, ","), p + 1);
		if (end == val || (*end && *end != ',') || v > max || (max != 3600 && v == 0))
			return xvl_err(eb, -EINVAL, "ivshmem-server: '%.*s': a number up to %lu",
				       (int)strcspn(p + 1, ","), p + 1, max);
		*(max == 3600 ? wait_s : nvec) = (unsigned)v;
	}
	return 0;
}

/* ivshmem-server:...: create window and vectors, and wait for the one peer (QEMU) to connect. */
static int serve_ivshmem(struct xvl_client *c, struct xvl_link_mbox *l, const char *spec, uint64_t size)
{
	char path[108];
	unsigned nvec, wait_s;
	int rc = parse_serve(spec, path, sizeof(path), &nvec, &wait_s, &c->eb);
	if (rc < 0)
		return rc;
	struct xvl_ivsh_server *s = calloc(1, sizeof(*s));
	if (!s)
		return xvl_err(&c->eb, -ENOMEM, "out of memory");
	rc = xvl_ivsh_server_create(s, path, size, nvec, &c->eb);
	if (rc < 0) {
		free(s);
		return rc;
	}
	l->ivsh_srv = s; /* closed by xvl_link_mbox_close */
	snprintf(l->what, sizeof(l->what), "mailbox in the ivshmem window we serve on %s", path);
	struct pollfd p = {.fd = s->listen_fd, .events = POLLIN};
	int pr = poll(&p, 1, (int)wait_s * 1000);
	if (pr <= 0)
		return xvl_err(&c->eb, pr < 0 ? -errno : -ETIMEDOUT, "ivshmem-server %s: no peer connected "
			       "within %u s (start QEMU with -chardev socket,path=%s,id=ID -device "
			       "ivshmem-doorbell,chardev=ID,vectors=%u)", path, wait_s, path, nvec);
	int slot = xvl_ivsh_server_accept(s, &c->eb);
	if (slot < 0)
		return slot;
	rc = xvl_ivsh_server_doorbell(s, (unsigned)slot, &l->db);
	if (rc < 0)
		return xvl_err(&c->eb, rc, "ivshmem-server %s: %s", path, strerror(-rc));
	c->win = s->win; /* ours now: the server's copy is forgotten so only we unmap it */
	memset(&s->win, 0, sizeof(s->win));
	s->win.fd = -1;
	l->first_connect_ms = wait_s * 1000; /* the peer's device side may still be booting */
	return 0;
}

bool xvl_client_link_polls(const struct xvl_client *c)
{
	return c->mbox && xvl_doorbell_fd(&c->mbox->db, XVL_MBOX_VEC_MAILBOX) < 0;
}

/* The window and the doorbell, from the URI; fills c->win. */
int xvl_link_mbox_create(struct xvl_client *c, const char *uri, uint64_t size)
{
	struct xvl_link_mbox *l = calloc(1, sizeof(*l));
	if (!l)
		return xvl_err(&c->eb, -ENOMEM, "out of memory");
	l->ivsh_sock = -1;
	pthread_mutex_init(&l->lock, NULL);
	xvl_doorbell_init(&l->db);
	c->mbox = l;
	if (!strncmp(uri, "window:", 7)) {
		snprintf(l->what, sizeof(l->what), "mailbox in %s", uri + 7);
		return xvl_os_window_open_path(&c->win, uri + 7, size, &c->eb);
	}
	if (!strncmp(uri, "ivshmem:", 8)) {
		snprintf(l->what, sizeof(l->what), "mailbox in the ivshmem window of %s", uri + 8);
		return xvl_ivsh_peer_connect(uri + 8, &c->win, &l->db, &l->ivsh_sock, &c->eb);
	}
	if (!strncmp(uri, "ivshmem-server:", 15))
		return serve_ivshmem(c, l, uri + 15, size);
	if (!strncmp(uri, "vfio:", 5)) {
		snprintf(l->what, sizeof(l->what), "mailbox in the ivshmem BAR of %s", uri + 5);
		return xvl_vfio_ivshmem_open(uri + 5, &c->win, &l->db, NULL, &c->eb);
	}
	/* mbox: everything handed over at spawn */
	const char *fd_env = getenv("XVL_WINDOW_FD");
	if (!fd_env)
		return xvl_err(&c->eb, -EINVAL, "mbox: needs XVL_WINDOW_FD (and XVL_DOORBELL) from the "
			       "process that started us");
	int fd = atoi(fd_env);
	unsetenv("XVL_WINDOW_FD");
	const char *size_env = getenv("XVL_WINDOW_SIZE");
	struct stat st;
	uint64_t wsize = size_env ? strtoull(size_env, NULL, 10) : 0;
	if (!wsize && fstat(fd, &st) == 0)
		wsize = (uint64_t)st.st_size;
	snprintf(l->what, sizeof(l->what), "mailbox in window fd %d", fd);
	int rc = xvl_doorbell_parse(&l->db, getenv("XVL_DOORBELL"), &c->eb);
	if (rc < 0)
		return rc;
	return xvl_os_window_map(&c->win, fd, wsize, &c->eb);
}

/* Lay the mailbox out in the freshly formatted window (its heap exists). */
int xvl_link_mbox_format(struct xvl_client *c)
{
	struct xvl_link_mbox *l = c->mbox;
	uint64_t len = xvl_mbox_size(XVL_MBOX_DEF_SLOTS);
	uint64_t off = xvl_client_heap_alloc(c, len);
	if (!off)
		return xvl_err(&c->eb, -ENOMEM, "%s: no room for the mailbox", l->what);
	int rc = xvl_mbox_format(&l->mb, &c->win.mem, off, XVL_MBOX_DEF_SLOTS, l->db.n_own);
	if (rc < 0)
		return xvl_err(&c->eb, rc, "%s: cannot lay it out (%s)", l->what, strerror(-rc));
	/* The link's pollable descriptor: what blk.c waits on besides its queue. */
	int fd = xvl_doorbell_fd(&l->db, XVL_MBOX_VEC_MAILBOX);
	if (c->sock >= 0)
		close(c->sock);
	c->sock = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
	return 0;
}

/* Sleep until vector 0 rings or a backoff interval passes, at most left_ms. */
static void wait_a_little(struct xvl_link_mbox *l, int left_ms)
{
	int fd = xvl_doorbell_fd(&l->db, XVL_MBOX_VEC_MAILBOX);
	if (fd >= 0) {
		/* Look again now and then even without a ring: a ring is a hint, the mailbox the truth. */
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, left_ms < 100 ? left_ms : 100);
		return;
	}
	unsigned us = xvl_backoff_next(&l->backoff);
	if ((long)us > (long)left_ms * 1000)
		us = (unsigned)left_ms * 1000;
	if (us)
		usleep(us);
}

static int left_ms(uint64_t deadline)
{
	uint64_t now = xvl_os_now_ns();
	return now >= deadline ? 0 : (int)((deadline - now) / 1000000ull) + 1;
}

/* A new session: the device side must accept it within the timeout. */
int xvl_link_mbox_connect(struct xvl_client *c)
{
	struct xvl_link_mbox *l = c->mbox;
	pthread_mutex_lock(&l->lock);
	xvl_mbox_connect(&l->mb);
	pthread_mutex_unlock(&l->lock);
	xvl_doorbell_ring(&l->db, XVL_MBOX_VEC_MAILBOX);
	unsigned wait_ms = l->first_connect_ms > c->timeout_ms ? l->first_connect_ms : c->timeout_ms;
	uint64_t deadline = xvl_os_now_ns() + (uint64_t)wait_ms * 1000000ull;
	xvl_backoff_reset(&l->backoff);
	for (;;) {
		xvl_doorbell_drain(&l->db, XVL_MBOX_VEC_MAILBOX);
		pthread_mutex_lock(&l->lock);
		int rc = xvl_mbox_connected(&l->mb);
		pthread_mutex_unlock(&l->lock);
		if (rc == 1) {
			l->first_connect_ms = 0; /* later sessions: the usual timeout */
			return 0;
		}
		if (rc < 0)
			return xvl_err(&c->eb, rc, "%s: %s", l->what, xvl_mbox_why(&l->mb));
		int left = left_ms(deadline);
		if (!left)
			return xvl_err(&c->eb, -ETIMEDOUT, "%s: no device side accepted the session within "
				       "%u ms (is the server running on this window?)", l->what, wait_ms);
		wait_a_little(l, left);
	}
}

int xvl_link_mbox_send(struct xvl_client *c, const struct xvl_msg *m)
{
	struct xvl_link_mbox *l = c->mbox;
	uint64_t deadline = xvl_os_now_ns() + (uint64_t)c->timeout_ms * 1000000ull;
	xvl_backoff_reset(&l->backoff);
	for (;;) {
		pthread_mutex_lock(&l->lock);
		int rc = xvl_mbox_send(&l->mb, m);
		pthread_mutex_unlock(&l->lock);
		if (rc == 0) {
			xvl_doorbell_ring(&l->db, XVL_MBOX_VEC_MAILBOX);
			return 0;
		}
		if (rc != -EAGAIN)
			return rc;
		int left = left_ms(deadline);
		if (!left)
			return -ETIMEDOUT; /* the device side does not drain its mailbox */
		wait_a_little(l, left);
	}
}

int xvl_link_mbox_recv(struct xvl_client *c, struct xvl_msg *m, int timeout_ms)
{
	struct xvl_link_mbox *l = c->mbox;
	uint64_t deadline = xvl_os_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
	xvl_backoff_reset(&l->backoff);
	for (;;) {
		/* Drain first, then look: a ring after the look wakes the next wait. */
		xvl_doorbell_drain(&l->db, XVL_MBOX_VEC_MAILBOX);
		pthread_mutex_lock(&l->lock);
		int rc = xvl_mbox_recv(&l->mb, m);
		pthread_mutex_unlock(&l->lock);
		if (rc == 1)
			return 0;
		if (rc < 0)
			return rc == -ECONNRESET || rc == -ENOTCONN ? -ENOTCONN : rc;
		int left = left_ms(deadline);
		if (!left || timeout_ms <= 0)
			return -ETIMEDOUT;
		wait_a_little(l, left);
	}
}

const char *xvl_link_mbox_why(const struct xvl_client *c)
{
	struct xvl_link_mbox *l = c->mbox;
	const char *why = xvl_mbox_why(&l->mb);
	snprintf(l->why, sizeof(l->why), "%s: %s", l->what,
		 *why ? why : "the device side closed the link or restarted");
	return l->why;
}

/*
 * The vector of queue q of device d (PROTOCOL.md 7.6): the next unused one
 * (1, 2, ...) the first time the queue is set up, the same one ever after
 * (resets, reconnections).  Both sides here treat a queue's vector as that
 * queue's own notification, so when none is left the queue is refused (-1)
 * rather than given a shared one.
 */
static int queue_vector(struct xvl_link_mbox *l, uint32_t dev, uint16_t q)
{
	if (dev >= XVL_MAX_DEVICES || q >= XVL_MAX_QUEUES)
		return -1;
	if (l->vec_of[dev][q])
		return l->vec_of[dev][q];
	unsigned n = l->db.n_own < xvl_mbox_peer_vectors(&l->mb) ? l->db.n_own : xvl_mbox_peer_vectors(&l->mb);
	if (l->db.n_peer < n)
		n = l->db.n_peer;
	if (l->next_vec < 1)
		l->next_vec = 1;
	if (l->next_vec >= n)
		return -1;
	l->vec_of[dev][q] = (uint8_t)l->next_vec++;
	return l->vec_of[dev][q];
}

int xvl_link_mbox_queue(struct xvl_client *c, uint32_t dev, const struct xvl_queue_setup *qs,
			struct xvl_m_queue *mq)
{
	struct xvl_link_mbox *l = c->mbox;
	if (qs->poll) {
		mq->flags |= XVL_QUEUE_F_POLL;
		return 0;
	}
	int kick = queue_vector(l, dev, qs->queue), call = kick;
	if (kick < 0 || l->db.peer[kick] < 0 || xvl_doorbell_fd(&l->db, (unsigned)call) < 0)
		return xvl_err(&c->eb, -ENXIO, "%s: no doorbell vector left for queue %u of device %u "
			       "(%u vectors here, %u on the device side, vector 0 is the mailbox's): give "
			       "the link more vectors (ivshmem: vectors=N) or use fewer queues",
			       l->what, qs->queue, dev, l->db.n_own, xvl_mbox_peer_vectors(&l->mb));
	/* blk.c kicks and waits on its own descriptors: make them the vectors' eventfds. */
	if (dup3(l->db.peer[kick], qs->kick_fd, O_CLOEXEC) < 0 ||
	    dup3(xvl_doorbell_fd(&l->db, (unsigned)call), qs->call_fd, O_CLOEXEC) < 0)
		return xvl_err(&c->eb, -errno, "%s: dup3: %s", l->what, strerror(errno));
	mq->flags |= XVL_QUEUE_F_VECTORS;
	mq->kick_vector = (uint16_t)kick;
	mq->call_vector = (uint16_t)call;
	return 0;
}

void xvl_link_mbox_close(struct xvl_client *c)
{
	struct xvl_link_mbox *l = c->mbox;
	if (!l)
		return;
	if (l->mb.base) {
		xvl_mbox_close(&l->mb);
		/* Say so: a device side that is not polling looks only when rung. */
		xvl_doorbell_ring(&l->db, XVL_MBOX_VEC_MAILBOX);
	}
	xvl_doorbell_close(&l->db);
	if (l->ivsh_sock >= 0)
		close(l->ivsh_sock);
	if (l->ivsh_srv) {
		xvl_ivsh_server_close(l->ivsh_srv);
		free(l->ivsh_srv);
	}
	pthread_mutex_destroy(&l->lock);
	free(l);
	c->mbox = NULL;
}
