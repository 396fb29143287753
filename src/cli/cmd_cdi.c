/* SPDX-License-Identifier: MIT */
/* xvl cdi: a Container Device Interface spec for the devices a server offers. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "os.h"
#include "xvloop/xvl.h"

#define CDI_VERSION "0.5.0"
#define CDI_KIND "xvloop.io/blk"
#define DEFAULT_CONTAINER_DIR "/run/xvloop"

static const char help[] =
	"NAME\n"
	"    xvl cdi - write a CDI spec for the block devices an xvloop server offers\n"
	"\n"
	"SYNOPSIS\n"
	"    xvl cdi --connect URI [--output FILE] [--container-dir DIR]\n"
	"\n"
	"DESCRIPTION\n"
	"    Asks the server at URI (xvl:SOCKET or SOCKET) which block devices it\n"
	"    offers and writes a Container Device Interface spec (cdiVersion " CDI_VERSION ",\n"
	"    kind " CDI_KIND ") naming each one, so that podman, containerd or CRI-O\n"
	"    give a container a device with --device " CDI_KIND "=NAME.  What a\n"
	"    container gets is only what a driver compartment needs:\n"
	"      - the directory that holds the server's socket, bind-mounted read-only\n"
	"        (nosuid, nodev, noexec) at DIR (the directory, not the socket file, so\n"
	"        that a server restarted on the same path is reachable again);\n"
	"      - XVL_LINK=xvl:DIR/SOCKETNAME and XVL_DEVICE=NAME in its environment,\n"
	"        which 'xvl blk' (and any program reading them) uses when --connect and\n"
	"        --device are not given;\n"
	"      - XVL_SERVER_UID=UID, the uid the server runs as (read from its socket\n"
	"        now): a client hands its window only to a listener of its own uid or\n"
	"        of this one, and a container usually runs as another user.\n"
	"    No device node, no capability, no host memory: the container creates its\n"
	"    own window (a memfd) and hands it to the server over the socket.\n"
	"\n"
	"    cdiVersion " CDI_VERSION " because podman 4.3 (Debian 12) ignores specs of later\n"
	"    versions without a word.  Device names CDI does not allow (other than\n"
	"    letters, digits and _ . : -) are left out, with a warning.\n"
	"\n"
	"OPTIONS\n"
	"    -c, --connect URI        the server (required)\n"
	"    -o, --output FILE        write the spec there (atomically: a temporary file\n"
	"                             renamed), e.g. /etc/cdi/xvloop.json or\n"
	"                             /var/run/cdi/xvloop.json; default: standard output\n"
	"    -C, --container-dir DIR  where the socket's directory appears in the container\n"
	"                             (default " DEFAULT_CONTAINER_DIR ")\n"
	"    -h, --help               this text\n"
	"\n"
	"EXAMPLE\n"
	"    xvl cdi -c /run/xvl/xvl.sock -o /etc/cdi/xvloop.json\n"
	"    podman run --device " CDI_KIND "=disk0 IMAGE xvl blk verify\n";

struct cdi_args {
	const char *connect, *output, *container_dir;
};

static bool cdi_name_ok(const char *n)
{
	if (!*n)
		return false;
	for (const char *p = n; *p; p++) {
		bool alnum = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9');
		if (!alnum && (p == n || !strchr("_.:-", *p)))
			return false;
	}
	return true;
}

/* The socket's absolute directory and file name, from an xvl: URI or a plain path. */
static int socket_parts(const char *uri, char *dir, size_t dcap, char *base, size_t bcap)
{
	if (!strncmp(uri, "vhost-user:", 11))
		return cli_fail(2, "cdi", "%s: a CDI spec is for xvloop servers (xvl:SOCKET), "
			       "not vhost-user backends", uri);
	const char *path = !strncmp(uri, "xvl:", 4) ? uri + 4 : uri;
	char real[PATH_MAX];
	if (!realpath(path, real))
		return cli_fail(1, "cdi", "socket %s: %s", path, strerror(errno));
	char a[PATH_MAX], b[PATH_MAX];
	snprintf(a, sizeof(a), "%s", real);
	snprintf(b, sizeof(b), "%s", real);
	const char *d = dirname(a), *f = basename(b); /* each may modify its argument: copies */
	if (strlen(d) >= dcap || strlen(f) >= bcap)
		return cli_fail(1, "cdi", "socket path %s is too long", real);
	snprintf(dir, dcap, "%s", d);
	snprintf(base, bcap, "%s", f);
	return 0;
}

static json_object *strings(const char *const *v, unsigned n)
{
	json_object *a = json_object_new_array();
	for (unsigned i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_string(v[i]));
	return a;
}

static json_object *common_edits(const char *host_dir, const char *cdir, const char *sock,
				 uint32_t server_uid)
{
	char link[PATH_MAX + 32], uid[32];
	snprintf(link, sizeof(link), "XVL_LINK=xvl:%s/%s", cdir, sock);
	snprintf(uid, sizeof(uid), "XVL_SERVER_UID=%u", (unsigned)server_uid);
	const char *env[] = {link, uid};
	static const char *const opts[] = {"bind", "ro", "nosuid", "nodev", "noexec"};
	json_object *m = json_object_new_object();
	json_object_object_add(m, "hostPath", json_object_new_string(host_dir));
	json_object_object_add(m, "containerPath", json_object_new_string(cdir));
	json_object_object_add(m, "options", strings(opts, 5));
	json_object *mounts = json_object_new_array(), *e = json_object_new_object();
	json_object_array_add(mounts, m);
	json_object_object_add(e, "env", strings(env, 2));
	json_object_object_add(e, "mounts", mounts);
	return e;
}

static json_object *device_entry(const char *name)
{
	char env[64];
	snprintf(env, sizeof(env), "XVL_DEVICE=%s", name);
	const char *v[] = {env};
	json_object *d = json_object_new_object(), *e = json_object_new_object();
	json_object_object_add(e, "env", strings(v, 1));
	json_object_object_add(d, "name", json_object_new_string(name));
	json_object_object_add(d, "containerEdits", e);
	return d;
}

/* The uid the server at DIR/SOCK runs as (SO_PEERCRED); 0 or an exit status. */
static int server_uid_of(const char *dir, const char *sock, uint32_t *uid)
{
	char path[PATH_MAX + 256];
	struct xvl_errbuf eb;
	snprintf(path, sizeof(path), "%s/%s", dir, sock);
	int fd = xvl_os_connect(path, &eb);
	if (fd < 0)
		return cli_fail(1, "cdi", "cannot connect to %s: %s", path, eb.msg);
	int rc = xvl_os_peer_uid(fd, uid);
	close(fd);
	return rc < 0 ? cli_fail(1, "cdi", "%s: cannot read the server's credentials: %s", path,
				 strerror(-rc))
		      : 0;
}

/* Every block device of the server, as CDI device entries; 0 or an exit status. */
static int list_devices(const char *uri, json_object *devs)
{
	struct xvl_client *c;
	struct xvl_client_opts co = {XVL_CLIENT_OPTS_INIT, .name = "xvl-cdi", .window_size = 1 << 20};
	char err[300];
	if (xvl_client_connect(&c, uri, &co, err, sizeof(err)) < 0)
		return cli_fail(1, "cdi", "cannot connect to %s", err);
	for (unsigned i = 0; i < xvl_client_num_devices(c); i++) {
		struct xvl_dev_desc d;
		if (xvl_client_device(c, i, &d) < 0 || d.virtio_id != 2)
			continue;
		if (!cdi_name_ok(d.name)) {
			fprintf(stderr, "xvl cdi: device '%s' left out: CDI names are letters, digits "
				"and _ . : - (starting with a letter or digit)\n", d.name);
			continue;
		}
		json_object_array_add(devs, device_entry(d.name));
	}
	xvl_client_close(c);
	if (!json_object_array_length(devs))
		return cli_fail(1, "cdi", "%s offers no block device a spec could name", uri);
	return 0;
}

static int write_out(const char *file, const char *text)
{
	if (!file)
		return fputs(text, stdout) < 0 || fputc('\n', stdout) < 0 || fflush(stdout)
			       ? cli_fail(1, "cdi", "cannot write to standard output: %s", strerror(errno))
			       : 0;
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", file, (int)getpid()) >= sizeof(tmp))
		return cli_fail(1, "cdi", "%s: path too long", file);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return cli_fail(1, "cdi", "cannot create %s: %s", tmp, strerror(errno));
	size_t n = strlen(text);
	bool ok = write(fd, text, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
	int e = errno;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, file) < 0) {
		e = ok ? errno : e;
		unlink(tmp);
		return cli_fail(1, "cdi", "cannot write %s: %s", file, strerror(e));
	}
	return 0;
}

int cmd_cdi(int argc, char **argv)
{
	static const struct option lo[] = {
		{"connect", required_argument, NULL, 'c'}, {"output", required_argument, NULL, 'o'},
		{"container-dir", required_argument, NULL, 'C'}, {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	struct cdi_args a = {.container_dir = DEFAULT_CONTAINER_DIR};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:o:C:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'c': a.connect = optarg; break;
		case 'o': a.output = optarg; break;
		case 'C': a.container_dir = optarg; break;
		case 'h': return cli_help(help);
		default: return cli_fail(2, "cdi", "see 'xvl cdi --help'");
		}
	}
	if (optind < argc)
		return cli_fail(2, "cdi", "unexpected argument '%s'", argv[optind]);
	if (!a.connect)
		return cli_fail(2, "cdi", "--connect URI is required");
	if (a.container_dir[0] != '/')
		return cli_fail(2, "cdi", "--container-dir %s is not an absolute path", a.container_dir);
	char dir[PATH_MAX], sock[256];
	int rc = socket_parts(a.connect, dir, sizeof(dir), sock, sizeof(sock));
	if (rc)
		return rc;
	uint32_t server_uid;
	rc = server_uid_of(dir, sock, &server_uid);
	if (rc)
		return rc;
	json_object *spec = json_object_new_object(), *devs = json_object_new_array();
	json_object_object_add(spec, "cdiVersion", json_object_new_string(CDI_VERSION));
	json_object_object_add(spec, "kind", json_object_new_string(CDI_KIND));
	json_object_object_add(spec, "devices", devs);
	json_object_object_add(spec, "containerEdits", common_edits(dir, a.container_dir, sock, server_uid));
	rc = list_devices(a.connect, devs);
	if (rc == 0)
		rc = write_out(a.output, json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PRETTY |
									     JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(spec);
	return rc;
}
