// SPDX-License-Identifier: GPL-2.0
/*
 * The driver side of the mailbox link (docs/PROTOCOL.md, "Mailbox link"):
 * core/mailbox.c carries the link messages of core/proto.c in the window;
 * this file adds what a kernel needs around it: one call at a time under
 * link_lock, a bounded wait for each reply, EVENTs queued to a work item,
 * and the connection set-up run from a delayed work so that module load
 * never waits for the device side.
 *
 * States: link_up (a session the device acknowledged), link_dead (that
 * session broke: calls fail at once until the next one is up).  Both change
 * only under link_lock.
 */
#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/module.h>

#include "xvl_virtio.h"

static unsigned int link_timeout_ms = 3000;
module_param(link_timeout_ms, uint, 0644);
MODULE_PARM_DESC(link_timeout_ms, "Longest wait for a reply on the mailbox link (ms)");

static unsigned int reconnect_ms = 10000;
module_param(reconnect_ms, uint, 0644);
MODULE_PARM_DESC(reconnect_ms, "How long requests wait for a lost device side to come back (ms)");

static ulong devices = ULONG_MAX;
module_param(devices, ulong, 0444);
MODULE_PARM_DESC(devices, "Which of the server's devices to take: bit i is device i (default all)");

/* Whether device i of the server is ours to register (the others stay free for other drivers). */
static bool take_device(u32 i)
{
	return i < BITS_PER_LONG && (devices & BIT(i));
}

static void queue_event(struct xvl_win *w, const struct xvl_m_event *ev)
{
	unsigned long flags;

	spin_lock_irqsave(&w->ev_lock, flags);
	if (w->ev_head - w->ev_tail < ARRAY_SIZE(w->ev))
		w->ev[w->ev_head++ % ARRAY_SIZE(w->ev)] = *ev;
	else
		dev_warn_ratelimited(w->dev, "link: EVENT queue full, event of device %u dropped\n",
				     ev->dev);
	spin_unlock_irqrestore(&w->ev_lock, flags);
	schedule_work(&w->event_work);
}

static bool next_event(struct xvl_win *w, struct xvl_m_event *ev)
{
	unsigned long flags;
	bool got = false;

	spin_lock_irqsave(&w->ev_lock, flags);
	if (w->ev_tail != w->ev_head) {
		*ev = w->ev[w->ev_tail++ % ARRAY_SIZE(w->ev)];
		got = true;
	}
	spin_unlock_irqrestore(&w->ev_lock, flags);
	return got;
}

/* The session ended (peer restarted, closed, or broke the rules).  link_lock held. */
static void link_broke(struct xvl_win *w, int err)
{
	if (w->link_dead)
		return;
	if (err == -ECONNRESET)
		dev_warn(w->dev, "link: the device side closed or restarted the session\n");
	else
		dev_err(w->dev, "link: broken (%d): %s\n", err, xvl_mbox_why(&w->mb));
	w->link_up = false;
	w->link_dead = true;
	schedule_work(&w->event_work);
}

/* Take one message off the mailbox: 1 a reply (in *m), 0 nothing, <0 link error. */
static int recv_one(struct xvl_win *w, struct xvl_msg *m)
{
	int ret = xvl_mbox_recv(&w->mb, m);

	if (ret <= 0)
		return ret;
	if (m->type == XVL_MSG_EVENT) {
		queue_event(w, &m->u.event);
		return 0;
	}
	return 1;
}

static bool link_wait(struct xvl_win *w, unsigned long deadline)
{
	if (time_after(jiffies, deadline))
		return false;
	if (w->nvec) {
		wait_event_timeout(w->link_wq, xvl_mbox_pending(&w->mb),
				   min_t(long, deadline - jiffies, HZ / 10) + 1);
	} else {
		usleep_range(50, 200);
	}
	return true;
}

/*
 * Send req, wait for its reply in rsp.  0, the reply's negative status, or
 * -ENOTCONN (no session), -ETIMEDOUT, -EPROTO (a reply that is not ours).
 */
int xvl_link_call(struct xvl_win *w, struct xvl_msg *req, struct xvl_msg *rsp)
{
	unsigned long deadline = jiffies + msecs_to_jiffies(link_timeout_ms);
	int ret;

	mutex_lock(&w->link_lock);
	if (!w->link_up || w->link_dead) {
		ret = -ENOTCONN;
		goto out;
	}
	req->flags = 0;
	req->status = 0;
	req->seq = ++w->seq;
	while ((ret = xvl_mbox_send(&w->mb, req)) == -EAGAIN) {
		if (!link_wait(w, deadline)) {
			ret = -ETIMEDOUT;
			goto out;
		}
	}
	if (ret < 0) {
		link_broke(w, ret);
		goto out;
	}
	xvl_ring(w, XVL_MBOX_VEC_MAILBOX);

	for (;;) {
		ret = recv_one(w, rsp);
		if (ret < 0) {
			link_broke(w, ret);
			goto out;
		}
		if (ret == 1) {
			if (rsp->seq == req->seq && rsp->type == req->type)
				break;
			/* A late reply to a call that timed out: not an error of this one. */
			dev_dbg(w->dev, "link: stray %s reply seq %u\n", xvl_msg_name(rsp->type),
				rsp->seq);
			continue;
		}
		if (!link_wait(w, deadline)) {
			dev_err(w->dev, "link: no reply to %s within %u ms\n",
				xvl_msg_name(req->type), link_timeout_ms);
			ret = -ETIMEDOUT;
			goto out;
		}
	}
	ret = rsp->status;
out:
	mutex_unlock(&w->link_lock);
	return ret;
}

/* The mailbox vector rang (or a poller saw a message): collect EVENTs. */
void xvl_link_kick(struct xvl_win *w)
{
	wake_up(&w->link_wq);
	schedule_work(&w->event_work);
}

static void drain_mailbox(struct xvl_win *w)
{
	struct xvl_msg m;
	int ret;

	if (!mutex_trylock(&w->link_lock))
		return; /* a call in progress reads the mailbox itself */
	while (w->link_up && !w->link_dead) {
		ret = recv_one(w, &m);
		if (ret < 0)
			link_broke(w, ret);
		if (ret <= 0)
			break;
		dev_dbg(w->dev, "link: stray %s reply seq %u\n", xvl_msg_name(m.type), m.seq);
	}
	mutex_unlock(&w->link_lock);
}

static void event_work(struct work_struct *work)
{
	struct xvl_win *w = container_of(work, struct xvl_win, event_work);
	bool lost, first, give_up;
	struct xvl_m_event ev;

	if (READ_ONCE(w->removing))
		return;
	drain_mailbox(w);
	while (next_event(w, &ev))
		xvl_vdev_event(w, &ev);

	mutex_lock(&w->link_lock);
	lost = w->link_dead && !w->connecting && !w->removing && !w->gave_up;
	first = lost && !w->reconnecting;
	give_up = lost && !first && time_after(jiffies, w->recover_until);
	if (first) {
		/* The devices wait for a new session up to reconnect_ms. */
		w->reconnecting = true;
		w->recover_until = jiffies + msecs_to_jiffies(reconnect_ms);
	}
	if (give_up) {
		w->reconnecting = false;
		w->gave_up = true;
	} else if (lost) {
		/* Lost first, or again while recovering: a new session either way. */
		w->connecting = true;
		w->connect_tries = 0;
		xvl_mbox_connect(&w->mb);
	}
	mutex_unlock(&w->link_lock);
	if (first) {
		xvl_vdev_link_lost(w);
		dev_info(w->dev, "link: holding requests up to %u ms for the device side to come back\n",
			 reconnect_ms);
	}
	if (give_up) {
		dev_err(w->dev, "link: the device side kept breaking the link; giving up\n");
		xvl_vdev_give_up(w, "the device side did not come back");
	} else if (lost) {
		/* Again and again: not faster than every 50 ms. */
		mod_delayed_work(system_wq, &w->connect_work, first ? 0 : msecs_to_jiffies(50));
	}
}

static int hello(struct xvl_win *w)
{
	struct xvl_msg req = { .type = XVL_MSG_HELLO }, rsp;
	int ret;

	req.u.hello.major = XVL_PROTO_MAJOR;
	req.u.hello.minor = XVL_PROTO_MINOR;
	req.u.hello.caps = XVL_CAP_POLL;
	strscpy(req.u.hello.name, "linux xvl_virtio", sizeof(req.u.hello.name));
	ret = xvl_link_call(w, &req, &rsp);
	if (ret)
		return ret;
	if (rsp.u.hello.major != XVL_PROTO_MAJOR) {
		dev_err(w->dev, "link: device side speaks protocol %u, not %u\n",
			rsp.u.hello.major, XVL_PROTO_MAJOR);
		return -EPROTONOSUPPORT;
	}
	if (rsp.u.hello.n_devices > XVL_MAX_DEVICES) {
		dev_err(w->dev, "link: device side offers %u devices, more than %u\n",
			rsp.u.hello.n_devices, XVL_MAX_DEVICES);
		return -EPROTO;
	}
	w->n_devices = rsp.u.hello.n_devices;
	dev_info(w->dev, "link: up, device side \"%s\" offers %u device(s)\n",
		 rsp.u.hello.name, w->n_devices);
	return 0;
}

/* DEV_INFO of device i, every field checked before anyone uses it. */
static int dev_info_of(struct xvl_win *w, u32 i, struct xvl_m_dev_info *info)
{
	struct xvl_msg req = { .type = XVL_MSG_DEV_INFO }, rsp;
	u16 mqs;
	int ret;

	req.u.dev.dev = i;
	ret = xvl_link_call(w, &req, &rsp);
	if (ret)
		return ret;
	*info = rsp.u.info;
	mqs = info->max_queue_size;
	if (info->dev != i || !info->virtio_id || !info->num_queues ||
	    info->num_queues > XVL_MAX_QUEUES || !mqs || mqs > 1024 || (mqs & (mqs - 1)) ||
	    info->config_len > XVL_CONFIG_MAX ||
	    !(info->features & BIT_ULL(VIRTIO_F_VERSION_1))) {
		dev_err(w->dev, "link: DEV_INFO of device %u is malformed (id %u, %u queues of %u, config %u bytes, features %#llx)\n",
			i, info->virtio_id, info->num_queues, mqs, info->config_len,
			(unsigned long long)info->features);
		return -EPROTO;
	}
	return 0;
}

/* A new session after the old one was lost: the same devices, set up again. */
static int recover_session(struct xvl_win *w)
{
	struct xvl_m_dev_info info;
	u32 i;
	int ret;

	for (i = 0; i < XVL_MAX_DEVICES; i++) {
		struct xvl_vdev *xd = w->vdevs[i];

		if (!xd || xd->broken)
			continue;
		ret = i < w->n_devices ? dev_info_of(w, i, &info) : -ENODEV;
		if (!ret && !xvl_vdev_same(xd, &info))
			ret = -ENODEV;
		if (!ret)
			ret = xvl_vdev_recover(xd);
		if (ret)
			return ret;
	}
	return 0;
}

static bool session_lost(struct xvl_win *w)
{
	bool lost;

	mutex_lock(&w->link_lock);
	lost = w->link_dead;
	mutex_unlock(&w->link_lock);
	return lost;
}

/* A session is up: enumerate, or set up again what the lost one had. */
static void setup_session(struct xvl_win *w)
{
	struct xvl_m_dev_info info;
	u32 i;
	int ret;

	ret = hello(w);
	if (!ret && w->reconnecting)
		ret = recover_session(w);
	if (ret) {
		/* The link broke again: event_work starts over, within the same deadline. */
		if (session_lost(w))
			return;
		dev_err(w->dev, "link: %s failed (%d)\n", w->reconnecting ? "recovery" : "HELLO",
			ret);
		if (w->reconnecting)
			xvl_vdev_give_up(w, "the device side came back without this device");
		mutex_lock(&w->link_lock);
		w->reconnecting = false;
		w->gave_up = true;
		mutex_unlock(&w->link_lock);
		return;
	}
	if (w->reconnecting)
		dev_info(w->dev, "link: device side back, requests resubmitted\n");
	mutex_lock(&w->link_lock);
	w->reconnecting = false;
	mutex_unlock(&w->link_lock);
	/* Devices seen for the first time (all of them, unless this is a recovery). */
	for (i = 0; i < w->n_devices; i++) {
		if (w->vdevs[i] || !take_device(i))
			continue;
		ret = dev_info_of(w, i, &info);
		if (!ret)
			ret = xvl_vdev_add(w, i, &info);
		if (ret)
			dev_err(w->dev, "device %u: not added (%d)\n", i, ret);
	}
}

static void connect_work(struct work_struct *work)
{
	struct xvl_win *w = container_of(to_delayed_work(work), struct xvl_win, connect_work);
	unsigned long delay;
	bool give_up;
	int ret;

	mutex_lock(&w->link_lock);
	if (w->removing) {
		mutex_unlock(&w->link_lock);
		return;
	}
	ret = xvl_mbox_connected(&w->mb);
	if (ret < 0) {
		dev_err(w->dev, "link: session refused (%d): %s\n", ret, xvl_mbox_why(&w->mb));
		xvl_mbox_connect(&w->mb);
	}
	if (ret == 1) {
		w->link_up = true;
		w->link_dead = false;
		w->connecting = false;
	}
	give_up = ret != 1 && w->reconnecting && time_after(jiffies, w->recover_until);
	if (give_up) {
		w->reconnecting = false;
		w->connecting = false;
		w->gave_up = true;
	}
	mutex_unlock(&w->link_lock);

	if (ret == 1) {
		setup_session(w);
		return;
	}
	if (give_up) {
		dev_err(w->dev, "link: the device side did not come back within %u ms\n",
			reconnect_ms);
		xvl_vdev_give_up(w, "the device side did not come back");
		return;
	}
	/* A device side that sleeps until rung looks at the mailbox now. */
	xvl_ring(w, XVL_MBOX_VEC_MAILBOX);
	/* Nobody there yet: every 20 ms for a second, then 500 ms (100 ms recovering). */
	delay = msecs_to_jiffies(w->connect_tries++ < 50 ? 20 : w->reconnecting ? 100 : 500);
	schedule_delayed_work(&w->connect_work, delay);
}

void xvl_link_init(struct xvl_win *w)
{
	mutex_init(&w->link_lock);
	init_waitqueue_head(&w->link_wq);
	spin_lock_init(&w->ev_lock);
	INIT_DELAYED_WORK(&w->connect_work, connect_work);
	INIT_WORK(&w->event_work, event_work);
}

/* Lay the mailbox at window offset off and look for the device side. */
int xvl_link_start(struct xvl_win *w, u64 off)
{
	int ret;

	ret = xvl_mbox_format(&w->mb, &w->mem, off, 0, w->nvec);
	if (ret)
		return ret;
	ret = xvl_mbox_connect(&w->mb);
	if (ret)
		return ret;
	schedule_delayed_work(&w->connect_work, 0);
	return 0;
}

/* No new devices, no more EVENT handling; calls still work until xvl_link_stop(). */
void xvl_link_quiesce(struct xvl_win *w)
{
	mutex_lock(&w->link_lock);
	w->removing = true;
	mutex_unlock(&w->link_lock);
	cancel_delayed_work_sync(&w->connect_work);
	cancel_work_sync(&w->event_work);
}

/* No more calls after this; the device side sees the session closed. */
void xvl_link_stop(struct xvl_win *w)
{
	cancel_work_sync(&w->event_work);
	mutex_lock(&w->link_lock);
	xvl_mbox_close(&w->mb);
	w->link_up = false;
	mutex_unlock(&w->link_lock);
}
