"""In-memory links: two trio-driven endpoints that carry raw IPv4 packets to each other.

They let two utcp hosts talk inside one process without any device or privilege. Each direction is a
bounded queue: a sender that finds it full is told to wait (`try_send` returns False), like a device
queue, so nothing is dropped unless an impairment says so.
"""

from __future__ import annotations

import collections

import trio

DEFAULT_CAPACITY = 4096  # packets queued per direction


class _Direction:
    def __init__(self, capacity: int) -> None:
        self.queue: collections.deque[bytes] = collections.deque()
        self.capacity = capacity
        self.readable = trio.lowlevel.ParkingLot()
        self.writable = trio.lowlevel.ParkingLot()
        self.closed = False


class MemoryLink:
    """One end of an in-memory link; see `memory_link_pair`."""

    def __init__(self, outbound: _Direction, inbound: _Direction, *, mtu: int) -> None:
        self._out = outbound
        self._in = inbound
        self.mtu = mtu
        self.closed = False
        self.oversize_dropped = 0

    async def receive_batch(self, max_packets: int = 256) -> list[bytes]:
        """Wait for at least one packet, then return everything queued (up to `max_packets`)."""
        inbound = self._in
        while not inbound.queue:
            if self.closed:
                raise trio.ClosedResourceError("link closed")
            if inbound.closed:
                raise trio.EndOfChannel("peer closed the link")
            await inbound.readable.park()
        count = min(len(inbound.queue), max_packets)
        batch = [inbound.queue.popleft() for _ in range(count)]
        inbound.writable.unpark_all()
        return batch

    def try_send(self, data: bytes) -> bool:
        """Queue one packet for the peer; False when the queue is full (call `wait_writable`)."""
        if self.closed:
            raise trio.ClosedResourceError("link closed")
        out = self._out
        if out.closed:
            return True  # nobody listens any more: the packet vanishes, as on a cable with no peer
        if len(data) > self.mtu:
            self.oversize_dropped += 1  # a real link would not carry it either
            return True
        if len(out.queue) >= out.capacity:
            return False
        out.queue.append(data)
        out.readable.unpark_all()
        return True

    async def wait_writable(self) -> None:
        out = self._out
        while len(out.queue) >= out.capacity and not out.closed and not self.closed:
            await out.writable.park()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._out.closed = True
        self._in.readable.unpark_all()
        self._out.readable.unpark_all()
        self._out.writable.unpark_all()


def memory_link_pair(*, mtu: int = 1500, capacity: int = DEFAULT_CAPACITY) -> tuple[MemoryLink, MemoryLink]:
    """Two connected link ends: what one sends the other receives, in order, losslessly."""
    a_to_b = _Direction(capacity)
    b_to_a = _Direction(capacity)
    return MemoryLink(a_to_b, b_to_a, mtu=mtu), MemoryLink(b_to_a, a_to_b, mtu=mtu)
