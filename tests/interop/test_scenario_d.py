"""Scenario D (tcp_tw_recycle behind NAT): the matrix's cells and expectations, the sim cells through the
runner, a few netns cells, and the trace reader on hand-made packets (so a wrong trace gives a diff)."""

from __future__ import annotations

from pathlib import Path

from interop.model import Cell, Observation, compare
from interop.registry import scenario_cells
from interop.runner import run_cells
from interop.scenario_d import (
    B_SYNS_DROPPED,
    CASES,
    OUTSIDE,
    SCENARIO,
    DFacts,
    d_facts,
    d_observation,
    server_closed_first,
)
from tests.interop.ce_support import find, run_cell
from utcp.wire.packet import IPv4Packet, TcpFlags, TcpSegment, Timestamps

CELLS = SCENARIO.cells()
SIM = [c for c in CELLS if c.backend == "sim"]
NETNS = [c for c in CELLS if c.backend == "netns"]
S, SA, AK, F = TcpFlags.SYN, TcpFlags.SYN | TcpFlags.ACK, TcpFlags.ACK, TcpFlags.FIN


def test_every_role_assignment_once_per_case() -> None:
    assert scenario_cells(SCENARIO) == CELLS  # the registry's checks: roles known, ids unique
    for case in CASES:
        columns = {c.assignment for c in NETNS if c.case == case}
        assert len(columns) == 2 * 2 * 3  # clients x snat x (kernel | utcp tw-recycle | utcp linux)
        assert "clients=kernel snat=kernel server=kernel" in columns
        assert "clients=utcp snat=utcp server=utcp [linux-tw-recycle]" in columns
        sims = {c.assignment for c in SIM if c.case == case}
        assert sims == {
            "clients=utcp snat=utcp server=utcp [linux-tw-recycle] (sim)",
            "clients=utcp snat=utcp server=utcp [linux] (sim)",
        }
    kernel_clients = [c for c in NETNS if c.impl("clients") == "kernel"]
    assert {c.case: c.params["tcp_timestamps"] for c in kernel_clients} == {
        "unrelated-clocks": 1,
        "shared-clock": 2,
    }


def test_only_a_tw_recycle_server_with_b_behind_drops() -> None:
    # SCENARIOS.md D: the kernel (6.18) never drops, utcp `linux` never drops, tw-recycle needs B behind
    for cell in CELLS:
        drops = cell.policy == "linux-tw-recycle" and cell.case == "unrelated-clocks"
        assert (cell.expected["outcome"] == "B's SYNs dropped") == drops, cell.id
        assert cell.expected["server_peers"] == [OUTSIDE]
        if cell.impl("server") == "kernel":
            assert cell.expected["paws_passive"] == "absent"
            assert cell.expected["tw_recycle"] == "sysctl absent"
        if drops:
            syns = B_SYNS_DROPPED[cell.impl("clients")]
            assert (cell.expected["b_syns"], cell.expected["paws_passive"]) == (syns, syns)


async def test_sim_cells_pass_through_the_runner(tmp_path: Path) -> None:
    results = await run_cells(SIM, tmp_path, scenarios=[SCENARIO])
    for result in results:
        assert result.passed, (result.cell.id, result.error, result.mismatches, result.notes)
        assert result.trace and result.pcaps
    dropped = [r for r in results if r.observation and r.observation.values["outcome"] == "B's SYNs dropped"]
    assert [r.cell.id for r in dropped] == [
        "D/unrelated-clocks/clients=utcp,snat=utcp,server=utcp/linux-tw-recycle/sim"
    ]


async def test_a_wrong_expectation_gives_a_diff(tmp_path: Path) -> None:
    cell = find(SIM, "unrelated-clocks", "clients=utcp snat=utcp server=utcp [linux-tw-recycle] (sim)")
    wrong = cell.with_expected(outcome="no drop", paws_passive=0)
    _, diff, ctx = await run_cell(SCENARIO, wrong, tmp_path)
    assert diff == [
        "outcome: expected 'no drop', observed \"B's SYNs dropped\"",
        "paws_passive: expected 0, observed 2",
    ]
    assert set(ctx.labels.values()) == {"A", "B", "snat", "server"}


# a few netns cells: the kernel not dropping though B is behind, the drop with kernel and utcp clients
# through either SNAT, and a shared clock letting B in even at a tw-recycle server
NETNS_PICKS = [
    ("unrelated-clocks", "clients=kernel snat=kernel server=kernel"),
    ("unrelated-clocks", "clients=kernel snat=kernel server=utcp [linux-tw-recycle]"),
    ("unrelated-clocks", "clients=utcp snat=utcp server=utcp [linux-tw-recycle]"),
    ("unrelated-clocks", "clients=utcp snat=kernel server=utcp [linux]"),
    ("shared-clock", "clients=kernel snat=utcp server=utcp [linux-tw-recycle]"),
]


async def test_some_netns_cells_pass(privileged: None, tmp_path: Path) -> None:
    picked: list[Cell] = [find(NETNS, case, assignment) for case, assignment in NETNS_PICKS]
    results = await run_cells(picked, tmp_path, jobs=3, scenarios=[SCENARIO])
    for result in results:
        assert result.passed, (result.cell.id, result.error, result.mismatches, result.notes)
        # the SNAT's server side was captured (the ladder may show those packets on another link: a packet
        # seen unchanged on two links is one arrow, but every link keeps its pcap)
        assert "snat_server.pcap" in {p.name for p in result.pcaps}


# -- the trace reader on hand-made packets -------------------------------------------------------------

SERVER = "198.18.3.2"
PORT = 19090


def _pkt(flags: TcpFlags, *, tsval: int | None, sport: int = 41001, to_server: bool = True) -> IPv4Packet:
    options = (Timestamps(tsval, 0),) if tsval is not None else ()
    ports = (sport, PORT) if to_server else (PORT, sport)
    src, dst = (OUTSIDE, SERVER) if to_server else (SERVER, OUTSIDE)
    return IPv4Packet(src, dst, TcpSegment(ports[0], ports[1], 1, 1, flags, 1000, options))


def test_b_behind_a_uses_32_bit_serial_arithmetic() -> None:
    phase_a = [_pkt(S, tsval=100), _pkt(AK, tsval=105), _pkt(F | AK, tsval=0xFFFF_FFF0)]
    # B's clock wrapped past zero: numerically smaller but 0x20 ticks *ahead* of A's last
    ahead = d_facts(phase_a, [_pkt(S, tsval=0x10, sport=41002)], PORT)
    assert (ahead.a_last_tsval, ahead.b_first_tsval, ahead.b_ts_behind_a) == (0xFFFF_FFF0, 0x10, False)
    behind = d_facts(phase_a, [_pkt(S, tsval=0xFFFF_FF00, sport=41002)], PORT)
    assert behind.b_ts_behind_a is True
    # older by exactly TCP_PAWS_WINDOW (1) still passes tcp_peer_is_proven
    assert d_facts(phase_a, [_pkt(S, tsval=0xFFFF_FFEF, sport=41002)], PORT).b_ts_behind_a is False
    assert d_facts(phase_a, [_pkt(S, tsval=None, sport=41002)], PORT).b_ts_behind_a is None


def _seg(flags: TcpFlags, seq: int, ack: int, *, to_server: bool) -> IPv4Packet:
    ports, (src, dst) = (
        ((41001, PORT), (OUTSIDE, SERVER)) if to_server else ((PORT, 41001), (SERVER, OUTSIDE))
    )
    return IPv4Packet(src, dst, TcpSegment(ports[0], ports[1], seq, ack, flags, 1000))


def test_an_active_close_is_read_from_the_wire() -> None:
    # The server's FIN first, then the client's FIN, acknowledged (seq 500 + the FIN: ack 501): the server
    # is in TIME-WAIT, whether or not a poll of its sockets saw it before a recycled one ended.
    server_fin = _seg(F | AK, 900, 500, to_server=False)
    client_ack, client_fin = _seg(AK, 500, 901, to_server=True), _seg(F | AK, 500, 901, to_server=True)
    last_ack = _seg(AK, 901, 501, to_server=False)
    assert server_closed_first([server_fin, client_ack, client_fin, last_ack], PORT)
    # the client's FIN not (yet) acknowledged: the server is still in FIN-WAIT-2 or CLOSING
    assert not server_closed_first([server_fin, client_ack, client_fin], PORT)
    assert not server_closed_first([server_fin, client_fin, _seg(AK, 901, 500, to_server=False)], PORT)
    # the client closed first: a passive close on the server (LAST-ACK, no TIME-WAIT)
    passive = [client_fin, _seg(F | AK, 900, 501, to_server=False), _seg(AK, 501, 901, to_server=True)]
    assert not server_closed_first(passive, PORT)
    # simultaneous close, the server's FIN on the wire first: CLOSING, then TIME-WAIT once acked
    assert server_closed_first([server_fin, client_fin, last_ack], PORT)


def test_facts_count_b_syns_and_synacks() -> None:
    phase_b = [
        _pkt(S, tsval=5, sport=41002),
        _pkt(S, tsval=1005, sport=41002),
        _pkt(SA, tsval=9, sport=41002, to_server=False),
        _pkt(AK, tsval=1006, sport=41002),
    ]
    facts = d_facts([_pkt(S, tsval=1)], phase_b, PORT)
    assert (facts.b_syns, facts.synacks_to_b, facts.server_peers) == (2, 1, [OUTSIDE])


def _observe(facts: DFacts, b_connect: str) -> Observation:
    return d_observation(
        facts, b_connect=b_connect, paws_passive=0, tw_recycle="on", closed_actively=True, notes=[]
    )


def test_outcomes_tell_a_drop_from_a_late_connect() -> None:
    facts = DFacts([OUTSIDE], b_syns=2, synacks_to_b=0, a_last_tsval=10, b_first_tsval=5)
    assert _observe(facts, "TimeoutError").values["outcome"] == "B's SYNs dropped"
    late = DFacts([OUTSIDE], b_syns=2, synacks_to_b=1, a_last_tsval=10, b_first_tsval=5)
    observed = _observe(late, "connected").values
    assert observed["outcome"] == "B connected after 2 SYN(s), 1 SYN-ACK(s)"
    expected = {"outcome": "no drop", "b_syns": 1}
    assert compare(expected, observed) == [
        "outcome: expected 'no drop', observed 'B connected after 2 SYN(s), 1 SYN-ACK(s)'",
        "b_syns: expected 1, observed 2",
    ]
    first_time = DFacts([OUTSIDE], b_syns=1, synacks_to_b=1, a_last_tsval=10, b_first_tsval=50)
    assert _observe(first_time, "connected").values["outcome"] == "no drop"
