/* SPDX-License-Identifier: MIT */
/*
 * Driver side against a hostile device.  In rounds, the driver submits
 * chains chosen by the input, then the input overwrites the used ring (and
 * scribbles anywhere in the window) as a device could, then the driver
 * collects completions.  At the end everything still outstanding is
 * detached.  Every token must come back exactly once, with a length no
 * larger than its writable bytes; anything else aborts.
 *
 * Input: flags byte, then rounds of
 *   n_chains byte, one shape byte per chain (n_out = b & 3, n_in = b >> 2 & 3),
 *   n_scribble byte, 3 bytes per scribble (offset LE16 in the window, value),
 *   used-ring bytes (4 + 8 * num + 2), copied over the used ring.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtq.h"
#include "xvl_err.h"

#define FZ_WIN_SIZE  16384u
#define FZ_DESC_OFF  0x100u
#define FZ_AVAIL_OFF 0x200u
#define FZ_USED_OFF  0x240u
#define FZ_IND_OFF   0x400u /* 16 heads * 8 descriptors */
#define FZ_IND_MAX   8u
#define FZ_DATA_OFF  0x1000u
#define FZ_MAX_TOKENS 512u

#define FZ_INDIRECT  0x01u
#define FZ_EVENT_IDX 0x02u
#define FZ_NUM_SHIFT 4

static _Alignas(4096) uint8_t fz_win[FZ_WIN_SIZE];

struct fz_tok {
	uint64_t in_bytes;
	uint8_t returned;
};

struct fz_state {
	struct xvl_vq_drv drv;
	struct xvl_vq_layout l;
	struct fz_tok tok[FZ_MAX_TOKENS];
	unsigned n_tok;
	const uint8_t *p, *end;
};

static unsigned fz_byte(struct fz_state *s)
{
	return s->p < s->end ? *s->p++ : 0;
}

/* One chain of shape b: buffers of 8 or 16 bytes in the data area. */
static void fz_submit_one(struct fz_state *s, unsigned b)
{
	struct xvl_sg sg[6];
	unsigned n_out = b & 3, n_in = (b >> 2) & 3, i;
	uint64_t in = 0;
	int rc;

	if (!n_out && !n_in)
		n_in = 1;
	for (i = 0; i < n_out + n_in; i++) {
		sg[i].off = FZ_DATA_OFF + (uint64_t)(s->n_tok % 64) * 128 + i * 16;
		sg[i].len = 8u << ((b >> 4) & 1);
		if (i >= n_out)
			in += sg[i].len;
	}
	if (s->n_tok >= FZ_MAX_TOKENS)
		return;
	rc = xvl_vq_drv_add(&s->drv, sg, n_out, n_in, s->n_tok);
	if (rc == 0) {
		s->tok[s->n_tok].in_bytes = in;
		s->n_tok++;
	} else if (rc != -ENOSPC && rc != -EIO && rc != -EINVAL) {
		abort();
	}
}

static void fz_submit(struct fz_state *s)
{
	unsigned n = fz_byte(s) % (s->l.num + 1u);

	while (n--)
		fz_submit_one(s, fz_byte(s));
	(void)xvl_vq_drv_kick_prepare(&s->drv);
}

/* The device's turn: arbitrary bytes anywhere, then over the used ring. */
static void fz_device_writes(struct fz_state *s)
{
	unsigned n = fz_byte(s) % 8, len;

	while (n--) {
		unsigned off = fz_byte(s);

		off |= fz_byte(s) << 8;
		fz_win[off % FZ_WIN_SIZE] = (uint8_t)fz_byte(s);
	}
	len = (unsigned)xvl_vq_used_bytes(s->l.num);
	if ((size_t)(s->end - s->p) < len)
		len = (unsigned)(s->end - s->p);
	memcpy(fz_win + FZ_USED_OFF, s->p, len);
	s->p += len;
}

static void fz_take(struct fz_state *s, uint64_t token, uint64_t len)
{
	if (token >= s->n_tok || s->tok[token].returned || len > s->tok[token].in_bytes)
		abort();
	s->tok[token].returned = 1;
}

static void fz_collect(struct fz_state *s)
{
	unsigned i;
	uint64_t token;
	uint32_t len;
	int rc;

	for (i = 0; i < 2u * s->l.num + 2; i++) {
		rc = xvl_vq_drv_get_used(&s->drv, &token, &len);
		if (rc == 1) {
			fz_take(s, token, len);
			continue;
		}
		if (rc == -EIO && !s->drv.broken)
			abort();
		if (rc != 0 && rc != -EIO)
			abort();
		break;
	}
	(void)xvl_vq_drv_enable_cb(&s->drv);
}

static void fz_detach_all(struct fz_state *s)
{
	uint64_t token;
	unsigned i;

	for (i = 0; i <= s->l.num && xvl_vq_drv_detach(&s->drv, &token) == 1; i++)
		fz_take(s, token, 0);
	if (xvl_vq_drv_detach(&s->drv, &token) != 0 || xvl_vq_drv_inflight(&s->drv) != 0 ||
	    s->drv.num_free != s->l.num)
		abort();
	for (i = 0; i < s->n_tok; i++)
		if (!s->tok[i].returned)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_Alignas(8) uint8_t priv[16 * 32];
	struct xvl_mem m = { fz_win, FZ_WIN_SIZE };
	struct fz_state s;
	uint8_t flags;
	unsigned rounds = 0;

	if (size < 1)
		return 0;
	memset(&s, 0, sizeof(s));
	s.p = data + 1;
	s.end = data + size;
	flags = data[0];
	s.l.num = (uint16_t)(1u << ((flags >> FZ_NUM_SHIFT) % 5));
	s.l.desc = FZ_DESC_OFF;
	s.l.avail = FZ_AVAIL_OFF;
	s.l.used = FZ_USED_OFF;
	if (xvl_vq_drv_priv_size(s.l.num) > sizeof(priv))
		abort();
	memset(fz_win, 0, sizeof(fz_win));
	if (xvl_vq_drv_init(&s.drv, &m, &s.l, flags & FZ_EVENT_IDX,
			    (flags & FZ_INDIRECT) ? FZ_IND_OFF : 0, FZ_IND_MAX, priv))
		abort();

	while (s.p < s.end && rounds++ < 64) {
		fz_submit(&s);
		fz_device_writes(&s);
		fz_collect(&s);
	}
	fz_detach_all(&s);
	return 0;
}
