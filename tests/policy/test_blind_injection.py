"""Must-show 4: blind in-window injection (RFC 5961 1.1, 3, 4). An off-path attacker who knows the 4-tuple
sprays RSTs and SYNs with random sequence numbers inside the receive window (never exactly RCV.NXT: that
1-in-a-window hit is the residual risk RFC 5961 accepts). With `rfc5961` and `linux` 10,000 of each never
reset the connection, and the challenge ACKs it draws are rate-limited per socket; with `rfc793` one does.
"""

from __future__ import annotations

import random

import pytest

from tests.tcp.helpers import AK, PA, Passive, R, S, establish_passive, from_peer, pkt, segs
from utcp.policy import Rfc5961Policy, resolve_policy
from utcp.tcp.state import TcpState
from utcp.wire.packet import IPv4Packet, TcpFlags

N = 10_000
INTERVAL = 0.001  # one forged segment per millisecond: 20 s of virtual time for both floods


def _forged(x: Passive, rng: random.Random, flag: TcpFlags) -> IPv4Packet:
    """A blind guess: in the window, not at RCV.NXT, no timestamps (the attacker cannot know them)."""
    seq = x.peer_nxt + rng.randrange(1, x.conn.rcv_wnd)
    return pkt(flag, seq, 0, options=(), sport=x.conn.remote[1], dport=x.conn.local[1])


@pytest.mark.parametrize("preset", ["rfc5961", "linux", "rfc7323"])
def test_in_window_rsts_and_syns_never_reset_under_rfc5961(preset: str) -> None:
    x = establish_passive(policy=resolve_policy(preset))
    assert x.conn.rcv_wnd > 60_000  # a wide window: each guess lands in it
    rng = random.Random(5961)
    now = 1.0
    challenge_acks = 0
    for flag in (R, S):
        for _ in range(N):
            x.host.receive(_forged(x, rng, flag), now)
            for seg in segs(x.host, now):
                assert seg.flags == AK and seg.ack == x.peer_nxt  # a challenge ACK, nothing else
                challenge_acks += 1
            assert x.conn.state is TcpState.ESTABLISHED
            now += INTERVAL
    counters = x.host.counters
    assert counters["EstabResets"] == 0
    assert counters["TCPChallengeACK"] == challenge_acks
    assert counters["TCPChallengeACK"] + counters["TCPACKSkippedChallenge"] == 2 * N
    assert counters["TCPSYNChallenge"] == N
    # per-socket limit of one per 500 ms over 20 s: about 40, not 20,000
    span = 2 * N * INTERVAL
    assert span / 0.5 <= challenge_acks <= span / 0.5 + 2
    # and the connection still carries data both ways
    x.host.receive(from_peer(x, PA, payload=b"still here", tsval=x.tsval + 1), now)
    assert x.conn.read() == b"still here"
    x.conn.send(b"pong")
    assert any(s.payload == b"pong" for s in segs(x.host, now + 0.1))


@pytest.mark.parametrize("flag", [R, S], ids=["rst", "syn"])
def test_rfc793_is_reset_by_the_first_in_window_guess(flag: TcpFlags) -> None:
    x = establish_passive(policy=resolve_policy("rfc793"))
    rng = random.Random(793)
    x.host.receive(_forged(x, rng, flag), 1.0)
    assert x.conn.state is TcpState.CLOSED
    assert x.host.counters["EstabResets"] == 1
    assert x.host.counters["TCPChallengeACK"] == 0


def test_rfc793_falls_to_a_flood_every_time() -> None:
    resets = 0
    rng = random.Random(1)
    for _ in range(200):
        x = establish_passive(policy=resolve_policy("rfc793"))
        x.host.receive(_forged(x, rng, rng.choice([R, S])), 1.0)
        resets += x.conn.state is TcpState.CLOSED
    assert resets == 200


def test_challenge_ack_rate_limit_is_a_knob() -> None:
    x = establish_passive(policy=Rfc5961Policy(challenge_ack_interval=0.0))  # no limit
    rng = random.Random(2)
    for i in range(100):
        x.host.receive(_forged(x, rng, R), 1.0 + i * INTERVAL)
    assert x.host.counters["TCPChallengeACK"] == 100
    assert x.host.counters["TCPACKSkippedChallenge"] == 0
    assert x.conn.state is TcpState.ESTABLISHED
