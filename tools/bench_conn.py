"""Microbenchmark of the trio runtime and user API for short connections, in one process.

The workload of tools/bench's `conn_per_s_*` figures (connect, 1 byte each way, close), with the
kernel replaced by a utcp `Host` driven synchronously inside the link (`EnginePeerLink`): every packet
the runtime writes is fed to the peer at once, and the peer's answers are queued for the runtime's
reader, as a TUN device does with the kernel's. The peer's own CPU time is measured and subtracted
(thread time: preemption does not count), so the figure is the CPU the utcp side spends per
connection: the engine plus everything in utcp.io and trio, without the device's syscalls. Still
noisy on a shared VM: compare medians of alternating runs, or count instructions (valgrind
--tool=callgrind on two connection counts; the slope is per connection, the peer's share included).

Run: .venv/bin/python -m tools.bench_conn [--count N] [--runs R] [server|client ...]
  server: a utcp server under trio.serve_listeners, the peer a client with 4 connections in flight
  pool:   the same with utcp.io.serve_workers (8 handler tasks) in place of serve_listeners
  pool-cork: pool with rr_corked_handler (TCP_CORK: the reply and the FIN in one segment)
  client: 8 utcp client tasks, the peer an rr-server
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import statistics
import time
from collections.abc import Awaitable, Callable

import structlog
import trio

from tools.bench.kernel_side import POOL_WORKERS, rr_corked_handler, rr_handler
from utcp.io.api import UtcpStream, open_tcp_listeners, open_tcp_stream, serve_workers
from utcp.io.runtime import HostRuntime
from utcp.io.stack import stack_config
from utcp.tcp.config import TcpConfig
from utcp.tcp.connection import Connection
from utcp.tcp.events import Closed, Connected, DataReceived, EofReceived, Reset
from utcp.tcp.host import Host

UTCP = "198.18.0.2"
PEER = "198.18.0.1"
PORT = 5004


class EnginePeerLink:
    """A `Link` whose far end is a `Host` playing the kernel, answered inside `try_send`."""

    def __init__(self, peer: Host, mtu: int = 1500) -> None:
        self.mtu = mtu
        self.peer = peer
        peer.wire_output = True
        self.closed = False
        self.peer_seconds = 0.0
        self.on_event: Callable[[object, float], None] = lambda event, now: None
        self._inbound: list[bytes] = []
        self._lot = trio.lowlevel.ParkingLot()

    async def receive_batch(self) -> list[bytes]:
        if self._inbound:
            # A TUN reader always waits in epoll once per batch: one trip through the scheduler.
            await trio.lowlevel.cancel_shielded_checkpoint()
        while not self._inbound:
            if self.closed:
                raise trio.ClosedResourceError("link closed")
            await self._lot.park()
        batch, self._inbound = self._inbound, []
        return batch

    def try_send(self, data: bytes) -> bool:
        if self.closed:
            raise trio.ClosedResourceError("link closed")
        start = time.thread_time()
        now = trio.current_time()
        self.peer.receive(data, now)
        self.react(now)
        self.peer_seconds += time.thread_time() - start
        return True

    def react(self, now: float) -> None:
        """Let the peer's application act on its events, then queue what the peer sends."""
        peer = self.peer
        while events := peer.events():
            for event in events:
                self.on_event(event, now)
        out = peer.datagrams_to_send(now)
        if out:
            self._inbound.extend(out)
            self._lot.unpark_all()

    def kick_peer(self) -> None:
        start = time.thread_time()
        self.react(trio.current_time())
        self.peer_seconds += time.thread_time() - start

    async def wait_writable(self) -> None:
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        self.closed = True
        self._lot.unpark_all()


def _peer_host() -> Host:
    # delayed_ack 0: nothing drives the peer's timers; Linux acks at once in quickack mode anyway.
    return Host(addresses=[PEER], config=TcpConfig(delayed_ack=0.0), seed=2)


def _utcp_host() -> Host:
    return Host(addresses=[UTCP], config=stack_config(), seed=1)


async def utcp_server(
    count: int,
    in_flight: int = 4,
    workers: int | None = None,
    handler: Callable[[UtcpStream], Awaitable[None]] = rr_handler,
) -> tuple[float, float]:
    """utcp serves `count` connections from a peer client (rr-client) with `handler`, under
    trio.serve_listeners or a serve_workers pool of `workers`; (seconds, peer seconds)."""
    peer = _peer_host()
    link = EnginePeerLink(peer)
    started = 0
    finished = trio.Event()
    closed = replies = resets = 0

    def start_one(now: float) -> None:
        nonlocal started
        if started < count:
            started += 1
            peer.connect(UTCP, PORT, now)

    def on_event(event: object, now: float) -> None:
        nonlocal closed, replies, resets
        if isinstance(event, Connected):
            event.connection.send(b"x")
        elif isinstance(event, DataReceived):
            replies += len(event.connection.read())
        elif isinstance(event, EofReceived):
            event.connection.close()
            start_one(now)  # the client thread's next connect follows its close at once
        elif isinstance(event, Closed | Reset):
            resets += isinstance(event, Reset)
            closed += 1
            if closed == count:
                finished.set()

    link.on_event = on_event
    async with HostRuntime(_utcp_host(), link, linger=0.0) as rt:
        listeners = await open_tcp_listeners(rt, PORT, host=UTCP, backlog=1024)

        async with trio.open_nursery() as nursery:
            if workers is None:
                await nursery.start(trio.serve_listeners, handler, listeners)
            else:
                await nursery.start(functools.partial(serve_workers, handler, listeners, workers=workers))
            start = time.thread_time()
            peer_start = link.peer_seconds
            for _ in range(in_flight):
                start_one(trio.current_time())
            link.kick_peer()
            await finished.wait()
            seconds = time.thread_time() - start
            nursery.cancel_scope.cancel()
    if resets or replies != count:  # the workload, not a figure: every connection answered and closed
        raise RuntimeError(f"utcp server: {replies} replies and {resets} resets in {count} connections")
    return seconds, link.peer_seconds - peer_start


async def utcp_client(count: int, parallel: int = 8) -> tuple[float, float]:
    """`parallel` utcp tasks open `count` connections to a peer rr-server; (seconds, peer seconds)."""
    peer = _peer_host()
    link = EnginePeerLink(peer)
    listener = peer.listen(PEER, PORT, backlog=4096)

    def on_event(event: object, now: float) -> None:
        if isinstance(event, Connected):
            listener.accept()
        elif isinstance(event, DataReceived):
            conn: Connection = event.connection
            if conn.read(1):
                conn.send(b"y")
                conn.close()

    link.on_event = on_event
    replies = 0
    async with HostRuntime(_utcp_host(), link, linger=0.0) as rt:

        async def worker(n: int) -> None:
            nonlocal replies
            for _ in range(n):
                stream = await open_tcp_stream(rt, PEER, PORT)
                await stream.send_all(b"x")
                while data := await stream.receive_some():
                    replies += len(data)
                await stream.aclose()

        start = time.thread_time()
        async with trio.open_nursery() as nursery:
            for i in range(parallel):
                nursery.start_soon(worker, count // parallel + (1 if i < count % parallel else 0))
        seconds = time.thread_time() - start
    if replies != count:  # the workload, not a figure: every connection got its answer
        raise RuntimeError(f"utcp client: {replies} reply bytes in {count} connections")
    return seconds, link.peer_seconds


def measure(side: str, count: int) -> tuple[float, float]:
    """(utcp microseconds per connection, peer microseconds per connection) for one run."""
    gc.collect()
    sides: dict[str, Callable[[int], Awaitable[tuple[float, float]]]] = {
        "server": utcp_server,
        "pool": functools.partial(utcp_server, workers=POOL_WORKERS),
        "pool-cork": functools.partial(utcp_server, workers=POOL_WORKERS, handler=rr_corked_handler),
        "client": utcp_client,
    }
    seconds, peer_seconds = trio.run(sides[side], count)
    return (seconds - peer_seconds) / count * 1e6, peer_seconds / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sides", nargs="*", help="server, pool, pool-cork, client (default: all)")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    # as tools.bench: connection events are not logged
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for side in args.sides or ["server", "pool", "pool-cork", "client"]:
        if side not in ("server", "pool", "pool-cork", "client"):
            parser.error(f"unknown side {side!r}")
        results = [measure(side, args.count) for _ in range(args.runs)]
        utcp = [r[0] for r in results]
        peer = statistics.median(r[1] for r in results)
        print(
            f"utcp {side}: {statistics.median(utcp):6.1f} us per connection (median of {args.runs}; "
            f"min {min(utcp):.1f}, max {max(utcp):.1f}); peer {peer:.1f} us"
        )


if __name__ == "__main__":
    main()
