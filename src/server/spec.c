/* SPDX-License-Identifier: MIT */
/* Device specifications: "name=disk0,backend=file,path=disk.img,...". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

int xvl_parse_size(const char *text, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno || end == text || text[0] == '-')
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (*end == 'i' && shift)
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
		*out = true;
	else if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int parse_u16(const char *v, uint16_t *out, unsigned min, unsigned max)
{
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	if (*v == '\0' || *end || n < min || n > max)
		return -EINVAL;
	*out = (uint16_t)n;
	return 0;
}

static int parse_backend(const char *v, enum xvl_backend_kind *k)
{
	static const struct {
		const char *name;
		enum xvl_backend_kind kind;
	} names[] = {{"file", XVL_BK_FILE}, {"null", XVL_BK_NULL}, {"ram", XVL_BK_RAM},
		     {"vhost-user", XVL_BK_VHOST}};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(v, names[i].name)) {
			*k = names[i].kind;
			return 0;
		}
	}
	return -EINVAL;
}

static int copy_str(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap || !*v)
		return -EINVAL;
	strcpy(dst, v);
	return 0;
}

static int set_key(struct xvl_dev_spec *d, const char *k, const char *v, bool *have_backend)
{
	uint16_t n = 0;
	if (!strcmp(k, "name"))
		return copy_str(d->name, 21, v); /* the virtio-blk serial holds 20 bytes */
	if (!strcmp(k, "backend")) {
		*have_backend = true;
		return parse_backend(v, &d->kind);
	}
	if (!strcmp(k, "path"))
		return copy_str(d->path, sizeof(d->path), v);
	if (!strcmp(k, "size"))
		return xvl_parse_size(v, &d->size);
	if (!strcmp(k, "queues"))
		return parse_u16(v, &d->queues, 1, 16);
	if (!strcmp(k, "queue-size")) {
		int rc = parse_u16(v, &n, 1, 1024);
		if (rc == 0 && (n & (n - 1)))
			rc = -EINVAL;
		d->queue_size = n;
		return rc;
	}
	if (!strcmp(k, "direct"))
		return parse_bool(v, &d->direct);
	if (!strcmp(k, "ro"))
		return parse_bool(v, &d->read_only);
	if (!strcmp(k, "relay"))
		return parse_bool(v, &d->relay);
	if (!strcmp(k, "reconnect-ms")) {
		char *end;
		unsigned long ms = strtoul(v, &end, 10);
		if (!*v || *end || ms > 3600000)
			return -EINVAL;
		d->reconnect_ms = (unsigned)ms;
		return 0;
	}
	return -ENOENT;
}

static int check_spec(const struct xvl_dev_spec *d, const char *text, struct xvl_errbuf *eb)
{
	if (!d->name[0])
		return xvl_err(eb, -EINVAL, "device '%s': name= is missing", text);
	if ((d->kind == XVL_BK_FILE || d->kind == XVL_BK_VHOST) && !d->path[0])
		return xvl_err(eb, -EINVAL, "device %s: path= is missing", d->name);
	if ((d->kind == XVL_BK_NULL || d->kind == XVL_BK_RAM) && !d->size)
		return xvl_err(eb, -EINVAL, "device %s: size= is missing", d->name);
	return 0;
}

int xvl_dev_spec_parse(struct xvl_dev_spec *d, const char *text, struct xvl_errbuf *eb)
{
	char buf[512];
	bool have_backend = false;

	memset(d, 0, sizeof(*d));
	d->reconnect_ms = 10000;
	if (strlen(text) >= sizeof(buf))
		return xvl_err(eb, -EINVAL, "device specification is too long");
	strcpy(buf, text);
	for (char *save = NULL, *item = strtok_r(buf, ",", &save); item;
	     item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		if (!eq)
			return xvl_err(eb, -EINVAL, "device '%s': '%s' is not key=value", text, item);
		*eq = '\0';
		int rc = set_key(d, item, eq + 1, &have_backend);
		if (rc == -ENOENT)
			return xvl_err(eb, -EINVAL,
				       "device '%s': unknown key '%s' (known: name, backend, path, "
				       "size, queues, queue-size, direct, ro, relay, reconnect-ms)",
				       text, item);
		if (rc < 0)
			return xvl_err(eb, -EINVAL, "device '%s': bad value '%s' for %s", text, eq + 1,
				       item);
	}
	if (!have_backend)
		return xvl_err(eb, -EINVAL, "device '%s': backend= is missing (file, null, ram, vhost-user)",
			       text);
	return check_spec(d, text, eb);
}
