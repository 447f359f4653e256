"""The conntrack table: DPVS state transitions, timeouts on virtual time, lookups, the listing."""

from __future__ import annotations

import pytest

from tests.middlebox.packets import CLIENT, LIP, RS, VIP, A, F, R, S
from utcp.middlebox import (
    DPVS_TCP_TIMEOUTS,
    NF_CONNTRACK_TCP_TIMEOUTS,
    ConnTrack,
    FlowDir,
    FlowTuple,
    TcpConnState,
    TupleClash,
)
from utcp.middlebox.conntrack import next_tcp_state, tcp_state_index
from utcp.wire.packet import TcpFlags

ORIG = FlowTuple(CLIENT, 40000, VIP, 80)
REPLY = FlowTuple(RS, 8080, LIP, 5000)
OR, RP = FlowDir.ORIGINAL, FlowDir.REPLY
St = TcpConnState


def table() -> ConnTrack[str]:
    return ConnTrack(DPVS_TCP_TIMEOUTS)


def test_dpvs_default_timeouts_are_the_published_values() -> None:
    # DPVS src/ipvs/ip_vs_proto_tcp.c tcp_timeouts[].
    assert DPVS_TCP_TIMEOUTS[St.ESTABLISHED] == 90
    assert DPVS_TCP_TIMEOUTS[St.SYN_RECV] == 30
    assert DPVS_TCP_TIMEOUTS[St.SYN_SENT] == 3
    assert DPVS_TCP_TIMEOUTS[St.FIN_WAIT] == 7
    assert DPVS_TCP_TIMEOUTS[St.TIME_WAIT] == 7
    assert DPVS_TCP_TIMEOUTS[St.CLOSE] == 3
    assert DPVS_TCP_TIMEOUTS[St.NONE] == 2
    assert NF_CONNTRACK_TCP_TIMEOUTS[St.ESTABLISHED] == 432000


def test_state_index_prefers_rst_then_syn_then_fin_then_ack() -> None:
    assert tcp_state_index(R | A | S) == 3
    assert tcp_state_index(S | A) == 0
    assert tcp_state_index(F | A) == 1
    assert tcp_state_index(A) == 2
    assert tcp_state_index(TcpFlags.PSH) is None


@pytest.mark.parametrize(
    ("state", "direction", "flags", "expected"),
    [
        (St.NONE, OR, S, St.SYN_RECV),  # client SYN
        (St.SYN_RECV, RP, S | A, St.SYN_RECV),  # SYN-ACK from the RS
        (St.SYN_RECV, OR, A, St.ESTABLISHED),  # third ACK
        (St.ESTABLISHED, OR, F | A, St.CLOSE_WAIT),  # client closes first
        (St.CLOSE_WAIT, RP, F | A, St.TIME_WAIT),
        (St.ESTABLISHED, RP, F | A, St.FIN_WAIT),  # RS closes first
        (St.FIN_WAIT, OR, F | A, St.TIME_WAIT),
        (St.ESTABLISHED, OR, R, St.CLOSE),
        (St.SYN_RECV, OR, R, St.SYN_RECV),  # INPUT rst in sSR stays sSR
        (St.TIME_WAIT, OR, S, St.SYN_RECV),  # a new SYN re-opens
        (St.NONE, RP, S | A, St.SYN_SENT),
        (St.NONE, OR, A, St.CLOSE),
        (St.ESTABLISHED, OR, TcpFlags.PSH, St.CLOSE),  # no RST/SYN/FIN/ACK: DPVS default CLOSE
    ],
)
def test_transitions_follow_the_dpvs_table(
    state: TcpConnState, direction: FlowDir, flags: TcpFlags, expected: TcpConnState
) -> None:
    assert next_tcp_state(state, direction, flags) is expected


def test_lookup_by_either_tuple_tells_the_direction() -> None:
    ct = table()
    entry = ct.add(ORIG, REPLY, "x", now=0.0)
    assert ct.lookup(ORIG) == (entry, OR)
    assert ct.lookup(REPLY) == (entry, RP)
    assert ct.lookup(ORIG.reversed()) is None
    assert ct.tuple_in_use(REPLY)
    assert len(ct) == 1


def test_adding_a_tracked_tuple_clashes_unless_replacing() -> None:
    ct = table()
    first = ct.add(ORIG, REPLY, "first", now=0.0)
    with pytest.raises(TupleClash):
        ct.add(FlowTuple(CLIENT, 40001, VIP, 80), REPLY, "second", now=0.0)
    second = ct.add(FlowTuple(CLIENT, 40001, VIP, 80), REPLY, "second", now=0.0, replace=True)
    assert ct.lookup(REPLY) == (second, RP)
    assert ct.lookup(ORIG) is None  # the older entry went entirely
    assert ct.entries() == [second]
    assert first not in ct.entries()


def test_handshake_then_idle_expiry_on_virtual_time() -> None:
    ct = table()
    entry = ct.add(ORIG, REPLY, "x", now=0.0)
    assert ct.update(entry, OR, S, now=0.0) is St.SYN_RECV
    assert ct.next_deadline() == 30.0
    assert ct.update(entry, RP, S | A, now=0.5) is St.SYN_RECV
    assert ct.update(entry, OR, A, now=1.0) is St.ESTABLISHED
    assert entry.assured
    assert ct.next_deadline() == 91.0
    ct.update(entry, OR, A, now=50.0)  # every packet re-arms the timer
    assert ct.next_deadline() == 140.0
    assert ct.expire(139.999) == []
    assert ct.expire(140.0) == [entry]
    assert ct.lookup(ORIG) is None and ct.lookup(REPLY) is None
    assert ct.next_deadline() is None


def test_expire_returns_entries_earliest_first() -> None:
    ct = table()
    late = ct.add(ORIG, REPLY, "late", now=0.0)
    ct.update(late, OR, S, now=0.0)  # 30 s
    early = ct.add(FlowTuple(CLIENT, 1, VIP, 80), FlowTuple(RS, 8080, LIP, 5001), "early", now=0.0)
    ct.update(early, OR, R, now=0.0)  # CLOSE: 3 s
    assert ct.next_deadline() == 3.0
    assert ct.expire(100.0) == [early, late]


def test_assured_needs_a_reply() -> None:
    ct = table()
    entry = ct.add(ORIG, REPLY, "x", now=0.0)
    ct.update(entry, RP, S | A, now=0.0)  # NONE -> SYN_SENT via the OUTPUT row
    ct.update(entry, OR, A, now=0.0)
    assert entry.state is St.SYN_SENT and not entry.assured
    other = ct.add(FlowTuple(CLIENT, 2, VIP, 80), FlowTuple(RS, 8080, LIP, 5002), "y", now=0.0)
    ct.update(other, OR, S, now=0.0)
    ct.update(other, OR, A, now=0.0)  # established without ever hearing the other side
    assert other.state is St.ESTABLISHED and not other.assured


def test_listing_looks_like_conntrack_dash_l() -> None:
    ct = ConnTrack[str](NF_CONNTRACK_TCP_TIMEOUTS)
    entry = ct.add(ORIG, REPLY, "x", now=0.0)
    ct.update(entry, OR, S, now=0.0)
    assert ct.format_entries(now=0.5) == (
        "tcp      6 119 SYN_RECV src=198.18.0.1 dst=198.18.0.100 sport=40000 dport=80 [UNREPLIED] "
        "src=198.19.0.2 dst=198.19.0.1 sport=8080 dport=5000"
    )
    ct.update(entry, RP, S | A, now=1.0)
    ct.update(entry, OR, A, now=1.0)
    assert ct.format_entries(now=1.5) == (
        "tcp      6 431999 ESTABLISHED src=198.18.0.1 dst=198.18.0.100 sport=40000 dport=80 "
        "src=198.19.0.2 dst=198.19.0.1 sport=8080 dport=5000 [ASSURED]"
    )


def test_a_timeout_table_must_cover_every_state() -> None:
    with pytest.raises(ValueError, match="timeouts missing"):
        ConnTrack({St.ESTABLISHED: 1.0})


def test_a_busy_flow_keeps_one_timer_item() -> None:
    ct = table()
    entry = ct.add(ORIG, REPLY, "x", now=0.0)
    for i in range(1000):
        ct.update(entry, OR, A, now=i * 0.01)
    assert len(ct._heap) <= 2  # the NONE-state item and the live one, not one per packet
    assert ct.next_deadline() == pytest.approx(9.99 + 3)  # ack from NONE: CLOSE, 3 s
    assert len(ct._heap) == 1


def test_a_timer_moved_earlier_wins() -> None:
    ct = table()
    entry = ct.add(ORIG, REPLY, "x", now=0.0)
    ct.update(entry, OR, S, now=0.0)  # 30 s
    ct.set_timeout(entry, 1.0, now=0.5)
    assert ct.next_deadline() == 1.5
    assert ct.expire(1.5) == [entry]
    assert ct.expire(100.0) == []
