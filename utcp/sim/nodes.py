"""Small nodes for topologies: a router that forwards everything, and a scripted endpoint for tests."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections import Counter
from collections.abc import Callable

from utcp.wire.packet import IPv4Packet

__all__ = ["HoldBack", "Router", "ScriptedNode"]


class Router:
    """Forwards every packet it receives (RFC 791: TTL decremented, dropped at zero). Owns no address
    unless given some; put it on a path with `Network.add_route`."""

    def __init__(self, addresses: tuple[str, ...] = (), *, decrement_ttl: bool = True) -> None:
        self.addresses = addresses
        self.decrement_ttl = decrement_ttl
        self.counters: Counter[str] = Counter()
        self._queue: list[IPv4Packet] = []

    def receive(self, packet: IPv4Packet, now: float) -> None:
        if self.decrement_ttl:
            if packet.ttl <= 1:
                self.counters["ttl_exceeded"] += 1  # RFC 791: "the datagram must be destroyed"
                return
            packet = dataclasses.replace(packet, ttl=packet.ttl - 1)
        self.counters["forwarded"] += 1
        self._queue.append(packet)

    def packets_to_send(self, now: float) -> list[IPv4Packet]:
        out, self._queue = self._queue, []
        return out

    def next_deadline(self) -> float | None:
        return None

    def on_timer(self, now: float) -> None:
        return None


class ScriptedNode:
    """Sends given packets at given times and records what it receives; `reply` may answer each one."""

    def __init__(
        self,
        addresses: tuple[str, ...],
        *,
        reply: Callable[[IPv4Packet, float], list[IPv4Packet]] | None = None,
    ) -> None:
        self.addresses = addresses
        self.reply = reply
        self.received: list[tuple[float, IPv4Packet]] = []
        self._outbox: list[IPv4Packet] = []
        self._scheduled: list[tuple[float, int, IPv4Packet]] = []
        self._seq = itertools.count()

    def send_at(self, at: float, packet: IPv4Packet) -> None:
        heapq.heappush(self._scheduled, (at, next(self._seq), packet))

    def send_now(self, packet: IPv4Packet) -> None:
        self._outbox.append(packet)

    def receive(self, packet: IPv4Packet, now: float) -> None:
        self.received.append((now, packet))
        if self.reply is not None:
            self._outbox.extend(self.reply(packet, now))

    def packets_to_send(self, now: float) -> list[IPv4Packet]:
        out, self._outbox = self._outbox, []
        return out

    def next_deadline(self) -> float | None:
        return self._scheduled[0][0] if self._scheduled else None

    def on_timer(self, now: float) -> None:
        while self._scheduled and self._scheduled[0][0] <= now:
            self._outbox.append(heapq.heappop(self._scheduled)[2])


class HoldBack(Router):
    """A router that holds back the packets `select(packet, index)` picks for `hold` seconds, so later ones
    overtake them: reordering on demand (index counts the packets seen, from 0)."""

    def __init__(
        self,
        select: Callable[[IPv4Packet, int], bool],
        hold: float,
        *,
        addresses: tuple[str, ...] = (),
    ) -> None:
        super().__init__(addresses, decrement_ttl=False)
        self.select = select
        self.hold = hold
        self.seen = 0
        self._held: list[tuple[float, int, IPv4Packet]] = []
        self._seq = itertools.count()

    def receive(self, packet: IPv4Packet, now: float) -> None:
        index = self.seen
        self.seen += 1
        if self.select(packet, index):
            self.counters["held"] += 1
            heapq.heappush(self._held, (now + self.hold, next(self._seq), packet))
            return
        super().receive(packet, now)

    def next_deadline(self) -> float | None:
        return self._held[0][0] if self._held else None

    def on_timer(self, now: float) -> None:
        while self._held and self._held[0][0] <= now:
            super().receive(heapq.heappop(self._held)[2], now)
