"""The fast paths change speed, not behaviour, for short connections too (issue 6's connection churn).

Many request/response connections (connect, a small request, a response, a close from either side) run
on the simulator with the same seeds: with every fast path switched off (the general path, values in
and out), with packets handed over as values, as bytes (Host._receive_fast), and as bytes both ways
(Host.wire_output: handshake, data and close segments encoded by the hosts). Every packet on the wire at
the same virtual time, every event and every counter must be the same; on clean, lossy and reordering
links, with and without per-batch ACKs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from utcp.sim import CLIENT_ADDRESS, SERVER_ADDRESS, Impairment, Network
from utcp.tcp.config import TcpConfig
from utcp.tcp.connection import Connection
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire import IPv4Packet, build_ipv4, parse_ipv4

# Every header-prediction shortcut: off, each must leave the general path doing the same.
FAST_PATHS = ("_fast_data", "_fast_ack")
CONNECTIONS = 40


class BytesNode:
    """Feeds the host bytes (as a TUN runtime does); with `wire_output`, drains bytes from it too."""

    def __init__(self, host: Host, wire_output: bool) -> None:
        self.host = host
        self.addresses = host.addresses
        host.wire_output = wire_output

    def receive(self, packet: IPv4Packet, now: float) -> None:
        self.host.receive(build_ipv4(packet), now)

    def packets_to_send(self, now: float) -> list[IPv4Packet]:
        if self.host.wire_output:
            return [parse_ipv4(raw) for raw in self.host.datagrams_to_send(now)]
        return self.host.packets_to_send(now)

    def next_deadline(self) -> float | None:
        return self.host.next_deadline()

    def on_timer(self, now: float) -> None:
        self.host.on_timer(now)


class _Client:
    """Sends the request once connected, reads the response; closes first or after the server."""

    def __init__(self, conn: Connection, request: bytes, close_first: bool) -> None:
        self.conn, self.request, self.close_first = conn, request, close_first
        self.sent = False
        self.got = b""

    @property
    def done(self) -> bool:
        return self.conn.state in (TcpState.CLOSED, TcpState.TIME_WAIT)

    def poll(self) -> None:
        conn = self.conn
        if conn.state is TcpState.CLOSED:
            return
        if not self.sent and conn.state is TcpState.ESTABLISHED:
            self.sent = conn.send(self.request) == len(self.request)
        self.got += conn.read()
        if self.got and (self.close_first or conn.eof_received):
            conn.close()


class _Server:
    """Reads the whole request, answers; closes first, or once the client has."""

    def __init__(self, conn: Connection, request: bytes, client_closes_first: bool) -> None:
        self.conn, self.want, self.wait_eof = conn, len(request), client_closes_first
        self.got = 0
        self.answered = False

    def poll(self) -> None:
        conn = self.conn
        if conn.state is TcpState.CLOSED:
            return
        self.got += len(conn.read())
        if not self.answered and self.got >= self.want:
            self.answered = True
            conn.send(b"y" * (1 + self.want % 5))
            if not self.wait_eof:
                conn.close()
        if self.answered and self.wait_eof and conn.eof_received:
            conn.close()


Trace = tuple[list[tuple[float, str, IPv4Packet]], list[tuple[str, str, str]], dict[str, int], dict[str, int]]


def churn(*, mode: str, config: TcpConfig, impairment: Impairment | None, ack_per_batch: bool) -> Trace:
    """`mode`: "values", "bytes" or "wire" (bytes both ways)."""
    net = Network(capture=True)
    hosts = []
    for name, address, seed in (("client", CLIENT_ADDRESS, 1), ("server", SERVER_ADDRESS, 2)):
        host = Host([address], config, seed=seed, ack_per_batch=ack_per_batch)
        net.add_node(name, host if mode == "values" else BytesNode(host, mode == "wire"), [address])
        hosts.append(host)
    client, server = hosts
    net.link("client", "server", latency=0.001, bandwidth=20e6, impairment=impairment)
    listener = server.listen(SERVER_ADDRESS, 80, backlog=64)
    rng = random.Random(7)
    events: list[tuple[str, str, str]] = []
    plan: dict[int, tuple[bytes, bool]] = {}  # client port -> request, client closes first
    clients: list[_Client] = []
    servers: list[_Server] = []
    next_open = 0.0

    def hook(now: float) -> None:
        nonlocal next_open
        for side, host in (("client", client), ("server", server)):
            for ev in host.events():
                conn = getattr(ev, "connection", None)
                where = f"{conn.local}->{conn.remote} {conn.state.name}" if conn is not None else ""
                events.append((side, type(ev).__name__, where))
        while len(clients) < CONNECTIONS and now >= next_open:
            conn = client.connect(SERVER_ADDRESS, 80, now)
            request = rng.randbytes(rng.choice((1, 1, 100, 3000)))
            plan[conn.local[1]] = (request, len(clients) % 3 == 0)
            clients.append(_Client(conn, *plan[conn.local[1]]))
            next_open = now + rng.choice((0.0, 0.0005, 0.003))
        while (conn := listener.accept()) is not None:
            servers.append(_Server(conn, *plan[conn.remote[1]]))
        for srv in servers:
            srv.poll()
        for cli in clients:
            cli.poll()

    net.add_hook(hook)
    assert net.run_until(lambda: len(clients) == CONNECTIONS and all(c.done for c in clients), timeout=120.0)
    wire: list[tuple[float, str, IPv4Packet]] = [(c.time, c.event, c.packet) for c in net.captures]
    return wire, events, dict(client.counters), dict(server.counters)


@contextmanager
def general_path_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as m:
        for name in FAST_PATHS:
            m.setattr(Connection, name, lambda *args: False)
        yield


@pytest.mark.parametrize("ack_per_batch", [False, True])
@pytest.mark.parametrize(
    ("config", "impairment"),
    [
        (TcpConfig(), None),
        (TcpConfig(timestamps=False), None),
        (TcpConfig(), Impairment(loss=0.05, reorder=0.05, duplicate=0.02, seed=5)),
        (TcpConfig(sack=False, window_scale=None), Impairment(loss=0.05, seed=6)),
        (TcpConfig(delayed_ack=0), Impairment(reorder=0.1, duplicate=0.05, seed=8)),
    ],
)
def test_fast_paths_do_not_change_short_connections(
    config: TcpConfig, impairment: Impairment | None, ack_per_batch: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = {"config": config, "impairment": impairment, "ack_per_batch": ack_per_batch}
    with general_path_only(monkeypatch):
        slow = churn(mode="values", **kw)  # type: ignore[arg-type]
    assert len(slow[0]) > 8 * CONNECTIONS
    for mode in ("values", "bytes", "wire"):
        fast = churn(mode=mode, **kw)  # type: ignore[arg-type]
        assert fast[0] == slow[0], mode
        assert fast[1] == slow[1], mode
        assert fast[2] == slow[2], mode
        assert fast[3] == slow[3], mode


def test_the_answers_take_the_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guard against the equalities above holding only because the fast paths never run: the response
    # (data that also acks the request) reaches the client by _fast_data; the servers that close first
    # put their FIN on it (a third of the clients close first and get a plain answer).
    taken: list[tuple[int, bool]] = []
    fast_data = Connection._fast_data

    def spy(self: Connection, *args: object) -> bool:
        result = fast_data(self, *args)  # type: ignore[arg-type]
        taken.append((self.local[1], result))
        return result

    monkeypatch.setattr(Connection, "_fast_data", spy)
    churn(mode="wire", config=TcpConfig(), impairment=None, ack_per_batch=True)
    assert sum(1 for port, ok in taken if ok and port != 80) >= CONNECTIONS // 4
