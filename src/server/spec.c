/* SPDX-License-Identifier: MIT */
/* Device specifications: "name=disk0,backend=file,path=disk.img,...". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
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
		     {"vhost-user", XVL_BK_VHOST}, {"switch", XVL_BK_SWITCH}, {"tap", XVL_BK_TAP}};
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

static int parse_mac(const char *v, uint8_t mac[6])
{
	unsigned b[6];
	char tail;
	if (sscanf(v, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
		   &tail) != 6 || strlen(v) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	return (mac[0] & 1) ? -EINVAL : 0; /* a station address, not a group one */
}

/* Keys of type=net devices; -ENOENT when k is none of them. */
static int set_net_key(struct xvl_dev_spec *d, const char *k, const char *v)
{
	if (!strcmp(k, "type")) {
		if (!strcmp(v, "net"))
			d->type = XVL_DEV_NET;
		else if (!strcmp(v, "blk"))
			d->type = XVL_DEV_BLK;
		else
			return -EINVAL;
		return 0;
	}
	if (!strcmp(k, "switch"))
		return copy_str(d->sw, sizeof(d->sw), v);
	if (!strcmp(k, "ifname"))
		return copy_str(d->ifname, sizeof(d->ifname), v);
	if (!strcmp(k, "mac")) {
		d->has_mac = true;
		return parse_mac(v, d->mac);
	}
	if (!strcmp(k, "mtu"))
		return parse_u16(v, &d->mtu, 68, 9000);
	if (!strcmp(k, "spoof"))
		return parse_bool(v, &d->spoof);
	return -ENOENT;
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
	if (!strcmp(k, "listen"))
		return parse_bool(v, &d->listen);
	if (!strcmp(k, "reconnect-ms")) {
		char *end;
		unsigned long ms = strtoul(v, &end, 10);
		if (!*v || *end || ms > 3600000)
			return -EINVAL;
		d->reconnect_ms = (unsigned)ms;
		return 0;
	}
	return set_net_key(d, k, v);
}

static int check_net_spec(struct xvl_dev_spec *d, struct xvl_errbuf *eb)
{
	if (d->kind != XVL_BK_SWITCH && d->kind != XVL_BK_TAP && d->kind != XVL_BK_VHOST)
		return xvl_err(eb, -EINVAL, "device %s: type=net takes backend=switch, tap or "
			       "vhost-user", d->name);
	if (d->kind == XVL_BK_VHOST && !d->path[0])
		return xvl_err(eb, -EINVAL, "device %s: path= is missing", d->name);
	if (d->kind == XVL_BK_TAP && !d->ifname[0])
		return xvl_err(eb, -EINVAL, "device %s: backend=tap needs ifname=", d->name);
	/* 2 queues per pair and the control queue within the protocol's queues per device */
	if (d->queues > (XVL_MAX_QUEUES - 1) / 2)
		return xvl_err(eb, -EINVAL, "device %s: queues=%u pairs asked, at most %u", d->name,
			       d->queues, (XVL_MAX_QUEUES - 1) / 2);
	if (!d->sw[0])
		strcpy(d->sw, "sw0");
	return 0;
}

static int check_spec(struct xvl_dev_spec *d, const char *text, struct xvl_errbuf *eb)
{
	if (!d->name[0])
		return xvl_err(eb, -EINVAL, "device '%s': name= is missing", text);
	if (d->type == XVL_DEV_NET)
		return check_net_spec(d, eb);
	if (d->kind == XVL_BK_SWITCH || d->kind == XVL_BK_TAP)
		return xvl_err(eb, -EINVAL, "device %s: backend=switch and backend=tap need type=net",
			       d->name);
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
				       "size, queues, queue-size, direct, ro, relay, reconnect-ms; "
				       "net: type, switch, ifname, mac, mtu, spoof)",
				       text, item);
		if (rc < 0)
			return xvl_err(eb, -EINVAL, "device '%s': bad value '%s' for %s", text, eq + 1,
				       item);
	}
	if (!have_backend)
		return xvl_err(eb, -EINVAL, "device '%s': backend= is missing (file, null, ram, vhost-user; net: switch, tap)",
			       text);
	return check_spec(d, text, eb);
}
