/* SPDX-License-Identifier: MIT */
/*
 * Helper for the end-to-end scripts (tests/e2e/vhost_bridge.sh).  It uses
 * the first block device of URI, or the one named in $XVL_E2E_DEVICE.
 *
 *   xvl_e2e maps URI PID...
 *	Open the first block device of URI, read from it, then check that each
 *	PID (a vhost-user backend, or the server) maps the window and no other
 *	memory of this client: the client's shared mappings (memfds, shm
 *	files, deleted files) are compared by device and inode with the
 *	process's /proc/PID/maps.
 *
 *   xvl_e2e churn URI SIZE OPS QD SEED EXPECTED [allow-fail]
 *	Random writes of 4..64 KiB on every queue, QD in flight per queue,
 *	never two at once on the same 64 KiB slot, so that the device's final
 *	contents are known exactly.  Counts completions per request (a request
 *	completed twice, or never, is an error), reads everything back through
 *	xvloop, and writes the expected image to EXPECTED for a byte-for-byte
 *	comparison with the backing file.  Prints "progress N" as it goes.
 *	allow-fail: failed requests are expected (backend lost for good); the
 *	slots they touched are not compared.
 *
 *   xvl_e2e fake SOCK MODE
 *	A scripted, broken vhost-user backend listening on SOCK: MODE is
 *	noversion (no VIRTIO_F_VERSION_1), malformed (reply with the wrong
 *	request id), oversized (reply longer than the request allows), zeroq
 *	(GET_QUEUE_NUM says 0) or hangup (closes mid-handshake).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "xvloop/xvl.h"

#define SLOT (64u << 10)
#define MAX_Q 16
#define DEADLINE_S 90 /* XVL_E2E_DEADLINE overrides */

/* ------------------------------------------------------------ common */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static int open_blk(const char *uri, uint16_t nq, struct xvl_client **c, struct xvl_blk **b)
{
	char err[256];
	struct xvl_client_opts co = {XVL_CLIENT_OPTS_INIT, .name = "xvl-e2e", .window_size = 64ull << 20};
	struct xvl_blk_opts bo = {XVL_BLK_OPTS_INIT, .device = -1, .num_queues = nq, .queue_size = 64};
	const char *name = getenv("XVL_E2E_DEVICE");
	int rc = xvl_client_connect(c, uri, &co, err, sizeof(err));

	if (rc < 0) {
		fprintf(stderr, "xvl_e2e: %s\n", err);
		return rc;
	}
	if (name && *name)
		bo.device = xvl_client_find(*c, name);
	rc = bo.device == -ENODEV ? -ENODEV : xvl_blk_open(*c, &bo, b);
	if (rc < 0) {
		fprintf(stderr, "xvl_e2e: open: %s\n", xvl_client_errmsg(*c));
		xvl_client_close(*c);
	}
	return rc;
}

/* ------------------------------------------------------------ maps */

struct mapping {
	uint64_t lo, hi;
	unsigned long dev_major, dev_minor;
	uint64_t inode;
	char perms[8];
	char path[256];
};

static bool parse_map_line(const char *line, struct mapping *m)
{
	int pos = 0;

	m->path[0] = '\0';
	if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*x %lx:%lx %" SCNu64 " %n", &m->lo, &m->hi,
		   m->perms, &m->dev_major, &m->dev_minor, &m->inode, &pos) < 6)
		return false;
	snprintf(m->path, sizeof(m->path), "%s", line + pos);
	m->path[strcspn(m->path, "\n")] = '\0';
	return true;
}

/* Memory another process could share with us: memfds, shm, deleted files, shared maps. */
static bool shareable(const struct mapping *m)
{
	if (m->inode == 0)
		return false; /* anonymous: heap, stack, private memory */
	return !strncmp(m->path, "/memfd:", 7) || !strncmp(m->path, "/dev/shm/", 9) ||
	       strstr(m->path, "(deleted)") || m->perms[3] == 's';
}

static int read_maps(int pid, struct mapping **out, unsigned *n)
{
	char path[64], line[512];
	unsigned cap = 256;
	FILE *f;

	snprintf(path, sizeof(path), pid ? "/proc/%d/maps" : "/proc/self/maps", pid);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	*out = calloc(cap, sizeof(**out));
	*n = 0;
	while (*out && fgets(line, sizeof(line), f)) {
		if (*n == cap) {
			cap *= 2;
			*out = realloc(*out, cap * sizeof(**out));
			if (!*out)
				break;
		}
		if (parse_map_line(line, &(*out)[*n]))
			(*n)++;
	}
	fclose(f);
	return *out ? 0 : -ENOMEM;
}

static bool same_file(const struct mapping *a, const struct mapping *b)
{
	return a->inode == b->inode && a->dev_major == b->dev_major && a->dev_minor == b->dev_minor;
}

/* The client's mapping that holds p. */
static const struct mapping *find_addr(const struct mapping *m, unsigned n, const void *p)
{
	uint64_t a = (uint64_t)(uintptr_t)p;
	for (unsigned i = 0; i < n; i++)
		if (a >= m[i].lo && a < m[i].hi)
			return &m[i];
	return NULL;
}

/* Check one process; prints what it found, returns the number of problems. */
static int check_pid(int pid, const struct mapping *win, const struct mapping *mine,
		     unsigned n_mine)
{
	struct mapping *theirs;
	unsigned n, problems = 0;
	uint64_t win_bytes = 0;

	if (read_maps(pid, &theirs, &n) < 0) {
		printf("pid %d: cannot read its maps: %s\n", pid, strerror(errno));
		return 1;
	}
	for (unsigned i = 0; i < n; i++) {
		if (same_file(&theirs[i], win)) {
			win_bytes += theirs[i].hi - theirs[i].lo;
			continue;
		}
		for (unsigned j = 0; j < n_mine; j++) {
			if (shareable(&mine[j]) && same_file(&theirs[i], &mine[j])) {
				printf("pid %d: ALSO MAPS CLIENT MEMORY %s (inode %" PRIu64 ")\n", pid,
				       mine[j].path, mine[j].inode);
				problems++;
				break;
			}
		}
	}
	printf("pid %d: maps the window (%s, inode %" PRIu64 "): %" PRIu64 " bytes; other client "
	       "mappings: %u\n", pid, win->path, win->inode, win_bytes, problems);
	free(theirs);
	return problems + (win_bytes == 0);
}

static int cmd_maps(const char *uri, int npid, char **pids)
{
	struct xvl_client *c;
	struct xvl_blk *b;
	struct mapping *mine;
	unsigned n;
	int bad = 0;

	if (open_blk(uri, 1, &c, &b) < 0)
		return 2;
	void *buf = xvl_buf_alloc(c, 65536);
	if (!buf || xvl_blk_read(b, 0, buf, 65536) < 0) {
		fprintf(stderr, "xvl_e2e: I/O failed: %s\n", xvl_client_errmsg(c));
		return 2;
	}
	if (read_maps(0, &mine, &n) < 0)
		return 2;
	const struct mapping *win = find_addr(mine, n, buf);
	if (!win || !shareable(win)) {
		fprintf(stderr, "xvl_e2e: the window buffer is not in a shared mapping\n");
		return 2;
	}
	for (int i = 0; i < npid; i++)
		bad += check_pid(atoi(pids[i]), win, mine, n);
	free(mine);
	xvl_buf_free(c, buf);
	xvl_client_close(c);
	return bad ? 1 : 0;
}

/* ------------------------------------------------------------ churn */

struct op {
	uint64_t id;
	uint64_t off;
	uint32_t len;
	uint32_t slot;
	uint16_t q;
	bool busy;
	uint8_t *buf;  /* in the window */
};

struct churn {
	struct xvl_client *c;
	struct xvl_blk *b;
	uint64_t size, ops, seed;
	unsigned qd, nq, nslots;
	uint8_t *shadow;
	bool *slot_busy, *slot_unknown;
	struct op *op;     /* nq * qd */
	uint64_t issued, ok, failed, dup, refused, next_progress;
	bool allow_fail;
};

static void fill(uint8_t *p, uint32_t len, uint64_t seed, uint64_t id, uint64_t off)
{
	for (uint32_t i = 0; i < len; i += 8) {
		uint64_t v = mix(seed ^ (id << 32) ^ (off + i));
		memcpy(p + i, &v, 8);
	}
}

/* Pick an idle slot and a range in it; false when all are busy. */
static bool pick(struct churn *w, struct op *o)
{
	uint64_t r = mix(w->seed + w->issued * 7919);
	for (unsigned t = 0; t < w->nslots; t++) {
		uint32_t s = (uint32_t)((r + t) % w->nslots);
		if (w->slot_busy[s])
			continue;
		uint32_t len = (uint32_t)(1 + (r >> 20) % 16) * 4096;
		uint32_t at = (uint32_t)((r >> 40) % (SLOT / 4096 - len / 4096 + 1)) * 4096;
		o->slot = s;
		o->off = (uint64_t)s * SLOT + at;
		o->len = len;
		return true;
	}
	return false;
}

static int issue(struct churn *w, struct op *o)
{
	if (!pick(w, o))
		return 0;
	o->id = w->issued + 1;
	fill(o->buf, o->len, w->seed, o->id, o->off);
	struct xvl_blk_req r = {.op = XVL_BLK_WRITE, .offset = o->off, .buf = o->buf, .len = o->len,
				.user = o};
	int rc = xvl_blk_submit(w->b, o->q, &r);
	if (rc == -EAGAIN)
		return 0;
	w->issued++;
	if (rc < 0) {
		w->refused++; /* never reached the device: nothing written */
		return rc;
	}
	o->busy = true;
	w->slot_busy[o->slot] = true;
	return 1;
}

static void done(struct churn *w, struct op *o, int result)
{
	if (!o->busy) {
		w->dup++;
		printf("request %" PRIu64 " completed twice\n", o->id);
		return;
	}
	o->busy = false;
	w->slot_busy[o->slot] = false;
	if (result == 0) {
		memcpy(w->shadow + o->off, o->buf, o->len);
		w->ok++;
	} else {
		w->failed++;
		w->slot_unknown[o->slot] = true;
	}
	if (w->ok + w->failed >= w->next_progress) {
		printf("progress %" PRIu64 "\n", w->ok + w->failed);
		fflush(stdout);
		w->next_progress += 200;
	}
}

static unsigned busy_ops(const struct churn *w)
{
	unsigned n = 0;
	for (unsigned i = 0; i < w->nq * w->qd; i++)
		n += w->op[i].busy;
	return n;
}

static void reap_queue(struct churn *w, uint16_t q)
{
	struct xvl_blk_cpl cpl[64];
	int n = xvl_blk_wait(w->b, q, 5);
	if (n <= 0)
		return;
	n = xvl_blk_complete(w->b, q, cpl, 64);
	for (int i = 0; i < n; i++)
		done(w, cpl[i].user, cpl[i].result);
}

static int churn_loop(struct churn *w)
{
	const char *env = getenv("XVL_E2E_DEADLINE");
	uint64_t secs = env ? strtoull(env, NULL, 10) : DEADLINE_S;
	uint64_t deadline = now_ns() + secs * 1000000000ull;
	bool stop = false;

	while (now_ns() < deadline) {
		for (uint16_t q = 0; q < w->nq; q++) {
			for (unsigned i = 0; !stop && w->issued < w->ops && i < w->qd; i++) {
				struct op *o = &w->op[q * w->qd + i];
				if (!o->busy && issue(w, o) < 0)
					stop = true; /* the device is gone: finish what is in flight */
			}
			xvl_blk_kick(w->b, q);
			reap_queue(w, q);
		}
		if ((stop || w->issued >= w->ops) && !busy_ops(w))
			return 0;
	}
	printf("stuck: %u requests never completed\n", busy_ops(w));
	return -ETIMEDOUT;
}

/* Which write put word got at byte offset off (0: none of them). */
static uint64_t whose(const struct churn *w, uint64_t got, uint64_t off)
{
	for (uint64_t id = 0; id <= w->issued; id++)
		if (mix(w->seed ^ (id << 32) ^ off) == got)
			return id;
	return UINT64_MAX;
}

static void explain(const struct churn *w, const uint8_t *buf, unsigned s)
{
	const uint8_t *exp = w->shadow + (uint64_t)s * SLOT;
	for (uint32_t k = 0; k < SLOT; k += 8) {
		uint64_t got, want, off = (uint64_t)s * SLOT + k;
		memcpy(&got, buf + k, 8);
		memcpy(&want, exp + k, 8);
		if (got == want)
			continue;
		printf("slot %u differs from byte %u on: it holds data of write %" PRId64 ", expected "
		       "write %" PRId64 " (-1: none)\n", s, k, (int64_t)whose(w, got, off),
		       (int64_t)whose(w, want, off));
		return;
	}
}

/* Give every slot known contents (write 0) so the device's state is known from the start. */
static int prefill(struct churn *w)
{
	uint8_t *buf = xvl_buf_alloc(w->c, SLOT);
	int rc = buf ? 0 : -ENOMEM;

	for (unsigned s = 0; rc == 0 && s < w->nslots; s++) {
		fill(buf, SLOT, w->seed, 0, (uint64_t)s * SLOT);
		rc = xvl_blk_write(w->b, (uint64_t)s * SLOT, buf, SLOT);
		if (rc == 0)
			memcpy(w->shadow + (uint64_t)s * SLOT, buf, SLOT);
	}
	if (rc < 0)
		printf("prefill failed: %s\n", xvl_client_errmsg(w->c));
	if (buf)
		xvl_buf_free(w->c, buf);
	return rc;
}

/* Read the device back through xvloop and compare with what completed. */
static uint64_t readback(struct churn *w)
{
	uint8_t *buf = xvl_buf_alloc(w->c, SLOT);
	uint64_t bad = 0;

	for (unsigned s = 0; buf && s < w->nslots; s++) {
		if (w->slot_unknown[s])
			continue;
		if (xvl_blk_read(w->b, (uint64_t)s * SLOT, buf, SLOT) < 0) {
			printf("readback of slot %u failed: %s\n", s, xvl_client_errmsg(w->c));
			bad++;
			break;
		}
		if (memcmp(buf, w->shadow + (uint64_t)s * SLOT, SLOT)) {
			explain(w, buf, s);
			bad++;
		}
	}
	if (buf)
		xvl_buf_free(w->c, buf);
	return buf ? bad : 1;
}

static int churn_setup(struct churn *w, const char *uri)
{
	if (open_blk(uri, MAX_Q, &w->c, &w->b) < 0)
		return -1;
	struct xvl_blk_info info;
	xvl_blk_get_info(w->b, &info);
	w->nq = info.num_queues;
	if (w->size > info.capacity)
		w->size = info.capacity;
	w->nslots = (unsigned)(w->size / SLOT);
	w->shadow = calloc(1, w->size);
	w->slot_busy = calloc(w->nslots, 1);
	w->slot_unknown = calloc(w->nslots, 1);
	w->op = calloc((size_t)w->nq * w->qd, sizeof(*w->op));
	if (!w->shadow || !w->slot_busy || !w->slot_unknown || !w->op || !w->nslots)
		return -1;
	for (unsigned i = 0; i < w->nq * w->qd; i++) {
		w->op[i].q = (uint16_t)(i / w->qd);
		w->op[i].buf = xvl_buf_alloc(w->c, SLOT);
		if (!w->op[i].buf)
			return -1;
	}
	w->next_progress = 200;
	printf("queues %u\n", w->nq);
	return 0;
}

static int write_expected(const struct churn *w, const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	size_t n = fwrite(w->shadow, 1, w->size, f);
	return fclose(f) == 0 && n == w->size ? 0 : -1;
}

static int cmd_churn(int argc, char **argv)
{
	struct churn w = {.size = strtoull(argv[3], NULL, 0), .ops = strtoull(argv[4], NULL, 0),
			  .qd = (unsigned)atoi(argv[5]), .seed = strtoull(argv[6], NULL, 0),
			  .allow_fail = argc > 8 && !strcmp(argv[8], "allow-fail")};

	if (w.qd == 0 || w.qd > 64 || churn_setup(&w, argv[2]) < 0 || prefill(&w) < 0) {
		fprintf(stderr, "xvl_e2e: churn set-up failed\n");
		return 2;
	}
	int rc = churn_loop(&w);
	bool gone = w.allow_fail && (w.failed || w.refused);
	uint64_t unknown = 0, bad = gone ? 0 : readback(&w); /* a broken device cannot be read */
	for (unsigned s = 0; s < w.nslots; s++)
		unknown += w.slot_unknown[s];
	printf("churn: issued %" PRIu64 " ok %" PRIu64 " failed %" PRIu64 " refused %" PRIu64
	       " duplicates %" PRIu64 " in-flight %u mismatched-slots %" PRIu64
	       " unknown-slots %" PRIu64 "\n", w.issued, w.ok, w.failed, w.refused, w.dup,
	       busy_ops(&w), bad, unknown);
	if (!unknown && write_expected(&w, argv[7]) < 0)
		rc = -EIO;
	bool fine = rc == 0 && !w.dup && !bad && (w.allow_fail || (!w.failed && !w.refused));
	xvl_client_close(w.c);
	free(w.shadow);
	free(w.slot_busy);
	free(w.slot_unknown);
	free(w.op);
	return fine ? 0 : 1;
}

/* ------------------------------------------------------------ fake backend */

struct vu_hdr {
	uint32_t req, flags, size;
};

static int fake_reply(int fd, uint32_t req, const void *p, uint32_t size, uint32_t claim)
{
	uint8_t buf[12 + 256];
	struct vu_hdr h = {.req = req, .flags = 0x1 | 0x4, .size = claim};
	memcpy(buf, &h, 12);
	memcpy(buf + 12, p, size);
	return write(fd, buf, 12 + size) == (ssize_t)(12 + size) ? 0 : -1;
}

static int fake_u64(int fd, uint32_t req, uint64_t v, const char *mode)
{
	if (req == 1 && !strcmp(mode, "malformed"))
		return fake_reply(fd, 99, &v, 8, 8);
	if (req == 1 && !strcmp(mode, "oversized"))
		return fake_reply(fd, req, &v, 8, 4096);
	return fake_reply(fd, req, &v, 8, 8);
}

/* Serve one frontend until it goes away (or the mode says to hang up). */
static void fake_session(int fd, const char *mode)
{
	uint64_t feat = (1ull << 32) | (1ull << 30) | (1ull << 6);
	struct vu_hdr h;
	uint8_t p[256];

	if (!strcmp(mode, "noversion"))
		feat &= ~(1ull << 32);
	while (read(fd, &h, 12) == 12 && h.size <= sizeof(p) &&
	       read(fd, p, h.size) == (ssize_t)h.size) {
		int rc = 0;
		switch (h.req) {
		case 1: rc = fake_u64(fd, 1, feat, mode); break;
		case 15:
			if (!strcmp(mode, "hangup"))
				return;
			rc = fake_u64(fd, 15, (1ull << 0) | (1ull << 9), mode);
			break;
		case 17: rc = fake_u64(fd, 17, !strcmp(mode, "zeroq") ? 0 : 1, mode); break;
		case 24:
			memset(p + 12, 0, h.size - 12);
			p[12] = 0x80; /* capacity 128 sectors */
			rc = fake_reply(fd, 24, p, h.size, h.size);
			break;
		default: break; /* no reply without REPLY_ACK */
		}
		if (rc < 0)
			return;
	}
}

static int cmd_fake(const char *path, const char *mode)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int ls = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	unlink(path);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 4) < 0) {
		perror("xvl_e2e fake");
		return 2;
	}
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			return 2;
		fake_session(fd, mode);
		close(fd);
	}
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "maps"))
		return cmd_maps(argv[2], argc - 3, argv + 3);
	if (argc >= 8 && !strcmp(argv[1], "churn"))
		return cmd_churn(argc, argv);
	if (argc == 4 && !strcmp(argv[1], "fake"))
		return cmd_fake(argv[2], argv[3]);
	fprintf(stderr, "usage: xvl_e2e maps URI PID...\n"
			"       xvl_e2e churn URI SIZE OPS QD SEED EXPECTED [allow-fail]\n"
			"       xvl_e2e fake SOCK noversion|malformed|oversized|zeroq|hangup\n");
	return 2;
}
