/* SPDX-License-Identifier: MIT */
/*
 * Option structs that grow (src/client/opts.c): what the library reads of a
 * caller's struct of an older, the same or a newer layout, and what it
 * refuses.  The caller's struct is followed by non-zero guard bytes, so that
 * a read past its size would show in the copy (or as an unknown option).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "opts.h"
#include "tap.h"

/* The library's view: a 0.1 struct, and a newer one with two more fields. */
struct v1 {
	size_t size;
	int a;
	unsigned b;
};
struct v2 {
	size_t size;
	int a;
	unsigned b;
	unsigned c;
	unsigned d;
};

static unsigned char buf[256] __attribute__((aligned(16)));

/* A caller's struct of size bytes at the start of buf, 0xAA guards after it. */
static void *caller_struct(const void *src, size_t size)
{
	memset(buf, 0xAA, sizeof(buf));
	memcpy(buf, src, size);
	return buf;
}

int main(void)
{
	char why[256];
	struct v2 own;

	struct v1 old = {.size = sizeof(struct v1), .a = -1, .b = 7};
	int rc = xvl_opts_take(&own, sizeof(own), caller_struct(&old, sizeof(old)), sizeof(struct v1),
			       "struct t_opts", why, sizeof(why));
	CHECK(rc == 0 && own.a == -1 && own.b == 7 && own.c == 0 && own.d == 0,
	      "an older (smaller) struct: its fields read, the newer ones zero");
	CHECK(own.size == sizeof(own), "the library's copy says the library's size");

	struct v2 same = {.size = sizeof(struct v2), .a = 3, .b = 4, .c = 5, .d = 6};
	rc = xvl_opts_take(&own, sizeof(own), caller_struct(&same, sizeof(same)), sizeof(struct v1),
			   "struct t_opts", why, sizeof(why));
	CHECK(rc == 0 && own.a == 3 && own.b == 4 && own.c == 5 && own.d == 6, "the same layout: all read");

	struct v1 lib_old;
	same.c = same.d = 0;
	rc = xvl_opts_take(&lib_old, sizeof(lib_old), caller_struct(&same, sizeof(same)),
			   sizeof(struct v1), "struct t_opts", why, sizeof(why));
	CHECK(rc == 0 && lib_old.a == 3 && lib_old.b == 4,
	      "a newer (larger) struct whose new fields are zero: accepted by an older library");
	same.d = 1;
	rc = xvl_opts_take(&lib_old, sizeof(lib_old), caller_struct(&same, sizeof(same)),
			   sizeof(struct v1), "struct t_opts", why, sizeof(why));
	CHECK(rc == -EINVAL && strstr(why, "newer library"),
	      "a newer struct that sets a new field: refused by an older library (%s)", why);

	struct v1 none = {.a = 1};
	rc = xvl_opts_take(&own, sizeof(own), caller_struct(&none, sizeof(none)), sizeof(struct v1),
			   "struct t_opts", why, sizeof(why));
	CHECK(rc == -EINVAL && strstr(why, "T_OPTS_INIT"), "size 0 refused, naming the macro (%s)", why);

	struct v1 short_one = {.size = sizeof(size_t) + 2};
	rc = xvl_opts_take(&own, sizeof(own), caller_struct(&short_one, sizeof(short_one)),
			   sizeof(struct v1), "struct t_opts", why, sizeof(why));
	CHECK(rc == -EINVAL, "a size below the oldest layout refused");

	struct v1 huge = {.size = (size_t)1 << 40};
	rc = xvl_opts_take(&own, sizeof(own), caller_struct(&huge, sizeof(huge)), sizeof(struct v1),
			   "struct t_opts", why, sizeof(why));
	CHECK(rc == -EINVAL, "an implausible size refused without reading that far");
	huge.size = XVL_OPTS_SIZE_MAX + 1;
	rc = xvl_opts_take(&own, sizeof(own), caller_struct(&huge, sizeof(huge)), sizeof(struct v1),
			   "struct t_opts", why, sizeof(why));
	CHECK(rc == -EINVAL, "XVL_OPTS_SIZE_MAX + 1 refused");
	return tap_done();
}
