/* SPDX-License-Identifier: MIT */
/*
 * vhost-user-blk export: an xvloop block device served to a VMM (QEMU's
 * vhost-user-blk-pci, libvirt's <disk type='vhostuser'>) from the driver
 * compartment.  The VMM's guest RAM is mapped here and nowhere else; the
 * device compartment keeps seeing only the window, since every request is
 * copied between guest RAM and a window buffer by this process.
 *
 * Built on the project's own vhost-user code, not DPDK's librte_vhost:
 * see the header comment of vu_backend.c for why.
 */
#ifndef XVL_EXPORT_H
#define XVL_EXPORT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "os.h"
#include "xvloop/xvl.h"

struct xvl_export_opts {
	const char *socket;     /* Unix socket the VMM connects to (SOCK_STREAM) */
	unsigned socket_mode;   /* chmod of the socket; 0 = leave the umask's */
	unsigned drain_ms;      /* longest wait for the device when a ring stops (default 30000) */
	bool once;              /* serve one frontend connection, then return */
	bool quiet;
};

/*
 * Serve b (opened on c with all the queues the export offers) on o->socket
 * until *stop becomes non-zero (or, with o->once, the frontend leaves).
 * One frontend at a time; a new one is accepted after one disconnects.
 * Returns 0, or a negative errno with eb saying why (the socket could not
 * be made, or the device did not finish requests within drain_ms).
 */
int xvl_export_vhost_blk(struct xvl_client *c, struct xvl_blk *b,
			 const struct xvl_export_opts *o, volatile sig_atomic_t *stop,
			 struct xvl_errbuf *eb);

#endif
