/* SPDX-License-Identifier: MIT */
/*
 * Linux tap interfaces for the server's tap backend: open one queue of a
 * tap (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, IFF_MULTI_QUEUE when the device
 * has several queue pairs), non-blocking, with the 12-byte virtio 1.x
 * virtio_net_hdr, and tell the kernel which offloads the reader takes.
 * The interface lives in the network namespace of the calling process.
 */
#ifndef XVL_OS_TAP_H
#define XVL_OS_TAP_H

#include <stdbool.h>

#include "os.h"

/* A non-blocking, close-on-exec fd for one queue of tap ifname (created if
 * missing and the caller may).  Returns the fd or a negative errno. */
int xvl_os_tap_open(const char *ifname, bool multi_queue, struct xvl_errbuf *eb);

/* TUNSETOFFLOAD: frames read from fd may carry partial checksums (csum) and
 * be TCP segmentation super-frames (tso4, tso6).  0 or a negative errno. */
int xvl_os_tap_set_offload(int fd, bool csum, bool tso4, bool tso6);

#endif
