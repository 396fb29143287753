/* SPDX-License-Identifier: MIT */
/*
 * tap backend of net devices: a tap interface in the server's network
 * namespace (the device compartment's), one tap queue per queue pair
 * (IFF_MULTI_QUEUE when there are several).  Frames the driver transmits
 * are written to the tap with their virtio_net_hdr (the kernel checks it
 * again); frames the kernel sends are read only while the driver has rx
 * buffers posted: with none, the tap is not watched and the rx queue asks
 * for a kick, so the kernel's queue holds the frames (and drops when full)
 * and the loop never spins or waits on it.  All fds are non-blocking.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "os_tap.h"
#include "srv_net.h"

#define TAP_BUDGET 64u /* frames read per queue per event */

int srv_tap_open(struct srv_dev *d, struct xvl_errbuf *eb)
{
	struct srv_net *n = d->net;
	for (uint16_t p = 0; p < n->max_pairs; p++) {
		int fd = xvl_os_tap_open(d->spec.ifname, n->max_pairs > 1, eb);
		if (fd < 0)
			return fd; /* srv_tap_close (at destroy) closes the others */
		n->tap_fd[p] = fd;
		n->tap_queues = (uint16_t)(p + 1);
	}
	return 0;
}

static void tap_unwatch(struct srv_dev *d)
{
	struct srv_net *n = d->net;
	for (uint16_t p = 0; p < n->tap_queues; p++) {
		if (n->tap_watched[p])
			srv_unwatch(d->srv, n->tap_fd[p]);
		n->tap_watched[p] = n->tap_waiting[p] = false;
	}
}

void srv_tap_close(struct srv_dev *d)
{
	struct srv_net *n = d->net;
	tap_unwatch(d);
	for (uint16_t p = 0; p < n->tap_queues; p++)
		close(n->tap_fd[p]);
	n->tap_queues = 0;
}

void srv_tap_start(struct srv_dev *d)
{
	struct srv_net *n = d->net;
	bool csum = d->driver_features & (1ull << XVL_NET_F_GUEST_CSUM);
	bool tso4 = d->driver_features & (1ull << XVL_NET_F_GUEST_TSO4);
	bool tso6 = d->driver_features & (1ull << XVL_NET_F_GUEST_TSO6);
	for (uint16_t p = 0; p < n->tap_queues; p++) {
		int rc = xvl_os_tap_set_offload(n->tap_fd[p], csum, tso4, tso6);
		if (rc < 0)
			srv_log(d->srv, "device %s: TUNSETOFFLOAD: %s (offloads stay off)",
				d->spec.name, strerror(-rc));
		if (srv_watch(d->srv, n->tap_fd[p], &n->tap_w[p], W_TAP, n) == 0)
			n->tap_watched[p] = true;
	}
}

void srv_tap_stop(struct srv_dev *d)
{
	tap_unwatch(d);
}

void srv_tap_output(struct srv_dev *d, uint16_t pair, const uint8_t *buf, uint32_t len)
{
	struct srv_net *n = d->net;
	int fd = n->tap_fd[pair % n->tap_queues];
	ssize_t w = write(fd, buf, len);
	if (w == (ssize_t)len) {
		d->st_requests++;
		d->st_bytes += len - XVL_NET_HDR_SIZE;
		return;
	}
	srv_net_drop(d, NET_DROP_BACKEND, "tap %s: write: %s", d->spec.ifname,
		     w < 0 ? strerror(errno) : "short write");
}

/* No rx buffers: stop reading the tap until the driver kicks the rx queue. */
static bool tap_park(struct srv_dev *d, uint16_t p, struct srv_queue *q)
{
	struct srv_net *n = d->net;
	if (xvl_vq_dev_has_avail(&q->vq))
		return false;
	xvl_vq_dev_enable_notify(&q->vq);
	if (xvl_vq_dev_has_avail(&q->vq)) /* posted meanwhile */
		return false;
	srv_watch_events(d->srv, n->tap_fd[p], &n->tap_w[p], 0);
	n->tap_waiting[p] = true;
	return true;
}

static void tap_read(struct srv_dev *d, uint16_t p)
{
	struct srv_net *n = d->net;
	struct srv_queue *q = &d->q[xvl_net_rxq((uint16_t)(p % n->active_pairs))];
	struct xvl_net_accept a = {
		.max_frame = SRV_NET_MAX_FRAME, .max_gso_frame = SRV_NET_MAX_FRAME,
		.csum = d->driver_features & (1ull << XVL_NET_F_GUEST_CSUM),
		.tso4 = d->driver_features & (1ull << XVL_NET_F_GUEST_TSO4),
		.tso6 = d->driver_features & (1ull << XVL_NET_F_GUEST_TSO6),
		.max_buffers = 1,
	};
	if (!srv_dev_running(d) || !q->enabled) {
		/* broken, failed, or no rx queue: nobody will take frames until a reset (which
		 * unwatches the tap) and a new DRIVER_OK; a readable tap must not spin the loop */
		srv_watch_events(d->srv, n->tap_fd[p], &n->tap_w[p], 0);
		return;
	}
	for (unsigned i = 0; i < TAP_BUDGET; i++) {
		if (tap_park(d, p, q))
			break;
		ssize_t r = read(n->tap_fd[p], n->stage, sizeof(n->stage));
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (r < (ssize_t)XVL_NET_HDR_SIZE) {
			srv_net_drop(d, NET_DROP_BACKEND, "tap %s: read: %s", d->spec.ifname,
				     r < 0 ? strerror(errno) : "short frame");
			break;
		}
		struct xvl_net_hdr h;
		uint32_t len = (uint32_t)r - XVL_NET_HDR_SIZE;
		xvl_net_hdr_decode(n->stage, &h);
		h.num_buffers = 0;
		enum xvl_net_verdict v = xvl_net_frame_check(&h, len, &a);
		if (v != XVL_NET_FRAME_OK) {
			srv_net_drop(d, NET_DROP_BACKEND, "from tap %s: %s", d->spec.ifname,
				     xvl_net_verdict_name(v));
			continue;
		}
		srv_net_rx(d, p, &h, n->stage + XVL_NET_HDR_SIZE, len);
	}
	srv_net_flush(d->srv);
}

void srv_tap_event(struct srv_watch *w)
{
	struct srv_net *n = w->obj;
	tap_read(n->dev, (uint16_t)(w - n->tap_w));
}

void srv_tap_rx_refilled(struct srv_dev *d, uint16_t pair)
{
	struct srv_net *n = d->net;
	for (uint16_t p = 0; p < n->tap_queues; p++) {
		if (!n->tap_waiting[p] || p % n->active_pairs != pair)
			continue;
		n->tap_waiting[p] = false;
		srv_watch_events(d->srv, n->tap_fd[p], &n->tap_w[p], EPOLLIN);
		tap_read(d, p);
	}
}
