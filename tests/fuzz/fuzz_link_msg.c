/* SPDX-License-Identifier: MIT */
/*
 * Link message decoding, as either side sees a hostile peer's bytes.
 * Whatever decodes must encode again to the same bytes and decode to the
 * same message (no field is lost or invented on the way).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xvl_msg m, again;
	uint8_t buf[XVL_MSG_MAX_SIZE];

	if (xvl_msg_decode(data, size, &m) != 0)
		return 0;
	int n = xvl_msg_encode(&m, buf, sizeof(buf));
	if (n < 0)
		abort();
	if (xvl_msg_decode(buf, (size_t)n, &again) != 0)
		abort();
	uint8_t buf2[XVL_MSG_MAX_SIZE];
	if (xvl_msg_encode(&again, buf2, sizeof(buf2)) != n || memcmp(buf, buf2, (size_t)n))
		abort();
	return 0;
}
