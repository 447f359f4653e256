"""SCENARIOS.md B with the default LinuxPolicy: health-check RST vs third ACK, and RFC 5961/7323 rules
once established. Each test states the sequence and the Linux 6.18 outcome listed there."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.tcp.helpers import (
    AK,
    ISS,
    PA,
    PEER_ISS,
    RA,
    SA,
    A,
    R,
    S,
    establish_passive,
    from_peer,
    make_host,
    none_out,
    one,
    pkt,
    segs,
    state,
    syn_opts,
    ts,
)
from utcp.policy import Decision, LinuxPolicy, Policy, PolicyContext, Verdict
from utcp.tcp.host import Host, Listener
from utcp.tcp.state import TcpState
from utcp.wire.packet import Nop, TcpOption, TcpSegment, Timestamps

T = 7_000_000  # the client's SYN TSval


def _syn_synack() -> tuple[Host, Listener]:
    host = make_host()
    lst = host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=T)), 0.0)
    sa = one(host, 0.0)
    assert sa.flags == SA
    return host, lst


def _delta(host: Host, before: Counter[str]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in host.counters.items() if v != before.get(k, 0)}


def test_case1_rst_after_the_third_ack_resets_established() -> None:
    host, lst = _syn_synack()
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(T + 1, 0)), 0.01)
    conn = lst.accept()
    assert conn is not None and conn.state is TcpState.ESTABLISHED
    before = Counter(host.counters)
    host.receive(pkt(R, PEER_ISS + 1, options=ts(T + 2, 0)), 0.02)
    none_out(host, 0.02)
    assert state(conn) is TcpState.CLOSED
    assert host.connections() == []  # no leftover
    assert _delta(host, before) == {"InSegs": 1, "EstabResets": 1}


@pytest.mark.parametrize("rst_options", [ts(T, 0), ()], ids=["case2-rst-ts-equal", "case3-rst-no-options"])
def test_case2_and_3_rst_before_the_third_ack_is_an_embryonic_reset(
    rst_options: tuple[TcpOption, ...],
) -> None:
    host, lst = _syn_synack()
    before = Counter(host.counters)
    host.receive(pkt(R, PEER_ISS + 1, options=rst_options), 0.01)
    none_out(host, 0.01)
    assert host.connections() == []
    assert _delta(host, before) == {"InSegs": 1, "EmbryonicRsts": 1, "AttemptFails": 1}
    # the late third ACK meets the listener: RST, seq = its ACK, no ACK flag, no options
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(T + 1, 0)), 0.02)
    rst = one(host, 0.02)
    assert (rst.flags, rst.seq, rst.ack, rst.window, rst.options) == (R, ISS + 1, 0, 0, ())
    assert host.connections() == []
    assert lst.pending == 0


@pytest.mark.parametrize("rst_tsval", [0, T - 2, T - 1000], ids=["ts0", "T-2", "T-1000"])
def test_case4_rst_with_an_older_timestamp_is_dropped_and_leaves_a_leftover(rst_tsval: int) -> None:
    host, lst = _syn_synack()
    before = Counter(host.counters)
    host.receive(pkt(R, PEER_ISS + 1, options=ts(rst_tsval, 0)), 0.01)
    none_out(host, 0.01)
    assert _delta(host, before) == {"InSegs": 1, "PAWSEstab": 1}
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(T + 1, 0)), 0.02)
    none_out(host, 0.02)
    conn = lst.accept()
    assert conn is not None and conn.state is TcpState.ESTABLISHED  # the leftover nobody owns
    assert host.connections() == [conn]


def test_case4_request_socket_paws_has_no_tolerance() -> None:
    # Linux tcp_paws_reject() -> tcp_paws_check(rx_opt, 0); measured on 6.18: a T-1 RST is dropped too
    host, _lst = _syn_synack()
    host.receive(pkt(R, PEER_ISS + 1, options=ts(T - 1, 0)), 0.01)
    assert host.counters["PAWSEstab"] == 1
    assert len(host.connections()) == 1
    lenient = make_host(policy=LinuxPolicy(paws_window_request=1))
    lenient.listen(A, 80)
    lenient.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=T)), 0.0)
    lenient.receive(pkt(R, PEER_ISS + 1, options=ts(T - 1, 0)), 0.01)
    assert lenient.counters["PAWSEstab"] == 0
    assert lenient.connections() == []


def test_case5_in_window_rst_not_at_rcv_nxt_draws_a_challenge_ack() -> None:
    host, lst = _syn_synack()
    before = Counter(host.counters)
    host.receive(pkt(R, PEER_ISS + 1 + 1000, options=ts(T, 0)), 0.01)
    ack = one(host, 0.01)
    assert (ack.flags, ack.seq, ack.ack) == (AK, ISS + 1, PEER_ISS + 1)
    assert ack.options == (Nop(), Nop(), Timestamps(10, T))
    assert _delta(host, before) == {"InSegs": 1, "OutSegs": 1, "TCPChallengeACK": 1}
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(T + 1, 0)), 0.02)
    conn = lst.accept()
    assert conn is not None and conn.state is TcpState.ESTABLISHED  # the connection survives


def test_e_established_rst_at_rcv_nxt_with_an_old_timestamp_is_accepted() -> None:
    x = establish_passive()
    before = Counter(x.host.counters)
    x.host.receive(from_peer(x, R, ack=0, tsval=0), 0.1)
    assert x.conn.state is TcpState.CLOSED
    assert _delta(x.host, before) == {"InSegs": 1, "EstabResets": 1}


def test_e_prime_in_window_inexact_rst_draws_rate_limited_challenge_acks() -> None:
    x = establish_passive()
    before = Counter(x.host.counters)
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 10, ack=0), 1.0)
    ack = one(x.host, 1.0)
    assert (ack.flags, ack.seq, ack.ack) == (AK, ISS + 1, x.peer_nxt)
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 20, ack=0), 1.2)
    none_out(x.host, 1.2)  # within 500 ms of the last one
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 30, ack=0), 1.6)
    assert one(x.host, 1.6).flags == AK
    assert x.conn.state is TcpState.ESTABLISHED
    assert _delta(x.host, before) == {
        "InSegs": 3,
        "OutSegs": 2,
        "TCPChallengeACK": 2,
        "TCPACKSkippedChallenge": 1,
    }


def test_e_prime_in_window_syn_draws_a_challenge_ack() -> None:
    x = establish_passive()
    before = Counter(x.host.counters)
    x.host.receive(pkt(S, x.peer_nxt + 5, options=syn_opts(tsval=200)), 1.0)
    ack = one(x.host, 1.0)
    assert (ack.flags, ack.seq, ack.ack) == (AK, ISS + 1, x.peer_nxt)
    assert x.conn.state is TcpState.ESTABLISHED
    assert _delta(x.host, before) == {
        "InSegs": 1,
        "OutSegs": 1,
        "TCPSYNChallenge": 1,
        "TCPChallengeACK": 1,
        "InErrs": 1,
    }


def test_e_double_prime_data_with_an_old_timestamp_is_dropped_with_a_dup_ack() -> None:
    x = establish_passive()
    before = Counter(x.host.counters)
    x.host.receive(from_peer(x, PA, payload=b"replayed", tsval=5), 0.1)
    ack = one(x.host, 0.1)
    assert (ack.flags, ack.seq, ack.ack) == (AK, ISS + 1, x.peer_nxt)
    assert ack.options == ts(100, 101)  # TS.Recent unchanged
    assert x.conn.readable == 0
    assert _delta(x.host, before) == {"InSegs": 1, "OutSegs": 1, "PAWSEstab": 1}


def test_e_double_prime_ack_with_an_old_timestamp_is_dropped_with_a_dup_ack() -> None:
    x = establish_passive()
    x.conn.send(b"abc")
    segs(x.host, 0.05)
    before = Counter(x.host.counters)
    x.host.receive(from_peer(x, AK, ack=ISS + 4, tsval=5), 0.1)
    ack = one(x.host, 0.1)
    assert (ack.flags, ack.ack) == (AK, x.peer_nxt)
    assert x.conn.snd_una == ISS + 1  # the ACK was not processed
    assert _delta(x.host, before) == {"InSegs": 1, "OutSegs": 1, "PAWSEstab": 1}


def test_duplicate_ack_inside_the_replay_window_passes_paws() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, AK, tsval=100), 0.1)  # one tick older: within TCP_PAWS_WINDOW
    x.host.receive(from_peer(x, AK, tsval=50), 0.1)  # older, but a pure dup ACK within ~RTO
    none_out(x.host, 0.1)
    assert x.host.counters["PAWSEstab"] == 0


def test_rst_outside_the_window_is_dropped_silently() -> None:
    x = establish_passive()
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 10_000_000, ack=0), 0.1)
    none_out(x.host, 0.1)
    assert x.conn.state is TcpState.ESTABLISHED


def test_rfc793_style_knobs_accept_an_in_window_rst() -> None:
    x = establish_passive(policy=LinuxPolicy(rst_rule_synchronized="rfc793"))
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 10, ack=0), 0.1)
    assert x.conn.state is TcpState.CLOSED


def test_policy_without_paws_accepts_old_timestamps() -> None:
    x = establish_passive(policy=Policy(paws=False))
    x.host.receive(from_peer(x, PA, payload=b"old", tsval=5), 0.1)
    assert x.conn.readable == 3


def test_a_user_policy_sees_every_rst() -> None:
    seen: list[int] = []

    class Audit(LinuxPolicy):
        def check_rst(self, ctx: PolicyContext, seg: TcpSegment, now: float) -> Decision:
            seen.append(seg.seq)
            return Decision(Verdict.DROP, "audit drops all RSTs", "AuditDrops")

    x = establish_passive(policy=Audit())
    x.host.receive(from_peer(x, R, ack=0), 0.1)
    assert seen == [x.peer_nxt]
    assert x.conn.state is TcpState.ESTABLISHED
    assert x.host.counters["AuditDrops"] == 1


def test_unknown_policy_knob_is_refused() -> None:
    with pytest.raises(TypeError):
        LinuxPolicy(no_such_knob=1)


def test_challenge_ack_for_an_ack_below_the_window() -> None:
    x = establish_passive()
    x.conn.send(b"x" * 100)
    segs(x.host, 0.05)
    x.host.receive(from_peer(x, AK, ack=ISS + 101), 0.06)
    x.host.receive(from_peer(x, AK, ack=ISS + 101 - 2_000_000), 1.0)
    ack = one(x.host, 1.0)
    assert ack.flags == AK and ack.ack == x.peer_nxt
    assert x.host.counters["TCPChallengeACK"] == 1


def test_rst_ack_to_synack_tsecr_check_is_linux_paws_active() -> None:
    host = make_host()
    conn = host.connect("198.18.0.2", 80, 0.0)
    one(host, 0.0)
    host.receive(
        pkt(SA, PEER_ISS, ISS + 1, sport=80, dport=conn.local[1], options=syn_opts(tsval=9, tsecr=7)), 0.005
    )
    assert one(host, 0.005).flags == R  # TSecr 7 was never sent (we sent 0 at t=0, now is 5)
    assert host.counters["PAWSActive"] == 1
    host.receive(pkt(RA, 0, ISS + 1, sport=80, dport=conn.local[1]), 0.006)
    assert conn.state is TcpState.CLOSED
