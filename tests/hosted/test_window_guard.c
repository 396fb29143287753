/* SPDX-License-Identifier: MIT */
/*
 * A peer that makes our window accesses fault (issue 9, item 14): with
 * hugetlb windows a punched hole (fallocate PUNCH_HOLE passes F_SEAL_SHRINK)
 * refaults only while a free huge page is left, else SIGBUS.  This host has
 * no huge pages, so the same signal is produced the other way a peer can:
 * truncating an unsealable shm window under the mapping.  The guard must
 * turn the fault into a zero page and let the process live; a SIGBUS
 * outside any window must still kill.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "os.h"
#include "tap.h"

static int child_status(pid_t pid)
{
	int st = -1;
	waitpid(pid, &st, 0);
	return st;
}

/* Child: a window whose file the "peer" truncates; read and write the lost page. */
static int truncated_window(void)
{
	struct xvl_os_window w;
	struct xvl_errbuf eb;
	char name[64];

	snprintf(name, sizeof(name), "shm:xvl-guard-%d", (int)getpid());
	if (xvl_os_window_create(&w, name, 2 * 4096, &eb) < 0)
		return 10;
	shm_unlink(name + 3);
	memset(w.mem.base, 0x5a, 2 * 4096);
	if (ftruncate(w.fd, 0) < 0) /* what a hostile peer with the fd can do */
		return 11;
	volatile uint8_t *p = w.mem.base;
	uint8_t got = p[4096 + 7];  /* SIGBUS without the guard */
	p[100] = 1;                /* and a write */
	if (got != 0 || p[100] != 1 || xvl_os_window_faults(&w) != 2)
		return 12;
	xvl_os_window_close(&w);
	return 0;
}

/* Child: a SIGBUS on memory that is not a window is not swallowed. */
static int not_a_window(void)
{
	struct xvl_os_window w;
	struct xvl_errbuf eb;
	int fd = memfd_create("plain", MFD_CLOEXEC);

	if (xvl_os_window_create(&w, NULL, 4096, &eb) < 0) /* the guard is installed */
		return 10;
	if (fd < 0 || ftruncate(fd, 4096) < 0)
		return 11;
	volatile uint8_t *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED || ftruncate(fd, 0) < 0)
		return 12;
	return p[0] == 0 ? 13 : 14; /* must not get here */
}

/* Punched holes in a plain memfd window (what the server accepts): zeroes, no fault. */
static void punched_memfd(void)
{
	struct xvl_os_window w, peer;
	struct xvl_errbuf eb;
	int rc = xvl_os_window_create(&w, NULL, 1 << 20, &eb);

	CHECK(rc == 0, "memfd window (%s)", rc ? eb.msg : "");
	if (rc)
		return;
	rc = xvl_os_window_map(&peer, dup(w.fd), w.mem.size, &eb);
	CHECK(rc == 0, "mapped by the other side");
	memset(w.mem.base, 0x77, w.mem.size);
	rc = fallocate(w.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 512 << 10);
	CHECK(rc == 0, "PUNCH_HOLE passes F_SEAL_SHRINK (rc %d)", rc);
	CHECK(peer.mem.base[0] == 0 && peer.mem.base[(512 << 10) - 1] == 0 &&
	      peer.mem.base[512 << 10] == 0x77, "memfd: punched pages read as zeroes, the rest stays");
	CHECK(xvl_os_window_faults(&peer) == 0, "memfd: no fault (pages are refilled, not lost)");
	xvl_os_window_close(&peer);
	xvl_os_window_close(&w);
}

int main(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(truncated_window());
	int st = child_status(pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "a window truncated by the peer: the access completes on a zero page, the process "
	      "lives (%s %d)", WIFSIGNALED(st) ? "killed by signal" : "exit",
	      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	pid = fork();
	if (pid == 0)
		_exit(not_a_window());
	st = child_status(pid);
	/* killed by SIGBUS, or (under ASan, whose handler was there first) its report and exit 1 */
	CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS) || (WIFEXITED(st) && WEXITSTATUS(st) == 1),
	      "a SIGBUS outside any window is not swallowed: the process does not go on (status 0x%x)",
	      st);
	punched_memfd();
	return tap_done();
}
