"""What every middlebox shares: the interface, directions, outputs, counters, small helpers.

A middlebox is a pure packet rewriter. The caller (utcp.sim on virtual time, utcp.io on trio) hands it
one packet, the side it came from and `now`; it answers with the packets to emit, each tagged with the
direction it travels. Boxes with timers (delays, conntrack expiry) also answer `next_deadline()` and
`on_timer(now)`. Nothing here sleeps, reads a clock or logs; what happened is counted in `stats`.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from utcp.wire.codec import parse_ipv4
from utcp.wire.errors import ChecksumError, WireError
from utcp.wire.packet import (
    IPv4Packet,
    TcpFlags,
    TcpSegment,
    options_length,
)

__all__ = [
    "DROPPED_BAD_CHECKSUM",
    "DROPPED_NOT_TCP",
    "DROPPED_UNPARSEABLE",
    "MAX_TCP_HEADER",
    "Direction",
    "Emit",
    "FlowTuple",
    "Middlebox",
    "RawEmit",
    "Stats",
    "coerce_packet",
    "flow_of",
    "options_length",
    "seq_add",
    "tcp_header_length",
]

# Counter names shared by every box.
DROPPED_UNPARSEABLE = "dropped_unparseable"  # bytes that utcp.wire could not parse
DROPPED_BAD_CHECKSUM = "dropped_bad_checksum"  # parsed, but an IP or TCP checksum did not verify
DROPPED_NOT_TCP = "dropped_not_tcp"  # a NAT box only translates TCP

MAX_TCP_HEADER = 60  # 4-bit data offset (RFC 9293 3.1): 15 words
_U32 = 0xFFFFFFFF


class Direction(enum.Enum):
    """Which way a packet crosses a box placed between clients and servers."""

    TO_SERVER = "to_server"  # client -> LB -> RS; inside -> outside for SNAT; LB -> RS for RS-side TOA
    TO_CLIENT = "to_client"

    @property
    def reverse(self) -> Direction:
        return Direction.TO_CLIENT if self is Direction.TO_SERVER else Direction.TO_SERVER


@dataclass(frozen=True, slots=True)
class Emit:
    """One packet a box sends, and the way it travels."""

    packet: IPv4Packet
    direction: Direction


@dataclass(frozen=True, slots=True)
class RawEmit:
    """One encoded packet a box sends from its bytes path, and the way it travels."""

    data: bytes
    direction: Direction


class Stats(Counter[str]):
    """Counters of what a box did (names are the constants of the box's module)."""

    def format(self) -> str:
        """One `name value` per line, sorted by name (like `nstat`)."""
        return "\n".join(f"{name} {value}" for name, value in sorted(self.items()))


@runtime_checkable
class Middlebox(Protocol):
    """The contract between a box and whatever drives it (simulator or trio runtime).

    `process` never raises on bad input: bytes that do not parse are counted (`DROPPED_UNPARSEABLE`)
    and dropped. The outputs of one call are in emission order.
    """

    stats: Stats

    def process(self, packet: IPv4Packet | bytes, direction: Direction, now: float) -> list[Emit]: ...

    def next_deadline(self) -> float | None: ...

    def on_timer(self, now: float) -> list[Emit]: ...


@dataclass(frozen=True, slots=True)
class FlowTuple:
    """A TCP flow as one packet sees it: source and destination address and port."""

    src: str
    sport: int
    dst: str
    dport: int

    def reversed(self) -> FlowTuple:
        return FlowTuple(self.dst, self.dport, self.src, self.sport)

    def __str__(self) -> str:
        return f"{self.src}:{self.sport} > {self.dst}:{self.dport}"


def flow_of(packet: IPv4Packet) -> FlowTuple:
    """The flow tuple of a TCP packet."""
    seg = packet.tcp
    return FlowTuple(packet.src, seg.src_port, packet.dst, seg.dst_port)


def seq_add(value: int, delta: int) -> int:
    """Sequence arithmetic modulo 2**32 (RFC 9293 3.4)."""
    return (value + delta) & _U32


def coerce_packet(packet: IPv4Packet | bytes, stats: Stats) -> IPv4Packet | None:
    """The packet as a value; bytes are parsed with checksums verified.

    A parse error is counted as DROPPED_UNPARSEABLE and a checksum mismatch as DROPPED_BAD_CHECKSUM
    (Linux conntrack treats a bad checksum as INVALID and NAT leaves the packet alone: nf_conntrack_checksum);
    either way None comes back and nothing is raised.
    """
    if isinstance(packet, IPv4Packet):
        return packet
    try:
        return parse_ipv4(bytes(packet), verify_checksums=True)
    except ChecksumError:
        stats[DROPPED_BAD_CHECKSUM] += 1
    except WireError:
        stats[DROPPED_UNPARSEABLE] += 1
    return None


def tcp_header_length(segment: TcpSegment) -> int:
    """The encoded TCP header length: 20 plus the options padded to a 4-byte boundary."""
    return 20 + ((options_length(segment.options) + 3) & ~3)


def is_syn_only(flags: TcpFlags) -> bool:
    """SYN without ACK, FIN or RST: the only segment that may create a connection (DPVS tcp_conn_sched)."""
    return bool(flags & TcpFlags.SYN) and not flags & (TcpFlags.ACK | TcpFlags.FIN | TcpFlags.RST)


def address_in(address: str, networks: tuple[ipaddress.IPv4Network, ...]) -> bool:
    """Whether an IPv4 address lies in any of the networks."""
    ip = ipaddress.IPv4Address(address)
    return any(ip in net for net in networks)
