/* SPDX-License-Identifier: MIT */
/* Partitioner internals shared by its source files. */
#ifndef XVL_PART_INT_H
#define XVL_PART_INT_H

#include <stdio.h>

#include "mailbox.h"
#include "part.h"
#include "sandbox.h"

#define XP_POOL_MAX 8
#define XP_CRASH_WINDOW_NS (10ull * 1000000000ull)
#define XP_REFILL_DELAY_NS (100ull * 1000000ull)
#define XP_CRASH_MAX 20   /* restarts within XP_CRASH_WINDOW_NS before giving up */

enum xp_state { XS_DOWN, XS_UP, XS_EXITED, XS_FAILED };

struct xp_comp_rt {
	pid_t pid;
	enum xp_state state;
	unsigned restarts;
	int last_status;            /* wait status of the last death, -1 = none */
	char last_reason[96];
	uint64_t started_ns;
	uint64_t last_restart_us;   /* death to listening again */
	uint64_t max_restart_us;
	uint64_t crash_window_ns;
	unsigned crashes_in_window;
	bool from_pool;
	struct xp_cgroup cg;
	struct xp_filter filter;
	int log_rd, log_wr;         /* its stdout+stderr, read by the supervisor */
	char link[XP_PATH_MAX];     /* device: socket it listens on; driver: socket it connects to */
	int netns_fd, netns_sock;   /* driver with net: its network namespace and a socket in it, -1 */
	pid_t tap_pid[XP_MAX_NETIFS]; /* its tap front-ends (netfront.c), 0 = none */
	unsigned tap_restarts;
};

/*
 * The doorbell vectors of the link in one window (vectors.c), held by the partitioner:
 * drv[v] rings the driver, dev[v] the device side.  Handed over at spawn to process
 * compartments (at most XP_MBOX_VECTORS_MAX), or to QEMUs by the ivshmem server (ivsh.c).
 */
struct xp_vectors {
	unsigned n;                 /* 0: none held */
	int drv[XVL_MBOX_MAX_VECTORS];
	int dev[XVL_MBOX_MAX_VECTORS];
};

struct xp_inst {
	struct xp_config cfg;
	struct xp_run_opts o;
	char dir[XP_PATH_MAX];
	char ctl_path[XP_PATH_MAX + 16];
	char self_exe[XP_PATH_MAX];
	int sigfd, ctl_fd, log_fd;
	bool userns, stopping, started;
	bool cgroups;               /* some compartment has a memory limit */
	unsigned n_shells;          /* shells made so far: names their cgroups */
	uint64_t refill_after_ns;   /* the pool is refilled once starts have settled */
	int win_fd[XP_MAX_WINS];
	int ivsh_sock[XP_MAX_WINS][2];  /* ivsh.c: our end of each peer's introduction, -1 none */
	uint64_t win_size[XP_MAX_WINS];
	struct xp_vectors vec[XP_MAX_WINS]; /* of the mailbox link in window w */
	struct xp_comp_rt rt[XP_MAX_COMPS];
	pid_t qsd_pid[XP_MAX_DEVS];
	char qsd_sock[XP_MAX_DEVS][XP_PATH_MAX];
	struct xp_shell pool[XP_POOL_MAX];
	unsigned n_pool;
	unsigned pool_hits, cold_starts;
	uint64_t t0_ns;
};

/* snprintf that says -ENAMETOOLONG when out was too small. */
int xp_fmt(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Put "what name: " before the message already in eb; returns rc. */
int xp_err_prefix(struct xvl_errbuf *eb, int rc, const char *what, const char *name);
void xp_log(struct xp_inst *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* supervise.c */
int xp_comp_start(struct xp_inst *p, unsigned i, struct xvl_errbuf *eb);
int xp_wait_listening(struct xp_inst *p, const char *path, pid_t pid, int timeout_ms,
		      struct xvl_errbuf *eb);
int xp_loop_once(struct xp_inst *p, int timeout_ms);
void xp_reap(struct xp_inst *p);
void xp_pool_fill(struct xp_inst *p);
/* A new shell in its own cgroup (when limits are wanted). */
int xp_shell_new(struct xp_inst *p, struct xp_shell *sh, struct xvl_errbuf *eb);
void xp_describe_status(int st, char *out, size_t cap);

/* The window compartment i is given as fd 3: its own (a driver), the window of the driver
 * whose mailbox link it serves (a device side with link = "window"), or -1. */
static inline int xp_comp_window(const struct xp_config *c, unsigned i)
{
	const struct xp_comp *k = &c->comps[i];
	return k->window >= 0 ? k->window : k->mbox_driver >= 0 ? c->comps[k->mbox_driver].window : -1;
}

/* supervise.c: a device as `xvl server --dev` takes it (name=...,backend=...). */
void xp_spec_text(const struct xp_device *d, char *out, size_t cap);

/* ivsh.c: the ivshmem server of windows with vectors (peer 0 the device side, 1 the driver) */
#define XP_IVSH_DEVICE 0u
#define XP_IVSH_DRIVER 1u
int xp_ivsh_create(struct xp_inst *p, unsigned w, struct xvl_errbuf *eb);
/* A socketpair end holding peer self's whole introduction, for QEMU's -chardev socket,fd=. */
int xp_ivsh_peer_fd(struct xp_inst *p, unsigned w, unsigned self, struct xvl_errbuf *eb);
void xp_ivsh_close(struct xp_inst *p, unsigned w);
/* netfront.c: tap front-ends in a driver's network namespace (ns_pid: its shell) */
int xp_netfront_start(struct xp_inst *p, unsigned i, pid_t ns_pid, struct xvl_errbuf *eb);
void xp_netfront_stop(struct xp_inst *p, unsigned i);
/* pid was a front-end: restart it if its compartment runs; false: not one of them. */
bool xp_netfront_child_gone(struct xp_inst *p, pid_t pid, int st);
/* vectors.c */
int xp_vectors_driver(const struct xp_config *c, unsigned i);
int xp_vectors_open(struct xp_inst *p, unsigned drv, struct xvl_errbuf *eb);
/* n eventfd pairs into window w's (empty) set; -errno with a message naming the window. */
int xp_vectors_make(struct xp_inst *p, unsigned w, unsigned n, struct xvl_errbuf *eb);
void xp_vectors_close(struct xp_inst *p, unsigned w);
unsigned xp_vectors_fds(const struct xp_vectors *v, bool device, int *fds);
int xp_vectors_spec(const struct xp_vectors *v, char *out, size_t cap);

/* vm.c */
bool xp_vm_kvm_usable(void);
/* QEMU's argv for VM compartment k of c: -E2BIG when it does not fit. */
int xp_vm_build_argv(const struct xp_config *c, struct xp_comp *k);

/* status.c */
char *xp_status_json(struct xp_inst *p);   /* malloc'd */
void xp_ctl_serve(struct xp_inst *p);      /* one request on the control socket */

#endif
