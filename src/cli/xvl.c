/* SPDX-License-Identifier: MIT */
/* xvl: the xvloop command. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "server.h"
#include "xvloop/xvl.h"

static const char usage[] =
	"NAME\n"
	"    xvl - cross-compartment virtio-loopback\n"
	"\n"
	"SYNOPSIS\n"
	"    xvl server --listen SOCKET --dev SPEC [--dev SPEC]...\n"
	"    xvl blk info|read|write|verify --connect URI [OPTIONS]\n"
	"    xvl blk mount --connect URI [--device NAME] MOUNTPOINT\n"
	"    xvl net info|ping|perf|tap --connect URI [--device NAME] [OPTIONS]\n"
	"    xvl cdi --connect URI [--output FILE]\n"
	"    xvl demo [--size BYTES] [--ops N] [--plain] [--keep]\n"
	"    xvl export vhost-user-blk --connect URI --device NAME --socket PATH\n"
	"    xvl run CONFIG | --default; xvl status [--json]; xvl stop\n"
	"    xvl COMMAND --help\n"
	"\n"
	"DESCRIPTION\n"
	"    A server (the device side) serves virtio block devices to clients (the\n"
	"    driver side) that run in other processes or compartments.  The two share\n"
	"    nothing but one memory window that the client (or the partitioner)\n"
	"    creates; the control path is a Unix socket (the link).  A server device\n"
	"    is backed by a file (io_uring), RAM, nothing (null), or an unmodified\n"
	"    vhost-user-blk backend that is given the window as its only memory.\n"
	"\n"
	"COMMANDS\n"
	"    server   serve devices on a socket\n"
	"    blk      use a block device: info, read, write, verify; mount it as a\n"
	"             regular file (FUSE)\n"
	"    net      use a net device: info, ping, perf; a tap interface carried by it\n"
	"    cdi      write a Container Device Interface spec for a server's devices\n"
	"             (podman/containerd --device xvloop.io/blk=NAME)\n"
	"    demo     a device compartment with a file-backed disk and a driver\n"
	"             compartment (through the partitioner) that writes and verifies a\n"
	"             pattern; reports throughput and latency\n"
	"    export   serve a device to a VMM as a vhost-user-blk backend\n"
	"    run      the partitioner: sandboxed compartments from one config, supervised\n"
	"    status   show a running partitioner instance (--json)\n"
	"    stop     tear a partitioner instance down\n"
	"\n"
	"    NBD: the nbdkit plugin 'nbdkit xvloop uri=xvl:SOCKET device=NAME'\n"
	"    (build/src/nbdkit/nbdkit-xvloop-plugin.so) serves a device to any NBD client.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 success, 1 runtime failure (the message says what failed), 2 bad usage.\n";

int cli_help(const char *text)
{
	fputs(text, stdout);
	return 0;
}

int cli_fail(int code, const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "xvl %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

bool cli_size(const char *cmd, const char *opt, const char *text, uint64_t *out)
{
	if (xvl_parse_size(text, out) == 0)
		return true;
	cli_fail(2, cmd, "%s: '%s' is not a size (a number with an optional K, M, G or T suffix)",
		 opt, text);
	return false;
}

int cli_device_index(struct xvl_client *c, const char *dev)
{
	if (!dev)
		return -1;
	char *end;
	long i = strtol(dev, &end, 10);
	if (*dev && !*end)
		return (int)i;
	return xvl_client_find(c, dev);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return fputs(usage, stderr), 2;
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help"))
		return cli_help(usage);
	if (!strcmp(cmd, "server"))
		return cmd_server(argc - 1, argv + 1);
	if (!strcmp(cmd, "blk"))
		return cmd_blk(argc - 1, argv + 1);
	if (!strcmp(cmd, "net"))
		return cmd_net(argc - 1, argv + 1);
	if (!strcmp(cmd, "cdi"))
		return cmd_cdi(argc - 1, argv + 1);
	if (!strcmp(cmd, "demo"))
		return cmd_demo(argc - 1, argv + 1);
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "status"))
		return cmd_status(argc - 1, argv + 1);
	if (!strcmp(cmd, "export"))
		return cmd_export(argc - 1, argv + 1);
	if (!strcmp(cmd, "stop"))
		return cmd_stop(argc - 1, argv + 1);
	fprintf(stderr, "xvl: unknown command '%s' (see xvl --help)\n", cmd);
	return 2;
}
