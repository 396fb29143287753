/* SPDX-License-Identifier: MIT */
/* Server internals: devices, queues, connections and the backend interface. */
#ifndef XVL_SRV_H
#define XVL_SRV_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "proto.h"
#include "server.h"
#include "vhost.h"
#include "virtq.h"

#define SRV_MAX_SEGS 130u /* segments per request the server accepts */

struct srv;
struct srv_dev;
struct srv_queue;
struct srv_conn;

/* What an epoll event is about: every watched fd has one of these as its data. */
enum srv_watch_kind {
	W_LISTEN,
	W_SIGNAL,
	W_RING,
	W_CONN,
	W_KICK,        /* a client's kick eventfd (built-in backends; relay mode) */
	W_RELAY_CALL,  /* a vhost backend's call eventfd (relay mode) */
	W_VHOST,       /* a vhost backend's socket: readable means it went away */
	W_VHOST_TIMER, /* retry timer while a lost vhost backend is awaited */
	W_MBOX,        /* the mailbox link's doorbell vector 0 */
	W_IVSH_LISTEN, /* the ivshmem server's socket (window link) */
	W_IVSH_PEER,   /* an ivshmem peer's socket: readable means it left */
};

struct srv_watch {
	enum srv_watch_kind kind;
	void *obj;
};

/* One request in flight; indexed by its chain head, so at most one per head. */
struct srv_req {
	struct srv_queue *q;
	uint16_t head;
	bool busy;
	uint8_t *status;     /* the status byte, inside the window */
	uint32_t type;
	uint64_t sector;
	uint64_t bytes;      /* data bytes */
	uint32_t written;    /* bytes the device wrote into the chain (for the used entry) */
	unsigned niov;
	struct iovec iov[SRV_MAX_SEGS];
};

struct srv_queue {
	struct srv_dev *dev;
	uint16_t index;
	bool enabled;
	bool poll;
	bool more;           /* work left from the last round */
	struct xvl_vq_dev vq;
	int kick_fd;
	int call_fd;
	unsigned inflight;
	struct srv_req *req; /* vq.num entries */
	struct xvl_seg seg[SRV_MAX_SEGS + 2];
	/* vhost bridge, relay mode: server-side eventfds the backend uses */
	int relay_kick;
	int relay_call;
	struct srv_watch kick_w;
	struct srv_watch relay_call_w;
};

struct srv_backend_ops {
	int (*open)(struct srv_dev *d, struct xvl_errbuf *eb);
	/* Start a request; complete it now or later with srv_req_done. */
	void (*submit)(struct srv_dev *d, struct srv_req *r);
	void (*close)(struct srv_dev *d);
};

struct srv_dev {
	struct srv *srv;
	unsigned index;
	struct xvl_dev_spec spec;
	const struct srv_backend_ops *ops;
	/* what the device offers */
	uint64_t features;
	uint16_t num_queues;
	uint16_t max_queue_size;
	uint8_t config[XVL_CONFIG_MAX];
	uint32_t config_len;
	uint64_t capacity;   /* bytes */
	uint32_t block_size;
	/* state set by the attached driver */
	struct srv_conn *conn;
	uint64_t driver_features;
	uint32_t status;
	bool broken;
	struct srv_queue q[XVL_MAX_QUEUES];
	/* backend state */
	int fd;              /* file */
	uint8_t *ram;        /* ram */
	struct xvl_vhost vh; /* vhost bridge */
	bool vh_up;
	bool vh_probed;      /* features and config were read from the backend */
	struct srv_watch vh_w;
	int vh_timer;        /* timerfd while a lost backend is awaited, else -1 */
	uint64_t vh_deadline_ns;
	struct srv_watch vh_timer_w;
	/* counters */
	uint64_t st_requests;
	uint64_t st_bytes;
	uint64_t st_errors;
	uint64_t st_notifies;
};

struct srv_mbox;

struct srv_conn {
	struct srv *srv;
	int fd;              /* socket link; -1 on the mailbox link */
	struct srv_mbox *mbox; /* mailbox link (conn_mbox.c); NULL on the socket link */
	char name[XVL_NAME_MAX];
	struct xvl_os_window win;
	bool has_window;
	bool hello_ok;       /* a HELLO was accepted: other requests may follow */
	bool closing;        /* peer gone; freed once no request is in flight */
	uint32_t pending_detach_seq; /* DETACH/RESET reply waiting for in-flight requests */
	uint16_t pending_detach_type;
	int pending_detach_dev;
	struct srv_watch w;
	struct srv_conn *next;
};

struct srv {
	struct xvl_server_opts opts;
	int epfd;
	int listen_fd;
	int signal_fd;
	volatile int stop;
	struct io_uring ring;
	bool ring_ok;
	unsigned ring_pending; /* SQEs prepared but not submitted */
	unsigned n_devs;
	struct srv_dev dev[XVL_SERVER_MAX_DEVS];
	struct srv_conn *conns;
	struct srv_watch listen_w, signal_w, ring_w;
	unsigned poll_queues; /* enabled queues in poll mode: the loop spins while > 0 */
	struct srv_mbox *mbox; /* the window link, if any (conn_mbox.c) */
};

/* server.c, for the mailbox link */
void srv_conn_dispatch(struct srv_conn *c, const struct xvl_msg *m);
void srv_conn_close(struct srv_conn *c);

/* conn_mbox.c: the mailbox link's side of a connection */
int srv_mbox_setup(struct srv *s, struct xvl_errbuf *eb);
/* Look at the mailbox: new sessions, requests, held events.  Cheap when idle. */
void srv_mbox_poll(struct srv *s);
void srv_mbox_on_event(struct srv *s, struct srv_watch *w);
/* Microseconds the loop may sleep (-1: until an fd wakes it); busy: work was found. */
long srv_mbox_idle_us(struct srv *s, bool busy);
int srv_mbox_send(struct srv_conn *c, const struct xvl_msg *m);
/* SET_QUEUE with VECTORS: the queue's kick and call eventfds (new descriptors), or -errno. */
int srv_mbox_queue_fds(struct srv_conn *c, const struct xvl_m_queue *mq, int fds[2]);
void srv_mbox_conn_closed(struct srv_conn *c);
void srv_mbox_destroy(struct srv *s);

/* Backends. */
extern const struct srv_backend_ops srv_file_ops;
extern const struct srv_backend_ops srv_null_ops;
extern const struct srv_backend_ops srv_ram_ops;
extern const struct srv_backend_ops srv_vhost_ops;

/* virtio-blk device model (blkdev.c). */
void srv_blk_fill_config(struct srv_dev *d, uint16_t num_queues, uint32_t seg_max);
/* Serve every available chain of q (bounded per call; sets q->more when cut short). */
void srv_queue_process(struct srv_queue *q);
/* Finish r with a virtio-blk status; pushes the used entry and notifies as needed. */
void srv_req_done(struct srv_req *r, uint8_t status);
/* Mark the device broken (NEEDS_RESET), tell the driver, stop its queues. */
void srv_dev_break(struct srv_dev *d, int reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Send a used-buffer notification on q if the driver wants one. */
void srv_queue_notify(struct srv_queue *q);

/* io_uring helpers (server.c). */
struct io_uring_sqe *srv_get_sqe(struct srv *s);
/* Watch fd for input with w as its event data; unwatch before closing it. */
int srv_watch(struct srv *s, int fd, struct srv_watch *w, enum srv_watch_kind kind, void *obj);
void srv_unwatch(struct srv *s, int fd);

/* vhost bridge (bridge.c): set up / tear down the backend's view of the client's queues. */
int srv_bridge_start(struct srv_dev *d, struct xvl_errbuf *eb);
void srv_bridge_stop(struct srv_dev *d);
void srv_bridge_relay(struct srv *s, struct srv_queue *q, bool from_client);
/* The backend socket became readable: it went away (or broke the protocol). */
void srv_bridge_lost(struct srv_dev *d);
/* Retry timer tick while a lost backend is awaited. */
void srv_bridge_retry(struct srv_dev *d);
/* Read features and config again if the backend was not reachable before (DEV_INFO). */
void srv_bridge_probe_if_needed(struct srv_dev *d);
/* Reset the device as a SET_STATUS 0 would (server.c). */
void srv_dev_reset(struct srv_dev *d);

void srv_log(const struct srv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
