/* SPDX-License-Identifier: MIT */
/* L2 learning switch forwarding table; see l2sw.h. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "l2sw.h"
#include "net.h"
#include "xvl_err.h"

static bool is_pow2(uint32_t x) { return x && !(x & (x - 1)); }

static uint32_t mac_hash(const uint8_t *mac)
{
	/* FNV-1a over the 6 bytes: the table is small, the addresses partly chosen by peers. */
	uint32_t h = 2166136261u;
	for (unsigned i = 0; i < 6; i++)
		h = (h ^ mac[i]) * 16777619u;
	return h ^ (h >> 16);
}

static bool mac_eq(const uint8_t *a, const uint8_t *b)
{
	return !__builtin_memcmp(a, b, 6);
}

static bool empty(const struct xvl_fdb_entry *e) { return e->port == XVL_L2SW_NO_PORT; }

int xvl_fdb_init(struct xvl_fdb *f, void *mem, uint32_t cap, uint16_t n_ports,
		 uint32_t per_port_max, uint64_t ageing)
{
	if (!f || !mem || cap < 2 || !is_pow2(cap) || !n_ports || n_ports > XVL_L2SW_MAX_PORTS)
		return -EINVAL;
	__builtin_memset(f, 0, sizeof(*f));
	f->e = mem;
	f->cap = cap;
	f->n_ports = n_ports;
	f->per_port_max = per_port_max ? per_port_max : cap / n_ports;
	if (!f->per_port_max)
		f->per_port_max = 1;
	f->ageing = ageing;
	for (uint32_t i = 0; i < cap; i++)
		f->e[i].port = XVL_L2SW_NO_PORT;
	return 0;
}

/* Remove slot i and shift the following run back (linear-probing deletion). */
static void remove_at(struct xvl_fdb *f, uint32_t i)
{
	uint32_t mask = f->cap - 1, j = i;

	f->port_count[f->e[i].port]--;
	f->used--;
	f->e[i].port = XVL_L2SW_NO_PORT;
	for (uint32_t n = 0; n < f->cap; n++) {
		j = (j + 1) & mask;
		if (empty(&f->e[j]))
			return;
		uint32_t home = mac_hash(f->e[j].mac) & mask;
		/* Entry j may move into the hole at i unless its home lies in (i, j]. */
		bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (stays)
			continue;
		f->e[i] = f->e[j];
		f->e[j].port = XVL_L2SW_NO_PORT;
		i = j;
	}
}

static bool expired(const struct xvl_fdb *f, const struct xvl_fdb_entry *e, uint64_t now)
{
	return f->ageing && now - e->seen > f->ageing;
}

/* Slot holding mac (an aged entry of it is removed on the way), or -1 with *free_slot set. */
static int64_t find(struct xvl_fdb *f, const uint8_t *mac, uint64_t now, int64_t *free_slot)
{
	uint32_t mask = f->cap - 1, i = mac_hash(mac) & mask;

	*free_slot = -1;
	for (uint32_t n = 0; n < f->cap; n++) {
		struct xvl_fdb_entry *e = &f->e[i];
		if (empty(e)) {
			*free_slot = i;
			return -1;
		}
		if (mac_eq(e->mac, mac)) {
			if (!expired(f, e, now))
				return i;
			remove_at(f, i); /* the run shifted back into i: look at i again */
			continue;
		}
		i = (i + 1) & mask;
	}
	return -1;
}

int xvl_fdb_learn(struct xvl_fdb *f, const uint8_t mac[6], uint16_t port, uint64_t now)
{
	int64_t slot, free_slot;

	if (port >= f->n_ports)
		return -EINVAL;
	if (xvl_eth_is_multicast(mac))
		return 0;
	slot = find(f, mac, now, &free_slot);
	if (slot >= 0) {
		struct xvl_fdb_entry *e = &f->e[slot];
		if (e->port != port) {
			if (f->port_count[port] >= f->per_port_max)
				return -ENOSPC;
			f->port_count[e->port]--;
			f->port_count[port]++;
			e->port = port;
		}
		e->seen = now;
		return 0;
	}
	/* Keep one slot free so every probe ends at an empty slot. */
	if (free_slot < 0 || f->used + 1 >= f->cap || f->port_count[port] >= f->per_port_max)
		return -ENOSPC;
	__builtin_memcpy(f->e[free_slot].mac, mac, 6);
	f->e[free_slot].port = port;
	f->e[free_slot].seen = now;
	f->port_count[port]++;
	f->used++;
	return 0;
}

int xvl_fdb_lookup(struct xvl_fdb *f, const uint8_t mac[6], uint64_t now)
{
	int64_t free_slot, slot = find(f, mac, now, &free_slot);

	return slot < 0 ? -ENOENT : f->e[slot].port;
}

void xvl_fdb_flush_port(struct xvl_fdb *f, uint16_t port)
{
	/*
	 * remove_at shifts later entries back into the hole, and around the end
	 * of the table into slots a pass has already looked at: repeat until a
	 * pass removes nothing (each pass but the last removes one at least).
	 */
	for (uint32_t pass = 0; pass <= f->cap && f->port_count[port]; pass++) {
		bool removed = false;
		for (uint32_t i = 0; i < f->cap;) {
			if (!empty(&f->e[i]) && f->e[i].port == port) {
				remove_at(f, i);
				removed = true;
			} else {
				i++;
			}
		}
		if (!removed)
			return;
	}
}

uint64_t xvl_l2sw_forward(struct xvl_fdb *f, uint16_t in_port, const uint8_t *dst,
			  const uint8_t *src, uint64_t all_ports, uint64_t now)
{
	uint64_t others = all_ports & ~(1ull << in_port);
	int out;

	if (in_port >= f->n_ports)
		return 0;
	xvl_fdb_learn(f, src, in_port, now);
	if (xvl_eth_is_multicast(dst))
		return others;
	out = xvl_fdb_lookup(f, dst, now);
	if (out < 0)
		return others;
	return out == in_port ? 0 : others & (1ull << out);
}
