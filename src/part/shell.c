/* SPDX-License-Identifier: MIT */
/*
 * Compartment shells: the LightVM prepare/execute split.  Prepare: clone into
 * fresh namespaces, make mounts private, mount the PID namespace's own /proc,
 * reset signals, then wait.  Execute: receive the fds and what to run, pin
 * CPUs, place fds at fixed numbers (0 /dev/null, 1-2 log, 3 window, 4 on
 * the window's doorbell vectors), mark every other fd close-on-exec,
 * install seccomp, execve.  At most XP_SHELL_MAX_FDS descriptors are handed
 * over, in one message.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"

#define GO_MAGIC 0x78766c67u /* "xvlg" */
/* Above every fixed number (3 + XP_SHELL_MAX_FDS - 1): where fds wait to be placed. */
#define HIGH_FD 128
_Static_assert(HIGH_FD - 2 > 2 + XP_SHELL_MAX_FDS, "fixed fd numbers reach HIGH_FD");

int xp_go_add(struct xp_go *g, bool env, const char *s)
{
	size_t n = strlen(s) + 1;
	if (g->strings_len + n > sizeof(g->strings) || (!env && g->envc))
		return -E2BIG;
	memcpy(g->strings + g->strings_len, s, n);
	g->strings_len += (uint32_t)n;
	if (env)
		g->envc++;
	else
		g->argc++;
	return 0;
}

int xp_write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int rc = n == (ssize_t)strlen(text) ? 0 : -errno;
	close(fd);
	return rc;
}

bool xp_userns_allowed(void)
{
	pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0)
		_exit(0);
	if (pid < 0)
		return false;
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* ------------------------------------------------------------ inside the shell */

static void shell_fail(int ctl, const char *what, int err)
{
	char m[200];
	int n = snprintf(m, sizeof(m), "%s: %s", what, strerror(err));
	if (send(ctl, m, (size_t)n, MSG_NOSIGNAL) < 0)
		_exit(126);
	_exit(127);
}

static int shell_prepare(int ctl, bool userns)
{
	char b;
	/* The control socket out of the way of the fixed numbers fds are placed at. */
	if (ctl != HIGH_FD - 2) {
		if (dup3(ctl, HIGH_FD - 2, O_CLOEXEC) < 0)
			_exit(122);
		close(ctl);
		ctl = HIGH_FD - 2;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* the supervisor gone: so is the compartment */
	if (userns && read(ctl, &b, 1) != 1) /* uid/gid maps written */
		_exit(125);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		shell_fail(ctl, "making mounts private", errno);
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		shell_fail(ctl, "mounting the compartment's /proc", errno);
	sigset_t none;
	sigemptyset(&none);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || dup3(fd, HIGH_FD - 1, O_CLOEXEC) < 0)
		shell_fail(ctl, "opening /dev/null", errno);
	close(fd);
	if (send(ctl, "R", 1, MSG_NOSIGNAL) != 1)
		_exit(124);
	return ctl;
}

static long recv_go(int ctl, struct xp_go *g, int *fds, unsigned *nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * XP_SHELL_MAX_FDS)];
		struct cmsghdr align;
	} cbuf;
	struct iovec io = {.iov_base = g, .iov_len = sizeof(*g)};
	struct msghdr mh = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf.b,
			    .msg_controllen = sizeof(cbuf.b)};
	long n = recvmsg(ctl, &mh, MSG_CMSG_CLOEXEC);
	*nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); n > 0 && c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && !*nfds) {
			unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(fds, CMSG_DATA(c), sizeof(int) * (k > XP_SHELL_MAX_FDS ? XP_SHELL_MAX_FDS : k));
			*nfds = k > XP_SHELL_MAX_FDS ? XP_SHELL_MAX_FDS : k;
		}
	if (n > 0 && (mh.msg_flags & MSG_CTRUNC))
		shell_fail(ctl, "more descriptors than a compartment is handed", E2BIG);
	return n;
}

/* 0 = /dev/null, 1 and 2 = log (fds[0]), 3 = window (fds[1]), fds[i] at 2 + i
 * (doorbell vectors); everything else close-on-exec. */
static void place_fds(int ctl, int *fds, unsigned nfds)
{
	for (unsigned i = 0; i < nfds; i++) {
		int h = fcntl(fds[i], F_DUPFD_CLOEXEC, HIGH_FD);
		if (h < 0)
			shell_fail(ctl, "moving a descriptor", errno);
		close(fds[i]);
		fds[i] = h;
	}
	if (dup2(HIGH_FD - 1, 0) < 0 || dup2(fds[0], 1) < 0 || dup2(fds[0], 2) < 0)
		shell_fail(ctl, "placing descriptors", errno);
	for (unsigned i = 1; i < nfds; i++)
		if (dup2(fds[i], (int)(2 + i)) < 0)
			shell_fail(ctl, "placing descriptors", errno);
	unsigned first = nfds > 1 ? 2 + nfds : 3;
	if (syscall(SYS_close_range, first, ~0u, CLOSE_RANGE_CLOEXEC) < 0)
		shell_fail(ctl, "close_range", errno);
}

static void apply_limits(int ctl, const struct xp_go *g)
{
	if (sethostname(g->hostname, strnlen(g->hostname, sizeof(g->hostname))) < 0)
		shell_fail(ctl, "sethostname", errno);
	if (g->have_cpus && sched_setaffinity(0, sizeof(g->cpus), &g->cpus) < 0)
		shell_fail(ctl, "sched_setaffinity", errno);
	struct rlimit rl = {.rlim_cur = g->rlimit_as, .rlim_max = g->rlimit_as};
	if (g->rlimit_as && setrlimit(RLIMIT_AS, &rl) < 0)
		shell_fail(ctl, "setrlimit(RLIMIT_AS)", errno);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		shell_fail(ctl, "no_new_privs", errno);
}

static void split_strings(const struct xp_go *g, char **argv, char **envp)
{
	const char *p = g->strings;
	for (uint32_t i = 0; i < g->argc + g->envc; i++) {
		if (i < g->argc)
			argv[i] = (char *)p;
		else
			envp[i - g->argc] = (char *)p;
		p += strlen(p) + 1;
	}
	argv[g->argc] = NULL;
	envp[g->envc] = NULL;
}

static void shell_execute(int ctl, struct xp_go *g)
{
	int fds[XP_SHELL_MAX_FDS];
	unsigned nfds;
	long n = recv_go(ctl, g, fds, &nfds);
	if (n <= 0)
		_exit(n == 0 ? 0 : 123); /* discarded */
	if ((size_t)n != sizeof(*g) || g->magic != GO_MAGIC || nfds < 1 || !g->argc ||
	    g->strings_len > sizeof(g->strings) || g->strings[g->strings_len - 1] ||
	    g->filter.len > XP_MAX_FILTER)
		shell_fail(ctl, "malformed execute message", EPROTO);
	place_fds(ctl, fds, nfds);
	apply_limits(ctl, g);
	char *argv[XP_MAX_ARGS + 1], *envp[64];
	if (g->argc > XP_MAX_ARGS || g->envc >= 64)
		shell_fail(ctl, "too many arguments", E2BIG);
	split_strings(g, argv, envp);
	struct sock_fprog prog = {.len = (unsigned short)g->filter.len, .filter = g->filter.insn};
	if (g->filter.len && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		shell_fail(ctl, "installing the seccomp filter", errno);
	execve(g->exe, argv, envp);
	shell_fail(ctl, g->exe, errno);
}

static void shell_main(int ctl, bool userns)
{
	static struct xp_go g; /* the shell's own copy of memory: not shared */
	ctl = shell_prepare(ctl, userns);
	shell_execute(ctl, &g);
	_exit(127);
}

/* ------------------------------------------------------------ the partitioner's side */

static int write_maps(pid_t pid, struct xvl_errbuf *eb)
{
	char p[64], m[64];
	int rc;
	snprintf(p, sizeof(p), "/proc/%d/setgroups", (int)pid);
	if (geteuid() != 0)
		xp_write_file(p, "deny");
	snprintf(p, sizeof(p), "/proc/%d/uid_map", (int)pid);
	snprintf(m, sizeof(m), "0 %u 1\n", (unsigned)geteuid());
	rc = xp_write_file(p, m);
	if (rc == 0) {
		snprintf(p, sizeof(p), "/proc/%d/gid_map", (int)pid);
		snprintf(m, sizeof(m), "0 %u 1\n", (unsigned)getegid());
		rc = xp_write_file(p, m);
	}
	return rc < 0 ? xvl_err(eb, rc, "user namespace: cannot write %s: %s", p, strerror(-rc)) : 0;
}

int xp_shell_spawn(struct xp_shell *sh, bool userns, struct xvl_errbuf *eb)
{
	int sv[2];
	unsigned long flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS |
			      CLONE_NEWNET | (userns ? CLONE_NEWUSER : 0);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return xvl_err(eb, -errno, "shell: socketpair: %s", strerror(errno));
	sh->born_ns = xvl_os_now_ns();
	pid_t pid = (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0) {
		close(sv[0]);
		shell_main(sv[1], userns);
	}
	int e = errno;
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return xvl_err(eb, -e, "cannot create a compartment (clone with new namespaces): %s%s",
			       strerror(e), e == EPERM ? " (needs root or user namespaces)" : "");
	}
	sh->pid = pid;
	sh->ctl = sv[0];
	sh->userns = userns;
	int rc = userns ? write_maps(pid, eb) : 0;
	if (rc == 0 && userns && send(sh->ctl, "M", 1, MSG_NOSIGNAL) != 1)
		rc = xvl_err(eb, -errno, "shell: %s", strerror(errno));
	if (rc < 0)
		xp_shell_discard(sh);
	return rc;
}

/* Receive one reply from the shell within timeout_ms: its length, 0 at EOF. */
static long shell_reply(struct xp_shell *sh, char *buf, size_t cap, int timeout_ms)
{
	struct pollfd p = {.fd = sh->ctl, .events = POLLIN};
	int pr;
	while ((pr = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	if (pr == 0)
		return -ETIMEDOUT;
	long n = recv(sh->ctl, buf, cap - 1, 0);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return n;
}

int xp_shell_ready(struct xp_shell *sh, int timeout_ms, struct xvl_errbuf *eb)
{
	char m[256];
	long n = shell_reply(sh, m, sizeof(m), timeout_ms);
	if (n == 1 && m[0] == 'R')
		return 0;
	if (n < 0)
		return xvl_err(eb, (int)n, "compartment shell %d did not get ready: %s", (int)sh->pid,
			       strerror((int)-n));
	return xvl_err(eb, -EIO, "compartment shell %d failed while preparing: %s", (int)sh->pid,
		       n ? m : "it exited");
}

/* The execute message and its descriptors: one datagram of the SEQPACKET socket. */
static int send_go(int sock, const struct xp_go *g, const int *fds, unsigned nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * XP_SHELL_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)g, .iov_len = sizeof(*g)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds > XP_SHELL_MAX_FDS)
		return -E2BIG;
	if (nfds)
		xvl_os_put_rights(&mh, u.b, fds, nfds);
	ssize_t n;
	while ((n = sendmsg(sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	return n < 0 ? -errno : n == (ssize_t)sizeof(*g) ? 0 : -EMSGSIZE;
}

int xp_shell_exec(struct xp_shell *sh, const struct xp_go *g, const int *fds, unsigned nfds,
		  struct xvl_errbuf *eb)
{
	struct xp_go *m = (struct xp_go *)g;
	m->magic = GO_MAGIC;
	int rc = send_go(sh->ctl, g, fds, nfds);
	if (rc == -E2BIG) {
		xvl_err(eb, rc, "%u descriptors to hand over, a compartment takes at most %u "
			"(log, window and 2 x %u doorbell vectors)", nfds, XP_SHELL_MAX_FDS,
			XP_MBOX_VECTORS_MAX);
	} else if (rc < 0) {
		xvl_err(eb, rc, "compartment shell %d: cannot send the execute step: %s",
			(int)sh->pid, strerror(-rc));
	} else {
		char r[256];
		long n = shell_reply(sh, r, sizeof(r), 5000);
		/* the caller names the compartment (xp_err_prefix) */
		if (n > 0)
			rc = xvl_err(eb, -EIO, "%s", r);
		else if (n < 0)
			rc = xvl_err(eb, (int)n, "no word from execve: %s", strerror((int)-n));
	}
	close(sh->ctl);
	sh->ctl = -1;
	return rc;
}

void xp_shell_discard(struct xp_shell *sh)
{
	if (sh->ctl >= 0)
		close(sh->ctl);
	sh->ctl = -1;
	if (sh->pid > 0)
		kill(sh->pid, SIGKILL);
}
