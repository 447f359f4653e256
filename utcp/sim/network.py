"""A whole topology in one process on virtual time: nodes, links, routes and an event loop.

Nodes are sans-IO (a utcp `Host` is one; middleboxes will be): the network feeds them packets with
`receive(packet, now)`, collects `packets_to_send(now)`, and fires `on_timer(now)` at `next_deadline()`.
Time jumps straight to the next event (a packet arrival or a node deadline), so a 60 s TIME_WAIT costs
nothing and every run with the same seeds is identical.

Routing: a packet from node X to address D goes to the next hop chosen by X's static routes (longest
prefix), else to the node owning D if X has a link to it. The next hop receives the packet whether or not
it owns D, so a middlebox placed on the path by routes sees (and may rewrite) everything.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from utcp.sim.impair import Impairment, RandomImpairment
from utcp.wire.codec import build_ipv4, parse_ipv4
from utcp.wire.errors import WireError
from utcp.wire.packet import (
    IPv4Packet,
    TcpSegment,
    options_length,
)

__all__ = [
    "CaptureRecord",
    "Link",
    "LinkDirection",
    "Network",
    "Node",
    "SimulationError",
    "ipv4_wire_length",
]


class Node(Protocol):
    """What the network drives. `utcp.tcp.host.Host` satisfies it."""

    def receive(self, packet: IPv4Packet, now: float) -> None: ...

    def packets_to_send(self, now: float) -> list[IPv4Packet]: ...

    def next_deadline(self) -> float | None: ...

    def on_timer(self, now: float) -> None: ...


class SimulationError(RuntimeError):
    """The simulation cannot go on: a runaway loop, a stuck timer, a bad topology."""


def ipv4_wire_length(packet: IPv4Packet) -> int:
    """Bytes the packet takes on the wire (IPv4 + TCP headers with options padded to 4, payload)."""
    ip_header = 20 + (len(packet.options) + 3) // 4 * 4
    payload = packet.payload
    if isinstance(payload, TcpSegment):
        options = options_length(payload.options)
        return ip_header + 20 + (options + 3) // 4 * 4 + len(payload.payload)
    return ip_header + len(payload)


CaptureEvent = Literal["send", "deliver", "drop"]


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """One packet seen on a link: when, where, and what happened to it."""

    time: float
    link: str
    src_node: str
    dst_node: str
    event: CaptureEvent
    packet: IPv4Packet
    reason: str = ""


@dataclass(slots=True)
class LinkDirection:
    """One direction of a link: latency, optional bandwidth with a tail-drop queue, optional impairment."""

    src: str
    dst: str
    latency: float
    bandwidth: float | None  # bits per second; None: infinite
    queue_bytes: int | None  # tail-drop limit of the transmit queue (with bandwidth)
    impairment: RandomImpairment[IPv4Packet] | None
    busy_until: float = 0.0
    counters: Counter[str] = field(default_factory=Counter)

    def schedule(
        self, packet: IPv4Packet, size: int, now: float
    ) -> tuple[list[tuple[float, IPv4Packet]], str]:
        """Delivery times for `packet` entering the link at `now`, or ([], reason) when it is lost."""
        if self.impairment is not None:
            copies = self.impairment.apply(packet, now)
            if not copies:
                self.counters["impairment_drops"] += 1
                return [], "impairment"
        else:
            copies = [(now, packet)]
        out: list[tuple[float, IPv4Packet]] = []
        for at, copy in copies:
            sent_at = now
            if self.bandwidth is not None:
                start = max(now, self.busy_until)
                backlog = (start - now) * self.bandwidth / 8
                if self.queue_bytes is not None and backlog + size > self.queue_bytes:
                    self.counters["queue_drops"] += 1
                    continue
                self.busy_until = start + size * 8 / self.bandwidth
                sent_at = self.busy_until
            out.append((sent_at + self.latency + (at - now), copy))
        if not out:
            return [], "queue"
        self.counters["packets"] += 1
        self.counters["bytes"] += size
        return out, ""


@dataclass(slots=True)
class Link:
    """A bidirectional link between two nodes."""

    a: str
    b: str
    ab: LinkDirection
    ba: LinkDirection
    capture: bool

    @property
    def name(self) -> str:
        return f"{self.a}<->{self.b}"

    def direction(self, src: str) -> LinkDirection:
        return self.ab if src == self.a else self.ba


@dataclass(slots=True)
class _Attached:
    name: str
    node: Node
    addresses: frozenset[str]
    routes: list[tuple[ipaddress.IPv4Network, str]] = field(default_factory=list)


@dataclass(order=True, slots=True)
class _InFlight:
    time: float
    seq: int
    dst: str = field(compare=False)
    link: Link = field(compare=False)
    src: str = field(compare=False)
    packet: IPv4Packet | bytes = field(compare=False)


class Network:
    """Nodes, links and routes on one virtual clock (`now`, seconds)."""

    def __init__(
        self,
        *,
        start_time: float = 0.0,
        wire_roundtrip: bool = False,
        capture: bool = False,
        max_iterations_per_instant: int = 10_000,
        max_steps: int = 5_000_000,
    ) -> None:
        """`wire_roundtrip`: every packet crossing a link is built to bytes and parsed back with
        `utcp.wire.codec` (exercises the wire layer; an unparsable packet is counted and dropped).
        `capture`: default for new links (record every packet in `captures`).
        `max_iterations_per_instant` / `max_steps`: guards against a zero-time loop or a runaway run."""
        self.now = start_time
        self.wire_roundtrip = wire_roundtrip
        self.capture_default = capture
        self.max_iterations_per_instant = max_iterations_per_instant
        self.max_steps = max_steps
        self.counters: Counter[str] = Counter()
        self.captures: list[CaptureRecord] = []
        self._nodes: dict[str, _Attached] = {}
        self._owner: dict[str, str] = {}
        self._links: dict[frozenset[str], Link] = {}
        self._in_flight: list[_InFlight] = []
        self._seq = itertools.count()
        self._hooks: list[Callable[[float], None]] = []

    # --- topology ---------------------------------------------------------------------------------------

    def add_node(self, name: str, node: Node, addresses: Iterable[str] | None = None) -> Node:
        """Attach `node` under `name`; it owns `addresses` (default: its `.addresses` attribute)."""
        if name in self._nodes:
            raise SimulationError(f"node {name!r} already attached")
        if addresses is None:
            addresses = getattr(node, "addresses", ())
        owned = frozenset(str(ipaddress.IPv4Address(a)) for a in addresses)
        for address in owned:
            if address in self._owner:
                raise SimulationError(f"{address} already owned by {self._owner[address]!r}")
        self._nodes[name] = _Attached(name, node, owned)
        for address in owned:
            self._owner[address] = name
        return node

    def node(self, name: str) -> Node:
        return self._nodes[name].node

    @property
    def node_names(self) -> list[str]:
        return list(self._nodes)

    def link(
        self,
        a: str,
        b: str,
        *,
        latency: float = 0.0,
        bandwidth: float | None = None,
        queue_bytes: int | None = None,
        impairment: Impairment | None = None,
        impairment_back: Impairment | None = None,
        capture: bool | None = None,
    ) -> Link:
        """Link nodes `a` and `b`. `impairment` applies a->b, `impairment_back` b->a (default: the same
        config, with an independent random stream). `bandwidth` in bits per second."""
        for name in (a, b):
            if name not in self._nodes:
                raise SimulationError(f"unknown node {name!r}")
        if a == b:
            raise SimulationError("a link joins two different nodes")
        key = frozenset((a, b))
        if key in self._links:
            raise SimulationError(f"{a} and {b} are already linked")
        if latency < 0 or (bandwidth is not None and bandwidth <= 0):
            raise SimulationError("latency must be >= 0 and bandwidth > 0")
        back = impairment if impairment_back is None else impairment_back

        def direction(src: str, dst: str, imp: Impairment | None) -> LinkDirection:
            random_imp = None if imp is None else RandomImpairment[IPv4Packet](imp, salt=f"{src}>{dst}")
            return LinkDirection(src, dst, latency, bandwidth, queue_bytes, random_imp)

        link = Link(
            a,
            b,
            direction(a, b, impairment),
            direction(b, a, back),
            self.capture_default if capture is None else capture,
        )
        self._links[key] = link
        return link

    def get_link(self, a: str, b: str) -> Link:
        return self._links[frozenset((a, b))]

    def add_route(self, node: str, prefix: str, via: str) -> None:
        """Send `node`'s packets for `prefix` (e.g. "198.18.0.2/32", "0.0.0.0/0") to neighbour `via`."""
        if frozenset((node, via)) not in self._links:
            raise SimulationError(f"{node} has no link to {via}")
        routes = self._nodes[node].routes
        routes.append((ipaddress.IPv4Network(prefix), via))
        routes.sort(key=lambda r: r[0].prefixlen, reverse=True)

    def add_hook(self, hook: Callable[[float], None]) -> None:
        """Call `hook(now)` after every round of deliveries and timers (applications, event drains)."""
        self._hooks.append(hook)

    def next_hop(self, src: str, dst_address: str) -> str | None:
        """The neighbour `src` sends a packet for `dst_address` to, or None (no route)."""
        dst = ipaddress.IPv4Address(dst_address)
        for network, via in self._nodes[src].routes:
            if dst in network:
                return via
        owner = self._owner.get(str(dst))
        if owner is not None and frozenset((src, owner)) in self._links:
            return owner
        return None

    # --- packets ----------------------------------------------------------------------------------------

    def send(self, src: str, packet: IPv4Packet) -> None:
        """Put `packet` on the wire from node `src` at `now` (nodes' output goes through here)."""
        attached = self._nodes[src]
        if packet.dst in attached.addresses:
            # The host delivers to itself (engine-api.md: self-delivery); we only see it for captures.
            self.counters["loopback"] += 1
            if self.capture_default:
                self.captures.append(CaptureRecord(self.now, f"{src}:lo", src, src, "send", packet))
            return
        hop = self.next_hop(src, packet.dst)
        if hop is None:
            self.counters["no_route"] += 1
            return
        link = self._links[frozenset((src, hop))]
        wire: IPv4Packet | bytes = packet
        if self.wire_roundtrip:
            wire = build_ipv4(packet)
            size = len(wire)
        else:
            size = ipv4_wire_length(packet)
        copies, reason = link.direction(src).schedule(packet, size, self.now)
        if link.capture:
            self.captures.append(CaptureRecord(self.now, link.name, src, hop, "send", packet))
            if not copies:
                self.captures.append(CaptureRecord(self.now, link.name, src, hop, "drop", packet, reason))
        if not copies:
            self.counters[f"dropped_{reason}"] += 1
            return
        for at, _copy in copies:
            heapq.heappush(self._in_flight, _InFlight(at, next(self._seq), hop, link, src, wire))

    def _deliver(self, item: _InFlight) -> None:
        packet: IPv4Packet
        if isinstance(item.packet, bytes):
            try:
                packet = parse_ipv4(item.packet)
            except WireError:
                self.counters["dropped_wire_error"] += 1
                return
        else:
            packet = item.packet
        if item.link.capture:
            self.captures.append(
                CaptureRecord(self.now, item.link.name, item.src, item.dst, "deliver", packet)
            )
        self.counters["delivered"] += 1
        self._nodes[item.dst].node.receive(packet, self.now)

    def _flush(self) -> int:
        sent = 0
        for attached in self._nodes.values():
            for packet in attached.node.packets_to_send(self.now):
                self.send(attached.name, packet)
                sent += 1
        return sent

    # --- the event loop ---------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Packets on the wire right now."""
        return len(self._in_flight)

    def next_event_time(self) -> float | None:
        """The earliest pending packet arrival or node deadline, or None when nothing is pending."""
        times = [n.node.next_deadline() for n in self._nodes.values()]
        candidates = [t for t in times if t is not None]
        if self._in_flight:
            candidates.append(self._in_flight[0].time)
        return min(candidates) if candidates else None

    def settle(self) -> None:
        """Run everything due at `now` (deliveries, timers, hooks, output) until nothing more is."""
        now = self.now
        for _ in range(self.max_iterations_per_instant):
            self._flush()
            progressed = False
            while self._in_flight and self._in_flight[0].time <= now:
                self._deliver(heapq.heappop(self._in_flight))
                progressed = True
            for attached in self._nodes.values():
                deadline = attached.node.next_deadline()
                if deadline is not None and deadline <= now:
                    attached.node.on_timer(now)
                    progressed = True
            for hook in self._hooks:
                hook(now)
            if self._flush():
                progressed = True
            if not progressed:
                return
        stuck = [
            a.name for a in self._nodes.values() if (d := a.node.next_deadline()) is not None and d <= now
        ]
        raise SimulationError(
            f"no progress after {self.max_iterations_per_instant} rounds at t={now}: "
            f"deadlines stuck in the past on {stuck}, {self.in_flight} packets in flight"
        )

    def step(self, until: float | None = None) -> bool:
        """Settle `now`, then advance to the next event (not past `until`). False when nothing is pending
        (or the next event lies beyond `until`)."""
        self.settle()
        at = self.next_event_time()
        if at is None or (until is not None and at > until):
            return False
        self.now = max(self.now, at)
        self.settle()
        return True

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Advance until `predicate()` holds (True) or `timeout` virtual seconds pass (False)."""
        end = self.now + timeout
        for _ in range(self.max_steps):
            self.settle()
            if predicate():
                return True
            at = self.next_event_time()
            if at is None or at > end:
                self.now = max(self.now, end)
                self.settle()
                return predicate()
            self.now = max(self.now, at)
        raise SimulationError(f"run_until: more than {self.max_steps} steps (t={self.now})")

    def run_for(self, seconds: float) -> None:
        """Advance exactly `seconds` of virtual time, processing every event on the way."""
        self.run_until(lambda: False, seconds)

    def run_until_idle(self, timeout: float = 3600.0) -> bool:
        """Advance until no packet is in flight and no node has a deadline (True), or `timeout` (False)."""
        return self.run_until(lambda: self.next_event_time() is None, timeout)
