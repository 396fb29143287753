/* SPDX-License-Identifier: MIT */
/*
 * The partitioner: the monitor's role on Linux.  From one config file it
 * creates windows and compartments (sandboxed processes: namespaces,
 * seccomp, CPU set, memory limit), starts the device and driver sides,
 * supervises them (a dead device side is restarted on the same socket) and
 * keeps a pool of prepared compartment shells so that starting one is only
 * the execute step.
 */
#ifndef XVL_PART_H
#define XVL_PART_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#include "os.h"
#include "server.h"

#define XP_NAME_MAX 32
#define XP_PATH_MAX 256
#define XP_MAX_WINS 16
#define XP_MAX_DEVS XVL_SERVER_MAX_DEVS
#define XP_MAX_COMPS 16
#define XP_MAX_ARGS 48
#define XP_ARG_MAX 256
#define XP_MAX_SYSCALLS 32

enum xp_role { XP_DRIVER, XP_DEVICE };

enum xp_dev_kind {
	XP_DEV_BUILTIN, /* file, null, ram: served by the built-in server */
	XP_DEV_VHOST,   /* an existing vhost-user-blk socket */
	XP_DEV_QSD,     /* a qemu-storage-daemon the partitioner starts */
	XP_DEV_NET,     /* type = "net": switch port, tap or vhost-user-net bridge (built-in server) */
};

enum xp_seccomp { XP_SECCOMP_KILL, XP_SECCOMP_ERRNO, XP_SECCOMP_LOG, XP_SECCOMP_OFF };

struct xp_window {
	char name[XP_NAME_MAX];
	uint64_t size;
	char backing[XP_PATH_MAX]; /* "memfd" or "memfd-huge" */
	int line;
	int owner;                 /* driver compartment index, -1 = none */
	unsigned vectors;          /* > 0: VMs on it use ivshmem-doorbell with this many
				    * vectors each, the partitioner their ivshmem server */
};

struct xp_device {
	char name[XP_NAME_MAX];
	enum xp_dev_kind kind;
	struct xvl_dev_spec spec;  /* what the server is given (vhost/qsd: path set at start) */
	char image[XP_PATH_MAX];   /* qsd: disk image; empty = null-co of spec.size */
	int line;
	int comp;                  /* device compartment serving it */
	int driver;                /* net: the driver compartment it is attached to, -1 = none */
};

#define XP_MAX_NETIFS 4

/* A driver's net interface: a tap front-end (xvl net tap) the supervisor runs in the
 * driver's network namespace, with the address set by the supervisor. */
struct xp_netif {
	int dev;                   /* index in devices (a type = "net" device) */
	char ifname[16];
	uint32_t addr;             /* IPv4, host byte order; 0 = none */
	unsigned prefix;           /* 1..32 */
	int line;
};

struct xp_comp {
	char name[XP_NAME_MAX];
	enum xp_role role;
	unsigned argc;             /* 0: device side runs the built-in server */
	char argv[XP_MAX_ARGS][XP_ARG_MAX];
	cpu_set_t cpus;
	bool have_cpus;
	uint64_t memory;           /* bytes, 0 = no limit */
	int window;                /* driver: window index */
	bool link_window;          /* driver: link = "window": the mailbox in its window, no socket */
	bool doorbell_none;        /* driver, link = "window": doorbell = "none" (both sides poll) */
	int mbox_driver;           /* device: the driver whose window carries its mailbox link, -1 */
	int server;                /* driver: device compartment it connects to */
	unsigned n_devs;           /* device: devices served */
	int devs[XP_MAX_DEVS];
	bool serves_tap;           /* device: some device has backend = "tap" (its seccomp allows tun ioctls) */
	unsigned n_netifs;         /* driver: net = ( { device; ifname; address; }, ... ) */
	struct xp_netif netifs[XP_MAX_NETIFS];
	/* type = "vm": a QEMU guest, argv built by xp_vm_build_argv() from these.  A driver VM
	 * runs kernel/xvl_virtio.ko on its window; a device VM runs xvl server in its user
	 * space on the window of the driver it serves (its mbox_driver). */
	bool vm;
	char vm_kernel[XP_PATH_MAX], vm_initrd[XP_PATH_MAX], vm_console[XP_PATH_MAX];
	char vm_append[160];
	char vm_accel[8];          /* "kvm" or "tcg" ("auto" is resolved when the config loads) */
	bool vm_aarch64;           /* arch = "aarch64": qemu-system-aarch64 -machine virt (vm.c) */
	unsigned vm_vcpus;
	uint64_t vm_memory;        /* guest RAM ('memory'; no cgroup limit on QEMU) */
	unsigned n_syscalls;       /* extra syscalls allowed */
	char syscalls[XP_MAX_SYSCALLS][XP_NAME_MAX];
	int line;
};

struct xp_config {
	char source[XP_PATH_MAX];  /* file name, or "<default>" */
	char name[XP_NAME_MAX];
	char state_dir[XP_PATH_MAX]; /* empty: the default for the user */
	unsigned pool;             /* prepared shells kept ready */
	unsigned restart_ms;       /* bound on a device side restart (logged if exceeded) */
	bool exit_with_drivers;
	bool userns;
	enum xp_seccomp seccomp;
	unsigned n_wins, n_devs, n_comps;
	struct xp_window wins[XP_MAX_WINS];
	struct xp_device devs[XP_MAX_DEVS];
	struct xp_comp comps[XP_MAX_COMPS];
};

/* The compiled-in configuration used by `xvl run --default`. */
extern const char xp_default_config[];

/*
 * Parse and check a config (file path, or text when text != NULL; source
 * names it in messages).  Errors are one line: "FILE:LINE: KEY: what".
 * Checks that do not touch the system only when offline is true (fuzzing).
 */
int xp_config_load(struct xp_config *c, const char *source, const char *text, bool offline,
		   struct xvl_errbuf *eb);
/* The state directory an instance of this name uses. */
void xp_default_state_dir(const char *name, char *out, size_t cap);

/* ------------------------------------------------------------ running */

struct xp_inst;

struct xp_run_opts {
	bool quiet;      /* no supervisor log lines */
	int log_fd;      /* where logs go (default 2) */
	int ready_fd;    /* written "ok\n" once everything is up (for --detach), -1 = none */
	const char *xvl_exe; /* the xvl binary for "xvl" programs and device sides (NULL: ourselves) */
};

/* Create a supervisor: state dir, pool of shells.  Nothing started yet. */
int xp_inst_create(struct xp_inst **out, const struct xp_config *c, const struct xp_run_opts *o,
		   struct xvl_errbuf *eb);
/* Bring every window, device side and driver side up; on failure all is undone. */
int xp_inst_start(struct xp_inst *p, struct xvl_errbuf *eb);
/* Supervise until stopped (signal, control socket) or, with exit_with_drivers,
 * until every driver exited.  Returns 0 when every driver exited 0, else 1. */
int xp_inst_run(struct xp_inst *p);
/* Tear everything down: processes, windows, sockets, cgroups, state dir. */
void xp_inst_destroy(struct xp_inst *p);

/* For the benchmark: wait until the driver compartment idx exits (timeout_ms), return its
 * wait status or -errno.  Supervises meanwhile. */
int xp_inst_wait_driver(struct xp_inst *p, unsigned idx, int timeout_ms);

/* Control socket client: send cmd ("status", "stop") to the instance in state_dir and
 * put the reply (NUL-terminated) in out. */
int xp_ctl_request(const char *state_dir, const char *cmd, char *out, size_t cap,
		   struct xvl_errbuf *eb);

#endif
