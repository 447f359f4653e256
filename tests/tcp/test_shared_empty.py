"""Connections share one empty out-of-order queue and one empty SACK scoreboard until they need their
own: most never do, and each would otherwise be several objects per connection for the garbage
collector to walk (a busy server keeps thousands in TIME-WAIT). A TIME-WAIT connection whose bytes were
all read shares one empty read buffer, and drops its segment encoder once its last ACK is out."""

from __future__ import annotations

import gc

import pytest

from tests.sim.test_reordering import run
from tests.tcp.helpers import PA, establish_passive, from_peer, segs
from utcp.tcp.connection import Connection
from utcp.tcp.host import Host
from utcp.tcp.recvbuf import EMPTY_READ_BUFFER, EMPTY_REASSEMBLY, ReadBuffer, Reassembly
from utcp.tcp.sack import EMPTY_SCOREBOARD, Scoreboard
from utcp.tcp.state import TcpState
from utcp.wire.fastpath import SegmentEncoder


def test_the_shared_empties_refuse_to_hold_anything() -> None:
    with pytest.raises(TypeError, match="shared"):
        EMPTY_REASSEMBLY.insert(0, b"x")
    with pytest.raises(TypeError, match="shared"):
        EMPTY_SCOREBOARD.add(0, 10)
    for clear in (EMPTY_REASSEMBLY.clear, EMPTY_SCOREBOARD.clear):
        with pytest.raises(TypeError, match="shared"):
            clear()
    # what the engine calls on any connection reads as empty and changes nothing
    assert EMPTY_REASSEMBLY.pop_ready(5) == [] and not EMPTY_REASSEMBLY and EMPTY_REASSEMBLY.size == 0
    EMPTY_REASSEMBLY.advance(5)
    EMPTY_SCOREBOARD.advance(5)
    assert not EMPTY_SCOREBOARD and EMPTY_SCOREBOARD.sacked == 0 and EMPTY_SCOREBOARD.highest is None


def test_an_in_order_connection_holds_no_queue_or_scoreboard_of_its_own() -> None:
    x = establish_passive()
    assert x.conn._ofo is EMPTY_REASSEMBLY and x.conn._sb is EMPTY_SCOREBOARD
    # the objects the collector walks for this connection's receive/SACK state: none of its own
    own = [o for o in gc.get_referents(x.conn) if type(o) in (Reassembly, Scoreboard)]
    assert own == []


def test_reordering_gives_each_side_its_own_and_leaves_the_shared_ones_empty() -> None:
    # A held segment: the server queues data out of order, the client takes SACK blocks.
    client, exchange = run(sack=True, nth_data_segment=10, hold=0.02)
    assert exchange.conn._sb is not EMPTY_SCOREBOARD
    assert client.counters["TCPSackRecovery"] + client.counters["TCPSACKReorder"] > 0
    assert not EMPTY_REASSEMBLY and not EMPTY_REASSEMBLY.blocks and EMPTY_REASSEMBLY.size == 0
    assert not EMPTY_SCOREBOARD and EMPTY_SCOREBOARD.sacked == 0


def test_the_first_out_of_order_segment_gets_a_queue_of_its_own() -> None:
    x = establish_passive()
    base = x.conn.rcv_nxt
    x.host.receive(from_peer(x, PA, seq=base + 3, payload=b"def", tsval=100), x.now)
    segs(x.host, x.now)
    assert x.conn._ofo is not EMPTY_REASSEMBLY and x.conn._ofo.size == 3
    assert not EMPTY_REASSEMBLY and EMPTY_REASSEMBLY.size == 0
    x.host.receive(from_peer(x, PA, seq=base, payload=b"abc", tsval=101), x.now)
    assert x.conn.read() == b"abcdef"


def _exchange(client_first: bool) -> tuple[Connection, Connection]:
    """The connection benchmark's exchange on two hosts (bytes both ways, as the runtime runs them): the
    server answers and closes first, so it ends in TIME-WAIT, and the client reads the answer; or the
    client half-closes after its request, so it ends in TIME-WAIT with the answer unread."""
    cli = Host(["198.18.0.2"], seed=1, wire_output=True, ack_per_batch=True)
    srv = Host(["198.18.0.1"], seed=2, wire_output=True, ack_per_batch=True)
    lst = srv.listen("198.18.0.1", 80)
    now = 1.0

    def xfer() -> None:
        for _ in range(10):
            for a, b in ((cli, srv), (srv, cli)):
                for raw in a.datagrams_to_send(now):
                    b.receive(raw, now)

    c = cli.connect("198.18.0.1", 80, now)
    xfer()
    s = lst.accept()
    assert s is not None
    c.send(b"x")
    if client_first:
        c.shutdown()
    xfer()
    assert s.read() == b"x"
    s.send(b"y")
    s.close()
    xfer()
    if not client_first:
        assert c.read() == b"y"
        c.close()
        xfer()
    return c, s


def test_a_time_wait_connection_shares_the_empty_read_buffer_and_drops_its_encoder() -> None:
    with pytest.raises(TypeError, match="shared"):
        EMPTY_READ_BUFFER.append(b"x")
    assert not EMPTY_READ_BUFFER and EMPTY_READ_BUFFER.read(10) == b""
    _, s = _exchange(client_first=False)
    assert s.state is TcpState.TIME_WAIT and s.read() == b""
    assert s._rbuf is EMPTY_READ_BUFFER and s._encoder is None  # its FIN's ACK went out
    own = [o for o in gc.get_referents(s) if type(o) in (ReadBuffer, SegmentEncoder)]
    assert own == []
    # a TIME-WAIT connection with bytes still unread keeps them (shutdown, then the answer and FIN)
    c, _ = _exchange(client_first=True)
    assert c.state is TcpState.TIME_WAIT and c._rbuf is not EMPTY_READ_BUFFER
    assert c.read() == b"y" and c.eof_received
