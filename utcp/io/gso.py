"""Generic segmentation offload for a TUN device opened with IFF_VNET_HDR (opt-in).

Every read and write then carries a `struct virtio_net_hdr` (10 bytes, native byte order) in front
of the packet. Reads may be TCP super-segments up to 64 KB that the kernel did not cut (TSO towards
the device, TUN_F_TSO4) with a partial checksum (TUN_F_CSUM): the host must not verify checksums.
Writes may be one super-segment standing for a run of consecutive MSS-sized segments of one
connection, with `gso_size` telling the kernel where the segment boundaries are (as a NIC doing TSO,
or GRO on the receive side, would). `coalesce` finds those runs in packet values, the readable
statement of the rules; `coalesce_wire` does the same on the encoded packets the runtime writes, and
a hypothesis test holds the two equal.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator

from utcp.wire.checksum import checksum_of, word_sum
from utcp.wire.packet import IPPROTO_TCP, IPv4Packet, TcpFlags, TcpSegment

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


# The IPv4 header (no options) and the fixed TCP header, as `coalesce_wire` reads them.
_IP_TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")
_IPV4_TCP_NO_OPTIONS = 0x45  # version 4, IHL 5 (a header with options is never merged: see _joinable)
_ACK_BITS = int(_ACK)
_ACK_PSH_BITS = int(_ACK_PSH)


def coalesce_wire(datagrams: list[bytes]) -> Iterator[tuple[bytes, int]]:
    """`coalesce` for encoded packets (what `codec.build_ipv4` writes, as Host.datagrams_to_send gives
    them): the same runs by the same rules, each merged into the bytes `build_ipv4` would write for
    `coalesce`'s super-segment (tests/io/test_gso.py holds the two equal), without a packet value per
    segment. Everything else comes out as it was, with gso_size 0."""
    i, n = 0, len(datagrams)
    while i < n:
        first = datagrams[i]
        j = i + 1
        if len(first) >= 40 and first[0] == _IPV4_TCP_NO_OPTIONS and first[9] == IPPROTO_TCP:
            head = _IP_TCP.unpack_from(first)
            hlen = 20 + (head[14] >> 4) * 4
            mss = len(first) - hlen
            if (
                head[15] == _ACK_BITS
                and not head[14] & 1
                and mss > 0
                and head[2] == len(first)
                and not head[4] & 0x3FFF  # not a fragment (a fragment's payload is no TcpSegment value)
            ):
                # the fields every packet of the run repeats (GRO's rules, as _joinable): addresses,
                # TOS, DF, TTL, protocol, ports, ACK, window and the TCP options
                same = first[12:24]
                tos, frag, ttl_proto, ack, window = head[1], head[4], first[8:10], head[13], head[16]
                options = first[40:hlen]
                ident, seq, size = head[3], head[12], mss
                while j < n:
                    nxt = datagrams[j]
                    if len(nxt) < 40 or nxt[0] != _IPV4_TCP_NO_OPTIONS or nxt[8:10] != ttl_proto:
                        break
                    f = _IP_TCP.unpack_from(nxt)
                    length = len(nxt) - (20 + (f[14] >> 4) * 4)
                    if not (
                        (f[15] == _ACK_BITS or f[15] == _ACK_PSH_BITS)
                        and f[2] == len(nxt)
                        and not f[14] & 1
                        and 0 < length <= mss
                        and size + length <= MAX_SUPER
                        and f[12] == (seq + mss) & 0xFFFFFFFF
                        and f[3] == (ident + 1) & 0xFFFF
                        and f[1] == tos
                        and f[4] == frag
                        and f[13] == ack
                        and f[16] == window
                        and nxt[12:24] == same
                        and nxt[40 : 20 + (f[14] >> 4) * 4] == options
                    ):
                        break
                    j += 1
                    size += length
                    if length < mss or f[15] != _ACK_BITS:
                        break  # a short segment or a PSH ends the run (only the last may be either)
                    ident, seq = f[3], f[12]
        if j - i == 1:
            yield first, 0
        else:
            yield _merge(datagrams, i, j, hlen), mss
        i = j


def _merge(datagrams: list[bytes], i: int, j: int, hlen: int) -> bytes:
    """datagrams[i:j] as one packet: the first one's headers with the last one's TCP flags, every
    payload, the IPv4 total length and both checksums made again."""
    first, last = datagrams[i], datagrams[j - 1]
    out = bytearray(first[:hlen])
    for k in range(i, j):
        out += memoryview(datagrams[k])[hlen:]
    total = len(out)
    out[2:4] = total.to_bytes(2, "big")
    out[10:12] = b"\0\0"
    out[10:12] = checksum_of(word_sum(out, 0, 20)).to_bytes(2, "big")
    out[32] = (out[32] & 0xFE) | (last[32] & 1)  # the NS bit and the flags byte: the last segment's
    out[33] = last[33]
    out[36:38] = b"\0\0"
    pseudo = int.from_bytes(out[12:20], "big") + IPPROTO_TCP + total - 20
    out[36:38] = checksum_of(pseudo + word_sum(out, 20, total)).to_bytes(2, "big")
    return bytes(out)
