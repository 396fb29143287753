/* SPDX-License-Identifier: MIT */
/*
 * Memory limits.  cgroup v2 memory.max when the unified hierarchy offers the
 * memory controller to us, else the v1 memory controller's
 * memory.limit_in_bytes (hybrid hosts), else RLIMIT_AS set by the shell.
 * Compartment cgroups sit below the partitioner's own (so its limits still
 * apply), named xvl.INSTANCE.COMPARTMENT.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox.h"

const char *xp_memctl_name(enum xp_memctl k)
{
	static const char *const n[] = {"none", "cgroup2 memory.max", "cgroup1 memory.limit_in_bytes",
					"RLIMIT_AS (no cgroup memory controller usable)"};
	return n[k];
}

/* Our cgroup path for the v1 controller named ctl, or the v2 one when ctl is "". */
static int own_cgroup(const char *ctl, char *out, size_t cap)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	char line[512];
	int rc = -ENOENT;
	if (!f)
		return -errno;
	while (rc < 0 && fgets(line, sizeof(line), f)) {
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
		if (!b)
			continue;
		*b = 0;
		b[strcspn(b + 1, "\n") + 1] = 0;
		bool match = *ctl ? strstr(a + 1, ctl) != NULL : a[1] == 0;
		if (match && strlen(b + 1) < cap) {
			snprintf(out, cap, "%s", strcmp(b + 1, "/") ? b + 1 : "");
			rc = 0;
		}
	}
	fclose(f);
	return rc;
}

static int put(const char *dir, const char *file, const char *text)
{
	char p[XP_PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/%s", dir, file);
	return xp_write_file(p, text);
}

static int try_dir(struct xp_cgroup *cg, const char *mount, const char *own, const char *leaf,
		   const char *file)
{
	char f[XP_PATH_MAX + 64];
	if ((size_t)snprintf(cg->path, sizeof(cg->path), "%s%s/%s", mount, own, leaf) >=
	    sizeof(cg->path))
		return -ENAMETOOLONG;
	if (mkdir(cg->path, 0755) < 0 && errno != EEXIST)
		return -errno;
	snprintf(f, sizeof(f), "%s/%s", cg->path, file);
	if (access(f, W_OK) == 0)
		return 0;
	rmdir(cg->path);
	cg->path[0] = 0;
	return -ENOTSUP;
}

int xp_cgroup_create(struct xp_cgroup *cg, const char *inst, const char *leaf,
		     struct xvl_errbuf *eb)
{
	char own[XP_PATH_MAX / 2], name[80];
	struct stat st;
	memset(cg, 0, sizeof(*cg));
	snprintf(name, sizeof(name), "xvl.%s.%s", inst, leaf);
	const char *v2 = stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0 ? "/sys/fs/cgroup"
										: "/sys/fs/cgroup/unified";
	if (own_cgroup("", own, sizeof(own)) == 0 && try_dir(cg, v2, own, name, "memory.max") == 0) {
		cg->kind = XP_MEM_CG2;
		return 0;
	}
	if (own_cgroup("memory", own, sizeof(own)) == 0 &&
	    try_dir(cg, "/sys/fs/cgroup/memory", own, name, "memory.limit_in_bytes") == 0) {
		cg->kind = XP_MEM_CG1;
		return 0;
	}
	(void)eb;
	cg->kind = XP_MEM_RLIMIT;
	return 0;
}

int xp_cgroup_limit(const struct xp_cgroup *cg, uint64_t bytes, struct xvl_errbuf *eb)
{
	char lim[32];
	if (cg->kind != XP_MEM_CG1 && cg->kind != XP_MEM_CG2)
		return 0;
	if (bytes)
		snprintf(lim, sizeof(lim), "%llu", (unsigned long long)bytes);
	else
		snprintf(lim, sizeof(lim), "%s", cg->kind == XP_MEM_CG2 ? "max" : "-1");
	const char *f = cg->kind == XP_MEM_CG2 ? "memory.max" : "memory.limit_in_bytes";
	int rc = put(cg->path, f, lim);
	return rc < 0 ? xvl_err(eb, rc, "cannot set %s/%s to %s: %s", cg->path, f, lim,
				strerror(-rc))
		      : 0;
}

int xp_cgroup_attach(const struct xp_cgroup *cg, pid_t pid, struct xvl_errbuf *eb)
{
	char t[24];
	if (cg->kind != XP_MEM_CG1 && cg->kind != XP_MEM_CG2)
		return 0;
	snprintf(t, sizeof(t), "%d", (int)pid);
	int rc = put(cg->path, "cgroup.procs", t);
	return rc < 0 ? xvl_err(eb, rc, "cannot move %d into %s: %s", (int)pid, cg->path,
				strerror(-rc))
		      : 0;
}

void xp_cgroup_remove(struct xp_cgroup *cg)
{
	for (int i = 0; cg->path[0] && i < 50; i++) {
		if (rmdir(cg->path) == 0 || errno == ENOENT)
			break;
		usleep(2000); /* the last task is still leaving */
	}
	cg->path[0] = 0;
}
