/* SPDX-License-Identifier: MIT */
/* xvl export vhost-user-blk: an xvloop block device served to a VMM. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "export.h"

static const char help[] =
	"NAME\n"
	"    xvl export - serve an xvloop block device to a VMM as a vhost-user-blk backend\n"
	"\n"
	"SYNOPSIS\n"
	"    xvl export vhost-user-blk --connect URI --device NAME --socket PATH [OPTIONS]\n"
	"\n"
	"DESCRIPTION\n"
	"    A vhost-user-blk backend on the driver side: any vhost-user frontend\n"
	"    (QEMU's vhost-user-blk-pci, libvirt's <disk type='vhostuser'>, and so\n"
	"    KubeVirt and Nova) connects to PATH and gets the device NAME of the\n"
	"    xvloop server at URI as a virtio-blk disk.  The VMM's guest RAM is mapped\n"
	"    by this process only; each request is copied between guest RAM and a\n"
	"    buffer in the xvloop window, so the device side sees the window and\n"
	"    nothing else.  Each vring the frontend starts uses the xvloop queue of\n"
	"    the same index (up to the queues the device offers, at most 16).\n"
	"\n"
	"    One frontend at a time; when it disconnects, the requests it left are\n"
	"    completed and the next one is accepted (QEMU: reconnect=1 on the\n"
	"    chardev).  With INFLIGHT_SHMFD (QEMU negotiates it) the frontend keeps\n"
	"    a record of requests in flight, so an export that is killed and\n"
	"    restarted on the same PATH resubmits what the guest was waiting for.\n"
	"    The guest needs shared RAM: -object memory-backend-memfd,id=mem,size=S,\n"
	"    share=on -machine memory-backend=mem (libvirt: <memoryBacking><source\n"
	"    type='memfd'/><access mode='shared'/></memoryBacking>).\n"
	"\n"
	"OPTIONS\n"
	"    -c, --connect URI      the xvloop server: xvl:PATH or PATH\n"
	"    -d, --device NAME      the server's block device to export\n"
	"    -s, --socket PATH      vhost-user socket to listen on (a stale one is replaced)\n"
	"    -m, --socket-mode MODE chmod the socket, octal (e.g. 0666 for a VMM running\n"
	"                           as another user, such as libvirt-qemu)\n"
	"    -q, --queues N         xvloop queues to open, 1..16 (default: all the device offers)\n"
	"        --queue-size N     xvloop queue size, power of two <= 1024 (default 256)\n"
	"    -w, --window-size B    window size (default 64M; requests wait when it is full)\n"
	"        --reconnect-ms N   when the xvloop server restarts, wait this long for it\n"
	"        --drain-ms N       longest wait for the device when the frontend stops a\n"
	"                           ring (default 30000); then the export exits with 1\n"
	"        --once             exit when the first frontend disconnects\n"
	"        --quiet            no log lines on stderr\n"
	"    -h, --help             this text\n"
	"\n"
	"EXAMPLES\n"
	"    xvl export vhost-user-blk -c xvl:/run/xvl.sock -d disk0 -s /run/disk0.vhost\n"
	"    qemu-system-x86_64 ... -object memory-backend-memfd,id=mem,size=1G,share=on \\\n"
	"        -machine memory-backend=mem -chardev socket,id=d0,path=/run/disk0.vhost,reconnect=1 \\\n"
	"        -device vhost-user-blk-pci,chardev=d0,num-queues=2\n"
	"\n"
	"EXIT STATUS\n"
	"    0 stopped by SIGINT or SIGTERM (or --once), 1 runtime failure, 2 bad usage.\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static bool num_arg(const char *opt, const char *text, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	unsigned long v = strtoul(text, &end, 0);
	if (*text && !*end && v >= lo && v <= hi) {
		*out = (unsigned)v;
		return true;
	}
	cli_fail(2, "export", "%s: '%s' is not a number in %u..%u", opt, text, lo, hi);
	return false;
}

static int serve(const char *uri, const char *device, struct xvl_client_opts *co,
		 struct xvl_blk_opts *bo, const struct xvl_export_opts *eo)
{
	char err[256] = "";
	struct xvl_client *c;
	int rc = xvl_client_connect(&c, uri, co, err, sizeof(err));
	if (rc < 0)
		return cli_fail(1, "export", "%s", err);
	bo->device = xvl_client_find(c, device);
	if (bo->device < 0) {
		cli_fail(1, "export", "the server at %s has no device called %s", uri, device);
		xvl_client_close(c);
		return 1;
	}
	struct xvl_dev_desc d;
	xvl_client_device(c, (unsigned)bo->device, &d);
	if (d.virtio_id != 2) {
		cli_fail(1, "export", "%s is not a block device", device);
		xvl_client_close(c);
		return 1;
	}
	if (!bo->num_queues)
		bo->num_queues = d.num_queues;
	struct xvl_blk *b;
	rc = xvl_blk_open(c, bo, &b);
	if (rc < 0) {
		cli_fail(1, "export", "open %s: %s", device, xvl_client_errmsg(c));
		xvl_client_close(c);
		return 1;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct xvl_errbuf eb = {{0}};
	rc = xvl_export_vhost_blk(c, b, eo, &stop_flag, &eb);
	if (rc == -ETIMEDOUT) {
		/* the device is stuck: closing it would wait for it once more (the link
		 * timeout); the server sees the connection go when the process does */
		cli_fail(1, "export", "%s", eb.msg);
		fflush(NULL);
		_exit(1);
	}
	xvl_blk_close(b);
	xvl_client_close(c);
	if (rc < 0)
		return cli_fail(1, "export", "%s", eb.msg);
	return 0;
}

int cmd_export(int argc, char **argv)
{
	enum { O_QSIZE = 256, O_RECONNECT, O_DRAIN, O_ONCE, O_QUIET };
	static const struct option longopts[] = {
		{"connect", required_argument, NULL, 'c'},  {"device", required_argument, NULL, 'd'},
		{"socket", required_argument, NULL, 's'},   {"socket-mode", required_argument, NULL, 'm'},
		{"queues", required_argument, NULL, 'q'},   {"queue-size", required_argument, NULL, O_QSIZE},
		{"window-size", required_argument, NULL, 'w'},
		{"reconnect-ms", required_argument, NULL, O_RECONNECT},
		{"drain-ms", required_argument, NULL, O_DRAIN}, {"once", no_argument, NULL, O_ONCE},
		{"quiet", no_argument, NULL, O_QUIET},      {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	struct xvl_client_opts co = {XVL_CLIENT_OPTS_INIT, .name = "xvl-export"};
	struct xvl_blk_opts bo = {XVL_BLK_OPTS_INIT, .device = -1};
	struct xvl_export_opts eo = { .drain_ms = 30000 };
	const char *uri = NULL, *device = NULL;
	unsigned v;
	int opt;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return argc < 2 ? (fputs(help, stderr), 2) : cli_help(help);
	if (strcmp(argv[1], "vhost-user-blk"))
		return cli_fail(2, "export", "unknown export '%s' (vhost-user-blk)", argv[1]);
	argc--;
	argv++;
	while ((opt = getopt_long(argc, argv, "c:d:s:m:q:w:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': uri = optarg; break;
		case 'd': device = optarg; break;
		case 's': eo.socket = optarg; break;
		case 'm':
			if (!num_arg("--socket-mode", optarg, 0, 07777, &eo.socket_mode))
				return 2;
			break;
		case 'q':
			if (!num_arg("--queues", optarg, 1, 16, &v))
				return 2;
			bo.num_queues = (uint16_t)v;
			break;
		case O_QSIZE:
			if (!num_arg("--queue-size", optarg, 1, 1024, &v) || (v & (v - 1)))
				return v & (v - 1) ? cli_fail(2, "export", "--queue-size: a power of two") : 2;
			bo.queue_size = (uint16_t)v;
			break;
		case 'w':
			if (!cli_size("export", "--window-size", optarg, &co.window_size))
				return 2;
			break;
		case O_RECONNECT:
			if (!num_arg("--reconnect-ms", optarg, 0, 3600000, &co.reconnect_ms))
				return 2;
			break;
		case O_DRAIN:
			if (!num_arg("--drain-ms", optarg, 1, 3600000, &eo.drain_ms))
				return 2;
			break;
		case O_ONCE: eo.once = true; break;
		case O_QUIET: eo.quiet = true; break;
		case 'h': return cli_help(help);
		default: return cli_fail(2, "export", "see 'xvl export --help'");
		}
	}
	if (optind < argc)
		return cli_fail(2, "export", "unexpected argument '%s'", argv[optind]);
	if (!uri || !device || !eo.socket)
		return cli_fail(2, "export", "--connect URI, --device NAME and --socket PATH are required");
	return serve(uri, device, &co, &bo, &eo);
}
