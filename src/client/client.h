/* SPDX-License-Identifier: MIT */
/*
 * Client internals shared by the connection (client.c) and the block
 * driver (blk_setup.c, blk_io.c, blk_recover.c; see blk_int.h).  The device-facing operations hide whether the peer is an
 * xvloop server (link) or a vhost-user backend (direct).
 */
#ifndef XVL_CLIENT_INT_H
#define XVL_CLIENT_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "os.h"
#include "proto.h"
#include "vhost.h"
#include "virtq.h"
#include "window.h"
#include "xvloop/xvl.h"

enum xvl_mode {
	XVL_MODE_LINK,
	XVL_MODE_VHOST,
};

struct xvl_link_mbox;

struct xvl_client {
	enum xvl_mode mode;
	int sock;                 /* link socket (LINK); atomic: sleepers poll it; mailbox link: its
	                             vector 0's eventfd, or -1 */
	struct xvl_link_mbox *mbox; /* LINK over the mailbox in the window (link_mbox.c), else NULL */
	uint32_t seq;
	unsigned timeout_ms;
	bool link_dead;           /* atomic */
	uint32_t server_uid;      /* the uid a peer must run as (XVL_SERVER_UID, else ours) */
	/* One link call at a time (a reply is never taken by another thread's call);
	 * innermost lock.  Recovery holds recover_lock, then every queue lock. */
	pthread_mutex_t link_lock;
	pthread_mutex_t recover_lock;
	unsigned reconnect_ms;    /* 0: a lost link breaks the devices */
	char path[108];           /* the server's socket, for reconnection */
	char name[XVL_NAME_MAX];
	unsigned n_reconnects;
	unsigned n_restarts;
	struct xvl_os_window win;
	struct xvl_heap heap;
	void *heap_meta;
	pthread_mutex_t heap_lock;
	struct xvl_vhost vh;      /* VHOST */
	unsigned n_dev;
	struct xvl_dev_desc dev[XVL_MAX_DEVICES];
	struct xvl_blk *open[XVL_MAX_DEVICES];
	struct xvl_net *open_net[XVL_MAX_DEVICES]; /* net devices (net_setup.c) */
	char peer_name[XVL_NAME_MAX];
	struct xvl_errbuf eb;
};

/* Where a queue's rings are and how the device is told about them. */
struct xvl_queue_setup {
	uint16_t queue;
	struct xvl_vq_layout layout;
	int kick_fd;              /* -1 in link poll mode */
	int call_fd;
	bool poll;
};

int xvl_dev_attach(struct xvl_client *c, uint32_t dev);
int xvl_dev_set_features(struct xvl_client *c, uint32_t dev, uint64_t features);
int xvl_dev_get_config(struct xvl_client *c, uint32_t dev, uint32_t off, void *buf, uint32_t len);
int xvl_dev_set_status(struct xvl_client *c, uint32_t dev, uint32_t status);
int xvl_dev_setup_queue(struct xvl_client *c, uint32_t dev, const struct xvl_queue_setup *qs);
/* Reset the device (vhost: stop its rings); it has stopped touching the rings when this returns 0. */
int xvl_dev_reset(struct xvl_client *c, uint32_t dev, uint16_t nq);
/* Reset the device and release it; the device has stopped touching the rings when this returns. */
int xvl_dev_detach(struct xvl_client *c, uint32_t dev, uint16_t nq);

/*
 * Look at the link without blocking: handle server events (device broken)
 * and notice the server going away.  Returns 0, or -ENOTCONN once the link is gone.
 */
int xvl_client_poll_link(struct xvl_client *c);
/* Has the link died (not yet re-established)?  Any thread. */
bool xvl_client_link_dead(const struct xvl_client *c);
/* The link socket, for a sleeper's poll() (-1 in direct mode).  Any thread. */
int xvl_client_link_fd(const struct xvl_client *c);

/* The same for a net device (net_setup.c); and EVENT CONFIG: the link status is re-read. */
struct xvl_net;
void xvl_net_mark_broken(struct xvl_net *n, int reason, const char *why);
void xvl_net_config_changed(struct xvl_net *n);
void xvl_net_request_restart(struct xvl_net *n);
void xvl_net_close(struct xvl_net *n);
/* After a relink (xvl_client_recover): every open net device sets itself up again (net_recover.c). */
void xvl_net_relinked(struct xvl_client *c);
/* With recover_lock held and no block queue lock: reconnect and set every block device up
 * again, as a block queue owner would (blk_recover.c); for a net device that saw the loss. */
void xvl_blk_recover_all(struct xvl_client *c);

/* Called by the client when the device reported broken or the link died. */
void xvl_blk_mark_broken(struct xvl_blk *b, int reason, const char *why);
/* The device asked to be set up again (EVENT RESTART); done by the next wait/complete. */
void xvl_blk_request_restart(struct xvl_blk *b);
/* Set the device up again on fresh rings and resubmit what had not completed. */
int xvl_blk_restart(struct xvl_blk *b, bool attach);
/*
 * If the link died and reconnection is enabled: reconnect within the
 * timeout and restart every open device, or mark them broken.  0 when
 * there is nothing to do or it worked.
 */
int xvl_client_recover(struct xvl_client *c);

/*
 * The mailbox link (link_mbox.c), the seam's other side: window:PATH,
 * ivshmem:SOCKET and mbox: URIs.  client.c calls these where it would use
 * the socket; they return what the socket calls would (-ETIMEDOUT,
 * -ENOTCONN when the device side went away, ...), with c->eb set.
 */
bool xvl_link_mbox_uri(const char *uri);
int xvl_link_mbox_create(struct xvl_client *c, const char *uri, uint64_t size);
int xvl_link_mbox_format(struct xvl_client *c);
int xvl_link_mbox_connect(struct xvl_client *c);
int xvl_link_mbox_send(struct xvl_client *c, const struct xvl_msg *m);
int xvl_link_mbox_recv(struct xvl_client *c, struct xvl_msg *m, int timeout_ms);
const char *xvl_link_mbox_why(const struct xvl_client *c);
/* SET_QUEUE on the mailbox link: POLL, or VECTORS with blk's descriptors made the vectors'. */
int xvl_link_mbox_queue(struct xvl_client *c, uint32_t dev, const struct xvl_queue_setup *qs,
			struct xvl_m_queue *mq);
void xvl_link_mbox_close(struct xvl_client *c);
/* The link has no doorbell: queues must be polled. */
bool xvl_client_link_polls(const struct xvl_client *c);

/* Heap blocks as window offsets (0 = none). */
uint64_t xvl_client_heap_alloc(struct xvl_client *c, uint64_t len);
void xvl_client_heap_free(struct xvl_client *c, uint64_t off);

#endif
