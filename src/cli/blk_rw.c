/* SPDX-License-Identifier: MIT */
/*
 * xvl blk read | write: bytes between a file (or a pattern) and the device.
 * Nothing is sent that could damage bytes the user did not name: a write's
 * extent is decided before the first request (plan_write).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blk_cmd.h"
#include "cli.h"

/* Write all of buf to fd (short writes continued); 0 or a negative errno. */
static int write_all(int fd, const uint8_t *buf, size_t n)
{
	while (n) {
		ssize_t w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

int blk_do_read(struct blk_args *a, struct xvl_client *c, struct xvl_blk *b)
{
	if (!a->have_offset || !a->length)
		return cli_fail(2, "blk", "read needs --offset and --length");
	struct xvl_blk_info in;
	xvl_blk_get_info(b, &in);
	if (!blk_range_fits(&in, a->offset, a->length))
		return 1;
	const char *out = a->output ? a->output : "standard output";
	int fd = a->output ? open(a->output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : 1;
	if (fd < 0)
		return cli_fail(1, "blk", "cannot create %s: %s", a->output, strerror(errno));
	uint8_t *buf = xvl_buf_alloc(c, in.max_transfer);
	int rc = buf ? 0 : -ENOMEM, wrc = 0;
	for (uint64_t done = 0; rc == 0 && wrc == 0 && done < a->length;) {
		uint32_t n = (uint32_t)(a->length - done < in.max_transfer ? a->length - done
									     : in.max_transfer);
		rc = xvl_blk_read(b, a->offset + done, buf, n);
		if (rc == 0)
			wrc = write_all(fd, buf, n);
		done += n;
	}
	xvl_buf_free(c, buf);
	if (a->output && close(fd) < 0 && !wrc)
		wrc = -errno;
	char d[300];
	if (rc < 0)
		return cli_fail(1, "blk", "read failed: %s%s", strerror(-rc), blk_detail(c, d, sizeof(d)));
	if (wrc < 0)
		return cli_fail(1, "blk", "cannot write to %s: %s", out, strerror(-wrc));
	return 0;
}

/* Up to n bytes of input (fd >= 0; fewer only at its end), or of the SEED pattern. */
static int fill_from_input(int fd, uint8_t *buf, uint32_t n, uint64_t seed, uint64_t at)
{
	if (fd < 0) {
		for (uint32_t i = 0; i < n; i += 8) {
			uint64_t v = (at + i) * 0x9e3779b97f4a7c15ull ^ seed;
			memcpy(buf + i, &v, 8);
		}
		return (int)n;
	}
	uint32_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (uint32_t)r;
	}
	return (int)got;
}

/*
 * What a write will do, decided before anything is sent: a regular input
 * file must be a whole number of sectors (and hold --length bytes if given),
 * so nothing after it on the device is overwritten; a stream's size is only
 * known at its end, so its last partial sector is read-modify-written.
 */
static int plan_write(struct blk_args *a, int fd, uint64_t *total)
{
	struct stat st;
	*total = a->length;
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0)
		return cli_fail(1, "blk", "cannot stat %s: %s", a->input, strerror(errno));
	if (S_ISDIR(st.st_mode))
		return cli_fail(1, "blk", "--input %s is a directory", a->input);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return 0;
	uint64_t size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) && lseek(fd, 0, SEEK_END) >= 0) {
		size = (uint64_t)lseek(fd, 0, SEEK_CUR);
		lseek(fd, 0, SEEK_SET);
	}
	if (!size)
		return cli_fail(1, "blk", "--input %s is empty: nothing to write", a->input);
	if (a->length && size < a->length)
		return cli_fail(1, "blk", "--input %s has only %llu bytes, --length asks for %llu",
				a->input, (unsigned long long)size, (unsigned long long)a->length);
	if (!a->length && size % 512)
		return cli_fail(1, "blk",
				"--input %s is %llu bytes, not a whole number of 512-byte sectors "
				"(writing it would overwrite %llu device bytes after it): pad it or "
				"give --length", a->input, (unsigned long long)size,
				(unsigned long long)(512 - size % 512));
	if (!a->length)
		*total = size;
	return 0;
}

/* Complete a partial last sector of n bytes at buf with the device's own bytes. */
static int merge_tail(struct xvl_client *c, struct xvl_blk *b, uint64_t at, uint8_t *buf,
		      uint32_t n)
{
	uint32_t head = n & ~511u, keep = 512 - (n - head);
	uint8_t *sec = xvl_buf_alloc(c, 512);
	if (!sec)
		return -ENOMEM;
	int rc = xvl_blk_read(b, at + head, sec, 512);
	if (rc == 0) {
		memcpy(buf + n, sec + (n - head), keep);
		fprintf(stderr, "xvl blk: the input ended %u bytes into a sector: its other %u bytes "
			"were read from the device and written back unchanged (read-modify-write)\n",
			n - head, keep);
	}
	xvl_buf_free(c, sec);
	return rc;
}

static int write_loop(struct blk_args *a, struct xvl_client *c, struct xvl_blk *b, int fd,
		      const struct xvl_blk_info *in, uint64_t *done)
{
	uint8_t *buf = xvl_buf_alloc(c, in->max_transfer);
	int rc = buf ? 0 : -ENOMEM;
	while (rc == 0 && (!a->length || *done < a->length)) {
		uint64_t want = a->length ? a->length - *done : in->max_transfer;
		int n = fill_from_input(fd, buf, (uint32_t)(want < in->max_transfer ? want : in->max_transfer),
					a->wl.seed, *done);
		if (n <= 0) {
			rc = n;
			break;
		}
		uint32_t len = ((uint32_t)n + 511) & ~511u;
		if (!blk_range_fits(in, a->offset + *done, len)) {
			rc = 1;
			break;
		}
		if (len != (uint32_t)n)
			rc = merge_tail(c, b, a->offset + *done, buf, (uint32_t)n);
		if (rc == 0)
			rc = xvl_blk_write(b, a->offset + *done, buf, len);
		if (rc == 0)
			*done += len;
		if ((uint32_t)n < len)
			break; /* the stream ended */
	}
	xvl_buf_free(c, buf);
	return rc;
}

int blk_do_write(struct blk_args *a, struct xvl_client *c, struct xvl_blk *b)
{
	if (!a->have_offset || (!a->input && !a->length))
		return cli_fail(2, "blk", "write needs --offset and --input FILE or --length");
	int fd = -1;
	if (a->input) {
		fd = open(a->input, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return cli_fail(1, "blk", "cannot open %s: %s", a->input, strerror(errno));
	}
	struct xvl_blk_info in;
	xvl_blk_get_info(b, &in);
	uint64_t total = 0, done = 0;
	int rc = plan_write(a, fd, &total);
	if (rc == 0 && !blk_range_fits(&in, a->offset, total))
		rc = 1;
	if (rc == 0)
		rc = write_loop(a, c, b, fd, &in, &done);
	if (fd >= 0)
		close(fd);
	if (rc > 0)
		return rc;
	char d[300];
	if (rc < 0)
		return cli_fail(1, "blk", "write failed at byte %llu: %s%s",
				(unsigned long long)(a->offset + done), strerror(-rc), blk_detail(c, d, sizeof(d)));
	if (!done)
		return cli_fail(1, "blk", "--input %s is empty: nothing written", a->input);
	if (a->length && done < a->length)
		return cli_fail(1, "blk", "--input %s ended after %llu bytes (written), --length asks "
				"for %llu", a->input, (unsigned long long)done,
				(unsigned long long)a->length);
	return 0;
}
