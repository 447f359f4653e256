"""One command for every performance figure of issue 6, measured in namespaces it creates.

    sudo .venv/bin/python -m tools.bench [--quick] [--json FILE] [--only NAME ...] [--no-matrix]
                                           [--jumbo-mtu MTU] [--client-threads N]

Prints a table of figures, each with its ratio to the kernel-to-kernel baseline of the same run (the
machine may be shared: only ratios from one run compare). Addresses are 198.18.0.0/15 only, every
namespace is deleted in `finally`, and every process started is ended by its PID.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog
import trio

from tools.bench.kernel_side import RR_CLIENT_THREADS, pool_workers, rr_corked_handler, rr_handler
from utcp.cli.common import OneLineParser, UsageError, check_output_path, count_argument, mtu_argument
from utcp.io.api import UtcpStream, serve_workers
from utcp.io.stack import UtcpStack
from utcp.io.tun import write_nap_us, write_thread_default
from utcp.lab.netns import Namespace, netns
from utcp.sim import CLIENT_ADDRESS, SERVER_ADDRESS, BulkSender, Network, Reader, pair
from utcp.tcp.config import TcpConfig
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire.checksum import ACCELERATED

KERNEL_SIDE = Path(__file__).with_name("kernel_side.py")
KERNEL = "198.18.0.1"  # the kernel end of the TUN link (UtcpStack's default peer_address)
UTCP = "198.18.0.2"
VETH_A, VETH_B = "198.18.1.1", "198.18.1.2"
MB = 2**20


@dataclass(frozen=True)
class Sizes:
    kernel_bytes: int
    bulk_bytes: int
    sim_bytes: int
    connections: int
    idle_connections: int
    conn_runs: int  # runs per connection-rate figure, reported as their median
    jumbo_mtu: int = 9000  # the larger MTU of rx_jumbo_MBps and tx_jumbo_MBps (--jumbo-mtu)
    client_threads: int = RR_CLIENT_THREADS  # the kernel rr-client's connections in flight (--client-threads)


FULL = Sizes(kernel_bytes=1024 * MB, bulk_bytes=200 * MB, sim_bytes=50 * MB, connections=5000,
             idle_connections=10_000, conn_runs=3)  # fmt: skip
QUICK = Sizes(kernel_bytes=100 * MB, bulk_bytes=20 * MB, sim_bytes=5 * MB, connections=500,
              idle_connections=1000, conn_runs=1)  # fmt: skip
JUMBO_MTU = FULL.jumbo_mtu
# A thread each in one Python process: past a few dozen the GIL, not the server, sets the rate.
MAX_CLIENT_THREADS = 256

# name -> (unit, baseline figure its ratio is taken against, or None)
FIGURES: dict[str, tuple[str, str | None]] = {
    "kernel_veth_MBps": ("MB/s", None),
    "kernel_veth_conn_per_s": ("conn/s", None),
    "rx_mtu1500_MBps": ("MB/s", "kernel_veth_MBps"),
    "tx_mtu1500_MBps": ("MB/s", "kernel_veth_MBps"),
    "rx_jumbo_MBps": ("MB/s", "kernel_veth_MBps"),
    "tx_jumbo_MBps": ("MB/s", "kernel_veth_MBps"),
    "rx_mtu1500_nocsum_MBps": ("MB/s", "kernel_veth_MBps"),
    "rx_offload_MBps": ("MB/s", "kernel_veth_MBps"),
    "tx_offload_MBps": ("MB/s", "kernel_veth_MBps"),
    "sim_MBps": ("MB/s", "kernel_veth_MBps"),
    "conn_per_s_utcp_client": ("conn/s", "kernel_veth_conn_per_s"),
    "conn_per_s_kernel_client": ("conn/s", "kernel_veth_conn_per_s"),
    "conn_per_s_kernel_client_pool": ("conn/s", "kernel_veth_conn_per_s"),
    "conn_per_s_kernel_client_pool_cork": ("conn/s", "kernel_veth_conn_per_s"),
    "conn_per_s_python_floor": ("conn/s", "kernel_veth_conn_per_s"),
    "conn_per_s_trio_kernel_server": ("conn/s", "kernel_veth_conn_per_s"),
    "conn_per_s_trio_kernel_server_cork": ("conn/s", "kernel_veth_conn_per_s"),
    "idle_conn_bytes": ("B/conn", None),
    "matrix_seconds": ("s", None),
}


class KernelProcess:
    """tools/bench/kernel_side.py running in a namespace; ended by its PID."""

    def __init__(self, ns: Namespace, *args: str) -> None:
        self.ns = ns
        self.proc = ns.popen(
            [sys.executable, str(KERNEL_SIDE), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        with trio.fail_after(20):
            line = await trio.to_thread.run_sync(self.proc.stdout.readline, abandon_on_cancel=True)
        if not line:
            raise RuntimeError(f"kernel side died before it was ready: {self.stderr()}")

    async def result(self, timeout: float = 300.0) -> dict[str, Any]:
        try:
            out, err = await trio.to_thread.run_sync(
                functools.partial(self.proc.communicate, timeout=timeout), abandon_on_cancel=True
            )
        finally:
            self.stop()
        if self.proc.returncode != 0:
            raise RuntimeError(f"kernel side exited {self.proc.returncode}: {err}")
        return dict(json.loads(out.strip().splitlines()[-1]))

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr is not None else ""

    def stop(self) -> None:
        self.ns.terminate(self.proc)


def _veth_link(a: Namespace, a_end: str, b: Namespace, b_end: str) -> None:
    """A veth pair between `a` (VETH_A) and `b` (VETH_B), up."""
    a.add_veth(a_end, b_end, b)
    a.add_address(a_end, f"{VETH_A}/24")
    b.add_address(b_end, f"{VETH_B}/24")
    a.set_up(a_end)
    b.set_up(b_end)


async def _rr_clients(
    a: Namespace, b: Namespace, server_mode: str, port: str, count: int, *, threads: int
) -> dict[str, Any]:
    """The rr-client (`threads` threads) in `a` against kernel_side's `server_mode` (its words: the mode
    and its options) on VETH_B in `b`."""
    mode, *options = server_mode.split()
    server = KernelProcess(b, mode, port, *options)
    try:
        await server.ready()
        return await KernelProcess(a, "rr-client", VETH_B, port, str(count), str(threads)).result()
    finally:
        server.stop()


# -- kernel <-> kernel over veth: the baseline ---------------------------------------------------------
async def kernel_veth(sizes: Sizes) -> dict[str, float]:
    with netns() as a, netns() as b:
        _veth_link(a, "bva", b, "bvb")
        sink = KernelProcess(b, "sink-server", "5001")
        await sink.ready()
        source = KernelProcess(a, "source-client", VETH_B, "5001", str(sizes.kernel_bytes))
        got = await sink.result()
        await source.result()

        async def rate(_: int) -> float:
            conns = await _rr_clients(
                a, b, "rr-server", "5002", sizes.connections, threads=sizes.client_threads
            )
            return float(conns["count"]) / float(conns["seconds"])

        conn_per_s = await _median(sizes, rate)
    return {"kernel_veth_MBps": got["bytes"] / MB / got["seconds"], "kernel_veth_conn_per_s": conn_per_s}


async def kernel_trio_server(sizes: Sizes, *, cork: bool = False) -> float:
    """conn_per_s_kernel_client's exchange with trio.serve_listeners and the same `rr_handler` (with
    `cork`, `rr_corked_handler`) on kernel sockets over veth: what the trio stream API costs a server
    when the kernel does the TCP."""
    with netns() as a, netns() as b:
        _veth_link(a, "bta", b, "btb")
        mode = "trio-rr-server cork" if cork else "trio-rr-server"
        got = await _rr_clients(a, b, mode, "5005", sizes.connections, threads=sizes.client_threads)
    if got["failures"]:
        raise RuntimeError(f"trio kernel server: failures {got['failures']}")
    return float(got["count"]) / float(got["seconds"])


# -- bulk kernel <-> utcp over TUN ---------------------------------------------------------------------
async def bulk_rx(ns: Namespace, nbytes: int, mtu: int, **options: Any) -> float:
    """Kernel client sends `nbytes` to a utcp server: MB/s from accept to EOF, on the utcp side."""
    result: list[float] = []
    async with UtcpStack(netns=ns.name, mtu=mtu, linger=0.5, **options) as stack:
        (listener,) = await stack.open_tcp_listeners(5001)
        source = KernelProcess(ns, "source-client", UTCP, "5001", str(nbytes))
        try:
            stream = await listener.accept()
            start = trio.current_time()
            received = 0
            while chunk := await stream.receive_some(1 << 20):
                received += len(chunk)
            result.append(received / MB / (trio.current_time() - start))
            await stream.aclose()
            await source.result()
        finally:
            source.stop()
    if received != nbytes:
        raise RuntimeError(f"rx: received {received} of {nbytes} bytes")
    return result[0]


async def bulk_tx(ns: Namespace, nbytes: int, mtu: int, **options: Any) -> float:
    """utcp client sends `nbytes` to a kernel sink: MB/s from connected to the sink's close."""
    sink = KernelProcess(ns, "sink-server", "5002")
    try:
        await sink.ready()
        block = bytes(1 << 20)
        async with UtcpStack(netns=ns.name, mtu=mtu, linger=0.5, **options) as stack:
            stream = await stack.open_tcp_stream(KERNEL, 5002)
            start = trio.current_time()
            left = nbytes
            while left:
                n = min(left, len(block))
                await stream.send_all(block[:n])
                left -= n
            await stream.send_eof()
            while await stream.receive_some():
                pass
            seconds = trio.current_time() - start
            await stream.aclose()
        got = await sink.result()
    finally:
        sink.stop()
    if got["bytes"] != nbytes:
        raise RuntimeError(f"tx: the kernel received {got['bytes']} of {nbytes} bytes")
    return nbytes / MB / seconds


# -- connections per second ----------------------------------------------------------------------------
async def conn_utcp_client(ns: Namespace, count: int, parallel: int = 8, port: int = 5003) -> float:
    """utcp client -> kernel rr-server on `port`. The kernel closes first and holds each connection in
    TIME-WAIT for 60 s: a later run on the same port, from a new utcp host (new ports' order, new
    timestamp offset), would meet those and have SYNs refused by PAWS (a rebooted client's fate). So
    each run of a figure takes its own port (see run_all)."""
    rr = KernelProcess(ns, "rr-server", str(port))
    failures = 0
    try:
        await rr.ready()
        async with UtcpStack(netns=ns.name, linger=0.5) as stack:

            async def worker(n: int) -> None:
                nonlocal failures
                for _ in range(n):
                    try:
                        stream = await stack.open_tcp_stream(KERNEL, port)
                        await stream.send_all(b"x")
                        while await stream.receive_some():
                            pass
                        await stream.aclose()
                    except (OSError, trio.BrokenResourceError):
                        failures += 1

            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                for i in range(parallel):
                    nursery.start_soon(worker, count // parallel + (1 if i < count % parallel else 0))
            seconds = trio.current_time() - start
    finally:
        rr.stop()
    if failures > count // 100:
        raise RuntimeError(f"utcp client: {failures} of {count} connections failed")
    return (count - failures) / seconds


async def conn_kernel_client(
    ns: Namespace,
    count: int,
    workers: int | None = None,
    handler: Callable[[UtcpStream], Awaitable[None]] = rr_handler,
    threads: int = RR_CLIENT_THREADS,
) -> float:
    """The kernel rr-client (`threads` threads) against a utcp server running `handler`: under
    trio.serve_listeners (a task per connection), or with `workers` under utcp.io.serve_workers (a
    fixed pool of tasks)."""
    async with UtcpStack(netns=ns.name, linger=0.5) as stack:
        listeners = await stack.open_tcp_listeners(5004, backlog=1024)

        async with trio.open_nursery() as nursery:
            if workers is None:
                await nursery.start(trio.serve_listeners, handler, listeners)
            else:
                await nursery.start(functools.partial(serve_workers, handler, listeners, workers=workers))
            client = KernelProcess(ns, "rr-client", UTCP, "5004", str(count), str(threads))
            got = await client.result()
            nursery.cancel_scope.cancel()
    if got["failures"]:
        print(f"  kernel client failures: {got['failures']}", file=sys.stderr)
    return float(got["count"]) / float(got["seconds"])


async def conn_python_floor(ns: Namespace, count: int, threads: int = RR_CLIENT_THREADS) -> float:
    """The kernel client of conn_kernel_client against a bare Python responder (tools/bench_conn_floor):
    what TUN allows a Python server, the ceiling for conn_per_s_kernel_client."""
    from tools.bench_conn_floor import floor_server  # noqa: PLC0415 (it imports this module)

    rate, _ = await floor_server(ns, count, threads)
    return rate


# -- in-process, virtual time --------------------------------------------------------------------------
def sim_transfer(nbytes: int) -> float:
    """utcp -> utcp over a simulated 1 ms link, one way: bytes moved per second of *wall* time."""
    p = pair(latency=0.001, seed=1)
    listener = p.server.listen(SERVER_ADDRESS, 80)
    sender = BulkSender(p.client.connect(SERVER_ADDRESS, 80, p.net.now), bytes(nbytes), finish="none")
    readers: list[Reader] = []

    def serve(now: float) -> None:
        p.client_log.events.clear()  # the pair's event logs would otherwise grow for the whole run
        p.server_log.events.clear()
        if (conn := listener.accept()) is not None:
            readers.append(Reader(conn))
        for reader in readers:
            reader.poll(now)

    p.net.add_hook(sender.poll)
    p.net.add_hook(serve)
    start = time.perf_counter()
    done = p.net.run_until(lambda: bool(readers) and len(readers[0].received) == nbytes, 600.0)
    seconds = time.perf_counter() - start
    if not done:
        raise RuntimeError("sim transfer did not complete")
    return nbytes / MB / seconds


def idle_connection_bytes(count: int) -> float:
    """Traced memory per ESTABLISHED connection endpoint, `count` connections (2 * count endpoints)."""
    net = Network()
    client = Host(addresses=[CLIENT_ADDRESS], config=TcpConfig(), seed=1)
    server = Host(addresses=[SERVER_ADDRESS], config=TcpConfig(), seed=2)
    net.add_node("client", client, [CLIENT_ADDRESS])
    net.add_node("server", server, [SERVER_ADDRESS])
    net.link("client", "server", latency=0.001)
    listener = server.listen(SERVER_ADDRESS, 80, backlog=count)
    accepted: list[Any] = []

    def drain(now: float) -> None:
        # Events are the application's business: drop them so they are not counted as per-connection state.
        client.events()
        server.events()
        while (conn := listener.accept()) is not None:
            accepted.append(conn)

    net.add_hook(drain)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        conns = [client.connect(SERVER_ADDRESS, 80, net.now) for _ in range(count)]
        done = net.run_until(
            lambda: len(accepted) == count and all(c.state is TcpState.ESTABLISHED for c in conns), 60.0
        )
        net.run_for(1.0)  # let delayed ACKs and every other timer of the handshake go by
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    if not done:
        raise RuntimeError("idle connections did not all establish")
    return (after - before) / (2 * count)


# -- the interop matrix --------------------------------------------------------------------------------
def matrix_seconds() -> float | None:
    utcp = shutil.which("utcp") or str(Path(sys.executable).with_name("utcp"))
    probe = subprocess.run([utcp, "matrix", "--help"], capture_output=True, check=False)
    if probe.returncode != 0:
        return None
    start = time.monotonic()
    proc = subprocess.run([utcp, "matrix"], capture_output=True, check=False, timeout=3600)
    if proc.returncode != 0:
        print(f"  utcp matrix exited {proc.returncode}", file=sys.stderr)
    return time.monotonic() - start


# -- driver --------------------------------------------------------------------------------------------
async def _median(sizes: Sizes, measure: Callable[[int], Awaitable[float]]) -> float:
    """A connection rate as the median of `sizes.conn_runs` runs (`measure(run)`, run 0, 1, ...): on a
    shared machine one run moves by +-30 %."""
    return statistics.median([await measure(run) for run in range(sizes.conn_runs)])


async def run_all(sizes: Sizes, only: set[str] | None, matrix: bool) -> dict[str, float | None]:
    figures: dict[str, float | None] = {}

    def wanted(*names: str) -> bool:
        return only is None or any(n in only for n in names)

    async def step(names: tuple[str, ...], fn: Callable[[], Awaitable[Any]]) -> None:
        if not wanted(*names):
            return
        print(f"  running {', '.join(names)} ...", file=sys.stderr, flush=True)
        value = await fn()
        if isinstance(value, dict):
            figures.update(value)
        else:
            figures[names[0]] = value

    await step(("kernel_veth_MBps", "kernel_veth_conn_per_s"), lambda: kernel_veth(sizes))
    await step(
        ("conn_per_s_trio_kernel_server",), lambda: _median(sizes, lambda _: kernel_trio_server(sizes))
    )
    await step(
        ("conn_per_s_trio_kernel_server_cork",),
        lambda: _median(sizes, lambda _: kernel_trio_server(sizes, cork=True)),
    )
    with netns() as ns:
        await step(("rx_mtu1500_MBps",), lambda: bulk_rx(ns, sizes.bulk_bytes, 1500))
        await step(("tx_mtu1500_MBps",), lambda: bulk_tx(ns, sizes.bulk_bytes, 1500))
        await step(("rx_jumbo_MBps",), lambda: bulk_rx(ns, sizes.bulk_bytes, sizes.jumbo_mtu))
        await step(("tx_jumbo_MBps",), lambda: bulk_tx(ns, sizes.bulk_bytes, sizes.jumbo_mtu))
        # Opt-in speed-ups: trusting the kernel's checksums, and TSO/GSO through IFF_VNET_HDR.
        trusted = {"host_options": {"verify_checksums": False}}
        await step(("rx_mtu1500_nocsum_MBps",), lambda: bulk_rx(ns, sizes.bulk_bytes, 1500, **trusted))
        await step(("rx_offload_MBps",), lambda: bulk_rx(ns, sizes.bulk_bytes, 1500, offload=True))
        await step(("tx_offload_MBps",), lambda: bulk_tx(ns, sizes.bulk_bytes, 1500, offload=True))
        await step(
            ("conn_per_s_utcp_client",),
            lambda: _median(
                sizes, lambda run: conn_utcp_client(ns, sizes.connections, port=5003 + 100 * run)
            ),
        )
        threads = sizes.client_threads
        workers = pool_workers(threads)
        await step(
            ("conn_per_s_kernel_client",),
            lambda: _median(sizes, lambda _: conn_kernel_client(ns, sizes.connections, threads=threads)),
        )
        await step(
            ("conn_per_s_kernel_client_pool",),
            lambda: _median(
                sizes, lambda _: conn_kernel_client(ns, sizes.connections, workers, threads=threads)
            ),
        )
        await step(
            ("conn_per_s_kernel_client_pool_cork",),
            lambda: _median(
                sizes,
                lambda _: conn_kernel_client(ns, sizes.connections, workers, rr_corked_handler, threads),
            ),
        )
        await step(
            ("conn_per_s_python_floor",),
            lambda: _median(sizes, lambda _: conn_python_floor(ns, sizes.connections, threads)),
        )

    async def sync(fn: Callable[[], float | None]) -> float | None:
        return fn()

    await step(("sim_MBps",), lambda: sync(lambda: sim_transfer(sizes.sim_bytes)))
    await step(("idle_conn_bytes",), lambda: sync(lambda: idle_connection_bytes(sizes.idle_connections)))
    if matrix:
        await step(("matrix_seconds",), lambda: sync(matrix_seconds))
    else:
        figures["matrix_seconds"] = None
    return figures


def table(figures: dict[str, float | None]) -> str:
    width = max([len("figure"), *map(len, figures)]) + 2
    lines = [f"{'figure':<{width}}{'value':>14}  {'unit':<8}{'vs kernel':>10}"]
    for name, value in figures.items():
        unit, base = FIGURES.get(name, ("", None))
        base_value = figures.get(base) if base else None
        shown = "n/a" if value is None else f"{value:,.1f}"
        ratio = f"{value / base_value:.3f}" if value is not None and base_value else "-"
        lines.append(f"{name:<{width}}{shown:>14}  {unit:<8}{ratio:>10}")
    return "\n".join(lines)


def jumbo_mtu_argument(text: str) -> int:
    """argparse type for --jumbo-mtu: an MTU (utcp.cli's range) larger than 1500."""
    mtu = mtu_argument(text)
    if mtu <= 1500:
        raise argparse.ArgumentTypeError(f"--jumbo-mtu must be larger than 1500, not {mtu}")
    return mtu


def figure_argument(text: str) -> str:
    """argparse type for --only: a figure's name."""
    if text not in FIGURES:
        raise argparse.ArgumentTypeError(f"unknown figure {text!r} (figures: {', '.join(FIGURES)})")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m tools.bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute (CI smoke)")
    parser.add_argument("--json", metavar="FILE", help='write {"figures": {name: value}} to FILE')
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", type=figure_argument, help="run only these figures"
    )
    parser.add_argument(
        "--no-matrix", action="store_true", help="skip `utcp matrix` (always skipped with --quick)"
    )
    parser.add_argument(
        "--jumbo-mtu",
        type=jumbo_mtu_argument,
        default=JUMBO_MTU,
        metavar="MTU",
        help=f"the larger MTU of rx_jumbo_MBps and tx_jumbo_MBps (default {JUMBO_MTU})",
    )
    parser.add_argument(
        "--client-threads",
        type=count_argument("--client-threads", "thread count", MAX_CLIENT_THREADS),
        default=RR_CLIENT_THREADS,
        metavar="N",
        help="threads of the kernel rr-client, its connections in flight, in the connection figures where"
        f" the kernel is the client (default {RR_CLIENT_THREADS}); the utcp pools get 2N workers",
    )
    args = parser.parse_args(argv)
    try:
        check_output_path("--json", args.json)
    except UsageError as exc:
        parser.error(str(exc))
    # How the TUN is written: by the C helper's thread, or in place (UTCP_TUN_WRITE_THREAD=0, or no
    # helper); and the thread's nap between writes (UTCP_TUN_WRITE_NAP_US), which moves the connection
    # figures. A bad nap is one line now, not a traceback from the first device.
    tun_writes = "thread" if write_thread_default() else "in place"
    try:
        nap_us = write_nap_us() if tun_writes == "thread" else None
    except ValueError as exc:
        parser.error(str(exc))
    # The runtime logs every connection at info: thousands of lines would drown the table (and cost time).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sizes = replace(
        QUICK if args.quick else FULL, jumbo_mtu=args.jumbo_mtu, client_threads=args.client_threads
    )
    only = set(args.only) if args.only else None
    figures = trio.run(run_all, sizes, only, not (args.quick or args.no_matrix))
    # Which RFC 1071 sum ran: the optional C extension or the pure-Python fallback (utcp.wire.checksum).
    checksum = "c" if ACCELERATED else "python"
    writes = f"{tun_writes} (nap {nap_us} us)" if nap_us else tun_writes
    print(table(figures), flush=True)
    print(
        f"checksum sums: {checksum}; TUN writes: {writes}; jumbo MTU: {sizes.jumbo_mtu};"
        f" kernel client threads: {sizes.client_threads}",
        flush=True,
    )
    if args.json:
        report = {
            "figures": figures,
            "quick": args.quick,
            "checksum": checksum,
            "tun_writes": tun_writes,
            "tun_write_nap_us": nap_us,
            "jumbo_mtu": sizes.jumbo_mtu,
            "client_threads": sizes.client_threads,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0
