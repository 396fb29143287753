/* SPDX-License-Identifier: MIT */
/*
 * Supervision: start a compartment from a pooled (or freshly made) shell,
 * reap children, restart a device side that died on the same socket, release
 * what a driver side that died held, relay compartment output, refill the pool.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "part_int.h"

/* ------------------------------------------------------------ what to execute */

static const char *const spec_backends[] = {"file", "null", "ram", "vhost-user", "switch", "tap"};

/* type = "net": what xvl server -d takes (src/server/spec.c). */
static void net_spec_text(const struct xvl_dev_spec *s, char *out, size_t cap)
{
	int n = snprintf(out, cap, "name=%s,type=net,backend=%s", s->name, spec_backends[s->kind]);
	if (s->kind == XVL_BK_SWITCH)
		n += snprintf(out + n, cap - (size_t)n, ",switch=%s%s", s->sw, s->spoof ? ",spoof=on" : "");
	if (s->kind == XVL_BK_TAP)
		n += snprintf(out + n, cap - (size_t)n, ",ifname=%s", s->ifname);
	if (s->kind == XVL_BK_VHOST)
		n += snprintf(out + n, cap - (size_t)n, ",path=%s", s->path);
	if (s->has_mac)
		n += snprintf(out + n, cap - (size_t)n, ",mac=%02x:%02x:%02x:%02x:%02x:%02x", s->mac[0],
			      s->mac[1], s->mac[2], s->mac[3], s->mac[4], s->mac[5]);
	if (s->mtu)
		n += snprintf(out + n, cap - (size_t)n, ",mtu=%u", s->mtu);
	if (s->queues)
		n += snprintf(out + n, cap - (size_t)n, ",queues=%u", s->queues);
	if (s->queue_size)
		snprintf(out + n, cap - (size_t)n, ",queue-size=%u", s->queue_size);
}

void xp_spec_text(const struct xp_device *d, char *out, size_t cap)
{
	const struct xvl_dev_spec *s = &d->spec;
	if (s->type == XVL_DEV_NET)
		return net_spec_text(s, out, cap);
	int n = snprintf(out, cap, "name=%s,backend=%s", s->name, spec_backends[s->kind]);
	if (s->path[0])
		n += snprintf(out + n, cap - (size_t)n, ",path=%s", s->path);
	if (s->size && s->kind != XVL_BK_VHOST)
		n += snprintf(out + n, cap - (size_t)n, ",size=%llu", (unsigned long long)s->size);
	if (s->queues && s->kind != XVL_BK_VHOST)
		n += snprintf(out + n, cap - (size_t)n, ",queues=%u", s->queues);
	if (s->queue_size)
		n += snprintf(out + n, cap - (size_t)n, ",queue-size=%u", s->queue_size);
	snprintf(out + n, cap - (size_t)n, "%s%s", s->read_only ? ",ro=on" : "",
		 s->direct ? ",direct=on" : "");
}

/* Replace {link} {window_fd} {window_size} {name} {state_dir} in an argument. */
static int subst(const struct xp_inst *p, unsigned i, const char *in, char *out, size_t cap)
{
	const struct xp_comp *k = &p->cfg.comps[i];
	int win = xp_comp_window(&p->cfg, i);
	char wsz[24];
	snprintf(wsz, sizeof(wsz), "%llu", (unsigned long long)(win >= 0 ? p->win_size[win] : 0));
	const char *keys[] = {"{link}", "{window_fd}", "{window_size}", "{name}", "{state_dir}"};
	const char *vals[] = {k->link_window ? "mbox:" : p->rt[i].link, win >= 0 ? "3" : "-1", wsz,
			      k->name, p->dir};
	size_t o = 0;
	while (*in) {
		unsigned t = 0;
		while (t < 5 && strncmp(in, keys[t], strlen(keys[t])))
			t++;
		const char *v = t < 5 ? vals[t] : NULL;
		size_t n = v ? strlen(v) : 1;
		if (o + n >= cap)
			return -E2BIG;
		memcpy(out + o, v ? v : in, n);
		o += n;
		in += v ? strlen(keys[t]) : 1;
	}
	out[o] = 0;
	return 0;
}

static int resolve_exe(const struct xp_inst *p, const char *a0, char *out, size_t cap)
{
	if (!strcmp(a0, "xvl"))
		return snprintf(out, cap, "%s", p->self_exe), 0;
	if (strchr(a0, '/'))
		return snprintf(out, cap, "%s", a0), access(a0, X_OK) < 0 ? -errno : 0;
	const char *path = getenv("PATH");
	char dirs[1024];
	snprintf(dirs, sizeof(dirs), "%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(out, cap, "%s/%s", d, a0);
		if (access(out, X_OK) == 0)
			return 0;
	}
	return -ENOENT;
}

static int go_args(const struct xp_inst *p, unsigned i, struct xp_go *g)
{
	const struct xp_comp *k = &p->cfg.comps[i];
	char a[XP_PATH_MAX * 2];
	int rc = 0;
	if (k->argc) {
		for (unsigned j = 0; rc == 0 && j < k->argc; j++)
			if ((rc = subst(p, i, k->argv[j], a, sizeof(a))) == 0)
				rc = xp_go_add(g, false, a);
		return rc;
	}
	const char *fixed[] = {"xvl", "server", "--listen", p->rt[i].link, "--name", k->name};
	for (unsigned j = 0; rc == 0 && j < 6; j++)
		rc = xp_go_add(g, false, fixed[j]);
	/* A driver with link = "window": its window comes in as fd 3 (the socket stays for status). */
	const char *mbox[] = {"--link", "window", "--window", "fd:3"};
	for (unsigned j = 0; rc == 0 && k->mbox_driver >= 0 && j < 4; j++)
		rc = xp_go_add(g, false, mbox[j]);
	/* ... and its doorbell vectors from fd 4 on (vectors.c), unless the link polls */
	int drv = xp_vectors_driver(&p->cfg, i);
	if (rc == 0 && drv >= 0)
		rc = xp_go_add(g, false, "--doorbell");
	if (rc == 0 && drv >= 0 && (rc = xp_vectors_spec(&p->vec[p->cfg.comps[drv].window], a, sizeof(a))) == 0)
		rc = xp_go_add(g, false, a);
	/* cpus = [...]: one worker thread per CPU of the compartment (not pinned: its
	 * affinity holds them, and sched_setaffinity is not in the device profile) */
	if (rc == 0 && k->have_cpus)
		rc = xp_go_add(g, false, "--cpus");
	if (rc == 0 && k->have_cpus)
		rc = xp_go_add(g, false, "auto");
	for (unsigned d = 0; rc == 0 && d < k->n_devs; d++) {
		xp_spec_text(&p->cfg.devs[k->devs[d]], a, sizeof(a));
		rc = xp_go_add(g, false, "--dev");
		if (rc == 0)
			rc = xp_go_add(g, false, a);
	}
	return rc;
}

static int go_env(const struct xp_inst *p, unsigned i, struct xp_go *g)
{
	const struct xp_comp *k = &p->cfg.comps[i];
	char e[XP_PATH_MAX + 32];
	int rc = xp_go_add(g, true, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	snprintf(e, sizeof(e), "XVL_COMPARTMENT=%s", k->name);
	if (rc == 0)
		rc = xp_go_add(g, true, e);
	snprintf(e, sizeof(e), "XVL_ROLE=%s", k->role == XP_DEVICE ? "device" : "driver");
	if (rc == 0)
		rc = xp_go_add(g, true, e);
	snprintf(e, sizeof(e), "XVL_LINK=%s", p->rt[i].link);
	if (rc == 0)
		rc = xp_go_add(g, true, e);
	if (rc == 0 && k->window >= 0) {
		rc = xp_go_add(g, true, "XVL_WINDOW_FD=3");
		/* the link's doorbell vectors follow the window (vectors.c), or it polls */
		if (rc == 0 && k->link_window && xp_vectors_driver(&p->cfg, i) < 0)
			rc = xp_go_add(g, true, "XVL_DOORBELL=none");
		if (rc == 0 && k->link_window && xp_vectors_driver(&p->cfg, i) >= 0) {
			memcpy(e, "XVL_DOORBELL=", 13);
			rc = xp_vectors_spec(&p->vec[k->window], e + 13, sizeof(e) - 13);
			if (rc == 0)
				rc = xp_go_add(g, true, e);
		}
		/* the supervisor restarts a dead device side within ms: ride it out */
		if (rc == 0)
			rc = xp_go_add(g, true, "XVL_RECONNECT_MS=5000");
		snprintf(e, sizeof(e), "XVL_WINDOW_SIZE=%llu", (unsigned long long)p->win_size[k->window]);
		if (rc == 0)
			rc = xp_go_add(g, true, e);
	}
	if (rc == 0)
		rc = xp_go_add(g, true, "HOME=/");
	return rc;
}

static int build_go(const struct xp_inst *p, unsigned i, const struct xp_shell *sh, struct xp_go *g,
		    struct xvl_errbuf *eb)
{
	const struct xp_comp *k = &p->cfg.comps[i];
	snprintf(g->hostname, sizeof(g->hostname), "%s", k->name);
	int rc = resolve_exe(p, k->argc ? k->argv[0] : "xvl", g->exe, sizeof(g->exe));
	if (rc < 0)
		return xvl_err(eb, rc, "program '%s' not found or not executable",
			       k->argc ? k->argv[0] : "xvl");
	rc = go_args(p, i, g);
	if (rc == 0)
		rc = go_env(p, i, g);
	if (rc < 0)
		return xvl_err(eb, rc, "arguments and environment exceed %u bytes", XP_GO_STRINGS);
	g->cpus = k->cpus;
	g->have_cpus = k->have_cpus;
	g->rlimit_as = sh->cg.kind != XP_MEM_CG1 && sh->cg.kind != XP_MEM_CG2 ? k->memory : 0;
	g->filter = p->rt[i].filter;
	return 0;
}

/* ------------------------------------------------------------ start */

static int take_shell(struct xp_inst *p, struct xp_shell *sh, bool *from_pool,
		      struct xvl_errbuf *eb)
{
	if (p->n_pool) {
		*sh = p->pool[0];
		memmove(&p->pool[0], &p->pool[1], --p->n_pool * sizeof(p->pool[0]));
		*from_pool = true;
		p->pool_hits++;
		return 0;
	}
	*from_pool = false;
	p->cold_starts++;
	return xp_shell_new(p, sh, eb);
}

/* Kill and reap a shell that was not handed to a compartment; remove its cgroup. */
static void shell_drop(struct xp_shell *sh)
{
	pid_t pid = sh->pid;
	xp_shell_discard(sh);
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	xp_cgroup_remove(&sh->cg);
}

int xp_shell_new(struct xp_inst *p, struct xp_shell *sh, struct xvl_errbuf *eb)
{
	char leaf[24];
	snprintf(leaf, sizeof(leaf), "s%u", ++p->n_shells);
	memset(&sh->cg, 0, sizeof(sh->cg));
	int rc = p->cgroups ? xp_cgroup_create(&sh->cg, p->cfg.name, leaf, eb) : 0;
	if (rc == 0)
		rc = xp_shell_spawn(sh, p->userns, eb);
	if (rc < 0) {
		xp_cgroup_remove(&sh->cg);
		return rc;
	}
	rc = xp_cgroup_attach(&sh->cg, sh->pid, eb);
	if (rc < 0)
		shell_drop(sh);
	return rc;
}

int xp_comp_start(struct xp_inst *p, unsigned i, struct xvl_errbuf *eb)
{
	struct xp_comp_rt *r = &p->rt[i];
	const struct xp_comp *k = &p->cfg.comps[i];
	struct xp_go *g = calloc(1, sizeof(*g));
	struct xp_shell sh = {.pid = -1, .ctl = -1};
	bool pooled = false;
	uint64_t t0 = xvl_os_now_ns();
	if (!g)
		return xvl_err(eb, -ENOMEM, "out of memory");
	/* The mailbox link's doorbell vectors: made with the first side that needs them. */
	int drv = xp_vectors_driver(&p->cfg, i);
	int rc = drv >= 0 ? xp_vectors_open(p, (unsigned)drv, eb) : 0;
	if (rc == 0)
		rc = take_shell(p, &sh, &pooled, eb);
	if (rc < 0) {
		free(g);
		return rc;
	}
	rc = build_go(p, i, &sh, g, eb);
	if (rc == 0)
		rc = xp_shell_ready(&sh, 5000, eb);
	if (rc == 0)
		rc = xp_cgroup_limit(&sh.cg, k->memory, eb);
	if (rc == 0 && k->n_netifs) /* its interfaces are up before its program runs */
		rc = xp_netfront_start(p, i, sh.pid, eb);
	/* A device side serving a mailbox link gets that driver's window too. */
	int win = xp_comp_window(&p->cfg, i);
	int fds[XP_SHELL_MAX_FDS] = {r->log_wr, win >= 0 ? p->win_fd[win] : -1};
	unsigned nfds = win >= 0 ? 2 : 1;
	if (rc == 0 && win >= 0 && fds[1] < 0)
		rc = xvl_err(eb, -EBADF, "its window %s was released", p->cfg.wins[win].name);
	/* a VM on a window with doorbells gets its ivshmem introduction instead (vm.c) */
	int intro = -1;
	if (rc == 0 && k->vm && win >= 0 && p->cfg.wins[win].vectors) {
		rc = xp_ivsh_peer_fd(p, (unsigned)win, k->role == XP_DEVICE ? XP_IVSH_DEVICE : XP_IVSH_DRIVER, eb);
		intro = rc >= 0 ? rc : -1;
		fds[1] = rc >= 0 ? rc : fds[1];
		rc = rc >= 0 ? 0 : rc;
	}
	if (rc == 0 && drv >= 0 && !p->vec[win].n)
		rc = xvl_err(eb, -EBADF, "the doorbell vectors of window %s were released", p->cfg.wins[win].name);
	if (rc == 0 && drv >= 0)
		nfds += xp_vectors_fds(&p->vec[win], k->role == XP_DEVICE, fds + 2);
	if (rc == 0)
		rc = xp_shell_exec(&sh, g, fds, nfds, eb);
	if (intro >= 0)
		close(intro);
	free(g);
	if (rc < 0) {
		xp_netfront_stop(p, i);
		shell_drop(&sh);
		return rc;
	}
	r->cg = sh.cg;
	r->pid = sh.pid;
	p->refill_after_ns = xvl_os_now_ns() + XP_REFILL_DELAY_NS;
	r->state = XS_UP;
	r->started_ns = xvl_os_now_ns();
	r->from_pool = pooled;
	xp_log(p, "compartment %s (%s) started: pid %d, %s, %.2f ms", k->name,
	       k->role == XP_DEVICE ? (k->vm ? "device, vm" : "device") : k->vm ? "driver, vm" : "driver", (int)sh.pid,
	       pooled ? "from the pool" : "cold", (double)(r->started_ns - t0) / 1e6);
	return 0;
}

static bool exited(pid_t pid)
{
	siginfo_t si = {0};
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 ? si.si_pid == pid
									     : errno == ECHILD;
}

static int probe(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int rc = -ECONNREFUSED;
	for (int type = SOCK_SEQPACKET; rc < 0; type = SOCK_STREAM) {
		int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		rc = connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ? -errno : 0;
		close(fd);
		if (rc != -EPROTOTYPE || type == SOCK_STREAM)
			break;
	}
	return rc;
}

int xp_wait_listening(struct xp_inst *p, const char *path, pid_t pid, int timeout_ms,
		      struct xvl_errbuf *eb)
{
	uint64_t end = xvl_os_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	(void)p;
	for (unsigned n = 0;; n++) {
		if (probe(path) == 0)
			return 0;
		if (exited(pid))
			return xvl_err(eb, -ECHILD, "exited before listening on %s", path);
		if (xvl_os_now_ns() > end)
			return xvl_err(eb, -ETIMEDOUT, "not listening on %s after %d ms", path,
				       timeout_ms);
		nanosleep(&(struct timespec){.tv_nsec = n < 100 ? 200000 : 2000000}, NULL);
	}
}

/* ------------------------------------------------------------ deaths */

void xp_describe_status(int st, char *out, size_t cap)
{
	if (WIFEXITED(st))
		snprintf(out, cap, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(out, cap, "killed by signal %d (SIG%s)%s", WTERMSIG(st),
			 sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?",
			 WTERMSIG(st) == SIGSYS ? ": a system call its seccomp filter forbids" : "");
	else
		snprintf(out, cap, "wait status 0x%x", (unsigned)st);
}

static void restart_device(struct xp_inst *p, unsigned i, uint64_t died_ns)
{
	struct xp_comp_rt *r = &p->rt[i];
	const char *name = p->cfg.comps[i].name;
	struct xvl_errbuf eb;
	if (died_ns - r->crash_window_ns > XP_CRASH_WINDOW_NS) {
		r->crash_window_ns = died_ns;
		r->crashes_in_window = 0;
	}
	if (++r->crashes_in_window > XP_CRASH_MAX) {
		r->state = XS_FAILED;
		xp_log(p, "device side %s died %u times in 10 s: not restarting it again", name,
		       r->crashes_in_window);
		return;
	}
	int rc = xp_comp_start(p, i, &eb);
	/* a device VM has no socket: its guest boots and its server attaches to the window */
	if (rc == 0 && !p->cfg.comps[i].vm)
		rc = xp_wait_listening(p, r->link, r->pid, 5000, &eb);
	r->restarts++;
	if (rc < 0) {
		xp_log(p, "device side %s: restart #%u failed: %s", name, r->restarts, eb.msg);
		return;
	}
	r->last_restart_us = (xvl_os_now_ns() - died_ns) / 1000;
	if (r->last_restart_us > r->max_restart_us)
		r->max_restart_us = r->last_restart_us;
	if (p->cfg.comps[i].vm) {
		xp_log(p, "device side %s restarted (#%u): QEMU pid %d after %.2f ms; its guest boots "
		       "and serves the window again", name, r->restarts, (int)r->pid,
		       (double)r->last_restart_us / 1000.0);
		return;
	}
	xp_log(p, "device side %s restarted (#%u) as pid %d, serving %s again after %.2f ms%s", name,
	       r->restarts, (int)r->pid, r->link, (double)r->last_restart_us / 1000.0,
	       r->last_restart_us > p->cfg.restart_ms * 1000ull ? " (over the restart bound)" : "");
}

static void comp_died(struct xp_inst *p, unsigned i, int st)
{
	struct xp_comp_rt *r = &p->rt[i];
	const struct xp_comp *k = &p->cfg.comps[i];
	uint64_t now = xvl_os_now_ns();
	xp_describe_status(st, r->last_reason, sizeof(r->last_reason));
	xp_log(p, "compartment %s (pid %d) %s", k->name, (int)r->pid, r->last_reason);
	r->pid = 0;
	r->last_status = st;
	r->state = XS_EXITED;
	xp_cgroup_remove(&r->cg);
	xp_netfront_stop(p, i); /* its namespace is gone with it */
	if (p->stopping)
		return;
	if (k->role == XP_DEVICE) {
		restart_device(p, i, now);
		return;
	}
	if (k->window >= 0 && p->win_fd[k->window] >= 0) {
		close(p->win_fd[k->window]);
		p->win_fd[k->window] = -1;
		xp_vectors_close(p, (unsigned)k->window);
		xp_log(p, "window %s released", p->cfg.wins[k->window].name);
	}
}

static void child_gone(struct xp_inst *p, pid_t pid, int st)
{
	for (unsigned i = 0; i < p->cfg.n_comps; i++)
		if (p->rt[i].pid == pid)
			return comp_died(p, i, st);
	if (xp_netfront_child_gone(p, pid, st))
		return;
	for (unsigned d = 0; d < p->cfg.n_devs; d++)
		if (p->qsd_pid[d] == pid) {
			char why[96];
			xp_describe_status(st, why, sizeof(why));
			p->qsd_pid[d] = 0;
			if (!p->stopping)
				xp_log(p, "qemu-storage-daemon of %s %s", p->cfg.devs[d].name, why);
			return;
		}
	for (unsigned s = 0; s < p->n_pool; s++)
		if (p->pool[s].pid == pid) {
			if (p->pool[s].ctl >= 0)
				close(p->pool[s].ctl);
			xp_cgroup_remove(&p->pool[s].cg);
			memmove(&p->pool[s], &p->pool[s + 1], (--p->n_pool - s) * sizeof(p->pool[0]));
			return;
		}
}

void xp_reap(struct xp_inst *p)
{
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid <= 0)
			return;
		child_gone(p, pid, st);
	}
}

/* ------------------------------------------------------------ loop */

void xp_pool_fill(struct xp_inst *p)
{
	unsigned want = p->cfg.pool < XP_POOL_MAX ? p->cfg.pool : XP_POOL_MAX;
	/* not while compartments are starting: making shells competes with them for CPUs */
	while (!p->stopping && p->n_pool < want && xvl_os_now_ns() >= p->refill_after_ns) {
		struct xvl_errbuf eb;
		if (xp_shell_new(p, &p->pool[p->n_pool], &eb) < 0) {
			xp_log(p, "pool: %s", eb.msg);
			return;
		}
		p->n_pool++;
	}
}

static void relay_log(struct xp_inst *p, unsigned i)
{
	char buf[4096], out[4096 + 512];
	ssize_t n = read(p->rt[i].log_rd, buf, sizeof(buf));
	size_t o = 0;
	for (ssize_t j = 0; j < n; j++) {
		if (j == 0 || buf[j - 1] == '\n')
			o += (size_t)snprintf(out + o, sizeof(out) - o, "[%s] ", p->cfg.comps[i].name);
		if (o < sizeof(out) - 1)
			out[o++] = buf[j];
		if (o > sizeof(out) - 64) {
			if (!p->o.quiet && write(p->log_fd, out, o) < 0)
				return;
			o = 0;
		}
	}
	if (o && buf[n - 1] != '\n')
		out[o++] = '\n';
	if (o && !p->o.quiet && write(p->log_fd, out, o) < 0)
		return;
}

static void on_signals(struct xp_inst *p)
{
	struct signalfd_siginfo si;
	while (read(p->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			continue;
		if (!p->stopping)
			xp_log(p, "signal %u: stopping", si.ssi_signo);
		p->stopping = true;
	}
	xp_reap(p);
}

int xp_loop_once(struct xp_inst *p, int timeout_ms)
{
	struct pollfd pf[2 + XP_MAX_COMPS];
	unsigned n = 0, map[XP_MAX_COMPS];
	pf[n++] = (struct pollfd){.fd = p->sigfd, .events = POLLIN};
	pf[n++] = (struct pollfd){.fd = p->ctl_fd, .events = POLLIN};
	for (unsigned i = 0; i < p->cfg.n_comps; i++)
		if (p->rt[i].log_rd >= 0) {
			map[n - 2] = i;
			pf[n++] = (struct pollfd){.fd = p->rt[i].log_rd, .events = POLLIN};
		}
	int rc = poll(pf, n, timeout_ms);
	if (rc < 0)
		return errno == EINTR ? 0 : -errno;
	for (unsigned j = 2; j < n; j++)
		if (pf[j].revents & POLLIN)
			relay_log(p, map[j - 2]);
	if (pf[0].revents & POLLIN)
		on_signals(p);
	if (pf[1].revents & POLLIN)
		xp_ctl_serve(p);
	xp_pool_fill(p);
	return rc;
}

static bool drivers_done(const struct xp_inst *p, int *code)
{
	unsigned drivers = 0;
	*code = 0;
	for (unsigned i = 0; i < p->cfg.n_comps; i++) {
		if (p->cfg.comps[i].role != XP_DRIVER)
			continue;
		drivers++;
		if (p->rt[i].state == XS_UP)
			return false;
		if (p->rt[i].last_status != 0)
			*code = 1;
	}
	return drivers > 0;
}

int xp_inst_run(struct xp_inst *p)
{
	int code = 0;
	while (!p->stopping) {
		if (p->cfg.exit_with_drivers && drivers_done(p, &code)) {
			xp_log(p, "every driver compartment has exited%s",
			       code ? " (some failed)" : " successfully");
			break;
		}
		if (xp_loop_once(p, 1000) < 0)
			break;
	}
	for (unsigned j = 0; j < p->cfg.n_comps; j++)
		while (p->rt[j].log_rd >= 0 && xp_loop_once(p, 0) > 0)
			;
	return code;
}

int xp_inst_wait_driver(struct xp_inst *p, unsigned idx, int timeout_ms)
{
	uint64_t end = xvl_os_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	while (p->rt[idx].state == XS_UP) {
		if (xvl_os_now_ns() > end)
			return -ETIMEDOUT;
		int rc = xp_loop_once(p, 5);
		if (rc < 0)
			return rc;
	}
	return p->rt[idx].last_status;
}
