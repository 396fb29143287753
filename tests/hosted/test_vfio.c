/* SPDX-License-Identifier: MIT */
/*
 * The VFIO module's parsing and the errors that name the missing set-up
 * step, on this host (no IOMMU, nothing bound to vfio-pci).  The device
 * path itself runs in a guest: tests/e2e/guest_vfio.sh.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "vfio.h"

static void test_bdf(void)
{
	struct xvl_errbuf eb = {{0}};
	char out[16];
	CHECK(xvl_vfio_parse_bdf("0000:00:01.0", 12, out, &eb) == 0 && !strcmp(out, "0000:00:01.0"),
	      "full address kept");
	CHECK(xvl_vfio_parse_bdf("00:1f.2", 7, out, &eb) == 0 && !strcmp(out, "0000:00:1f.2"),
	      "domain 0 supplied: %s", out);
	CHECK(xvl_vfio_parse_bdf("0000:00:01.0,peer=3", 12, out, &eb) == 0, "only len characters read");
	const char *bad[] = {"", "00:20.0", "00:01.8", "1:2:3:4.0", "00:01.0x", "zz:01.0", "10000:00:01.0", " 00:01.0", "0x0:01.0", "00:01.", ":00:01.0"};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(xvl_vfio_parse_bdf(bad[i], strlen(bad[i]), out, &eb) == -EINVAL &&
			      strstr(eb.msg, "PCI address"),
		      "'%s' refused: %s", bad[i], eb.msg);
}

static void test_open_errors(void)
{
	struct xvl_errbuf eb = {{0}};
	struct xvl_os_window w;
	struct xvl_doorbell db;
	CHECK(xvl_vfio_ivshmem_open("00:01.0,vectors=2", &w, &db, NULL, &eb) == -EINVAL &&
		      strstr(eb.msg, "unknown option"),
	      "unknown option refused: %s", eb.msg);
	CHECK(xvl_vfio_ivshmem_open("00:01.0,peer=70000", &w, &db, NULL, &eb) == -EINVAL &&
		      strstr(eb.msg, "0..65535"),
	      "peer id out of range: %s", eb.msg);
	CHECK(xvl_vfio_ivshmem_open("00:01.0,peer=", &w, &db, NULL, &eb) == -EINVAL, "empty peer id: %s",
	      eb.msg);
	CHECK(xvl_vfio_ivshmem_open("ff:1f.7", &w, &db, NULL, &eb) == -ENODEV &&
		      strstr(eb.msg, "no PCI device 0000:ff:1f.7"),
	      "a device that is not there: %s", eb.msg);
	CHECK(db.kind == XVL_DB_NONE && db.vfio == NULL && w.mem.base == NULL, "nothing left behind");

	/* A real device of this machine: it has no IOMMU group here, or is not bound to vfio-pci. */
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e = NULL;
	while (d && (e = readdir(d)) && e->d_name[0] == '.')
		;
	if (!e) {
		printf("ok %d - # SKIP no PCI device on this machine\n", ++tap_count);
	} else {
		char spec[300];
		snprintf(spec, sizeof(spec), "%s,peer=0", e->d_name);
		int rc = xvl_vfio_ivshmem_open(spec, &w, &db, NULL, &eb);
		CHECK((rc == -ENODEV && strstr(eb.msg, "intel_iommu=on")) ||
			      (rc == -EBUSY && strstr(eb.msg, "driver_override")),
		      "%s: the missing step is named: %s", e->d_name, eb.msg);
	}
	if (d)
		closedir(d);
}

int main(void)
{
	test_bdf();
	test_open_errors();
	return tap_done();
}
