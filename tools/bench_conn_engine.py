"""Engine-only connection churn: two Hosts back to back, the bench's request/response pattern.

The client connects, sends b"x"; the server reads it, sends b"y" and closes; the client reads y and EOF,
then closes. Both hosts run as the trio runtime configures them (wire_output, ack_per_batch) and exchange
bytes. Prints microseconds of CPU per connection, both ends together (median and best of `--repeat`
rounds, each on fresh hosts); `--profile` adds a cProfile of one more round. `--phases` prices the
server end alone, per packet it receives (by kind: SYN, the third ACK, the request, the client's FIN),
per drain of what it sends, and per call the runtime or the application makes, in microseconds per
connection: where a server connection's engine time goes.
Run: .venv/bin/python tools/bench_conn_engine.py [COUNT] [--repeat N] [--profile [SORT]] [--phases]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from utcp.io.stack import stack_config
from utcp.tcp.host import Host, Listener
from utcp.tcp.state import TcpState
from utcp.wire.packet import F_FIN, F_RST, F_SYN

_T = TypeVar("_T")


def _hosts() -> tuple[Host, Host, Listener]:
    """The client, the server and its listener, as the trio runtime configures hosts."""
    cli = Host(["198.18.0.2"], stack_config(), seed=1, wire_output=True, ack_per_batch=True)
    srv = Host(["198.18.0.1"], stack_config(), seed=2, wire_output=True, ack_per_batch=True)
    return cli, srv, srv.listen("198.18.0.1", 5004, backlog=1024)


def run(count: int, profile: cProfile.Profile | None = None) -> float:
    """`count` connections; returns seconds of CPU (process time) per connection."""
    cli, srv, lst = _hosts()
    now = 1.0

    def xfer() -> int:
        moved = 0
        for a, b in ((cli, srv), (srv, cli)):
            deadline = a.next_deadline()
            if deadline is not None and deadline <= now:
                a.on_timer(now)
            for d in a.datagrams_to_send(now):
                b.receive(d, now)
                moved += 1
            a.events()
        return moved

    if profile is not None:
        profile.enable()
    t0 = time.process_time()
    for _ in range(count):
        now += 0.0002
        c = cli.connect("198.18.0.1", 5004, now)
        while xfer():
            pass
        s = lst.accept()
        assert s is not None
        c.send(b"x")
        xfer()
        assert s.read(1) == b"x"
        s.send(b"y")
        xfer()
        s.close()
        xfer()
        assert c.read(1) == b"y" and c.eof_received
        c.close()
        while xfer():
            pass
        assert c.state is TcpState.CLOSED and s.state is TcpState.TIME_WAIT, (c.state, s.state)
    elapsed = time.process_time() - t0
    if profile is not None:
        profile.disable()
    return elapsed / count


def segment_kind(raw: bytes) -> str:
    """SYN, FIN, RST and data flags of an encoded IPv4 + TCP segment, "ACK" for none of them."""
    flags = raw[33]
    has_data = len(raw) > 20 + (raw[32] >> 4) * 4
    kinds = [name for bit, name in ((F_SYN, "SYN"), (F_FIN, "FIN"), (F_RST, "RST")) if flags & bit]
    return "+".join([*kinds, "data"] if has_data else kinds) or "ACK"


def phases(count: int) -> dict[str, float]:
    """`run`'s exchange, with every call into the server end timed (perf_counter_ns); returns
    microseconds per connection for each: "receive KIND" per kind of segment it receives, and the
    runtime's and the application's calls by name. The client end's calls are not timed. (`run`'s
    exchange written out again: timing hooks in `run` would change the instruction counts it gave in
    earlier sessions, which docs/performance.md compares against.)"""
    cli, srv, lst = _hosts()
    spent: Counter[str] = Counter()
    clock = time.perf_counter_ns
    now = 1.0

    def timed(name: str, call: Callable[..., _T], *args: Any) -> _T:
        start = clock()
        result = call(*args)
        spent[name] += clock() - start
        return result

    def xfer() -> int:
        moved = 0
        deadline = cli.next_deadline()
        if deadline is not None and deadline <= now:
            cli.on_timer(now)
        for d in cli.datagrams_to_send(now):
            timed(f"receive {segment_kind(d)}", srv.receive, d, now)
            moved += 1
        cli.events()
        deadline = timed("next_deadline", srv.next_deadline)
        if deadline is not None and deadline <= now:
            timed("on_timer", srv.on_timer, now)
        for d in timed("datagrams_to_send", srv.datagrams_to_send, now):
            cli.receive(d, now)
            moved += 1
        timed("events", srv.events)
        return moved

    for _ in range(count):
        now += 0.0002
        c = cli.connect("198.18.0.1", 5004, now)
        while xfer():
            pass
        s = timed("accept", lst.accept)
        assert s is not None
        c.send(b"x")
        xfer()
        assert timed("read", s.read, 1) == b"x"
        timed("send", s.send, b"y")
        xfer()
        timed("close", s.close)
        xfer()
        assert c.read(1) == b"y" and c.eof_received
        c.close()
        while xfer():
            pass
        assert c.state is TcpState.CLOSED and s.state is TcpState.TIME_WAIT, (c.state, s.state)
    return {name: ns / count / 1000 for name, ns in spent.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, nargs="?", default=3000, help="connections per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (fresh hosts each)")
    parser.add_argument(
        "--profile", nargs="?", const="tottime", metavar="SORT", help="cProfile one more round (pstats key)"
    )
    parser.add_argument("--phases", action="store_true", help="the server end's time, call by call")
    args = parser.parse_args()
    if args.phases:
        phases(max(100, args.count // 5))  # warm-up: a process's first round runs slower
        costs = phases(args.count)
        for name, us in costs.items():
            print(f"{name:<20}{us:8.2f} us per connection")
        print(f"{'server end':<20}{sum(costs.values()):8.2f} us per connection")
        return
    rounds = [run(args.count) * 1e6 for _ in range(args.repeat)]
    print(
        f"{statistics.median(rounds):.1f} us per connection, both ends (median of {args.repeat}; "
        f"best {min(rounds):.1f}; {args.count} connections per round)"
    )
    if args.profile:
        prof = cProfile.Profile()
        run(args.count, prof)
        pstats.Stats(prof).sort_stats(args.profile).print_stats(40)


if __name__ == "__main__":
    main()
