"""Microbenchmark of the wire layer: fast path vs the construct reference.

Prints microseconds per operation (best of 7 runs) for a 52-byte ACK and a 1500-byte data
segment, both carrying NOP,NOP,TS, and for the checksum alone.
Run: .venv/bin/python tools/bench_wire.py [--number N]
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from utcp.wire import (
    IPv4Packet,
    Nop,
    TcpFlags,
    TcpSegment,
    Timestamps,
    build_ipv4,
    build_ipv4_reference,
    internet_checksum,
    parse_ipv4,
    parse_ipv4_reference,
)


def sample_packet() -> IPv4Packet:
    segment = TcpSegment(
        src_port=40000,
        dst_port=80,
        seq=123456789,
        ack=987654321,
        flags=TcpFlags.ACK | TcpFlags.PSH,
        window=502,
        options=(Nop(), Nop(), Timestamps(1000, 2000)),
        payload=bytes(range(256)) * 5 + bytes(1448 - 1280),
    )
    return IPv4Packet(src="198.18.0.2", dst="198.18.0.1", payload=segment)


def per_op_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="calls per timing run of the fast path")
    args = parser.parse_args()
    number: int = args.number
    slow = max(number // 50, 20)

    packet = sample_packet()
    data = build_ipv4(packet)
    assert len(data) == 1500, len(data)
    assert build_ipv4_reference(packet) == data
    assert parse_ipv4(data) == parse_ipv4_reference(data) == packet
    view = memoryview(data)

    ack = IPv4Packet(
        src="198.18.0.2",
        dst="198.18.0.1",
        payload=TcpSegment(40000, 80, 1, 2, TcpFlags.ACK, 502, (Nop(), Nop(), Timestamps(1000, 2000))),
    )
    ack_data = build_ipv4(ack)

    rows = [
        ("parse_ipv4 52-byte ACK (verify)", per_op_us(lambda: parse_ipv4(ack_data), number)),
        ("build_ipv4 52-byte ACK", per_op_us(lambda: build_ipv4(ack), number)),
        ("parse_ipv4 1500 bytes (verify)", per_op_us(lambda: parse_ipv4(data), number)),
        ("parse_ipv4 (memoryview, verify)", per_op_us(lambda: parse_ipv4(view), number)),
        ("parse_ipv4 (no verify)", per_op_us(lambda: parse_ipv4(data, verify_checksums=False), number)),
        ("parse_ipv4_reference (verify)", per_op_us(lambda: parse_ipv4_reference(data), slow)),
        ("build_ipv4", per_op_us(lambda: build_ipv4(packet), number)),
        ("build_ipv4_reference", per_op_us(lambda: build_ipv4_reference(packet), slow)),
        ("internet_checksum (1480 bytes)", per_op_us(lambda: internet_checksum(data[20:]), number)),
    ]
    print(f"TCP/IPv4 with options NOP,NOP,TS: a 52-byte ACK and a 1500-byte segment ({len(data)} bytes)")
    for name, us in rows:
        print(f"  {name:34s} {us:9.2f} us/op")


if __name__ == "__main__":
    main()
