/* SPDX-License-Identifier: MIT */
/*
 * Linux OS layer: window backing and mapping, the link socket with file
 * descriptor passing, eventfds, and error messages.  Everything above the
 * portable core reaches the OS only through here (plus liburing/epoll in
 * the roles).
 */
#ifndef XVL_OS_H
#define XVL_OS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "window.h"

/* ---------------------------------------------------------------- errors */

/* An error message a user can act on, next to a negative errno. */
struct xvl_errbuf {
	char msg[256];
};

/* Format msg into eb (if not NULL) and return rc (a negative errno). */
int xvl_err(struct xvl_errbuf *eb, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- window */

struct xvl_os_window {
	int fd;              /* backing file descriptor (memfd, hugetlbfs or shm file) */
	struct xvl_mem mem;  /* local mapping */
};

/*
 * Create and map a new window of size bytes.  backing:
 *   NULL or "memfd"        anonymous memfd (sealed against shrinking)
 *   "memfd-huge"           memfd with MFD_HUGETLB (size rounded to the huge page)
 *   "hugetlbfs:PATH"       file created at PATH on a hugetlbfs mount, then unlinked
 *   "shm:NAME"             POSIX shared memory object /dev/shm/NAME (left for others to open)
 * Returns 0 or a negative errno with eb set.
 */
int xvl_os_window_create(struct xvl_os_window *w, const char *backing, uint64_t size,
			 struct xvl_errbuf *eb);

/* Map a window received from a peer (takes ownership of fd).  Checks that the
 * file is at least size bytes; -EINVAL otherwise. */
int xvl_os_window_map(struct xvl_os_window *w, int fd, uint64_t size, struct xvl_errbuf *eb);

/*
 * Make sure a peer's window file cannot shrink under our mapping (a shrink
 * turns every later access into SIGBUS): adds F_SEAL_SHRINK to a memfd that
 * does not have it.  0 when the file is sealed against shrinking; -EPERM
 * when it cannot be (not a memfd, created without MFD_ALLOW_SEALING, or
 * F_SEAL_SEAL already set).  Does not take ownership of fd.
 */
int xvl_os_window_seal(int fd);

/*
 * Map a window by path (window_path.c): create_size > 0 creates the file
 * and grows it to that size if smaller (the driver side); 0 maps it as it
 * is (-EAGAIN while it is smaller than a window).
 */
int xvl_os_window_open_path(struct xvl_os_window *w, const char *path, uint64_t create_size,
			    struct xvl_errbuf *eb);

/* Unmap and close; safe on a zeroed or already-closed window. */
void xvl_os_window_close(struct xvl_os_window *w);

/*
 * Every window created or mapped here is guarded against SIGBUS (a peer
 * punching holes in a hugetlb window, or truncating an unsealed one): the
 * faulting page is replaced by a private zero page and the access goes on.
 * The number of pages so replaced in w (0 for a well-behaved peer).
 */
unsigned xvl_os_window_faults(const struct xvl_os_window *w);

/* ---------------------------------------------------------------- sockets */

#define XVL_OS_MAX_FDS 8

/* SOCK_SEQPACKET Unix sockets, close-on-exec.  listen unlinks a stale socket file first. */
int xvl_os_listen(const char *path, struct xvl_errbuf *eb);
int xvl_os_connect(const char *path, struct xvl_errbuf *eb);
/* SOCK_STREAM connect, for vhost-user backends. */
int xvl_os_connect_stream(const char *path, struct xvl_errbuf *eb);
/* The uid of the process at the other end of a connected unix socket (SO_PEERCRED). */
int xvl_os_peer_uid(int sock, uint32_t *uid);

/*
 * Attach nfds descriptors to mh as its one SCM_RIGHTS control message, built in
 * ctl: a buffer aligned for struct cmsghdr of CMSG_SPACE(sizeof(int) * nfds)
 * bytes at least.
 */
struct msghdr;
void xvl_os_put_rights(struct msghdr *mh, void *ctl, const int *fds, unsigned nfds);

/* Send one message with up to XVL_OS_MAX_FDS descriptors (SCM_RIGHTS). 0 or -errno. */
int xvl_os_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds);

/*
 * Receive one message.  Returns its length, 0 on orderly close, or -errno.
 * A message longer than cap is -EMSGSIZE (SEQPACKET truncation is detected),
 * more descriptors than max_fds are closed and -EMSGSIZE returned.  Received
 * descriptors are close-on-exec; *nfds gets their count.
 * For stream sockets use xvl_os_recv_exact.
 */
long xvl_os_recv(int sock, void *buf, size_t cap, int *fds, unsigned max_fds, unsigned *nfds);

/* Stream sockets: read exactly len bytes (with up to max_fds descriptors on
 * the way).  0, -ECONNRESET on early close, or -errno. */
int xvl_os_recv_exact(int sock, void *buf, size_t len, int *fds, unsigned max_fds, unsigned *nfds);

/* ---------------------------------------------------------------- eventfds */

int xvl_os_eventfd(void);                 /* non-blocking, close-on-exec */
int xvl_os_eventfd_signal(int fd);        /* write 1 */
uint64_t xvl_os_eventfd_drain(int fd);    /* read and return the counter, 0 if none */

/*
 * Is fd an eventfd?  1 yes, 0 no (a pipe, a memfd, a socket, another
 * anonymous inode...), or -errno when it cannot be told.  Asks
 * /proc/self/fd (readlink "anon_inode:[eventfd]").
 */
int xvl_os_is_eventfd(int fd);

/*
 * Eventfds that a peer passed in.  O_NONBLOCK lives on the open file
 * description the peer shares, so the peer can clear it at any time and a
 * plain read() or write() could then block for good (a counter at its
 * maximum, or empty).  These calls run under a per-thread timer that
 * interrupts a blocked call within XVL_OS_PEER_EFD_MS; an interrupted call
 * is never retried.  The first guarded call arms the timer; the caller
 * disarms it with xvl_os_guard_release before it sleeps (an event loop:
 * once per pass) and before blocking calls of its own, which would see EINTR
 * every XVL_OS_PEER_EFD_MS while it is armed.  A busy loop thus pays two
 * timer calls per pass, not per eventfd call.
 */
#define XVL_OS_PEER_EFD_MS 20

struct xvl_os_guard {
	void *timer;  /* timer_t */
	int ok;
	int armed;
};

/* Set up the guard for the calling thread (installs a no-op handler for
 * XVL_OS_GUARD_SIGNAL without SA_RESTART).  0 or -errno. */
int xvl_os_guard_init(struct xvl_os_guard *g);
void xvl_os_guard_fini(struct xvl_os_guard *g);
/* Disarm the timer if a guarded call armed it (before sleeping). */
void xvl_os_guard_release(struct xvl_os_guard *g);

/* Add 1.  0; -EAGAIN when the counter is at its maximum (a wakeup is pending
 * anyway: nothing to do, do not retry); -ETIMEDOUT when the write blocked
 * (the peer made the eventfd blocking); other -errno. */
int xvl_os_peer_eventfd_signal(struct xvl_os_guard *g, int fd);
/* Read and return the counter in *v (0 when none).  0, -ETIMEDOUT when the
 * read blocked (the peer made it blocking and emptied it), or -errno. */
int xvl_os_peer_eventfd_drain(struct xvl_os_guard *g, int fd, uint64_t *v);

/* Monotonic time in nanoseconds. */
uint64_t xvl_os_now_ns(void);

#endif
