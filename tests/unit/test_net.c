/* SPDX-License-Identifier: MIT */
/* virtio-net header checks, control-command parsing and the switch's forwarding table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "l2sw.h"
#include "net.h"
#include "tap.h"

static const struct xvl_net_accept full = {
	.max_frame = 1518, .max_gso_frame = 65553, .csum = true, .tso4 = true, .tso6 = true,
	.ecn = false, .ufo = false, .max_buffers = 1,
};

static enum xvl_net_verdict chk(struct xvl_net_hdr h, uint32_t len, const struct xvl_net_accept *a)
{
	uint8_t raw[XVL_NET_HDR_SIZE];
	struct xvl_net_hdr back;

	/* every check goes through the wire form, as a receiver sees it */
	xvl_net_hdr_encode(&h, raw);
	xvl_net_hdr_decode(raw, &back);
	return xvl_net_frame_check(&back, len, a);
}

static void test_frames(void)
{
	struct xvl_net_accept none = {.max_frame = 1518, .max_gso_frame = 1518, .max_buffers = 1};
	struct xvl_net_accept rx = full;
	struct xvl_net_hdr h = {0};
	uint8_t raw[XVL_NET_HDR_SIZE];

	h = (struct xvl_net_hdr){.flags = 1, .gso_type = 4, .hdr_len = 0x1234, .gso_size = 0xabcd,
				 .csum_start = 0x0102, .csum_offset = 0x0304, .num_buffers = 0x0506};
	xvl_net_hdr_encode(&h, raw);
	CHECK(raw[0] == 1 && raw[1] == 4 && raw[2] == 0x34 && raw[3] == 0x12 && raw[5] == 0xab &&
		      raw[10] == 0x06 && raw[11] == 0x05,
	      "header encodes little-endian in the virtio 1.x layout");

	h = (struct xvl_net_hdr){0};
	CHECK(chk(h, 60, &none) == XVL_NET_FRAME_OK, "plain 60-byte frame accepted");
	CHECK(chk(h, 13, &none) == XVL_NET_FRAME_SHORT, "13 bytes: shorter than an Ethernet header");
	CHECK(chk(h, 1518, &none) == XVL_NET_FRAME_OK, "1518 bytes accepted at max_frame 1518");
	CHECK(chk(h, 1519, &none) == XVL_NET_FRAME_LONG, "1519 bytes refused");
	h.flags = 0x80;
	CHECK(chk(h, 60, &full) == XVL_NET_FRAME_FLAGS, "unknown flag bit refused");

	h = (struct xvl_net_hdr){.flags = XVL_NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = 16};
	CHECK(chk(h, 60, &none) == XVL_NET_FRAME_CSUM, "NEEDS_CSUM without CSUM negotiated refused");
	CHECK(chk(h, 60, &full) == XVL_NET_FRAME_OK, "TCP checksum offload inside the frame accepted");
	CHECK(chk(h, 51, &full) == XVL_NET_FRAME_CSUM, "checksum field ending past the frame refused");
	CHECK(chk(h, 52, &full) == XVL_NET_FRAME_OK, "checksum field ending at the frame's end accepted");
	h.csum_start = 0xffff;
	h.csum_offset = 0xffff;
	CHECK(chk(h, 1500, &full) == XVL_NET_FRAME_CSUM, "csum_start+offset overflow refused");

	h = (struct xvl_net_hdr){.flags = XVL_NET_HDR_F_NEEDS_CSUM, .gso_type = XVL_NET_HDR_GSO_TCPV4,
				 .hdr_len = 54, .gso_size = 1448, .csum_start = 34, .csum_offset = 16};
	CHECK(chk(h, 30000, &full) == XVL_NET_FRAME_OK, "TSO4 super-frame accepted with HOST_TSO4");
	CHECK(chk(h, 30000, &none) == XVL_NET_FRAME_LONG, "TSO frame beyond max_frame without GSO refused");
	none.max_gso_frame = 65553;
	CHECK(chk(h, 30000, &none) == XVL_NET_FRAME_CSUM, "TSO4 without offloads: refused");
	rx.tso4 = false;
	CHECK(chk(h, 30000, &rx) == XVL_NET_FRAME_GSO, "TSO4 not negotiated refused");
	h.gso_type = XVL_NET_HDR_GSO_TCPV6;
	CHECK(chk(h, 30000, &full) == XVL_NET_FRAME_OK, "TSO6 accepted with HOST_TSO6");
	h.gso_type = XVL_NET_HDR_GSO_UDP;
	CHECK(chk(h, 30000, &full) == XVL_NET_FRAME_GSO, "UFO not negotiated refused");
	h.gso_type = XVL_NET_HDR_GSO_TCPV4 | XVL_NET_HDR_GSO_ECN;
	CHECK(chk(h, 30000, &full) == XVL_NET_FRAME_GSO, "ECN bit without ECN negotiated refused");
	h.gso_type = 2;
	CHECK(chk(h, 30000, &full) == XVL_NET_FRAME_GSO, "unknown GSO type refused");
	h.gso_type = XVL_NET_HDR_GSO_TCPV4;
	h.flags = 0;
	CHECK(chk(h, 30000, &full) == XVL_NET_FRAME_GSO, "GSO without NEEDS_CSUM refused");
	h.flags = XVL_NET_HDR_F_NEEDS_CSUM;
	h.gso_size = 0;
	CHECK(chk(h, 30000, &full) == XVL_NET_FRAME_GSO_SIZE, "gso_size 0 refused");
	h.gso_size = 30001;
	CHECK(chk(h, 30000, &full) == XVL_NET_FRAME_GSO_SIZE, "gso_size beyond the frame refused");
	h.gso_size = 1448;
	h.hdr_len = 30001;
	CHECK(chk(h, 30000, &full) == XVL_NET_FRAME_HDR_LEN, "hdr_len beyond the frame refused");

	rx = full;
	rx.check_buffers = true;
	rx.max_buffers = 4;
	h = (struct xvl_net_hdr){.num_buffers = 0};
	CHECK(chk(h, 60, &rx) == XVL_NET_FRAME_NUM_BUFFERS, "num_buffers 0 refused on receive");
	h.num_buffers = 5;
	CHECK(chk(h, 60, &rx) == XVL_NET_FRAME_NUM_BUFFERS, "num_buffers beyond buffers offered refused");
	h.num_buffers = 4;
	CHECK(chk(h, 60, &rx) == XVL_NET_FRAME_OK, "num_buffers within the buffers offered accepted");
	CHECK(!strcmp(xvl_net_verdict_name(XVL_NET_FRAME_CSUM),
		      "checksum offload not negotiated or outside the frame") &&
		      !strcmp(xvl_net_verdict_name(XVL_NET_FRAME_VERDICTS), "?"),
	      "verdicts have names; out of range is ?");
}

static int parse(const uint8_t *b, uint32_t n, struct xvl_net_ctrl *c)
{
	static const struct xvl_net_ctrl_limits l = {.max_pairs = 4, .max_mac_table = 8, .rx = true,
						     .mac_addr = true, .vlan = true, .mq = true,
						     .guest_offloads = true, .announce = true};
	static uint8_t *copy; /* exactly n bytes, ASan sees any read past them; kept until the next call */
	free(copy);
	copy = malloc(n ? n : 1);
	memcpy(copy, b, n);
	int rc = xvl_net_ctrl_parse(copy, n, &l, c);
	if (c->cls == XVL_NET_CTRL_MAC && c->cmd == XVL_NET_CTRL_MAC_TABLE_SET && rc == 0) {
		/* the parser's table pointers must stay inside the buffer */
		volatile uint8_t sink = 0;
		for (uint32_t i = 0; i < c->u.table.n_uni * 6; i++)
			sink ^= c->u.table.uni[i];
		for (uint32_t i = 0; i < c->u.table.n_multi * 6; i++)
			sink ^= c->u.table.multi[i];
		(void)sink;
	}
	return rc;
}

static void test_ctrl(void)
{
	struct xvl_net_ctrl c;
	const uint8_t promisc[] = {0, 0, 1}, bad_on[] = {0, 0, 2}, rx_long[] = {0, 0, 1, 0};
	const uint8_t rx_unknown[] = {0, 9, 1};
	const uint8_t pairs3[] = {4, 0, 3, 0}, pairs0[] = {4, 0, 0, 0}, pairs5[] = {4, 0, 5, 0};
	const uint8_t addr[] = {1, 1, 0x52, 0x54, 0, 1, 2, 3}, maddr[] = {1, 1, 1, 0, 0, 0, 0, 1};
	const uint8_t vlan_ok[] = {2, 0, 0xff, 0x0f}, vlan_bad[] = {2, 0, 0x00, 0x10};
	const uint8_t off[] = {5, 0, 1, 2, 3, 4, 5, 6, 7, 8}, ann[] = {3, 0}, unk[] = {9, 0};
	/* TABLE_SET: 1 unicast, 2 multicast */
	const uint8_t tbl[] = {1, 0, 1, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0,
			       1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3};
	const uint8_t tbl_lie[] = {1, 0, 0xff, 0xff, 0xff, 0x0f, 2, 2, 2, 2, 2, 2};
	const uint8_t tbl_trail[] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
	uint8_t tbl_big[2 + 8 + 9 * 6] = {1, 0, 9};

	CHECK(parse(promisc, 3, &c) == 0 && c.cls == 0 && c.cmd == 0 && c.u.on == 1, "RX PROMISC on");
	CHECK(parse(bad_on, 3, &c) == -EINVAL, "RX value 2 refused");
	CHECK(parse(rx_long, 4, &c) == -EINVAL, "RX command with 2 data bytes refused");
	CHECK(parse(rx_unknown, 3, &c) == -EOPNOTSUPP, "unknown RX command unsupported");
	CHECK(parse(pairs3, 4, &c) == 0 && c.u.pairs == 3, "MQ VQ_PAIRS_SET 3 of 4");
	CHECK(parse(pairs0, 4, &c) == -EINVAL, "MQ 0 pairs refused");
	CHECK(parse(pairs5, 4, &c) == -EINVAL, "MQ beyond max_virtqueue_pairs refused");
	CHECK(parse(addr, 8, &c) == 0 && c.u.mac[0] == 0x52 && c.u.mac[5] == 3, "MAC ADDR_SET");
	CHECK(parse(maddr, 8, &c) == -EINVAL, "multicast MAC address refused as station address");
	CHECK(parse(addr, 7, &c) == -EINVAL, "MAC ADDR_SET of 5 bytes refused");
	CHECK(parse(vlan_ok, 4, &c) == 0 && c.u.vid == 4095, "VLAN ADD 4095");
	CHECK(parse(vlan_bad, 4, &c) == -EINVAL, "VLAN id 4096 refused");
	CHECK(parse(off, 10, &c) == 0 && c.u.offloads == 0x0807060504030201ull, "GUEST_OFFLOADS SET le64");
	CHECK(parse(off, 9, &c) == -EINVAL, "GUEST_OFFLOADS with 7 bytes refused");
	CHECK(parse(ann, 2, &c) == 0, "ANNOUNCE ACK");
	CHECK(parse(unk, 2, &c) == -EOPNOTSUPP, "unknown class unsupported");
	CHECK(parse(promisc, 1, &c) == -EINVAL && parse(promisc, 0, &c) == -EINVAL,
	      "commands shorter than class+command refused");
	CHECK(parse(tbl, sizeof(tbl), &c) == 0 && c.u.table.n_uni == 1 && c.u.table.n_multi == 2 &&
		      c.u.table.uni[0] == 2 && c.u.table.multi[6] == 1 && c.u.table.multi[7] == 3,
	      "MAC TABLE_SET: 1 unicast, 2 multicast");
	CHECK(parse(tbl_lie, sizeof(tbl_lie), &c) == -EINVAL, "TABLE_SET with a lying count refused");
	CHECK(parse(tbl_trail, sizeof(tbl_trail), &c) == -EINVAL, "TABLE_SET with trailing bytes refused");
	tbl_big[2 + 4 + 9 * 6] = 0;
	CHECK(parse(tbl_big, sizeof(tbl_big), &c) == -EINVAL, "TABLE_SET over the device's table size refused");

	struct xvl_net_ctrl_limits nothing = {.max_pairs = 1};
	CHECK(xvl_net_ctrl_parse(promisc, 3, &nothing, &c) == -EOPNOTSUPP &&
		      xvl_net_ctrl_parse(pairs3, 4, &nothing, &c) == -EOPNOTSUPP &&
		      xvl_net_ctrl_parse(addr, 8, &nothing, &c) == -EOPNOTSUPP,
	      "classes not negotiated are unsupported");

	struct xvl_net_rxmode m;
	xvl_net_rxmode_reset(&m);
	CHECK(m.promisc && !m.allmulti && !m.alluni && !m.nomulti && !m.nouni && !m.nobcast,
	      "rx mode starts promiscuous, nothing else set");
	const uint8_t nobcast_on[] = {0, 5, 1}, promisc_off[] = {0, 0, 0};
	CHECK(parse(nobcast_on, 3, &c) == 0 && xvl_net_rxmode_apply(&m, &c) == XVL_NET_OK && m.nobcast &&
		      parse(promisc_off, 3, &c) == 0 && xvl_net_rxmode_apply(&m, &c) == XVL_NET_OK &&
		      !m.promisc && m.nobcast,
	      "CTRL_RX NOBCAST on, PROMISC off: applied");
	CHECK(parse(addr, 8, &c) == 0 && xvl_net_rxmode_apply(&m, &c) == XVL_NET_ERR && !m.promisc,
	      "a command of another class is not an rx-mode command");
}

static void mac_of(uint32_t i, uint8_t mac[6])
{
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = (uint8_t)(i >> 24);
	mac[3] = (uint8_t)(i >> 16);
	mac[4] = (uint8_t)(i >> 8);
	mac[5] = (uint8_t)i;
}

/* Random learn/flush against a plain array model: the table must agree. */
static int fdb_model_run(uint32_t cap, unsigned seed)
{
	struct xvl_fdb f;
	struct xvl_fdb_entry *mem = calloc(cap, sizeof(*mem));
	int model[256];
	int bad = 0;

	srand(seed);
	for (int i = 0; i < 256; i++)
		model[i] = -1;
	xvl_fdb_init(&f, mem, cap, 4, cap, 0);
	for (int op = 0; op < 20000 && !bad; op++) {
		uint32_t m = (uint32_t)rand() % 256;
		uint8_t mac[6];
		mac_of(m, mac);
		int r = rand() % 100;
		if (r < 60) {
			uint16_t port = (uint16_t)(rand() % 4);
			if (xvl_fdb_learn(&f, mac, port, (uint64_t)op) == 0)
				model[m] = port;
		} else if (r < 62) {
			uint16_t port = (uint16_t)(rand() % 4);
			xvl_fdb_flush_port(&f, port);
			for (int i = 0; i < 256; i++)
				if (model[i] == port)
					model[i] = -1;
		} else {
			int got = xvl_fdb_lookup(&f, mac, (uint64_t)op);
			if (got != (model[m] < 0 ? -ENOENT : model[m]))
				bad = 1;
		}
	}
	uint32_t n = 0;
	for (int i = 0; i < 256; i++)
		n += model[i] >= 0;
	if (n != f.used)
		bad = 1;
	free(mem);
	return bad;
}

static void test_fdb(void)
{
	struct xvl_fdb f;
	struct xvl_fdb_entry mem[16];
	uint8_t a[6], b[6], bc[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, mc[6] = {1, 0, 0x5e, 0, 0, 1};

	CHECK(xvl_fdb_init(&f, mem, 12, 2, 0, 100) == -EINVAL, "table size must be a power of two");
	CHECK(xvl_fdb_init(&f, mem, 16, 65, 0, 100) == -EINVAL, "at most 64 ports");
	CHECK(xvl_fdb_init(&f, mem, 16, 2, 4, 100) == 0, "init 16 entries, 2 ports, quota 4");
	mac_of(1, a);
	mac_of(2, b);
	CHECK(xvl_fdb_lookup(&f, a, 0) == -ENOENT, "unknown address: not found");
	CHECK(xvl_fdb_learn(&f, a, 0, 10) == 0 && xvl_fdb_lookup(&f, a, 20) == 0, "learned on port 0");
	CHECK(xvl_fdb_learn(&f, a, 1, 30) == 0 && xvl_fdb_lookup(&f, a, 40) == 1 &&
		      f.port_count[0] == 0 && f.port_count[1] == 1,
	      "a station that moves is moved, quotas follow");
	CHECK(xvl_fdb_lookup(&f, a, 131) == -ENOENT && f.used == 0, "aged out after 100 units, slot freed");
	CHECK(xvl_fdb_learn(&f, mc, 0, 0) == 0 && f.used == 0, "multicast source not learned");
	CHECK(xvl_fdb_learn(&f, a, 2, 0) == -EINVAL, "port out of range refused");
	for (uint32_t i = 0; i < 4; i++) {
		uint8_t m[6];
		mac_of(100 + i, m);
		xvl_fdb_learn(&f, m, 0, 200);
	}
	uint8_t m5[6];
	mac_of(200, m5);
	CHECK(xvl_fdb_learn(&f, m5, 0, 200) == -ENOSPC && f.port_count[0] == 4,
	      "a port spraying addresses stops at its quota");
	CHECK(xvl_fdb_learn(&f, b, 1, 200) == 0, "the other port still learns");
	xvl_fdb_flush_port(&f, 0);
	CHECK(f.port_count[0] == 0 && f.used == 1 && xvl_fdb_lookup(&f, b, 201) == 1,
	      "flush removes one port's addresses only");

	/* forwarding */
	uint64_t up = 0x3;
	CHECK(xvl_l2sw_forward(&f, 0, bc, a, up, 300) == 0x2, "broadcast floods to the others");
	CHECK(xvl_l2sw_forward(&f, 1, a, b, up, 301) == 0x1, "learned destination: its port only");
	CHECK(xvl_l2sw_forward(&f, 0, a, a, up, 302) == 0, "destination on the input port: dropped");
	uint8_t u[6];
	mac_of(999, u);
	CHECK(xvl_l2sw_forward(&f, 0, u, a, up, 303) == 0x2, "unknown unicast floods");
	CHECK(xvl_l2sw_forward(&f, 5, u, a, up, 303) == 0, "input port out of range: nothing");

	/* a full table: learning stops, lookups still end (probes bounded) */
	struct xvl_fdb g;
	struct xvl_fdb_entry gm[4];
	xvl_fdb_init(&g, gm, 4, 1, 4, 0);
	int learned = 0;
	for (uint32_t i = 0; i < 10; i++) {
		uint8_t m[6];
		mac_of(i, m);
		learned += xvl_fdb_learn(&g, m, 0, 0) == 0;
	}
	CHECK(learned == 3 && xvl_fdb_lookup(&g, u, 0) == -ENOENT, "a full table keeps one slot free");

	int bad = 0;
	for (unsigned seed = 1; seed <= 6; seed++)
		bad += fdb_model_run(seed & 1 ? 512 : 64, seed);
	CHECK(bad == 0, "20000 random learn/lookup/flush operations x6 agree with a model");
}

int main(void)
{
	test_frames();
	test_ctrl();
	test_fdb();
	return tap_done();
}
