/* SPDX-License-Identifier: MIT */
/*
 * The built-in L2 learning switch: every type=net,backend=switch device of
 * one server naming the same switch is one of its ports.  A frame from a
 * port's tx queue goes through the forwarding table (src/core/l2sw.c:
 * bounded learning per port, ageing) and is copied at once into the rx
 * buffers of the destination port(s) whose rx filter takes it -- for one
 * destination straight from the sender's tx buffers, for several from one
 * private copy (srv_net.h: every byte read once) -- or dropped
 * and counted at a port that has no buffers: nothing waits inside the
 * switch, so no port can block another.  Ports that are not RUNNING are
 * down: the forwarding table never sends to them.
 *
 * spoof=on: frames whose source MAC is not the port's own are dropped and
 * counted, and the driver cannot change that MAC (netdev.c).
 *
 * One thread serves every port of a switch: delivery writes into another
 * device's rx ring and uses its staging state, with no lock.  Serving
 * queues from several threads needs the ports of one switch on one thread
 * (or a lock per port's rx side).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "srv_net.h"

#define SW_FDB_CAP     1024u
#define SW_AGEING_NS   (300ull * 1000000000ull)

struct srv_switch {
	char name[16];
	unsigned refs;
	struct srv_dev *port[XVL_L2SW_MAX_PORTS];
	uint16_t n_ports;
	struct xvl_fdb fdb;
	struct xvl_fdb_entry mem[SW_FDB_CAP];
};

/* The switch called name among the devices opened before d, if any. */
static struct srv_switch *find_switch(struct srv_dev *d)
{
	struct srv *s = d->srv;
	for (unsigned i = 0; i < d->index; i++) {
		struct srv_net *n = s->dev[i].net;
		if (n && n->sw && !strcmp(n->sw->name, d->spec.sw))
			return n->sw;
	}
	return NULL;
}

int srv_sw_attach(struct srv_dev *d, struct xvl_errbuf *eb)
{
	struct srv_net *n = d->net;
	struct srv_switch *sw = find_switch(d);
	if (!sw) {
		sw = calloc(1, sizeof(*sw));
		if (!sw)
			return xvl_err(eb, -ENOMEM, "switch %s: out of memory", d->spec.sw);
		strcpy(sw->name, d->spec.sw);
		/* every device of the server may be a port: the quota is the table / that */
		int rc = xvl_fdb_init(&sw->fdb, sw->mem, SW_FDB_CAP, XVL_SERVER_MAX_DEVS, 0,
				      SW_AGEING_NS);
		if (rc < 0) {
			free(sw);
			return xvl_err(eb, rc, "switch %s: forwarding table set-up failed", d->spec.sw);
		}
	}
	if (sw->n_ports == XVL_SERVER_MAX_DEVS) /* cannot happen: one port per device */
		return xvl_err(eb, -ENOSPC, "switch %s is full", sw->name);
	n->sw = sw;
	n->port = sw->n_ports;
	sw->port[sw->n_ports++] = d;
	sw->refs++;
	return 0;
}

void srv_sw_detach(struct srv_dev *d)
{
	struct srv_net *n = d->net;
	struct srv_switch *sw = n->sw;
	if (!sw)
		return;
	sw->port[n->port] = NULL;
	n->sw = NULL;
	if (--sw->refs == 0)
		free(sw);
}

void srv_sw_port_reset(struct srv_dev *d)
{
	struct srv_net *n = d->net;
	if (n->sw)
		xvl_fdb_flush_port(&n->sw->fdb, n->port);
}

static uint64_t ports_up(const struct srv_switch *sw)
{
	uint64_t m = 0;
	for (uint16_t p = 0; p < sw->n_ports; p++)
		if (sw->port[p] && srv_dev_running(sw->port[p]))
			m |= 1ull << p;
	return m;
}

/* f's private bytes hold the Ethernet header: the addresses are read from there only. */
void srv_sw_input(struct srv_dev *d, uint16_t pair, struct srv_net_frame *f)
{
	struct srv_net *n = d->net;
	struct srv_switch *sw = n->sw;
	const uint8_t *dst = f->priv, *src = f->priv + XVL_ETH_ALEN;

	if (d->spec.spoof && memcmp(src, n->mac, XVL_ETH_ALEN)) {
		srv_net_drop(d, NET_DROP_TX_SPOOF, "source %02x:%02x:%02x:%02x:%02x:%02x is not "
			     "the port's address (spoof=on)", src[0], src[1], src[2], src[3], src[4],
			     src[5]);
		return;
	}
	d->st_requests++;
	d->st_bytes += f->len;
	uint64_t out = xvl_l2sw_forward(&sw->fdb, n->port, dst, src, ports_up(sw), n->burst_ns);
	/* several receivers: every one gets the same bytes, read from the window once */
	if (out & (out - 1))
		srv_net_frame_flatten(f);
	while (out) {
		unsigned p = (unsigned)__builtin_ctzll(out);
		out &= out - 1;
		struct srv_dev *to = sw->port[p];
		if (to && srv_net_rx_wanted(to->net, dst))
			srv_net_rx_frame(to, pair, f);
	}
}
