"""Scenario B: a health check's RST overtakes its third ACK (SCENARIOS.md B, seeds/001_*).

An LVS health check handshakes and then resets. When the RST reaches the server *before* the third ACK,
the server's request socket judges it: Linux (`tcp_check_req`) PAWS-checks it, drops an RST whose TSval is
older than the SYN's (TcpExtPAWSEstab +1), and the late ACK then creates an ESTABLISHED socket nobody
owns: a leftover. RFC 7323 says RSTs are acceptable whatever their timestamp, so the `rfc7323` preset
never leaves one.

Cases are the rows of interop/b_table.py (1, 2, 3, 4-ts0, 4-stale, 4-T-1, 5, 5-echo, E, E'-rst, E'-syn,
E''-data, E''-ack), each with what the server does per implementation and policy:

- client `utcp` (the crafting API holds the third ACK and forges RSTs with normal, missing, zero or stale
  timestamps) against a server `kernel` (expectation: the table's `linux` column, measured on 6.18), a
  server `utcp` with each preset (that preset's column), over TUN devices in one namespace; and the same
  rows all-utcp on virtual time (`sim`);
- client `kernel`: it cannot forge a TSval; it closes with SO_LINGER 0 right after connect(). Linux 6.18
  sends that RST as RST|ACK with a fresh timestamp (TSval >= the SYN's; `client_rst` shows what was
  measured), so in order it is case 1, and when the impairment box holds the third ACK until the RST has
  passed it is case 2; against a server kernel or utcp with each preset.

What is compared: `outcome` (one word, see interop.b_script.OUTCOMES), `leftover` (an ESTABLISHED socket
left on the server for the client's tuple), `counters` (non-zero deltas of the server's counters by nstat
name, every other compared counter unmoved) and `replies` (the server's segments after its SYN-ACK,
normalised: `R seq=snd` is an RST at the server's ISN+1 without ACK or options).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from interop.b_script import (
    CLIENT,
    COMPARED,
    SERVER,
    STEP_GAP,
    Observed,
    Row,
    client_clock,
    normalise,
    perform,
    run_row_sim,
)
from interop.b_table import PRESETS_UNDER_TEST, ROWS, TABLE
from interop.model import Cell, CellContext, Impl, Observation, Scenario
from utcp.lab import Endpoint, Lab, SocketOptions, UtcpEndpoint
from utcp.middlebox import Direction, HoldUntil, ImpairBox, Match, Rule
from utcp.policy import linux_counter_name
from utcp.tcp.connection import Connection
from utcp.wire.codec import parse_ipv4
from utcp.wire.errors import WireError
from utcp.wire.format import format_flags
from utcp.wire.packet import IPv4Packet, TcpFlags, TcpSegment, Timestamps

__all__ = [
    "KERNEL_CLIENT_CASES",
    "PORT",
    "SCENARIO",
    "KernelClientCase",
    "Recorder",
    "cells",
    "client_rst_kind",
    "run",
]

PORT = 8000  # the field report's health-checked port
CLIENT_PORT = 41000
SETTLE = 0.1  # after the last step: late replies (a 40 ms delayed ACK) arrive
NETNS_TIMEOUT = 20.0
SIM_TIMEOUT = 10.0
SEQ_HALF = 1 << 31


@dataclass(frozen=True)
class KernelClientCase:
    """A row a kernel client can play: it cannot forge a TSval, only close with SO_LINGER 0 (an RST) right
    after connect(); `overtake` makes the impairment box hold its third ACK until that RST has passed.
    `facts`: what the kernel sent, measured on 6.18 and compared every run."""

    overtake: bool
    facts: Mapping[str, str]


# Measured on Linux 6.18: a kernel client's SO_LINGER-0 close sends RST|ACK with a timestamp no older than
# its SYN's (`client_rst`: "TS>=T" in s32 arithmetic). In order, that is case 1; overtaking its ACK, the
# server meets case 2 of the table, not case 3 (no options) nor 4 (the TSval-0 RSTs of kernels 3.18-4.9).
KERNEL_CLIENT_CASES: Mapping[str, KernelClientCase] = {
    "1": KernelClientCase(overtake=False, facts={"client_rst": "RST|ACK TS>=T", "arrival": "S . R."}),
    "2": KernelClientCase(overtake=True, facts={"client_rst": "RST|ACK TS>=T", "arrival": "S R. ."}),
}

# Addresses (RFC 2544 range), inside the cell's own namespaces only.
# utcp client -> kernel server: one namespace, the kernel at the TUN's kernel end.
KS_CLIENT, KS_SERVER = SERVER, CLIENT  # 198.18.0.2 (utcp client), 198.18.0.1 (kernel server)
# utcp client -> utcp server: one namespace forwarding between two TUN devices.
UU_CLIENT, UU_CLIENT_PEER = "198.18.1.2", "198.18.1.1"
UU_SERVER, UU_SERVER_PEER = "198.18.2.2", "198.18.2.1"
# kernel client -> box -> server namespace (kernel at the box's TUN, or forwarding to a utcp TUN).
KC_CLIENT, KC_KERNEL_SERVER = "198.18.1.1", "198.18.2.1"
KC_UTCP_SERVER, KC_UTCP_PEER = "198.18.3.2", "198.18.3.1"
BOX_LINK = "box"  # the box's captures: "box:client" (as the client sent) and "box:server" (as delivered)


# -- cells ------------------------------------------------------------------------------------------------


def cells() -> list[Cell]:
    """Every row for client utcp x server kernel | utcp[each preset] (netns) and utcp[each preset] (sim);
    cases 1 (in order) and 2 (the impairment box makes the RST overtake) for client kernel x server
    kernel | utcp[each preset]."""
    out: list[Cell] = []
    for row in TABLE:
        out.append(_cell(row.id, "utcp", "kernel", None, row.expect["linux"].values(), backend="netns"))
        for preset in PRESETS_UNDER_TEST:
            out.append(_cell(row.id, "utcp", "utcp", preset, row.expect[preset].values(), backend="netns"))
        for preset in PRESETS_UNDER_TEST:
            out.append(_cell(row.id, "utcp", "utcp", preset, row.expect[preset].values(), backend="sim"))
    for case, kernel_client in KERNEL_CLIENT_CASES.items():
        row = ROWS[case]
        facts = dict(kernel_client.facts)
        out.append(
            _cell(case, "kernel", "kernel", None, {**row.expect["linux"].values(), **facts}, backend="netns")
        )
        for preset in PRESETS_UNDER_TEST:
            expected = {**row.expect[preset].values(), **facts}
            out.append(_cell(case, "kernel", "utcp", preset, expected, backend="netns"))
    return out


def _cell(
    case: str, client: Impl, server: Impl, policy: str | None, expected: dict[str, Any], *, backend: str
) -> Cell:
    return Cell(
        scenario="B",
        case=case,
        roles=(("client", client), ("server", server)),
        expected=expected,
        policy=policy,
        backend="sim" if backend == "sim" else "netns",
        params={"port": PORT, "client_port": CLIENT_PORT},
        timeout=SIM_TIMEOUT if backend == "sim" else NETNS_TIMEOUT,
    )


# -- recording ----------------------------------------------------------------------------------------------


class Recorder:
    """Forwards every recorded packet to the cell context and keeps the TCP ones, parsed, per link."""

    def __init__(self, ctx: CellContext) -> None:
        self.ctx = ctx
        self.packets: list[tuple[str, IPv4Packet]] = []

    def __call__(self, link: str, raw: bytes, time: float | None = None) -> None:
        self.ctx.record(link, raw, time)
        try:
            packet = parse_ipv4(raw, verify_checksums=False)
        except WireError:
            return  # the context counts it; it is no segment of ours
        if isinstance(packet.payload, TcpSegment):
            self.packets.append((link, packet))

    def on(self, link: str) -> list[IPv4Packet]:
        return [p for name, p in self.packets if name == link]

    def segments(self, link: str, src: str, src_port: int, dst_port: int) -> list[TcpSegment]:
        return [
            p.tcp
            for p in self.on(link)
            if p.src == src and p.tcp.src_port == src_port and p.tcp.dst_port == dst_port
        ]


def client_rst_kind(rst: TcpSegment, syn: TcpSegment) -> str:
    """What a client's RST carried, in the table's terms: flags, and its TSval against the SYN's."""
    flags = "RST|ACK" if rst.flags & TcpFlags.ACK else "RST"
    ts, syn_ts = rst.option(Timestamps), syn.option(Timestamps)
    if ts is None:
        return f"{flags} no TS"
    if syn_ts is None:
        return f"{flags} TS (SYN had none)"
    if ts.tsval == 0:
        return f"{flags} TS=0"
    newer = (ts.tsval - syn_ts.tsval) % (1 << 32) < SEQ_HALF
    return f"{flags} TS>=T" if newer else f"{flags} TS<T"


# -- running a cell -----------------------------------------------------------------------------------------


async def run(cell: Cell, ctx: CellContext) -> Observation:
    """Replay one cell: its row (the case) with the client and server the cell names."""
    row = ROWS[cell.case]
    if cell.backend == "sim":
        return _run_sim(cell, ctx, row)
    if cell.impl("client") == "utcp":
        return await _run_utcp_client(cell, ctx, row)
    return await _run_kernel_client(cell, ctx, row)


def _run_sim(cell: Cell, ctx: CellContext, row: Row) -> Observation:
    assert cell.policy is not None, "a sim cell plays a utcp server, which needs a policy"
    ctx.label(CLIENT, "client")
    ctx.label(SERVER, "server")
    observed, _server = run_row_sim(row, cell.policy, record=ctx.record)
    notes = [f"row {row.id}: {row.what}", _note(observed)]
    return Observation(values=observed.values(row.established_first), notes=notes)


async def _accept_forever(listener: trio.abc.Listener[Any], kept: list[trio.abc.Stream]) -> None:
    # A health-check target waiting for a request: it keeps whatever it accepts.
    while True:
        kept.append(await listener.accept())


async def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.002)
        return
    raise TimeoutError(f"{what} within {timeout:g} s")


async def _server_end(
    server: Endpoint, before: Mapping[str, int], client: tuple[str, int]
) -> tuple[bool, dict[str, int]]:
    after = await server.counters()
    sockets = await server.sockets()
    leftover = any(s.state == "ESTAB" and s.remote == client for s in sockets)
    deltas = {
        name: after.get(linux_counter_name(name), 0) - before.get(linux_counter_name(name), 0)
        for name in COMPARED
    }
    return leftover, deltas


def _note(observed: Observed) -> str:
    moved = ", ".join(f"{linux_counter_name(k)} +{v}" for k, v in observed.counters.items() if v) or "none"
    left = "an ESTABLISHED socket left over" if observed.leftover else "no ESTABLISHED socket left"
    replies = ", ".join(r.text() for r in observed.replies) or "none"
    return f"server: {left}; counters moved: {moved}; replies after the SYN-ACK: {replies}"


async def _run_utcp_client(cell: Cell, ctx: CellContext, row: Row) -> Observation:
    recorder = Recorder(ctx)
    async with Lab(record=recorder, name=f"b-{cell.case}") as lab:
        ns = lab.namespace("b")
        clock = client_clock(trio.current_time())
        server: Endpoint
        if cell.impl("server") == "kernel":
            client_addr, server_addr = KS_CLIENT, KS_SERVER
            client = await lab.utcp(
                ns, f"{client_addr}/24", peer=server_addr, policy="linux", seed=1,
                host_options={"ts_clock": clock}, link="client", linger=0.0,
            )  # fmt: skip
            server = lab.kernel(ns, server_addr)
        else:
            client_addr, server_addr = UU_CLIENT, UU_SERVER
            lab.forwarding(ns)  # the namespace routes between the two TUN devices
            client = await lab.utcp(
                ns, f"{client_addr}/24", peer=UU_CLIENT_PEER, policy="linux", seed=1,
                host_options={"ts_clock": clock}, link="client", linger=0.0,
            )  # fmt: skip
            server = await lab.utcp(
                ns, f"{server_addr}/24", peer=UU_SERVER_PEER, policy=cell.policy, seed=2, link="server",
                linger=0.0,
            )  # fmt: skip
        ctx.label(client_addr, "client")
        ctx.label(server_addr, "server")
        kept: list[trio.abc.Stream] = []
        lab.start_soon(_accept_forever, await server.listen(PORT), kept)
        before = await server.counters()
        conn = await _play(client, server_addr, row)
        await trio.sleep(SETTLE)
        leftover, deltas = await _server_end(server, before, (client_addr, CLIENT_PORT))
        segments = recorder.segments("client", server_addr, PORT, CLIENT_PORT)
        replies = tuple(normalise(s, conn.iss, conn.irs) for s in segments if not s.flags & TcpFlags.SYN)
    observed = Observed(replies, leftover, deltas)
    notes = [f"row {row.id}: {row.what}", _note(observed)]
    return Observation(values=observed.values(row.established_first), notes=notes)


async def _play(client: UtcpEndpoint, server_addr: str, row: Row) -> Connection:
    """The crafting client: SYN, hold the third ACK once the SYN-ACK is in, then the row's steps."""
    stack = client.stack
    conn = client.host.connect(
        server_addr, PORT, trio.current_time(), local_port=CLIENT_PORT, hold_third_ack=True
    )
    stack.kick()
    await _wait_for(lambda: conn.third_ack_held, 3.0, "no SYN-ACK")
    for step in row.steps:
        if step.kind == "wait":
            await trio.sleep(step.seconds)
            continue
        perform(conn, step, trio.current_time())
        stack.kick()
        await trio.sleep(STEP_GAP)
    return conn


def _third_ack_box(overtake: bool) -> ImpairBox:
    """Hold the client's third ACK (its first pure ACK) until its RST has passed: the RST overtakes it.
    Without `overtake`, a box that forwards everything as it comes (same topology, same captures)."""
    if not overtake:
        return ImpairBox([])
    return ImpairBox(
        [
            Rule(
                Match(direction=Direction.TO_SERVER, flags=TcpFlags.ACK, has_payload=False),
                HoldUntil(release=Match(direction=Direction.TO_SERVER, flags_set=TcpFlags.RST), max_hold=2.0),
                nth=1,
                name="third-ack",
            )
        ]
    )


async def _run_kernel_client(cell: Cell, ctx: CellContext, row: Row) -> Observation:
    recorder = Recorder(ctx)
    server_link = f"{BOX_LINK}:server"
    async with Lab(record=recorder, name=f"b-{cell.case}") as lab:
        ns_client, ns_server = lab.namespace("client"), lab.namespace("server")
        box = _third_ack_box(KERNEL_CLIENT_CASES[cell.case].overtake)
        runtime = await lab.box(
            box, ns_client, ns_server, f"{KC_CLIENT}/24", f"{KC_KERNEL_SERVER}/24", link=BOX_LINK
        )
        server: Endpoint
        if cell.impl("server") == "kernel":
            server_addr = KC_KERNEL_SERVER
            server = lab.kernel(ns_server, server_addr)
        else:
            server_addr = KC_UTCP_SERVER
            # The server namespace forwards from the box's TUN device to the utcp server's.
            lab.forwarding(ns_server)
            lab.route(ns_client, f"{KC_UTCP_SERVER}/24", dev=runtime.client_side.name)
            server = await lab.utcp(
                ns_server, f"{server_addr}/24", peer=KC_UTCP_PEER, policy=cell.policy, seed=2, link="server",
                linger=0.0,
            )  # fmt: skip
        ctx.label(KC_CLIENT, "client")
        ctx.label(server_addr, "server")
        client = lab.kernel(ns_client, KC_CLIENT)
        kept: list[trio.abc.Stream] = []
        lab.start_soon(_accept_forever, await server.listen(PORT), kept)
        before = await server.counters()
        # connect() returns once the kernel sent its third ACK (which the box holds); abort() is
        # SO_LINGER {1, 0} then close(): the RST (RFC 9293 3.10.4 ABORT).
        stream = await client.connect(server_addr, PORT, options=SocketOptions(local_port=CLIENT_PORT))
        client.abort(stream)

        def client_sent(flags: TcpFlags) -> bool:
            return any(
                s.flags & flags == flags for s in recorder.segments(server_link, KC_CLIENT, CLIENT_PORT, PORT)
            )

        await _wait_for(
            lambda: client_sent(TcpFlags.RST) and client_sent(TcpFlags.ACK), 3.0, "no RST and ACK"
        )
        await trio.sleep(SETTLE + STEP_GAP)
        leftover, deltas = await _server_end(server, before, (KC_CLIENT, CLIENT_PORT))
        sent = recorder.segments(server_link, KC_CLIENT, CLIENT_PORT, PORT)
        got = recorder.segments(server_link, server_addr, PORT, CLIENT_PORT)
        held: Mapping[str, int] = box.rule_stats.get("third-ack", {})
    syn = next((s for s in sent if s.flags == TcpFlags.SYN), None)
    synack = next((s for s in got if s.flags == TcpFlags.SYN | TcpFlags.ACK), None)
    rst = next((s for s in sent if s.flags & TcpFlags.RST), None)
    if syn is None or synack is None or rst is None:
        raise RuntimeError(f"handshake not captured on {server_link}: sent {len(sent)}, got {len(got)}")
    replies = tuple(normalise(s, syn.seq, synack.seq) for s in got if not s.flags & TcpFlags.SYN)
    observed = Observed(replies, leftover, deltas)
    values = observed.values(row.established_first)
    values["client_rst"] = client_rst_kind(rst, syn)
    values["arrival"] = " ".join(format_flags(s.flags) for s in sent)
    notes = [
        f"kernel client: SO_LINGER-0 close sent {values['client_rst']}; the box held its third ACK "
        f"{held.get('held', 0)} time(s), released after the RST {held.get('released', 0)}, on timeout "
        f"{held.get('released_on_timeout', 0)}",
        f"the server's namespace received {values['arrival']}: case {row.id} ({row.what})",
        _note(observed),
    ]
    return Observation(values=values, notes=notes)


SCENARIO = Scenario(
    name="B",
    title="Health-check RST overtakes the third ACK",
    roles=("client", "server"),
    cells=cells,
    run=run,
    summary=(
        "An LVS health check handshakes then resets; when its RST reaches the server before the third ACK, "
        "the request socket judges the RST. Linux drops one whose timestamp is older than the SYN's "
        "(TcpExtPAWSEstab +1) and the late ACK then leaves an ESTABLISHED socket nobody owns (case 4: "
        "`leftover`). The kernel and utcp's `linux` preset agree row by row; `rfc7323`, which accepts "
        "RSTs whatever their timestamp, resets instead. A kernel client's own SO_LINGER-0 RST carries a "
        "fresh timestamp (case 2), so it never leaves a leftover on 6.18."
    ),
)
