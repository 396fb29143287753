/* SPDX-License-Identifier: MIT */
/*
 * The one place the portable core gets its basic types and memcpy/memset.
 *
 * Hosted and freestanding builds use the C headers every freestanding
 * compiler provides (stdint.h, stddef.h, stdbool.h) and the compiler's
 * memcpy/memset builtins (which may lower to calls a bare-metal link must
 * provide, see scripts/freestanding.sh).  Inside a Linux kernel module
 * (__KERNEL__) the same names come from <linux/types.h> and
 * <linux/string.h>: the kernel has no <stdint.h>.  Core files include this
 * header instead of any libc header, so a Kbuild that compiles
 * src/core/{mailbox,proto,window,virtq}.c needs nothing else.
 */
#ifndef XVL_TYPES_H
#define XVL_TYPES_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/stddef.h>
#include <linux/string.h>
#include <linux/limits.h>
#ifndef UINT16_MAX
#define UINT16_MAX U16_MAX
#endif
#ifndef UINT32_MAX
#define UINT32_MAX U32_MAX
#endif
#ifndef UINT64_MAX
#define UINT64_MAX U64_MAX
#endif
#else
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#endif

#define xvl_memcpy(d, s, n) __builtin_memcpy((d), (s), (n))
#define xvl_memset(d, c, n) __builtin_memset((d), (c), (n))

#endif
