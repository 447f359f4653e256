"""Helpers for engine tests: deterministic hosts, segment builders, and a two-host in-memory pump."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from utcp.tcp.clock import TimestampClock
from utcp.tcp.config import TcpConfig
from utcp.tcp.connection import Connection
from utcp.tcp.events import Event
from utcp.tcp.host import Host
from utcp.tcp.isn import IsnGenerator
from utcp.tcp.ports import SequentialPortAllocator
from utcp.tcp.state import TcpState
from utcp.wire.packet import (
    IPv4Packet,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpFlags,
    TcpOption,
    TcpSegment,
    Timestamps,
    WindowScale,
)

A = "198.18.0.1"  # the host under test
B = "198.18.0.2"  # the peer the test plays
S = TcpFlags.SYN
AK = TcpFlags.ACK
F = TcpFlags.FIN
R = TcpFlags.RST
P = TcpFlags.PSH
SA = S | AK
FA = F | AK
PA = P | AK
RA = R | AK
NOP = Nop()
ISS = 1000  # ISN of the host under test
PEER_ISS = 5000  # ISN the test uses for the peer
MASK = 0xFFFFFFFF


def make_host(
    addr: str = A,
    *,
    iss: int | None = ISS,
    config: TcpConfig | None = None,
    seed: int = 1,
    **kw: Any,
) -> Host:
    """A deterministic host: fixed ISN, TSval = milliseconds since 0 (no offset), sequential ports."""
    args: dict[str, object] = {
        "config": config,
        "seed": seed,
        "ts_clock": TimestampClock(offset_mode="zero"),
        "isn_generator": IsnGenerator(fixed=iss) if iss is not None else IsnGenerator(rng_seed=seed),
        "port_allocator": SequentialPortAllocator((40000, 40999)),
    }
    args.update(kw)
    return Host([addr], **args)  # type: ignore[arg-type]


def cfg(**kw: object) -> TcpConfig:
    return replace(TcpConfig(), **kw)  # type: ignore[arg-type]


def ts(tsval: int, tsecr: int = 0) -> tuple[TcpOption, ...]:
    """NOP NOP TS (as on every non-SYN segment)."""
    return (NOP, NOP, Timestamps(tsval, tsecr))


def syn_opts(
    mss: int = 1460, sack: bool = True, tsval: int | None = 0, tsecr: int = 0, ws: int | None = 7
) -> tuple[TcpOption, ...]:
    """Linux SYN option order."""
    opts: list[TcpOption] = [Mss(mss)]
    if tsval is not None:
        opts += [SackPermitted(), Timestamps(tsval, tsecr)] if sack else [NOP, NOP, Timestamps(tsval, tsecr)]
    elif sack:
        opts += [NOP, NOP, SackPermitted()]
    if ws is not None:
        opts += [NOP, WindowScale(ws)]
    return tuple(opts)


def sack(*blocks: tuple[int, int]) -> tuple[TcpOption, ...]:
    return (NOP, NOP, Sack(tuple(blocks)))


def pkt(
    flags: TcpFlags,
    seq: int,
    ack: int = 0,
    *,
    window: int = 65535,
    options: Sequence[TcpOption] = (),
    payload: bytes = b"",
    sport: int = 50000,
    dport: int = 80,
    src: str = B,
    dst: str = A,
) -> IPv4Packet:
    """A packet from the peer (B) to the host under test (A)."""
    return IPv4Packet(
        src, dst, TcpSegment(sport, dport, seq & MASK, ack & MASK, flags, window, tuple(options), payload)
    )


def segs(host: Host, now: float) -> list[TcpSegment]:
    """Drain the host's output, as segments."""
    return [p.tcp for p in host.packets_to_send(now)]


def one(host: Host, now: float) -> TcpSegment:
    out = segs(host, now)
    assert len(out) == 1, out
    return out[0]


def none_out(host: Host, now: float) -> None:
    out = segs(host, now)
    assert out == [], out


def state(conn: Connection) -> TcpState:
    """The connection's state (a call, so type checkers do not narrow it across steps)."""
    return conn.state


def event_types(host: Host) -> list[str]:
    return [type(e).__name__ for e in host.events()]


@dataclass
class Passive:
    """A host listening on A:80, with a connection the test established as peer B:50000."""

    host: Host
    conn: Connection
    now: float
    peer_nxt: int  # next seq the peer sends
    our_nxt: int  # next seq the host sends (what the peer acks)
    tsval: int = 100  # the peer's current TSval


def establish_passive(
    config: TcpConfig | None = None,
    *,
    peer_ts: bool = True,
    peer_sack: bool = True,
    peer_ws: int | None = 7,
    peer_mss: int = 1460,
    window: int | None = None,
    **host_kw: Any,
) -> Passive:
    """Handshake as the peer against a listener on A:80; returns once ESTABLISHED (events drained)."""
    host = make_host(config=config, **host_kw)
    lst = host.listen(A, 80)
    syn_window = 65535 if window is None else min(window, 65535)
    host.receive(
        pkt(
            S,
            PEER_ISS,
            window=syn_window,
            options=syn_opts(peer_mss, peer_sack, 100 if peer_ts else None, 0, peer_ws),
        ),
        0.0,
    )
    synack = one(host, 0.0)
    assert synack.flags == SA
    third_opts = ts(101, 0) if peer_ts else ()
    # the third ACK offers `window` bytes (default: 2048 << 7, what `from_peer` sends by default)
    if window is None:
        third_window = 2048 if peer_ws else 65535
    else:
        third_window = window >> peer_ws if peer_ws else window
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, window=third_window, options=third_opts), 0.01)
    host.packets_to_send(0.01)
    conn = lst.accept()
    assert conn is not None
    host.events()
    return Passive(host, conn, 0.01, PEER_ISS + 1, ISS + 1, 101)


@dataclass
class Pump:
    """Moves packets between hosts on a virtual clock, with an optional drop/tamper function."""

    hosts: list[Host]
    now: float = 0.0
    delay: float = 0.005  # one-way latency
    drop: Callable[[IPv4Packet], bool] | None = None
    log: list[tuple[float, IPv4Packet]] = field(default_factory=list)
    keep_log: bool = False
    events: list[Event] = field(default_factory=list)
    _inflight: list[tuple[float, int, IPv4Packet]] = field(default_factory=list)
    _n: int = 0

    def _route(self, dst: str) -> Host:
        for h in self.hosts:
            if dst in h.addresses:
                return h
        raise AssertionError(f"no host owns {dst}")

    def flush(self) -> None:
        for h in self.hosts:
            for p in h.packets_to_send(self.now):
                if self.keep_log:
                    self.log.append((self.now, p))
                if self.drop is not None and self.drop(p):
                    continue
                self._n += 1
                self._inflight.append((self.now + self.delay, self._n, p))
            self.events.extend(h.events())

    def step(self, until: float | None = None) -> bool:
        """Advance to the next arrival or timer (not past `until`); False when nothing happens before."""
        self.flush()
        times = [t for t, _, _ in self._inflight]
        times += [d for h in self.hosts if (d := h.next_deadline()) is not None]
        if not times or (until is not None and min(times) > until):
            if until is not None:
                self.now = max(self.now, until)
            return False
        self.now = max(self.now, min(times))
        due = sorted(x for x in self._inflight if x[0] <= self.now)
        self._inflight = [x for x in self._inflight if x[0] > self.now]
        for _, _, p in due:
            self._route(p.dst).receive(p, self.now)
        for h in self.hosts:
            d = h.next_deadline()
            if d is not None and d <= self.now:
                h.on_timer(self.now)
        self.flush()
        return True

    def run(self, until: float, stop: Callable[[], bool] | None = None) -> None:
        while self.now < until:
            if stop is not None and stop():
                return
            if not self.step(until):
                return

    def run_for(self, seconds: float) -> None:
        self.run(self.now + seconds)


def lossy(rate: float, seed: int = 7) -> Callable[[IPv4Packet], bool]:
    rng = random.Random(seed)
    return lambda _p: rng.random() < rate


@dataclass
class Active:
    """A host (A) that connected to the peer B:80 the test plays; ESTABLISHED, events drained."""

    host: Host
    conn: Connection
    now: float
    peer_nxt: int
    our_nxt: int
    tsval: int = 100


def establish_active(
    config: TcpConfig | None = None,
    *,
    peer_ts: bool = True,
    peer_sack: bool = True,
    peer_ws: int | None = 7,
    peer_mss: int = 1460,
    window: int = 65535,
    **host_kw: Any,
) -> Active:
    host = make_host(config=config, **host_kw)
    conn = host.connect(B, 80, 0.0)
    syn = one(host, 0.0)
    assert syn.flags == S
    host.receive(
        pkt(
            SA,
            PEER_ISS,
            ISS + 1,
            sport=80,
            dport=conn.local[1],
            window=window,
            options=syn_opts(peer_mss, peer_sack, 100 if peer_ts else None, 0, peer_ws),
        ),
        0.01,
    )
    ack = one(host, 0.01)
    assert ack.flags == AK
    host.events()
    return Active(host, conn, 0.01, PEER_ISS + 1, ISS + 1, 100)


def from_peer(
    x: Active | Passive,
    flags: TcpFlags,
    seq: int | None = None,
    ack: int | None = None,
    *,
    payload: bytes = b"",
    window: int = 2048,
    tsval: int | None = None,
    tsecr: int = 0,
    options: Sequence[TcpOption] | None = None,
) -> IPv4Packet:
    """A segment from the test's peer on an established connection (defaults: next seq, ack all)."""
    conn = x.conn
    if options is None:
        options = ts(x.tsval if tsval is None else tsval, tsecr) if conn.negotiated.timestamps else ()
    return pkt(
        flags,
        x.peer_nxt if seq is None else seq,
        conn.snd_nxt if ack is None else ack,
        window=window,
        options=options,
        payload=payload,
        sport=conn.remote[1],
        dport=conn.local[1],
    )


def fire(host: Host) -> float:
    """Run the host's next timer; returns its time."""
    d = host.next_deadline()
    assert d is not None, "no timer armed"
    host.on_timer(d)
    return d
