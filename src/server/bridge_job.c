/* SPDX-License-Identifier: MIT */
/*
 * Jobs: every conversation with a vhost-user backend runs here, on a thread
 * of its own, so that a backend that never accepts, or stops answering, can
 * stall only its own device and never the server's loop.  A job owns its
 * inputs (duplicated fds) while it runs and reports through an eventfd; the
 * loop reads its outputs only after that (bridge_state.c says when jobs run).
 * Each blocking step is bounded by the vhost frontend's timeouts.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bridge.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* asm-generic (x86, arm64, riscv) */
#endif

bool br_pidfd_exited(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	return pidfd >= 0 && poll(&p, 1, 0) == 1;
}

/*
 * Remember who answered: its pid (0 when in a pid namespace we cannot see) and a pidfd
 * of it.  SO_PEERPIDFD (Linux 6.5) names the peer process race-free and across pid
 * namespaces (a partitioned device compartment sees no backend pids); before that,
 * pidfd_open of the SO_PEERCRED pid, when visible.
 */
static void note_peer(struct br_job *j)
{
	socklen_t len = sizeof(int);
	int fd = -1;

	j->pid = j->vh.peer_pid;
	if (j->pidfd >= 0)
		return;
	if (getsockopt(j->vh.sock, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) == 0 && fd >= 0) {
		j->pidfd = fd;
		return;
	}
	if (j->pid > 0)
		j->pidfd = (int)syscall(SYS_pidfd_open, j->pid, 0);
}

/*
 * A net backend's GET_QUEUE_NUM counts queue pairs (DPDK's vhost library,
 * and QEMU reads it so); the frontend's ring checks count rings.
 */
static void net_rings(struct br_job *j)
{
	unsigned rings = 2u * j->vh.num_queues;

	if (j->no_config)
		j->vh.num_queues = (uint16_t)(rings > XVL_VHOST_MAX_QUEUES ? XVL_VHOST_MAX_QUEUES : rings);
}

/* Connect to the backend, or with listen=on take its connection (waiting up to wait_ms). */
static int job_connect(struct br_job *j, unsigned wait_ms)
{
	if (j->listen_fd >= 0)
		return xvl_vhost_accept(&j->vh, j->path, j->listen_fd, wait_ms, &j->eb);
	return xvl_vhost_connect(&j->vh, j->path, &j->eb);
}

static void job_probe(struct br_job *j)
{
	j->rc = job_connect(j, BR_PROBE_ACCEPT_MS);
	if (j->rc == 0) {
		note_peer(j);
		net_rings(j);
		if (!j->no_config)
			j->rc = xvl_vhost_get_config(&j->vh, 0, j->cfg, sizeof(j->cfg), &j->eb);
	}
	/* Keep features and queue count for the loop; the connection goes. */
	uint64_t f = j->vh.features, pf = j->vh.protocol_features;
	uint16_t nq = j->vh.num_queues;
	xvl_vhost_close(&j->vh);
	j->vh.features = f;
	j->vh.protocol_features = pf;
	j->vh.num_queues = nq;
}

static int start_rings(struct br_job *j)
{
	for (uint16_t i = 0; i < j->nq; i++) {
		struct br_job_queue *q = &j->q[i];
		if (!q->on)
			continue;
		/* The backend starts where the client's rings start (the avail base). */
		int rc = xvl_vhost_setup_vring(&j->vh, i, &q->l, q->base, q->kick, q->call,
					       q->enable, &j->eb);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void job_start(struct br_job *j)
{
	struct xvl_vhost *v = &j->vh;
	int rc = job_connect(j, BR_START_ACCEPT_MS);

	if (rc == 0) {
		note_peer(j);
		net_rings(j);
		if (j->nq > v->num_queues)
			rc = xvl_err(&j->eb, -EINVAL, "vhost-user backend %s: GET_QUEUE_NUM: %u "
				     "queue(s), the client set up %u", j->path, v->num_queues, j->nq);
	}
	if (rc == 0)
		rc = xvl_vhost_set_features(v, j->features, &j->eb);
	if (rc == 0 && j->mtu)
		rc = xvl_vhost_net_set_mtu(v, j->mtu, &j->eb);
	if (rc == 0) {
		j->mem_sent = true; /* sent is enough: the reply may be what got lost */
		rc = xvl_vhost_set_mem_table(v, j->win_fd, j->win_size, (void *)j->win_base, &j->eb);
	}
	if (rc == 0)
		rc = xvl_vhost_setup_inflight(v, j->nq, j->qsize, false, &j->eb);
	if (rc == 0)
		rc = start_rings(j);
	if (rc < 0)
		xvl_vhost_close(v);
	j->rc = rc;
}

/* Orderly end: each ring stopped (GET_VRING_BASE answered), then close. */
static void job_stop(struct br_job *j)
{
	uint16_t base;

	j->rc = 0;
	for (uint16_t i = 0; i < j->nq && i < j->vh.num_queues; i++) {
		if (!j->q[i].on || j->vh.sock < 0)
			continue;
		int rc = xvl_vhost_stop_vring(&j->vh, i, &base, &j->eb);
		if (rc < 0 && j->rc == 0)
			j->rc = rc;
	}
	if (j->vh.sock < 0 && j->rc == 0)
		j->rc = xvl_err(&j->eb, -ECONNRESET, "vhost-user backend %s: the connection "
				"was gone before the rings were stopped", j->path);
	xvl_vhost_close(&j->vh);
}

static void close_inputs(struct br_job *j)
{
	for (unsigned i = 0; i < XVL_MAX_QUEUES; i++) {
		if (j->q[i].kick >= 0)
			close(j->q[i].kick);
		if (j->q[i].call >= 0)
			close(j->q[i].call);
		j->q[i].kick = j->q[i].call = -1;
	}
	if (j->win_fd >= 0)
		close(j->win_fd);
	j->win_fd = -1;
	if (j->listen_fd >= 0)
		close(j->listen_fd);
	j->listen_fd = -1;
}

static void *job_main(void *arg)
{
	struct br_job *j = arg;

	switch (j->kind) {
	case BR_JOB_PROBE: job_probe(j); break;
	case BR_JOB_START: job_start(j); break;
	case BR_JOB_STOP: job_stop(j); break;
	}
	close_inputs(j);
	xvl_os_eventfd_signal(j->done_fd);
	/* The loop frees j only after joining; an abandoned job frees itself. */
	if (atomic_exchange(&j->stage, BR_JOB_DONE) == BR_JOB_ORPHAN)
		br_job_free(j);
	return NULL;
}

int br_job_run(struct br_job *j)
{
	sigset_t all, old;
	int rc;

	/* The thread takes no signals: the server's signalfd sees them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&j->thread, NULL, job_main, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return j->rc = xvl_err(&j->eb, -rc, "vhost-user backend %s: cannot start a "
				       "thread: %s", j->path, strerror(rc));
	return 0;
}

void br_job_join(struct br_job *j)
{
	pthread_join(j->thread, NULL);
}

void br_job_abandon(struct br_job *j)
{
	if (atomic_exchange(&j->stage, BR_JOB_ORPHAN) == BR_JOB_DONE) {
		pthread_join(j->thread, NULL);
		br_job_free(j);
		return;
	}
	pthread_detach(j->thread); /* it touches nothing of the server's */
}

void br_job_free(struct br_job *j)
{
	if (!j)
		return;
	close_inputs(j);
	xvl_vhost_close(&j->vh);
	if (j->pidfd >= 0)
		close(j->pidfd);
	if (j->done_fd >= 0)
		close(j->done_fd);
	free(j);
}
