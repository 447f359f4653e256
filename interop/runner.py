"""Running cells: each in its own directory with its own `CellContext`, concurrently in one trio run.

Netns cells spend their time waiting on namespaces, processes and the network, so they run side by side
under a `trio.CapacityLimiter(jobs)`. Sim cells are short synchronous CPU work (virtual time): they run
first, one after another, so they never stall the event loop while netns cells are timing something.
A cell that raises or times out becomes a failed result with the error text; it never ends the run.
"""

from __future__ import annotations

import ipaddress
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import trio

from interop.model import Cell, Observation, Packet, Scenario, compare
from utcp.wire.codec import parse_ipv4
from utcp.wire.errors import WireError
from utcp.wire.format import format_packet
from utcp.wire.pcap import PcapWriter

Progress = Callable[["CellResult", int, int], None]  # (result, cells done, cells in all)

_TRACEBACK_FRAMES = 3  # enough to see where in the scenario it broke, short enough for a table


@dataclass
class CellResult:
    """One cell's run: what it saw (None when it raised), the diff against its expectation, timing.

    `notes`, `trace` and `pcaps` are kept for failed and errored cells too (an error's packets are
    what explains it)."""

    cell: Cell
    observation: Observation | None
    mismatches: list[str]
    error: str | None
    seconds: float
    notes: list[str] = field(default_factory=list)
    trace: list[Packet] = field(default_factory=list)
    pcaps: list[Path] = field(default_factory=list)  # relative to the run's out_dir

    @property
    def passed(self) -> bool:
        return self.error is None and self.observation is not None and not self.mismatches

    @property
    def status(self) -> str:
        """`passed`, `failed` (expectation not met) or `error` (raised or timed out)."""
        if self.error is not None or self.observation is None:
            return "error"
        return "failed" if self.mismatches else "passed"


SAME_PACKET = 0.05  # seconds: the same packet seen on two links within this is one packet


def _safe_name(link: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in link) or "link"


def _ipv4_addresses(raw: bytes) -> tuple[str, str]:
    """Source and destination from an IPv4 header too broken to parse fully, or `?`."""
    if len(raw) >= 20 and raw[0] >> 4 == 4:
        return str(ipaddress.IPv4Address(raw[12:16])), str(ipaddress.IPv4Address(raw[16:20]))
    return "?", "?"


class RunnerContext:
    """interop.model.CellContext for one cell: pcaps per link under `directory`, a trace, labels, notes."""

    def __init__(self, cell: Cell, directory: Path) -> None:
        self.cell = cell
        self.directory = directory
        self._labels: dict[str, str] = {}
        self._notes: list[str] = []
        self._trace: list[Packet] = []  # src/dst are addresses until `finish` applies the labels
        self._files: dict[str, tuple[IO[bytes], PcapWriter]] = {}
        self._pcaps: list[Path] = []
        self._start = trio.current_time()
        self._start_monotonic = time.monotonic()
        self._epoch = time.time()  # pcap timestamps are the cell's start in wall time plus `time`
        self.malformed = 0
        self._closed = False

    def label(self, address: str, name: str) -> None:
        self._labels[address] = name

    def note(self, line: str) -> None:
        self._notes.append(line)

    def _now(self) -> float:
        try:
            return trio.current_time() - self._start
        except RuntimeError:  # called from a thread: same origin, monotonic clock
            return time.monotonic() - self._start_monotonic

    def _writer(self, link: str) -> PcapWriter:
        if link not in self._files:
            path = self.directory / f"{_safe_name(link)}.pcap"
            taken = {p.name for p in self._pcaps}
            n = 2
            while path.name in taken:  # two links whose names sanitize alike
                path = self.directory / f"{_safe_name(link)}-{n}.pcap"
                n += 1
            fileobj = path.open("wb")
            self._files[link] = (fileobj, PcapWriter(fileobj))
            self._pcaps.append(path)
        return self._files[link][1]

    def record(self, link: str, raw: bytes, time: float | None = None) -> None:
        if self._closed:  # a straggling task after the cell ended: reopening would truncate the pcap
            return
        when = self._now() if time is None else time
        raw = bytes(raw)
        self._writer(link).write(raw, self._epoch + max(when, 0.0))
        try:
            # Checksums not verified: forged or rewritten packets are exactly what a ladder must show.
            packet = parse_ipv4(raw, verify_checksums=False)
            src, dst, summary = packet.src, packet.dst, format_packet(packet)
        except WireError as exc:  # counted and shown, never fatal to the cell
            self.malformed += 1
            src, dst = _ipv4_addresses(raw)
            summary = f"malformed ({len(raw)} bytes): {exc}"
        self._trace.append(Packet(time=when, link=link, src=src, dst=dst, summary=summary))

    def close(self) -> None:
        self._closed = True
        for fileobj, _writer in self._files.values():
            fileobj.close()
        self._files.clear()

    @property
    def notes(self) -> list[str]:
        return list(self._notes)

    @property
    def pcaps(self) -> list[Path]:
        return list(self._pcaps)

    def trace(self) -> list[Packet]:
        """The recorded packets in time order, addresses replaced by their labels; a packet that crossed
        several captured links unchanged (a box that did not rewrite it, then a utcp device) is shown
        once, where it was first seen. The pcaps keep every copy."""
        named = [
            Packet(p.time, p.link, self._labels.get(p.src, p.src), self._labels.get(p.dst, p.dst), p.summary)
            for p in self._trace
        ]
        ordered = sorted(named, key=lambda p: p.time)  # stable: same-time packets keep record order
        shown: list[Packet] = []
        last_seen: dict[tuple[str, str, str], Packet] = {}
        for packet in ordered:
            key = (packet.src, packet.dst, packet.summary)
            earlier = last_seen.get(key)
            last_seen[key] = packet
            if earlier and earlier.link != packet.link and packet.time - earlier.time < SAME_PACKET:
                continue
            shown.append(packet)
        return shown


def describe_error(exc: BaseException) -> str:
    """`Type: message` (each leaf of an exception group), then the last frames of the first leaf."""
    leaves = list(_leaves(exc))
    if isinstance(exc, trio.TooSlowError):
        head = "timed out (TooSlowError)"
    else:
        head = "; ".join(f"{type(leaf).__name__}: {leaf}".rstrip(": ") for leaf in leaves)
    frames = [f for f in traceback.extract_tb(leaves[0].__traceback__) if f.filename != __file__]
    frames = frames[-_TRACEBACK_FRAMES:]  # the runner's own frame says nothing about the cell
    tail = [
        f"  at {_short_path(frame.filename)}:{frame.lineno} in {frame.name}: {(frame.line or '').strip()}"
        for frame in frames
    ]
    return "\n".join([head, *tail])


def _leaves(exc: BaseException) -> Iterable[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _short_path(filename: str) -> str:
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path


async def run_cell(scenario: Scenario, cell: Cell, out_dir: Path) -> CellResult:
    """Run one cell in `out_dir/cells/<slug>/` and compare what it saw with its expectation."""
    directory = out_dir / "cells" / cell.slug
    if directory.exists():
        shutil.rmtree(directory)  # a previous run's pcaps would be mistaken for this one's
    directory.mkdir(parents=True)
    ctx = RunnerContext(cell, directory)
    started = time.monotonic()
    observation: Observation | None = None
    error: str | None = None
    try:
        with trio.fail_after(cell.timeout):
            returned = await scenario.run(cell, ctx)
        if not isinstance(returned, Observation):
            raise TypeError(f"{scenario.name}.run returned {type(returned).__name__}, not an Observation")
        observation = returned
    except Exception as exc:
        error = describe_error(exc)
        if isinstance(exc, trio.TooSlowError):
            error = error.replace("timed out", f"timed out after {cell.timeout:g} s", 1)
    finally:
        ctx.close()
    seconds = time.monotonic() - started
    notes = ctx.notes + (observation.notes if observation else [])
    trace = (observation.trace if observation and observation.trace else None) or ctx.trace()
    own = [p if p.is_absolute() else directory / p for p in (observation.pcaps if observation else [])]
    pcaps = [_relative(p, out_dir) for p in ctx.pcaps + own]  # a scenario's own paths: under its directory
    pcaps = list(dict.fromkeys(pcaps))
    if ctx.malformed:
        notes.append(f"{ctx.malformed} recorded packet(s) did not parse as IPv4/TCP")
    if observation is not None:
        observation = Observation(values=observation.values, notes=notes, trace=trace, pcaps=pcaps)
    mismatches = compare(cell.expected, observation.values) if observation is not None else []
    return CellResult(cell, observation, mismatches, error, seconds, notes, trace, pcaps)


def _by_name(scenarios: Mapping[str, Scenario] | Iterable[Scenario]) -> dict[str, Scenario]:
    if isinstance(scenarios, Mapping):
        return dict(scenarios)
    return {scenario.name: scenario for scenario in scenarios}


async def run_cells(
    cells: Sequence[Cell],
    out_dir: Path,
    *,
    jobs: int = 4,
    progress: Progress | None = None,
    scenarios: Mapping[str, Scenario] | Iterable[Scenario],
) -> list[CellResult]:
    """Run `cells` (sim ones first, then up to `jobs` netns ones at a time); results in `cells` order."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, not {jobs}")
    by_name = _by_name(scenarios)
    missing = sorted({cell.scenario for cell in cells} - by_name.keys())
    if missing:
        raise ValueError(f"no scenario named {', '.join(missing)} among {sorted(by_name)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[int, CellResult] = {}
    total = len(cells)

    async def one(index: int, limiter: trio.CapacityLimiter | None) -> None:
        cell = cells[index]
        if limiter is None:
            result = await run_cell(by_name[cell.scenario], cell, out_dir)
        else:
            async with limiter:
                result = await run_cell(by_name[cell.scenario], cell, out_dir)
        results[index] = result
        if progress is not None:
            progress(result, len(results), total)

    for index, cell in enumerate(cells):
        if cell.backend == "sim":
            await one(index, None)
    limiter = trio.CapacityLimiter(jobs)
    async with trio.open_nursery() as nursery:
        for index, cell in enumerate(cells):
            if cell.backend != "sim":
                nursery.start_soon(one, index, limiter)
    return [results[index] for index in range(total)]
