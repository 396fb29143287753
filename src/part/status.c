/* SPDX-License-Identifier: MIT */
/*
 * The control socket (STATE/ctl.sock, SOCK_SEQPACKET): "ping", "status"
 * (JSON), "stop".  Used by `xvl status` and `xvl stop`.
 */
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "part_int.h"
#include "proto.h"
#include <stdio.h>

#define CTL_MAX (256 * 1024)

static const char *state_name(enum xp_state s)
{
	static const char *const n[] = {"down", "running", "exited", "failed"};
	return n[s];
}

static json_object *cpus_json(const struct xp_comp *k)
{
	json_object *a = json_object_new_array();
	for (int c = 0; k->have_cpus && c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &k->cpus))
			json_object_array_add(a, json_object_new_int(c));
	return a;
}

static void add_str(json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

static void add_int(json_object *o, const char *k, int64_t v)
{
	json_object_object_add(o, k, json_object_new_int64(v));
}

/* A driver's tap front-ends: interface, net device, address, front-end pid (0: not running). */
static json_object *netifs_json(struct xp_inst *p, unsigned i)
{
	json_object *a = json_object_new_array();
	for (unsigned j = 0; j < p->cfg.comps[i].n_netifs; j++) {
		const struct xp_netif *ni = &p->cfg.comps[i].netifs[j];
		json_object *o = json_object_new_object();
		char addr[24] = "";
		if (ni->addr)
			snprintf(addr, sizeof(addr), "%u.%u.%u.%u/%u", ni->addr >> 24, (ni->addr >> 16) & 255,
				 (ni->addr >> 8) & 255, ni->addr & 255, ni->prefix);
		add_str(o, "ifname", ni->ifname);
		add_str(o, "device", p->cfg.devs[ni->dev].name);
		add_str(o, "address", addr);
		add_int(o, "tap_pid", p->rt[i].tap_pid[j]);
		json_object_array_add(a, o);
	}
	return a;
}

static json_object *comp_json(struct xp_inst *p, unsigned i)
{
	const struct xp_comp *k = &p->cfg.comps[i];
	const struct xp_comp_rt *r = &p->rt[i];
	json_object *o = json_object_new_object();
	add_str(o, "name", k->name);
	add_str(o, "role", k->role == XP_DEVICE ? "device" : "driver");
	add_str(o, "type", k->vm ? "vm" : "process");
	if (k->vm) {
		json_object *v = json_object_new_object();
		add_str(v, "accel", k->vm_accel);
		add_int(v, "vcpus", k->vm_vcpus);
		add_int(v, "memory", (int64_t)k->vm_memory);
		add_str(v, "kernel", k->vm_kernel);
		add_str(v, "initrd", k->vm_initrd);
		add_str(v, "console", k->vm_console[0] ? k->vm_console : "(supervisor log)");
		int w = xp_comp_window(&p->cfg, i);
		add_str(v, "transport", w >= 0 && p->cfg.wins[w].vectors
						? (k->role == XP_DEVICE
							   ? "ivshmem-doorbell peer 0 (xvl server in the guest rings the driver; polls its own side)"
							   : "ivshmem-doorbell peer 1 (MSI-X from the device side)")
					: k->role == XP_DEVICE
						? "ivshmem-plain (its driver's window as BAR2, xvl server in the guest; both sides poll)"
						: "ivshmem-plain (window as BAR2, both sides poll)");
		add_int(v, "vectors", w >= 0 ? p->cfg.wins[w].vectors : 0);
		json_object_object_add(o, "vm", v);
	}
	add_int(o, "pid", r->pid);
	add_str(o, "state", state_name(r->state));
	add_int(o, "restarts", r->restarts);
	add_int(o, "last_restart_us", (int64_t)r->last_restart_us);
	add_int(o, "max_restart_us", (int64_t)r->max_restart_us);
	add_str(o, "last_exit", r->last_status >= 0 ? r->last_reason : "");
	add_int(o, "uptime_ms", r->pid > 0 ? (int64_t)((xvl_os_now_ns() - r->started_ns) / 1000000) : 0);
	add_str(o, "started_from", r->from_pool ? "pool" : "cold");
	json_object_object_add(o, "cpus", cpus_json(k));
	add_int(o, "memory_max", (int64_t)k->memory);
	add_str(o, "memory_enforced_by", xp_memctl_name(r->cg.kind));
	add_str(o, "cgroup", r->cg.path);
	add_int(o, "seccomp_insns", r->filter.len);
	add_str(o, "link", r->link);
	add_str(o, "window", k->window >= 0 ? p->cfg.wins[k->window].name : "");
	if (k->role == XP_DEVICE) {
		json_object *d = json_object_new_array();
		for (unsigned j = 0; j < k->n_devs; j++)
			json_object_array_add(d, json_object_new_string(p->cfg.devs[k->devs[j]].name));
		json_object_object_add(o, "devices", d);
	}
	if (k->n_netifs)
		json_object_object_add(o, "net", netifs_json(p, i));
	return o;
}

static json_object *window_json(struct xp_inst *p, unsigned w)
{
	const struct xp_window *x = &p->cfg.wins[w];
	json_object *o = json_object_new_object();
	add_str(o, "name", x->name);
	add_int(o, "size", (int64_t)(p->win_size[w] ? p->win_size[w] : x->size));
	add_str(o, "backing", x->backing);
	add_str(o, "owner", x->owner >= 0 ? p->cfg.comps[x->owner].name : "");
	add_str(o, "state", p->win_fd[w] >= 0 ? "held" : x->owner >= 0 ? "released" : "unused");
	add_int(o, "doorbell_vectors", p->vec[w].n); /* per side, of its mailbox link; 0: polling */
	return o;
}

/* ------------------------------------------------------------ device counters */

#define STATS_TIMEOUT_MS 100

/* One request/reply on the device side's link; -ETIMEDOUT keeps `xvl status` from hanging. */
static int link_rpc(int sock, struct xvl_msg *req, struct xvl_msg *rep)
{
	uint8_t buf[XVL_MSG_MAX_SIZE];
	int n = xvl_msg_encode(req, buf, sizeof(buf));
	if (n < 0 || xvl_os_send(sock, buf, (size_t)n, NULL, 0) < 0)
		return -EIO;
	struct pollfd pf = {.fd = sock, .events = POLLIN};
	if (poll(&pf, 1, STATS_TIMEOUT_MS) != 1)
		return -ETIMEDOUT;
	int fds[XVL_OS_MAX_FDS];
	unsigned nfds = 0;
	long got = xvl_os_recv(sock, buf, sizeof(buf), fds, XVL_OS_MAX_FDS, &nfds);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	if (got <= 0 || xvl_msg_decode(buf, (size_t)got, rep) < 0)
		return -EPROTO;
	if (!xvl_msg_is_reply(rep) || rep->type != req->type)
		return -EPROTO;
	return rep->status;
}

/* The device's counters as its server reports them (GET_STATS needs no window). */
static int device_stats(const char *link, const char *name, struct xvl_m_stats *st)
{
	struct xvl_msg req = {.type = XVL_MSG_HELLO}, rep;
	int sock = xvl_os_connect(link, NULL);
	if (sock < 0)
		return sock;
	req.u.hello.major = XVL_PROTO_MAJOR;
	snprintf(req.u.hello.name, sizeof(req.u.hello.name), "xvl-status");
	int rc = link_rpc(sock, &req, &rep);
	uint32_t n = rc == 0 ? rep.u.hello.n_devices : 0;
	rc = rc ? rc : -ENODEV;
	for (uint32_t i = 0; i < n && i < XVL_MAX_DEVICES; i++) {
		req = (struct xvl_msg){.type = XVL_MSG_DEV_INFO, .u.dev.dev = i};
		if (link_rpc(sock, &req, &rep) < 0 || strcmp(rep.u.info.name, name))
			continue;
		req = (struct xvl_msg){.type = XVL_MSG_GET_STATS, .u.dev.dev = i};
		rc = link_rpc(sock, &req, &rep);
		if (rc == 0)
			*st = rep.u.stats;
		break;
	}
	close(sock);
	return rc;
}

static json_object *device_io_json(struct xp_inst *p, const struct xp_device *x)
{
	struct xvl_m_stats st;
	if (x->comp < 0 || p->rt[x->comp].state != XS_UP ||
	    device_stats(p->rt[x->comp].link, x->spec.name, &st) < 0)
		return NULL; /* JSON null: the device side did not answer */
	json_object *o = json_object_new_object();
	add_int(o, "requests", (int64_t)st.requests);
	add_int(o, "bytes", (int64_t)st.bytes);
	add_int(o, "errors", (int64_t)st.errors);
	add_int(o, "notifications", (int64_t)st.notifies);
	return o;
}

static json_object *device_json(struct xp_inst *p, unsigned d)
{
	static const char *const kinds[] = {"built-in", "vhost-user", "qsd", "net"};
	static const char *const backends[] = {"file", "null", "ram", "vhost-user", "switch", "tap"};
	const struct xp_device *x = &p->cfg.devs[d];
	json_object *o = json_object_new_object();
	add_str(o, "name", x->name);
	add_str(o, "type", x->kind == XP_DEV_NET ? "net" : "blk");
	add_str(o, "backend", x->kind == XP_DEV_BUILTIN || x->kind == XP_DEV_NET
				      ? backends[x->spec.kind]
				      : kinds[x->kind]);
	if (x->kind == XP_DEV_NET && x->driver >= 0)
		add_str(o, "driver", p->cfg.comps[x->driver].name);
	/* net: the switch's name, the tap's interface, or the vhost-user socket */
	add_str(o, "path", x->kind == XP_DEV_QSD ? x->image
			   : x->kind == XP_DEV_NET && x->spec.kind == XVL_BK_SWITCH ? x->spec.sw
			   : x->kind == XP_DEV_NET && x->spec.kind == XVL_BK_TAP ? x->spec.ifname
									      : x->spec.path);
	add_int(o, "queues", x->spec.queues ? x->spec.queues : 1);
	add_int(o, "queue_size", x->spec.queue_size ? x->spec.queue_size : 1024);
	add_str(o, "compartment", x->comp >= 0 ? p->cfg.comps[x->comp].name : "");
	if (x->kind == XP_DEV_QSD)
		add_int(o, "qsd_pid", p->qsd_pid[d]);
	json_object_object_add(o, "io", device_io_json(p, x));
	return o;
}

static json_object *isolation_json(struct xp_inst *p)
{
	static const char *const sc[] = {"kill", "errno", "log", "off"};
	json_object *o = json_object_new_object(), *ns = json_object_new_array();
	const char *names[] = {"pid", "mnt", "ipc", "uts", "net", "user"};
	for (unsigned i = 0; i < (p->userns ? 6u : 5u); i++)
		json_object_array_add(ns, json_object_new_string(names[i]));
	json_object_object_add(o, "namespaces", ns);
	json_object_object_add(o, "user_namespace", json_object_new_boolean(p->userns));
	add_str(o, "seccomp", sc[p->cfg.seccomp]);
	add_str(o, "cpus_enforced_by", "sched_setaffinity (sched_setaffinity denied by seccomp)");
	add_str(o, "fds", "0 /dev/null, 1-2 log pipe, 3 window (driver side, and a mailbox link's device side), 4.. that link's doorbell vectors; nothing else");
	return o;
}

char *xp_status_json(struct xp_inst *p)
{
	json_object *o = json_object_new_object(), *a;
	add_str(o, "name", p->cfg.name);
	add_str(o, "config", p->cfg.source);
	add_str(o, "state_dir", p->dir);
	add_int(o, "supervisor_pid", getpid());
	add_int(o, "uptime_ms", (int64_t)((xvl_os_now_ns() - p->t0_ns) / 1000000));
	add_str(o, "state", p->stopping ? "stopping" : "running");
	json_object_object_add(o, "isolation", isolation_json(p));
	json_object *pool = json_object_new_object();
	add_int(pool, "ready", p->n_pool);
	add_int(pool, "target", p->cfg.pool);
	add_int(pool, "starts_from_pool", p->pool_hits);
	add_int(pool, "cold_starts", p->cold_starts);
	json_object_object_add(o, "pool", pool);
	a = json_object_new_array();
	for (unsigned i = 0; i < p->cfg.n_comps; i++)
		json_object_array_add(a, comp_json(p, i));
	json_object_object_add(o, "compartments", a);
	a = json_object_new_array();
	for (unsigned i = 0; i < p->cfg.n_wins; i++)
		json_object_array_add(a, window_json(p, i));
	json_object_object_add(o, "windows", a);
	a = json_object_new_array();
	for (unsigned i = 0; i < p->cfg.n_devs; i++)
		json_object_array_add(a, device_json(p, i));
	json_object_object_add(o, "devices", a);
	char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
	json_object_put(o);
	return s;
}

void xp_ctl_serve(struct xp_inst *p)
{
	char cmd[64];
	int fd = accept4(p->ctl_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	long n = poll(&pf, 1, 1000) == 1 ? recv(fd, cmd, sizeof(cmd) - 1, 0) : -1;
	cmd[n > 0 ? n : 0] = 0;
	if (!strcmp(cmd, "status")) {
		char *s = xp_status_json(p);
		if (s && send(fd, s, strlen(s), MSG_NOSIGNAL) < 0)
			xp_log(p, "status reply: %s", strerror(errno));
		free(s);
	} else if (!strcmp(cmd, "stop")) {
		xp_log(p, "stop requested on the control socket");
		p->stopping = true;
		send(fd, "ok", 2, MSG_NOSIGNAL);
	} else if (!strcmp(cmd, "ping")) {
		send(fd, "pong", 4, MSG_NOSIGNAL);
	} else {
		send(fd, "error: unknown command", 22, MSG_NOSIGNAL);
	}
	close(fd);
}

int xp_ctl_request(const char *state_dir, const char *cmd, char *out, size_t cap,
		   struct xvl_errbuf *eb)
{
	char path[XP_PATH_MAX + 16];
	struct xvl_errbuf e2;
	snprintf(path, sizeof(path), "%s/ctl.sock", state_dir);
	int fd = xvl_os_connect(path, &e2);
	if (fd < 0)
		return xvl_err(eb, fd, "no running instance at %s (%s)", state_dir, e2.msg);
	long n = send(fd, cmd, strlen(cmd), MSG_NOSIGNAL);
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	if (n >= 0)
		n = poll(&pf, 1, 5000) == 1 ? recv(fd, out, cap - 1, 0) : -ETIMEDOUT;
	int e = n < 0 ? (n == -ETIMEDOUT ? ETIMEDOUT : errno) : 0;
	close(fd);
	if (n <= 0)
		return xvl_err(eb, n == 0 ? -ECONNRESET : -e, "instance at %s did not answer '%s'",
			       state_dir, cmd);
	out[n] = 0;
	return 0;
}
