"""The rule-driven impairment box: exact output order on virtual time."""

from __future__ import annotations

import pytest

from tests.middlebox.packets import CLIENT, FA, PA, RS, SA, A, R, S, tcp
from utcp.middlebox import Delay, Direction, Drop, Duplicate, Emit, HoldUntil, ImpairBox, Match, Reorder, Rule
from utcp.wire.packet import IPv4Packet, TcpFlags

TO_S, TO_C = Direction.TO_SERVER, Direction.TO_CLIENT


def c2s(flags: TcpFlags, seq: int, ack: int = 0, payload: bytes = b"") -> IPv4Packet:
    return tcp(CLIENT, 40000, RS, 80, flags, seq, ack, payload=payload)


def s2c(flags: TcpFlags, seq: int, ack: int = 0) -> IPv4Packet:
    return tcp(RS, 80, CLIENT, 40000, flags, seq, ack)


def packets(emits: list[Emit]) -> list[IPv4Packet]:
    return [e.packet for e in emits]


def test_drop_the_first_syn_only() -> None:
    box = ImpairBox([Rule(Match(flags=S), Drop(), nth=1, name="first-syn")])
    syn = c2s(S, 100)
    assert box.process(syn, TO_S, 0.0) == []
    assert box.process(syn, TO_S, 1.0) == [Emit(syn, TO_S)]  # the retransmission passes
    assert box.process(syn, TO_S, 3.0) == [Emit(syn, TO_S)]
    assert dict(box.rule_stats["first-syn"]) == {"matched": 3, "dropped": 1}
    assert box.stats["forwarded"] == 2


def test_nth_can_name_several_matches() -> None:
    box = ImpairBox([Rule(Match(flags=S), Drop(), nth=(1, 3))])
    syn = c2s(S, 100)
    assert [len(box.process(syn, TO_S, float(t))) for t in range(4)] == [0, 1, 0, 1]


def test_delay_releases_on_the_timer_or_before_a_later_packet() -> None:
    box = ImpairBox([Rule(Match(direction=TO_C), Delay(0.25))])
    synack = s2c(SA, 7, 101)
    assert box.process(synack, TO_C, 1.0) == []
    assert box.next_deadline() == 1.25
    assert box.on_timer(1.2) == []
    assert box.on_timer(1.25) == [Emit(synack, TO_C)]
    assert box.next_deadline() is None
    # A delayed packet already due leaves before the packet whose arrival reveals it.
    box.process(synack, TO_C, 2.0)
    ack = c2s(A, 101, 8)
    assert box.process(ack, TO_S, 3.0) == [Emit(synack, TO_C), Emit(ack, TO_S)]


def test_delayed_packets_due_together_keep_arrival_order() -> None:
    box = ImpairBox([Rule(Match(flags_set=PA), Delay(0.5)), Rule(Match(flags=A), Delay(0.3))])
    data = c2s(PA, 1, 1, b"x")
    ack = c2s(A, 2, 1)
    box.process(data, TO_S, 0.0)  # due 0.5
    box.process(ack, TO_S, 0.2)  # due 0.5 as well
    assert packets(box.on_timer(0.5)) == [data, ack]


def test_zero_delay_passes_at_once() -> None:
    box = ImpairBox([Rule(Match(), Delay(0.0))])
    syn = c2s(S, 1)
    assert box.process(syn, TO_S, 0.0) == [Emit(syn, TO_S)]


def test_duplicate_sends_extra_copies_back_to_back() -> None:
    box = ImpairBox([Rule(Match(has_payload=True), Duplicate(copies=2), name="dup")])
    data = c2s(PA, 1, 1, b"hello")
    assert box.process(data, TO_S, 0.0) == [Emit(data, TO_S)] * 3
    ack = c2s(A, 6, 1)
    assert box.process(ack, TO_S, 0.1) == [Emit(ack, TO_S)]
    assert box.rule_stats["dup"]["duplicated"] == 2


def test_reorder_releases_after_k_later_packets_of_the_same_direction() -> None:
    box = ImpairBox([Rule(Match(flags_set=PA), Reorder(after=2), nth=1)])
    p1, p2, p3 = (c2s(PA, 1 + 10 * i, 1, b"d" * 10) for i in range(3))
    assert box.process(p1, TO_S, 0.0) == []
    assert box.process(s2c(A, 1, 1), TO_C, 0.01) == [Emit(s2c(A, 1, 1), TO_C)]  # other way: not counted
    assert packets(box.process(p2, TO_S, 0.02)) == [p2]
    assert packets(box.process(p3, TO_S, 0.03)) == [p3, p1]
    assert box.held() == []


def test_hold_the_third_ack_until_the_rst_has_passed() -> None:
    # SCENARIOS.md B: a kernel client's SO_LINGER-0 RST must reach the server before its third ACK.
    rule = Rule(
        Match(direction=TO_S, flags=A),
        HoldUntil(release=Match(direction=TO_S, flags_set=R)),
        nth=1,
        name="ack-behind-rst",
    )
    box = ImpairBox([rule])
    syn, synack, ack, rst = c2s(S, 100), s2c(SA, 7, 101), c2s(A, 101, 8), c2s(R, 101)
    out: list[Emit] = []
    out += box.process(syn, TO_S, 0.000)
    out += box.process(synack, TO_C, 0.001)
    out += box.process(ack, TO_S, 0.002)
    assert box.held() == [(ack, TO_S)]
    out += box.process(rst, TO_S, 0.003)
    assert out == [Emit(syn, TO_S), Emit(synack, TO_C), Emit(rst, TO_S), Emit(ack, TO_S)]
    assert dict(box.rule_stats["ack-behind-rst"]) == {"matched": 1, "held": 1, "released": 1}
    later_ack = c2s(A, 101, 8)
    assert box.process(later_ack, TO_S, 0.004) == [Emit(later_ack, TO_S)]  # nth=1: only the first


def test_a_hold_lets_go_after_max_hold() -> None:
    box = ImpairBox([Rule(Match(flags=A), HoldUntil(Match(flags_set=R), max_hold=0.5), name="h")])
    ack = c2s(A, 1, 1)
    box.process(ack, TO_S, 1.0)
    assert box.next_deadline() == 1.5
    assert box.on_timer(1.5) == [Emit(ack, TO_S)]
    assert box.rule_stats["h"]["released_on_timeout"] == 1


def test_released_packets_can_release_others_and_are_not_matched_again() -> None:
    rules = [
        Rule(Match(flags=A), HoldUntil(Match(flags_set=TcpFlags.FIN)), name="ack"),
        Rule(Match(flags=FA), HoldUntil(Match(flags_set=R)), name="fin"),
    ]
    box = ImpairBox(rules)
    ack, fin, rst = c2s(A, 1, 1), c2s(FA, 1, 1), c2s(R, 2)
    assert box.process(ack, TO_S, 0.0) == []
    assert box.process(fin, TO_S, 0.1) == []
    # The RST releases the FIN, whose passing releases the ACK.
    assert packets(box.process(rst, TO_S, 0.2)) == [rst, fin, ack]


def test_predicate_and_first_acting_rule_wins() -> None:
    rules = [
        Rule(Match(predicate=lambda p: p.tcp.seq == 42), Drop(), name="seq42"),
        Rule(Match(flags_set=S), Duplicate(), name="syns"),
    ]
    box = ImpairBox(rules)
    assert box.process(c2s(S, 42), TO_S, 0.0) == []
    assert len(box.process(c2s(S, 43), TO_S, 0.0)) == 2
    assert box.rule_stats["syns"]["matched"] == 1  # the dropped SYN never reached the second rule


def test_unparseable_bytes_are_counted_and_dropped() -> None:
    box = ImpairBox([])
    assert box.process(b"\x00" * 3, TO_S, 0.0) == []
    assert box.stats["dropped_unparseable"] == 1


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="1-based"):
        Rule(Match(), Drop(), nth=0)
    with pytest.raises(ValueError, match="copies"):
        Rule(Match(), Duplicate(0))
    with pytest.raises(ValueError, match="unique"):
        ImpairBox([Rule(Match(), Drop(), name="x"), Rule(Match(), Drop(), name="x")])
