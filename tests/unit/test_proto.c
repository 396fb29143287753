/* SPDX-License-Identifier: MIT */
/* Link message encoding/decoding: round trips and refusals. */
#include <errno.h>
#include <string.h>

#include "proto.h"
#include "tap.h"

static int roundtrip(const struct xvl_msg *in, struct xvl_msg *out)
{
	uint8_t buf[XVL_MSG_MAX_SIZE];
	int n = xvl_msg_encode(in, buf, sizeof(buf));
	if (n < 0)
		return n;
	return xvl_msg_decode(buf, (size_t)n, out);
}

static void test_roundtrips(void)
{
	struct xvl_msg m = {.type = XVL_MSG_HELLO, .seq = 7}, o;
	m.u.hello = (struct xvl_m_hello){.major = 1, .minor = 0, .caps = XVL_CAP_POLL};
	strcpy(m.u.hello.name, "client-a");
	CHECK(roundtrip(&m, &o) == 0 && o.type == XVL_MSG_HELLO && o.seq == 7 &&
		      o.u.hello.caps == XVL_CAP_POLL && !strcmp(o.u.hello.name, "client-a"),
	      "HELLO round trip");

	m = (struct xvl_msg){.type = XVL_MSG_DEV_INFO, .flags = XVL_MSG_F_REPLY, .seq = 9};
	m.u.info = (struct xvl_m_dev_info){.dev = 3, .virtio_id = 2, .num_queues = 4,
					   .max_queue_size = 1024, .config_len = 60,
					   .features = 0x1ffffffffull};
	strcpy(m.u.info.name, "disk0");
	CHECK(roundtrip(&m, &o) == 0 && o.u.info.features == 0x1ffffffffull &&
		      o.u.info.max_queue_size == 1024 && !strcmp(o.u.info.name, "disk0"),
	      "DEV_INFO reply round trip");

	m = (struct xvl_msg){.type = XVL_MSG_SET_QUEUE, .seq = 1};
	m.u.queue = (struct xvl_m_queue){.dev = 1, .queue = 2, .num = 256, .flags = 3,
					 .avail_base = 65535, .used_base = 65534,
					 .desc = 0x1000, .avail = 0x2000, .used = 0x3000};
	CHECK(roundtrip(&m, &o) == 0 && o.u.queue.num == 256 && o.u.queue.used == 0x3000 &&
		      o.u.queue.avail_base == 65535 && xvl_msg_nfds(&o) == 0,
	      "SET_QUEUE poll round trip, no fds");
	m.u.queue.flags = XVL_QUEUE_F_ENABLE;
	CHECK(xvl_msg_nfds(&m) == 2, "SET_QUEUE with notifications carries 2 fds");

	m = (struct xvl_msg){.type = XVL_MSG_GET_CONFIG, .flags = XVL_MSG_F_REPLY};
	m.u.cfg.len = 60;
	for (int i = 0; i < 60; i++)
		m.u.cfg.data[i] = (uint8_t)i;
	CHECK(roundtrip(&m, &o) == 0 && o.u.cfg.len == 60 && o.u.cfg.data[59] == 59,
	      "GET_CONFIG reply carries the bytes");

	m = (struct xvl_msg){.type = XVL_MSG_SET_STATUS, .flags = XVL_MSG_F_REPLY, .status = -EIO};
	uint8_t buf[XVL_MSG_MAX_SIZE];
	CHECK(xvl_msg_encode(&m, buf, sizeof(buf)) == XVL_MSG_HDR_SIZE,
	      "failed reply has no payload");
	CHECK(roundtrip(&m, &o) == 0 && o.status == -EIO, "failed reply round trip");

	m = (struct xvl_msg){.type = XVL_MSG_EVENT};
	m.u.event = (struct xvl_m_event){.dev = 1, .code = XVL_EVENT_BROKEN, .reason = -EIO};
	strcpy(m.u.event.msg, "used id 900 never submitted");
	CHECK(roundtrip(&m, &o) == 0 && o.u.event.reason == -EIO &&
		      !strcmp(o.u.event.msg, "used id 900 never submitted"),
	      "EVENT round trip");

	m = (struct xvl_msg){.type = XVL_MSG_GET_STATS, .flags = XVL_MSG_F_REPLY};
	m.u.stats = (struct xvl_m_stats){.dev = 1, .requests = 1ull << 40, .notifies = 5};
	CHECK(roundtrip(&m, &o) == 0 && o.u.stats.requests == 1ull << 40, "GET_STATS round trip");

	for (uint16_t t = 1; t <= XVL_MSG_TYPE_MAX; t++)
		CHECK(strcmp(xvl_msg_name(t), "?") != 0, "type %u has a name (%s)", t, xvl_msg_name(t));
	CHECK(!strcmp(xvl_msg_name(999), "?"), "unknown type name");
}

static void test_refusals(void)
{
	uint8_t buf[XVL_MSG_MAX_SIZE + 16];
	struct xvl_msg m = {.type = XVL_MSG_ATTACH}, o;
	int n = xvl_msg_encode(&m, buf, sizeof(buf));

	CHECK(n == XVL_MSG_HDR_SIZE + 4, "ATTACH is header + 4 bytes");
	CHECK(xvl_msg_decode(buf, 10, &o) == -EBADMSG, "short header refused");
	CHECK(xvl_msg_decode(buf, (size_t)n - 1, &o) == -EBADMSG, "truncated message refused");
	buf[n] = 0;
	CHECK(xvl_msg_decode(buf, (size_t)n + 1, &o) == -EBADMSG, "trailing byte refused");
	CHECK(xvl_msg_decode(buf, XVL_MSG_MAX_SIZE + 1, &o) == -EMSGSIZE, "oversized refused");

	uint8_t bad[XVL_MSG_MAX_SIZE];
	memcpy(bad, buf, (size_t)n);
	bad[0] = 99;
	CHECK(xvl_msg_decode(bad, (size_t)n, &o) == -EOPNOTSUPP, "unknown type refused");
	memcpy(bad, buf, (size_t)n);
	bad[2] = 0x80;
	CHECK(xvl_msg_decode(bad, (size_t)n, &o) == -EBADMSG, "unknown flag refused");
	memcpy(bad, buf, (size_t)n);
	bad[8] = 0xff; /* status -1 on a request */
	CHECK(xvl_msg_decode(bad, (size_t)n, &o) == -EBADMSG, "request with status refused");

	/* A payload of the size of another shape. */
	struct xvl_msg w = {.type = XVL_MSG_SET_WINDOW};
	n = xvl_msg_encode(&w, bad, sizeof(bad));
	bad[0] = XVL_MSG_ATTACH;
	CHECK(xvl_msg_decode(bad, (size_t)n, &o) == -EBADMSG, "wrong payload size for type refused");

	struct xvl_msg c = {.type = XVL_MSG_SET_CONFIG};
	c.u.cfg.len = XVL_CONFIG_MAX + 1;
	CHECK(xvl_msg_encode(&c, bad, sizeof(bad)) == -EINVAL, "oversized config not encoded");
	c.u.cfg.len = 8;
	n = xvl_msg_encode(&c, bad, sizeof(bad));
	bad[XVL_MSG_HDR_SIZE + 8] = 0xff; /* len field -> 0x...ff */
	bad[XVL_MSG_HDR_SIZE + 9] = 0xff;
	CHECK(xvl_msg_decode(bad, (size_t)n, &o) == -EMSGSIZE, "config len over limit refused");

	/* A GET_CONFIG request asking for more than one message can carry (found by fuzzing). */
	static const uint8_t big_get[] = {7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0,
					  0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 0x20, 0};
	CHECK(xvl_msg_decode(big_get, sizeof(big_get), &o) == -EMSGSIZE,
	      "GET_CONFIG request over the config limit refused");

	struct xvl_msg e = {.type = XVL_MSG_EVENT, .flags = XVL_MSG_F_REPLY};
	CHECK(xvl_msg_encode(&e, bad, sizeof(bad)) == -EINVAL, "EVENT has no reply");
	CHECK(xvl_msg_encode(&m, bad, 8) == -EMSGSIZE, "small buffer refused");

	struct xvl_msg h = {.type = XVL_MSG_HELLO};
	n = xvl_msg_encode(&h, bad, sizeof(bad));
	memset(bad + n - XVL_NAME_MAX, 'A', XVL_NAME_MAX);
	CHECK(xvl_msg_decode(bad, (size_t)n, &o) == 0 && strlen(o.u.hello.name) == XVL_NAME_MAX - 1,
	      "unterminated name is terminated on decode");
}

int main(void)
{
	test_roundtrips();
	test_refusals();
	return tap_done();
}
