/* SPDX-License-Identifier: MIT */
/*
 * badmbox: a hostile driver side on the mailbox link (docs/PROTOCOL.md 7).
 * Used by tests/e2e/mailbox.sh against `xvl server --window PATH`.
 *
 *   badmbox WINDOW SCENARIO
 *
 * Lays out WINDOW (a file) with a mailbox, opens a session, proves it works
 * with a HELLO, then breaks one rule and checks that the server closes the
 * link (dev_ack withdrawn) within 3 s:
 *   garbage   a slot whose length is 9999
 *   ahead     a producer index far ahead of what was written
 *   reply     a reply where requests travel
 *   junk      random bytes as a message
 *
 *   badmbox --device WINDOW
 *
 * A hostile device side: waits for a driver to lay out WINDOW, accepts its
 * session, takes its HELLO and answers with a slot whose length is 9999;
 * then waits 3 s for the driver to close the session.  Prints PASS/FAIL.
 *
 *   badmbox --storm SOCKET SECONDS
 *
 * Connects to an ivshmem server as a peer and rings every vector of the
 * server side as fast as it can for SECONDS; prints how many rings.
 * Prints "PASS ..." or "FAIL ...: why"; exit 0 on PASS.  Built from the
 * project's own core (src/core) so that only the one thing under test is wrong.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ivshmem.h"
#include "mailbox.h"
#include "xvl_atomic.h"

#define WIN_SIZE (4u << 20)
#define MBOX_OFF 0x1000u

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int fail(const char *sc, const char *why)
{
	printf("FAIL %s: %s\n", sc, why);
	return 1;
}

/* Publish raw bytes as the next request. */
static void raw(struct xvl_mbox *mb, uint32_t len, const void *msg, size_t n, uint32_t prod_bump)
{
	uint32_t prod = mb->tx;
	uint8_t *slot = mb->base + XVL_MBOX_OFF_SLOTS + (prod & (mb->n_slots - 1)) * XVL_MBOX_SLOT_SIZE;
	xvl_wr32((uint32_t *)(void *)slot, len);
	xvl_wr32((uint32_t *)(void *)(slot + 4), mb->session);
	memcpy(slot + 16, msg, n);
	xvl_wr32((uint32_t *)(void *)(mb->base + XVL_MBOX_OFF_REQ_PROD), prod + prod_bump);
}

static int storm(const char *sock, int secs)
{
	struct xvl_os_window w;
	struct xvl_doorbell db;
	struct xvl_errbuf eb;
	int s;
	if (xvl_ivsh_peer_connect(sock, &w, &db, &s, &eb) < 0) {
		printf("FAIL storm: %s\n", eb.msg);
		return 1;
	}
	unsigned long n = 0;
	for (uint64_t end = now_ms() + (uint64_t)secs * 1000; now_ms() < end;)
		for (unsigned v = 0; v < db.n_peer; v++, n++)
			xvl_doorbell_ring(&db, v);
	printf("PASS storm: %lu rings in %d s\n", n, secs);
	return 0;
}

static int bad_device(const char *path)
{
	uint64_t end = now_ms() + 10000;
	struct xvl_mbox mb;
	struct xvl_msg m;
	int rc = -EAGAIN;
	void *p = MAP_FAILED;
	while (now_ms() < end) {
		int fd = open(path, O_RDWR);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= (off_t)XVL_WIN_MIN_SIZE) {
			p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			struct xvl_mem w = {.base = p, .size = (uint64_t)st.st_size};
			if (p != MAP_FAILED && (rc = xvl_mbox_open(&mb, &w, 0)) == 0)
				break;
			if (p != MAP_FAILED)
				munmap(p, (size_t)st.st_size);
		}
		if (fd >= 0)
			close(fd);
		usleep(2000);
	}
	if (rc != 0)
		return fail("device", "no driver laid out the window");
	while (xvl_mbox_accept(&mb) != 1)
		if (now_ms() > end)
			return fail("device", "no session");
		else
			usleep(500);
	while ((rc = xvl_mbox_recv(&mb, &m)) == 0 && now_ms() < end)
		usleep(200);
	if (rc != 1 || m.type != XVL_MSG_HELLO)
		return fail("device", "no HELLO");
	uint8_t *slot = mb.base + XVL_MBOX_OFF_SLOTS + (uint64_t)mb.n_slots * XVL_MBOX_SLOT_SIZE +
			(mb.tx & (mb.n_slots - 1)) * XVL_MBOX_SLOT_SIZE;
	xvl_wr32((uint32_t *)(void *)slot, 9999);
	xvl_wr32((uint32_t *)(void *)(slot + 4), mb.session);
	xvl_wr32((uint32_t *)(void *)(mb.base + XVL_MBOX_OFF_RSP_PROD), mb.tx + 1);
	for (end = now_ms() + 3000; now_ms() < end; usleep(1000))
		if (xvl_mbox_recv(&mb, &m) == -ECONNRESET) {
			printf("PASS device: the driver closed the session\n");
			return 0;
		}
	return fail("device", "the driver kept the session");
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--device"))
		return bad_device(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "--storm"))
		return storm(argv[2], atoi(argv[3]));
	if (argc != 3) {
		fprintf(stderr, "usage: badmbox WINDOW garbage|ahead|reply|junk\n");
		return 2;
	}
	const char *sc = argv[2];
	int fd = open(argv[1], O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, WIN_SIZE) < 0)
		return fail(sc, "cannot create the window file");
	void *p = mmap(NULL, WIN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return fail(sc, "mmap");
	struct xvl_mem m = {.base = p, .size = WIN_SIZE};
	struct xvl_mbox mb;
	if (xvl_win_format(&m) || xvl_mbox_format(&mb, &m, MBOX_OFF, 16, 0) || xvl_mbox_connect(&mb))
		return fail(sc, "cannot lay out the mailbox");
	uint64_t end = now_ms() + 5000;
	while (xvl_mbox_connected(&mb) != 1) {
		if (now_ms() > end)
			return fail(sc, "the server did not accept the session");
		usleep(1000);
	}
	struct xvl_msg hello = {.type = XVL_MSG_HELLO, .seq = 1}, rep;
	hello.u.hello.major = XVL_PROTO_MAJOR;
	hello.u.hello.minor = XVL_PROTO_MINOR;
	snprintf(hello.u.hello.name, sizeof(hello.u.hello.name), "badmbox-%s", sc);
	if (xvl_mbox_send(&mb, &hello))
		return fail(sc, "cannot send HELLO");
	int rc = 0;
	for (end = now_ms() + 3000; (rc = xvl_mbox_recv(&mb, &rep)) == 0 && now_ms() < end;)
		usleep(200);
	if (rc != 1 || !xvl_msg_is_reply(&rep) || rep.status != 0)
		return fail(sc, "no HELLO reply: the link did not work to begin with");

	uint8_t buf[XVL_MSG_MAX_SIZE];
	struct xvl_msg r = {.type = XVL_MSG_GET_STATUS, .seq = 2, .flags = XVL_MSG_F_REPLY};
	int n;
	if (!strcmp(sc, "garbage")) {
		raw(&mb, 9999, "", 0, 1);
	} else if (!strcmp(sc, "ahead")) {
		raw(&mb, 16, "", 0, 1000);
	} else if (!strcmp(sc, "reply")) {
		n = xvl_msg_encode(&r, buf, sizeof(buf));
		raw(&mb, (uint32_t)n, buf, (size_t)n, 1);
	} else if (!strcmp(sc, "junk")) {
		srand(7);
		for (unsigned i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)rand();
		raw(&mb, 200, buf, 200, 1);
	} else {
		return fail(sc, "unknown scenario");
	}
	for (end = now_ms() + 3000; now_ms() < end; usleep(1000)) {
		rc = xvl_mbox_recv(&mb, &rep);
		if (rc == -ECONNRESET) {
			printf("PASS %s: the server closed the link\n", sc);
			return 0;
		}
	}
	return fail(sc, "the server kept the link open");
}
