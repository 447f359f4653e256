"""A middlebox as a simulator node: `receive(packet, now)`, `packets_to_send(now)`, `next_deadline()`,
`on_timer(now)` (the protocol utcp.sim.network.Node describes; nothing is imported from utcp.sim).

The simulator routes by destination address and does not say which link a packet came in on, so the
adapter asks `direction_of(packet)` for the box's `Direction`; `from_networks` builds the usual one.
The directions of the emitted packets are dropped: the network routes them by their addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Literal

from utcp.middlebox.base import Direction, Emit, Middlebox, address_in
from utcp.wire.packet import IPv4Packet

__all__ = ["MiddleboxNode", "from_networks"]


def from_networks(
    client_networks: Iterable[str], *, by: Literal["src", "dst"] = "src"
) -> Callable[[IPv4Packet], Direction]:
    """TO_SERVER for packets whose source (`by="src"`) or destination (`by="dst"`) lies in one of the
    networks, TO_CLIENT for the rest. SNAT: the inside networks by source; RS-side TOA: the RS by
    destination would be `from_networks([rs], by="dst")`."""
    networks = tuple(ipaddress.IPv4Network(net) for net in client_networks)

    def direction_of(packet: IPv4Packet) -> Direction:
        address = packet.src if by == "src" else packet.dst
        return Direction.TO_SERVER if address_in(address, networks) else Direction.TO_CLIENT

    return direction_of


class MiddleboxNode:
    """Wraps a box for the simulator; `addresses` are what the node owns (an LB's VIPs and LIPs)."""

    def __init__(
        self,
        box: Middlebox,
        direction_of: Callable[[IPv4Packet], Direction],
        addresses: tuple[str, ...] = (),
    ) -> None:
        self.box = box
        self.direction_of = direction_of
        self.addresses = addresses
        self._queue: list[IPv4Packet] = []

    def receive(self, packet: IPv4Packet, now: float) -> None:
        self._take(self.box.process(packet, self.direction_of(packet), now))

    def packets_to_send(self, now: float) -> list[IPv4Packet]:
        out, self._queue = self._queue, []
        return out

    def next_deadline(self) -> float | None:
        return self.box.next_deadline()

    def on_timer(self, now: float) -> None:
        self._take(self.box.on_timer(now))

    def _take(self, emits: list[Emit]) -> None:
        self._queue.extend(emit.packet for emit in emits)
