/* SPDX-License-Identifier: MIT */
/* xvl blk info|read|write|verify */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blk_cmd.h"
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
	"    memory).  The mailbox link (nothing but the window is shared; see\n"
	"    xvl server --link window): window:PATH (a file both sides map, polling),\n"
	"    ivshmem:SOCKET (window and eventfd doorbells from xvl server's ivshmem\n"
	"    server), mbox: (window and doorbell handed over at spawn in\n"
	"    XVL_WINDOW_FD and XVL_DOORBELL), vfio:BDF[,peer=N] (in a QEMU guest: the\n"
	"    ivshmem-doorbell device at PCI address BDF bound to vfio-pci; BAR2 is the\n"
	"    window, BAR0 rings ivshmem peer N, default 0, MSI-X brings its rings),\n"
	"    ivshmem-server:SOCKET[,vectors=N][,wait=SECONDS] (be QEMU's ivshmem server\n"
	"    ourselves: wait, default 60 s, for a guest whose xvl server serves the\n"
	"    window through --window vfio:BDF; the window size is --window-size's).\n"
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
	"                             (default: adaptive, twice what recent waits took, at most\n"
	"                             50 us)\n"
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
bool blk_range_fits(const struct xvl_blk_info *in, uint64_t off, uint64_t len)
{
	if (off <= in->capacity && len <= in->capacity - off)
		return true;
	cli_fail(1, "blk", "bytes %llu..%llu are beyond the end of device %s (capacity %llu bytes)",
		 (unsigned long long)off, (unsigned long long)(off + len), in->name,
		 (unsigned long long)in->capacity);
	return false;
}

/* " (detail)" when the client library has more to say, else "". */
const char *blk_detail(struct xvl_client *c, char *buf, size_t size)
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

static int open_blk(struct blk_args *a, struct xvl_client **c, struct xvl_blk **b)
{
	struct xvl_client_opts co = {XVL_CLIENT_OPTS_INIT, .name = "xvl-blk", .window_size = a->window_size,
				     .reconnect_ms = (unsigned)a->reconnect_ms};
	char err[300];
	if (xvl_client_connect(c, a->connect, &co, err, sizeof(err)) < 0)
		return cli_fail(1, "blk", "cannot connect to %s", err);
	int dev = cli_device_index(*c, a->device);
	if (a->device && dev < 0) {
		cli_fail(1, "blk", "no device called '%s' on %s", a->device, a->connect);
		xvl_client_close(*c);
		return 1;
	}
	struct xvl_blk_opts bo = {XVL_BLK_OPTS_INIT, .device = dev, .num_queues = a->queues,
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
		: !strcmp(sub, "read")  ? blk_do_read
		: !strcmp(sub, "write") ? blk_do_write
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
