"""tools.bench_conn: the in-process connection benchmark completes its workload both ways."""

from __future__ import annotations

import pytest

from tools.bench_conn import measure
from tools.bench_conn_engine import phases, segment_kind
from utcp.wire.packet import F_ACK, F_FIN, F_RST, F_SYN


@pytest.mark.parametrize("side", ["server", "pool", "pool-cork", "client"])
def test_bench_conn_runs_the_workload(side: str) -> None:
    utcp_us, peer_us = measure(side, 50)
    assert utcp_us > 0
    assert peer_us > 0


def test_engine_phases_price_each_packet_the_server_receives_and_each_call() -> None:
    costs = phases(50)
    # the request/response exchange: SYN, third ACK, the request, the client's FIN (acking ours)
    assert {"receive SYN", "receive ACK", "receive data", "receive FIN"} <= set(costs)
    assert {"accept", "read", "send", "close", "datagrams_to_send", "next_deadline", "events"} <= set(costs)
    assert all(us > 0 for us in costs.values()), costs


def test_segment_kind_names_the_flags_and_data() -> None:
    syn_ack = bytes(32) + bytes([0x80, F_SYN | F_ACK]) + bytes(18)  # IPv4 20 + TCP 32 (data offset 8)
    assert segment_kind(syn_ack) == "SYN"
    fin_with_data = bytes(32) + bytes([0x50, F_FIN | F_ACK]) + bytes(6) + b"y"  # TCP 20, 1 byte
    assert segment_kind(fin_with_data) == "FIN+data"
    assert segment_kind(bytes(32) + bytes([0x50, F_ACK]) + bytes(6)) == "ACK"
    assert segment_kind(bytes(32) + bytes([0x50, F_RST]) + bytes(6)) == "RST"
