/* SPDX-License-Identifier: MIT */
/*
 * Seccomp allow-lists per role, compiled with libseccomp in the partitioner
 * and installed by the shell right before execve.  Found by running the
 * server and `xvl blk verify` under strace -f -c (see docs/PARTITIONER.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "sandbox.h"

/* Both roles: the C runtime, memory, time, the link socket, eventfds, epoll. */
static const char *const common_calls[] = {
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"preadv2", "pwritev2", "close", "close_range", "fstat", "newfstatat", "statx", "lseek",
	"mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "rt_sigaction",
	"rt_sigprocmask", "rt_sigreturn", "sigaltstack", "exit", "exit_group", "getpid",
	"gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "clock_gettime",
	"clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "futex",
	"set_robust_list", "get_robust_list", "rseq", "set_tid_address", "prlimit64",
	"getrlimit", "arch_prctl", "access", "faccessat", "faccessat2", "openat", "open",
	"readlink", "readlinkat", "getrandom", "execve", "uname", "fcntl", "dup", "dup2",
	"dup3", "pipe2", "poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl",
	"epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2", "connect", "sendmsg",
	"recvmsg", "sendto", "recvfrom", "shutdown", "getsockopt", "setsockopt", "getsockname",
	"getpeername", "memfd_create", "ftruncate", "fallocate", "fsync", "fdatasync",
	"sched_yield", "sched_getaffinity", "getcwd", "signalfd4", "timerfd_create",
	"timerfd_settime", "timerfd_gettime", "tgkill", "statfs", "fstatfs", "restart_syscall",
	"sysinfo", "getdents64", "membarrier", "mlock", "munlock", "pause", "wait4",
	NULL,
};

/*
 * The device side also serves: io_uring, a listening socket it (re)creates
 * (bound under a temporary name and renamed into place, xvl_os_listen).
 * Its ring is restricted to the file backend's opcodes before it is enabled
 * (srv_ring_init); "seccomp" lets it then add a filter refusing any further
 * io_uring_setup (a filter can only add restrictions).
 */
static const char *const device_calls[] = {
	"io_uring_setup", "io_uring_enter", "io_uring_register", "seccomp", "pidfd_open", "bind",
	"listen", "accept4", "accept", "unlink", "unlinkat", "rename", "renameat", "renameat2",
	"fadvise64", "sync_file_range", "flock",
	/* the guard on clients' eventfds (os.h: xvl_os_peer_eventfd_*) */
	"timer_create", "timer_settime", "timer_delete", NULL,
};

static int allow_list(scmp_filter_ctx ctx, const char *const *names)
{
	for (unsigned i = 0; names[i]; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Arguments checked: only Unix sockets, only threads (no fork), only harmless ioctls. */
static int allow_with_args(scmp_filter_ctx ctx)
{
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
				  SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1,
				      SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				      SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	if (rc == 0) /* glibc falls back to clone, where the flags can be checked */
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	static const unsigned long ioctls[] = {TCGETS, TIOCGWINSZ, FIONBIO, FIONREAD};
	for (unsigned i = 0; rc == 0 && i < sizeof(ioctls) / sizeof(ioctls[0]); i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				      SCMP_A1(SCMP_CMP_EQ, ioctls[i]));
	return rc;
}

/*
 * Net: a driver with tap front-ends (k->n_netifs) uses the kernel's IP stack in its own
 * namespace (IPv4/IPv6 sockets, servers); a device side with a tap backend sets its tap up.
 */
static int allow_net(scmp_filter_ctx ctx, const struct xp_comp *k)
{
	static const char *const inet_calls[] = {"bind", "listen", "accept", "accept4", NULL};
	static const unsigned long tun_ioctls[] = {TUNSETIFF, TUNSETVNETHDRSZ, TUNSETOFFLOAD,
						    SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFMTU};
	int rc = 0;
	if (k && k->role == XP_DRIVER && k->n_netifs) {
		rc = allow_list(ctx, inet_calls);
		for (int af = AF_INET; rc == 0 && af <= AF_INET6; af += AF_INET6 - AF_INET)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, af));
	}
	if (rc == 0 && k && k->serves_tap) {
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_INET));
		for (unsigned i = 0; rc == 0 && i < sizeof(tun_ioctls) / sizeof(tun_ioctls[0]); i++)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					      SCMP_A1(SCMP_CMP_EQ, tun_ioctls[i]));
	}
	return rc == -EEXIST ? 0 : rc;
}

static int allow_extra(scmp_filter_ctx ctx, const struct xp_comp *k)
{
	for (unsigned i = 0; k && i < k->n_syscalls; i++) {
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW,
					  seccomp_syscall_resolve_name(k->syscalls[i]), 0);
		if (rc < 0 && rc != -EEXIST)
			return rc;
	}
	return 0;
}

static int export_bpf(scmp_filter_ctx ctx, struct xp_filter *f, struct xvl_errbuf *eb)
{
	int fd = memfd_create("xvl-bpf", MFD_CLOEXEC);
	if (fd < 0)
		return xvl_err(eb, -errno, "seccomp: memfd_create: %s", strerror(errno));
	int rc = seccomp_export_bpf(ctx, fd);
	off_t len = rc == 0 ? lseek(fd, 0, SEEK_END) : -1;
	if (rc == 0 && (len <= 0 || len > (off_t)sizeof(f->insn) || len % sizeof(f->insn[0])))
		rc = -E2BIG;
	if (rc == 0 && pread(fd, f->insn, (size_t)len, 0) != len)
		rc = -EIO;
	close(fd);
	if (rc < 0)
		return xvl_err(eb, rc, "seccomp: cannot export the filter: %s", strerror(-rc));
	f->len = (unsigned)(len / (off_t)sizeof(f->insn[0]));
	return 0;
}

int xp_filter_build(struct xp_filter *f, enum xp_role role, enum xp_seccomp mode,
		    const struct xp_comp *k, struct xvl_errbuf *eb)
{
	f->len = 0;
	if (mode == XP_SECCOMP_OFF)
		return 0;
	uint32_t deflt = mode == XP_SECCOMP_KILL  ? SCMP_ACT_KILL_PROCESS
			 : mode == XP_SECCOMP_LOG ? SCMP_ACT_LOG
						  : SCMP_ACT_ERRNO(EPERM);
	scmp_filter_ctx ctx = seccomp_init(deflt);
	if (!ctx)
		return xvl_err(eb, -ENOMEM, "seccomp: seccomp_init failed");
	int rc = allow_list(ctx, common_calls);
	if (rc == 0 && role == XP_DEVICE)
		rc = allow_list(ctx, device_calls);
	if (rc == 0)
		rc = allow_with_args(ctx);
	if (rc == 0)
		rc = allow_net(ctx, k);
	if (rc == 0)
		rc = allow_extra(ctx, k);
	if (rc < 0)
		xvl_err(eb, rc, "seccomp: cannot add a rule: %s", strerror(-rc));
	else
		rc = export_bpf(ctx, f, eb);
	seccomp_release(ctx);
	return rc;
}
