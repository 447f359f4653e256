"""sim.pair(): two utcp hosts on one link, the application helpers, captures of a real connection."""

from __future__ import annotations

import io

from utcp.sim import CLIENT_ADDRESS, SERVER_ADDRESS, Impairment, ladder, pair, pcap_bytes
from utcp.tcp.events import Closed, Connected, EofReceived
from utcp.wire.codec import parse_ipv4
from utcp.wire.packet import TcpFlags
from utcp.wire.pcap import read_pcap


def test_pair_exchange_handshake_and_close_on_the_wire() -> None:
    p = pair(latency=0.010, capture=True, seed=4)
    result = p.exchange(b"request", b"response", port=8080)
    assert result.completed
    assert result.server is not None and result.server.received == b"request"
    assert result.client.received == b"response"
    client_conn, server_conn = p.app_connections()
    assert client_conn.remote == (SERVER_ADDRESS, 8080)
    assert server_conn.remote == (CLIENT_ADDRESS, client_conn.local[1])
    assert 32768 <= client_conn.local[1] <= 60999 and client_conn.local[1] % 2 == 0  # Linux connect()

    sends = [c for c in p.net.captures if c.event == "send"]
    syn, syn_ack, ack = (c.packet.tcp for c in sends[:3])
    assert syn.flags == TcpFlags.SYN
    assert syn_ack.flags == TcpFlags.SYN | TcpFlags.ACK and syn_ack.ack == (syn.seq + 1) % 2**32
    assert ack.flags & TcpFlags.ACK and ack.ack == (syn_ack.seq + 1) % 2**32
    assert [c.time for c in sends[:3]] == [0.0, 0.010, 0.020]
    assert sum(1 for c in sends if c.packet.tcp.flags & TcpFlags.FIN) == 2

    lines = ladder(p.net.captures, "client", "server").splitlines()
    assert len(lines) == len(sends)
    assert "client ------> server" in lines[0] and "Flags [S]" in lines[0]
    assert "client <------ server" in lines[1] and "Flags [S.]" in lines[1]
    records = list(read_pcap(io.BytesIO(pcap_bytes(p.net.captures))))
    assert [parse_ipv4(data) for _, data in records] == [c.packet for c in sends]

    assert any(isinstance(e, Connected) for e in p.client_log.events)
    assert any(isinstance(e, EofReceived) for e in p.server_log.events)
    assert p.net.run_until_idle()
    assert any(isinstance(e, Closed) for e in p.client_log.events)
    assert p.client.connections() == [] and p.server.connections() == []


def test_pair_runs_are_deterministic() -> None:
    def once() -> list[tuple[float, str]]:
        p = pair(impairment=Impairment(loss=0.05, reorder=0.05, seed=9), capture=True, seed=9)
        p.exchange(bytes(50_000), bytes(20_000))
        return [(c.time, repr(c.packet)) for c in p.net.captures]

    assert once() == once()
