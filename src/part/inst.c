/* SPDX-License-Identifier: MIT */
/*
 * An instance: the state directory, the control socket, the windows, the
 * qemu-storage-daemon backends and the compartments of one config, brought
 * up in order (backends, device sides, driver sides) and torn down so that
 * nothing is left: no process, window, socket file, cgroup or directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "part_int.h"

int xp_fmt(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, cap, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int xp_err_prefix(struct xvl_errbuf *eb, int rc, const char *what, const char *name)
{
	char m[sizeof(eb->msg)];
	memcpy(m, eb->msg, sizeof(m));
	m[sizeof(m) - 1] = 0;
	return xvl_err(eb, rc, "%s %s: %s", what, name, m);
}

void xp_log(struct xp_inst *p, const char *fmt, ...)
{
	char m[512];
	va_list ap;
	if (p->o.quiet)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(m) - 1)
		n = (int)sizeof(m) - 2;
	m[n++] = '\n';
	uint64_t t = (xvl_os_now_ns() - p->t0_ns) / 1000000ull;
	dprintf(p->log_fd, "xvl run [%llu.%03llu] ", (unsigned long long)(t / 1000),
		(unsigned long long)(t % 1000));
	if (write(p->log_fd, m, (size_t)n) < 0)
		return;
}

static int mkdirs(const char *path)
{
	char tmp[XP_PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *s = tmp + 1; *s; s++)
		if (*s == '/') {
			*s = 0;
			if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
				return -errno;
			*s = '/';
		}
	return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* The state dir must not hold a live instance; a stale one is cleared. */
static int claim_dir(struct xp_inst *p, struct xvl_errbuf *eb)
{
	char r[64];
	struct xvl_errbuf e2;
	if (xp_ctl_request(p->dir, "ping", r, sizeof(r), &e2) == 0)
		return xvl_err(eb, -EBUSY, "instance '%s' is already running (state dir %s); "
			       "'xvl stop --state-dir %s' first", p->cfg.name, p->dir, p->dir);
	int rc = mkdirs(p->dir);
	if (rc < 0)
		return xvl_err(eb, rc, "cannot create the state directory %s: %s", p->dir,
			       strerror(-rc));
	p->ctl_fd = xvl_os_listen(p->ctl_path, eb);
	return p->ctl_fd < 0 ? p->ctl_fd : 0;
}

static int setup_signals(struct xp_inst *p, struct xvl_errbuf *eb)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	p->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return p->sigfd < 0 ? xvl_err(eb, -errno, "signalfd: %s", strerror(errno)) : 0;
}

static int prepare_comps(struct xp_inst *p, struct xvl_errbuf *eb)
{
	for (unsigned i = 0; i < p->cfg.n_comps; i++) {
		struct xp_comp *k = &p->cfg.comps[i];
		struct xp_comp_rt *r = &p->rt[i];
		int fds[2];
		/* QEMU runs under its own -sandbox; the allow-lists are for xvloop's programs */
		int rc = xp_filter_build(&r->filter, k->role, k->vm ? XP_SECCOMP_OFF : p->cfg.seccomp, k, eb);
		if (rc == 0 && pipe2(fds, O_CLOEXEC) < 0)
			rc = xvl_err(eb, -errno, "pipe: %s", strerror(errno));
		if (rc < 0)
			return rc;
		fcntl(fds[0], F_SETFL, O_NONBLOCK);
		r->log_rd = fds[0];
		r->log_wr = fds[1];
		const struct xp_comp *srv = k->role == XP_DEVICE ? k : &p->cfg.comps[k->server];
		if (xp_fmt(r->link, sizeof(r->link), "%s/%s.sock", p->dir, srv->name) < 0)
			return xvl_err(eb, -ENAMETOOLONG, "state dir path %s is too long", p->dir);
	}
	return 0;
}

int xp_inst_create(struct xp_inst **out, const struct xp_config *c, const struct xp_run_opts *o,
		   struct xvl_errbuf *eb)
{
	struct xp_inst *p = calloc(1, sizeof(*p));
	if (!p)
		return xvl_err(eb, -ENOMEM, "out of memory");
	p->cfg = *c;
	p->o = o ? *o : (struct xp_run_opts){.log_fd = 2, .ready_fd = -1};
	p->log_fd = p->o.log_fd > 0 ? p->o.log_fd : 2;
	p->sigfd = p->ctl_fd = -1;
	p->t0_ns = xvl_os_now_ns();
	for (unsigned i = 0; i < XP_MAX_WINS; i++)
		p->win_fd[i] = -1;
	memset(p->ivsh_sock, 0xff, sizeof(p->ivsh_sock));
	for (unsigned i = 0; i < XP_MAX_COMPS; i++)
		p->rt[i] = (struct xp_comp_rt){.log_rd = -1, .log_wr = -1, .last_status = -1,
						.netns_fd = -1, .netns_sock = -1};
	if (c->state_dir[0])
		snprintf(p->dir, sizeof(p->dir), "%s", c->state_dir);
	else
		xp_default_state_dir(c->name, p->dir, sizeof(p->dir));
	snprintf(p->ctl_path, sizeof(p->ctl_path), "%s/ctl.sock", p->dir);
	ssize_t n = readlink("/proc/self/exe", p->self_exe, sizeof(p->self_exe) - 1);
	p->self_exe[n > 0 ? n : 0] = 0;
	if (p->o.xvl_exe)
		snprintf(p->self_exe, sizeof(p->self_exe), "%s", p->o.xvl_exe);
	p->userns = c->userns && xp_userns_allowed();
	for (unsigned i = 0; i < c->n_comps; i++)
		p->cgroups |= c->comps[i].memory != 0;
	*out = p;
	int rc = claim_dir(p, eb);
	if (rc == 0)
		rc = setup_signals(p, eb);
	if (rc == 0)
		rc = prepare_comps(p, eb);
	if (rc < 0) {
		xp_inst_destroy(p);
		*out = NULL;
		return rc;
	}
	if (c->userns && !p->userns)
		xp_log(p, "user namespaces are not allowed here: compartments run without one");
	xp_pool_fill(p);
	return 0;
}

/* ------------------------------------------------------------ windows */

static int window_create(struct xp_inst *p, unsigned i, struct xvl_errbuf *eb)
{
	const struct xp_window *w = &p->cfg.wins[i];
	char name[64];
	snprintf(name, sizeof(name), "xvl:%s", w->name);
	if (!strcmp(w->backing, "memfd")) {
		int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (fd < 0 || ftruncate(fd, (off_t)w->size) < 0 ||
		    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			return xvl_err(eb, -e, "window %s: memfd of %llu bytes: %s", w->name,
				       (unsigned long long)w->size, strerror(e));
		}
		p->win_fd[i] = fd;
		p->win_size[i] = w->size;
		return 0;
	}
	struct xvl_os_window ow;
	int rc = xvl_os_window_create(&ow, w->backing, w->size, eb);
	if (rc < 0)
		return xp_err_prefix(eb, rc, "window", w->name);
	munmap(ow.mem.base, ow.mem.size); /* the partitioner holds it, never maps it */
	p->win_fd[i] = ow.fd;
	p->win_size[i] = ow.mem.size;
	return 0;
}

/* ------------------------------------------------------------ qemu-storage-daemon */

static int qsd_start(struct xp_inst *p, unsigned d, struct xvl_errbuf *eb)
{
	struct xp_device *dev = &p->cfg.devs[d];
	char blk[XP_PATH_MAX + 64], exp[XP_PATH_MAX + 160];
	xp_fmt(p->qsd_sock[d], sizeof(p->qsd_sock[d]), "%s/%s.qsd.sock", p->dir, dev->name);
	if (*dev->image)
		snprintf(blk, sizeof(blk), "driver=file,node-name=n0,filename=%s", dev->image);
	else
		snprintf(blk, sizeof(blk), "driver=null-co,node-name=n0,size=%llu",
			 (unsigned long long)dev->spec.size);
	snprintf(exp, sizeof(exp),
		 "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path=%s,writable=%s,"
		 "num-queues=%u", p->qsd_sock[d], dev->spec.read_only ? "off" : "on",
		 dev->spec.queues ? dev->spec.queues : 1);
	unlink(p->qsd_sock[d]);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp("qemu-storage-daemon", "qemu-storage-daemon", "--blockdev", blk, "--export",
		       exp, (char *)NULL);
		_exit(127);
	}
	if (pid < 0)
		return xvl_err(eb, -errno, "fork: %s", strerror(errno));
	p->qsd_pid[d] = pid;
	memcpy(dev->spec.path, p->qsd_sock[d], sizeof(dev->spec.path));
	int rc = xp_wait_listening(p, p->qsd_sock[d], pid, 5000, eb);
	if (rc < 0)
		return xp_err_prefix(eb, rc, "qemu-storage-daemon of device", dev->name);
	xp_log(p, "device %s: qemu-storage-daemon pid %d serves %s", dev->name, (int)pid,
	       p->qsd_sock[d]);
	return 0;
}

/* ------------------------------------------------------------ start */

static int start_role(struct xp_inst *p, enum xp_role role, struct xvl_errbuf *eb)
{
	for (unsigned i = 0; i < p->cfg.n_comps; i++) {
		if (p->cfg.comps[i].role != role)
			continue;
		int rc = xp_comp_start(p, i, eb);
		if (rc == 0 && role == XP_DEVICE && !p->cfg.comps[i].vm) /* a VM has no socket */
			rc = xp_wait_listening(p, p->rt[i].link, p->rt[i].pid, 5000, eb);
		if (rc < 0)
			return xp_err_prefix(eb, rc, "compartment", p->cfg.comps[i].name);
	}
	return 0;
}

int xp_inst_start(struct xp_inst *p, struct xvl_errbuf *eb)
{
	int rc = 0;
	for (unsigned i = 0; rc == 0 && i < p->cfg.n_wins; i++)
		if (p->cfg.wins[i].owner >= 0) {
			rc = window_create(p, i, eb);
			if (rc == 0 && p->cfg.wins[i].vectors)
				rc = xp_ivsh_create(p, i, eb);
		}
	for (unsigned d = 0; rc == 0 && d < p->cfg.n_devs; d++)
		if (p->cfg.devs[d].kind == XP_DEV_QSD &&
		    (p->cfg.devs[d].comp < 0 || !p->cfg.comps[p->cfg.devs[d].comp].vm))
			rc = qsd_start(p, d, eb); /* a device VM starts its own, in the guest (vm.c) */
	if (rc == 0)
		rc = start_role(p, XP_DEVICE, eb);
	if (rc == 0)
		rc = start_role(p, XP_DRIVER, eb);
	if (rc < 0)
		return rc;
	p->started = true;
	xp_log(p, "instance %s up: %u compartment(s), state in %s (%u from the pool, %u cold)",
	       p->cfg.name, p->cfg.n_comps, p->dir, p->pool_hits, p->cold_starts);
	if (p->o.ready_fd >= 0 && write(p->o.ready_fd, "ok\n", 3) != 3)
		xp_log(p, "cannot tell the launcher we are up: %s", strerror(errno));
	return 0;
}

/* ------------------------------------------------------------ teardown */

static bool any_alive(struct xp_inst *p, bool drivers_only)
{
	for (unsigned i = 0; i < p->cfg.n_comps; i++)
		if (p->rt[i].pid > 0 && (!drivers_only || p->cfg.comps[i].role == XP_DRIVER))
			return true;
	if (drivers_only)
		return false;
	for (unsigned d = 0; d < p->cfg.n_devs; d++)
		if (p->qsd_pid[d] > 0)
			return true;
	return p->n_pool > 0;
}

static void signal_all(struct xp_inst *p, int sig, bool drivers_only)
{
	for (unsigned i = 0; i < p->cfg.n_comps; i++)
		if (p->rt[i].pid > 0 && (!drivers_only || p->cfg.comps[i].role == XP_DRIVER))
			kill(p->rt[i].pid, sig);
	for (unsigned d = 0; !drivers_only && d < p->cfg.n_devs; d++)
		if (p->qsd_pid[d] > 0)
			kill(p->qsd_pid[d], sig);
	for (unsigned s = 0; !drivers_only && s < p->n_pool; s++)
		xp_shell_discard(&p->pool[s]);
}

static void wait_gone(struct xp_inst *p, int ms, bool drivers_only)
{
	for (int t = 0; t < ms && any_alive(p, drivers_only); t++) {
		xp_reap(p);
		if (any_alive(p, drivers_only))
			nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	}
}

static void kill_everything(struct xp_inst *p)
{
	p->stopping = true;
	signal_all(p, SIGTERM, true);   /* drivers first, while their devices still serve */
	wait_gone(p, 300, true);
	signal_all(p, SIGTERM, false);
	wait_gone(p, 1000, false);
	signal_all(p, SIGKILL, false);
	wait_gone(p, 2000, false);
}

static void remove_files(struct xp_inst *p)
{
	for (unsigned i = 0; i < p->cfg.n_comps; i++) {
		struct xp_comp_rt *r = &p->rt[i];
		if (p->cfg.comps[i].role == XP_DEVICE && r->link[0])
			unlink(r->link);
		xp_cgroup_remove(&r->cg);
		if (r->log_rd >= 0)
			close(r->log_rd);
		if (r->log_wr >= 0)
			close(r->log_wr);
		r->log_rd = r->log_wr = -1;
	}
	for (unsigned d = 0; d < p->cfg.n_devs; d++)
		if (p->qsd_sock[d][0])
			unlink(p->qsd_sock[d]);
	for (unsigned w = 0; w < p->cfg.n_wins; w++) {
		if (p->win_fd[w] >= 0)
			close(p->win_fd[w]);
		xp_ivsh_close(p, w);
		xp_vectors_close(p, w);
	}
	if (p->ctl_fd >= 0) {
		close(p->ctl_fd);
		unlink(p->ctl_path);
	}
	char log[XP_PATH_MAX + 16];
	snprintf(log, sizeof(log), "%s/supervisor.log", p->dir);
	unlink(log);
	if (rmdir(p->dir) < 0 && errno != ENOENT)
		xp_log(p, "state dir %s not removed: %s", p->dir, strerror(errno));
}

void xp_inst_destroy(struct xp_inst *p)
{
	if (!p)
		return;
	kill_everything(p);
	for (unsigned i = 0; i < p->cfg.n_comps; i++)
		if (p->rt[i].pid > 0)
			xp_log(p, "compartment %s (pid %d) did not exit", p->cfg.comps[i].name,
			       (int)p->rt[i].pid);
	remove_files(p);
	if (p->sigfd >= 0)
		close(p->sigfd);
	if (p->started)
		xp_log(p, "instance %s stopped; nothing left behind", p->cfg.name);
	free(p);
}
