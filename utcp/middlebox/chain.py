"""Boxes in series as one box: `Chain(lb, toa)` is what a packet meets crossing an LB, then an RS-side box.

`boxes[0]` faces the clients, `boxes[-1]` the servers. A packet travelling TO_SERVER enters the first box;
whatever a box emits TO_SERVER goes on into the next one, and leaves the chain after the last. A packet
travelling TO_CLIENT enters the last box and walks back the same way. What a box emits in the other
direction (an LB's RST to the client on expiry, say) walks back through the boxes before it. Timers:
the chain's deadline is the earliest of its boxes', and what a timer emits walks on like any output.

`process_bytes` is there when the runtime wants the byte path: each box's own `process_bytes` is used
where it has one, its `process` (parse, rewrite, encode) where it has not, so a FullNAT LB keeps its
incremental-checksum fast path inside a chain. `stats` holds each box's counters prefixed with its
index and class (`0.FullNat.lb_in_packets`), refreshed after every call; the malformed-packet counters
(`dropped_unparseable`, `dropped_bad_checksum`) also appear unprefixed, summed over the boxes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from utcp.middlebox.base import (
    DROPPED_BAD_CHECKSUM,
    DROPPED_UNPARSEABLE,
    Direction,
    Emit,
    Middlebox,
    RawEmit,
    Stats,
)
from utcp.middlebox.conntrack import ConnEntry
from utcp.wire.codec import build_ipv4
from utcp.wire.errors import WireError
from utcp.wire.packet import IPv4Packet

__all__ = ["Chain"]

ENCODE_ERRORS = "chain_encode_errors"  # a box emitted a value the encoder refused (counted, dropped)

_MALFORMED = (DROPPED_UNPARSEABLE, DROPPED_BAD_CHECKSUM)
_BytesProcess = Callable[[bytes, Direction, float], list[RawEmit]]


class Chain:
    """Middleboxes in series, driven as one (see the module docstring)."""

    def __init__(self, boxes: Sequence[Middlebox]) -> None:
        if not boxes:
            raise ValueError("a chain needs at least one box")
        self.boxes = tuple(boxes)
        self.stats = Stats()
        self._errors = 0

    # --- the Middlebox interface -------------------------------------------------------------------

    def process(self, packet: IPv4Packet | bytes, direction: Direction, now: float) -> list[Emit]:
        start = 0 if direction is Direction.TO_SERVER else len(self.boxes) - 1
        out = self._walk(start, self.boxes[start].process(packet, direction, now), now)
        self._refresh()
        return out

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (box.next_deadline() for box in self.boxes) if d is not None]
        return min(deadlines) if deadlines else None

    def on_timer(self, now: float) -> list[Emit]:
        out: list[Emit] = []
        for index, box in enumerate(self.boxes):
            deadline = box.next_deadline()
            if deadline is not None and deadline <= now:
                out.extend(self._walk(index, box.on_timer(now), now))
        self._refresh()
        return out

    def process_bytes(self, data: bytes, direction: Direction, now: float) -> list[RawEmit]:
        """`process` on encoded packets: the bytes each box emits go into the next one."""
        start = 0 if direction is Direction.TO_SERVER else len(self.boxes) - 1
        out = self._walk_bytes(start, self._bytes_step(start, data, direction, now), now)
        self._refresh()
        return out

    # --- inspection ---------------------------------------------------------------------------------

    def entries(self) -> list[ConnEntry[Any]]:
        """The conntrack entries of every box that keeps a table, first box first (for `status()`)."""
        out: list[ConnEntry[Any]] = []
        for box in self.boxes:
            entries = getattr(box, "entries", None)
            if callable(entries):
                out.extend(entries())
        return out

    # --- walking (depth first, so the chain's output keeps the boxes' emission order) ------------------

    def _next(self, index: int, direction: Direction) -> int | None:
        following = index + (1 if direction is Direction.TO_SERVER else -1)
        return following if 0 <= following < len(self.boxes) else None

    def _walk(self, index: int, emits: list[Emit], now: float) -> list[Emit]:
        """Emits of box `index` carried on through the boxes they travel towards."""
        out: list[Emit] = []
        for emit in emits:
            following = self._next(index, emit.direction)
            if following is None:
                out.append(emit)
            else:
                further = self.boxes[following].process(emit.packet, emit.direction, now)
                out.extend(self._walk(following, further, now))
        return out

    def _walk_bytes(self, index: int, emits: list[RawEmit], now: float) -> list[RawEmit]:
        out: list[RawEmit] = []
        for emit in emits:
            following = self._next(index, emit.direction)
            if following is None:
                out.append(emit)
            else:
                further = self._bytes_step(following, emit.data, emit.direction, now)
                out.extend(self._walk_bytes(following, further, now))
        return out

    def _bytes_step(self, index: int, raw: bytes, direction: Direction, now: float) -> list[RawEmit]:
        box = self.boxes[index]
        fast: _BytesProcess | None = getattr(box, "process_bytes", None)
        if fast is not None:
            return fast(raw, direction, now)
        out: list[RawEmit] = []
        for emit in box.process(raw, direction, now):
            try:
                out.append(RawEmit(build_ipv4(emit.packet), emit.direction))
            except (WireError, ValueError):
                self._errors += 1
        return out

    def _refresh(self) -> None:
        # In place: a runtime may hold on to `stats` across calls (BoxRuntime reads it per batch).
        stats = self.stats
        stats.clear()
        for index, box in enumerate(self.boxes):
            prefix = f"{index}.{type(box).__name__}."
            for name, value in box.stats.items():
                stats[prefix + name] = value
                if name in _MALFORMED:  # also unprefixed, where a runtime looks for them
                    stats[name] += value
        if self._errors:
            stats[ENCODE_ERRORS] = self._errors
