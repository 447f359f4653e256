"""The fast paths change speed, not behaviour, for short connections too (issue 6's connection churn).

Many request/response connections (connect, a small request, a response, a close from either side) run
on the simulator with the same seeds: with every fast path switched off (the general path, values in
and out), with packets handed over as values, as bytes (Host._receive_fast), and as bytes both ways
(Host.wire_output: handshake, data and close segments encoded by the hosts); as bytes, the SYN and the
SYN-ACK take the handshake's fast paths too (Host._fast_passive_open, Connection._fast_synack). Every
packet on the wire at the same virtual time, every event (with its connection's whole state when
drained), every counter and every connection's final state must be the same; on clean, lossy and
reordering links, with and without per-batch ACKs. The five ways a connection ends here: the server
closes first (answer and FIN together, or apart), the client closes first, the client half-closes after
its request, the client closes first and the server never does (the orphaned FIN-WAIT-2 times out).
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
FAST_PATHS = ("_fast_data", "_fast_ack", "_fast_third_ack", "_fast_close", "_fast_synack")
HOST_FAST_PATHS = ("_fast_passive_open",)
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
    """Sends the request once connected (then half-closes, if asked), reads the response; closes first or
    after the server."""

    def __init__(self, conn: Connection, request: bytes, close_first: bool, half_close: bool) -> None:
        self.conn, self.request, self.close_first, self.half_close = conn, request, close_first, half_close
        self.sent = False
        self.got = b""
        self.closed = False

    @property
    def done(self) -> bool:
        return self.conn.state in (TcpState.CLOSED, TcpState.TIME_WAIT)

    def poll(self) -> None:
        conn = self.conn
        if conn.state is TcpState.CLOSED:
            return
        if not self.sent and conn.state is TcpState.ESTABLISHED:
            self.sent = conn.send(self.request) == len(self.request)
            if self.sent and self.half_close:
                conn.shutdown()  # the FIN follows the request: FIN-WAIT-1/2 while the answer comes
        self.got += conn.read()
        if self.got and (self.close_first or conn.eof_received) and not self.closed:
            self.closed = True  # once: a second close() in FIN-WAIT-2 would restart its timeout
            conn.close()


class _Server:
    """Reads the whole request, answers; closes first, or once the client has, or never (`lazy`: the
    orphaned client's FIN-WAIT-2 times out)."""

    def __init__(self, conn: Connection, request: bytes, client_closes_first: bool, lazy: bool) -> None:
        self.conn, self.want, self.wait_eof, self.lazy = conn, len(request), client_closes_first, lazy
        self.got = 0
        self.answered = False

    def poll(self) -> None:
        conn = self.conn
        if conn.state is TcpState.CLOSED:
            return
        self.got += len(conn.read())
        if not self.answered and self.got >= self.want:
            self.answered = True
            # tiny answers, and answers of two segments or of one segment larger than the first guess of
            # the peer's segment size (536)
            conn.send(b"y" * {100: 2500, 3000: 1000}.get(self.want, 1 + self.want % 5))
            if not self.wait_eof:
                conn.close()
        if self.answered and self.wait_eof and conn.eof_received and not self.lazy:
            conn.close()


Trace = tuple[
    list[tuple[float, str, IPv4Packet]],
    list[tuple[str, str, str, dict[str, object] | None]],
    dict[str, int],
    dict[str, int],
    list[dict[str, object]],
]
_SCALARS = (int, float, bool, str, type(None), TcpState)


def state_of(conn: Connection) -> dict[str, object]:
    """Every plain field of a connection (sequence space, windows, timers, RTT, counters...)."""
    fields: dict[str, object] = {
        name: value
        for name in Connection.__slots__
        if name not in ("__dict__", "__weakref__", "_wire_key", "_encoder")  # the bytes paths own these
        and isinstance(value := getattr(conn, name, None), _SCALARS)
    }
    fields["stats"] = conn.stats
    return fields


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
    events: list[tuple[str, str, str, dict[str, object] | None]] = []
    # client port -> request, client closes first, client half-closes after its request
    plan: dict[int, tuple[bytes, bool, bool, bool]] = {}  # ... and the server never closes
    clients: list[_Client] = []
    servers: list[_Server] = []
    next_open = 0.0

    def hook(now: float) -> None:
        nonlocal next_open
        for side, host in (("client", client), ("server", server)):
            for ev in host.events():
                conn = getattr(ev, "connection", None)
                where = f"{conn.local}->{conn.remote} {conn.state.name}" if conn is not None else ""
                # with the connection's whole state as the event finds it
                events.append((side, type(ev).__name__, where, state_of(conn) if conn is not None else None))
        while len(clients) < CONNECTIONS and now >= next_open:
            conn = client.connect(SERVER_ADDRESS, 80, now)
            request = rng.randbytes(rng.choice((1, 1, 100, 3000)))
            kind = len(clients) % 5
            plan[conn.local[1]] = (request, kind in (0, 4), kind == 3, kind == 4)
            clients.append(_Client(conn, *plan[conn.local[1]][:3]))
            next_open = now + rng.choice((0.0, 0.0005, 0.003))
        while (conn := listener.accept()) is not None:
            request, client_closes_first, _, lazy = plan[conn.remote[1]]
            servers.append(_Server(conn, request, client_closes_first, lazy))
        for srv in servers:
            srv.poll()
        for cli in clients:
            cli.poll()

    net.add_hook(hook)
    assert net.run_until(lambda: len(clients) == CONNECTIONS and all(c.done for c in clients), timeout=120.0)
    wire: list[tuple[float, str, IPv4Packet]] = [(c.time, c.event, c.packet) for c in net.captures]
    states = [state_of(c.conn) for c in clients] + [state_of(s.conn) for s in servers]
    return wire, events, dict(client.counters), dict(server.counters), states


@contextmanager
def general_path_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as m:
        for name in FAST_PATHS:
            m.setattr(Connection, name, lambda *args: False)
        for name in HOST_FAST_PATHS:
            m.setattr(Host, name, lambda *args: False)
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
        assert fast[4] == slow[4], mode


def test_the_answers_take_the_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guard against the equalities above holding only because the fast paths never run: the response
    # (data that also acks the request) reaches the client by _fast_data, or with the server's FIN on it
    # by _fast_close; the handshake by _fast_passive_open, _fast_synack and _fast_third_ack, the close
    # by _fast_close.
    taken: list[tuple[str, int, bool]] = []

    def spy(name: str) -> object:
        original = getattr(Connection, name)

        def wrapper(self: Connection, *args: object) -> bool:
            result: bool = original(self, *args)
            taken.append((name, self.local[1], result))
            return result

        return wrapper

    def host_spy(name: str) -> object:
        original = getattr(Host, name)

        def wrapper(self: Host, *args: object) -> bool:
            result: bool = original(self, *args)
            taken.append((name, 80 if self.addresses == (SERVER_ADDRESS,) else 0, result))
            return result

        return wrapper

    for name in FAST_PATHS:
        monkeypatch.setattr(Connection, name, spy(name))
    for name in HOST_FAST_PATHS:
        monkeypatch.setattr(Host, name, host_spy(name))
    churn(mode="wire", config=TcpConfig(), impairment=None, ack_per_batch=True)

    def count(name: str, client: bool) -> int:
        return sum(1 for n, port, ok in taken if ok and n == name and (port != 80) == client)

    assert count("_fast_data", client=True) >= CONNECTIONS // 5  # answers to clients that close first
    assert count("_fast_third_ack", client=False) == CONNECTIONS
    assert count("_fast_passive_open", client=False) == CONNECTIONS
    assert count("_fast_synack", client=True) == CONNECTIONS
    assert count("_fast_close", client=True) >= CONNECTIONS  # answer+FIN, or FIN alone, or the ACK of ours
    assert count("_fast_close", client=False) >= CONNECTIONS
