/* SPDX-License-Identifier: MIT */
/*
 * For tests/e2e/hostile_bridge.sh (built by it): one client connection, one
 * window, two devices.  Writes 64 KiB of MAGIC through device A, reads 4 KiB
 * from device B (bridged), then waits for a line on stdin before closing, so
 * that B's backend can be asked what it sees of A's data in the window.
 *
 *   two_dev_client SOCK A B MAGIC
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xvloop/xvl.h"

int main(int argc, char **argv)
{
	struct xvl_client *c;
	struct xvl_blk *a, *b;
	static char buf[64 << 10];
	char line[16];
	char err[256] = "";

	if (argc != 5)
		return fprintf(stderr, "usage: two_dev_client SOCK A B MAGIC\n"), 2;
	if (xvl_client_connect(&c, argv[1], NULL, err, sizeof(err)) < 0)
		return fprintf(stderr, "connect: %s\n", err), 1;
	struct xvl_blk_opts oa = {XVL_BLK_OPTS_INIT, .device = xvl_client_find(c, argv[2])};
	struct xvl_blk_opts ob = {XVL_BLK_OPTS_INIT, .device = xvl_client_find(c, argv[3])};
	if (oa.device < 0 || ob.device < 0 || xvl_blk_open(c, &oa, &a) < 0 ||
	    xvl_blk_open(c, &ob, &b) < 0)
		return fprintf(stderr, "open: %s\n", xvl_client_errmsg(c)), 1;
	for (size_t i = 0; i + strlen(argv[4]) <= sizeof(buf); i += strlen(argv[4]))
		memcpy(buf + i, argv[4], strlen(argv[4]));
	if (xvl_blk_write(a, 0, buf, sizeof(buf)) < 0 || xvl_blk_read(a, 0, buf, sizeof(buf)) < 0 ||
	    xvl_blk_read(b, 0, buf, 4096) < 0)
		return fprintf(stderr, "I/O: %s\n", xvl_client_errmsg(c)), 1;
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	xvl_blk_close(b);
	xvl_blk_close(a);
	xvl_client_close(c);
	return 0;
}
