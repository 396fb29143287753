/* SPDX-License-Identifier: MIT */
/* Doorbells (eventfd vectors, none + backoff) and xvloop's ivshmem server against its own peer side. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "doorbell.h"
#include "ivshmem.h"
#include "tap.h"

static bool readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1;
}

static void test_eventfd(void)
{
	struct xvl_doorbell a, b;
	struct xvl_errbuf eb = {{0}};
	int e[4];
	for (int i = 0; i < 4; i++)
		e[i] = xvl_os_eventfd();
	char spec[128];
	/* a is rung on e0,e1 and rings e2,e3; b the other way round (dups, as two processes would hold). */
	snprintf(spec, sizeof(spec), "eventfd:own=%d,%d;peer=%d,%d", e[0], e[1], e[2], e[3]);
	CHECK(xvl_doorbell_parse(&a, spec, &eb) == 0 && a.n_own == 2 && a.n_peer == 2, "parse %s", spec);
	snprintf(spec, sizeof(spec), "eventfd:own=%d,%d;peer=%d,%d", dup(e[2]), dup(e[3]), dup(e[0]), dup(e[1]));
	CHECK(xvl_doorbell_parse(&b, spec, &eb) == 0, "parse the peer's");
	CHECK(xvl_doorbell_ring(&a, 1) == 0 && readable(xvl_doorbell_fd(&b, 1)) &&
		      !readable(xvl_doorbell_fd(&b, 0)),
	      "a rings b's vector 1: only that one is readable");
	xvl_doorbell_drain(&b, 1);
	CHECK(!readable(xvl_doorbell_fd(&b, 1)), "drained");
	CHECK(xvl_doorbell_ring(&b, 0) == 0 && readable(xvl_doorbell_fd(&a, 0)), "b rings a's vector 0");
	CHECK(xvl_doorbell_ring(&a, 2) == -ENXIO && xvl_doorbell_fd(&a, 5) == -1, "vectors past the end: none");
	xvl_doorbell_close(&a);
	xvl_doorbell_close(&b);

	struct xvl_doorbell c;
	CHECK(xvl_doorbell_parse(&c, "eventfd:own=999", &eb) == -EBADF && strstr(eb.msg, "999"),
	      "a descriptor that is not open is refused: %s", eb.msg);
	CHECK(xvl_doorbell_parse(&c, "eventfd:mine=3", &eb) == -EINVAL, "unknown key refused: %s", eb.msg);
	CHECK(xvl_doorbell_parse(&c, "telepathy", &eb) == -EINVAL, "unknown kind refused: %s", eb.msg);
	CHECK(xvl_doorbell_parse(&c, "ivshmem:/nonexistent,peer=0", &eb) < 0 && strstr(eb.msg, "resource0"),
	      "ivshmem without the device: %s", eb.msg);
	CHECK(xvl_doorbell_parse(&c, "none", &eb) == 0 && c.kind == XVL_DB_NONE &&
		      xvl_doorbell_fd(&c, 0) == -1 && xvl_doorbell_ring(&c, 0) == -ENXIO,
	      "none: nothing to wait on, nothing to ring");
}

static void test_backoff(void)
{
	struct xvl_backoff b = {0};
	unsigned seq[10];
	for (int i = 0; i < 10; i++)
		seq[i] = xvl_backoff_next(&b);
	CHECK(seq[0] == 0 && seq[1] == 50 && seq[2] == 100 && seq[3] == 200, "backoff 0, 50, 100, 200 us");
	for (int i = 0; i < 20; i++)
		xvl_backoff_next(&b);
	CHECK(xvl_backoff_next(&b) == XVL_BACKOFF_MAX_US, "and never more than %u us", XVL_BACKOFF_MAX_US);
	xvl_backoff_reset(&b);
	CHECK(xvl_backoff_next(&b) == 0, "activity resets it");
}

static void test_ivshmem(void)
{
	struct xvl_ivsh_server s;
	struct xvl_errbuf eb = {{0}};
	char path[64];
	snprintf(path, sizeof(path), "/tmp/xvl-ivsh-test.%d.sock", (int)getpid());
	CHECK(xvl_ivsh_server_create(&s, path, 1 << 20, 3, &eb) == 0, "ivshmem server: 1 MiB, 3 vectors");
	CHECK(xvl_ivsh_server_create(&(struct xvl_ivsh_server){0}, path, 1 << 20, 0, &eb) == -EINVAL,
	      "0 vectors refused");
	pid_t pid = fork();
	if (pid == 0) {
		/* The peer, in its own process as QEMU would be. */
		struct xvl_os_window w;
		struct xvl_doorbell db;
		int sock;
		if (xvl_ivsh_peer_connect(path, &w, &db, &sock, &eb) < 0)
			_exit(10);
		if (w.mem.size != 1 << 20 || db.n_own != 3 || db.n_peer != 3)
			_exit(11);
		memcpy(w.mem.base + 4096, "hello", 6); /* the same memory */
		xvl_doorbell_ring(&db, 2);          /* the server side's vector 2 */
		struct pollfd p = {.fd = xvl_doorbell_fd(&db, 1), .events = POLLIN};
		if (poll(&p, 1, 5000) != 1)       /* and it rings our vector 1 */
			_exit(12);
		_exit(0);
	}
	int slot = xvl_ivsh_server_accept(&s, &eb);
	CHECK(slot >= 0 && s.peer[slot].id == 1, "a peer connects and gets id 1");
	struct xvl_doorbell db;
	CHECK(xvl_ivsh_server_doorbell(&s, (unsigned)slot, &db) == 0 && db.n_own == 3, "the server side's doorbell");
	struct pollfd p = {.fd = xvl_doorbell_fd(&db, 2), .events = POLLIN};
	CHECK(poll(&p, 1, 5000) == 1, "the peer rang the server side's vector 2");
	CHECK(!memcmp(s.win.mem.base + 4096, "hello", 6), "through the same window");
	CHECK(xvl_doorbell_ring(&db, 1) == 0, "the server side rings the peer's vector 1");
	int st = -1;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the peer saw window, vectors and the ring (exit %d)",
	      WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	xvl_doorbell_close(&db);
	xvl_ivsh_server_drop(&s, (unsigned)slot);
	CHECK(s.peer[slot].sock == -1, "a peer that left is dropped");
	xvl_ivsh_server_close(&s);
	CHECK(access(path, F_OK) != 0, "closing removes the socket");
}

int main(void)
{
	test_eventfd();
	test_backoff();
	test_ivshmem();
	return tap_done();
}
