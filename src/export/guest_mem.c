/* SPDX-License-Identifier: MIT */
/*
 * The frontend's memory table (SET_MEM_TABLE): each region's file is mapped
 * whole from offset 0 (hugetlbfs needs aligned offsets) and the region is
 * found at mmap_offset inside it.  Every region is checked against its file
 * size, for overflow, and for overlap with the others, so a translation
 * that lands inside a region always lands inside a mapping.  A memfd is
 * sealed against shrinking (QEMU's memory-backend-memfd comes sealed), so
 * the frontend cannot pull pages from under a copy later (SIGBUS); for a
 * plain file (memory-backend-file) that is not possible and a warning says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export_int.h"

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int check_region(const struct exp_region_msg *r, int fd, unsigned i, struct xvl_errbuf *eb)
{
	struct stat st;
	if (r->size == 0)
		return xvl_err(eb, -EINVAL, "memory region %u is empty", i);
	if (r->gpa + r->size < r->gpa || r->uaddr + r->size < r->uaddr ||
	    r->mmap_offset + r->size < r->mmap_offset || r->mmap_offset + r->size > SIZE_MAX)
		return xvl_err(eb, -EINVAL, "memory region %u wraps around", i);
	if (fstat(fd, &st) < 0)
		return xvl_err(eb, -errno, "memory region %u: fstat: %s", i, strerror(errno));
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < r->mmap_offset + r->size)
		return xvl_err(eb, -EINVAL,
			       "memory region %u (offset %#llx, size %#llx) is beyond its file (%lld bytes)",
			       i, (unsigned long long)r->mmap_offset, (unsigned long long)r->size,
			       (long long)st.st_size);
	if (!S_ISREG(st.st_mode))
		return xvl_err(eb, -EINVAL, "memory region %u is not backed by a memory file", i);
	return 0;
}

bool exp_fd_sealed(int fd)
{
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals >= 0 && (seals & F_SEAL_SHRINK))
		return true;
	return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0;
}

int exp_mem_map(struct exp_mem *m, const struct exp_region_msg *r, const int *fds, unsigned n,
		struct xvl_errbuf *eb)
{
	int rc = 0;
	memset(m, 0, sizeof(*m));
	if (n == 0 || n > EXP_MAX_REGIONS)
		rc = xvl_err(eb, -EINVAL, "memory table with %u regions (1..%u)", n, EXP_MAX_REGIONS);
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		rc = check_region(&r[i], fds[i], i, eb);
		for (unsigned j = 0; rc == 0 && j < i; j++)
			if (ranges_overlap(r[i].gpa, r[i].size, r[j].gpa, r[j].size) ||
			    ranges_overlap(r[i].uaddr, r[i].size, r[j].uaddr, r[j].size))
				rc = xvl_err(eb, -EINVAL, "memory regions %u and %u overlap", j, i);
	}
	for (unsigned i = 0; rc == 0 && i < n; i++) {
		if (!exp_fd_sealed(fds[i]))
			fprintf(stderr, "xvl export: warning: memory region %u cannot be sealed against "
				"shrinking (not a memfd): a frontend that truncates it can crash the export\n", i);
		size_t len = (size_t)(r[i].mmap_offset + r[i].size);
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fds[i], 0);
		if (p == MAP_FAILED) {
			rc = xvl_err(eb, -errno, "memory region %u: mmap of %zu bytes: %s", i, len,
				     strerror(errno));
			break;
		}
		struct exp_region *g = &m->r[m->n++];
		g->gpa = r[i].gpa;
		g->size = r[i].size;
		g->uaddr = r[i].uaddr;
		g->map = p;
		g->map_len = len;
		g->host = (uint8_t *)p + r[i].mmap_offset;
	}
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
	if (rc < 0)
		exp_mem_unmap(m);
	return rc;
}

void exp_mem_unmap(struct exp_mem *m)
{
	for (unsigned i = 0; i < m->n; i++)
		munmap(m->r[i].map, m->r[i].map_len);
	memset(m, 0, sizeof(*m));
}

static bool inside(uint64_t start, uint64_t size, uint64_t a, uint64_t len)
{
	return a >= start && a - start <= size && len <= size - (a - start);
}

uint8_t *exp_mem_gpa(const struct exp_mem *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->n; i++)
		if (inside(m->r[i].gpa, m->r[i].size, gpa, len))
			return m->r[i].host + (gpa - m->r[i].gpa);
	return NULL;
}

uint8_t *exp_mem_uva(const struct exp_mem *m, uint64_t uva, uint64_t len)
{
	for (unsigned i = 0; i < m->n; i++)
		if (inside(m->r[i].uaddr, m->r[i].size, uva, len))
			return m->r[i].host + (uva - m->r[i].uaddr);
	return NULL;
}

uint64_t exp_mem_piece(const struct exp_mem *m, uint64_t gpa, uint8_t **host)
{
	for (unsigned i = 0; i < m->n; i++)
		if (gpa >= m->r[i].gpa && gpa - m->r[i].gpa < m->r[i].size) {
			*host = m->r[i].host + (gpa - m->r[i].gpa);
			return m->r[i].size - (gpa - m->r[i].gpa);
		}
	return 0;
}
