/* SPDX-License-Identifier: MIT */
/* xvl net: what the subcommands (cmd_net.c, net_probe.c, net_tap.c) share. */
#ifndef XVL_NET_CMD_H
#define XVL_NET_CMD_H

#include <stdbool.h>
#include <stdint.h>

#include "xvloop/xvl.h"
#include "xvloop/xvl_net.h"

struct net_args {
	const char *connect;
	const char *device;
	const char *ifname;       /* tap */
	const char *peer;         /* ping/perf: destination MAC (default broadcast) */
	const char *sizes;        /* perf */
	uint64_t window_size;
	unsigned count;           /* ping: requests */
	unsigned size;            /* ping: frame bytes */
	unsigned interval_ms;     /* ping */
	unsigned reconnect_ms;
	double time_s;            /* perf: seconds per size and direction */
	uint16_t pairs, queue_size;
	bool poll, responder, json, copy;
};

/* Ethernet type of the probe frames (IEEE 802 local experimental). */
#define NET_PROBE_ETHERTYPE 0x88b5

int net_do_ping(struct net_args *a, struct xvl_client *c, struct xvl_net *n);
int net_do_perf(struct net_args *a, struct xvl_client *c, struct xvl_net *n);
int net_do_responder(struct net_args *a, struct xvl_client *c, struct xvl_net *n);
int net_do_tap(struct net_args *a, struct xvl_client *c, struct xvl_net *n);
/* "aa:bb:cc:dd:ee:ff" -> mac; false when it is not one. */
bool net_parse_mac(const char *s, uint8_t mac[6]);

#endif
