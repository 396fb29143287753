/* SPDX-License-Identifier: MIT */
/* OS layer: creating, mapping and closing the shared window. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include "os.h"

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

/* Value of a "Key:   N kB" or "Key:   N" line of /proc/meminfo, -1 if absent. */
static long meminfo_get(const char *key)
{
	char buf[4096];
	int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	size_t klen = strlen(key);
	for (char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':')
			return strtol(p + klen + 1, NULL, 10);
	}
	return -1;
}

/* Block size of the file system holding fd when it is hugetlbfs, else 0. */
static uint64_t huge_page_size(int fd)
{
	struct statfs sf;
	if (fstatfs(fd, &sf) == 0 && (unsigned long)sf.f_type == (unsigned long)HUGETLBFS_MAGIC)
		return (uint64_t)sf.f_bsize;
	return 0;
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
	if (a == 0)
		return v;
	return (v + a - 1) / a * a;
}

/* A hugetlb allocation failed: say whether the host has huge pages at all. */
static int huge_fail(struct xvl_errbuf *eb, int err, const char *what, const char *step,
		     uint64_t size, uint64_t hpsize)
{
	long total = meminfo_get("HugePages_Total");
	long hfree = meminfo_get("HugePages_Free");
	unsigned long long need = hpsize ? (unsigned long long)(size / hpsize) : 0;
	if ((err == ENOMEM || err == EINVAL) && hfree >= 0 && hpsize &&
	    (uint64_t)hfree < size / hpsize)
		return xvl_err(eb, -ENOMEM,
			       "%s: %s of %llu bytes failed (%s): the host has %ld free huge pages "
			       "of %llu kB (HugePages_Total %ld), the window needs %llu; "
			       "reserve them with 'sysctl vm.nr_hugepages=N'",
			       what, step, (unsigned long long)size, strerror(err), hfree,
			       (unsigned long long)(hpsize >> 10), total, need);
	return xvl_err(eb, -err, "%s: %s of %llu bytes failed: %s", what, step,
		       (unsigned long long)size, strerror(err));
}

/* ---------------------------------------------------------------- SIGBUS guard */

/*
 * A peer can make our accesses to a shared window fault with SIGBUS:
 * fallocate(PUNCH_HOLE) is not stopped by F_SEAL_SHRINK, and a punched page
 * of a hugetlb window is refilled on the next touch only if a free huge page
 * is left (its reservation went with the hole); an unsealable shm window can
 * be truncated.  Every window mapped here is registered; the SIGBUS handler
 * replaces the faulting page of a registered window by a private zero page
 * (the peer's data of that page is lost to us, as it destroyed it) and
 * counts it, so the access completes and the process lives on.  A SIGBUS
 * anywhere else goes to the previous disposition.
 *
 * Process-wide on purpose: a signal handler has no other way to find the
 * windows.  Slots are published with release stores and read with acquire
 * loads; the handler takes no lock.
 */
#define GUARD_SLOTS 256

struct guard_slot {
	_Atomic uintptr_t base; /* 0: free */
	_Atomic size_t len;
	_Atomic size_t page;    /* the unit replaced: the mapping's page size */
	_Atomic unsigned faults;
};

static struct guard_slot guards[GUARD_SLOTS];
static struct sigaction guard_prev;
static atomic_int guard_installed; /* 0 no, 1 being installed, 2 yes */

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;

	for (unsigned i = 0; i < GUARD_SLOTS; i++) {
		uintptr_t base = atomic_load_explicit(&guards[i].base, memory_order_acquire);
		size_t len = atomic_load_explicit(&guards[i].len, memory_order_relaxed);
		size_t page = atomic_load_explicit(&guards[i].page, memory_order_relaxed);
		if (!base || a < base || a - base >= len || !page)
			continue;
		void *p = (void *)(a & ~(uintptr_t)(page - 1));
		if (mmap(p, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			 -1, 0) != MAP_FAILED) {
			atomic_fetch_add_explicit(&guards[i].faults, 1, memory_order_relaxed);
			return;
		}
		break;
	}
	/* Not a window (or no memory for the page): what would have happened without us. */
	if ((guard_prev.sa_flags & SA_SIGINFO) && guard_prev.sa_sigaction) {
		guard_prev.sa_sigaction(sig, si, uc);
		return;
	}
	if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN) {
		guard_prev.sa_handler(sig);
		return;
	}
	signal(SIGBUS, SIG_DFL); /* the access faults again and takes the default action */
}

static void guard_install(void)
{
	int expect = 0;
	struct sigaction sa;

	if (!atomic_compare_exchange_strong(&guard_installed, &expect, 1))
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &guard_prev);
	atomic_store(&guard_installed, 2);
}

static void guard_add(void *base, uint64_t len, uint64_t page)
{
	guard_install();
	for (unsigned i = 0; i < GUARD_SLOTS; i++) {
		uintptr_t expect = 0;
		if (atomic_load_explicit(&guards[i].base, memory_order_relaxed))
			continue;
		/* claim with a marker, fill, then publish */
		if (!atomic_compare_exchange_strong(&guards[i].base, &expect, (uintptr_t)1))
			continue;
		atomic_store_explicit(&guards[i].len, (size_t)len, memory_order_relaxed);
		atomic_store_explicit(&guards[i].page, (size_t)page, memory_order_relaxed);
		atomic_store_explicit(&guards[i].faults, 0, memory_order_relaxed);
		atomic_store_explicit(&guards[i].base, (uintptr_t)base, memory_order_release);
		return;
	}
	/* all slots taken: this window is unguarded (a SIGBUS in it kills, as before) */
}

static struct guard_slot *guard_find(const void *base)
{
	for (unsigned i = 0; base && i < GUARD_SLOTS; i++)
		if (atomic_load_explicit(&guards[i].base, memory_order_acquire) == (uintptr_t)base)
			return &guards[i];
	return NULL;
}

static void guard_remove(const void *base)
{
	struct guard_slot *g = guard_find(base);
	if (g)
		atomic_store_explicit(&g->base, 0, memory_order_release);
}

static uint64_t map_page_size(int fd)
{
	uint64_t hp = huge_page_size(fd);
	return hp ? hp : (uint64_t)sysconf(_SC_PAGESIZE);
}

unsigned xvl_os_window_faults(const struct xvl_os_window *w)
{
	struct guard_slot *g = guard_find(w->mem.base);
	return g ? atomic_load_explicit(&g->faults, memory_order_relaxed) : 0;
}

static void window_reset(struct xvl_os_window *w)
{
	w->fd = -1;
	w->mem.base = NULL;
	w->mem.size = 0;
}

/* Size, seal (when sealable) and map fd; on failure the caller closes fd. */
static int window_setup(struct xvl_os_window *w, int fd, uint64_t size, uint64_t hpsize,
			bool seal, const char *what, struct xvl_errbuf *eb)
{
	if (ftruncate(fd, (off_t)size) < 0) {
		int e = errno;
		if (hpsize)
			return huge_fail(eb, e, what, "ftruncate", size, hpsize);
		return xvl_err(eb, -e, "%s: ftruncate to %llu bytes failed: %s", what,
			       (unsigned long long)size, strerror(e));
	}
	if (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int e = errno;
		return xvl_err(eb, -e, "%s: sealing the memfd failed: %s", what, strerror(e));
	}
	void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		if (hpsize)
			return huge_fail(eb, e, what, "mmap", size, hpsize);
		return xvl_err(eb, -e, "%s: mmap of %llu bytes failed: %s", what,
			       (unsigned long long)size, strerror(e));
	}
	w->fd = fd;
	w->mem.base = p;
	w->mem.size = size;
	guard_add(p, size, map_page_size(fd));
	return 0;
}

int xvl_os_window_create(struct xvl_os_window *w, const char *backing, uint64_t size,
			 struct xvl_errbuf *eb)
{
	window_reset(w);
	if (!backing || !*backing)
		backing = "memfd";
	if (size == 0)
		return xvl_err(eb, -EINVAL, "window size 0: nothing to create");
	if (size > (uint64_t)SIZE_MAX / 2 || size > (uint64_t)INT64_MAX / 2)
		return xvl_err(eb, -EINVAL, "window size %llu bytes is too large",
			       (unsigned long long)size);

	int fd, rc;
	if (strcmp(backing, "memfd") == 0) {
		fd = memfd_create("xvloop-window", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (fd < 0)
			return xvl_err(eb, -errno, "memfd window: memfd_create failed: %s",
				       strerror(errno));
		rc = window_setup(w, fd, size, 0, true, "memfd window", eb);
		if (rc < 0)
			close(fd);
		return rc;
	}
	if (strcmp(backing, "memfd-huge") == 0) {
		fd = memfd_create("xvloop-window", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB);
		if (fd < 0) {
			int e = errno;
			return xvl_err(eb, -e,
				       "memfd-huge window: memfd_create(MFD_HUGETLB) failed: %s "
				       "(kernel without hugetlbfs, or no huge page size configured)",
				       strerror(e));
		}
		uint64_t hp = huge_page_size(fd);
		if (!hp)
			hp = 2u << 20;
		rc = window_setup(w, fd, round_up(size, hp), hp, true, "memfd-huge window", eb);
		if (rc < 0)
			close(fd);
		return rc;
	}
	if (strncmp(backing, "hugetlbfs:", 10) == 0) {
		const char *path = backing + 10;
		char what[PATH_MAX + 32];
		snprintf(what, sizeof(what), "hugetlbfs window '%s'", path);
		if (!*path)
			return xvl_err(eb, -EINVAL, "hugetlbfs window: empty path in '%s'", backing);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			int e = errno;
			return xvl_err(eb, -e, "%s: create failed: %s%s", what, strerror(e),
				       e == EEXIST ? " (remove the stale file or pick another name)" : "");
		}
		uint64_t hp = huge_page_size(fd);
		if (!hp) {
			close(fd);
			unlink(path);
			return xvl_err(eb, -EINVAL,
				       "%s: not on a hugetlbfs mount (mount one with "
				       "'mount -t hugetlbfs none DIR')", what);
		}
		rc = window_setup(w, fd, round_up(size, hp), hp, false, what, eb);
		/* Mapped (or failed): the name is no longer needed either way. */
		unlink(path);
		if (rc < 0)
			close(fd);
		return rc;
	}
	if (strncmp(backing, "shm:", 4) == 0) {
		const char *name = backing + 4;
		char shm_name[NAME_MAX + 2];
		if (*name == '/')
			name++;
		if (!*name || strchr(name, '/') || strlen(name) > NAME_MAX - 1)
			return xvl_err(eb, -EINVAL,
				       "shm window: bad name '%s' (one path component, at most %d bytes)",
				       backing + 4, NAME_MAX - 1);
		snprintf(shm_name, sizeof(shm_name), "/%s", name);
		fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			int e = errno;
			return xvl_err(eb, -e, "shm window '/dev/shm/%s': shm_open failed: %s%s", name,
				       strerror(e),
				       e == EEXIST ? " (remove the stale object or pick another name)" : "");
		}
		char what[NAME_MAX + 32];
		snprintf(what, sizeof(what), "shm window '/dev/shm/%s'", name);
		rc = window_setup(w, fd, size, 0, false, what, eb);
		if (rc < 0) {
			close(fd);
			shm_unlink(shm_name);
		}
		return rc;
	}
	return xvl_err(eb, -EINVAL,
		       "unknown window backing '%s' (expected memfd, memfd-huge, hugetlbfs:PATH "
		       "or shm:NAME)", backing);
}

int xvl_os_window_seal(int fd)
{
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals >= 0 && (seals & F_SEAL_SHRINK))
		return 0;
	if (seals >= 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0)
		return 0;
	return -EPERM;
}

int xvl_os_window_map(struct xvl_os_window *w, int fd, uint64_t size, struct xvl_errbuf *eb)
{
	struct stat st;
	window_reset(w);
	if (fd < 0)
		return xvl_err(eb, -EBADF, "window: no file descriptor (%d)", fd);
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return xvl_err(eb, -e, "window fd %d: fstat failed: %s", fd, strerror(e));
	}
	if (size == 0 || size > (uint64_t)SIZE_MAX / 2 || st.st_size < 0 ||
	    (uint64_t)st.st_size < size) {
		close(fd);
		return xvl_err(eb, -EINVAL, "window file is %lld bytes, peer says %llu",
			       (long long)st.st_size, (unsigned long long)size);
	}
	/* A hugetlb file maps in whole huge pages; its size is always a multiple of one. */
	uint64_t len = round_up(size, huge_page_size(fd));
	if (len > (uint64_t)st.st_size)
		len = size;
	void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		close(fd);
		return xvl_err(eb, -e, "window of %llu bytes: mmap failed: %s",
			       (unsigned long long)size, strerror(e));
	}
	w->fd = fd;
	w->mem.base = p;
	w->mem.size = size;
	guard_add(p, len, map_page_size(fd));
	return 0;
}

void xvl_os_window_close(struct xvl_os_window *w)
{
	if (!w)
		return;
	if (w->mem.base) {
		uint64_t len = w->mem.size;
		guard_remove(w->mem.base); /* before the address can be reused */
		if (w->fd >= 0)
			len = round_up(len, huge_page_size(w->fd));
		munmap(w->mem.base, (size_t)len);
	}
	/* A zeroed window has fd 0 and no mapping: leave stdin alone. */
	if (w->fd > 0 || (w->fd == 0 && w->mem.base))
		close(w->fd);
	window_reset(w);
}
