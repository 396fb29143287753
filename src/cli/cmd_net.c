/* SPDX-License-Identifier: MIT */
/* xvl net info|ping|perf|tap: use a virtio-net device served by an xvloop server. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "net_cmd.h"

static const char help[] =
	"NAME\n"
	"    xvl net - use a virtio-net device served by an xvloop server\n"
	"\n"
	"SYNOPSIS\n"
	"    xvl net info --connect URI [COMMON] [--json]\n"
	"    xvl net ping --connect URI [COMMON] (--responder | [--peer MAC] [--count N]\n"
	"                 [--size BYTES] [--interval-ms N])\n"
	"    xvl net perf --connect URI [COMMON] (--responder | [--peer MAC] [--sizes LIST]\n"
	"                 [--time SECONDS] [--copy] [--json])\n"
	"    xvl net tap  --connect URI [COMMON] --ifname IF\n"
	"\n"
	"DESCRIPTION\n"
	"    URI is xvl:SOCKET (or a plain path) of an xvloop server serving net devices\n"
	"    (xvl server -d name=N,type=net,backend=switch|tap|vhost-user).\n"
	"\n"
	"    info    prints the MAC address, MTU, queue pairs, link state and negotiated\n"
	"            features.\n"
	"    ping    sends COUNT echo requests (Ethernet type 0x88b5 probe frames of SIZE\n"
	"            bytes) to MAC (default: broadcast) and prints each round-trip time;\n"
	"            with --responder, answers the requests of others until killed.  Run\n"
	"            a responder on one device of a switch and ping from another.\n"
	"    perf    against a responder: for each size in LIST, frames per second one\n"
	"            way (sent and received, as the responder counted them) for SECONDS,\n"
	"            then round-trip latency p50/p99 for SECONDS.  Sizes larger than the\n"
	"            device's MTU allows are skipped.  The one-way frames are sent zero copy\n"
	"            from window buffers (--copy: through the copying path).\n"
	"    tap     creates tap interface IF (IFF_TAP, IFF_NO_PI, IFF_VNET_HDR) in this\n"
	"            network namespace with the device's MAC address and MTU, sets it up,\n"
	"            and carries its frames through the device (checksum and TSO offloads\n"
	"            as negotiated) until killed, so that the kernel's stack (ping,\n"
	"            iperf3, sockets) uses the device.  Needs CAP_NET_ADMIN.\n"
	"\n"
	"COMMON OPTIONS\n"
	"    -c, --connect URI        the server (default: $XVL_LINK)\n"
	"    -d, --device D           device index or name (default: $XVL_DEVICE when the\n"
	"                             server came from $XVL_LINK, else the first net device)\n"
	"    -Q, --pairs N            queue pairs to use (default 1; tap uses pair 0)\n"
	"    -S, --queue-size N       ring entries per queue, power of two <= 1024 (default 256;\n"
	"                             tap: 1024, so that a burst of TCP segments finds buffers)\n"
	"    -p, --poll               busy-poll: no notifications (costs a core on each side)\n"
	"    -W, --window-size BYTES  shared window to create (default 64M)\n"
	"    -R, --reconnect-ms N     if the server goes away, reconnect within N ms and set the\n"
	"                             device up again (frames in flight are lost; default 0:\n"
	"                             the device breaks)\n"
	"    -h, --help               this text\n"
	"\n"
	"PING AND PERF OPTIONS\n"
	"    -r, --responder          answer probe frames instead of sending them\n"
	"    -P, --peer MAC           destination of the probes (default ff:ff:ff:ff:ff:ff)\n"
	"    -n, --count N            echo requests (default 5)\n"
	"    -l, --size BYTES         bytes per frame, 64..65535 (default 64)\n"
	"    -i, --interval-ms N      between echo requests (default 200)\n"
	"    -z, --sizes LIST         comma-separated frame sizes (default 64,1500,9000)\n"
	"    -t, --time SECONDS       per size and measurement (default 1)\n"
	"    -C, --copy               perf: send from private memory (copied into the window)\n"
	"    -j, --json               machine-readable output\n"
	"\n"
	"TAP OPTIONS\n"
	"    -I, --ifname IF          the tap interface to create (at most 15 characters)\n"
	"\n"
	"EXAMPLES\n"
	"    xvl server -l /run/xvl.sock -d name=a,type=net,backend=switch \\\n"
	"               -d name=b,type=net,backend=switch\n"
	"    xvl net ping -c /run/xvl.sock -d a --responder &\n"
	"    xvl net ping -c /run/xvl.sock -d b --count 3\n"
	"    xvl net perf -c /run/xvl.sock -d b --sizes 64,1500 --time 2\n"
	"    xvl net tap -c /run/xvl.sock -d a --ifname xvl0\n";

static const struct option longopts[] = {
	{"connect", required_argument, NULL, 'c'},   {"device", required_argument, NULL, 'd'},
	{"pairs", required_argument, NULL, 'Q'},     {"queue-size", required_argument, NULL, 'S'},
	{"poll", no_argument, NULL, 'p'},            {"window-size", required_argument, NULL, 'W'},
	{"help", no_argument, NULL, 'h'},            {"responder", no_argument, NULL, 'r'},
	{"peer", required_argument, NULL, 'P'},      {"count", required_argument, NULL, 'n'},
	{"size", required_argument, NULL, 'l'},      {"interval-ms", required_argument, NULL, 'i'},
	{"sizes", required_argument, NULL, 'z'},     {"time", required_argument, NULL, 't'},
	{"json", no_argument, NULL, 'j'},            {"ifname", required_argument, NULL, 'I'},
	{"reconnect-ms", required_argument, NULL, 'R'}, {"copy", no_argument, NULL, 'C'},
	{NULL, 0, NULL, 0}};

bool net_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
		return false;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 255)
			return false;
		mac[i] = (uint8_t)v[i];
	}
	return true;
}

static bool parse_num(const char *opt, const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 0);
	if (errno || !*v || *end || *v == '-' || n < min || n > max) {
		cli_fail(2, "net", "%s: '%s' is not a number in %llu..%llu", opt, v,
			 (unsigned long long)min, (unsigned long long)max);
		return false;
	}
	*out = n;
	return true;
}

static bool parse_opt(struct net_args *a, int opt)
{
	uint64_t v;
	char *end;
	switch (opt) {
	case 'c': a->connect = optarg; return true;
	case 'd': a->device = optarg; return true;
	case 'I': a->ifname = optarg; return true;
	case 'P': a->peer = optarg; return true;
	case 'z': a->sizes = optarg; return true;
	case 'p': a->poll = true; return true;
	case 'r': a->responder = true; return true;
	case 'j': a->json = true; return true;
	case 'C': a->copy = true; return true;
	case 'W': return cli_size("net", "--window-size", optarg, &a->window_size);
	case 'Q':
		if (!parse_num("--pairs", optarg, 1, XVL_NET_MAX_PAIRS, &v))
			return false;
		a->pairs = (uint16_t)v;
		return true;
	case 'S':
		if (!parse_num("--queue-size", optarg, 2, 1024, &v))
			return false;
		a->queue_size = (uint16_t)v;
		return true;
	case 'n':
		if (!parse_num("--count", optarg, 1, 1000000, &v))
			return false;
		a->count = (unsigned)v;
		return true;
	case 'l':
		if (!parse_num("--size", optarg, 64, 65535, &v))
			return false;
		a->size = (unsigned)v;
		return true;
	case 'R':
		if (!parse_num("--reconnect-ms", optarg, 0, 3600000, &v))
			return false;
		a->reconnect_ms = (unsigned)v;
		return true;
	case 'i':
		if (!parse_num("--interval-ms", optarg, 0, 60000, &v))
			return false;
		a->interval_ms = (unsigned)v;
		return true;
	case 't':
		a->time_s = strtod(optarg, &end);
		if (*end || !(a->time_s > 0 && a->time_s <= 3600)) {
			cli_fail(2, "net", "--time: '%s' is not a number of seconds in (0, 3600]", optarg);
			return false;
		}
		return true;
	default:
		cli_fail(2, "net", "see xvl net --help");
		return false;
	}
}

static int open_net(struct net_args *a, struct xvl_client **c, struct xvl_net **n)
{
	struct xvl_client_opts co = {XVL_CLIENT_OPTS_INIT, .name = "xvl-net",
				     .window_size = a->window_size, .reconnect_ms = a->reconnect_ms};
	char err[300];
	if (xvl_client_connect(c, a->connect, &co, err, sizeof(err)) < 0)
		return cli_fail(1, "net", "cannot connect to %s", err);
	int dev = cli_device_index(*c, a->device);
	if (a->device && dev < 0) {
		cli_fail(1, "net", "no device called '%s' on %s", a->device, a->connect);
		xvl_client_close(*c);
		return 1;
	}
	struct xvl_net_opts no = {XVL_NET_OPTS_INIT, .device = dev, .pairs = a->pairs,
				  .queue_size = a->queue_size, .poll = a->poll};
	if (xvl_net_open(*c, &no, n) < 0) {
		cli_fail(1, "net", "cannot open the device: %s", xvl_client_errmsg(*c));
		xvl_client_close(*c);
		return 1;
	}
	return 0;
}

static const char *const feature_names[64] = {
	[0] = "CSUM", [1] = "GUEST_CSUM", [3] = "MTU", [5] = "MAC", [7] = "GUEST_TSO4",
	[8] = "GUEST_TSO6", [11] = "HOST_TSO4", [12] = "HOST_TSO6", [15] = "MRG_RXBUF",
	[16] = "STATUS", [17] = "CTRL_VQ", [18] = "CTRL_RX", [22] = "MQ", [23] = "CTRL_MAC_ADDR",
	[28] = "INDIRECT_DESC", [29] = "EVENT_IDX", [32] = "VERSION_1",
};

static int do_info(struct net_args *a, struct xvl_client *c, struct xvl_net *n)
{
	(void)c;
	struct xvl_net_info in;
	int up = xvl_net_link_status(n);
	xvl_net_get_info(n, &in);
	char mac[18], feats[400] = "";
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", in.mac[0], in.mac[1], in.mac[2],
		 in.mac[3], in.mac[4], in.mac[5]);
	for (unsigned b = 0; b < 64; b++)
		if (in.features & (1ull << b)) {
			size_t l = strlen(feats);
			if (feature_names[b])
				snprintf(feats + l, sizeof(feats) - l, "%s%s", l ? " " : "", feature_names[b]);
			else
				snprintf(feats + l, sizeof(feats) - l, "%sbit%u", l ? " " : "", b);
		}
	if (a->json) {
		printf("{\"name\": \"%s\", \"mac\": \"%s\", \"mtu\": %u, \"max_pairs\": %u, "
		       "\"pairs\": %u, \"queue_size\": %u, \"link_up\": %s, \"features\": \"%s\"}\n",
		       in.name, mac, in.mtu, in.max_pairs, in.pairs, in.queue_size,
		       up > 0 ? "true" : "false", feats);
		return 0;
	}
	printf("device       %s\n", in.name);
	printf("mac          %s\n", mac);
	printf("mtu          %u\n", in.mtu);
	printf("link         %s\n", up > 0 ? "up" : up == 0 ? "down" : "broken");
	printf("queue pairs  %u of %u (%u entries)%s\n", in.pairs, in.max_pairs, in.queue_size,
	       in.ctrl ? ", control queue" : "");
	printf("offloads     tx csum %s, tx tso %s, rx csum %s, rx tso %s\n", in.csum ? "on" : "off",
	       in.tso ? "on" : "off", in.rx_csum ? "on" : "off", in.rx_tso ? "on" : "off");
	printf("rx buffers   %u bytes\n", in.rx_buf_size);
	printf("features     %s\n", feats);
	return up < 0 ? 1 : 0;
}

int cmd_net(int argc, char **argv)
{
	struct net_args a = {.count = 5, .size = 64, .interval_ms = 200, .time_s = 1,
			     .sizes = "64,1500,9000"};
	if (argc < 2)
		return cli_fail(2, "net", "which one: info, ping, perf or tap? (xvl net --help)");
	const char *sub = argv[1];
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h"))
		return cli_help(help);
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc - 1, argv + 1, "c:d:Q:S:pW:hrP:n:l:i:z:t:jI:R:C", longopts,
				  NULL)) != -1) {
		if (opt == 'h')
			return cli_help(help);
		if (!parse_opt(&a, opt))
			return 2;
	}
	if (optind < argc - 1)
		return cli_fail(2, "net", "unexpected argument '%s'", argv[optind + 1]);
	if (!a.connect) {
		a.connect = getenv("XVL_LINK");
		if (!a.device)
			a.device = getenv("XVL_DEVICE");
	}
	if (!a.connect || !*a.connect)
		return cli_fail(2, "net", "--connect URI is required (or XVL_LINK in the environment)");
	if (a.device && !*a.device)
		a.device = NULL;
	uint8_t mac[6];
	if (a.peer && !net_parse_mac(a.peer, mac))
		return cli_fail(2, "net", "--peer: '%s' is not a MAC address (aa:bb:cc:dd:ee:ff)", a.peer);
	int (*fn)(struct net_args *, struct xvl_client *, struct xvl_net *) =
		!strcmp(sub, "info")   ? do_info
		: !strcmp(sub, "ping") ? (a.responder ? net_do_responder : net_do_ping)
		: !strcmp(sub, "perf") ? (a.responder ? net_do_responder : net_do_perf)
		: !strcmp(sub, "tap")  ? net_do_tap
				       : NULL;
	if (!fn)
		return cli_fail(2, "net", "unknown subcommand '%s' (info, ping, perf, tap)", sub);
	if (fn == net_do_tap && (!a.ifname || !*a.ifname || strlen(a.ifname) > 15))
		return cli_fail(2, "net", "tap: --ifname IF (1..15 characters) is required");
	if (fn == net_do_tap && !a.queue_size)
		a.queue_size = 1024; /* iperf3 through 256 entries: 7x the retransmits of 1024 */
	struct xvl_client *c;
	struct xvl_net *n;
	int rc = open_net(&a, &c, &n);
	if (rc)
		return rc;
	rc = fn(&a, c, n);
	xvl_net_close(n);
	xvl_client_close(c);
	return rc;
}
