/* SPDX-License-Identifier: MIT */
/*
 * xvloop server: the device side.  Serves virtio devices to clients that
 * connect over the link, each client bringing its own window.  Devices are
 * backed by built-in backends (file via io_uring, null, RAM) or bridged to
 * a vhost-user backend that gets the client's window as its only memory.
 */
#ifndef XVL_SERVER_H
#define XVL_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "os.h"

#define XVL_SERVER_MAX_DEVS 16
#define XVL_SERVER_MAX_CPUS 64
#define XVL_SERVER_POLL_NS 50000u /* default adaptive polling bound (docs/PERFORMANCE.md) */

enum xvl_backend_kind {
	XVL_BK_FILE,
	XVL_BK_NULL,
	XVL_BK_RAM,
	XVL_BK_VHOST,
	XVL_BK_SWITCH, /* net: a port of the server's built-in L2 switch */
	XVL_BK_TAP,    /* net: a tap interface in the server's network namespace */
};

enum xvl_dev_type {
	XVL_DEV_BLK, /* the default */
	XVL_DEV_NET,
};

/* One device as given on the command line or in a config file. */
struct xvl_dev_spec {
	char name[32];
	enum xvl_backend_kind kind;
	char path[256];      /* file: the disk file; vhost: the backend's socket */
	uint64_t size;       /* null/ram: capacity in bytes; file: 0 = the file's size */
	uint16_t queues;     /* queues offered (built-in backends), default 1 */
	uint16_t queue_size; /* largest queue accepted, default 1024 */
	bool direct;         /* file: O_DIRECT */
	bool read_only;
	bool relay;          /* vhost: relay notifications through the server */
	bool listen;         /* vhost: listen on path, the backend connects (its client mode) */
	unsigned reconnect_ms; /* vhost: how long to wait for a lost backend, default 10000 */
	/* type=net */
	enum xvl_dev_type type;
	char sw[16];         /* switch: the switch's name, default "sw0" */
	char ifname[16];     /* tap: the interface */
	uint8_t mac[6];
	bool has_mac;        /* else 52:54:00 + 3 bytes from the name */
	uint16_t mtu;        /* 0: 1500 */
	bool spoof;          /* switch: drop frames whose source MAC is not the port's */
};

/*
 * Parse "name=disk0,backend=file,path=disk.img,direct=on,ro=on,queues=4,size=1G"
 * or "name=net0,type=net,backend=switch,switch=sw0,mac=52:54:00:12:34:56,mtu=1500,queues=2"
 * (net: queues = queue pairs).
 * Unknown keys and bad values are refused with a message naming them.
 */
int xvl_dev_spec_parse(struct xvl_dev_spec *d, const char *text, struct xvl_errbuf *eb);

/* Parse a size with an optional K/M/G/T suffix (powers of 1024). */
int xvl_parse_size(const char *text, uint64_t *out);

struct xvl_server_opts {
	const char *listen;  /* socket path (the socket link; may be NULL with a window link) */
	/*
	 * The mailbox link (docs/PROTOCOL.md 7), instead of or besides the socket:
	 * "PATH" (a file or an ivshmem BAR to map), "fd:N" (a window handed over
	 * at spawn), "ivshmem:SOCKET[,size=BYTES][,vectors=N][,relay]" (be QEMU's
	 * ivshmem server: create the window and the vectors; relay: only that,
	 * a peer serves the window), or "vfio:BDF[,peer=N]" (in a guest: an
	 * ivshmem-doorbell device through vfio-pci, vfio.h).  NULL: none.
	 */
	const char *window;
	const char *doorbell; /* doorbell spec (doorbell.h) for PATH / fd:N windows; NULL = none */
	const char *name;    /* server name shown to clients */
	unsigned n_devs;
	struct xvl_dev_spec devs[XVL_SERVER_MAX_DEVS];
	bool quiet;
	uint64_t max_window; /* largest window accepted from a client; 0: XVL_SERVER_MAX_WINDOW */
	/* worker threads: one per CPU listed (pinned if allowed); 0: the control thread
	 * serves the queues itself */
	unsigned n_cpus;
	int cpus[XVL_SERVER_MAX_CPUS];
	/* adaptive polling bound in ns; 0: the default (XVL_SERVER_POLL_NS), UINT32_MAX: off */
	uint32_t poll_max_ns;
};

/* True when window is "ivshmem:...,relay": a server that needs no devices. */
bool xvl_server_window_relays(const char *window);

/* Default cap on a client's window (xvl server --max-window). */
#define XVL_SERVER_MAX_WINDOW (1ull << 30)

struct xvl_server;

/* Open every device and listen.  On failure nothing is left open. */
int xvl_server_create(struct xvl_server **s, const struct xvl_server_opts *o,
		      struct xvl_errbuf *eb);
/* Serve until SIGINT/SIGTERM or xvl_server_stop. */
int xvl_server_run(struct xvl_server *s);
/* Ask run() to return (async-signal-safe). */
void xvl_server_stop(struct xvl_server *s);
/* Close every connection and device, unlink the socket. */
void xvl_server_destroy(struct xvl_server *s);

#endif
