"""TCP option lists as Linux writes them (tcp_options_write), and what a SYN offered."""

from __future__ import annotations

from dataclasses import dataclass

from utcp.wire.packet import Mss, Nop, Sack, SackPermitted, TcpOption, TcpSegment, Timestamps, WindowScale

__all__ = [
    "NOP",
    "TCP_MSS_DEFAULT",
    "SynOptions",
    "parse_syn_options",
    "sack_options",
    "syn_options",
    "timestamp_options",
]

NOP = Nop()
SACK_PERMITTED = SackPermitted()
TCP_MSS_DEFAULT = 536  # RFC 9293 3.7.1: assumed when a SYN carries no MSS option
MAX_WSCALE = 14  # RFC 7323 2.3


@dataclass(frozen=True, slots=True)
class SynOptions:
    """What a SYN or SYN-ACK offered."""

    mss: int | None
    wscale: int | None
    sack_permitted: bool
    tsval: int | None
    tsecr: int


def parse_syn_options(seg: TcpSegment) -> SynOptions:
    """Read the options a SYN offers (the first of each kind wins, like Linux tcp_parse_options)."""
    mss: int | None = None
    ws: int | None = None
    sack = False
    tsval: int | None = None
    tsecr = 0
    for opt in seg.options:
        if isinstance(opt, Mss):
            if mss is None:
                mss = opt.value
        elif isinstance(opt, WindowScale):
            if ws is None:
                # RFC 7323 2.3: a shift above 14 is used as 14 (Linux logs and clamps)
                ws = MAX_WSCALE if opt.shift > MAX_WSCALE else opt.shift
        elif isinstance(opt, SackPermitted):
            sack = True
        elif isinstance(opt, Timestamps) and tsval is None:
            tsval = opt.tsval
            tsecr = opt.tsecr
    return SynOptions(mss, ws, sack, tsval, tsecr)


def syn_options(
    mss: int, sack: bool, timestamps: tuple[int, int] | None, wscale: int | None
) -> tuple[TcpOption, ...]:
    """Linux tcp_options_write() order for SYN and SYN-ACK: MSS, then SACK_PERM+TS packed together, or
    NOP NOP TS, or NOP NOP SACK_PERM, then NOP WS."""
    opts: list[TcpOption] = [Mss(mss)]
    if timestamps is not None:
        if sack:
            opts += [SACK_PERMITTED, Timestamps(*timestamps)]
        else:
            opts += [NOP, NOP, Timestamps(*timestamps)]
    elif sack:
        opts += [NOP, NOP, SACK_PERMITTED]
    if wscale is not None:
        opts += [NOP, WindowScale(wscale)]
    return tuple(opts)


def timestamp_options(tsval: int, tsecr: int) -> tuple[TcpOption, ...]:
    """NOP NOP TS, as on every non-SYN segment of a connection using timestamps (RFC 7323 appendix A)."""
    return (NOP, NOP, Timestamps(tsval, tsecr))


def sack_options(blocks: list[tuple[int, int]]) -> tuple[TcpOption, ...]:
    """NOP NOP SACK(blocks) (RFC 2018 3; Linux pads to a 4-byte boundary with two NOPs)."""
    return (NOP, NOP, Sack(tuple(blocks)))
