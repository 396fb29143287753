/* SPDX-License-Identifier: MIT */
/*
 * Client connection: creates the window, connects to a server over the
 * link (or to a vhost-user backend directly), enumerates devices, and
 * carries the device-facing control operations.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "opts.h"
#include "virtio_blk.h"
#include "xvl_atomic.h"

#define DEFAULT_WINDOW_SIZE (64ull << 20)
#define DEFAULT_TIMEOUT_MS 5000u
#define HEAP_MIN_ORDER 9 /* 512-byte blocks: the virtio-blk sector */

/* ------------------------------------------------------------ link RPC */

static void handle_event(struct xvl_client *c, const struct xvl_msg *m)
{
	if (m->u.event.dev >= XVL_MAX_DEVICES)
		return;
	struct xvl_net *n = c->open_net[m->u.event.dev];
	if (n && m->u.event.code == XVL_EVENT_BROKEN)
		xvl_net_mark_broken(n, m->u.event.reason, m->u.event.msg);
	else if (n && m->u.event.code == XVL_EVENT_CONFIG)
		xvl_net_config_changed(n);
	else if (n && m->u.event.code == XVL_EVENT_RESTART)
		xvl_net_request_restart(n);
	if (!c->open[m->u.event.dev])
		return;
	struct xvl_blk *b = c->open[m->u.event.dev];
	if (m->u.event.code == XVL_EVENT_BROKEN)
		xvl_blk_mark_broken(b, m->u.event.reason, m->u.event.msg);
	else if (m->u.event.code == XVL_EVENT_RESTART)
		xvl_blk_request_restart(b);
}

static void break_all(struct xvl_client *c, int reason, const char *why)
{
	for (unsigned i = 0; i < XVL_MAX_DEVICES; i++)
		if (c->open[i])
			xvl_blk_mark_broken(c->open[i], reason, why);
		else if (c->open_net[i])
			xvl_net_mark_broken(c->open_net[i], reason, why);
}

bool xvl_client_link_dead(const struct xvl_client *c)
{
	return xvl_load_acquire(&c->link_dead);
}

int xvl_client_link_fd(const struct xvl_client *c)
{
	return c->mode == XVL_MODE_LINK ? xvl_load_relaxed(&c->sock) : -1;
}

static void set_link_dead(struct xvl_client *c, bool dead)
{
	xvl_store_release(&c->link_dead, dead);
}

/* With reconnection enabled the devices wait for xvl_client_recover instead of breaking. */
static void link_died(struct xvl_client *c, const char *why)
{
	if (xvl_client_link_dead(c))
		return;
	set_link_dead(c, true);
	if (!c->reconnect_ms)
		break_all(c, -ENOTCONN, why);
}

/* Receive one message within timeout_ms; -ETIMEDOUT, -ENOTCONN or a decode error. */
static int link_recv(struct xvl_client *c, struct xvl_msg *m, int timeout_ms)
{
	uint8_t buf[XVL_MSG_MAX_SIZE];
	int fds[XVL_OS_MAX_FDS];
	unsigned nfds = 0;
	struct pollfd p = {.fd = c->sock, .events = POLLIN};

	if (c->mbox) {
		int rc = xvl_link_mbox_recv(c, m, timeout_ms);
		if (rc < 0 && rc != -ETIMEDOUT)
			link_died(c, xvl_link_mbox_why(c));
		return rc;
	}
	int pr = poll(&p, 1, timeout_ms);
	if (pr == 0)
		return -ETIMEDOUT;
	if (pr < 0)
		return -errno;
	long n = xvl_os_recv(c->sock, buf, sizeof(buf), fds, XVL_OS_MAX_FDS, &nfds);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]); /* the server never sends descriptors */
	if (n == -EAGAIN)
		return -ETIMEDOUT; /* another thread took the message poll() saw */
	if (n == 0) {
		link_died(c, "server closed the link");
		return -ENOTCONN;
	}
	if (n < 0) {
		link_died(c, "link receive failed");
		return (int)n;
	}
	return xvl_msg_decode(buf, (size_t)n, m);
}

/*
 * Every receive is preceded by poll(); non-blocking, a thread whose message
 * was taken by another thread sharing the client sees EAGAIN, not a hang.
 */
static void link_nonblocking(struct xvl_client *c)
{
	int fl = fcntl(c->sock, F_GETFL);
	if (fl >= 0)
		fcntl(c->sock, F_SETFL, fl | O_NONBLOCK);
}

static int link_send(struct xvl_client *c, struct xvl_msg *req, const int *fds, unsigned nfds)
{
	if (c->mbox) {
		int mrc = xvl_link_mbox_send(c, req);
		if (mrc < 0 && mrc != -EINVAL)
			link_died(c, mrc == -ETIMEDOUT ? "the device side does not drain its mailbox"
						       : xvl_link_mbox_why(c));
		return mrc;
	}
	uint8_t buf[XVL_MSG_MAX_SIZE];
	int n = xvl_msg_encode(req, buf, sizeof(buf));
	if (n < 0)
		return n;
	int rc = xvl_os_send(c->sock, buf, (size_t)n, fds, nfds);
	if (rc < 0)
		link_died(c, "link send failed");
	return rc;
}

/*
 * Send req and wait for its reply in *rep.  Events that arrive first are
 * handled on the way.  Returns the reply's status (0 or a negative errno)
 * or a transport error, with c->eb saying which.
 */
static int link_call_locked(struct xvl_client *c, struct xvl_msg *req, const int *fds,
			    unsigned nfds, struct xvl_msg *rep)
{
	const char *what = xvl_msg_name(req->type);

	if (xvl_client_link_dead(c))
		return xvl_err(&c->eb, -ENOTCONN, "%s: the link to the server is gone", what);
	req->seq = ++c->seq;
	int rc = link_send(c, req, fds, nfds);
	if (rc < 0)
		return xvl_err(&c->eb, rc, "%s: send: %s", what, strerror(-rc));
	uint64_t deadline = xvl_os_now_ns() + (uint64_t)c->timeout_ms * 1000000ull;
	for (;;) {
		uint64_t now = xvl_os_now_ns();
		int left = now >= deadline ? 0 : (int)((deadline - now) / 1000000ull) + 1;
		rc = link_recv(c, rep, left);
		if (rc == -ETIMEDOUT)
			return xvl_err(&c->eb, rc, "%s: no reply from the server within %u ms", what,
				       c->timeout_ms);
		if (rc < 0)
			return xvl_err(&c->eb, rc, "%s: %s", what,
				       c->mbox ? xvl_link_mbox_why(c) /* says which mailbox and why */
				       : rc == -ENOTCONN ? "server closed the link" : strerror(-rc));
		if (rep->type == XVL_MSG_EVENT && !xvl_msg_is_reply(rep)) {
			handle_event(c, rep);
			continue;
		}
		if (!xvl_msg_is_reply(rep) || rep->seq != req->seq || rep->type != req->type)
			return xvl_err(&c->eb, -EPROTO, "%s: server sent an unexpected %s", what,
				       xvl_msg_name(rep->type));
		if (rep->status < 0)
			return xvl_err(&c->eb, rep->status, "%s: server refused: %s", what,
				       strerror(-rep->status));
		return 0;
	}
}

/* Threads sharing the client take turns: one call (request and reply) at a time. */
static int link_call(struct xvl_client *c, struct xvl_msg *req, const int *fds, unsigned nfds,
		     struct xvl_msg *rep)
{
	pthread_mutex_lock(&c->link_lock);
	int rc = link_call_locked(c, req, fds, nfds, rep);
	pthread_mutex_unlock(&c->link_lock);
	return rc;
}

/* A thread busy with a link call reads (and handles) whatever arrives: do not wait for it. */
int xvl_client_poll_link(struct xvl_client *c)
{
	if (c->mode != XVL_MODE_LINK)
		return 0;
	if (pthread_mutex_trylock(&c->link_lock) != 0)
		return xvl_client_link_dead(c) ? -ENOTCONN : 0;
	while (!xvl_client_link_dead(c)) {
		struct xvl_msg m;
		int rc = link_recv(c, &m, 0);
		if (rc == -ETIMEDOUT)
			break;
		if (rc == 0 && m.type == XVL_MSG_EVENT && !xvl_msg_is_reply(&m))
			handle_event(c, &m);
	}
	pthread_mutex_unlock(&c->link_lock);
	return xvl_client_link_dead(c) ? -ENOTCONN : 0;
}

/* ------------------------------------------------------------ connect */

static int link_hello(struct xvl_client *c, const char *name)
{
	struct xvl_msg req = {.type = XVL_MSG_HELLO}, rep;
	req.u.hello.major = XVL_PROTO_MAJOR;
	req.u.hello.minor = XVL_PROTO_MINOR;
	snprintf(req.u.hello.name, sizeof(req.u.hello.name), "%s", name);
	int rc = link_call(c, &req, NULL, 0, &rep);
	if (rc < 0)
		return rc;
	if (rep.u.hello.major != XVL_PROTO_MAJOR)
		return xvl_err(&c->eb, -EPROTONOSUPPORT,
			       "server speaks link protocol %u.%u, this client %u.%u",
			       rep.u.hello.major, rep.u.hello.minor, XVL_PROTO_MAJOR, XVL_PROTO_MINOR);
	if (rep.u.hello.n_devices > XVL_MAX_DEVICES)
		return xvl_err(&c->eb, -EPROTO, "server announces %u devices, at most %u allowed",
			       rep.u.hello.n_devices, XVL_MAX_DEVICES);
	c->n_dev = rep.u.hello.n_devices;
	snprintf(c->peer_name, sizeof(c->peer_name), "%s", rep.u.hello.name);
	return 0;
}

static int link_enumerate(struct xvl_client *c)
{
	for (unsigned i = 0; i < c->n_dev; i++) {
		struct xvl_msg req = {.type = XVL_MSG_DEV_INFO}, rep;
		req.u.dev.dev = i;
		int rc = link_call(c, &req, NULL, 0, &rep);
		if (rc < 0)
			return rc;
		const struct xvl_m_dev_info *d = &rep.u.info;
		if (d->dev != i || d->num_queues == 0 || d->max_queue_size == 0)
			return xvl_err(&c->eb, -EPROTO,
				       "server describes device %u inconsistently (%u queues of %u)", i,
				       d->num_queues, d->max_queue_size);
		/*
		 * Never more than this client can hold, whatever the server says.
		 * config_len is not kept: the driver reads fixed fields, at most
		 * XVL_CONFIG_MAX bytes at a time, and GET_CONFIG checks each reply's length.
		 */
		c->dev[i] = (struct xvl_dev_desc){
			.index = i,
			.virtio_id = d->virtio_id,
			.num_queues = d->num_queues < XVL_MAX_QUEUES ? d->num_queues : XVL_MAX_QUEUES,
			.max_queue_size = d->max_queue_size < XVL_VQ_MAX_SIZE ? d->max_queue_size
									      : XVL_VQ_MAX_SIZE,
			.features = d->features,
		};
		snprintf(c->dev[i].name, sizeof(c->dev[i].name), "%s", d->name);
	}
	return 0;
}

static int link_send_window(struct xvl_client *c)
{
	struct xvl_msg req = {.type = XVL_MSG_SET_WINDOW}, rep;
	req.u.window.size = c->win.mem.size;
	return link_call(c, &req, &c->win.fd, 1, &rep);
}

/*
 * Whoever listens at the path gets the window (all of this compartment's
 * shared memory): it must run as the expected uid, on connect and on every
 * reconnect.  SO_PEERCRED gives the uid the listener had when it called
 * listen().
 */
static int check_peer(struct xvl_client *c, int sock, const char *path)
{
	uint32_t uid;
	int rc = xvl_os_peer_uid(sock, &uid);
	if (rc < 0)
		return xvl_err(&c->eb, rc, "cannot tell who listens at '%s': %s", path, strerror(-rc));
	if (uid != c->server_uid)
		return xvl_err(&c->eb, -EPERM,
			       "the peer listening at '%s' runs as uid %u, not uid %u; refusing to "
			       "hand it the window (XVL_SERVER_UID names the server's uid)",
			       path, uid, c->server_uid);
	return 0;
}

static uint32_t expected_server_uid(void)
{
	const char *e = getenv("XVL_SERVER_UID");
	char *end;
	if (e && *e) {
		unsigned long v = strtoul(e, &end, 10);
		if (!*end && v <= UINT32_MAX)
			return (uint32_t)v;
	}
	return (uint32_t)getuid();
}

/* Connect to path, check the peer, and install the socket as the link. */
static int link_open(struct xvl_client *c)
{
	int s = xvl_os_connect(c->path, &c->eb);
	if (s < 0)
		return s;
	int rc = check_peer(c, s, c->path);
	if (rc < 0) {
		close(s);
		return rc;
	}
	pthread_mutex_lock(&c->link_lock);
	if (c->sock >= 0)
		close(c->sock);
	xvl_store_relaxed(&c->sock, s);
	link_nonblocking(c);
	set_link_dead(c, false);
	pthread_mutex_unlock(&c->link_lock);
	return 0;
}

static int connect_link(struct xvl_client *c, const char *path, const char *name)
{
	c->mode = XVL_MODE_LINK;
	snprintf(c->path, sizeof(c->path), "%s", path);
	snprintf(c->name, sizeof(c->name), "%s", name);
	if (c->mbox) {
		/* The mailbox link: no socket, and the window is shared already. */
		int mrc = xvl_link_mbox_connect(c);
		if (mrc == 0)
			mrc = link_hello(c, name);
		return mrc == 0 ? link_enumerate(c) : mrc;
	}
	int rc = link_open(c);
	if (rc < 0)
		return rc;
	rc = link_hello(c, name);
	if (rc == 0)
		rc = link_enumerate(c);
	if (rc == 0)
		rc = link_send_window(c);
	return rc;
}

/* Direct mode: the backend is the one device; the window is its only memory. */
static int connect_vhost(struct xvl_client *c, const char *path)
{
	c->mode = XVL_MODE_VHOST;
	int rc = xvl_vhost_connect(&c->vh, path, &c->eb);
	if (rc < 0)
		return rc;
	rc = check_peer(c, c->vh.sock, path);
	if (rc < 0)
		return rc;
	rc = xvl_vhost_set_mem_table(&c->vh, c->win.fd, c->win.mem.size, c->win.mem.base, &c->eb);
	if (rc < 0)
		return rc;
	c->n_dev = 1;
	c->dev[0] = (struct xvl_dev_desc){
		.index = 0,
		.virtio_id = XVL_VIRTIO_ID_BLOCK,
		.num_queues = c->vh.num_queues < XVL_MAX_QUEUES ? c->vh.num_queues : XVL_MAX_QUEUES,
		.max_queue_size = XVL_VQ_MAX_SIZE,
		.features = c->vh.features,
	};
	snprintf(c->dev[0].name, sizeof(c->dev[0].name), "vhost-user");
	snprintf(c->peer_name, sizeof(c->peer_name), "vhost-user backend");
	return 0;
}

/*
 * A window handed to us (by a partitioner): o->window_fd, or the
 * XVL_WINDOW_FD / XVL_WINDOW_SIZE environment a compartment is started
 * with.  The variable is removed once taken, so that a second client in
 * the same process cannot lay out the same window again.
 */
static int inherited_window(const struct xvl_client_opts *o, uint64_t *size)
{
	if (o && o->window_fd > 0) {
		*size = o->window_size;
		return o->window_fd;
	}
	if (o && o->window)
		return -1;
	const char *fd_env = getenv("XVL_WINDOW_FD");
	if (!fd_env)
		return -1;
	int fd = atoi(fd_env);
	const char *size_env = getenv("XVL_WINDOW_SIZE");
	*size = size_env ? strtoull(size_env, NULL, 10) : 0;
	unsetenv("XVL_WINDOW_FD");
	return fd > 0 ? fd : -1;
}

static int open_window(struct xvl_client *c, const struct xvl_client_opts *o)
{
	uint64_t size = 0;
	int fd = inherited_window(o, &size);
	if (fd < 0)
		return xvl_os_window_create(&c->win, o ? o->window : NULL,
					    o && o->window_size ? o->window_size : DEFAULT_WINDOW_SIZE,
					    &c->eb);
	struct stat st;
	if (!size && fstat(fd, &st) == 0)
		size = (uint64_t)st.st_size;
	return xvl_os_window_map(&c->win, fd, size, &c->eb);
}

static int setup_window(struct xvl_client *c, const struct xvl_client_opts *o)
{
	int rc = c->mbox ? 0 : open_window(c, o); /* the mailbox link opened its window already */
	if (rc < 0)
		return rc;
	rc = xvl_win_format(&c->win.mem);
	if (rc < 0)
		return xvl_err(&c->eb, rc, "window of %llu bytes is too small (minimum %u)",
			       (unsigned long long)c->win.mem.size, XVL_WIN_MIN_SIZE);
	uint64_t heap_len = c->win.mem.size - XVL_WIN_HDR_SIZE;
	c->heap_meta = calloc(1, xvl_heap_meta_size(heap_len, HEAP_MIN_ORDER));
	if (!c->heap_meta)
		return xvl_err(&c->eb, -ENOMEM, "out of memory for the window heap metadata");
	rc = xvl_heap_init(&c->heap, XVL_WIN_HDR_SIZE, heap_len, HEAP_MIN_ORDER, c->heap_meta);
	if (rc < 0)
		return xvl_err(&c->eb, rc, "cannot lay out a heap in the window");
	xvl_win_record(&c->win.mem, XVL_WIN_HEAP, 0, 0, XVL_WIN_HDR_SIZE, heap_len);
	return c->mbox ? xvl_link_mbox_format(c) : 0;
}

static const char *uri_path(const char *uri, enum xvl_mode *mode)
{
	*mode = XVL_MODE_LINK;
	if (!strncmp(uri, "xvl:", 4))
		return uri + 4;
	if (!strncmp(uri, "vhost-user:", 11)) {
		*mode = XVL_MODE_VHOST;
		return uri + 11;
	}
	return uri;
}

int xvl_client_connect(struct xvl_client **out, const char *uri, const struct xvl_client_opts *o,
		       char *err, size_t errlen)
{
	struct xvl_client_opts own;
	char bad[256];
	*out = NULL;
	if (o && xvl_opts_take(&own, sizeof(own), o, XVL_CLIENT_OPTS_SIZE_0_1,
			       "struct xvl_client_opts", bad, sizeof(bad)) < 0) {
		if (err)
			snprintf(err, errlen, "%s", bad);
		return -EINVAL;
	}
	o = o ? &own : NULL;

	struct xvl_client *c = calloc(1, sizeof(*c));
	enum xvl_mode mode;
	int rc;

	if (!c) {
		if (err)
			snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->sock = -1;
	c->win.fd = -1;
	pthread_mutex_init(&c->heap_lock, NULL);
	pthread_mutex_init(&c->link_lock, NULL);
	pthread_mutex_init(&c->recover_lock, NULL);
	c->server_uid = expected_server_uid();
	c->vh.sock = -1;
	c->vh.inflight_fd = -1;
	c->timeout_ms = o && o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	c->reconnect_ms = o ? o->reconnect_ms : 0;
	if (!c->reconnect_ms && getenv("XVL_RECONNECT_MS"))
		c->reconnect_ms = (unsigned)strtoul(getenv("XVL_RECONNECT_MS"), NULL, 10);
	const char *path = uri_path(uri, &mode);
	rc = 0;
	if (xvl_link_mbox_uri(uri))
		rc = xvl_link_mbox_create(c, uri, o && o->window_size ? o->window_size : DEFAULT_WINDOW_SIZE);
	if (rc == 0)
		rc = setup_window(c, o);
	if (rc == 0)
		rc = mode == XVL_MODE_VHOST ? connect_vhost(c, path)
					    : connect_link(c, path, o && o->name ? o->name : "xvl-client");
	if (rc < 0) {
		if (err)
			snprintf(err, errlen, "%s: %s", uri, c->eb.msg);
		xvl_client_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

void xvl_client_close(struct xvl_client *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < XVL_MAX_DEVICES; i++)
		if (c->open[i])
			xvl_blk_close(c->open[i]);
		else if (c->open_net[i])
			xvl_net_close(c->open_net[i]);
	if (c->mode == XVL_MODE_VHOST)
		xvl_vhost_close(&c->vh);
	if (c->sock >= 0)
		close(c->sock);
	xvl_link_mbox_close(c); /* before the window it lives in goes */
	xvl_os_window_close(&c->win);
	free(c->heap_meta);
	pthread_mutex_destroy(&c->heap_lock);
	pthread_mutex_destroy(&c->link_lock);
	pthread_mutex_destroy(&c->recover_lock);
	free(c);
}

const char *xvl_client_errmsg(const struct xvl_client *c)
{
	return c->eb.msg;
}

const char *xvl_client_mode(const struct xvl_client *c)
{
	return c->mode == XVL_MODE_VHOST ? "vhost-user" : "xvl";
}

unsigned xvl_client_num_devices(const struct xvl_client *c)
{
	return c->n_dev;
}

int xvl_client_device(const struct xvl_client *c, unsigned i, struct xvl_dev_desc *d)
{
	if (i >= c->n_dev)
		return -ENODEV;
	*d = c->dev[i];
	return 0;
}

int xvl_client_find(const struct xvl_client *c, const char *name)
{
	for (unsigned i = 0; i < c->n_dev; i++)
		if (!strcmp(c->dev[i].name, name))
			return (int)i;
	return -ENODEV;
}

/* ------------------------------------------------------------ reconnection */

/*
 * The devices this client has open must still be there, under the same
 * names and features, with room for the queues open on them.
 */
static bool devices_unchanged(const struct xvl_client *c, const struct xvl_dev_desc *before)
{
	for (unsigned i = 0; i < XVL_MAX_DEVICES; i++) {
		if (!c->open[i])
			continue;
		struct xvl_blk_info in;
		xvl_blk_get_info(c->open[i], &in);
		if (i >= c->n_dev || strcmp(c->dev[i].name, before[i].name) ||
		    c->dev[i].features != before[i].features ||
		    c->dev[i].num_queues < in.num_queues || c->dev[i].max_queue_size < in.queue_size)
			return false;
	}
	return true;
}

static int relink(struct xvl_client *c)
{
	struct xvl_dev_desc before[XVL_MAX_DEVICES];
	memcpy(before, c->dev, sizeof(before));
	if (c->mbox) {
		set_link_dead(c, false);
		int mrc = xvl_link_mbox_connect(c);
		if (mrc == 0)
			mrc = link_hello(c, c->name);
		if (mrc == 0)
			mrc = link_enumerate(c);
		if (mrc == 0 && !devices_unchanged(c, before))
			mrc = xvl_err(&c->eb, -ENODEV, "the server came back with other devices");
		if (mrc < 0)
			set_link_dead(c, true);
		return mrc;
	}
	int rc = link_open(c);
	if (rc < 0)
		return rc;
	rc = link_hello(c, c->name);
	if (rc == 0)
		rc = link_enumerate(c);
	if (rc == 0 && !devices_unchanged(c, before))
		rc = xvl_err(&c->eb, -ENODEV, "the server came back with other devices");
	if (rc == 0)
		rc = link_send_window(c);
	if (rc < 0)
		set_link_dead(c, true);
	return rc;
}

/* Reconnect within the deadline, or break every open device. */
static int relink_until(struct xvl_client *c, uint64_t deadline)
{
	int rc;
	while ((rc = relink(c)) < 0) {
		if (rc == -ENODEV || xvl_os_now_ns() >= deadline) {
			char why[64];
			snprintf(why, sizeof(why), "server did not come back within %u ms", c->reconnect_ms);
			break_all(c, -ENOTCONN, rc == -ENODEV ? "server came back with other devices" : why);
			c->reconnect_ms = 0; /* once given up, stay down */
			set_link_dead(c, true);
			return -ENOTCONN;
		}
		usleep(20000);
	}
	__atomic_add_fetch(&c->n_reconnects, 1, __ATOMIC_RELAXED);
	return 0;
}

/* Runs with recover_lock and every block queue lock held (blk_recover.c, net_recover.c). */
int xvl_client_recover(struct xvl_client *c)
{
	if (!xvl_client_link_dead(c) || c->mode != XVL_MODE_LINK)
		return 0;
	if (!c->reconnect_ms)
		return -ENOTCONN;
	uint64_t deadline = xvl_os_now_ns() + (uint64_t)c->reconnect_ms * 1000000ull;
	/* A server that dies again while the devices are being set up: start over. */
	do {
		if (relink_until(c, deadline) < 0)
			return -ENOTCONN;
		for (unsigned i = 0; i < XVL_MAX_DEVICES && !xvl_client_link_dead(c); i++)
			if (c->open[i])
				xvl_blk_restart(c->open[i], true);
	} while (xvl_client_link_dead(c));
	xvl_net_relinked(c); /* the net devices of this link: set up again at their next call */
	return 0;
}

unsigned xvl_client_reconnects(const struct xvl_client *c)
{
	return xvl_load_relaxed(&c->n_reconnects);
}

unsigned xvl_client_restarts(const struct xvl_client *c)
{
	return xvl_load_relaxed(&c->n_restarts);
}

/* ------------------------------------------------------------ window heap */

/* The heap is shared by every queue (bounce blocks) and the caller (buffers): locked. */
uint64_t xvl_client_heap_alloc(struct xvl_client *c, uint64_t len)
{
	pthread_mutex_lock(&c->heap_lock);
	uint64_t off = xvl_heap_alloc(&c->heap, len);
	pthread_mutex_unlock(&c->heap_lock);
	return off;
}

void xvl_client_heap_free(struct xvl_client *c, uint64_t off)
{
	if (!off)
		return;
	pthread_mutex_lock(&c->heap_lock);
	xvl_heap_free(&c->heap, off);
	pthread_mutex_unlock(&c->heap_lock);
}

void *xvl_buf_alloc(struct xvl_client *c, size_t len)
{
	uint64_t off = xvl_client_heap_alloc(c, len ? len : 1);
	return off ? c->win.mem.base + off : NULL;
}

void xvl_buf_free(struct xvl_client *c, void *buf)
{
	if (!buf)
		return;
	int64_t off = xvl_mem_off(&c->win.mem, buf, 1);
	if (off > 0)
		xvl_client_heap_free(c, (uint64_t)off);
}

/* ------------------------------------------------------------ device operations */

int xvl_dev_attach(struct xvl_client *c, uint32_t dev)
{
	if (c->mode == XVL_MODE_VHOST)
		return 0;
	struct xvl_msg req = {.type = XVL_MSG_ATTACH}, rep;
	req.u.dev.dev = dev;
	return link_call(c, &req, NULL, 0, &rep);
}

int xvl_dev_set_features(struct xvl_client *c, uint32_t dev, uint64_t features)
{
	if (c->mode == XVL_MODE_VHOST)
		return xvl_vhost_set_features(&c->vh, features, &c->eb);
	struct xvl_msg req = {.type = XVL_MSG_SET_FEATURES}, rep;
	req.u.feat.dev = dev;
	req.u.feat.features = features;
	return link_call(c, &req, NULL, 0, &rep);
}

int xvl_dev_get_config(struct xvl_client *c, uint32_t dev, uint32_t off, void *buf, uint32_t len)
{
	if (c->mode == XVL_MODE_VHOST)
		return xvl_vhost_get_config(&c->vh, off, buf, len, &c->eb);
	struct xvl_msg req = {.type = XVL_MSG_GET_CONFIG}, rep;
	req.u.cfg.dev = dev;
	req.u.cfg.off = off;
	req.u.cfg.len = len;
	int rc = link_call(c, &req, NULL, 0, &rep);
	if (rc < 0)
		return rc;
	if (rep.u.cfg.len != len)
		return xvl_err(&c->eb, -EPROTO, "GET_CONFIG: server returned %u bytes, asked for %u",
			       rep.u.cfg.len, len);
	memcpy(buf, rep.u.cfg.data, len);
	return 0;
}

int xvl_dev_set_status(struct xvl_client *c, uint32_t dev, uint32_t status)
{
	if (c->mode == XVL_MODE_VHOST)
		return 0; /* vhost-user-blk has no device status; DRIVER_OK is the vring enable */
	struct xvl_msg req = {.type = XVL_MSG_SET_STATUS}, rep;
	req.u.st.dev = dev;
	req.u.st.status = status;
	int rc = link_call(c, &req, NULL, 0, &rep);
	if (rc < 0)
		return rc;
	if ((rep.u.st.status & status) != status)
		return xvl_err(&c->eb, -EPROTO, "device %u did not accept status 0x%x (now 0x%x)", dev,
			       status, rep.u.st.status);
	return 0;
}

int xvl_dev_setup_queue(struct xvl_client *c, uint32_t dev, const struct xvl_queue_setup *qs)
{
	if (c->mode == XVL_MODE_VHOST)
		return xvl_vhost_start_vring(&c->vh, qs->queue, &qs->layout, 0, qs->kick_fd,
					     qs->call_fd, &c->eb);
	struct xvl_msg req = {.type = XVL_MSG_SET_QUEUE}, rep;
	req.u.queue = (struct xvl_m_queue){
		.dev = dev,
		.queue = qs->queue,
		.num = qs->layout.num,
		.flags = XVL_QUEUE_F_ENABLE | (qs->poll ? XVL_QUEUE_F_POLL : 0),
		.desc = qs->layout.desc,
		.avail = qs->layout.avail,
		.used = qs->layout.used,
	};
	if (c->mbox) {
		int rc = xvl_link_mbox_queue(c, dev, qs, &req.u.queue);
		return rc < 0 ? rc : link_call(c, &req, NULL, 0, &rep);
	}
	int fds[2] = {qs->kick_fd, qs->call_fd};
	return link_call(c, &req, fds, qs->poll ? 0 : 2, &rep);
}

static int vhost_stop_all(struct xvl_client *c, uint16_t nq)
{
	uint16_t base;
	int rc = 0;
	for (uint16_t q = 0; q < nq; q++) {
		int r = xvl_vhost_stop_vring(&c->vh, q, &base, &c->eb);
		if (r < 0 && rc == 0)
			rc = r;
	}
	return rc;
}

int xvl_dev_reset(struct xvl_client *c, uint32_t dev, uint16_t nq)
{
	if (c->mode == XVL_MODE_VHOST)
		return c->vh.sock >= 0 ? vhost_stop_all(c, nq) : -ENOTCONN;
	struct xvl_msg req = {.type = XVL_MSG_RESET}, rep;
	req.u.dev.dev = dev;
	return link_call(c, &req, NULL, 0, &rep);
}

int xvl_dev_detach(struct xvl_client *c, uint32_t dev, uint16_t nq)
{
	if (c->mode == XVL_MODE_VHOST)
		return c->vh.sock >= 0 ? vhost_stop_all(c, nq) : 0;
	if (xvl_client_link_dead(c))
		return 0;
	struct xvl_msg req = {.type = XVL_MSG_DETACH}, rep;
	req.u.dev.dev = dev;
	return link_call(c, &req, NULL, 0, &rep);
}
