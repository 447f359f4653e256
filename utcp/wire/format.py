"""tcpdump-style one-line summaries (absolute sequence numbers, as `tcpdump -S`).

    198.18.0.2.40000 > 198.18.0.1.80: Flags [S.], seq 1, ack 2, win 65535,
        options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0

(one line). Field rules follow tcpdump's print-tcp.c: `seq` is printed when there is payload
(`seq first:last+1`) or SYN, FIN or RST is set; `ack` only with the ACK flag; `urg` only with
URG. When the options end off a 4-byte boundary the line ends them with `eol`, the first
byte of the zero padding, as tcpdump shows it. Options not in tcpdump's vocabulary:
`toa ADDR:PORT` (IPv6: `toa [ADDR]:PORT`), `unknown-KIND 0xHEX`, and `eol 0xHEX` for an EOL
followed by non-padding bytes (tcpdump prints just `eol` there).
"""

from __future__ import annotations

from utcp.wire.packet import (
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
    options_length,
)

# tcpdump's tcp_flag_values, in its order.
_FLAG_LETTERS = (
    (TcpFlags.FIN, "F"),
    (TcpFlags.SYN, "S"),
    (TcpFlags.RST, "R"),
    (TcpFlags.PSH, "P"),
    (TcpFlags.ACK, "."),
    (TcpFlags.URG, "U"),
    (TcpFlags.ECE, "E"),
    (TcpFlags.CWR, "W"),
)


def format_flags(flags: TcpFlags) -> str:
    """`S.`, `P.`, `.`, `R`, ...; `none` when no flag is set (as tcpdump)."""
    letters = "".join(letter for flag, letter in _FLAG_LETTERS if flags & flag)
    return letters or "none"


def format_option(opt: TcpOption) -> str:
    match opt:
        case Eol():
            return "eol"
        case Nop():
            return "nop"
        case Mss(value=value):
            return f"mss {value}"
        case WindowScale(shift=shift):
            return f"wscale {shift}"
        case SackPermitted():
            return "sackOK"
        case Sack(blocks=blocks):
            return f"sack {len(blocks)} " + "".join(f"{{{left}:{right}}}" for left, right in blocks)
        case Timestamps(tsval=tsval, tsecr=tsecr):
            return f"TS val {tsval} ecr {tsecr}"
        case Toa(port=port, address=address):
            return f"toa {address}:{port}"
        case ToaV6(port=port, address=address):
            return f"toa [{address}]:{port}"
        case UnknownOption(kind=kind, data=data):
            name = "eol" if kind == 0 else f"unknown-{kind}"
            return f"{name} 0x{bytes(data).hex()}" if data else name
    raise TypeError(f"not a TCP option: {opt!r}")


def _needs_padding(options: tuple[TcpOption, ...]) -> bool:
    """Whether the builder pads these options with zeros (an EOL byte first) on the wire."""
    last = options[-1]
    if isinstance(last, Eol) or (isinstance(last, UnknownOption) and last.kind == 0):
        return False
    return options_length(options) % 4 != 0


def format_segment(seg: TcpSegment, src: str, dst: str) -> str:
    """One line for a TCP segment sent from `src` to `dst`."""
    length = len(seg.payload)
    flags = seg.flags
    parts = [f"{src}.{seg.src_port} > {dst}.{seg.dst_port}: Flags [{format_flags(flags)}]"]
    if length:
        parts.append(f"seq {seg.seq}:{(seg.seq + length) & 0xFFFFFFFF}")
    elif flags & (TcpFlags.SYN | TcpFlags.FIN | TcpFlags.RST):
        parts.append(f"seq {seg.seq}")
    if flags & TcpFlags.ACK:
        parts.append(f"ack {seg.ack}")
    parts.append(f"win {seg.window}")
    if flags & TcpFlags.URG:
        parts.append(f"urg {seg.urgent}")
    if seg.options:
        names = [format_option(opt) for opt in seg.options]
        if _needs_padding(seg.options):
            names.append("eol")  # the zero padding's first byte, as tcpdump shows it on the wire
        parts.append("options [" + ",".join(names) + "]")
    parts.append(f"length {length}")
    return ", ".join(parts)


def format_packet(pkt: IPv4Packet) -> str:
    """One line for a packet: the TCP summary, or `src > dst: ip-proto-N length L` otherwise."""
    if isinstance(pkt.payload, TcpSegment):
        return format_segment(pkt.payload, pkt.src, pkt.dst)
    line = f"{pkt.src} > {pkt.dst}: ip-proto-{pkt.protocol} length {len(pkt.payload)}"
    if pkt.more_fragments or pkt.fragment_offset:
        line += f", frag id {pkt.ident} offset {pkt.fragment_offset * 8}{'+' if pkt.more_fragments else ''}"
    return line
