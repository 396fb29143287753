/* SPDX-License-Identifier: MIT */
/* xvl run | status | stop: the partitioner. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "part.h"

static const char run_help[] =
	"NAME\n"
	"    xvl run - start compartments, windows and devices from one config, and supervise them\n"
	"\n"
	"SYNOPSIS\n"
	"    xvl run CONFIG | --default [--state-dir DIR] [--detach] [--check] [--quiet]\n"
	"    xvl run --print-default\n"
	"\n"
	"DESCRIPTION\n"
	"    Reads CONFIG (libconfig syntax; see docs/PARTITIONER.md), checks all of it, then\n"
	"    creates the windows, starts each device-side compartment (the built-in server\n"
	"    unless it names a program) and each driver-side compartment, each in its own\n"
	"    PID, mount, IPC, UTS, network (and user, where allowed) namespaces, under a\n"
	"    seccomp filter for its role, pinned to its CPUs, with its memory limit, and\n"
	"    holding only its window and log descriptors.  Stays in the foreground as the\n"
	"    supervisor: a device side that dies is restarted on the same socket; a driver\n"
	"    side that dies has its window released.  SIGINT/SIGTERM or 'xvl stop' tears\n"
	"    everything down.  A config error is one line: FILE:LINE: KEY: what is wrong.\n"
	"    A driver compartment with type = \"vm\" is a QEMU guest (kernel, initrd, memory,\n"
	"    vcpus, accel = auto|kvm|tcg, arch = x86_64|aarch64 (-M virt), console): its\n"
	"    window is an ivshmem-plain BAR that kernel/xvl_virtio.ko in the guest drives,\n"
	"    the device side sees only the window.\n"
	"    A device compartment with type = \"vm\" is a QEMU guest running xvl server on\n"
	"    the window of the driver it serves (initrd: scripts/guest/device-initrd.sh),\n"
	"    its devices on the guest's kernel command line (xvl.dev=SPEC), a file device\n"
	"    a virtio-blk disk of the guest; killed, it is booted again on the same window.\n"
	"    A window with vectors = N joins the two VMs as ivshmem-doorbell peers of the\n"
	"    partitioner (the device VM rings the driver's MSI-X vectors).\n"
	"\n"
	"OPTIONS\n"
	"    --default           use the compiled-in config (a RAM disk and a verifying driver)\n"
	"    --print-default     print the compiled-in config\n"
	"    --state-dir DIR     where the control socket and link sockets go\n"
	"                        (default /run/xvl/NAME as root, else $XDG_RUNTIME_DIR/xvl/NAME)\n"
	"    --detach            run the supervisor in the background once everything is up;\n"
	"                        its log is DIR/supervisor.log\n"
	"    --check             check the config and exit\n"
	"    -q, --quiet         no supervisor log lines\n"
	"\n"
	"EXIT STATUS\n"
	"    0 stopped cleanly (or every driver exited 0 with exit_with_drivers), 1 failure,\n"
	"    2 bad usage or config.\n";

static const char status_help[] =
	"NAME\n"
	"    xvl status - show a running partitioner instance\n"
	"    xvl stop   - tear it down (no process, window, socket file or cgroup left)\n"
	"\n"
	"SYNOPSIS\n"
	"    xvl status [--name NAME | --state-dir DIR] [--json]\n"
	"    xvl stop   [--name NAME | --state-dir DIR]\n"
	"\n"
	"    Without --name or --state-dir, the one instance running for this user.\n";

struct run_args {
	const char *config;
	const char *state_dir;
	bool def, detach, check, quiet;
};

static int parse_run(int argc, char **argv, struct run_args *a)
{
	static const struct option lo[] = {
		{"default", no_argument, NULL, 'D'},   {"print-default", no_argument, NULL, 'P'},
		{"state-dir", required_argument, NULL, 's'}, {"detach", no_argument, NULL, 'd'},
		{"check", no_argument, NULL, 'c'},     {"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0}};
	int opt;
	while ((opt = getopt_long(argc, argv, "qh", lo, NULL)) != -1) {
		switch (opt) {
		case 'D': a->def = true; break;
		case 'P': fputs(xp_default_config, stdout); return 0;
		case 's': a->state_dir = optarg; break;
		case 'd': a->detach = true; break;
		case 'c': a->check = true; break;
		case 'q': a->quiet = true; break;
		case 'h': return cli_help(run_help);
		default: return cli_fail(2, "run", "see 'xvl run --help'");
		}
	}
	if (optind < argc)
		a->config = argv[optind++];
	if (optind < argc)
		return cli_fail(2, "run", "unexpected argument '%s'", argv[optind]);
	if (!a->config == !a->def)
		return cli_fail(2, "run", "give a CONFIG file or --default (not both)");
	return -1;
}

/* Background: the child supervises; the parent returns once it is up (or failed). */
static int detach(struct xp_inst *p, int ready_rd)
{
	char m[300] = "";
	ssize_t n = read(ready_rd, m, sizeof(m) - 1);
	close(ready_rd);
	(void)p;
	if (n > 0 && !strncmp(m, "ok", 2))
		return 0;
	m[n > 0 ? n : 0] = 0;
	fprintf(stderr, "xvl run: %s", n > 0 ? m : "the supervisor exited before it was up\n");
	return 1;
}

static void redirect_log(const struct xp_config *c)
{
	char dir[XP_PATH_MAX], log[XP_PATH_MAX + 32];
	if (c->state_dir[0])
		snprintf(dir, sizeof(dir), "%s", c->state_dir);
	else
		xp_default_state_dir(c->name, dir, sizeof(dir));
	snprintf(log, sizeof(log), "%s/supervisor.log", dir);
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
	}
	if (null >= 0) {
		dup2(null, 0);
		close(null);
	}
}

static int supervise(const struct xp_config *c, const struct run_args *a, int ready_wr)
{
	struct xp_run_opts o = {.quiet = a->quiet, .log_fd = 2, .ready_fd = ready_wr};
	struct xvl_errbuf eb = {{0}};
	struct xp_inst *p;
	int rc = xp_inst_create(&p, c, &o, &eb);
	if (rc == 0) {
		if (a->detach)
			redirect_log(c);
		rc = xp_inst_start(p, &eb);
	}
	if (rc < 0) {
		if (ready_wr >= 0)
			dprintf(ready_wr, "%s\n", eb.msg);
		else
			cli_fail(1, "run", "%s", eb.msg);
		xp_inst_destroy(p);
		return 1;
	}
	if (ready_wr >= 0)
		close(ready_wr);
	rc = xp_inst_run(p);
	xp_inst_destroy(p);
	return rc;
}

int cmd_run(int argc, char **argv)
{
	struct run_args a = {0};
	int rc = parse_run(argc, argv, &a);
	if (rc >= 0)
		return rc;
	struct xp_config *c = calloc(1, sizeof(*c));
	struct xvl_errbuf eb = {{0}};
	if (!c)
		return cli_fail(1, "run", "out of memory");
	rc = a.def ? xp_config_load(c, "<default>", xp_default_config, false, &eb)
		   : xp_config_load(c, a.config, NULL, false, &eb);
	if (rc < 0) {
		fprintf(stderr, "%s\n", eb.msg);
		free(c);
		return 2;
	}
	if (a.state_dir)
		snprintf(c->state_dir, sizeof(c->state_dir), "%s", a.state_dir);
	if (a.check) {
		printf("%s: ok (%u compartments, %u windows, %u devices)\n", c->source, c->n_comps,
		       c->n_wins, c->n_devs);
		free(c);
		return 0;
	}
	int pipefd[2] = {-1, -1};
	if (a.detach) {
		if (pipe2(pipefd, O_CLOEXEC) < 0)
			return cli_fail(1, "run", "pipe: %s", strerror(errno));
		pid_t pid = fork();
		if (pid > 0) {
			close(pipefd[1]);
			rc = detach(NULL, pipefd[0]);
			free(c);
			return rc;
		}
		if (pid < 0)
			return cli_fail(1, "run", "fork: %s", strerror(errno));
		close(pipefd[0]);
		setsid();
	}
	rc = supervise(c, &a, pipefd[1]);
	free(c);
	return rc;
}

/* ------------------------------------------------------------ status / stop */

/* The state dir of --name/--state-dir, or of the only instance running. */
static int find_instance(const char *name, const char *dir, char *out, size_t cap)
{
	if (dir)
		return snprintf(out, cap, "%s", dir), 0;
	if (name)
		return xp_default_state_dir(name, out, cap), 0;
	char base[XP_PATH_MAX], found[XP_PATH_MAX * 2] = "";
	xp_default_state_dir("x", base, sizeof(base));
	dirname(base);
	DIR *d = opendir(base);
	unsigned n = 0;
	for (struct dirent *e; d && (e = readdir(d));) {
		char s[XP_PATH_MAX * 2 + 16];
		struct stat st;
		snprintf(s, sizeof(s), "%s/%s/ctl.sock", base, e->d_name);
		if (e->d_name[0] != '.' && stat(s, &st) == 0 && n++ == 0)
			snprintf(found, sizeof(found), "%.*s/%s", (int)strlen(base), base, e->d_name);
	}
	if (d)
		closedir(d);
	if (n > 1) {
		cli_fail(1, "status", "%u instances run under %s: name one with --name", n, base);
		return -1;
	}
	if (n == 0) {
		cli_fail(1, "status", "no instance is running (none under %s)", base);
		return -1;
	}
	if (strlen(found) >= cap) {
		cli_fail(1, "status", "state dir path %s is too long", found);
		return -1;
	}
	return snprintf(out, cap, "%s", found), 0;
}

static void print_comp(json_object *k)
{
	json_object *v;
	char cpus[64] = "";
	size_t o = 0;
	if (json_object_object_get_ex(k, "cpus", &v))
		for (size_t i = 0; i < json_object_array_length(v) && o < sizeof(cpus) - 8; i++)
			o += (size_t)snprintf(cpus + o, sizeof(cpus) - o, "%s%d", i ? "," : "",
					      json_object_get_int(json_object_array_get_idx(v, i)));
#define S(key) (json_object_object_get_ex(k, key, &v) ? json_object_get_string(v) : "")
	printf("  %-12s %-6s %-8s pid %-7s restarts %-3s cpus %-6s mem %s (%s)\n", S("name"),
	       S("role"), S("state"), S("pid"), S("restarts"), *cpus ? cpus : "all",
	       S("memory_max"), S("memory_enforced_by"));
	if (*S("last_exit"))
		printf("  %-12s last exit: %s\n", "", S("last_exit"));
	json_object *vm;
	if (json_object_object_get_ex(k, "vm", &vm)) {
		json_object *a = NULL, *c = NULL, *m = NULL;
		json_object_object_get_ex(vm, "accel", &a);
		json_object_object_get_ex(vm, "vcpus", &c);
		json_object_object_get_ex(vm, "memory", &m);
		printf("  %-12s vm: %s, %s vCPU(s), %lld MiB\n", "", json_object_get_string(a),
		       json_object_get_string(c), (long long)(json_object_get_int64(m) >> 20));
	}
	json_object *net;
	for (size_t j = 0; json_object_object_get_ex(k, "net", &net) && j < json_object_array_length(net); j++) {
		json_object *e = json_object_array_get_idx(net, j), *f[4] = {NULL};
		const char *keys[] = {"ifname", "address", "device", "tap_pid"};
		for (unsigned x = 0; x < 4; x++)
			json_object_object_get_ex(e, keys[x], &f[x]);
		printf("  %-12s net: %s %s on %s, tap front-end pid %s\n", "", json_object_get_string(f[0]),
		       *json_object_get_string(f[1]) ? json_object_get_string(f[1]) : "(no address)",
		       json_object_get_string(f[2]), json_object_get_string(f[3]));
	}
#undef S
}

static int print_status(const char *text)
{
	json_object *o = json_tokener_parse(text), *v, *a;
	if (!o)
		return cli_fail(1, "status", "the supervisor's reply is not JSON");
#define S(obj, key) (json_object_object_get_ex(obj, key, &v) ? json_object_get_string(v) : "")
	printf("instance %s (%s), supervisor pid %s, state dir %s\n", S(o, "name"), S(o, "state"),
	       S(o, "supervisor_pid"), S(o, "state_dir"));
	json_object *iso = json_object_object_get_ex(o, "isolation", &v) ? v : NULL;
	if (iso)
		printf("isolation: namespaces %s, seccomp %s\n", S(iso, "namespaces"),
		       S(iso, "seccomp"));
	printf("compartments:\n");
	if (json_object_object_get_ex(o, "compartments", &a))
		for (size_t i = 0; i < json_object_array_length(a); i++)
			print_comp(json_object_array_get_idx(a, i));
	printf("windows:\n");
	if (json_object_object_get_ex(o, "windows", &a))
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *w = json_object_array_get_idx(a, i);
			printf("  %-12s %s bytes, %s, owner %s, %s\n", S(w, "name"), S(w, "size"),
			       S(w, "backing"), S(w, "owner"), S(w, "state"));
		}
	printf("devices:\n");
	if (json_object_object_get_ex(o, "devices", &a))
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			json_object *d = json_object_array_get_idx(a, i);
			printf("  %-12s %s %s %s, %s queue(s), served by %s\n", S(d, "name"), S(d, "type"),
			       S(d, "backend"), S(d, "path"), S(d, "queues"), S(d, "compartment"));
			json_object *io;
			if (json_object_object_get_ex(d, "io", &io) && io)
				printf("  %-12s %s requests, %s bytes, %s errors, %s notifications\n",
				       "", S(io, "requests"), S(io, "bytes"), S(io, "errors"),
				       S(io, "notifications"));
		}
#undef S
	json_object_put(o);
	return 0;
}

static int ctl_cmd(int argc, char **argv, const char *cmd, char *sd, size_t sdcap)
{
	static const struct option lo[] = {{"name", required_argument, NULL, 'n'},
					   {"state-dir", required_argument, NULL, 's'},
					   {"json", no_argument, NULL, 'j'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	const char *name = NULL, *dir = NULL;
	bool json = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "n:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'n': name = optarg; break;
		case 's': dir = optarg; break;
		case 'j': json = true; break;
		case 'h': return cli_help(status_help);
		default: return cli_fail(2, cmd, "see 'xvl %s --help'", cmd);
		}
	}
	if (find_instance(name, dir, sd, sdcap) < 0)
		return 1;
	char *out = malloc(256 * 1024);
	struct xvl_errbuf eb;
	if (!out)
		return cli_fail(1, cmd, "out of memory");
	int rc = xp_ctl_request(sd, cmd, out, 256 * 1024, &eb);
	if (rc < 0)
		rc = cli_fail(1, cmd, "%s", eb.msg);
	else if (!strcmp(cmd, "status"))
		rc = json ? (puts(out), 0) : print_status(out);
	free(out);
	return rc;
}

int cmd_status(int argc, char **argv)
{
	char sd[XP_PATH_MAX];
	return ctl_cmd(argc, argv, "status", sd, sizeof(sd));
}

/* Stop, then wait until the supervisor has removed its state directory. */
int cmd_stop(int argc, char **argv)
{
	char sd[XP_PATH_MAX];
	int rc = ctl_cmd(argc, argv, "stop", sd, sizeof(sd));
	if (rc)
		return rc;
	for (int t = 0; t < 1000 && access(sd, F_OK) == 0; t++)
		usleep(10000);
	if (access(sd, F_OK) == 0)
		return cli_fail(1, "stop", "%s is still there after 10 s", sd);
	return 0;
}
