"""Host.receive_batch changes speed, not behaviour: a run of in-order data segments for one connection
goes through Connection._fast_data_run in one call, and everything must come out as if each packet had
been handed to Host.receive in turn.

Two identical worlds (a client and a server host each, two connections, hosts configured as the trio
runtime configures them) get the same batches: the server of one world packet by packet, the other's
as a batch. After every batch, every packet the servers send, every event (with its connection's whole
state), every counter, every connection's state and the next timer must be the same. The batches are
drawn to break runs in every way the run must notice: segments lost, duplicated, swapped or from an
earlier flight, a bad checksum, fields changed and re-encoded (ACK, window, TSval, payload past the
window's edge), the other connection's segments in between, data the server sent (so segments ack
something, or it stays in flight), the client's FIN, windows filled and reopened by the reader, timers
firing. Half the batches go to the run machinery itself (Host._receive_runs), whatever their shape:
receive_batch sends batches that do not look like one flow's data burst to the per-packet loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tcp.helpers import A, B, cfg, make_host
from tests.tcp.test_fast_path_churn import state_of
from utcp.tcp.config import TcpConfig
from utcp.tcp.connection import Connection
from utcp.tcp.host import Host, Listener
from utcp.wire import build_ipv4, parse_ipv4
from utcp.wire.fastpath import PlainSegment
from utcp.wire.packet import Nop, Timestamps


@dataclass
class World:
    client: Host
    server: Host
    listener: Listener
    ours: list[Connection] = field(default_factory=list)  # the client's two connections
    theirs: list[Connection] = field(default_factory=list)  # the server's, in the same order
    old: list[bytes] = field(default_factory=list)  # every client segment so far (for stale ones)


def world(config: TcpConfig) -> World:
    client = make_host(A, config=config, seed=1, wire_output=True, ack_per_batch=True)
    server = make_host(B, config=config, seed=2, iss=7000, wire_output=True, ack_per_batch=True)
    w = World(client, server, server.listen(B, 80))
    now = 1.0
    w.ours = [client.connect(B, 80, now), client.connect(B, 80, now)]
    while moved := client.datagrams_to_send(now):
        for raw in moved:
            server.receive(raw, now)
        for raw in server.datagrams_to_send(now):
            client.receive(raw, now)
    w.theirs = [c for c in (w.listener.accept(), w.listener.accept()) if c is not None]
    assert [c.remote[1] for c in w.theirs] == [c.local[1] for c in w.ours]
    client.events()
    server.events()
    return w


def outcome(server: Host, now: float) -> tuple[object, ...]:
    out = server.datagrams_to_send(now)
    events = [
        (type(ev).__name__, state_of(ev.connection) if hasattr(ev, "connection") else repr(ev))
        for ev in server.events()
    ]
    conns = [state_of(c) for c in sorted(server.connections(), key=lambda c: c._key)]
    return out, events, dict(server.counters), conns, server.next_deadline()


@dataclass(frozen=True)
class Round:
    sends: tuple[int, int]  # bytes the client queues on each connection
    server_sends: int  # bytes the server queues on the second connection (its ACKs then ack new data)
    server_lost: bool  # what the server sends after the batch is lost: its data stays in flight
    drop: int | None  # indexes into the batch (taken modulo its length)
    duplicate: int | None
    swap: int | None
    stale: int | None  # a segment of an earlier flight put back at this index
    corrupt: int | None  # a payload byte flipped: the checksum fails
    tweak: tuple[int, str, int] | None  # (index, field, change): one field of one segment, re-encoded
    read: tuple[int, int]  # bytes the server's application reads from each connection afterwards
    close_first: bool  # the client closes its first connection (a FIN in the batch)
    wait: float  # seconds before the next round (delayed ACK and retransmission timers fire)


INDEX = st.none() | st.integers(0, 40)
ROUNDS = st.builds(
    Round,
    sends=st.tuples(
        st.sampled_from([0, 1, 100, 1448, 5000, 20000, 60000]), st.sampled_from([0, 700, 3000, 30000])
    ),
    server_sends=st.sampled_from([0, 0, 0, 10, 2000]),
    server_lost=st.sampled_from([False, False, True]),
    drop=INDEX,
    duplicate=INDEX,
    swap=INDEX,
    stale=INDEX,
    corrupt=st.none() | st.none() | st.integers(0, 40),
    tweak=st.none()
    | st.tuples(
        st.integers(0, 40),
        st.sampled_from(["ack", "window", "tsval", "no_ts", "add_ts", "pad"]),
        st.sampled_from([-70000, -1000, -1, 1, 1000, 70000]),
    ),
    read=st.tuples(st.sampled_from([0, 0, 1000, 1 << 20]), st.sampled_from([0, 5000, 1 << 20])),
    close_first=st.sampled_from([False, False, False, True]),
    wait=st.sampled_from([0.0, 0.0, 0.001, 0.05, 0.5]),
)


def batch_of(w: World, r: Round, now: float) -> list[bytes]:
    """The round's client segments with its changes applied (the same for both worlds)."""
    for conn, size in zip(w.ours, r.sends, strict=True):
        if size and conn.state.name in ("ESTABLISHED", "CLOSE_WAIT"):
            conn.send(bytes(range(256)) * (size // 256) + bytes(size % 256))
    if r.close_first and w.ours[0].state.name == "ESTABLISHED":
        w.ours[0].close()
    batch = list(w.client.datagrams_to_send(now))
    fresh = list(batch)
    if batch and r.drop is not None:
        del batch[r.drop % len(batch)]
    if batch and r.duplicate is not None:
        i = r.duplicate % len(batch)
        batch.insert(i, batch[i])
    if len(batch) > 1 and r.swap is not None:
        i = r.swap % (len(batch) - 1)
        batch[i], batch[i + 1] = batch[i + 1], batch[i]
    if w.old and r.stale is not None:
        batch.insert(r.stale % (len(batch) + 1), w.old[r.stale % len(w.old)])
    if batch and r.tweak is not None:
        i, name, change = r.tweak
        i %= len(batch)
        batch[i] = tweaked(batch[i], name, change)
    if batch and r.corrupt is not None:
        i = r.corrupt % len(batch)
        raw = bytearray(batch[i])
        raw[-1] ^= 0x5A  # the last byte: payload, or the header of a bare segment
        batch[i] = bytes(raw)
    w.old.extend(fresh)
    return batch


def tweaked(raw: bytes, name: str, change: int) -> bytes:
    """`raw` with one field changed, checksums valid: an ACK number acking more or less, another
    window, a TSval older or newer, none, or one where none was negotiated, or more payload (past the
    advertised window's edge)."""
    packet = parse_ipv4(raw, verify_checksums=False)
    seg = packet.tcp
    if name == "ack":
        seg = replace(seg, ack=(seg.ack + change) & 0xFFFFFFFF)
    elif name == "window":
        seg = replace(seg, window=max(0, min(0xFFFF, seg.window + change)))
    elif name in ("tsval", "no_ts"):
        options = tuple(
            Timestamps((o.tsval + change) & 0xFFFFFFFF, o.tsecr) if isinstance(o, Timestamps) else o
            for o in seg.options
            if name == "tsval" or not isinstance(o, Timestamps)
        )
        seg = replace(seg, options=options if name == "tsval" else ())
    elif name == "add_ts":
        if not seg.options:
            seg = replace(seg, options=(Nop(), Nop(), Timestamps(abs(change), 0)))
    else:
        seg = replace(seg, payload=seg.payload + bytes(abs(change) % 9000))
    return build_ipv4(replace(packet, payload=seg))


def advance(w: World, r: Round, now: float) -> float:
    """The server's application reads and answers, its packets reach the client, time passes."""
    for conn, amount in zip(w.theirs, r.read, strict=True):
        if amount and conn.state.name not in ("CLOSED", "TIME_WAIT"):
            conn.read(amount)
    if r.server_sends and w.theirs[1].state.name in ("ESTABLISHED", "CLOSE_WAIT"):
        w.theirs[1].send(b"s" * r.server_sends)
    for raw in w.server.datagrams_to_send(now):
        if not r.server_lost:
            w.client.receive(raw, now)
    w.client.events()
    now += r.wait
    for host in (w.client, w.server):
        deadline = host.next_deadline()
        if deadline is not None and deadline <= now:
            host.on_timer(now)
    for raw in w.client.datagrams_to_send(now):
        w.server.receive(raw, now)
    for raw in w.server.datagrams_to_send(now):
        w.client.receive(raw, now)
    w.client.events()
    return now


CONFIGS = [
    TcpConfig(),
    cfg(timestamps=False),
    cfg(recv_buffer=8000),  # a window the batches fill: runs stop at its edge
    cfg(delayed_ack=0.0, sack=False),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=st.sampled_from(CONFIGS), rounds=st.lists(ROUNDS, min_size=1, max_size=8), via_runs=st.booleans()
)
def test_a_batch_gives_what_its_packets_give_one_by_one(
    config: TcpConfig, rounds: list[Round], via_runs: bool
) -> None:
    one_by_one, batched = world(config), world(config)
    now = 1.0
    for r in rounds:
        now += 0.001
        batch = batch_of(one_by_one, r, now)
        assert batch_of(batched, r, now) == batch  # the worlds are still the same
        for raw in batch:
            one_by_one.server.receive(raw, now)
        if via_runs:  # the run machinery itself, whatever the batch: receive_batch's heuristic skipped
            batched.server._receive_runs(batch, now)
        else:
            batched.server.receive_batch(batch, now)
        assert outcome(batched.server, now) == outcome(one_by_one.server, now), r
        later = advance(one_by_one, r, now)
        assert advance(batched, r, now) == later
        now = later
        assert outcome(batched.server, now) == outcome(one_by_one.server, now), r


def runs_of(conn: Connection) -> list[int]:
    """What each of `conn`'s _fast_data_run calls takes from now on."""
    runs: list[int] = []
    take = conn._fast_data_run

    def counting(raws: list[bytes], shapes: list[PlainSegment], now: float) -> int:
        runs.append(taken := take(raws, shapes, now))
        return taken

    conn._fast_data_run = counting  # type: ignore[method-assign]
    return runs


def test_a_bulk_burst_is_taken_as_one_run() -> None:
    # The case the batch is for: a burst of full segments, in order, for one connection.
    w = world(TcpConfig())
    w.ours[0].send(bytes(20 * 1448))
    batch = w.client.datagrams_to_send(1.001)
    assert len(batch) == 10  # the initial window
    runs = runs_of(w.theirs[0])
    in_segs = w.server.counters["InSegs"]
    w.server.receive_batch(batch, 1.001)
    assert runs == [10]
    assert w.theirs[0].read(1 << 20) == bytes(10 * 1448)
    assert w.server.counters["InSegs"] == in_segs + 10
    assert len(w.server.datagrams_to_send(1.001)) == 1  # one cumulative ACK for the batch


def test_two_flows_read_in_one_batch_are_two_runs() -> None:
    # Two bulk senders' bursts in one read: each connection's segments are a run of their own.
    w = world(TcpConfig())
    w.ours[0].send(bytes(4 * 1448))
    w.ours[1].send(bytes(3 * 1448))
    batch = w.client.datagrams_to_send(1.001)
    assert len(batch) == 7
    runs = [runs_of(conn) for conn in w.theirs]
    w.server.receive_batch(batch, 1.001)
    assert runs == [[4], [3]]
    assert [conn.read(1 << 20) for conn in w.theirs] == [bytes(4 * 1448), bytes(3 * 1448)]


def test_runs_leave_to_fast_data_what_it_would_refuse() -> None:
    # Segments _fast_data sends to the general path go there one by one, never as a run, even where the
    # general path happens to end the same: data of ours in flight (a segment could ack it), and a TSval
    # on a connection without timestamps.
    w = world(TcpConfig())
    w.theirs[0].send(b"in flight")
    w.server.datagrams_to_send(1.001)  # lost
    w.ours[0].send(bytes(3 * 1448))
    runs = runs_of(w.theirs[0])
    w.server.receive_batch(w.client.datagrams_to_send(1.001), 1.001)
    assert runs == [0]
    assert w.theirs[0].read(1 << 20) == bytes(3 * 1448)

    w = world(cfg(timestamps=False))
    w.ours[0].send(bytes(3 * 1448))
    batch = [tweaked(raw, "add_ts", 5) for raw in w.client.datagrams_to_send(1.001)]
    runs = runs_of(w.theirs[0])
    w.server.receive_batch(batch, 1.001)
    assert runs == [0]
    assert w.theirs[0].read(1 << 20) == bytes(3 * 1448)


def test_a_run_stops_at_the_advertised_windows_edge() -> None:
    # A segment reaching past the window we advertised is the general path's (it trims or drops it),
    # even in the middle of a burst: both servers must end the same, and the run stops before it.
    worlds = [world(cfg(recv_buffer=8000)), world(cfg(recv_buffer=8000))]
    batches = []
    for w in worlds:
        w.ours[0].send(bytes(3 * 1448))
        batch = w.client.datagrams_to_send(1.001)
        batch[1] = tweaked(batch[1], "pad", 7000)  # now it ends past the 8000-byte window
        batches.append(batch)
    assert batches[0] == batches[1]
    runs = runs_of(worlds[1].theirs[0])
    for raw in batches[0]:
        worlds[0].server.receive(raw, 1.001)
    worlds[1].server._receive_runs(batches[1], 1.001)
    assert runs == [1]
    assert outcome(worlds[1].server, 1.001) == outcome(worlds[0].server, 1.001)
