"""Blind in-window attacks (RFC 5961, issue 7 must-show 5) against a live utcp transfer on virtual time.

tests/policy/test_blind_injection.py floods one idle connection with RSTs and SYNs at the engine level.
Here an off-path attacker node, who knows the 4-tuple and (generously) the current receive window but not
the exact RCV.NXT, the SND.NXT the victim expects ACKs for, nor the timestamps, sprays RSTs, SYNs and
data segments with random in-window sequence numbers and random ACK numbers at both ends of a 1 MB each
way transfer. Under `rfc5961` and `linux`: no connection is reset, every byte arrives uncorrupted, and
the challenge ACKs drawn stay within the per-socket rate limit. Under `rfc793` the same attack resets.
"""

from __future__ import annotations

import random

import pytest

from utcp.policy import resolve_policy
from utcp.sim import CLIENT_ADDRESS, SERVER_ADDRESS, Acceptor, EventLog, Exchange, Network
from utcp.tcp.config import TcpConfig
from utcp.tcp.events import Reset
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire import IPv4Packet, TcpFlags, TcpSegment

ATTACKER = "198.18.0.66"
INTERVAL = 0.0002  # one forged segment every 200 us of virtual time
SIZE = 1 << 20
ATTACKED = frozenset(
    {
        TcpState.ESTABLISHED,
        TcpState.FIN_WAIT_1,
        TcpState.FIN_WAIT_2,
        TcpState.CLOSE_WAIT,
        TcpState.CLOSING,
        TcpState.LAST_ACK,
    }
)


class BlindAttacker:
    """A sim node that forges segments into both directions of the victims' connection."""

    def __init__(self, client: Host, server: Host, seed: int) -> None:
        self.addresses = (ATTACKER,)
        self.client = client
        self.server = server
        self.rng = random.Random(seed)
        self.next_at = 0.0
        self.sent: dict[str, int] = {"rst": 0, "syn": 0, "data": 0}
        self.stopped = False
        self._out: list[IPv4Packet] = []

    def receive(self, packet: IPv4Packet, now: float) -> None:
        pass  # off-path: sees nothing

    def packets_to_send(self, now: float) -> list[IPv4Packet]:
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        return None if self.stopped else self.next_at

    def on_timer(self, now: float) -> None:
        if self.stopped or now < self.next_at:
            return
        self.next_at = now + INTERVAL
        victim = self.rng.choice([self.client, self.server])
        # synchronized states only: a request socket (SYN-RECEIVED) hit by an in-window SYN is reset by
        # design (Linux tcp_check_req embryonic reset); the attacker waits for the handshake to finish
        conns = [c for c in victim.connections() if c.state in ATTACKED]
        if not conns:
            return
        conn = conns[0]
        wnd = conn.rcv_wnd
        if wnd < 2:
            return
        # in the window but not at RCV.NXT (that 1-in-a-window guess is RFC 5961's accepted residual risk)
        seq = (conn.rcv_nxt + self.rng.randrange(1, wnd)) & 0xFFFFFFFF
        ack = self.rng.getrandbits(32)
        kind = self.rng.choice(["rst", "syn", "data"])
        self.sent[kind] += 1
        if kind == "rst":
            seg = TcpSegment(conn.remote[1], conn.local[1], seq, 0, TcpFlags.RST, 0)
        elif kind == "syn":
            seg = TcpSegment(conn.remote[1], conn.local[1], seq, 0, TcpFlags.SYN, 65535)
        else:
            payload = b"EVIL" * self.rng.randint(1, 300)
            seg = TcpSegment(
                conn.remote[1], conn.local[1], seq, ack, TcpFlags.ACK | TcpFlags.PSH, 65535, (), payload
            )
        self._out.append(IPv4Packet(conn.remote[0], conn.local[0], seg))


def run(preset: str, seed: int) -> tuple[Network, Host, Host, BlindAttacker, Exchange, Acceptor, list[Reset]]:
    net = Network()
    client = Host([CLIENT_ADDRESS], TcpConfig(), resolve_policy(preset), seed=seed)
    server = Host([SERVER_ADDRESS], TcpConfig(), resolve_policy(preset), seed=seed + 1)
    attacker = BlindAttacker(client, server, seed)
    net.add_node("client", client, [CLIENT_ADDRESS])
    net.add_node("server", server, [SERVER_ADDRESS])
    net.add_node("attacker", attacker, [ATTACKER])
    net.link("client", "server", latency=0.005, bandwidth=8e6, queue_bytes=256 * 1024)
    net.link("attacker", "client", latency=0.001)
    net.link("attacker", "server", latency=0.001)
    logs = [EventLog(client), EventLog(server)]
    for log in logs:
        net.add_hook(log.poll)
    rng = random.Random(seed)
    c2s, s2c = rng.randbytes(SIZE), rng.randbytes(SIZE)
    acceptor = Acceptor(server.listen(SERVER_ADDRESS, 80), s2c)
    exchange = Exchange(client.connect(SERVER_ADDRESS, 80, 0.0), c2s)
    net.add_hook(acceptor.poll)
    net.add_hook(exchange.poll)
    net.run_until(lambda: exchange.closed and bool(acceptor.exchanges) and acceptor.exchanges[0].closed, 60.0)
    attacker.stopped = True
    assert exchange.sender.data == c2s and acceptor.response == s2c
    resets = [e for log in logs for e in log.events if isinstance(e, Reset)]
    return net, client, server, attacker, exchange, acceptor, resets


@pytest.mark.parametrize("preset", ["rfc5961", "linux"])
def test_blind_rst_syn_and_data_injection_change_nothing(preset: str) -> None:
    net, client, server, attacker, exchange, acceptor, resets = run(preset, 5961)
    duration = net.now
    assert min(attacker.sent.values()) > 500  # the attack really ran during the transfer
    assert resets == []
    assert exchange.closed and acceptor.exchanges[0].closed
    assert exchange.received == acceptor.response  # server -> client: every byte, none forged
    assert acceptor.exchanges[0].received == exchange.sender.data  # client -> server
    for host in (client, server):
        c = host.counters
        assert c["EstabResets"] == 0
        # every forged RST and SYN in the window drew a challenge ACK decision; the ACKs sent are
        # rate-limited per socket (Linux tcp_invalid_ratelimit, 500 ms)
        assert c["TCPChallengeACK"] <= duration / 0.5 + 2, (c["TCPChallengeACK"], duration)
        assert c["TCPChallengeACK"] + c["TCPACKSkippedChallenge"] > 100


def test_rfc793_is_reset_by_the_same_attack() -> None:
    *_, resets = run("rfc793", 793)
    assert resets  # the very first in-window RST or SYN kills the connection
