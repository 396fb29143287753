/* SPDX-License-Identifier: MIT */
/*
 * vhost-user-net bridge: what a type=net,backend=vhost-user device offers.
 * The rest of the bridge (session, window as the backend's only memory,
 * loss and return) is bridge.c's, shared with blk.
 *
 * A vhost-user-net backend (DPDK's net_vhost, OVS-DPDK's dpdkvhostuser
 * ports) serves the rx and tx rings only; config space and the control
 * queue are the frontend's job (as QEMU does them).  The server makes the
 * config space itself (MAC from the spec, STATUS, max pairs 1) and offers
 * no control queue: one queue pair, rx = 0, tx = 1.  Features offered: the
 * ones the backend offers among those xvloop's drivers understand, plus
 * MAC and STATUS, which only the config space carries (not passed on to
 * the backend, see srv_bridge_features).
 */
#include <errno.h>
#include <string.h>

#include "srv.h"
#include "srv_net.h"
#include "virtio_net.h"

#define BRIDGE_NET_FEATURES                                                                      \
	((1ull << XVL_F_VERSION_1) | (1ull << XVL_F_INDIRECT_DESC) | (1ull << XVL_F_EVENT_IDX) |  \
	 (1ull << XVL_NET_F_MRG_RXBUF) | (1ull << XVL_NET_F_CSUM) | (1ull << XVL_NET_F_GUEST_CSUM) | \
	 (1ull << XVL_NET_F_HOST_TSO4) | (1ull << XVL_NET_F_HOST_TSO6) |                            \
	 (1ull << XVL_NET_F_GUEST_TSO4) | (1ull << XVL_NET_F_GUEST_TSO6))
#define BRIDGE_NET_FRONTEND ((1ull << XVL_NET_F_MAC) | (1ull << XVL_NET_F_STATUS))

int srv_bridge_net_probe(struct srv_dev *d, const struct xvl_vhost *v, struct xvl_errbuf *eb)
{
	uint8_t *c = d->config;
	if (v->num_queues < 2)
		return xvl_err(eb, -EPROTO, "vhost-user backend %s: GET_QUEUE_NUM: %u queue(s), a "
			       "net backend needs an rx and a tx queue", d->spec.path, v->num_queues);
	memset(c, 0, sizeof(d->config));
	if (d->spec.has_mac)
		memcpy(c + XVL_NET_CFG_MAC, d->spec.mac, XVL_ETH_ALEN);
	else
		srv_net_default_mac(d->spec.name, c + XVL_NET_CFG_MAC);
	c[XVL_NET_CFG_STATUS] = XVL_NET_S_LINK_UP; /* the backend answered */
	c[XVL_NET_CFG_MAX_PAIRS] = 1;
	d->config_len = XVL_NET_CFG_SIZE;
	d->features = (v->features & BRIDGE_NET_FEATURES) | BRIDGE_NET_FRONTEND;
	d->num_queues = 2;
	d->vh_probed = true;
	return 0;
}

uint64_t srv_bridge_features(const struct srv_dev *d)
{
	if (d->spec.type != XVL_DEV_NET)
		return d->driver_features;
	/* the offer was the backend's features plus these: what is left, the backend offered */
	return d->driver_features & ~BRIDGE_NET_FRONTEND;
}

void srv_bridge_net_link(struct srv_dev *d, bool up)
{
	if (d->spec.type != XVL_DEV_NET)
		return;
	/* going down: clear LINK_UP; coming back: the probe has set it again already */
	if (!up)
		d->config[XVL_NET_CFG_STATUS] = 0;
	srv_log(d->srv, "device %s: link %s", d->spec.name, up ? "up" : "down");
	if (d->conn)
		srv_dev_event(d, XVL_EVENT_CONFIG, 0, up ? "link up" : "link down");
}
