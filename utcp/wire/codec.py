"""Bytes <-> IPv4Packet / TcpSegment: the API every layer calls.

Two implementations of one format:

- the fast path (`parse_ipv4`, `build_ipv4`, `parse_tcp`, `build_tcp`): precompiled
  `struct.Struct`s for the fixed headers, a table of the option layouts real stacks send
  (`_LAYOUTS`, matched with one integer mask), and the big-integer checksum of
  `utcp.wire.checksum`. An option area that matches no layout goes to the construct path.
- the reference path (`parse_ipv4_reference`, `build_ipv4_reference`): the construct
  schemas of `utcp.wire.schema`, which declare the format and every validation rule.

Both raise only `WireError` on bad bytes (`ChecksumError` for a checksum) with the same
message, and `EncodeError` (a `WireError`) for values that cannot be encoded; tests/wire
hold them to the same values, bytes and messages.

Fidelity (parse then build gives back the same bytes) holds for every packet that parses
with verified checksums, with two exceptions: the IPv4 reserved flag bit and the four TCP
reserved header bits are ignored on receive (RFC 9293 3.1, as Linux does) and written as 0;
and bytes past the IPv4 total length (link padding) are dropped.

TCP options are kept in wire order, NOPs and EOL included. The builder writes them in the
order given and pads with zero bytes to a 4-byte boundary; at most 40 bytes. On parse an EOL
ends the list and what follows it is classified by `schema.eol_tail_kind`: zero padding
the builder would write anyway disappears (with the EOL itself when that EOL byte sits in
the padding), an EOL followed by exactly the padding is `Eol()`, and anything else
(non-zero bytes, or extra zero words) becomes `UnknownOption(kind=0, data=<bytes after the
EOL byte>)`, which the builder writes back as an EOL byte plus `data` verbatim. So the
option list of a parsed packet always rebuilds to the same bytes. IPv4 options are raw bytes,
zero-padded to 4 bytes by the builder.

Fragments (MF set or offset != 0) and non-TCP packets keep their payload as bytes.
"""

from __future__ import annotations

import socket
import struct
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from construct import ConstructError

from utcp.wire import schema
from utcp.wire.checksum import checksum_of, internet_checksum, tcp_segment_verifies, word_sum
from utcp.wire.errors import ChecksumError, EncodeError, WireError
from utcp.wire.fastpath import ntoa
from utcp.wire.packet import (
    IPPROTO_TCP,
    Eol,
    IPv4Packet,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpFlags,
    TcpOption,
    TcpSegment,
    Timestamps,
    Toa,
    ToaV6,
    UnknownOption,
    WindowScale,
)

Buffer = bytes | bytearray | memoryview

__all__ = [
    "Ipv4Fields",
    "build_ipv4",
    "build_ipv4_reference",
    "build_tcp",
    "parse_ipv4",
    "parse_ipv4_fields",
    "parse_ipv4_reference",
    "parse_tcp",
]

_MOD = 0xFFFF
_MAX_IP_LENGTH = 0xFFFF
_DF = 0x4000
_MF = 0x2000
_OFFSET_MASK = 0x1FFF

_IPV4_FIXED = struct.Struct("!BBHHHBBH")  # up to and including the checksum
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_TCP_HEADER = struct.Struct("!HHIIHHHH")
_OPT_MSS = struct.Struct("!BBH")
_OPT_WS = struct.Struct("!BBB")
_OPT_TS = struct.Struct("!BBII")
_OPT_TOA = struct.Struct("!BBH")
_SACK_BLOCK = struct.Struct("!II")
_TS_VALUES = _SACK_BLOCK

# Immutable lookup tables (TcpFlags(x) costs half a microsecond per call).
_FLAGS: tuple[TcpFlags, ...] = tuple(TcpFlags(i) for i in range(256))
_NOP = Nop()
_EOL = Eol()
_SACK_PERMITTED = SackPermitted()

_MESSAGE_NOP_DATA = "UnknownOption kind 1 (nop) cannot carry data; use Nop()"


# --- fast option layouts ------------------------------------------------------------------------

# Each piece: its fixed bytes (kind, length) and the struct format of its values.
_PIECES: Mapping[str, tuple[bytes, str]] = types.MappingProxyType(
    {
        "nop": (b"\x01", ""),
        "mss": (b"\x02\x04", "H"),
        "ws": (b"\x03\x03", "B"),
        "sackok": (b"\x04\x02", ""),
        "ts": (b"\x08\x0a", "II"),
        "sack1": (b"\x05\x0a", "II"),
        "sack2": (b"\x05\x12", "IIII"),
        "sack3": (b"\x05\x1a", "IIIIII"),
        "sack4": (b"\x05\x22", "IIIIIIII"),
    }
)


@dataclass(frozen=True, slots=True)
class _Layout:
    """An exact option-area layout: the area matches when `area & mask == pattern`."""

    skeleton: str
    length: int
    mask: int
    pattern: int
    values: struct.Struct
    make: Callable[[tuple[int, ...]], tuple[TcpOption, ...]]


def _layout(skeleton: str, make: Callable[[tuple[int, ...]], tuple[TcpOption, ...]]) -> _Layout:
    mask = bytearray()
    pattern = bytearray()
    fmt = "!"
    for piece in skeleton.split():
        fixed, value_fmt = _PIECES[piece]
        value_size = struct.calcsize("!" + value_fmt)
        mask += b"\xff" * len(fixed) + bytes(value_size)
        pattern += fixed + bytes(value_size)
        fmt += "x" * len(fixed) + value_fmt
    return _Layout(
        skeleton,
        len(mask),
        int.from_bytes(mask, "big"),
        int.from_bytes(pattern, "big"),
        struct.Struct(fmt),
        make,
    )


def _blocks(v: tuple[int, ...], start: int) -> Sack:
    return Sack(tuple(zip(v[start::2], v[start + 1 :: 2], strict=True)))


# What Linux tcp_options_write() emits (and Windows' SYN), most frequent first.
_LAYOUTS: tuple[_Layout, ...] = (
    _layout("nop nop ts", lambda v: (_NOP, _NOP, Timestamps(v[0], v[1]))),
    _layout(
        "mss sackok ts nop ws",
        lambda v: (Mss(v[0]), _SACK_PERMITTED, Timestamps(v[1], v[2]), _NOP, WindowScale(v[3])),
    ),
    _layout(
        "nop nop ts nop nop sack1", lambda v: (_NOP, _NOP, Timestamps(v[0], v[1]), _NOP, _NOP, _blocks(v, 2))
    ),
    _layout(
        "nop nop ts nop nop sack2", lambda v: (_NOP, _NOP, Timestamps(v[0], v[1]), _NOP, _NOP, _blocks(v, 2))
    ),
    _layout(
        "nop nop ts nop nop sack3", lambda v: (_NOP, _NOP, Timestamps(v[0], v[1]), _NOP, _NOP, _blocks(v, 2))
    ),
    _layout("nop nop sack1", lambda v: (_NOP, _NOP, _blocks(v, 0))),
    _layout("nop nop sack2", lambda v: (_NOP, _NOP, _blocks(v, 0))),
    _layout("nop nop sack3", lambda v: (_NOP, _NOP, _blocks(v, 0))),
    _layout("nop nop sack4", lambda v: (_NOP, _NOP, _blocks(v, 0))),
    _layout("mss", lambda v: (Mss(v[0]),)),
    _layout("mss nop ws", lambda v: (Mss(v[0]), _NOP, WindowScale(v[1]))),
    _layout("mss sackok ts", lambda v: (Mss(v[0]), _SACK_PERMITTED, Timestamps(v[1], v[2]))),
    _layout(
        "mss nop nop ts nop ws",
        lambda v: (Mss(v[0]), _NOP, _NOP, Timestamps(v[1], v[2]), _NOP, WindowScale(v[3])),
    ),
    _layout(
        "mss nop nop sackok nop ws",
        lambda v: (Mss(v[0]), _NOP, _NOP, _SACK_PERMITTED, _NOP, WindowScale(v[1])),
    ),
    _layout(
        "mss nop ws nop nop sackok",
        lambda v: (Mss(v[0]), _NOP, WindowScale(v[1]), _NOP, _NOP, _SACK_PERMITTED),
    ),
)


def _by_length(layouts: tuple[_Layout, ...]) -> Mapping[int, tuple[_Layout, ...]]:
    table: dict[int, tuple[_Layout, ...]] = {}
    for layout in layouts:
        table[layout.length] = (*table.get(layout.length, ()), layout)
    return types.MappingProxyType(table)


_LAYOUTS_BY_LENGTH = _by_length(_LAYOUTS)


def _parse_options(data: bytes, start: int, length: int) -> tuple[TcpOption, ...]:
    if length == 12 and data[start : start + 4] == b"\x01\x01\x08\x0a":  # the common case, inlined
        tsval, tsecr = _TS_VALUES.unpack_from(data, start + 4)
        return (_NOP, _NOP, Timestamps(tsval, tsecr))
    candidates = _LAYOUTS_BY_LENGTH.get(length)
    if candidates is not None:
        area = int.from_bytes(data[start : start + length], "big")
        for layout in candidates:
            if area & layout.mask == layout.pattern:
                return layout.make(layout.values.unpack_from(data, start))
    return _parse_options_reference(bytes(data[start : start + length]))


# --- fast parse -----------------------------------------------------------------------------------


def _parse_tcp_fast(data: bytes, start: int, end: int, addresses: bytes, verify: bool) -> TcpSegment:
    """The TCP segment in data[start:end]; `addresses` is the 8 bytes src + dst of the pseudo-header."""
    seglen = end - start
    # tcp_v4_rcv: pskb_may_pull(skb, sizeof(struct tcphdr))
    if seglen < schema.TCP_MIN_HEADER:
        raise WireError(f"tcp header truncated: {seglen} bytes < {schema.TCP_MIN_HEADER}")
    sport, dport, seq, ack, offset_flags, window, _checksum, urgent = _TCP_HEADER.unpack_from(data, start)
    data_offset = offset_flags >> 12
    # tcp_v4_rcv: "if (unlikely(th->doff < sizeof(struct tcphdr) / 4)) goto bad_packet"
    if data_offset < 5:
        raise WireError(f"tcp.data_offset {data_offset} < 5")
    header_len = data_offset << 2
    # tcp_v4_rcv: pskb_may_pull(skb, th->doff * 4)
    if header_len > seglen:
        raise WireError(f"tcp.data_offset {data_offset} ({header_len} bytes) > {seglen} bytes in segment")
    # RFC 9293 3.1 checksum over pseudo-header + segment, as tcp_v4_checksum_init does.
    if verify and not tcp_segment_verifies(data, start, end, addresses):
        pseudo = addresses + bytes((0, IPPROTO_TCP)) + seglen.to_bytes(2, "big")
        raise ChecksumError(schema.tcp_checksum_message(pseudo, data[start:end]))
    options = () if header_len == 20 else _parse_options(data, start + 20, header_len - 20)
    return TcpSegment(
        sport,
        dport,
        seq,
        ack,
        _FLAGS[offset_flags & 0xFF],
        window,
        options,
        data[start + header_len : end],
        urgent,
    )


# IPv4Packet's fields in its order: src, dst, payload, protocol, ttl, ident, tos, dont_fragment,
# more_fragments, fragment_offset, options.
Ipv4Fields = tuple[str, str, TcpSegment | bytes, int, int, int, int, bool, bool, int, bytes]


def parse_ipv4(data: Buffer, *, verify_checksums: bool = True) -> IPv4Packet:
    """Parse an IPv4 packet; a TCP payload (not a fragment) becomes a TcpSegment.

    Raises WireError (ChecksumError for a bad IPv4 or TCP checksum when `verify_checksums`).
    """
    return IPv4Packet(*parse_ipv4_fields(data, verify_checksums=verify_checksums))


def parse_ipv4_fields(data: Buffer, *, verify_checksums: bool = True) -> Ipv4Fields:
    """`parse_ipv4` as the tuple of IPv4Packet's fields: the engine's receive path reads a few of them
    and would only throw the frozen packet value away (~2 us to build per segment)."""
    if type(data) is not bytes:
        data = bytes(data)  # one copy; the payload must become bytes anyway
    n = len(data)
    # ip_rcv_core: pskb_may_pull(skb, sizeof(struct iphdr))
    if n < schema.IPV4_MIN_HEADER:
        raise WireError(f"ipv4 header truncated: {n} bytes < {schema.IPV4_MIN_HEADER}")
    version_ihl, tos, total, ident, fragment, ttl, protocol, _checksum = _IPV4_FIXED.unpack_from(data)
    if version_ihl == 0x45:
        header_len = 20
    else:
        # ip_rcv_core: "if (iph->ihl < 5 || iph->version != 4) goto inhdr_error"
        version = version_ihl >> 4
        if version != 4:
            raise WireError(f"ipv4.version {version} != 4")
        ihl = version_ihl & 0x0F
        if ihl < 5:
            raise WireError(f"ipv4.ihl {ihl} < 5")
        header_len = ihl << 2
        # ip_rcv_core: pskb_may_pull(skb, iph->ihl*4)
        if header_len > n:
            raise WireError(f"ipv4.ihl {ihl} ({header_len} bytes) > {n} bytes available")
    # ip_rcv_core: ip_fast_csum(); the header sum is never zero (version 4), so a residue of
    # 0 mod 0xFFFF is exactly "one's-complement sum is -0", i.e. the checksum verifies.
    if verify_checksums and word_sum(data, 0, header_len) % _MOD:
        raise ChecksumError(schema.ipv4_checksum_message(data[:header_len]))
    # ip_rcv_core: "if (skb->len < len) goto drop; else if (len < (iph->ihl*4)) goto inhdr_error"
    if total > n:
        raise WireError(f"ipv4.total_length {total} > {n} bytes available")
    if total < header_len:
        raise WireError(f"ipv4.total_length {total} < header length {header_len}")
    if protocol == IPPROTO_TCP and not fragment & (_MF | _OFFSET_MASK):
        payload: TcpSegment | bytes = _parse_tcp_fast(data, header_len, total, data[12:20], verify_checksums)
    else:
        payload = data[header_len:total]
    return (
        ntoa(data[12:16]),
        ntoa(data[16:20]),
        payload,
        protocol,
        ttl,
        ident,
        tos,
        bool(fragment & _DF),
        bool(fragment & _MF),
        fragment & _OFFSET_MASK,
        data[20:header_len],
    )


def _address(text: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET, text)
    except (OSError, TypeError) as exc:
        raise EncodeError(f"invalid IPv4 address {text!r}") from exc


def _segment_length_check(n: int) -> None:
    # The pseudo-header length field has 16 bits (RFC 9293 3.1).
    if n > _MAX_IP_LENGTH:
        raise WireError(f"tcp segment {n} bytes > {_MAX_IP_LENGTH}")


def parse_tcp(data: Buffer, src: str, dst: str, *, verify_checksum: bool = True) -> TcpSegment:
    """Parse a bare TCP segment; `src`/`dst` (dotted quads) form the checksum pseudo-header."""
    if type(data) is not bytes:
        data = bytes(data)
    _segment_length_check(len(data))
    return _parse_tcp_fast(data, 0, len(data), _address(src) + _address(dst), verify_checksum)


# --- fast build -----------------------------------------------------------------------------------


def _encode_options(options: tuple[TcpOption, ...]) -> bytes:
    """Options in the order given, zero-padded to a 4-byte boundary."""
    parts: list[bytes] = []
    append = parts.append
    for opt in options:
        t = type(opt)
        if t is Nop:
            append(b"\x01")
        elif t is Timestamps:
            append(_OPT_TS.pack(schema.KIND_TIMESTAMPS, 10, opt.tsval, opt.tsecr))  # type: ignore[union-attr]
        elif t is Mss:
            append(_OPT_MSS.pack(schema.KIND_MSS, 4, opt.value))  # type: ignore[union-attr]
        elif t is WindowScale:
            append(_OPT_WS.pack(schema.KIND_WINDOW_SCALE, 3, opt.shift))  # type: ignore[union-attr]
        elif t is SackPermitted:
            append(b"\x04\x02")
        elif t is Sack:
            blocks = opt.blocks  # type: ignore[union-attr]
            if not blocks:
                raise EncodeError(f"tcp option 5 (sack) length {2 + 8 * len(blocks)} is not 2+8n with n >= 1")
            append(bytes((schema.KIND_SACK, 2 + 8 * len(blocks))))
            for left, right in blocks:
                append(_SACK_BLOCK.pack(left, right))
        elif t is Eol:
            append(b"\x00")
        elif t is Toa:
            append(_OPT_TOA.pack(schema.KIND_TOA, schema.TOA_LENGTH, opt.port))  # type: ignore[union-attr]
            append(_address(opt.address))  # type: ignore[union-attr]
        elif t is ToaV6:
            append(_OPT_TOA.pack(schema.KIND_TOA, schema.TOA_V6_LENGTH, opt.port))  # type: ignore[union-attr]
            try:
                append(socket.inet_pton(socket.AF_INET6, opt.address))  # type: ignore[union-attr]
            except (OSError, TypeError) as exc:
                raise EncodeError(f"invalid IPv6 address {opt.address!r}") from exc  # type: ignore[union-attr]
        elif t is UnknownOption:
            kind = opt.kind  # type: ignore[union-attr]
            data = bytes(opt.data)  # type: ignore[union-attr]
            if kind == schema.KIND_EOL:
                append(b"\x00" + data)  # an EOL with its trailing bytes, verbatim
            elif kind == schema.KIND_NOP:
                raise EncodeError(_MESSAGE_NOP_DATA)
            else:
                append(bytes((kind, 2 + len(data))))
                append(data)
        else:
            raise EncodeError(f"not a TCP option: {opt!r}")
    area = b"".join(parts)
    return _pad_options("tcp", area)


def _pad_options(layer: str, area: bytes) -> bytes:
    if len(area) > schema.MAX_OPTION_AREA:
        raise EncodeError(f"{layer} options {len(area)} bytes > {schema.MAX_OPTION_AREA}")
    pad = -len(area) & 3
    return area + bytes(pad) if pad else area


def _flags_value(flags: TcpFlags) -> int:
    value = int(flags)
    if not 0 <= value <= 0xFF:
        raise EncodeError(f"tcp.flags 0x{value:x} do not fit in 8 bits")
    return value


def _build_tcp_fast(seg: TcpSegment, addresses: bytes) -> tuple[bytes, bytes]:
    """TCP header (checksum filled in) and payload, ready to be joined."""
    area = _encode_options(seg.options)
    header_len = 20 + len(area)
    payload = bytes(seg.payload)
    seglen = header_len + len(payload)
    if seglen > _MAX_IP_LENGTH:
        raise EncodeError(f"tcp segment {seglen} bytes > {_MAX_IP_LENGTH}")
    header = _TCP_HEADER.pack(
        seg.src_port,
        seg.dst_port,
        seg.seq,
        seg.ack,
        (header_len << 10) | _flags_value(seg.flags),
        seg.window,
        0,
        seg.urgent,
    )
    if area:
        header += area
    total = word_sum(header) + int.from_bytes(addresses, "big") + IPPROTO_TCP + seglen + word_sum(payload)
    checksum = checksum_of(total)
    return header[:16] + checksum.to_bytes(2, "big") + header[18:], payload


_ENCODE_FAILURES = (struct.error, OverflowError, ValueError, TypeError, AttributeError)


def build_tcp(seg: TcpSegment, src: str, dst: str) -> bytes:
    """A TCP segment's bytes with its checksum for the pseudo-header `src` -> `dst`."""
    try:
        header, payload = _build_tcp_fast(seg, _address(src) + _address(dst))
    except WireError:
        raise
    except _ENCODE_FAILURES as exc:
        raise EncodeError(f"cannot encode {seg!r}: {exc}") from exc
    return header + payload


def _check_ipv4_fields(packet: IPv4Packet, payload_is_segment: bool) -> None:
    if payload_is_segment:
        if packet.protocol != IPPROTO_TCP:
            raise EncodeError(f"payload is a TcpSegment but ipv4.protocol is {packet.protocol}")
        if packet.more_fragments or packet.fragment_offset:
            raise EncodeError("a TcpSegment payload cannot be a fragment (build_tcp it, fragment the bytes)")
    if not 0 <= packet.fragment_offset <= _OFFSET_MASK:
        raise EncodeError(f"ipv4.fragment_offset {packet.fragment_offset} does not fit in 13 bits")


def _build_ipv4_fast(packet: IPv4Packet) -> bytes:
    src = _address(packet.src)
    dst = _address(packet.dst)
    payload = packet.payload
    is_segment = isinstance(payload, TcpSegment)
    _check_ipv4_fields(packet, is_segment)
    if isinstance(payload, TcpSegment):
        head, body = _build_tcp_fast(payload, src + dst)
    else:
        head, body = b"", bytes(payload)
    options = _pad_options("ipv4", bytes(packet.options))
    header_len = 20 + len(options)
    total = header_len + len(head) + len(body)
    if total > _MAX_IP_LENGTH:
        raise EncodeError(f"ipv4.total_length {total} > {_MAX_IP_LENGTH}")
    fragment = (
        (_DF if packet.dont_fragment else 0) | (_MF if packet.more_fragments else 0) | packet.fragment_offset
    )
    header = _IPV4_HEADER.pack(
        0x40 | (header_len >> 2),
        packet.tos,
        total,
        packet.ident,
        fragment,
        packet.ttl,
        packet.protocol,
        0,
        src,
        dst,
    )
    if options:
        header += options
    checksum = checksum_of(word_sum(header))
    return b"".join((header[:10], checksum.to_bytes(2, "big"), header[12:], head, body))


def build_ipv4(packet: IPv4Packet) -> bytes:
    """Encode a packet: total length, IPv4 header checksum and TCP checksum are computed."""
    try:
        return _build_ipv4_fast(packet)
    except WireError:
        raise
    except _ENCODE_FAILURES as exc:
        raise EncodeError(f"cannot encode {packet!r}: {exc}") from exc


# --- reference path (construct) -------------------------------------------------------------------


def _construct_parse(construct: Any, data: bytes, **params: Any) -> Any:
    try:
        return construct.parse(data, **params)
    except WireError:
        raise
    except ConstructError as exc:  # a gap in the Rules; still only a WireError for callers
        raise WireError(f"malformed ({type(exc).__name__}): {exc}") from exc


def _parse_options_reference(area: bytes) -> tuple[TcpOption, ...]:
    parsed = _construct_parse(schema.TCP_OPTIONS, area, area_len=len(area))
    options: list[TcpOption] = []
    for item in parsed.options or ():
        kind = item.kind
        body = item.body
        if kind == schema.KIND_EOL:
            tail = bytes(parsed.after_eol)
            how = schema.eol_tail_kind(len(area), item.end - 1, tail)
            if how == "eol":
                options.append(_EOL)
            elif how == "trailer":
                options.append(UnknownOption(schema.KIND_EOL, tail))
            break
        if kind == schema.KIND_NOP:
            options.append(_NOP)
        elif kind == schema.KIND_MSS:
            options.append(Mss(body.value))
        elif kind == schema.KIND_WINDOW_SCALE:
            options.append(WindowScale(body.shift))
        elif kind == schema.KIND_SACK_PERMITTED:
            options.append(_SACK_PERMITTED)
        elif kind == schema.KIND_SACK:
            options.append(Sack(tuple((block.left, block.right) for block in body.blocks)))
        elif kind == schema.KIND_TIMESTAMPS:
            options.append(Timestamps(body.tsval, body.tsecr))
        elif kind == schema.KIND_TOA and body.length == schema.TOA_LENGTH:
            options.append(Toa(body.value.port, body.value.address))
        elif kind == schema.KIND_TOA and body.length == schema.TOA_V6_LENGTH:
            options.append(ToaV6(body.value.port, body.value.address))
        elif kind == schema.KIND_TOA:
            options.append(UnknownOption(kind, bytes(body.value)))
        else:
            options.append(UnknownOption(kind, bytes(body.data)))
    return tuple(options)


def _parse_tcp_reference(segment: bytes, src: str, dst: str, verify: bool) -> TcpSegment:
    _segment_length_check(len(segment))
    pseudo = schema.PSEUDO_HEADER.build(
        {"src": src, "dst": dst, "protocol": IPPROTO_TCP, "length": len(segment)}
    )
    parsed = _construct_parse(
        schema.TCP_SEGMENT,
        segment,
        available=len(segment),
        verify_checksums=verify,
        pseudo=pseudo,
        segment=segment,
    )
    header = parsed.header
    return TcpSegment(
        src_port=header.src_port,
        dst_port=header.dst_port,
        seq=header.seq,
        ack=header.ack,
        flags=_FLAGS[header.offset_flags.flags],
        window=header.window,
        options=_parse_options_reference(header.options),
        payload=bytes(parsed.payload),
        urgent=header.urgent,
    )


def parse_ipv4_reference(data: Buffer, *, verify_checksums: bool = True) -> IPv4Packet:
    """`parse_ipv4` through the construct schemas only (the reference the fast path must equal)."""
    raw = bytes(data)
    parsed = _construct_parse(schema.IPV4_PACKET, raw, available=len(raw), verify_checksums=verify_checksums)
    header = parsed.header.value
    fragment = header.fragment
    payload: TcpSegment | bytes
    if header.protocol == IPPROTO_TCP and not fragment.more_fragments and fragment.offset == 0:
        payload = _parse_tcp_reference(bytes(parsed.payload), header.src, header.dst, verify_checksums)
    else:
        payload = bytes(parsed.payload)
    return IPv4Packet(
        src=header.src,
        dst=header.dst,
        payload=payload,
        protocol=header.protocol,
        ttl=header.ttl,
        ident=header.ident,
        tos=header.tos,
        dont_fragment=fragment.dont_fragment,
        more_fragments=fragment.more_fragments,
        fragment_offset=fragment.offset,
        options=bytes(header.options),
    )


def _option_reference_bytes(opt: TcpOption) -> bytes:
    build = schema.TCP_OPTION.build
    match opt:
        case Eol():
            return bytes(build({"kind": schema.KIND_EOL, "body": None}))
        case Nop():
            return bytes(build({"kind": schema.KIND_NOP, "body": None}))
        case Mss(value=value):
            return bytes(build({"kind": schema.KIND_MSS, "body": {"value": value}}))
        case WindowScale(shift=shift):
            return bytes(build({"kind": schema.KIND_WINDOW_SCALE, "body": {"shift": shift}}))
        case SackPermitted():
            return bytes(build({"kind": schema.KIND_SACK_PERMITTED, "body": {}}))
        case Sack(blocks=blocks):
            body = {"blocks": [{"left": left, "right": right} for left, right in blocks]}
            return bytes(build({"kind": schema.KIND_SACK, "body": body}))
        case Timestamps(tsval=tsval, tsecr=tsecr):
            return bytes(build({"kind": schema.KIND_TIMESTAMPS, "body": {"tsval": tsval, "tsecr": tsecr}}))
        case Toa(port=port, address=address):
            toa = {"family": 4, "port": port, "address": address}
            return bytes(build({"kind": schema.KIND_TOA, "body": {"value": toa}}))
        case ToaV6(port=port, address=address):
            toa = {"family": 6, "port": port, "address": address}
            return bytes(build({"kind": schema.KIND_TOA, "body": {"value": toa}}))
        case UnknownOption(kind=schema.KIND_EOL, data=data):
            return bytes(build({"kind": schema.KIND_EOL, "body": None})) + bytes(data)
        case UnknownOption(kind=schema.KIND_NOP):
            raise EncodeError(_MESSAGE_NOP_DATA)
        case UnknownOption(kind=kind, data=data):
            return bytes(schema.TCP_OPTION_VERBATIM.build({"kind": kind, "body": {"data": bytes(data)}}))
        case _:
            raise EncodeError(f"not a TCP option: {opt!r}")


def _build_tcp_reference(seg: TcpSegment, src: str, dst: str) -> bytes:
    area = _pad_options("tcp", b"".join(_option_reference_bytes(opt) for opt in seg.options))
    payload = bytes(seg.payload)
    seglen = 20 + len(area) + len(payload)
    if seglen > _MAX_IP_LENGTH:
        raise EncodeError(f"tcp segment {seglen} bytes > {_MAX_IP_LENGTH}")
    fields: dict[str, Any] = {
        "src_port": seg.src_port,
        "dst_port": seg.dst_port,
        "seq": seg.seq,
        "ack": seg.ack,
        "offset_flags": {"reserved": 0, "flags": _flags_value(seg.flags)},
        "window": seg.window,
        "checksum": 0,
        "urgent": seg.urgent,
        "options": area,
    }
    pseudo = schema.PSEUDO_HEADER.build({"src": src, "dst": dst, "protocol": IPPROTO_TCP, "length": seglen})
    fields["checksum"] = internet_checksum(pseudo + schema.TCP_HEADER.build(fields) + payload)
    return bytes(schema.TCP_HEADER.build(fields)) + payload


def _build_ipv4_reference(packet: IPv4Packet) -> bytes:
    payload = packet.payload
    _check_ipv4_fields(packet, isinstance(payload, TcpSegment))
    if isinstance(payload, TcpSegment):
        body = _build_tcp_reference(payload, packet.src, packet.dst)
    else:
        body = bytes(payload)
    options = _pad_options("ipv4", bytes(packet.options))
    total = 20 + len(options) + len(body)
    if total > _MAX_IP_LENGTH:
        raise EncodeError(f"ipv4.total_length {total} > {_MAX_IP_LENGTH}")
    fields: dict[str, Any] = {
        "version_ihl": {"version": 4},
        "tos": packet.tos,
        "total_length": total,
        "ident": packet.ident,
        "fragment": {
            "reserved": False,
            "dont_fragment": packet.dont_fragment,
            "more_fragments": packet.more_fragments,
            "offset": packet.fragment_offset,
        },
        "ttl": packet.ttl,
        "protocol": packet.protocol,
        "checksum": 0,
        "src": packet.src,
        "dst": packet.dst,
        "options": options,
    }
    fields["checksum"] = internet_checksum(schema.IPV4_HEADER.build(fields))
    return bytes(schema.IPV4_HEADER.build(fields)) + body


def build_ipv4_reference(packet: IPv4Packet) -> bytes:
    """`build_ipv4` through the construct schemas only; byte-identical to `build_ipv4`."""
    try:
        return _build_ipv4_reference(packet)
    except WireError:
        raise
    except (ConstructError, *_ENCODE_FAILURES) as exc:
        raise EncodeError(f"cannot encode {packet!r}: {exc}") from exc
