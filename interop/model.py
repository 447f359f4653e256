"""The vocabulary of the interop matrix: cells, what a cell saw, and how a scenario plugs in.

A *cell* is one replay of one case of one scenario with each role played by an implementation
(`kernel` or `utcp`), a policy for the utcp roles that validate segments, and a *backend*: `netns`
(real namespaces, TUN devices, the real kernel) or `sim` (all-utcp, in-process, virtual time).
Its expectation is data written beside the scenario (SCENARIOS.md facts per implementation and
policy), never derived from a run. Running a cell gives an `Observation`; the runner compares it
with the expectation key by key.

Every expectation has an `outcome` key: a short word or two ("leftover", "reset", "crossing",
"no crossing", "self-connected", ...) shown in the summary table; the other keys are details
(counter deltas, states, attempts) compared the same way and shown in each cell's section.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Impl = Literal["kernel", "utcp"]
Backend = Literal["netns", "sim"]
IMPLS: tuple[Impl, ...] = ("kernel", "utcp")


@dataclass(frozen=True)
class Cell:
    """One scenario x case x role assignment x policy x backend."""

    scenario: str  # "A".."E"
    case: str  # a short slug naming what is replayed: "rewrite", "4-ts0", "self-connect", ...
    roles: tuple[tuple[str, Impl], ...]  # (role, implementation), in the scenario's role order
    expected: Mapping[str, Any]  # must hold "outcome"; values JSON-able, or `Within` ranges
    policy: str | None = None  # preset (or "pkg.mod:Name") of the validating utcp role, if any
    backend: Backend = "netns"
    params: Mapping[str, Any] = field(default_factory=dict)  # scenario knobs (JSON-able)
    timeout: float = 60.0  # seconds of wall time (virtual time for sim cells is the scenario's)

    def __post_init__(self) -> None:
        if "outcome" not in self.expected:
            raise ValueError(f"{self.scenario}/{self.case}: an expectation needs an 'outcome'")

    @property
    def role_map(self) -> dict[str, Impl]:
        return dict(self.roles)

    def impl(self, role: str) -> Impl:
        return self.role_map[role]

    @property
    def assignment(self) -> str:
        """The column label: `client=kernel server=utcp[linux]`, plus ` (sim)` for the sim backend."""
        parts = [f"{role}={impl}" for role, impl in self.roles]
        text = " ".join(parts) + (f" [{self.policy}]" if self.policy else "")
        return text + (" (sim)" if self.backend == "sim" else "")

    @property
    def id(self) -> str:
        """Unique and stable: `B/4-ts0/client=utcp,server=kernel/linux/netns`."""
        roles = ",".join(f"{role}={impl}" for role, impl in self.roles)
        return "/".join([self.scenario, self.case, roles, self.policy or "-", self.backend])

    @property
    def slug(self) -> str:
        """`id` made safe as a file name."""
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.id.replace("/", "__"))

    def with_expected(self, **changes: Any) -> Cell:
        """A copy with some expected values replaced (how a test makes a deliberately wrong cell)."""
        return dataclasses.replace(self, expected={**self.expected, **changes})


@dataclass
class Packet:
    """One packet of a cell's trace, for the ladder diagram: who sent it to whom, and what it was."""

    time: float  # seconds since the cell started (wall or virtual)
    link: str  # capture name, e.g. "client-lb"
    src: str  # participant label ("client", "lb", "rs", or an address when unlabelled)
    dst: str
    summary: str  # tcpdump-style one line (utcp.wire.format.format_packet)


@dataclass
class Observation:
    """What a cell saw. `values` is compared with `Cell.expected`; the rest is shown in the report."""

    values: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # human lines: what happened, in order
    trace: list[Packet] = field(default_factory=list)  # the packets for the ladder
    pcaps: list[Path] = field(default_factory=list)  # files written under the cell's directory


class CellContext(Protocol):
    """What the runner gives a scenario's `run` for one cell."""

    cell: Cell
    directory: Path  # where this cell may write pcaps and other artefacts (exists)

    def label(self, address: str, name: str) -> None:
        """Name an IPv4 address in the ladder ("198.18.1.2" -> "client")."""

    def record(self, link: str, raw: bytes, time: float | None = None) -> None:
        """One IPv4 packet seen on `link` (raw bytes as on the wire): appended to `DIR/<link>.pcap`
        and to the trace. `time` defaults to the cell's clock (trio.current_time() - start)."""

    def note(self, line: str) -> None:
        """A line of narrative for the report ("kernel server: 1 ESTABLISHED socket left")."""


RunCell = Callable[[Cell, CellContext], Awaitable[Observation]]


@dataclass(frozen=True)
class Scenario:
    """A scenario module's entry: `SCENARIO = Scenario(...)` at module level in interop/scenario_x.py."""

    name: str  # "A".."E"
    title: str  # "FullNAT + TOA: two connections cross"
    roles: tuple[str, ...]  # role names in column order: ("client", "lb", "rs")
    cells: Callable[[], Sequence[Cell]]  # every meaningful cell, expectations included
    run: RunCell  # replays one cell; may raise (the runner reports the error as a failure)
    summary: str = ""  # a paragraph for the report: what happens and why it matters


@dataclass(frozen=True)
class Within:
    """An expected number in a measured range (SCENARIOS.md E: "within 4-8 attempts")."""

    low: float
    high: float

    def matches(self, value: Any) -> bool:
        return isinstance(value, int | float) and self.low <= value <= self.high

    def __repr__(self) -> str:
        return f"{self.low}..{self.high}"


def matches(want: Any, value: Any) -> bool:
    return want.matches(value) if isinstance(want, Within) else bool(want == value)


def compare(expected: Mapping[str, Any], observed: Mapping[str, Any]) -> list[str]:
    """One line per expected key whose observed value differs (or is missing): the diff shown."""
    lines = []
    for key, want in expected.items():
        if key not in observed:
            lines.append(f"{key}: expected {want!r}, not observed")
        elif not matches(want, observed[key]):
            lines.append(f"{key}: expected {want!r}, observed {observed[key]!r}")
    return lines
