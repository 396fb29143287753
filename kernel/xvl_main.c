// SPDX-License-Identifier: GPL-2.0
/*
 * xvl_virtio: module glue and the two ways to find a window.
 *
 *  - QEMU's ivshmem PCI device (1af4:1110): BAR2 is the window, BAR0 holds
 *    the registers (doorbell at 12: peer << 16 | vector), MSI-X vectors
 *    deliver the peer's doorbells.  ivshmem-plain has no MSI-X: then both
 *    sides poll, we from a kthread with a bounded, adaptive interval.
 *  - A platform device (bare metal): a reserved-memory window, an optional
 *    doorbell register and an optional mailbox interrupt.
 *
 * Both end in xvl_win_probe(): format the window, lay the mailbox after the
 * header, give the rest to the heap, and start looking for the device side.
 */
#include <linux/delay.h>
#include <linux/dma-map-ops.h>
#include <linux/io.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/of_address.h>
#include <linux/pci.h>
#include <linux/platform_device.h>

#include "xvl_virtio.h"

#define IVSHMEM_REG_IVPOSITION	8
#define IVSHMEM_REG_DOORBELL	12

#define XVL_POLL_MIN_US		20
#define XVL_POLL_MAX_US		5000
#define XVL_POLL_BUSY_MS	20	/* poll fast this long after activity */

static unsigned int peer;
module_param(peer, uint, 0444);
MODULE_PARM_DESC(peer, "ivshmem peer id of the device side (doorbell target)");

static unsigned int io_timeout_ms = 30000;
module_param(io_timeout_ms, uint, 0644);
MODULE_PARM_DESC(io_timeout_ms, "Fail a queue's requests when the device completes none for this long (ms)");

static bool force_poll;
module_param(force_poll, bool, 0444);
MODULE_PARM_DESC(force_poll, "Poll the rings even when interrupt vectors exist");

/* Ring the device side's vector (queues in POLL mode are never rung: see xvl_vq.c). */
void xvl_ring(struct xvl_win *w, u16 vector)
{
	if (w->bell)
		w->bell->ring(w, vector);
}

/* ---------------------------------------------------------------- polling */

static int xvl_poller(void *data)
{
	struct xvl_win *w = data;
	unsigned long us = XVL_POLL_MIN_US;

	while (!kthread_should_stop()) {
		bool busy = xvl_win_poll_vqs(w);

		if (xvl_mbox_pending(&w->mb)) {
			xvl_link_kick(w);
			busy = true;
		}
		if (busy)
			WRITE_ONCE(w->last_activity, jiffies);
		if (time_before(jiffies, READ_ONCE(w->last_activity) +
				msecs_to_jiffies(XVL_POLL_BUSY_MS)))
			us = XVL_POLL_MIN_US;
		else
			us = min_t(unsigned long, us * 2, XVL_POLL_MAX_US);
		usleep_range_state(us, us + us / 2, TASK_IDLE);
	}
	return 0;
}

int xvl_win_start_poller(struct xvl_win *w)
{
	struct task_struct *t;

	if (w->poller)
		return 0;
	t = kthread_run(xvl_poller, w, "xvl-poll/%s", dev_name(w->dev));
	if (IS_ERR(t))
		return PTR_ERR(t);
	/* queues of two devices may fall back to polling at once (pick_vectors) */
	if (cmpxchg(&w->poller, NULL, t)) {
		kthread_stop(t);
		return 0;
	}
	dev_info(w->dev, "polling the rings every %u..%u us\n",
		 XVL_POLL_MIN_US, XVL_POLL_MAX_US);
	return 0;
}

/* ---------------------------------------------------------------- watchdog */

#define XVL_WATCHDOG_MS 500

/*
 * Twice a second: read the mailbox (which notices a device side that closed
 * or restarted the session even when nothing rings) and look for stalled
 * queues.
 */
static void xvl_watchdog(struct work_struct *work)
{
	struct xvl_win *w = container_of(to_delayed_work(work), struct xvl_win, watchdog);

	xvl_link_kick(w);
	xvl_win_check_stalls(w, msecs_to_jiffies(max(io_timeout_ms, 100U)));
	schedule_delayed_work(&w->watchdog, msecs_to_jiffies(XVL_WATCHDOG_MS));
}

/* ---------------------------------------------------------------- interrupts */

static irqreturn_t xvl_mbox_irq(int irq, void *data)
{
	struct xvl_vec *v = data;

	xvl_link_kick(v->w);
	return IRQ_HANDLED;
}

static void free_irqs(struct xvl_win *w)
{
	unsigned int i;

	for (i = 0; i < w->nvec; i++) {
		if (w->irqs[i] > 0)
			free_irq(w->irqs[i], &w->vecs[i]);
		w->irqs[i] = 0;
	}
}

/* w->irqs[] hold Linux irq numbers of our vectors 0..nvec-1. */
static int request_irqs(struct xvl_win *w)
{
	unsigned int i;
	int ret;

	for (i = 0; i < w->nvec; i++) {
		int irq = w->irqs[i];

		w->vecs[i].w = w;
		w->vecs[i].vec = i;
		w->irqs[i] = 0;
		ret = request_irq(irq, i ? xvl_vq_irq : xvl_mbox_irq, 0, "xvl_virtio",
				  &w->vecs[i]);
		if (ret) {
			free_irqs(w);
			return ret;
		}
		w->irqs[i] = irq;
	}
	return 0;
}

/* ---------------------------------------------------------------- the window */

int xvl_win_probe(struct xvl_win *w)
{
	u64 mbox_off = XVL_WIN_HDR_SIZE, mbox_len = xvl_mbox_size(XVL_MBOX_DEF_SLOTS);
	int ret;

	xvl_link_init(w);
	spin_lock_init(&w->vq_lock);
	w->next_vector = 1;
	INIT_WORK(&w->dead_work, xvl_vq_dead_work);
	INIT_DELAYED_WORK(&w->watchdog, xvl_watchdog);

	ret = xvl_win_format(&w->mem);
	if (ret) {
		dev_err(w->dev, "window of %llu bytes cannot be formatted (%d)\n", w->mem.size,
			ret);
		return ret;
	}
	ret = xvl_heap_setup(w, mbox_off + mbox_len, w->mem.size);
	if (ret) {
		dev_err(w->dev, "window of %llu bytes has no room for a heap\n", w->mem.size);
		return ret;
	}
	ret = request_irqs(w);
	if (ret)
		goto err_heap;
	if (w->nvec < 2 || force_poll) {
		ret = xvl_win_start_poller(w);
		if (ret)
			goto err_irqs;
	}
	ret = xvl_link_start(w, mbox_off);
	if (ret)
		goto err_poller;
	xvl_win_record(&w->mem, XVL_WIN_HEAP, 0xffff, 0xffff, w->heap_off, w->heap_len);
	schedule_delayed_work(&w->watchdog, msecs_to_jiffies(XVL_WATCHDOG_MS));
	dev_info(w->dev, "window %llu KiB, heap %llu KiB, %u vector(s)%s; waiting for the device side\n",
		 w->mem.size >> 10, w->heap_len >> 10, w->nvec, w->poller ? ", polling" : "");
	return 0;

err_poller:
	if (w->poller)
		kthread_stop(w->poller);
	w->poller = NULL;
err_irqs:
	free_irqs(w);
err_heap:
	xvl_heap_teardown(w);
	return ret;
}

void xvl_win_remove(struct xvl_win *w)
{
	xvl_link_quiesce(w);
	/* Requests held for a device side that is not back yet fail now. */
	if (w->reconnecting)
		xvl_vdev_give_up(w, "the transport is being removed");
	/* The watchdog keeps failing stalled requests while the drivers let go. */
	xvl_vdev_remove_all(w);
	cancel_delayed_work_sync(&w->watchdog);
	if (w->poller)
		kthread_stop(w->poller);
	w->poller = NULL;
	free_irqs(w);
	cancel_work_sync(&w->dead_work);
	xvl_link_stop(w);
	xvl_heap_teardown(w);
}

/* ---------------------------------------------------------------- ivshmem PCI */

static void ivshmem_ring(struct xvl_win *w, u16 vector)
{
	writel(peer << 16 | vector, w->regs + IVSHMEM_REG_DOORBELL);
}

static const struct xvl_bell_ops ivshmem_bell = {
	.ring = ivshmem_ring,
};

static int xvl_pci_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct device *dev = &pdev->dev;
	struct xvl_win *w;
	int nvec, i, ret;
	void *base;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	ret = pcim_iomap_regions(pdev, BIT(0), "xvl_virtio");
	if (ret)
		return ret;
	/* Managed: released with the device (pcim_enable_device). */
	ret = pci_request_region(pdev, 2, "xvl_virtio");
	if (ret)
		return ret;

	w = devm_kzalloc(dev, sizeof(*w), GFP_KERNEL);
	if (!w)
		return -ENOMEM;
	w->dev = dev;
	w->regs = pcim_iomap_table(pdev)[0];
	base = devm_memremap(dev, pci_resource_start(pdev, 2), pci_resource_len(pdev, 2),
			     MEMREMAP_WB);
	if (IS_ERR(base))
		return PTR_ERR(base);
	w->mem.base = base;
	w->mem.size = pci_resource_len(pdev, 2);

	nvec = pci_msix_vec_count(pdev);
	if (nvec > 0) {
		nvec = pci_alloc_irq_vectors(pdev, 1, min(nvec, XVL_MAX_VECTORS), PCI_IRQ_MSIX);
		if (nvec < 0)
			return nvec;
		w->nvec = nvec;
		for (i = 0; i < nvec; i++)
			w->irqs[i] = pci_irq_vector(pdev, i);
		w->bell = &ivshmem_bell;
		pci_set_master(pdev);
	}
	pci_set_drvdata(pdev, w);
	set_dma_ops(dev, &xvl_dma_ops);
	dev_info(dev, "ivshmem: our peer id %d, device side peer %u\n",
		 w->nvec ? (int)readl(w->regs + IVSHMEM_REG_IVPOSITION) : -1, peer);

	ret = xvl_win_probe(w);
	if (ret) {
		set_dma_ops(dev, NULL);
		if (w->nvec)
			pci_free_irq_vectors(pdev);
	}
	return ret;
}

static void xvl_pci_remove(struct pci_dev *pdev)
{
	struct xvl_win *w = pci_get_drvdata(pdev);

	xvl_win_remove(w);
	set_dma_ops(&pdev->dev, NULL);
	if (w->nvec)
		pci_free_irq_vectors(pdev);
}

static const struct pci_device_id xvl_pci_ids[] = {
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT_QUMRANET, 0x1110) },
	{ }
};
MODULE_DEVICE_TABLE(pci, xvl_pci_ids);

static struct pci_driver xvl_pci_driver = {
	.name = "xvl_virtio",
	.id_table = xvl_pci_ids,
	.probe = xvl_pci_probe,
	.remove = xvl_pci_remove,
};

/* ---------------------------------------------------------------- platform */

/* A doorbell register: a 32-bit write of the vector number rings the peer. */
static void platform_ring(struct xvl_win *w, u16 vector)
{
	writel(vector, w->regs);
}

static const struct xvl_bell_ops platform_bell = {
	.ring = platform_ring,
};

/*
 * "xvloop,window": memory-region (or reg 0) is the window, reg 1 an
 * optional doorbell register, interrupt 0 an optional mailbox interrupt
 * (the only vector: queues are then polled).
 */
static int xvl_platform_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct resource res, *r;
	struct device_node *np;
	struct xvl_win *w;
	void *base;
	int irq, ret;

	w = devm_kzalloc(dev, sizeof(*w), GFP_KERNEL);
	if (!w)
		return -ENOMEM;
	w->dev = dev;

	np = of_parse_phandle(dev->of_node, "memory-region", 0);
	if (np) {
		ret = of_address_to_resource(np, 0, &res);
		of_node_put(np);
		if (ret)
			return ret;
		r = &res;
	} else {
		r = platform_get_resource(pdev, IORESOURCE_MEM, 0);
		if (!r)
			return -ENODEV;
	}
	base = devm_memremap(dev, r->start, resource_size(r), MEMREMAP_WB);
	if (IS_ERR(base))
		return PTR_ERR(base);
	w->mem.base = base;
	w->mem.size = resource_size(r);

	if (platform_get_resource(pdev, IORESOURCE_MEM, np ? 0 : 1)) {
		w->regs = devm_platform_ioremap_resource(pdev, np ? 0 : 1);
		if (IS_ERR(w->regs))
			return PTR_ERR(w->regs);
		w->bell = &platform_bell;
	}
	irq = platform_get_irq_optional(pdev, 0);
	if (irq > 0) {
		w->irqs[0] = irq;
		w->nvec = 1;
	}
	platform_set_drvdata(pdev, w);
	set_dma_ops(dev, &xvl_dma_ops);
	ret = xvl_win_probe(w);
	if (ret)
		set_dma_ops(dev, NULL);
	return ret;
}

static int xvl_platform_remove(struct platform_device *pdev)
{
	xvl_win_remove(platform_get_drvdata(pdev));
	set_dma_ops(&pdev->dev, NULL);
	return 0;
}

static const struct of_device_id xvl_of_ids[] = {
	{ .compatible = "xvloop,window" },
	{ }
};
MODULE_DEVICE_TABLE(of, xvl_of_ids);

static struct platform_driver xvl_platform_driver = {
	.driver = {
		.name = "xvl_virtio",
		.of_match_table = xvl_of_ids,
	},
	.probe = xvl_platform_probe,
	.remove = xvl_platform_remove,
};

/* ---------------------------------------------------------------- module */

static int __init xvl_init(void)
{
	int ret;

	ret = platform_driver_register(&xvl_platform_driver);
	if (ret)
		return ret;
	ret = pci_register_driver(&xvl_pci_driver);
	if (ret)
		platform_driver_unregister(&xvl_platform_driver);
	return ret;
}

static void __exit xvl_exit(void)
{
	pci_unregister_driver(&xvl_pci_driver);
	platform_driver_unregister(&xvl_platform_driver);
}

module_init(xvl_init);
module_exit(xvl_exit);

MODULE_DESCRIPTION("xvloop virtio transport: virtio devices served through a shared-memory window");
MODULE_AUTHOR("xvloop");
MODULE_LICENSE("GPL");
