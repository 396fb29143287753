/* SPDX-License-Identifier: MIT */
/* A PCI device through VFIO: group, container, regions, MSI-X, ioeventfds; see vfio.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfio.h"

#define PCI_COMMAND_REG 4u
#define PCI_COMMAND_MEMORY 0x2u
#define PCI_COMMAND_MASTER 0x4u

/* Up to max hex digits at *p, then the character sep (or the end when sep is 0). */
static bool hex_field(const char **p, const char *end, unsigned max, char sep, unsigned *out)
{
	unsigned v = 0, n = 0;
	const char *s = *p;
	for (; s < end && n < max; s++, n++) {
		char c = *s;
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') :
			     c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) :
			     c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16u;
		if (d == 16)
			break;
		v = v * 16 + d;
	}
	if (n == 0 || (sep ? s >= end || *s != sep : s != end))
		return false;
	*p = sep ? s + 1 : s;
	*out = v;
	return true;
}

int xvl_vfio_parse_bdf(const char *text, size_t len, char out[16], struct xvl_errbuf *eb)
{
	unsigned dom = 0, bus, dev, fn;
	const char *p = text, *end = text + len;
	if (len == 0)
		return xvl_err(eb, -EINVAL, "vfio: expected a PCI address such as 0000:00:01.0");
	/* DDDD:BB:DD.F, or BB:DD.F in domain 0 */
	bool ok = memchr(text, ':', len) != memrchr(text, ':', len)
			  ? hex_field(&p, end, 4, ':', &dom) && hex_field(&p, end, 2, ':', &bus)
			  : hex_field(&p, end, 2, ':', &bus);
	ok = ok && hex_field(&p, end, 2, '.', &dev) && hex_field(&p, end, 1, 0, &fn);
	if (!ok || dev > 0x1f || fn > 7)
		return xvl_err(eb, -EINVAL, "vfio: '%.*s' is not a PCI address (DDDD:BB:DD.F, as in lspci -D)",
			       (int)(len > 40 ? 40 : len), text);
	snprintf(out, 16, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
	return 0;
}

/* The driver bound to bdf must be vfio-pci. */
static int check_driver(const char *bdf, struct xvl_errbuf *eb)
{
	char path[128], link[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", bdf);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	const char *drv = "no driver";
	if (n > 0) {
		link[n] = '\0';
		drv = strrchr(link, '/') ? strrchr(link, '/') + 1 : link;
		if (!strcmp(drv, "vfio-pci"))
			return 0;
	}
	return xvl_err(eb, -EBUSY, "vfio: %s is bound to %s, not vfio-pci: modprobe vfio-pci, then "
		       "echo vfio-pci > /sys/bus/pci/devices/%s/driver_override, unbind it from its "
		       "driver if any, and echo %s > /sys/bus/pci/drivers_probe", bdf, drv, bdf, bdf);
}

/* The group number of bdf, with errors that say which set-up step is missing. */
static int find_group(const char *bdf, struct xvl_errbuf *eb)
{
	char path[128], link[PATH_MAX];
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
	if (access(path, F_OK) < 0)
		return xvl_err(eb, -ENODEV, "vfio: no PCI device %s (see /sys/bus/pci/devices)", bdf);
	/* The IOMMU first: without one, vfio-pci cannot bind at all. */
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return xvl_err(eb, -ENODEV, "vfio: %s has no IOMMU group: boot the guest with "
			       "intel_iommu=on and an emulated IOMMU (QEMU: -machine q35 -device "
			       "intel-iommu,intremap=on, before the other devices)", bdf);
	link[n] = '\0';
	int rc = check_driver(bdf, eb);
	if (rc < 0)
		return rc;
	const char *num = strrchr(link, '/');
	char *end;
	long g = strtol(num ? num + 1 : link, &end, 10);
	if (*end || g < 0 || g > INT_MAX)
		return xvl_err(eb, -EINVAL, "vfio: %s: unexpected IOMMU group link %s", bdf, link);
	return (int)g;
}

static int open_group(struct xvl_vfio_dev *d, int g, struct xvl_errbuf *eb)
{
	char path[64];
	d->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (d->container < 0)
		return xvl_err(eb, -errno, "vfio: /dev/vfio/vfio: %s (load the vfio, vfio_iommu_type1 and "
			       "vfio-pci modules)", strerror(errno));
	if (ioctl(d->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		return xvl_err(eb, -EPROTO, "vfio: unknown VFIO API version");
	if (ioctl(d->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) <= 0)
		return xvl_err(eb, -ENOTSUP, "vfio: no type1 IOMMU backend: modprobe vfio_iommu_type1");
	snprintf(path, sizeof(path), "/dev/vfio/%d", g);
	d->group = open(path, O_RDWR | O_CLOEXEC);
	if (d->group < 0)
		return xvl_err(eb, -errno, "vfio: %s: %s (another process has the group open, or we are "
			       "not root)", path, strerror(errno));
	struct vfio_group_status st = {.argsz = sizeof(st)};
	if (ioctl(d->group, VFIO_GROUP_GET_STATUS, &st) < 0)
		return xvl_err(eb, -errno, "vfio: %s: status: %s", path, strerror(errno));
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE))
		return xvl_err(eb, -EBUSY, "vfio: IOMMU group %d is not viable: bind every device in "
			       "/sys/kernel/iommu_groups/%d/devices to vfio-pci", g, g);
	if (ioctl(d->group, VFIO_GROUP_SET_CONTAINER, &d->container) < 0)
		return xvl_err(eb, -errno, "vfio: group %d: set container: %s", g, strerror(errno));
	if (ioctl(d->container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) < 0)
		return xvl_err(eb, -errno, "vfio: type1 IOMMU: %s", strerror(errno));
	return 0;
}

int xvl_vfio_open(struct xvl_vfio_dev *d, const char *bdf, struct xvl_errbuf *eb)
{
	memset(d, 0, sizeof(*d));
	d->container = d->group = d->device = -1;
	snprintf(d->bdf, sizeof(d->bdf), "%s", bdf);
	int g = find_group(d->bdf, eb);
	int rc = g < 0 ? g : open_group(d, g, eb);
	if (rc == 0) {
		d->device = ioctl(d->group, VFIO_GROUP_GET_DEVICE_FD, d->bdf);
		if (d->device < 0)
			rc = xvl_err(eb, -errno, "vfio: %s: cannot get the device: %s", d->bdf, strerror(errno));
	}
	if (rc == 0) {
		struct vfio_irq_info irq = {.argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX};
		if (ioctl(d->device, VFIO_DEVICE_GET_IRQ_INFO, &irq) < 0)
			rc = xvl_err(eb, -errno, "vfio: %s: MSI-X info: %s", d->bdf, strerror(errno));
		d->n_msix = irq.count;
	}
	if (rc < 0)
		xvl_vfio_close(d);
	return rc;
}

int xvl_vfio_region(const struct xvl_vfio_dev *d, unsigned index, struct xvl_vfio_region *r,
		    struct xvl_errbuf *eb)
{
	struct vfio_region_info ri = {.argsz = sizeof(ri), .index = index};
	if (ioctl(d->device, VFIO_DEVICE_GET_REGION_INFO, &ri) < 0)
		return xvl_err(eb, -errno, "vfio: %s: region %u: %s", d->bdf, index, strerror(errno));
	r->offset = ri.offset;
	r->size = ri.size;
	r->mappable = (ri.flags & VFIO_REGION_INFO_FLAG_MMAP) != 0;
	return 0;
}

int xvl_vfio_map(const struct xvl_vfio_dev *d, unsigned index, void **base, uint64_t *size,
		 struct xvl_errbuf *eb)
{
	struct xvl_vfio_region r;
	int rc = xvl_vfio_region(d, index, &r, eb);
	if (rc < 0)
		return rc;
	if (!r.mappable || !r.size || r.size > SIZE_MAX / 2)
		return xvl_err(eb, -ENOTSUP, "vfio: %s: region %u (%llu bytes) cannot be mapped", d->bdf,
			       index, (unsigned long long)r.size);
	void *p = mmap(NULL, (size_t)r.size, PROT_READ | PROT_WRITE, MAP_SHARED, d->device, (off_t)r.offset);
	if (p == MAP_FAILED)
		return xvl_err(eb, -errno, "vfio: %s: mapping region %u: %s", d->bdf, index, strerror(errno));
	*base = p;
	*size = r.size;
	return 0;
}

static int access_reg(const struct xvl_vfio_dev *d, unsigned index, uint64_t off, unsigned width,
		      uint32_t *v, bool write, struct xvl_errbuf *eb)
{
	struct xvl_vfio_region r;
	int rc = xvl_vfio_region(d, index, &r, eb);
	if (rc < 0)
		return rc;
	if ((width != 2 && width != 4) || off + width > r.size)
		return xvl_err(eb, -EINVAL, "vfio: %s: region %u has no %u-byte register at %llu", d->bdf,
			       index, width, (unsigned long long)off);
	uint16_t v16 = (uint16_t)*v;
	void *buf = width == 2 ? (void *)&v16 : (void *)v;
	ssize_t n = write ? pwrite(d->device, buf, width, (off_t)(r.offset + off))
			  : pread(d->device, buf, width, (off_t)(r.offset + off));
	if (n != (ssize_t)width)
		return xvl_err(eb, n < 0 ? -errno : -EIO, "vfio: %s: %s region %u at %llu: %s", d->bdf,
			       write ? "writing" : "reading", index, (unsigned long long)off,
			       n < 0 ? strerror(errno) : "short");
	if (!write && width == 2)
		*v = v16;
	return 0;
}

int xvl_vfio_read(const struct xvl_vfio_dev *d, unsigned index, uint64_t off, unsigned width,
		  uint32_t *v, struct xvl_errbuf *eb)
{
	*v = 0;
	return access_reg(d, index, off, width, v, false, eb);
}

int xvl_vfio_write(const struct xvl_vfio_dev *d, unsigned index, uint64_t off, unsigned width,
		   uint32_t v, struct xvl_errbuf *eb)
{
	return access_reg(d, index, off, width, &v, true, eb);
}

int xvl_vfio_bus_master(const struct xvl_vfio_dev *d, struct xvl_errbuf *eb)
{
	uint32_t cmd;
	int rc = xvl_vfio_read(d, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND_REG, 2, &cmd, eb);
	if (rc < 0 || (cmd & (PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY)) ==
			      (PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY))
		return rc;
	return xvl_vfio_write(d, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND_REG, 2,
			      cmd | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY, eb);
}

int xvl_vfio_msix_eventfds(const struct xvl_vfio_dev *d, unsigned n, int *fds, struct xvl_errbuf *eb)
{
	if (n == 0 || n > d->n_msix)
		return xvl_err(eb, -EINVAL, "vfio: %s: %u MSI-X vectors asked, the device has %u", d->bdf,
			       n, d->n_msix);
	size_t len = sizeof(struct vfio_irq_set) + n * sizeof(int32_t);
	struct vfio_irq_set *set = calloc(1, len);
	if (!set)
		return xvl_err(eb, -ENOMEM, "out of memory");
	set->argsz = (uint32_t)len;
	set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	set->index = VFIO_PCI_MSIX_IRQ_INDEX;
	set->start = 0;
	set->count = n;
	int32_t *data = (int32_t *)set->data;
	unsigned made = 0;
	int rc = 0;
	for (; made < n; made++) {
		int fd = xvl_os_eventfd();
		if (fd < 0) {
			rc = xvl_err(eb, fd, "vfio: eventfd: %s", strerror(-fd));
			break;
		}
		fds[made] = fd;
		data[made] = fds[made];
	}
	if (rc == 0 && ioctl(d->device, VFIO_DEVICE_SET_IRQS, set) < 0)
		rc = xvl_err(eb, -errno, "vfio: %s: enabling %u MSI-X vectors: %s", d->bdf, n, strerror(errno));
	if (rc < 0) /* nothing handed out on failure */
		while (made) {
			close(fds[--made]);
			fds[made] = -1;
		}
	free(set);
	return rc;
}

int xvl_vfio_ioeventfd(const struct xvl_vfio_dev *d, unsigned index, uint64_t off, uint32_t data,
		       int fd, struct xvl_errbuf *eb)
{
	struct xvl_vfio_region r;
	int rc = xvl_vfio_region(d, index, &r, eb);
	if (rc < 0)
		return rc;
	struct vfio_device_ioeventfd io = {.argsz = sizeof(io), .flags = VFIO_DEVICE_IOEVENTFD_32,
					   .offset = r.offset + off, .data = data, .fd = fd};
	if (ioctl(d->device, VFIO_DEVICE_IOEVENTFD, &io) < 0)
		return xvl_err(eb, -errno, "vfio: %s: ioeventfd for region %u offset %llu: %s", d->bdf,
			       index, (unsigned long long)off, strerror(errno));
	return 0;
}

void xvl_vfio_close(struct xvl_vfio_dev *d)
{
	if (d->device >= 0)
		close(d->device);
	if (d->group >= 0)
		close(d->group);
	if (d->container >= 0)
		close(d->container);
	d->container = d->group = d->device = -1;
}
