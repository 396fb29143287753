/* SPDX-License-Identifier: MIT */
/* The xvl command: subcommand entry points and shared helpers. */
#ifndef XVL_CLI_H
#define XVL_CLI_H

#include <stdbool.h>
#include <stdint.h>

int cmd_server(int argc, char **argv);
int cmd_blk(int argc, char **argv);
int cmd_blk_mount(int argc, char **argv);
int cmd_net(int argc, char **argv);
int cmd_cdi(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* Print text to stdout and return 0 (for --help). */
int cli_help(const char *text);
/* "xvl CMD: message" on stderr; returns 1 (usage and runtime errors) or 2 (bad usage). */
int cli_fail(int code, const char *cmd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Size argument with K/M/G suffixes; exits with a message on a bad value. */
bool cli_size(const char *cmd, const char *opt, const char *text, uint64_t *out);

struct xvl_client;
/* --device as given: an index ("0") or a name; -1 when not given, -ENODEV when unknown. */
int cli_device_index(struct xvl_client *c, const char *dev);

#endif
