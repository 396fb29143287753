/* SPDX-License-Identifier: MIT */
/* Options structs that grow (opts.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "opts.h"

/* Offset of the first non-zero byte in p[from, to), or 0 when there is none. */
static size_t first_set_byte(const unsigned char *p, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (p[i])
			return i;
	return 0;
}

/* "struct xvl_blk_opts" -> "XVL_BLK_OPTS_INIT", the macro that sets its size. */
static void init_macro(const char *what, char *buf, size_t len)
{
	const char *p = strchr(what, ' ') ? strchr(what, ' ') + 1 : what;
	size_t n = 0;

	for (; *p && n + sizeof("_INIT") < len; p++)
		buf[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
	memcpy(buf + n, "_INIT", sizeof("_INIT"));
}

int xvl_opts_take(void *own, size_t own_size, const void *theirs, size_t min_size,
		  const char *what, char *why, size_t whylen)
{
	size_t size;
	char init[64];

	memcpy(&size, theirs, sizeof(size));
	memset(own, 0, own_size);
	if (size < min_size || size > XVL_OPTS_SIZE_MAX) {
		init_macro(what, init, sizeof(init));
		snprintf(why, whylen,
			 "%s.size is %zu, not the size of any layout of it (%zu..%u bytes): "
			 "start its initializer with %s",
			 what, size, min_size, XVL_OPTS_SIZE_MAX, init);
		return -EINVAL;
	}
	size_t unknown = size > own_size ? first_set_byte(theirs, own_size, size) : 0;
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
