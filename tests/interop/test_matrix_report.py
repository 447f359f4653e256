"""interop.report: report.json's schema, report.md's table and sections, Mermaid ladders."""

from __future__ import annotations

import json
import re
from pathlib import Path

from interop.model import Packet, Within
from interop.registry import scenario_cells
from interop.report import (
    LADDER_LIMIT,
    compact,
    diff_lines,
    mermaid_ladder,
    mermaid_text,
    to_jsonable,
    write_report,
)
from interop.runner import CellResult, run_cells
from tests.interop.fakes import SCENARIO

REQUIRED = {"id", "scenario", "case", "roles", "policy", "backend", "expected", "observed", "passed"}
REQUIRED |= {"mismatches", "error", "seconds", "pcaps"}


async def make_report(tmp_path: Path) -> tuple[list[CellResult], Path, Path]:
    results = await run_cells(scenario_cells(SCENARIO), tmp_path, scenarios=[SCENARIO])
    md, js = write_report(results, tmp_path, scenarios=[SCENARIO], wall_seconds=1.5)
    return results, md, js


def _mermaid_blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in re.findall(r"```mermaid\n(.*?)\n```", text, re.DOTALL)]


async def test_report_json_is_a_list_of_cells_with_the_issue_fields(tmp_path: Path) -> None:
    results, _md, js = await make_report(tmp_path)
    records = json.loads(js.read_text())
    assert isinstance(records, list) and len(records) == len(results)
    for record in records:
        assert record.keys() >= REQUIRED
        assert isinstance(record["roles"], dict) and isinstance(record["passed"], bool)
        for pcap in record["pcaps"]:
            assert not Path(pcap).is_absolute() and (js.parent / pcap).is_file()
    by_case = {r["case"]: r for r in records if r["case"] != "handshake"}
    assert by_case["reset"]["expected"] == {"outcome": "reset", "attempts": {"within": [1, 3]}}
    assert by_case["reset"]["observed"]["attempts"] == 2 and by_case["reset"]["passed"] is True
    assert (
        by_case["reset"]["roles"] == {"client": "utcp", "server": "kernel"}
        and by_case["reset"]["policy"] is None
    )
    assert by_case["boom"]["observed"] is None and by_case["boom"]["passed"] is False
    assert by_case["boom"]["error"].startswith("RuntimeError: fake cell exploded")
    assert by_case["wrong"]["mismatches"] == ["outcome: expected 'nonsense', observed 'connected'"]


def test_to_jsonable_converts_ranges_tuples_and_paths() -> None:
    value = {"r": Within(4, 8), "t": (1, 2), "p": Path("a/b"), "s": {3, 1}, 5: None}
    assert to_jsonable(value) == {"r": {"within": [4, 8]}, "t": [1, 2], "p": "a/b", "s": [1, 3], "5": None}


async def test_report_md_has_one_table_per_scenario_with_cases_as_rows(tmp_path: Path) -> None:
    results, md, _js = await make_report(tmp_path)
    text = md.read_text()
    assert "**6 cells: ✅ 4 passed, ❌ 1 failed, 💥 1 error(s)** · wall time 1.5 s" in text
    assert "## F — A fake scenario" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "case |" not in line]
    header = next(line for line in text.splitlines() if line.startswith("| case |"))
    columns = [c.strip() for c in header.strip("|").split("|")][1:]
    assert columns == list(dict.fromkeys(r.cell.assignment for r in results))
    assert "client=kernel server=utcp [linux] (sim)" in columns and "client=kernel server=kernel" in columns
    rows = {
        row.split("|")[1].strip(): [c.strip() for c in row.strip().strip("|").split("|")[1:]] for row in table
    }
    assert rows["`reset`"][columns.index("client=utcp server=kernel (sim)")].startswith("[✅ reset](#cell-")
    assert rows["`reset`"][columns.index("client=kernel server=utcp [linux] (sim)")] == ""  # no such cell
    assert rows["`boom`"][columns.index("client=utcp server=utcp [linux] (sim)")].startswith("[💥 error](#")
    wrong = rows["`wrong`"][columns.index("client=utcp server=utcp [linux] (sim)")]
    assert wrong.startswith("[❌ expected nonsense, saw connected](#cell-")
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):  # every link lands on a section
        assert f'<a id="{anchor}"></a>' in text


async def test_report_md_shows_the_deliberately_wrong_expectation_as_a_diff(tmp_path: Path) -> None:
    results, md, _js = await make_report(tmp_path)
    text = md.read_text()
    wrong = next(r for r in results if r.cell.case == "wrong")
    assert diff_lines(wrong) == ["- expected outcome: 'nonsense'", "+ observed outcome: 'connected'"]
    assert "```diff\n- expected outcome: 'nonsense'\n+ observed outcome: 'connected'\n```" in text
    assert "| `outcome` | 'nonsense' | 'connected' | ❌ |" in text
    assert "## Failures" in text and "❌ expected nonsense, saw connected" in text


async def test_every_ladder_is_a_well_formed_sequence_diagram(tmp_path: Path) -> None:
    _results, md, _js = await make_report(tmp_path)
    blocks = _mermaid_blocks(md.read_text())
    assert len(blocks) == 6
    for lines in blocks:
        assert lines[0] == "sequenceDiagram"
        declared = [m[1] for line in lines if (m := re.fullmatch(r"    participant (p\d+) as (.+)", line))]
        arrows = [re.fullmatch(r"    (p\d+)->>(p\d+): (.+)", line) for line in lines[1 + len(declared) :]]
        assert declared == ["p0", "p1"] and all(arrows)
        for arrow in arrows:
            assert arrow is not None and {arrow[1], arrow[2]} <= set(declared)
            assert not re.search(r"[;#<>]", re.sub(r"#\w+;", "", arrow[3]))  # only entity codes
    assert (
        "p0->>p1: 0.000 40000 #gt; 80 S seq 1000, win 64240, [mss 1460,sackOK,TS val 1 ecr 0,wscale 7,eol]"
        in ("\n".join(blocks[0]))
    )


def test_mermaid_text_escapes_what_mermaid_would_misread() -> None:
    assert mermaid_text("a;b #1 <x>") == "a#59;b #35;1 #lt;x#gt;"
    assert mermaid_text("two\nlines") == "two lines"


def test_a_long_trace_is_capped_with_a_note() -> None:
    trace = [
        Packet(i * 0.1, "l", "a" if i % 2 else "b", "b" if i % 2 else "a", "x")
        for i in range(LADDER_LIMIT + 5)
    ]
    lines = mermaid_ladder(trace).splitlines()
    assert sum("->>" in line for line in lines) == LADDER_LIMIT
    assert lines[-1] == "    Note over p0,p1: ... 5 more packets (see the pcaps)"


def test_a_self_connection_is_one_participant() -> None:
    trace = [
        Packet(
            0.0, "lo", "host", "host", "198.18.0.1.5000 > 198.18.0.1.5000: Flags [S], seq 7, win 1, length 0"
        )
    ]
    assert mermaid_ladder(trace).splitlines() == [
        "sequenceDiagram",
        "    participant p0 as host",
        "    p0->>p0: 0.000 5000 #gt; 5000 S seq 7, win 1",
    ]


def test_compact_keeps_payload_lengths_and_leaves_other_lines_alone() -> None:
    line = "10.0.0.1.1 > 10.0.0.2.2: Flags [P.], seq 1:11, ack 5, win 9, length 10"
    assert compact(line) == "1 > 2 P. seq 1:11, ack 5, win 9, length 10"
    assert compact("malformed (3 bytes): short") == "malformed (3 bytes): short"
