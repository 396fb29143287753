/* SPDX-License-Identifier: MIT */
/*
 * vhost-user reply header check, fed a hostile backend's bytes.
 * Input: a 12-byte reply header, then optionally u32 request and u32
 * expected payload size (without them the header's own request and size
 * are expected, which exercises the accepting path).
 * Whatever is accepted must really be a version-1 reply to that request of
 * exactly the expected size; whatever is refused must say why.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vhost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_one(const uint8_t *hdr, uint32_t request, uint32_t expect)
{
	struct xvl_errbuf eb;
	uint32_t h[3];

	memcpy(h, hdr, sizeof(h));
	memset(&eb, 0, sizeof(eb));
	int rc = xvl_vhost_check_reply_hdr(hdr, request, expect, &eb);
	if (rc != xvl_vhost_check_reply_hdr(hdr, request, expect, NULL))
		abort();
	if (rc >= 0) {
		if ((uint32_t)rc != expect || h[0] != request || h[2] != expect ||
		    (h[1] & 0x3) != 1 || !(h[1] & 0x4))
			abort();
		return;
	}
	if (rc != -EPROTO && rc != -EMSGSIZE)
		abort();
	if (eb.msg[0] == '\0' || memchr(eb.msg, '\0', sizeof(eb.msg)) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t h[3], request, expect;

	if (size < 12)
		return 0;
	memcpy(h, data, sizeof(h));
	request = h[0];
	expect = h[2];
	if (size >= 20) {
		memcpy(&request, data + 12, 4);
		memcpy(&expect, data + 16, 4);
	}
	check_one(data, request, expect);
	return 0;
}
