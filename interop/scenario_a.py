"""Scenario A: FullNAT + TOA, two connections cross (SCENARIOS.md A, seeds/000_*).

The client talks to the RS twice from one local port (61902): directly to RS:3269, and through the
FullNAT LB's VIP:3306 (the LB re-sources it from LIP:lport and adds a TOA option carrying client:61902).
Both are legal (different 4-tuples at the client). What the RS makes of the second one depends on its
TOA module (the `case`):

- `rewrite` (slb_toa): the RS-side box rewrites LIP:lport to client:61902 inbound, so at the RS both
  connections are RS:3269 <-> client:61902, one 4-tuple. The LB's SYN meets the established direct
  connection and draws a challenge ACK carrying the direct connection's numbers, which the box sends
  back through the LB: the client receives it from VIP:3306. The client answers it with an RST (an
  unacceptable ACK in SYN-SENT) whose sequence number, shifted back by the LB, is exactly what the RS
  expects on the direct connection, so the RS drops the direct connection. The direct query is then
  never acknowledged: the client retransmits it, and every answer (RSTs from the RS's closed 4-tuple,
  or ACKs of whatever holds it now) leaves through the LB and reaches the client from VIP:3306 with
  the direct flow's sequence numbers: what the field report captured. Expected outcome: `crossing`.
- `getpeername` (stock toa.ko): packets are not rewritten, only getpeername() reports the TOA address.
  The RS sees two 4-tuples (client:61902 and LIP:lport): both connections work. Expected: `no crossing`.

Roles: client kernel|utcp, LB utcp (IPVS is not in this kernel), RS kernel|utcp. A kernel RS gets the
RS-side TOA as a box in front of it (`Chain(FullNat, RsToa)` between the two namespaces); a utcp RS in
`getpeername` mode runs it as a host option (`Host(toa="getpeername")`), in `rewrite` mode behind the
same box as the kernel. The sim backend replays the all-utcp cells on virtual time.

Observed keys, all measured (endpoints, or the capture of the client's side of the LB box):
- `direct_completed`: the query on the direct connection got its full reply within `DIRECT_WAIT` s.
- `lb_completed`: the connection through the VIP was established and a query on it got its full reply.
- `direct_retransmitted`: the capture shows the client sending one direct-connection data segment (same
  seq and length) at least `KEEPS_RETRANSMITTING` times: the field report's "keeps retransmitting". One
  resend alone is not the crossing's mark: a loaded machine can stall a box past the 200 ms minimum RTO
  once, and the kernel then resends a query that is answered anyway.
- `client_got_foreign_segments_from_vip`: the capture shows a segment from VIP:3306 to client:61902
  whose seq belongs to the RS's side of the direct connection (a seq or end seq the RS used on it, or an
  ack the client sent on it).
- `rs_app_peers`: what the RS application's getpeername() said for each connection it accepted, in
  order ("client" = client:61902; with toa.ko that is the TOA address, not the transport peer).
- `outcome`: "crossing" when the client got foreign segments from the VIP; else "no crossing" when both
  connections completed; else "neither".
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import trio

from interop.model import Cell, CellContext, Impl, Observation, Scenario
from utcp.io.api import UtcpStream
from utcp.lab import Endpoint, Lab, SocketOptions
from utcp.middlebox import (
    Chain,
    FullNat,
    FullNatConfig,
    Middlebox,
    RealServer,
    RsToa,
    RsToaConfig,
    ToaMode,
    VirtualService,
)
from utcp.middlebox.node import MiddleboxNode, from_networks
from utcp.sim import Network
from utcp.tcp.connection import Connection
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire.codec import build_ipv4, parse_ipv4
from utcp.wire.errors import WireError
from utcp.wire.packet import IPv4Packet, TcpFlags, TcpSegment

__all__ = [
    "CROSSING",
    "NO_CROSSING",
    "SCENARIO",
    "CrossingFacts",
    "cells",
    "crossing_facts",
    "run",
]

CPORT, VPORT, RSPORT = 61902, 3306, 3269  # the field report's ports
VIP, LIP = "198.18.100.1", "198.18.3.1"
KERNEL_CLIENT, KERNEL_RS = "198.18.1.1", "198.18.2.1"  # the LB box's devices' kernel ends
UTCP_CLIENT, UTCP_CLIENT_PEER = "198.18.5.2", "198.18.5.1"  # a utcp host behind the client namespace
UTCP_RS, UTCP_RS_PEER = "198.18.4.2", "198.18.4.1"  # a utcp host behind the RS namespace
QUERY_DIRECT, QUERY_LB = b"select 1 /* direct */", b"select 2 /* via LB */"
REPLY_PREFIX = b"reply to "
SETTLE = 0.2  # s between the LB connect and the direct query: the LB's SYN has reached the RS
DIRECT_WAIT = 2.5  # s for the direct reply: a crossing shows several retransmissions by then
LB_CONNECT_TIMEOUT = 3.0  # s: covers one SYN retransmission (1 s) and some
LB_WAIT = 1.5  # s for the reply through the LB
SEQ_MOD = 1 << 32
# Sends of one direct data segment that make it `direct_retransmitted`: a crossing retransmits with RTO
# backoff (200 ms, 400, 800 ms) within DIRECT_WAIT, i.e. 4 sends; one spurious RTO gives only 2.
KEEPS_RETRANSMITTING = 3

CROSSING: Mapping[str, Any] = MappingProxyType(
    {
        "outcome": "crossing",
        "direct_completed": False,
        "direct_retransmitted": True,
        "client_got_foreign_segments_from_vip": True,
        # The field report: the LB connection itself gets established (its retransmitted SYN finds the
        # RS's 4-tuple free once the client's RST, shifted by the LB, has reset the direct connection
        # there), and the RS application believes both connections come from client:61902.
        "lb_completed": True,
        "rs_app_peers": ["client", "client"],
    }
)
NO_CROSSING: Mapping[str, Any] = MappingProxyType(
    {
        "outcome": "no crossing",
        "direct_completed": True,
        "lb_completed": True,
        "direct_retransmitted": False,
        "client_got_foreign_segments_from_vip": False,
        "rs_app_peers": ["client", "client"],  # toa.ko: the LB connection's peer is the client too
    }
)
EXPECTED: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {"rewrite": CROSSING, "getpeername": NO_CROSSING}
)


def cells() -> list[Cell]:
    """Client kernel|utcp x RS kernel|utcp x TOA mode in namespaces; all-utcp in the simulator."""
    out: list[Cell] = []
    for case in ("rewrite", "getpeername"):
        for client in ("kernel", "utcp"):
            for rs in ("kernel", "utcp"):
                out.append(_cell(case, client, rs, "netns"))
        out.append(_cell(case, "utcp", "utcp", "sim"))
    return out


def _cell(case: str, client: Impl, rs: Impl, backend: str) -> Cell:
    return Cell(
        scenario="A",
        case=case,
        roles=(("client", client), ("lb", "utcp"), ("rs", rs)),
        expected=dict(EXPECTED[case]),
        policy="linux" if "utcp" in (client, rs) else None,
        backend="sim" if backend == "sim" else "netns",
        params={"cport": CPORT, "vport": VPORT, "rsport": RSPORT, "toa": case},
        timeout=15.0,
    )


# -- reading the capture ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrossingFacts:
    """What the capture of the client's link shows (see the module docstring for each key)."""

    direct_retransmitted: bool
    client_got_foreign_segments_from_vip: bool
    foreign: tuple[str, ...]  # the foreign segments, one line each, for the notes


def crossing_facts(packets: Sequence[IPv4Packet], client: str, rs: str) -> CrossingFacts:
    """The crossing facts from the packets seen on the client's link, in order."""

    def flow(p: IPv4Packet) -> tuple[str, int, str, int]:
        return (p.src, p.tcp.src_port, p.dst, p.tcp.dst_port)

    to_rs = (client, CPORT, rs, RSPORT)
    from_rs = (rs, RSPORT, client, CPORT)
    from_vip = (VIP, VPORT, client, CPORT)
    rs_seqs: set[int] = set()  # the RS's sequence space on the direct connection, as far as seen
    sends: Counter[tuple[int, int]] = Counter()  # (seq, length) of direct data segments: times sent
    foreign: list[str] = []
    for p in packets:
        seg = p.tcp
        key = flow(p)
        if key == from_rs:
            rs_seqs.update((seg.seq, (seg.seq + seg.seg_len) % SEQ_MOD))
        elif key == to_rs:
            if seg.flags & TcpFlags.ACK:
                rs_seqs.add(seg.ack)
            if seg.payload:
                sends[seg.seq, len(seg.payload)] += 1
        elif key == from_vip and seg.seq in rs_seqs:
            foreign.append(
                f"{VIP}:{VPORT} > {client}:{CPORT} [{_flags(seg)}] seq {seg.seq} ack {seg.ack} id {p.ident}"
            )
    retransmitted = max(sends.values(), default=0) >= KEEPS_RETRANSMITTING
    return CrossingFacts(retransmitted, bool(foreign), tuple(foreign))


def _flags(seg: TcpSegment) -> str:
    names = (
        ("S", TcpFlags.SYN),
        ("F", TcpFlags.FIN),
        ("R", TcpFlags.RST),
        ("P", TcpFlags.PSH),
        (".", TcpFlags.ACK),
    )
    return "".join(name for name, flag in names if seg.flags & flag)


def _peer_label(peer: tuple[str, int] | None, client: str) -> str:
    if peer is None:
        return "none"
    if peer == (client, CPORT):
        return "client"
    return "lb" if peer[0] == LIP else f"{peer[0]}:{peer[1]}"


def _observation(
    facts: CrossingFacts, direct_completed: bool, lb_completed: bool, peers: list[str], notes: list[str]
) -> Observation:
    if facts.client_got_foreign_segments_from_vip:
        outcome = "crossing"
    elif direct_completed and lb_completed:
        outcome = "no crossing"
    else:
        outcome = "neither"
    values = {
        "outcome": outcome,
        "direct_completed": direct_completed,
        "lb_completed": lb_completed,
        "direct_retransmitted": facts.direct_retransmitted,
        "client_got_foreign_segments_from_vip": facts.client_got_foreign_segments_from_vip,
        "rs_app_peers": peers,
    }
    notes.extend(f"from the VIP with the direct flow's seq: {line}" for line in facts.foreign[:5])
    if len(facts.foreign) > 5:
        notes.append(f"... {len(facts.foreign) - 5} more such segments")
    return Observation(values=values, notes=notes)


def _lb(rs: str) -> FullNat:
    service = VirtualService(VIP, VPORT, (RealServer(rs, RSPORT),))
    return FullNat(FullNatConfig(services=(service,), local_addresses=(LIP,), seed=3))


# -- namespaces ------------------------------------------------------------------------------------------


class _Recorder:
    """Forwards recorded packets to the cell and keeps the TCP ones of one link, parsed."""

    def __init__(self, ctx: CellContext, link: str) -> None:
        self.ctx = ctx
        self.link = link
        self.packets: list[IPv4Packet] = []

    def __call__(self, link: str, raw: bytes, time: float | None = None) -> None:
        self.ctx.record(link, raw, time)
        if link != self.link:
            return
        with contextlib.suppress(WireError):
            packet = parse_ipv4(raw, verify_checksums=False)
            if isinstance(packet.payload, TcpSegment):
                self.packets.append(packet)


@dataclass
class _RsApp:
    """The RS application: answers each request with `reply to <request>`; notes each peer it sees."""

    peer_of: Callable[[trio.abc.Stream], tuple[str, int] | None]
    peers: list[tuple[str, int] | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def serve(self, listener: trio.abc.Listener[Any]) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                self.peers.append(self.peer_of(stream))
                nursery.start_soon(self._answer, stream)

    async def _answer(self, stream: trio.abc.Stream) -> None:
        try:
            while request := await stream.receive_some(1024):
                await stream.send_all(REPLY_PREFIX + request)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.errors.append(f"RS connection ended: {type(exc).__name__}: {exc}")


async def _request(stream: trio.abc.Stream, query: bytes, timeout: float) -> bool:
    """Send `query`; True when the whole reply came back within `timeout`."""
    want = REPLY_PREFIX + query
    got = b""
    with trio.move_on_after(timeout):
        try:
            await stream.send_all(query)
            while len(got) < len(want):
                chunk = await stream.receive_some(1024)
                if not chunk:
                    break
                got += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
    return got == want


def _kernel_peer(toa: RsToa | None) -> Callable[[trio.abc.Stream], tuple[str, int] | None]:
    """getpeername() of a kernel RS stream; under toa.ko the TOA box's record for it when it has one."""

    def peer_of(stream: trio.abc.Stream) -> tuple[str, int] | None:
        if not isinstance(stream, trio.SocketStream):
            return None
        local, remote = stream.socket.getsockname(), stream.socket.getpeername()
        reported = toa.client_address(local, remote) if toa is not None else None
        return reported if reported is not None else (remote[0], remote[1])

    return peer_of


def _utcp_peer(stream: trio.abc.Stream) -> tuple[str, int] | None:
    return stream.getpeername() if isinstance(stream, UtcpStream) else None


async def _run_netns(cell: Cell, ctx: CellContext) -> Observation:
    mode = ToaMode(cell.case)
    client_impl, rs_impl = cell.impl("client"), cell.impl("rs")
    client_addr = KERNEL_CLIENT if client_impl == "kernel" else UTCP_CLIENT
    rs_addr = KERNEL_RS if rs_impl == "kernel" else UTCP_RS
    lb = _lb(rs_addr)
    # The RS-side TOA: a box in front of a kernel RS (either mode) or of a utcp RS in rewrite mode; a utcp
    # RS in getpeername mode does it itself (host option).
    toa = RsToa(RsToaConfig(mode=mode)) if rs_impl == "kernel" or mode is ToaMode.REWRITE else None
    boxes: list[Middlebox] = [lb] if toa is None else [lb, toa]
    recorder = _Recorder(ctx, "lb:client")
    notes = [
        f"client {client_impl} {client_addr}, LB utcp VIP {VIP}:{VPORT} LIP {LIP}, "
        f"RS {rs_impl} {rs_addr}:{RSPORT}",
        f"RS-side TOA {mode.value}: "
        + ("utcp host option" if toa is None else "box between the LB and the RS (one Chain box)"),
    ]
    for address, name in ((client_addr, "client"), (rs_addr, "rs"), (VIP, "vip"), (LIP, "lip")):
        ctx.label(address, name)
    async with Lab(record=recorder, name="A") as lab:
        ns_client, ns_rs = lab.namespace("client"), lab.namespace("rs")
        runtime = await lab.box(
            Chain(boxes), ns_client, ns_rs, f"{KERNEL_CLIENT}/24", f"{KERNEL_RS}/24", link="lb"
        )
        lab.route(ns_client, f"{VIP}/32", dev=runtime.client_side.name)
        lab.route(ns_rs, f"{LIP}/24", dev=runtime.server_side.name)
        client: Endpoint
        rs: Endpoint
        if client_impl == "kernel":
            client = lab.kernel(ns_client, KERNEL_CLIENT)
        else:
            lab.forwarding(ns_client)
            lab.route(ns_rs, f"{UTCP_CLIENT}/24", dev=runtime.server_side.name)
            client = await lab.utcp(
                ns_client, f"{UTCP_CLIENT}/24", peer=UTCP_CLIENT_PEER, policy=cell.policy, link="client-utcp"
            )
        if rs_impl == "kernel":
            rs = lab.kernel(ns_rs, KERNEL_RS)
            app = _RsApp(_kernel_peer(toa if mode is ToaMode.GETPEERNAME else None))
        else:
            lab.forwarding(ns_rs)
            lab.route(ns_client, f"{UTCP_RS}/24", dev=runtime.client_side.name)
            host_options = {"toa": "getpeername"} if toa is None else None
            rs = await lab.utcp(
                ns_rs,
                f"{UTCP_RS}/24",
                peer=UTCP_RS_PEER,
                policy=cell.policy,
                host_options=host_options,
                link="rs-utcp",
            )
            app = _RsApp(_utcp_peer)
        listener = await rs.listen(RSPORT)
        lab.start_soon(app.serve, listener)

        def options(timeout: float) -> SocketOptions:
            # The field report's application: SO_REUSEADDR + bind to one port for both connections.
            return SocketOptions(
                local_port=CPORT, bind_address=client_addr, reuseaddr=True, connect_timeout=timeout
            )

        direct = await client.connect(rs_addr, RSPORT, options=options(3.0))
        via_lb: list[trio.abc.HalfCloseableStream] = []

        async def connect_lb() -> None:
            try:
                via_lb.append(await client.connect(VIP, VPORT, options=options(LB_CONNECT_TIMEOUT)))
            except OSError as exc:
                notes.append(f"connect to the VIP failed: {type(exc).__name__}: {exc}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(connect_lb)
            await trio.sleep(SETTLE)
            direct_completed = await _request(direct, QUERY_DIRECT, DIRECT_WAIT)
        lb_completed = bool(via_lb) and await _request(via_lb[0], QUERY_LB, LB_WAIT)
        await trio.sleep(0.05)  # the capture catches up
        for stream in (direct, *via_lb):
            client.abort(stream)
    notes.extend(app.errors)
    facts = crossing_facts(recorder.packets, client_addr, rs_addr)
    return _observation(
        facts, direct_completed, lb_completed, [_peer_label(p, client_addr) for p in app.peers], notes
    )


# -- simulator -------------------------------------------------------------------------------------------


def _run_sim(cell: Cell, ctx: CellContext) -> Observation:
    mode = ToaMode(cell.case)
    client_addr, rs_addr = KERNEL_CLIENT, KERNEL_RS
    net = Network(capture=True, wire_roundtrip=True)
    client = Host([client_addr], seed=1)
    rs = Host([rs_addr], seed=2, toa="getpeername" if mode is ToaMode.GETPEERNAME else None)
    net.add_node("client", client)
    net.add_node("lb", MiddleboxNode(_lb(rs_addr), from_networks([f"{client_addr}/32"]), (VIP, LIP)))
    net.add_node("rs", rs)
    net.link("client", "lb", latency=0.001)
    net.add_route("client", "0.0.0.0/0", "lb")
    if mode is ToaMode.REWRITE:
        net.add_node("toa", MiddleboxNode(RsToa(RsToaConfig(mode=mode)), from_networks([rs_addr], by="dst")))
        net.link("lb", "toa", latency=0.001)
        net.link("toa", "rs", latency=0.0005)
        net.add_route("lb", f"{rs_addr}/32", "toa")
        net.add_route("toa", "0.0.0.0/0", "lb")
        net.add_route("toa", f"{rs_addr}/32", "rs")
        net.add_route("rs", "0.0.0.0/0", "toa")
    else:
        net.link("lb", "rs", latency=0.0015)
        net.add_route("lb", f"{rs_addr}/32", "rs")
        net.add_route("rs", "0.0.0.0/0", "lb")
    for address, name in ((client_addr, "client"), (rs_addr, "rs"), (VIP, "vip"), (LIP, "lip")):
        ctx.label(address, name)

    listener = rs.listen(rs_addr, RSPORT)
    accepted: list[Connection] = []

    def rs_app(_now: float) -> None:
        while (conn := listener.accept()) is not None:
            accepted.append(conn)
        for conn in accepted:
            if conn.readable and conn.error is None and conn.state is TcpState.ESTABLISHED:
                conn.send(REPLY_PREFIX + conn.read())

    net.add_hook(rs_app)
    direct = client.connect(rs_addr, RSPORT, net.now, local_port=CPORT)
    net.run_until(lambda: direct.state is TcpState.ESTABLISHED, timeout=3.0)
    via_lb = client.connect(VIP, VPORT, net.now, local_port=CPORT)  # legal: another 4-tuple
    net.run_for(SETTLE)
    direct.send(QUERY_DIRECT)
    replies = {id(direct): b"", id(via_lb): b""}

    def replied(conn: Connection, query: bytes) -> bool:
        if conn.error is None:
            replies[id(conn)] += conn.read()
        return replies[id(conn)] == REPLY_PREFIX + query

    direct_completed = net.run_until(lambda: replied(direct, QUERY_DIRECT), timeout=DIRECT_WAIT)
    lb_up = net.run_until(
        lambda: via_lb.state is TcpState.ESTABLISHED,
        timeout=max(0.0, LB_CONNECT_TIMEOUT - SETTLE - DIRECT_WAIT),
    )
    lb_completed = False
    if lb_up and via_lb.error is None:
        via_lb.send(QUERY_LB)
        lb_completed = net.run_until(lambda: replied(via_lb, QUERY_LB), timeout=LB_WAIT)
    client.events()
    rs.events()
    on_client_link = []
    for rec in net.captures:
        if rec.event == "send" and {rec.src_node, rec.dst_node} == {"client", "lb"}:
            ctx.record("client-lb", build_ipv4(rec.packet), rec.time)
            on_client_link.append(rec.packet)
    peers = [_peer_label(conn.toa_peer or conn.remote, client_addr) for conn in accepted]
    notes = [
        f"simulated: client utcp {client_addr}, LB VIP {VIP}:{VPORT} LIP {LIP}, RS utcp {rs_addr}:{RSPORT}",
        f"RS-side TOA {mode.value}: "
        + ("utcp host option" if mode is ToaMode.GETPEERNAME else "box before the RS"),
    ]
    return _observation(
        crossing_facts(on_client_link, client_addr, rs_addr), direct_completed, lb_completed, peers, notes
    )


async def run(cell: Cell, ctx: CellContext) -> Observation:
    if cell.backend == "sim":
        await trio.lowlevel.checkpoint()
        return _run_sim(cell, ctx)
    return await _run_netns(cell, ctx)


SCENARIO = Scenario(
    name="A",
    title="FullNAT + TOA: two connections cross",
    roles=("client", "lb", "rs"),
    cells=cells,
    run=run,
    summary=(
        "A client reaches an RS both directly and through a FullNAT LB (VIP:3306 -> RS:3269) from the same "
        "local port. With an address-rewriting TOA module on the RS (slb_toa) both connections become one "
        "4-tuple at the RS: the direct one stalls, retransmitting, and the client receives segments from "
        "the VIP carrying the direct connection's sequence numbers. With the stock toa.ko (getpeername only) "
        "the RS keeps two 4-tuples and both work."
    ),
)
