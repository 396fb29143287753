/* SPDX-License-Identifier: MIT */
/*
 * Adaptive polling: how long a serving thread keeps looking at its queues
 * after the last piece of work before it sleeps on its eventfds.
 *
 * The idea of qemu's poll-max-ns/poll-grow/poll-shrink and of Linux's hybrid
 * polling: a sleep costs two cross-CPU wake-ups (one on each side), polling
 * costs a core.  The window starts at 0.  A sleep that ended within max_ns
 * would have been avoided by a longer window: the window doubles (from
 * POLL_BASE_NS) up to max_ns.  A sleep longer than max_ns says the queue went
 * quiet: the window halves, down to 0.  Whatever the window, the thread
 * sleeps at most max_ns after its last work, so an idle queue costs no CPU
 * after that bound.
 */
#include "srv.h"

#define POLL_BASE_NS 4000u

void srv_poll_init(struct srv_poll *p, uint64_t max_ns)
{
	p->ns = 0;
	p->max_ns = max_ns;
}

void srv_poll_adapt(struct srv_poll *p, uint64_t slept)
{
	if (!p->max_ns)
		return;
	if (slept > p->max_ns) {
		p->ns /= 2;
		if (p->ns < POLL_BASE_NS)
			p->ns = 0;
	} else if (slept > p->ns) {
		p->ns = p->ns ? p->ns * 2 : POLL_BASE_NS;
		if (p->ns > p->max_ns)
			p->ns = p->max_ns;
	}
}

bool srv_poll_keep(const struct srv_poll *p, uint64_t last_ns, uint64_t now)
{
	return p->ns && now - last_ns < p->ns;
}
