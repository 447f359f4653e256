"""Decisions keyed by socket state, beyond SCENARIOS.md B: SYN-SENT (PAWSActive on RST-ACK), the request
socket (the TCP_PAWS_MSL exemption and the TSecr check), synchronized states (RFC 793 vs RFC 5961 rules,
RST PAWS rules), TIME-WAIT (RST rules, PAWS with its MSL exemption, RFC 1337). Linux facts marked
[6.18] were measured on this kernel (TIME-WAIT: exact RST only, old-TS RST dropped, PAWSTimewait)."""

from __future__ import annotations

from tests.tcp.helpers import (
    AK,
    FA,
    ISS,
    PEER_ISS,
    RA,
    SA,
    A,
    Active,
    B,
    R,
    S,
    cfg,
    establish_active,
    establish_passive,
    fire,
    from_peer,
    make_host,
    none_out,
    one,
    pkt,
    state,
    syn_opts,
    ts,
)
from utcp.policy import (
    LinuxPolicy,
    LinuxTwRecyclePolicy,
    Policy,
    Rfc793Policy,
    Rfc5961Policy,
    Rfc7323Policy,
)
from utcp.tcp.connection import Connection
from utcp.tcp.events import SegmentDropped
from utcp.tcp.host import Host
from utcp.tcp.state import TcpState
from utcp.wire.packet import Timestamps

# --- SYN-SENT --------------------------------------------------------------------------------------------


def test_syn_sent_rst_ack_with_a_tsecr_never_sent_is_dropped_as_paws_active() -> None:
    host = make_host(policy=LinuxPolicy())
    conn = host.connect(B, 80, 0.0)
    one(host, 0.0)
    host.receive(pkt(RA, 0, ISS + 1, sport=80, dport=conn.local[1], options=ts(9, 7)), 0.005)
    none_out(host, 0.005)  # never answer an RST
    assert conn.state is TcpState.SYN_SENT
    assert host.counters["PAWSActive"] == 1
    drops = [e for e in host.events() if isinstance(e, SegmentDropped)]
    assert [d.counter for d in drops] == ["PAWSActive"] and "RST-ACK" in drops[0].reason


def test_syn_sent_rst_ack_bypasses_the_tsecr_check_when_told() -> None:
    host = make_host(policy=LinuxPolicy(rst_paws_syn_sent="always"))
    conn = host.connect(B, 80, 0.0)
    one(host, 0.0)
    host.receive(pkt(RA, 0, ISS + 1, sport=80, dport=conn.local[1], options=ts(9, 7)), 0.005)
    assert conn.state is TcpState.CLOSED and host.counters["PAWSActive"] == 0


def test_rfc_presets_do_not_check_the_synack_tsecr() -> None:
    host = make_host(policy=Rfc7323Policy())
    conn = host.connect(B, 80, 0.0)
    one(host, 0.0)
    host.receive(
        pkt(SA, PEER_ISS, ISS + 1, sport=80, dport=conn.local[1], options=syn_opts(tsval=9, tsecr=7)), 0.005
    )
    assert one(host, 0.005).flags == AK
    assert conn.state is TcpState.ESTABLISHED


# --- request socket ---------------------------------------------------------------------------------------


def _request_after_retransmits(retransmits: int, synack_retries: int) -> tuple[Host, Connection]:
    host = make_host(config=cfg(synack_retries=synack_retries))
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=7_000_000)), 0.0)
    one(host, 0.0)
    for _ in range(retransmits):
        fire(host)
        assert one(host, 0.0).flags == SA
    [req] = host.connections()
    return host, req


def test_request_rst_msl_exemption_needs_a_64s_synack_timeout() -> None:
    # Linux estimates the request's TS.Recent age as its SYN-ACK timeout: 1 s << retransmissions
    host, req = _request_after_retransmits(5, 5)  # the default synack_retries: at most 32 s
    assert req.rto == 32.0
    host.receive(pkt(R, PEER_ISS + 1, options=ts(0)), 100.0)
    assert host.counters["PAWSEstab"] == 1 and len(host.connections()) == 1
    host, req = _request_after_retransmits(6, 6)
    assert req.rto == 64.0
    host.receive(pkt(R, PEER_ISS + 1, options=ts(0)), 100.0)
    assert host.connections() == [] and host.counters["EmbryonicRsts"] == 1


def _synack(policy: Policy) -> tuple[Host, int]:
    host = make_host(policy=policy)
    host.listen(A, 80)
    host.receive(pkt(S, PEER_ISS, options=syn_opts(tsval=500)), 1.0)
    opt = one(host, 1.0).option(Timestamps)
    assert opt is not None
    return host, opt.tsval


def test_request_socket_rejects_a_tsecr_it_never_sent() -> None:
    host, synack_ts = _synack(LinuxPolicy())
    assert synack_ts == 1000
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(501, synack_ts + 500)), 1.1)
    ack = one(host, 1.1)
    assert (ack.flags, ack.seq, ack.ack) == (AK, ISS + 1, PEER_ISS + 1)
    assert host.counters["TSEcrRejected"] == 1
    assert host.connections()[0].state is TcpState.SYN_RECEIVED
    host.receive(pkt(R, PEER_ISS + 1, options=ts(501, synack_ts + 500)), 1.2)
    none_out(host, 1.2)
    assert host.counters["TSEcrRejected"] == 2
    host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(502, synack_ts)), 1.3)
    assert host.connections()[0].state is TcpState.ESTABLISHED


def test_without_the_tsecr_check_any_tsecr_completes_the_handshake() -> None:
    for policy in (LinuxTwRecyclePolicy(), Rfc7323Policy(), LinuxPolicy(request_tsecr_check=False)):
        host, synack_ts = _synack(policy)
        host.receive(pkt(AK, PEER_ISS + 1, ISS + 1, options=ts(501, synack_ts + 500)), 1.1)
        assert host.connections()[0].state is TcpState.ESTABLISHED


# --- synchronized states ----------------------------------------------------------------------------------


def test_rfc793_answers_a_syn_outside_the_window_with_a_plain_ack() -> None:
    x = establish_passive(policy=Rfc793Policy())
    x.host.receive(pkt(S, x.peer_nxt + 10_000_000, options=syn_opts(tsval=None)), 1.0)
    ack = one(x.host, 1.0)
    assert (ack.flags, ack.ack) == (AK, x.peer_nxt)
    assert x.conn.state is TcpState.ESTABLISHED
    assert x.host.counters["TCPSYNChallenge"] == 0 and x.host.counters["TCPChallengeACK"] == 0


def test_ack_for_unsent_data_per_preset() -> None:
    linux = establish_passive(policy=LinuxPolicy())
    linux.host.receive(from_peer(linux, AK, ack=ISS + 5000), 1.0)
    none_out(linux.host, 1.0)  # Linux, ESTABLISHED: dropped silently
    rfc793 = establish_passive(policy=Rfc793Policy())
    rfc793.host.receive(from_peer(rfc793, AK, ack=ISS + 5000), 1.0)
    assert one(rfc793.host, 1.0).flags == AK  # RFC 793: ACK and drop
    assert rfc793.host.counters["TCPChallengeACK"] == 0
    rfc5961 = establish_passive(policy=Rfc5961Policy())
    rfc5961.host.receive(from_peer(rfc5961, AK, ack=ISS + 5000), 1.0)
    assert one(rfc5961.host, 1.0).flags == AK
    assert rfc5961.host.counters["TCPChallengeACK"] == 1  # RFC 5961 5.2


def test_an_old_ack_below_the_window_is_ignored_without_the_range_check() -> None:
    x = establish_passive(policy=Rfc793Policy())
    x.conn.send(b"x" * 100)
    x.host.packets_to_send(0.05)
    x.host.receive(from_peer(x, AK, ack=ISS + 101), 0.06)
    x.host.receive(from_peer(x, AK, ack=ISS + 101 - 2_000_000), 1.0)
    none_out(x.host, 1.0)
    assert x.host.counters["TCPChallengeACK"] == 0


def test_rst_paws_never_drops_an_old_rst_once_synchronized() -> None:
    x = establish_passive(policy=LinuxPolicy(rst_paws_synchronized="never"))
    x.host.receive(from_peer(x, R, ack=0, tsval=5), 1.0)
    none_out(x.host, 1.0)
    assert x.conn.state is TcpState.ESTABLISHED and x.host.counters["PAWSEstab"] == 1


def test_rst_paws_after_msl_once_synchronized() -> None:
    x = establish_passive(policy=LinuxPolicy(rst_paws_synchronized="after-msl"))
    x.host.receive(from_peer(x, R, ack=0, tsval=5), 50.0)  # TS.Recent stored at 0.01: 50 s old
    assert x.conn.state is TcpState.ESTABLISHED
    x.host.receive(from_peer(x, R, ack=0, tsval=5), 60.02)
    assert state(x.conn) is TcpState.CLOSED


# --- TIME-WAIT --------------------------------------------------------------------------------------------


def _time_wait(policy: Policy, time_wait: float = 60.0) -> Active:
    """An active closer in TIME-WAIT; TS.Recent = 100 stored at 0.2; rcv_nxt = peer_nxt + 1."""
    x = establish_active(cfg(time_wait=time_wait), policy=policy)
    x.conn.close()
    one(x.host, 0.1)
    x.host.receive(from_peer(x, FA, ack=ISS + 2), 0.2)
    one(x.host, 0.2)
    assert x.conn.state is TcpState.TIME_WAIT
    return x


def test_linux_time_wait_ignores_an_inexact_rst() -> None:  # [6.18]
    x = _time_wait(LinuxPolicy())
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 11, ack=0), 1.0)
    none_out(x.host, 1.0)
    assert x.conn.state is TcpState.TIME_WAIT


def test_rfc5961_time_wait_challenges_an_inexact_rst_and_rfc793_dies() -> None:
    x = _time_wait(Rfc5961Policy())
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 11, ack=0), 1.0)
    assert one(x.host, 1.0).flags == AK
    assert x.conn.state is TcpState.TIME_WAIT and x.host.counters["TCPChallengeACK"] == 1
    y = _time_wait(Rfc793Policy())
    y.host.receive(from_peer(y, R, seq=y.peer_nxt + 11, ack=0), 1.0)
    assert y.conn.state is TcpState.CLOSED


def test_linux_time_wait_drops_an_old_timestamp_rst_until_ts_recent_is_msl_old() -> None:  # [6.18]
    x = _time_wait(LinuxPolicy(), time_wait=120.0)
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 1, ack=0, tsval=50), 1.0)
    assert x.conn.state is TcpState.TIME_WAIT and x.host.counters["PAWSTimewait"] == 1
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 1, ack=0, tsval=50), 60.3)  # tcp_paws_reject: MSL
    assert state(x.conn) is TcpState.CLOSED


def test_rfc7323_time_wait_takes_an_old_timestamp_rst_at_once() -> None:
    x = _time_wait(Rfc7323Policy())
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 1, ack=0, tsval=50), 1.0)
    assert x.conn.state is TcpState.CLOSED


def test_rfc1337_protects_time_wait_from_assassination() -> None:
    x = _time_wait(LinuxPolicy(rfc1337=True))
    x.host.receive(from_peer(x, R, seq=x.peer_nxt + 1, ack=0), 1.0)
    none_out(x.host, 1.0)
    assert x.conn.state is TcpState.TIME_WAIT
    y = _time_wait(LinuxPolicy())
    y.host.receive(from_peer(y, R, seq=y.peer_nxt + 1, ack=0), 1.0)
    assert y.conn.state is TcpState.CLOSED  # tcp_rfc1337=0: the exact RST kills it [6.18]


def test_old_kernels_count_time_wait_paws_as_paws_estab() -> None:
    x = _time_wait(LinuxTwRecyclePolicy())
    x.host.receive(
        pkt(S, x.peer_nxt + 100_000, sport=80, dport=x.conn.local[1], options=syn_opts(tsval=50)), 0.3
    )
    assert one(x.host, 0.3).flags == AK
    assert x.host.counters["PAWSEstab"] == 1 and x.host.counters["PAWSTimewait"] == 0
