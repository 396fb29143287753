/* SPDX-License-Identifier: MIT */
/*
 * Partitioner config: libconfig syntax, checked completely before anything
 * is started.  Every error is one line "FILE:LINE: KEY: what to fix".
 */
#include <errno.h>
#include <arpa/inet.h>
#include <libconfig.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "part_int.h"
#include "srv_net.h" /* srv_net_default_mac: a MAC clash is found before the server starts */

const char xp_default_config[] =
	"# xvl run --default: one device compartment with a RAM disk, one driver\n"
	"# compartment that writes, reads back and verifies a pattern, then exits.\n"
	"name = \"default\";\n"
	"exit_with_drivers = true;\n"
	"pool = 2;\n"
	"windows = ( { name = \"w0\"; size = \"16M\"; backing = \"memfd\"; } );\n"
	"devices = ( { name = \"ram0\"; type = \"blk\"; backend = \"ram\"; size = \"32M\"; queues = 2; } );\n"
	"compartments = (\n"
	"  { name = \"dev\"; role = \"device\"; devices = [\"ram0\"]; memory = \"256M\"; },\n"
	"  { name = \"app\"; role = \"driver\"; window = \"w0\"; connect = \"dev\"; memory = \"256M\";\n"
	"    program = [\"xvl\", \"blk\", \"verify\", \"--connect\", \"{link}\", \"--ops\", \"4000\",\n"
	"               \"--qd\", \"8\", \"--queues\", \"2\", \"--max\", \"256K\"]; }\n"
	");\n";

struct cx {
	const char *src;
	struct xvl_errbuf *eb;
	struct xp_config *c;
	bool offline;
};

static int line_of(const config_setting_t *s)
{
	int l = s ? (int)config_setting_source_line(s) : 0;
	return l > 0 ? l : 1; /* the root has no line of its own */
}

static int bad(struct cx *x, const config_setting_t *s, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int bad(struct cx *x, const config_setting_t *s, const char *key, const char *fmt, ...)
{
	char m[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	xvl_err(x->eb, -EINVAL, "%s:%d: %s: %s", x->src, line_of(s), key, m);
	for (char *c = x->eb ? x->eb->msg : m; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?'; /* names and values are echoed: the message stays one line */
	return -EINVAL;
}

/* Refuse members of group g not in the NULL-terminated list. */
static int only_keys(struct cx *x, const config_setting_t *g, const char *path,
		     const char *const *keys, const char *expect)
{
	int n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(m);
		bool known = false;
		for (unsigned k = 0; keys[k] && name; k++)
			known |= !strcmp(keys[k], name);
		if (!known)
			return bad(x, m, path, "unknown key '%s' (expected %s)", name ? name : "?",
				   expect);
	}
	return 0;
}

static int get_str(struct cx *x, const config_setting_t *g, const char *path, const char *key,
		   bool need, char *out, size_t cap)
{
	const config_setting_t *s = config_setting_get_member(g, key);
	if (!s)
		return need ? bad(x, g, path, "missing '%s'", key) : 0;
	const char *v = config_setting_get_string(s);
	if (!v)
		return bad(x, s, path, "'%s' must be a string", key);
	if (!*v || strlen(v) >= cap)
		return bad(x, s, path, "'%s' must be 1..%zu characters", key, cap - 1);
	snprintf(out, cap, "%s", v);
	return 1;
}

static int get_uint(struct cx *x, const config_setting_t *g, const char *path, const char *key,
		    long long max, unsigned *out)
{
	const config_setting_t *s = config_setting_get_member(g, key);
	if (!s)
		return 0;
	int t = config_setting_type(s);
	long long v = config_setting_get_int64(s);
	if ((t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) || v < 0 || v > max)
		return bad(x, s, path, "'%s' must be an integer in 0..%lld", key, max);
	*out = (unsigned)v;
	return 1;
}

static int get_bool(struct cx *x, const config_setting_t *g, const char *path, const char *key,
		    bool *out)
{
	const config_setting_t *s = config_setting_get_member(g, key);
	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return bad(x, s, path, "'%s' must be true or false", key);
	*out = config_setting_get_bool(s);
	return 1;
}

/* A size: an integer, or a string with a K/M/G/T suffix. */
static int get_size(struct cx *x, const config_setting_t *g, const char *path, const char *key,
		    bool need, uint64_t *out)
{
	const config_setting_t *s = config_setting_get_member(g, key);
	if (!s)
		return need ? bad(x, g, path, "missing '%s'", key) : 0;
	int t = config_setting_type(s);
	if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
		long long v = config_setting_get_int64(s);
		if (v <= 0)
			return bad(x, s, path, "'%s' must be positive", key);
		*out = (uint64_t)v;
		return 1;
	}
	const char *v = config_setting_get_string(s);
	if (!v || xvl_parse_size(v, out) < 0 || !*out)
		return bad(x, s, path, "'%s' must be a size like 64M (K/M/G/T suffixes)", key);
	return 1;
}

/* A list or array of strings, each into out[i] of cap bytes. */
static int get_strings(struct cx *x, const config_setting_t *g, const char *path, const char *key,
		       char *out, size_t cap, unsigned max, unsigned *n)
{
	const config_setting_t *s = config_setting_get_member(g, key);
	*n = 0;
	if (!s)
		return 0;
	if (!config_setting_is_aggregate(s) || config_setting_is_group(s))
		return bad(x, s, path, "'%s' must be a list of strings like [\"a\", \"b\"]", key);
	int len = config_setting_length(s);
	if (len > (int)max)
		return bad(x, s, path, "'%s' has %d entries, at most %u allowed", key, len, max);
	for (int i = 0; i < len; i++) {
		const char *v = config_setting_get_string_elem(s, i);
		if (!v || strlen(v) >= cap)
			return bad(x, s, path, "'%s'[%d] must be a string of at most %zu characters",
				   key, i, cap - 1);
		snprintf(out + (size_t)i * cap, cap, "%s", v);
	}
	*n = (unsigned)len;
	return 1;
}

/* ------------------------------------------------------------ windows */

static int parse_window(struct cx *x, const config_setting_t *g, struct xp_window *w, const char *p)
{
	static const char *const keys[] = {"name", "size", "backing", "vectors", NULL};
	int rc = only_keys(x, g, p, keys, "name, size, backing, vectors");
	if (rc == 0)
		rc = get_str(x, g, p, "name", true, w->name, sizeof(w->name));
	if (rc >= 0)
		rc = get_size(x, g, p, "size", true, &w->size);
	if (rc >= 0)
		rc = get_uint(x, g, p, "vectors", XVL_MBOX_MAX_VECTORS, &w->vectors);
	if (rc < 0)
		return rc;
	snprintf(w->backing, sizeof(w->backing), "memfd");
	rc = get_str(x, g, p, "backing", false, w->backing, sizeof(w->backing));
	if (rc < 0)
		return rc;
	/* A file on a hugetlbfs mount cannot be sealed against shrinking, so device
	 * sides refuse it; memfd-huge is hugetlbfs memory that can be sealed. */
	if (!strncmp(w->backing, "hugetlbfs:", 10))
		return bad(x, config_setting_get_member(g, "backing"), p,
			   "backing '%s': a hugetlbfs file cannot be sealed, so the device side "
			   "would refuse it; use memfd-huge (huge pages, sealable)", w->backing);
	if (strcmp(w->backing, "memfd") && strcmp(w->backing, "memfd-huge"))
		return bad(x, config_setting_get_member(g, "backing"), p,
			   "backing '%s' (expected memfd or memfd-huge)", w->backing);
	if (w->size < XVL_WIN_MIN_SIZE)
		return bad(x, config_setting_get_member(g, "size"), p,
			   "%llu bytes is below the minimum window of %u",
			   (unsigned long long)w->size, XVL_WIN_MIN_SIZE);
	w->line = line_of(g);
	w->owner = -1;
	return 0;
}

/* ------------------------------------------------------------ devices */

static int device_kind(struct cx *x, const config_setting_t *g, const char *p, const char *b,
		       struct xp_device *d)
{
	if (!strcmp(b, "file") || !strcmp(b, "null") || !strcmp(b, "ram"))
		d->kind = XP_DEV_BUILTIN;
	else if (!strcmp(b, "vhost-user"))
		d->kind = XP_DEV_VHOST;
	else if (!strcmp(b, "qsd"))
		d->kind = XP_DEV_QSD;
	else
		return bad(x, config_setting_get_member(g, "backend"), p,
			   "backend '%s' (expected file, null, ram, vhost-user or qsd)", b);
	return 0;
}

/* A vhost-user socket must accept a connection now. */
static int socket_answers(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

/* A disk image must be readable, a regular file or block device, and hold a sector. */
static int disk_file_usable(struct cx *x, const config_setting_t *s, const char *p, const char *f)
{
	struct stat st;
	if (access(f, R_OK) < 0 || stat(f, &st) < 0)
		return bad(x, s, p, "cannot read '%s': %s", f, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return bad(x, s, p, "'%s' is a directory, not a disk image", f);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return bad(x, s, p, "'%s' is not a regular file or block device", f);
	if (S_ISREG(st.st_mode) && st.st_size < 512)
		return bad(x, s, p, "'%s' is %lld bytes, smaller than one 512-byte sector", f,
			   (long long)st.st_size);
	return 0;
}

static int device_spec(struct cx *x, const config_setting_t *g, const char *p, const char *backend,
		       const char *path, struct xp_device *d)
{
	char text[600], extra[120] = "";
	unsigned q = 0, qs = 0;
	bool ro = false, direct = false;
	uint64_t size = 0;
	if (get_uint(x, g, p, "queues", 16, &q) < 0 || get_uint(x, g, p, "queue_size", 1024, &qs) < 0 ||
	    get_bool(x, g, p, "read_only", &ro) < 0 || get_bool(x, g, p, "direct", &direct) < 0 ||
	    get_size(x, g, p, "size", false, &size) < 0)
		return -EINVAL;
	int n = 0;
	if (q)
		n += snprintf(extra + n, sizeof(extra) - (size_t)n, ",queues=%u", q);
	if (qs)
		n += snprintf(extra + n, sizeof(extra) - (size_t)n, ",queue-size=%u", qs);
	if (size && d->kind != XP_DEV_VHOST && d->kind != XP_DEV_QSD)
		n += snprintf(extra + n, sizeof(extra) - (size_t)n, ",size=%llu",
			      (unsigned long long)size);
	snprintf(extra + n, sizeof(extra) - (size_t)n, "%s%s", ro ? ",ro=on" : "",
		 direct ? ",direct=on" : "");
	snprintf(text, sizeof(text), "name=%s,backend=%s%s%s%s", d->name,
		 d->kind == XP_DEV_BUILTIN ? backend : "vhost-user", *path ? ",path=" : "", path,
		 extra);
	struct xvl_errbuf e2;
	if (xvl_dev_spec_parse(&d->spec, text, &e2) < 0)
		return bad(x, g, p, "%s", e2.msg);
	d->spec.size = size; /* qsd null-co */
	if (d->kind == XP_DEV_QSD && !*d->image && !size)
		return bad(x, g, p, "backend qsd needs 'image' or 'size'");
	return 0;
}

static int device_paths(struct cx *x, const config_setting_t *g, const char *p, struct xp_device *d,
			const char *backend, char *path, size_t cap)
{
	const char *key = d->kind == XP_DEV_VHOST ? "socket" : d->kind == XP_DEV_QSD ? "image" : "path";
	bool need = d->kind == XP_DEV_VHOST || !strcmp(backend, "file");
	int rc = get_str(x, g, p, key, need, path, cap);
	if (rc < 0)
		return rc;
	for (const char *k = "path\0socket\0image\0"; *k; k += strlen(k) + 1)
		if (strcmp(k, key) && config_setting_get_member(g, k))
			return bad(x, config_setting_get_member(g, k), p,
				   "'%s' does not apply to backend %s (use '%s')", k, backend, key);
	const config_setting_t *ps = config_setting_get_member(g, key);
	if (d->kind == XP_DEV_QSD) {
		snprintf(d->image, sizeof(d->image), "%s", path);
		*path = 0;
		snprintf(path, cap, "/qsd.sock"); /* placed in the state dir at start */
	}
	if (x->offline)
		return 0;
	if (d->kind == XP_DEV_VHOST && (rc = socket_answers(path)) < 0)
		return bad(x, ps, p, "vhost-user backend socket '%s' does not answer: %s", path,
			   strerror(-rc));
	if ((d->kind == XP_DEV_QSD && *d->image) || !strcmp(backend, "file"))
		return disk_file_usable(x, ps, p, d->kind == XP_DEV_QSD ? d->image : path);
	return 0;
}

static int parse_net_device(struct cx *x, const config_setting_t *g, struct xp_device *d,
			    const char *p);

static int parse_device(struct cx *x, const config_setting_t *g, struct xp_device *d, const char *p)
{
	static const char *const keys[] = {"name", "type", "backend", "path", "socket", "image",
					   "size", "queues", "queue_size", "read_only", "direct",
					   NULL};
	char type[16] = "blk", backend[16], path[XP_PATH_MAX] = "";
	d->driver = -1;
	d->comp = -1;
	d->line = line_of(g);
	int rc = get_str(x, g, p, "type", false, type, sizeof(type));
	if (rc >= 0 && !strcmp(type, "net"))
		return parse_net_device(x, g, d, p);
	if (rc >= 0 && strcmp(type, "blk"))
		rc = bad(x, config_setting_get_member(g, "type"), p, "type '%s' (expected blk or net)", type);
	if (rc >= 0)
		rc = only_keys(x, g, p, keys,
			       "name, type, backend, path, socket, image, size, queues, queue_size, "
			       "read_only, direct");
	if (rc >= 0)
		rc = get_str(x, g, p, "name", true, d->name, sizeof(d->name));
	if (rc >= 0)
		rc = get_str(x, g, p, "backend", true, backend, sizeof(backend));
	if (rc >= 0)
		rc = device_kind(x, g, p, backend, d);
	if (rc >= 0)
		rc = device_paths(x, g, p, d, backend, path, sizeof(path));
	if (rc >= 0)
		rc = device_spec(x, g, p, backend, path, d);
	return rc < 0 ? rc : 0;
}

/* ------------------------------------------------------------ compartments */

static int parse_cpus(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k)
{
	const config_setting_t *s = config_setting_get_member(g, "cpus");
	if (!s)
		return 0;
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return bad(x, s, p, "'cpus' must be a list of CPU numbers like [0, 1]");
	cpu_set_t online;
	CPU_ZERO(&online);
	if (x->offline || sched_getaffinity(0, sizeof(online), &online) < 0)
		for (int i = 0; i < CPU_SETSIZE; i++)
			CPU_SET(i, &online);
	CPU_ZERO(&k->cpus);
	int n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		int t = config_setting_type(e);
		long long v = config_setting_get_int64(e);
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
			return bad(x, s, p, "'cpus'[%d] must be an integer", i);
		if (v < 0 || v >= CPU_SETSIZE || !CPU_ISSET((int)v, &online))
			return bad(x, s, p, "CPU %lld does not exist or is not available here (%ld online)",
				   v, sysconf(_SC_NPROCESSORS_ONLN));
		CPU_SET((int)v, &k->cpus);
	}
	if (n == 0)
		return bad(x, s, p, "'cpus' is empty");
	k->have_cpus = true;
	return 0;
}

static int parse_syscalls(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k)
{
	int rc = get_strings(x, g, p, "syscalls", &k->syscalls[0][0], XP_NAME_MAX, XP_MAX_SYSCALLS,
			     &k->n_syscalls);
	for (unsigned i = 0; rc >= 0 && i < k->n_syscalls; i++)
		if (seccomp_syscall_resolve_name(k->syscalls[i]) == __NR_SCMP_ERROR)
			return bad(x, config_setting_get_member(g, "syscalls"), p,
				   "'%s' is not a system call name", k->syscalls[i]);
	return rc < 0 ? rc : 0;
}

static int find_name(const char *name, const char *base, size_t stride, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (!strcmp(base + i * stride, name))
			return (int)i;
	return -1;
}

static int comp_devices(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k,
			int idx)
{
	char names[XP_MAX_DEVS][XP_NAME_MAX];
	int rc = get_strings(x, g, p, "devices", &names[0][0], XP_NAME_MAX, XP_MAX_DEVS, &k->n_devs);
	if (rc < 0)
		return rc;
	const config_setting_t *s = config_setting_get_member(g, "devices");
	if (k->role == XP_DRIVER)
		return s ? bad(x, s, p, "'devices' belongs to a device compartment") : 0;
	if (!k->n_devs)
		return bad(x, s ? s : g, p, "a device compartment needs 'devices' (names from devices)");
	for (unsigned i = 0; i < k->n_devs; i++) {
		int d = find_name(names[i], x->c->devs[0].name, sizeof(x->c->devs[0]), x->c->n_devs);
		if (d < 0)
			return bad(x, s, p, "no device called '%s'", names[i]);
		if (x->c->devs[d].comp >= 0)
			return bad(x, s, p, "device '%s' is already served by compartment '%s'",
				   names[i], x->c->comps[x->c->devs[d].comp].name);
		x->c->devs[d].comp = idx;
		k->devs[i] = d;
	}
	return 0;
}

static int comp_role(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k)
{
	char role[16];
	int rc = get_str(x, g, p, "role", !k->vm, role, sizeof(role));
	if (rc < 0)
		return rc;
	if (rc == 0 && k->vm)
		snprintf(role, sizeof(role), "driver"); /* a VM without a role is a driver side */
	if (!strcmp(role, "driver"))
		k->role = XP_DRIVER;
	else if (!strcmp(role, "device"))
		k->role = XP_DEVICE;
	else
		return bad(x, config_setting_get_member(g, "role"), p,
			   "role '%s' (expected driver or device)", role);
	return 0;
}

static bool is_executable(const char *f)
{
	struct stat st;
	return stat(f, &st) == 0 && S_ISREG(st.st_mode) && access(f, X_OK) == 0;
}

/* The search the supervisor does when it starts the program ("xvl" is itself). */
static bool program_found(const char *a0)
{
	if (strchr(a0, '/'))
		return is_executable(a0);
	const char *path = getenv("PATH");
	char dirs[1024], f[XP_PATH_MAX + XP_ARG_MAX];
	snprintf(dirs, sizeof(dirs), "%s", path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *save, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(f, sizeof(f), "%s/%s", d, a0);
		if (is_executable(f))
			return true;
	}
	return false;
}

static int comp_program(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k)
{
	int rc = get_strings(x, g, p, "program", &k->argv[0][0], XP_ARG_MAX, XP_MAX_ARGS, &k->argc);
	if (rc < 0)
		return rc;
	if (k->vm && k->argc)
		return bad(x, config_setting_get_member(g, "program"), p,
			   "a type = \"vm\" compartment runs QEMU: give kernel, initrd, memory, vcpus instead of 'program'");
	if (k->vm)
		return 0;
	if (k->role == XP_DRIVER && !k->argc)
		return bad(x, config_setting_get_member(g, "program") ? config_setting_get_member(g, "program") : g,
			   p, "a driver compartment needs 'program' (e.g. [\"xvl\", \"blk\", \"verify\", \"--connect\", \"{link}\"])");
	if (k->argc && !x->offline && strcmp(k->argv[0], "xvl") && !program_found(k->argv[0]))
		return bad(x, config_setting_get_member(g, "program"), p,
			   "program '%s' is not an executable file%s", k->argv[0],
			   strchr(k->argv[0], '/') ? "" : " on PATH");
	return 0;
}

static int comp_window(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k,
		       int idx)
{
	char name[XP_NAME_MAX];
	k->window = -1;
	/* a driver whose program only uses its tap interfaces needs no window of its own */
	int rc = get_str(x, g, p, "window", k->role == XP_DRIVER && !k->n_netifs, name, sizeof(name));
	if (rc <= 0)
		return rc;
	const config_setting_t *s = config_setting_get_member(g, "window");
	if (k->role == XP_DEVICE)
		return bad(x, s, p, "'window' belongs to a driver compartment (it creates the link's window)");
	int w = find_name(name, x->c->wins[0].name, sizeof(x->c->wins[0]), x->c->n_wins);
	if (w < 0)
		return bad(x, s, p, "no window called '%s'", name);
	if (x->c->wins[w].owner >= 0)
		return bad(x, s, p, "window '%s' is already claimed by compartment '%s'", name,
			   x->c->comps[x->c->wins[w].owner].name);
	x->c->wins[w].owner = idx;
	k->window = w;
	return 0;
}

/* doorbell = "eventfd" (default) | "none": how the two sides of a mailbox link notify each other. */
static int comp_doorbell(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k)
{
	char db[16] = "eventfd";
	const config_setting_t *s = config_setting_get_member(g, "doorbell");
	int rc = get_str(x, g, p, "doorbell", false, db, sizeof(db));
	if (rc < 0)
		return rc;
	if (strcmp(db, "eventfd") && strcmp(db, "none"))
		return bad(x, s, p, "doorbell '%s' (expected eventfd or none)", db);
	if (s && !k->link_window)
		return bad(x, s, p, "'doorbell' belongs to a driver compartment with link = \"window\"");
	if (s && k->vm && strcmp(db, "none"))
		return bad(x, s, p, "a VM's window is ivshmem-plain: its doorbell is \"none\"");
	k->doorbell_none = k->vm || !strcmp(db, "none");
	return 0;
}

/* link = "socket" (default) | "window": the driver's link runs in the mailbox of its window. */
static int comp_link(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k)
{
	char link[16] = "socket";
	int rc = get_str(x, g, p, "link", false, link, sizeof(link));
	if (rc < 0)
		return rc;
	const config_setting_t *s = config_setting_get_member(g, "link");
	if (strcmp(link, "socket") && strcmp(link, "window"))
		return bad(x, s, p, "'%s' (expected socket or window)", link);
	if (k->vm && k->role == XP_DEVICE && s)
		return bad(x, s, p, "a device VM serves the mailbox in its driver's window: 'link' belongs to the driver");
	if (k->vm && s && strcmp(link, "window"))
		return bad(x, s, p, "a VM's link is the mailbox in its window (link = \"window\")");
	k->link_window = (k->vm && k->role == XP_DRIVER) || !strcmp(link, "window");
	if (k->link_window && k->role != XP_DRIVER)
		return bad(x, s, p, "'link' belongs to a driver compartment (its window carries the link)");
	return comp_doorbell(x, g, p, k);
}

/* type = "process" (default) | "vm". */
static int comp_type(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k)
{
	static const char *const vm_only[] = {"kernel", "initrd", "append", "vcpus", "accel", "console", "arch"};
	char type[16] = "process";
	int rc = get_str(x, g, p, "type", false, type, sizeof(type));
	if (rc < 0)
		return rc;
	if (strcmp(type, "process") && strcmp(type, "vm"))
		return bad(x, config_setting_get_member(g, "type"), p, "'%s' (expected process or vm)", type);
	k->vm = !strcmp(type, "vm");
	for (unsigned i = 0; !k->vm && i < sizeof(vm_only) / sizeof(vm_only[0]); i++)
		if (config_setting_get_member(g, vm_only[i]))
			return bad(x, config_setting_get_member(g, vm_only[i]), p,
				   "'%s' belongs to a type = \"vm\" compartment", vm_only[i]);
	return 0;
}

static int need_file(struct cx *x, const config_setting_t *g, const char *p, const char *key,
		     const char *f)
{
	if (x->offline || !*f || access(f, R_OK) == 0)
		return 0;
	return bad(x, config_setting_get_member(g, key), p, "cannot read '%s': %s", f, strerror(errno));
}

/* A window a VM maps is an ivshmem BAR: a power of two. */
static int vm_window_pow2(struct cx *x, const config_setting_t *g, const char *p, int w)
{
	uint64_t ws = x->c->wins[w].size;
	if (!(ws & (ws - 1)))
		return 0;
	return bad(x, config_setting_get_member(g, "window"), p,
		   "window '%s' is %llu bytes: a VM's window is an ivshmem BAR, its size a power of two",
		   x->c->wins[w].name, (unsigned long long)ws);
}

/* The host's own architecture, the only one KVM can run. */
static const char *host_arch(void)
{
#if defined(__x86_64__)
	return "x86_64";
#elif defined(__aarch64__)
	return "aarch64";
#else
	return "";
#endif
}

/*
 * arch = "x86_64" (default: qemu-system-x86_64 -machine q35) | "aarch64"
 * (qemu-system-aarch64 -machine virt -cpu cortex-a57, vm.c).  A guest of
 * another architecture than the host's runs on TCG.
 */
static int comp_arch(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k,
		     char *accel, size_t accel_cap)
{
	char arch[16] = "x86_64";
	int rc = get_str(x, g, p, "arch", false, arch, sizeof(arch));
	if (rc < 0)
		return rc;
	if (strcmp(arch, "x86_64") && strcmp(arch, "aarch64"))
		return bad(x, config_setting_get_member(g, "arch"), p, "'%s' (expected x86_64 or aarch64)", arch);
	k->vm_aarch64 = !strcmp(arch, "aarch64");
	if (!strcmp(arch, host_arch()))
		return 0;
	if (!strcmp(accel, "kvm"))
		return bad(x, config_setting_get_member(g, "accel"), p,
			   "accel = \"kvm\" runs only the host's architecture (%s), not arch = \"%s\" "
			   "(use accel = \"tcg\" or \"auto\")", host_arch()[0] ? host_arch() : "unknown", arch);
	snprintf(accel, accel_cap, "tcg");
	return 0;
}

/* A VM: its guest (kernel, initrd, append, console), memory, vCPUs, accelerator; then its QEMU argv. */
static int comp_vm(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k)
{
	char accel[8] = "auto";
	k->vm_vcpus = 1;
	k->vm_memory = k->memory ? k->memory : 512ull << 20;
	k->memory = 0; /* guest RAM, not a limit: QEMU (TCG) needs more than that of its own */
	int rc = get_str(x, g, p, "kernel", true, k->vm_kernel, sizeof(k->vm_kernel));
	if (rc >= 0)
		rc = get_str(x, g, p, "initrd", false, k->vm_initrd, sizeof(k->vm_initrd));
	if (rc >= 0)
		rc = get_str(x, g, p, "append", false, k->vm_append, sizeof(k->vm_append));
	if (rc >= 0)
		rc = get_str(x, g, p, "console", false, k->vm_console, sizeof(k->vm_console));
	if (rc >= 0)
		rc = get_uint(x, g, p, "vcpus", 64, &k->vm_vcpus);
	if (rc >= 0)
		rc = get_str(x, g, p, "accel", false, accel, sizeof(accel));
	if (rc < 0)
		return rc;
	if (!k->vm_vcpus)
		return bad(x, config_setting_get_member(g, "vcpus"), p, "'vcpus' must be 1..64");
	if (k->vm_memory < (64ull << 20))
		return bad(x, config_setting_get_member(g, "memory"), p, "a VM needs at least 64M of memory");
	if (strcmp(accel, "auto") && strcmp(accel, "kvm") && strcmp(accel, "tcg"))
		return bad(x, config_setting_get_member(g, "accel"), p, "'%s' (expected auto, kvm or tcg)", accel);
	if ((rc = comp_arch(x, g, p, k, accel, sizeof(accel))) < 0)
		return rc;
	if (!strcmp(accel, "auto"))
		snprintf(accel, sizeof(accel), "%s", !x->offline && xp_vm_kvm_usable() ? "kvm" : "tcg");
	else if (!strcmp(accel, "kvm") && !x->offline && !xp_vm_kvm_usable())
		return bad(x, config_setting_get_member(g, "accel"), p,
			   "/dev/kvm cannot create a VM here (use accel = \"tcg\" or \"auto\")");
	snprintf(k->vm_accel, sizeof(k->vm_accel), "%s", accel);
	if (k->window >= 0 && (rc = vm_window_pow2(x, g, p, k->window)) < 0)
		return rc;
	for (unsigned i = 0; i < k->n_devs; i++) {
		const struct xp_device *d = &x->c->devs[k->devs[i]];
		/* qsd: qemu-storage-daemon runs inside the guest (vm.c); a host vhost-user
		 * socket cannot be reached from there */
		if (d->kind != XP_DEV_BUILTIN && d->kind != XP_DEV_QSD)
			return bad(x, config_setting_get_member(g, "devices"), p,
				   "device '%s': a device VM serves file, ram, null and qsd devices (not vhost-user)",
				   d->name);
		if (d->kind == XP_DEV_QSD && d->name[strspn(d->name, "abcdefghijklmnopqrstuvwxyz"
								 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")])
			return bad(x, config_setting_get_member(g, "devices"), p,
				   "device '%s': a device VM's qsd device needs a name of letters, digits, '_', '.', '-' "
				   "(it names the daemon's socket on the guest's command line)", d->name);
	}
	rc = need_file(x, g, p, "kernel", k->vm_kernel);
	if (rc == 0)
		rc = need_file(x, g, p, "initrd", k->vm_initrd);
	int arc = rc == 0 ? xp_vm_build_argv(x->c, k) : 0;
	if (arc == -EINVAL)
		rc = bad(x, config_setting_get_member(g, "devices"), p,
			 "a device VM's disk image path must not contain ',' (QEMU's option syntax)");
	else if (arc < 0)
		rc = bad(x, g, p, "the QEMU command line (or the kernel's, with one xvl.dev= per device) "
			 "exceeds %u arguments of %u bytes", XP_MAX_ARGS, XP_ARG_MAX);
	if (rc == 0 && !x->offline && !program_found(k->argv[0]))
		rc = bad(x, g, p, "%s is not on PATH (Debian package %s)", k->argv[0],
			 k->vm_aarch64 ? "qemu-system-arm" : "qemu-system-x86");
	return rc;
}

static int comp_net(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k, int idx);

static int parse_comp(struct cx *x, const config_setting_t *g, int idx, const char *p)
{
	static const char *const keys[] = {"name", "role", "program", "cpus", "memory", "window",
					   "connect", "devices", "syscalls", "link", "type", "kernel",
					   "initrd", "append", "vcpus", "accel", "console", "net", "doorbell", "arch", NULL};
	struct xp_comp *k = &x->c->comps[idx];
	k->mbox_driver = -1;
	int rc = only_keys(x, g, p, keys,
			   "name, role, program, cpus, memory, window, connect, devices, syscalls, link, "
			   "type, kernel, initrd, append, vcpus, accel, console, net, doorbell, arch");
	if (rc == 0)
		rc = get_str(x, g, p, "name", true, k->name, sizeof(k->name));
	if (rc >= 0)
		rc = comp_type(x, g, p, k);
	if (rc >= 0 && find_name(k->name, x->c->comps[0].name, sizeof(*k), (unsigned)idx) >= 0)
		rc = bad(x, config_setting_get_member(g, "name"), p, "a compartment called '%s' exists already", k->name);
	if (rc >= 0)
		rc = comp_role(x, g, p, k);
	if (rc >= 0)
		rc = comp_program(x, g, p, k);
	if (rc >= 0)
		rc = parse_cpus(x, g, p, k);
	if (rc >= 0)
		rc = get_size(x, g, p, "memory", false, &k->memory);
	if (rc >= 0)
		rc = comp_net(x, g, p, k, idx);
	if (rc >= 0)
		rc = comp_window(x, g, p, k, idx);
	if (rc >= 0)
		rc = comp_devices(x, g, p, k, idx);
	if (rc >= 0)
		rc = parse_syscalls(x, g, p, k);
	if (rc >= 0)
		rc = comp_link(x, g, p, k);
	if (rc >= 0 && k->vm)
		rc = comp_vm(x, g, p, k);
	k->line = line_of(g);
	k->server = -1;
	return rc < 0 ? rc : 0;
}

/* Drivers name the device compartment they connect to (default: the only one). */
static int comp_connect(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k)
{
	char name[XP_NAME_MAX];
	const config_setting_t *s = config_setting_get_member(g, "connect");
	int rc = get_str(x, g, p, "connect", false, name, sizeof(name));
	if (rc < 0)
		return rc;
	if (k->role == XP_DEVICE)
		return s ? bad(x, s, p, "'connect' belongs to a driver compartment") : 0;
	int only = -1, n = 0;
	for (unsigned i = 0; i < x->c->n_comps; i++)
		if (x->c->comps[i].role == XP_DEVICE)
			only = (int)i, n++;
	if (!s && n != 1 && k->window < 0 && k->n_netifs && x->c->devs[k->netifs[0].dev].comp >= 0)
		only = x->c->devs[k->netifs[0].dev].comp, n = 1; /* net only: its first device's server */
	if (!s) {
		if (n != 1)
			return bad(x, g, p, "missing 'connect' (which device compartment? %d exist)", n);
		k->server = only;
		return 0;
	}
	int d = find_name(name, x->c->comps[0].name, sizeof(x->c->comps[0]), x->c->n_comps);
	if (d < 0 || x->c->comps[d].role != XP_DEVICE)
		return bad(x, s, p, "no device compartment called '%s'", name);
	k->server = d;
	return 0;
}

/* ------------------------------------------------------------ net devices and interfaces */

static bool one_of(const char *v, const char *const *list)
{
	for (unsigned i = 0; list[i]; i++)
		if (!strcmp(v, list[i]))
			return true;
	return false;
}

/* A key that only some net backends take. */
static int net_key_applies(struct cx *x, const config_setting_t *g, const char *p, const char *key,
			   const char *backend, const char *needs)
{
	const config_setting_t *s = config_setting_get_member(g, key);
	if (s && strcmp(backend, needs))
		return bad(x, s, p, "'%s' applies to backend %s only", key, needs);
	if (!s && !strcmp(backend, needs) && (!strcmp(key, "ifname") || !strcmp(key, "socket")))
		return bad(x, g, p, "backend %s needs '%s'", backend, key);
	return 0;
}

/* Build the server's spec text from the keys and let the server's own parser judge it. */
static int net_spec(struct cx *x, const config_setting_t *g, const char *p, const char *backend,
		    struct xp_device *d)
{
	char sw[16] = "", mac[24] = "", ifname[16] = "", sock[XP_PATH_MAX] = "", text[600];
	unsigned mtu = 0, q = 0, qs = 0;
	bool spoof = false;
	if (get_str(x, g, p, "switch", false, sw, sizeof(sw)) < 0 ||
	    get_str(x, g, p, "mac", false, mac, sizeof(mac)) < 0 ||
	    get_str(x, g, p, "ifname", false, ifname, sizeof(ifname)) < 0 ||
	    get_str(x, g, p, "socket", false, sock, sizeof(sock)) < 0 ||
	    get_uint(x, g, p, "mtu", 65535, &mtu) < 0 ||
	    get_uint(x, g, p, "queues", (XVL_MAX_QUEUES - 1) / 2, &q) < 0 || /* pairs + control queue */
	    get_uint(x, g, p, "queue_size", 1024, &qs) < 0 || get_bool(x, g, p, "spoof", &spoof) < 0)
		return -EINVAL;
	if (mtu && (mtu < 68 || mtu > 9000))
		return bad(x, config_setting_get_member(g, "mtu"), p, "'mtu' must be 68..9000");
	int n = snprintf(text, sizeof(text), "name=%s,type=net,backend=%s", d->name, backend);
	const char *keys[] = {"switch", "mac", "ifname", "path"};
	const char *vals[] = {sw, mac, ifname, sock};
	for (unsigned i = 0; i < 4; i++)
		if (*vals[i])
			n += snprintf(text + n, sizeof(text) - (size_t)n, ",%s=%s", keys[i], vals[i]);
	if (mtu)
		n += snprintf(text + n, sizeof(text) - (size_t)n, ",mtu=%u", mtu);
	if (q)
		n += snprintf(text + n, sizeof(text) - (size_t)n, ",queues=%u", q);
	if (qs)
		n += snprintf(text + n, sizeof(text) - (size_t)n, ",queue-size=%u", qs);
	snprintf(text + n, sizeof(text) - (size_t)n, "%s", spoof ? ",spoof=on" : "");
	struct xvl_errbuf e2;
	if (xvl_dev_spec_parse(&d->spec, text, &e2) < 0)
		return bad(x, g, p, "%s", e2.msg);
	int rc;
	if (!x->offline && *sock && (rc = socket_answers(sock)) < 0)
		return bad(x, config_setting_get_member(g, "socket"), p,
			   "vhost-user-net backend socket '%s' does not answer: %s", sock, strerror(-rc));
	return 0;
}

static int parse_net_device(struct cx *x, const config_setting_t *g, struct xp_device *d,
			    const char *p)
{
	static const char *const keys[] = {"name", "type", "backend", "switch", "mac", "mtu",
					   "queues", "queue_size", "spoof", "ifname", "socket", NULL};
	static const char *const backends[] = {"switch", "tap", "vhost-user", NULL};
	char backend[16];
	d->kind = XP_DEV_NET;
	int rc = only_keys(x, g, p, keys,
			   "name, type, backend, switch, mac, mtu, queues, queue_size, spoof, ifname, "
			   "socket (type = \"net\")");
	if (rc == 0)
		rc = get_str(x, g, p, "name", true, d->name, sizeof(d->name));
	if (rc >= 0)
		rc = get_str(x, g, p, "backend", true, backend, sizeof(backend));
	if (rc >= 0 && !one_of(backend, backends))
		rc = bad(x, config_setting_get_member(g, "backend"), p,
			 "backend '%s' for a net device (expected switch, tap or vhost-user)", backend);
	if (rc >= 0)
		rc = net_key_applies(x, g, p, "switch", backend, "switch");
	if (rc >= 0)
		rc = net_key_applies(x, g, p, "spoof", backend, "switch");
	if (rc >= 0)
		rc = net_key_applies(x, g, p, "ifname", backend, "tap");
	if (rc >= 0)
		rc = net_key_applies(x, g, p, "socket", backend, "vhost-user");
	if (rc >= 0)
		rc = net_spec(x, g, p, backend, d);
	return rc < 0 ? rc : 0;
}

/* "10.0.0.1/24" (no prefix: /24); a host address, not a network's or broadcast. */
static int parse_cidr(const char *v, uint32_t *addr, unsigned *prefix)
{
	char ip[20];
	const char *slash = strchr(v, '/');
	size_t n = slash ? (size_t)(slash - v) : strlen(v);
	struct in_addr a;
	char *end;
	if (n >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, v, n);
	ip[n] = 0;
	*prefix = 24;
	if (slash) {
		unsigned long pl = strtoul(slash + 1, &end, 10);
		if (!slash[1] || *end || pl < 1 || pl > 32)
			return -EINVAL;
		*prefix = (unsigned)pl;
	}
	if (inet_pton(AF_INET, ip, &a) != 1)
		return -EINVAL;
	*addr = ntohl(a.s_addr);
	uint32_t host = *prefix == 32 ? 0 : ~0u >> *prefix;
	if (!*addr || *addr >= 0xe0000000u || (*addr >> 24) == 127)
		return -EINVAL;
	if (*prefix < 31 && ((*addr & host) == 0 || (*addr & host) == host))
		return -EINVAL;
	return 0;
}

static bool ifname_ok(const char *s)
{
	if (!strcmp(s, "lo") || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

static int parse_netif(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k,
		       int idx, unsigned j)
{
	static const char *const keys[] = {"device", "ifname", "address", NULL};
	struct xp_netif *ni = &k->netifs[j];
	char dev[XP_NAME_MAX], addr[40] = "";
	snprintf(ni->ifname, sizeof(ni->ifname), "xvl%u", j);
	int rc = only_keys(x, g, p, keys, "device, ifname, address");
	if (rc == 0)
		rc = get_str(x, g, p, "device", true, dev, sizeof(dev));
	if (rc >= 0)
		rc = get_str(x, g, p, "ifname", false, ni->ifname, sizeof(ni->ifname));
	if (rc >= 0)
		rc = get_str(x, g, p, "address", false, addr, sizeof(addr));
	if (rc < 0)
		return rc;
	const config_setting_t *ds = config_setting_get_member(g, "device");
	int d = find_name(dev, x->c->devs[0].name, sizeof(x->c->devs[0]), x->c->n_devs);
	if (d < 0)
		return bad(x, ds, p, "no device called '%s'", dev);
	struct xp_device *nd = &x->c->devs[d];
	if (nd->kind != XP_DEV_NET)
		return bad(x, ds, p, "'%s' is a block device; 'net' takes type = \"net\" devices", dev);
	if (nd->driver >= 0)
		return bad(x, ds, p, "net device '%s' is already attached to compartment '%s' "
			   "(a net device has one driver)", dev,
			   nd->driver == idx ? k->name : x->c->comps[nd->driver].name);
	if (!ifname_ok(ni->ifname))
		return bad(x, config_setting_get_member(g, "ifname"), p,
			   "'%s' is not a usable interface name (letters, digits, '-', '_', '.'; not lo)",
			   ni->ifname);
	for (unsigned i = 0; i < j; i++)
		if (!strcmp(k->netifs[i].ifname, ni->ifname))
			return bad(x, g, p, "interface '%s' is named twice in this compartment", ni->ifname);
	if (*addr && parse_cidr(addr, &ni->addr, &ni->prefix) < 0)
		return bad(x, config_setting_get_member(g, "address"), p,
			   "'%s' is not a host address like \"10.0.0.1/24\" (IPv4)", addr);
	nd->driver = idx;
	ni->dev = d;
	ni->line = line_of(g);
	return 0;
}

/* net = ( { device = "n0"; ifname = "eth0"; address = "10.0.0.1/24"; }, ... ) in a driver. */
static int comp_net(struct cx *x, const config_setting_t *g, const char *p, struct xp_comp *k, int idx)
{
	const config_setting_t *l = config_setting_get_member(g, "net");
	k->n_netifs = 0;
	if (!l)
		return 0;
	if (k->role != XP_DRIVER)
		return bad(x, l, p, "'net' belongs to a driver compartment (a device compartment "
			   "serves net devices listed in its 'devices')");
	if (k->vm)
		return bad(x, l, p, "'net' starts tap front-ends in a process compartment's network "
			   "namespace; not available for type = \"vm\"");
	if (!config_setting_is_list(l) && !config_setting_is_array(l))
		return bad(x, l, p, "'net' must be a list of groups: net = ( { device = \"n0\"; "
			   "address = \"10.0.0.1/24\"; } );");
	int len = config_setting_length(l);
	if (len > XP_MAX_NETIFS)
		return bad(x, l, p, "'net' has %d entries, at most %u allowed", len, XP_MAX_NETIFS);
	for (unsigned j = 0; j < (unsigned)len; j++) {
		const config_setting_t *e = config_setting_get_elem(l, j);
		char q[96];
		snprintf(q, sizeof(q), "%s.net[%u]", p, j);
		if (!config_setting_is_group(e))
			return bad(x, e, q, "each entry must be a group { device = ...; }");
		int rc = parse_netif(x, e, q, k, idx, j);
		if (rc < 0)
			return rc;
		k->n_netifs = j + 1;
	}
	return 0;
}

static void effective_mac(const struct xp_device *d, uint8_t mac[6])
{
	if (d->spec.has_mac)
		memcpy(mac, d->spec.mac, 6);
	else
		srv_net_default_mac(d->spec.name, mac); /* what the server will give it */
}

/* Across the config: MACs and addresses unique; a tap backend's compartment may use tun ioctls. */
static int check_nets(struct cx *x, const config_setting_t *root)
{
	const config_setting_t *list = config_setting_get_member(root, "devices");
	for (unsigned i = 0; i < x->c->n_devs; i++) {
		const struct xp_device *d = &x->c->devs[i];
		if (d->kind != XP_DEV_NET)
			continue;
		if (d->spec.kind == XVL_BK_TAP && d->comp >= 0)
			x->c->comps[d->comp].serves_tap = true;
		uint8_t a[6], b[6];
		effective_mac(d, a);
		for (unsigned j = 0; j < i; j++) {
			if (x->c->devs[j].kind != XP_DEV_NET)
				continue;
			effective_mac(&x->c->devs[j], b);
			if (memcmp(a, b, 6))
				continue;
			char p[64];
			snprintf(p, sizeof(p), "devices.%s", d->name);
			return bad(x, config_setting_get_elem(list, i), p,
				   "MAC %02x:%02x:%02x:%02x:%02x:%02x is already device '%s''s MAC%s", a[0],
				   a[1], a[2], a[3], a[4], a[5], x->c->devs[j].name,
				   d->spec.has_mac ? "" : " (the default from the name: set 'mac')");
		}
	}
	for (unsigned i = 0; i < x->c->n_comps; i++)
		if (!x->offline && x->c->comps[i].n_netifs && geteuid() != 0) {
			char p[64];
			snprintf(p, sizeof(p), "compartments.%s.net", x->c->comps[i].name);
			xvl_err(x->eb, -EPERM, "%s:%d: %s: the tap front-ends enter the compartment's "
				"network namespace: xvl run must run as root", x->src,
				x->c->comps[i].netifs[0].line, p);
			return -EPERM;
		}
	for (unsigned i = 0; i < x->c->n_comps; i++)
		for (unsigned j = 0; j < x->c->comps[i].n_netifs; j++) {
			const struct xp_netif *ni = &x->c->comps[i].netifs[j];
			for (unsigned i2 = 0; ni->addr && i2 <= i; i2++)
				for (unsigned j2 = 0; j2 < x->c->comps[i2].n_netifs && (i2 < i || j2 < j); j2++) {
					if (x->c->comps[i2].netifs[j2].addr != ni->addr)
						continue;
					char p[96];
					snprintf(p, sizeof(p), "compartments.%s.net[%u].address",
						 x->c->comps[i].name, j);
					xvl_err(x->eb, -EINVAL, "%s:%d: %s: the address is also %s's %s", x->src,
						ni->line, p, x->c->comps[i2].name,
						x->c->comps[i2].netifs[j2].ifname);
					return -EINVAL;
				}
		}
	return 0;
}

/* ------------------------------------------------------------ cross checks */

/* Bytes a driver needs in its window for the devices of server s. */
static uint64_t window_need(const struct xp_config *c, const struct xp_comp *s)
{
	uint64_t need = XVL_WIN_HDR_SIZE + (1u << 20); /* header + 1 MiB of data buffers */
	for (unsigned i = 0; i < s->n_devs; i++) {
		const struct xvl_dev_spec *d = &c->devs[s->devs[i]].spec;
		uint64_t q = d->queues ? d->queues : 1, qs = d->queue_size ? d->queue_size : 1024;
		need += q * (32 * qs + 4096); /* rings, request headers and status bytes */
	}
	return need;
}

static int check_windows(struct cx *x, const config_setting_t *root)
{
	const config_setting_t *list = config_setting_get_member(root, "windows");
	for (unsigned i = 0; i < x->c->n_wins; i++) {
		const struct xp_window *w = &x->c->wins[i];
		if (w->owner < 0)
			continue;
		const struct xp_comp *k = &x->c->comps[w->owner];
		uint64_t need = window_need(x->c, &x->c->comps[k->server]);
		if (w->size < need) {
			const config_setting_t *g = config_setting_get_elem(list, i);
			char p[64];
			snprintf(p, sizeof(p), "windows.%s.size", w->name);
			return bad(x, config_setting_get_member(g, "size"), p,
				   "%llu bytes is too small for the devices of '%s' (at least %llu)",
				   (unsigned long long)w->size, x->c->comps[k->server].name,
				   (unsigned long long)need);
		}
	}
	return 0;
}

/* A device VM serves the mailbox in one driver's window: some driver must connect to it. */
static int check_device_vms(struct cx *x, const config_setting_t *root)
{
	const config_setting_t *list = config_setting_get_member(root, "compartments");
	for (unsigned i = 0; i < x->c->n_comps; i++) {
		const struct xp_comp *k = &x->c->comps[i];
		if (k->vm && k->role == XP_DEVICE && k->mbox_driver < 0) {
			char p[64];
			snprintf(p, sizeof(p), "compartments.%s", k->name);
			return bad(x, config_setting_get_elem(list, i), p,
				   "no driver connects to this device VM (it serves one driver's window)");
		}
	}
	return 0;
}

static int check_devices(struct cx *x, const config_setting_t *root)
{
	const config_setting_t *list = config_setting_get_member(root, "devices");
	for (unsigned i = 0; i < x->c->n_devs; i++)
		if (x->c->devs[i].comp < 0) {
			char p[64];
			snprintf(p, sizeof(p), "devices.%s", x->c->devs[i].name);
			return bad(x, config_setting_get_elem(list, i), p,
				   "no device compartment serves this device (list it in one's 'devices')");
		}
	return 0;
}

/* ------------------------------------------------------------ top level */

typedef int (*elem_fn)(struct cx *x, const config_setting_t *g, unsigned i, const char *p);

static int each(struct cx *x, const config_setting_t *root, const char *key, unsigned max,
		unsigned *n, elem_fn fn)
{
	const config_setting_t *l = config_setting_get_member(root, key);
	*n = 0;
	if (!l)
		return 0;
	if (!config_setting_is_list(l) && !config_setting_is_array(l))
		return bad(x, l, key, "must be a list of groups: %s = ( { ... }, { ... } );", key);
	int len = config_setting_length(l);
	if (len > (int)max)
		return bad(x, l, key, "%d entries, at most %u allowed", len, max);
	for (unsigned i = 0; i < (unsigned)len; i++) {
		const config_setting_t *g = config_setting_get_elem(l, i);
		char p[64];
		const char *nm = NULL;
		config_setting_lookup_string(g, "name", &nm);
		if (nm && strlen(nm) < XP_NAME_MAX)
			snprintf(p, sizeof(p), "%s.%s", key, nm);
		else
			snprintf(p, sizeof(p), "%s[%u]", key, i);
		if (!config_setting_is_group(g))
			return bad(x, g, p, "each entry must be a group { name = ...; ... }");
		int rc = fn(x, g, i, p);
		if (rc < 0)
			return rc;
		*n = i + 1;
	}
	return 0;
}

static int win_fn(struct cx *x, const config_setting_t *g, unsigned i, const char *p)
{
	int rc = parse_window(x, g, &x->c->wins[i], p);
	if (rc == 0 && find_name(x->c->wins[i].name, x->c->wins[0].name, sizeof(x->c->wins[0]), i) >= 0)
		rc = bad(x, g, p, "a window called '%s' exists already", x->c->wins[i].name);
	return rc;
}

static int dev_fn(struct cx *x, const config_setting_t *g, unsigned i, const char *p)
{
	int rc = parse_device(x, g, &x->c->devs[i], p);
	if (rc == 0 && find_name(x->c->devs[i].name, x->c->devs[0].name, sizeof(x->c->devs[0]), i) >= 0)
		rc = bad(x, g, p, "a device called '%s' exists already", x->c->devs[i].name);
	return rc;
}

static int comp_fn(struct cx *x, const config_setting_t *g, unsigned i, const char *p)
{
	return parse_comp(x, g, (int)i, p);
}

static int connect_fn(struct cx *x, const config_setting_t *g, unsigned i, const char *p)
{
	struct xp_comp *k = &x->c->comps[i];
	int rc = comp_connect(x, g, p, k);
	if (rc == 0 && k->role == XP_DRIVER && x->c->comps[k->server].vm && !k->link_window)
		return bad(x, config_setting_get_member(g, "connect"), p,
			   "device VM '%s' has no socket: its driver needs link = \"window\" (or type = \"vm\")",
			   x->c->comps[k->server].name);
	if (rc < 0 || !k->link_window)
		return rc;
	/* A device side serves one mailbox: the window of one driver. */
	struct xp_comp *d = &x->c->comps[k->server];
	if (d->vm && (rc = vm_window_pow2(x, g, p, k->window)) < 0)
		return rc;
	if (x->c->wins[k->window].vectors && !(k->vm && d->vm))
		return bad(x, config_setting_get_member(g, "window"), p,
			   "window '%s' has vectors (ivshmem-doorbell): only between a driver VM and a device VM",
			   x->c->wins[k->window].name);
	if (d->mbox_driver >= 0)
		return bad(x, config_setting_get_member(g, "link"), p,
			   "device compartment '%s' already serves the mailbox link of '%s' (one per device side)",
			   d->name, x->c->comps[d->mbox_driver].name);
	d->mbox_driver = (int)i;
	/* a device VM's QEMU maps its driver's window: the command lines can be made now */
	if ((d->vm && xp_vm_build_argv(x->c, d) < 0) || (k->vm && xp_vm_build_argv(x->c, k) < 0))
		return bad(x, g, p, "the QEMU command line of '%s' or '%s' exceeds %u arguments of %u bytes",
			   d->name, k->name, XP_MAX_ARGS, XP_ARG_MAX);
	return 0;
}

static int parse_top(struct cx *x, const config_setting_t *root)
{
	static const char *const keys[] = {"name", "state_dir", "pool", "restart_ms",
					   "exit_with_drivers", "userns", "seccomp", "windows",
					   "devices", "compartments", NULL};
	char sc[16] = "kill";
	struct xp_config *c = x->c;
	int rc = only_keys(x, root, "(top level)", keys,
			   "name, state_dir, pool, restart_ms, exit_with_drivers, userns, seccomp, "
			   "windows, devices, compartments");
	if (rc == 0)
		rc = get_str(x, root, "name", "name", false, c->name, sizeof(c->name));
	if (rc >= 0 && (strchr(c->name, '/') || c->name[0] == '.'))
		rc = bad(x, config_setting_get_member(root, "name"), "name", "must not contain '/' or start with '.'");
	if (rc >= 0)
		rc = get_str(x, root, "state_dir", "state_dir", false, c->state_dir, sizeof(c->state_dir) - 32);
	if (rc >= 0)
		rc = get_uint(x, root, "pool", "pool", 8, &c->pool);
	if (rc >= 0)
		rc = get_uint(x, root, "restart_ms", "restart_ms", 60000, &c->restart_ms);
	if (rc >= 0)
		rc = get_bool(x, root, "exit_with_drivers", "exit_with_drivers", &c->exit_with_drivers);
	if (rc >= 0)
		rc = get_bool(x, root, "userns", "userns", &c->userns);
	if (rc >= 0)
		rc = get_str(x, root, "seccomp", "seccomp", false, sc, sizeof(sc));
	if (rc < 0)
		return rc;
	static const char *const modes[] = {"kill", "errno", "log", "off"};
	c->seccomp = 4;
	for (unsigned i = 0; i < 4; i++)
		if (!strcmp(sc, modes[i]))
			c->seccomp = (enum xp_seccomp)i;
	if (c->seccomp == 4)
		return bad(x, config_setting_get_member(root, "seccomp"), "seccomp",
			   "'%s' (expected kill, errno, log or off)", sc);
	return 0;
}

static int parse_all(struct cx *x, const config_setting_t *root)
{
	struct xp_config *c = x->c;
	int rc = parse_top(x, root);
	if (rc == 0)
		rc = each(x, root, "windows", XP_MAX_WINS, &c->n_wins, win_fn);
	if (rc == 0)
		rc = each(x, root, "devices", XP_MAX_DEVS, &c->n_devs, dev_fn);
	if (rc == 0)
		rc = each(x, root, "compartments", XP_MAX_COMPS, &c->n_comps, comp_fn);
	if (rc == 0 && !c->n_comps)
		rc = bad(x, root, "compartments", "missing: at least one compartment is needed");
	unsigned n;
	if (rc == 0)
		rc = each(x, root, "compartments", XP_MAX_COMPS, &n, connect_fn);
	if (rc == 0)
		rc = check_devices(x, root);
	if (rc == 0)
		rc = check_device_vms(x, root);
	if (rc == 0)
		rc = check_windows(x, root);
	if (rc == 0)
		rc = check_nets(x, root);
	return rc;
}

static void defaults(struct xp_config *c, const char *source)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->source, sizeof(c->source), "%s", source);
	snprintf(c->name, sizeof(c->name), "xvl");
	c->pool = 2;
	c->restart_ms = 200;
	c->userns = true;
}

int xp_config_load(struct xp_config *c, const char *source, const char *text, bool offline,
		   struct xvl_errbuf *eb)
{
	config_t cf;
	struct cx x = {.src = source, .eb = eb, .c = c, .offline = offline};
	defaults(c, source);
	config_init(&cf);
	int ok = text ? config_read_string(&cf, text) : config_read_file(&cf, source);
	int rc;
	if (!ok) {
		const char *f = config_error_file(&cf);
		rc = xvl_err(eb, config_error_type(&cf) == CONFIG_ERR_FILE_IO ? -ENOENT : -EINVAL,
			     "%s:%d: %s", f ? f : source, config_error_line(&cf),
			     config_error_type(&cf) == CONFIG_ERR_FILE_IO ? "cannot read the config file"
									  : config_error_text(&cf));
	} else {
		rc = parse_all(&x, config_root_setting(&cf));
	}
	config_destroy(&cf);
	return rc;
}

void xp_default_state_dir(const char *name, char *out, size_t cap)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	if (geteuid() == 0)
		snprintf(out, cap, "/run/xvl/%s", name);
	else if (rt && *rt)
		snprintf(out, cap, "%s/xvl/%s", rt, name);
	else
		snprintf(out, cap, "/tmp/xvl-%u/%s", (unsigned)geteuid(), name);
}
