"""Engine-only connection churn: two Hosts back to back, the bench's request/response pattern.

The client connects, sends b"x"; the server reads it, sends b"y" and closes; the client reads y and EOF,
then closes. Both hosts run as the trio runtime configures them (wire_output, ack_per_batch) and exchange
bytes. Prints microseconds of CPU per connection, both ends together (median and best of `--repeat`
rounds, each on fresh hosts); `--profile` adds a cProfile of one more round.
Run: .venv/bin/python tools/bench_conn_engine.py [COUNT] [--repeat N] [--profile [SORT]]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

from utcp.io.stack import stack_config
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState


def run(count: int, profile: cProfile.Profile | None = None) -> float:
    """`count` connections; returns seconds of CPU (process time) per connection."""
    cli = Host(["198.18.0.2"], stack_config(), seed=1, wire_output=True, ack_per_batch=True)
    srv = Host(["198.18.0.1"], stack_config(), seed=2, wire_output=True, ack_per_batch=True)
    lst = srv.listen("198.18.0.1", 5004, backlog=1024)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, nargs="?", default=3000, help="connections per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (fresh hosts each)")
    parser.add_argument(
        "--profile", nargs="?", const="tottime", metavar="SORT", help="cProfile one more round (pstats key)"
    )
    args = parser.parse_args()
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
