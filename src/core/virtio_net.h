/* SPDX-License-Identifier: MIT */
/* virtio-net definitions (virtio 1.x section 5.1), shared by driver and device sides. */
#ifndef XVL_VIRTIO_NET_H
#define XVL_VIRTIO_NET_H

#include <stdint.h>

/* Feature bits. */
#define XVL_NET_F_CSUM                0
#define XVL_NET_F_GUEST_CSUM          1
#define XVL_NET_F_CTRL_GUEST_OFFLOADS 2
#define XVL_NET_F_MTU                 3
#define XVL_NET_F_MAC                 5
#define XVL_NET_F_GUEST_TSO4          7
#define XVL_NET_F_GUEST_TSO6          8
#define XVL_NET_F_GUEST_ECN           9
#define XVL_NET_F_GUEST_UFO           10
#define XVL_NET_F_HOST_TSO4           11
#define XVL_NET_F_HOST_TSO6           12
#define XVL_NET_F_HOST_ECN            13
#define XVL_NET_F_HOST_UFO            14
#define XVL_NET_F_MRG_RXBUF           15
#define XVL_NET_F_STATUS              16
#define XVL_NET_F_CTRL_VQ             17
#define XVL_NET_F_CTRL_RX             18
#define XVL_NET_F_CTRL_VLAN           19
#define XVL_NET_F_GUEST_ANNOUNCE      21
#define XVL_NET_F_MQ                  22
#define XVL_NET_F_CTRL_MAC_ADDR       23

/* Config space (little-endian). */
#define XVL_NET_CFG_MAC        0  /* u8[6] */
#define XVL_NET_CFG_STATUS     6  /* le16 */
#define XVL_NET_CFG_MAX_PAIRS  8  /* le16 max_virtqueue_pairs */
#define XVL_NET_CFG_MTU        10 /* le16 */
#define XVL_NET_CFG_SPEED      12 /* le32, Mb/s */
#define XVL_NET_CFG_DUPLEX     16 /* u8 */
#define XVL_NET_CFG_SIZE       20

#define XVL_NET_S_LINK_UP  1
#define XVL_NET_S_ANNOUNCE 2

/* virtio_net_hdr with VERSION_1: always 12 bytes, num_buffers included. */
#define XVL_NET_HDR_SIZE 12u
#define XVL_NET_HDR_F_NEEDS_CSUM 1
#define XVL_NET_HDR_F_DATA_VALID 2
#define XVL_NET_HDR_F_RSC_INFO   4
#define XVL_NET_HDR_GSO_NONE  0
#define XVL_NET_HDR_GSO_TCPV4 1
#define XVL_NET_HDR_GSO_UDP   3
#define XVL_NET_HDR_GSO_TCPV6 4
#define XVL_NET_HDR_GSO_ECN   0x80

/* Control virtqueue: class, command, data, then one ack byte the device writes. */
#define XVL_NET_CTRL_RX             0
#define XVL_NET_CTRL_RX_PROMISC     0
#define XVL_NET_CTRL_RX_ALLMULTI    1
#define XVL_NET_CTRL_RX_ALLUNI      2
#define XVL_NET_CTRL_RX_NOMULTI     3
#define XVL_NET_CTRL_RX_NOUNI       4
#define XVL_NET_CTRL_RX_NOBCAST     5
#define XVL_NET_CTRL_MAC            1
#define XVL_NET_CTRL_MAC_TABLE_SET  0
#define XVL_NET_CTRL_MAC_ADDR_SET   1
#define XVL_NET_CTRL_VLAN           2
#define XVL_NET_CTRL_VLAN_ADD       0
#define XVL_NET_CTRL_VLAN_DEL       1
#define XVL_NET_CTRL_ANNOUNCE       3
#define XVL_NET_CTRL_ANNOUNCE_ACK   0
#define XVL_NET_CTRL_MQ             4
#define XVL_NET_CTRL_MQ_VQ_PAIRS_SET 0
#define XVL_NET_CTRL_GUEST_OFFLOADS 5
#define XVL_NET_CTRL_GUEST_OFFLOADS_SET 0
#define XVL_NET_OK  0
#define XVL_NET_ERR 1

#define XVL_NET_MQ_PAIRS_MIN 1u
#define XVL_NET_MQ_PAIRS_MAX 0x8000u

#define XVL_ETH_ALEN     6u
#define XVL_ETH_HLEN     14u
#define XVL_ETH_VLAN_LEN 4u

/* Queue index of receive / transmit queue of pair p; the control queue follows the pairs. */
static inline uint16_t xvl_net_rxq(uint16_t pair) { return (uint16_t)(2u * pair); }
static inline uint16_t xvl_net_txq(uint16_t pair) { return (uint16_t)(2u * pair + 1u); }
static inline uint16_t xvl_net_ctrlq(uint16_t max_pairs) { return (uint16_t)(2u * max_pairs); }

#endif
