"""Header prediction on raw bytes: recognise the one packet shape bulk receive is made of.

An IPv4 packet without options or fragmentation carrying a TCP segment with ACK (and maybe PSH) only,
no options or exactly NOP NOP Timestamps, and a payload. Linux's tcp_rcv_established() fast path
keys on the same shape. Such a packet is summed up without building IPv4Packet/TcpSegment values;
anything else (or anything malformed) returns None and goes the general way (`codec.parse_ipv4`),
which also does all the counting and error reporting. `tests/wire/test_fastpath.py` checks the result
against the general parser.
"""

from __future__ import annotations

import struct

from utcp.wire.checksum import tcp_segment_verifies, word_sum
from utcp.wire.packet import IPPROTO_TCP

_MOD = 0xFFFF
# IPv4 (20 bytes, no options) + the TCP header up to the window: version/IHL, total length, flags and
# fragment offset, protocol, source, destination, ports, seq, ack, data offset + flags, window.
_HEAD = struct.Struct("!BxHxxHxB2x4s4sHHIIHH")
_TS = struct.Struct("!III")  # NOP NOP kind=8 len=10, TSval, TSecr
_NOP_NOP_TS = 0x0101080A
_ACK, _ACK_PSH = 0x10, 0x18
_FRAGMENT_BITS = 0x3FFF  # MF + fragment offset (DF is fine)
_DOFF_PLAIN = 5 << 12
_DOFF_TS = 8 << 12

# (src, dst, src_port, dst_port, seq, ack, window, tsval or -1, tsecr or -1, payload offset)
DataSegment = tuple[bytes, bytes, int, int, int, int, int, int, int, int]


def data_segment(raw: bytes, verify_checksums: bool = True) -> DataSegment | None:
    """The fields of a plain in-order-looking data segment, or None if `raw` is any other shape.

    With `verify_checksums`, a bad IPv4 or TCP checksum also gives None (the general parser then
    reports it); without, checksums are trusted (packets the local kernel wrote into a TUN device).
    """
    n = len(raw)
    if n <= 40:
        return None  # no payload, or too short to be this shape
    vihl, total, frag, proto, src, dst, sport, dport, seq, ack, offflags, window = _HEAD.unpack_from(raw)
    if vihl != 0x45 or proto != IPPROTO_TCP or frag & _FRAGMENT_BITS or total != n:
        return None
    flags = offflags & 0xFFF
    if flags not in (_ACK, _ACK_PSH):
        return None
    doff = offflags & 0xF000
    if doff == _DOFF_TS:
        if n <= 52:
            return None
        kind, tsval, tsecr = _TS.unpack_from(raw, 40)
        if kind != _NOP_NOP_TS:
            return None
        start = 52
    elif doff == _DOFF_PLAIN:
        tsval = tsecr = -1
        start = 40
    else:
        return None
    # RFC 1071 as in codec.parse_ipv4: an IPv4 header residue of 0 mod 0xFFFF means its checksum verifies
    if verify_checksums and (word_sum(raw, 0, 20) % _MOD or not tcp_segment_verifies(raw, 20, n, raw[12:20])):
        return None
    return (src, dst, sport, dport, seq, ack, window, tsval, tsecr, start)
