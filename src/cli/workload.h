/* SPDX-License-Identifier: MIT */
/*
 * Data-integrity workload: fills a block device with a pattern that names
 * each sector and the write generation that put it there, rewrites random
 * ranges, and reads everything back.  Every byte read is checked against
 * what the last acknowledged write to it must have left.
 */
#ifndef XVL_WORKLOAD_H
#define XVL_WORKLOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "xvloop/xvl.h"

struct wl_opts {
	uint64_t seed;
	uint64_t size;        /* bytes of the device to use (0 = all) */
	uint32_t min_len;     /* random request sizes, bytes */
	uint32_t max_len;
	uint32_t fill_len;    /* request size of the sequential passes */
	uint64_t random_ops;  /* random requests (half writes, half reads) */
	unsigned qd;          /* requests in flight per queue */
	bool copy;            /* application buffers (copied through the window) */
	bool fill;            /* sequential write pass first */
	bool final_check;     /* sequential read pass last */
	bool quiet;
	uint64_t time_limit_ns; /* stop the random phase early (0 = none) */
};

struct wl_phase {
	const char *name;
	uint64_t ops;
	uint64_t bytes;
	uint64_t ns;
	double lat_p50_us;
	double lat_p99_us;
};

struct wl_result {
	struct wl_phase phase[3];
	unsigned n_phases;
	uint64_t bytes_verified;
	uint64_t mismatches;
	uint64_t errors;          /* requests completed with an error */
	uint64_t duplicates;      /* completions for a request that was not in flight */
	char first_problem[160];
};

/* Run the workload on every open queue of b.  Returns 0 when all data verified. */
int wl_run(struct xvl_client *c, struct xvl_blk *b, const struct wl_opts *o, struct wl_result *r);
void wl_print(FILE *f, const struct wl_result *r);

#endif
