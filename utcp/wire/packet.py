"""Typed values for IPv4 packets and TCP segments.

These frozen dataclasses are what every layer above `utcp.wire` sees; construct stays
inside the wire layer. Addresses are dotted-quad strings (IPv6 TOA: RFC 5952 text).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar


class TcpFlags(enum.IntFlag):
    """TCP header flags (RFC 9293 section 3.1, RFC 3168 for ECE/CWR)."""

    NONE = 0
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


# The same bits as plain ints, for per-segment code: IntFlag operators go through the enum machinery
# (~10x slower than int ones).
F_FIN = 0x01
F_SYN = 0x02
F_RST = 0x04
F_PSH = 0x08
F_ACK = 0x10


@dataclass(frozen=True, slots=True)
class Eol:
    """End of option list (kind 0)."""


@dataclass(frozen=True, slots=True)
class Nop:
    """No-operation (kind 1)."""


@dataclass(frozen=True, slots=True)
class Mss:
    """Maximum segment size (kind 2, RFC 9293 section 3.7.1)."""

    value: int


@dataclass(frozen=True, slots=True)
class WindowScale:
    """Window scale shift count (kind 3, RFC 7323 section 2)."""

    shift: int


@dataclass(frozen=True, slots=True)
class SackPermitted:
    """SACK permitted (kind 4, RFC 2018 section 2)."""


@dataclass(frozen=True, slots=True)
class Sack:
    """SACK blocks (kind 5, RFC 2018 section 3): (left edge, right edge) pairs."""

    blocks: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Timestamps:
    """Timestamps (kind 8, RFC 7323 section 3)."""

    tsval: int
    tsecr: int


@dataclass(frozen=True, slots=True)
class Toa:
    """TCP Option Address (kind 254, length 8): client port then client IPv4 (LVS FullNAT)."""

    port: int
    address: str


@dataclass(frozen=True, slots=True)
class ToaV6:
    """IPv6 TOA (kind 254, length 20): client port then client IPv6 address."""

    port: int
    address: str


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """Any other option, kept verbatim so a rewritten packet keeps it."""

    kind: int
    data: bytes


TcpOption: TypeAlias = (
    Eol | Nop | Mss | WindowScale | SackPermitted | Sack | Timestamps | Toa | ToaV6 | UnknownOption
)
OptionT = TypeVar(
    "OptionT", Eol, Nop, Mss, WindowScale, SackPermitted, Sack, Timestamps, Toa, ToaV6, UnknownOption
)


def option_length(option: TcpOption) -> int:
    """Bytes one option takes on the wire (kind and length bytes included)."""
    match option:
        case Eol() | Nop():
            return 1
        case Mss():
            return 4
        case WindowScale():
            return 3
        case SackPermitted():
            return 2
        case Sack(blocks=blocks):
            return 2 + 8 * len(blocks)
        case Timestamps():
            return 10
        case Toa():
            return 8
        case ToaV6():
            return 20
        case UnknownOption(kind=kind, data=data):
            # kind 0 is an EOL written with its trailing bytes verbatim (utcp.wire.codec)
            return (1 if kind == 0 else 2) + len(data)
    raise TypeError(f"not a TCP option: {option!r}")


def options_length(options: tuple[TcpOption, ...]) -> int:
    """Bytes the options take on the wire before padding to a 4-byte boundary."""
    return sum(option_length(opt) for opt in options)


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """A TCP segment: header fields, options in wire order, payload."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int
    options: tuple[TcpOption, ...] = ()
    payload: bytes = b""
    urgent: int = 0

    def option(self, kind: type[OptionT]) -> OptionT | None:
        """The first option of the given type, or None."""
        for opt in self.options:
            if type(opt) is kind:
                return opt
        return None

    @property
    def seg_len(self) -> int:
        """Sequence space consumed: payload plus one for SYN and one for FIN (RFC 9293 3.4)."""
        flags = self.flags
        return len(self.payload) + (1 if flags & TcpFlags.SYN else 0) + (1 if flags & TcpFlags.FIN else 0)


IPPROTO_TCP = 6


@dataclass(frozen=True, slots=True)
class IPv4Packet:
    """An IPv4 packet. `payload` is a TcpSegment when protocol is TCP and it parsed, else raw bytes."""

    src: str
    dst: str
    payload: TcpSegment | bytes
    protocol: int = IPPROTO_TCP
    ttl: int = 64
    ident: int = 0
    tos: int = 0
    dont_fragment: bool = True
    more_fragments: bool = False
    fragment_offset: int = 0
    options: bytes = field(default=b"")

    @property
    def tcp(self) -> TcpSegment:
        """The TCP segment; raises TypeError when the payload is not one."""
        if not isinstance(self.payload, TcpSegment):
            raise TypeError("packet payload is not a TCP segment")
        return self.payload
