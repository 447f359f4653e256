"""Scenario D: tcp_tw_recycle behind NAT (SCENARIOS.md D, seeds/003_*).

Clients A and B share one outside address through a SNAT box; the server (port 19090, as in the field
report) *actively* closes a connection with A first, so its side goes through TIME-WAIT. A server with
`tcp_tw_recycle` (Linux <= 4.11; utcp preset `linux-tw-recycle`) then caches A's last TSval per peer
address and, for TCP_PAWS_MSL (60 s), silently drops a SYN from that address whose TSval is older by more
than 1 (tcp_peer_is_proven -> LINUX_MIB_PAWSPASSIVEREJECTED, nstat TcpExtPAWSPassive): B's SYNs die, B
sees only its own retransmissions and connect() times out.

Roles: `clients` (kernel | utcp), `snat` (kernel nft `masquerade` in a router namespace | the utcp
`Snat` box), `server` (kernel | utcp with policy `linux-tw-recycle` | utcp `linux`).

Cases: whether B's TS clock is behind A's, the condition for the drop.
- `unrelated-clocks`: B's TSvals are below A's cached one. utcp clients: TimestampClock fixed offsets,
  A 3e9 ahead of B 1e9 (the 2e9 gap < 2^31, so "older" also in 32-bit serial arithmetic). Kernel clients
  with `net.ipv4.tcp_timestamps=1`: a random offset under a boot-time key (SCENARIOS.md says per address
  pair; measured on this 6.18.44 kernel it changes with the ports too, i.e. per 4-tuple), so whose clock is
  behind is random but fixed for the boot and 4-tuple. Each client keeps one source port whatever role it
  plays; the cell first sends one probe SYN from each client's 4-tuple to the server port before anything
  listens (refused), reads both TSvals and casts the client whose clock is behind as B. That makes the
  precondition deterministic; the expectation stays data.
- `shared-clock`: B's TSvals come from the same clock as A's, later, so never older. Kernel clients with
  `net.ipv4.tcp_timestamps=2` (no offset: every namespace stamps the same kernel clock, tcp_clock_ms);
  utcp clients with zero offsets (both hosts stamp trio's clock). Even a tw_recycle server lets B in:
  why the seed's nginx test (which rewrote TSvals upward) never failed.

Expectations (SCENARIOS.md D facts, written per server and case, never read from a run):
- kernel server: no drop in either case. tcp_tw_recycle was removed in 4.12: on 6.18 the sysctl does not
  exist and nstat has no TcpExtPAWSPassive; the server keeps A's TIME-WAIT for 60 s and accepts B's SYN.
- utcp `linux-tw-recycle`: `unrelated-clocks` -> "B's SYNs dropped": every SYN of B reaches the server
  and is dropped (PAWSPassive counts each), no SYN-ACK, B's connect fails with ETIMEDOUT (clients run with
  tcp_syn_retries=1 to keep the cell short: 3 SYNs from a 6.18 kernel, 2 from utcp, see B_SYNS_DROPPED;
  both give up at 3 s). `shared-clock` -> no drop.
- utcp `linux`: no drop (no per-peer cache), PAWSPassive 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from interop.model import Cell, CellContext, Impl, Observation, Scenario
from interop.scenario_c import Recorder
from utcp.lab import Endpoint, Lab, Namespace, NamespaceError, SocketOptions, UtcpEndpoint
from utcp.middlebox.node import MiddleboxNode, from_networks
from utcp.middlebox.snat import Snat, SnatConfig
from utcp.policy import Policy, resolve_policy
from utcp.sim import Network
from utcp.tcp.clock import TimestampClock
from utcp.tcp.config import TcpConfig
from utcp.tcp.connection import Connection
from utcp.tcp.errors import ConnectionAborted, ConnectionRefused, ConnectionReset, ConnectionTimedOut
from utcp.tcp.host import Host
from utcp.tcp.seq import SEQ_MASK, seq_diff
from utcp.tcp.state import TcpState
from utcp.wire.codec import build_ipv4
from utcp.wire.packet import IPv4Packet, TcpFlags, Timestamps

__all__ = [
    "CASES",
    "SCENARIO",
    "SERVERS",
    "DFacts",
    "cells",
    "d_facts",
    "d_observation",
    "expectation",
    "run",
]

PORT = 19090  # the field report's server port
CLIENT_PORTS = (41001, 41002)  # distinct: B's SYN must reach the listener, not A's TIME-WAIT socket
SYN_RETRIES = 1  # clients' tcp_syn_retries: B gives up after 3 s instead of 127 s
# SYNs B sends before connect() fails with ETIMEDOUT, per client implementation:
# - Linux 6.18: tcp_syn_linear_timeouts=4 (default since 6.7) keeps the SYN RTO at 1 s for the first 4
#   retransmissions, while tcp_write_timeout's budget is tcp_model_timeout(syn_retries=1) = (2^2 - 1) x 1 s
#   = 3 s: SYNs at 0, 1 and 2 s, ETIMEDOUT at 3 s (measured: TSvals +0, +1016, +2036 ms; failed at 3.08 s);
# - utcp: tcp_syn_retries counts retransmissions, RTO doubling: SYNs at 0 and 1 s, ETIMEDOUT at 3 s.
B_SYNS_DROPPED: dict[Impl, int] = {"kernel": 3, "utcp": 1 + SYN_RETRIES}
TCP_PAWS_WINDOW = 1  # Linux: a TSval older by more than this is rejected

OUTSIDE = "198.18.2.254"  # the SNAT address the server sees
KERNEL_SERVER = "198.18.2.1"
UTCP_SERVER, UTCP_SERVER_PEER = "198.18.3.2", "198.18.3.1"
KERNEL_CLIENTS = ("198.18.1.1", "198.18.1.2")
ROUTER_INSIDE = "198.18.1.254"
UTCP_CLIENTS = (("198.18.4.2", "198.18.4.1"), ("198.18.4.6", "198.18.4.5"))  # (address, TUN kernel end)
UNRELATED_OFFSETS = (3_000_000_000, 1_000_000_000)  # utcp A, B: B 2e9 ticks behind (< 2^31)
PROBE_MARGIN = 10_000  # ticks: two kernel offsets closer than this cannot be ordered safely (p ~ 5e-6)
PAWS_PASSIVE = "TcpExtPAWSPassive"

UNRELATED, SHARED = "unrelated-clocks", "shared-clock"
CASES = (UNRELATED, SHARED)
SERVERS: tuple[tuple[Impl, str | None], ...] = (
    ("kernel", None),
    ("utcp", "linux-tw-recycle"),
    ("utcp", "linux"),
)
DROPPED, NO_DROP = "B's SYNs dropped", "no drop"
SYN = TcpFlags.SYN
SYN_ACK = TcpFlags.SYN | TcpFlags.ACK


def expectation(case: str, clients: Impl, server: Impl, policy: str | None) -> dict[str, Any]:
    """SCENARIOS.md D for one case, client implementation and server (see the module docstring)."""
    behind = case == UNRELATED
    common: dict[str, Any] = {
        "server_peers": [OUTSIDE],  # the server sees one address: the SNAT's
        "server_closed_actively": True,  # A's connection went through TIME-WAIT on the server
        "b_ts_behind_a": behind,  # the drop's precondition, set up by the case
    }
    if server == "kernel":
        return {
            "outcome": NO_DROP,
            **common,
            "tw_recycle": "sysctl absent",  # removed in Linux 4.12
            "b_connect": "connected",
            "b_syns": 1,
            "synacks_to_b": 1,
            "paws_passive": "absent",  # LINUX_MIB_PAWSPASSIVEREJECTED left with it
        }
    recycle = policy == "linux-tw-recycle"
    if recycle and behind:
        return {
            "outcome": DROPPED,
            **common,
            "tw_recycle": "on",
            "b_connect": "TimeoutError",  # ETIMEDOUT after tcp_syn_retries
            "b_syns": B_SYNS_DROPPED[clients],  # the SYN and its retransmissions, all reaching the server
            "synacks_to_b": 0,
            "paws_passive": B_SYNS_DROPPED[clients],  # one per dropped SYN
        }
    return {
        "outcome": NO_DROP,
        **common,
        "tw_recycle": "on" if recycle else "off",
        "b_connect": "connected",
        "b_syns": 1,
        "synacks_to_b": 1,
        "paws_passive": 0,
    }


def _params(case: str, clients: Impl) -> dict[str, Any]:
    params: dict[str, Any] = {"port": PORT, "syn_retries": SYN_RETRIES}
    if clients == "kernel":
        params["tcp_timestamps"] = 1 if case == UNRELATED else 2
    else:
        params["ts_offsets"] = list(UNRELATED_OFFSETS) if case == UNRELATED else [0, 0]
    return params


def cells() -> list[Cell]:
    """clients x snat x server (3 kinds) x case on netns; the all-utcp ones again in the simulator."""
    out: list[Cell] = []
    impls: tuple[Impl, ...] = ("kernel", "utcp")
    for case in CASES:
        for clients in impls:
            for snat in impls:
                for server, policy in SERVERS:
                    roles: tuple[tuple[str, Impl], ...] = (
                        ("clients", clients),
                        ("snat", snat),
                        ("server", server),
                    )
                    out.append(
                        Cell(
                            scenario="D",
                            case=case,
                            roles=roles,
                            expected=expectation(case, clients, server, policy),
                            policy=policy,
                            params=_params(case, clients),
                            timeout=30.0,
                        )
                    )
        for server, policy in SERVERS:
            if server == "utcp":
                out.append(
                    Cell(
                        scenario="D",
                        case=case,
                        roles=(("clients", "utcp"), ("snat", "utcp"), ("server", "utcp")),
                        expected=expectation(case, "utcp", server, policy),
                        policy=policy,
                        backend="sim",
                        params=_params(case, "utcp"),
                        timeout=10.0,
                    )
                )
    return out


# -- reading what the server saw ---------------------------------------------------------------------------


def _tsval(packet: IPv4Packet) -> int | None:
    return next((opt.tsval for opt in packet.tcp.options if isinstance(opt, Timestamps)), None)


@dataclass(frozen=True)
class DFacts:
    """What crossed the link between the SNAT and the server, phase A (A's connection) then phase B."""

    server_peers: list[str]
    b_syns: int
    synacks_to_b: int
    a_last_tsval: int | None  # the TSval the server remembers: A's last segment before its TIME-WAIT
    b_first_tsval: int | None

    @property
    def b_ts_behind_a(self) -> bool | None:
        """tcp_peer_is_proven's test: (s32)(cached - tsval) > TCP_PAWS_WINDOW."""
        if self.a_last_tsval is None or self.b_first_tsval is None:
            return None
        return seq_diff(self.a_last_tsval, self.b_first_tsval) > TCP_PAWS_WINDOW


def d_facts(phase_a: Sequence[IPv4Packet], phase_b: Sequence[IPv4Packet], port: int) -> DFacts:
    """Facts from the server link's packets of each phase (`port`: the server's)."""
    to_server_a = [p for p in phase_a if p.tcp.dst_port == port]
    to_server_b = [p for p in phase_b if p.tcp.dst_port == port]
    a_ts = [ts for p in to_server_a if (ts := _tsval(p)) is not None]
    b_syns = [p for p in to_server_b if p.tcp.flags & SYN_ACK == SYN]
    synacks = [p for p in phase_b if p.tcp.src_port == port and p.tcp.flags & SYN_ACK == SYN_ACK]
    return DFacts(
        server_peers=sorted({p.src for p in to_server_a + to_server_b}),
        b_syns=len(b_syns),
        synacks_to_b=len(synacks),
        a_last_tsval=a_ts[-1] if a_ts else None,
        b_first_tsval=_tsval(b_syns[0]) if b_syns else None,
    )


def server_closed_first(phase_a: Sequence[IPv4Packet], port: int) -> bool:
    """Whether the server closed A's connection actively, as the wire shows it (`port`: the server's): its
    FIN came before the client's, and it acknowledged the client's FIN. RFC 9293 3.10.7.4 then leaves it
    in TIME-WAIT (FIN-WAIT-2 + FIN, or CLOSING + ACK): the tw_recycle code path of Linux <= 4.11."""
    server_fin = False
    client_fin_end: int | None = None  # the sequence number that acknowledges the client's FIN
    for packet in phase_a:
        seg = packet.tcp
        if seg.src_port == port:
            if client_fin_end is None:
                server_fin = server_fin or bool(seg.flags & TcpFlags.FIN)
            elif seg.flags & TcpFlags.ACK and seg.ack == client_fin_end:
                return server_fin
        elif seg.dst_port == port and seg.flags & TcpFlags.FIN and client_fin_end is None:
            client_fin_end = (seg.seq + seg.seg_len) & SEQ_MASK
    return False


def d_observation(
    facts: DFacts,
    *,
    b_connect: str,
    paws_passive: int | str,
    tw_recycle: str,
    closed_actively: bool,
    notes: list[str],
) -> Observation:
    if b_connect != "connected" and facts.b_syns > 1 and facts.synacks_to_b == 0:
        outcome = DROPPED
    elif b_connect == "connected" and facts.b_syns == 1:
        outcome = NO_DROP
    else:
        outcome = f"B {b_connect} after {facts.b_syns} SYN(s), {facts.synacks_to_b} SYN-ACK(s)"
    values: dict[str, Any] = {
        "outcome": outcome,
        "server_peers": facts.server_peers,
        "server_closed_actively": closed_actively,
        "b_ts_behind_a": facts.b_ts_behind_a,
        "tw_recycle": tw_recycle,
        "b_connect": b_connect,
        "b_syns": facts.b_syns,
        "synacks_to_b": facts.synacks_to_b,
        "paws_passive": paws_passive,
    }
    notes.append(
        f"A's last TSval at the server {facts.a_last_tsval}, B's first SYN TSval {facts.b_first_tsval}: "
        f"B behind A = {facts.b_ts_behind_a}"
    )
    return Observation(values=values, notes=notes)


# -- real namespaces ------------------------------------------------------------------------------------

MASQUERADE = """
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "%s" masquerade
    }
}
"""
SERVER_LINK = "snat:server"  # what crossed between the SNAT and the server
CLIENT_LINK = "snat:client"


@dataclass
class _Client:
    endpoint: Endpoint
    address: str
    port: int  # its source port, whichever role it plays (the kernel's TS offset hashes the ports too)


@dataclass
class _Topology:
    clients: list[_Client]
    server: Endpoint
    server_ns: Namespace
    server_address: str


async def _build(lab: Lab, cell: Cell, ctx: CellContext) -> _Topology:
    """Namespaces `clients`, `server` (and `router` for nft); links captured as snat:client/snat:server."""
    params = cell.params
    kernel_clients = cell.impl("clients") == "kernel"
    sysctls: dict[str, str | int] = {"net.ipv4.tcp_syn_retries": int(params["syn_retries"])}
    if kernel_clients:
        sysctls["net.ipv4.tcp_timestamps"] = int(params["tcp_timestamps"])
    ns_c = lab.namespace("clients", sysctls=sysctls)
    ns_s = lab.namespace("server")
    utcp_server = cell.impl("server") == "utcp"
    if cell.impl("snat") == "utcp":
        box = Snat(SnatConfig(outside_address=OUTSIDE, seed=4))
        runtime = await lab.box(
            box, ns_c, ns_s, f"{KERNEL_CLIENTS[0]}/24", f"{KERNEL_SERVER}/24", link="snat"
        )
        client_dev = runtime.client_side.name
        if utcp_server:
            lab.route(ns_c, "198.18.3.0/24", dev=client_dev)
        ctx.note(f"utcp Snat box between {ns_c.name} and {ns_s.name}, outside address {OUTSIDE}")
    else:
        ns_r = lab.namespace("router")
        client_dev, _ = lab.veth(ns_c, f"{KERNEL_CLIENTS[0]}/24", ns_r, f"{ROUTER_INSIDE}/24")
        out_dev, server_dev = lab.veth(ns_r, f"{OUTSIDE}/24", ns_s, f"{KERNEL_SERVER}/24")
        lab.forwarding(ns_r)
        lab.nft(ns_r, MASQUERADE % out_dev)
        lab.route(ns_c, "198.18.2.0/24", via=ROUTER_INSIDE)
        if utcp_server:
            lab.route(ns_c, "198.18.3.0/24", via=ROUTER_INSIDE)
            lab.route(ns_r, "198.18.3.0/24", via=KERNEL_SERVER)
        if not kernel_clients:
            lab.route(ns_r, "198.18.4.0/24", via=KERNEL_CLIENTS[0])
        lab.capture(ns_c, client_dev, CLIENT_LINK)
        lab.capture(ns_s, server_dev, SERVER_LINK)
        ctx.note(f"kernel nft masquerade in {ns_r.name} on {out_dev} ({OUTSIDE})")

    clients: list[_Client] = []
    if kernel_clients:
        ns_c.add_address(client_dev, f"{KERNEL_CLIENTS[1]}/24")
        clients = [
            _Client(lab.kernel(ns_c, address), address, port)
            for address, port in zip(KERNEL_CLIENTS, CLIENT_PORTS, strict=True)
        ]
        ctx.note(
            f"kernel clients {KERNEL_CLIENTS} in {ns_c.name}: tcp_timestamps={params['tcp_timestamps']}, "
            f"tcp_syn_retries={params['syn_retries']}"
        )
    else:
        lab.forwarding(ns_c)
        offsets = [int(o) for o in params["ts_offsets"]]
        for i, ((address, peer), offset) in enumerate(zip(UTCP_CLIENTS, offsets, strict=True)):
            clock = TimestampClock(offset_mode="fixed", fixed_offset=offset)
            ep = await lab.utcp(
                ns_c,
                f"{address}/30",
                peer=peer,
                policy="linux",
                config=TcpConfig(syn_retries=int(params["syn_retries"])),
                host_options={"ts_clock": clock},
                seed=10 + i,
                link=f"client{i + 1}-utcp",
            )
            clients.append(_Client(ep, address, CLIENT_PORTS[i]))
        ctx.note(f"utcp clients {[c.address for c in clients]} in {ns_c.name}: TS offsets {offsets}")

    server: Endpoint
    if utcp_server:
        lab.forwarding(ns_s)
        server = await lab.utcp(
            ns_s, f"{UTCP_SERVER}/24", peer=UTCP_SERVER_PEER, policy=cell.policy, link="server-utcp"
        )
        address = UTCP_SERVER
        ctx.note(f"utcp server {UTCP_SERVER} in {ns_s.name}, policy {cell.policy}")
    else:
        server = lab.kernel(ns_s, KERNEL_SERVER)
        address = KERNEL_SERVER
        ctx.note(f"kernel server {KERNEL_SERVER} in {ns_s.name}")
    ctx.label(address, "server")
    ctx.label(OUTSIDE, "snat")
    return _Topology(clients, server, ns_s, address)


def _server_link(recorder: Recorder) -> list[IPv4Packet]:
    return recorder.on(SERVER_LINK)


async def _cast_kernel_clients(topo: _Topology, recorder: Recorder, ctx: CellContext) -> None:
    """tcp_timestamps=1: one probe SYN per client on its own 4-tuple to the server port before anything
    listens (refused); the client whose TS offset is behind plays B (topo.clients becomes [A, B]).

    The probe must use the very 4-tuple of the real connection: measured on Linux 6.18.44, the offset
    changes with the source or destination port too (the same addresses, port 41001 vs 41002: 2441105044
    vs 2738522952 at the same moment), not only with the address pair."""
    for client in topo.clients:
        options = SocketOptions(bind_address=client.address, local_port=client.port, connect_timeout=3.0)
        try:
            stream = await client.endpoint.connect(topo.server_address, PORT, options=options)
        except ConnectionRefusedError:
            continue
        await stream.aclose()
        raise RuntimeError(f"the probe to port {PORT} was accepted before the server listened")
    await trio.sleep(0.05)  # the capture catches up
    tsvals: dict[str, int] = {}
    for packet in recorder.on(CLIENT_LINK):
        ts = _tsval(packet)
        if packet.tcp.dst_port == PORT and packet.tcp.flags & SYN_ACK == SYN and ts is not None:
            tsvals.setdefault(packet.src, ts)
    first, second = topo.clients
    if first.address not in tsvals or second.address not in tsvals:
        raise RuntimeError(f"probe SYNs not captured (TSvals {tsvals})")
    ahead = seq_diff(tsvals[first.address], tsvals[second.address])
    if abs(ahead) < PROBE_MARGIN:
        raise RuntimeError(f"TS offsets too close to order: {tsvals}")
    if ahead < 0:
        topo.clients = [second, first]
    ctx.note(
        f"probe SYN TSvals {tsvals}: {topo.clients[1].address}'s clock is behind, so it plays B "
        "(tcp_timestamps=1: a random offset per connection 4-tuple, fixed for the boot)"
    )


async def _a_then_server_closes(
    topo: _Topology, listener: trio.abc.Listener[Any], a: _Client, server_link: Callable[[], list[IPv4Packet]]
) -> None:
    """A connects; the server accepts and closes first; A closes after reading EOF. Returns once
    `server_link()` (what the server's link recorded of A's connection) shows the server acking A's FIN
    after its own (server_closed_first), or after 2 s more without. A poll of the server's sockets would
    miss a recycled TIME-WAIT (3.5 RTO, ~0.7 s) on a loaded machine; the wire shows the transition."""
    options = SocketOptions(bind_address=a.address, local_port=a.port, connect_timeout=3.0)
    with trio.fail_after(5):
        a_stream = await a.endpoint.connect(topo.server_address, PORT, options=options)
        served = await listener.accept()
        await served.aclose()  # the server closes actively: its side goes through TIME-WAIT
        while await a_stream.receive_some(100):
            pass
        await a_stream.aclose()
    with trio.move_on_after(2.0):  # the capture catches up
        while not server_closed_first(server_link(), PORT):
            await trio.sleep(0.01)


async def _b_connects(topo: _Topology, b: _Client) -> str:
    """B's connect(): "connected" or the exception's class name (TimeoutError after tcp_syn_retries)."""
    options = SocketOptions(bind_address=b.address, local_port=b.port, connect_timeout=10.0)
    try:
        stream = await b.endpoint.connect(topo.server_address, PORT, options=options)
    except OSError as exc:
        return type(exc).__name__
    b.endpoint.abort(stream)
    return "connected"


async def _server_counter(topo: _Topology) -> int | None:
    counters = await topo.server.counters()
    if topo.server.impl == "utcp":
        return counters.get(PAWS_PASSIVE, 0)
    return counters.get(PAWS_PASSIVE)  # None: the kernel has no such counter


def _tw_recycle(topo: _Topology) -> str:
    if isinstance(topo.server, UtcpEndpoint):
        return "on" if topo.server.host.policy.tw_recycle else "off"
    try:
        return topo.server_ns.sysctl_get("net.ipv4.tcp_tw_recycle")
    except NamespaceError:
        return "sysctl absent"


async def _run_netns(cell: Cell, ctx: CellContext) -> Observation:
    recorder = Recorder(ctx)
    async with Lab(record=recorder, name="D") as lab:
        topo = await _build(lab, cell, ctx)
        if cell.impl("clients") == "kernel" and cell.case == UNRELATED:
            await _cast_kernel_clients(topo, recorder, ctx)
        a, b = topo.clients
        ctx.label(a.address, "A")
        ctx.label(b.address, "B")
        tw_recycle = _tw_recycle(topo)
        listener = await topo.server.listen(PORT)
        before = await _server_counter(topo)
        start_a = len(_server_link(recorder))
        await _a_then_server_closes(topo, listener, a, lambda: _server_link(recorder)[start_a:])
        start_b = len(_server_link(recorder))
        started = trio.current_time()
        b_connect = await _b_connects(topo, b)
        elapsed = trio.current_time() - started
        await trio.sleep(0.05)
        after = await _server_counter(topo)
        packets = _server_link(recorder)
        await listener.aclose()
    facts = d_facts(packets[start_a:start_b], packets[start_b:], PORT)
    closed_actively = server_closed_first(packets[start_a:start_b], PORT)
    paws: int | str = "absent" if after is None else after - (before or 0)
    notes = [f"B: connect() -> {b_connect} after {elapsed:.2f} s"]
    return d_observation(
        facts,
        b_connect=b_connect,
        paws_passive=paws,
        tw_recycle=tw_recycle,
        closed_actively=closed_actively,
        notes=notes,
    )


# -- the simulator (all-utcp) ---------------------------------------------------------------------------

_CONNECT_ERRORS: dict[type, str] = {
    ConnectionTimedOut: "TimeoutError",
    ConnectionRefused: "ConnectionRefusedError",
    ConnectionReset: "ConnectionResetError",
    ConnectionAborted: "ConnectionAbortedError",
}


def _sim_error(conn: Connection) -> str:
    """The exception utcp.io.api raises for this connection's failure (what a netns cell reports)."""
    return _CONNECT_ERRORS.get(type(conn.error), "OSError") if conn.error is not None else "OSError"


def sim_topology(
    policy: Policy, ts_offsets: Sequence[int], config: TcpConfig | None = None, *, capture: bool = False
) -> tuple[Network, Host, Host, Host]:
    """The all-utcp D topology on virtual time: clients A and B (fixed TS clock offsets) behind a utcp
    SNAT to OUTSIDE, and a server with `policy` at UTCP_SERVER. Returns (network, server, a, b)."""
    net = Network(capture=capture)
    server = Host([UTCP_SERVER], seed=3, policy=policy)
    hosts = []
    for i, ((address, _peer), offset) in enumerate(zip(UTCP_CLIENTS, ts_offsets, strict=True)):
        clock = TimestampClock(offset_mode="fixed", fixed_offset=int(offset))
        hosts.append(Host([address], config, seed=10 + i, ts_clock=clock))
    a, b = hosts
    snat = MiddleboxNode(
        Snat(SnatConfig(outside_address=OUTSIDE, inside_networks=("198.18.4.0/24",), seed=4)),
        from_networks(["198.18.4.0/24"]),
        (OUTSIDE,),
    )
    net.add_node("server", server)
    net.add_node("a", a)
    net.add_node("b", b)
    net.add_node("snat", snat, [OUTSIDE])
    for name in ("a", "b", "server"):
        net.link(name, "snat", latency=0.001)
    net.add_route("a", "0.0.0.0/0", "snat")
    net.add_route("b", "0.0.0.0/0", "snat")
    return net, server, a, b


def _run_sim(cell: Cell, ctx: CellContext) -> Observation:
    config = TcpConfig(syn_retries=int(cell.params["syn_retries"]))
    policy = resolve_policy(cell.policy or "linux")
    net, server, a, b = sim_topology(policy, cell.params["ts_offsets"], config, capture=True)
    listener = server.listen(UTCP_SERVER, PORT)
    before = server.counters["PAWSPassive"]

    conn_a = a.connect(UTCP_SERVER, PORT, net.now, local_port=CLIENT_PORTS[0])
    if not net.run_until(lambda: listener.pending > 0 and conn_a.state is TcpState.ESTABLISHED, 5.0):
        raise RuntimeError(f"A did not connect: {conn_a.state}")
    served = listener.accept()
    assert served is not None
    served.close()  # the server closes actively
    net.run_until(lambda: conn_a.state is TcpState.CLOSE_WAIT, 1.0)
    conn_a.close()
    closed_actively = net.run_until(lambda: served.state is TcpState.TIME_WAIT, 1.0)
    mark = net.now
    conn_b = b.connect(UTCP_SERVER, PORT, net.now, local_port=CLIENT_PORTS[1])
    net.run_until(lambda: conn_b.state in (TcpState.ESTABLISHED, TcpState.CLOSED), 10.0)
    b_connect = "connected" if conn_b.state is TcpState.ESTABLISHED else _sim_error(conn_b)

    sent = [rec for rec in net.captures if rec.event == "send"]
    for rec in sent:
        ctx.record(rec.link, build_ipv4(rec.packet), rec.time)
    to_server = [rec for rec in sent if {rec.src_node, rec.dst_node} == {"snat", "server"}]
    facts = d_facts(
        [r.packet for r in to_server if r.time < mark], [r.packet for r in to_server if r.time >= mark], PORT
    )
    ctx.label(UTCP_SERVER, "server")
    ctx.label(OUTSIDE, "snat")
    ctx.label(a.addresses[0], "A")
    ctx.label(b.addresses[0], "B")
    notes = [
        f"simulated: utcp clients A {a.addresses[0]} and B {b.addresses[0]} (TS offsets "
        f"{list(cell.params['ts_offsets'])}), utcp Snat {OUTSIDE}, utcp server policy {policy.name}",
        f"B: connect -> {b_connect} at virtual +{net.now - mark:.2f} s",
    ]
    return d_observation(
        facts,
        b_connect=b_connect,
        paws_passive=server.counters["PAWSPassive"] - before,
        tw_recycle="on" if policy.tw_recycle else "off",
        closed_actively=closed_actively,
        notes=notes,
    )


async def run(cell: Cell, ctx: CellContext) -> Observation:
    if cell.backend == "sim":
        await trio.lowlevel.checkpoint()
        return _run_sim(cell, ctx)
    return await _run_netns(cell, ctx)


SCENARIO = Scenario(
    name="D",
    title="tcp_tw_recycle behind NAT",
    roles=("clients", "snat", "server"),
    cells=cells,
    run=run,
    summary=(
        "Clients A and B share one SNAT address. The server actively closes a connection with A; with "
        "tcp_tw_recycle it caches A's last TSval per peer address, and for TCP_PAWS_MSL (60 s) drops any SYN "
        "from that address with an older TSval (PAWSPassive): B, whose TS clock is behind A's, only sees its "
        "own SYN retransmissions and times out. tcp_tw_recycle left Linux in 4.12, so a 6.18 kernel server "
        "lets B in; only a utcp server with the linux-tw-recycle preset reproduces the drop, and only when "
        "B's clock is behind (tcp_timestamps=1 offsets, unrelated machines), never with a shared clock "
        "(tcp_timestamps=2 on one kernel)."
    ),
)
