/* SPDX-License-Identifier: MIT */
/* errno values for the core: from libc when hosted, Linux's numbers when freestanding. */
#ifndef XVL_ERR_H
#define XVL_ERR_H

#if defined(__KERNEL__)
#include <linux/errno.h>
#elif defined(__has_include) && __has_include(<errno.h>) && !defined(XVL_FREESTANDING)
#include <errno.h>
#else
#define EPERM 1
#define EIO 5
#define E2BIG 7
#define EBADF 9
#define EAGAIN 11
#define ENOMEM 12
#define EFAULT 14
#define EBUSY 16
#define EEXIST 17
#define ENODEV 19
#define EINVAL 22
#define ENOSPC 28
#define ERANGE 34
#define ENOSYS 38
#define EBADMSG 74
#define EOVERFLOW 75
#define EMSGSIZE 90
#define EPROTO 71
#define EPROTONOSUPPORT 93
#define EOPNOTSUPP 95
#define ECONNRESET 104
#define ETIMEDOUT 110
#define ESTALE 116
#define ENOENT 2
#define EPIPE 32
#endif

#endif
