"""Scenario B (RST overtakes the third ACK): the cells, their expectations from interop/b_table.py, every sim
cell and a few netns cells through interop.runner, and the must-show table of issue 5 (the kernel and
utcp's `linux` preset agree, `rfc7323` differs)."""

from __future__ import annotations

from pathlib import Path

from interop.model import Cell
from interop.registry import load_scenarios, scenario_cells
from interop.runner import CellResult, run_cells
from interop.scenario_b import KERNEL_CLIENT_CASES, SCENARIO, client_rst_kind
from utcp.wire.packet import Mss, TcpFlags, TcpSegment, Timestamps

CELLS = SCENARIO.cells()
SIM = [c for c in CELLS if c.backend == "sim"]
PRESETS = ("linux", "linux-tw-recycle", "rfc793", "rfc5961", "rfc7323")
UTCP_CLIENT_COLUMNS = {
    "client=utcp server=kernel",
    *(f"client=utcp server=utcp [{p}]" for p in PRESETS),
    *(f"client=utcp server=utcp [{p}] (sim)" for p in PRESETS),
}
KERNEL_CLIENT_COLUMNS = {
    "client=kernel server=kernel",
    *(f"client=kernel server=utcp [{p}]" for p in PRESETS),
}
ROW_IDS = [
    "1",
    "2",
    "3",
    "4-ts0",
    "4-stale",
    "4-T-1",
    "5",
    "5-echo",
    "E",
    "E'-rst",
    "E'-syn",
    "E''-data",
    "E''-ack",
]


def find(case: str, assignment: str) -> Cell:
    (cell,) = [c for c in CELLS if c.case == case and c.assignment == assignment]
    return cell


def test_every_row_has_every_role_assignment() -> None:
    assert scenario_cells(SCENARIO) == CELLS  # unique ids, roles the scenario declares
    assert [s.name for s in load_scenarios(["interop.scenario_b"])] == ["B"]
    by_case: dict[str, set[str]] = {}
    for cell in CELLS:
        by_case.setdefault(cell.case, set()).add(cell.assignment)
    assert list(by_case) == ROW_IDS
    for case, columns in by_case.items():
        expected = UTCP_CLIENT_COLUMNS | (KERNEL_CLIENT_COLUMNS if case in KERNEL_CLIENT_CASES else set())
        assert columns == expected, case
    assert set(KERNEL_CLIENT_CASES) == {"1", "2"}
    assert len(SIM) == len(ROW_IDS) * len(PRESETS)
    assert all(c.expected["outcome"] for c in CELLS)


def test_the_b_row_shows_kernel_and_linux_agreeing_and_rfc7323_differing() -> None:
    """Issue 5 must-show 3, in the expectations (the netns test below shows it in runs)."""
    for case in ("4-ts0", "4-stale", "4-T-1"):
        kernel = find(case, "client=utcp server=kernel").expected
        linux = find(case, "client=utcp server=utcp [linux]").expected
        rfc7323 = find(case, "client=utcp server=utcp [rfc7323]").expected
        assert kernel == linux
        assert kernel["outcome"] == "leftover" and kernel["leftover"] is True
        assert kernel["counters"] == {"TcpExtPAWSEstab": 1, "TcpPassiveOpens": 1}
        assert rfc7323["outcome"] == "reset" and rfc7323["leftover"] is False
        assert rfc7323["counters"]["TcpExtEmbryonicRsts"] == 1
        assert find(case, "client=utcp server=utcp [rfc7323] (sim)").expected == rfc7323
    # and in every row the kernel column is the linux preset's
    for case in ROW_IDS:
        assert (
            find(case, "client=utcp server=kernel").expected
            == find(case, "client=utcp server=utcp [linux]").expected
        )


def test_kernel_client_cells_expect_what_the_kernel_sent() -> None:
    for column in KERNEL_CLIENT_COLUMNS:
        in_order, overtaken = find("1", column).expected, find("2", column).expected
        assert in_order["outcome"] == overtaken["outcome"] == "reset"
        assert in_order["leftover"] is overtaken["leftover"] is False
        assert in_order["replies"] == []  # the RST closed an established connection: nothing to answer
        assert overtaken["replies"] == ["R seq=snd"]  # the late ACK meets the bare listener
        assert in_order["arrival"] == "S . R." and overtaken["arrival"] == "S R. ."
        assert in_order["client_rst"] == overtaken["client_rst"] == "RST|ACK TS>=T"


async def test_every_sim_cell_passes(tmp_path: Path) -> None:
    results = await run_cells(SIM, tmp_path, scenarios=[SCENARIO])
    failed = [(r.cell.id, r.error, r.mismatches) for r in results if not r.passed]
    assert failed == []
    for result in results:
        assert result.trace and {p.src for p in result.trace} == {"client", "server"}, result.cell.id
        assert result.pcaps and all((tmp_path / p).stat().st_size > 24 for p in result.pcaps)


async def test_a_wrong_expectation_fails_with_a_diff(tmp_path: Path) -> None:
    cell = find("4-ts0", "client=utcp server=utcp [linux] (sim)").with_expected(outcome="reset")
    (result,) = await run_cells([cell], tmp_path, scenarios=[SCENARIO])
    assert result.status == "failed"
    assert result.mismatches == ["outcome: expected 'reset', observed 'leftover'"]


async def test_a_policy_run_fails_another_policys_expectation(tmp_path: Path) -> None:
    """The comparison tells linux from rfc7323 on case 4: every compared key differs."""
    linux = find("4-ts0", "client=utcp server=utcp [linux] (sim)")
    rfc7323 = find("4-ts0", "client=utcp server=utcp [rfc7323] (sim)")
    swapped = linux.with_expected(**rfc7323.expected)
    (result,) = await run_cells([swapped], tmp_path, scenarios=[SCENARIO])
    assert [line.split(":")[0] for line in result.mismatches] == [
        "outcome",
        "leftover",
        "counters",
        "replies",
    ]


def _seg(flags: TcpFlags, *options: Timestamps | Mss) -> TcpSegment:
    return TcpSegment(src_port=41000, dst_port=8000, seq=1, ack=0, flags=flags, window=0, options=options)


def test_client_rst_kind_reads_the_rst_timestamp_against_the_syn() -> None:
    syn = _seg(TcpFlags.SYN, Mss(1460), Timestamps(0xFFFF_FFF0, 0))
    rst_ack = TcpFlags.RST | TcpFlags.ACK
    assert client_rst_kind(_seg(rst_ack, Timestamps(0x10, 5)), syn) == "RST|ACK TS>=T"  # wrapped, newer
    assert client_rst_kind(_seg(rst_ack, Timestamps(0xFFFF_FFF0, 5)), syn) == "RST|ACK TS>=T"
    assert client_rst_kind(_seg(TcpFlags.RST, Timestamps(0xFFFF_FFEF, 0)), syn) == "RST TS<T"
    assert client_rst_kind(_seg(TcpFlags.RST, Timestamps(0, 0)), syn) == "RST TS=0"
    assert client_rst_kind(_seg(TcpFlags.RST), syn) == "RST no TS"
    assert client_rst_kind(_seg(TcpFlags.RST, Mss(1460)), syn) == "RST no TS"


# -- netns: the kernel against the linux and rfc7323 presets -----------------------------------------------

NETNS_SAMPLE = [
    *(
        find(case, column)
        for case in ("4-ts0", "2")
        for column in (
            "client=utcp server=kernel",
            "client=utcp server=utcp [linux]",
            "client=utcp server=utcp [rfc7323]",
        )
    ),
    find("2", "client=kernel server=kernel"),
    find("2", "client=kernel server=utcp [linux]"),
    find("2", "client=kernel server=utcp [rfc7323]"),
    find("1", "client=kernel server=kernel"),
]


def _outcome(results: list[CellResult], case: str, column: str) -> str:
    (result,) = [r for r in results if r.cell.case == case and r.cell.assignment == column]
    assert result.observation is not None
    return str(result.observation.values["outcome"])


async def test_netns_cells_kernel_and_presets(privileged: None, tmp_path: Path) -> None:
    results = await run_cells(NETNS_SAMPLE, tmp_path, jobs=4, scenarios=[SCENARIO])
    failed = [(r.cell.id, r.error, r.mismatches, r.notes) for r in results if not r.passed]
    assert failed == []
    for result in results:
        assert result.trace, result.cell.id
    # must-show 3 from real runs: the kernel leaves the leftover the linux preset leaves; rfc7323 resets
    assert _outcome(results, "4-ts0", "client=utcp server=kernel") == "leftover"
    assert _outcome(results, "4-ts0", "client=utcp server=utcp [linux]") == "leftover"
    assert _outcome(results, "4-ts0", "client=utcp server=utcp [rfc7323]") == "reset"
    # the kernel client's own RST, measured: fresh timestamp, and it did overtake the third ACK
    kernel_client = next(
        r for r in results if r.cell.case == "2" and r.cell.assignment == "client=kernel server=kernel"
    )
    assert kernel_client.observation is not None
    assert kernel_client.observation.values["client_rst"] == "RST|ACK TS>=T"
    assert kernel_client.observation.values["arrival"] == "S R. ."
