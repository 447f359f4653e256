"""Scenario C (self-connect, simultaneous open): every cell against its SCENARIOS.md expectation, plus the
trace readers on hand-made traces (so a wrong trace is known to produce a diff)."""

from __future__ import annotations

from pathlib import Path

import pytest

from interop import scenario_c
from interop.model import Cell, compare
from interop.scenario_c import SCENARIO, DelayLine, relative, self_connect_facts, simultaneous_open_facts
from tests.interop.ce_support import find, run_cell
from utcp.middlebox.base import Direction
from utcp.wire.codec import build_ipv4, parse_ipv4
from utcp.wire.packet import IPv4Packet, Sack, TcpFlags, TcpSegment

S, SA, AK = TcpFlags.SYN, TcpFlags.SYN | TcpFlags.ACK, TcpFlags.ACK
CELLS = SCENARIO.cells()
SIM = [c for c in CELLS if c.backend == "sim"]
NETNS = [c for c in CELLS if c.backend == "netns"]


def test_the_matrix_has_every_role_assignment() -> None:
    assignments = {(c.case, c.assignment) for c in CELLS}
    assert assignments == {
        ("self-connect", "host=kernel"),
        ("self-connect", "host=utcp [linux]"),
        ("self-connect", "host=utcp [linux] (sim)"),
        ("simultaneous-open", "a=kernel b=kernel"),
        ("simultaneous-open", "a=kernel b=utcp [linux]"),
        ("simultaneous-open", "a=utcp b=kernel [linux]"),
        ("simultaneous-open", "a=utcp b=utcp [linux]"),
        ("simultaneous-open", "a=utcp b=utcp [linux] (sim)"),
    }
    assert len({c.id for c in CELLS}) == len(CELLS)
    # the same SCENARIOS.md facts for the kernel and for utcp
    for case in ("self-connect", "simultaneous-open"):
        assert len({tuple(sorted(c.expected.items())) for c in CELLS if c.case == case}) == 1


async def test_sim_cells_match_their_expectations(tmp_path: Path) -> None:
    for cell in SIM:
        observation, diff, ctx = await run_cell(SCENARIO, cell, tmp_path)
        assert diff == [], (cell.id, observation.values, observation.notes)
        assert ctx.packets, "the ladder needs the packets"
        assert set(ctx.labels.values()) >= ({"host"} if cell.case == "self-connect" else {"a", "b"})


async def test_sim_self_connect_trace_shows_one_isn(tmp_path: Path) -> None:
    cell = find(SIM, "self-connect", "host=utcp [linux] (sim)")
    observation, _, ctx = await run_cell(SCENARIO, cell, tmp_path)
    syn, synack = (p for _, p, _ in _parsed(ctx.packets)[:2])
    assert (syn.tcp.flags, synack.tcp.flags) == (S, SA)
    assert synack.tcp.seq == syn.tcp.seq and synack.tcp.ack == syn.tcp.seq + 1
    assert observation.values["states"] == ["ESTAB"]


async def test_a_wrong_expectation_gives_a_diff(tmp_path: Path) -> None:
    cell = find(SIM, "simultaneous-open", "a=utcp b=utcp [linux] (sim)").with_expected(handshake="S S. .")
    _, diff, _ = await run_cell(SCENARIO, cell, tmp_path)
    assert diff == ["handshake: expected 'S S. .', observed 'S S S. S.'"]


@pytest.mark.parametrize("cell", NETNS, ids=[c.id for c in NETNS])
async def test_netns_cells_match_their_expectations(privileged: None, cell: Cell, tmp_path: Path) -> None:
    observation, diff, ctx = await run_cell(SCENARIO, cell, tmp_path)
    assert diff == [], (cell.id, observation.values, observation.notes)
    assert ctx.packets


# -- the trace readers on hand-made traces -----------------------------------------------------------------

ME = "198.18.0.9"


def _seg(flags: TcpFlags, seq: int, ack: int, *options: Sack, sport: int = 7, dport: int = 7) -> IPv4Packet:
    return IPv4Packet(ME, ME, TcpSegment(sport, dport, seq, ack, flags, 1000, tuple(options)))


def _parsed(packets: list[tuple[str, bytes, float | None]]) -> list[tuple[str, IPv4Packet, float | None]]:
    return [(link, parse_ipv4(raw), t) for link, raw, t in packets]


def test_relative_sequence_numbers_wrap() -> None:
    assert relative(5, 5) == "X"
    assert relative(0, 0xFFFFFFFF) == "X+1"
    assert relative(3, 5) == "X-2"


def test_self_connect_facts_of_a_kernel_like_capture() -> None:
    x = 0xFFFFFFFF  # the ISN at the wrap: X+1 is 0
    trace = [_seg(S, x, 0), _seg(SA, x, 0), _seg(AK, 0, 0, Sack(((x, 0),)))]
    facts = self_connect_facts(trace, ME, 7)
    assert facts == {"handshake": "S S. .", "synack": "seq X ack X+1", "ack_sack": "{X:X+1}"}
    assert compare({k: scenario_c.SELF_CONNECTED[k] for k in facts}, facts) == []


def test_self_connect_facts_tell_two_sockets_from_one() -> None:
    # what a second socket answering would look like: a SYN-ACK with its own ISN, an ACK without D-SACK
    trace = [_seg(S, 100, 0), _seg(SA, 900, 101), _seg(AK, 101, 901)]
    facts = self_connect_facts(trace, ME, 7)
    assert facts == {"handshake": "S S. .", "synack": "seq X+800 ack X+1", "ack_sack": "none"}
    expected = {k: scenario_c.SELF_CONNECTED[k] for k in facts}
    assert compare(expected, facts) == [
        "synack: expected 'seq X ack X+1', observed 'seq X+800 ack X+1'",
        "ack_sack: expected '{X:X+1}', observed 'none'",
    ]


def test_a_three_way_handshake_is_not_a_simultaneous_open() -> None:
    trace = [_seg(S, 100, 0, sport=7, dport=8), _seg(SA, 900, 101, sport=8, dport=7), _seg(AK, 101, 901)]
    assert simultaneous_open_facts(trace)["handshake"] == "S S."
    crossing = [
        _seg(S, 100, 0, sport=7, dport=8),
        _seg(S, 900, 0, sport=8, dport=7),
        _seg(SA, 100, 901, sport=7, dport=8),
        _seg(SA, 900, 101, sport=8, dport=7),
        _seg(AK, 101, 901, Sack(((900, 901),)), sport=7, dport=8),
    ]
    assert simultaneous_open_facts(crossing) == {"handshake": "S S S. S.", "dsack_acks": 1}


def test_delay_line_holds_packets_in_order_and_drops_garbage() -> None:
    box = DelayLine(0.1)
    first, second = _seg(S, 1, 0), _seg(S, 2, 0)
    assert box.process(build_ipv4(first), Direction.TO_SERVER, 1.0) == []
    assert box.process(second, Direction.TO_CLIENT, 1.05) == []
    assert box.process(b"\x45junk", Direction.TO_SERVER, 1.06) == []
    assert box.next_deadline() == pytest.approx(1.1)
    assert box.on_timer(1.09) == []
    out = box.on_timer(1.2)
    assert [(e.packet.tcp.seq, e.direction) for e in out] == [
        (1, Direction.TO_SERVER),
        (2, Direction.TO_CLIENT),
    ]
    assert box.next_deadline() is None
    assert box.stats["dropped_unparseable"] == 1
