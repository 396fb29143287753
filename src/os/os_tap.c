/* SPDX-License-Identifier: MIT */
/* Linux tap interfaces (os_tap.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "os_tap.h"

#define TAP_VNET_HDR_SIZE 12 /* virtio 1.x: num_buffers included */

int xvl_os_tap_open(const char *ifname, bool multi_queue, struct xvl_errbuf *eb)
{
	struct ifreq ifr;
	if (strlen(ifname) >= IFNAMSIZ)
		return xvl_err(eb, -EINVAL, "tap %s: the name is longer than %d bytes", ifname,
			       IFNAMSIZ - 1);
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return xvl_err(eb, -errno, "tap %s: /dev/net/tun: %s", ifname, strerror(errno));
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, ifname);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi_queue ? IFF_MULTI_QUEUE : 0);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		close(fd);
		return xvl_err(eb, -e, "tap %s: TUNSETIFF: %s%s", ifname, strerror(e),
			       e == EPERM ? " (needs CAP_NET_ADMIN, or a persistent tap owned by "
					    "this user: ip tuntap add mode tap user ...)"
			       : e == EINVAL ? " (an existing tap made without vnet_hdr or "
					       "with another multi_queue setting?)" : "");
	}
	int sz = TAP_VNET_HDR_SIZE;
	if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
		int e = errno;
		close(fd);
		return xvl_err(eb, -e, "tap %s: TUNSETVNETHDRSZ 12: %s", ifname, strerror(e));
	}
	return fd;
}

int xvl_os_tap_set_offload(int fd, bool csum, bool tso4, bool tso6)
{
	unsigned off = 0;
	if (csum) {
		off |= TUN_F_CSUM;
		if (tso4)
			off |= TUN_F_TSO4;
		if (tso6)
			off |= TUN_F_TSO6;
	}
	return ioctl(fd, TUNSETOFFLOAD, off) < 0 ? -errno : 0;
}
