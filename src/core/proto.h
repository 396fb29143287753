/* SPDX-License-Identifier: MIT */
/*
 * The link: xvloop's control path between a driver side (client) and a
 * device side (server).  Transport-independent encoding; on one host the
 * transport is a SOCK_SEQPACKET Unix socket (one message per packet, file
 * descriptors as SCM_RIGHTS), see docs/PROTOCOL.md.
 *
 * Wire format, all little-endian:
 *   u16 type, u16 flags, u32 seq, i32 status, u32 len, then len payload bytes.
 * A reply carries XVL_MSG_F_REPLY, the request's seq and type, status 0 or
 * a negative errno.  Payloads have an exact size per (type, direction);
 * anything else is refused.  Decoding never trusts the peer: it is the one
 * place raw bytes become a struct xvl_msg.
 *
 * Portable core: no OS calls, no allocation.
 */
#ifndef XVL_PROTO_H
#define XVL_PROTO_H

#include "xvl_types.h"

#define XVL_PROTO_MAJOR 1
#define XVL_PROTO_MINOR 1 /* 1: SET_QUEUE doorbell vectors */

#define XVL_MSG_HDR_SIZE 16u
#define XVL_MSG_MAX_SIZE 512u  /* header + largest payload */
#define XVL_NAME_MAX     32u   /* bytes, NUL-padded, not necessarily terminated */
#define XVL_CONFIG_MAX   256u  /* bytes of device config space in one message */
#define XVL_MAX_DEVICES  64u
#define XVL_MAX_QUEUES   16u

enum xvl_msg_type {
	XVL_MSG_HELLO = 1,       /* version check, capabilities, device count */
	XVL_MSG_DEV_INFO = 2,    /* describe device N */
	XVL_MSG_ATTACH = 3,      /* claim device N for this connection */
	XVL_MSG_DETACH = 4,      /* release it (implies reset) */
	XVL_MSG_SET_WINDOW = 5,  /* + 1 fd: the window */
	XVL_MSG_SET_FEATURES = 6,
	XVL_MSG_GET_CONFIG = 7,
	XVL_MSG_SET_CONFIG = 8,
	XVL_MSG_SET_QUEUE = 9,   /* + 2 fds (kick, call) unless POLL or VECTORS */
	XVL_MSG_SET_STATUS = 10,
	XVL_MSG_GET_STATUS = 11,
	XVL_MSG_RESET = 12,
	XVL_MSG_EVENT = 13,      /* server -> client, no reply */
	XVL_MSG_GET_STATS = 14,
	XVL_MSG_TYPE_MAX = 14,
};

#define XVL_MSG_F_REPLY 1u

/* HELLO capability flags. */
#define XVL_CAP_POLL 1u   /* queues may run without notifications (busy polling) */

/* SET_QUEUE flags. */
#define XVL_QUEUE_F_POLL   1u  /* no eventfds: both sides poll the rings */
#define XVL_QUEUE_F_ENABLE 2u  /* queue enabled (a queue set with 0 is disabled) */
/* No eventfds: kick_vector/call_vector name doorbell vectors (mailbox link); payload 48 bytes. */
#define XVL_QUEUE_F_VECTORS 4u

/* EVENT codes. */
#define XVL_EVENT_BROKEN 1u   /* device marked NEEDS_RESET; reason = negative errno */
#define XVL_EVENT_CONFIG 2u   /* configuration space changed */
/*
 * The device is back after its backend was lost and came back (or was
 * replaced): its status is 0 again.  The driver sets it up again from
 * ACKNOWLEDGE on, with fresh rings, and submits again every request that
 * had not completed.  Nothing completed is lost; nothing is completed twice.
 */
#define XVL_EVENT_RESTART 3u

/* virtio device status bits (virtio 1.x 2.1). */
#define XVL_STATUS_ACKNOWLEDGE 1u
#define XVL_STATUS_DRIVER 2u
#define XVL_STATUS_DRIVER_OK 4u
#define XVL_STATUS_FEATURES_OK 8u
#define XVL_STATUS_NEEDS_RESET 64u
#define XVL_STATUS_FAILED 128u

struct xvl_m_hello {
	uint16_t major;
	uint16_t minor;
	uint32_t caps;
	uint32_t n_devices; /* reply only; 0 in the request */
	char name[XVL_NAME_MAX];
};

struct xvl_m_dev {
	uint32_t dev;
};

struct xvl_m_dev_info {
	uint32_t dev;
	uint32_t virtio_id;      /* 2 = block, 1 = net */
	uint16_t num_queues;
	uint16_t max_queue_size;
	uint32_t config_len;
	uint64_t features;       /* offered by the device */
	char name[XVL_NAME_MAX];
};

struct xvl_m_window {
	uint64_t size;
};

struct xvl_m_features {
	uint32_t dev;
	uint64_t features;
};

struct xvl_m_config {
	uint32_t dev;   /* requests */
	uint32_t off;   /* requests */
	uint32_t len;
	uint8_t data[XVL_CONFIG_MAX]; /* SET_CONFIG request, GET_CONFIG reply */
};

struct xvl_m_queue {
	uint32_t dev;
	uint16_t queue;
	uint16_t num;
	uint32_t flags;
	uint16_t avail_base; /* where the device resumes (0 on a fresh queue) */
	uint16_t used_base;
	uint64_t desc;
	uint64_t avail;
	uint64_t used;
	uint16_t kick_vector; /* with XVL_QUEUE_F_VECTORS: rung on the device side */
	uint16_t call_vector; /* with XVL_QUEUE_F_VECTORS: rung on the driver side */
};

struct xvl_m_status {
	uint32_t dev;
	uint32_t status;
};

struct xvl_m_event {
	uint32_t dev;
	uint32_t code;
	int32_t reason;
	char msg[64];
};

struct xvl_m_stats {
	uint32_t dev;       /* request */
	uint64_t requests;  /* reply: chains completed */
	uint64_t bytes;     /* reply: data bytes moved */
	uint64_t errors;    /* reply: requests completed with an error status */
	uint64_t notifies;  /* reply: used-buffer notifications sent */
};

struct xvl_msg {
	uint16_t type;
	uint16_t flags;
	uint32_t seq;
	int32_t status;
	union {
		struct xvl_m_hello hello;
		struct xvl_m_dev dev;
		struct xvl_m_dev_info info;
		struct xvl_m_window window;
		struct xvl_m_features feat;
		struct xvl_m_config cfg;
		struct xvl_m_queue queue;
		struct xvl_m_status st;
		struct xvl_m_event event;
		struct xvl_m_stats stats;
	} u;
};

static inline bool xvl_msg_is_reply(const struct xvl_msg *m) { return m->flags & XVL_MSG_F_REPLY; }

/*
 * Encode m into buf.  A reply with a non-zero status has no payload.
 * Returns the number of bytes, or -EINVAL (unknown type, config len over
 * XVL_CONFIG_MAX) / -EMSGSIZE (cap too small).
 */
int xvl_msg_encode(const struct xvl_msg *m, void *buf, size_t cap);

/*
 * Decode exactly len bytes.  Refuses: short header (-EBADMSG), len field
 * not matching the bytes (-EBADMSG), unknown type (-EOPNOTSUPP), unknown
 * flags (-EBADMSG), payload size wrong for the type and direction
 * (-EBADMSG), config len over XVL_CONFIG_MAX (-EMSGSIZE), non-errno status
 * (-EBADMSG).  Names are NUL-terminated on decode.
 */
int xvl_msg_decode(const void *buf, size_t len, struct xvl_msg *m);

/* Number of fds that travel with a message of this type/direction/flags. */
unsigned xvl_msg_nfds(const struct xvl_msg *m);

/* Printable name of a message type ("HELLO"), "?" for unknown ones. */
const char *xvl_msg_name(uint16_t type);

#endif
