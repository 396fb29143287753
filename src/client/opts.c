/* SPDX-License-Identifier: MIT */
/* Options structs that grow (opts.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "opts.h"

/* The caller set an option this library does not know (a newer header). */
static size_t first_unknown(const unsigned char *p, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (p[i])
			return i;
	return 0;
}

int xvl_opts_take(void *own, size_t own_size, const void *theirs, size_t min_size,
		  const char *what, char *why, size_t whylen)
{
	size_t size;

	memcpy(&size, theirs, sizeof(size));
	memset(own, 0, own_size);
	if (size < min_size) {
		/* "struct xvl_blk_opts" -> XVL_BLK_OPTS_INIT */
		char init[48];
		size_t n = 0;
		for (const char *p = strchr(what, ' ') ? strchr(what, ' ') + 1 : what;
		     *p && n + 6 < sizeof(init); p++)
			init[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
		memcpy(init + n, "_INIT", 6);
		snprintf(why, whylen,
			 "%s.size is %zu, below the %zu bytes of the oldest layout: "
			 "start its initializer with %s",
			 what, size, min_size, init);
		return -EINVAL;
	}
	size_t unknown = size > own_size ? first_unknown(theirs, own_size, size) : 0;
	if (unknown) {
		snprintf(why, whylen,
			 "%s sets an option at byte %zu that this libxvloop (%zu-byte %s) "
			 "does not know: the program was built for a newer library",
			 what, unknown, own_size, what);
		return -EINVAL;
	}
	memcpy(own, theirs, size < own_size ? size : own_size);
	memcpy(own, &own_size, sizeof(own_size));
	return 0;
}
