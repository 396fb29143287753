/* SPDX-License-Identifier: MIT */
/*
 * The client API against a real server in another process: every request
 * type (read, write, flush, discard, write-zeroes, get-id), zero-copy and
 * copied buffers, completion through the pollable queue fd, polling mode,
 * and the refusals of malformed requests.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server.h"
#include "tap.h"
#include "xvloop/xvl.h"

#define DISK (8u << 20)

struct env {
	char dir[64];
	char sock[128];
	char disk[128];
	pid_t server;
};

static pid_t start_server(struct env *e)
{
	struct xvl_server_opts o = {.listen = e->sock, .n_devs = 2, .quiet = true};
	struct xvl_errbuf eb;
	char spec[300];
	snprintf(spec, sizeof(spec), "name=disk0,backend=file,path=%s,queues=2", e->disk);
	if (xvl_dev_spec_parse(&o.devs[0], spec, &eb) < 0 ||
	    xvl_dev_spec_parse(&o.devs[1], "name=mem1,backend=ram,size=4M,ro=on", &eb) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		struct xvl_server *s;
		if (xvl_server_create(&s, &o, &eb) < 0)
			_exit(1);
		int rc = xvl_server_run(s);
		xvl_server_destroy(s);
		_exit(rc < 0);
	}
	return pid;
}

static int setup(struct env *e)
{
	strcpy(e->dir, "/tmp/xvl-client-test.XXXXXX");
	if (!mkdtemp(e->dir))
		return -1;
	snprintf(e->sock, sizeof(e->sock), "%s/s.sock", e->dir);
	snprintf(e->disk, sizeof(e->disk), "%s/disk.img", e->dir);
	int fd = open(e->disk, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, DISK) < 0)
		return -1;
	close(fd);
	e->server = start_server(e);
	for (int i = 0; i < 300 && access(e->sock, F_OK); i++)
		usleep(10000);
	return access(e->sock, F_OK);
}

static void teardown(struct env *e)
{
	int st = 0;
	kill(e->server, SIGTERM);
	waitpid(e->server, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exits cleanly on SIGTERM");
	unlink(e->disk);
	unlink(e->sock);
	rmdir(e->dir);
}

static bool all(const uint8_t *p, uint8_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

static void test_request_types(struct xvl_client *c, struct xvl_blk *b)
{
	uint8_t *win = xvl_buf_alloc(c, 65536);
	uint8_t *heap = malloc(65536);
	char id[21];

	memset(win, 0xa5, 65536);
	CHECK(xvl_blk_write(b, 4096, win, 65536) == 0, "write, zero-copy buffer");
	CHECK(xvl_blk_read(b, 4096, heap, 65536) == 0 && all(heap, 0xa5, 65536),
	      "read into an application buffer returns it");
	CHECK(xvl_blk_flush(b) == 0, "flush");
	CHECK(xvl_blk_write_zeroes(b, 8192, 8192) == 0, "write-zeroes");
	CHECK(xvl_blk_read(b, 4096, win, 65536) == 0 && all(win, 0xa5, 4096) &&
		      all(win + 4096, 0, 8192) && all(win + 12288, 0xa5, 65536 - 12288),
	      "write-zeroes zeroed exactly its range");
	CHECK(xvl_blk_discard(b, 0, 1 << 20) == 0, "discard");
	CHECK(xvl_blk_get_id(b, id) == 0 && !strcmp(id, "disk0"), "get-id is the device name (%s)",
	      id);
	CHECK(xvl_blk_read(b, DISK - 512, heap, 512) == 0, "last sector readable");
	CHECK(xvl_blk_read(b, DISK, heap, 512) == -EINVAL, "read past the end refused");
	CHECK(xvl_blk_read(b, 100, heap, 512) == -EINVAL, "unaligned offset refused");
	CHECK(xvl_blk_write(b, 0, heap, 100) == -EINVAL, "unaligned length refused");
	free(heap);
	xvl_buf_free(c, win);
}

/* Completions through the queue fd in the caller's own poll loop, on queue 1. */
static void test_queue_fd(struct xvl_client *c, struct xvl_blk *b)
{
	uint8_t *buf = xvl_buf_alloc(c, 8 * 4096);
	int fd = xvl_blk_queue_fd(b, 1);
	unsigned done = 0;

	CHECK(fd >= 0, "queue 1 has a pollable fd");
	for (unsigned i = 0; i < 8; i++) {
		struct xvl_blk_req r = {.op = XVL_BLK_READ, .offset = i * 4096ull,
					.buf = buf + i * 4096, .len = 4096, .user = (void *)(uintptr_t)(i + 1)};
		xvl_blk_submit(b, 1, &r);
	}
	xvl_blk_kick(b, 1);
	for (int rounds = 0; rounds < 100 && done < 8; rounds++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		struct xvl_blk_cpl cpl[8];
		poll(&p, 1, 1000);
		int n = xvl_blk_complete(b, 1, cpl, 8);
		for (int i = 0; i < n; i++)
			done += cpl[i].result == 0;
	}
	CHECK(done == 8, "8 reads completed through the queue fd (%u)", done);
	CHECK(xvl_blk_inflight(b, 1) == 0, "nothing left in flight");
	xvl_buf_free(c, buf);
}

static void test_read_only(struct xvl_client *c)
{
	struct xvl_blk_opts o = {XVL_BLK_OPTS_INIT, .device = 1, .poll = true};
	struct xvl_blk *b;
	struct xvl_blk_info in;
	uint8_t buf[4096];

	CHECK(xvl_blk_open(c, &o, &b) == 0, "open the ram device in polling mode");
	xvl_blk_get_info(b, &in);
	CHECK(in.read_only && in.capacity == 4u << 20, "read-only, 4 MiB");
	CHECK(xvl_blk_queue_fd(b, 0) == -1, "no queue fd in polling mode");
	CHECK(xvl_blk_read(b, 0, buf, sizeof(buf)) == 0, "polling read");
	CHECK(xvl_blk_write(b, 0, buf, sizeof(buf)) == -EROFS, "write to a read-only device refused");
	xvl_blk_close(b);
}

int main(void)
{
	struct env e;
	struct xvl_client *c;
	struct xvl_blk *b;
	char err[256];

	if (setup(&e)) {
		CHECK(0, "server started");
		return tap_done();
	}
	CHECK(xvl_client_connect(&c, e.sock, NULL, err, sizeof(err)) == 0, "connect: %s", err);
	CHECK(xvl_client_num_devices(c) == 2 && xvl_client_find(c, "mem1") == 1, "two devices");
	struct xvl_blk_opts o = {XVL_BLK_OPTS_INIT, .device = 0, .num_queues = 2};
	CHECK(xvl_blk_open(c, &o, &b) == 0, "open disk0 with 2 queues");
	test_request_types(c, b);
	test_queue_fd(c, b);
	xvl_blk_close(b);
	test_read_only(c);
	xvl_client_close(c);
	teardown(&e);
	return tap_done();
}
