/* SPDX-License-Identifier: MIT */
/*
 * nbd_probe URI IMAGE: drives an NBD server (nbdkit with the xvloop plugin)
 * through libnbd with what qemu-img and nbdcopy never send: requests beyond
 * the end (strict mode off, so libnbd does not refuse them itself),
 * unaligned writes and zeroes, FUA, fast zero, trim, flush, a 32 MiB read.
 * IMAGE is the file behind the device (the server's file backend): every
 * write is checked there, byte for byte, together with the bytes around it.
 * Prints PASS/FAIL lines; exit 1 on any FAIL.
 */
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

static void verdict(int ok, const char *what, const char *detail)
{
	printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", what, detail ? ": " : "", detail ? detail : "");
	failures += !ok;
}

static void image(int fd, void *buf, size_t n, off_t off)
{
	if (pread(fd, buf, n, off) != (ssize_t)n) {
		perror("pread image");
		exit(2);
	}
}

/* An error reply, with the errno the server sent. */
static void expect_error(int rc, struct nbd_handle *h, const char *what)
{
	char d[200];
	snprintf(d, sizeof(d), "%s", rc < 0 ? nbd_get_error() : "succeeded");
	verdict(rc < 0 && nbd_aio_is_ready(h), what, d);
}

/* Write n bytes of pattern at off (unaligned), check the image: the bytes and what surrounds them. */
static void unaligned_write(struct nbd_handle *h, int img, uint64_t off, size_t n)
{
	uint8_t before[8192], after[8192], pat[4096];
	uint64_t base = off & ~4095ull;
	for (size_t i = 0; i < n; i++)
		pat[i] = (uint8_t)(0xa5 ^ i ^ (off >> 3));
	image(img, before, sizeof(before), (off_t)base);
	int rc = nbd_pwrite(h, pat, n, off, 0);
	image(img, after, sizeof(after), (off_t)base);
	memcpy(before + (off - base), pat, n);
	char what[100];
	snprintf(what, sizeof(what), "unaligned write of %zu bytes at %llu", n, (unsigned long long)off);
	verdict(rc == 0 && !memcmp(before, after, sizeof(after)), what,
		rc ? nbd_get_error() : memcmp(before, after, sizeof(after)) ? "image differs" : NULL);
	uint8_t back[4096];
	rc = nbd_pread(h, back, n, off, 0);
	verdict(rc == 0 && !memcmp(back, pat, n), "unaligned read gives the same bytes back", NULL);
}

static void zero_range(struct nbd_handle *h, int img, uint64_t off, uint64_t n, uint32_t flags,
		       const char *what)
{
	uint8_t before[16384], after[16384];
	uint64_t base = off & ~4095ull;
	image(img, before, sizeof(before), (off_t)base);
	int rc = nbd_zero(h, n, off, flags);
	image(img, after, sizeof(after), (off_t)base);
	memset(before + (off - base), 0, n);
	verdict(rc == 0 && !memcmp(before, after, sizeof(after)), what,
		rc ? nbd_get_error() : memcmp(before, after, sizeof(after)) ? "image differs" : NULL);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: nbd_probe URI IMAGE\n");
		return 2;
	}
	int img = open(argv[2], O_RDONLY);
	struct nbd_handle *h = nbd_create();
	if (img < 0 || !h || nbd_connect_uri(h, argv[1]) < 0) {
		fprintf(stderr, "nbd_probe: %s\n", img < 0 ? strerror(errno) : nbd_get_error());
		return 2;
	}
	nbd_set_strict_mode(h, 0);
	int64_t size = nbd_get_size(h);
	static uint8_t buf[32 << 20];

	expect_error(nbd_pread(h, buf, 512, (uint64_t)size, 0), h, "read at the end is refused");
	expect_error(nbd_pread(h, buf, 1024, (uint64_t)size - 512, 0), h,
		     "read straddling the end is refused");
	expect_error(nbd_pread(h, buf, 4096, (uint64_t)size + (1ull << 40), 0), h,
		     "read a TiB beyond the end is refused");
	expect_error(nbd_pwrite(h, buf, 4096, (uint64_t)size - 2048, 0), h,
		     "write straddling the end is refused");

	unaligned_write(h, img, 1001, 3);
	unaligned_write(h, img, 4096 + 300, 1000);
	unaligned_write(h, img, 8192 - 5, 10);
	zero_range(h, img, 20000 + 700, 1500, 0, "unaligned zero of 1500 bytes");
	zero_range(h, img, 40960, 8192, 0, "aligned zero of 8 KiB");
	if (nbd_can_fast_zero(h) == 1)
		zero_range(h, img, 65536, 4096, LIBNBD_CMD_FLAG_FAST_ZERO, "fast zero of 4 KiB");

	memset(buf, 0x5c, 65536);
	int rc = nbd_pwrite(h, buf, 65536, 12 << 20, LIBNBD_CMD_FLAG_FUA);
	uint8_t chk[65536];
	image(img, chk, sizeof(chk), 12 << 20);
	verdict(rc == 0 && !memcmp(chk, buf, sizeof(chk)), "FUA write of 64 KiB lands in the image",
		rc ? nbd_get_error() : NULL);
	verdict(nbd_flush(h, 0) == 0, "flush", NULL);
	if (nbd_can_trim(h) == 1)
		verdict(nbd_trim(h, 1 << 20, 16 << 20, 0) == 0, "trim of 1 MiB", NULL);
	rc = nbd_pread(h, buf, sizeof(buf), 0, 0);
	uint8_t *ib = malloc(sizeof(buf));
	image(img, ib, sizeof(buf), 0);
	verdict(rc == 0 && !memcmp(ib, buf, sizeof(buf)), "one 32 MiB read equals the image",
		rc ? nbd_get_error() : NULL);
	free(ib);
	verdict(nbd_aio_is_ready(h), "the connection is still usable after all that", NULL);
	nbd_shutdown(h, 0);
	nbd_close(h);
	close(img);
	return failures ? 1 : 0;
}
