/* SPDX-License-Identifier: MIT */
/*
 * Doorbells: how one side of a mailbox link (core/mailbox.h) rings a
 * vector of the other side, and learns that one of its own vectors was
 * rung.  A vector carries no data; it means "look" (docs/PROTOCOL.md 7.6).
 *
 *   none      nothing is rung; both sides poll with xvl_backoff.
 *   eventfd   own[v] is the eventfd this side is rung on, peer[v] the one it
 *             rings (handed over at spawn, or by the ivshmem server).
 *   ivshmem   inside a QEMU guest: ringing is a 32-bit write of
 *             peer_id << 16 | v to BAR0 offset 12 of the ivshmem-doorbell
 *             device.  Being rung arrives as MSI-X, which user space
 *             receives through vfio-pci.  Made two ways:
 *             - xvl_vfio_ivshmem_open (vfio.h, the "vfio:BDF" URIs): BAR0
 *               mapped through VFIO, own[v] the eventfd of MSI-X vector v,
 *               peer[v] an eventfd the kernel turns into the BAR0 write
 *               (VFIO ioeventfd), so eventfd kicks ring the peer too;
 *             - the "ivshmem:" spec below: BAR0 from sysfs resource0, own[]
 *               descriptors someone else set up (peer[] none).
 */
#ifndef XVL_DOORBELL_H
#define XVL_DOORBELL_H

#include <stdbool.h>
#include <stdint.h>

#include "mailbox.h"
#include "os.h"

struct xvl_vfio_dev;

enum xvl_db_kind {
	XVL_DB_NONE,
	XVL_DB_EVENTFD,
	XVL_DB_IVSHMEM,
};

struct xvl_doorbell {
	enum xvl_db_kind kind;
	unsigned n_own;                     /* vectors this side can be rung on */
	int own[XVL_MBOX_MAX_VECTORS];      /* -1: none */
	unsigned n_peer;                    /* vectors of the peer this side can ring */
	int peer[XVL_MBOX_MAX_VECTORS];     /* eventfd kind; -1: none */
	volatile uint32_t *bar0;            /* ivshmem kind: mapped registers, or NULL */
	uint16_t peer_id;                   /* ivshmem kind: whom to ring */
	struct xvl_vfio_dev *vfio;          /* ivshmem kind through VFIO: the device (owned) */
};

/* An empty doorbell of kind none (every fd -1). */
void xvl_doorbell_init(struct xvl_doorbell *db);

/*
 * From a spec string:
 *   "none"
 *   "eventfd:own=3,4,5;peer=6,7,8"           inherited descriptors, vector order
 *   "ivshmem:/sys/bus/pci/devices/BDF,peer=N[,own=FD,FD...]"
 * Descriptors named are taken over (closed by xvl_doorbell_close).
 */
int xvl_doorbell_parse(struct xvl_doorbell *db, const char *spec, struct xvl_errbuf *eb);

/* Ring the peer's vector v; 0, or -ENXIO when the peer has no such vector. */
int xvl_doorbell_ring(struct xvl_doorbell *db, unsigned v);
/* The descriptor that becomes readable when own vector v is rung, or -1. */
int xvl_doorbell_fd(const struct xvl_doorbell *db, unsigned v);
/* Consume the rings of own vector v (after poll said readable). */
void xvl_doorbell_drain(struct xvl_doorbell *db, unsigned v);
/* Close what it holds. */
void xvl_doorbell_close(struct xvl_doorbell *db);

/*
 * Adaptive polling interval for the none kind: after activity the poller
 * looks again at once; each idle look doubles the sleep from
 * XVL_BACKOFF_MIN_US up to XVL_BACKOFF_MAX_US, so an idle link costs a
 * few hundred wake-ups a second, not a core.
 */
#define XVL_BACKOFF_MIN_US 50u
#define XVL_BACKOFF_MAX_US 10000u
struct xvl_backoff {
	unsigned us; /* next sleep; 0 right after activity */
};
static inline void xvl_backoff_reset(struct xvl_backoff *b) { b->us = 0; }
/* Microseconds to sleep before the next look (and advance the backoff). */
unsigned xvl_backoff_next(struct xvl_backoff *b);

#endif
