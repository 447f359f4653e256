"""Connections share one empty out-of-order queue and one empty SACK scoreboard until they need their
own: most never do, and each would otherwise be several objects per connection for the garbage
collector to walk (a busy server keeps thousands in TIME-WAIT)."""

from __future__ import annotations

import gc

import pytest

from tests.sim.test_reordering import run
from tests.tcp.helpers import PA, establish_passive, from_peer, segs
from utcp.tcp.recvbuf import EMPTY_REASSEMBLY, Reassembly
from utcp.tcp.sack import EMPTY_SCOREBOARD, Scoreboard


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
