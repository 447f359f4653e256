"""A rule-driven impairment box: drop, delay, duplicate, reorder or hold exactly the packets you name.

Deterministic (no randomness: utcp.sim.impair has the random link model) and on virtual time. Each
`Rule` has a `Match` (direction, TCP flags, payload or not, a predicate), optionally `nth` (act only on
the n-th packet that matched this rule's `Match`, 1-based, or on several), and one action:

- `Drop()`;
- `Delay(seconds)`: emitted by `on_timer` (or the next `process`) once `now` reaches arrival + seconds;
- `Duplicate(copies)`: the packet plus `copies` more, back to back;
- `Reorder(after)`: held until `after` later packets of the same direction have passed, then emitted
  right after the last of them;
- `HoldUntil(release)`: held until a packet matching `release` has passed, then emitted right after it.
  SCENARIOS.md B: hold the client's third ACK until its SO_LINGER-0 RST has passed, so the RST overtakes.
  Both holds take `max_hold` (seconds) after which `on_timer` lets the packet go anyway.

Rules are tried in order; every rule whose `Match` matches counts the packet, and the first one whose
`nth` is due acts. A packet no rule acts on is forwarded at once. "Passing" means leaving the box, by any
path (forwarded, a duplicate, a delayed or held packet released); packets released from a hold or a delay
are not matched against the rules again. Outputs of one call are in emission order; packets due at the
same instant leave in arrival order.

`rule_stats[name]` counts per rule: matched, dropped, delayed, duplicated, held, released,
released_on_timeout. `stats` counts forwarded packets and unparseable input.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from utcp.middlebox.base import Direction, Emit, Stats, coerce_packet
from utcp.wire.packet import IPv4Packet, TcpFlags, TcpSegment

__all__ = [
    "Action",
    "Delay",
    "Drop",
    "Duplicate",
    "HoldUntil",
    "ImpairBox",
    "Match",
    "Reorder",
    "Rule",
]

FORWARDED = "forwarded"


@dataclass(frozen=True, slots=True)
class Match:
    """Which packets a rule is about. Every given criterion must hold; none given matches everything."""

    direction: Direction | None = None
    flags: TcpFlags | None = None  # exactly these flags (e.g. TcpFlags.ACK: a pure ACK, no PSH/FIN)
    flags_set: TcpFlags = TcpFlags.NONE  # at least these
    flags_clear: TcpFlags = TcpFlags.NONE  # none of these
    has_payload: bool | None = None
    predicate: Callable[[IPv4Packet], bool] | None = None

    def matches(self, packet: IPv4Packet, direction: Direction) -> bool:
        if self.direction is not None and direction is not self.direction:
            return False
        tcp_criteria = (
            self.flags is not None or self.flags_set or self.flags_clear or self.has_payload is not None
        )
        if tcp_criteria:
            seg = packet.payload
            if not isinstance(seg, TcpSegment):
                return False
            if self.flags is not None and seg.flags != self.flags:
                return False
            if seg.flags & self.flags_set != self.flags_set or seg.flags & self.flags_clear:
                return False
            if self.has_payload is not None and bool(seg.payload) != self.has_payload:
                return False
        return self.predicate is None or self.predicate(packet)


@dataclass(frozen=True, slots=True)
class Drop:
    pass


@dataclass(frozen=True, slots=True)
class Delay:
    seconds: float


@dataclass(frozen=True, slots=True)
class Duplicate:
    copies: int = 1  # extra copies: the packet leaves copies + 1 times


@dataclass(frozen=True, slots=True)
class Reorder:
    after: int = 1  # later packets (same direction) that overtake it
    max_hold: float | None = None


@dataclass(frozen=True, slots=True)
class HoldUntil:
    release: Match
    max_hold: float | None = None


Action = Drop | Delay | Duplicate | Reorder | HoldUntil


@dataclass(frozen=True, slots=True)
class Rule:
    match: Match
    action: Action
    nth: int | tuple[int, ...] | None = None  # which matches it acts on (1-based); None: all
    name: str = ""

    def __post_init__(self) -> None:
        action = self.action
        if isinstance(action, Delay) and action.seconds < 0:
            raise ValueError("delay must be >= 0")
        if isinstance(action, Duplicate) and action.copies < 1:
            raise ValueError("duplicate needs copies >= 1")
        if isinstance(action, Reorder) and action.after < 1:
            raise ValueError("reorder needs after >= 1")
        nths = (self.nth,) if isinstance(self.nth, int) else self.nth or ()
        if any(n < 1 for n in nths):
            raise ValueError("nth is 1-based")

    def acts_on(self, count: int) -> bool:
        if self.nth is None:
            return True
        if isinstance(self.nth, int):
            return count == self.nth
        return count in self.nth


@dataclass(slots=True, eq=False)
class _Held:
    packet: IPv4Packet
    direction: Direction
    rule: int
    deadline: float | None
    order: int
    remaining: int  # Reorder: packets still to pass; unused for HoldUntil
    release: Match | None  # HoldUntil


class ImpairBox:
    """The box: `process` packets, `on_timer` at `next_deadline()`."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        names = [rule.name or f"rule{i}" for i, rule in enumerate(self.rules)]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        self._names = names
        self.stats = Stats()
        self.rule_stats: dict[str, Stats] = {name: Stats() for name in names}
        self._matched = [0] * len(self.rules)
        self._held: list[_Held] = []
        self._delayed: list[tuple[float, int, IPv4Packet, Direction]] = []
        self._order = itertools.count()

    # --- the Middlebox interface ---------------------------------------------------------------------

    def process(self, packet: IPv4Packet | bytes, direction: Direction, now: float) -> list[Emit]:
        out = self.on_timer(now)  # anything due before this packet arrived leaves first
        pkt = coerce_packet(packet, self.stats)
        if pkt is None:
            return out
        for i, rule in enumerate(self.rules):
            if not rule.match.matches(pkt, direction):
                continue
            self._matched[i] += 1
            stats = self.rule_stats[self._names[i]]
            stats["matched"] += 1
            if rule.acts_on(self._matched[i]):
                return out + self._act(i, pkt, direction, now)
        self.stats[FORWARDED] += 1
        self._pass(pkt, direction, out)
        return out

    def next_deadline(self) -> float | None:
        deadlines = [h.deadline for h in self._held if h.deadline is not None]
        if self._delayed:
            deadlines.append(self._delayed[0][0])
        return min(deadlines, default=None)

    def on_timer(self, now: float) -> list[Emit]:
        out: list[Emit] = []
        while True:
            # The earliest due item (ties: arrival order) among delayed and timed-out held packets.
            due: list[tuple[float, int, _Held | None]] = []
            if self._delayed and self._delayed[0][0] <= now:
                due.append((self._delayed[0][0], self._delayed[0][1], None))
            due.extend(
                (h.deadline, h.order, h) for h in self._held if h.deadline is not None and h.deadline <= now
            )
            if not due:
                return out
            _, _, held = min(due, key=lambda d: (d[0], d[1]))
            if held is None:
                _, _, packet, direction = heapq.heappop(self._delayed)
                self._pass(packet, direction, out)
            else:
                self._held.remove(held)
                self.rule_stats[self._names[held.rule]]["released_on_timeout"] += 1
                self._pass(held.packet, held.direction, out)

    # --- inspection ----------------------------------------------------------------------------------

    def held(self) -> list[tuple[IPv4Packet, Direction]]:
        """Packets held now (reorder and hold-until), oldest first."""
        return [(h.packet, h.direction) for h in self._held]

    # --- actions -------------------------------------------------------------------------------------

    def _act(self, index: int, pkt: IPv4Packet, direction: Direction, now: float) -> list[Emit]:
        action = self.rules[index].action
        stats = self.rule_stats[self._names[index]]
        out: list[Emit] = []
        if isinstance(action, Drop):
            stats["dropped"] += 1
        elif isinstance(action, Delay):
            stats["delayed"] += 1
            heapq.heappush(self._delayed, (now + action.seconds, next(self._order), pkt, direction))
            out.extend(self.on_timer(now))  # a zero delay leaves at once
        elif isinstance(action, Duplicate):
            stats["duplicated"] += action.copies
            for _ in range(action.copies + 1):
                self._pass(pkt, direction, out)
        else:
            stats["held"] += 1
            deadline = None if action.max_hold is None else now + action.max_hold
            if isinstance(action, Reorder):
                held = _Held(pkt, direction, index, deadline, next(self._order), action.after, None)
            else:
                held = _Held(pkt, direction, index, deadline, next(self._order), 0, action.release)
            self._held.append(held)
        return out

    def _pass(self, pkt: IPv4Packet, direction: Direction, out: list[Emit]) -> None:
        """Emit one packet, then whatever its passing releases (recursively, in hold order)."""
        out.append(Emit(pkt, direction))
        released: list[_Held] = []
        for held in self._held:
            if held.release is None:
                if held.direction is direction:
                    held.remaining -= 1
                    if held.remaining == 0:
                        released.append(held)
            elif held.release.matches(pkt, direction):
                released.append(held)
        for held in released:
            self._held.remove(held)
            self.rule_stats[self._names[held.rule]]["released"] += 1
        for held in released:
            self._pass(held.packet, held.direction, out)
