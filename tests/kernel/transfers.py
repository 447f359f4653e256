"""Echo transfers between utcp (on a TUN in a namespace) and the Linux kernel, both directions.

Shared by the interop tests: each returns what was measured so tests can assert on it.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from tests.kernel.helpers import KERNEL, UTCP, KernelPeer
from utcp.cli.services import echo
from utcp.io.api import UtcpStream
from utcp.io.stack import UtcpStack
from utcp.lab.netns import Namespace


def payload(nbytes: int) -> bytes:
    """What kernel_peer.py's echo-client sends: the same function of nbytes."""
    return random.Random(nbytes).randbytes(nbytes)


def describe(conn: Any) -> str:
    """A connection's state and counters, for a failure message that can be reproduced from."""
    return f"{conn.local}->{conn.remote} {conn.state.name} error={conn.error!r} {conn.stats}"


@dataclass
class Transfer:
    nbytes: int
    received: int
    sha256_ok: bool
    seconds: float
    stats: Any = None  # the utcp connection's ConnectionStats at the end
    counters: dict[str, int] = field(default_factory=dict)  # the utcp host's MIB counters
    runtime: dict[str, int] = field(default_factory=dict)  # the utcp stack's runtime stats (packets, gso_out)
    kernel: dict[str, Any] = field(default_factory=dict)  # kernel_peer.py's JSON result

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / 2**20 / self.seconds


async def kernel_client_to_utcp_echo(
    ns: Namespace, nbytes: int, timeout: float = 120.0, **stack_options: Any
) -> Transfer:
    """A kernel client sends `nbytes` to a utcp echo server and reads them back."""
    conns: list[Any] = []

    async def handler(stream: trio.abc.HalfCloseableStream) -> None:
        assert isinstance(stream, UtcpStream)
        conns.append(stream.connection)
        try:
            await echo(stream)
        finally:
            await stream.aclose()

    async with UtcpStack(netns=ns.name, **stack_options) as stack:
        listeners = await stack.open_tcp_listeners(7)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handler, listeners)
            kernel = KernelPeer(ns, "echo-client", UTCP, "7", str(nbytes))
            try:
                result = await kernel.result(timeout=timeout)
            except Exception as exc:
                states = "; ".join(describe(c) for c in conns)
                raise AssertionError(f"kernel client failed ({exc}); utcp side: {states}") from None
            nursery.cancel_scope.cancel()
        counters = dict(stack.host.counters)
        runtime = dict(stack.stats)
    expected = hashlib.sha256(payload(nbytes)).hexdigest()
    return Transfer(
        nbytes=nbytes,
        received=int(result["received"]),
        sha256_ok=result["sha256"] == expected,
        seconds=float(result["seconds"]),
        stats=conns[0].stats if conns else None,
        counters=counters,
        runtime=runtime,
        kernel=result,
    )


async def utcp_client_to_kernel_echo(
    ns: Namespace, nbytes: int, port: int = 5001, timeout: float = 120.0, **stack_options: Any
) -> Transfer:
    """A utcp client sends `nbytes` to a kernel echo server and reads them back."""
    kernel = KernelPeer(ns, "echo-server", str(port))
    try:
        await kernel.ready()
        data = payload(nbytes)
        digest = hashlib.sha256()
        received = 0
        async with UtcpStack(netns=ns.name, **stack_options) as stack:
            start = time.monotonic()
            stream = await stack.open_tcp_stream(KERNEL, port)

            async def sender() -> None:
                await stream.send_all(data)
                await stream.send_eof()

            try:
                with trio.fail_after(timeout):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(sender)
                        while chunk := await stream.receive_some(1 << 16):
                            digest.update(chunk)
                            received += len(chunk)
            except trio.TooSlowError:
                raise AssertionError(
                    f"stalled after {received} bytes: {describe(stream.connection)}"
                ) from None
            seconds = time.monotonic() - start
            stats = stream.connection.stats
            await stream.aclose()
            counters = dict(stack.host.counters)
            runtime = dict(stack.stats)
        result = await kernel.result(timeout=60)
    finally:
        kernel.stop()
    return Transfer(
        nbytes=nbytes,
        received=received,
        sha256_ok=digest.hexdigest() == hashlib.sha256(data).hexdigest(),
        seconds=seconds,
        stats=stats,
        counters=counters,
        runtime=runtime,
        kernel=result,
    )
