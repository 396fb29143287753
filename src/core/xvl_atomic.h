/* SPDX-License-Identifier: MIT */
/*
 * Memory ordering and byte order for shared-window access.
 *
 * Everything the peer can write is read exactly once through these helpers:
 * a relaxed atomic load cannot be split or repeated by the compiler, so a
 * value validated once stays the value used (no double fetch).  Ordering is
 * explicit acquire/release so the code is correct on ARMv8 and RISC-V, not
 * only on x86's strong model.  Freestanding: compiler builtins only.
 */
#ifndef XVL_ATOMIC_H
#define XVL_ATOMIC_H

#include "xvl_types.h"

#define xvl_load_relaxed(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define xvl_store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define xvl_load_acquire(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define xvl_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* Full fence: orders an earlier store before a later load (event-idx checks). */
#define xvl_mb()  __atomic_thread_fence(__ATOMIC_SEQ_CST)
/* Earlier loads before later loads and stores. */
#define xvl_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
/* Earlier loads and stores before later stores. */
#define xvl_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

/* Spin-wait hint: lets the sibling hyperthread run, saves power. */
static inline void xvl_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#elif defined(__riscv)
	__asm__ __volatile__(".insn i 0x0F, 0, x0, x0, 0x010" ::: "memory"); /* Zihintpause */
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define xvl_le16(x) __builtin_bswap16(x)
#define xvl_le32(x) __builtin_bswap32(x)
#define xvl_le64(x) __builtin_bswap64(x)
#else
#define xvl_le16(x) ((uint16_t)(x))
#define xvl_le32(x) ((uint32_t)(x))
#define xvl_le64(x) ((uint64_t)(x))
#endif

/* Single-copy little-endian accessors for fields in the window. */
static inline uint16_t xvl_rd16(const uint16_t *p) { return xvl_le16(xvl_load_relaxed(p)); }
static inline uint32_t xvl_rd32(const uint32_t *p) { return xvl_le32(xvl_load_relaxed(p)); }
static inline uint64_t xvl_rd64(const uint64_t *p) { return xvl_le64(xvl_load_relaxed(p)); }
static inline void xvl_wr16(uint16_t *p, uint16_t v) { xvl_store_relaxed(p, xvl_le16(v)); }
static inline void xvl_wr32(uint32_t *p, uint32_t v) { xvl_store_relaxed(p, xvl_le32(v)); }
static inline void xvl_wr64(uint64_t *p, uint64_t v) { xvl_store_relaxed(p, xvl_le64(v)); }

/*
 * Plain little-endian stores, for fields this side owns and publishes with
 * a later release store (descriptors and ring entries before the index):
 * the release orders them, so they need no atomicity of their own, and on
 * RISC-V with gcc 12 an atomic 32/64-bit store would be an AMO.  A peer that
 * reads them early sees what it could have seen anyway: values it validates.
 */
static inline void xvl_put16(uint16_t *p, uint16_t v) { *p = xvl_le16(v); }
static inline void xvl_put32(uint32_t *p, uint32_t v) { *p = xvl_le32(v); }
static inline void xvl_put64(uint64_t *p, uint64_t v) { *p = xvl_le64(v); }

static inline uint16_t xvl_rd16_acquire(const uint16_t *p) { return xvl_le16(xvl_load_acquire(p)); }
static inline void xvl_wr16_release(uint16_t *p, uint16_t v) { xvl_store_release(p, xvl_le16(v)); }

#endif
