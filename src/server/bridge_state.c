/* SPDX-License-Identifier: MIT */
/*
 * The backend state machine of a bridged (vhost-user) device.
 *
 * Who talks to the backend: only jobs (bridge_job.c), each on a thread of
 * its own; the event loop never makes a call that waits for the backend.
 * At most one job per device is in flight (srv_bridge.job).
 *
 *   OFFLINE  --probe started (open, DEV_INFO; one per PROBE_GAP_MS)--> PROBING
 *   PROBING  --answered--> READY             --failed--> OFFLINE
 *   READY    --DRIVER_OK, window untainted--> STARTING
 *            --DRIVER_OK, window tainted----> LOST (wait for the old instance first)
 *   STARTING --rings handed over--> UP
 *            --reset meanwhile--> STOPPING (the result is stopped when it lands)
 *            --backend gone (retryable)--> LOST     --refused (permanent)--> BROKEN
 *   UP       --reset/detach--> STOPPING      --socket EOF--> LOST
 *            --unsolicited message--> BROKEN
 *   STOPPING --stopped in order--> READY (or STARTING when DRIVER_OK came meanwhile)
 *            --stop failed--> READY, window tainted
 *   LOST     --old instance gone--> WAITING  --reconnect_ms over--> BROKEN / OFFLINE
 *   WAITING  --probe answered: reset, EVENT RESTART--> READY
 *            --reconnect_ms over, or a permanent error--> BROKEN / OFFLINE
 *   BROKEN   --reset by the client--> READY (features stay known)
 *   (LOST, WAITING and BROKEN go to OFFLINE instead when no client is attached.)
 *
 * Invariants:
 *  - state UP <=> the device's vh holds the session's socket, watched by the loop;
 *    in every other state the loop holds no backend connection (a job may).
 *  - PROBING, STARTING, STOPPING <=> job != NULL.  (LOST/WAITING may have a
 *    probe job running too: WAITING starts them; one at a time.)
 *  - The backend serves the client's rings only in STARTING (from SET_VRING_KICK
 *    on), UP and STOPPING.
 *  - A session whose end was not orderly taints the window (bridge.h): no START
 *    on that window until the instance is known to have exited (its pidfd
 *    readable; SO_PEERPIDFD, else pidfd_open of the SO_PEERCRED pid).  An instance
 *    without a pidfd never clears: the device then breaks at reconnect_ms and starts
 *    only on another window (another client connection).
 *  - EVENT RESTART is sent only from WAITING, i.e. after the old instance is gone.
 */
#include "bridge.h"

static const char *const names[BR_NSTATES] = {
	[BR_OFFLINE] = "offline", [BR_PROBING] = "probing", [BR_READY] = "ready",
	[BR_STARTING] = "starting", [BR_UP] = "up", [BR_STOPPING] = "stopping",
	[BR_LOST] = "lost", [BR_WAITING] = "waiting", [BR_BROKEN] = "broken",
};

#define T(s) (1u << (s))
static const unsigned allowed[BR_NSTATES] = {
	[BR_OFFLINE] = T(BR_PROBING),
	[BR_PROBING] = T(BR_READY) | T(BR_OFFLINE),
	[BR_READY] = T(BR_STARTING) | T(BR_LOST),
	[BR_STARTING] = T(BR_UP) | T(BR_STOPPING) | T(BR_LOST) | T(BR_BROKEN),
	[BR_UP] = T(BR_STOPPING) | T(BR_LOST) | T(BR_BROKEN),
	[BR_STOPPING] = T(BR_READY) | T(BR_STARTING) | T(BR_LOST),
	[BR_LOST] = T(BR_WAITING) | T(BR_BROKEN) | T(BR_OFFLINE),
	[BR_WAITING] = T(BR_READY) | T(BR_BROKEN) | T(BR_OFFLINE),
	[BR_BROKEN] = T(BR_READY) | T(BR_OFFLINE),
};
#undef T

const char *br_state_name(enum br_state s)
{
	return s < BR_NSTATES ? names[s] : "?";
}

bool br_enter(struct srv_dev *d, enum br_state to)
{
	struct srv_bridge *b = d->br;

	if (to >= BR_NSTATES || !(allowed[b->state] & (1u << to))) {
		srv_log(d->srv, "device %s: internal error: vhost-user backend state %s -> %s "
			"is not allowed; ignored", d->spec.name, br_state_name(b->state),
			br_state_name(to));
		return false;
	}
	b->state = to;
	d->vh_probed = to != BR_OFFLINE && to != BR_PROBING;
	return true;
}
