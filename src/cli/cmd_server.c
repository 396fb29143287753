/* SPDX-License-Identifier: MIT */
/* xvl server */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "server.h"

static const char help[] =
	"NAME\n"
	"    xvl server - serve virtio block devices to xvloop clients\n"
	"\n"
	"SYNOPSIS\n"
	"    xvl server --listen SOCKET --dev SPEC [--dev SPEC]... [--name NAME]\n"
	"               [--max-window BYTES] [--quiet]\n"
	"    xvl server --link window --window WINDOW [--doorbell SPEC] --dev SPEC...\n"
	"\n"
	"DESCRIPTION\n"
	"    Listens on the Unix socket SOCKET (SOCK_SEQPACKET) for clients.  Each\n"
	"    client brings its own memory window; the server maps it and nothing else\n"
	"    of the client's.  One client at a time may attach a device; the server\n"
	"    outlives clients that disconnect or die, and serves the others meanwhile.\n"
	"    Runs until SIGINT or SIGTERM, then removes SOCKET.\n"
	"\n"
	"OPTIONS\n"
	"    -l, --listen SOCKET   socket path to listen on (a stale socket file is replaced;\n"
	"                          a live one is refused)\n"
	"    -d, --dev SPEC        a device (at most 16), SPEC is comma-separated key=value:\n"
	"          name=NAME         device name, also its virtio-blk serial (<= 20 bytes)\n"
	"          backend=KIND      file | null | ram | vhost-user\n"
	"          path=PATH         file: the disk image or block device;\n"
	"                            vhost-user: the backend's socket\n"
	"          size=BYTES        null, ram: capacity (K/M/G/T suffixes);\n"
	"                            file: use only the first BYTES of the file\n"
	"          queues=N          queues offered, 1..16 (built-in backends; default 1)\n"
	"          queue-size=N      largest queue accepted, power of two <= 1024\n"
	"          direct=on         file: O_DIRECT (buffers are 512-byte aligned)\n"
	"          ro=on             read-only device\n"
	"          relay=on          vhost-user: relay notifications through the server\n"
	"                            (default: the backend and the client signal each other;\n"
	"                            queues the client polls are always relayed, and the\n"
	"                            server watches their avail index and kicks the backend)\n"
	"          reconnect-ms=N    vhost-user: wait this long for a lost backend (10000)\n"
	"          listen=on         vhost-user: listen on path= and let the backend connect\n"
	"                            (its client mode: OVS dpdkvhostuserclient ports)\n"
	"          type=net          a virtio-net device (default type=blk), with\n"
	"                            backend=switch (a port of the built-in L2 switch)\n"
	"                            backend=tap (a tap in the server's netns) or\n"
	"                            backend=vhost-user (bridge to a vhost-user-net\n"
	"                            backend; control queue served by the server);\n"
	"                            queues=N is then queue pairs, 1..7\n"
	"          switch=SW         switch: which switch (default sw0)\n"
	"          ifname=IF         tap: the interface (created if missing)\n"
	"          mac=MAC           net: the MAC address (default 52:54:00 + 3 bytes\n"
	"                            derived from the name)\n"
	"          mtu=N             net: 68..9000 (default 1500)\n"
	"          spoof=on          switch: drop frames whose source MAC is not the\n"
	"                            port's, and refuse MAC changes\n"
	"    -c, --cpus LIST       one worker thread per CPU listed (0,1 or 0-3), pinned there;\n"
	"                          auto: one per CPU the process may use, not pinned (what a\n"
	"                          partition's device compartment needs: its seccomp profile\n"
	"                          refuses sched_setaffinity).  The main thread keeps the\n"
	"                          links.  Default: the main thread serves every queue itself\n"
	"    -P, --poll-max-us N   after activity, poll the queues for at most N us (adapted\n"
	"                          to what recent requests took) before sleeping; 0: never\n"
	"                          poll (default 50)\n"
	"    --link window         serve over the mailbox inside a shared window (PROTOCOL.md\n"
	"                          section 7) instead of, or with --listen besides, the socket\n"
	"    --window WINDOW       the window of the mailbox link:\n"
	"          PATH              a file to map (a shm file; in a guest an ivshmem BAR,\n"
	"                            /sys/bus/pci/devices/BDF/resource2); waits until the\n"
	"                            client has formatted it.  A peer that can truncate the\n"
	"                            file can crash the server: untrusted peers get a memfd\n"
	"          fd:N              a sealed memfd handed over at spawn\n"
	"          ivshmem:SOCKET[,size=BYTES][,vectors=N]\n"
	"                            be QEMU's ivshmem server on SOCKET: create the window\n"
	"                            (sealed memfd, default 64M) and N vectors per peer\n"
	"                            (default 8); the first peer (QEMU's ivshmem-doorbell, or\n"
	"                            a client with ivshmem:SOCKET) is the driver side\n"
	"          ivshmem:SOCKET[,size=BYTES][,vectors=N],relay\n"
	"                            only be the ivshmem server (no --dev needed): one\n"
	"                            peer serves the window to another, e.g. two guests\n"
	"                            with --window vfio:BDF,peer=ID and --connect\n"
	"                            vfio:BDF,peer=ID (peer ids in connection order, from 1)\n"
	"          vfio:BDF[,peer=N] in a QEMU guest: the ivshmem-doorbell device at BDF\n"
	"                            (vectors=N, bound to vfio-pci; needs an emulated IOMMU):\n"
	"                            BAR2 is the window, rings go to ivshmem peer N (default\n"
	"                            0, the ivshmem server) through BAR0, the driver's rings\n"
	"                            arrive as MSI-X.  No --doorbell with it\n"
	"    --doorbell SPEC       PATH and fd:N windows: none (poll, the default) or\n"
	"                          eventfd:own=FD,..;peer=FD,.. (descriptors handed over at spawn,\n"
	"                          vector 0 first)\n"
	"    -n, --name NAME       server name shown to clients\n"
	"    -w, --max-window BYTES  largest window a client may bring (default 1G): the\n"
	"                          pages the server touches in it are charged to the\n"
	"                          server's memory cgroup; larger windows are refused\n"
	"    -q, --quiet           no log lines on stderr\n"
	"    -h, --help            this text\n"
	"\n"
	"EXAMPLES\n"
	"    xvl server --listen /run/xvl.sock --dev name=disk0,backend=file,path=disk.img\n"
	"    xvl server -l s.sock -d name=n0,backend=null,size=1G,queues=4\n"
	"    xvl server -l s.sock -d name=q0,backend=vhost-user,path=/run/qsd.sock\n"
	"    xvl server --link window --window ivshmem:/run/ivsh.sock,vectors=8 -d name=d0,backend=ram,size=64M\n"
	"    xvl server -l s.sock -d name=vnf0,type=net,backend=switch \\\n"
	"        -d name=vnf1,type=net,backend=switch,spoof=on -d name=up0,type=net,backend=tap,ifname=xt0\n";

/* "0,2-3" into o->cpus; -EINVAL on anything else. */
static int parse_cpu_list(const char *text, struct xvl_server_opts *o)
{
	const char *p = text;
	o->n_cpus = 0;
	if (!strcmp(text, "auto")) { /* the CPUs this process may run on (a partition's cpus) */
		cpu_set_t set;
		if (sched_getaffinity(0, sizeof(set), &set) < 0)
			return -errno;
		/* one worker per CPU, not pinned: in a partition sched_setaffinity is refused
		 * (seccomp), and the process's affinity already holds every thread */
		for (int c = 0; c < CPU_SETSIZE && o->n_cpus < XVL_SERVER_MAX_CPUS; c++)
			if (CPU_ISSET(c, &set))
				o->cpus[o->n_cpus++] = -1;
		return o->n_cpus ? 0 : -EINVAL;
	}
	while (*p) {
		char *end;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		unsigned long a = strtoul(p, &end, 10), b = a;
		if (*end == '-') {
			if (end[1] < '0' || end[1] > '9')
				return -EINVAL;
			b = strtoul(end + 1, &end, 10);
		}
		if (b < a || b >= CPU_SETSIZE)
			return -EINVAL;
		for (unsigned long c = a; c <= b; c++) {
			if (o->n_cpus == XVL_SERVER_MAX_CPUS)
				return -EINVAL;
			o->cpus[o->n_cpus++] = (int)c;
		}
		if (*end == ',' && end[1])
			end++;
		else if (*end)
			return -EINVAL;
		p = end;
	}
	return o->n_cpus ? 0 : -EINVAL;
}

int cmd_server(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'}, {"dev", required_argument, NULL, 'd'},
		{"name", required_argument, NULL, 'n'},   {"quiet", no_argument, NULL, 'q'},
		{"max-window", required_argument, NULL, 'w'},
		{"help", no_argument, NULL, 'h'},         {"link", required_argument, NULL, 'L'},
		{"window", required_argument, NULL, 'W'}, {"doorbell", required_argument, NULL, 'B'},
		{"cpus", required_argument, NULL, 'c'},   {"poll-max-us", required_argument, NULL, 'P'},
		{NULL, 0, NULL, 0}};
	const char *link = "socket";
	struct xvl_server_opts o = {0};
	struct xvl_errbuf eb = {{0}};
	int opt;

	while ((opt = getopt_long(argc, argv, "l:d:n:w:qhc:P:", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l': o.listen = optarg; break;
		case 'n': o.name = optarg; break;
		case 'q': o.quiet = true; break;
		case 'w':
			if (!cli_size("server", "--max-window", optarg, &o.max_window))
				return 2;
			if (o.max_window < 4096)
				return cli_fail(2, "server", "--max-window %s: at least 4096 bytes",
						optarg);
			break;
		case 'L': link = optarg; break;
		case 'W': o.window = optarg; break;
		case 'B': o.doorbell = optarg; break;
		case 'h': return cli_help(help);
		case 'c':
			if (parse_cpu_list(optarg, &o) < 0)
				return cli_fail(2, "server", "--cpus: '%s' is not a list of CPUs like "
					        "0,1 or 0-3 (at most %u)", optarg, XVL_SERVER_MAX_CPUS);
			break;
		case 'P': {
			char *end;
			unsigned long us = strtoul(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end || us > 1000000)
				return cli_fail(2, "server", "--poll-max-us: '%s' is not a number of "
					        "microseconds up to 1000000", optarg);
			o.poll_max_ns = us ? (uint32_t)(us * 1000u) : UINT32_MAX;
			break;
		}
		case 'd':
			if (o.n_devs == XVL_SERVER_MAX_DEVS)
				return cli_fail(2, "server", "at most %u devices", XVL_SERVER_MAX_DEVS);
			if (xvl_dev_spec_parse(&o.devs[o.n_devs++], optarg, &eb) < 0)
				return cli_fail(2, "server", "%s", eb.msg);
			break;
		default:
			return cli_fail(2, "server", "see 'xvl server --help'");
		}
	}
	if (optind < argc)
		return cli_fail(2, "server", "unexpected argument '%s'", argv[optind]);
	if (strcmp(link, "socket") && strcmp(link, "window"))
		return cli_fail(2, "server", "--link is socket or window, not '%s'", link);
	if (!strcmp(link, "window") != !!o.window)
		return cli_fail(2, "server", "--link window and --window WINDOW go together");
	if (!o.listen && !o.window)
		return cli_fail(2, "server", "--listen SOCKET is required");
	if (!o.n_devs && !xvl_server_window_relays(o.window))
		return cli_fail(2, "server", "at least one --dev SPEC is required");
	for (unsigned i = 0; i < o.n_devs; i++)
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(o.devs[i].name, o.devs[j].name))
				return cli_fail(2, "server", "two devices are called %s", o.devs[i].name);

	struct xvl_server *s;
	if (xvl_server_create(&s, &o, &eb) < 0)
		return cli_fail(1, "server", "%s", eb.msg);
	int rc = xvl_server_run(s);
	xvl_server_destroy(s);
	return rc < 0 ? 1 : 0;
}
