/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue: driver and device sides driven against each other over a
 * plain byte array standing in for the shared window.  Hostile cases write
 * bad values straight into the rings, as a malicious peer would.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "tap.h"
#include "virtq.h"
#include "xvl_atomic.h"
#include "xvl_err.h"

#define WIN_SIZE   (1u << 20)
#define RING_OFF   0x1000u
#define IND_OFF    0x10000u
#define IND_MAX    8u
#define DATA_OFF   0x40000u
#define SLOT_BYTES 512u /* data per test request: up to 8 buffers of 64 bytes */
#define SEG_BYTES  64u
#define MAX_SEGS   64u

static _Alignas(4096) uint8_t win[WIN_SIZE];
static _Alignas(8) uint8_t priv[26 * XVL_VQ_MAX_SIZE + 64];

struct env {
	struct xvl_mem m;
	struct xvl_vq_layout l;
	struct xvl_vq_drv drv;
	struct xvl_vq_dev dev;
	struct xvl_seg seg[MAX_SEGS];
	struct xvl_vq_elem e;
};

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static void layout_for(struct xvl_vq_layout *l, uint16_t num)
{
	l->num = num;
	l->desc = RING_OFF;
	l->avail = l->desc + xvl_vq_desc_bytes(num);
	l->used = align_up(l->avail + xvl_vq_avail_bytes(num), 4);
}

/* Fresh window and both sides; returns false when an init failed. */
static bool env_setup(struct env *v, uint16_t num, bool event_idx, bool indirect)
{
	memset(win, 0, sizeof(win));
	memset(v, 0, sizeof(*v));
	v->m.base = win;
	v->m.size = WIN_SIZE;
	layout_for(&v->l, num);
	v->e.seg = v->seg;
	if (xvl_vq_drv_init(&v->drv, &v->m, &v->l, event_idx, indirect ? IND_OFF : 0,
			    indirect ? IND_MAX : 0, priv))
		return false;
	return xvl_vq_dev_init(&v->dev, &v->m, &v->l, event_idx, indirect, 0, 0) == 0;
}

static int pop(struct env *v)
{
	return xvl_vq_dev_pop(&v->dev, &v->e, MAX_SEGS);
}

/* A chain of n_out readable then n_in writable 64-byte buffers in data slot p. */
static void make_sg(struct xvl_sg *sg, unsigned p, unsigned n_out, unsigned n_in)
{
	unsigned i;

	for (i = 0; i < n_out + n_in; i++) {
		sg[i].off = DATA_OFF + (uint64_t)p * SLOT_BYTES + i * SEG_BYTES;
		sg[i].len = SEG_BYTES;
	}
}

static int add_chain(struct env *v, unsigned p, unsigned n_out, unsigned n_in, uint64_t token)
{
	struct xvl_sg sg[16];

	make_sg(sg, p, n_out, n_in);
	return xvl_vq_drv_add(&v->drv, sg, n_out, n_in, token);
}

/* Raw peer writes, bypassing the library. */
static void raw_desc(struct xvl_vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	xvl_wr64(&d->addr, addr);
	xvl_wr32(&d->len, len);
	xvl_wr16(&d->flags, flags);
	xvl_wr16(&d->next, next);
}

static void raw_avail(struct env *v, uint16_t pos, uint16_t head)
{
	xvl_wr16(&v->drv.avail->ring[pos & (v->l.num - 1)], head);
}

static void raw_avail_idx(struct env *v, uint16_t idx)
{
	xvl_wr16_release(&v->drv.avail->idx, idx);
}

static void raw_used(struct env *v, uint16_t pos, uint32_t id, uint32_t len)
{
	struct xvl_vring_used_elem *u = &v->dev.used->ring[pos & (v->l.num - 1)];

	xvl_wr32(&u->id, id);
	xvl_wr32(&u->len, len);
}

static void raw_used_idx(struct env *v, uint16_t idx)
{
	xvl_wr16_release(&v->dev.used->idx, idx);
}

static uint16_t *avail_event(struct env *v)
{
	return (uint16_t *)&v->dev.used->ring[v->l.num];
}

static uint16_t *used_event(struct env *v)
{
	return &v->drv.avail->ring[v->l.num];
}

/* ------------------------------------------------------------------ layout */

static void test_layout(void)
{
	struct xvl_mem m = { win, WIN_SIZE };
	struct xvl_vq_layout l;
	unsigned num;
	bool all_ok = true;

	for (num = 1; num <= XVL_VQ_MAX_SIZE; num <<= 1) {
		layout_for(&l, (uint16_t)num);
		all_ok &= xvl_vq_layout_check(&m, &l) == 0;
	}
	CHECK(all_ok, "layout: every power of two 1..1024 accepted");

	layout_for(&l, 8);
	l.num = 0;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: num 0 rejected");
	l.num = 3;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: num 3 rejected");
	l.num = 12;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: num 12 rejected");
	layout_for(&l, 1024);
	l.used += 0x10000;
	l.num = 2048;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: num 2048 rejected");

	layout_for(&l, 8);
	l.desc += 8;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: desc not 16-aligned rejected");
	layout_for(&l, 8);
	l.avail += 1;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: avail odd rejected");
	layout_for(&l, 8);
	l.used += 2;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: used not 4-aligned rejected");

	layout_for(&l, 8);
	l.used = WIN_SIZE - 8;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: used past window end rejected");
	l.used = (WIN_SIZE - xvl_vq_used_bytes(8)) & ~3ull;
	CHECK(xvl_vq_layout_check(&m, &l) == 0, "layout: used at the window end accepted");
	layout_for(&l, 8);
	l.avail = WIN_SIZE - xvl_vq_avail_bytes(8);
	CHECK(xvl_vq_layout_check(&m, &l) == 0, "layout: avail ending exactly at window end");
	layout_for(&l, 8);
	l.desc = UINT64_MAX - 15;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: desc offset overflow rejected");
	layout_for(&l, 8);
	l.avail = WIN_SIZE + 2;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: avail outside window rejected");

	layout_for(&l, 8);
	l.avail = l.desc + 16 * 7;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: desc/avail overlap rejected");
	layout_for(&l, 8);
	l.used = l.avail + 20;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: avail/used overlap rejected");
	layout_for(&l, 8);
	l.used = l.desc + 64;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: desc/used overlap rejected");
	layout_for(&l, 8);
	l.used = l.desc;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: used == desc rejected");
	layout_for(&l, 8);
	m.base = win + 8;
	CHECK(xvl_vq_layout_check(&m, &l) == -EINVAL, "layout: misaligned window base rejected");
}

static void test_init_errors(void)
{
	struct xvl_mem m = { win, WIN_SIZE };
	struct xvl_vq_layout l;
	struct xvl_vq_drv drv;
	struct xvl_vq_dev dev;

	layout_for(&l, 8);
	CHECK(xvl_vq_drv_init(&drv, &m, &l, false, 0, 0, priv + 4) == -EINVAL,
	      "drv init: misaligned private memory rejected");
	CHECK(xvl_vq_drv_init(&drv, &m, &l, false, WIN_SIZE - 64, 8, priv) == -EINVAL,
	      "drv init: indirect tables outside window rejected");
	CHECK(xvl_vq_drv_init(&drv, &m, &l, false, IND_OFF + 8, 8, priv) == -EINVAL,
	      "drv init: misaligned indirect tables rejected");
	CHECK(xvl_vq_drv_init(&drv, &m, &l, false, IND_OFF, 0, priv) == -EINVAL,
	      "drv init: indirect with ind_max 0 rejected");
	CHECK(xvl_vq_drv_init(&drv, &m, &l, false, l.desc, 1, priv) == -EINVAL,
	      "drv init: indirect tables over the rings rejected");
	l.num = 5;
	CHECK(xvl_vq_drv_init(&drv, &m, &l, false, 0, 0, priv) == -EINVAL,
	      "drv init: bad layout rejected");
	layout_for(&l, 8);
	CHECK(xvl_vq_dev_init(&dev, &m, &l, false, false, 9, 0) == -EINVAL,
	      "dev init: more in flight than the queue size rejected");
	CHECK(xvl_vq_dev_init(&dev, &m, &l, false, false, 3, 65534) == 0 && dev.inflight == 5,
	      "dev init: resume bases across wrap accepted");
	CHECK(xvl_vq_drv_priv_size(1024) <= sizeof(priv), "drv priv size fits test buffer");
}

/* ------------------------------------------------------------------- basic */

static void test_basic(void)
{
	struct env v;
	uint64_t token = 0;
	uint32_t len = 0;

	CHECK(env_setup(&v, 8, false, false), "basic: init both sides");
	CHECK(xvl_vq_dev_pop(&v.dev, &v.e, MAX_SEGS) == 0, "basic: empty ring pops nothing");
	CHECK(!xvl_vq_dev_has_avail(&v.dev), "basic: nothing available");
	CHECK(add_chain(&v, 0, 1, 1, 42) == 0, "basic: add 1 out + 1 in");
	CHECK(xvl_vq_drv_inflight(&v.drv) == 1, "basic: one in flight");
	CHECK(xvl_vq_drv_kick_prepare(&v.drv), "basic: kick wanted");
	CHECK(!xvl_vq_drv_kick_prepare(&v.drv), "basic: no second kick without adds");
	CHECK(xvl_vq_dev_has_avail(&v.dev), "basic: device sees a chain");
	CHECK(pop(&v) == 1, "basic: pop");
	CHECK(v.e.n_out == 1 && v.e.n_in == 1 && v.e.out_bytes == 64 && v.e.in_bytes == 64,
	      "basic: shape 1+1, 64+64 bytes");
	CHECK(v.e.seg[0].ptr == win + DATA_OFF && v.e.seg[0].off == DATA_OFF && !v.e.seg[0].write,
	      "basic: readable segment maps to window");
	CHECK(v.e.seg[1].ptr == win + DATA_OFF + 64 && v.e.seg[1].write,
	      "basic: writable segment maps to window");
	CHECK(pop(&v) == 0, "basic: nothing more");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 0, "basic: no completion yet");
	CHECK(xvl_vq_dev_push(&v.dev, v.e.head, 17) == 0, "basic: push");
	CHECK(xvl_vq_dev_push(&v.dev, v.e.head, 17) == -EINVAL, "basic: push beyond in flight");
	CHECK(xvl_vq_dev_push(&v.dev, 8, 0) == -EINVAL, "basic: push head out of range");
	CHECK(xvl_vq_dev_notify_prepare(&v.dev), "basic: interrupt wanted");
	CHECK(!xvl_vq_dev_notify_prepare(&v.dev), "basic: no second interrupt without pushes");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 42 && len == 17,
	      "basic: completion returns token 42, len 17");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 0, "basic: nothing more");
	CHECK(xvl_vq_drv_inflight(&v.drv) == 0 && v.drv.num_free == 8, "basic: all free again");
}

/* unpop: chains a receive could not use go back and pop again, in order. */
static void test_unpop(void)
{
	struct env v;
	uint64_t token = 0;
	uint32_t len = 0;

	CHECK(env_setup(&v, 8, false, false), "unpop: init both sides");
	CHECK(add_chain(&v, 0, 0, 1, 1) == 0 && add_chain(&v, 0, 0, 1, 2) == 0, "unpop: add two");
	CHECK(pop(&v) == 1, "unpop: pop the first");
	uint16_t first = v.e.head;
	CHECK(pop(&v) == 1, "unpop: pop the second");
	CHECK(xvl_vq_dev_unpop(&v.dev, 3) == -EINVAL, "unpop: more than in flight is refused");
	CHECK(xvl_vq_dev_unpop(&v.dev, 2) == 0 && v.dev.inflight == 0, "unpop: both given back");
	CHECK(pop(&v) == 1 && v.e.head == first, "unpop: the first pops again");
	CHECK(pop(&v) == 1 && pop(&v) == 0, "unpop: then the second, then nothing");
	CHECK(xvl_vq_dev_push(&v.dev, first, 4) == 0, "unpop: push the first");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 1 && len == 4,
	      "unpop: the driver sees it completed once");
	v.dev.broken = true;
	CHECK(xvl_vq_dev_unpop(&v.dev, 1) == -EIO, "unpop: broken queue refuses");
}

static void test_add_errors(void)
{
	struct env v;
	struct xvl_sg sg[16];
	unsigned i;
	int rc = 0;

	env_setup(&v, 8, false, false);
	make_sg(sg, 0, 2, 2);
	CHECK(xvl_vq_drv_add(&v.drv, sg, 0, 0, 1) == -EINVAL, "add: empty chain rejected");
	CHECK(xvl_vq_drv_add(&v.drv, NULL, 1, 0, 1) == -EINVAL, "add: NULL sg rejected");
	CHECK(xvl_vq_drv_add(&v.drv, sg, 5, 4, 1) == -EINVAL, "add: chain longer than queue");
	CHECK(xvl_vq_drv_add(&v.drv, sg, UINT32_MAX, 2, 1) == -EINVAL, "add: count overflow");
	sg[1].off = WIN_SIZE - 10;
	CHECK(xvl_vq_drv_add(&v.drv, sg, 2, 2, 1) == -EINVAL, "add: buffer past window end");
	sg[1].off = UINT64_MAX - 4;
	CHECK(xvl_vq_drv_add(&v.drv, sg, 2, 2, 1) == -EINVAL, "add: buffer offset overflow");
	CHECK(xvl_vq_drv_inflight(&v.drv) == 0 && v.drv.num_free == 8,
	      "add: failures leak nothing");
	make_sg(sg, 0, 3, 0);
	CHECK(add_chain(&v, 0, 3, 0, 1) == 0 && add_chain(&v, 1, 3, 0, 2) == 0,
	      "add: two chains of 3");
	CHECK(add_chain(&v, 2, 3, 0, 3) == -ENOSPC, "add: third chain of 3 does not fit");
	CHECK(add_chain(&v, 2, 1, 1, 3) == 0, "add: chain of 2 fits exactly");
	CHECK(add_chain(&v, 3, 1, 0, 4) == -ENOSPC, "add: full ring");

	env_setup(&v, 4, false, true);
	for (i = 0; i < 4; i++)
		rc |= add_chain(&v, i, 4, 4, i);
	CHECK(rc == 0 && v.drv.num_free == 0, "add indirect: 4 chains of 8 in a ring of 4");
	CHECK(add_chain(&v, 5, 1, 0, 9) == -ENOSPC, "add indirect: ring full");
	env_setup(&v, 4, false, true);
	CHECK(add_chain(&v, 0, 5, 4, 1) == -EINVAL, "add indirect: more than ind_max rejected");
}

/* ---------------------------------------------------------- chains, sizes */

static void test_mixed_chains(void)
{
	struct env v;
	uint64_t token;
	uint32_t len;
	unsigned i;
	bool ok = true;

	env_setup(&v, 16, false, false);
	CHECK(add_chain(&v, 0, 3, 2, 7) == 0, "mixed: add 3 out + 2 in");
	CHECK(add_chain(&v, 1, 0, 4, 8) == 0, "mixed: add 0 out + 4 in");
	CHECK(add_chain(&v, 2, 5, 0, 9) == 0, "mixed: add 5 out + 0 in");
	CHECK(v.drv.num_free == 16 - 14, "mixed: 14 descriptors used");

	CHECK(pop(&v) == 1 && v.e.n_out == 3 && v.e.n_in == 2 && v.e.in_bytes == 128,
	      "mixed: first chain 3+2");
	for (i = 0; i < 5; i++)
		ok &= v.e.seg[i].off == DATA_OFF + i * 64 && v.e.seg[i].write == (i >= 3);
	CHECK(ok, "mixed: first chain segments in order");
	CHECK(xvl_vq_dev_push(&v.dev, v.e.head, 128) == 0, "mixed: push full write");
	CHECK(pop(&v) == 1 && v.e.n_out == 0 && v.e.n_in == 4, "mixed: second chain 0+4");
	CHECK(xvl_vq_dev_push(&v.dev, v.e.head, 0) == 0, "mixed: push zero");
	CHECK(pop(&v) == 1 && v.e.n_out == 5 && v.e.n_in == 0 && v.e.out_bytes == 320,
	      "mixed: third chain 5+0");
	CHECK(xvl_vq_dev_push(&v.dev, v.e.head, 0) == 0, "mixed: push read-only");

	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 7 && len == 128,
	      "mixed: completion 7");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 8 && len == 0,
	      "mixed: completion 8");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 9 && len == 0,
	      "mixed: completion 9");
	CHECK(v.drv.num_free == 16, "mixed: every descriptor back");
}

static void test_indirect(void)
{
	struct env v;
	uint64_t token;
	uint32_t len;
	struct xvl_vring_desc *d;
	unsigned i;
	bool ok = true;

	env_setup(&v, 4, false, true);
	CHECK(add_chain(&v, 0, 2, 3, 11) == 0, "indirect: add 2 out + 3 in");
	d = &v.drv.desc[0];
	CHECK(xvl_rd16(&d->flags) == XVL_VRING_DESC_F_INDIRECT && xvl_rd32(&d->len) == 5 * 16 &&
	      xvl_rd64(&d->addr) == IND_OFF,
	      "indirect: one ring descriptor pointing at head 0's table");
	CHECK(v.drv.num_free == 3, "indirect: one descriptor per request");
	CHECK(add_chain(&v, 1, 1, 0, 12) == 0, "indirect: single buffer goes direct");
	CHECK(xvl_rd16(&v.drv.desc[1].flags) == 0, "indirect: direct descriptor has no flags");
	CHECK(add_chain(&v, 2, 4, 4, 13) == 0, "indirect: add 8 (ind_max)");
	CHECK(xvl_rd64(&v.drv.desc[2].addr) == IND_OFF + 2 * 16 * IND_MAX,
	      "indirect: head 2 uses its own table");

	CHECK(pop(&v) == 1 && v.e.head == 0 && v.e.n_out == 2 && v.e.n_in == 3,
	      "indirect: device pops 2+3");
	for (i = 0; i < 5; i++)
		ok &= v.e.seg[i].off == DATA_OFF + i * 64 && v.e.seg[i].write == (i >= 2);
	CHECK(ok, "indirect: segments in order");
	CHECK(xvl_vq_dev_push(&v.dev, 0, 192) == 0, "indirect: push");
	CHECK(pop(&v) == 1 && v.e.n_out == 1 && v.e.n_in == 0, "indirect: device pops direct");
	CHECK(xvl_vq_dev_push(&v.dev, v.e.head, 0) == 0, "indirect: push");
	CHECK(pop(&v) == 1 && v.e.n_out == 4 && v.e.n_in == 4, "indirect: device pops 4+4");
	CHECK(xvl_vq_dev_push(&v.dev, v.e.head, 256) == 0, "indirect: push");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 11 && len == 192,
	      "indirect: completion 11");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 12,
	      "indirect: completion 12");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 13 && len == 256,
	      "indirect: completion 13");
	CHECK(v.drv.num_free == 4, "indirect: all free");

	/* A device that did not negotiate indirect refuses the flag. */
	env_setup(&v, 4, false, true);
	v.dev.indirect = false;
	add_chain(&v, 0, 1, 1, 1);
	CHECK(pop(&v) == -EIO && v.dev.broken, "indirect: not negotiated -> broken");
}

/* Fill every queue size completely, complete in reverse order. */
static void test_sizes(void)
{
	struct env v;
	unsigned num, i, bad = 0;
	uint64_t token;
	uint32_t len;
	uint16_t heads[XVL_VQ_MAX_SIZE];

	for (num = 1; num <= XVL_VQ_MAX_SIZE; num <<= 1) {
		if (!env_setup(&v, (uint16_t)num, num & 0x55, false)) {
			bad++;
			continue;
		}
		for (i = 0; i < num; i++)
			bad += add_chain(&v, i & 1023, 1, 0, 1000 + i) != 0;
		bad += add_chain(&v, 0, 1, 0, 0) != -ENOSPC;
		for (i = 0; i < num; i++) {
			bad += pop(&v) != 1;
			heads[i] = v.e.head;
		}
		bad += pop(&v) != 0;
		for (i = num; i-- > 0;)
			bad += xvl_vq_dev_push(&v.dev, heads[i], 0) != 0;
		for (i = num; i-- > 0;) {
			bad += xvl_vq_drv_get_used(&v.drv, &token, &len) != 1;
			bad += token != 1000 + i;
		}
		bad += xvl_vq_drv_get_used(&v.drv, &token, &len) != 0;
		bad += v.drv.num_free != num || xvl_vq_drv_inflight(&v.drv) != 0;
	}
	CHECK(bad == 0, "sizes 1..1024: fill, drain, reverse completion (%u errors)", bad);
}

/* ------------------------------------------------------ long runs, wrap */

static uint32_t rng_state;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* What the test expects of one request it submitted (indexed by data slot). */
struct req {
	bool busy;
	uint8_t n_out, n_in;
	uint32_t gen;
};

struct sim {
	struct env *v;
	struct req req[XVL_VQ_MAX_SIZE];
	uint16_t free_slot[XVL_VQ_MAX_SIZE];
	unsigned n_free_slot;
	uint16_t popped[XVL_VQ_MAX_SIZE]; /* heads popped, not yet pushed */
	uint32_t popped_len[XVL_VQ_MAX_SIZE];
	unsigned n_popped;
	bool dev_awake, drv_awake;
	bool dev_polls_off, drv_polls_off; /* disable notifications while awake */
	unsigned completed, errors;
	uint32_t gen;
};

static uint8_t pattern(uint32_t gen, unsigned i)
{
	return (uint8_t)(gen * 31u + i * 7u + 1u);
}

static void sim_submit(struct sim *s)
{
	unsigned k = rnd() % 4, max = s->v->l.num < 4 ? s->v->l.num : 4;

	while (k-- && s->n_free_slot) {
		unsigned p = s->free_slot[s->n_free_slot - 1];
		unsigned n = 1 + rnd() % max, n_out = rnd() % (n + 1), i;
		struct xvl_sg sg[8];
		struct req *r = &s->req[p];
		int rc;

		make_sg(sg, p, n_out, n - n_out);
		r->gen = ++s->gen;
		for (i = 0; i < n_out; i++)
			memset(win + sg[i].off, pattern(r->gen, i), SEG_BYTES);
		rc = xvl_vq_drv_add(&s->v->drv, sg, n_out, n - n_out, p);
		if (rc == -ENOSPC)
			break;
		s->errors += rc != 0;
		r->busy = true;
		r->n_out = (uint8_t)n_out;
		r->n_in = (uint8_t)(n - n_out);
		s->n_free_slot--;
	}
	if (xvl_vq_drv_kick_prepare(&s->v->drv))
		s->dev_awake = true;
}

/* The device checks the chain against what the driver put there, writes its answer. */
static void sim_serve(struct sim *s, struct xvl_vq_elem *e)
{
	unsigned p = (unsigned)((e->seg[0].off - DATA_OFF) / SLOT_BYTES), i;
	struct req *r = &s->req[p];
	uint32_t written = 0;

	if (p >= XVL_VQ_MAX_SIZE || !r->busy || e->n_out != r->n_out || e->n_in != r->n_in) {
		s->errors++;
		return;
	}
	for (i = 0; i < e->n_out; i++)
		s->errors += ((uint8_t *)e->seg[i].ptr)[SEG_BYTES - 1] != pattern(r->gen, i);
	for (; i < (unsigned)e->n_out + e->n_in; i++) {
		memset(e->seg[i].ptr, pattern(r->gen, i), SEG_BYTES);
		written += SEG_BYTES;
	}
	s->popped[s->n_popped] = e->head;
	s->popped_len[s->n_popped++] = written;
}

static void sim_device(struct sim *s)
{
	struct env *v = s->v;
	unsigned k = 1 + rnd() % 8;
	int rc;

	if (s->dev_polls_off)
		xvl_vq_dev_disable_notify(&v->dev);
	while (k--) {
		rc = pop(v);
		if (rc == 1) {
			sim_serve(s, &v->e);
			continue;
		}
		s->errors += rc != 0;
		/* Empty: re-arm, and sleep only if nothing slipped in meanwhile. */
		if (!xvl_vq_dev_enable_notify(&v->dev))
			s->dev_awake = false;
		break;
	}
}

static void sim_complete(struct sim *s)
{
	unsigned k = rnd() % 8;

	/* Out-of-order completion: any popped chain may finish first. */
	while (k-- && s->n_popped) {
		unsigned j = rnd() % s->n_popped;

		s->errors += xvl_vq_dev_push(&s->v->dev, s->popped[j], s->popped_len[j]) != 0;
		s->popped[j] = s->popped[--s->n_popped];
		s->popped_len[j] = s->popped_len[s->n_popped];
	}
	if (xvl_vq_dev_notify_prepare(&s->v->dev))
		s->drv_awake = true;
}

static void sim_check_completion(struct sim *s, uint64_t token, uint32_t len)
{
	struct req *r = token < XVL_VQ_MAX_SIZE ? &s->req[token] : NULL;
	unsigned i;

	if (!r || !r->busy || len != r->n_in * SEG_BYTES) {
		s->errors++;
		return;
	}
	for (i = r->n_out; i < (unsigned)r->n_out + r->n_in; i++)
		s->errors += win[DATA_OFF + token * SLOT_BYTES + i * SEG_BYTES] !=
			     pattern(r->gen, i);
	r->busy = false;
	s->free_slot[s->n_free_slot++] = (uint16_t)token;
	s->completed++;
}

static void sim_driver(struct sim *s)
{
	struct env *v = s->v;
	unsigned k = 1 + rnd() % 8;
	uint64_t token;
	uint32_t len;
	int rc;

	if (s->drv_polls_off)
		xvl_vq_drv_disable_cb(&v->drv);
	while (k--) {
		rc = xvl_vq_drv_get_used(&v->drv, &token, &len);
		if (rc == 1) {
			sim_check_completion(s, token, len);
			continue;
		}
		s->errors += rc != 0;
		if (!xvl_vq_drv_enable_cb(&v->drv))
			s->drv_awake = false;
		break;
	}
}

/*
 * Run until `target` completions.  Each side only works when the other's
 * notification woke it, so a lost wakeup shows up as a stall.
 */
static bool run_sim(uint16_t num, bool event_idx, bool indirect, unsigned target, uint32_t seed)
{
	static struct sim s;
	static struct env v;
	unsigned i, idle = 0, last = 0;

	memset(&s, 0, sizeof(s));
	if (!env_setup(&v, num, event_idx, indirect))
		return false;
	s.v = &v;
	rng_state = seed;
	s.dev_polls_off = seed & 1;
	s.drv_polls_off = seed & 2;
	for (i = 0; i < num; i++)
		s.free_slot[s.n_free_slot++] = (uint16_t)i;
	while (s.completed < target && !s.errors) {
		switch (rnd() % 4) {
		case 0:
			sim_submit(&s);
			break;
		case 1:
			if (s.dev_awake)
				sim_device(&s);
			break;
		case 2:
			sim_complete(&s);
			break;
		default:
			if (s.drv_awake)
				sim_driver(&s);
			break;
		}
		idle = s.completed == last ? idle + 1 : 0;
		last = s.completed;
		if (idle > 10000) {
			s.errors++; /* stalled: a notification was lost */
			break;
		}
	}
	return !s.errors && !v.drv.broken && !v.dev.broken;
}

static void test_wrap(void)
{
	static const uint16_t sizes[] = { 1, 2, 4, 32, 256, 1024 };
	unsigned i, seed;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (seed = 0; seed < 4; seed++) {
			bool ev = seed & 1, ind = (seed + i) & 2;

			CHECK(run_sim(sizes[i], ev, ind, 70000, 0x9e3779b9u * (seed + 1) + i),
			      "wrap: num %u event_idx %d indirect %d, 70000 requests", sizes[i], ev,
			      ind);
		}
	}
}

/*
 * Exactly 65536 adds (pushes) between two kick (notify) decisions bring the
 * 16-bit index back to where the last decision saw it; the peer asked for a
 * notification in between and must still get one (Linux's virtio_ring kicks
 * unconditionally at 65535 added for the same reason).
 */
static void test_wrap_65536(void)
{
	for (unsigned ev = 0; ev < 2; ev++) {
		struct env v;
		uint64_t token;
		uint32_t len;
		bool ok = env_setup(&v, 8, ev, false);
		xvl_vq_drv_kick_prepare(&v.drv);
		xvl_vq_dev_notify_prepare(&v.dev);
		for (unsigned i = 0; ok && i < 65536; i++)
			ok = add_chain(&v, 0, 1, 1, i) == 0 && pop(&v) == 1 &&
			     xvl_vq_dev_push(&v.dev, v.e.head, 0) == 0 &&
			     xvl_vq_drv_get_used(&v.drv, &token, &len) == 1;
		CHECK(ok, "wrap 65536 (event_idx %u): 65536 requests through an 8-entry ring", ev);
		/* each peer still waits for the notification it asked for at index 0 */
		xvl_wr16(avail_event(&v), 0);
		xvl_wr16(used_event(&v), 0);
		CHECK(v.drv.avail_idx == 0 && xvl_vq_drv_kick_prepare(&v.drv),
		      "wrap 65536 (event_idx %u): the driver still kicks", ev);
		CHECK(xvl_vq_dev_notify_prepare(&v.dev),
		      "wrap 65536 (event_idx %u): the device still notifies", ev);
		CHECK(!xvl_vq_drv_kick_prepare(&v.drv) && !xvl_vq_dev_notify_prepare(&v.dev),
		      "wrap 65536 (event_idx %u): and not again with nothing new", ev);
	}
}

/* ------------------------------------------------------------ event idx */

static void test_event_idx(void)
{
	struct env v;
	uint64_t token;
	uint32_t len;

	env_setup(&v, 8, true, false);
	/* Avail side: the device asks for a kick at avail_event. */
	add_chain(&v, 0, 1, 0, 1);
	CHECK(xvl_vq_drv_kick_prepare(&v.drv), "event: first add kicks (avail_event 0)");
	add_chain(&v, 1, 1, 0, 2);
	CHECK(!xvl_vq_drv_kick_prepare(&v.drv), "event: device has not caught up: no kick");
	CHECK(pop(&v) == 1 && xvl_rd16(avail_event(&v)) == 1, "event: pop moves avail_event");
	CHECK(pop(&v) == 1 && xvl_rd16(avail_event(&v)) == 2, "event: pop moves avail_event again");
	CHECK(!xvl_vq_dev_enable_notify(&v.dev), "event: enable finds nothing new");
	add_chain(&v, 2, 1, 0, 3);
	CHECK(xvl_vq_drv_kick_prepare(&v.drv), "event: device caught up: kick");
	xvl_vq_dev_disable_notify(&v.dev);
	CHECK(pop(&v) == 1, "event: pop with notifications off");
	add_chain(&v, 3, 1, 0, 4);
	CHECK(!xvl_vq_drv_kick_prepare(&v.drv), "event: device suppressed: no kick");
	CHECK(xvl_vq_dev_enable_notify(&v.dev), "event: enable sees the pending chain");
	CHECK(pop(&v) == 1 && pop(&v) == 0, "event: drain");
	CHECK(!xvl_vq_dev_enable_notify(&v.dev), "event: enable on empty ring");
	add_chain(&v, 4, 1, 0, 5);
	CHECK(xvl_vq_drv_kick_prepare(&v.drv), "event: kick after re-enable");
	CHECK(pop(&v) == 1, "event: pop 5th");

	/* Used side: the driver asks for an interrupt at used_event. */
	xvl_vq_dev_push(&v.dev, 0, 0);
	CHECK(xvl_vq_dev_notify_prepare(&v.dev), "event: first push interrupts (used_event 0)");
	xvl_vq_dev_push(&v.dev, 1, 0);
	CHECK(!xvl_vq_dev_notify_prepare(&v.dev), "event: driver has not caught up: no interrupt");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && xvl_rd16(used_event(&v)) == 1,
	      "event: get_used moves used_event");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && xvl_rd16(used_event(&v)) == 2,
	      "event: get_used moves used_event again");
	xvl_vq_dev_push(&v.dev, 2, 0);
	CHECK(xvl_vq_dev_notify_prepare(&v.dev), "event: driver caught up: interrupt");
	xvl_vq_drv_disable_cb(&v.drv);
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1, "event: consume with cb off");
	xvl_vq_dev_push(&v.dev, 3, 0);
	CHECK(!xvl_vq_dev_notify_prepare(&v.dev), "event: driver suppressed: no interrupt");
	CHECK(xvl_vq_drv_enable_cb(&v.drv), "event: enable_cb sees the pending completion");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1, "event: consume");
	CHECK(!xvl_vq_drv_enable_cb(&v.drv), "event: enable_cb on empty ring");
	xvl_vq_dev_push(&v.dev, 4, 0);
	CHECK(xvl_vq_dev_notify_prepare(&v.dev), "event: interrupt after re-enable");

	/* Disabling parks the event index: even the very next index stays quiet. */
	CHECK(!xvl_vq_dev_enable_notify(&v.dev), "event: device re-armed at 5");
	xvl_vq_dev_disable_notify(&v.dev);
	add_chain(&v, 5, 1, 0, 6);
	CHECK(!xvl_vq_drv_kick_prepare(&v.drv), "event: disable_notify suppresses the next kick");
	CHECK(pop(&v) == 1 && xvl_vq_drv_get_used(&v.drv, &token, &len) == 1,
	      "event: pop 6th, driver consumes 5th");
	xvl_vq_drv_disable_cb(&v.drv);
	xvl_vq_dev_push(&v.dev, v.e.head, 0);
	CHECK(!xvl_vq_dev_notify_prepare(&v.dev),
	      "event: disable_cb suppresses the next interrupt");

	/* Without event idx: the flags. */
	env_setup(&v, 8, false, false);
	xvl_vq_dev_disable_notify(&v.dev);
	CHECK(xvl_rd16(&v.dev.used->flags) == XVL_VRING_USED_F_NO_NOTIFY, "flags: NO_NOTIFY set");
	add_chain(&v, 0, 1, 0, 1);
	CHECK(!xvl_vq_drv_kick_prepare(&v.drv), "flags: NO_NOTIFY suppresses the kick");
	CHECK(xvl_vq_dev_enable_notify(&v.dev), "flags: enable sees the pending chain");
	add_chain(&v, 1, 1, 0, 2);
	CHECK(xvl_vq_drv_kick_prepare(&v.drv), "flags: kick once enabled");
	pop(&v);
	xvl_vq_drv_disable_cb(&v.drv);
	CHECK(xvl_rd16(&v.drv.avail->flags) == XVL_VRING_AVAIL_F_NO_INTERRUPT,
	      "flags: NO_INTERRUPT set");
	xvl_vq_dev_push(&v.dev, v.e.head, 0);
	CHECK(!xvl_vq_dev_notify_prepare(&v.dev), "flags: NO_INTERRUPT suppresses the interrupt");
	CHECK(xvl_vq_drv_enable_cb(&v.drv), "flags: enable_cb sees the completion");
	pop(&v);
	xvl_vq_dev_push(&v.dev, v.e.head, 0);
	CHECK(xvl_vq_dev_notify_prepare(&v.dev), "flags: interrupt once enabled");

	/* need_event across the 16-bit wrap. */
	CHECK(xvl_vq_need_event(65535, 1, 65534), "need_event: event inside wrapped window");
	CHECK(!xvl_vq_need_event(2, 1, 65534), "need_event: event past wrapped window");
}

/* --------------------------------------------------- hostile driver input */

/* After the driver broke the ring: the device refuses everything. */
static void expect_dev_broken(struct env *v, int rc, int want, const char *what)
{
	CHECK(rc == want && v->dev.broken, "hostile driver: %s -> %d (got %d)", what, want, rc);
	CHECK(pop(v) == -EIO && xvl_vq_dev_push(&v->dev, 0, 0) == -EIO &&
	      !xvl_vq_dev_notify_prepare(&v->dev) && xvl_vq_dev_has_avail(&v->dev),
	      "hostile driver: %s: device stays broken", what);
}

/* A hand-made ring: head 0 published, descriptors written by the caller. */
static void hand_ring(struct env *v, uint16_t num, bool indirect)
{
	env_setup(v, num, false, indirect);
	raw_avail(v, 0, 0);
	raw_avail_idx(v, 1);
}

static void test_hostile_driver(void)
{
	struct env v;
	struct xvl_vring_desc *t = (struct xvl_vring_desc *)(win + IND_OFF);
	struct xvl_vring_desc *d;
	unsigned i;

	hand_ring(&v, 8, false);
	raw_avail(&v, 0, 8);
	expect_dev_broken(&v, pop(&v), -EIO, "head out of range");

	hand_ring(&v, 8, false);
	raw_avail(&v, 0, 0xffff);
	expect_dev_broken(&v, pop(&v), -EIO, "head 0xffff");

	hand_ring(&v, 8, false);
	d = v.drv.desc;
	raw_desc(&d[0], DATA_OFF, 8, XVL_VRING_DESC_F_NEXT, 1);
	raw_desc(&d[1], DATA_OFF, 8, XVL_VRING_DESC_F_NEXT, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "descriptor loop");

	hand_ring(&v, 8, false);
	raw_desc(&d[0], DATA_OFF, 8, XVL_VRING_DESC_F_NEXT, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "self loop");

	hand_ring(&v, 8, false);
	raw_desc(&d[0], DATA_OFF, 8, XVL_VRING_DESC_F_NEXT, 8);
	expect_dev_broken(&v, pop(&v), -EIO, "next out of range");

	hand_ring(&v, 8, false);
	raw_desc(&d[0], WIN_SIZE - 4, 8, 0, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "buffer crossing window end");

	hand_ring(&v, 8, false);
	raw_desc(&d[0], UINT64_MAX - 4, 8, 0, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "buffer offset overflow");

	hand_ring(&v, 8, false);
	raw_desc(&d[0], WIN_SIZE + 1, 0, 0, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "empty buffer past window end");

	hand_ring(&v, 8, false);
	raw_desc(&d[0], DATA_OFF, UINT32_MAX, XVL_VRING_DESC_F_WRITE, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "4 GiB buffer");

	hand_ring(&v, 8, false);
	raw_desc(&d[0], DATA_OFF, 8, XVL_VRING_DESC_F_NEXT | XVL_VRING_DESC_F_WRITE, 1);
	raw_desc(&d[1], DATA_OFF, 8, 0, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "readable after writable");

	hand_ring(&v, 8, false);
	raw_avail_idx(&v, 9);
	expect_dev_broken(&v, pop(&v), -EIO, "avail idx jump > num");

	hand_ring(&v, 8, false);
	raw_avail_idx(&v, 0xffff);
	expect_dev_broken(&v, pop(&v), -EIO, "avail idx moved backwards");

	hand_ring(&v, 8, false);
	for (i = 0; i < 5; i++)
		raw_desc(&d[i], DATA_OFF, 8, i < 4 ? XVL_VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	expect_dev_broken(&v, xvl_vq_dev_pop(&v.dev, &v.e, 4), -E2BIG, "5 segments, max 4");

	/* Indirect tables. */
	hand_ring(&v, 8, true);
	raw_desc(&d[0], IND_OFF, 32, XVL_VRING_DESC_F_INDIRECT, 0);
	raw_desc(&t[0], DATA_OFF, 8, XVL_VRING_DESC_F_NEXT, 1);
	raw_desc(&t[1], IND_OFF + 256, 32, XVL_VRING_DESC_F_INDIRECT, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "nested indirect");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], IND_OFF, 24, XVL_VRING_DESC_F_INDIRECT, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "indirect table of 24 bytes");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], IND_OFF, 0, XVL_VRING_DESC_F_INDIRECT, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "indirect table of 0 bytes");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], WIN_SIZE - 16, 32, XVL_VRING_DESC_F_INDIRECT, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "indirect table outside window");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], UINT64_MAX - 15, 32, XVL_VRING_DESC_F_INDIRECT, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "indirect table offset overflow");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], IND_OFF + 4, 32, XVL_VRING_DESC_F_INDIRECT, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "misaligned indirect table");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], IND_OFF, 32, XVL_VRING_DESC_F_INDIRECT | XVL_VRING_DESC_F_NEXT, 1);
	raw_desc(&t[0], DATA_OFF, 8, 0, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "INDIRECT with NEXT");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], IND_OFF, 32, XVL_VRING_DESC_F_INDIRECT, 0);
	raw_desc(&t[0], DATA_OFF, 8, XVL_VRING_DESC_F_NEXT, 1);
	raw_desc(&t[1], DATA_OFF, 8, XVL_VRING_DESC_F_NEXT, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "loop inside indirect table");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], IND_OFF, 32, XVL_VRING_DESC_F_INDIRECT, 0);
	raw_desc(&t[0], DATA_OFF, 8, XVL_VRING_DESC_F_NEXT, 2);
	expect_dev_broken(&v, pop(&v), -EIO, "next beyond indirect table");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], IND_OFF, 32, XVL_VRING_DESC_F_INDIRECT, 0);
	raw_desc(&t[0], DATA_OFF, 8, XVL_VRING_DESC_F_WRITE | XVL_VRING_DESC_F_NEXT, 1);
	raw_desc(&t[1], DATA_OFF, 8, 0, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "readable after writable in table");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], DATA_OFF, 8, XVL_VRING_DESC_F_WRITE | XVL_VRING_DESC_F_NEXT, 1);
	raw_desc(&d[1], IND_OFF, 16, XVL_VRING_DESC_F_INDIRECT, 0);
	raw_desc(&t[0], DATA_OFF, 8, 0, 0);
	expect_dev_broken(&v, pop(&v), -EIO, "readable in table after writable in ring");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], IND_OFF, 16 * 6, XVL_VRING_DESC_F_INDIRECT, 0);
	for (i = 0; i < 6; i++)
		raw_desc(&t[i], DATA_OFF, 8, i < 5 ? XVL_VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	expect_dev_broken(&v, xvl_vq_dev_pop(&v.dev, &v.e, 5), -E2BIG,
			  "6 segments in table, max 5");

	/* Legal edge cases that must not be refused. */
	hand_ring(&v, 8, false);
	for (i = 0; i < 8; i++)
		raw_desc(&d[i], DATA_OFF, 8, i < 7 ? XVL_VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	CHECK(pop(&v) == 1 && v.e.n_out == 8, "edge: chain of exactly num descriptors accepted");

	hand_ring(&v, 8, false);
	raw_desc(&d[0], WIN_SIZE - 8, 8, XVL_VRING_DESC_F_NEXT, 1);
	raw_desc(&d[1], WIN_SIZE, 0, XVL_VRING_DESC_F_WRITE, 0);
	CHECK(pop(&v) == 1 && v.e.n_out == 1 && v.e.n_in == 1,
	      "edge: buffers ending at the window end accepted");

	hand_ring(&v, 8, true);
	raw_desc(&d[0], DATA_OFF, 8, XVL_VRING_DESC_F_NEXT, 3);
	raw_desc(&d[3], IND_OFF, 16 * 3, XVL_VRING_DESC_F_INDIRECT, 0);
	raw_desc(&t[0], DATA_OFF, 8, XVL_VRING_DESC_F_NEXT, 2);
	raw_desc(&t[2], DATA_OFF, 8, XVL_VRING_DESC_F_WRITE | XVL_VRING_DESC_F_NEXT, 1);
	raw_desc(&t[1], DATA_OFF, 8, XVL_VRING_DESC_F_WRITE, 0);
	CHECK(pop(&v) == 1 && v.e.n_out == 2 && v.e.n_in == 2,
	      "edge: ring descriptor then indirect table of 3 (out of order) accepted");

	hand_ring(&v, 8, false);
	raw_avail_idx(&v, 8);
	for (i = 0; i < 8; i++)
		raw_avail(&v, (uint16_t)i, 0);
	raw_desc(&d[0], DATA_OFF, 8, 0, 0);
	for (i = 0; i < 8; i++)
		pop(&v);
	CHECK(!v.dev.broken && v.dev.inflight == 8, "edge: avail idx exactly num ahead accepted");
	raw_avail_idx(&v, 9);
	CHECK(pop(&v) == -EIO, "hostile driver: more available than heads while all in flight");
}

/* --------------------------------------------------- hostile device input */

/*
 * Three requests in flight (tokens 100..102, heads 0, 2, 4: 2 descriptors
 * each, 64 writable bytes), then the device writes used entries by hand.
 */
static void hand_used(struct env *v, uint16_t num)
{
	env_setup(v, num, false, false);
	add_chain(v, 0, 1, 1, 100);
	add_chain(v, 1, 1, 1, 101);
	add_chain(v, 2, 1, 1, 102);
}

/* After the device broke the ring: driver refuses, detach returns each token once. */
static void expect_drv_broken(struct env *v, int rc, unsigned want_tokens, const char *what)
{
	uint64_t token;
	uint32_t len;
	unsigned seen = 0, n = 0, dup = 0;

	CHECK(rc == -EIO && v->drv.broken, "hostile device: %s -> -EIO (got %d)", what, rc);
	CHECK(xvl_vq_drv_get_used(&v->drv, &token, &len) == -EIO &&
	      add_chain(v, 5, 1, 0, 1) == -EIO && !xvl_vq_drv_kick_prepare(&v->drv) &&
	      xvl_vq_drv_enable_cb(&v->drv),
	      "hostile device: %s: driver stays broken", what);
	while (n < 100 && xvl_vq_drv_detach(&v->drv, &token) == 1) {
		n++;
		if (token < 100 || token > 102 || (seen & (1u << (token - 100))))
			dup++;
		else
			seen |= 1u << (token - 100);
	}
	CHECK(!dup && seen == want_tokens && xvl_vq_drv_inflight(&v->drv) == 0 &&
	      v->drv.num_free == v->l.num,
	      "hostile device: %s: detach returns each outstanding token once", what);
}

static void test_hostile_device(void)
{
	struct env v;
	uint64_t token;
	uint32_t len;

	hand_used(&v, 8);
	raw_used(&v, 0, 1, 0);
	raw_used_idx(&v, 1);
	expect_drv_broken(&v, xvl_vq_drv_get_used(&v.drv, &token, &len), 7,
			  "used id inside a chain, not a head");

	hand_used(&v, 8);
	raw_used(&v, 0, 6, 0);
	raw_used_idx(&v, 1);
	expect_drv_broken(&v, xvl_vq_drv_get_used(&v.drv, &token, &len), 7,
			  "used id never submitted");

	hand_used(&v, 8);
	raw_used(&v, 0, 8, 0);
	raw_used_idx(&v, 1);
	expect_drv_broken(&v, xvl_vq_drv_get_used(&v.drv, &token, &len), 7, "used id == num");

	hand_used(&v, 8);
	raw_used(&v, 0, UINT32_MAX, 0);
	raw_used_idx(&v, 1);
	expect_drv_broken(&v, xvl_vq_drv_get_used(&v.drv, &token, &len), 7, "used id 2^32-1");

	/* Over-long used lengths are clamped to the writable bytes and counted, not fatal. */
	hand_used(&v, 8);
	raw_used(&v, 0, 2, 65);
	raw_used_idx(&v, 1);
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && len == 64 && !v.drv.broken &&
		      v.drv.len_clamped == 1,
	      "used len beyond writable bytes: clamped to 64 (got %u), counted", len);

	hand_used(&v, 8);
	raw_used(&v, 0, 2, UINT32_MAX);
	raw_used_idx(&v, 1);
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && len == 64 && !v.drv.broken,
	      "used len 2^32-1: clamped to 64 (got %u)", len);

	hand_used(&v, 8);
	raw_used_idx(&v, 4);
	expect_drv_broken(&v, xvl_vq_drv_get_used(&v.drv, &token, &len), 7,
			  "used idx beyond outstanding");

	hand_used(&v, 8);
	raw_used_idx(&v, 0xffff);
	expect_drv_broken(&v, xvl_vq_drv_get_used(&v.drv, &token, &len), 7,
			  "used idx moved backwards");

	/* A valid completion, then the same head again: only two tokens left. */
	hand_used(&v, 8);
	raw_used(&v, 0, 2, 64);
	raw_used(&v, 1, 2, 0);
	raw_used_idx(&v, 2);
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 101 && len == 64,
	      "hostile device: first completion valid");
	expect_drv_broken(&v, xvl_vq_drv_get_used(&v.drv, &token, &len), 5,
			  "same head completed twice");

	/* A read-only chain may not report written bytes. */
	env_setup(&v, 8, false, false);
	add_chain(&v, 0, 2, 0, 100);
	raw_used(&v, 0, 0, 1);
	raw_used_idx(&v, 1);
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && len == 0 && !v.drv.broken,
	      "used len on a read-only chain: clamped to 0 (got %u)", len);

	/* Indirect: the table length must not widen the writable bound. */
	env_setup(&v, 8, false, true);
	add_chain(&v, 0, 1, 2, 100);
	raw_used(&v, 0, 0, 129);
	raw_used_idx(&v, 1);
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && len == 128 && !v.drv.broken,
	      "indirect: the table does not widen the writable bound: clamped to 128 (got %u)", len);

	/* Set broken from outside; detach still works. */
	hand_used(&v, 8);
	xvl_vq_drv_set_broken(&v.drv);
	expect_drv_broken(&v, -EIO, 7, "set_broken from the link");

	/* Detach on a healthy ring reclaims and marks it broken. */
	hand_used(&v, 8);
	CHECK(xvl_vq_drv_detach(&v.drv, &token) == 1 && v.drv.broken,
	      "detach on a live ring marks it broken");

	/* The driver never walks desc[].next from the window. */
	hand_used(&v, 8);
	raw_desc(&v.drv.desc[0], 0, 0, XVL_VRING_DESC_F_NEXT, 6);
	raw_desc(&v.drv.desc[1], 0, 0, XVL_VRING_DESC_F_NEXT, 0);
	raw_used(&v, 0, 0, 64);
	raw_used_idx(&v, 1);
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 100 &&
	      v.drv.num_free == 4,
	      "hostile device: scribbled desc[].next does not change what is freed");
	CHECK(add_chain(&v, 3, 2, 2, 103) == 0 && v.drv.num_free == 0,
	      "hostile device: free list intact after scribble");
}

/* fill/publish (device) and stage/publish (driver): entries are seen in one index store,
 * and an index read once is not read again until its entries are taken. */
static void test_batch(void)
{
	struct env v;
	struct xvl_sg sg[2];
	uint64_t token;
	uint32_t len;
	unsigned ok = 1;

	CHECK(env_setup(&v, 8, false, false), "batch: init both sides");
	for (unsigned i = 0; i < 3; i++) {
		make_sg(sg, i, 0, 1);
		ok &= xvl_vq_drv_stage(&v.drv, sg, 0, 1, 10 + i) == 0;
	}
	CHECK(ok && xvl_rd16(&v.drv.avail->idx) == 0 && pop(&v) == 0,
	      "batch: staged chains are not published: the device sees none");
	xvl_vq_drv_publish(&v.drv);
	CHECK(xvl_rd16(&v.drv.avail->idx) == 3, "batch: publish moves avail idx by 3 at once");
	make_sg(sg, 3, 0, 1);
	CHECK(xvl_vq_drv_stage(&v.drv, sg, 0, 1, 13) == 0 && xvl_vq_drv_kick_prepare(&v.drv) &&
	      xvl_rd16(&v.drv.avail->idx) == 4, "batch: kick_prepare publishes what was staged");
	/* the device read avail idx 4 at its first pop: a driver moving it back is not seen
	 * until those four are taken, and then it is a ring violation */
	CHECK(pop(&v) == 1, "batch: pop 1 of 4");
	raw_avail_idx(&v, 1);
	ok = pop(&v) == 1 && xvl_vq_dev_fill(&v.dev, v.e.head, 0) == 0;
	ok &= pop(&v) == 1 && pop(&v) == 1;
	CHECK(ok, "batch: the chains published before are taken from the index read once");
	CHECK(pop(&v) == -EIO, "batch: then the index moved back is a broken ring");

	CHECK(env_setup(&v, 8, false, false), "batch: init again");
	for (unsigned i = 0; i < 4; i++)
		add_chain(&v, i, 0, 1, 20 + i);
	ok = 1;
	for (unsigned i = 0; i < 4; i++)
		ok &= pop(&v) == 1 && xvl_vq_dev_fill(&v.dev, v.e.head, 5) == 0;
	CHECK(ok && xvl_rd16(&v.dev.used->idx) == 0 &&
	      xvl_vq_drv_get_used(&v.drv, &token, &len) == 0,
	      "batch: filled used entries are not published: the driver sees none");
	xvl_vq_dev_publish(&v.dev);
	CHECK(xvl_rd16(&v.dev.used->idx) == 4, "batch: publish moves used idx by 4 at once");
	xvl_vq_dev_publish(&v.dev);
	CHECK(xvl_rd16(&v.dev.used->idx) == 4, "batch: publishing nothing new changes nothing");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 20 && len == 5,
	      "batch: the driver takes the first");
	raw_used_idx(&v, 1); /* a device moving it back: the three published are still taken */
	ok = 1;
	for (unsigned i = 1; i < 4; i++)
		ok &= xvl_vq_drv_get_used(&v.drv, &token, &len) == 1 && token == 20 + i;
	CHECK(ok, "batch: the entries published are taken from the index read once");
	CHECK(xvl_vq_drv_get_used(&v.drv, &token, &len) == -EIO,
	      "batch: then the index moved back is a broken ring");

	CHECK(env_setup(&v, 8, false, false), "batch: init a third time");
	add_chain(&v, 0, 0, 1, 30);
	CHECK(pop(&v) == 1 && xvl_vq_dev_fill(&v.dev, v.e.head, 1) == 0 &&
	      xvl_vq_dev_notify_prepare(&v.dev) && xvl_rd16(&v.dev.used->idx) == 1,
	      "batch: notify_prepare publishes the filled entry before deciding");
}

int main(void)
{
	test_layout();
	test_init_errors();
	test_basic();
	test_unpop();
	test_add_errors();
	test_mixed_chains();
	test_indirect();
	test_sizes();
	test_event_idx();
	test_hostile_driver();
	test_hostile_device();
	test_wrap();
	test_wrap_65536();
	test_batch();
	return tap_done();
}
