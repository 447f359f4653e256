"""utcp.io.gso.coalesce: which runs of segments become one super-segment, and what it carries; and
coalesce_wire, the same on encoded packets."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from utcp.io.gso import coalesce, coalesce_wire
from utcp.wire import IPv4Packet, Nop, TcpFlags, TcpSegment, Timestamps
from utcp.wire.codec import build_ipv4, parse_ipv4

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


# -- coalesce_wire: the same runs on encoded packets, byte for byte ------------------------------------
_VARIATIONS = (
    "continue",
    "short",
    "psh",
    "fin",
    "pure_ack",
    "seq_gap",
    "ident_gap",
    "ttl",
    "tos",
    "no_df",
    "fragment",
    "window",
    "ack",
    "options",
    "port",
    "address",
    "ip_options",
    "not_tcp",
)


@st.composite
def engine_like_runs(draw: st.DrawFn) -> list[IPv4Packet]:
    """Packets as a sender writes them, mostly runs of one flow's segments, each step possibly changing
    one field GRO's rules look at (so runs both form and break everywhere)."""
    mss = draw(st.integers(1, 300))
    seq, ident = draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 0xFFFF))
    out: list[IPv4Packet] = []
    for step in draw(st.lists(st.sampled_from(("continue",) * 6 + _VARIATIONS), max_size=14)):
        payload = bytes([len(out) & 0xFF]) * (
            draw(st.integers(1, mss - 1)) if step == "short" and mss > 1 else mss
        )
        flags = {"psh": ACK | PSH, "fin": ACK | TcpFlags.FIN}.get(step, ACK)
        if step == "pure_ack":
            payload = b""
        seg = TcpSegment(
            40001 if step == "port" else 40000,
            80,
            (seq + (7 if step == "seq_gap" else 0)) & 0xFFFFFFFF,
            8 if step == "ack" else 7,
            flags,
            5 if step == "window" else 100,
            OPTS if step != "options" else (Nop(), Nop(), Timestamps(11, 20)),
            payload,
        )
        packet = IPv4Packet(
            "198.18.0.9" if step == "address" else "198.18.0.2",
            "198.18.0.1",
            b"bytes" if step in ("not_tcp", "fragment") else seg,
            protocol=17 if step == "not_tcp" else 6,
            ttl=63 if step == "ttl" else 64,
            ident=(ident + (5 if step == "ident_gap" else 0)) & 0xFFFF,
            tos=8 if step == "tos" else 0,
            dont_fragment=step != "no_df",
            more_fragments=step == "fragment",
            options=b"\x01\x01\x01\x00" if step == "ip_options" else b"",
        )
        out.append(packet)
        seq = (seq + len(payload)) & 0xFFFFFFFF
        ident = (ident + 1) & 0xFFFF
    return out


@settings(max_examples=400)
@given(engine_like_runs())
def test_coalesce_wire_is_coalesce_on_bytes(packets: list[IPv4Packet]) -> None:
    by_value = [(build_ipv4(packet), gso_size) for packet, gso_size in coalesce(packets)]
    assert list(coalesce_wire([build_ipv4(packet) for packet in packets])) == by_value


def test_coalesce_wire_merges_a_run_into_a_packet_whose_checksums_verify() -> None:
    packets = run(5, last=40)
    ((merged, gso_size),) = list(coalesce_wire([build_ipv4(p) for p in packets]))
    assert gso_size == 100
    parsed = parse_ipv4(merged)  # verifies both checksums
    assert parsed.tcp.payload == b"".join(p.tcp.payload for p in packets)
    assert parsed.tcp.flags == ACK | PSH and parsed.tcp.seq == 1000
