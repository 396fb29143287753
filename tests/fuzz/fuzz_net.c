/* SPDX-License-Identifier: MIT */
/*
 * virtio-net input from a hostile peer: the first byte picks what the rest
 * is — a frame (12-byte header, then the frame; checked under offload sets
 * chosen by the second byte) or a control command (parsed under every
 * class).  Accepted results must be self-consistent: a checked checksum
 * field lies inside the frame, a MAC table's entries inside the buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void frame(const uint8_t *d, size_t n)
{
	struct xvl_net_hdr h;
	if (n < 1 + XVL_NET_HDR_SIZE)
		return;
	uint8_t sel = d[0];
	xvl_net_hdr_decode(d + 1, &h);
	struct xvl_net_accept a = {
		.max_frame = 1518, .max_gso_frame = 65553, .csum = sel & 1, .tso4 = sel & 2,
		.tso6 = sel & 4, .ecn = sel & 8, .ufo = sel & 16, .check_buffers = sel & 32,
		.max_buffers = (uint16_t)(1 + (sel >> 6)),
	};
	uint32_t len = (uint32_t)(n - 1 - XVL_NET_HDR_SIZE);
	if (xvl_net_frame_check(&h, len, &a) != XVL_NET_FRAME_OK)
		return;
	if ((h.flags & XVL_NET_HDR_F_NEEDS_CSUM) &&
	    (!a.csum || (uint32_t)h.csum_start + h.csum_offset + 2 > len))
		abort();
	if (h.gso_type != XVL_NET_HDR_GSO_NONE && (h.gso_size == 0 || h.gso_size > len))
		abort();
	if (len < XVL_ETH_HLEN)
		abort();
}

static void ctrl(const uint8_t *d, size_t n)
{
	static const struct xvl_net_ctrl_limits l = {.max_pairs = 8, .max_mac_table = 64, .rx = 1,
						     .mac_addr = 1, .vlan = 1, .mq = 1,
						     .guest_offloads = 1, .announce = 1};
	struct xvl_net_ctrl c;
	uint8_t *copy = malloc(n ? n : 1);
	memcpy(copy, d, n);
	if (xvl_net_ctrl_parse(copy, (uint32_t)n, &l, &c) == 0 && c.cls == XVL_NET_CTRL_MAC &&
	    c.cmd == XVL_NET_CTRL_MAC_TABLE_SET) {
		const uint8_t *end = copy + n;
		if (c.u.table.uni + 6ull * c.u.table.n_uni > end ||
		    c.u.table.multi + 6ull * c.u.table.n_multi > end ||
		    c.u.table.n_uni + c.u.table.n_multi > l.max_mac_table)
			abort();
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		frame(data + 1, size - 1);
	else
		ctrl(data + 1, size - 1);
	return 0;
}
