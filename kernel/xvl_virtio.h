/* SPDX-License-Identifier: GPL-2.0 */
/*
 * xvl_virtio: xvloop's virtio transport for the Linux kernel.
 *
 * One struct xvl_win per window (an ivshmem BAR, or a reserved-memory
 * region on bare metal).  The window holds everything the device side can
 * see: the header, the mailbox link and a heap for rings and bounce
 * buffers.  The device side is untrusted: nothing it writes is used before
 * it has been copied and checked.
 *
 * Layers, bottom up:
 *   xvl_heap.c   window heap (gen_pool) and the private bounce records
 *   xvl_dma.c    dma_map_ops that bounce every buffer through the heap
 *   xvl_link.c   driver side of the mailbox link (core/mailbox.c)
 *   xvl_vq.c     virtqueues: private rings for virtio_ring, window rings
 *                for the device, copied between with validation
 *   xvl_vdev.c   one virtio_device per device the server offers
 *   xvl_net.c    what differs for virtio-net (queues, rx buffers, link)
 *   xvl_main.c   the ivshmem PCI and platform probes, module glue
 */
#ifndef XVL_VIRTIO_H
#define XVL_VIRTIO_H

#include <linux/device.h>
#include <linux/genalloc.h>
#include <linux/interrupt.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "mailbox.h"
#include "proto.h"
#include "window.h"

#define XVL_MAX_VQS		64	/* queues over all devices of one window */
#define XVL_MAX_VECTORS		XVL_MBOX_MAX_VECTORS
#define XVL_BOUNCE_SHIFT	8	/* heap granule: 256 bytes */
#define XVL_MAX_MAPPING		(256 * 1024)

struct xvl_win;
struct xvl_vdev;

/*
 * Fixed-size bounce slots carved out of the heap (xvl_heap.c): a stack of
 * free window offsets in private memory, O(1) under a spinlock.
 */
struct xvl_slots {
	spinlock_t lock;	/* nfree, free[] */
	u64 base;		/* window offset of slot 0 */
	u32 size;		/* bytes per slot (a multiple of the granule) */
	u32 count;		/* slots carved; 0: none (the heap was too small) */
	u32 nfree;
	u32 *free;		/* slot indices, free[0..nfree) */
};

/* How a transport instance reaches its peer (ivshmem doorbell, platform mailbox). */
struct xvl_bell_ops {
	/* Ring the peer's doorbell vector. */
	void (*ring)(struct xvl_win *w, u16 vector);
};

/* Private record of one bounce mapping, indexed by heap granule. */
struct xvl_bounce {
	phys_addr_t orig;	/* the caller's buffer */
	u32 size;		/* bytes mapped; 0: granule not the start of a mapping */
	u8 dir;			/* enum dma_data_direction */
	u8 coherent;		/* a coherent allocation, never unmapped */
};

/*
 * One virtqueue.  virtio_ring works on a private ring (priv); the device
 * sees a copy in the window (wdesc/wavail/wused).  The transport copies new
 * chains private -> window on notify, and used entries window -> private
 * after checking each against what it has outstanding.
 */
struct xvl_vq {
	struct virtqueue *vq;
	struct xvl_vdev *xd;
	u16 index;		/* queue number within its device */
	u16 num;
	u16 call_vector;	/* ours: the peer rings it when it used buffers */
	u16 kick_vector;	/* the peer's: we ring it after adding buffers */

	struct vring priv;	/* private ring virtio_ring reads and writes */
	void *priv_mem;
	size_t priv_size;

	u64 woff;		/* window rings: offset, bytes */
	size_t wsize;
	struct vring_desc *wdesc;
	struct vring_avail *wavail;
	struct vring_used *wused;

	spinlock_t lock;	/* everything below */
	u16 priv_avail_seen;	/* private avail entries copied so far */
	u16 priv_used;		/* private used idx published to virtio_ring */
	u16 win_avail;		/* window avail idx we published */
	u16 win_used_seen;	/* window used entries consumed */
	unsigned long *outstanding; /* heads the device holds (bitmap of num) */
	u32 *wlen;		/* per head: bytes the device may write */
	u16 *last_w;		/* per head: its last device-writable descriptor */
	unsigned int inflight;
	u16 progress_mark;	/* win_used_seen at the last watchdog look */
	unsigned long stall_since; /* jiffies; 0: not stalled */
	bool dead;		/* the device lost this queue: fail everything */
	bool stopped;		/* restart pending: hold chains, do not fail them */
	bool spinning;		/* a submitter busy-waits for this queue's completion */
	u64 lone_since;		/* local_clock() when a lone request was rung; 0: none */
	u32 lone_avg_ns;	/* average time a lone request took (about 8 of them) */
	u8 lone_run;		/* submissions in a row that found the queue empty */
};

struct xvl_vdev {
	struct virtio_device vdev;
	struct xvl_win *win;
	u32 index;
	struct xvl_m_dev_info info;
	u8 config[XVL_CONFIG_MAX];
	u32 config_gen;
	u32 config_reads;		/* get() calls, to know the driver saw a change */
	u32 reads_at_down;		/* config_reads when the link was reported down */
	u8 status;
	u64 features;			/* negotiated with the device side */
	bool registered;
	bool broken;
	struct mutex vqs_lock;		/* vqs[], nvqs, broken */
	struct xvl_vq *vqs[XVL_MAX_QUEUES];
	unsigned int nvqs;
};

/* Context of one of our interrupt vectors. */
struct xvl_vec {
	struct xvl_win *w;
	u16 vec;
};

struct xvl_win {
	struct device *dev;		/* parent of the virtio devices; our DMA ops */
	const struct xvl_bell_ops *bell;
	void __iomem *regs;		/* ivshmem BAR0, or NULL */
	u32 peer;			/* doorbell peer id of the device side */
	unsigned int nvec;		/* interrupt vectors of ours; 0: we poll */
	int irqs[XVL_MAX_VECTORS];
	struct xvl_vec vecs[XVL_MAX_VECTORS];

	struct xvl_mem mem;		/* the window as mapped here */

	/* heap */
	struct gen_pool *pool;
	u64 heap_off;
	u64 heap_len;
	struct xvl_bounce *bounce;	/* heap_len >> XVL_BOUNCE_SHIFT records */
	struct xvl_slots slots[2];	/* small (headers, status) and page-sized mappings */

	/* link */
	struct mutex link_lock;		/* the mailbox, seq, ref of calls */
	struct xvl_mbox mb;
	u32 seq;
	bool link_up;
	bool link_dead;			/* the session broke; calls fail at once */
	wait_queue_head_t link_wq;
	struct delayed_work connect_work;
	struct work_struct event_work;
	unsigned int connect_tries;
	bool reconnecting;		/* session lost; devices held for recovery */
	bool connecting;		/* a new session asked for, not up yet */
	bool gave_up;			/* recovery failed: no more sessions */
	unsigned long recover_until;	/* jiffies */
	spinlock_t ev_lock;
	struct xvl_m_event ev[16];
	unsigned int ev_head, ev_tail;

	/* devices */
	u32 n_devices;
	struct xvl_vdev *vdevs[XVL_MAX_DEVICES];

	/* queues of all devices, for interrupt and poll dispatch (RCU) */
	spinlock_t vq_lock;
	struct xvl_vq __rcu *vq_table[XVL_MAX_VQS];
	u8 qvec[XVL_MAX_DEVICES][XVL_MAX_QUEUES]; /* each queue's vector; 0: none yet */
	u16 next_vector;		/* the next one to hand out (from 1) */
	struct work_struct dead_work;	/* completes requests of dead queues */
	struct delayed_work watchdog;	/* link liveness and stalled queues */

	/* polling when there are no interrupt vectors */
	struct task_struct *poller;
	unsigned long last_activity;	/* jiffies */
	bool removing;
};

/* xvl_heap.c */
int xvl_heap_setup(struct xvl_win *w, u64 off, u64 len);
void xvl_heap_teardown(struct xvl_win *w);
void *xvl_heap_alloc_off(struct xvl_win *w, size_t size, size_t align, u64 *off);
void xvl_heap_free_off(struct xvl_win *w, u64 off, size_t size);
void *xvl_heap_map_alloc(struct xvl_win *w, size_t size, u64 *off);
struct xvl_bounce *xvl_bounce_rec(struct xvl_win *w, u64 off);

/* xvl_dma.c */
extern const struct dma_map_ops xvl_dma_ops;

/* xvl_link.c */
void xvl_link_init(struct xvl_win *w);
int xvl_link_start(struct xvl_win *w, u64 off);
void xvl_link_quiesce(struct xvl_win *w);
void xvl_link_stop(struct xvl_win *w);
int xvl_link_call(struct xvl_win *w, struct xvl_msg *req, struct xvl_msg *rsp);
void xvl_link_kick(struct xvl_win *w);

/* xvl_vq.c */
struct xvl_vq *xvl_vq_create(struct xvl_vdev *xd, unsigned int index, unsigned int num,
			     vq_callback_t *callback, const char *name, bool ctx);
void xvl_vq_destroy(struct xvl_vq *q);
int xvl_vq_announce(struct xvl_vq *q);
bool xvl_vq_poll(struct xvl_vq *q, bool in_irq);
void xvl_vq_kill(struct xvl_vq *q, const char *why);
void xvl_vq_stop(struct xvl_vq *q);
void xvl_vq_reset_window(struct xvl_vq *q);
void xvl_vq_resume(struct xvl_vq *q);
irqreturn_t xvl_vq_irq(int irq, void *data);
void xvl_vq_dead_work(struct work_struct *work);
void xvl_win_check_stalls(struct xvl_win *w, unsigned long timeout);
bool xvl_win_poll_vqs(struct xvl_win *w);

/* xvl_vdev.c */
int xvl_vdev_add(struct xvl_win *w, u32 index, const struct xvl_m_dev_info *info);
void xvl_vdev_remove_all(struct xvl_win *w);
void xvl_vdev_event(struct xvl_win *w, const struct xvl_m_event *ev);
void xvl_vdev_link_lost(struct xvl_win *w);
void xvl_vdev_give_up(struct xvl_win *w, const char *why);
int xvl_vdev_recover(struct xvl_vdev *xd);
bool xvl_vdev_same(const struct xvl_vdev *xd, const struct xvl_m_dev_info *info);

/* xvl_net.c */
u64 xvl_net_features(const struct xvl_vdev *xd, u64 features);
unsigned int xvl_net_queue_index(const struct xvl_vdev *xd, unsigned int drv, unsigned int nvqs);
bool xvl_vdev_holds_buffers(const struct xvl_vq *q);
int xvl_vdev_fail_status(const struct xvl_vq *q);
u16 xvl_vdev_used_ready(struct xvl_vq *q, u16 n);
void xvl_net_link_down(struct xvl_vdev *xd);
void xvl_net_wait_link_seen(struct xvl_vdev *xd);
void xvl_net_link_restored(struct xvl_vdev *xd);

/* xvl_main.c */
int xvl_win_probe(struct xvl_win *w);
void xvl_win_remove(struct xvl_win *w);
void xvl_ring(struct xvl_win *w, u16 vector);
int xvl_win_start_poller(struct xvl_win *w);

static inline struct xvl_vdev *to_xvl_vdev(struct virtio_device *vdev)
{
	return container_of(vdev, struct xvl_vdev, vdev);
}

#endif /* XVL_VIRTIO_H */
