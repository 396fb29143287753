/* SPDX-License-Identifier: MIT */
/*
 * xvl demo: the main job on an embedded default.  Two processes that share
 * only a window: a server with a file-backed disk, and a client that
 * writes a pattern across the device, reads it back and verifies it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char help[] =
	"NAME\n"
	"    xvl demo - an xvloop server and client in two processes, end to end\n"
	"\n"
	"SYNOPSIS\n"
	"    xvl demo [--size BYTES] [--ops N] [--keep]\n"
	"\n"
	"DESCRIPTION\n"
	"    Creates a sparse disk image in a new temporary directory, starts\n"
	"    'xvl server' on it in one process and 'xvl blk verify' in another: the\n"
	"    client creates the memory window, hands it to the server over the link,\n"
	"    fills the whole device with a pattern, runs random reads and writes of\n"
	"    512 B to 128 KiB on two queues, reads everything back and checks every\n"
	"    byte.  Prints what it did with throughput and latency, stops the server\n"
	"    and removes the directory.  Needs no external server.\n"
	"\n"
	"OPTIONS\n"
	"    --size BYTES   disk size (default 64M)\n"
	"    --ops N        random requests after the fill (default 20000)\n"
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
static char self_exe[4096];

static pid_t spawn(char *const argv[])
{
	if (!self_exe[0]) {
		ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
		if (n > 0 && (size_t)n < sizeof(self_exe) - 1)
			self_exe[n] = 0;
		else
			snprintf(self_exe, sizeof(self_exe), "/proc/self/exe");
	}
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
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return false;
	memcpy(a.sun_path, path, strlen(path));
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
		close(fd);
		if (ok)
			return true;
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

static int run_client(char *sock, const char *ops)
{
	char *info[] = {"xvl", "blk", "info", "--connect", sock, NULL};
	char *verify[] = {"xvl", "blk", "verify", "--connect", sock, "--queues", "2", "--qd", "16",
			  "--min", "512", "--max", "128K", "--ops", (char *)ops, NULL};
	int st;
	pid_t p = spawn(info);
	if (p < 0 || waitpid(p, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		return 1;
	printf("\n");
	fflush(stdout);
	p = spawn(verify);
	if (p < 0 || waitpid(p, &st, 0) < 0)
		return 1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static void cleanup(const char *dir, const char *disk, const char *sock, bool keep)
{
	if (keep) {
		printf("kept %s\n", dir);
		return;
	}
	unlink(disk);
	unlink(sock);
	rmdir(dir);
}

int cmd_demo(int argc, char **argv)
{
	static const struct option longopts[] = {{"size", required_argument, NULL, 's'},
						 {"ops", required_argument, NULL, 'o'},
						 {"keep", no_argument, NULL, 'k'},
						 {"help", no_argument, NULL, 'h'},
						 {NULL, 0, NULL, 0}};
	uint64_t size = 64ull << 20;
	const char *ops = "20000";
	bool keep = false;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			if (!cli_size("demo", "--size", optarg, &size))
				return 2;
			break;
		case 'o': ops = optarg; break;
		case 'k': keep = true; break;
		case 'h': return cli_help(help);
		default: return cli_fail(2, "demo", "see 'xvl demo --help'");
		}
	}
	if (size < 1 << 20)
		return cli_fail(2, "demo", "--size: at least 1M");

	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char dir[256], disk[300], sock[300], spec[400];
	snprintf(dir, sizeof(dir), "%s/xvl-demo.XXXXXX", tmp);
	if (!mkdtemp(dir))
		return cli_fail(1, "demo", "cannot create a directory in %s: %s", tmp, strerror(errno));
	snprintf(disk, sizeof(disk), "%s/disk.img", dir);
	snprintf(sock, sizeof(sock), "%s/xvl.sock", dir);
	snprintf(spec, sizeof(spec), "name=demo-disk,backend=file,path=%s,queues=2", disk);
	int rc = make_disk(disk, size);
	if (rc < 0) {
		cleanup(dir, disk, sock, false);
		return cli_fail(1, "demo", "cannot create %s: %s", disk, strerror(-rc));
	}
	printf("xvl demo: %llu MiB disk image %s\n", (unsigned long long)(size >> 20), disk);
	printf("xvl demo: server process: xvl server --listen %s --dev %s\n", sock, spec);
	fflush(stdout);
	char *server_argv[] = {"xvl", "server", "--listen", sock, "--dev", spec, NULL};
	pid_t server = spawn(server_argv);
	if (server < 0 || !wait_for_socket(sock, server)) {
		if (server > 0)
			kill(server, SIGKILL), waitpid(server, NULL, 0);
		cleanup(dir, disk, sock, false);
		return cli_fail(1, "demo", "the server did not start");
	}
	printf("xvl demo: client process: xvl blk verify --connect %s (window: memfd)\n\n", sock);
	fflush(stdout);
	int status = run_client(sock, ops);
	kill(server, SIGTERM);
	waitpid(server, NULL, 0);
	cleanup(dir, disk, sock, keep);
	printf("\nxvl demo: %s\n", status ? "FAILED" : "every byte written was read back intact");
	return status ? 1 : 0;
}
