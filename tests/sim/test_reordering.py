"""Reordering on demand: one data segment held back by a router, the rest of the flight overtakes it.

Nothing is lost, so every retransmission is spurious. RFC 6675 allows the one fast retransmit that the
SACK scoreboard justifies (three segments SACKed above the hole); nothing else.
"""

from __future__ import annotations

import random

from utcp.sim import Acceptor, EventLog, Exchange, HoldBack, Network
from utcp.tcp.config import TcpConfig
from utcp.tcp.host import Host
from utcp.wire.packet import IPv4Packet

CLIENT, SERVER = "198.18.0.1", "198.18.0.2"


def run(
    *, sack: bool, nth_data_segment: int, hold: float = 0.001, size: int = 100_000
) -> tuple[Host, Exchange]:
    """Client -> box -> server, 2.5 ms per hop; the box holds the n-th client data segment `hold` s."""
    counter = {"data": 0}

    def select(packet: IPv4Packet, index: int) -> bool:
        if packet.src != CLIENT or not packet.tcp.payload:
            return False
        counter["data"] += 1
        return counter["data"] == nth_data_segment

    net = Network()
    client = Host([CLIENT], TcpConfig(sack=sack), seed=1)
    server = Host([SERVER], TcpConfig(sack=sack), seed=2)
    box = HoldBack(select, hold)
    net.add_node("client", client)
    net.add_node("server", server)
    net.add_node("box", box)
    net.link("client", "box", latency=0.0025)
    net.link("box", "server", latency=0.0025)
    net.add_route("client", "0.0.0.0/0", "box")
    net.add_route("server", "0.0.0.0/0", "box")
    acceptor = Acceptor(server.listen(SERVER, 80))
    data = random.Random(1).randbytes(size)
    exchange = Exchange(client.connect(SERVER, 80, 0.0), data)
    for hook in (EventLog(client).poll, EventLog(server).poll, acceptor.poll, exchange.poll):
        net.add_hook(hook)
    assert net.run_until(lambda: exchange.closed and acceptor.exchanges[0].closed, timeout=60.0)
    assert box.counters["held"] == 1
    assert acceptor.exchanges[0].received == data
    return client, exchange


def test_a_segment_that_arrives_before_dupthresh_costs_nothing() -> None:
    # Held 1 ms behind 1-2 later segments: fewer than three duplicate ACKs, no retransmission.
    client, exchange = run(sack=True, nth_data_segment=30)
    assert exchange.conn.stats.retransmitted_segments == 0
    assert client.counters["TCPSackRecovery"] == 0


# After the held segment arrives, partial ACKs below the recovery point must not retransmit snd_una
# while the SACK scoreboard marks nothing lost (RFC 6675 NextSeg; Linux does not either).
def test_sack_recovery_retransmits_only_what_the_scoreboard_marks_lost() -> None:
    client, exchange = run(sack=True, nth_data_segment=15)
    assert client.counters["TCPSackRecovery"] == 1
    # the fast retransmit of the held segment (3 SACKed segments above it) and at most one rescue
    assert exchange.conn.stats.retransmitted_segments <= 2
