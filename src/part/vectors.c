/* SPDX-License-Identifier: MIT */
/*
 * Doorbell vectors of a mailbox link (docs/PROTOCOL.md 7.6) between a
 * driver compartment with link = "window" and its device compartment: the
 * partitioner creates them (eventfds) with the window and holds them as it
 * holds the window, so a restarted device side is handed the same ones.
 * Vector 0 is the mailbox's, then one per queue the device compartment
 * serves.  Each side is given its own set (the eventfds it is rung on) and
 * the peer's (the ones it rings), placed after the window:
 *   fd 3 window, fd 4 .. 3+n own vectors, fd 4+n .. 3+2n the peer's.
 * Invariant: v->n == 0 (nothing held) or every drv[i], dev[i] (i < n) open.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "part_int.h"
#include "proto.h"

/* The driver compartment whose window carries compartment i's mailbox link and has
 * doorbell vectors; -1 when it polls or has no mailbox link. */
int xp_vectors_driver(const struct xp_config *c, unsigned i)
{
	const struct xp_comp *k = &c->comps[i];
	int d = k->role == XP_DRIVER ? (k->link_window ? (int)i : -1) : k->mbox_driver;
	/* a device VM's doorbells are ivshmem vectors (ivsh.c), not these */
	if (d < 0 || c->comps[d].doorbell_none || c->comps[d].window < 0 ||
	    c->comps[d].server < 0 || c->comps[c->comps[d].server].vm)
		return -1;
	return d;
}

/* 1 (the mailbox) + the queues of every device its device compartment serves;
 * an external vhost-user backend may offer up to XVL_MAX_QUEUES. */
static unsigned vectors_needed(const struct xp_config *c, const struct xp_comp *drv)
{
	const struct xp_comp *s = &c->comps[drv->server];
	unsigned n = 1;
	for (unsigned j = 0; j < s->n_devs; j++) {
		const struct xp_device *d = &c->devs[s->devs[j]];
		unsigned q = d->spec.queues ? d->spec.queues : 1;
		if (d->kind == XP_DEV_VHOST && !d->spec.queues)
			q = XVL_MAX_QUEUES;
		n += q;
	}
	return n;
}

int xp_vectors_open(struct xp_inst *p, unsigned drv, struct xvl_errbuf *eb)
{
	const struct xp_comp *k = &p->cfg.comps[drv];
	struct xp_vectors *v = &p->vec[k->window];
	if (v->n)
		return 0;
	unsigned n = vectors_needed(&p->cfg, k);
	if (n > XP_MBOX_VECTORS_MAX)
		return xvl_err(eb, -E2BIG, "its mailbox link needs %u doorbell vectors (1 + one per queue), "
			       "at most %u are handed to a compartment: use fewer queues, or doorbell = \"none\"",
			       n, XP_MBOX_VECTORS_MAX);
	return xp_vectors_make(p, (unsigned)k->window, n, eb);
}

int xp_vectors_make(struct xp_inst *p, unsigned w, unsigned n, struct xvl_errbuf *eb)
{
	struct xp_vectors *v = &p->vec[w];
	for (v->n = 0; v->n < n; v->n++) {
		v->drv[v->n] = xvl_os_eventfd();
		v->dev[v->n] = v->drv[v->n] >= 0 ? xvl_os_eventfd() : v->drv[v->n];
		if (v->dev[v->n] < 0) {
			int rc = v->dev[v->n];
			if (v->drv[v->n] >= 0)
				close(v->drv[v->n]);
			xp_vectors_close(p, w);
			return xvl_err(eb, rc, "window %s: eventfd for its doorbell vectors: %s",
				       p->cfg.wins[w].name, strerror(-rc));
		}
	}
	return 0;
}

void xp_vectors_close(struct xp_inst *p, unsigned w)
{
	struct xp_vectors *v = &p->vec[w];
	for (unsigned i = 0; i < v->n; i++) {
		close(v->drv[i]);
		close(v->dev[i]);
	}
	v->n = 0;
}

/* Append a side's own set, then the peer's, to fds (after the log and the window). */
unsigned xp_vectors_fds(const struct xp_vectors *v, bool device, int *fds)
{
	const int *own = device ? v->dev : v->drv, *peer = device ? v->drv : v->dev;
	for (unsigned i = 0; i < v->n; i++) {
		fds[i] = own[i];
		fds[v->n + i] = peer[i];
	}
	return 2 * v->n;
}

/* "eventfd:own=4,5,..;peer=..": the numbers xp_vectors_fds' order lands on (fd 4 on). */
int xp_vectors_spec(const struct xp_vectors *v, char *out, size_t cap)
{
	size_t o = (size_t)snprintf(out, cap, "eventfd:own=");
	for (unsigned set = 0; set < 2; set++) {
		for (unsigned i = 0; i < v->n && o < cap; i++)
			o += (size_t)snprintf(out + o, cap - o, "%s%u", i ? "," : "", 4 + set * v->n + i);
		if (set == 0 && o < cap)
			o += (size_t)snprintf(out + o, cap - o, ";peer=");
	}
	return o < cap ? 0 : -ENAMETOOLONG;
}
