"""SACK (RFC 2018), D-SACK (RFC 2883) and SACK-based loss recovery (RFC 6675)."""

from __future__ import annotations

from tests.tcp.helpers import (
    AK,
    ISS,
    Passive,
    R,
    cfg,
    establish_passive,
    fire,
    from_peer,
    one,
    sack,
    segs,
    ts,
)
from utcp.tcp.state import TcpState
from utcp.wire.packet import Sack, TcpSegment

MSS = 1448


def _seq(i: int) -> int:
    return ISS + 1 + i * MSS


def _blocks(seg: TcpSegment) -> tuple[tuple[int, int], ...]:
    for o in seg.options:
        if isinstance(o, Sack):
            return o.blocks
    return ()


def test_receiver_reports_at_most_three_blocks_beside_timestamps_most_recent_first() -> None:
    x = establish_passive()
    b = x.peer_nxt
    for k in (1, 3, 5, 7):
        x.host.receive(from_peer(x, AK, seq=b + k * 100, payload=b"o" * 50), 0.1)
    last = segs(x.host, 0.1)[-1]
    assert _blocks(last) == ((b + 700, b + 750), (b + 500, b + 550), (b + 300, b + 350))


def test_receiver_reports_four_blocks_without_timestamps() -> None:
    x = establish_passive(cfg(timestamps=False))
    b = x.peer_nxt
    for k in (1, 3, 5, 7, 9):
        x.host.receive(from_peer(x, AK, seq=b + k * 100, payload=b"o" * 50), 0.1)
    last = segs(x.host, 0.1)[-1]
    assert _blocks(last) == ((b + 900, b + 950), (b + 700, b + 750), (b + 500, b + 550), (b + 300, b + 350))


def test_adjacent_out_of_order_segments_merge_into_one_block() -> None:
    x = establish_passive()
    b = x.peer_nxt
    x.host.receive(from_peer(x, AK, seq=b + 100, payload=b"o" * 100), 0.1)
    x.host.receive(from_peer(x, AK, seq=b + 300, payload=b"o" * 100), 0.1)
    x.host.receive(from_peer(x, AK, seq=b + 200, payload=b"o" * 100), 0.1)
    last = segs(x.host, 0.1)[-1]
    assert _blocks(last) == ((b + 100, b + 400),)


def test_duplicate_out_of_order_segment_is_reported_as_dsack_first() -> None:
    x = establish_passive()
    b = x.peer_nxt
    x.host.receive(from_peer(x, AK, seq=b + 100, payload=b"o" * 100), 0.1)
    x.host.receive(from_peer(x, AK, seq=b + 100, payload=b"o" * 100), 0.1)
    last = segs(x.host, 0.1)[-1]
    assert _blocks(last) == ((b + 100, b + 200), (b + 100, b + 200))  # RFC 2883 4.1.2


def _send10(x: Passive) -> list[TcpSegment]:
    x.conn.send(b"d" * (20 * MSS))
    out = segs(x.host, 0.1)
    assert len(out) == 10
    return out


def test_sack_recovery_retransmits_only_the_holes() -> None:
    x = establish_passive()
    _send10(x)  # 0 and 5 are lost
    got = [1, 2, 3, 4, 6, 7, 8, 9]
    out = []
    for n in range(1, len(got) + 1):
        blocks = []
        have = sorted(got[:n])
        # build SACK blocks from what the peer holds (most recent first)
        runs: list[list[int]] = []
        for i in have:
            if runs and runs[-1][1] == i:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1])
        blocks = [(_seq(s), _seq(e)) for s, e in reversed(runs)]
        x.host.receive(
            from_peer(x, AK, ack=_seq(0), tsecr=100, options=ts(101, 100) + sack(*blocks[:3])), 0.15
        )
        out += segs(x.host, 0.15)
    retrans = [s.seq for s in out if s.seq < _seq(10)]
    assert retrans == [_seq(0), _seq(5)]
    assert x.host.counters["TCPSackRecovery"] == 1
    assert x.host.counters["RetransSegs"] == 2
    # the peer now has everything up to 10 sent segments and more new data goes out
    x.host.receive(from_peer(x, AK, ack=_seq(10), tsecr=150), 0.2)
    assert x.conn.stats.sacked_bytes == 0


def test_dsack_blocks_from_the_peer_do_not_mark_anything() -> None:
    x = establish_passive()
    _send10(x)
    x.host.receive(
        from_peer(x, AK, ack=_seq(2), tsecr=100, options=ts(101, 100) + sack((_seq(0), _seq(1)))), 0.15
    )
    assert x.conn.stats.sacked_bytes == 0
    assert x.conn.snd_una == _seq(2)


def test_timeout_retransmits_skip_sacked_data() -> None:
    x = establish_passive()
    _send10(x)
    x.host.receive(
        from_peer(x, AK, ack=_seq(0), tsecr=100, options=ts(101, 100) + sack((_seq(1), _seq(3)))), 0.12
    )
    segs(x.host, 0.12)
    d = fire(x.host)
    out = segs(x.host, d)
    assert [s.seq for s in out] == [_seq(0)]
    x.host.receive(
        from_peer(
            x, AK, ack=_seq(1), tsecr=int(d * 1000), options=ts(102, int(d * 1000)) + sack((_seq(1), _seq(3)))
        ),
        d + 0.01,
    )
    out = segs(x.host, d + 0.01)
    assert _seq(1) not in [s.seq for s in out] and _seq(2) not in [s.seq for s in out]
    assert out[0].seq == _seq(3)


def test_rst_at_the_right_edge_of_our_sack_block_is_accepted() -> None:
    x = establish_passive()
    b = x.peer_nxt
    x.host.receive(from_peer(x, AK, seq=b + 100, payload=b"o" * 100), 0.1)
    one(x.host, 0.1)
    x.host.receive(from_peer(x, R, seq=b + 200, ack=0), 0.2)  # Linux tcp_validate_incoming
    assert x.conn.state is TcpState.CLOSED


def test_data_segments_shrink_to_fit_sack_blocks() -> None:
    x = establish_passive()
    b = x.peer_nxt
    x.host.receive(from_peer(x, AK, seq=b + 100, payload=b"o" * 100), 0.1)
    one(x.host, 0.1)
    x.conn.send(b"p" * MSS)
    out = segs(x.host, 0.11)
    assert [len(s.payload) for s in out] == [MSS - 12, 12]  # one SACK block costs 12 option bytes
    assert _blocks(out[0]) == ((b + 100, b + 200),)


def test_reordering_raises_the_loss_threshold_so_late_originals_are_not_resent() -> None:
    x = establish_passive()
    x.conn.send(b"d" * (40 * MSS))
    segs(x.host, 0.1)

    def ack(n: int, *blocks: tuple[int, int]) -> None:
        opts = ts(101, 100) + (sack(*[(_seq(a), _seq(b)) for a, b in blocks]) if blocks else ())
        x.host.receive(from_peer(x, AK, ack=_seq(n), tsecr=100, options=opts), 0.15)

    ack(1, (2, 4))  # segment 1 is missing, 2 and 3 arrived: not enough to call it lost
    assert x.host.counters["RetransSegs"] == 0
    ack(4)  # the original segment 1 arrived after all: reordering of degree 3
    assert x.host.counters["TCPSACKReorder"] == 1
    segs(x.host, 0.15)
    ack(5, (6, 9))  # three segments above the hole at 5: would be a loss with DupThresh 3
    assert [s.seq for s in segs(x.host, 0.15) if s.seq < _seq(10)] == []
    ack(5, (6, 10))  # four above it: now it is lost
    assert [s.seq for s in segs(x.host, 0.15) if s.seq < _seq(10)] == [_seq(5)]
    assert x.host.counters["RetransSegs"] == 1
