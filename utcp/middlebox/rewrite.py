"""Field rewrites shared by the NAT boxes, on packet values and on raw bytes.

A `Rewrite` says what a translation changes in one packet: addresses, ports, a sequence delta, an
acknowledgment delta (also applied to SACK block edges), a TTL decrement. Two ways to apply it:

- `apply_rewrite(packet, rw)` on the frozen dataclasses. `build_ipv4` recomputes both checksums from
  scratch anyway, so this path has no checksum work of its own.
- `rewrite_bytes(data, rw)` edits the encoded packet in place and patches the IPv4 header checksum and
  the TCP checksum with RFC 1624 eqn. 3 per changed field (`utcp.wire.checksum.checksum_update*`), the
  way a kernel NAT does. No full pass over the payload: this is the fast path a runtime can use for the
  common case (an established flow whose header keeps its length). Tests prove both paths give the same
  bytes. Rewrites that change the header length (TOA insertion, option stripping) have no byte path:
  they go through the dataclasses and a full recompute.

Structural option edits (dataclass only): `nop_out_timestamps` (DPVS tcp_in_remove_ts), `insert_toa`
(DPVS tcp_in_add_toa: right after the fixed header), `adjust_mss` (DPVS tcp_out_adjust_mss).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace

from utcp.middlebox.base import FlowTuple, seq_add, tcp_header_length
from utcp.wire.checksum import checksum_update16, checksum_update32, checksum_update_bytes
from utcp.wire.packet import IPPROTO_TCP, IPv4Packet, Mss, Nop, Sack, TcpFlags, TcpOption, Timestamps

__all__ = [
    "HeaderView",
    "Rewrite",
    "adjust_mss",
    "apply_rewrite",
    "insert_option_first",
    "nop_out_timestamps",
    "peek_tcp",
    "rewrite_bytes",
    "shift_sack",
    "strip_options",
    "view_of",
]

_KIND_EOL = 0
_KIND_NOP = 1
_KIND_SACK = 5


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What a translation changes in one packet. None / 0 leaves a field alone."""

    src: str | None = None
    dst: str | None = None
    sport: int | None = None
    dport: int | None = None
    seq_delta: int = 0
    ack_delta: int = 0  # applied to the ACK field only when the ACK flag is set (RFC 9293 3.1)
    sack_delta: int = 0  # applied to every SACK block edge (DPVS tcp_out_adjust_seq)
    ttl_decrement: int = 0

    @property
    def is_identity(self) -> bool:
        return self == _IDENTITY


_IDENTITY = Rewrite()


def shift_sack(options: tuple[TcpOption, ...], delta: int) -> tuple[TcpOption, ...]:
    """Every SACK block edge moved by `delta`, modulo 2**32."""
    if not delta:
        return options
    return tuple(
        Sack(tuple((seq_add(left, delta), seq_add(right, delta)) for left, right in opt.blocks))
        if isinstance(opt, Sack)
        else opt
        for opt in options
    )


def apply_rewrite(packet: IPv4Packet, rw: Rewrite) -> IPv4Packet:
    """The packet with `rw` applied (a TCP packet; checksums are the encoder's business)."""
    seg = packet.tcp
    ack = seq_add(seg.ack, rw.ack_delta) if seg.flags & TcpFlags.ACK else seg.ack
    new_seg = replace(
        seg,
        src_port=seg.src_port if rw.sport is None else rw.sport,
        dst_port=seg.dst_port if rw.dport is None else rw.dport,
        seq=seq_add(seg.seq, rw.seq_delta),
        ack=ack,
        options=shift_sack(seg.options, rw.sack_delta),
    )
    return replace(
        packet,
        src=packet.src if rw.src is None else rw.src,
        dst=packet.dst if rw.dst is None else rw.dst,
        ttl=packet.ttl - rw.ttl_decrement,
        payload=new_seg,
    )


def nop_out_timestamps(options: tuple[TcpOption, ...]) -> tuple[TcpOption, ...]:
    """The first timestamps option overwritten by ten NOPs, same length (DPVS tcp_in_remove_ts)."""
    for i, opt in enumerate(options):
        if isinstance(opt, Timestamps):
            return (*options[:i], *(Nop(),) * 10, *options[i + 1 :])
    return options


def insert_option_first(options: tuple[TcpOption, ...], option: TcpOption) -> tuple[TcpOption, ...]:
    """`option` placed right after the fixed header, before the existing ones (DPVS tcp_in_add_toa)."""
    return (option, *options)


def adjust_mss(options: tuple[TcpOption, ...], adjust: Callable[[int], int]) -> tuple[TcpOption, ...]:
    """The first MSS option's value passed through `adjust` (DPVS tcp_out_adjust_mss rewrites the first)."""
    for i, opt in enumerate(options):
        if isinstance(opt, Mss):
            return (*options[:i], Mss(adjust(opt.value)), *options[i + 1 :])
    return options


def strip_options(options: tuple[TcpOption, ...], kind: type[TcpOption]) -> tuple[TcpOption, ...]:
    """Every option of the given type removed (the header shrinks)."""
    return tuple(opt for opt in options if not isinstance(opt, kind))


@dataclass(frozen=True, slots=True)
class HeaderView:
    """The fields a box decides on, read straight from the bytes of a plain IPv4/TCP packet."""

    ihl: int  # IPv4 header length, bytes
    total_length: int
    ttl: int
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: TcpFlags
    tcp_header_length: int

    @property
    def flow(self) -> FlowTuple:
        return FlowTuple(self.src, self.sport, self.dst, self.dport)

    @property
    def payload_length(self) -> int:
        return self.total_length - self.ihl - self.tcp_header_length


def view_of(packet: IPv4Packet) -> HeaderView:
    """The same fields for a packet value, lengths as its encoding will have them."""
    seg = packet.tcp
    ihl = 20 + ((len(packet.options) + 3) & ~3)
    header = tcp_header_length(seg)
    return HeaderView(
        ihl=ihl,
        total_length=ihl + header + len(seg.payload),
        ttl=packet.ttl,
        src=packet.src,
        dst=packet.dst,
        sport=seg.src_port,
        dport=seg.dst_port,
        seq=seg.seq,
        ack=seg.ack,
        flags=seg.flags,
        tcp_header_length=header,
    )


_IP_FIXED = struct.Struct("!BBHHHBBH4s4s")
_TCP_FIXED = struct.Struct("!HHIIBBHHH")


def peek_tcp(data: bytes | bytearray) -> HeaderView | None:
    """The header fields of an unfragmented IPv4/TCP packet, or None for anything else.

    Only the lengths a rewrite relies on are checked; a None sends the caller to the full parser,
    which names what is wrong.
    """
    if len(data) < 40:
        return None
    version_ihl, _tos, total_length, _ident, frag, ttl, protocol, _csum, src, dst = _IP_FIXED.unpack_from(
        data, 0
    )
    ihl = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or ihl < 20 or protocol != IPPROTO_TCP:
        return None
    if frag & 0x3FFF:  # MF set or a non-zero offset: a fragment
        return None
    if total_length > len(data) or total_length < ihl + 20:
        return None
    sport, dport, seq, ack, offset_byte, flags, _window, _tcsum, _urg = _TCP_FIXED.unpack_from(data, ihl)
    doff = (offset_byte >> 4) * 4
    if doff < 20 or ihl + doff > total_length:
        return None
    return HeaderView(
        ihl=ihl,
        total_length=total_length,
        ttl=ttl,
        src=socket.inet_ntoa(src),
        dst=socket.inet_ntoa(dst),
        sport=sport,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=TcpFlags(flags),
        tcp_header_length=doff,
    )


def _sack_edge_offsets(buf: bytearray, start: int, end: int) -> list[int]:
    """Byte offsets of every SACK edge in the option area [start, end) (walk as tcp_parse_options)."""
    offsets: list[int] = []
    pos = start
    while pos < end:
        kind = buf[pos]
        if kind == _KIND_EOL:
            break
        if kind == _KIND_NOP:
            pos += 1
            continue
        if pos + 1 >= end:
            break
        size = buf[pos + 1]
        if size < 2 or pos + size > end:  # silly or partial option: stop, as the kernel does
            break
        if kind == _KIND_SACK and size >= 10 and (size - 2) % 8 == 0:
            offsets.extend(range(pos + 2, pos + size, 4))
        pos += size
    return offsets


def rewrite_bytes(data: bytes | bytearray, rw: Rewrite, view: HeaderView | None = None) -> bytes:
    """`rw` applied to an encoded IPv4/TCP packet, checksums patched incrementally (RFC 1624).

    Equal to `build_ipv4(apply_rewrite(parse_ipv4(data), rw))` for a valid packet (tests check it);
    a packet whose checksum was wrong stays exactly as wrong, as through a kernel NAT.
    Raises ValueError for bytes `peek_tcp` rejects.
    """
    if view is None:
        view = peek_tcp(data)
        if view is None:
            raise ValueError("not an unfragmented IPv4/TCP packet")
    buf = bytearray(data[: view.total_length])
    t = view.ihl  # TCP header offset (even: a multiple of 4)
    ip_csum = int.from_bytes(buf[10:12], "big")
    tcp_csum = int.from_bytes(buf[t + 16 : t + 18], "big")

    for offset, new_address in ((12, rw.src), (16, rw.dst)):
        if new_address is None:
            continue
        old = int.from_bytes(buf[offset : offset + 4], "big")
        new = int.from_bytes(socket.inet_aton(new_address), "big")
        if old != new:
            ip_csum = checksum_update32(ip_csum, old, new)
            tcp_csum = checksum_update32(tcp_csum, old, new)  # the pseudo-header carries the addresses
            buf[offset : offset + 4] = new.to_bytes(4, "big")

    if rw.ttl_decrement:
        old_word = int.from_bytes(buf[8:10], "big")  # TTL and protocol share a word
        buf[8] = (buf[8] - rw.ttl_decrement) & 0xFF
        ip_csum = checksum_update16(ip_csum, old_word, int.from_bytes(buf[8:10], "big"))

    for offset, new_port in ((t, rw.sport), (t + 2, rw.dport)):
        if new_port is None:
            continue
        old = int.from_bytes(buf[offset : offset + 2], "big")
        if old != new_port:
            tcp_csum = checksum_update16(tcp_csum, old, new_port)
            buf[offset : offset + 2] = new_port.to_bytes(2, "big")

    shifts = [(t + 4, rw.seq_delta)]
    if view.flags & TcpFlags.ACK:
        shifts.append((t + 8, rw.ack_delta))
    if rw.sack_delta:
        shifts.extend((o, rw.sack_delta) for o in _sack_edge_offsets(buf, t + 20, t + view.tcp_header_length))
    for offset, delta in shifts:
        if not delta:
            continue
        old_bytes = bytes(buf[offset : offset + 4])
        new_bytes = seq_add(int.from_bytes(old_bytes, "big"), delta).to_bytes(4, "big")
        # SACK edges can sit at odd offsets (after a lone NOP): the byte form handles the parity.
        tcp_csum = checksum_update_bytes(tcp_csum, old_bytes, new_bytes, offset=offset - t)
        buf[offset : offset + 4] = new_bytes

    buf[10:12] = ip_csum.to_bytes(2, "big")
    buf[t + 16 : t + 18] = tcp_csum.to_bytes(2, "big")
    return bytes(buf)
