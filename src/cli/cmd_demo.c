/* SPDX-License-Identifier: MIT */
/*
 * xvl demo: the main job on an embedded default.  A device compartment
 * serving a file-backed disk and a driver compartment that writes a pattern
 * across it, reads it back and verifies it; they share only a window.  The
 * partitioner makes and supervises both (--plain: two bare processes, for
 * tools such as valgrind that cannot run inside the sandbox).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "os.h"
#include "part.h"

static const char help[] =
	"NAME\n"
	"    xvl demo - an xvloop server and client in two processes, end to end\n"
	"\n"
	"SYNOPSIS\n"
	"    xvl demo [--size BYTES] [--ops N] [--plain] [--keep]\n"
	"\n"
	"DESCRIPTION\n"
	"    Creates a sparse disk image in a new temporary directory and runs, through\n"
	"    the partitioner (as 'xvl run' would), two compartments: a device side\n"
	"    ('xvl server' with the image as a file-backed disk) and a driver side\n"
	"    ('xvl blk verify').  Each has its own namespaces, seccomp filter and CPU;\n"
	"    they share nothing but one memory window that the partitioner creates.\n"
	"    The driver fills the whole device with a pattern, runs random reads and\n"
	"    writes of 512 B to 128 KiB on two queues, reads everything back and checks\n"
	"    every byte.  Prints what it did with throughput and latency, stops\n"
	"    everything and removes the directory.  Needs no external server.\n"
	"\n"
	"OPTIONS\n"
	"    --size BYTES   disk size (default 64M)\n"
	"    --ops N        random requests after the fill (default 20000)\n"
	"    --plain        no partitioner: the server and the client as two plain\n"
	"                   processes (what runs under valgrind)\n"
	"    --keep         keep the temporary directory (disk image and socket)\n"
	"    -h, --help     this text\n"
	"\n"
	"EXIT STATUS\n"
	"    0 when every byte verified, 1 otherwise.\n";

/*
 * Our own executable, resolved before fork: exec'ing "/proc/self/exe" itself
 * runs the wrong program under tools that load us (valgrind's
 * --trace-children starts its own launcher that way and fails).
 */
static void resolve_self(char *self_exe, size_t cap)
{
	ssize_t n = readlink("/proc/self/exe", self_exe, cap - 1);
	if (n > 0 && (size_t)n < cap - 1)
		self_exe[n] = 0;
	else
		snprintf(self_exe, cap, "/proc/self/exe");
}

static pid_t spawn(const char *self_exe, char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		execv(self_exe, argv);
		fprintf(stderr, "xvl demo: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

static bool wait_for_socket(const char *path, pid_t server)
{
	for (int i = 0; i < 500; i++) {
		int fd = xvl_os_connect(path, NULL);
		if (fd >= 0) {
			close(fd);
			return true;
		}
		if (waitpid(server, NULL, WNOHANG) == server)
			return false;
		usleep(10000);
	}
	return false;
}

static int make_disk(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return -e;
	}
	close(fd);
	return 0;
}

static int run_client(const char *self, char *sock, const char *ops)
{
	char *info[] = {"xvl", "blk", "info", "--connect", sock, NULL};
	char *verify[] = {"xvl", "blk", "verify", "--connect", sock, "--queues", "2", "--qd", "16",
			  "--min", "512", "--max", "128K", "--ops", (char *)ops, NULL};
	int st;
	pid_t p = spawn(self, info);
	if (p < 0 || waitpid(p, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		return 1;
	printf("\n");
	fflush(stdout);
	p = spawn(self, verify);
	if (p < 0 || waitpid(p, &st, 0) < 0)
		return 1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* Two bare processes: xvl server and xvl blk verify. */
static int demo_plain(const char *self, const char *dir, const char *disk, const char *ops)
{
	char sock[300], spec[400];
	snprintf(sock, sizeof(sock), "%s/xvl.sock", dir);
	snprintf(spec, sizeof(spec), "name=demo-disk,backend=file,path=%s,queues=2", disk);
	printf("xvl demo: server process: xvl server --listen %s --dev %s\n", sock, spec);
	fflush(stdout);
	char *server_argv[] = {"xvl", "server", "--listen", sock, "--dev", spec, NULL};
	pid_t server = spawn(self, server_argv);
	if (server < 0 || !wait_for_socket(sock, server)) {
		if (server > 0)
			kill(server, SIGKILL), waitpid(server, NULL, 0);
		return cli_fail(1, "demo", "the server did not start");
	}
	printf("xvl demo: client process: xvl blk verify --connect %s (window: memfd)\n\n", sock);
	fflush(stdout);
	int status = run_client(self, sock, ops);
	kill(server, SIGTERM);
	waitpid(server, NULL, 0);
	unlink(sock);
	return status;
}

static const char demo_config[] =
	"name = \"xvl-demo-%d\";\n"
	"exit_with_drivers = true;\n"
	"pool = 2;\n"
	"windows = ( { name = \"w0\"; size = \"64M\"; backing = \"memfd\"; } );\n"
	"devices = ( { name = \"demo-disk\"; type = \"blk\"; backend = \"file\";\n"
	"              path = \"%s\"; queues = 2; } );\n"
	"compartments = (\n"
	"  { name = \"dev\"; role = \"device\"; devices = [\"demo-disk\"]; cpus = [0]; },\n"
	"  { name = \"app\"; role = \"driver\"; window = \"w0\"; connect = \"dev\";\n"
	"    program = [\"xvl\", \"blk\", \"verify\", \"--connect\", \"{link}\", \"--queues\", \"2\",\n"
	"               \"--qd\", \"16\", \"--min\", \"512\", \"--max\", \"128K\", \"--ops\", \"%s\"]; }\n"
	");\n";

/* Through the partitioner: two sandboxed compartments joined by one window. */
static int demo_partitioned(const char *self, const char *dir, const char *disk, const char *ops)
{
	struct xp_config *c = calloc(1, sizeof(*c));
	struct xp_run_opts ro = {.log_fd = 1, .ready_fd = -1, .xvl_exe = self};
	struct xvl_errbuf eb = {{0}};
	struct xp_inst *p = NULL;
	char text[2048];
	int rc;

	if (!c)
		return cli_fail(1, "demo", "out of memory");
	snprintf(text, sizeof(text), demo_config, (int)getpid(), disk, ops);
	rc = xp_config_load(c, "<demo>", text, false, &eb);
	if (rc == 0 && strlen(dir) + sizeof("/state") > sizeof(c->state_dir))
		rc = xvl_err(&eb, -ENAMETOOLONG, "temporary directory name too long: %s", dir);
	if (rc == 0) {
		memcpy(c->state_dir, dir, strlen(dir));
		memcpy(c->state_dir + strlen(dir), "/state", sizeof("/state"));
		printf("xvl demo: partitioner config:\n%s\n", text);
		fflush(stdout);
		rc = xp_inst_create(&p, c, &ro, &eb);
	}
	if (rc == 0)
		rc = xp_inst_start(p, &eb);
	if (rc == 0)
		rc = xp_inst_run(p) ? -EIO : 0;
	else
		fprintf(stderr, "xvl demo: %s\n", eb.msg);
	if (p)
		xp_inst_destroy(p);
	free(c);
	return rc < 0 ? 1 : 0;
}

int cmd_demo(int argc, char **argv)
{
	static const struct option longopts[] = {{"size", required_argument, NULL, 's'},
						 {"ops", required_argument, NULL, 'o'},
						 {"plain", no_argument, NULL, 'p'},
						 {"keep", no_argument, NULL, 'k'},
						 {"help", no_argument, NULL, 'h'},
						 {NULL, 0, NULL, 0}};
	uint64_t size = 64ull << 20;
	const char *ops = "20000";
	bool keep = false, plain = false;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			if (!cli_size("demo", "--size", optarg, &size))
				return 2;
			break;
		case 'o': ops = optarg; break;
		case 'p': plain = true; break;
		case 'k': keep = true; break;
		case 'h': return cli_help(help);
		default: return cli_fail(2, "demo", "see 'xvl demo --help'");
		}
	}
	if (size < 1 << 20)
		return cli_fail(2, "demo", "--size: at least 1M");
	if (strspn(ops, "0123456789") != strlen(ops) || !*ops)
		return cli_fail(2, "demo", "--ops: '%s' is not a number", ops);

	char self[4096], dir[256], disk[300];
	resolve_self(self, sizeof(self));
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(dir, sizeof(dir), "%s/xvl-demo.XXXXXX", tmp);
	if (!mkdtemp(dir))
		return cli_fail(1, "demo", "cannot create a directory in %s: %s", tmp, strerror(errno));
	snprintf(disk, sizeof(disk), "%s/disk.img", dir);
	int rc = make_disk(disk, size);
	if (rc < 0) {
		rmdir(dir);
		return cli_fail(1, "demo", "cannot create %s: %s", disk, strerror(-rc));
	}
	printf("xvl demo: %llu MiB disk image %s\n", (unsigned long long)(size >> 20), disk);
	fflush(stdout);
	int status = plain ? demo_plain(self, dir, disk, ops) : demo_partitioned(self, dir, disk, ops);
	if (keep) {
		printf("kept %s\n", dir);
	} else {
		unlink(disk);
		rmdir(dir);
	}
	printf("\nxvl demo: %s\n", status ? "FAILED" : "every byte written was read back intact");
	return status ? 1 : 0;
}
