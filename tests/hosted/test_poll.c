/* SPDX-License-Identifier: MIT */
/*
 * The server's adaptive polling window (src/server/poll.c): it grows while
 * sleeps end within the bound, never passes the bound, shrinks to nothing
 * once sleeps are long (an idle queue), and a bound of 0 never polls.
 */
#include "srv.h"
#include "tap.h"

int main(void)
{
	struct srv_poll p;
	srv_poll_init(&p, 50000);
	CHECK(p.ns == 0 && !srv_poll_keep(&p, 0, 1), "starts without polling");

	srv_poll_adapt(&p, 10000); /* woken 10 us after going to sleep: a window would have caught it */
	CHECK(p.ns == 4000, "a short sleep opens a 4 us window (got %llu)", (unsigned long long)p.ns);
	for (int i = 0; i < 10; i++)
		srv_poll_adapt(&p, 45000);
	CHECK(p.ns == 50000, "short sleeps grow it to the bound, not past it (got %llu)",
	      (unsigned long long)p.ns);
	CHECK(srv_poll_keep(&p, 1000, 1000 + 49999) && !srv_poll_keep(&p, 1000, 1000 + 50000),
	      "polling stops at the window after the last work");

	srv_poll_adapt(&p, 30000); /* caught within the window: no change */
	CHECK(p.ns == 50000, "a sleep inside the window leaves it");

	unsigned halvings = 0;
	while (p.ns && halvings < 20) {
		srv_poll_adapt(&p, 2000000); /* idle: 2 ms sleeps */
		halvings++;
	}
	CHECK(p.ns == 0 && halvings <= 4, "long sleeps close the window within %u halvings", halvings);
	CHECK(!srv_poll_keep(&p, 0, 1), "closed: no polling at all");

	srv_poll_init(&p, 0);
	srv_poll_adapt(&p, 1000);
	CHECK(p.ns == 0 && !srv_poll_keep(&p, 0, 1), "bound 0 (--poll-max-us 0): never polls");
	return tap_done();
}
