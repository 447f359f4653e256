"""Soak against the Linux kernel over TUN (issue 7, must-show 3, the kernel half).

N connections (default 20,000) are opened, used and closed between a utcp host and kernel sockets in one
lab namespace, in both directions (utcp client -> kernel echo server, kernel client -> utcp echo server),
at most `--concurrency` at once. Each sends 32 bytes, reads the echo and closes; the close order rotates:
client first, server first, and client abort (RST). Afterwards nothing may be left behind: utcp
connections (TIME-WAIT drains with a short `time_wait`), listener queues, runtime watches, timers and
delayed packets, trio tasks beyond the ones running before, kernel ESTAB sockets; and traced memory must be
back near the baseline taken after a warm-up.

Run (root): .venv/bin/python tools/soak_kernel.py --connections 20000   (JSON report; exit 1 on a leak)
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utcp.lab import Lab, SocketOptions
from utcp.lab.endpoints import KernelEndpoint, UtcpEndpoint
from utcp.tcp.config import TcpConfig

PAYLOAD = 32
UTCP_PORT = 7
KERNEL_PORT = 9007
MODES = ("client_first", "server_first", "abort")
DIRECTIONS = ("utcp_to_kernel", "kernel_to_utcp")
CONNECT_TIMEOUT = 10.0
PER_CONNECTION_TIMEOUT = 20.0


class QuietLogger:
    """A structlog-shaped logger that drops everything: 20,000 connections would log 100,000 lines."""

    def bind(self, **_kw: Any) -> QuietLogger:
        return self

    def _drop(self, *_args: Any, **_kw: Any) -> None:
        return None

    debug = info = warning = error = exception = _drop


@dataclass
class KernelSoakReport:
    connections: int
    concurrency: int
    completed: int
    failed: int
    failures: dict[str, int]
    by_mode: dict[str, int]
    wall_seconds: float
    connections_per_second: float
    drain_seconds: float
    states_before_drain: dict[str, int]  # utcp connections right after the last one closed
    leftover_connections: int
    leftover_states: dict[str, int]
    leftover_listener_queues: int
    leftover_watches: int
    leftover_listener_lots: int
    leftover_delayed: int
    leftover_tx_backlog: int
    next_deadline_pending: bool
    baseline_tasks: int
    final_tasks: int
    kernel_leftovers: dict[str, int]
    receive_errors: int
    traced: bool  # tracemalloc ran from the baseline on (bytes below are traced allocations since then)
    baseline_bytes: int
    peak_bytes: int
    final_bytes: int

    @property
    def memory_growth(self) -> int:
        return self.final_bytes - self.baseline_bytes

    def leaks(self, *, memory_slack: int = 4 << 20) -> list[str]:
        """What was left behind, as sentences (empty: clean)."""
        problems = []
        if self.leftover_connections:
            problems.append(f"{self.leftover_connections} utcp connections left: {self.leftover_states}")
        if self.leftover_listener_queues:
            problems.append(f"{self.leftover_listener_queues} connections left in listener queues")
        if self.leftover_watches:
            problems.append(f"{self.leftover_watches} runtime watches left")
        if self.leftover_listener_lots:
            problems.append(f"{self.leftover_listener_lots} listener parking lots left")
        if self.leftover_delayed or self.leftover_tx_backlog:
            problems.append(
                f"packets left: {self.leftover_delayed} delayed, {self.leftover_tx_backlog} queued"
            )
        if self.next_deadline_pending:
            problems.append("the host still has a timer armed")
        if self.final_tasks > self.baseline_tasks:
            problems.append(f"{self.final_tasks - self.baseline_tasks} trio tasks more than at the baseline")
        if any(state != "TIME-WAIT" for state in self.kernel_leftovers):
            problems.append(f"kernel sockets left (besides TIME-WAIT): {self.kernel_leftovers}")
        if self.receive_errors:
            problems.append(f"the engine raised on {self.receive_errors} received packets")
        if self.traced and self.memory_growth > memory_slack:
            problems.append(f"traced memory grew by {self.memory_growth} bytes (slack {memory_slack})")
        return problems


def count_tasks() -> int:
    """Every task in this trio run (the tree under the root task)."""
    total = 0
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task is None:
            continue
        total += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return total


def _payload(mode: str, index: int) -> bytes:
    # The first byte tells the server which close order this connection follows.
    head = bytes([MODES.index(mode)])
    return head + index.to_bytes(8, "big") + b"x" * (PAYLOAD - 9)


async def _receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise EOFError(f"end of stream after {len(data)} of {size} bytes")
        data += chunk
    return data


async def _drain_to_eof(stream: trio.abc.ReceiveStream) -> None:
    with trio.fail_after(PER_CONNECTION_TIMEOUT):
        while await stream.receive_some(4096):
            pass


async def echo_handler(stream: trio.abc.HalfCloseableStream) -> None:
    """Echo one request, then close as the request's first byte says (see `_payload`)."""
    try:
        with trio.fail_after(PER_CONNECTION_TIMEOUT):
            request = await _receive_exactly(stream, PAYLOAD)
            await stream.send_all(request)
            mode = MODES[request[0]]
            if mode != "server_first":
                await _drain_to_eof(stream)  # the client's FIN, or its RST
    except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError, OSError, trio.TooSlowError):
        pass
    finally:
        await stream.aclose()


async def serve(listener: trio.abc.Listener[Any], *, task_status: trio.TaskStatus[None]) -> None:
    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, OSError):
                return
            nursery.start_soon(echo_handler, stream)


@dataclass
class _Tally:
    completed: int = 0
    failures: Counter[str] = dataclasses.field(default_factory=Counter)
    by_mode: Counter[str] = dataclasses.field(default_factory=Counter)


_FAILURES = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    EOFError,
    ValueError,
)


async def one_connection(
    client: KernelEndpoint | UtcpEndpoint, target: tuple[str, int], mode: str, index: int, tally: _Tally
) -> None:
    host, port = target
    options = SocketOptions(connect_timeout=CONNECT_TIMEOUT)
    try:
        with trio.fail_after(PER_CONNECTION_TIMEOUT):
            stream = await client.connect(host, port, options=options)
            aborted = False
            try:
                payload = _payload(mode, index)
                await stream.send_all(payload)
                echoed = await _receive_exactly(stream, PAYLOAD)
                if echoed != payload:
                    raise ValueError("echo differs")
                if mode == "abort":
                    client.abort(stream)
                    aborted = True
                elif mode == "server_first":
                    await _drain_to_eof(stream)
            finally:
                if not aborted:  # also after a failure: never leave a socket open
                    await stream.aclose()
    except _FAILURES as exc:
        tally.failures[f"{type(exc).__name__}: {exc}"[:120]] += 1
        return
    tally.completed += 1
    tally.by_mode[mode] += 1


async def run_connections(
    utcp: UtcpEndpoint, kernel: KernelEndpoint, count: int, concurrency: int, start: int = 0
) -> _Tally:
    """`count` connections, alternating direction, rotating the close order, `concurrency` at a time."""
    tally = _Tally()
    jobs = iter(range(start, start + count))

    async def worker() -> None:
        for index in jobs:
            direction = DIRECTIONS[index % 2]
            mode = MODES[(index // 2) % 3]
            if direction == "utcp_to_kernel":
                await one_connection(utcp, (kernel.address, KERNEL_PORT), mode, index, tally)
            else:
                await one_connection(kernel, (utcp.address, UTCP_PORT), mode, index, tally)

    async with trio.open_nursery() as nursery:
        for _ in range(max(1, min(concurrency, count))):
            nursery.start_soon(worker)
    return tally


async def wait_drained(utcp: UtcpEndpoint, limit: float) -> float:
    """Wait until utcp holds no connection (TIME-WAIT expires); return the seconds it took."""
    started = trio.current_time()
    with trio.move_on_after(limit):
        while utcp.host.connections():
            utcp.stack.kick()
            await trio.sleep(0.05)
    # The runtime dispatches the last Closed events on its next pump.
    utcp.stack.kick()
    await trio.sleep(0.05)
    return trio.current_time() - started


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0


async def soak(
    connections: int = 20_000,
    concurrency: int = 32,
    *,
    time_wait: float = 0.5,
    warmup: int = 300,
    trace_memory: bool = True,
) -> KernelSoakReport:
    """Run the soak in a fresh lab (needs root and /dev/net/tun) and report what is left."""
    config = TcpConfig(time_wait=time_wait, fin_wait2_timeout=max(time_wait, 1.0))
    async with Lab(name="soak-kernel") as lab:
        # tcp_tw_reuse lets the kernel client reuse its TIME-WAIT ports (it closes first a third of the time).
        ns = lab.namespace("soak", sysctls={"net.ipv4.tcp_tw_reuse": 1})
        utcp = await lab.utcp(
            ns, "198.18.0.2/24", peer="198.18.0.1", config=config, logger=QuietLogger(), linger=0.0
        )
        kernel = lab.kernel(ns)
        utcp_listener = await utcp.listen(UTCP_PORT, backlog=4 * concurrency)
        kernel_listener = await kernel.listen(KERNEL_PORT, backlog=4 * concurrency)
        async with trio.open_nursery() as servers:
            await servers.start(serve, utcp_listener)
            await servers.start(serve, kernel_listener)

            # Warm-up: imports, caches, the port allocator's and heap's first growth are not leaks.
            await run_connections(utcp, kernel, warmup, concurrency, start=0)
            await wait_drained(utcp, 10 * time_wait + 5)
            if trace_memory:
                tracemalloc.start()
            baseline_bytes = _traced()
            baseline_tasks = count_tasks()

            started = time.monotonic()
            tally = await run_connections(utcp, kernel, connections, concurrency, start=warmup)
            wall = time.monotonic() - started
            # The last FIN exchanges may still be in flight for a moment: then only TIME-WAIT may remain.
            with trio.move_on_after(2.0):
                while any(c.state.name != "TIME_WAIT" for c in utcp.host.connections()):
                    await trio.sleep(0.01)
            before_drain = Counter(conn.state.name for conn in utcp.host.connections())
            drain = await wait_drained(utcp, 10 * time_wait + 10)
            final_tasks = count_tasks()
            peak_bytes = tracemalloc.get_traced_memory()[1] if trace_memory else 0
            final_bytes = _traced()
            if trace_memory:
                tracemalloc.stop()

            host, stack = utcp.host, utcp.stack
            states = Counter(conn.state.name for conn in host.connections())
            queues = sum(lst.pending + lst.syn_pending for lst in host.listeners())
            lots = len(stack._listener_lots)
            kernel_states = Counter(s.state for s in await kernel.sockets() if s.state != "LISTEN")
            report = KernelSoakReport(
                connections=connections,
                concurrency=concurrency,
                completed=tally.completed,
                failed=sum(tally.failures.values()),
                failures=dict(tally.failures.most_common(10)),
                by_mode=dict(tally.by_mode),
                wall_seconds=round(wall, 3),
                connections_per_second=round(connections / wall, 1) if wall > 0 else 0.0,
                drain_seconds=round(drain, 3),
                states_before_drain=dict(before_drain),
                leftover_connections=sum(states.values()),
                leftover_states=dict(states),
                leftover_listener_queues=queues,
                leftover_watches=len(stack._watches),
                # the utcp listener still open holds exactly one lot
                leftover_listener_lots=max(0, lots - 1),
                leftover_delayed=len(stack._delayed_in) + len(stack._delayed_out),
                leftover_tx_backlog=len(stack._tx_backlog),
                next_deadline_pending=host.next_deadline() is not None,
                baseline_tasks=baseline_tasks,
                final_tasks=final_tasks,
                kernel_leftovers=dict(kernel_states),
                receive_errors=stack.stats["receive_errors"],
                traced=trace_memory,
                baseline_bytes=baseline_bytes,
                peak_bytes=peak_bytes,
                final_bytes=final_bytes,
            )
            await utcp_listener.aclose()
            await kernel_listener.aclose()
            servers.cancel_scope.cancel()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", "-n", type=int, default=20_000)
    parser.add_argument("--concurrency", "-c", type=int, default=32)
    parser.add_argument("--time-wait", type=float, default=0.5, help="utcp's TIME-WAIT (2*MSL), seconds")
    parser.add_argument("--no-tracemalloc", action="store_true", help="faster, but no memory figures")
    args = parser.parse_args(argv)
    report = trio.run(
        lambda: soak(
            args.connections, args.concurrency, time_wait=args.time_wait, trace_memory=not args.no_tracemalloc
        )
    )
    out = dataclasses.asdict(report)
    out["memory_growth"] = report.memory_growth
    out["leaks"] = report.leaks()
    print(json.dumps(out, indent=2, sort_keys=True))
    return 1 if out["leaks"] or report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
