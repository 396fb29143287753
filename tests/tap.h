/* SPDX-License-Identifier: MIT */
/* Minimal TAP output for unit tests: one "ok N - name" line per check. */
#ifndef XVL_TAP_H
#define XVL_TAP_H

#include <stdio.h>

static int tap_count, tap_failed;

#define CHECK(cond, ...)                                                         \
	do {                                                                     \
		++tap_count;                                                     \
		if (cond) {                                                      \
			printf("ok %d - ", tap_count);                           \
		} else {                                                         \
			++tap_failed;                                            \
			printf("not ok %d - %s:%d: ", tap_count, __FILE__, __LINE__); \
		}                                                                \
		printf(__VA_ARGS__);                                             \
		printf("\n");                                                    \
	} while (0)

/* Call last in main(): prints the plan and returns the exit status. */
static inline int tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

#endif
