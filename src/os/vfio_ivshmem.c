/* SPDX-License-Identifier: MIT */
/* QEMU's ivshmem-doorbell device through VFIO: window (BAR2) and doorbell (BAR0, MSI-X); see vfio.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfio.h"
#include "window.h"

#define IVSHMEM_VENDOR 0x1af4u
#define IVSHMEM_DEVICE 0x1110u
#define IVSHMEM_IVPOSITION 8u  /* BAR0: our peer id (read-only) */
#define IVSHMEM_DOORBELL 12u   /* BAR0: peer_id << 16 | vector */
#define IVSHMEM_BAR0_SIZE 256u

struct ivsh_spec {
	char bdf[16];
	long peer;
};

/* "BDF[,peer=N]" */
static int parse_spec(const char *spec, struct ivsh_spec *s, struct xvl_errbuf *eb)
{
	const char *comma = strchr(spec, ',');
	int rc = xvl_vfio_parse_bdf(spec, comma ? (size_t)(comma - spec) : strlen(spec), s->bdf, eb);
	if (rc < 0)
		return rc;
	s->peer = 0; /* the ivshmem server (xvl server --window ivshmem:SOCK) is peer 0 */
	for (const char *p = comma; p && *p; p = strchr(p + 1, ',')) {
		char *end;
		if (strncmp(p, ",peer=", 6) != 0)
			return xvl_err(eb, -EINVAL, "vfio:%s: unknown option '%s' (only peer=N)", spec, p + 1);
		s->peer = strtol(p + 6, &end, 10);
		if (end == p + 6 || (*end && *end != ',') || s->peer < 0 || s->peer > 0xffff)
			return xvl_err(eb, -EINVAL, "vfio:%s: peer= wants an ivshmem peer id, 0..65535", spec);
	}
	return 0;
}

/* The device must be an ivshmem-doorbell with MSI-X (ivshmem-plain has the same id but no vectors). */
static int check_device(const struct xvl_vfio_dev *d, struct xvl_errbuf *eb)
{
	uint32_t vendor, device;
	int rc = xvl_vfio_read(d, VFIO_PCI_CONFIG_REGION_INDEX, 0, 2, &vendor, eb);
	if (rc == 0)
		rc = xvl_vfio_read(d, VFIO_PCI_CONFIG_REGION_INDEX, 2, 2, &device, eb);
	if (rc < 0)
		return rc;
	if (vendor != IVSHMEM_VENDOR || device != IVSHMEM_DEVICE)
		return xvl_err(eb, -ENODEV, "vfio: %s is %04x:%04x, not an ivshmem device (1af4:1110)",
			       d->bdf, vendor, device);
	if (d->n_msix == 0)
		return xvl_err(eb, -ENODEV, "vfio: %s has no MSI-X vectors: it is ivshmem-plain, or "
			       "ivshmem-doorbell without vectors=N (QEMU -device ivshmem-doorbell,vectors=N)",
			       d->bdf);
	return 0;
}

static int map_window(const struct xvl_vfio_dev *d, struct xvl_os_window *win, struct xvl_errbuf *eb)
{
	void *p;
	uint64_t size;
	int rc = xvl_vfio_map(d, VFIO_PCI_BAR2_REGION_INDEX, &p, &size, eb);
	if (rc < 0)
		return rc;
	if (size < XVL_WIN_MIN_SIZE) {
		munmap(p, (size_t)size);
		return xvl_err(eb, -EINVAL, "vfio: %s: BAR2 is %llu bytes, smaller than a window", d->bdf,
			       (unsigned long long)size);
	}
	int fd = fcntl(d->device, F_DUPFD_CLOEXEC, 3);
	if (fd < 0) {
		int e = errno;
		munmap(p, (size_t)size);
		return xvl_err(eb, -e, "vfio: dup: %s", strerror(e));
	}
	win->fd = fd;
	win->mem.base = p;
	win->mem.size = size;
	return 0;
}

/* own[v]: MSI-X vector v; peer[v]: an eventfd the kernel turns into a ring of the peer's vector v. */
static int make_vectors(struct xvl_doorbell *db, const struct xvl_vfio_dev *d, uint16_t peer,
			struct xvl_errbuf *eb)
{
	unsigned n = d->n_msix < XVL_MBOX_MAX_VECTORS ? d->n_msix : XVL_MBOX_MAX_VECTORS;
	int rc = xvl_vfio_msix_eventfds(d, n, db->own, eb);
	if (rc < 0)
		return rc;
	db->n_own = n;
	/* The ivshmem server gives every peer the same number of vectors. */
	for (unsigned v = 0; v < n; v++) {
		int fd = xvl_os_eventfd();
		if (fd < 0)
			return xvl_err(eb, fd, "vfio: eventfd: %s", strerror(-fd));
		db->peer[v] = fd;
		db->n_peer = v + 1;
		rc = xvl_vfio_ioeventfd(d, VFIO_PCI_BAR0_REGION_INDEX, IVSHMEM_DOORBELL,
					(uint32_t)peer << 16 | v, fd, eb);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int xvl_vfio_ivshmem_open(const char *spec, struct xvl_os_window *win, struct xvl_doorbell *db,
			  unsigned *self_id, struct xvl_errbuf *eb)
{
	struct ivsh_spec s;
	xvl_doorbell_init(db);
	memset(win, 0, sizeof(*win));
	win->fd = -1;
	int rc = parse_spec(spec, &s, eb);
	if (rc < 0)
		return rc;
	struct xvl_vfio_dev *d = malloc(sizeof(*d));
	if (!d)
		return xvl_err(eb, -ENOMEM, "out of memory");
	rc = xvl_vfio_open(d, s.bdf, eb);
	if (rc < 0) {
		free(d);
		return rc;
	}
	db->kind = XVL_DB_IVSHMEM;
	db->vfio = d; /* from here on xvl_doorbell_close undoes everything */
	db->peer_id = (uint16_t)s.peer;
	uint32_t me = 0;
	rc = check_device(d, eb);
	if (rc == 0)
		rc = xvl_vfio_bus_master(d, eb);
	if (rc == 0)
		rc = xvl_vfio_read(d, VFIO_PCI_BAR0_REGION_INDEX, IVSHMEM_IVPOSITION, 4, &me, eb);
	if (rc == 0 && me == (uint32_t)s.peer)
		rc = xvl_err(eb, -EINVAL, "vfio:%s: peer %ld is this device itself (IVPosition %u): name "
			     "the other side's ivshmem peer id", spec, s.peer, me);
	if (rc == 0) {
		/* A BAR0 that shares its page with others cannot be mapped: ring through peer[] then. */
		void *bar0;
		uint64_t len;
		struct xvl_errbuf ignored;
		if (xvl_vfio_map(d, VFIO_PCI_BAR0_REGION_INDEX, &bar0, &len, &ignored) == 0) {
			if (len <= IVSHMEM_BAR0_SIZE)
				db->bar0 = bar0; /* doorbell.c unmaps IVSHMEM_BAR0_SIZE */
			else
				munmap(bar0, (size_t)len);
		}
		rc = make_vectors(db, d, (uint16_t)s.peer, eb);
	}
	if (rc == 0)
		rc = map_window(d, win, eb);
	if (rc < 0) {
		xvl_doorbell_close(db);
		return rc;
	}
	if (self_id)
		*self_id = me;
	return 0;
}
