"""utcp.io.gso.coalesce: which runs of segments become one super-segment, and what it carries."""

from __future__ import annotations

import dataclasses

from utcp.io.gso import coalesce
from utcp.wire import IPv4Packet, Nop, TcpFlags, TcpSegment, Timestamps

ACK, PSH = TcpFlags.ACK, TcpFlags.PSH
OPTS = (Nop(), Nop(), Timestamps(10, 20))


def seg_packet(
    seq: int, payload: bytes, flags: TcpFlags = ACK, ident: int = 0, **changes: object
) -> IPv4Packet:
    seg = TcpSegment(40000, 80, seq, 7, flags, 100, OPTS, payload)
    seg = dataclasses.replace(seg, **changes)  # type: ignore[arg-type]
    return IPv4Packet("198.18.0.2", "198.18.0.1", seg, ident=ident)


def run(n: int, mss: int = 100, last: int = 100, start_seq: int = 1000) -> list[IPv4Packet]:
    out = []
    for i in range(n):
        size = last if i == n - 1 else mss
        flags = ACK | PSH if i == n - 1 else ACK
        out.append(seg_packet(start_seq + i * mss, bytes([i]) * size, flags, ident=i))
    return out


def test_a_run_becomes_one_super_segment_with_the_segment_size() -> None:
    packets = run(5, last=40)
    ((merged, gso_size),) = list(coalesce(packets))
    assert gso_size == 100
    assert merged.tcp.seq == 1000 and merged.ident == 0
    assert merged.tcp.flags == ACK | PSH  # the last segment's flags
    assert merged.tcp.payload == b"".join(p.tcp.payload for p in packets)


def test_non_contiguous_or_different_segments_are_not_merged() -> None:
    a, b, c = run(3)
    gap = dataclasses.replace(b, payload=dataclasses.replace(b.tcp, seq=b.tcp.seq + 1))
    assert [g for _, g in coalesce([a, gap, c])] == [0, 0, 0]
    other_window = dataclasses.replace(b, payload=dataclasses.replace(b.tcp, window=5))
    assert [g for _, g in coalesce([a, other_window])] == [0, 0]
    small_first = seg_packet(1000, b"x" * 50, ident=0)  # a later segment may not exceed the first
    assert [g for _, g in coalesce([small_first, seg_packet(1050, b"y" * 100, ident=1)])] == [0, 0]
    not_next_id = seg_packet(1100, b"z" * 100, ident=9)
    assert [g for _, g in coalesce([a, not_next_id])] == [0, 0]


def test_psh_ends_a_run_and_pure_acks_pass_through() -> None:
    first = run(2)  # the second carries PSH
    pure_ack = seg_packet(1200, b"", ident=2)
    out = list(coalesce([*first, pure_ack, *run(2, start_seq=5000)]))
    assert [g for _, g in out] == [100, 0, 100]
    assert out[1][0] == pure_ack


def test_single_packets_come_out_unchanged() -> None:
    (only,) = run(1)
    assert list(coalesce([only])) == [(only, 0)]
