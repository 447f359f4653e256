"""Packet builders and checks shared by the middlebox tests."""

from __future__ import annotations

from utcp.middlebox import Emit
from utcp.wire.codec import build_ipv4, parse_ipv4
from utcp.wire.packet import IPv4Packet, TcpFlags, TcpOption, TcpSegment

S = TcpFlags.SYN
A = TcpFlags.ACK
F = TcpFlags.FIN
R = TcpFlags.RST
P = TcpFlags.PSH
SA = S | A
PA = P | A
FA = F | A
RA = R | A

CLIENT = "198.18.0.1"
CLIENT2 = "198.18.0.2"
VIP = "198.18.0.100"
LIP = "198.19.0.1"
LIP2 = "198.19.0.3"
RS = "198.19.0.2"
RS2 = "198.19.0.4"


def tcp(  # noqa: PLR0917 - golden tests read best with positional header fields
    src: str,
    sport: int,
    dst: str,
    dport: int,
    flags: TcpFlags,
    seq: int = 0,
    ack: int = 0,
    *,
    options: tuple[TcpOption, ...] = (),
    payload: bytes = b"",
    window: int = 64240,
    ident: int = 0,
    ttl: int = 64,
) -> IPv4Packet:
    """An IPv4/TCP packet with the fields a test cares about."""
    return IPv4Packet(
        src=src,
        dst=dst,
        ident=ident,
        ttl=ttl,
        payload=TcpSegment(
            src_port=sport,
            dst_port=dport,
            seq=seq,
            ack=ack,
            flags=flags,
            window=window,
            options=options,
            payload=payload,
        ),
    )


def on_wire(packet: IPv4Packet) -> IPv4Packet:
    """The packet encoded, checksums verified on the way back, and unchanged by the trip."""
    again = parse_ipv4(build_ipv4(packet), verify_checksums=True)
    assert again == packet
    return again


def only(emits: list[Emit]) -> Emit:
    """The single output of a call (asserting there is exactly one); it must survive the wire."""
    assert len(emits) == 1, emits
    on_wire(emits[0].packet)
    return emits[0]
