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
struct srv_worker;
struct srv_mailbox;
struct srv_bridge;

#define SRV_MAX_CONNS 256u  /* connections served at once; more are closed at accept */
#define SRV_OUTQ_MAX 64u    /* messages queued for a client that does not read: more drop it */
#define SRV_HELLO_MS 10000u /* a connection without an accepted HELLO by then is closed */

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
	W_TICK,        /* once a second while a connection awaits its HELLO */
	W_WORKER,      /* a worker posted news about a queue it held (worker.c) */
	W_VHOST_JOB,   /* a vhost backend job (bridge_job.c) finished */
	W_TAP,         /* a net device's tap fd (obj: its srv_net; the pair from the watch) */
};

struct srv_watch {
	enum srv_watch_kind kind;
	void *obj;
};

/*
 * Adaptive polling (poll.c): after activity a serving thread keeps looking at its
 * queues for ns before it sleeps; ns grows when sleeps turn out short (the next
 * request came within max_ns) and shrinks when they are long.  max_ns 0: never poll.
 */
struct srv_poll {
	uint64_t ns;
	uint64_t max_ns;
};
void srv_poll_init(struct srv_poll *p, uint64_t max_ns);
/* A sleep of slept ns ended: adapt the window. */
void srv_poll_adapt(struct srv_poll *p, uint64_t slept);
/* Still inside the window that started with the last work at last_ns? */
bool srv_poll_keep(const struct srv_poll *p, uint64_t last_ns, uint64_t now);

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
	bool configured;     /* SET_QUEUE with ENABLE accepted: rings, req[] and fds are set */
	bool enabled;        /* being served (device RUNNING); see devstate.c */
	bool poll;
	bool more;           /* work left from the last round */
	/*
	 * Hand-off to a worker thread (worker.c).  The control thread sets worker and
	 * handed, and owns enabled/configured/fds/req[] as before; while handed is true
	 * the worker alone touches vq, req[], inflight, more, live, seg and the counters,
	 * and the control thread counts the queue as in flight.  handed drops only when
	 * the worker said it let go (RELEASED), after its last request completed.
	 */
	struct srv_worker *worker; /* the thread serving it; NULL: the control thread */
	bool handed;         /* given to worker and not yet released */
	bool clear_pending;  /* queue_clear asked while handed: done at RELEASED */
	bool live;           /* serving thread's view: pop, push, notify (== enabled on main) */
	bool w_detach;       /* worker-local: DETACH received */
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
	/* counters, written by the serving thread only (relaxed: STATS reads them) */
	uint64_t st_requests;
	uint64_t st_bytes;
	uint64_t st_errors;
	uint64_t st_notifies;
};

struct srv_backend_ops {
	int (*open)(struct srv_dev *d, struct xvl_errbuf *eb);
	/* Start a request; complete it now or later with srv_req_done. */
	void (*submit)(struct srv_dev *d, struct srv_req *r);
	void (*close)(struct srv_dev *d);
};

/*
 * Device states (devstate.c holds the transitions and the invariants).
 */
enum srv_dev_state {
	SRV_DEV_FREE,     /* no connection holds it */
	SRV_DEV_SETUP,    /* attached; status bits being set, no queue served */
	SRV_DEV_RUNNING,  /* DRIVER_OK: the configured queues are served */
	SRV_DEV_STOPPED,  /* NEEDS_RESET (broken) or FAILED: nothing served until a reset */
	SRV_DEV_DRAINING, /* reset/detach/close asked; requests still in flight */
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
	/* state set by the attached driver: the state machine of devstate.c */
	enum srv_dev_state state;
	struct srv_conn *conn;
	uint64_t driver_features;
	uint32_t status;
	bool release_when_drained; /* DRAINING for DETACH or a closed link: free the device after */
	bool reply_when_drained;   /* DRAINING for RESET/DETACH/SET_STATUS 0: answer then */
	uint16_t pending_type;
	uint32_t pending_seq;
	struct srv_queue q[XVL_MAX_QUEUES];
	/* backend state */
	int fd;              /* file */
	uint8_t *ram;        /* ram */
	struct xvl_vhost vh; /* vhost bridge: the session's connection while it is up */
	bool vh_probed;      /* features and config were read from the backend */
	struct srv_watch vh_w;
	struct srv_bridge *br; /* vhost bridge: backend state machine (bridge.h) */
	struct srv_net *net; /* type=net: the net device's state (srv_net.h), else NULL */
	/*
	 * Device-level counters, kept by the control thread: net devices (whose
	 * queues it serves) and the vhost relay.  The built-in blk backends count
	 * per queue (a worker may be counting); GET_STATS adds both.
	 */
	uint64_t st_requests;
	uint64_t st_bytes;
	uint64_t st_errors;
	uint64_t st_notifies;
};

enum srv_hello_state {
	SRV_HELLO_AWAITED, /* nothing but HELLO is served */
	SRV_HELLO_DONE,    /* a HELLO was accepted: other requests may follow */
	SRV_HELLO_REFUSED, /* wrong major: the link stays unusable */
};

/* One encoded message waiting for the client to read its link. */
struct srv_out {
	uint16_t len;
	uint8_t b[XVL_MSG_MAX_SIZE];
};

struct srv_mbox;

struct srv_conn {
	struct srv *srv;
	int fd;              /* socket link; -1 on the mailbox link */
	struct srv_mbox *mbox; /* mailbox link (conn_mbox.c); NULL on the socket link */
	char name[XVL_NAME_MAX];
	struct xvl_os_window win;
	bool has_window;
	enum srv_hello_state hello;
	uint64_t born_ns;    /* accept time, for the HELLO timeout */
	bool closing;        /* link closed; freed once no device is held */
	bool doomed;         /* close at the end of this loop pass (link failed, over the bound) */
	/* replies and events the socket did not take yet (flow control, see conn.c) */
	struct srv_out out[SRV_OUTQ_MAX];
	unsigned out_head, out_count;
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
	unsigned n_conns;
	int tick_fd;          /* timerfd for the HELLO timeout */
	bool tick_on;         /* armed: some connection awaits its HELLO */
	struct srv_watch listen_w, signal_w, ring_w, tick_w;
	unsigned poll_queues; /* enabled queues in poll mode: the loop spins while > 0 */
	struct xvl_os_guard guard; /* for peers' eventfds */
	/* worker threads (worker.c); none: the control thread serves every queue */
	unsigned n_workers;
	struct srv_worker *workers;
	int news_fd;               /* eventfd: workers posted news */
	struct srv_watch news_w;
	struct srv_mailbox *news;  /* workers -> control thread */
	struct srv_poll poll;      /* the control thread's adaptive polling */
	uint64_t last_work_ns;
	struct srv_mbox *mbox; /* the window link, if any (conn_mbox.c) */
};

/* Backends. */
extern const struct srv_backend_ops srv_file_ops;
extern const struct srv_backend_ops srv_null_ops;
extern const struct srv_backend_ops srv_ram_ops;
extern const struct srv_backend_ops srv_vhost_ops;

/* virtio-blk device model (blkdev.c). */
void srv_blk_fill_config(struct srv_dev *d, uint16_t num_queues, uint32_t seg_max);
/* Serve every available chain of q (bounded per call; sets q->more when cut short).
 * quiet: leave notifications off when the ring is empty (the caller polls on). */
unsigned srv_queue_process(struct srv_queue *q, bool quiet);

/* Request completion (complete.c). */
/* Finish r with a virtio-blk status; pushes the used entry when the queue is served. */
void srv_req_done(struct srv_req *r, uint8_t status);
/* Requests the device's queues completed (any thread; the counters are per queue). */
uint64_t srv_dev_requests(const struct srv_dev *d);
/* Send a used-buffer notification on q if the driver wants one (never blocks). */
void srv_queue_notify(struct srv_queue *q);
/* Reap the file backends' io_uring completions. */
void srv_reap_ring(struct srv *s);

/* Device state machine (devstate.c). */
bool srv_dev_running(const struct srv_dev *d);
/* Mark the device broken (NEEDS_RESET), tell the driver, stop its queues. */
void srv_dev_break(struct srv_dev *d, int reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Reset the device as a SET_STATUS 0 would, without a reply (bridge restarts). */
void srv_dev_reset(struct srv_dev *d);
/* The last request of a DRAINING device finished. */
void srv_dev_drained(struct srv_dev *d);
/* The link of c closed: reset every device it holds. */
void srv_dev_conn_closed(struct srv_conn *c);
bool srv_conn_holds_devices(const struct srv_conn *c);
/* A queue's kick eventfd fired (or hung up). */
void srv_queue_kicked(struct srv_queue *q, uint32_t events);
/* Link requests about a device's state; each returns the reply status. */
int srv_dev_on_attach(struct srv_conn *c, const struct xvl_msg *m);
int srv_dev_on_detach_or_reset(struct srv_conn *c, const struct xvl_msg *m, bool *deferred);
int srv_dev_on_set_features(struct srv_conn *c, const struct xvl_msg *m);
int srv_dev_on_set_queue(struct srv_conn *c, const struct xvl_msg *m, int *fds);
int srv_dev_on_set_status(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep,
			  bool *deferred);
int srv_dev_on_get_status(struct srv_conn *c, const struct xvl_msg *m, struct xvl_msg *rep);
/* Stop serving a device whose queues are set up, for server shutdown. */
void srv_dev_shutdown(struct srv_dev *d);

/* Connections and link I/O (conn.c). */
void srv_conn_accept(struct srv *s);
void srv_conn_event(struct srv_conn *c, uint32_t events);
/* Queue m for the client; never blocks.  A client over SRV_OUTQ_MAX is dropped. */
void srv_conn_send(struct srv_conn *c, const struct xvl_msg *m);
/* Send EVENT code about device d to its holder, if it has a live link. */
void srv_dev_event(struct srv_dev *d, uint32_t code, int reason, const char *msg);
/* Free c once its link is closed and it holds no device. */
void srv_conn_free_if_unused(struct srv_conn *c);
/* Close links marked doomed during this loop pass; time out silent ones. */
void srv_conns_reap(struct srv *s);
void srv_conns_tick(struct srv *s);
void srv_conns_close_all(struct srv *s);

/* Close c's link now (the mailbox link's sessions end this way). */
void srv_conn_close(struct srv_conn *c);

/* The mailbox link's side of a connection (conn_mbox.c). */
int srv_mbox_setup(struct srv *s, struct xvl_errbuf *eb);
/* Look at the mailbox: new sessions, requests, held messages.  Cheap when idle. */
void srv_mbox_poll(struct srv *s);
void srv_mbox_on_event(struct srv *s, struct srv_watch *w);
/* Microseconds the loop may sleep (-1: until an fd wakes it); busy: work was found. */
long srv_mbox_idle_us(struct srv *s, bool busy);
/* srv_conn_send for a mailbox session: never blocks; holds what the ring does not take. */
int srv_mbox_send(struct srv_conn *c, const struct xvl_msg *m);
/* SET_QUEUE with VECTORS: the queue's kick and call eventfds (new descriptors), or -errno. */
int srv_mbox_queue_fds(struct srv_conn *c, const struct xvl_m_queue *mq, int fds[2]);
void srv_mbox_conn_closed(struct srv_conn *c);
void srv_mbox_destroy(struct srv *s);

/* Link requests (link.c). */
void srv_link_dispatch(struct srv_conn *c, const struct xvl_msg *m, int *fds, unsigned nfds);

/* Loop helpers (server.c). */
/* The server's ring, restricted to the file backend's opcodes (backend_file.c). */
int srv_ring_init(struct io_uring *ring, unsigned depth);
/* The two halves of srv_ring_init: a restricted ring, and (once every ring of the
 * server exists, its workers' too) no new ring under a seccomp filter. */
int srv_ring_create(struct io_uring *ring, unsigned depth);
int srv_ring_seal(void);

struct io_uring_sqe *srv_get_sqe(struct srv *s);
/* Watch fd for input with w as its event data; unwatch before closing it. */
int srv_watch(struct srv *s, int fd, struct srv_watch *w, enum srv_watch_kind kind, void *obj);
/* Change what a watched fd is watched for (EPOLLIN, EPOLLOUT). */
int srv_watch_events(struct srv *s, int fd, struct srv_watch *w, uint32_t events);
void srv_unwatch(struct srv *s, int fd);
/* Arm (or disarm) the once-a-second tick. */
void srv_tick_arm(struct srv *s, bool on);

/* vhost bridge (bridge.c): set up / tear down the backend's view of the client's queues. */
int srv_bridge_start(struct srv_dev *d, struct xvl_errbuf *eb);
void srv_bridge_stop(struct srv_dev *d);
void srv_bridge_relay(struct srv *s, struct srv_queue *q, bool from_client);
/* The backend socket became readable: it went away (or broke the protocol). */
void srv_bridge_lost(struct srv_dev *d);
/* Retry timer tick while a lost backend is awaited. */
void srv_bridge_retry(struct srv_dev *d);
/* Read features and config again if the backend was not reachable before (DEV_INFO):
 * starts a probe off the loop (at most one per 500 ms) and returns at once. */
void srv_bridge_probe_if_needed(struct srv_dev *d);
/* At server start, before the loop: wait (at most 1 s in all) for the first probe of
 * every bridged device, so that clients find them answered. */
void srv_bridge_settle(struct srv *s);
/* A bridge job finished (W_VHOST_JOB). */
void srv_bridge_job_done(struct srv_dev *d);
/* The backend is still being stopped: counted as in flight, so the device is DRAINING
 * (DETACH/RESET replies wait) until the stop job calls srv_dev_drained(). */
bool srv_bridge_busy(const struct srv_dev *d);
/* type=net (bridge_net.c): features, queues and config space from a net backend; the
 * driver's features as passed on to the backend (blk: all of them). */
int srv_bridge_net_probe(struct srv_dev *d, const struct xvl_vhost *v, struct xvl_errbuf *eb);
uint64_t srv_bridge_features(const struct srv_dev *d);
/* type=net: the backend session went down or came back: config STATUS and EVENT CONFIG. */
void srv_bridge_net_link(struct srv_dev *d, bool up);
/* type=net: the control queue's index when the driver negotiated CTRL_VQ, else -1; it is
 * the one queue of a bridged device the server serves (srv_bridge_net_ctrl). */
int srv_bridge_ctrlq(const struct srv_dev *d);
bool srv_bridge_is_ctrlq(const struct srv_queue *q);
void srv_bridge_net_ctrl(struct srv_queue *q);

/* virtio-net devices (netdev.c, netsw.c, backend_tap.c; internals in srv_net.h). */
void srv_net_queue_process(struct srv_queue *q);
bool srv_net_kick_unwanted(const struct srv_queue *q); /* switch rx: never armed (srv_net.h) */
void srv_net_start(struct srv_dev *d);
void srv_net_reset(struct srv_dev *d);
void srv_tap_event(struct srv_watch *w);
extern const struct srv_backend_ops srv_net_ops;

/* Worker threads (worker.c). */
int srv_workers_start(struct srv *s, struct xvl_errbuf *eb);
void srv_workers_stop(struct srv *s);
/* Control thread: give q to its worker / ask the worker to let it go (once). */
void srv_worker_attach(struct srv_queue *q);
void srv_worker_detach(struct srv_queue *q);
/* Which worker serves queue of device dev (NULL: none, the control thread). */
struct srv_worker *srv_worker_for(struct srv *s, unsigned dev, unsigned queue);
/* Control thread: the worker let q go (devstate.c). */
void srv_queue_released(struct srv_queue *q);
/* Control thread: the news fd fired. */
void srv_worker_news(struct srv *s);
/* Serving thread of q: the ring, the guard for peers' eventfds, and a queue failure
 * (the control thread breaks the device; a worker stops serving q first). */
struct io_uring_sqe *srv_queue_sqe(struct srv_queue *q);
struct xvl_os_guard *srv_queue_guard(struct srv_queue *q);
void srv_queue_break(struct srv_queue *q, int reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Serving thread: a request of a queue no longer live finished. */
void srv_queue_idle_check(struct srv_queue *q);
/* Reap the completions of one ring. */
void srv_reap(struct io_uring *ring);

void srv_log(const struct srv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
