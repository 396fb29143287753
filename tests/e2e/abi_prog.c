/* SPDX-License-Identifier: MIT */
/*
 * A program outside the tree, built by tests/e2e/install.sh with only
 * `pkg-config --cflags --libs xvloop` against the installed header and
 * libxvloop.so.0, run against an installed `xvl server` on SOCK:
 *
 *   abi_prog SOCK
 *
 * It uses the library the way a program built for this ABI would, and
 * checks the growth rules of the option structs: NULL options; a size of 0
 * (an initializer without XVL_*_OPTS_INIT) is refused with a message; a
 * struct from a "newer header" (larger, with a field this library does not
 * know) is accepted while that field is zero and refused once it is set.
 * Prints PASS/FAIL lines; exit status 1 when any check failed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <xvloop/xvl.h>

static int failed;

static void check(int cond, const char *what, const char *detail)
{
	printf("%s %s%s%s\n", cond ? "PASS" : "FAIL", what, detail ? ": " : "", detail ? detail : "");
	failed |= !cond;
}

/* What a later header might look like: today's struct and a new field. */
struct newer_client_opts {
	struct xvl_client_opts o;
	unsigned long long added_later;
};
struct newer_blk_opts {
	struct xvl_blk_opts o;
	unsigned long long added_later;
};

static int connect_with(const char *sock, const struct xvl_client_opts *o, char *err, size_t n)
{
	struct xvl_client *c = NULL;
	int rc = xvl_client_connect(&c, sock, o, err, n);
	xvl_client_close(c);
	return rc;
}

static void client_opts(const char *sock)
{
	char err[256] = "";
	struct xvl_client_opts zero = {.name = "no-size"};
	int rc = connect_with(sock, &zero, err, sizeof(err));
	check(rc == -EINVAL && strstr(err, "XVL_CLIENT_OPTS_INIT") != NULL, "client opts without size refused", err);

	struct xvl_client_opts now = {XVL_CLIENT_OPTS_INIT, .name = "abi-prog"};
	rc = connect_with(sock, &now, err, sizeof(err));
	check(rc == 0, "client opts of this header accepted", rc ? err : NULL);

	struct newer_client_opts newer = {.o = {.name = "abi-newer"}};
	newer.o.size = sizeof(newer);
	rc = connect_with(sock, &newer.o, err, sizeof(err));
	check(rc == 0, "larger client opts with the unknown field zero accepted", rc ? err : NULL);
	newer.added_later = 1;
	rc = connect_with(sock, &newer.o, err, sizeof(err));
	check(rc == -EINVAL && strstr(err, "newer") != NULL,
	      "larger client opts with the unknown field set refused", err);
}

static void blk_opts(struct xvl_client *c)
{
	struct xvl_blk *b = NULL;
	struct xvl_blk_opts zero = {.device = -1};
	int rc = xvl_blk_open(c, &zero, &b);
	check(rc == -EINVAL && b == NULL && strstr(xvl_client_errmsg(c), "XVL_BLK_OPTS_INIT"), "blk opts without size refused", xvl_client_errmsg(c));

	struct newer_blk_opts newer = {.o = {.device = -1, .num_queues = 1}, .added_later = 7};
	newer.o.size = sizeof(newer);
	rc = xvl_blk_open(c, &newer.o, &b);
	check(rc == -EINVAL, "larger blk opts with the unknown field set refused", xvl_client_errmsg(c));
	newer.added_later = 0;
	rc = xvl_blk_open(c, &newer.o, &b);
	check(rc == 0, "larger blk opts with the unknown field zero accepted",
	      rc ? xvl_client_errmsg(c) : NULL);
	xvl_blk_close(b);
}

static void round_trip(struct xvl_client *c)
{
	struct xvl_blk *b = NULL;
	int rc = xvl_blk_open(c, NULL, &b);
	check(rc == 0, "blk open with NULL opts", rc ? xvl_client_errmsg(c) : NULL);
	if (rc)
		return;
	struct xvl_blk_info info;
	xvl_blk_get_info(b, &info);
	static char out[4096], in[4096];
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (char)(i * 7 + 3);
	rc = xvl_blk_write(b, 4096, out, sizeof(out));
	if (rc == 0)
		rc = xvl_blk_read(b, 4096, in, sizeof(in));
	check(rc == 0 && !memcmp(in, out, sizeof(in)) && info.capacity > 0,
	      "4 KiB written and read back through the installed library",
	      rc ? xvl_client_errmsg(c) : NULL);
	xvl_blk_close(b);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: abi_prog SOCK\n");
		return 2;
	}
	char err[256] = "";
	struct xvl_client *c = NULL;
	int rc = xvl_client_connect(&c, argv[1], NULL, err, sizeof(err));
	check(rc == 0 && xvl_client_num_devices(c) > 0, "connect with NULL opts", rc ? err : NULL);
	if (rc)
		return 1;
	round_trip(c);
	blk_opts(c);
	xvl_client_close(c);
	client_opts(argv[1]);
	return failed;
}
