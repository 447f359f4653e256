"""`utcp matrix` and `utcp scenario` on the fake scenario (UTCP_SCENARIOS=tests.interop.fakes): exit codes,
the diff of a deliberately wrong expectation, selection, the privilege check. No root needed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from interop.registry import scenario_cells
from interop.runner import run_cells
from tests.interop.fakes import SCENARIO
from utcp.cli import matrix
from utcp.cli.main import main


@pytest.fixture(autouse=True)
def fake_scenarios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UTCP_SCENARIOS", "tests.interop.fakes")
    monkeypatch.setattr(matrix, "privilege_problem", lambda: None)  # the fake's netns cell needs nothing


def test_matrix_exits_0_when_every_selected_cell_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["matrix", "--out", str(tmp_path), "--only", "F/handshake"]) == 0
    out, err = capsys.readouterr()
    assert "3 cells: 3 passed, 0 failed, 0 error(s)" in out
    assert f"report: {tmp_path / 'report.md'}" in out
    assert "[1/3] ✅ F/handshake/" in err and "[3/3] ✅ " in err
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.json").is_file()


def test_a_deliberately_wrong_expectation_exits_1_with_a_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["matrix", "--out", str(tmp_path), "--only", "F/wrong"]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    i = lines.index("FAILED F/wrong/client=utcp,server=utcp/linux/sim: expected nonsense, saw connected")
    assert lines[i + 1 : i + 5] == [
        "    - expected outcome: 'nonsense'",
        "    + observed outcome: 'connected'",
        # the cell's notes, which a CI log keeps when the report directory is gone
        "    note: fake wrong: three packets recorded",
        "    note: returned by run",
    ]
    assert "[1/1] ❌ F/wrong/" in err
    assert (
        "- expected outcome: 'nonsense'\n+ observed outcome: 'connected'"
        in (tmp_path / "report.md").read_text()
    )


def test_an_erroring_cell_exits_1_with_its_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "--out", str(tmp_path), "--only", "*/boom/*"]) == 1
    out, _err = capsys.readouterr()
    assert "ERROR F/boom/client=utcp,server=utcp/linux/sim: error" in out
    assert "    RuntimeError: fake cell exploded on purpose" in out


def test_list_prints_the_selected_ids(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "--list", "--backend", "sim", "--only", "handshake"]) == 0
    out, _err = capsys.readouterr()
    assert out.splitlines() == [
        "F/handshake/client=kernel,server=utcp/linux/sim",
        "F/handshake/client=utcp,server=utcp/rfc7323/sim",
    ]


def test_no_cell_selected_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "--only", "no-such-cell"]) == 2
    _out, err = capsys.readouterr()
    assert err.count("\n") == 1
    expected = "no cell matches --only 'no-such-cell' (`utcp matrix --list` shows the cell ids)"
    assert err == f"utcp matrix: error: {expected}\n"


def test_bad_jobs_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["matrix", "--jobs", "0"])
    assert exit_info.value.code == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err


def test_netns_cells_without_root_are_one_line_and_sim_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(matrix, "privilege_problem", lambda: "needs root")
    assert main(["matrix", "--out", str(tmp_path), "--only", "F/handshake"]) == 1
    _out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "1 selected cell(s) use the netns backend, which needs root" in err
    assert main(["matrix", "--out", str(tmp_path), "--only", "F/handshake", "--backend", "sim"]) == 0


def test_a_broken_scenario_module_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("UTCP_SCENARIOS", "tests.interop.no_such_fake")
    assert main(["matrix", "--list"]) == 1
    assert (
        capsys.readouterr().err
        == "utcp matrix: error: scenario module 'tests.interop.no_such_fake' not found\n"
    )


def test_scenario_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenario", "list"]) == 0
    out, _err = capsys.readouterr()
    assert out.splitlines()[:4] == [
        "F  A fake scenario",
        "   roles: client, server",
        "   cases: handshake, reset, boom, wrong",
        "   cells: 6 (1 netns, 5 sim)",
    ]


def test_scenario_run_shows_expected_observed_notes_and_the_ladder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["scenario", "run", "f", "--client", "utcp", "--server", "utcp", "--policy", "rfc7323"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    out, _err = capsys.readouterr()
    assert "== F/handshake/client=utcp,server=utcp/rfc7323/sim" in out
    assert "   ✅ connected" in out
    assert "   outcome       'connected'               'connected'" in out
    assert "   - fake handshake: three packets recorded" in out
    assert "   ladder (3 packets):" in out
    assert "     0.000000  client -> server  40000 > 80 S seq 1000, win 64240, [mss 1460" in out
    assert "     0.001000  server -> client  80 > 40000 S. seq 5000, ack 1001, win 65535, [mss 1460]" in out
    assert "1 cells: 1 passed" in out


def test_scenario_run_of_the_wrong_cell_prints_the_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scenario", "run", "F", "--case", "wrong", "--out", str(tmp_path)]) == 1
    out, _err = capsys.readouterr()
    assert "   ❌ expected nonsense, saw connected" in out
    assert "   - expected outcome: 'nonsense'\n   + observed outcome: 'connected'" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["Z"], "unknown scenario 'Z'; choose from F"),
        (["F", "--role", "lb=kernel"], "scenario F has no role 'lb'; its roles: client, server"),
        (["F", "--role", "client=bsd"], "client=bsd: unknown implementation; choose from kernel, utcp"),
        (["F", "--role", "client"], "--role 'client': expected ROLE=IMPL"),
        (["F", "--case", "nope"], "scenario F has no case 'nope'; its cases: handshake, reset, boom, wrong"),
        (["F", "--policy", "nosuch"], "unknown policy preset 'nosuch'"),
        (
            ["F", "--client", "kernel", "--policy", "rfc7323"],
            "no cell of scenario F matches; its assignments:",
        ),
    ],
)
def test_scenario_run_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scenario", "run", *argv]) == 2
    _out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("utcp scenario: error: ") and message in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_lines_and_the_terminal_bar(tmp_path: Path) -> None:
    cells = scenario_cells(SCENARIO)
    results = await run_cells(cells, tmp_path, scenarios=[SCENARIO])
    plain = io.StringIO()
    printer = matrix.ProgressPrinter(plain)
    printer(results[0], 1, 12)
    assert plain.getvalue() == f"[ 1/12] ✅ {cells[0].id}  {results[0].seconds:.1f}s\n"
    terminal = _Terminal()
    bar = matrix.ProgressPrinter(terminal)
    wrong = next(r for r in results if r.cell.case == "wrong")
    bar(results[0], 1, 2)
    bar(wrong, 2, 2)
    screen = terminal.getvalue()
    assert screen.startswith(f"\r\x1b[K[##########..........] 1/2 {cells[0].id}"[:80])
    assert f"\r\x1b[K[2/2] ❌ {wrong.cell.id}" in screen  # a failure is kept as its own line
    assert screen.endswith("\n") and "[####################] 2/2" in screen
