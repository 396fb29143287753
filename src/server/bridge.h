/* SPDX-License-Identifier: MIT */
/*
 * vhost-user bridge internals: the backend's state machine (bridge_state.c),
 * the jobs that talk to the backend off the event loop (bridge_job.c), and
 * the glue between them and the server (bridge.c).
 */
#ifndef XVL_BRIDGE_H
#define XVL_BRIDGE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "net.h"
#include "srv.h"
#include "virtio_blk.h"

/*
 * The states of a bridged device's backend.  The full table of allowed
 * transitions and the invariants are in bridge_state.c.
 */
enum br_state {
	BR_OFFLINE,  /* no usable answer from the backend yet: ATTACH is refused */
	BR_PROBING,  /* a probe job asks the backend for features and config */
	BR_READY,    /* features known, no session: the client may set the device up */
	BR_STARTING, /* DRIVER_OK: a start job hands the backend the window and the rings */
	BR_UP,       /* the backend serves the rings; the loop watches its socket */
	BR_STOPPING, /* a stop job ends the session in order (GET_VRING_BASE, close) */
	BR_LOST,     /* a session ended in disorder: wait until that backend instance is gone */
	BR_WAITING,  /* the old instance is gone: probe until the backend answers, then RESTART */
	BR_BROKEN,   /* the device is broken (NEEDS_RESET) until the client resets it */
	BR_NSTATES
};

const char *br_state_name(enum br_state s);
/* Move d's backend to state to; an illegal transition is a bug: logged, and refused (false). */
bool br_enter(struct srv_dev *d, enum br_state to);

/* ------------------------------------------------------------ jobs */

enum br_job_kind { BR_JOB_PROBE, BR_JOB_START, BR_JOB_STOP };

/*
 * listen=on: how long a job waits for the backend to connect.  A probe ends
 * its connection; a DPDK vhost client (OVS's dpdkvhostuserclient) connects
 * again at once, so the START after it finds the next one soon.
 */
#define BR_PROBE_ACCEPT_MS 2000u
#define BR_START_ACCEPT_MS 3000u

struct br_job_queue {
	bool on;
	bool enable;            /* SET_VRING_ENABLE(1) at start (net: pairs beyond VQ_PAIRS_SET off) */
	struct xvl_vq_layout l; /* window offsets */
	uint16_t base;
	int kick, call;         /* the job's own duplicates, closed when it ends */
};

/*
 * One conversation with the backend, run on a thread of its own.  The loop
 * fills the inputs, br_job_run() starts it, the thread writes the outputs
 * and then signals done_fd; until then the loop touches nothing in it.
 */
struct br_job {
	enum br_job_kind kind;
	char path[256]; /* struct xvl_dev_spec.path */
	int listen_fd;  /* listen=on: the job's duplicate of the listening socket, else -1 */
	/* START */
	uint64_t features;
	uint16_t mtu;           /* net: NET_SET_MTU when the backend offers it, 0 none */
	int win_fd;             /* the job's duplicate of the window fd */
	uint64_t win_size;
	uintptr_t win_base;     /* the server's address of the window (a number for the backend) */
	uint16_t nq, qsize;
	struct br_job_queue q[XVL_MAX_QUEUES];
	/* START, STOP: the session's connection (moved in and out by the loop) */
	struct xvl_vhost vh;
	/* outputs */
	int rc;
	struct xvl_errbuf eb;
	uint8_t cfg[XVL_BLK_CFG_SIZE]; /* PROBE: the config space */
	bool no_config;         /* PROBE: a net backend: the server makes the config space */
	bool mem_sent;          /* START: the backend may have the window (SET_MEM_TABLE sent) */
	int pid;                /* the instance talked to (SO_PEERCRED), 0 unknown */
	int pidfd;              /* a pidfd of it, -1 if none could be had */
	/* plumbing */
	int done_fd;            /* the job's duplicate of the bridge's eventfd */
	pthread_t thread;
	atomic_int stage;       /* BR_JOB_RUNNING, then DONE (thread) or ORPHAN (server), once */
};

enum { BR_JOB_RUNNING, BR_JOB_DONE, BR_JOB_ORPHAN };

/* Start j on a thread; on failure nothing runs and j->rc says why. */
int br_job_run(struct br_job *j);
/* After done_fd fired: join the thread.  j stays the caller's to read and free. */
void br_job_join(struct br_job *j);
/* Server shutdown with j still out: join and free it if it has finished, else leave it
 * to free itself when its (bounded) backend call returns.  j is not the caller's after. */
void br_job_abandon(struct br_job *j);
/* Free j and whatever it still holds (connection, fds). */
void br_job_free(struct br_job *j);
/* True once the process behind pidfd has exited (does not block). */
bool br_pidfd_exited(int pidfd);

/* ------------------------------------------------------------ polling drivers (bridge_poll.c) */

struct br_poller;
/* With the session UP: if the driver polls queues, a thread that kicks the backend for them. */
int br_poller_start(struct srv_dev *d, struct xvl_errbuf *eb);
/* Stop and join it (before the relay eventfds close); nothing if none runs. */
void br_poller_stop(struct srv_dev *d);
/* Kicks forwarded for this device so far. */
uint64_t br_poller_kicks(const struct srv_dev *d);

/* ------------------------------------------------------------ per-device state */

/*
 * type=net: what the server, as the device's frontend, keeps itself
 * (bridge_net.c).  The backend serves the rx/tx rings only; the control
 * queue, the config space and multi-queue are the frontend's, as in QEMU.
 */
struct br_net {
	uint16_t max_pairs;     /* offered: config max_virtqueue_pairs */
	uint16_t active_pairs;  /* VQ_PAIRS_SET; 1 from every reset */
	uint16_t mtu;           /* config mtu (offered when the backend offers MTU) */
	uint32_t given;         /* rings handed to the backend in this session, a bit each */
	uint32_t enabled;       /* of those, the ones the backend was last told to serve */
	/*
	 * rx mode and MAC table: accepted and kept (the driver gets its answer) but
	 * not applied -- frames go between the driver and the backend without the
	 * server, which cannot filter them (QEMU's vhost-user-net does the same).
	 */
	struct xvl_net_rxmode rx;
	uint32_t n_uni, n_multi;
	uint64_t ctrl_cmds, ctrl_refused;
};

struct srv_bridge {
	enum br_state state;
	struct br_job *job;      /* the job in flight, NULL if none */
	bool job_unwanted;       /* the device was reset while its START job ran */
	bool start_wanted;       /* DRIVER_OK came while a STOP job ran */
	int job_fd;              /* eventfd: a job finished */
	int listen_fd;           /* listen=on: the socket the backend connects to, else -1 */
	struct srv_watch job_w;
	uint64_t last_probe_ns;  /* probes are rate-limited (PROBE_GAP_MS) */
	struct br_net net;       /* type=net only */
	/* timer while LOST or WAITING */
	int timer;
	struct srv_watch timer_w;
	uint64_t deadline_ns;
	/* the session, while UP (pid and pidfd of the instance serving it) */
	int pid;
	int pidfd;
	uint64_t sess_dev, sess_ino; /* the window given to the last START */
	/*
	 * Taint: a backend instance that was given this window and whose session
	 * did not end in order may still write into it.  No new session starts on
	 * the same window (same memfd inode) until that instance has exited.
	 */
	/* the driver polls some queues: the thread that kicks the backend for it (bridge_poll.c) */
	struct br_poller *poller;
	uint64_t poller_kicks;   /* kicks of pollers that ended */
	bool tainted;
	int taint_pidfd;         /* -1: its pid is not visible here (cannot be confirmed gone) */
	int taint_pid;
	uint64_t taint_dev, taint_ino;
};

/* ------------------------------------------------------------ type=net (bridge_net.c) */

/* Rings the backend serves: blk every queue; net 2 per pair, the control queue not. */
uint16_t srv_bridge_backend_queues(const struct srv_dev *d);
/* A START job hands ring to the backend: whether it starts enabled (net: pairs beyond
 * VQ_PAIRS_SET start disabled). */
bool srv_bridge_ring_start(struct srv_dev *d, uint16_t ring);
/* The session is up: the backend's rings follow the VQ_PAIRS_SET that came meanwhile. */
void srv_bridge_net_up(struct srv_dev *d);
/* The device was reset (its session stopped): one pair, rx mode and MAC as at the start. */
void srv_bridge_net_reset(struct srv_dev *d);
/* The MTU to tell the backend (NET_SET_MTU), 0 for none. */
uint16_t srv_bridge_net_mtu(const struct srv_dev *d);

#endif
