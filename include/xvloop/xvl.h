/* SPDX-License-Identifier: MIT */
/*
 * xvloop client API: virtio devices served from another compartment.
 *
 * A client owns one window (shared memory it creates) and one connection,
 * either to an xvloop server (cross-compartment: "xvl:PATH" or a plain
 * path) or straight to a vhost-user backend ("vhost-user:PATH", direct
 * mode).  Devices are opened on the client; each block device has one or
 * more queues.  A queue is used by one thread at a time; threads may share
 * a client, one queue each, also with recovery enabled (reconnect_ms,
 * EVENT RESTART): link calls are serialised, and whichever thread notices
 * a restart sets every queue up again while the other queues' calls wait
 * (a thread asleep in xvl_blk_wait is woken).  Open and close devices, and
 * close the client, while no other thread uses it.
 *
 * The client hands its window only to a peer running as its own uid, or
 * as the uid in the environment variable XVL_SERVER_UID (checked with
 * SO_PEERCRED on connect and on every reconnect).
 *
 * Errors are negative errno values; xvl_client_errmsg() says what went wrong
 * in words a user can act on.  Nothing here allocates on the I/O path.
 *
 * ABI: libxvloop.so.0 exports exactly the functions declared here (the
 * version script src/client/libxvloop.map lists them).  The option structs
 * grow at their end only: each starts with a size field that the caller sets
 * to the sizeof() it was compiled with (start the initializer with
 * XVL_CLIENT_OPTS_INIT / XVL_BLK_OPTS_INIT), so a program built today runs
 * unchanged against a later 0.x library, whose new fields then keep their
 * zero meaning.  A library older than the program refuses (-EINVAL) an
 * option it does not know that is set (non-zero).  The structs the library
 * fills (xvl_dev_desc, xvl_blk_info, xvl_blk_cpl) and xvl_blk_req are
 * copied whole: they cannot grow within libxvloop.so.0 (a new field there
 * needs a new function, or a new soname).
 */
#ifndef XVLOOP_XVL_H
#define XVLOOP_XVL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct xvl_client;
struct xvl_blk;

/* ------------------------------------------------------------ client */

struct xvl_client_opts {
	size_t size;              /* sizeof(struct xvl_client_opts): XVL_CLIENT_OPTS_INIT */
	const char *name;         /* shown by the server; default "xvl-client" */
	const char *window;       /* window backing: "memfd" (default), "memfd-huge", "hugetlbfs:PATH", "shm:NAME" */
	uint64_t window_size;     /* bytes; default 64 MiB (with window_fd: 0 = the file's size) */
	/*
	 * A window made by someone else (a partitioner), taken over by the
	 * client.  0: none; then the environment variables XVL_WINDOW_FD and
	 * XVL_WINDOW_SIZE are used if set (and XVL_WINDOW_FD removed), else the
	 * client creates its own window.  The server refuses a window it cannot
	 * seal against shrinking: hand over a memfd.
	 */
	int window_fd;
	unsigned timeout_ms;      /* link request timeout; default 5000 */
	/*
	 * When the server goes away: keep trying to reconnect for this long,
	 * then set every open device up again and resubmit what had not
	 * completed (the caller sees nothing but a delay).  0 (default): the
	 * devices break and pending requests fail with -ENODEV, unless the
	 * environment variable XVL_RECONNECT_MS gives a value.
	 */
	unsigned reconnect_ms;
	/* New fields go here, at the end; zero must mean the old behaviour. */
};
/* struct xvl_client_opts o = {XVL_CLIENT_OPTS_INIT, .name = "me"}; */
#define XVL_CLIENT_OPTS_INIT .size = sizeof(struct xvl_client_opts)

/*
 * Connect.  uri: "xvl:PATH" or "PATH" (xvloop server), "vhost-user:PATH"
 * (direct).  o may be NULL (all defaults); else o->size must be set
 * (XVL_CLIENT_OPTS_INIT), or -EINVAL.  On failure err (if not NULL) gets the reason.
 */
int xvl_client_connect(struct xvl_client **c, const char *uri, const struct xvl_client_opts *o,
		       char *err, size_t errlen);
/* Closes every device still open on c, then the link and the window.  NULL is a no-op. */
void xvl_client_close(struct xvl_client *c);

/* The last error message, for the client (valid until the next call). */
const char *xvl_client_errmsg(const struct xvl_client *c);

struct xvl_dev_desc {
	uint32_t index;
	uint32_t virtio_id;     /* 2 = block, 1 = net */
	uint16_t num_queues;
	uint16_t max_queue_size;
	uint64_t features;
	char name[32];
};
/* How many devices the peer offers; device i (0 .. n-1) is described into d, else -ENODEV. */
unsigned xvl_client_num_devices(const struct xvl_client *c);
int xvl_client_device(const struct xvl_client *c, unsigned i, struct xvl_dev_desc *d);
/* Index of the device called name, or -ENODEV. */
int xvl_client_find(const struct xvl_client *c, const char *name);
/* Times the client reconnected to a restarted server, and devices restarted (EVENT RESTART). */
unsigned xvl_client_reconnects(const struct xvl_client *c);
unsigned xvl_client_restarts(const struct xvl_client *c);
/* "xvl" or "vhost-user". */
const char *xvl_client_mode(const struct xvl_client *c);

/* Buffers inside the window: I/O on them is zero-copy.  NULL when the window heap is full. */
void *xvl_buf_alloc(struct xvl_client *c, size_t len);
void xvl_buf_free(struct xvl_client *c, void *buf);

/* ------------------------------------------------------------ block devices */

struct xvl_blk_opts {
	size_t size;            /* sizeof(struct xvl_blk_opts): XVL_BLK_OPTS_INIT */
	int device;             /* index; -1 = the first block device */
	uint16_t num_queues;    /* 0 = 1; capped to what the device offers */
	uint16_t queue_size;    /* power of two, 0 = 256, at most 1024 */
	bool poll;              /* busy-poll: no notifications (xvl link), or spin on completions (direct) */
	bool no_indirect;       /* do not negotiate VIRTIO_F_INDIRECT_DESC */
	bool no_event_idx;      /* do not negotiate VIRTIO_F_EVENT_IDX */
	/*
	 * xvl_blk_wait busy-waits up to this long for a completion before it
	 * sleeps (not in poll mode, which always spins).  A wake-up costs more
	 * than a fast device's answer on some machines.  0: adaptive, see
	 * spin_adapt_us.
	 */
	unsigned spin_us;
	/*
	 * With spin_us 0, xvl_blk_wait spins for twice what recent waits on the
	 * queue took, at most this many µs (0: XVL_BLK_SPIN_ADAPT_US), and not at
	 * all while waits take longer than that; negative: sleep at once (the
	 * behaviour of spin_us 0 before this field).
	 */
	int spin_adapt_us;
	/* New fields go here, at the end; zero must mean the default behaviour. */
};
#define XVL_BLK_SPIN_ADAPT_US 50
/* struct xvl_blk_opts o = {XVL_BLK_OPTS_INIT, .device = -1}; */
#define XVL_BLK_OPTS_INIT .size = sizeof(struct xvl_blk_opts)

struct xvl_blk_info {
	uint64_t capacity;      /* bytes */
	uint32_t block_size;    /* logical block size, bytes */
	uint32_t seg_max;       /* data segments per request (0 = no limit stated) */
	uint32_t size_max;      /* bytes per segment (0 = no limit stated) */
	uint32_t max_transfer;  /* bytes per request this client accepts */
	uint16_t num_queues;    /* queues open */
	uint16_t queue_size;
	bool read_only;
	bool flush;
	bool discard;
	bool write_zeroes;
	uint64_t features;      /* negotiated */
	char name[32];
};

enum xvl_blk_op {
	XVL_BLK_READ = 0,
	XVL_BLK_WRITE = 1,
	XVL_BLK_FLUSH = 2,
	XVL_BLK_DISCARD = 3,
	XVL_BLK_WRITE_ZEROES = 4,
	XVL_BLK_GET_ID = 5,     /* buf of at least 20 bytes */
};

struct xvl_blk_req {
	uint8_t op;             /* enum xvl_blk_op */
	uint64_t offset;        /* bytes, multiple of 512 */
	void *buf;              /* in the window: zero copy; elsewhere: copied through the window */
	uint32_t len;           /* bytes, multiple of 512 (not for FLUSH / GET_ID) */
	void *user;             /* returned in the completion */
};

struct xvl_blk_cpl {
	void *user;
	int result;             /* 0, -EIO (device error), -EOPNOTSUPP, -ENODEV (device broken or gone) */
};

/* Open a block device on c.  o may be NULL (the first block device, defaults);
 * else o->size must be set (XVL_BLK_OPTS_INIT), or -EINVAL. */
int xvl_blk_open(struct xvl_client *c, const struct xvl_blk_opts *o, struct xvl_blk **b);
/* Closes b: the device stops using its queues before their memory is freed.  NULL is a no-op. */
void xvl_blk_close(struct xvl_blk *b);
/* What was negotiated at open: capacity, limits, queues, features. */
void xvl_blk_get_info(const struct xvl_blk *b, struct xvl_blk_info *info);

/* Queue a request on queue q; it is visible to the device at once, the
 * device is notified on xvl_blk_kick.  -EAGAIN when the queue is full or
 * the window has no room for a copy (complete some first), -EINVAL for a
 * malformed request, -ENODEV when the device is broken. */
int xvl_blk_submit(struct xvl_blk *b, uint16_t q, const struct xvl_blk_req *r);
/* Notify the device of queued requests, if it asked to be notified. */
int xvl_blk_kick(struct xvl_blk *b, uint16_t q);
/* Take up to max completions without blocking.  Returns how many. */
int xvl_blk_complete(struct xvl_blk *b, uint16_t q, struct xvl_blk_cpl *cpl, unsigned max);
/* Block until at least one completion is ready or timeout_ms passes (-1 = forever).
 * Returns >0 when completions are ready, 0 on timeout, -ENODEV when the device went away. */
int xvl_blk_wait(struct xvl_blk *b, uint16_t q, int timeout_ms);
/*
 * A pollable fd that becomes readable when queue q has completions; -1 in
 * poll mode.  Once asked for, xvl_blk_complete() also resets it, so a
 * level-triggered poll loop does not spin.
 */
int xvl_blk_queue_fd(struct xvl_blk *b, uint16_t q);
/* Requests submitted on q and not yet completed. */
unsigned xvl_blk_inflight(const struct xvl_blk *b, uint16_t q);

/* Blocking helpers on queue 0: submit, kick, wait, complete. */
int xvl_blk_read(struct xvl_blk *b, uint64_t offset, void *buf, uint32_t len);
int xvl_blk_write(struct xvl_blk *b, uint64_t offset, const void *buf, uint32_t len);
int xvl_blk_flush(struct xvl_blk *b);
int xvl_blk_discard(struct xvl_blk *b, uint64_t offset, uint32_t len);
int xvl_blk_write_zeroes(struct xvl_blk *b, uint64_t offset, uint32_t len);
/* Device serial, NUL-terminated (up to 20 characters). */
int xvl_blk_get_id(struct xvl_blk *b, char id[21]);

#ifdef __cplusplus
}
#endif

#endif
