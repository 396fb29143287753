/* SPDX-License-Identifier: MIT */
/* xvl blk: what the subcommands share (cmd_blk.c parses, blk_rw.c reads and writes). */
#ifndef XVL_BLK_CMD_H
#define XVL_BLK_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workload.h"
#include "xvloop/xvl.h"

struct blk_args {
	const char *connect;
	const char *device;
	const char *input;
	const char *output;
	uint16_t queues;
	uint16_t queue_size;
	bool poll;
	bool json;
	uint64_t spin_us;
	uint64_t window_size;
	uint64_t reconnect_ms;
	uint64_t offset;
	uint64_t length;
	bool have_offset;
	struct wl_opts wl;
};

/* Refuse a range past the end of the device (a message on stderr) before sending anything. */
bool blk_range_fits(const struct xvl_blk_info *in, uint64_t off, uint64_t len);
/* " (detail)" when the client library has more to say, else "". */
const char *blk_detail(struct xvl_client *c, char *buf, size_t size);

int blk_do_read(struct blk_args *a, struct xvl_client *c, struct xvl_blk *b);
int blk_do_write(struct blk_args *a, struct xvl_client *c, struct xvl_blk *b);

#endif
