"""`utcp matrix` (every scenario x role assignment, with a report) and `utcp scenario list|run`.

Scenarios come from `interop.registry.load_scenarios` (the `UTCP_SCENARIOS` environment variable lists
other modules instead: how tests inject a fake scenario). The interop package is imported only when these
commands run, so the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import trio

from utcp.cli.common import EXIT_FAILED, EXIT_OK, UsageError, add_log_options, count_argument

if TYPE_CHECKING:
    from interop.model import Cell, Scenario
    from interop.runner import CellResult

IMPL_CHOICES = ("kernel", "utcp")  # interop.model.IMPLS, repeated so building the parser imports no interop
BACKEND_CHOICES = ("netns", "sim")
_ICONS = {"passed": "✅", "failed": "❌", "error": "💥"}
_JOBS = count_argument("--jobs", "job count")
MAX_FAILURE_NOTES = 12  # of a failed cell's notes printed under its diff


def add_matrix_commands(sub: Any) -> None:
    """Register `matrix` and `scenario` on the `utcp` parser's subcommands (`sub`, from add_subparsers)."""
    matrix = sub.add_parser("matrix", help="run the interop matrix and write a report")
    matrix.add_argument("--out", type=Path, default=Path("utcp-report"), help="report directory")
    matrix.add_argument(
        "--only",
        metavar="PATTERN",
        help="cells whose id contains PATTERN, or matches it as a glob when it has * ? or [ "
        "(ids: `utcp matrix --list`)",
    )
    matrix.add_argument("--jobs", type=_JOBS, default=4, help="netns cells run at once (default 4)")
    matrix.add_argument("--list", action="store_true", help="print the selected cell ids and exit")
    matrix.add_argument("--backend", choices=BACKEND_CHOICES, help="only cells of this backend")

    scenario = sub.add_parser("scenario", help="list the scenarios, or run one with its trace")
    actions = scenario.add_subparsers(dest="scenario_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="scenarios, their roles, cases and cells")
    run = actions.add_parser("run", help="run a scenario's matching cells and show them")
    run.add_argument("name", help="scenario name: A, B, C, D or E")
    run.add_argument("--case", help="only this case")
    run.add_argument("--client", choices=IMPL_CHOICES, help="shorthand for --role client=IMPL")
    run.add_argument("--server", choices=IMPL_CHOICES, help="shorthand for --role server=IMPL")
    run.add_argument("--role", action="append", default=[], metavar="ROLE=IMPL", help="repeatable")
    run.add_argument("--policy", help="only cells with this policy (a preset name or package.module:Name)")
    run.add_argument("--backend", choices=BACKEND_CHOICES)
    run.add_argument("--out", type=Path, default=Path("utcp-scenario"), help="report directory")
    run.add_argument("--jobs", type=_JOBS, default=4)
    for parser in (matrix, scenario, run, listing):
        # engine events would bury the progress lines; --log-level info brings them back
        add_log_options(parser, level="warning")


class ProgressPrinter:
    """`[ 12/64] ✅ B/4-ts0/...  0.8s` lines; on a terminal, one line redrawn with a bar, failures kept."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()

    def __call__(self, result: CellResult, done: int, total: int) -> None:
        width = len(str(total))
        line = f"[{done:>{width}}/{total}] {_ICONS[result.status]} {result.cell.id}  {result.seconds:.1f}s"
        if not self.tty:
            self.stream.write(line + "\n")
        else:
            columns = shutil.get_terminal_size().columns
            if not result.passed:
                self.stream.write("\r\x1b[K" + line + "\n")  # a failure stays on screen
            filled = 20 * done // total
            bar = f"[{'#' * filled}{'.' * (20 - filled)}] {done}/{total} {result.cell.id}"
            self.stream.write("\r\x1b[K" + bar[: columns - 1] + ("\n" if done == total else ""))
        self.stream.flush()


def privilege_problem() -> str | None:
    """Why netns cells cannot run here, or None (utcp.lab.pytest_plugin's check, without pytest)."""
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


def _require_privileges(cells: Sequence[Cell]) -> None:
    netns = sum(1 for cell in cells if cell.backend == "netns")
    problem = privilege_problem() if netns else None
    if problem:
        raise PermissionError(
            f"{netns} selected cell(s) use the netns backend, which {problem} "
            "(--backend sim runs the in-process cells without it)"
        )


def _load() -> list[Scenario]:
    from interop.registry import ScenarioError, load_scenarios  # noqa: PLC0415 (lazy: see module doc)

    try:
        scenarios = load_scenarios()
    except ScenarioError as exc:
        raise _Broken(str(exc)) from None
    if not scenarios:
        raise _Broken("no scenario module found (interop/scenario_a.py .. scenario_e.py)")
    return scenarios


def _cells(scenarios: Sequence[Scenario]) -> list[Cell]:
    from interop.registry import ScenarioError, all_cells  # noqa: PLC0415

    try:
        return all_cells(scenarios)
    except ScenarioError as exc:
        raise _Broken(str(exc)) from None


class _Broken(Exception):
    """A scenario module is unusable: exit status 1 with its one-line reason."""


def _run(
    cells: Sequence[Cell], scenarios: Sequence[Scenario], out: Path, jobs: int
) -> tuple[list[CellResult], Path]:
    from interop.report import write_report  # noqa: PLC0415
    from interop.runner import run_cells  # noqa: PLC0415

    progress = ProgressPrinter(sys.stderr)
    started = time.monotonic()
    results = trio.run(partial(run_cells, cells, out, jobs=jobs, progress=progress, scenarios=scenarios))
    md_path, _json_path = write_report(
        results, out, scenarios=scenarios, wall_seconds=time.monotonic() - started
    )
    return results, md_path


def _make_out(out: Path) -> None:
    """The report directory, made before any cell runs: an unwritable --out is one line, not a traceback."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: {exc.strerror or exc}") from None


def _print_failures(results: Sequence[CellResult]) -> None:
    from interop.report import diff_lines, verdict  # noqa: PLC0415

    for result in results:
        if result.passed:
            continue
        print(f"{result.status.upper()} {result.cell.id}: {verdict(result).split(' ', 1)[1]}")
        for line in diff_lines(result):
            print(f"    {line}")
        for line in (result.error or "").splitlines():
            print(f"    {line}")
        # what the cell saw besides its values: all a CI log keeps of a run whose report is deleted
        for line in result.notes[:MAX_FAILURE_NOTES]:
            print(f"    note: {line}")


def _finish(results: Sequence[CellResult], md_path: Path, wall: float) -> int:
    from interop.report import totals_line  # noqa: PLC0415

    _print_failures(results)
    print(totals_line(results, wall))
    print(
        f"report: {md_path} (and {md_path.with_suffix('.json').name}, pcaps under {md_path.parent / 'cells'})"
    )
    return EXIT_OK if all(result.passed for result in results) else EXIT_FAILED


def run_matrix(args: argparse.Namespace) -> int:
    from interop.registry import select  # noqa: PLC0415

    scenarios = _load()
    cells = select(_cells(scenarios), args.only, backend=args.backend)
    if not cells:
        what = " and ".join(
            part
            for part in (
                f"--only {args.only!r}" if args.only else "",
                f"--backend {args.backend}" if args.backend else "",
            )
            if part
        )
        raise UsageError(f"no cell matches {what or 'anything'} (`utcp matrix --list` shows the cell ids)")
    if args.list:
        for cell in cells:
            print(cell.id)
        return EXIT_OK
    _require_privileges(cells)
    _make_out(args.out)
    started = time.monotonic()
    results, md_path = _run(cells, scenarios, args.out, args.jobs)
    return _finish(results, md_path, time.monotonic() - started)


# -- utcp scenario --------------------------------------------------------------------------------------


def list_scenarios() -> int:
    from interop.registry import ScenarioError, scenario_cells  # noqa: PLC0415

    for scenario in _load():
        try:
            cells = scenario_cells(scenario)
        except ScenarioError as exc:
            raise _Broken(str(exc)) from None
        cases = list(dict.fromkeys(cell.case for cell in cells))
        print(f"{scenario.name}  {scenario.title}")
        print(f"   roles: {', '.join(scenario.roles)}")
        print(f"   cases: {', '.join(cases)}")
        sims = sum(1 for cell in cells if cell.backend == "sim")
        print(f"   cells: {len(cells)} ({len(cells) - sims} netns, {sims} sim)")
    return EXIT_OK


def _wanted_roles(args: argparse.Namespace, scenario: Scenario) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for spec in args.role:
        role, sep, impl = spec.partition("=")
        if not sep or not role or not impl:
            raise UsageError(f"--role {spec!r}: expected ROLE=IMPL, e.g. --role {scenario.roles[0]}=kernel")
        wanted[role] = impl
    for role in ("client", "server"):
        if getattr(args, role) is not None:
            wanted[role] = getattr(args, role)
    for role, impl in wanted.items():
        if role not in scenario.roles:
            raise UsageError(
                f"scenario {scenario.name} has no role {role!r}; its roles: {', '.join(scenario.roles)}"
            )
        if impl not in IMPL_CHOICES:
            raise UsageError(f"{role}={impl}: unknown implementation; choose from {', '.join(IMPL_CHOICES)}")
    return wanted


def _scenario_cells(args: argparse.Namespace, scenarios: Sequence[Scenario]) -> tuple[Scenario, list[Cell]]:
    from interop.registry import ScenarioError, scenario_cells  # noqa: PLC0415
    from utcp.cli.main import load_policy  # noqa: PLC0415 (main imports this module)

    by_name = {scenario.name.lower(): scenario for scenario in scenarios}
    scenario = by_name.get(args.name.lower())
    if scenario is None:
        names = ", ".join(s.name for s in scenarios)
        raise UsageError(f"unknown scenario {args.name!r}; choose from {names}")
    try:
        cells = scenario_cells(scenario)
    except ScenarioError as exc:
        raise _Broken(str(exc)) from None
    cases = list(dict.fromkeys(cell.case for cell in cells))
    if args.case is not None and args.case not in cases:
        raise UsageError(f"scenario {scenario.name} has no case {args.case!r}; its cases: {', '.join(cases)}")
    wanted = _wanted_roles(args, scenario)
    if args.policy is not None:
        load_policy(args.policy)  # an unknown name is one line naming the presets
    chosen = [
        cell
        for cell in cells
        if (args.case is None or cell.case == args.case)
        and all(cell.role_map.get(role) == impl for role, impl in wanted.items())
        and (args.policy is None or cell.policy == args.policy)
        and (args.backend is None or cell.backend == args.backend)
    ]
    if not chosen:
        near = [cell.assignment for cell in cells if args.case is None or cell.case == args.case]
        raise UsageError(
            f"no cell of scenario {scenario.name} matches; its assignments: {'; '.join(dict.fromkeys(near))}"
        )
    return scenario, chosen


def describe_cell(result: CellResult, out_dir: Path) -> list[str]:
    """A cell as text: header, expected vs observed, the diff, error, notes, pcaps, the ladder."""
    from interop.report import diff_lines, show, text_ladder, verdict  # noqa: PLC0415

    cell = result.cell
    observed = result.observation.values if result.observation is not None else {}
    lines = [
        f"== {cell.id}",
        f"   {verdict(result)}   ({result.seconds:.2f} s)",
        f"   roles: {', '.join(f'{role}={impl}' for role, impl in cell.roles)}   policy: {cell.policy or '-'}"
        f"   backend: {cell.backend}",
        "",
    ]
    keys = list(cell.expected) + [key for key in observed if key not in cell.expected]
    width = max(len(key) for key in [*keys, "key"])
    lines.append(f"   {'key':<{width}}  {'expected':<24}  observed")
    for key in keys:
        want = show(cell.expected[key]) if key in cell.expected else "-"
        got = show(observed[key]) if key in observed else ("(not observed)" if result.observation else "-")
        lines.append(f"   {key:<{width}}  {want:<24}  {got}")
    diff = diff_lines(result)
    if diff:
        lines += ["", "   expected (-) vs observed (+):", *[f"   {line}" for line in diff]]
    if result.error:
        lines += ["", "   error:", *[f"   {line}" for line in result.error.splitlines()]]
    if result.notes:
        lines += ["", "   notes:", *[f"   - {note}" for note in result.notes]]
    if result.pcaps:
        lines += ["", f"   pcaps: {', '.join(str(out_dir / path) for path in result.pcaps)}"]
    lines += [
        "",
        f"   ladder ({len(result.trace)} packets):",
        *[f"   {line}" for line in text_ladder(result.trace)],
    ]
    return [*lines, ""]


def run_scenario(args: argparse.Namespace) -> int:
    scenarios = _load()
    scenario, cells = _scenario_cells(args, scenarios)
    _require_privileges(cells)
    _make_out(args.out)
    started = time.monotonic()
    results, md_path = _run(cells, [scenario], args.out, args.jobs)
    for result in results:
        print("\n".join(describe_cell(result, args.out)))
    return _finish(results, md_path, time.monotonic() - started)


def run_interop_command(args: argparse.Namespace) -> int:
    """`utcp matrix` and `utcp scenario ...`: exit 0 all passed, 1 a cell failed, 2 bad arguments."""
    try:
        if importlib.util.find_spec("interop") is None:  # an install made before interop/ was packaged
            raise _Broken("the interop package is not importable: reinstall utcp (pip install -e .)")
        if args.command == "matrix":
            return run_matrix(args)
        if args.scenario_command == "list":
            return list_scenarios()
        return run_scenario(args)
    except _Broken as exc:
        print(f"utcp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
