"""Applications on virtual time: drive utcp connections inside a `Network` without any event loop library.

An application is polled after every round of deliveries and timers (`Network.add_hook`); it reads and
writes its connection through the engine API (`send`, `read`, `shutdown`, `close`) like a program on a
non-blocking socket would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from utcp.sim.impair import Impairment
from utcp.sim.network import Link, Network
from utcp.tcp.config import TcpConfig
from utcp.tcp.events import Event
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState

if TYPE_CHECKING:
    from utcp.tcp.connection import Connection
    from utcp.tcp.host import Listener

__all__ = [
    "CLIENT_ADDRESS",
    "SERVER_ADDRESS",
    "Acceptor",
    "BulkSender",
    "EventLog",
    "Exchange",
    "ExchangeResult",
    "Reader",
    "SimPair",
    "pair",
]

CLIENT_ADDRESS = "198.18.0.1"
SERVER_ADDRESS = "198.18.0.2"
CHUNK = 64 * 1024
_CAN_SEND = frozenset({TcpState.ESTABLISHED, TcpState.CLOSE_WAIT})


class EventLog:
    """Drains a host's events every round (so they never pile up) and keeps them for inspection."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.events: list[Event] = []

    def poll(self, now: float) -> None:
        self.events.extend(self.host.events())

    def of_type(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


Finish = Literal["shutdown", "close", "none"]


class BulkSender:
    """Writes all of `data` as send space allows, then `shutdown()` (FIN), `close()`, or nothing."""

    def __init__(self, conn: Connection, data: bytes, *, finish: Finish = "shutdown") -> None:
        self.conn = conn
        self.data = memoryview(data)
        self.sent = 0
        self.finish = finish
        self.finished = False

    @property
    def done(self) -> bool:
        return self.sent == len(self.data)

    def poll(self, now: float) -> None:
        if self.finished or self.conn.state not in _CAN_SEND:
            return
        while self.sent < len(self.data):
            n = self.conn.send(self.data[self.sent : self.sent + CHUNK])
            if n == 0:
                return
            self.sent += n
        if self.finish == "shutdown":
            self.conn.shutdown()
        elif self.finish == "close":
            self.conn.close()
        self.finished = True


class Reader:
    """Reads everything that becomes readable until EOF."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.received = bytearray()

    @property
    def eof(self) -> bool:
        return self.conn.eof_received and self.conn.readable == 0

    def poll(self, now: float) -> None:
        while self.conn.readable:
            chunk = self.conn.read(CHUNK)
            if not chunk:
                break
            self.received += chunk


class Exchange:
    """Both directions at once: send `data` then half-close, read until EOF, then `close()`."""

    def __init__(self, conn: Connection, data: bytes) -> None:
        self.conn = conn
        self.sender = BulkSender(conn, data, finish="shutdown")
        self.reader = Reader(conn)
        self.closed = False

    @property
    def received(self) -> bytes:
        return bytes(self.reader.received)

    @property
    def done(self) -> bool:
        return self.sender.finished and self.reader.eof

    def poll(self, now: float) -> None:
        self.reader.poll(now)
        self.sender.poll(now)
        if not self.closed and self.done:
            self.conn.close()
            self.closed = True


class Acceptor:
    """Accepts every connection on `listener` and runs an `Exchange` sending `response` on each."""

    def __init__(self, listener: Listener, response: bytes = b"") -> None:
        self.listener = listener
        self.response = response
        self.exchanges: list[Exchange] = []

    def poll(self, now: float) -> None:
        while (conn := self.listener.accept()) is not None:
            self.exchanges.append(Exchange(conn, self.response))
        for exchange in self.exchanges:
            exchange.poll(now)


@dataclass(slots=True)
class ExchangeResult:
    """How `SimPair.exchange` ended."""

    completed: bool  # both sides sent everything, got EOF and closed
    client: Exchange
    server: Exchange | None
    started: float
    finished: float

    @property
    def duration(self) -> float:
        return self.finished - self.started


@dataclass(slots=True)
class SimPair:
    """A client host and a server host joined by one link (see `pair`)."""

    net: Network
    client: Host
    server: Host
    link: Link
    client_log: EventLog
    server_log: EventLog
    apps: list[Exchange | Acceptor] = field(default_factory=list)

    def app_connections(self) -> list[Connection]:
        """Every connection the applications drove: the clients' and the accepted ones."""
        conns: list[Connection] = []
        for app in self.apps:
            if isinstance(app, Acceptor):
                conns += [e.conn for e in app.exchanges]
            else:
                conns.append(app.conn)
        return conns

    def exchange(
        self, c2s: bytes, s2c: bytes, *, port: int = 80, timeout: float = 600.0, client_port: int = 0
    ) -> ExchangeResult:
        """Connect, send `c2s` and `s2c` concurrently, half-close both ways, read to EOF, close both.

        Returns once both sides closed (or `timeout` virtual seconds passed); the connections may still
        sit in TIME_WAIT / LAST_ACK: run `net.run_until_idle()` to let them go."""
        started = self.net.now
        listener = self.server.listen(SERVER_ADDRESS, port)
        acceptor = Acceptor(listener, s2c)
        conn = self.client.connect(SERVER_ADDRESS, port, self.net.now, local_port=client_port)
        client = Exchange(conn, c2s)
        self.net.add_hook(acceptor.poll)
        self.net.add_hook(client.poll)
        self.apps += [client, acceptor]

        def finished() -> bool:
            return client.closed and bool(acceptor.exchanges) and acceptor.exchanges[0].closed

        completed = self.net.run_until(finished, timeout)
        listener.close()
        server = acceptor.exchanges[0] if acceptor.exchanges else None
        return ExchangeResult(completed, client, server, started, self.net.now)


def pair(
    client_config: TcpConfig | None = None,
    server_config: TcpConfig | None = None,
    impairment: Impairment | None = None,
    *,
    impairment_back: Impairment | None = None,
    latency: float = 0.005,
    bandwidth: float | None = None,
    queue_bytes: int | None = None,
    seed: int = 0,
    wire_roundtrip: bool = False,
    capture: bool = False,
) -> SimPair:
    """Two utcp hosts, client 198.18.0.1 and server 198.18.0.2, on one link with `latency` each way.

    `impairment` applies client->server and (unless `impairment_back` is given) server->client with an
    independent random stream. Host seeds are `seed` and `seed + 1`, so a run is fully deterministic."""
    net = Network(wire_roundtrip=wire_roundtrip, capture=capture)
    client = Host(addresses=[CLIENT_ADDRESS], config=client_config or TcpConfig(), seed=seed)
    server = Host(addresses=[SERVER_ADDRESS], config=server_config or TcpConfig(), seed=seed + 1)
    net.add_node("client", client, [CLIENT_ADDRESS])
    net.add_node("server", server, [SERVER_ADDRESS])
    link = net.link(
        "client",
        "server",
        latency=latency,
        bandwidth=bandwidth,
        queue_bytes=queue_bytes,
        impairment=impairment,
        impairment_back=impairment_back,
    )
    client_log, server_log = EventLog(client), EventLog(server)
    net.add_hook(client_log.poll)
    net.add_hook(server_log.poll)
    return SimPair(net, client, server, link, client_log, server_log)
