/* SPDX-License-Identifier: MIT */
/* Unit tests of the window header, the bump allocator and the buddy heap (pure core). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "window.h"
#include "xvl_atomic.h"

#define WIN_SIZE (256u * 1024)

static uint64_t win_buf[WIN_SIZE / 8];

static struct xvl_mem fresh_window(void)
{
	struct xvl_mem m = { (uint8_t *)win_buf, WIN_SIZE };
	memset(win_buf, 0xa5, sizeof(win_buf));
	return m;
}

static void test_header(void)
{
	struct xvl_mem m = fresh_window();
	struct xvl_win_hdr *h = (struct xvl_win_hdr *)m.base;

	CHECK(xvl_win_check(&m) == -EINVAL, "check refuses an unformatted window");
	CHECK(xvl_win_format(&m) == 0, "format a %u-byte window", WIN_SIZE);
	CHECK(xvl_win_check(&m) == 0, "check accepts a fresh header");
	CHECK(m.base[0] == 'X' && m.base[1] == 'V' && m.base[2] == 'L' && m.base[3] == 'W',
	      "magic is \"XVLW\" in memory order");
	CHECK(xvl_rd64(&h->size) == WIN_SIZE && xvl_rd32(&h->hdr_size) == XVL_WIN_HDR_SIZE &&
	      xvl_rd32(&h->n_entries) == 0 && xvl_rd16(&h->version_major) == XVL_WIN_VERSION_MAJOR,
	      "header fields hold size, hdr_size, no entries, version");
	bool zero = true;
	for (unsigned i = offsetof(struct xvl_win_hdr, reserved); i < XVL_WIN_HDR_SIZE; i++)
		zero &= m.base[i] == 0;
	CHECK(zero, "rest of the header page is zeroed");
	CHECK(m.base[XVL_WIN_HDR_SIZE] == 0xa5, "format does not touch past the header page");
	uint64_t g1 = xvl_rd64(&h->generation);
	CHECK(xvl_win_format(&m) == 0 && xvl_rd64(&h->generation) == g1 + 1,
	      "re-format bumps the generation (%llu -> %llu)", (unsigned long long)g1,
	      (unsigned long long)xvl_rd64(&h->generation));

	/* Each broken field is refused. */
	xvl_wr32(&h->magic, 0x12345678);
	CHECK(xvl_win_check(&m) == -EINVAL, "bad magic -> -EINVAL");
	xvl_win_format(&m);
	xvl_wr16(&h->version_major, XVL_WIN_VERSION_MAJOR + 1);
	CHECK(xvl_win_check(&m) == -EPROTONOSUPPORT, "unknown major version -> -EPROTONOSUPPORT");
	xvl_win_format(&m);
	xvl_wr16(&h->version_minor, XVL_WIN_VERSION_MINOR + 7);
	CHECK(xvl_win_check(&m) == 0, "newer minor version is accepted");
	xvl_win_format(&m);
	struct xvl_mem smaller = { m.base, WIN_SIZE - 4096 };
	CHECK(xvl_win_check(&smaller) == -EINVAL, "size field != mapped size -> -EINVAL");
	xvl_wr64(&h->size, (uint64_t)WIN_SIZE << 32);
	CHECK(xvl_win_check(&m) == -EINVAL, "huge size field -> -EINVAL");
	xvl_win_format(&m);
	xvl_wr32(&h->hdr_size, 8192);
	CHECK(xvl_win_check(&m) == -EINVAL, "wrong hdr_size -> -EINVAL");
	xvl_win_format(&m);
	xvl_wr32(&h->n_entries, XVL_WIN_MAX_ENTRIES + 1);
	CHECK(xvl_win_check(&m) == -EINVAL, "n_entries past the table -> -EINVAL");
	xvl_wr32(&h->n_entries, UINT32_MAX);
	CHECK(xvl_win_check(&m) == -EINVAL, "n_entries UINT32_MAX -> -EINVAL");
	xvl_wr32(&h->n_entries, XVL_WIN_MAX_ENTRIES);
	CHECK(xvl_win_check(&m) == 0, "n_entries == XVL_WIN_MAX_ENTRIES is fine");

	struct xvl_mem tiny = { m.base, XVL_WIN_MIN_SIZE - 1 };
	CHECK(xvl_win_format(&tiny) == -EINVAL, "format refuses a window below the minimum");
	CHECK(xvl_win_check(&tiny) == -EINVAL, "check refuses a window below the minimum");
	struct xvl_mem hdr_only = { m.base, 100 };
	CHECK(xvl_win_check(&hdr_only) == -EINVAL, "check refuses a window smaller than a header");
	struct xvl_mem min = { m.base, XVL_WIN_MIN_SIZE };
	CHECK(xvl_win_format(&min) == 0 && xvl_win_check(&min) == 0, "minimum size works");
}

static void test_record(void)
{
	struct xvl_mem m = fresh_window();
	struct xvl_win_hdr *h = (struct xvl_win_hdr *)m.base;
	xvl_win_format(&m);

	int rc = 0;
	unsigned i;
	for (i = 0; i < XVL_WIN_MAX_ENTRIES && rc == 0; i++)
		rc = xvl_win_record(&m, XVL_WIN_DESC, (uint16_t)i, (uint16_t)(i * 3),
				    XVL_WIN_HDR_SIZE + i * 64, 64);
	CHECK(rc == 0 && xvl_rd32(&h->n_entries) == XVL_WIN_MAX_ENTRIES,
	      "recorded %u entries", XVL_WIN_MAX_ENTRIES);
	CHECK(xvl_win_record(&m, XVL_WIN_HEAP, 0, 0, XVL_WIN_HDR_SIZE, 64) == -ENOSPC,
	      "table full -> -ENOSPC");
	CHECK(xvl_rd32(&h->n_entries) == XVL_WIN_MAX_ENTRIES, "n_entries unchanged when full");
	const struct xvl_win_entry *e = &h->table[77];
	CHECK(xvl_rd32(&e->type) == XVL_WIN_DESC && xvl_rd16(&e->dev) == 77 &&
	      xvl_rd16(&e->queue) == 231 && xvl_rd64(&e->off) == XVL_WIN_HDR_SIZE + 77 * 64 &&
	      xvl_rd64(&e->len) == 64, "entry 77 reads back");
	CHECK(xvl_win_check(&m) == 0, "a full table still checks");

	xvl_win_format(&m);
	CHECK(xvl_win_record(&m, XVL_WIN_HEAP, 0, 0, WIN_SIZE - 10, 11) == -EINVAL,
	      "entry reaching past the window -> -EINVAL");
	CHECK(xvl_win_record(&m, XVL_WIN_HEAP, 0, 0, UINT64_MAX - 5, 10) == -EINVAL,
	      "overflowing entry -> -EINVAL");
	CHECK(xvl_rd32(&h->n_entries) == 0, "refused entries are not recorded");
}

static void test_bump(void)
{
	struct xvl_bump b;
	xvl_bump_init(&b, 4096, 8192);
	uint64_t a1 = xvl_bump_alloc(&b, 10, 1);
	uint64_t a2 = xvl_bump_alloc(&b, 100, 64);
	uint64_t a3 = xvl_bump_alloc(&b, 1, 4096);
	CHECK(a1 == 4096, "first allocation at the start (%llu)", (unsigned long long)a1);
	CHECK(a2 == 4096 + 64, "aligned to 64 (%llu)", (unsigned long long)a2);
	CHECK(a3 == 0, "no aligned 4 KiB room left -> 0");
	uint64_t a4 = xvl_bump_alloc(&b, 8192 - 4096 - 164, 1);
	CHECK(a4 == 4096 + 164, "fill exactly to the end (%llu)", (unsigned long long)a4);
	CHECK(xvl_bump_alloc(&b, 1, 1) == 0, "exhausted -> 0");
	CHECK(xvl_bump_alloc(&b, 0, 1) == 0, "zero length -> 0");

	xvl_bump_init(&b, 4096, 65536);
	CHECK(xvl_bump_alloc(&b, 8, 3) == 0, "non-power-of-two alignment -> 0");
	CHECK(xvl_bump_alloc(&b, UINT64_MAX, 8) == 0, "huge length -> 0");
	CHECK(xvl_bump_alloc(&b, 8, 1ull << 63) == 0, "alignment past the end -> 0");
	uint64_t x = xvl_bump_alloc(&b, 8, 0);
	CHECK(x == 4096, "alignment 0 means 1");

	xvl_bump_init(&b, 0, 4096);
	uint64_t z = xvl_bump_alloc(&b, 16, 16);
	CHECK(z != 0 && z % 16 == 0, "start 0: success is never offset 0 (%llu)",
	      (unsigned long long)z);
	xvl_bump_init(&b, 0, 16);
	CHECK(xvl_bump_alloc(&b, 16, 16) == 0, "start 0: no room past offset 0 -> 0");

	xvl_bump_init(&b, UINT64_MAX - 100, UINT64_MAX);
	CHECK(xvl_bump_alloc(&b, 8, 4096) == 0, "alignment overflow -> 0");

	bool ok = true;
	uint64_t prev_end = 4096;
	xvl_bump_init(&b, 4096, 1 << 20);
	for (unsigned i = 1; i < 200; i++) {
		uint64_t al = 1ull << (i % 10), len = i * 7;
		uint64_t o = xvl_bump_alloc(&b, len, al);
		if (!o || o % al || o < prev_end || o + len > (1 << 20))
			ok = false;
		prev_end = o + len;
	}
	CHECK(ok, "199 mixed allocations aligned, ordered, inside the range");
}

/* ------------------------------------------------------------ heap tests */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void *meta_for(uint64_t len, unsigned min_order)
{
	size_t sz = xvl_heap_meta_size(len, min_order);
	return sz ? malloc(sz) : NULL;
}

static void test_heap_basic(void)
{
	struct xvl_heap h;
	const uint64_t off = 1 << 20, len = 1 << 20;
	void *meta = meta_for(len, 12);

	CHECK(xvl_heap_init(&h, off, len, 12, meta) == 0, "init 1 MiB heap of 4 KiB blocks");
	CHECK(h.bytes_free == len, "all bytes free");
	uint64_t a = xvl_heap_alloc(&h, 1);
	uint64_t b = xvl_heap_alloc(&h, 4096);
	uint64_t c = xvl_heap_alloc(&h, 4097);
	uint64_t d = xvl_heap_alloc(&h, 300000);
	CHECK(a && b && c && d, "four allocations succeed");
	CHECK(a % 4096 == 0 && b % 4096 == 0 && c % 8192 == 0 && d % 524288 == 0,
	      "blocks aligned to their size");
	CHECK(a >= off && d + 524288 <= off + len, "blocks inside the heap");
	CHECK(h.bytes_free == len - 4096 - 4096 - 8192 - 524288, "bytes_free tracks rounding");
	CHECK(xvl_heap_alloc(&h, len + 1) == 0, "larger than the heap -> 0");
	CHECK(xvl_heap_alloc(&h, 0) == 0, "zero length -> 0");
	CHECK(xvl_heap_alloc(&h, UINT64_MAX) == 0, "UINT64_MAX -> 0");
	CHECK(xvl_heap_alloc(&h, 524288) == 0, "no second half-heap block while one is out");

	CHECK(xvl_heap_free(&h, c + 4096) == -EINVAL, "free inside a block -> -EINVAL");
	CHECK(xvl_heap_free(&h, a + 1) == -EINVAL, "free of a misaligned offset -> -EINVAL");
	CHECK(xvl_heap_free(&h, off - 4096) == -EINVAL, "free below the heap -> -EINVAL");
	CHECK(xvl_heap_free(&h, off + len) == -EINVAL, "free past the heap -> -EINVAL");
	CHECK(xvl_heap_free(&h, 0) == -EINVAL, "free of 0 -> -EINVAL");
	CHECK(xvl_heap_free(&h, UINT64_MAX) == -EINVAL, "free of UINT64_MAX -> -EINVAL");
	uint64_t never = off + len - 4096;
	CHECK(xvl_heap_free(&h, never) == -EINVAL, "free of a never-allocated block -> -EINVAL");

	CHECK(xvl_heap_free(&h, b) == 0, "free b");
	CHECK(xvl_heap_free(&h, b) == -EINVAL, "double free -> -EINVAL");
	CHECK(xvl_heap_free(&h, a) == 0 && xvl_heap_free(&h, c) == 0 && xvl_heap_free(&h, d) == 0,
	      "free the rest");
	CHECK(xvl_heap_free(&h, a) == -EINVAL, "double free after merging -> -EINVAL");
	CHECK(h.bytes_free == len, "everything free again");
	CHECK(xvl_heap_alloc(&h, len) == off, "coalesced back to one 1 MiB block");
	CHECK(xvl_heap_alloc(&h, 1) == 0, "and then nothing is left");
	free(meta);
}

static void test_heap_bad_init(void)
{
	struct xvl_heap h;
	uint32_t meta[1024];
	CHECK(xvl_heap_init(&h, 4096, 0, 12, meta) == -EINVAL, "zero length -> -EINVAL");
	CHECK(xvl_heap_init(&h, 4096, 4095, 12, meta) == -EINVAL, "less than one block -> -EINVAL");
	CHECK(xvl_heap_init(&h, 4097, 8190, 12, meta) == -EINVAL,
	      "no whole aligned block -> -EINVAL");
	CHECK(xvl_heap_init(&h, 0, 65536, 12, meta) == -EINVAL,
	      "heap at offset 0 (the header) -> -EINVAL");
	CHECK(xvl_heap_init(&h, 4096, 65536, 12, NULL) == -EINVAL, "no metadata -> -EINVAL");
	CHECK(xvl_heap_init(&h, 4096, 65536, 12, (uint8_t *)meta + 1) == -EINVAL,
	      "misaligned metadata -> -EINVAL");
	CHECK(xvl_heap_init(&h, UINT64_MAX - 4095, 8192, 12, meta) == -EINVAL,
	      "range wrapping around -> -EINVAL");
	CHECK(xvl_heap_init(&h, 4096, 65536, 63, meta) == -EINVAL, "absurd min_order -> -EINVAL");
	CHECK(xvl_heap_meta_size(65536, 12) <= sizeof(meta), "meta size for 16 blocks is small (%zu)",
	      xvl_heap_meta_size(65536, 12));
}

/* A heap not aligned to a power of two: [4096, 4096 + 3 MiB - 12 KiB). */
static void test_heap_odd_range(void)
{
	struct xvl_heap h;
	const uint64_t off = 4096 + 100, len = 3 * 1048576 - 12288 - 100;
	void *meta = meta_for(len, 12);
	CHECK(xvl_heap_init(&h, off, len, 12, meta) == 0, "init an odd-sized, odd-offset heap");
	CHECK(h.off == 8192 && h.off + h.len <= off + len, "managed range rounded inwards");
	uint64_t total = h.bytes_free, got = 0;
	bool ok = true;
	uint64_t offs[1024];
	unsigned n = 0;
	uint64_t o;
	while ((o = xvl_heap_alloc(&h, 4096)) != 0 && n < 1024) {
		if (o < off || o + 4096 > off + len || o % 4096)
			ok = false;
		offs[n++] = o;
		got += 4096;
	}
	CHECK(ok && got == total, "all %u minimum blocks handed out, inside the range", n);
	for (unsigned i = 0; i < n; i++)
		ok &= xvl_heap_free(&h, offs[(i * 7919) % n]) == 0;
	CHECK(ok && h.bytes_free == total, "freed in scrambled order");
	o = xvl_heap_alloc(&h, 1048576);
	CHECK(o && o % 1048576 == 0, "a 1 MiB aligned block after coalescing (%llu)",
	      (unsigned long long)o);
	free(meta);
}

/* Random alloc/free against a shadow map of minimum blocks. */
static void test_heap_stress(void)
{
	struct xvl_heap h;
	const unsigned min_order = 9;
	const uint64_t off = 1 << 22, len = 1 << 22;
	const unsigned nmin = len >> min_order;
	void *meta = meta_for(len, min_order);
	uint8_t *shadow = calloc(nmin, 1);
	struct { uint64_t off, size; } live[512];
	unsigned nlive = 0, allocs = 0, fails = 0;
	bool overlap = false, misaligned = false, badfree = false, accounting = true;
	bool emptyfail = false;
	uint64_t used = 0;

	CHECK(xvl_heap_init(&h, off, len, min_order, meta) == 0, "init 4 MiB heap of 512 B blocks");
	for (unsigned it = 0; it < 200000; it++) {
		bool do_alloc = nlive == 0 || (nlive < 512 && (rnd() % 100) < 55);
		if (do_alloc) {
			uint64_t want = 1 + rnd() % ((rnd() % 8 == 0) ? (1 << 20) : 8192);
			uint64_t size = 1ull << min_order;
			while (size < want)
				size <<= 1;
			uint64_t o = xvl_heap_alloc(&h, want);
			if (!o) {
				fails++;
				if (used == 0)
					emptyfail = true; /* an empty heap must serve any fitting size */
				continue;
			}
			allocs++;
			if (o % size || o < off || o + size > off + len)
				misaligned = true;
			for (uint64_t b = (o - off) >> min_order; b < (o - off + size) >> min_order; b++) {
				if (shadow[b])
					overlap = true;
				shadow[b] = 1;
			}
			live[nlive].off = o;
			live[nlive].size = size;
			nlive++;
			used += size;
		} else {
			unsigned k = (unsigned)(rnd() % nlive);
			uint64_t o = live[k].off, size = live[k].size;
			if (xvl_heap_free(&h, o) != 0)
				badfree = true;
			for (uint64_t b = (o - off) >> min_order; b < (o - off + size) >> min_order; b++)
				shadow[b] = 0;
			live[k] = live[--nlive];
			used -= size;
			if (it % 97 == 0 && xvl_heap_free(&h, o) != -EINVAL)
				badfree = true;
		}
		if (h.bytes_free != len - used)
			accounting = false;
	}
	CHECK(!overlap, "no two live blocks overlap (%u allocations, %u refused)", allocs, fails);
	CHECK(!misaligned, "every block aligned to its size and inside the heap");
	CHECK(!badfree, "every free of a live block succeeds, every double free is refused");
	CHECK(accounting, "bytes_free matches the shadow model throughout");
	CHECK(!emptyfail, "an empty heap never refused a fitting size");
	while (nlive)
		xvl_heap_free(&h, live[--nlive].off);
	CHECK(h.bytes_free == len, "all freed");
	CHECK(xvl_heap_alloc(&h, len) == off, "fully coalesced back to one block");
	free(shadow);
	free(meta);
}

int main(void)
{
	test_header();
	test_record();
	test_bump();
	test_heap_basic();
	test_heap_bad_init();
	test_heap_odd_range();
	test_heap_stress();
	return tap_done();
}
