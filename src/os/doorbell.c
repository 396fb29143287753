/* SPDX-License-Identifier: MIT */
/* Doorbells for the mailbox link: eventfds, the ivshmem BAR0 register, or none. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "doorbell.h"
#include "vfio.h"

#define IVSHMEM_DOORBELL_REG 12u /* BAR0 offset: bits 31..16 peer id, 15..0 vector */
#define IVSHMEM_BAR0_SIZE 256u

void xvl_doorbell_init(struct xvl_doorbell *db)
{
	memset(db, 0, sizeof(*db));
	for (unsigned i = 0; i < XVL_MBOX_MAX_VECTORS; i++)
		db->own[i] = db->peer[i] = -1;
}

/* "3,4,5" up to the end or a ';': descriptors in vector order. */
static int parse_fds(const char *s, int *out, unsigned *n, const char *what, struct xvl_errbuf *eb)
{
	*n = 0;
	while (*s && *s != ';') {
		char *end;
		long fd = strtol(s, &end, 10);
		if (end == s || fd < 0 || fd > 65535 || (*end && *end != ',' && *end != ';'))
			return xvl_err(eb, -EINVAL, "doorbell: %s= wants descriptor numbers, not '%s'", what, s);
		if (*n >= XVL_MBOX_MAX_VECTORS)
			return xvl_err(eb, -EINVAL, "doorbell: more than %u %s vectors", XVL_MBOX_MAX_VECTORS, what);
		if (fcntl((int)fd, F_GETFD) < 0)
			return xvl_err(eb, -EBADF, "doorbell: %s descriptor %ld is not open", what, fd);
		out[(*n)++] = (int)fd;
		s = *end == ',' ? end + 1 : end;
	}
	return 0;
}

static int parse_eventfd(struct xvl_doorbell *db, const char *s, struct xvl_errbuf *eb)
{
	db->kind = XVL_DB_EVENTFD;
	while (*s) {
		int rc;
		if (!strncmp(s, "own=", 4))
			rc = parse_fds(s + 4, db->own, &db->n_own, "own", eb);
		else if (!strncmp(s, "peer=", 5))
			rc = parse_fds(s + 5, db->peer, &db->n_peer, "peer", eb);
		else
			return xvl_err(eb, -EINVAL, "doorbell: eventfd: expected own= or peer=, got '%s'", s);
		if (rc < 0)
			return rc;
		const char *semi = strchr(s, ';');
		s = semi ? semi + 1 : s + strlen(s);
	}
	return 0;
}

/* Map BAR0 of an ivshmem-doorbell device from its sysfs directory. */
static int map_bar0(struct xvl_doorbell *db, const char *dev, struct xvl_errbuf *eb)
{
	char path[320];
	snprintf(path, sizeof(path), "%s/resource0", dev);
	int fd = open(path, O_RDWR | O_CLOEXEC | O_SYNC);
	if (fd < 0)
		return xvl_err(eb, -errno, "doorbell: %s: %s (is this an ivshmem-doorbell device, and are "
			       "we root?)", path, strerror(errno));
	void *p = mmap(NULL, IVSHMEM_BAR0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd);
	if (p == MAP_FAILED)
		return xvl_err(eb, -e, "doorbell: mapping %s: %s", path, strerror(e));
	db->bar0 = p;
	return 0;
}

static int parse_ivshmem(struct xvl_doorbell *db, const char *s, struct xvl_errbuf *eb)
{
	char dev[256];
	const char *comma = strchr(s, ',');
	size_t n = comma ? (size_t)(comma - s) : strlen(s);
	if (n == 0 || n >= sizeof(dev))
		return xvl_err(eb, -EINVAL, "doorbell: ivshmem: wants the device's sysfs directory");
	memcpy(dev, s, n);
	dev[n] = '\0';
	db->kind = XVL_DB_IVSHMEM;
	long peer = -1;
	for (s = comma; s && *s; s = strchr(s + 1, ',')) {
		if (!strncmp(s, ",peer=", 6)) {
			peer = strtol(s + 6, NULL, 10);
		} else if (!strncmp(s, ",own=", 5)) {
			char list[256];
			snprintf(list, sizeof(list), "%s", s + 5);
			for (char *c = list; *c; c++)
				if (*c == ',' && !(c[1] >= '0' && c[1] <= '9'))
					*c = '\0';
			int rc = parse_fds(list, db->own, &db->n_own, "own", eb);
			if (rc < 0)
				return rc;
		}
	}
	if (peer < 0 || peer > 65535)
		return xvl_err(eb, -EINVAL, "doorbell: ivshmem: peer=ID (0..65535) is needed");
	db->peer_id = (uint16_t)peer;
	db->n_peer = XVL_MBOX_MAX_VECTORS; /* the device ignores vectors the peer does not have */
	return map_bar0(db, dev, eb);
}

int xvl_doorbell_parse(struct xvl_doorbell *db, const char *spec, struct xvl_errbuf *eb)
{
	xvl_doorbell_init(db);
	if (!spec || !strcmp(spec, "none"))
		return 0;
	int rc;
	if (!strncmp(spec, "eventfd:", 8))
		rc = parse_eventfd(db, spec + 8, eb);
	else if (!strncmp(spec, "ivshmem:", 8))
		rc = parse_ivshmem(db, spec + 8, eb);
	else
		rc = xvl_err(eb, -EINVAL, "doorbell '%s': expected none, eventfd:own=..;peer=.. or "
			     "ivshmem:SYSFS_DIR,peer=ID", spec);
	if (rc < 0) {
		/* nothing taken over on failure: the caller still owns what it named */
		if (db->bar0)
			munmap((void *)db->bar0, IVSHMEM_BAR0_SIZE);
		xvl_doorbell_init(db);
	}
	return rc;
}

int xvl_doorbell_ring(struct xvl_doorbell *db, unsigned v)
{
	if (v >= db->n_peer)
		return -ENXIO;
	switch (db->kind) {
	case XVL_DB_EVENTFD:
		if (db->peer[v] < 0)
			return -ENXIO;
		return xvl_os_eventfd_signal(db->peer[v]);
	case XVL_DB_IVSHMEM:
		if (!db->bar0) /* VFIO could not map BAR0: the kernel writes it (ioeventfd) */
			return db->peer[v] >= 0 ? xvl_os_eventfd_signal(db->peer[v]) : -ENXIO;
		__atomic_thread_fence(__ATOMIC_RELEASE); /* what the ring announces is visible first */
		db->bar0[IVSHMEM_DOORBELL_REG / 4] = (uint32_t)db->peer_id << 16 | (v & 0xffff);
		return 0;
	default:
		return -ENXIO;
	}
}

int xvl_doorbell_fd(const struct xvl_doorbell *db, unsigned v)
{
	return v < db->n_own ? db->own[v] : -1;
}

void xvl_doorbell_drain(struct xvl_doorbell *db, unsigned v)
{
	if (v < db->n_own && db->own[v] >= 0)
		xvl_os_eventfd_drain(db->own[v]);
}

void xvl_doorbell_close(struct xvl_doorbell *db)
{
	for (unsigned i = 0; i < XVL_MBOX_MAX_VECTORS; i++) {
		if (db->own[i] >= 0)
			close(db->own[i]);
		if (db->peer[i] >= 0)
			close(db->peer[i]);
	}
	if (db->bar0)
		munmap((void *)db->bar0, IVSHMEM_BAR0_SIZE);
	if (db->vfio) {
		xvl_vfio_close(db->vfio);
		free(db->vfio);
	}
	xvl_doorbell_init(db);
}

unsigned xvl_backoff_next(struct xvl_backoff *b)
{
	unsigned us = b->us;
	b->us = us ? (us * 2 > XVL_BACKOFF_MAX_US ? XVL_BACKOFF_MAX_US : us * 2) : XVL_BACKOFF_MIN_US;
	return us;
}
