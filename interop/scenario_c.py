"""Scenario C: connecting to yourself, and simultaneous open (SCENARIOS.md C, seeds/002_*).

Two cases, two role shapes:

- `self-connect`, role `host`: one socket `bind(ip:P)` then `connect(ip:P)`. Its SYN comes back to itself
  (a simultaneous open with a single socket): SYN seq X, SYN-ACK seq X ack X+1 (the same ISN: it is the
  same socket), then an ACK carrying a D-SACK {X:X+1}; it ends ESTABLISHED talking to itself and data sent
  comes back. Kernel: in its own namespace, on the namespace's address (on `lo`), captured on `lo`.
  utcp: a host connecting to its own address; its self-delivered packets are made visible
  (`loopback_visible`) so the capture shows them.
- `simultaneous-open`, roles `a` and `b`: each connect()s the other from a bound port and the SYNs cross.
  RFC 9293 MUST-10: 4 handshake segments (SYN, SYN, SYN-ACK, SYN-ACK), both ESTABLISHED, data flows both
  ways. Linux >= 6.11 (SCENARIOS.md: the kernel here is 6.18) accepts the crossing SYN-ACK in SYN_RECV
  directly, so no challenge ACK is sent (TcpExtTCPChallengeACK unchanged).

  Making SYNs cross needs each SYN to leave before the other one arrives. Every path gets a delay line
  (`DELAY` one way): a box between two kernel namespaces, or a delay on each utcp host's TUN traffic;
  `a` connects first and `b` as soon as a's socket is in SYN-SENT, long before a's SYN lands.

Expectations are the SCENARIOS.md facts, the same for the kernel and utcp, never read from a run.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import trio

from interop.model import Cell, CellContext, Impl, Observation, Scenario
from utcp.lab import Endpoint, Lab, SocketOptions
from utcp.middlebox.base import Direction, Emit, Stats, coerce_packet
from utcp.sim import Network
from utcp.tcp.connection import Connection
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire.codec import build_ipv4, parse_ipv4
from utcp.wire.errors import WireError
from utcp.wire.format import format_flags
from utcp.wire.packet import IPv4Packet, Sack, TcpFlags, TcpSegment

__all__ = [
    "DELAY",
    "SCENARIO",
    "DelayImpairment",
    "DelayLine",
    "Recorder",
    "cells",
    "relative",
    "run",
    "self_connect_facts",
    "simultaneous_open_facts",
]

SELF_PORT = 18084  # the field report's port
A_PORT, B_PORT = 5001, 5002
DELAY = 0.3  # seconds one way on every simultaneous-open path: a's SYN is in flight while b connects
# (b starts once `ss` shows a in SYN-SENT: a subprocess and a setns thread, slow on a loaded machine)
PAYLOAD = b"hello, me"
SEQ_MOD = 1 << 32
SYN, ACK = TcpFlags.SYN, TcpFlags.ACK

SELF_CONNECTED: Mapping[str, Any] = MappingProxyType(
    {
        "outcome": "self-connected",
        "handshake": "S S. .",  # SYN, SYN-ACK, ACK: three segments, one socket
        "synack": "seq X ack X+1",  # the same ISN X as the SYN
        "ack_sack": "{X:X+1}",  # the ACK acknowledges a duplicate of its own SYN with a D-SACK
        "sockets": 1,  # one ESTABLISHED socket whose local and remote are both ip:P
        "echo": True,  # data sent comes back
    }
)
SIMULTANEOUS_OPEN: Mapping[str, Any] = MappingProxyType(
    {
        "outcome": "established",
        "handshake": "S S S. S.",  # 4 segments, both SYNs before either SYN-ACK (RFC 9293 MUST-10)
        "a_state": "ESTAB",
        "b_state": "ESTAB",
        "data": "both ways",
        "challenge_acks": 0,  # Linux >= 6.11: SYN_RECV takes the crossing SYN-ACK without a challenge ACK
    }
)


def cells() -> list[Cell]:
    """Self-connect per implementation (and utcp in the simulator); simultaneous open for every pair."""
    out: list[Cell] = []
    for impl in ("kernel", "utcp"):
        out.append(_cell("self-connect", (("host", impl),), SELF_CONNECTED, "netns"))
    out.append(_cell("self-connect", (("host", "utcp"),), SELF_CONNECTED, "sim"))
    pairs: list[tuple[Impl, Impl]] = [
        ("kernel", "kernel"),
        ("kernel", "utcp"),
        ("utcp", "kernel"),
        ("utcp", "utcp"),
    ]
    for a, b in pairs:
        out.append(_cell("simultaneous-open", (("a", a), ("b", b)), SIMULTANEOUS_OPEN, "netns"))
    out.append(_cell("simultaneous-open", (("a", "utcp"), ("b", "utcp")), SIMULTANEOUS_OPEN, "sim"))
    return out


def _cell(case: str, roles: tuple[tuple[str, Impl], ...], expected: Mapping[str, Any], backend: str) -> Cell:
    return Cell(
        scenario="C",
        case=case,
        roles=roles,
        expected=dict(expected),
        policy="linux" if any(impl == "utcp" for _, impl in roles) else None,
        backend="sim" if backend == "sim" else "netns",
        params={"port": SELF_PORT} if case == "self-connect" else {"ports": [A_PORT, B_PORT], "delay": DELAY},
        timeout=30.0,
    )


# -- reading a trace -------------------------------------------------------------------------------------


class Recorder:
    """Forwards every recorded packet to the cell context and keeps it, parsed, for the observation."""

    def __init__(self, ctx: CellContext) -> None:
        self.ctx = ctx
        self.packets: list[tuple[str, IPv4Packet]] = []
        self.unparsed = 0

    def __call__(self, link: str, raw: bytes, time: float | None = None) -> None:
        self.ctx.record(link, raw, time)
        try:
            packet = parse_ipv4(raw, verify_checksums=False)
        except WireError:
            self.unparsed += 1
            return
        if isinstance(packet.payload, TcpSegment):
            self.packets.append((link, packet))

    def on(self, link: str) -> list[IPv4Packet]:
        return [p for name, p in self.packets if name == link]

    async def wait_for(self, predicate: Callable[[IPv4Packet], bool], timeout: float) -> bool:
        with trio.move_on_after(timeout):
            while not any(predicate(p) for _, p in self.packets):
                await trio.sleep(0.002)
            return True
        return False


def relative(value: int, base: int) -> str:
    """A sequence number as the capture facts write it: "X", "X+1", "X-3" (modulo 2**32)."""
    delta = (value - base) % SEQ_MOD
    if delta == 0:
        return "X"
    return f"X+{delta}" if delta < SEQ_MOD // 2 else f"X-{SEQ_MOD - delta}"


def _flags(seg: TcpSegment) -> str:
    return format_flags(seg.flags)


def self_connect_facts(packets: Sequence[IPv4Packet], address: str, port: int) -> dict[str, Any]:
    """SCENARIOS.md C's capture facts from the packets of the self-connection (address:port both ends)."""
    segs = [p.tcp for p in packets if p.src == p.dst == address and p.tcp.src_port == p.tcp.dst_port == port]
    syn = next((s for s in segs if s.flags & (SYN | ACK) == SYN), None)
    if syn is None:
        return {"handshake": "no SYN captured", "synack": "none", "ack_sack": "none"}
    x = syn.seq
    start = segs.index(syn)
    rest = segs[start:]
    synack = next((s for s in rest if s.flags & (SYN | ACK) == SYN | ACK), None)
    after = rest[rest.index(synack) + 1 :] if synack is not None else []
    ack = next((s for s in after if s.flags & ~TcpFlags.PSH == ACK and not s.payload), None)
    blocks = (
        [b for opt in ack.options if isinstance(opt, Sack) for b in opt.blocks] if ack is not None else []
    )
    return {
        "handshake": " ".join(_flags(s) for s in rest[:3]),
        "synack": f"seq {relative(synack.seq, x)} ack {relative(synack.ack, x)}" if synack else "none",
        "ack_sack": " ".join(f"{{{relative(lo, x)}:{relative(hi, x)}}}" for lo, hi in blocks) or "none",
    }


def simultaneous_open_facts(packets: Sequence[IPv4Packet]) -> dict[str, Any]:
    """The handshake as one link saw it, and how many ACKs carried a D-SACK of the peer's SYN."""
    segs = [p.tcp for p in packets]
    handshake = [s for s in segs if s.flags & SYN][:4]
    isns = {s.src_port: s.seq for s in handshake if s.flags & (SYN | ACK) == SYN}
    dsacks = 0
    for p in packets:
        seg = p.tcp
        peer_isn = isns.get(seg.dst_port)
        if seg.flags & (SYN | ACK) == ACK and peer_isn is not None:
            blocks = [b for opt in seg.options if isinstance(opt, Sack) for b in opt.blocks]
            dsacks += (peer_isn, (peer_isn + 1) % SEQ_MOD) in blocks
    return {"handshake": " ".join(_flags(s) for s in handshake), "dsack_acks": dsacks}


# -- delays that make SYNs cross -------------------------------------------------------------------------


class DelayLine:
    """A middlebox that forwards every packet unchanged `delay` seconds later, in order, both ways."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.stats = Stats()
        self._held: collections.deque[tuple[float, Emit]] = collections.deque()

    def process(self, packet: IPv4Packet | bytes, direction: Direction, now: float) -> list[Emit]:
        parsed = coerce_packet(packet, self.stats)  # what does not parse is counted and dropped
        if parsed is not None:
            self.stats["delayed"] += 1
            self._held.append((now + self.delay, Emit(parsed, direction)))
        return []

    def next_deadline(self) -> float | None:
        return self._held[0][0] if self._held else None

    def on_timer(self, now: float) -> list[Emit]:
        out = []
        while self._held and self._held[0][0] <= now:
            out.append(self._held.popleft()[1])
        return out


@dataclass(frozen=True)
class DelayImpairment:
    """utcp.io.runtime.PacketImpairment: every packet `delay` seconds late (a utcp host's TUN traffic)."""

    delay: float

    def apply(self, packet: Any, now: float, /) -> list[tuple[float, Any]]:
        return [(now + self.delay, packet)]


# -- self-connect -----------------------------------------------------------------------------------------

KERNEL_SELF = "198.18.0.1"  # on the namespace's lo: a kernel self-connect always travels over lo
UTCP_SELF, UTCP_PEER = "198.18.0.2", "198.18.0.1"


async def _self_connect_netns(cell: Cell, ctx: CellContext) -> Observation:
    port = int(cell.params["port"])
    recorder = Recorder(ctx)
    notes: list[str] = []
    async with Lab(record=recorder, name="C") as lab:
        ns = lab.namespace("host")
        ep: Endpoint
        if cell.impl("host") == "kernel":
            address, link = KERNEL_SELF, "lo"
            ns.add_address("lo", f"{address}/32")
            lab.capture(ns, "lo", link)
            ep = lab.kernel(ns, address)
            notes.append(
                f"kernel in {ns.name}: bind({address}:{port}) then connect({address}:{port}), lo captured"
            )
        else:
            address, link = UTCP_SELF, "host-utcp"
            # Self-delivered packets are also written to the TUN so the capture shows them; the kernel
            # end drops them (not its address, forwarding off).
            ep = await lab.utcp(
                ns,
                f"{address}/24",
                peer=UTCP_PEER,
                policy=cell.policy,
                host_options={"loopback_visible": True},
                link=link,
            )
            notes.append(
                f"utcp host {address} in {ns.name}: connect({address}:{port}) from local port {port}"
            )
        ctx.label(address, "host")
        options = SocketOptions(local_port=port, bind_address=address, connect_timeout=5.0)
        stream = await ep.connect(address, port, options=options)
        await stream.send_all(PAYLOAD)
        echo = b""
        with trio.move_on_after(5):
            while len(echo) < len(PAYLOAD):
                chunk = await stream.receive_some(100)
                if not chunk:
                    break
                echo += chunk
        selves = [s for s in await ep.sockets() if s.local == s.remote == (address, port)]
        await recorder.wait_for(lambda p: bool(p.tcp.payload), 2.0)  # the capture has caught up
        ep.abort(stream)
    facts = self_connect_facts(recorder.on(link), address, port)
    return _self_observation(facts, echo, [s.state for s in selves], notes)


def _self_observation(facts: dict[str, Any], echo: bytes, states: list[str], notes: list[str]) -> Observation:
    established = states.count("ESTAB")
    ok = established == 1 and echo == PAYLOAD
    values = {
        "outcome": "self-connected" if ok else "not self-connected",
        **facts,
        "sockets": established,
        "states": states,
        "echo": echo == PAYLOAD,
    }
    notes.append(f"states of sockets with local == remote: {states}; echoed {echo!r}")
    return Observation(values=values, notes=notes)


def _self_connect_sim(cell: Cell, ctx: CellContext) -> Observation:
    port = int(cell.params["port"])
    net = Network(capture=True)
    host = Host([UTCP_SELF], seed=2, loopback_visible=True)  # so the network sees the self-delivered packets
    net.add_node("host", host)
    ctx.label(UTCP_SELF, "host")
    conn = host.connect(UTCP_SELF, port, net.now, local_port=port)
    net.run_until(lambda: conn.state is TcpState.ESTABLISHED, timeout=5.0)
    conn.send(PAYLOAD)
    net.run_for(0.5)
    echo = conn.read(100)
    host.events()
    packets = [rec.packet for rec in net.captures if rec.event == "send"]
    for rec in net.captures:
        if rec.event == "send":
            ctx.record("lo", build_ipv4(rec.packet), rec.time)
    states = [_ss_state(c) for c in host.connections()]
    facts = self_connect_facts(packets, UTCP_SELF, port)
    notes = [f"simulated utcp host {UTCP_SELF}: connect({UTCP_SELF}:{port}) from local port {port}"]
    return _self_observation(facts, echo, states, notes)


# -- simultaneous open -----------------------------------------------------------------------------------


@dataclass
class _Side:
    role: str
    endpoint: Endpoint
    address: str
    port: int


async def _simultaneous_netns(cell: Cell, ctx: CellContext) -> Observation:
    recorder = Recorder(ctx)
    kinds = (cell.impl("a"), cell.impl("b"))
    notes: list[str] = []
    async with Lab(record=recorder, name="C") as lab:
        if kinds == ("kernel", "kernel"):
            ns_a, ns_b = lab.namespace("a"), lab.namespace("b")
            await lab.box(DelayLine(DELAY), ns_a, ns_b, "198.18.1.1/24", "198.18.2.1/24", link="box")
            a = _Side("a", lab.kernel(ns_a, "198.18.1.1"), "198.18.1.1", A_PORT)
            b = _Side("b", lab.kernel(ns_b, "198.18.2.1"), "198.18.2.1", B_PORT)
            link = "box:client"
            notes.append(f"kernel a in {ns_a.name}, kernel b in {ns_b.name}, a {DELAY} s delay line between")
        elif "kernel" in kinds:
            ns = lab.namespace("lan")
            delay = DelayImpairment(DELAY)
            utcp = await lab.utcp(
                ns,
                "198.18.0.2/24",
                peer="198.18.0.1",
                policy=cell.policy,
                link="lan-utcp",
                impair_inbound=delay,
                impair_outbound=delay,
            )
            kernel = lab.kernel(ns, "198.18.0.1")
            sides: dict[Impl, tuple[Endpoint, str]] = {
                "kernel": (kernel, "198.18.0.1"),
                "utcp": (utcp, "198.18.0.2"),
            }
            a = _Side("a", sides[kinds[0]][0], sides[kinds[0]][1], A_PORT)
            b = _Side("b", sides[kinds[1]][0], sides[kinds[1]][1], B_PORT)
            link = "lan-utcp"
            notes.append(
                f"kernel and utcp in {ns.name} over a TUN device, utcp delays its traffic {DELAY} s each way"
            )
        else:
            ns = lab.namespace("lan")
            lab.forwarding(ns)
            delay = DelayImpairment(DELAY)
            ep_a = await lab.utcp(
                ns,
                "198.18.1.2/24",
                peer="198.18.1.1",
                policy=cell.policy,
                link="a-utcp",
                impair_outbound=delay,
            )
            ep_b = await lab.utcp(
                ns,
                "198.18.2.2/24",
                peer="198.18.2.1",
                policy=cell.policy,
                link="b-utcp",
                impair_outbound=delay,
            )
            a = _Side("a", ep_a, "198.18.1.2", A_PORT)
            b = _Side("b", ep_b, "198.18.2.2", B_PORT)
            link = "a-utcp"
            notes.append(
                f"two utcp hosts on TUN devices in {ns.name} (forwarding), each delaying its output {DELAY} s"
            )
        ctx.label(a.address, "a")
        ctx.label(b.address, "b")
        before = [await a.endpoint.counters(), await b.endpoint.counters()]
        streams: dict[str, trio.abc.HalfCloseableStream] = {}
        errors: list[str] = []

        async def connect(me: _Side, peer: _Side) -> None:
            options = SocketOptions(local_port=me.port, bind_address=me.address, connect_timeout=5.0)
            try:
                streams[me.role] = await me.endpoint.connect(peer.address, peer.port, options=options)
            except OSError as exc:
                errors.append(f"{me.role}: {type(exc).__name__}: {exc}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(connect, a, b)
            if not await _in_syn_sent(a, b, 2.0):
                errors.append("a never reached SYN-SENT")
            nursery.start_soon(connect, b, a)
        data = await _exchange(streams)
        states = {}
        for side, peer in ((a, b), (b, a)):
            mine = [
                s.state
                for s in await side.endpoint.sockets()
                if s.local == (side.address, side.port) and s.remote == (peer.address, peer.port)
            ]
            states[side.role] = mine[0] if mine else "none"
        after = [await a.endpoint.counters(), await b.endpoint.counters()]
        for stream in streams.values():
            await stream.aclose()
    challenge = sum(
        new.get("TcpExtTCPChallengeACK", 0) - old.get("TcpExtTCPChallengeACK", 0)
        for old, new in zip(before, after, strict=True)
    )
    facts = simultaneous_open_facts(
        [p for p in recorder.on(link) if {p.src, p.dst} == {a.address, b.address}]
    )
    return _simultaneous_observation(facts, states, data, challenge, errors, notes)


async def _in_syn_sent(side: _Side, peer: _Side, timeout: float) -> bool:
    """Wait until `side`'s socket to `peer` is in SYN-SENT: its SYN has left (both implementations send
    it on entering the state)."""
    with trio.move_on_after(timeout):
        while True:
            for s in await side.endpoint.sockets():
                mine = s.local == (side.address, side.port) and s.remote == (peer.address, peer.port)
                if mine and s.state == "SYN-SENT":
                    return True
            await trio.sleep(0.002)
    return False


async def _exchange(streams: dict[str, trio.abc.HalfCloseableStream]) -> str:
    """Send one message each way; "both ways", "a to b", "b to a" or "none"."""
    if set(streams) != {"a", "b"}:
        return "none"
    got = {}
    for sender, receiver in (("a", "b"), ("b", "a")):
        message = f"from {sender}".encode()
        await streams[sender].send_all(message)
        received = b""
        with trio.move_on_after(5):
            while len(received) < len(message):
                chunk = await streams[receiver].receive_some(100)
                if not chunk:
                    break
                received += chunk
        got[sender] = received == message
    if got["a"] and got["b"]:
        return "both ways"
    return "a to b" if got["a"] else "b to a" if got["b"] else "none"


def _simultaneous_observation(  # noqa: PLR0917
    facts: dict[str, Any],
    states: dict[str, str],
    data: str,
    challenge: int,
    errors: list[str],
    notes: list[str],
) -> Observation:
    ok = states == {"a": "ESTAB", "b": "ESTAB"} and data == "both ways"
    values = {
        "outcome": "established" if ok else "not established",
        **facts,
        "a_state": states.get("a", "none"),
        "b_state": states.get("b", "none"),
        "data": data,
        "challenge_acks": challenge,
    }
    notes.extend(errors)
    notes.append(f"handshake as seen by a's link: {facts['handshake']}; states {states}; data {data}")
    return Observation(values=values, notes=notes)


def _simultaneous_sim(cell: Cell, ctx: CellContext) -> Observation:
    net = Network(capture=True)
    addr_a, addr_b = "198.18.0.1", "198.18.0.2"
    host_a = Host([addr_a], seed=11)
    host_b = Host([addr_b], seed=12)
    net.add_node("a", host_a)
    net.add_node("b", host_b)
    net.link("a", "b", latency=DELAY)
    ctx.label(addr_a, "a")
    ctx.label(addr_b, "b")
    conn_a = host_a.connect(addr_b, B_PORT, net.now, local_port=A_PORT)
    net.run_for(0.01)  # b connects while a's SYN is still on the wire
    conn_b = host_b.connect(addr_a, A_PORT, net.now, local_port=B_PORT)
    conns = {"a": conn_a, "b": conn_b}
    net.run_until(lambda: all(c.state is TcpState.ESTABLISHED for c in conns.values()), timeout=5.0)
    got = {}
    for sender, receiver in (("a", "b"), ("b", "a")):
        conns[sender].send(f"from {sender}".encode())
        net.run_for(0.5)
        got[sender] = conns[receiver].read(100) == f"from {sender}".encode()
    host_a.events()
    host_b.events()
    data = "both ways" if all(got.values()) else "a to b" if got["a"] else "b to a" if got["b"] else "none"
    sent = [rec for rec in net.captures if rec.event == "send"]
    for rec in sent:
        ctx.record("a-b", build_ipv4(rec.packet), rec.time)
    states = {role: _ss_state(conn) for role, conn in conns.items()}
    challenge = host_a.counters["TCPChallengeACK"] + host_b.counters["TCPChallengeACK"]
    facts = simultaneous_open_facts([rec.packet for rec in sent])
    notes = [f"simulated utcp hosts a={addr_a} b={addr_b}, {DELAY} s one way; b connects 10 ms after a"]
    return _simultaneous_observation(facts, states, data, challenge, [], notes)


def _ss_state(conn: Connection) -> str:
    return "ESTAB" if conn.state is TcpState.ESTABLISHED else conn.state.value


async def run(cell: Cell, ctx: CellContext) -> Observation:
    if cell.backend == "sim":
        await trio.lowlevel.checkpoint()
        if cell.case == "self-connect":
            return _self_connect_sim(cell, ctx)
        return _simultaneous_sim(cell, ctx)
    if cell.case == "self-connect":
        return await _self_connect_netns(cell, ctx)
    return await _simultaneous_netns(cell, ctx)


SCENARIO = Scenario(
    name="C",
    title="Connecting to yourself, and simultaneous open",
    roles=("host", "a", "b"),
    cells=cells,
    run=run,
    summary=(
        "bind(ip:P) + connect(ip:P): one socket receives its own SYN, answers SYN-ACK with the same ISN and "
        "ends ESTABLISHED talking to itself (SYN seq X, SYN-ACK seq X ack X+1, ACK with D-SACK {X:X+1}). "
        "The general case, two endpoints connecting to each other with crossing SYNs, takes 4 segments and "
        "leaves both ESTABLISHED; since Linux 6.11 without a challenge ACK."
    ),
)
