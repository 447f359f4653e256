"""Scenario A (FullNAT + TOA crossing): every cell against its SCENARIOS.md expectation, through the matrix
runner, plus the capture reader on hand-made traces (so a wrong trace is known to produce a diff)."""

from __future__ import annotations

from pathlib import Path

from interop import scenario_a
from interop.model import compare
from interop.runner import run_cells
from interop.scenario_a import (
    CPORT,
    KEEPS_RETRANSMITTING,
    RSPORT,
    SCENARIO,
    VIP,
    VPORT,
    crossing_facts,
)
from tests.interop.ce_support import find, run_cell
from utcp.wire.codec import parse_ipv4
from utcp.wire.packet import IPv4Packet, TcpFlags, TcpSegment

CELLS = SCENARIO.cells()
SIM = [c for c in CELLS if c.backend == "sim"]
NETNS = [c for c in CELLS if c.backend == "netns"]
CLIENT, RS = "198.18.1.1", "198.18.2.1"
A, PA, R, S = TcpFlags.ACK, TcpFlags.PSH | TcpFlags.ACK, TcpFlags.RST, TcpFlags.SYN


def test_the_matrix_has_every_role_assignment() -> None:
    got = {(c.case, c.assignment) for c in CELLS}
    want = {
        (case, f"client={client} lb=utcp rs={rs}" + (" [linux]" if "utcp" in (client, rs) else ""))
        for case in ("rewrite", "getpeername")
        for client in ("kernel", "utcp")
        for rs in ("kernel", "utcp")
    } | {(case, "client=utcp lb=utcp rs=utcp [linux] (sim)") for case in ("rewrite", "getpeername")}
    assert got == want
    assert len({c.id for c in CELLS}) == len(CELLS) == 10
    for cell in CELLS:  # the expectation is the case's, whoever plays the roles
        assert cell.expected == dict(scenario_a.EXPECTED[cell.case])
    assert {c.expected["outcome"] for c in CELLS if c.case == "rewrite"} == {"crossing"}
    assert {c.expected["outcome"] for c in CELLS if c.case == "getpeername"} == {"no crossing"}


async def test_sim_cells_match_their_expectations(tmp_path: Path) -> None:
    for cell in SIM:
        observation, diff, ctx = await run_cell(SCENARIO, cell, tmp_path)
        assert diff == [], (cell.id, observation.values, observation.notes)
        assert ctx.packets and {"client", "rs", "vip"} <= set(ctx.labels.values())


async def test_sim_rewrite_shows_the_field_reports_rsts_from_the_vip(tmp_path: Path) -> None:
    cell = find(SIM, "rewrite", "client=utcp lb=utcp rs=utcp [linux] (sim)")
    observation, _, ctx = await run_cell(SCENARIO, cell, tmp_path)
    packets = [parse_ipv4(raw) for _, raw, _ in ctx.packets]
    from_vip = [p for p in packets if p.src == VIP and p.tcp.flags & R]
    # What the client acknowledged on the direct connection: the RS's next sequence number there.
    direct_rs_seqs = {
        p.tcp.ack for p in packets if (p.dst, p.tcp.dst_port, p.tcp.src_port) == (RS, RSPORT, CPORT)
    }
    # RSTs from VIP:3306 to client:61902 carrying the direct connection's sequence numbers.
    assert from_vip and all(p.tcp.seq in direct_rs_seqs and p.tcp.dst_port == CPORT for p in from_vip)
    assert any("seq" in line and "[R]" in line for line in observation.notes)


async def test_a_wrong_expectation_gives_a_diff(tmp_path: Path) -> None:
    cell = find(SIM, "getpeername", "client=utcp lb=utcp rs=utcp [linux] (sim)").with_expected(
        outcome="crossing"
    )
    _, diff, _ = await run_cell(SCENARIO, cell, tmp_path)
    assert diff == ["outcome: expected 'crossing', observed 'no crossing'"]


async def test_netns_cells_through_the_matrix_runner(privileged: None, tmp_path: Path) -> None:
    results = await run_cells(NETNS, tmp_path, jobs=4, scenarios=[SCENARIO])
    failures = [(r.cell.id, r.error, r.mismatches, r.notes) for r in results if not r.passed]
    assert failures == []
    for result in results:
        assert result.pcaps and all((tmp_path / p).stat().st_size > 24 for p in result.pcaps)
        assert any(p.src == "client" and p.dst == "vip" for p in result.trace)


# -- the capture reader on hand-made traces ------------------------------------------------------------------


def _p(  # noqa: PLR0917
    src: str, sport: int, dst: str, dport: int, flags: TcpFlags, seq: int, ack: int, data: bytes = b""
) -> IPv4Packet:
    return IPv4Packet(src, dst, TcpSegment(sport, dport, seq, ack, flags, 1000, payload=data))


DIRECT_HANDSHAKE = [
    _p(CLIENT, CPORT, RS, RSPORT, S, 100, 0),
    _p(RS, RSPORT, CLIENT, CPORT, S | A, 5000, 101),
    _p(CLIENT, CPORT, RS, RSPORT, A, 101, 5001),
]


def test_crossing_facts_of_the_field_reports_capture() -> None:
    trace = [
        *DIRECT_HANDSHAKE,
        _p(CLIENT, CPORT, VIP, VPORT, S, 9000, 0),
        _p(VIP, VPORT, CLIENT, CPORT, A, 5001, 101 - 7),  # the RS's challenge ACK, through the LB
        _p(CLIENT, CPORT, VIP, VPORT, R, 94, 0),
        _p(CLIENT, CPORT, RS, RSPORT, PA, 101, 5001, b"select 1"),
        _p(VIP, VPORT, CLIENT, CPORT, R, 5001, 0),  # the closed 4-tuple's RST, through the LB
        _p(CLIENT, CPORT, RS, RSPORT, PA, 101, 5001, b"select 1"),
        _p(VIP, VPORT, CLIENT, CPORT, R, 5001, 0),
        _p(CLIENT, CPORT, RS, RSPORT, PA, 101, 5001, b"select 1"),  # it keeps retransmitting
    ]
    facts = crossing_facts(trace, CLIENT, RS)
    assert facts.direct_retransmitted and facts.client_got_foreign_segments_from_vip
    assert len(facts.foreign) == 3 and "[R] seq 5001" in facts.foreign[1]


def test_one_resend_of_an_answered_query_is_not_the_crossings_retransmission() -> None:
    # A loaded machine can stall the box past the minimum RTO once: the query goes twice, then is
    # answered. The crossing's mark is a query that keeps being resent (KEEPS_RETRANSMITTING sends).
    query = _p(CLIENT, CPORT, RS, RSPORT, PA, 101, 5001, b"select 1")
    reply = _p(RS, RSPORT, CLIENT, CPORT, PA, 5001, 109, b"reply")
    once_more = crossing_facts([*DIRECT_HANDSHAKE, query, query, reply], CLIENT, RS)
    assert not once_more.direct_retransmitted
    kept_on = crossing_facts([*DIRECT_HANDSHAKE, *[query] * KEEPS_RETRANSMITTING], CLIENT, RS)
    assert kept_on.direct_retransmitted


def test_crossing_facts_of_two_separate_connections() -> None:
    trace = [
        *DIRECT_HANDSHAKE,
        _p(CLIENT, CPORT, VIP, VPORT, S, 9000, 0),
        _p(VIP, VPORT, CLIENT, CPORT, S | A, 70000, 9001),  # the RS's own ISN for the LB connection
        _p(CLIENT, CPORT, RS, RSPORT, PA, 101, 5001, b"select 1"),
        _p(RS, RSPORT, CLIENT, CPORT, PA, 5001, 109, b"reply"),
        _p(CLIENT, CPORT, VIP, VPORT, A, 9001, 70001),
    ]
    facts = crossing_facts(trace, CLIENT, RS)
    observed = {
        "direct_retransmitted": facts.direct_retransmitted,
        "client_got_foreign_segments_from_vip": facts.client_got_foreign_segments_from_vip,
    }
    assert compare({k: scenario_a.NO_CROSSING[k] for k in observed}, observed) == []
    assert compare({k: scenario_a.CROSSING[k] for k in observed}, observed) == [
        "direct_retransmitted: expected True, observed False",
        "client_got_foreign_segments_from_vip: expected True, observed False",
    ]
