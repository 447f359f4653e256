"""The matrix report: `report.md` for people, `report.json` for machines, beside the cells' pcaps.

report.md: totals, the failures first (each with its expected-vs-observed diff), then per scenario its
title, summary and one table (rows = cases, columns = role assignments; each table cell links to the
cell's section), then one section per cell: roles, expected vs observed, the diff, notes, pcap links
and a Mermaid ladder of its packets.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from interop.model import Packet, Scenario, Within, matches
from interop.runner import CellResult

LADDER_LIMIT = 80  # packets drawn per ladder; the pcaps hold the rest
_SUMMARY = re.compile(
    r"^(?P<src>\S+)\.(?P<sport>\d+) > (?P<dst>\S+)\.(?P<dport>\d+): Flags \[(?P<flags>[^\]]*)\], "
)
# Mermaid reads `;` and `#` as statement end / entity start in message text, and renders text as HTML.
_MERMAID_ESCAPES = {"#": "#35;", ";": "#59;", "<": "#lt;", ">": "#gt;", '"': "#quot;"}
_ICONS = {"passed": "✅", "failed": "❌", "error": "💥"}
_NOT_OBSERVED = object()


# -- values ---------------------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """`value` as JSON types: `Within` -> {"within": [low, high]}, tuples and sets -> lists, paths and
    anything unknown -> str."""
    if isinstance(value, Within):
        return {"within": [value.low, value.high]}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((to_jsonable(item) for item in value), key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


def show(value: Any) -> str:
    """A value as the report shows it: strings quoted (so "" and "0" stay visible), ranges as `4..8`."""
    if value is _NOT_OBSERVED:
        return "(not observed)"
    if isinstance(value, Within):
        return f"within {value!r}"
    return repr(value)


def outcome_text(value: Any) -> str:
    return str(value) if isinstance(value, str) else show(value)


def diff_lines(result: CellResult) -> list[str]:
    """`- expected KEY: WANT` / `+ observed KEY: GOT` for each expected key the cell did not meet."""
    if result.observation is None:
        return []
    observed = result.observation.values
    lines = []
    for key, want in result.cell.expected.items():
        got = observed.get(key, _NOT_OBSERVED)
        if got is _NOT_OBSERVED or not matches(want, got):
            lines += [f"- expected {key}: {show(want)}", f"+ observed {key}: {show(got)}"]
    return lines


def verdict(result: CellResult) -> str:
    """The summary-table text: `✅ outcome`, `❌ expected X, saw Y` or `💥 error`."""
    if result.status == "error":
        return "💥 error"
    assert result.observation is not None
    want = result.cell.expected["outcome"]
    got = result.observation.values.get("outcome", _NOT_OBSERVED)
    if result.passed:
        return f"✅ {outcome_text(got)}"
    if got is _NOT_OBSERVED or not matches(want, got):
        return f"❌ expected {outcome_text(want)}, saw {outcome_text(got)}"
    keys = [line.split(":", 1)[0] for line in result.mismatches]
    return f"❌ {outcome_text(got)}, but {', '.join(keys)} differ"


# -- ladders --------------------------------------------------------------------------------------------


def compact(summary: str) -> str:
    """A tcpdump line shortened for a ladder whose arrows already name the hosts:
    `40000 > 80 S. seq 1, win 64240, [mss 1460,sackOK,...]`."""
    match = _SUMMARY.match(summary)
    if match is None:
        return summary
    rest = summary[match.end() :].replace("options [", "[")
    rest = re.sub(r", length 0$", "", rest)
    return f"{match['sport']} > {match['dport']} {match['flags'] or 'none'} {rest}"


def mermaid_text(text: str) -> str:
    """Text safe in a Mermaid sequence message or participant alias (entity codes, one line)."""
    return "".join(_MERMAID_ESCAPES.get(ch, ch) for ch in text.replace("\n", " "))


def mermaid_ladder(trace: Sequence[Packet], limit: int = LADDER_LIMIT) -> str:
    """A Mermaid `sequenceDiagram`: participants in first-seen order, one arrow per packet."""
    shown = list(trace[:limit])
    ids: dict[str, str] = {}
    for packet in shown:
        for name in (packet.src, packet.dst):
            ids.setdefault(name, f"p{len(ids)}")
    lines = ["sequenceDiagram"]
    lines += [f"    participant {pid} as {mermaid_text(name)}" for name, pid in ids.items()]
    for packet in shown:
        text = mermaid_text(f"{packet.time:.3f} {compact(packet.summary)}")
        lines.append(f"    {ids[packet.src]}->>{ids[packet.dst]}: {text}")
    more = len(trace) - len(shown)
    if more > 0 and ids:
        first, last = next(iter(ids.values())), list(ids.values())[-1]
        over = first if first == last else f"{first},{last}"
        lines.append(f"    Note over {over}: ... {more} more packets (see the pcaps)")
    return "\n".join(lines)


def text_ladder(trace: Sequence[Packet]) -> list[str]:
    """One line per packet: time, src -> dst, summary (the CLI's ladder)."""
    width = max((len(f"{p.src} -> {p.dst}") for p in trace), default=0)
    return [f"{p.time:10.6f}  {f'{p.src} -> {p.dst}':<{width}}  {compact(p.summary)}" for p in trace]


# -- report.json ----------------------------------------------------------------------------------------


def cell_record(result: CellResult) -> dict[str, Any]:
    cell, observation = result.cell, result.observation
    return {
        "id": cell.id,
        "scenario": cell.scenario,
        "case": cell.case,
        "roles": dict(cell.roles),
        "policy": cell.policy,
        "backend": cell.backend,
        "assignment": cell.assignment,
        "params": to_jsonable(cell.params),
        "expected": to_jsonable(cell.expected),
        "observed": to_jsonable(observation.values) if observation is not None else None,
        "passed": result.passed,
        "status": result.status,
        "mismatches": list(result.mismatches),
        "error": result.error,
        "seconds": round(result.seconds, 3),
        "notes": list(result.notes),
        "pcaps": [str(path) for path in result.pcaps],
        "trace": [
            {"time": round(p.time, 6), "link": p.link, "src": p.src, "dst": p.dst, "summary": p.summary}
            for p in result.trace
        ],
    }


# -- report.md ------------------------------------------------------------------------------------------


def _anchors(results: Sequence[CellResult]) -> dict[str, str]:
    anchors: dict[str, str] = {}
    taken: set[str] = set()
    for result in results:
        base = "cell-" + re.sub(r"[^a-z0-9]+", "-", result.cell.id.lower()).strip("-")
        anchor, n = base, 2
        while anchor in taken:
            anchor, n = f"{base}-{n}", n + 1
        taken.add(anchor)
        anchors[result.cell.id] = anchor
    return anchors


def _cell_text(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def _params(params: Mapping[str, Any]) -> str:
    return f" Parameters: {_code(json.dumps(to_jsonable(params)))}." if params else ""


def _totals(results: Sequence[CellResult]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "error": 0}
    for result in results:
        counts[result.status] += 1
    return counts


def totals_line(results: Sequence[CellResult], wall_seconds: float | None = None) -> str:
    counts = _totals(results)
    line = f"{len(results)} cells: {counts['passed']} passed, {counts['failed']} failed, "
    line += f"{counts['error']} error(s)"
    return line + (f", {wall_seconds:.1f} s" if wall_seconds is not None else "")


def _scenario_table(results: Sequence[CellResult], anchors: Mapping[str, str]) -> list[str]:
    columns = list(dict.fromkeys(r.cell.assignment for r in results))
    cases = list(dict.fromkeys(r.cell.case for r in results))
    grid: dict[tuple[str, str], list[CellResult]] = {}
    for result in results:
        grid.setdefault((result.cell.case, result.cell.assignment), []).append(result)
    lines = [
        "| case | " + " | ".join(_cell_text(column) for column in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for case in cases:
        row = [_code(case)]
        for column in columns:
            here = grid.get((case, column), [])
            # several cells per (case, column) only when params differ: show each, linked
            row.append("<br>".join(f"[{_cell_text(verdict(r))}](#{anchors[r.cell.id]})" for r in here))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _expected_vs_observed(result: CellResult) -> list[str]:
    expected = result.cell.expected
    observed = result.observation.values if result.observation is not None else {}
    lines = ["| key | expected | observed | |", "|---|---|---|---|"]
    for key, want in expected.items():
        got = observed.get(key, _NOT_OBSERVED)
        if result.observation is None:
            mark, got_text = "", "—"
        else:
            mark = "✅" if got is not _NOT_OBSERVED and matches(want, got) else "❌"
            got_text = show(got)
        lines.append(f"| {_code(key)} | {_cell_text(show(want))} | {_cell_text(got_text)} | {mark} |")
    for key, got in observed.items():
        if key not in expected:  # measured and shown, not part of the expectation
            lines.append(f"| {_code(key)} | — | {_cell_text(show(got))} | |")
    return lines


def _cell_section(result: CellResult, anchor: str, out_dir: Path) -> list[str]:
    cell = result.cell
    icon = _ICONS[result.status]
    roles = ", ".join(f"{role} = **{impl}**" for role, impl in cell.roles)
    lines = [
        f'<a id="{anchor}"></a>',
        "",
        f"### {icon} {cell.scenario} · {cell.case} · {cell.assignment}",
        "",
        f"{_code(cell.id)} · {result.status} in {result.seconds:.2f} s · backend {cell.backend}"
        f" · policy {cell.policy or '—'}",
        "",
        f"Roles: {roles}."
        + (f" Parameters: {_code(json.dumps(to_jsonable(cell.params)))}." if cell.params else ""),
        "",
        *_expected_vs_observed(result),
        "",
    ]
    diff = diff_lines(result)
    if diff:
        lines += ["Expected (`-`) vs observed (`+`):", "", "```diff", *diff, "```", ""]
    if result.error is not None:
        lines += ["The cell raised:", "", "```text", result.error, "```", ""]
    if result.notes:
        lines += ["Notes:", "", *[f"- {note}" for note in result.notes], ""]
    if result.pcaps:
        links = ", ".join(f"[{path.name}]({path.as_posix()})" for path in result.pcaps)
        lines += [f"Captures: {links}", ""]
    if result.trace:
        lines += ["```mermaid", mermaid_ladder(result.trace), "```", ""]
    else:
        lines += ["No packets recorded.", ""]
    return lines


def render_markdown(
    results: Sequence[CellResult],
    out_dir: Path,
    *,
    scenarios: Iterable[Scenario] = (),
    wall_seconds: float | None = None,
) -> str:
    by_name = {scenario.name: scenario for scenario in scenarios}
    anchors = _anchors(results)
    counts = _totals(results)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    wall = f" · wall time {wall_seconds:.1f} s" if wall_seconds is not None else ""
    lines = [
        "# utcp interop matrix",
        "",
        f"**{len(results)} cells: ✅ {counts['passed']} passed, ❌ {counts['failed']} failed, "
        f"💥 {counts['error']} error(s)**{wall} · cell time {sum(r.seconds for r in results):.1f} s · {when}",
        "",
        "Rows are cases, columns are role assignments (`role=implementation`, the policy of the validating "
        "utcp role in brackets, `(sim)` for the in-process backend). ✅ the expected outcome was seen; "
        "❌ it was not (the cell's section shows expected `-` vs observed `+`); 💥 the cell raised. "
        "An empty table cell is a combination the scenario does not define.",
        "",
    ]
    bad = [r for r in results if not r.passed]
    if bad:
        lines += ["## Failures", ""]
        for result in bad:
            lines.append(f"- [{_cell_text(result.cell.id)}](#{anchors[result.cell.id]}): {verdict(result)}")
            if result.error is not None:
                lines.append(f"  `{result.error.splitlines()[0]}`")
        lines.append("")
    names = list(dict.fromkeys(r.cell.scenario for r in results))
    for name in names:
        scenario = by_name.get(name)
        mine = [r for r in results if r.cell.scenario == name]
        counts = _totals(mine)
        title = f"{name} — {scenario.title}" if scenario else name
        lines += [f"## {title}", ""]
        if scenario and scenario.summary:
            lines += [scenario.summary, ""]
        lines += [f"{counts['passed']}/{len(mine)} cells passed.", "", *_scenario_table(mine, anchors), ""]
    lines += ["## Cells", ""]
    for result in results:
        lines += _cell_section(result, anchors[result.cell.id], out_dir)
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    results: Sequence[CellResult],
    out_dir: Path,
    *,
    scenarios: Iterable[Scenario] = (),
    wall_seconds: float | None = None,
) -> tuple[Path, Path]:
    """Write `out_dir/report.md` and `out_dir/report.json`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / "report.md", out_dir / "report.json"
    md_path.write_text(
        render_markdown(results, out_dir, scenarios=scenarios, wall_seconds=wall_seconds), encoding="utf-8"
    )
    records = [cell_record(result) for result in results]
    json_path.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return md_path, json_path
