/* SPDX-License-Identifier: MIT */
/*
 * Options structs that grow: the caller's struct (of the size it was
 * compiled with, in its size field) is read into the library's own, so that
 * neither reads past the other's end.
 */
#ifndef XVL_CLIENT_OPTS_H
#define XVL_CLIENT_OPTS_H

#include <stddef.h>

#include "xvloop/xvl.h"

/* The sizes of the first ABI (XVL_0.1): the smallest struct a caller may pass. */
#define XVL_CLIENT_OPTS_SIZE_0_1 \
	(offsetof(struct xvl_client_opts, reconnect_ms) + sizeof(unsigned))
#define XVL_BLK_OPTS_SIZE_0_1 (offsetof(struct xvl_blk_opts, spin_us) + sizeof(unsigned))

/* A size above this is not a struct of any version: refused, not read. */
#define XVL_OPTS_SIZE_MAX 4096u

/*
 * Read the caller's options (theirs, whose first member is its size) into
 * own (own_size bytes, the library's sizeof): bytes the caller's struct does
 * not have read as zero; bytes beyond own_size must be zero (options this
 * library does not know).  min_size: the smallest size accepted, and
 * XVL_OPTS_SIZE_MAX the largest.
 * 0, or -EINVAL with what is wrong in why (whylen bytes).
 */
int xvl_opts_take(void *own, size_t own_size, const void *theirs, size_t min_size,
		  const char *what, char *why, size_t whylen);

#endif
