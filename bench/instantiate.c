/* SPDX-License-Identifier: MIT */
/*
 * bench/instantiate: config-to-first-completed-I/O time of a partitioner
 * instance (one device compartment with a RAM disk, one driver compartment
 * that reads 4 KiB and exits), cold and from the pool of prepared shells.
 *
 *   cold: parse + check the config, create the instance with no pool, start
 *         the device side (clone into fresh namespaces, sandbox, exec the
 *         server, wait until it listens), start the driver side the same way,
 *         until the driver has completed its read and exited.
 *   pool: the instance's shells were prepared beforehand (the LightVM
 *         prepare step); timed from parsing the config to the driver's exit,
 *         so each compartment costs only the execute step.
 *
 * Median (and min, max) of N runs each.  Usage: instantiate [--xvl PATH] [--runs N]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "part.h"

struct bench {
	const char *xvl;
	char dir[128];
	char config[2048];
	unsigned runs;
};

static void make_config(struct bench *b, unsigned pool)
{
	snprintf(b->config, sizeof(b->config),
		 "name = \"bench\"; state_dir = \"%s\"; pool = %u;\n"
		 "windows = ( { name = \"w\"; size = \"4M\"; } );\n"
		 "devices = ( { name = \"r\"; backend = \"ram\"; size = \"16M\"; } );\n"
		 "compartments = (\n"
		 "  { name = \"dev\"; role = \"device\"; devices = [\"r\"]; memory = \"128M\"; },\n"
		 "  { name = \"app\"; role = \"driver\"; window = \"w\"; memory = \"128M\";\n"
		 "    program = [\"%s\", \"blk\", \"read\", \"--connect\", \"{link}\", \"--offset\", \"0\",\n"
		 "               \"--length\", \"4096\", \"--output\", \"/dev/null\"]; } );\n",
		 b->dir, pool, b->xvl);
}

static int one_run(struct bench *b, bool pooled, double *ms)
{
	struct xp_config *c = calloc(1, sizeof(*c));
	struct xp_run_opts o = {.quiet = getenv("XVL_BENCH_LOG") == NULL, .log_fd = 2, .ready_fd = -1, .xvl_exe = b->xvl};
	struct xvl_errbuf eb = {{0}};
	struct xp_inst *p = NULL;
	uint64_t t0 = xvl_os_now_ns();
	int rc = c ? 0 : -ENOMEM;
	if (pooled) {
		/* prepare: an instance whose pool is warm before the config arrives */
		make_config(b, 2);
		rc = xp_config_load(c, "bench", b->config, false, &eb);
		if (rc == 0)
			rc = xp_inst_create(&p, c, &o, &eb);
		usleep(50000); /* let the shells finish preparing */
		t0 = xvl_os_now_ns();
		if (rc == 0)
			rc = xp_config_load(c, "bench", b->config, false, &eb);
	} else {
		make_config(b, 0);
		rc = xp_config_load(c, "bench", b->config, false, &eb);
		if (rc == 0)
			rc = xp_inst_create(&p, c, &o, &eb);
	}
	if (rc == 0)
		rc = xp_inst_start(p, &eb);
	if (rc == 0) {
		rc = xp_inst_wait_driver(p, 1, 10000);
		if (rc != 0)
			snprintf(eb.msg, sizeof(eb.msg), "driver: wait status %d", rc);
	}
	*ms = (double)(xvl_os_now_ns() - t0) / 1e6;
	if (rc != 0)
		fprintf(stderr, "instantiate: %s\n", eb.msg);
	xp_inst_destroy(p);
	free(c);
	return rc;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int series(struct bench *b, bool pooled, double *med, double *lo, double *hi)
{
	double *t = calloc(b->runs, sizeof(double));
	if (!t)
		return -ENOMEM;
	for (unsigned i = 0; i < b->runs; i++)
		if (one_run(b, pooled, &t[i]) != 0) {
			free(t);
			return -EIO;
		}
	qsort(t, b->runs, sizeof(double), cmp);
	*med = b->runs % 2 ? t[b->runs / 2] : (t[b->runs / 2 - 1] + t[b->runs / 2]) / 2;
	*lo = t[0];
	*hi = t[b->runs - 1];
	free(t);
	return 0;
}

int main(int argc, char **argv)
{
	struct bench b = {.xvl = "build/src/cli/xvl", .runs = 20};
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--xvl"))
			b.xvl = argv[i + 1];
		else if (!strcmp(argv[i], "--runs"))
			b.runs = (unsigned)atoi(argv[i + 1]);
	}
	char *abs = realpath(b.xvl, NULL);
	if (!abs || !b.runs) {
		fprintf(stderr, "instantiate: no xvl binary at %s (--xvl PATH), or --runs 0\n", b.xvl);
		return 2;
	}
	b.xvl = abs;
	snprintf(b.dir, sizeof(b.dir), "/tmp/xvl-instantiate.%d", (int)getpid());
	double cm, cl, ch, pm, pl, ph;
	if (series(&b, false, &cm, &cl, &ch) < 0 || series(&b, true, &pm, &pl, &ph) < 0)
		return 1;
	printf("config to first completed I/O (1 device + 1 driver compartment), %u runs each:\n",
	       b.runs);
	printf("  cold        median %7.2f ms  (min %.2f, max %.2f)\n", cm, cl, ch);
	printf("  from pool   median %7.2f ms  (min %.2f, max %.2f)\n", pm, pl, ph);
	printf("  target from pool <= 20 ms: %s\n", pm <= 20.0 ? "met" : "NOT met");
	free(abs);
	return 0;
}
