/* SPDX-License-Identifier: MIT */
/*
 * The server's io_uring (srv_ring_init) serves the file backend's opcodes
 * and refuses every other one, and under a seccomp filter no second,
 * unrestricted ring can be made (issue 9, item 15).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "srv.h"
#include "tap.h"

/* Submit one prepared SQE and return its completion's result. */
static int run_one(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	int rc = io_uring_submit(ring);

	if (rc != 1)
		return rc < 0 ? rc : -EIO;
	rc = io_uring_wait_cqe(ring, &cqe);
	if (rc < 0)
		return rc;
	rc = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return rc;
}

static void test_opcodes(void)
{
	struct io_uring ring;
	char buf[512];
	struct iovec iov = {buf, sizeof(buf)};
	int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC), rc;
	int sv[2];

	rc = srv_ring_init(&ring, 8);
	CHECK(rc == 0, "restricted ring created (%s)", strerror(-rc));
	if (rc < 0)
		return;
	io_uring_prep_readv(io_uring_get_sqe(&ring), fd, &iov, 1, 0);
	CHECK(run_one(&ring) == (int)sizeof(buf), "READV (the file backend's) is served");
	io_uring_prep_fsync(io_uring_get_sqe(&ring), fd, IORING_FSYNC_DATASYNC);
	rc = run_one(&ring);
	CHECK(rc != -EACCES, "FSYNC is allowed (%d)", rc);

	io_uring_prep_openat(io_uring_get_sqe(&ring), AT_FDCWD, "/etc/passwd", O_RDONLY, 0);
	rc = run_one(&ring);
	CHECK(rc == -EACCES, "OPENAT on the ring refused with EACCES (got %d)", rc);
	if (rc >= 0)
		close(rc);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	io_uring_prep_send(io_uring_get_sqe(&ring), sv[0], "x", 1, 0);
	rc = run_one(&ring);
	CHECK(rc == -EACCES, "SEND on the ring refused (got %d)", rc);
	io_uring_prep_nop(io_uring_get_sqe(&ring));
	rc = run_one(&ring);
	CHECK(rc == -EACCES, "NOP refused: only the four opcodes pass (got %d)", rc);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	io_uring_prep_readv(sqe, 0, &iov, 1, 0);
	sqe->flags |= IOSQE_FIXED_FILE;
	rc = run_one(&ring);
	CHECK(rc == -EACCES, "SQE flags (FIXED_FILE) refused (got %d)", rc);
	rc = io_uring_register_files(&ring, &fd, 1);
	CHECK(rc < 0, "register operations refused (got %d)", rc);
	close(sv[0]);
	close(sv[1]);
	io_uring_queue_exit(&ring);
	close(fd);
}

/* Under a seccomp filter, srv_ring_init forbids any further io_uring_setup. */
static void test_no_second_ring(void)
{
	pid_t pid = fork();
	int status = -1;

	if (pid == 0) {
		struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
		struct sock_fprog prog = {.len = 1, .filter = &allow};
		struct io_uring a, b;
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
			_exit(2);
		if (srv_ring_init(&a, 8) < 0)
			_exit(3);
		_exit(io_uring_queue_init(8, &b, 0) == -EPERM ? 0 : 4);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "sandboxed: after the server's ring, io_uring_setup is refused (exit %d)",
	      WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

int main(void)
{
	test_opcodes();
	test_no_second_ring();
	return tap_done();
}
