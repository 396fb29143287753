/* SPDX-License-Identifier: MIT */
/*
 * A PCI device opened from user space through VFIO (Linux
 * Documentation/driver-api/vfio.rst), and on top of it QEMU's
 * ivshmem-doorbell device as a window and a doorbell for the mailbox link.
 *
 * vfio.c, the generic part: the device's IOMMU group (from
 * /sys/bus/pci/devices/BDF/iommu_group), a container with the type1 IOMMU,
 * the device descriptor; its regions (BARs, config space) read, written
 * and mapped through that descriptor; MSI-X vectors delivered to eventfds
 * (VFIO_DEVICE_SET_IRQS); and ioeventfds (VFIO_DEVICE_IOEVENTFD), with
 * which the kernel performs a fixed register write whenever an eventfd is
 * signalled.  No DMA is mapped: a device used this way reaches no memory
 * of ours.
 *
 * vfio_ivshmem.c: the ivshmem-doorbell device (1af4:1110 with MSI-X; QEMU
 * docs/specs/ivshmem-spec.rst).  BAR2 is the window; BAR0 holds IVPosition
 * (offset 8, our peer id) and Doorbell (offset 12: writing
 * peer_id << 16 | vector rings that vector of that peer).  The doorbell it
 * fills (kind ivshmem, doorbell.h) rings by a store to the mapped BAR0;
 * own[v] is the eventfd MSI-X vector v is delivered to; peer[v] is an
 * eventfd that, when signalled, makes the kernel write peer << 16 | v to
 * Doorbell (an ioeventfd) -- so code that kicks by signalling an eventfd
 * (the client's and server's queues) rings the peer unchanged.
 *
 * Inside a QEMU guest this needs an emulated IOMMU (q35 with
 * -device intel-iommu,intremap=on, guest command line intel_iommu=on): the
 * guest kernels here have no CONFIG_VFIO_NOIOMMU.  The device must be bound
 * to vfio-pci (driver_override).  Each missing step is named in the error.
 */
#ifndef XVL_VFIO_H
#define XVL_VFIO_H

#include <stdbool.h>
#include <stdint.h>

#include "doorbell.h"
#include "os.h"

struct xvl_vfio_dev {
	int container;        /* /dev/vfio/vfio, -1 when closed */
	int group;            /* /dev/vfio/N */
	int device;           /* the device descriptor */
	char bdf[16];         /* 0000:00:01.0 */
	unsigned n_msix;      /* MSI-X vectors the device has */
};

/* "00:01.0" or "0000:00:01.0" into out (a canonical, checked BDF). */
int xvl_vfio_parse_bdf(const char *text, size_t len, char out[16], struct xvl_errbuf *eb);

/* Open the device at bdf (canonical): group, container, type1 IOMMU, device fd. */
int xvl_vfio_open(struct xvl_vfio_dev *d, const char *bdf, struct xvl_errbuf *eb);

/* Region index (VFIO_PCI_BARn_REGION_INDEX, ..._CONFIG_REGION_INDEX): where it is in the device fd. */
struct xvl_vfio_region {
	uint64_t offset;      /* of the region in the device descriptor */
	uint64_t size;
	bool mappable;
};
int xvl_vfio_region(const struct xvl_vfio_dev *d, unsigned index, struct xvl_vfio_region *r,
		    struct xvl_errbuf *eb);

/* Map a whole region (shared, read-write); munmap(*base, *size) undoes it. */
int xvl_vfio_map(const struct xvl_vfio_dev *d, unsigned index, void **base, uint64_t *size,
		 struct xvl_errbuf *eb);

/* A 16- or 32-bit register of a region (width 2 or 4), through the descriptor. */
int xvl_vfio_read(const struct xvl_vfio_dev *d, unsigned index, uint64_t off, unsigned width,
		  uint32_t *v, struct xvl_errbuf *eb);
int xvl_vfio_write(const struct xvl_vfio_dev *d, unsigned index, uint64_t off, unsigned width,
		   uint32_t v, struct xvl_errbuf *eb);

/*
 * Let the device master the bus (PCI command register): without it the
 * device's MSI-X messages, which are memory writes, are dropped.
 */
int xvl_vfio_bus_master(const struct xvl_vfio_dev *d, struct xvl_errbuf *eb);

/*
 * Enable MSI-X vectors 0..n-1, each delivered to a new eventfd (fds[v],
 * non-blocking, close-on-exec, owned by the caller; the kernel keeps its
 * own reference).  n must not exceed d->n_msix.  On failure the entries
 * it filled are set back to -1 (nothing handed out).
 */
int xvl_vfio_msix_eventfds(const struct xvl_vfio_dev *d, unsigned n, int *fds, struct xvl_errbuf *eb);

/* When fd is signalled, the kernel writes the 32-bit data at off of region index. */
int xvl_vfio_ioeventfd(const struct xvl_vfio_dev *d, unsigned index, uint64_t off, uint32_t data,
		       int fd, struct xvl_errbuf *eb);

/* Close what is open (MSI-X, ioeventfds and mappings of the device end with its last reference). */
void xvl_vfio_close(struct xvl_vfio_dev *d);

/*
 * An ivshmem-doorbell device through VFIO, from "BDF[,peer=N]" (the spec
 * after "vfio:" in a URI or --window): opens the device, maps BAR2 into
 * win (its fd a duplicate of the device descriptor), fills db (kind
 * ivshmem, owning the device: xvl_doorbell_close closes it) with every
 * MSI-X vector of the device as own[] and as many peer[] vectors ringing
 * peer N (default 0, the ivshmem server: `xvl server --window
 * ivshmem:SOCK`).  *self_id, when not NULL, receives IVPosition.
 */
int xvl_vfio_ivshmem_open(const char *spec, struct xvl_os_window *win, struct xvl_doorbell *db,
			  unsigned *self_id, struct xvl_errbuf *eb);

#endif
