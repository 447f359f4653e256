"""tcpdump-style one-liners: exact strings, and tcpdump itself as the oracle when installed."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.wire.strategies import option_length, options_length
from utcp.wire import (
    Eol,
    IPv4Packet,
    Mss,
    Nop,
    PcapWriter,
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
    build_ipv4,
    format_packet,
    format_segment,
)

SRC = "198.18.0.2"
DST = "198.18.0.1"
PREFIX = f"{SRC}.40000 > {DST}.80: "


def tcp(**fields: Any) -> IPv4Packet:
    base: dict[str, Any] = {
        "src_port": 40000,
        "dst_port": 80,
        "seq": 1,
        "ack": 2,
        "flags": TcpFlags.ACK,
        "window": 502,
    }
    base.update(fields)
    return IPv4Packet(SRC, DST, TcpSegment(**base))


SYN_OPTIONS = (Mss(1460), SackPermitted(), Timestamps(1, 0), Nop(), WindowScale(7))

CASES = [
    (
        tcp(flags=TcpFlags.SYN, ack=0, window=65535, options=SYN_OPTIONS),
        "Flags [S], seq 1, win 65535, options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0",
    ),
    (
        tcp(flags=TcpFlags.SYN | TcpFlags.ACK, window=65535, options=SYN_OPTIONS),
        "Flags [S.], seq 1, ack 2, win 65535,"
        " options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0",
    ),
    (tcp(ack=5, payload=b"x" * 100), "Flags [.], seq 1:101, ack 5, win 502, length 100"),
    (
        tcp(flags=TcpFlags.PSH | TcpFlags.ACK, ack=5, payload=b"x" * 100),
        "Flags [P.], seq 1:101, ack 5, win 502, length 100",
    ),
    (tcp(), "Flags [.], ack 2, win 502, length 0"),
    (tcp(flags=TcpFlags.FIN | TcpFlags.ACK, seq=101), "Flags [F.], seq 101, ack 2, win 502, length 0"),
    (
        tcp(flags=TcpFlags.FIN | TcpFlags.PSH | TcpFlags.ACK, payload=b"bye"),
        "Flags [FP.], seq 1:4, ack 2, win 502, length 3",
    ),
    (tcp(flags=TcpFlags.RST, seq=7, ack=0, window=0), "Flags [R], seq 7, win 0, length 0"),
    (
        tcp(flags=TcpFlags.RST | TcpFlags.ACK, seq=0, ack=8, window=0),
        "Flags [R.], seq 0, ack 8, win 0, length 0",
    ),
    (tcp(flags=TcpFlags.NONE), "Flags [none], win 502, length 0"),
    (
        tcp(flags=TcpFlags.SYN | TcpFlags.ECE | TcpFlags.CWR | TcpFlags.URG, urgent=5),
        "Flags [SUEW], seq 1, win 502, urg 5, length 0",
    ),
    (
        tcp(options=(Nop(), Nop(), Timestamps(5, 6), Nop(), Nop(), Sack(((100, 200),)))),
        "Flags [.], ack 2, win 502, options [nop,nop,TS val 5 ecr 6,nop,nop,sack 1 {100:200}], length 0",
    ),
    (
        tcp(options=(Nop(), Nop(), Sack(((100, 200), (300, 400))))),
        "Flags [.], ack 2, win 502, options [nop,nop,sack 2 {100:200}{300:400}], length 0",
    ),
    (
        tcp(options=(Toa(40000, "198.18.0.9"),)),
        "Flags [.], ack 2, win 502, options [toa 198.18.0.9:40000], length 0",
    ),
    (
        tcp(options=(ToaV6(40000, "2001:db8::9"),)),
        "Flags [.], ack 2, win 502, options [toa [2001:db8::9]:40000], length 0",
    ),
    (
        tcp(options=(UnknownOption(30, bytes.fromhex("deadbeef")), UnknownOption(253, b""), Nop(), Eol())),
        "Flags [.], ack 2, win 502, options [unknown-30 0xdeadbeef,unknown-253,nop,eol], length 0",
    ),
    (
        tcp(options=(Mss(1460), UnknownOption(0, b"\x01\x02\x03"))),
        "Flags [.], ack 2, win 502, options [mss 1460,eol 0x010203], length 0",
    ),
    (tcp(seq=0xFFFFFFFF, payload=b"ab"), "Flags [.], seq 4294967295:1, ack 2, win 502, length 2"),
    (
        tcp(options=(Mss(1460), WindowScale(7))),
        "Flags [.], ack 2, win 502, options [mss 1460,wscale 7,eol], length 0",
    ),
]


@pytest.mark.parametrize(("packet", "expected"), CASES, ids=[c[1][:30] for c in CASES])
def test_tcp_lines(packet: IPv4Packet, expected: str) -> None:
    assert format_packet(packet) == PREFIX + expected
    assert format_segment(packet.tcp, SRC, DST) == PREFIX + expected


def test_non_tcp_and_fragments() -> None:
    assert (
        format_packet(IPv4Packet(SRC, DST, b"12345678", protocol=17))
        == f"{SRC} > {DST}: ip-proto-17 length 8"
    )
    first = IPv4Packet(SRC, DST, b"x" * 24, more_fragments=True, ident=5)
    assert format_packet(first) == f"{SRC} > {DST}: ip-proto-6 length 24, frag id 5 offset 0+"
    last = IPv4Packet(SRC, DST, b"x" * 8, fragment_offset=3, ident=5)
    assert format_packet(last) == f"{SRC} > {DST}: ip-proto-6 length 8, frag id 5 offset 24"


# --- tcpdump as the oracle ------------------------------------------------------------------------


def random_option(rng: random.Random) -> TcpOption:
    choice = rng.randrange(6)
    if choice == 0:
        return Nop()
    if choice == 1:
        return Mss(rng.randrange(1 << 16))
    if choice == 2:
        return WindowScale(rng.randrange(256))
    if choice == 3:
        return SackPermitted()
    if choice == 4:
        return Sack(tuple((rng.randrange(1 << 32), rng.randrange(1 << 32)) for _ in range(rng.randint(1, 4))))
    return Timestamps(rng.randrange(1 << 32), rng.randrange(1 << 32))


def random_packet(rng: random.Random) -> IPv4Packet:
    options: list[TcpOption] = []
    for _ in range(rng.randrange(8)):
        opt = random_option(rng)
        if options_length(options) + option_length(opt) <= 40:
            options.append(opt)
    segment = TcpSegment(
        src_port=rng.randrange(40000, 41000),  # no port tcpdump would decode a protocol on
        dst_port=rng.randrange(41000, 42000),
        seq=rng.randrange(1 << 32),
        ack=rng.randrange(1 << 32),
        flags=TcpFlags(rng.randrange(256)),
        window=rng.randrange(1 << 16),
        options=tuple(options),
        payload=rng.randbytes(rng.choice([0, 0, 1, 20])),
        urgent=rng.randrange(1 << 16),
    )
    return IPv4Packet(SRC, DST, segment)


def has_toa_or_unknown(packet: IPv4Packet) -> bool:
    return any(isinstance(o, Toa | ToaV6 | UnknownOption) for o in packet.tcp.options)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_lines_match_tcpdump(tmp_path: Path) -> None:
    rng = random.Random(20240601)
    packets = [random_packet(rng) for _ in range(400)]
    packets += [packet for packet, _ in CASES if not has_toa_or_unknown(packet)]
    capture = tmp_path / "format.pcap"
    with capture.open("wb") as f:
        writer = PcapWriter(f)
        for i, packet in enumerate(packets):
            writer.write(build_ipv4(packet), float(i))
    result = subprocess.run(
        ["tcpdump", "-S", "-nn", "-t", "-r", str(capture)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == len(packets)
    for line, packet in zip(lines, packets, strict=True):
        ours = format_packet(packet)
        # tcpdump prefixes "IP " and may append its reading of the payload after the length.
        theirs = line.removeprefix("IP ")
        assert theirs == ours or theirs.startswith(ours + ":"), (theirs, ours)
