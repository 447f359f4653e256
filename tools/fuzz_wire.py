"""Fuzz harness for the wire layer and a host's receive path (issue 7, must-show 1).

Property checked on every input: parse_ipv4, parse_ipv4_reference and parse_tcp return a value or raise
WireError, nothing else; and a Host fed the bytes never raises (it counts and drops what it cannot parse).

With atheris (`pip install utcp[fuzz]`):   .venv/bin/python tools/fuzz_wire.py -atheris_runs=100000
Without it (plain loop over a built-in corpus of valid packets and random mutations of them):
                                          .venv/bin/python tools/fuzz_wire.py --loop 10000 [--seed N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from utcp.tcp.host import Host
from utcp.wire import (
    IPv4Packet,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpFlags,
    TcpSegment,
    Timestamps,
    Toa,
    UnknownOption,
    WindowScale,
    WireError,
    build_ipv4,
    parse_ipv4,
    parse_ipv4_reference,
    parse_tcp,
)

SRC, DST = "198.18.0.2", "198.18.0.1"


def corpus() -> list[bytes]:
    """Valid packets covering every option kind, SYN/ACK/FIN/RST, payloads, IP options, a fragment."""
    f = TcpFlags
    segs = [
        TcpSegment(
            50000,
            80,
            1,
            0,
            f.SYN,
            65535,
            (Mss(1460), SackPermitted(), Timestamps(1, 0), Nop(), WindowScale(7)),
        ),
        TcpSegment(80, 50000, 9, 2, f.SYN | f.ACK, 65535, (Mss(1460), Nop(), WindowScale(7))),
        TcpSegment(50000, 80, 2, 10, f.ACK | f.PSH, 512, (Nop(), Nop(), Timestamps(5, 6)), b"hello" * 20),
        TcpSegment(50000, 80, 2, 10, f.ACK, 512, (Nop(), Nop(), Sack(((100, 200), (300, 400))))),
        TcpSegment(50000, 80, 2, 10, f.FIN | f.ACK, 512),
        TcpSegment(50000, 80, 2, 0, f.RST, 0),
        TcpSegment(50000, 80, 2, 10, f.ACK, 512, (Toa(1234, "198.18.1.1"),)),
        TcpSegment(50000, 80, 2, 10, f.ACK, 512, (UnknownOption(77, b"xyz"), Nop())),
    ]
    out = [build_ipv4(IPv4Packet(SRC, DST, s)) for s in segs]
    out.append(build_ipv4(IPv4Packet(SRC, DST, segs[2], options=b"\x01\x01\x01\x00")))
    out.append(build_ipv4(IPv4Packet(SRC, DST, b"fragment", more_fragments=True)))
    out.append(build_ipv4(IPv4Packet(SRC, DST, b"\x08\x00", protocol=1)))
    return out


def check(data: bytes, host: Host | None = None) -> None:
    """The property. Any exception but WireError propagates (atheris reports it as a crash)."""
    for verify in (True, False):
        for parse in (parse_ipv4, parse_ipv4_reference):
            with contextlib.suppress(WireError):
                parse(data, verify_checksums=verify)
        with contextlib.suppress(WireError):
            parse_tcp(data, SRC, DST, verify_checksum=verify)
    if host is not None:
        host.receive(data, 0.0)
        host.packets_to_send(0.0)
        host.events()


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[at % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[at % len(buf)] = rng.randrange(256)
        elif op == 2:
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and buf:
            del buf[at : at + rng.randint(1, 8)]
        elif op == 4:
            del buf[at:]
        else:
            buf += rng.randbytes(rng.randint(1, 40))
    return bytes(buf)


def loop(n: int, seed: int) -> int:
    rng = random.Random(seed)
    seeds = corpus()
    host = Host([DST], seed=seed)
    host.listen(DST, 80)
    started = time.perf_counter()
    for data in seeds:
        check(data, host)
    for i in range(n):
        data = mutate(rng, rng.choice(seeds)) if i % 4 else rng.randbytes(rng.randint(0, 120))
        check(data, host)
    elapsed = time.perf_counter() - started
    print(
        f"{n + len(seeds)} inputs ok in {elapsed:.2f}s; host counters: InErrs={host.counters['InErrs']} "
        f"InCsumErrors={host.counters['InCsumErrors']} InSegs={host.counters['InSegs']}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loop", type=int, metavar="N", help="run N mutated inputs without atheris")
    parser.add_argument("--seed", type=int, default=0)
    args, rest = parser.parse_known_args()
    try:
        import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: PLC0415
    except ImportError:
        atheris = None
    if args.loop is not None or atheris is None:
        if atheris is None and args.loop is None:
            print("atheris not installed: running the corpus in loop mode (10000 inputs)")
        return loop(args.loop if args.loop is not None else 10_000, args.seed)
    host = Host([DST], seed=args.seed)
    host.listen(DST, 80)

    def one_input(data: bytes) -> None:
        check(data, host)

    atheris.instrument_all()  # coverage feedback over the already imported utcp modules
    atheris.Setup([sys.argv[0], *rest], one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
