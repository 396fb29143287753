/* SPDX-License-Identifier: MIT */
/*
 * xvl net tap: a tap interface (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) whose
 * frames go through the virtio-net device.  The kernel writes each frame
 * with a 12-byte virtio_net_hdr (TUNSETVNETHDRSZ), which carries the
 * checksum / TSO metadata; it is handed to the device as the frame's
 * offload flags, and received frames go the other way.  The tap is told
 * (TUNSETOFFLOAD) to leave only the offloads the device took to us.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <net/if_arp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cli.h"
#include "net_cmd.h"

#define TAP_HDR   12u
#define TAP_BURST 32u
#define TAP_FRAME (65535u + 18u)

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

/* virtio_net_hdr (little-endian, as the tap reads and writes it with VNET_LE on LE hosts). */
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static int tap_open(const char *ifname, const struct xvl_net_info *in)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return cli_fail(1, "net", "cannot open /dev/net/tun: %s", strerror(errno)), -1;
	struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	int hdr = TAP_HDR;
	unsigned off = 0;
	if (in->csum)
		off |= TUN_F_CSUM;
	if (in->csum && in->tso)
		off |= TUN_F_TSO4 | TUN_F_TSO6;
	const char *what = "TUNSETIFF";
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || (what = "TUNSETVNETHDRSZ", ioctl(fd, TUNSETVNETHDRSZ, &hdr)) < 0 ||
	    (what = "TUNSETOFFLOAD", ioctl(fd, TUNSETOFFLOAD, off)) < 0) {
		cli_fail(1, "net", "tap %s: %s: %s%s", ifname, what, strerror(errno),
			 errno == EPERM ? " (needs CAP_NET_ADMIN)" : "");
		close(fd);
		return -1;
	}
	return fd;
}

/* The device's MAC and MTU on the interface, and up. */
static int tap_configure(const char *ifname, const struct xvl_net_info *in)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return cli_fail(1, "net", "socket: %s", strerror(errno));
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
	memcpy(ifr.ifr_hwaddr.sa_data, in->mac, 6);
	const char *what = "SIOCSIFHWADDR";
	int rc = ioctl(s, SIOCSIFHWADDR, &ifr);
	if (rc == 0) {
		what = "SIOCSIFMTU";
		ifr.ifr_mtu = in->mtu;
		rc = ioctl(s, SIOCSIFMTU, &ifr);
	}
	if (rc == 0) {
		what = "SIOCGIFFLAGS";
		rc = ioctl(s, SIOCGIFFLAGS, &ifr);
	}
	if (rc == 0) {
		what = "SIOCSIFFLAGS";
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	if (rc < 0)
		cli_fail(1, "net", "tap %s: %s: %s", ifname, what, strerror(errno));
	close(s);
	return rc < 0 ? 1 : 0;
}

/* Frames the kernel sent on the tap: to the device.  Returns frames moved, or -1. */
static int tap_to_dev(int fd, struct xvl_net *n, uint8_t (*buf)[TAP_HDR + TAP_FRAME],
		      uint64_t *dropped)
{
	struct xvl_net_frame f[TAP_BURST];
	unsigned k = 0;
	while (k < TAP_BURST) {
		ssize_t r = read(fd, buf[k], TAP_HDR + TAP_FRAME);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (r < 0)
			return -1;
		if (r < (ssize_t)TAP_HDR + 14) {
			(*dropped)++;
			continue;
		}
		const uint8_t *h = buf[k];
		f[k] = (struct xvl_net_frame){.data = buf[k] + TAP_HDR, .len = (uint32_t)r - TAP_HDR,
					      .gso_type = h[1], .hdr_len = le16(h + 2),
					      .gso_size = le16(h + 4), .csum_start = le16(h + 6),
					      .csum_offset = le16(h + 8)};
		if (h[0] & 1)
			f[k].flags |= XVL_NET_TX_CSUM;
		k++;
	}
	unsigned sent = 0;
	for (int tries = 0; sent < k && tries < 100; tries++) {
		int r = xvl_net_tx_burst(n, 0, f + sent, k - sent);
		if (r == -EINVAL) { /* a frame the device would not take: skip it */
			(*dropped)++;
			sent++;
			continue;
		}
		if (r < 0)
			return -1;
		sent += (unsigned)r;
		if (r == 0)
			xvl_net_tx_reclaim(n, 0, NULL, 256);
	}
	*dropped += k - sent;
	return (int)k;
}

/* Frames from the device: to the kernel. */
static int dev_to_tap(int fd, struct xvl_net *n, uint64_t *dropped)
{
	struct xvl_net_frame f[TAP_BURST];
	int got = xvl_net_rx_burst(n, 0, f, TAP_BURST);
	for (int i = 0; i < got; i++) {
		uint8_t h[TAP_HDR] = {0};
		if (f[i].flags & XVL_NET_TX_CSUM)
			h[0] |= 1; /* NEEDS_CSUM */
		if (f[i].flags & XVL_NET_RX_CSUM_OK)
			h[0] |= 2; /* DATA_VALID */
		h[1] = f[i].gso_type;
		put16(h + 2, f[i].hdr_len);
		put16(h + 4, f[i].gso_size);
		put16(h + 6, f[i].csum_start);
		put16(h + 8, f[i].csum_offset);
		struct iovec iov[2] = {{h, TAP_HDR}, {f[i].data, f[i].len}};
		if (writev(fd, iov, 2) < 0)
			(*dropped)++;
	}
	return got;
}

int net_do_tap(struct net_args *a, struct xvl_client *c, struct xvl_net *n)
{
	static uint8_t buf[TAP_BURST][TAP_HDR + TAP_FRAME];
	struct xvl_net_info in;
	xvl_net_get_info(n, &in);
	int fd = tap_open(a->ifname, &in);
	if (fd < 0)
		return 1;
	if (tap_configure(a->ifname, &in)) {
		close(fd);
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	int qfd = xvl_net_queue_fd(n, 0);
	fprintf(stderr, "xvl net: tap %s on %s (mtu %u%s%s)\n", a->ifname, in.name, in.mtu,
		in.csum ? ", csum" : "", in.tso ? ", tso" : "");
	uint64_t dropped = 0;
	unsigned relinks = xvl_client_reconnects(c);
	int rc = 0;
	while (!stop) {
		int t = tap_to_dev(fd, n, buf, &dropped);
		int r = dev_to_tap(fd, n, &dropped);
		if (xvl_client_reconnects(c) != relinks) { /* --reconnect-ms rode out a device-side restart */
			relinks = xvl_client_reconnects(c);
			fprintf(stderr, "xvl net: tap %s: link was down (the server went away), up again "
				"after reconnect #%u\n", a->ifname, relinks);
		}
		if (t < 0 || r < 0) {
			rc = cli_fail(1, "net", "%s", r < 0 ? "device gone" : strerror(errno));
			break;
		}
		if (t || r)
			continue;
		if (qfd < 0) { /* poll mode */
			struct pollfd p = {.fd = fd, .events = POLLIN};
			poll(&p, 1, 0);
			continue;
		}
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = qfd, .events = POLLIN}};
		if (poll(p, 2, 200) < 0 && errno != EINTR) {
			rc = cli_fail(1, "net", "poll: %s", strerror(errno));
			break;
		}
		if (xvl_net_link_status(n) < 0) {
			rc = cli_fail(1, "net", "device gone: %s", xvl_client_errmsg(c));
			break;
		}
	}
	struct xvl_net_stats st;
	xvl_net_get_stats(n, &st);
	fprintf(stderr,
		"xvl net: tap %s: %llu frames out, %llu in, %llu dropped here, %llu by checks "
		"(%llu lengths, %llu num_buffers, %llu headers)\n",
		a->ifname, (unsigned long long)st.tx_frames, (unsigned long long)st.rx_frames,
		(unsigned long long)dropped, (unsigned long long)st.rx_dropped,
		(unsigned long long)st.rx_bad_len, (unsigned long long)st.rx_bad_buffers,
		(unsigned long long)st.rx_bad_hdr);
	close(fd);
	return rc;
}
