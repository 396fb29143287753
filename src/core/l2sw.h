/* SPDX-License-Identifier: MIT */
/*
 * The forwarding table of xvloop's built-in L2 learning switch: which port
 * a MAC address was last seen on.  Every port is a compartment that may be
 * hostile, so learning is bounded per port (a port spraying random source
 * addresses fills its own quota, not the table) and every probe is bounded
 * by the table size.  Unknown, multicast and broadcast destinations flood.
 *
 * Open addressing with linear probing in caller-provided memory; deletion
 * shifts entries back so no tombstones accumulate.  Time is whatever
 * monotonic unit the caller passes (entries older than `ageing` are gone).
 *
 * Portable core: no OS calls, no allocation.
 */
#ifndef XVL_L2SW_H
#define XVL_L2SW_H

#include <stddef.h>
#include <stdint.h>

#define XVL_L2SW_MAX_PORTS 64u
#define XVL_L2SW_NO_PORT   0xffffu

struct xvl_fdb_entry {
	uint8_t mac[6];
	uint16_t port;     /* XVL_L2SW_NO_PORT: empty slot */
	uint64_t seen;
};

struct xvl_fdb {
	struct xvl_fdb_entry *e;
	uint32_t cap;        /* power of two */
	uint32_t used;
	uint32_t per_port_max;
	uint16_t n_ports;
	uint64_t ageing;
	uint32_t port_count[XVL_L2SW_MAX_PORTS];
};

/* Bytes of memory xvl_fdb_init needs for cap entries. */
static inline size_t xvl_fdb_mem_size(uint32_t cap) { return (size_t)cap * sizeof(struct xvl_fdb_entry); }

/*
 * cap: power of two, at least 2; n_ports 1..XVL_L2SW_MAX_PORTS; per_port_max
 * entries one port may hold (0: cap / n_ports).  Returns 0 or -EINVAL.
 */
int xvl_fdb_init(struct xvl_fdb *f, void *mem, uint32_t cap, uint16_t n_ports,
		 uint32_t per_port_max, uint64_t ageing);

/*
 * Source address mac seen on port at time now: learn or refresh it (a
 * station that moved is moved).  Multicast sources are ignored.  Returns 0,
 * or -ENOSPC when the port's quota or the table is full (frames still flow:
 * they flood), -EINVAL for a port out of range.
 */
int xvl_fdb_learn(struct xvl_fdb *f, const uint8_t mac[6], uint16_t port, uint64_t now);

/* Port of mac, or -ENOENT (unknown or aged out: flood). */
int xvl_fdb_lookup(struct xvl_fdb *f, const uint8_t mac[6], uint64_t now);

/* Forget every address of port (it went away or was reset). */
void xvl_fdb_flush_port(struct xvl_fdb *f, uint16_t port);

/*
 * Forwarding decision for a frame from in_port: the set of output ports as
 * a bit mask (never in_port itself); learns the source on the way.
 * all_ports: the ports that are up.
 */
uint64_t xvl_l2sw_forward(struct xvl_fdb *f, uint16_t in_port, const uint8_t *dst,
			  const uint8_t *src, uint64_t all_ports, uint64_t now);

#endif
