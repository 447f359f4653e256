"""Header prediction on raw bytes, both ways, for the one packet shape bulk transfer is made of.

An IPv4 packet without options or fragmentation carrying a TCP segment with ACK (and maybe PSH, FIN)
only, no options or exactly NOP NOP Timestamps, and a payload (bulk receive) or none (the pure ACKs a
bulk sender gets, the close of a short connection). Linux's tcp_rcv_established() fast path keys on
the same shape (without FIN). `plain_segment` sums such a packet up without building
IPv4Packet/TcpSegment values; anything else (or anything malformed) returns None and goes the general
way (`codec.parse_ipv4`), which also does all the counting and error reporting. `SegmentEncoder`
writes such packets without building values either. `encode_bare` writes a segment without payload
whose options are given as bytes (the handshake's SYN and SYN-ACK, options from `syn_option_bytes`), and
`syn_segment` reads such a SYN or SYN-ACK back: the fields and the options a handshake negotiates.
`tests/wire/test_fastpath.py` holds all of them to the general codec.
"""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Callable

from utcp.wire import checksum
from utcp.wire.checksum import checksum_of, ipv4_tcp_verifies
from utcp.wire.packet import F_ACK, F_FIN, F_PSH, F_SYN, IPPROTO_TCP, Nop, TcpFlags, TcpSegment, Timestamps

# IPv4 (20 bytes, no options) + the TCP header up to the window: version/IHL, total length, flags and
# fragment offset, protocol, source, destination, ports, seq, ack, data offset + flags, window.
_HEAD = struct.Struct("!BxHxxHxB2x4s4sHHIIHH")
_TS = struct.Struct("!III")  # NOP NOP kind=8 len=10, TSval, TSecr
_NOP_NOP_TS = 0x0101080A
_ACK, _ACK_PSH = F_ACK, F_ACK | F_PSH
_PLAIN_FLAGS = (_ACK, _ACK_PSH, _ACK | F_FIN, _ACK_PSH | F_FIN)
_FRAGMENT_BITS = 0x3FFF  # MF + fragment offset (DF is fine)
_DOFF_PLAIN = 5 << 12
_DOFF_TS = 8 << 12
_MOD = 0xFFFF  # one's-complement sums are taken mod 2**16 - 1 (utcp.wire.checksum)

# Pure functions of a host's few addresses, run for every connection (glibc's inet_aton and inet_ntoa go
# through strtoul and sprintf, ~700 instructions a call): cached, bounded.
aton: Callable[[str], bytes] = functools.lru_cache(maxsize=1024)(socket.inet_aton)
ntoa: Callable[[bytes], str] = functools.lru_cache(maxsize=1024)(socket.inet_ntoa)

# (src, dst, src_port, dst_port, seq, ack, window, tsval or -1, tsecr or -1, payload offset, flags)
PlainSegment = tuple[bytes, bytes, int, int, int, int, int, int, int, int, int]


def plain_segment(raw: bytes, verify_checksums: bool = True) -> PlainSegment | None:
    """The fields of a plain segment (data, pure ACK, FIN), or None if `raw` is any other shape.

    With `verify_checksums`, a bad IPv4 or TCP checksum also gives None (the general parser then
    reports it); without, checksums are trusted (packets the local kernel wrote into a TUN device).
    """
    n = len(raw)
    if n < 40:
        return None  # too short to be this shape
    vihl, total, frag, proto, src, dst, sport, dport, seq, ack, offflags, window = _HEAD.unpack_from(raw)
    if vihl != 0x45 or proto != IPPROTO_TCP or frag & _FRAGMENT_BITS or total != n:
        return None
    flags = offflags & 0xFFF
    if flags not in _PLAIN_FLAGS:
        return None
    doff = offflags & 0xF000
    if doff == _DOFF_TS:
        if n < 52:
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
    if verify_checksums and not ipv4_tcp_verifies(raw, n):
        return None
    return (src, dst, sport, dport, seq, ack, window, tsval, tsecr, start, flags)


_FLAG_VALUES = {flags: TcpFlags(flags) for flags in _PLAIN_FLAGS}
_NOP = Nop()
_URGENT = struct.Struct("!H")


def plain_tcp_segment(raw: bytes, shape: PlainSegment) -> TcpSegment:
    """The TcpSegment `codec.parse_ipv4(raw)` holds, for a packet `plain_segment` accepted (`shape`):
    built from the fields already read, with no second parse or checksum pass."""
    _, _, sport, dport, seq, ack, window, tsval, tsecr, start, flags = shape
    options = () if start == 40 else (_NOP, _NOP, Timestamps(tsval, tsecr))
    return TcpSegment(
        sport,
        dport,
        seq,
        ack,
        _FLAG_VALUES[flags],
        window,
        options,
        raw[start:],
        _URGENT.unpack_from(raw, 38)[0],
    )


# IPv4 (no options) + TCP header, then the same with NOP NOP TS: every field a segment encoder writes.
_IP_TCP = struct.Struct("!BBHHHBBH4s4sHHIIHHHH")
_IP_TCP_TS = struct.Struct("!BBHHHBBH4s4sHHIIHHHHIII")
_DF = 0x4000
_TTL_PROTO = (64 << 8) | IPPROTO_TCP  # IPv4Packet's defaults: TTL 64, TOS 0, DF set


class SegmentEncoder:
    """Writes the plain segments of one connection (ACK/PSH/FIN, no options or NOP NOP TS, IPv4 without
    options, TTL 64, TOS 0, DF) straight to bytes: what `codec.build_ipv4` gives for the equivalent
    `IPv4Packet(src, dst, TcpSegment(...), ident=...)`, byte for byte (tests/wire/test_fastpath.py), with
    the constant header words summed once per connection instead of once per packet."""

    __slots__ = ("_dport", "_dst", "_hlen", "_ip_sum", "_sport", "_src", "_tcp_sum", "_ts")

    def __init__(self, src: str, dst: str, sport: int, dport: int, timestamps: bool) -> None:
        self._src = aton(src)
        self._dst = aton(dst)
        self._sport = sport
        self._dport = dport
        self._ts = timestamps
        self._hlen = (_IP_TCP_TS if timestamps else _IP_TCP).size
        addresses = int.from_bytes(self._src, "big") + int.from_bytes(self._dst, "big")
        # 32-bit values enter the sums whole: 2**16 == 1 (mod 0xFFFF) makes them their two words' sum
        self._ip_sum = 0x4500 + _DF + _TTL_PROTO + addresses
        self._tcp_sum = addresses + IPPROTO_TCP + sport + dport + (0x0101 + 0x080A if timestamps else 0)

    def encode(  # noqa: PLR0917 (one packet's fields)
        self,
        ident: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        tsval: int,
        tsecr: int,
        data: bytes | bytearray | memoryview,
        start: int,
        end: int,
    ) -> bytes:
        """The packet carrying data[start:end]; `tsval`/`tsecr` are ignored without timestamps."""
        hlen = self._hlen
        seglen = hlen - 20 + end - start
        total = hlen + end - start
        # checksum_of inlined: both sums hold a nonzero constant (0x4500, the protocol), so a residue 0
        # is -0 and the field is 0 (checksum_of(x) for x != 0)
        residue = (self._ip_sum + total + ident) % _MOD
        ip_check = _MOD - residue if residue else 0
        doff_flags = ((hlen - 20) << 10) | flags
        tcp = self._tcp_sum + seglen + seq + ack + doff_flags + window
        if end > start:
            tcp += checksum._word_sum(data, start, end)
        if self._ts:
            residue = (tcp + tsval + tsecr) % _MOD
            header = _IP_TCP_TS.pack(
                0x45, 0, total, ident, _DF, 64, IPPROTO_TCP, ip_check, self._src, self._dst,
                self._sport, self._dport, seq, ack, doff_flags, window, _MOD - residue if residue else 0, 0,
                _NOP_NOP_TS, tsval, tsecr,
            )  # fmt: skip
        else:
            residue = tcp % _MOD
            tcp_check = _MOD - residue if residue else 0
            header = _IP_TCP.pack(
                0x45, 0, total, ident, _DF, 64, IPPROTO_TCP, ip_check, self._src, self._dst,
                self._sport, self._dport, seq, ack, doff_flags, window, tcp_check, 0,
            )  # fmt: skip
        if end <= start:
            return header
        return header + data[start:end]  # bytes (one copy of a bytearray slice is cheaper than a view)


# Linux's SYN option layout, written by syn_option_bytes and read by syn_segment
_MSS_HEAD = b"\x02\x04"  # kind 2, length 4
_SACK_TS_HEAD = b"\x04\x02\x08\x0a"  # SACK_PERM, then kind 8 length 10
_NOP_NOP_TS_HEAD = b"\x01\x01\x08\x0a"
_NOP_NOP_SACK = b"\x01\x01\x04\x02"
_NOP_WS_HEAD = b"\x01\x03\x03"  # NOP, kind 3 length 3
_LINUX_SYN = struct.Struct("!2sH4sII3sB")  # the 20-byte option area: every field of it
_TS_VALUES = struct.Struct("!II")


def syn_option_bytes(mss: int, sack: bool, timestamps: tuple[int, int] | None, wscale: int | None) -> bytes:
    """The option area `codec.build_ipv4` writes for `utcp.tcp.options.syn_options(...)`'s list, Linux
    tcp_options_write order: MSS, SACK_PERM + TS (or NOP NOP TS, or NOP NOP SACK_PERM), NOP WS. Every
    combination is a multiple of 4 bytes: no padding."""
    if timestamps is not None and wscale is not None:
        # Linux's own layout (what syn_segment reads at once): one pack, no concatenations
        return _LINUX_SYN.pack(
            _MSS_HEAD, mss, _SACK_TS_HEAD if sack else _NOP_NOP_TS_HEAD, timestamps[0], timestamps[1],
            _NOP_WS_HEAD, wscale,
        )  # fmt: skip
    # the other layouts, from the same pieces
    area = _MSS_HEAD + mss.to_bytes(2, "big")
    if timestamps is not None:
        area += (_SACK_TS_HEAD if sack else _NOP_NOP_TS_HEAD) + _TS_VALUES.pack(*timestamps)
    elif sack:
        area += _NOP_NOP_SACK
    if wscale is not None:
        area += _NOP_WS_HEAD + bytes((wscale,))
    return area


def encode_bare(  # noqa: PLR0917 (one packet's fields)
    src: bytes,
    dst: bytes,
    ident: int,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    options: bytes,
) -> bytes:
    """A segment without payload, `options` already encoded and padded (4-byte multiple, at most 40):
    what `codec.build_ipv4` gives for `IPv4Packet(src, dst, TcpSegment(...), ident=ident)` with the
    default IPv4 fields (TTL 64, TOS 0, DF)."""
    olen = len(options)
    hlen = 20 + olen
    addresses = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
    ip_check = checksum_of(0x4500 + _DF + _TTL_PROTO + addresses + 20 + hlen + ident)
    doff_flags = (hlen << 10) | flags
    tcp = addresses + IPPROTO_TCP + hlen + sport + dport + seq + ack + doff_flags + window
    if olen:
        tcp += checksum._word_sum(options, 0, olen)
    header = _IP_TCP.pack(
        0x45, 0, 20 + hlen, ident, _DF, 64, IPPROTO_TCP, ip_check, src, dst,
        sport, dport, seq, ack, doff_flags, window, checksum_of(tcp), 0,
    )  # fmt: skip
    return header + options if olen else header


# (src, dst, src_port, dst_port, seq, ack, window, flags, then the options: MSS or -1, window scale shift
# or -1, SACK permitted, TSval or -1, TSecr or -1)
SynSegment = tuple[bytes, bytes, int, int, int, int, int, int, int, int, bool, int, int]

_SYN_FLAGS = (F_SYN, F_SYN | F_ACK)
_TS_HEADS = (_SACK_TS_HEAD, _NOP_NOP_TS_HEAD)


def syn_segment(raw: bytes, verify_checksums: bool = True) -> SynSegment | None:
    """The fields of a handshake segment, or None if `raw` is any other shape.

    The shape: an IPv4 packet without options or fragmentation carrying a bare SYN or SYN-ACK (no other
    flag, no payload) whose options are none, or laid out as `syn_option_bytes` and Linux
    tcp_options_write lay them out: MSS, then SACK_PERM + TS, NOP NOP TS or NOP NOP SACK_PERM (or
    nothing), then NOP WS (or nothing). Checksums as in `plain_segment`.
    """
    n = len(raw)
    if n < 40:
        return None  # too short to be this shape
    vihl, total, frag, proto, src, dst, sport, dport, seq, ack, offflags, window = _HEAD.unpack_from(raw)
    if vihl != 0x45 or proto != IPPROTO_TCP or frag & _FRAGMENT_BITS or total != n:
        return None
    flags = offflags & 0xFFF
    if flags not in _SYN_FLAGS or 20 + ((offflags >> 12) << 2) != n:
        return None  # other flags, or a payload (or a data offset beyond the packet)
    if n == 60:
        # Linux's own layout, read at once: MSS, SACK_PERM + TS (or NOP NOP TS), NOP WS
        mss_head, mss, ts_head, tsval, tsecr, ws_head, wscale = _LINUX_SYN.unpack_from(raw, 40)
        if mss_head != _MSS_HEAD or ts_head not in _TS_HEADS or ws_head != _NOP_WS_HEAD:
            return None
        sack = ts_head == _SACK_TS_HEAD
    else:
        mss = wscale = tsval = tsecr = -1
        sack = False
        if n > 40:
            if raw[40:42] != _MSS_HEAD:
                return None
            mss = (raw[42] << 8) | raw[43]
            pos = 44
            head = raw[44:48]
            if head in _TS_HEADS:
                if n < 56:
                    return None
                sack = head == _SACK_TS_HEAD
                tsval, tsecr = _TS_VALUES.unpack_from(raw, 48)
                pos = 56
            elif head == _NOP_NOP_SACK:
                sack = True
                pos = 48
            if pos < n:
                if pos + 4 != n or raw[pos : pos + 3] != _NOP_WS_HEAD:
                    return None
                wscale = raw[pos + 3]
    if verify_checksums and not ipv4_tcp_verifies(raw, n):
        return None
    return (src, dst, sport, dport, seq, ack, window, flags, mss, wscale, sack, tsval, tsecr)
