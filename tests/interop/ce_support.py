"""A `CellContext` for the C and E tests: keeps what a cell records, in memory and under tmp_path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import trio

from interop.model import Cell, Observation, Scenario, compare


@dataclass
class ListContext:
    """interop.model.CellContext: records packets, labels and notes for inspection by a test."""

    cell: Cell
    directory: Path
    packets: list[tuple[str, bytes, float | None]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def label(self, address: str, name: str) -> None:
        self.labels[address] = name

    def record(self, link: str, raw: bytes, time: float | None = None) -> None:
        self.packets.append((link, bytes(raw), time))

    def note(self, line: str) -> None:
        self.notes.append(line)


async def run_cell(
    scenario: Scenario, cell: Cell, tmp_path: Path
) -> tuple[Observation, list[str], ListContext]:
    """Run one cell as the matrix runner would: its observation, the diff against its expectation."""
    directory = tmp_path / cell.slug
    directory.mkdir(parents=True, exist_ok=True)
    ctx = ListContext(cell, directory)
    with trio.fail_after(cell.timeout):
        observation = await scenario.run(cell, ctx)
    return observation, compare(cell.expected, observation.values), ctx


def find(cells: list[Cell], case: str, assignment: str) -> Cell:
    """The cell of `case` whose column label is `assignment` (e.g. "host=utcp [linux] (sim)")."""
    matching = [c for c in cells if c.case == case and c.assignment == assignment]
    assert len(matching) == 1, f"{case} {assignment}: {[c.assignment for c in cells if c.case == case]}"
    return matching[0]
