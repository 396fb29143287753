/* SPDX-License-Identifier: MIT */
/*
 * Tap front-ends: for each `net` entry of a driver compartment, an
 * `xvl net tap` process in that compartment's network namespace, connected
 * to the device compartment serving the net device, with the interface's
 * IPv4 address set by the supervisor.  Started after the compartment's
 * shell has prepared and before its program executes, so the program finds
 * its interfaces up.  A front-end that dies while its compartment runs is
 * started again (its interface and address come back); a device side that
 * restarts does not take it down: it reconnects (--reconnect-ms).
 *
 * The front-end runs in the compartment's network namespace and on its CPUs
 * only (not in its other namespaces, cgroup or seccomp filter): it needs
 * /dev/net/tun and the device side's socket, which the compartment's mount
 * namespace and seccomp filter do not give.  Entering the namespace
 * (setns) needs root.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "part_int.h"

#define TAP_UP_MS 5000
#define TAP_RECONNECT_MS "5000" /* rides out a device-side restart (restart_ms is far below) */
#define TAP_RESTARTS_MAX 20

/* An AF_INET socket that lives in the namespace nsfd: ioctls on it act there. */
static int socket_in(int nsfd, struct xvl_errbuf *eb)
{
	int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return xvl_err(eb, -errno, "cannot open our network namespace: %s", strerror(errno));
	if (setns(nsfd, CLONE_NEWNET) < 0) {
		int e = errno;
		close(self);
		return xvl_err(eb, -e, "cannot enter the compartment's network namespace: %s%s",
			       strerror(e), e == EPERM ? " (net interfaces need xvl run as root)" : "");
	}
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int e = errno;
	if (setns(self, CLONE_NEWNET) < 0)
		xvl_err(eb, -errno, "cannot return to our network namespace: %s", strerror(errno));
	close(self);
	if (s < 0)
		return xvl_err(eb, -e, "socket in the compartment's network namespace: %s", strerror(e));
	return s;
}

static int if_flags_up(int s, const char *ifname)
{
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	if (ifr.ifr_flags & IFF_UP)
		return 1;
	ifr.ifr_flags |= IFF_UP;
	return ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

static int set_addr(int s, const struct xp_netif *ni, struct xvl_errbuf *eb)
{
	struct ifreq ifr = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ni->ifname);
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(ni->addr);
	const char *what = "SIOCSIFADDR";
	int rc = ioctl(s, SIOCSIFADDR, &ifr);
	if (rc == 0) {
		what = "SIOCSIFNETMASK";
		sin->sin_addr.s_addr = htonl(ni->prefix == 32 ? ~0u : ~(~0u >> ni->prefix));
		rc = ioctl(s, SIOCSIFNETMASK, &ifr);
	}
	return rc < 0 ? xvl_err(eb, -errno, "interface %s: %s: %s", ni->ifname, what, strerror(errno))
		      : 0;
}

static bool gone(pid_t pid)
{
	siginfo_t si = {0};
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 ? si.si_pid == pid
									     : errno == ECHILD;
}

/* The child: into the namespace, then `xvl net tap`, with the compartment's log as its output. */
static void tap_child(const struct xp_inst *p, unsigned i, unsigned j)
{
	const struct xp_comp *k = &p->cfg.comps[i];
	const struct xp_netif *ni = &k->netifs[j];
	const struct xp_device *d = &p->cfg.devs[ni->dev];
	char uri[XP_PATH_MAX + 8], comp[XP_NAME_MAX + 32];
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL); /* the supervisor blocks what its signalfd reads */
	signal(SIGPIPE, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (setns(p->rt[i].netns_fd, CLONE_NEWNET) < 0)
		_exit(126);
	if (k->have_cpus) /* on the compartment's CPUs (not under its memory limit) */
		sched_setaffinity(0, sizeof(k->cpus), &k->cpus);
	int null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(p->rt[i].log_wr, 1) < 0 || dup2(p->rt[i].log_wr, 2) < 0)
		_exit(126);
	syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
	snprintf(uri, sizeof(uri), "xvl:%s", p->rt[d->comp].link);
	snprintf(comp, sizeof(comp), "XVL_COMPARTMENT=%s", k->name);
	char *const argv[] = {"xvl", "net", "tap", "--connect", uri, "--device", (char *)d->name,
			      "--ifname", (char *)ni->ifname, "--reconnect-ms", TAP_RECONNECT_MS, NULL};
	char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			      "HOME=/", comp, NULL};
	execve(p->self_exe, argv, envp);
	_exit(127);
}

/* Start front-end j, wait until its interface is up, give it its address. */
static int tap_start(struct xp_inst *p, unsigned i, unsigned j, struct xvl_errbuf *eb)
{
	struct xp_comp_rt *r = &p->rt[i];
	const struct xp_netif *ni = &p->cfg.comps[i].netifs[j];
	pid_t pid = fork();
	if (pid < 0)
		return xvl_err(eb, -errno, "fork: %s", strerror(errno));
	if (pid == 0)
		tap_child(p, i, j);
	r->tap_pid[j] = pid;
	uint64_t end = xvl_os_now_ns() + TAP_UP_MS * 1000000ull;
	int rc;
	while ((rc = if_flags_up(r->netns_sock, ni->ifname)) != 1) {
		if (gone(pid))
			return xvl_err(eb, -ECHILD, "tap front-end for %s exited before %s came up (its "
				       "messages are in the log)", p->cfg.devs[ni->dev].name, ni->ifname);
		if (xvl_os_now_ns() > end)
			return xvl_err(eb, -ETIMEDOUT, "interface %s not up after %d ms (%s)", ni->ifname,
				       TAP_UP_MS, rc < 0 ? strerror(-rc) : "down");
		nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);
	}
	if (ni->addr && (rc = set_addr(r->netns_sock, ni, eb)) < 0)
		return rc;
	char a[INET_ADDRSTRLEN] = "no address";
	struct in_addr ia = {.s_addr = htonl(ni->addr)};
	if (ni->addr)
		inet_ntop(AF_INET, &ia, a, sizeof(a));
	xp_log(p, "compartment %s: %s up (%s/%u), tap front-end pid %d for net device %s",
	       p->cfg.comps[i].name, ni->ifname, a, ni->addr ? ni->prefix : 0, (int)pid,
	       p->cfg.devs[ni->dev].name);
	return 0;
}

int xp_netfront_start(struct xp_inst *p, unsigned i, pid_t ns_pid, struct xvl_errbuf *eb)
{
	struct xp_comp_rt *r = &p->rt[i];
	const struct xp_comp *k = &p->cfg.comps[i];
	char ns[64];
	snprintf(ns, sizeof(ns), "/proc/%d/ns/net", (int)ns_pid);
	r->netns_fd = open(ns, O_RDONLY | O_CLOEXEC);
	if (r->netns_fd < 0)
		return xvl_err(eb, -errno, "cannot open %s: %s", ns, strerror(errno));
	r->netns_sock = socket_in(r->netns_fd, eb);
	if (r->netns_sock < 0)
		return r->netns_sock;
	int rc = if_flags_up(r->netns_sock, "lo") < 0 ? xvl_err(eb, -errno, "cannot set lo up") : 0;
	for (unsigned j = 0; rc == 0 && j < k->n_netifs; j++)
		rc = tap_start(p, i, j, eb);
	return rc;
}

/* SIGTERM to every front-end of compartment i, SIGKILL to what is left after 300 ms; reaped. */
void xp_netfront_stop(struct xp_inst *p, unsigned i)
{
	struct xp_comp_rt *r = &p->rt[i];
	bool left = false;
	for (unsigned j = 0; j < XP_MAX_NETIFS; j++)
		if (r->tap_pid[j] > 0)
			kill(r->tap_pid[j], SIGTERM);
	for (int t = 0; t < 300; t++) {
		left = false;
		for (unsigned j = 0; j < XP_MAX_NETIFS; j++)
			left |= r->tap_pid[j] > 0 && !gone(r->tap_pid[j]);
		if (!left)
			break;
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
	for (unsigned j = 0; j < XP_MAX_NETIFS; j++) {
		if (r->tap_pid[j] <= 0)
			continue;
		if (left) /* one blocked in a reconnect does not look at signals */
			kill(r->tap_pid[j], SIGKILL);
		while (waitpid(r->tap_pid[j], NULL, 0) < 0 && errno == EINTR)
			;
		r->tap_pid[j] = 0;
	}
	if (r->netns_sock >= 0)
		close(r->netns_sock);
	if (r->netns_fd >= 0)
		close(r->netns_fd);
	r->netns_sock = r->netns_fd = -1;
}

bool xp_netfront_child_gone(struct xp_inst *p, pid_t pid, int st)
{
	for (unsigned i = 0; i < p->cfg.n_comps; i++)
		for (unsigned j = 0; j < p->cfg.comps[i].n_netifs; j++) {
			struct xp_comp_rt *r = &p->rt[i];
			if (r->tap_pid[j] != pid)
				continue;
			r->tap_pid[j] = 0;
			if (p->stopping || r->state != XS_UP || r->netns_sock < 0)
				return true;
			char why[96];
			struct xvl_errbuf eb;
			xp_describe_status(st, why, sizeof(why));
			xp_log(p, "compartment %s: tap front-end of %s %s", p->cfg.comps[i].name,
			       p->cfg.comps[i].netifs[j].ifname, why);
			if (++r->tap_restarts > TAP_RESTARTS_MAX) {
				xp_log(p, "compartment %s: tap front-ends died %u times: not restarting",
				       p->cfg.comps[i].name, r->tap_restarts);
				return true;
			}
			if (tap_start(p, i, j, &eb) < 0)
				xp_log(p, "compartment %s: tap front-end restart failed: %s",
				       p->cfg.comps[i].name, eb.msg);
			return true;
		}
	return false;
}
