/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the partitioner's config loader (libconfig syntax + every check) with
 * arbitrary text: it must fail with a one-line "FILE:LINE: KEY: ..." message
 * or succeed with a consistent config, never crash, leak or read out of bounds.
 * Offline: no CPU, file or socket checks against this machine.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "part.h"

static void check_consistent(const struct xp_config *c)
{
	for (unsigned i = 0; i < c->n_comps; i++) {
		const struct xp_comp *k = &c->comps[i];
		/* a driver without a window has net interfaces (tap front-ends) instead */
		if (k->role == XP_DRIVER &&
		    ((k->window < 0 && !k->n_netifs) || (k->window >= 0 && ((unsigned)k->window >= c->n_wins ||
		     c->wins[k->window].owner != (int)i)) || k->server < 0 ||
		     (unsigned)k->server >= c->n_comps || c->comps[k->server].role != XP_DEVICE))
			abort();
		/* a device VM serves the mailbox in the window of a driver that connects to it */
		if (k->vm && k->role == XP_DEVICE &&
		    (k->mbox_driver < 0 || (unsigned)k->mbox_driver >= c->n_comps ||
		     c->comps[k->mbox_driver].server != (int)i || !c->comps[k->mbox_driver].link_window))
			abort();
		for (unsigned j = 0; j < k->n_netifs; j++) {
			const struct xp_netif *ni = &k->netifs[j];
			if (k->role != XP_DRIVER || ni->dev < 0 || (unsigned)ni->dev >= c->n_devs ||
			    c->devs[ni->dev].kind != XP_DEV_NET || c->devs[ni->dev].driver != (int)i ||
			    !ni->ifname[0] || (ni->addr && (ni->prefix < 1 || ni->prefix > 32)))
				abort();
		}
		for (unsigned d = 0; k->role == XP_DEVICE && d < k->n_devs; d++)
			if (k->devs[d] < 0 || (unsigned)k->devs[d] >= c->n_devs ||
			    c->devs[k->devs[d]].comp != (int)i)
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libconfig 1.5's scanner leaks its string buffer on some syntax errors
 * (strbuf_append in an unterminated string): its bug, not ours. */
const char *__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\nleak:libconfig.so\n";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct xp_config c;
	struct xvl_errbuf eb = {{0}};
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	if (!strstr(text, "@include")) { /* libconfig would read other files */
		int rc = xp_config_load(&c, "fuzz.cfg", text, true, &eb);
		if (rc == 0)
			check_consistent(&c);
		else if (strncmp(eb.msg, "fuzz.cfg:", 9) || strchr(eb.msg, '\n'))
			abort(); /* every error names the file and line, on one line */
	}
	free(text);
	return 0;
}
