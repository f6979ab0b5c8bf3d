"""Linux AF_PACKET (packet(7)) constants and structure layouts, declared once.

Theory of operation (STYLE.md habit 2): every structure the capture ring
exchanges with the kernel is a table here, named after the fields of
``<linux/if_packet.h>`` and ``<linux/filter.h>``, so the ring code reads
offsets by name and a reviewer can check them against the header in one
place. All are native-endian; the ring only runs on Linux, where every
supported architecture stores these as the host's ``unsigned int``.

``struct tpacket_req3`` (setsockopt PACKET_RX_RING, TPACKET_V3)

====================  ======  ==========================================
field                 offset  meaning
====================  ======  ==========================================
tp_block_size         0       bytes per block (multiple of the page size)
tp_block_nr           4       number of blocks in the ring
tp_frame_size         8       only checked for alignment under V3
tp_frame_nr           12      block_nr * block_size / frame_size
tp_retire_blk_tov     16      ms after which a partly filled block is retired
tp_sizeof_priv        20      private area per block (we use none)
tp_feature_req_word   24      TP_FT_REQ_FILL_RXHASH or 0
====================  ======  ==========================================

``struct tpacket_block_desc`` + ``struct tpacket_hdr_v1`` (head of every block)

====================  ======  ==========================================
version               0       TPACKET_V3 block layout version
offset_to_priv        4
block_status          8       TP_STATUS_KERNEL (0) or TP_STATUS_USER (1) | flags
num_pkts              12      packets in the block
offset_to_first_pkt   16      from the block start to the first tpacket3_hdr
blk_len               20      bytes used in the block
seq_num               24      u64, increases by one per retired block
ts_first_pkt          32      u32 sec, u32 nsec
ts_last_pkt           40      u32 sec, u32 nsec
====================  ======  ==========================================

``struct tpacket3_hdr`` (one per packet; 8-byte aligned in the block)

====================  ======  ==========================================
tp_next_offset        0       to the next header from this one; 0 on the last
tp_sec, tp_nsec       4, 8    kernel receive timestamp (event time)
tp_snaplen            12      captured bytes
tp_len                16      bytes on the wire
tp_status             20      TP_STATUS_* bits (VLAN_VALID, LOSING ...)
tp_mac, tp_net        24, 26  from this header to the link / network header
hv1.tp_rxhash         28
hv1.tp_vlan_tci       32      802.1Q TCI the NIC or kernel stripped
hv1.tp_vlan_tpid      36      its TPID (0x8100 or 0x88a8)
====================  ======  ==========================================

``struct tpacket_stats_v3`` (getsockopt PACKET_STATISTICS; reading resets it)

====================  ======  ==========================================
tp_packets            0       packets seen by the socket *including* drops
tp_drops              4       packets the ring had no room for
tp_freeze_q_cnt       8       times the ring was full (queue frozen)
====================  ======  ==========================================
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = [
    "ARPHRD_ETHER",
    "ARPHRD_LOOPBACK",
    "BLOCK_DESC",
    "ETH_P_ALL",
    "FANOUT_MODES",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_RAW",
    "MREQ",
    "PACKET_ADD_MEMBERSHIP",
    "PACKET_FANOUT",
    "PACKET_IGNORE_OUTGOING",
    "PACKET_MR_PROMISC",
    "PACKET_RX_RING",
    "PACKET_STATISTICS",
    "PACKET_VERSION",
    "SOCK_FPROG",
    "SOL_PACKET",
    "SO_ATTACH_FILTER",
    "SO_LOCK_FILTER",
    "STATS_V3",
    "TPACKET3_HDR",
    "TPACKET3_HDR_LEN",
    "TPACKET_REQ3",
    "TPACKET_V3",
    "TP_STATUS_KERNEL",
    "TP_STATUS_LOSING",
    "TP_STATUS_USER",
    "TP_STATUS_VLAN_TPID_VALID",
    "TP_STATUS_VLAN_VALID",
    "linktype_for_arphrd",
]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
SO_ATTACH_FILTER = 26
SO_LOCK_FILTER = 44

# setsockopt(SOL_PACKET, ...) option names
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_FANOUT = 18  # arg: group id | (mode | flags) << 16
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20+
PACKET_MR_PROMISC = 1
TPACKET_V3 = 2
#: PACKET_FANOUT modes: how the kernel spreads packets over the sockets of a group
FANOUT_MODES = {"hash": 0, "lb": 1, "cpu": 2}

# block_status / tp_status bits
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_LOSING = 1 << 2  # drops happened since the last PACKET_STATISTICS
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6

TPACKET_REQ3 = struct.Struct("=7I")
MREQ = struct.Struct("=iHH8s")  # struct packet_mreq
STATS_V3 = struct.Struct("=3I")
SOCK_FPROG = struct.Struct("@HP")  # struct sock_fprog {u16 len; pointer filter}

#: tpacket_block_desc with the tpacket_hdr_v1 union member, as a numpy record
BLOCK_DESC = np.dtype(
    [
        ("version", "=u4"),
        ("offset_to_priv", "=u4"),
        ("block_status", "=u4"),
        ("num_pkts", "=u4"),
        ("offset_to_first_pkt", "=u4"),
        ("blk_len", "=u4"),
        ("seq_num", "=u8"),
        ("first_sec", "=u4"),
        ("first_nsec", "=u4"),
        ("last_sec", "=u4"),
        ("last_nsec", "=u4"),
    ]
)

#: tpacket3_hdr field offsets (bytes from the header start) and widths
TPACKET3_HDR = {
    "tp_next_offset": (0, "u4"),
    "tp_sec": (4, "u4"),
    "tp_nsec": (8, "u4"),
    "tp_snaplen": (12, "u4"),
    "tp_len": (16, "u4"),
    "tp_status": (20, "u4"),
    "tp_mac": (24, "u2"),
    "tp_net": (26, "u2"),
    "tp_vlan_tci": (32, "u4"),
    "tp_vlan_tpid": (36, "u2"),
}
TPACKET3_HDR_LEN = 48

# ARPHRD_* (<linux/if_arp.h>, /sys/class/net/IF/type) -> pcap LINKTYPE_*
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772  # packet sockets see loopback frames with a zeroed Ethernet header
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # the frame starts at the IPv4/IPv6 header


def linktype_for_arphrd(arphrd: int) -> tuple[int, bool]:
    """(pcap link type, frame starts at the link header) for a device type.

    Devices without an Ethernet header (tun, GRE, PPP, ...) are read from
    the network header on (``tp_net``) and labelled ``LINKTYPE_RAW``: the
    decoder then reads the IP version nibble, and the frames stay valid
    when archived.
    """
    if arphrd in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        return LINKTYPE_ETHERNET, True
    return LINKTYPE_RAW, False
