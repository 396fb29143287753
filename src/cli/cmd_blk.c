/* SPDX-License-Identifier: MIT */
/* xvl blk info|read|write|verify */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "workload.h"
#include "xvloop/xvl.h"

static const char help[] =
	"NAME\n"
	"    xvl blk - use a virtio block device served by an xvloop server or a\n"
	"              vhost-user backend\n"
	"\n"
	"SYNOPSIS\n"
	"    xvl blk info   --connect URI [COMMON] [--json]\n"
	"    xvl blk read   --connect URI [COMMON] --offset BYTES --length BYTES [--output FILE]\n"
	"    xvl blk write  --connect URI [COMMON] --offset BYTES (--input FILE | --length BYTES\n"
	"                   [--seed N])\n"
	"    xvl blk verify --connect URI [COMMON] [--seed N] [--size BYTES] [--ops N]\n"
	"                   [--min BYTES] [--max BYTES] [--qd N] [--copy] [--no-fill]\n"
	"                   [--no-final] [--time SECONDS]\n"
	"    xvl blk mount  --connect URI [--device NAME] [--foreground] MOUNTPOINT\n"
	"\n"
	"DESCRIPTION\n"
	"    URI is xvl:SOCKET (or a plain path) for an xvloop server, the\n"
	"    cross-compartment path, or vhost-user:SOCKET to drive a vhost-user-blk\n"
	"    backend directly (no server in between; the window is the backend's only\n"
	"    memory).\n"
	"\n"
	"    mount   serves the device(s) as regular files in a FUSE mount: see\n"
	"            'xvl blk mount --help'.\n"
	"    info    prints capacity, block size, queues, limits and negotiated features.\n"
	"    read    copies LENGTH bytes at OFFSET to FILE (default: standard output).\n"
	"    write   writes FILE, or LENGTH bytes of a pattern made from SEED, at OFFSET.\n"
	"            A regular FILE must be a whole number of 512-byte sectors (or hold\n"
	"            at least LENGTH bytes, of which the first LENGTH are written), so no\n"
	"            device byte after it is overwritten; an empty FILE is refused.  A\n"
	"            pipe or other stream that ends inside a sector has that sector\n"
	"            completed from the device (read-modify-write, said on stderr).\n"
	"    verify  fills the device (or its first SIZE bytes) with a pattern that names\n"
	"            each sector and the write that put it there, runs OPS random reads and\n"
	"            writes of MIN..MAX bytes on every queue with QD requests in flight per\n"
	"            queue, then reads everything back; every byte read is checked.  Prints\n"
	"            throughput and latency per phase.  Exit status 1 on any mismatch or\n"
	"            failed request.\n"
	"\n"
	"COMMON OPTIONS\n"
	"    -c, --connect URI        the server or backend (default: $XVL_LINK, which the\n"
	"                             partitioner and CDI specs from 'xvl cdi' set)\n"
	"    -d, --device D           device index or name (default: $XVL_DEVICE when the\n"
	"                             server came from $XVL_LINK, else the first block device)\n"
	"    -Q, --queues N           queues to open (default 1)\n"
	"    -S, --queue-size N       ring entries per queue, power of two <= 1024 (default 256)\n"
	"    -p, --poll               busy-poll: no notifications (costs a core on each side)\n"
	"    -s, --spin-us N          wait for a completion spinning up to N us before sleeping\n"
	"    -W, --window-size BYTES  shared window to create (default 64M)\n"
	"    -R, --reconnect-ms N     if the server goes away, reconnect within N ms, set the\n"
	"                             device up again and resubmit what had not completed\n"
	"                             (default 0: pending requests fail)\n"
	"    -h, --help               this text\n"
	"\n"
	"OFFSETS AND LENGTHS are bytes, multiples of 512, with optional K/M/G suffixes.\n"
	"\n"
	"EXAMPLES\n"
	"    xvl blk info -c /run/xvl.sock\n"
	"    xvl blk verify -c /run/xvl.sock --ops 20000 --min 512 --max 1M --qd 16 -Q 2\n"
	"    xvl blk write -c vhost-user:/run/qsd.sock --offset 0 --input boot.img\n";

struct blk_args {
	const char *connect;
	const char *device;
	const char *input;
	const char *output;
	uint16_t queues;
	uint16_t queue_size;
	bool poll;
	bool json;
	uint64_t spin_us;
	uint64_t window_size;
	uint64_t reconnect_ms;
	uint64_t offset;
	uint64_t length;
	bool have_offset;
	struct wl_opts wl;
};

enum {
	OPT_SEED = 256, OPT_SIZE, OPT_OPS, OPT_MIN, OPT_MAX, OPT_QD, OPT_COPY, OPT_NO_FILL,
	OPT_NO_FINAL, OPT_TIME, OPT_JSON,
};

static const struct option longopts[] = {
	{"connect", required_argument, NULL, 'c'}, {"device", required_argument, NULL, 'd'},
	{"queues", required_argument, NULL, 'Q'},  {"queue-size", required_argument, NULL, 'S'},
	{"poll", no_argument, NULL, 'p'},          {"window-size", required_argument, NULL, 'W'},
	{"reconnect-ms", required_argument, NULL, 'R'}, {"spin-us", required_argument, NULL, 's'},
	{"offset", required_argument, NULL, 'o'},  {"length", required_argument, NULL, 'L'},
	{"input", required_argument, NULL, 'i'},   {"output", required_argument, NULL, 'O'},
	{"help", no_argument, NULL, 'h'},          {"seed", required_argument, NULL, OPT_SEED},
	{"size", required_argument, NULL, OPT_SIZE}, {"ops", required_argument, NULL, OPT_OPS},
	{"min", required_argument, NULL, OPT_MIN}, {"max", required_argument, NULL, OPT_MAX},
	{"qd", required_argument, NULL, OPT_QD},   {"copy", no_argument, NULL, OPT_COPY},
	{"no-fill", no_argument, NULL, OPT_NO_FILL}, {"no-final", no_argument, NULL, OPT_NO_FINAL},
	{"time", required_argument, NULL, OPT_TIME}, {"json", no_argument, NULL, OPT_JSON},
	{NULL, 0, NULL, 0}};

static bool parse_uint(const char *opt, const char *v, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 0);
	if (errno || !*v || *end || *v == '-' || n > max) {
		cli_fail(2, "blk", "%s: '%s' is not a number in 0..%llu", opt, v, (unsigned long long)max);
		return false;
	}
	*out = n;
	return true;
}

static bool parse_u32_size(const char *opt, const char *v, uint32_t *out)
{
	uint64_t n;
	if (!cli_size("blk", opt, v, &n))
		return false;
	if (n > (1u << 30) || n % 512 || !n) {
		cli_fail(2, "blk", "%s: %s must be a non-zero multiple of 512 up to 1G", opt, v);
		return false;
	}
	*out = (uint32_t)n;
	return true;
}

static bool sector_multiple(const char *opt, const char *v, uint64_t n)
{
	if (n % 512 == 0)
		return true;
	cli_fail(2, "blk", "%s: %s is not a multiple of 512", opt, v);
	return false;
}

/* Refuse a range past the end of the device before sending anything. */
static bool range_fits(const struct xvl_blk_info *in, uint64_t off, uint64_t len)
{
	if (off <= in->capacity && len <= in->capacity - off)
		return true;
	cli_fail(1, "blk", "bytes %llu..%llu are beyond the end of device %s (capacity %llu bytes)",
		 (unsigned long long)off, (unsigned long long)(off + len), in->name,
		 (unsigned long long)in->capacity);
	return false;
}

/* " (detail)" when the client library has more to say, else "". */
static const char *detail(struct xvl_client *c, char *buf, size_t size)
{
	const char *m = xvl_client_errmsg(c);
	if (!m || !*m)
		return "";
	snprintf(buf, size, " (%s)", m);
	return buf;
}

static bool parse_opt(struct blk_args *a, int opt)
{
	uint64_t n;
	switch (opt) {
	case 'c': a->connect = optarg; return true;
	case 'd': a->device = optarg; return true;
	case 'i': a->input = optarg; return true;
	case 'O': a->output = optarg; return true;
	case 'p': a->poll = true; return true;
	case OPT_COPY: a->wl.copy = true; return true;
	case OPT_NO_FILL: a->wl.fill = false; return true;
	case OPT_NO_FINAL: a->wl.final_check = false; return true;
	case OPT_JSON: a->json = true; return true;
	case 'Q':
		if (!parse_uint("--queues", optarg, 16, &n))
			return false;
		if (!n)
			return cli_fail(2, "blk", "--queues: at least 1"), false;
		a->queues = (uint16_t)n;
		return true;
	case 'S':
		if (!parse_uint("--queue-size", optarg, 1024, &n))
			return false;
		if (!n || (n & (n - 1))) {
			cli_fail(2, "blk", "--queue-size: %s is not a power of two in 1..1024", optarg);
			return false;
		}
		a->queue_size = (uint16_t)n;
		return true;
	case 'W': return cli_size("blk", "--window-size", optarg, &a->window_size);
	case 'R': return parse_uint("--reconnect-ms", optarg, 3600000, &a->reconnect_ms);
	case 's': return parse_uint("--spin-us", optarg, 1000000, &a->spin_us);
	case 'o':
		a->have_offset = true;
		return cli_size("blk", "--offset", optarg, &a->offset) &&
		       sector_multiple("--offset", optarg, a->offset);
	case 'L':
		return cli_size("blk", "--length", optarg, &a->length) &&
		       sector_multiple("--length", optarg, a->length);
	case OPT_SEED: return parse_uint("--seed", optarg, UINT64_MAX, &a->wl.seed);
	case OPT_SIZE:
		if (!cli_size("blk", "--size", optarg, &a->wl.size))
			return false;
		if (a->wl.size < 512 || a->wl.size % 512)
			return cli_fail(2, "blk", "--size: %s is not a non-zero multiple of 512 "
				       "(leave --size out to use the whole device)", optarg), false;
		return true;
	case OPT_OPS: return parse_uint("--ops", optarg, UINT64_MAX, &a->wl.random_ops);
	case OPT_MIN: return parse_u32_size("--min", optarg, &a->wl.min_len);
	case OPT_MAX: return parse_u32_size("--max", optarg, &a->wl.max_len);
	case OPT_QD:
		if (!parse_uint("--qd", optarg, 256, &n))
			return false;
		if (!n)
			return cli_fail(2, "blk", "--qd: at least 1"), false;
		a->wl.qd = (unsigned)n;
		return true;
	case OPT_TIME:
		if (!parse_uint("--time", optarg, 86400, &n))
			return false;
		a->wl.time_limit_ns = n * 1000000000ull;
		return true;
	default:
		cli_fail(2, "blk", "see 'xvl blk --help'");
		return false;
	}
}

/* ------------------------------------------------------------ open */

static int resolve_device(struct xvl_client *c, const char *dev)
{
	if (!dev)
		return -1;
	char *end;
	long i = strtol(dev, &end, 10);
	if (*dev && !*end)
		return (int)i;
	return xvl_client_find(c, dev);
}

static int open_blk(struct blk_args *a, struct xvl_client **c, struct xvl_blk **b)
{
	struct xvl_client_opts co = {.name = "xvl-blk", .window_size = a->window_size,
				     .reconnect_ms = (unsigned)a->reconnect_ms};
	char err[300];
	if (xvl_client_connect(c, a->connect, &co, err, sizeof(err)) < 0)
		return cli_fail(1, "blk", "cannot connect to %s", err);
	int dev = resolve_device(*c, a->device);
	if (a->device && dev < 0) {
		cli_fail(1, "blk", "no device called '%s' on %s", a->device, a->connect);
		xvl_client_close(*c);
		return 1;
	}
	struct xvl_blk_opts bo = {.device = dev, .num_queues = a->queues,
				  .queue_size = a->queue_size, .poll = a->poll,
				  .spin_us = (unsigned)a->spin_us};
	if (xvl_blk_open(*c, &bo, b) < 0) {
		cli_fail(1, "blk", "cannot open the device: %s", xvl_client_errmsg(*c));
		xvl_client_close(*c);
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------ info */

static const char *const feature_names[64] = {
	[1] = "SIZE_MAX", [2] = "SEG_MAX", [4] = "GEOMETRY", [5] = "RO", [6] = "BLK_SIZE",
	[9] = "FLUSH", [10] = "TOPOLOGY", [11] = "CONFIG_WCE", [12] = "MQ", [13] = "DISCARD",
	[14] = "WRITE_ZEROES", [28] = "INDIRECT_DESC", [29] = "EVENT_IDX", [32] = "VERSION_1",
};

static json_object *info_json(struct xvl_client *c, const struct xvl_blk_info *in)
{
	json_object *o = json_object_new_object(), *f = json_object_new_array();
	json_object_object_add(o, "name", json_object_new_string(in->name));
	json_object_object_add(o, "mode", json_object_new_string(xvl_client_mode(c)));
	json_object_object_add(o, "capacity", json_object_new_int64((int64_t)in->capacity));
	json_object_object_add(o, "block_size", json_object_new_int64(in->block_size));
	json_object_object_add(o, "queues", json_object_new_int(in->num_queues));
	json_object_object_add(o, "queue_size", json_object_new_int(in->queue_size));
	json_object_object_add(o, "seg_max", json_object_new_int64(in->seg_max));
	json_object_object_add(o, "size_max", json_object_new_int64(in->size_max));
	json_object_object_add(o, "max_transfer", json_object_new_int64(in->max_transfer));
	json_object_object_add(o, "read_only", json_object_new_boolean(in->read_only));
	for (unsigned i = 0; i < 64; i++)
		if ((in->features >> i) & 1)
			json_object_array_add(f, json_object_new_string(feature_names[i] ? feature_names[i] : "?"));
	json_object_object_add(o, "features", f);
	return o;
}

static int do_info(struct blk_args *a, struct xvl_client *c, struct xvl_blk *b)
{
	struct xvl_blk_info in;
	xvl_blk_get_info(b, &in);
	if (a->json) {
		json_object *o = info_json(c, &in);
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
		json_object_put(o);
		return 0;
	}
	printf("device       %s (%s mode)\n", in.name, xvl_client_mode(c));
	printf("capacity     %llu bytes (%llu sectors)\n", (unsigned long long)in.capacity,
	       (unsigned long long)(in.capacity / 512));
	printf("block size   %u\n", in.block_size);
	printf("queues       %u x %u entries\n", in.num_queues, in.queue_size);
	printf("limits       seg_max %u, size_max %u, max transfer %u bytes\n", in.seg_max,
	       in.size_max, in.max_transfer);
	printf("read-only    %s\n", in.read_only ? "yes" : "no");
	printf("features    ");
	for (unsigned i = 0; i < 64; i++)
		if ((in.features >> i) & 1)
			printf(" %s", feature_names[i] ? feature_names[i] : "?");
	printf("\n");
	return 0;
}

/* ------------------------------------------------------------ read / write */

/* Write all of buf to fd (short writes continued); 0 or a negative errno. */
static int write_all(int fd, const uint8_t *buf, size_t n)
{
	while (n) {
		ssize_t w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

static int do_read(struct blk_args *a, struct xvl_client *c, struct xvl_blk *b)
{
	if (!a->have_offset || !a->length)
		return cli_fail(2, "blk", "read needs --offset and --length");
	struct xvl_blk_info in;
	xvl_blk_get_info(b, &in);
	if (!range_fits(&in, a->offset, a->length))
		return 1;
	const char *out = a->output ? a->output : "standard output";
	int fd = a->output ? open(a->output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : 1;
	if (fd < 0)
		return cli_fail(1, "blk", "cannot create %s: %s", a->output, strerror(errno));
	uint8_t *buf = xvl_buf_alloc(c, in.max_transfer);
	int rc = buf ? 0 : -ENOMEM, wrc = 0;
	for (uint64_t done = 0; rc == 0 && wrc == 0 && done < a->length;) {
		uint32_t n = (uint32_t)(a->length - done < in.max_transfer ? a->length - done
									     : in.max_transfer);
		rc = xvl_blk_read(b, a->offset + done, buf, n);
		if (rc == 0)
			wrc = write_all(fd, buf, n);
		done += n;
	}
	xvl_buf_free(c, buf);
	if (a->output && close(fd) < 0 && !wrc)
		wrc = -errno;
	char d[300];
	if (rc < 0)
		return cli_fail(1, "blk", "read failed: %s%s", strerror(-rc), detail(c, d, sizeof(d)));
	if (wrc < 0)
		return cli_fail(1, "blk", "cannot write to %s: %s", out, strerror(-wrc));
	return 0;
}

/* Up to n bytes of input (fd >= 0; fewer only at its end), or of the SEED pattern. */
static int fill_from_input(int fd, uint8_t *buf, uint32_t n, uint64_t seed, uint64_t at)
{
	if (fd < 0) {
		for (uint32_t i = 0; i < n; i += 8) {
			uint64_t v = (at + i) * 0x9e3779b97f4a7c15ull ^ seed;
			memcpy(buf + i, &v, 8);
		}
		return (int)n;
	}
	uint32_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (uint32_t)r;
	}
	return (int)got;
}

/*
 * What a write will do, decided before anything is sent: a regular input
 * file must be a whole number of sectors (and hold --length bytes if given),
 * so nothing after it on the device is overwritten; a stream's size is only
 * known at its end, so its last partial sector is read-modify-written.
 */
static int plan_write(struct blk_args *a, int fd, uint64_t *total)
{
	struct stat st;
	*total = a->length;
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0)
		return cli_fail(1, "blk", "cannot stat %s: %s", a->input, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return cli_fail(1, "blk", "--input %s is a directory", a->input);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return 0;
	uint64_t size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) && lseek(fd, 0, SEEK_END) >= 0) {
		size = (uint64_t)lseek(fd, 0, SEEK_CUR);
		lseek(fd, 0, SEEK_SET);
	}
	if (!size)
		return cli_fail(1, "blk", "--input %s is empty: nothing to write", a->input);
	if (a->length && size < a->length)
		return cli_fail(1, "blk", "--input %s has only %llu bytes, --length asks for %llu",
				a->input, (unsigned long long)size, (unsigned long long)a->length);
	if (!a->length && size % 512)
		return cli_fail(1, "blk",
				"--input %s is %llu bytes, not a whole number of 512-byte sectors "
				"(writing it would overwrite %llu device bytes after it): pad it or "
				"give --length", a->input, (unsigned long long)size,
				(unsigned long long)(512 - size % 512));
	if (!a->length)
		*total = size;
	return 0;
}

/* Complete a partial last sector of n bytes at buf with the device's own bytes. */
static int merge_tail(struct xvl_client *c, struct xvl_blk *b, uint64_t at, uint8_t *buf,
		      uint32_t n)
{
	uint32_t head = n & ~511u, keep = 512 - (n - head);
	uint8_t *sec = xvl_buf_alloc(c, 512);
	if (!sec)
		return -ENOMEM;
	int rc = xvl_blk_read(b, at + head, sec, 512);
	if (rc == 0) {
		memcpy(buf + n, sec + (n - head), keep);
		fprintf(stderr, "xvl blk: the input ended %u bytes into a sector: its other %u bytes "
			"were read from the device and written back unchanged (read-modify-write)\n",
			n - head, keep);
	}
	xvl_buf_free(c, sec);
	return rc;
}

static int write_loop(struct blk_args *a, struct xvl_client *c, struct xvl_blk *b, int fd,
		      const struct xvl_blk_info *in, uint64_t *done)
{
	uint8_t *buf = xvl_buf_alloc(c, in->max_transfer);
	int rc = buf ? 0 : -ENOMEM;
	while (rc == 0 && (!a->length || *done < a->length)) {
		uint64_t want = a->length ? a->length - *done : in->max_transfer;
		int n = fill_from_input(fd, buf, (uint32_t)(want < in->max_transfer ? want : in->max_transfer),
					a->wl.seed, *done);
		if (n <= 0) {
			rc = n;
			break;
		}
		uint32_t len = ((uint32_t)n + 511) & ~511u;
		if (!range_fits(in, a->offset + *done, len)) {
			rc = 1;
			break;
		}
		if (len != (uint32_t)n)
			rc = merge_tail(c, b, a->offset + *done, buf, (uint32_t)n);
		if (rc == 0)
			rc = xvl_blk_write(b, a->offset + *done, buf, len);
		if (rc == 0)
			*done += len;
		if ((uint32_t)n < len)
			break; /* the stream ended */
	}
	xvl_buf_free(c, buf);
	return rc;
}

static int do_write(struct blk_args *a, struct xvl_client *c, struct xvl_blk *b)
{
	if (!a->have_offset || (!a->input && !a->length))
		return cli_fail(2, "blk", "write needs --offset and --input FILE or --length");
	int fd = -1;
	if (a->input) {
		fd = open(a->input, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return cli_fail(1, "blk", "cannot open %s: %s", a->input, strerror(errno));
	}
	struct xvl_blk_info in;
	xvl_blk_get_info(b, &in);
	uint64_t total = 0, done = 0;
	int rc = plan_write(a, fd, &total);
	if (rc == 0 && !range_fits(&in, a->offset, total))
		rc = 1;
	if (rc == 0)
		rc = write_loop(a, c, b, fd, &in, &done);
	if (fd >= 0)
		close(fd);
	if (rc > 0)
		return rc;
	char d[300];
	if (rc < 0)
		return cli_fail(1, "blk", "write failed at byte %llu: %s%s",
				(unsigned long long)(a->offset + done), strerror(-rc), detail(c, d, sizeof(d)));
	if (!done)
		return cli_fail(1, "blk", "--input %s is empty: nothing written", a->input);
	if (a->length && done < a->length)
		return cli_fail(1, "blk", "--input %s ended after %llu bytes (written), --length asks "
				"for %llu", a->input, (unsigned long long)done,
				(unsigned long long)a->length);
	return 0;
}

/* ------------------------------------------------------------ verify */

static int do_verify(struct blk_args *a, struct xvl_client *c, struct xvl_blk *b)
{
	struct wl_result r;
	struct xvl_blk_info in;
	xvl_blk_get_info(b, &in);
	printf("verify: %s via %s, %u queue(s), qd %u, %s buffers, %s\n", in.name, xvl_client_mode(c),
	       in.num_queues, a->wl.qd, a->wl.copy ? "copied" : "zero-copy window",
	       a->poll ? "polling" : "notifications");
	int rc = wl_run(c, b, &a->wl, &r);
	wl_print(stdout, &r);
	if (xvl_client_reconnects(c) || xvl_client_restarts(c))
		printf("  server reconnections %u, device restarts %u (pending requests resubmitted)\n",
		       xvl_client_reconnects(c), xvl_client_restarts(c));
	if (rc < 0) {
		const char *m = xvl_client_errmsg(c);
		if (rc != -EIO && m && *m)
			fprintf(stderr, "xvl blk: %s\n", m);
		return cli_fail(1, "blk", "verify FAILED: %s", r.first_problem);
	}
	printf("verify: OK\n");
	return 0;
}

int cmd_blk(int argc, char **argv)
{
	struct blk_args a = {.wl = {.seed = 1, .min_len = 512, .max_len = 128 * 1024,
				    .fill_len = 256 * 1024, .random_ops = 2000, .qd = 8,
				    .fill = true, .final_check = true}};
	if (argc < 2)
		return cli_fail(2, "blk", "which one: info, read, write, verify or mount? (xvl blk --help)");
	const char *sub = argv[1];
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h"))
		return cli_help(help);
	if (!strcmp(sub, "mount"))
		return cmd_blk_mount(argc - 1, argv + 1);
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc - 1, argv + 1, "c:d:Q:S:ps:W:R:o:L:i:O:h", longopts, NULL)) != -1) {
		if (opt == 'h')
			return cli_help(help);
		if (!parse_opt(&a, opt))
			return 2;
	}
	if (optind < argc - 1)
		return cli_fail(2, "blk", "unexpected argument '%s'", argv[optind + 1]);
	if (!a.connect) { /* what the partitioner or a CDI spec put in the environment */
		a.connect = getenv("XVL_LINK");
		if (!a.device)
			a.device = getenv("XVL_DEVICE");
	}
	if (!a.connect || !*a.connect)
		return cli_fail(2, "blk", "--connect URI is required (or XVL_LINK in the environment)");
	if (a.device && !*a.device)
		a.device = NULL;
	if (a.wl.min_len > a.wl.max_len)
		return cli_fail(2, "blk", "--min is larger than --max");
	int (*fn)(struct blk_args *, struct xvl_client *, struct xvl_blk *) =
		!strcmp(sub, "info")   ? do_info
		: !strcmp(sub, "read")  ? do_read
		: !strcmp(sub, "write") ? do_write
		: !strcmp(sub, "verify") ? do_verify
					 : NULL;
	if (!fn)
		return cli_fail(2, "blk", "unknown subcommand '%s' (info, read, write, verify, mount)", sub);
	struct xvl_client *c;
	struct xvl_blk *b;
	int rc = open_blk(&a, &c, &b);
	if (rc)
		return rc;
	rc = fn(&a, c, b);
	xvl_blk_close(b);
	xvl_client_close(c);
	return rc;
}
