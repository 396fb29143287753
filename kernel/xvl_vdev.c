// SPDX-License-Identifier: GPL-2.0
/*
 * One virtio_device per device the server offers, and its
 * virtio_config_ops.  Configuration space is cached: read whole at attach
 * and again on EVENT CONFIG, so get() never waits for the link and works in
 * any context.  Status, features and queues go over the link.
 *
 * Features: the device-specific bits the server offers, VERSION_1, and
 * ACCESS_PLATFORM (a transport bit the server never sees) so that
 * virtio_ring maps every buffer through our DMA ops.  No indirect
 * descriptors, event index or packed rings (see xvl_vq.c).
 */
#include <linux/slab.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>

#include "xvl_virtio.h"

#define XVL_DEV_FEATURES	GENMASK_ULL(VIRTIO_TRANSPORT_F_START - 1, 0)
#define XVL_QUEUE_SIZE_MAX	256

static int call_dev(struct xvl_vdev *xd, u16 type, struct xvl_msg *rsp)
{
	struct xvl_msg req = { .type = type };

	req.u.dev.dev = xd->index;
	return xvl_link_call(xd->win, &req, rsp);
}

/* Fetch the whole configuration space into the cache. */
static int fetch_config(struct xvl_vdev *xd)
{
	struct xvl_msg req = { .type = XVL_MSG_GET_CONFIG }, rsp;
	int ret;

	if (!xd->info.config_len)
		return 0;
	req.u.cfg.dev = xd->index;
	req.u.cfg.off = 0;
	req.u.cfg.len = xd->info.config_len;
	ret = xvl_link_call(xd->win, &req, &rsp);
	if (ret)
		return ret;
	if (rsp.u.cfg.len != xd->info.config_len) {
		dev_err(xd->win->dev, "device %u: GET_CONFIG returned %u bytes, not %u\n",
			xd->index, rsp.u.cfg.len, xd->info.config_len);
		return -EPROTO;
	}
	memcpy(xd->config, rsp.u.cfg.data, xd->info.config_len);
	WRITE_ONCE(xd->config_gen, xd->config_gen + 1);
	return 0;
}

static void xvl_get(struct virtio_device *vdev, unsigned int offset, void *buf,
		    unsigned int len)
{
	struct xvl_vdev *xd = to_xvl_vdev(vdev);

	if (offset > xd->info.config_len || len > xd->info.config_len - offset) {
		dev_err_ratelimited(&vdev->dev, "config read of %u bytes at %u past its %u bytes\n",
				    len, offset, xd->info.config_len);
		memset(buf, 0, len);
		return;
	}
	memcpy(buf, xd->config + offset, len);
	WRITE_ONCE(xd->config_reads, xd->config_reads + 1);
}

static void xvl_set(struct virtio_device *vdev, unsigned int offset, const void *buf,
		    unsigned int len)
{
	struct xvl_vdev *xd = to_xvl_vdev(vdev);
	struct xvl_msg req = { .type = XVL_MSG_SET_CONFIG }, rsp;
	int ret;

	if (offset > xd->info.config_len || len > xd->info.config_len - offset)
		return;
	req.u.cfg.dev = xd->index;
	req.u.cfg.off = offset;
	req.u.cfg.len = len;
	memcpy(req.u.cfg.data, buf, len);
	ret = xvl_link_call(xd->win, &req, &rsp);
	if (ret) {
		dev_err(&vdev->dev, "config write of %u bytes at %u failed (%d)\n", len, offset,
			ret);
		return;
	}
	memcpy(xd->config + offset, buf, len);
}

static u32 xvl_generation(struct virtio_device *vdev)
{
	return READ_ONCE(to_xvl_vdev(vdev)->config_gen);
}

static u8 xvl_get_status(struct virtio_device *vdev)
{
	struct xvl_vdev *xd = to_xvl_vdev(vdev);

	/* A reset device reads 0 even when broken (virtio core checks after remove). */
	return xd->broken && xd->status ? xd->status | VIRTIO_CONFIG_S_NEEDS_RESET : xd->status;
}

static void apply_vqs(struct xvl_vdev *xd, void (*fn)(struct xvl_vq *q))
{
	unsigned int i;

	mutex_lock(&xd->vqs_lock);
	for (i = 0; i < xd->nvqs; i++)
		fn(xd->vqs[i]);
	mutex_unlock(&xd->vqs_lock);
}

static void break_queues(struct xvl_vdev *xd, const char *why)
{
	unsigned int i;

	mutex_lock(&xd->vqs_lock);
	xd->broken = true;
	for (i = 0; i < xd->nvqs; i++)
		if (xd->vqs[i])
			xvl_vq_kill(xd->vqs[i], why);
	mutex_unlock(&xd->vqs_lock);
}

static void xvl_set_status(struct virtio_device *vdev, u8 status)
{
	struct xvl_vdev *xd = to_xvl_vdev(vdev);
	struct xvl_msg req = { .type = XVL_MSG_SET_STATUS }, rsp;
	int ret;

	req.u.st.dev = xd->index;
	req.u.st.status = status;
	ret = xvl_link_call(xd->win, &req, &rsp);
	if (!ret && rsp.u.st.dev != xd->index)
		ret = -EPROTO;
	if (ret) {
		dev_err(&vdev->dev, "SET_STATUS %#x failed (%d)\n", status, ret);
		xd->status = status & ~(VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
		if (status & VIRTIO_CONFIG_S_DRIVER_OK)
			break_queues(xd, "the device did not start");
		return;
	}
	/* Only bits we asked for can be set; the device may clear some (FEATURES_OK). */
	xd->status = rsp.u.st.status & status;
}

static void xvl_reset(struct virtio_device *vdev)
{
	struct xvl_vdev *xd = to_xvl_vdev(vdev);
	struct xvl_msg rsp;
	int ret;

	ret = call_dev(xd, XVL_MSG_RESET, &rsp);
	if (ret && !xd->broken)
		dev_err(&vdev->dev, "RESET failed (%d)\n", ret);
	xd->status = 0;
}

static u64 xvl_get_features(struct virtio_device *vdev)
{
	struct xvl_vdev *xd = to_xvl_vdev(vdev);

	u64 f = xd->info.features & (XVL_DEV_FEATURES | BIT_ULL(VIRTIO_F_VERSION_1));

	return xvl_net_features(xd, f) | BIT_ULL(VIRTIO_F_ACCESS_PLATFORM);
}

static int xvl_finalize_features(struct virtio_device *vdev)
{
	struct xvl_vdev *xd = to_xvl_vdev(vdev);
	struct xvl_msg req = { .type = XVL_MSG_SET_FEATURES }, rsp;

	vring_transport_features(vdev);
	if (!__virtio_test_bit(vdev, VIRTIO_F_VERSION_1) ||
	    !__virtio_test_bit(vdev, VIRTIO_F_ACCESS_PLATFORM))
		return -EINVAL;
	req.u.feat.dev = xd->index;
	req.u.feat.features = vdev->features & xd->info.features;
	xd->features = req.u.feat.features;
	return xvl_link_call(xd->win, &req, &rsp);
}

static void xvl_del_vqs(struct virtio_device *vdev)
{
	struct xvl_vdev *xd = to_xvl_vdev(vdev);
	unsigned int i;

	mutex_lock(&xd->vqs_lock);
	for (i = 0; i < xd->nvqs; i++) {
		if (xd->vqs[i])
			xvl_vq_destroy(xd->vqs[i]);
		xd->vqs[i] = NULL;
	}
	xd->nvqs = 0;
	mutex_unlock(&xd->vqs_lock);
}

static int xvl_find_vqs(struct virtio_device *vdev, unsigned int nvqs, struct virtqueue *vqs[],
			vq_callback_t *callbacks[], const char * const names[], const bool *ctx,
			struct irq_affinity *desc)
{
	struct xvl_vdev *xd = to_xvl_vdev(vdev);
	unsigned int i, qidx = 0, num, named = 0, dq;
	struct xvl_vq *q;
	int ret;

	for (i = 0; i < nvqs; i++)
		named += !!names[i];
	num = min_t(unsigned int, xd->info.max_queue_size, XVL_QUEUE_SIZE_MAX);
	for (i = 0; i < nvqs; i++) {
		if (!names[i]) {
			vqs[i] = NULL;
			continue;
		}
		/* the driver's queue qidx is the device's queue dq */
		dq = xvl_net_queue_index(xd, qidx, named);
		if (qidx >= XVL_MAX_QUEUES || dq >= xd->info.num_queues) {
			ret = -ENOENT;
			goto err;
		}
		q = xvl_vq_create(xd, dq, num, callbacks[i], names[i], ctx ? ctx[i] : false);
		if (IS_ERR(q)) {
			ret = PTR_ERR(q);
			goto err;
		}
		mutex_lock(&xd->vqs_lock);
		xd->vqs[qidx++] = q;
		xd->nvqs = qidx;
		mutex_unlock(&xd->vqs_lock);
		ret = xvl_vq_announce(q);
		if (ret) {
			dev_err(&vdev->dev, "SET_QUEUE %u failed (%d)\n", q->index, ret);
			goto err;
		}
		vqs[i] = q->vq;
	}
	return 0;
err:
	xvl_del_vqs(vdev);
	return ret;
}

static void xvl_synchronize_cbs(struct virtio_device *vdev)
{
	/* Callbacks run from interrupt handlers and RCU read sections only. */
	synchronize_rcu();
}

static const char *xvl_bus_name(struct virtio_device *vdev)
{
	return dev_name(to_xvl_vdev(vdev)->win->dev);
}

static const struct virtio_config_ops xvl_config_ops = {
	.get = xvl_get,
	.set = xvl_set,
	.generation = xvl_generation,
	.get_status = xvl_get_status,
	.set_status = xvl_set_status,
	.reset = xvl_reset,
	.find_vqs = xvl_find_vqs,
	.del_vqs = xvl_del_vqs,
	.synchronize_cbs = xvl_synchronize_cbs,
	.get_features = xvl_get_features,
	.finalize_features = xvl_finalize_features,
	.bus_name = xvl_bus_name,
};

static void xvl_vdev_release(struct device *dev)
{
	kfree(to_xvl_vdev(dev_to_virtio(dev)));
}

int xvl_vdev_add(struct xvl_win *w, u32 index, const struct xvl_m_dev_info *info)
{
	struct xvl_vdev *xd;
	struct xvl_msg rsp;
	int ret;

	xd = kzalloc(sizeof(*xd), GFP_KERNEL);
	if (!xd)
		return -ENOMEM;
	mutex_init(&xd->vqs_lock);
	xd->win = w;
	xd->index = index;
	xd->info = *info;
	ret = call_dev(xd, XVL_MSG_ATTACH, &rsp);
	if (!ret)
		ret = fetch_config(xd);
	if (ret) {
		kfree(xd);
		return ret;
	}

	xd->vdev.dev.parent = w->dev;
	xd->vdev.dev.release = xvl_vdev_release;
	xd->vdev.id.vendor = 0x1af4;
	xd->vdev.id.device = info->virtio_id;
	xd->vdev.config = &xvl_config_ops;
	/* Visible to EVENTs and link loss already while the driver probes. */
	w->vdevs[index] = xd;
	ret = register_virtio_device(&xd->vdev);
	if (ret) {
		w->vdevs[index] = NULL;
		flush_work(&w->event_work);
		/* put_device() frees xd: detach first. */
		call_dev(xd, XVL_MSG_DETACH, &rsp);
		put_device(&xd->vdev.dev);
		return ret;
	}
	xd->registered = true;
	dev_info(&xd->vdev.dev, "xvloop device %u \"%s\": virtio id %u, %u queue(s)\n", index,
		 info->name, info->virtio_id, info->num_queues);
	return 0;
}

void xvl_vdev_remove_all(struct xvl_win *w)
{
	struct xvl_msg req = { .type = XVL_MSG_DETACH }, rsp;
	u32 i;

	for (i = 0; i < XVL_MAX_DEVICES; i++) {
		struct xvl_vdev *xd = w->vdevs[i];

		if (!xd)
			continue;
		w->vdevs[i] = NULL;
		unregister_virtio_device(&xd->vdev);
		req.u.dev.dev = i;
		xvl_link_call(w, &req, &rsp);
	}
}

static void config_changed(struct xvl_vdev *xd)
{
	if (fetch_config(xd) == 0)
		virtio_config_changed(&xd->vdev);
}

/* An EVENT from the device side (event work, process context). */
void xvl_vdev_event(struct xvl_win *w, const struct xvl_m_event *ev)
{
	struct xvl_vdev *xd = ev->dev < XVL_MAX_DEVICES ? w->vdevs[ev->dev] : NULL;
	char msg[sizeof(ev->msg) + 1];

	if (!xd) {
		dev_warn_ratelimited(w->dev, "link: EVENT %u for device %u that is not ours\n",
				     ev->code, ev->dev);
		return;
	}
	memcpy(msg, ev->msg, sizeof(ev->msg));
	msg[sizeof(ev->msg)] = '\0';
	switch (ev->code) {
	case XVL_EVENT_BROKEN:
		dev_err(&xd->vdev.dev, "the device side broke the device (%d): %s\n", ev->reason,
			msg);
		break_queues(xd, "the device side broke the device");
		break;
	case XVL_EVENT_CONFIG:
		config_changed(xd);
		break;
	case XVL_EVENT_RESTART:
		dev_warn(&xd->vdev.dev, "the device lost its state: setting it up again\n");
		apply_vqs(xd, xvl_vq_stop);
		if (xvl_vdev_recover(xd))
			break_queues(xd, "the device did not come back after a restart");
		break;
	default:
		dev_warn_ratelimited(&xd->vdev.dev, "EVENT with unknown code %u ignored\n",
				     ev->code);
	}
}

/* The session ended: hold every device's requests until it is back (or we give up). */
void xvl_vdev_link_lost(struct xvl_win *w)
{
	u32 i;

	for (i = 0; i < XVL_MAX_DEVICES; i++) {
		if (!w->vdevs[i])
			continue;
		apply_vqs(w->vdevs[i], xvl_vq_stop);
		xvl_net_link_down(w->vdevs[i]);
	}
}

/* Recovery failed: every device's requests fail from now on. */
void xvl_vdev_give_up(struct xvl_win *w, const char *why)
{
	u32 i;

	for (i = 0; i < XVL_MAX_DEVICES; i++)
		if (w->vdevs[i] && !w->vdevs[i]->broken)
			break_queues(w->vdevs[i], why);
}

/* After a new session: is this still the device we set up? */
bool xvl_vdev_same(const struct xvl_vdev *xd, const struct xvl_m_dev_info *info)
{
	return info->virtio_id == xd->info.virtio_id && info->num_queues == xd->info.num_queues &&
	       info->config_len == xd->info.config_len &&
	       (info->features & xd->features) == xd->features &&
	       info->max_queue_size >= min_t(u16, xd->info.max_queue_size, XVL_QUEUE_SIZE_MAX) &&
	       !strncmp(info->name, xd->info.name, sizeof(info->name));
}

static int raw_status(struct xvl_vdev *xd, u8 status)
{
	struct xvl_msg req = { .type = XVL_MSG_SET_STATUS }, rsp;
	int ret;

	req.u.st.dev = xd->index;
	req.u.st.status = status;
	ret = xvl_link_call(xd->win, &req, &rsp);
	if (!ret && (rsp.u.st.dev != xd->index || (rsp.u.st.status & status) != status))
		ret = -EIO;
	return ret;
}

/*
 * Set a device that lost its state up again as the driver had it: ATTACH
 * (after a new session), the status, features and queues it had, then
 * DRIVER_OK and the held requests resubmitted.  Its queues are stopped.
 */
int xvl_vdev_recover(struct xvl_vdev *xd)
{
	u8 st = xd->status, base = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
	struct xvl_msg req = { .type = XVL_MSG_SET_FEATURES }, rsp;
	unsigned int i;
	int ret;

	ret = call_dev(xd, XVL_MSG_ATTACH, &rsp);
	if (ret && ret != -EALREADY)
		return ret;
	if (!st)
		return 0;
	ret = raw_status(xd, st & base);
	if (ret || !(st & VIRTIO_CONFIG_S_FEATURES_OK))
		return ret;
	req.u.feat.dev = xd->index;
	req.u.feat.features = xd->features;
	ret = xvl_link_call(xd->win, &req, &rsp);
	if (!ret)
		ret = raw_status(xd, st & (base | VIRTIO_CONFIG_S_FEATURES_OK));
	mutex_lock(&xd->vqs_lock);
	for (i = 0; !ret && i < xd->nvqs; i++) {
		xvl_vq_reset_window(xd->vqs[i]);
		ret = xvl_vq_announce(xd->vqs[i]);
	}
	if (!ret && (st & VIRTIO_CONFIG_S_DRIVER_OK))
		ret = raw_status(xd, st);
	for (i = 0; !ret && i < xd->nvqs; i++)
		xvl_vq_resume(xd->vqs[i]);
	mutex_unlock(&xd->vqs_lock);
	if (ret)
		return ret;
	dev_info(&xd->vdev.dev, "device set up again after a restart of the device side\n");
	/* The driver sees the device's config again (net: its link state). */
	if (xd->info.virtio_id == VIRTIO_ID_NET) {
		xvl_net_wait_link_seen(xd);
		if (!fetch_config(xd))
			xvl_net_link_restored(xd);
	}
	return 0;
}
