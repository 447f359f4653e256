"""construct schemas for IPv4, TCP and TCP options: the declared, readable reference.

Every validation the wire layer performs appears here as a `Rule`, next to the field it
guards, with the message it raises. The fast path in `utcp.wire.codec` re-implements these
schemas with precompiled `struct.Struct`s; tests/wire check that both agree byte for byte,
value for value and message for message.

Parse-time parameters (construct `_params`): `available`, the bytes the header may use;
`area_len`, the size of the TCP option area.

Nothing here is imported by the other layers: they see the dataclasses of `utcp.wire.packet`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from construct import Adapter as _Adapter
from construct import (
    Array,
    BitsInteger,
    BitStruct,
    Bytes,
    Computed,
    Const,
    Construct,
    Flag,
    GreedyBytes,
    If,
    Int8ub,
    Int16ub,
    Int32ub,
    Nibble,
    Pass,
    RawCopy,
    Rebuild,
    RepeatUntil,
    Struct,
    Switch,
    Tell,
    this,
)

from utcp.wire.checksum import internet_checksum
from utcp.wire.errors import ChecksumError, EncodeError, WireError

Context = Any  # a construct Container
Message = Callable[[Context], str]

KIND_EOL = 0
KIND_NOP = 1
KIND_MSS = 2
KIND_WINDOW_SCALE = 3
KIND_SACK_PERMITTED = 4
KIND_SACK = 5
KIND_TIMESTAMPS = 8
KIND_TOA = 254  # LVS FullNAT "TCP Option Address"; shares the RFC 4727 experimental kind

TOA_LENGTH = 8
TOA_V6_LENGTH = 20

OPTION_NAMES = {
    KIND_EOL: "eol",
    KIND_NOP: "nop",
    KIND_MSS: "mss",
    KIND_WINDOW_SCALE: "wscale",
    KIND_SACK_PERMITTED: "sack-permitted",
    KIND_SACK: "sack",
    KIND_TIMESTAMPS: "timestamps",
    KIND_TOA: "toa",
}

IPV4_MIN_HEADER = 20
TCP_MIN_HEADER = 20
MAX_OPTION_AREA = 40  # 4-bit header-length fields: 15 words = 60 bytes, minus the fixed 20


def option_name(kind: int) -> str:
    return OPTION_NAMES.get(kind, "unknown")


class Rule(Construct):  # type: ignore[misc]
    """A validation step that reads and writes nothing.

    When `predicate(context)` is false it raises `error(message(context))` while parsing
    (a peer sent bad bytes) and `EncodeError` while building (the caller gave a value that
    cannot be encoded). `parse_only` rules check things that only exist in received bytes.
    """

    def __init__(
        self,
        predicate: Callable[[Context], bool],
        message: Message,
        error: type[WireError] = WireError,
        *,
        parse_only: bool = False,
    ) -> None:
        super().__init__()
        self.predicate = predicate
        self.message = message
        self.error = error
        self.parse_only = parse_only
        self.flagbuildnone = True

    def _parse(self, stream: Any, context: Context, path: str) -> None:
        if not self.predicate(context):
            raise self.error(self.message(context))

    def _build(self, obj: Any, stream: Any, context: Context, path: str) -> None:
        if not self.parse_only and not self.predicate(context):
            raise EncodeError(self.message(context))

    def _sizeof(self, context: Context, path: str) -> int:
        return 0


class _IPv4Address(_Adapter):  # type: ignore[misc]
    """4 bytes <-> dotted quad."""

    def _decode(self, obj: bytes, context: Context, path: str) -> str:
        return socket.inet_ntoa(obj)

    def _encode(self, obj: str, context: Context, path: str) -> bytes:
        try:
            return socket.inet_pton(socket.AF_INET, obj)
        except (OSError, TypeError) as exc:
            raise EncodeError(f"invalid IPv4 address {obj!r}") from exc


class _IPv6Address(_Adapter):  # type: ignore[misc]
    """16 bytes <-> RFC 5952 text (as the C library's inet_ntop writes it)."""

    def _decode(self, obj: bytes, context: Context, path: str) -> str:
        return socket.inet_ntop(socket.AF_INET6, obj)

    def _encode(self, obj: str, context: Context, path: str) -> bytes:
        try:
            return socket.inet_pton(socket.AF_INET6, obj)
        except (OSError, TypeError) as exc:
            raise EncodeError(f"invalid IPv6 address {obj!r}") from exc


IPv4Address = _IPv4Address(Bytes(4))
IPv6Address = _IPv6Address(Bytes(16))


# --- IPv4 (RFC 791 section 3.1); checks in the order of Linux ip_rcv_core() -------------------

IPV4_HEADER = Struct(
    Rule(
        lambda c: c._params.available >= IPV4_MIN_HEADER,
        lambda c: f"ipv4 header truncated: {c._params.available} bytes < {IPV4_MIN_HEADER}",
        parse_only=True,
    ),
    "version_ihl"
    / BitStruct(
        "version" / Nibble,
        "ihl" / Rebuild(Nibble, lambda c: 5 + len(c._.options) // 4),
    ),
    # ip_rcv_core: "if (iph->ihl < 5 || iph->version != 4) goto inhdr_error"
    Rule(lambda c: c.version_ihl.version == 4, lambda c: f"ipv4.version {c.version_ihl.version} != 4"),
    Rule(lambda c: c.version_ihl.ihl >= 5, lambda c: f"ipv4.ihl {c.version_ihl.ihl} < 5"),
    # ip_rcv_core: pskb_may_pull(skb, iph->ihl*4)
    Rule(
        lambda c: c.version_ihl.ihl * 4 <= c._params.available,
        lambda c: (
            f"ipv4.ihl {c.version_ihl.ihl} ({c.version_ihl.ihl * 4} bytes)"
            f" > {c._params.available} bytes available"
        ),
        parse_only=True,
    ),
    "tos" / Int8ub,
    "total_length" / Int16ub,
    "ident" / Int16ub,
    "fragment"
    / BitStruct(
        # RFC 791 says "must be zero"; Linux ignores it on receive and so do we (it is dropped).
        "reserved" / Flag,
        "dont_fragment" / Flag,
        "more_fragments" / Flag,
        "offset" / BitsInteger(13),
    ),
    "ttl" / Int8ub,
    "protocol" / Int8ub,
    "checksum" / Int16ub,
    "src" / IPv4Address,
    "dst" / IPv4Address,
    # Options are kept verbatim (not interpreted): the packet carries them as raw bytes.
    "options" / Bytes((this.version_ihl.ihl - 5) * 4),
)


def ipv4_checksum_message(header: bytes) -> str:
    """Message for a header whose checksum does not verify (shared by both parse paths)."""
    found = int.from_bytes(header[10:12], "big")
    expected = internet_checksum(header[:10] + b"\x00\x00" + header[12:])
    return f"ipv4.checksum 0x{found:04x} invalid (expected 0x{expected:04x})"


def _header_len(c: Context) -> int:
    return int(c.header.value.version_ihl.ihl) * 4


# Parse-only (building goes through IPV4_HEADER); params: available, verify_checksums.
IPV4_PACKET = Struct(
    "header" / RawCopy(IPV4_HEADER),
    # ip_rcv_core: "if (unlikely(ip_fast_csum((u8 *)iph, iph->ihl))) goto csum_error"
    Rule(
        lambda c: not c._params.verify_checksums or internet_checksum(c.header.data) == 0,
        lambda c: ipv4_checksum_message(c.header.data),
        ChecksumError,
        parse_only=True,
    ),
    # ip_rcv_core: "if (skb->len < len) goto drop; else if (len < (iph->ihl*4)) goto inhdr_error"
    Rule(
        lambda c: c.header.value.total_length <= c._params.available,
        lambda c: f"ipv4.total_length {c.header.value.total_length} > {c._params.available} bytes available",
        parse_only=True,
    ),
    Rule(
        lambda c: c.header.value.total_length >= _header_len(c),
        lambda c: f"ipv4.total_length {c.header.value.total_length} < header length {_header_len(c)}",
        parse_only=True,
    ),
    # Bytes past total_length are link-layer padding; ip_rcv_core trims them (pskb_trim_rcsum).
    "payload" / Bytes(lambda c: c.header.value.total_length - _header_len(c)),
)


# --- TCP (RFC 9293 section 3.1); checks in the order of Linux tcp_v4_rcv() --------------------

TCP_HEADER = Struct(
    # tcp_v4_rcv: pskb_may_pull(skb, sizeof(struct tcphdr))
    Rule(
        lambda c: c._params.available >= TCP_MIN_HEADER,
        lambda c: f"tcp header truncated: {c._params.available} bytes < {TCP_MIN_HEADER}",
        parse_only=True,
    ),
    "src_port" / Int16ub,
    "dst_port" / Int16ub,
    "seq" / Int32ub,
    "ack" / Int32ub,
    "offset_flags"
    / BitStruct(
        "data_offset" / Rebuild(Nibble, lambda c: 5 + len(c._.options) // 4),
        # RFC 9293 3.1: reserved bits "must be ignored in received segments"; they are dropped.
        "reserved" / BitsInteger(4),
        "flags" / BitsInteger(8),
    ),
    # tcp_v4_rcv: "if (unlikely(th->doff < sizeof(struct tcphdr) / 4)) goto bad_packet"
    Rule(
        lambda c: c.offset_flags.data_offset >= 5,
        lambda c: f"tcp.data_offset {c.offset_flags.data_offset} < 5",
    ),
    # tcp_v4_rcv: pskb_may_pull(skb, th->doff * 4)
    Rule(
        lambda c: c.offset_flags.data_offset * 4 <= c._params.available,
        lambda c: (
            f"tcp.data_offset {c.offset_flags.data_offset} ({c.offset_flags.data_offset * 4} bytes)"
            f" > {c._params.available} bytes in segment"
        ),
        parse_only=True,
    ),
    "window" / Int16ub,
    "checksum" / Int16ub,
    "urgent" / Int16ub,
    # The option area, parsed by TCP_OPTIONS once the checksum verified.
    "options" / Bytes((this.offset_flags.data_offset - 5) * 4),
)

# RFC 9293 section 3.1: the checksum also covers this 96-bit pseudo-header.
PSEUDO_HEADER = Struct(
    "src" / IPv4Address,
    "dst" / IPv4Address,
    "zero" / Const(b"\x00"),
    "protocol" / Int8ub,
    "length" / Int16ub,
)


def tcp_checksum_message(pseudo_sum_bytes: bytes, segment: bytes) -> str:
    """Message for a segment whose checksum does not verify (shared by both parse paths)."""
    found = int.from_bytes(segment[16:18], "big")
    expected = internet_checksum(pseudo_sum_bytes + segment[:16] + b"\x00\x00" + segment[18:])
    return f"tcp.checksum 0x{found:04x} invalid (expected 0x{expected:04x})"


# Parse-only; params: available, verify_checksums, pseudo (PSEUDO_HEADER bytes), segment (raw).
TCP_SEGMENT = Struct(
    "header" / TCP_HEADER,
    "payload" / GreedyBytes,
    # tcp_v4_rcv -> tcp_v4_checksum_init: verified before any option is looked at.
    Rule(
        lambda c: (
            not c._params.verify_checksums or internet_checksum(c._params.pseudo + c._params.segment) == 0
        ),
        lambda c: tcp_checksum_message(c._params.pseudo, c._params.segment),
        ChecksumError,
        parse_only=True,
    ),
)


# --- TCP options (RFC 9293 3.2, RFC 7323, RFC 2018, LVS TOA) ----------------------------------
#
# Linux tcp_parse_options() silently stops at a malformed option; utcp rejects the segment
# with a message instead, so a bad option is counted and visible rather than half-parsed.


def _kind_label(c: Context) -> str:
    kind = int(c._.kind)
    return f"tcp option {kind} ({option_name(kind)})"


def _tlv(length: Callable[[Context], int], *fields: Any, checks: tuple[Rule, ...] = ()) -> Any:
    """Kind-length-value framing shared by every option except EOL and NOP."""
    return Struct(
        "length_at" / Tell,
        Rule(
            lambda c: c.length_at < c._params.area_len,
            lambda c: f"{_kind_label(c)} truncated: no length byte",
            parse_only=True,
        ),
        "length" / Rebuild(Int8ub, length),
        # tcp_parse_options: "if (opsize < 2) return; /* "silly options" */"
        Rule(lambda c: c.length >= 2, lambda c: f"{_kind_label(c)} length {c.length} < 2"),
        *checks,
        # tcp_parse_options: "if (opsize > length) return; /* don't parse partial options */"
        Rule(
            lambda c: c.length_at - 1 + c.length <= c._params.area_len,
            lambda c: (
                f"{_kind_label(c)} length {c.length} > {c._params.area_len - c.length_at + 1}"
                " bytes left in header"
            ),
            parse_only=True,
        ),
        *fields,
    )


def _exact_length(expected: int) -> tuple[Rule, ...]:
    return (
        Rule(
            lambda c: c.length == expected,
            lambda c: f"{_kind_label(c)} length {c.length} != {expected}",
        ),
    )


def _toa_length(c: Context) -> int:
    value = c.value
    if isinstance(value, bytes | bytearray):
        return 2 + len(value)
    return TOA_V6_LENGTH if value["family"] == 6 else TOA_LENGTH


TCP_OPTION = Struct(
    "kind" / Int8ub,
    "body"
    / Switch(
        this.kind,
        {
            KIND_EOL: Pass,
            KIND_NOP: Pass,
            # RFC 9293 3.2 / tcp_parse_options: "opsize == TCPOLEN_MSS"
            KIND_MSS: _tlv(lambda c: 4, "value" / Int16ub, checks=_exact_length(4)),
            # RFC 7323 2.2
            KIND_WINDOW_SCALE: _tlv(lambda c: 3, "shift" / Int8ub, checks=_exact_length(3)),
            # RFC 2018 2
            KIND_SACK_PERMITTED: _tlv(lambda c: 2, checks=_exact_length(2)),
            # RFC 2018 3; tcp_parse_options: "opsize >= (TCPOLEN_SACK_BASE + TCPOLEN_SACK_PERBLOCK)
            # && !((opsize - TCPOLEN_SACK_BASE) % TCPOLEN_SACK_PERBLOCK)"
            KIND_SACK: _tlv(
                lambda c: 2 + 8 * len(c.blocks),
                "blocks" / Array((this.length - 2) // 8, Struct("left" / Int32ub, "right" / Int32ub)),
                checks=(
                    Rule(
                        lambda c: c.length >= 10 and (c.length - 2) % 8 == 0,
                        lambda c: f"{_kind_label(c)} length {c.length} is not 2+8n with n >= 1",
                    ),
                ),
            ),
            # RFC 7323 3.2
            KIND_TIMESTAMPS: _tlv(
                lambda c: 10, "tsval" / Int32ub, "tsecr" / Int32ub, checks=_exact_length(10)
            ),
            # TOA: length 8 = port + IPv4, length 20 = port + IPv6; any other length is
            # some other kind-254 option and is kept verbatim.
            KIND_TOA: _tlv(
                _toa_length,
                "value"
                / Switch(
                    this.length,
                    {
                        TOA_LENGTH: Struct("family" / Computed(4), "port" / Int16ub, "address" / IPv4Address),
                        TOA_V6_LENGTH: Struct(
                            "family" / Computed(6), "port" / Int16ub, "address" / IPv6Address
                        ),
                    },
                    default=Bytes(this.length - 2),
                ),
            ),
        },
        # Any other kind: kept verbatim.
        default=_tlv(lambda c: 2 + len(c.data), "data" / Bytes(this.length - 2)),
    ),
    "end" / Tell,
)

# Any kind >= 2 written verbatim: how the builders encode UnknownOption.
TCP_OPTION_VERBATIM = Struct(
    "kind" / Int8ub,
    "body" / _tlv(lambda c: 2 + len(c.data), "data" / Bytes(this.length - 2)),
)

# Parse-only (the builder encodes TCP_OPTION by TCP_OPTION, see codec); param: area_len.
TCP_OPTIONS = Struct(
    "options"
    / If(
        lambda c: c._params.area_len > 0,
        RepeatUntil(
            lambda obj, lst, c: obj.kind == KIND_EOL or obj.end >= c._params.area_len,
            TCP_OPTION,
        ),
    ),
    # Whatever follows an EOL; see eol_tail_kind().
    "after_eol" / GreedyBytes,
)


def round_up4(n: int) -> int:
    return (n + 3) & ~3


def eol_tail_kind(area_len: int, eol_at: int, tail: bytes) -> str:
    """How an EOL at `eol_at` in an option area of `area_len` bytes, followed by `tail`, is kept.

    - "padding": the EOL and the zeros after it are exactly the zero padding the builder adds
      after the preceding options (up to the next 4-byte boundary); they leave no trace.
    - "eol": an `Eol()` ends the list; the zeros after it are the builder's padding.
    - "trailer": anything else (non-zero bytes after the EOL, or more zero words than padding
      needs): `UnknownOption(kind=0, data=tail)`, which the builder writes back as one EOL byte
      followed by `tail` verbatim, so a rewriting middlebox never loses or adds a byte.
    """
    if tail.count(0) == len(tail):
        if area_len == round_up4(eol_at):
            return "padding"
        if area_len == round_up4(eol_at + 1):
            return "eol"
    return "trailer"
