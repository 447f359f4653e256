"""Where a utcp server's connection goes, against the 200 us of CPU that 5,000 conn/s allows it.

Measured in one run (median of --runs each):
  tun         utcp's server over TUN (tools.bench's conn_kernel_client: the kernel rr-client, 4 in
              flight): conn/s, and user and sys CPU of this process per connection (getrusage)
  in-process  the same server under trio with the kernel replaced by a utcp Host (tools.bench_conn):
              engine + runtime + API + trio, no syscalls; CPU per connection, the peer's subtracted
  trio        trio.serve_listeners over a listener and streams that do no I/O, only the checkpoints
              utcp's do (accept, receive_some, send_all, aclose, and serve_listeners' aclose_forcefully):
              what the trio stream API costs per connection by itself
  engine      tools/bench_conn_engine: both Hosts alone, no trio (the server end is about half)

User code runs slower over TUN than in-process although it executes the same instructions per
connection (cachegrind: ~1.03 M both ways): the kernel's TCP work inside each write(2) evicts the
caches. The in-process parts are scaled by that factor (tun user / in-process) to price them over TUN.
The budget line then says how much of 200 us is left for the engine, runtime and API once the syscalls
(sys) and the trio model are paid, and how much smaller they would have to get.

Run (root): .venv/bin/python -m tools.bench_conn_budget [--count N] [--runs R]
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import time

import structlog
import trio

from tools import bench_conn, bench_conn_engine
from tools.bench.kernel_side import rr_handler
from tools.bench.runner import conn_kernel_client
from utcp.io.api import _close_checkpoint
from utcp.lab.netns import netns

TARGET = 5000.0  # conn/s: issue 6's figure for each direction


class _NullStream(trio.abc.HalfCloseableStream):
    """A stream with utcp's checkpoints and no I/O: every call has data or room at once."""

    def __init__(self, closes: list[int]) -> None:
        self._closes = closes
        self._closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return b"x"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._closes[0] += 1
        await _close_checkpoint()  # UtcpStream.aclose's own checkpoint


class _NullListener(trio.abc.Listener[_NullStream]):
    def __init__(self, count: int, closes: list[int]) -> None:
        self._left = count
        self._closes = closes

    async def accept(self) -> _NullStream:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._left == 0:
            await trio.sleep_forever()
        self._left -= 1
        await trio.lowlevel.cancel_shielded_checkpoint()  # UtcpListener.accept with a connection queued
        return _NullStream(self._closes)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def _trio_model(count: int) -> float:
    closes = [0]
    start = time.process_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, rr_handler, [_NullListener(count, closes)])
        while closes[0] < count:
            await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    return (time.process_time() - start) / count * 1e6


def trio_model_us(count: int) -> float:
    """CPU microseconds per connection of trio.serve_listeners + rr_handler over streams without I/O."""
    return trio.run(_trio_model, count)


async def _over_tun(count: int) -> tuple[float, float, float]:
    with netns() as ns:
        before = resource.getrusage(resource.RUSAGE_SELF)
        rate = await conn_kernel_client(ns, count)
        after = resource.getrusage(resource.RUSAGE_SELF)
    user = (after.ru_utime - before.ru_utime) / count * 1e6
    sys_ = (after.ru_stime - before.ru_stime) / count * 1e6
    return rate, user, sys_


def over_tun(count: int) -> tuple[float, float, float]:
    """(conn/s, user us, sys us per connection) of utcp's server against the kernel client over TUN."""
    return trio.run(_over_tun, count)


def budget(count: int, runs: int) -> dict[str, float]:
    # A process's first round of each in-process figure runs slower (allocator, GC generations): discard.
    warm_up = max(100, count // 5)
    bench_conn.measure("server", warm_up)
    trio_model_us(warm_up)
    bench_conn_engine.run(warm_up)
    tun = [over_tun(count) for _ in range(runs)]
    figures = {
        "tun_conn_per_s": statistics.median(t[0] for t in tun),
        "tun_user_us": statistics.median(t[1] for t in tun),
        "tun_sys_us": statistics.median(t[2] for t in tun),
        "inprocess_us": statistics.median(bench_conn.measure("server", count)[0] for _ in range(runs)),
        "trio_model_us": statistics.median(trio_model_us(count) for _ in range(runs)),
        "engine_both_ends_us": statistics.median(bench_conn_engine.run(count) * 1e6 for _ in range(runs)),
    }
    factor = figures["tun_user_us"] / figures["inprocess_us"]
    trio_over_tun = figures["trio_model_us"] * factor
    rest_over_tun = (figures["inprocess_us"] - figures["trio_model_us"]) * factor
    figures["tun_factor"] = factor
    figures["left_for_engine_runtime_api_us"] = 1e6 / TARGET - figures["tun_sys_us"] - trio_over_tun
    figures["engine_runtime_api_over_tun_us"] = rest_over_tun
    return figures


def report(f: dict[str, float]) -> str:
    factor = f["tun_factor"]
    total = f["tun_user_us"] + f["tun_sys_us"]
    left = f["left_for_engine_runtime_api_us"]
    now = f["engine_runtime_api_over_tun_us"]
    cut = "impossible: nothing is left" if left <= 0 else f"{1 - left / now:.0%} smaller"
    rows = [
        ("utcp server over TUN", f"{f['tun_conn_per_s']:,.0f} conn/s",
         f"user {f['tun_user_us']:.0f} us + sys {f['tun_sys_us']:.0f} us = {total:.0f} us per connection"),
        ("same server in-process", f"{f['inprocess_us']:.1f} us", "engine + runtime + API + trio"),
        ("trio model, no I/O", f"{f['trio_model_us']:.1f} us", "serve_listeners + the handler's checkpoints"),
        ("engine alone, both ends", f"{f['engine_both_ends_us']:.1f} us", "the server end is about half"),
    ]  # fmt: skip
    lines = [f"{name:<26}{value:>14}   {what}" for name, value, what in rows]
    lines += [
        f"user code over TUN takes {factor:.2f}x its in-process time (same instructions, colder caches)",
        f"budget at {TARGET:,.0f} conn/s: {1e6 / TARGET:.0f} us per connection; sys {f['tun_sys_us']:.0f} us",
        f"  and the trio model {f['trio_model_us'] * factor:.0f} us leave {left:.0f} us for engine + runtime"
        f" + API, which take {now:.0f} us over TUN now: they would have to be {cut}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=5000, help="connections per measurement")
    parser.add_argument("--runs", type=int, default=3, help="measurements per figure (median)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(report(budget(args.count, args.runs)), flush=True)


if __name__ == "__main__":
    main()
