/* SPDX-License-Identifier: MIT */
/* Tests of the Linux OS layer: windows, sockets with fd passing, eventfds. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "os.h"
#include "tap.h"

static char tmpdir[64];

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static void test_memfd_window(void)
{
	struct xvl_errbuf eb = { "" };
	struct xvl_os_window a, b;
	const uint64_t size = 1 << 20;

	CHECK(xvl_os_window_create(&a, NULL, size, &eb) == 0, "memfd window created: %s", eb.msg);
	CHECK(a.fd >= 0 && a.mem.base && a.mem.size == size, "fd, mapping and size set");
	CHECK((fcntl(a.fd, F_GETFD) & FD_CLOEXEC) != 0, "window fd is close-on-exec");
	int seals = fcntl(a.fd, F_GET_SEALS);
	CHECK(seals >= 0 && (seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) ==
	      (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), "sealed against shrink, grow, reseal");
	CHECK(ftruncate(a.fd, 4096) < 0 && errno == EPERM, "the peer cannot shrink it");

	CHECK(xvl_os_window_map(&b, dup(a.fd), size, &eb) == 0, "second mapping: %s", eb.msg);
	CHECK(b.mem.base != a.mem.base && b.mem.size == size, "distinct mapping of the same size");
	strcpy((char *)a.mem.base + 12345, "through a");
	b.mem.base[size - 1] = 0x5a;
	CHECK(strcmp((char *)b.mem.base + 12345, "through a") == 0, "write via a seen via b");
	CHECK(a.mem.base[size - 1] == 0x5a, "write via b seen via a (last byte)");

	CHECK(xvl_win_format(&a.mem) == 0 && xvl_win_check(&b.mem) == 0,
	      "header formatted on one side checks on the other");

	struct xvl_os_window c;
	int fd = dup(a.fd);
	eb.msg[0] = 0;
	int rc = xvl_os_window_map(&c, fd, size * 2, &eb);
	CHECK(rc == -EINVAL, "map with a size bigger than the file -> -EINVAL");
	CHECK(strstr(eb.msg, "1048576") && strstr(eb.msg, "2097152"), "message names both sizes: %s",
	      eb.msg);
	CHECK(!fd_open(fd) && c.fd == -1 && c.mem.base == NULL,
	      "the fd is closed and the window left empty");
	CHECK(xvl_os_window_map(&c, dup(a.fd), 0, &eb) == -EINVAL, "map of size 0 -> -EINVAL");
	CHECK(xvl_os_window_map(&c, -1, size, &eb) < 0, "map of fd -1 fails");

	xvl_os_window_close(&b);
	CHECK(b.fd == -1 && b.mem.base == NULL, "close empties the window");
	xvl_os_window_close(&b);
	CHECK(a.mem.base[size - 1] == 0x5a, "closing one mapping leaves the other");
	xvl_os_window_close(&a);

	struct xvl_os_window z;
	memset(&z, 0, sizeof(z));
	bool had0 = fd_open(0);
	xvl_os_window_close(&z);
	CHECK(fd_open(0) == had0, "closing a zeroed window is safe (and leaves fd 0 alone)");

	CHECK(xvl_os_window_create(&a, "bogus", size, &eb) == -EINVAL && strstr(eb.msg, "bogus"),
	      "unknown backing -> -EINVAL naming it: %s", eb.msg);
	CHECK(xvl_os_window_create(&a, "memfd", 0, &eb) == -EINVAL, "size 0 -> -EINVAL");
}

static void test_huge_windows(void)
{
	struct xvl_errbuf eb = { "" };
	struct xvl_os_window w;
	int rc = xvl_os_window_create(&w, "memfd-huge", 100000, &eb);
	if (rc == 0) {
		struct statfs sf;
		CHECK(fstatfs(w.fd, &sf) == 0 && w.mem.size >= 100000 &&
		      w.mem.size % (uint64_t)sf.f_bsize == 0,
		      "memfd-huge window rounded up to a huge page (%llu bytes)",
		      (unsigned long long)w.mem.size);
		xvl_os_window_close(&w);
	} else {
		CHECK(rc == -ENOMEM || rc == -EINVAL || rc == -ENOSYS,
		      "memfd-huge without huge pages fails cleanly (%d)", rc);
		CHECK(strstr(eb.msg, "huge") != NULL, "and says why: %s", eb.msg);
		CHECK(w.fd == -1 && w.mem.base == NULL, "leaving the window empty");
	}

	char path[128], backing[160];
	snprintf(path, sizeof(path), "%s/notheap", tmpdir);
	snprintf(backing, sizeof(backing), "hugetlbfs:%s", path);
	rc = xvl_os_window_create(&w, backing, 1 << 20, &eb);
	CHECK(rc == -EINVAL && strstr(eb.msg, path) && strstr(eb.msg, "hugetlbfs"),
	      "hugetlbfs: on a non-hugetlbfs directory -> -EINVAL: %s", eb.msg);
	CHECK(access(path, F_OK) < 0, "and the file it created is removed");
}

static void test_shm_window(void)
{
	struct xvl_errbuf eb = { "" };
	struct xvl_os_window w, w2;
	char name[64], backing[80], dev[96];
	snprintf(name, sizeof(name), "xvloop-test-%d", (int)getpid());
	snprintf(backing, sizeof(backing), "shm:%s", name);
	snprintf(dev, sizeof(dev), "/dev/shm/%s", name);

	CHECK(xvl_os_window_create(&w, backing, 1 << 20, &eb) == 0, "shm window created: %s", eb.msg);
	struct stat st;
	CHECK(stat(dev, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 1 << 20,
	      "%s exists, mode 0600, 1 MiB", dev);
	CHECK(xvl_os_window_create(&w2, backing, 1 << 20, &eb) == -EEXIST && strstr(eb.msg, name),
	      "a second create of the same name -> -EEXIST: %s", eb.msg);
	char slash[96];
	snprintf(slash, sizeof(slash), "/%s", name);
	int fd = shm_open(slash, O_RDWR | O_CLOEXEC, 0);
	CHECK(fd >= 0 && xvl_os_window_map(&w2, fd, 1 << 20, &eb) == 0, "another open maps it");
	w.mem.base[4242] = 42;
	CHECK(w2.mem.base[4242] == 42, "writes visible through the other open");
	xvl_os_window_close(&w2);
	xvl_os_window_close(&w);
	CHECK(shm_unlink(slash) == 0 && access(dev, F_OK) < 0, "test removed %s", dev);
	CHECK(xvl_os_window_create(&w, "shm:a/b", 1 << 20, &eb) == -EINVAL,
	      "shm name with a slash -> -EINVAL");
}

static void test_listen(void)
{
	struct xvl_errbuf eb = { "" };
	char path[128], file[128];
	snprintf(path, sizeof(path), "%s/link.sock", tmpdir);
	snprintf(file, sizeof(file), "%s/regular", tmpdir);

	int fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	close(fd);
	int rc = xvl_os_listen(file, &eb);
	CHECK(rc == -EEXIST && strstr(eb.msg, file), "listen refuses a regular file: %s", eb.msg);
	CHECK(access(file, F_OK) == 0, "and leaves it in place");
	unlink(file);

	int l = xvl_os_listen(path, &eb);
	CHECK(l >= 0, "listen on %s: %s", path, l < 0 ? eb.msg : "ok");
	rc = xvl_os_listen(path, &eb);
	CHECK(rc == -EADDRINUSE, "a second listen while the first is live -> -EADDRINUSE: %s",
	      eb.msg);
	close(l);
	l = xvl_os_listen(path, &eb);
	CHECK(l >= 0, "a stale socket file is replaced");
	close(l);
	unlink(path);

	char longp[200];
	memset(longp, 'x', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = 0;
	CHECK(xvl_os_listen(longp, &eb) == -ENAMETOOLONG && strstr(eb.msg, "limit"),
	      "too long a path -> -ENAMETOOLONG: %.60s...", eb.msg);
	CHECK(xvl_os_connect(longp, &eb) == -ENAMETOOLONG, "connect too: -ENAMETOOLONG");
	rc = xvl_os_connect(path, &eb);
	CHECK(rc == -ENOENT && strstr(eb.msg, path), "connect to a missing socket: %s", eb.msg);
}

static void test_seqpacket(void)
{
	struct xvl_errbuf eb = { "" };
	char path[128];
	snprintf(path, sizeof(path), "%s/pair.sock", tmpdir);
	int before = count_fds();

	int l = xvl_os_listen(path, &eb);
	int c = xvl_os_connect(path, &eb);
	int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	CHECK(l >= 0 && c >= 0 && s >= 0, "listen, connect, accept");
	int type = 0;
	socklen_t tl = sizeof(type);
	getsockopt(c, SOL_SOCKET, SO_TYPE, &type, &tl);
	CHECK(type == SOCK_SEQPACKET && (fcntl(c, F_GETFD) & FD_CLOEXEC), "SEQPACKET, close-on-exec");

	/* Two descriptors, both usable on the far side. */
	struct xvl_os_window w, wr;
	xvl_os_window_create(&w, "memfd", 1 << 20, &eb);
	int efd = xvl_os_eventfd();
	int out[2] = { w.fd, efd };
	CHECK(xvl_os_send(c, "hello", 5, out, 2) == 0, "send 5 bytes + 2 fds");
	char buf[64];
	int in[XVL_OS_MAX_FDS];
	unsigned n = 99;
	long r = xvl_os_recv(s, buf, sizeof(buf), in, XVL_OS_MAX_FDS, &n);
	CHECK(r == 5 && memcmp(buf, "hello", 5) == 0 && n == 2, "received 5 bytes and 2 fds");
	CHECK(n == 2 && (fcntl(in[0], F_GETFD) & FD_CLOEXEC) && (fcntl(in[1], F_GETFD) & FD_CLOEXEC),
	      "received fds are close-on-exec");
	CHECK(xvl_os_window_map(&wr, in[0], 1 << 20, &eb) == 0, "received window fd maps");
	w.mem.base[777] = 7;
	CHECK(wr.mem.base[777] == 7, "and shares memory with the sender");
	CHECK(xvl_os_eventfd_signal(in[1]) == 0 && xvl_os_eventfd_drain(efd) == 1,
	      "received eventfd signals the sender's");
	xvl_os_window_close(&wr);
	close(in[1]);

	/* Oversized message, with descriptors: nothing is kept. */
	char big[200];
	memset(big, 'b', sizeof(big));
	int mid = count_fds();
	CHECK(xvl_os_send(c, big, sizeof(big), out, 2) == 0, "send 200 bytes + 2 fds");
	n = 99;
	r = xvl_os_recv(s, buf, sizeof(buf), in, XVL_OS_MAX_FDS, &n);
	CHECK(r == -EMSGSIZE && n == 0, "message larger than cap -> -EMSGSIZE, no fds (%ld)", r);
	CHECK(count_fds() == mid, "and its fds were closed");

	/* More descriptors than max_fds. */
	int three[3] = { efd, efd, w.fd };
	CHECK(xvl_os_send(c, "x", 1, three, 3) == 0, "send 1 byte + 3 fds");
	n = 99;
	r = xvl_os_recv(s, buf, sizeof(buf), in, 2, &n);
	CHECK(r == -EMSGSIZE && n == 0, "3 fds with max_fds 2 -> -EMSGSIZE, no fds (%ld)", r);
	CHECK(count_fds() == mid, "all three were closed");
	CHECK(xvl_os_send(c, "y", 1, three, 1) == 0, "send 1 fd");
	r = xvl_os_recv(s, buf, sizeof(buf), NULL, 0, &n);
	CHECK(r == -EMSGSIZE && count_fds() == mid, "fds where none are expected -> -EMSGSIZE, closed");

	/* The socket is still in step after the errors. */
	CHECK(xvl_os_send(c, "again", 5, NULL, 0) == 0, "send without fds");
	r = xvl_os_recv(s, buf, sizeof(buf), in, 2, &n);
	CHECK(r == 5 && n == 0 && memcmp(buf, "again", 5) == 0, "received the next message intact");

	int nine[9] = { 0 };
	CHECK(xvl_os_send(c, "z", 1, nine, 9) == -EINVAL, "send of more than XVL_OS_MAX_FDS -> -EINVAL");

	close(c);
	r = xvl_os_recv(s, buf, sizeof(buf), in, 2, &n);
	CHECK(r == 0 && n == 0, "orderly close -> 0");
	CHECK(xvl_os_send(s, "x", 1, NULL, 0) == -EPIPE, "send to a closed peer -> -EPIPE, no SIGPIPE");
	close(s);
	close(l);
	unlink(path);
	close(efd);
	xvl_os_window_close(&w);
	CHECK(count_fds() == before, "no descriptor leaked (%d before, %d after)", before,
	      count_fds());
}

static void test_stream(void)
{
	struct xvl_errbuf eb = { "" };
	int sv[2];
	int before = count_fds();
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "stream socketpair");
	int efd = xvl_os_eventfd();
	char msg[100], got[100];
	for (unsigned i = 0; i < sizeof(msg); i++)
		msg[i] = (char)i;
	CHECK(xvl_os_send(sv[0], msg, 40, &efd, 1) == 0 && xvl_os_send(sv[0], msg + 40, 60, NULL, 0) == 0,
	      "send 100 bytes in two writes, one fd");
	int in[4];
	unsigned n = 0;
	CHECK(xvl_os_recv_exact(sv[1], got, 100, in, 4, &n) == 0 && memcmp(got, msg, 100) == 0 &&
	      n == 1, "recv_exact reassembles 100 bytes and the fd");
	if (n == 1)
		close(in[0]);
	CHECK(xvl_os_send(sv[0], msg, 10, (int[]){ efd, efd }, 2) == 0, "send 10 bytes + 2 fds");
	CHECK(xvl_os_recv_exact(sv[1], got, 10, in, 1, &n) == -EMSGSIZE && n == 0,
	      "too many fds on a stream -> -EMSGSIZE");
	CHECK(xvl_os_send(sv[0], msg, 10, NULL, 0) == 0 &&
	      xvl_os_recv_exact(sv[1], got, 10, in, 1, &n) == 0 && memcmp(got, msg, 10) == 0,
	      "the stream stays in step after it");
	CHECK(xvl_os_send(sv[0], msg, 30, &efd, 1) == 0, "send 30 bytes then close");
	close(sv[0]);
	CHECK(xvl_os_recv_exact(sv[1], got, 50, in, 4, &n) == -ECONNRESET && n == 0,
	      "early close -> -ECONNRESET");
	close(sv[1]);
	close(efd);
	CHECK(count_fds() == before, "no descriptor leaked");

	(void)eb;
}

static void test_misc(void)
{
	int e = xvl_os_eventfd();
	CHECK(e >= 0 && (fcntl(e, F_GETFL) & O_NONBLOCK) && (fcntl(e, F_GETFD) & FD_CLOEXEC),
	      "eventfd non-blocking, close-on-exec");
	CHECK(xvl_os_eventfd_drain(e) == 0, "drain with nothing pending -> 0");
	xvl_os_eventfd_signal(e);
	xvl_os_eventfd_signal(e);
	xvl_os_eventfd_signal(e);
	CHECK(xvl_os_eventfd_drain(e) == 3, "three signals drain as 3");
	CHECK(xvl_os_eventfd_drain(e) == 0, "then 0");
	close(e);
	CHECK(xvl_os_eventfd_signal(-1) == -EBADF, "signal of a bad fd -> -EBADF");

	uint64_t t0 = xvl_os_now_ns();
	usleep(2000);
	uint64_t t1 = xvl_os_now_ns();
	CHECK(t1 - t0 >= 2000000 && t1 - t0 < 1000000000, "now_ns advances (%llu ns)",
	      (unsigned long long)(t1 - t0));

	struct xvl_errbuf eb;
	CHECK(xvl_err(&eb, -ENOENT, "x %d %s", 5, "y") == -ENOENT && strcmp(eb.msg, "x 5 y") == 0,
	      "xvl_err formats and returns rc");
	CHECK(xvl_err(NULL, -EIO, "nothing") == -EIO, "xvl_err with no buffer");
	char longs[400];
	memset(longs, 'q', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = 0;
	xvl_err(&eb, -1, "%s", longs);
	CHECK(strlen(eb.msg) == sizeof(eb.msg) - 1, "long messages are truncated, terminated");
}

/* Peers' eventfds: what is one, and reads/writes that can never block for good. */
static void test_peer_eventfds(void)
{
	struct xvl_os_guard g;
	int p[2], e = xvl_os_eventfd(), mfd = memfd_create("t", MFD_CLOEXEC);
	uint64_t v, max = 0xfffffffffffffffeull;

	CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe");
	CHECK(xvl_os_is_eventfd(e) == 1, "an eventfd is one");
	CHECK(xvl_os_is_eventfd(p[0]) == 0 && xvl_os_is_eventfd(p[1]) == 0, "a pipe is not");
	CHECK(xvl_os_is_eventfd(mfd) == 0, "a memfd is not");
	CHECK(xvl_os_is_eventfd(-1) < 0, "a bad fd cannot be told");
	CHECK(xvl_os_guard_init(&g) == 0, "guard set up");

	CHECK(xvl_os_peer_eventfd_drain(&g, e, &v) == 0 && v == 0, "empty non-blocking: 0, nothing");
	CHECK(xvl_os_peer_eventfd_signal(&g, e) == 0 && xvl_os_peer_eventfd_drain(&g, e, &v) == 0 &&
		      v == 1, "signal then drain: 1");
	CHECK(write(e, &max, sizeof(max)) == sizeof(max), "counter to its maximum");
	CHECK(xvl_os_peer_eventfd_signal(&g, e) == -EAGAIN, "non-blocking at the maximum: -EAGAIN");

	/* the peer cleared O_NONBLOCK (the open file description is shared) */
	fcntl(e, F_SETFL, 0);
	uint64_t t0 = xvl_os_now_ns();
	int rc = xvl_os_peer_eventfd_signal(&g, e);
	uint64_t ms = (xvl_os_now_ns() - t0) / 1000000;
	CHECK(rc == -ETIMEDOUT && ms < 500, "blocking at the maximum: -ETIMEDOUT after %llu ms",
	      (unsigned long long)ms);
	CHECK(read(e, &v, sizeof(v)) == sizeof(v), "emptied");
	t0 = xvl_os_now_ns();
	rc = xvl_os_peer_eventfd_drain(&g, e, &v);
	ms = (xvl_os_now_ns() - t0) / 1000000;
	CHECK(rc == -ETIMEDOUT && ms < 500, "blocking and empty: drain -ETIMEDOUT after %llu ms",
	      (unsigned long long)ms);
	xvl_os_guard_release(&g);
	t0 = xvl_os_now_ns();
	usleep(60 * 1000); /* a released guard interrupts nothing */
	CHECK(xvl_os_now_ns() - t0 >= 60000000ull, "released: sleeps are not interrupted");
	xvl_os_guard_fini(&g);
	close(e);
	close(mfd);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/xvl-test-os-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_memfd_window();
	test_huge_windows();
	test_shm_window();
	test_listen();
	test_seqpacket();
	test_stream();
	test_misc();
	test_peer_eventfds();
	rmdir(tmpdir);
	return tap_done();
}
