/* SPDX-License-Identifier: MIT */
/* Link message encoding and decoding; see proto.h and docs/PROTOCOL.md. */
#include "proto.h"

#include "xvl_err.h"

/* ------------------------------------------------------------ byte cursors */

struct wcur {
	uint8_t *p;
	size_t cap;
	size_t pos;
	bool over;
};

struct rcur {
	const uint8_t *p;
	size_t len;
	size_t pos;
	bool bad;
};

static void put_bytes(struct wcur *w, const void *src, size_t n)
{
	if (w->over || n > w->cap - w->pos) {
		w->over = true;
		return;
	}
	__builtin_memcpy(w->p + w->pos, src, n);
	w->pos += n;
}

static void put_uint(struct wcur *w, uint64_t v, unsigned bytes)
{
	uint8_t b[8];
	for (unsigned i = 0; i < bytes; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put_bytes(w, b, bytes);
}

static void put16(struct wcur *w, uint16_t v) { put_uint(w, v, 2); }
static void put32(struct wcur *w, uint32_t v) { put_uint(w, v, 4); }
static void put64(struct wcur *w, uint64_t v) { put_uint(w, v, 8); }

static void put_name(struct wcur *w, const char *name)
{
	char pad[XVL_NAME_MAX] = {0};
	for (unsigned i = 0; i < XVL_NAME_MAX && name[i]; i++)
		pad[i] = name[i];
	put_bytes(w, pad, XVL_NAME_MAX);
}

static void get_bytes(struct rcur *r, void *dst, size_t n)
{
	if (r->bad || n > r->len - r->pos) {
		r->bad = true;
		__builtin_memset(dst, 0, n);
		return;
	}
	__builtin_memcpy(dst, r->p + r->pos, n);
	r->pos += n;
}

static uint64_t get_uint(struct rcur *r, unsigned bytes)
{
	uint8_t b[8];
	uint64_t v = 0;
	get_bytes(r, b, bytes);
	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

static uint16_t get16(struct rcur *r) { return (uint16_t)get_uint(r, 2); }
static uint32_t get32(struct rcur *r) { return (uint32_t)get_uint(r, 4); }
static uint64_t get64(struct rcur *r) { return get_uint(r, 8); }

/* Names arrive NUL-padded; make them terminated whatever the peer sent. */
static void get_name(struct rcur *r, char *name, size_t size)
{
	get_bytes(r, name, size);
	name[size - 1] = '\0';
}

/* ------------------------------------------------------------ payloads */

/* Payload shapes; each (type, direction) has exactly one. */
enum shape {
	SH_NONE,     /* empty */
	SH_HELLO,
	SH_DEV,
	SH_DEV_INFO,
	SH_WINDOW,
	SH_FEATURES,
	SH_CFG_REQ,  /* dev, off, len */
	SH_CFG_SET,  /* dev, off, len, data[len] */
	SH_CFG_DATA, /* len, data[len] */
	SH_QUEUE,
	SH_STATUS,
	SH_EVENT,
	SH_STATS,
	SH_INVALID,
};

struct shapes {
	uint8_t req;
	uint8_t rep;
};

static const struct shapes shape_table[XVL_MSG_TYPE_MAX + 1] = {
	[XVL_MSG_HELLO] = {SH_HELLO, SH_HELLO},
	[XVL_MSG_DEV_INFO] = {SH_DEV, SH_DEV_INFO},
	[XVL_MSG_ATTACH] = {SH_DEV, SH_NONE},
	[XVL_MSG_DETACH] = {SH_DEV, SH_NONE},
	[XVL_MSG_SET_WINDOW] = {SH_WINDOW, SH_NONE},
	[XVL_MSG_SET_FEATURES] = {SH_FEATURES, SH_NONE},
	[XVL_MSG_GET_CONFIG] = {SH_CFG_REQ, SH_CFG_DATA},
	[XVL_MSG_SET_CONFIG] = {SH_CFG_SET, SH_NONE},
	[XVL_MSG_SET_QUEUE] = {SH_QUEUE, SH_NONE},
	[XVL_MSG_SET_STATUS] = {SH_STATUS, SH_STATUS},
	[XVL_MSG_GET_STATUS] = {SH_DEV, SH_STATUS},
	[XVL_MSG_RESET] = {SH_DEV, SH_NONE},
	[XVL_MSG_EVENT] = {SH_EVENT, SH_INVALID},
	[XVL_MSG_GET_STATS] = {SH_DEV, SH_STATS},
};

static const char *const type_names[XVL_MSG_TYPE_MAX + 1] = {
	[XVL_MSG_HELLO] = "HELLO",
	[XVL_MSG_DEV_INFO] = "DEV_INFO",
	[XVL_MSG_ATTACH] = "ATTACH",
	[XVL_MSG_DETACH] = "DETACH",
	[XVL_MSG_SET_WINDOW] = "SET_WINDOW",
	[XVL_MSG_SET_FEATURES] = "SET_FEATURES",
	[XVL_MSG_GET_CONFIG] = "GET_CONFIG",
	[XVL_MSG_SET_CONFIG] = "SET_CONFIG",
	[XVL_MSG_SET_QUEUE] = "SET_QUEUE",
	[XVL_MSG_SET_STATUS] = "SET_STATUS",
	[XVL_MSG_GET_STATUS] = "GET_STATUS",
	[XVL_MSG_RESET] = "RESET",
	[XVL_MSG_EVENT] = "EVENT",
	[XVL_MSG_GET_STATS] = "GET_STATS",
};

const char *xvl_msg_name(uint16_t type)
{
	if (type == 0 || type > XVL_MSG_TYPE_MAX)
		return "?";
	return type_names[type];
}

static int msg_shape(const struct xvl_msg *m)
{
	if (m->type == 0 || m->type > XVL_MSG_TYPE_MAX)
		return -1;
	if (!xvl_msg_is_reply(m))
		return shape_table[m->type].req;
	if (m->status != 0)
		return SH_NONE; /* failed replies carry no payload */
	return shape_table[m->type].rep;
}

unsigned xvl_msg_nfds(const struct xvl_msg *m)
{
	if (xvl_msg_is_reply(m))
		return 0;
	if (m->type == XVL_MSG_SET_WINDOW)
		return 1;
	if (m->type == XVL_MSG_SET_QUEUE &&
	    !(m->u.queue.flags & (XVL_QUEUE_F_POLL | XVL_QUEUE_F_VECTORS)))
		return 2;
	return 0;
}

static void encode_payload(struct wcur *w, int shape, const struct xvl_msg *m)
{
	const struct xvl_m_config *c = &m->u.cfg;
	const struct xvl_m_queue *q = &m->u.queue;
	const struct xvl_m_dev_info *d = &m->u.info;

	switch (shape) {
	case SH_HELLO:
		put16(w, m->u.hello.major);
		put16(w, m->u.hello.minor);
		put32(w, m->u.hello.caps);
		put32(w, m->u.hello.n_devices);
		put_name(w, m->u.hello.name);
		break;
	case SH_DEV:
		put32(w, m->u.dev.dev);
		break;
	case SH_DEV_INFO:
		put32(w, d->dev);
		put32(w, d->virtio_id);
		put16(w, d->num_queues);
		put16(w, d->max_queue_size);
		put32(w, d->config_len);
		put64(w, d->features);
		put_name(w, d->name);
		break;
	case SH_WINDOW:
		put64(w, m->u.window.size);
		break;
	case SH_FEATURES:
		put32(w, m->u.feat.dev);
		put32(w, 0);
		put64(w, m->u.feat.features);
		break;
	case SH_CFG_REQ:
	case SH_CFG_SET:
		put32(w, c->dev);
		put32(w, c->off);
		put32(w, c->len);
		if (shape == SH_CFG_SET)
			put_bytes(w, c->data, c->len);
		break;
	case SH_CFG_DATA:
		put32(w, c->len);
		put_bytes(w, c->data, c->len);
		break;
	case SH_QUEUE:
		put32(w, q->dev);
		put16(w, q->queue);
		put16(w, q->num);
		put32(w, q->flags);
		put16(w, q->avail_base);
		put16(w, q->used_base);
		put64(w, q->desc);
		put64(w, q->avail);
		put64(w, q->used);
		if (q->flags & XVL_QUEUE_F_VECTORS) {
			put16(w, q->kick_vector);
			put16(w, q->call_vector);
			put32(w, 0);
		}
		break;
	case SH_STATUS:
		put32(w, m->u.st.dev);
		put32(w, m->u.st.status);
		break;
	case SH_EVENT:
		put32(w, m->u.event.dev);
		put32(w, m->u.event.code);
		put32(w, (uint32_t)m->u.event.reason);
		put_bytes(w, m->u.event.msg, sizeof(m->u.event.msg));
		break;
	case SH_STATS:
		put32(w, m->u.stats.dev);
		put32(w, 0);
		put64(w, m->u.stats.requests);
		put64(w, m->u.stats.bytes);
		put64(w, m->u.stats.errors);
		put64(w, m->u.stats.notifies);
		break;
	default:
		break;
	}
}

static bool config_len_ok(const struct xvl_msg *m, int shape)
{
	if (shape != SH_CFG_REQ && shape != SH_CFG_SET && shape != SH_CFG_DATA)
		return true;
	return m->u.cfg.len <= XVL_CONFIG_MAX;
}

int xvl_msg_encode(const struct xvl_msg *m, void *buf, size_t cap)
{
	int shape = msg_shape(m);
	struct wcur w = {.p = buf, .cap = cap};

	if (shape < 0 || shape == SH_INVALID)
		return -EINVAL;
	if (!config_len_ok(m, shape))
		return -EINVAL;
	put16(&w, m->type);
	put16(&w, m->flags);
	put32(&w, m->seq);
	put32(&w, (uint32_t)m->status);
	put32(&w, 0); /* length, patched below */
	encode_payload(&w, shape, m);
	if (w.over)
		return -EMSGSIZE;
	uint32_t len = (uint32_t)(w.pos - XVL_MSG_HDR_SIZE);
	for (unsigned i = 0; i < 4; i++)
		w.p[12 + i] = (uint8_t)(len >> (8 * i));
	return (int)w.pos;
}

static void decode_config(struct rcur *r, int shape, struct xvl_m_config *c)
{
	if (shape != SH_CFG_DATA) {
		c->dev = get32(r);
		c->off = get32(r);
	}
	c->len = get32(r);
	if (shape == SH_CFG_REQ)
		return;
	if (c->len > XVL_CONFIG_MAX)
		return; /* reported as -EMSGSIZE by the caller */
	get_bytes(r, c->data, c->len);
}

static void decode_payload(struct rcur *r, int shape, struct xvl_msg *m)
{
	struct xvl_m_queue *q = &m->u.queue;
	struct xvl_m_dev_info *d = &m->u.info;

	switch (shape) {
	case SH_HELLO:
		m->u.hello.major = get16(r);
		m->u.hello.minor = get16(r);
		m->u.hello.caps = get32(r);
		m->u.hello.n_devices = get32(r);
		get_name(r, m->u.hello.name, XVL_NAME_MAX);
		break;
	case SH_DEV:
		m->u.dev.dev = get32(r);
		break;
	case SH_DEV_INFO:
		d->dev = get32(r);
		d->virtio_id = get32(r);
		d->num_queues = get16(r);
		d->max_queue_size = get16(r);
		d->config_len = get32(r);
		d->features = get64(r);
		get_name(r, d->name, XVL_NAME_MAX);
		break;
	case SH_WINDOW:
		m->u.window.size = get64(r);
		break;
	case SH_FEATURES:
		m->u.feat.dev = get32(r);
		(void)get32(r);
		m->u.feat.features = get64(r);
		break;
	case SH_CFG_REQ:
	case SH_CFG_SET:
	case SH_CFG_DATA:
		decode_config(r, shape, &m->u.cfg);
		break;
	case SH_QUEUE:
		q->dev = get32(r);
		q->queue = get16(r);
		q->num = get16(r);
		q->flags = get32(r);
		q->avail_base = get16(r);
		q->used_base = get16(r);
		q->desc = get64(r);
		q->avail = get64(r);
		q->used = get64(r);
		if (q->flags & XVL_QUEUE_F_VECTORS) {
			q->kick_vector = get16(r);
			q->call_vector = get16(r);
			if (get32(r) != 0)
				r->bad = true; /* reserved, must be 0 */
		}
		break;
	case SH_STATUS:
		m->u.st.dev = get32(r);
		m->u.st.status = get32(r);
		break;
	case SH_EVENT:
		m->u.event.dev = get32(r);
		m->u.event.code = get32(r);
		m->u.event.reason = (int32_t)get32(r);
		get_name(r, m->u.event.msg, sizeof(m->u.event.msg));
		break;
	case SH_STATS:
		m->u.stats.dev = get32(r);
		(void)get32(r);
		m->u.stats.requests = get64(r);
		m->u.stats.bytes = get64(r);
		m->u.stats.errors = get64(r);
		m->u.stats.notifies = get64(r);
		break;
	default:
		break;
	}
}

/* Status of a reply: 0 or a negative errno in the range Linux uses. */
static bool status_ok(const struct xvl_msg *m)
{
	if (!xvl_msg_is_reply(m))
		return m->status == 0;
	return m->status <= 0 && m->status >= -4095;
}

int xvl_msg_decode(const void *buf, size_t len, struct xvl_msg *m)
{
	struct rcur r = {.p = buf, .len = len};

	__builtin_memset(m, 0, sizeof(*m));
	if (len < XVL_MSG_HDR_SIZE || len > XVL_MSG_MAX_SIZE)
		return len < XVL_MSG_HDR_SIZE ? -EBADMSG : -EMSGSIZE;
	m->type = get16(&r);
	m->flags = get16(&r);
	m->seq = get32(&r);
	m->status = (int32_t)get32(&r);
	uint32_t plen = get32(&r);
	if (plen != len - XVL_MSG_HDR_SIZE)
		return -EBADMSG;
	if (m->flags & ~XVL_MSG_F_REPLY)
		return -EBADMSG;
	if (!status_ok(m))
		return -EBADMSG;
	int shape = msg_shape(m);
	if (shape < 0)
		return -EOPNOTSUPP;
	if (shape == SH_INVALID)
		return -EBADMSG;
	decode_payload(&r, shape, m);
	if ((shape == SH_CFG_REQ || shape == SH_CFG_SET || shape == SH_CFG_DATA) &&
	    m->u.cfg.len > XVL_CONFIG_MAX)
		return -EMSGSIZE;
	if (r.bad || r.pos != r.len)
		return -EBADMSG;
	return 0;
}
