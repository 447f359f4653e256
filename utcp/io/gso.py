"""Generic segmentation offload for a TUN device opened with IFF_VNET_HDR (opt-in).

Every read and write then carries a `struct virtio_net_hdr` (10 bytes, native byte order) in front
of the packet. Reads may be TCP super-segments up to 64 KB that the kernel did not cut (TSO towards
the device, TUN_F_TSO4) with a partial checksum (TUN_F_CSUM): the host must not verify checksums.
Writes may be one super-segment standing for a run of consecutive MSS-sized segments of one
connection, with `gso_size` telling the kernel where the segment boundaries are (as a NIC doing TSO,
or GRO on the receive side, would). `coalesce` finds those runs in what the engine sends.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator

from utcp.wire.packet import IPv4Packet, TcpFlags, TcpSegment

VNET_HDR = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR_LEN = VNET_HDR.size
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
TUNSETOFFLOAD = 0x400454D0  # _IOW('T', 208, unsigned int)
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
NO_GSO = VNET_HDR.pack(0, VIRTIO_NET_HDR_GSO_NONE, 0, 0, 0, 0)
MAX_SUPER = 65535 - 60 - 40  # IPv4 total length limit, minus the largest IP + TCP headers

_ACK = TcpFlags.ACK
_ACK_PSH = TcpFlags.ACK | TcpFlags.PSH


def gso_header(header_len: int, gso_size: int) -> bytes:
    return VNET_HDR.pack(0, VIRTIO_NET_HDR_GSO_TCPV4, header_len, gso_size, 0, 0)


def _joinable(run_head: IPv4Packet, prev: IPv4Packet, nxt: IPv4Packet, mss: int, size: int) -> bool:
    a, b = prev.payload, nxt.payload
    if not isinstance(b, TcpSegment) or not isinstance(a, TcpSegment):
        return False
    head = run_head.payload
    assert isinstance(head, TcpSegment)
    # GRO's rules (tcp_gro_receive): same flow, contiguous, same ACK/window/options, full-sized segments
    # except the last, PSH only on the last, consecutive IP IDs.
    return (
        a.flags == _ACK
        and b.flags in (_ACK, _ACK_PSH)
        and len(a.payload) == mss
        and 0 < len(b.payload) <= mss
        and size + len(b.payload) <= MAX_SUPER
        and b.seq == (a.seq + mss) & 0xFFFFFFFF
        and b.src_port == head.src_port
        and b.dst_port == head.dst_port
        and b.ack == head.ack
        and b.window == head.window
        and b.options == head.options
        and nxt.src == run_head.src
        and nxt.dst == run_head.dst
        and nxt.ident == (prev.ident + 1) & 0xFFFF
        and nxt.dont_fragment == run_head.dont_fragment
        and nxt.ttl == run_head.ttl
        and nxt.tos == run_head.tos
        and not nxt.options
        and not run_head.options
    )


def coalesce(packets: list[IPv4Packet]) -> Iterator[tuple[IPv4Packet, int]]:
    """(packet, gso_size) pairs: runs of segments GRO could merge become one super-segment with its
    segment size; everything else comes out as it was, with gso_size 0. Order is kept."""
    i, n = 0, len(packets)
    while i < n:
        first = packets[i]
        seg = first.payload
        j = i + 1
        if isinstance(seg, TcpSegment) and seg.flags == _ACK and seg.payload:
            mss = len(seg.payload)
            size = mss
            while j < n and _joinable(first, packets[j - 1], packets[j], mss, size):
                size += len(packets[j].tcp.payload)
                j += 1
        if j - i == 1:
            yield first, 0
        else:
            last = packets[j - 1].tcp
            payload = b"".join(bytes(p.tcp.payload) for p in packets[i:j])
            merged = dataclasses.replace(seg, flags=last.flags, payload=payload)  # type: ignore[type-var]
            yield dataclasses.replace(first, payload=merged), len(seg.payload)  # type: ignore[union-attr]
        i = j
