/* SPDX-License-Identifier: MIT */
/*
 * vhost-user frontend against a real qemu-storage-daemon (null-co disk,
 * vhost-user-blk export) and against scripted misbehaving backends.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "os.h"
#include "tap.h"
#include "vhost.h"
#include "virtq.h"

#define QSD "/usr/bin/qemu-storage-daemon"
#define DISK_SIZE (64ull << 20)

static char tmpdir[64];

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* ================================================================ real backend */

static pid_t qsd_start(const char *sock)
{
	char blockdev[] = "driver=null-co,node-name=n0,size=67108864,read-zeroes=on";
	char exp[256];
	pid_t pid;

	snprintf(exp, sizeof(exp),
		 "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path=%s,"
		 "writable=on,num-queues=2", sock);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive a crashed test */
		dup2(2, 1); /* keep TAP output on stdout clean */
		execl(QSD, QSD, "--blockdev", blockdev, "--export", exp, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Wait up to 10 s for the export socket; false if the daemon died or never listened. */
static bool qsd_wait(pid_t pid, const char *sock)
{
	struct stat st;

	for (int i = 0; i < 1000; i++) {
		if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode))
			return true;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return false;
		sleep_ms(10);
	}
	return false;
}

static void qsd_stop(pid_t pid)
{
	int status;

	kill(pid, SIGTERM);
	for (int i = 0; i < 500; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return;
		sleep_ms(10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
}

/* Where things are in the test window. */
enum {
	QSIZE = 64,
	OFF_DESC = 0x1000,
	OFF_AVAIL = 0x1800,
	OFF_USED = 0x2000,
	OFF_HDR = 0x3000,
	OFF_STATUS = 0x3010,
	OFF_DATA = 0x10000,
	WIN_SIZE = 1 << 20,
};

struct blk_outhdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

static bool all_bytes(const uint8_t *p, size_t n, uint8_t val)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != val)
			return false;
	return true;
}

/* One virtio-blk read of 4 KiB at sector 8 through queue 0; returns the status byte or -1. */
static int blk_read_once(struct xvl_vq_drv *vq, struct xvl_os_window *w, int kick, int call,
			 uint32_t *used_len)
{
	struct blk_outhdr h = { .type = 0, .sector = 8 };
	struct xvl_sg sg[3] = { { OFF_HDR, 16 }, { OFF_DATA, 4096 }, { OFF_STATUS, 1 } };
	struct pollfd pfd = { .fd = call, .events = POLLIN };
	uint64_t token = 0;
	int rc;

	memcpy(w->mem.base + OFF_HDR, &h, sizeof(h));
	w->mem.base[OFF_STATUS] = 0xff;
	memset(w->mem.base + OFF_DATA, 0xaa, 4096);
	rc = xvl_vq_drv_add(vq, sg, 1, 2, 42);
	CHECK(rc == 0, "queue a virtio-blk read (rc %d)", rc);
	if (xvl_vq_drv_kick_prepare(vq))
		xvl_os_eventfd_signal(kick);
	rc = poll(&pfd, 1, 5000);
	CHECK(rc == 1 && xvl_os_eventfd_drain(call) > 0, "call eventfd signalled");
	for (int i = 0; i < 100; i++) {
		rc = xvl_vq_drv_get_used(vq, &token, used_len);
		if (rc != 0)
			break;
		sleep_ms(10);
	}
	CHECK(rc == 1 && token == 42, "completion arrives (rc %d token %llu)", rc,
	      (unsigned long long)token);
	return rc == 1 ? w->mem.base[OFF_STATUS] : -1;
}

static void qsd_io(struct xvl_vhost *v)
{
	struct xvl_errbuf eb = { "" };
	struct xvl_os_window w;
	struct xvl_vq_layout l = { .num = QSIZE, .desc = OFF_DESC, .avail = OFF_AVAIL,
				   .used = OFF_USED };
	struct xvl_vq_drv vq;
	void *priv = calloc(1, xvl_vq_drv_priv_size(QSIZE));
	int kick = xvl_os_eventfd(), call = xvl_os_eventfd();
	uint32_t len = 0;
	uint16_t base = 0xffff;
	int rc;

	rc = xvl_os_window_create(&w, NULL, WIN_SIZE, &eb);
	CHECK(rc == 0, "memfd window (%s)", eb.msg);
	if (rc < 0)
		goto out;
	rc = xvl_vhost_set_features(v, 1ull << XVL_F_VERSION_1, &eb);
	CHECK(rc == 0, "SET_FEATURES VERSION_1 (%s)", eb.msg);
	rc = xvl_vhost_set_mem_table(v, w.fd, w.mem.size, w.mem.base, &eb);
	CHECK(rc == 0, "SET_MEM_TABLE: the window, one region (%s)", eb.msg);
	rc = xvl_vhost_setup_inflight(v, 1, QSIZE, false, &eb);
	CHECK(rc == 0, "inflight setup (no-op unless offered) (%s)", eb.msg);
	rc = xvl_vq_drv_init(&vq, &w.mem, &l, false, 0, 0, priv);
	CHECK(rc == 0, "driver queue over the window (rc %d)", rc);
	rc = xvl_vhost_start_vring(v, 0, &l, 0, kick, call, &eb);
	CHECK(rc == 0, "start vring 0 (%s)", eb.msg);
	if (rc == 0) {
		rc = blk_read_once(&vq, &w, kick, call, &len);
		CHECK(rc == 0, "virtio-blk read status OK (got %d)", rc);
		CHECK(len == 4097, "device wrote 4096 data bytes + status (len %u)", len);
		CHECK(all_bytes(w.mem.base + OFF_DATA, 4096, 0), "read-zeroes data landed in the window");
		rc = xvl_vhost_stop_vring(v, 0, &base, &eb);
		CHECK(rc == 0 && base == 1, "stop vring 0: base %u (%s)", base, eb.msg);
	}
	xvl_os_window_close(&w);
out:
	close(kick);
	close(call);
	free(priv);
}

static void qsd_handshake_checks(struct xvl_vhost *v)
{
	struct xvl_errbuf eb = { "" };
	uint64_t cap = 0;
	uint32_t blk_size = 0;
	int rc;

	printf("# features 0x%llx protocol 0x%llx queues %u\n", (unsigned long long)v->features,
	       (unsigned long long)v->protocol_features, v->num_queues);
	CHECK((v->features >> XVL_F_VERSION_1) & 1, "backend offers VERSION_1");
	CHECK(v->num_queues == 2, "num_queues == 2 (got %u)", v->num_queues);
	rc = xvl_vhost_get_config(v, 0, &cap, sizeof(cap), &eb);
	CHECK(rc == 0 && cap == DISK_SIZE / 512, "GET_CONFIG capacity %llu sectors (%s)",
	      (unsigned long long)cap, eb.msg);
	/* the daemon ignores the offset field: the frontend must cope */
	rc = xvl_vhost_get_config(v, 20, &blk_size, sizeof(blk_size), &eb);
	CHECK(rc == 0 && blk_size == 512, "GET_CONFIG at offset 20: blk_size %u (%s)", blk_size,
	      eb.msg);
}

static void test_qsd(void)
{
	char sock[128];
	struct xvl_vhost v;
	struct xvl_errbuf eb = { "" };
	pid_t pid;
	int rc;

	if (access(QSD, X_OK) != 0) {
		printf("ok %d - # SKIP %s not installed\n", ++tap_count, QSD);
		return;
	}
	snprintf(sock, sizeof(sock), "%s/vhost.sock", tmpdir);
	pid = qsd_start(sock);
	CHECK(pid > 0 && qsd_wait(pid, sock), "qemu-storage-daemon listens on %s", sock);

	rc = xvl_vhost_connect(&v, sock, &eb);
	CHECK(rc == 0, "handshake with qemu-storage-daemon (%s)", eb.msg);
	if (rc == 0) {
		qsd_handshake_checks(&v);
		qsd_io(&v);
		rc = xvl_vhost_reconnect(&v, &eb);
		CHECK(rc == 0 && v.num_queues == 2, "reconnect to the same daemon (%s)", eb.msg);
		xvl_vhost_close(&v);
	}
	rc = xvl_vhost_connect(&v, sock, &eb);
	CHECK(rc == 0, "daemon accepts a new frontend after close (%s)", eb.msg);
	xvl_vhost_close(&v);
	if (pid > 0)
		qsd_stop(pid);
	CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "no child left behind");
	unlink(sock);
}

/* ================================================================ fake backends */

enum fake {
	F_BAD_SIZE,     /* GET_FEATURES reply of 4 bytes */
	F_WRONG_ID,     /* GET_FEATURES answered as SET_FEATURES */
	F_BAD_VERSION,  /* version 2 in the flags */
	F_NO_REPLY_FLAG,
	F_CLOSE_FIRST,  /* closes on GET_FEATURES */
	F_CLOSE_MID,    /* closes on GET_PROTOCOL_FEATURES */
	F_TRUNCATED,    /* header says 8, sends 4 then closes */
	F_EXTRA_FD,     /* GET_FEATURES reply carries an fd */
	F_NO_V1,        /* no VERSION_1 */
	F_ZERO_QUEUES,  /* GET_QUEUE_NUM 0 */
	F_MANY_QUEUES,  /* GET_QUEUE_NUM 1000: capped */
	F_NACK,         /* REPLY_ACK status 1 */
	F_BIG_CONFIG,   /* GET_CONFIG reply longer than asked */
	F_INFLIGHT,     /* INFLIGHT_SHMFD offered, two connections */
};

struct fake_msg {
	uint32_t req, flags, size;
	uint8_t p[512];
	int fd;
};

static int fake_recv(int fd, struct fake_msg *m)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = { m, 12 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;

	m->fd = -1;
	if (recvmsg(fd, &mh, MSG_WAITALL) != 12 || m->size > sizeof(m->p))
		return -1;
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(&m->fd, CMSG_DATA(c), sizeof(int));
	if (m->size && recv(fd, m->p, m->size, MSG_WAITALL) != (ssize_t)m->size)
		return -1;
	return 0;
}

static void fake_send(int fd, uint32_t req, uint32_t flags, const void *p, uint32_t size,
		      int passfd)
{
	uint8_t buf[12 + 512];
	uint32_t h[3] = { req, flags, size };
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, 12 + size };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	memcpy(buf, h, 12);
	memcpy(buf + 12, p, size);
	if (passfd >= 0) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &passfd, sizeof(int));
	}
	if (sendmsg(fd, &mh, MSG_NOSIGNAL) < 0)
		_exit(3);
}

static void fake_u64(int fd, uint32_t req, uint64_t val)
{
	fake_send(fd, req, 0x5, &val, 8, -1);
}

static uint64_t fake_features(enum fake s)
{
	uint64_t f = 1ull << XVL_VHOST_F_PROTOCOL_FEATURES;
	return s == F_NO_V1 ? f : f | (1ull << XVL_F_VERSION_1);
}

/* GET_FEATURES, answered according to the scenario; false: stop serving. */
static bool fake_get_features(int fd, enum fake s)
{
	uint64_t f = fake_features(s);
	int nullfd;

	switch (s) {
	case F_BAD_SIZE: fake_send(fd, 1, 0x5, &f, 4, -1); return true;
	case F_WRONG_ID: fake_send(fd, 2, 0x5, &f, 8, -1); return true;
	case F_BAD_VERSION: fake_send(fd, 1, 0x6, &f, 8, -1); return true;
	case F_NO_REPLY_FLAG: fake_send(fd, 1, 0x1, &f, 8, -1); return true;
	case F_CLOSE_FIRST: return false;
	case F_TRUNCATED: {
		uint32_t h[5] = { 1, 0x5, 8, 0x12345678, 0 };
		if (send(fd, h, 16, MSG_NOSIGNAL) != 16)
			_exit(3);
		return false;
	}
	case F_EXTRA_FD:
		nullfd = open("/dev/null", O_RDONLY);
		fake_send(fd, 1, 0x5, &f, 8, nullfd);
		close(nullfd);
		return true;
	default: fake_u64(fd, 1, f); return true;
	}
}

/* SET_INFLIGHT_FD on the second connection: the area must come back with our marker. */
static uint64_t fake_check_inflight(const struct fake_msg *m)
{
	struct stat st;
	void *p;
	uint64_t bad = 1;

	if (m->fd < 0 || fstat(m->fd, &st) < 0 || st.st_size != 8192)
		return 1;
	p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, m->fd, 0);
	if (p != MAP_FAILED) {
		bad = memcmp(p, "xvl-inflight", 12) != 0;
		munmap(p, 8192);
	}
	return bad;
}

static void fake_get_inflight(int fd)
{
	uint64_t r[3] = { 8192, 0, 0 };
	int mfd = memfd_create("inflight", MFD_CLOEXEC);

	if (ftruncate(mfd, 8192) < 0)
		_exit(4);
	fake_send(fd, 31, 0x5, r, 24, mfd);
	close(mfd);
}

/* Serve one connection; false when the scenario ends it early. */
static bool fake_serve(int fd, enum fake s, int conn)
{
	struct fake_msg m;
	uint64_t pf = (1ull << XVL_VHOST_PF_MQ) | (1ull << XVL_VHOST_PF_REPLY_ACK) |
		      (1ull << XVL_VHOST_PF_CONFIG) | (1ull << 1) /* LOG_SHMFD: not taken */;

	if (s == F_INFLIGHT)
		pf |= 1ull << XVL_VHOST_PF_INFLIGHT_SHMFD;
	while (fake_recv(fd, &m) == 0) {
		uint64_t status = 0;
		uint8_t cfg[12 + 256];

		if (m.req == 1 && !fake_get_features(fd, s))
			return false;
		if (m.req == 15 && s == F_CLOSE_MID)
			return false;
		if (m.req == 15)
			fake_u64(fd, 15, pf);
		if (m.req == 16 && m.size == 8 && memcmp(m.p, &pf, 8) == 0)
			_exit(5); /* LOG_SHMFD must not have been accepted */
		if (m.req == 17)
			fake_u64(fd, 17, s == F_ZERO_QUEUES ? 0 : s == F_MANY_QUEUES ? 1000 : 2);
		if (m.req == 24) {
			memcpy(cfg, m.p, m.size);
			fake_send(fd, 24, 0x5, cfg, m.size + (s == F_BIG_CONFIG ? 4 : 0), -1);
		}
		if (m.req == 31)
			fake_get_inflight(fd);
		if (m.req == 32 && conn == 1)
			status = fake_check_inflight(&m);
		if (m.fd >= 0)
			close(m.fd);
		if (m.flags & 0x8)
			fake_u64(fd, m.req, s == F_NACK ? 1 : status);
	}
	return true;
}

static pid_t fake_start(const char *path, enum fake s)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	pid_t pid;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	unlink(path);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 2) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (int conn = 0; conn < (s == F_INFLIGHT ? 2 : 1); conn++) {
			int cfd = accept(lfd, NULL, NULL);
			if (cfd < 0 || !fake_serve(cfd, s, conn))
				_exit(0);
			close(cfd);
		}
		_exit(0);
	}
	close(lfd);
	return pid;
}

static void fake_stop(pid_t pid, const char *path)
{
	int status = -1;

	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fake backend exited cleanly (0x%x)",
	      status);
	unlink(path);
}

/* The handshake must fail with rc < 0 and a message naming step and detail. */
static void expect_connect_error(enum fake s, const char *step, const char *detail)
{
	char path[128];
	struct xvl_vhost v;
	struct xvl_errbuf eb = { "" };
	pid_t pid;
	int rc;

	snprintf(path, sizeof(path), "%s/fake.sock", tmpdir);
	pid = fake_start(path, s);
	rc = xvl_vhost_connect(&v, path, &eb);
	CHECK(rc < 0 && strstr(eb.msg, path) && strstr(eb.msg, step) && strstr(eb.msg, detail),
	      "fake %d: rc %d, \"%s\"", s, rc, eb.msg);
	CHECK(v.sock == -1 && v.inflight_fd == -1, "fake %d: nothing left open", s);
	xvl_vhost_close(&v);
	fake_stop(pid, path);
}

static void test_fake_handshakes(void)
{
	expect_connect_error(F_BAD_SIZE, "GET_FEATURES:", "4 bytes, expected 8");
	expect_connect_error(F_WRONG_ID, "GET_FEATURES:", "request id 2");
	expect_connect_error(F_BAD_VERSION, "GET_FEATURES:", "version");
	expect_connect_error(F_NO_REPLY_FLAG, "GET_FEATURES:", "reply flag");
	expect_connect_error(F_CLOSE_FIRST, "GET_FEATURES:", "connection closed");
	expect_connect_error(F_CLOSE_MID, "GET_PROTOCOL_FEATURES:", "connection closed");
	expect_connect_error(F_TRUNCATED, "GET_FEATURES:", "connection closed");
	expect_connect_error(F_EXTRA_FD, "GET_FEATURES:", "file descriptors");
	expect_connect_error(F_NO_V1, "GET_FEATURES:", "VERSION_1");
	expect_connect_error(F_ZERO_QUEUES, "GET_QUEUE_NUM:", "0 queues");
}

static pid_t fake_connect(struct xvl_vhost *v, char *path, size_t n, enum fake s)
{
	struct xvl_errbuf eb = { "" };
	pid_t pid;
	int rc;

	snprintf(path, n, "%s/fake.sock", tmpdir);
	pid = fake_start(path, s);
	rc = xvl_vhost_connect(v, path, &eb);
	CHECK(rc == 0, "fake %d: handshake (%s)", s, eb.msg);
	return pid;
}

static void test_fake_after_handshake(void)
{
	char path[128];
	struct xvl_vhost v;
	struct xvl_errbuf eb = { "" };
	uint8_t cfg[8];
	pid_t pid;
	int rc;

	pid = fake_connect(&v, path, sizeof(path), F_MANY_QUEUES);
	CHECK(v.num_queues == XVL_VHOST_MAX_QUEUES, "1000 queues capped to %u (got %u)",
	      XVL_VHOST_MAX_QUEUES, v.num_queues);
	CHECK(v.protocol_features == ((1ull << XVL_VHOST_PF_MQ) | (1ull << XVL_VHOST_PF_REPLY_ACK) |
				      (1ull << XVL_VHOST_PF_CONFIG)),
	      "only known protocol features taken (0x%llx)",
	      (unsigned long long)v.protocol_features);
	rc = xvl_vhost_set_features(&v, 1ull << 5, &eb);
	CHECK(rc == -EINVAL && strstr(eb.msg, "not offered"), "unoffered feature refused (%s)",
	      eb.msg);
	xvl_vhost_close(&v);
	fake_stop(pid, path);

	pid = fake_connect(&v, path, sizeof(path), F_NACK);
	rc = xvl_vhost_set_features(&v, 1ull << XVL_F_VERSION_1, &eb);
	CHECK(rc < 0 && strstr(eb.msg, "SET_FEATURES: backend refused"), "REPLY_ACK failure (%s)",
	      eb.msg);
	xvl_vhost_close(&v);
	fake_stop(pid, path);

	pid = fake_connect(&v, path, sizeof(path), F_BIG_CONFIG);
	rc = xvl_vhost_get_config(&v, 0, cfg, sizeof(cfg), &eb);
	CHECK(rc == -EMSGSIZE && strstr(eb.msg, "GET_CONFIG:"), "oversized config reply (%s)",
	      eb.msg);
	rc = xvl_vhost_get_config(&v, 0, cfg, sizeof(cfg), &eb);
	CHECK(rc == -ENOTCONN, "connection dropped after a framing error (%s)", eb.msg);
	xvl_vhost_close(&v);
	fake_stop(pid, path);
}

static void test_fake_inflight(void)
{
	char path[128];
	struct xvl_vhost v;
	struct xvl_errbuf eb = { "" };
	pid_t pid;
	int rc;

	pid = fake_connect(&v, path, sizeof(path), F_INFLIGHT);
	rc = xvl_vhost_setup_inflight(&v, 2, 128, false, &eb);
	CHECK(rc == 0 && v.inflight && v.inflight_size == 8192 && v.inflight_fd >= 0,
	      "GET/SET_INFLIGHT_FD maps the area (%s)", eb.msg);
	if (v.inflight)
		memcpy(v.inflight, "xvl-inflight", 12);
	rc = xvl_vhost_reconnect(&v, &eb);
	CHECK(rc == 0, "reconnect keeps going (%s)", eb.msg);
	rc = xvl_vhost_setup_inflight(&v, 2, 128, true, &eb);
	CHECK(rc == 0, "same inflight area handed back after reconnect (%s)", eb.msg);
	rc = xvl_vhost_setup_inflight(&v, 1, 128, true, &eb);
	CHECK(rc == -EINVAL, "reuse with other queue geometry refused (%s)", eb.msg);
	xvl_vhost_close(&v);
	CHECK(v.inflight == NULL && v.inflight_fd == -1, "close releases the inflight area");
	fake_stop(pid, path);
}

/* A backend whose backlog is full (it never accepts): connect must give up, not hang. */
static void test_full_backlog(void)
{
	char path[128];
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct xvl_vhost v;
	struct xvl_errbuf eb = { "" };
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), held[8], nheld = 0;
	struct timespec t0, t1;

	snprintf(path, sizeof(path), "%s/full.sock", tmpdir);
	memcpy(a.sun_path, path, strlen(path) + 1); /* tmpdir is short */
	CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(lfd, 0) == 0,
	      "a listener that never accepts");
	/* fill its backlog */
	for (nheld = 0; nheld < 8; nheld++) {
		held[nheld] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (connect(held[nheld], (struct sockaddr *)&a, sizeof(a)) < 0) {
			close(held[nheld]);
			break;
		}
	}
	CHECK(nheld >= 1 && nheld < 8, "backlog full after %d connections", nheld);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = xvl_vhost_connect(&v, path, &eb);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	CHECK(rc == -EAGAIN && strstr(eb.msg, "accepts no connection") && ms < 4000,
	      "full backlog: connect gives up after %ld ms with -EAGAIN (rc %d, \"%s\")", ms, rc,
	      eb.msg);
	xvl_vhost_close(&v);
	for (int i = 0; i < nheld; i++)
		close(held[i]);
	close(lfd);
	unlink(path);
}

int main(void)
{
	int fds_before;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/xvl-vhost-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_qsd();
	fds_before = count_fds();
	test_fake_handshakes();
	test_fake_after_handshake();
	test_fake_inflight();
	test_full_backlog();
	CHECK(count_fds() == fds_before, "no descriptor leaked (%d before, %d after)", fds_before,
	      count_fds());
	rmdir(tmpdir);
	return tap_done();
}
