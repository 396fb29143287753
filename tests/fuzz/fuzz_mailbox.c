/* SPDX-License-Identifier: MIT */
/*
 * The mailbox decoder on both sides, against a peer that writes anything
 * anywhere in the mailbox between our operations.
 *
 * Input: byte 0 picks the side under test (bit 0: 1 = device, 0 = driver);
 * then a script of operations:
 *   0 off_lo off_hi n bytes[n]   the peer writes n bytes at mailbox offset off
 *   1                            we receive (what arrives must be well-formed
 *                                and travel in the right direction)
 *   2                            we send a message
 *   3                            device: accept; driver: connected, or connect again
 * Whatever happens, nothing reads or writes outside the window (ASan) and
 * every return value is one the header documents.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WIN_SIZE (128u * 1024)
#define MBOX_OFF 0x1000u

static _Alignas(4096) uint8_t window[WIN_SIZE];

static bool recv_rc_ok(int rc)
{
	return rc == 0 || rc == 1 || rc == -ENOTCONN || rc == -ECONNRESET || rc == -ESTALE ||
	       rc == -EBADMSG || rc == -EPROTO || rc == -EMSGSIZE || rc == -EOPNOTSUPP || rc == -EINVAL;
}

static void check_received(const struct xvl_mbox *mb, const struct xvl_msg *m)
{
	uint8_t buf[XVL_MSG_MAX_SIZE];
	bool to_driver = xvl_msg_is_reply(m) || m->type == XVL_MSG_EVENT;
	if (to_driver != mb->driver)
		abort(); /* delivered in the wrong direction */
	if (xvl_msg_encode(m, buf, sizeof(buf)) < 0)
		abort(); /* delivered something that is not a valid message */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xvl_mem w = {.base = window, .size = WIN_SIZE};
	struct xvl_mbox drv, dev, *me;
	struct xvl_msg m;

	if (size < 1)
		return 0;
	memset(window, 0, sizeof(window));
	if (xvl_win_format(&w) || xvl_mbox_format(&drv, &w, MBOX_OFF, 8, 4) || xvl_mbox_open(&dev, &w, 4) ||
	    xvl_mbox_connect(&drv) || xvl_mbox_accept(&dev) != 1 || xvl_mbox_connected(&drv) != 1)
		abort();
	me = (data[0] & 1) ? &dev : &drv;
	size_t len = drv.len;

	size_t i = 1;
	for (unsigned ops = 0; i < size && ops < 256; ops++) {
		uint8_t op = data[i++] & 3;
		int rc;
		switch (op) {
		case 0: {
			if (i + 3 > size)
				return 0;
			size_t off = ((size_t)data[i] | (size_t)data[i + 1] << 8) % len;
			size_t n = data[i + 2];
			i += 3;
			if (n > size - i)
				n = size - i;
			if (n > len - off)
				n = len - off;
			memcpy(window + MBOX_OFF + off, data + i, n);
			i += n;
			break;
		}
		case 1:
			rc = xvl_mbox_recv(me, &m);
			if (!recv_rc_ok(rc))
				abort();
			if (rc == 1)
				check_received(me, &m);
			break;
		case 2: {
			struct xvl_msg s = {.type = me->driver ? XVL_MSG_GET_STATUS : XVL_MSG_EVENT, .seq = ops};
			rc = xvl_mbox_send(me, &s);
			if (!(rc == 0 || rc == -EAGAIN || recv_rc_ok(rc)))
				abort();
			break;
		}
		default:
			if (me->driver) {
				rc = xvl_mbox_connected(me);
				if (rc < 0 && !recv_rc_ok(rc))
					abort();
				if (rc < 0 || (data[i - 1] & 4))
					xvl_mbox_connect(me);
			} else {
				rc = xvl_mbox_accept(me);
				if (rc != 0 && rc != 1 && rc != -ESTALE)
					abort();
			}
			break;
		}
	}
	return 0;
}
