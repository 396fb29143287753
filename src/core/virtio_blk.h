/* SPDX-License-Identifier: MIT */
/* virtio-blk definitions (virtio 1.x section 5.2), shared by driver and device sides. */
#ifndef XVL_VIRTIO_BLK_H
#define XVL_VIRTIO_BLK_H

#include "xvl_types.h"

#define XVL_VIRTIO_ID_NET   1
#define XVL_VIRTIO_ID_BLOCK 2

/* Feature bits. */
#define XVL_BLK_F_SIZE_MAX     1
#define XVL_BLK_F_SEG_MAX      2
#define XVL_BLK_F_GEOMETRY     4
#define XVL_BLK_F_RO           5
#define XVL_BLK_F_BLK_SIZE     6
#define XVL_BLK_F_FLUSH        9
#define XVL_BLK_F_TOPOLOGY     10
#define XVL_BLK_F_CONFIG_WCE   11
#define XVL_BLK_F_MQ           12
#define XVL_BLK_F_DISCARD      13
#define XVL_BLK_F_WRITE_ZEROES 14

/* Request types. */
#define XVL_BLK_T_IN           0
#define XVL_BLK_T_OUT          1
#define XVL_BLK_T_FLUSH        4
#define XVL_BLK_T_GET_ID       8
#define XVL_BLK_T_DISCARD      11
#define XVL_BLK_T_WRITE_ZEROES 13

/* Status byte. */
#define XVL_BLK_S_OK     0
#define XVL_BLK_S_IOERR  1
#define XVL_BLK_S_UNSUPP 2

#define XVL_BLK_SECTOR_SIZE 512u
#define XVL_BLK_ID_BYTES    20u

/* Request header: the first 16 device-readable bytes of every request. */
struct xvl_blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

/* Payload of DISCARD and WRITE_ZEROES. */
struct xvl_blk_dwz {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags; /* bit 0: unmap */
};

/* Byte offsets in the configuration space. */
#define XVL_BLK_CFG_CAPACITY        0
#define XVL_BLK_CFG_SIZE_MAX        8
#define XVL_BLK_CFG_SEG_MAX         12
#define XVL_BLK_CFG_BLK_SIZE        20
#define XVL_BLK_CFG_WRITEBACK       32
#define XVL_BLK_CFG_NUM_QUEUES      34
#define XVL_BLK_CFG_MAX_DISCARD     36
#define XVL_BLK_CFG_MAX_DISCARD_SEG 40
#define XVL_BLK_CFG_DISCARD_ALIGN   44
#define XVL_BLK_CFG_MAX_WZ          48
#define XVL_BLK_CFG_MAX_WZ_SEG      52
#define XVL_BLK_CFG_WZ_UNMAP        56
#define XVL_BLK_CFG_SIZE            60

#endif
