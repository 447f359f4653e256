"""interop.runner and interop.registry on the fake scenario: concurrency, error capture, pcaps, selection."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import trio

from interop import registry
from interop.model import Cell, CellContext, Observation
from interop.registry import ScenarioError, load_scenarios, matches_pattern, scenario_cells, select
from interop.runner import RunnerContext, run_cells
from tests.interop.fakes import SCENARIO, Tracker, handshake, make_scenario
from utcp.wire.codec import parse_ipv4
from utcp.wire.pcap import read_pcap


def _cell(case: str, **params: object) -> Cell:
    return Cell("F", case, (("client", "utcp"), ("server", "utcp")), {"outcome": "ok"}, params=params)


async def test_netns_cells_run_concurrently_up_to_jobs(tmp_path: Path) -> None:
    tracker = Tracker()
    extra = tuple(_cell(f"slow{i}", outcome="ok", sleep=0.05) for i in range(6))
    scenario = make_scenario(tracker, extra)
    results = await run_cells(list(extra), tmp_path, jobs=3, scenarios=[scenario])
    assert tracker.peak == 3
    assert [r.cell for r in results] == list(extra)  # input order, whatever finished first
    assert all(r.passed for r in results)


async def test_sim_cells_run_one_at_a_time_before_netns_cells(tmp_path: Path) -> None:
    tracker = Tracker()
    order: list[str] = []
    sims = tuple(
        Cell(
            "F", f"sim{i}", (("client", "utcp"),), {"outcome": "ok"}, backend="sim", params={"outcome": "ok"}
        )
        for i in range(3)
    )
    netns = _cell("net", outcome="ok")
    scenario = make_scenario(tracker, (*sims, netns))
    results = await run_cells(
        [netns, *sims],
        tmp_path,
        jobs=4,
        scenarios=[scenario],
        progress=lambda r, d, t: order.append(r.cell.case),
    )
    assert order == ["sim0", "sim1", "sim2", "net"]
    assert tracker.peak == 1
    assert [r.cell.case for r in results] == ["net", "sim0", "sim1", "sim2"]


async def test_an_exception_is_a_failed_cell_with_its_text_and_the_run_goes_on(tmp_path: Path) -> None:
    cells = scenario_cells(SCENARIO)
    done: list[tuple[int, int]] = []
    results = await run_cells(
        cells, tmp_path, scenarios=[SCENARIO], progress=lambda r, d, t: done.append((d, t))
    )
    by_case = {r.cell.case: r for r in results if r.cell.case != "handshake"}
    boom = by_case["boom"]
    assert boom.status == "error" and not boom.passed and boom.observation is None
    assert boom.error is not None
    assert boom.error.startswith("RuntimeError: fake cell exploded on purpose")
    assert "fakes.py" in boom.error  # the traceback tail points into the scenario
    assert "runner.py" not in boom.error
    assert len(boom.trace) == 3 and boom.notes  # what it did before raising is kept
    assert by_case["reset"].passed
    assert sorted(done) == [(i, len(cells)) for i in range(1, len(cells) + 1)]


async def test_a_cell_that_overruns_its_timeout_fails_with_timed_out(tmp_path: Path) -> None:
    slow = Cell(
        "F",
        "slow",
        (("client", "utcp"),),
        {"outcome": "ok"},
        params={"outcome": "ok", "sleep": 5},
        timeout=0.05,
    )
    [result] = await run_cells([slow], tmp_path, scenarios=[make_scenario(extra=(slow,))])
    assert result.status == "error"
    assert result.error is not None and result.error.startswith("timed out after 0.05 s")


async def test_a_wrong_expectation_fails_with_the_key_in_the_mismatches(tmp_path: Path) -> None:
    cell = scenario_cells(SCENARIO)[0].with_expected(outcome="nonsense")
    [result] = await run_cells([cell], tmp_path, scenarios=[SCENARIO])
    assert result.status == "failed"
    assert result.mismatches == ["outcome: expected 'nonsense', observed 'connected'"]


async def test_pcaps_hold_the_recorded_packets_and_the_trace_uses_labels(tmp_path: Path) -> None:
    cell = scenario_cells(SCENARIO)[0]
    [result] = await run_cells([cell], tmp_path, scenarios=[SCENARIO])
    assert result.pcaps == [Path("cells") / cell.slug / "client-server.pcap"]
    records = list(read_pcap(tmp_path / result.pcaps[0]))
    assert len(records) == 3
    assert parse_ipv4(records[0][1]).tcp.seq == 1000
    # pcap keeps microseconds: each of the two times is rounded, so their difference may be 1 us off
    assert records[1][0] - records[0][0] == pytest.approx(0.001, abs=1.5e-6)
    assert [(p.src, p.dst) for p in result.trace] == [
        ("client", "server"),
        ("server", "client"),
        ("client", "server"),
    ]
    assert result.trace[0].summary.startswith("198.18.0.1.40000 > 198.18.0.2.80: Flags [S]")
    assert result.observation is not None and result.observation.trace == result.trace


async def _record_garbage(cell: Cell, ctx: CellContext) -> Observation:
    ctx.record("x", b"\x45\x00\x00")
    await trio.lowlevel.checkpoint()
    return Observation({"outcome": "ok"})


async def test_a_malformed_packet_is_counted_and_shown_not_fatal(tmp_path: Path) -> None:
    scenario = dataclasses.replace(SCENARIO, run=_record_garbage)
    [result] = await run_cells([_cell("x")], tmp_path, scenarios=[scenario])
    assert result.passed
    assert result.trace[0].summary.startswith("malformed (3 bytes)")
    assert any("did not parse" in note for note in result.notes)


def test_only_is_a_substring_or_a_glob_over_the_cell_id() -> None:
    cells = scenario_cells(SCENARIO)
    assert [c.case for c in select(cells, "F/reset")] == ["reset"]
    assert len(select(cells, "handshake")) == 3
    assert [c.policy for c in select(cells, "F/handshake/*/rfc7323/*")] == ["rfc7323"]
    assert select(cells, "handshake/*") == []  # a glob matches the whole id
    assert {c.backend for c in select(cells, None, backend="netns")} == {"netns"}
    assert len(select(cells, None)) == len(cells)
    assert matches_pattern(cells[0], "*server=utcp*")


def test_missing_default_modules_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UTCP_SCENARIOS", raising=False)
    monkeypatch.setattr(registry, "DEFAULT_MODULES", ("interop.scenario_zz", "tests.interop.fakes"))
    assert [s.name for s in load_scenarios()] == ["F"]


def test_utcp_scenarios_replaces_the_default_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UTCP_SCENARIOS", "tests.interop.fakes, tests.interop.fakes:OTHER")
    assert [s.name for s in load_scenarios()] == ["F", "G"]


def test_an_explicit_missing_module_is_an_error() -> None:
    with pytest.raises(ScenarioError, match="not found"):
        load_scenarios(["tests.interop.no_such_fake"])


def test_a_module_that_fails_to_import_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_scenario_zz.py").write_text("import no_such_dependency_zz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ScenarioError, match="broken_scenario_zz failed to import: ModuleNotFoundError"):
        load_scenarios(["broken_scenario_zz"])
    sys.modules.pop("broken_scenario_zz", None)


def test_a_module_without_scenario_is_a_clear_error() -> None:
    with pytest.raises(ScenarioError, match="no module-level `SCENARIO"):
        load_scenarios(["tests.interop"])


async def test_a_packet_seen_unchanged_on_two_links_is_one_arrow_but_two_pcap_records(tmp_path: Path) -> None:
    syn, syn_ack, ack = handshake()
    ctx = RunnerContext(SCENARIO.cells()[0], tmp_path)
    ctx.record("box:client", syn, 0.000)
    ctx.record("utcp", syn, 0.001)  # the same SYN after a box that did not touch it
    ctx.record("utcp", syn_ack, 0.002)
    ctx.record("utcp", syn, 1.001)  # a retransmission a second later: a packet of its own
    ctx.record("box:client", ack, 1.002)
    ctx.close()
    trace = ctx.trace()
    assert [(p.link, p.time) for p in trace] == [
        ("box:client", 0.0),
        ("utcp", 0.002),
        ("utcp", 1.001),
        ("box:client", 1.002),
    ]
    assert len(list(read_pcap(tmp_path / "utcp.pcap"))) == 3
