/* SPDX-License-Identifier: MIT */
/*
 * Compartment sandbox: shells (processes in fresh PID, mount, IPC, UTS,
 * network and, where allowed, user namespaces) that wait for an execute
 * step; seccomp filters compiled once per compartment; cgroups for memory.
 */
#ifndef XVL_PART_SANDBOX_H
#define XVL_PART_SANDBOX_H

#include <linux/filter.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "part.h"

#define XP_MAX_FILTER 512
#define XP_GO_STRINGS 12288
/* Doorbell vectors of one mailbox link: the mailbox's (0) and one per queue. */
#define XP_MBOX_VECTORS_MAX 33u
/* Descriptors a compartment is handed: log, window, and both sides' vectors. */
#define XP_SHELL_MAX_FDS (2u + 2u * XP_MBOX_VECTORS_MAX)

/* A compiled seccomp filter (classic BPF), ready for PR_SET_SECCOMP. */
struct xp_filter {
	unsigned len;            /* 0 = no filter */
	struct sock_filter insn[XP_MAX_FILTER];
};

int xp_filter_build(struct xp_filter *f, enum xp_role role, enum xp_seccomp mode,
		    const struct xp_comp *k, struct xvl_errbuf *eb);

/* ------------------------------------------------------------ memory limits */

enum xp_memctl { XP_MEM_NONE, XP_MEM_CG2, XP_MEM_CG1, XP_MEM_RLIMIT };

struct xp_cgroup {
	enum xp_memctl kind;
	char path[XP_PATH_MAX];  /* the cgroup directory, "" = none */
};

/* Make a cgroup xvl.INST.LEAF (no limit yet) below ours, with the v2 memory controller, else
 * v1's; kind is XP_MEM_RLIMIT when neither is usable (the shell then sets RLIMIT_AS). */
int xp_cgroup_create(struct xp_cgroup *cg, const char *inst, const char *leaf,
		     struct xvl_errbuf *eb);
/* Set the memory limit (0 = none): a write, fast enough for the execute step. */
int xp_cgroup_limit(const struct xp_cgroup *cg, uint64_t bytes, struct xvl_errbuf *eb);
/* Move pid in: slow the first time (an RCU grace period), so done while preparing. */
int xp_cgroup_attach(const struct xp_cgroup *cg, pid_t pid, struct xvl_errbuf *eb);
/* rmdir, after its processes are gone. */
void xp_cgroup_remove(struct xp_cgroup *cg);
const char *xp_memctl_name(enum xp_memctl k);

/* What a shell becomes at the execute step. */
struct xp_go {
	uint32_t magic;
	char hostname[XP_NAME_MAX];
	char exe[XP_PATH_MAX];
	cpu_set_t cpus;
	uint8_t have_cpus;
	uint64_t rlimit_as;      /* 0 = none */
	uint32_t argc, envc, strings_len;
	char strings[XP_GO_STRINGS]; /* argv then env, NUL-terminated each */
	struct xp_filter filter;
};

/* Append a string to g->strings (argv first, then env); -E2BIG when full. */
int xp_go_add(struct xp_go *g, bool env, const char *s);

struct xp_shell {
	pid_t pid;
	int ctl;                 /* parent's end of the shell's control socket, -1 = none */
	bool userns;
	uint64_t born_ns;
	struct xp_cgroup cg;     /* the shell's own cgroup: the compartment's once it executes */
};

/* Whether this host lets us create a user namespace (probed once). */
bool xp_userns_allowed(void);

/* Fork a shell into new namespaces; it prepares (private mounts, its own /proc,
 * default signals) and waits.  The caller reaps it (SIGCHLD). */
int xp_shell_spawn(struct xp_shell *sh, bool userns, struct xvl_errbuf *eb);
/* Wait until the shell has prepared (timeout_ms). */
int xp_shell_ready(struct xp_shell *sh, int timeout_ms, struct xvl_errbuf *eb);
/* The execute step: hand over fds (fd 1+2 = fds[0], fd 3 = fds[1] if nfds > 1,
 * fd 2 + i = fds[i] after it; nfds <= XP_SHELL_MAX_FDS, else -E2BIG), wait until
 * execve succeeded.  The shell's ctl is closed either way. */
int xp_shell_exec(struct xp_shell *sh, const struct xp_go *g, const int *fds, unsigned nfds,
		  struct xvl_errbuf *eb);
/* Kill a shell that will not be used (the caller reaps it). */
void xp_shell_discard(struct xp_shell *sh);

/* Write text to an existing file (cgroup and /proc knobs): 0 or -errno. */
int xp_write_file(const char *path, const char *text);

#endif
