/* SPDX-License-Identifier: MIT */
/* xvl blk mount: block devices as regular files, through FUSE (src/fuse). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blkfs.h"
#include "cli.h"

static const char help[] =
	"NAME\n"
	"    xvl blk mount - an xvloop block device as a regular file (FUSE)\n"
	"\n"
	"SYNOPSIS\n"
	"    xvl blk mount --connect URI [--device NAME] [--foreground] [--allow-other]\n"
	"                  [--queues N] [--window-size BYTES] [--single-thread] [--debug]\n"
	"                  MOUNTPOINT\n"
	"\n"
	"DESCRIPTION\n"
	"    Mounts a FUSE file system at MOUNTPOINT (an existing directory) whose root\n"
	"    holds one regular file per block device of the server, named by the\n"
	"    device (with --device, only that one), its size the device's capacity.\n"
	"    Any program can open, read, write, fsync and mmap the file: no kernel loop\n"
	"    device, no privileges beyond FUSE.  fsync sends a virtio-blk FLUSH.  Writes\n"
	"    go through the kernel's page cache (a shared writable mmap is written back\n"
	"    through FUSE); writes that are not whole sectors are done read-modify-write.\n"
	"\n"
	"    The file cannot grow or shrink: a write that starts at or past the end\n"
	"    fails with EFBIG and writes nothing, one that crosses the end is cut there\n"
	"    (a short count); truncation to another size fails with\n"
	"    EPERM (use dd ... conv=notrunc); files cannot be created, renamed or removed.\n"
	"    The page cache assumes nobody else writes the device while it is mounted.\n"
	"\n"
	"    The devices are opened before mounting: a server or device that is not\n"
	"    there is an error here, not at the first read.  Requests are served by\n"
	"    libfuse's multi-threaded loop; the threads share each device's queues\n"
	"    (a lock per queue, many requests in flight on each).  Without\n"
	"    --foreground the command returns once the mount is up and keeps serving in\n"
	"    the background.  Unmount with 'fusermount3 -u MOUNTPOINT' (or umount as\n"
	"    root); the command then exits 0.\n"
	"\n"
	"OPTIONS\n"
	"    -c, --connect URI        the server: xvl:SOCKET or SOCKET (or vhost-user:SOCKET)\n"
	"    -d, --device NAME        only this device (name or index)\n"
	"    -f, --foreground         stay in the foreground until unmounted\n"
	"        --allow-other        let other users open the files (FUSE allow_other; as\n"
	"                             a non-root user it needs user_allow_other in\n"
	"                             /etc/fuse.conf); default: only the mounting user\n"
	"    -Q, --queues N           queues per device (default: all the device offers)\n"
	"    -W, --window-size BYTES  shared window per device (default 64M)\n"
	"        --single-thread      serve FUSE requests from one thread\n"
	"        --debug              libfuse's debug output (implies --foreground)\n"
	"    -h, --help               this text\n"
	"\n"
	"EXAMPLE\n"
	"    xvl blk mount -c /run/xvl.sock -d disk0 /mnt/xvl &&\n"
	"        qemu-img info -f raw /mnt/xvl/disk0 && fusermount3 -u /mnt/xvl\n"
	"\n"
	"EXIT STATUS\n"
	"    0 unmounted cleanly, 1 runtime failure, 2 bad usage.\n";

enum { OPT_ALLOW_OTHER = 256, OPT_SINGLE, OPT_DEBUG };

struct mount_args {
	const char *connect, *device;
	unsigned queues;
	uint64_t window_size;
	struct blkfs_opts fs;
};

static int parse(int argc, char **argv, struct mount_args *a)
{
	static const struct option lo[] = {
		{"connect", required_argument, NULL, 'c'}, {"device", required_argument, NULL, 'd'},
		{"foreground", no_argument, NULL, 'f'},    {"allow-other", no_argument, NULL, OPT_ALLOW_OTHER},
		{"queues", required_argument, NULL, 'Q'},  {"window-size", required_argument, NULL, 'W'},
		{"single-thread", no_argument, NULL, OPT_SINGLE}, {"debug", no_argument, NULL, OPT_DEBUG},
		{"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
	int opt;
	char *end;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:d:fQ:W:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'c': a->connect = optarg; break;
		case 'd': a->device = optarg; break;
		case 'f': a->fs.foreground = true; break;
		case OPT_ALLOW_OTHER: a->fs.allow_other = true; break;
		case OPT_SINGLE: a->fs.single_thread = true; break;
		case OPT_DEBUG: a->fs.debug = a->fs.foreground = true; break;
		case 'Q':
			a->queues = (unsigned)strtoul(optarg, &end, 10);
			if (!*optarg || *end || a->queues < 1 || a->queues > 16)
				return cli_fail(2, "blk mount", "--queues: '%s' is not a number in 1..16", optarg);
			break;
		case 'W':
			if (!cli_size("blk mount", "--window-size", optarg, &a->window_size))
				return 2;
			break;
		case 'h': return cli_help(help);
		default: return cli_fail(2, "blk mount", "see 'xvl blk mount --help'");
		}
	}
	if (optind >= argc)
		return cli_fail(2, "blk mount", "MOUNTPOINT is missing (see 'xvl blk mount --help')");
	a->fs.mountpoint = argv[optind++];
	if (optind < argc)
		return cli_fail(2, "blk mount", "unexpected argument '%s'", argv[optind]);
	if (!a->connect)
		return cli_fail(2, "blk mount", "--connect URI is required");
	struct stat st;
	if (stat(a->fs.mountpoint, &st) < 0)
		return cli_fail(1, "blk mount", "mount point %s: %s", a->fs.mountpoint, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return cli_fail(1, "blk mount", "mount point %s is not a directory", a->fs.mountpoint);
	return -1;
}

/* Names of the block devices to mount: --device, or every one the server offers. */
static int device_names(struct mount_args *a, char names[][32], unsigned *n)
{
	if (a->device) {
		snprintf(names[0], 32, "%s", a->device);
		*n = 1;
		return 0;
	}
	struct xvl_client *c;
	struct xvl_client_opts co = {XVL_CLIENT_OPTS_INIT, .name = "xvl-blk-mount", .window_size = 1 << 20};
	char err[300];
	if (xvl_client_connect(&c, a->connect, &co, err, sizeof(err)) < 0)
		return cli_fail(1, "blk mount", "cannot connect to %s", err);
	*n = 0;
	for (unsigned i = 0; i < xvl_client_num_devices(c) && *n < BLKFS_MAX_FILES; i++) {
		struct xvl_dev_desc d;
		if (xvl_client_device(c, i, &d) == 0 && d.virtio_id == 2)
			snprintf(names[(*n)++], 32, "%s", d.name);
	}
	xvl_client_close(c);
	if (!*n)
		return cli_fail(1, "blk mount", "%s offers no block device", a->connect);
	return 0;
}

static void close_all(struct blkfs_opts *fs)
{
	for (unsigned i = 0; i < fs->n_files; i++)
		xbs_close(fs->files[i].dev);
	fs->n_files = 0;
}

static int open_all(struct mount_args *a)
{
	char names[BLKFS_MAX_FILES][32];
	unsigned n;
	int rc = device_names(a, names, &n);
	if (rc)
		return rc;
	for (unsigned i = 0; i < n; i++) {
		struct xbs_opts o = {.uri = a->connect, .device = names[i], .client_name = "xvl-blk-mount",
				     .queues = a->queues, .window_size = a->window_size};
		struct blkfs_file *f = &a->fs.files[a->fs.n_files];
		char err[300];
		if (xbs_open(&f->dev, &o, err, sizeof(err)) < 0) {
			close_all(&a->fs);
			return cli_fail(1, "blk mount", "%s: %s", a->connect, err);
		}
		struct xvl_blk_info in;
		xbs_info(f->dev, &in);
		snprintf(f->name, sizeof(f->name), "%.31s", in.name[0] ? in.name : names[i]);
		a->fs.n_files++;
	}
	return 0;
}

int cmd_blk_mount(int argc, char **argv)
{
	struct mount_args a = {0};
	int rc = parse(argc, argv, &a);
	if (rc >= 0)
		return rc;
	rc = open_all(&a);
	if (rc)
		return rc;
	char fsname[64];
	snprintf(fsname, sizeof(fsname), "xvloop:%s", a.fs.n_files == 1 ? a.fs.files[0].name : "all");
	a.fs.fsname = fsname;
	rc = blkfs_run(&a.fs);
	close_all(&a.fs);
	return rc ? cli_fail(1, "blk mount", "could not mount or serve %s (libfuse said why above)",
			     a.fs.mountpoint)
		  : 0;
}
