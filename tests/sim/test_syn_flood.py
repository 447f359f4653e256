"""SYN flood (issue 7, must-show 4): spoofed SYNs from random sources at a utcp listener on virtual time.

The SYN queue stays at backlog + 1, an established connection keeps its ping-pong going throughout, and a
legitimate client gets in: during the flood with SYN cookies (TcpConfig(syn_cookies=True), Linux
tcp_syncookies=1), once the flood's embryonic connections time out without them.

Flood size: UTCP_SYN_FLOOD (default 100,000 with cookies, a fifth of it for the no-cookie run).
"""

from __future__ import annotations

import ipaddress
import os
import random
from dataclasses import dataclass, field

from utcp.sim import CLIENT_ADDRESS, SERVER_ADDRESS, Network
from utcp.tcp.config import TcpConfig
from utcp.tcp.connection import Connection
from utcp.tcp.host import Host, Listener
from utcp.tcp.state import TcpState
from utcp.wire import IPv4Packet, Mss, TcpFlags, TcpSegment

FLOOD = int(os.environ.get("UTCP_SYN_FLOOD", "100000"))
RATE = 10_000  # spoofed SYNs per second of virtual time (10 per millisecond)
BACKLOG = 128
SPOOF_NET = ipaddress.IPv4Network("198.19.0.0/16")


class Flooder:
    """An off-path node sending `total` SYNs with random spoofed sources, 10 every millisecond."""

    def __init__(self, total: int, seed: int) -> None:
        self.addresses = ("198.18.0.66",)
        self.total = total
        self.sent = 0
        self.rng = random.Random(seed)
        self.next_at = 0.5
        self._out: list[IPv4Packet] = []

    def receive(self, packet: IPv4Packet, now: float) -> None:
        pass

    def packets_to_send(self, now: float) -> list[IPv4Packet]:
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        return self.next_at if self.sent < self.total else None

    def on_timer(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + 0.001
        base = int(SPOOF_NET.network_address)
        for _ in range(min(RATE // 1000, self.total - self.sent)):
            src = str(ipaddress.IPv4Address(base + self.rng.randrange(1, SPOOF_NET.num_addresses - 1)))
            seg = TcpSegment(
                self.rng.randrange(1024, 65536),
                80,
                self.rng.getrandbits(32),
                0,
                TcpFlags.SYN,
                64240,
                (Mss(1460),),
            )
            self._out.append(IPv4Packet(src, SERVER_ADDRESS, seg))
            self.sent += 1


@dataclass
class Watch:
    """Polled every round: bounds of the server's state, and a ping-pong on the old connection."""

    server: Host
    listener: Listener
    old_client: Connection
    old_server: Connection
    max_syn_queue: int = 0
    max_connections: int = 0
    pings: int = 0
    pongs: bytearray = field(default_factory=bytearray)
    next_ping: float = 0.0

    def poll(self, now: float) -> None:
        self.max_syn_queue = max(self.max_syn_queue, self.listener.syn_pending)
        self.max_connections = max(self.max_connections, len(self.server.connections()))
        if self.old_server.readable:
            self.old_server.send(self.old_server.read())  # echo
        if self.old_client.readable:
            self.pongs += self.old_client.read()
        if now >= self.next_ping and self.old_client.state is TcpState.ESTABLISHED:
            self.old_client.send(b"ping%06d" % self.pings)
            self.pings += 1
            self.next_ping = now + 0.1


def flood(
    syn_cookies: bool, total: int, legit_at: float, seed: int = 4
) -> tuple[Network, Host, Host, Watch, Flooder, Connection]:
    net = Network()
    client = Host([CLIENT_ADDRESS], seed=seed)
    server = Host([SERVER_ADDRESS], TcpConfig(syn_cookies=syn_cookies), seed=seed + 1)
    flooder = Flooder(total, seed)
    net.add_node("client", client, [CLIENT_ADDRESS])
    net.add_node("server", server, [SERVER_ADDRESS])
    net.add_node("flooder", flooder, flooder.addresses)
    net.link("client", "server", latency=0.005)
    net.link("flooder", "server", latency=0.001)  # SYN-ACKs to spoofed sources have no route: dropped
    lst = server.listen(SERVER_ADDRESS, 80, backlog=BACKLOG)
    old_client = client.connect(SERVER_ADDRESS, 80, 0.0)
    net.run_until(lambda: lst.pending > 0, 1.0)
    old_server = lst.accept()
    assert old_server is not None and old_client.state is TcpState.ESTABLISHED
    watch = Watch(server, lst, old_client, old_server)
    net.add_hook(watch.poll)
    net.run_until(lambda: False, legit_at)
    legit = client.connect(SERVER_ADDRESS, 80, net.now)
    return net, client, server, watch, flooder, legit


def check_old_connection(watch: Watch) -> None:
    expected = b"".join(b"ping%06d" % i for i in range(watch.pings))
    assert watch.pings > 20
    assert bytes(watch.pongs) == expected[: len(watch.pongs)]
    assert len(watch.pongs) >= len(expected) - 10  # all but the ping in flight
    assert watch.old_client.state is TcpState.ESTABLISHED


def test_syn_flood_with_cookies_keeps_the_queue_bounded_and_lets_a_client_in_at_once() -> None:
    net, _client, server, watch, flooder, legit = flood(True, FLOOD, legit_at=2.0)
    asked_at = net.now
    assert net.run_until(lambda: watch.listener.pending > 0, 1.0)
    assert legit.state is TcpState.ESTABLISHED
    assert net.now - asked_at < 0.05  # one round trip and the ACK: no SYN retransmission
    assert watch.listener.accept() is not None
    net.run_until(lambda: flooder.sent >= flooder.total, FLOOD / RATE + 5)
    net.run_for(1.0)
    check_old_connection(watch)
    assert watch.max_syn_queue == BACKLOG + 1
    assert watch.max_connections <= BACKLOG + 1 + 2
    c = server.counters
    assert flooder.sent == FLOOD
    assert c["SyncookiesSent"] == c["TCPReqQFullDoCookies"] >= FLOOD - BACKLOG - 1
    assert c["SyncookiesRecv"] == 1  # the legitimate client; spoofed sources never answer
    assert c["SyncookiesFailed"] == 0
    assert net.counters["no_route"] >= FLOOD  # SYN-ACKs to nowhere, and nothing else
    # the cookie connection works both ways and has the MSS it encoded, no other options
    legit.send(b"hello")
    net.run_for(0.1)
    conn = next(c for c in server.connections() if c.remote == legit.local)
    assert conn.read() == b"hello"
    assert conn.negotiated.mss == 1460 and not conn.negotiated.timestamps and not conn.negotiated.sack


def test_syn_flood_without_cookies_keeps_the_queue_bounded_and_the_client_gets_in_afterwards() -> None:
    total = max(FLOOD // 5, 1000)
    net, _client, server, watch, flooder, legit = flood(False, total, legit_at=1.0)
    # the SYN queue is full for the whole flood: the client's SYNs are dropped ...
    net.run_until(lambda: flooder.sent >= flooder.total, total / RATE + 1)
    assert legit.state is TcpState.SYN_SENT
    # ... until the flood's request sockets time out (5 SYN-ACK retransmissions, 63 s); the client's
    # SYN retransmission after that gets in (Linux behaves the same without tcp_syncookies)
    assert net.run_until(lambda: legit.state is TcpState.ESTABLISHED, 130.0)
    check_old_connection(watch)
    assert watch.max_syn_queue == BACKLOG + 1
    c = server.counters
    assert c["TCPReqQFullDrop"] >= total - BACKLOG - 1
    assert c["SyncookiesSent"] == 0
    net.run_for(70.0)
    assert watch.listener.syn_pending == 0  # every embryonic connection is gone
