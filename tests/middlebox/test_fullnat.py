"""FullNAT golden tests: exact packet in, exact packet out, for every rewrite DPVS does."""

from __future__ import annotations

import dataclasses

import pytest

from tests.middlebox.packets import (
    CLIENT,
    CLIENT2,
    FA,
    LIP,
    LIP2,
    PA,
    RA,
    RS,
    RS2,
    SA,
    VIP,
    A,
    F,
    R,
    S,
    on_wire,
    only,
    tcp,
)
from utcp.middlebox import (
    Direction,
    FullNat,
    FullNatConfig,
    MssAdjust,
    RealServer,
    Scheduler,
    TcpConnState,
    VirtualService,
)
from utcp.middlebox.base import DROPPED_NOT_TCP
from utcp.tcp.isn import IsnGenerator
from utcp.wire.packet import (
    IPv4Packet,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpFlags,
    TcpOption,
    Timestamps,
    Toa,
    UnknownOption,
    WindowScale,
)

TO_S, TO_C = Direction.TO_SERVER, Direction.TO_CLIENT
CPORT = 61902
VPORT = 3306
RSPORT = 3269
LPORT = 5000
CLIENT_ISN = 1_000_000
LVS_ISN = 7_000_000
RS_ISN = 3_000_000_000
U32 = 1 << 32

LINUX_SYN_OPTIONS: tuple[TcpOption, ...] = (
    Mss(1460),
    SackPermitted(),
    Timestamps(111, 0),
    Nop(),
    WindowScale(7),
)
NOPPED_SYN_OPTIONS: tuple[TcpOption, ...] = (
    Mss(1460),
    SackPermitted(),
    *(Nop(),) * 10,
    Nop(),
    WindowScale(7),
)
RS_SYNACK_OPTIONS: tuple[TcpOption, ...] = (Mss(1460), SackPermitted(), Nop(), WindowScale(7))
TOA = Toa(port=CPORT, address=CLIENT)


def service(*servers: RealServer, scheduler: Scheduler = Scheduler.RR) -> VirtualService:
    return VirtualService(VIP, VPORT, servers or (RealServer(RS, RSPORT),), scheduler)


def make_lb(lvs_isn: int = LVS_ISN, **overrides: object) -> FullNat:
    config = FullNatConfig(
        services=(service(),), local_addresses=(LIP,), isn=IsnGenerator(fixed=lvs_isn), seed=1
    )
    return FullNat(dataclasses.replace(config, **overrides))  # type: ignore[arg-type]


def client_syn(isn: int = CLIENT_ISN, options: tuple[TcpOption, ...] = LINUX_SYN_OPTIONS) -> IPv4Packet:
    return tcp(CLIENT, CPORT, VIP, VPORT, S, isn, options=options, ident=4242)


def rs_synack(lvs_isn: int = LVS_ISN, rs_isn: int = RS_ISN) -> IPv4Packet:
    return tcp(RS, RSPORT, LIP, LPORT, SA, rs_isn, lvs_isn + 1, options=RS_SYNACK_OPTIONS, ident=100)


def handshake(lb: FullNat, client_isn: int = CLIENT_ISN, lvs_isn: int = LVS_ISN) -> None:
    lb.process(client_syn(client_isn), TO_S, 0.0)
    lb.process(rs_synack(lvs_isn), TO_C, 0.1)
    lb.process(tcp(CLIENT, CPORT, VIP, VPORT, A, client_isn + 1, RS_ISN + 1), TO_S, 0.2)


# --- SYN ------------------------------------------------------------------------------------------------


def test_syn_gets_timestamps_nopped_toa_first_isn_reseeded_and_mss_untouched() -> None:
    lb = make_lb()
    out = only(lb.process(client_syn(), TO_S, 0.0))
    assert out.direction is TO_S
    assert out.packet == tcp(
        LIP, LPORT, RS, RSPORT, S, LVS_ISN, options=(TOA, *NOPPED_SYN_OPTIONS), ident=4242
    )
    assert lb.stats["toa_inserted"] == 1 and lb.stats["ts_removed"] == 1


def test_syn_keeps_timestamps_when_removal_is_off() -> None:
    lb = make_lb(remove_timestamps=False)
    out = only(lb.process(client_syn(), TO_S, 0.0))
    assert out.packet.tcp.options == (TOA, *LINUX_SYN_OPTIONS)


def test_syn_gets_no_toa_when_insertion_is_off() -> None:
    lb = make_lb(insert_toa=False)
    out = only(lb.process(client_syn(), TO_S, 0.0))
    assert out.packet.tcp.options == NOPPED_SYN_OPTIONS
    assert lb.stats["toa_inserted"] == 0


def test_retransmitted_syn_keeps_the_reseeded_isn() -> None:
    isn = IsnGenerator(secret=b"0123456789abcdef")
    lb = make_lb(isn=isn)
    first = only(lb.process(client_syn(), TO_S, 0.0)).packet
    again = only(lb.process(client_syn(), TO_S, 1.0)).packet  # the clock moved; the ISN must not
    assert first.tcp.seq == isn.isn(LIP, LPORT, RS, RSPORT, 0.0)
    assert again.tcp.seq == first.tcp.seq
    assert again.tcp.options == (TOA, *NOPPED_SYN_OPTIONS)


def test_isn_is_keyed_per_lvs_tuple() -> None:
    isn = IsnGenerator(secret=b"0123456789abcdef")
    lb = make_lb(isn=isn)
    a = only(lb.process(client_syn(), TO_S, 0.0)).packet
    b = only(lb.process(tcp(CLIENT2, CPORT, VIP, VPORT, S, CLIENT_ISN, options=LINUX_SYN_OPTIONS), TO_S, 0.0))
    assert a.tcp.src_port == LPORT and b.packet.tcp.src_port == LPORT + 1
    assert a.tcp.seq == isn.isn(LIP, LPORT, RS, RSPORT, 0.0)
    assert b.packet.tcp.seq == isn.isn(LIP, LPORT + 1, RS, RSPORT, 0.0)
    assert a.tcp.seq != b.packet.tcp.seq  # same client ISN, different LVS tuple


# --- SYN-ACK --------------------------------------------------------------------------------------------


def test_synack_back_to_vip_ack_unshifted_mss_lowered_by_toa_length() -> None:
    lb = make_lb()
    lb.process(client_syn(), TO_S, 0.0)
    out = only(lb.process(rs_synack(), TO_C, 0.1))
    assert out.direction is TO_C
    expected_options = (Mss(1452), SackPermitted(), Nop(), WindowScale(7))
    assert out.packet == tcp(
        VIP, VPORT, CLIENT, CPORT, SA, RS_ISN, CLIENT_ISN + 1, options=expected_options, ident=100
    )
    assert lb.stats["mss_adjusted"] == 1


@pytest.mark.parametrize(
    ("mode", "clamp", "expected"),
    [(MssAdjust.CLAMP, 1400, 1400), (MssAdjust.CLAMP, 1500, 1460), (MssAdjust.OFF, 1400, 1460)],
)
def test_synack_mss_clamp_modes(mode: MssAdjust, clamp: int, expected: int) -> None:
    lb = make_lb(mss_adjust=mode, mss_clamp=clamp)
    lb.process(client_syn(), TO_S, 0.0)
    out = only(lb.process(rs_synack(), TO_C, 0.1))
    assert out.packet.tcp.option(Mss) == Mss(expected)


# --- third ACK, data, SACK --------------------------------------------------------------------------------


def test_third_ack_carries_toa_and_is_shifted() -> None:
    lb = make_lb()
    lb.process(client_syn(), TO_S, 0.0)
    lb.process(rs_synack(), TO_C, 0.1)
    ack = tcp(CLIENT, CPORT, VIP, VPORT, A, CLIENT_ISN + 1, RS_ISN + 1, window=502, ident=4243)
    out = only(lb.process(ack, TO_S, 0.2))
    assert out.packet == tcp(
        LIP, LPORT, RS, RSPORT, A, LVS_ISN + 1, RS_ISN + 1, options=(TOA,), window=502, ident=4243
    )
    assert lb.conntrack.entries()[0].state is TcpConnState.ESTABLISHED


def test_early_data_acking_the_rs_isn_carries_toa_later_data_does_not() -> None:
    lb = make_lb()
    handshake(lb)
    early = tcp(CLIENT, CPORT, VIP, VPORT, PA, CLIENT_ISN + 1, RS_ISN + 1, payload=b"select 1")
    out = only(lb.process(early, TO_S, 0.3)).packet
    assert out == tcp(
        LIP, LPORT, RS, RSPORT, PA, LVS_ISN + 1, RS_ISN + 1, options=(TOA,), payload=b"select 1"
    )
    # The RS answers with data; the client's next segment acks past ISN+1: no TOA any more.
    lb.process(tcp(RS, RSPORT, LIP, LPORT, PA, RS_ISN + 1, LVS_ISN + 9, payload=b"x" * 50), TO_C, 0.4)
    later = tcp(CLIENT, CPORT, VIP, VPORT, PA, CLIENT_ISN + 9, RS_ISN + 51, payload=b"select 2")
    assert only(lb.process(later, TO_S, 0.5)).packet == tcp(
        LIP, LPORT, RS, RSPORT, PA, LVS_ISN + 9, RS_ISN + 51, payload=b"select 2"
    )
    assert lb.stats["toa_inserted"] == 3  # SYN, third ACK, early data


def test_rs_sack_blocks_are_unshifted_client_sack_blocks_pass() -> None:
    lb = make_lb()
    handshake(lb)
    rs_sack = tcp(
        RS,
        RSPORT,
        LIP,
        LPORT,
        A,
        RS_ISN + 1,
        LVS_ISN + 101,
        options=(Nop(), Nop(), Sack(((LVS_ISN + 201, LVS_ISN + 301), (LVS_ISN + 401, LVS_ISN + 501)))),
    )
    assert only(lb.process(rs_sack, TO_C, 1.0)).packet == tcp(
        VIP,
        VPORT,
        CLIENT,
        CPORT,
        A,
        RS_ISN + 1,
        CLIENT_ISN + 101,
        options=(
            Nop(),
            Nop(),
            Sack(((CLIENT_ISN + 201, CLIENT_ISN + 301), (CLIENT_ISN + 401, CLIENT_ISN + 501))),
        ),
    )
    # The client's SACK blocks are about the RS's data: already in the RS's space.
    client_sack = tcp(
        CLIENT,
        CPORT,
        VIP,
        VPORT,
        A,
        CLIENT_ISN + 501,
        RS_ISN + 1001,
        options=(Nop(), Nop(), Sack(((RS_ISN + 2001, RS_ISN + 3001),))),
    )
    assert only(lb.process(client_sack, TO_S, 1.1)).packet == tcp(
        LIP,
        LPORT,
        RS,
        RSPORT,
        A,
        LVS_ISN + 501,
        RS_ISN + 1001,
        options=(Nop(), Nop(), Sack(((RS_ISN + 2001, RS_ISN + 3001),))),
    )


# --- FIN, RST ---------------------------------------------------------------------------------------------


def test_fin_exchange_is_shifted_and_tracked_to_time_wait() -> None:
    lb = make_lb()
    handshake(lb)
    fin = tcp(CLIENT, CPORT, VIP, VPORT, FA, CLIENT_ISN + 1, RS_ISN + 1)
    assert only(lb.process(fin, TO_S, 1.0)).packet == tcp(LIP, LPORT, RS, RSPORT, FA, LVS_ISN + 1, RS_ISN + 1)
    assert lb.entries()[0].state is TcpConnState.CLOSE_WAIT
    rs_fin = tcp(RS, RSPORT, LIP, LPORT, FA, RS_ISN + 1, LVS_ISN + 2)
    assert only(lb.process(rs_fin, TO_C, 1.1)).packet == tcp(
        VIP, VPORT, CLIENT, CPORT, FA, RS_ISN + 1, CLIENT_ISN + 2
    )
    assert lb.entries()[0].state is TcpConnState.TIME_WAIT
    last = tcp(CLIENT, CPORT, VIP, VPORT, A, CLIENT_ISN + 2, RS_ISN + 2)
    assert only(lb.process(last, TO_S, 1.2)).packet == tcp(LIP, LPORT, RS, RSPORT, A, LVS_ISN + 2, RS_ISN + 2)
    assert lb.next_deadline() == pytest.approx(1.2 + 7)


def test_rst_from_client_shifts_seq_rst_from_rs_keeps_a_flagless_ack_field() -> None:
    lb = make_lb()
    handshake(lb)
    rst = tcp(CLIENT, CPORT, VIP, VPORT, R, CLIENT_ISN + 1)
    assert only(lb.process(rst, TO_S, 1.0)).packet == tcp(LIP, LPORT, RS, RSPORT, R, LVS_ISN + 1)
    assert lb.entries()[0].state is TcpConnState.CLOSE
    rs_rst = tcp(RS, RSPORT, LIP, LPORT, RA, RS_ISN + 1, LVS_ISN + 1)
    assert only(lb.process(rs_rst, TO_C, 1.1)).packet == tcp(
        VIP, VPORT, CLIENT, CPORT, RA, RS_ISN + 1, CLIENT_ISN + 1
    )
    bare = tcp(RS, RSPORT, LIP, LPORT, R, RS_ISN + 1, 0)
    assert only(lb.process(bare, TO_C, 1.2)).packet == tcp(VIP, VPORT, CLIENT, CPORT, R, RS_ISN + 1, 0)


# --- TOA room ---------------------------------------------------------------------------------------------


def test_toa_skipped_and_counted_when_the_header_is_full() -> None:
    lb = make_lb()
    handshake(lb)
    # A duplicate ACK of the RS's ISN+1 with timestamps and three SACK blocks: 40 option bytes.
    full = (
        Nop(),
        Nop(),
        Timestamps(5, 6),
        Nop(),
        Nop(),
        Sack(((RS_ISN + 101, RS_ISN + 201), (RS_ISN + 301, RS_ISN + 401), (RS_ISN + 501, RS_ISN + 601))),
    )
    dupack = tcp(CLIENT, CPORT, VIP, VPORT, A, CLIENT_ISN + 1, RS_ISN + 1, options=full)
    out = only(lb.process(dupack, TO_S, 1.0)).packet
    assert out == tcp(LIP, LPORT, RS, RSPORT, A, LVS_ISN + 1, RS_ISN + 1, options=full)
    assert lb.stats["toa_skipped_no_room"] == 1


def test_toa_skipped_on_a_syn_with_40_option_bytes() -> None:
    lb = make_lb()
    cookie = UnknownOption(kind=34, data=bytes(16))  # a TFO cookie request: 18 bytes
    options = (*LINUX_SYN_OPTIONS, cookie, Nop(), Nop())  # 20 + 18 + 2 = 40
    out = only(lb.process(client_syn(options=options), TO_S, 0.0)).packet
    assert out.tcp.options == (
        Mss(1460),
        SackPermitted(),
        *(Nop(),) * 10,
        Nop(),
        WindowScale(7),
        cookie,
        Nop(),
        Nop(),
    )
    assert lb.stats["toa_skipped_no_room"] == 1 and lb.stats["toa_inserted"] == 0


def test_toa_skipped_when_the_packet_would_exceed_the_mtu() -> None:
    lb = make_lb(mtu=1500)
    handshake(lb)
    payload = b"d" * (1500 - 40)  # a full-sized segment acking ISN+1
    big = tcp(CLIENT, CPORT, VIP, VPORT, PA, CLIENT_ISN + 1, RS_ISN + 1, payload=payload)
    out = only(lb.process(big, TO_S, 1.0)).packet
    assert out.tcp.options == ()
    assert lb.stats["toa_skipped_mtu"] == 1


# --- wrap-around ------------------------------------------------------------------------------------------


def test_seq_and_sack_shifting_across_the_2_32_wrap() -> None:
    client_isn = U32 - 5
    lb = make_lb(lvs_isn=10)  # delta = 15 (mod 2**32)
    handshake(lb, client_isn=client_isn, lvs_isn=10)
    data = tcp(CLIENT, CPORT, VIP, VPORT, PA, client_isn + 1, RS_ISN + 1, payload=b"x" * 20)
    out = only(lb.process(data, TO_S, 1.0)).packet
    assert out.tcp.seq == 11  # 2**32 - 4 + 15
    after_wrap = tcp(CLIENT, CPORT, VIP, VPORT, PA, 16, RS_ISN + 1, payload=b"y" * 20)  # client seq wrapped
    assert only(lb.process(after_wrap, TO_S, 1.1)).packet.tcp.seq == 31
    # The RS acks 11 (client 2**32 - 4) and SACKs [21, 31) and [11, 21): edges cross back over the wrap.
    rs_ack = tcp(
        RS, RSPORT, LIP, LPORT, A, RS_ISN + 1, 11, options=(Nop(), Nop(), Sack(((21, 31), (11, 21))))
    )
    back = only(lb.process(rs_ack, TO_C, 1.2)).packet
    assert back.tcp.ack == U32 - 4
    assert back.tcp.option(Sack) == Sack(((6, 16), (U32 - 4, 6)))


def test_shifting_when_the_lvs_isn_is_below_the_client_isn() -> None:
    lb = make_lb(lvs_isn=U32 - 50)  # delta = 2**32 - 50 - 100: a "negative" shift
    lb.process(client_syn(100), TO_S, 0.0)
    lb.process(rs_synack(U32 - 50), TO_C, 0.1)
    ack = tcp(CLIENT, CPORT, VIP, VPORT, PA, 101, RS_ISN + 1, payload=b"z" * 60)
    assert only(lb.process(ack, TO_S, 0.2)).packet.tcp.seq == U32 - 49
    rs_ack = tcp(RS, RSPORT, LIP, LPORT, A, RS_ISN + 1, (U32 - 49 + 60) % U32)
    assert only(lb.process(rs_ack, TO_C, 0.3)).packet.tcp.ack == 161


# --- expiry -----------------------------------------------------------------------------------------------


def test_idle_established_entry_expires_with_rsts_to_both_sides() -> None:
    lb = make_lb()
    handshake(lb)
    lb.process(tcp(CLIENT, CPORT, VIP, VPORT, PA, CLIENT_ISN + 1, RS_ISN + 1, payload=b"q" * 8), TO_S, 0.5)
    lb.process(tcp(RS, RSPORT, LIP, LPORT, PA, RS_ISN + 1, LVS_ISN + 9, payload=b"r" * 50), TO_C, 1.0)
    assert lb.next_deadline() == 91.0
    assert lb.on_timer(90.9) == []
    rsts = lb.on_timer(91.0)
    assert [e.direction for e in rsts] == [TO_S, TO_C]
    to_rs = tcp(LIP, LPORT, RS, RSPORT, R, LVS_ISN + 9, 0, window=0)  # the RS's rcv_nxt
    to_client = tcp(VIP, VPORT, CLIENT, CPORT, R, RS_ISN + 51, 0, window=0)  # the client's rcv_nxt
    assert [e.packet for e in rsts] == [to_rs, to_client]
    for emitted in rsts:
        on_wire(emitted.packet)
    assert lb.entries() == [] and lb.next_deadline() is None
    assert lb.stats["lb_expire_rst_sent"] == 2 and lb.stats["lb_conn_expired"] == 1


def test_expiry_outside_established_or_with_rst_off_sends_nothing() -> None:
    lb = make_lb()
    lb.process(client_syn(), TO_S, 0.0)  # SYN_RECV: 30 s
    assert lb.on_timer(30.0) == [] and lb.stats["lb_conn_expired"] == 1
    quiet = make_lb(rst_on_expire=False)
    handshake(quiet)
    assert quiet.on_timer(1000.0) == [] and quiet.entries() == []


def test_expiry_is_also_applied_before_a_late_packet() -> None:
    lb = make_lb()
    handshake(lb)
    late = tcp(CLIENT, CPORT, VIP, VPORT, A, CLIENT_ISN + 1, RS_ISN + 1)
    out = lb.process(late, TO_S, 500.0)
    # The two expiry RSTs come first; the late ACK then finds no entry and is dropped.
    assert [e.packet.tcp.flags for e in out] == [R, R]
    assert lb.stats["lb_dropped_no_conn"] == 1


# --- scheduling, local addresses, listing -------------------------------------------------------------------


def test_round_robin_and_per_local_address_port_counters() -> None:
    svc = service(RealServer(RS, RSPORT), RealServer(RS2, RSPORT))
    lb = make_lb(services=(svc,), local_addresses=(LIP, LIP2))
    outs = [
        only(lb.process(tcp(CLIENT, 40000 + i, VIP, VPORT, S, 1, options=()), TO_S, 0.0)).packet
        for i in range(4)
    ]
    assert [(p.src, p.tcp.src_port, p.dst) for p in outs] == [
        (LIP, 5000, RS),
        (LIP2, 5000, RS2),
        (LIP, 5001, RS),
        (LIP2, 5001, RS2),
    ]


def test_weighted_round_robin_follows_ip_vs_wrr() -> None:
    svc = service(
        RealServer(RS, RSPORT, weight=3), RealServer(RS2, RSPORT, weight=1), scheduler=Scheduler.WRR
    )
    lb = make_lb(services=(svc,))
    picks = [
        only(lb.process(tcp(CLIENT, 40000 + i, VIP, VPORT, S, 1), TO_S, 0.0)).packet.dst for i in range(8)
    ]
    assert picks == [RS, RS, RS, RS2, RS, RS, RS, RS2]


def test_weight_zero_servers_are_skipped_and_no_server_drops() -> None:
    svc = service(RealServer(RS, RSPORT, weight=0), RealServer(RS2, RSPORT))
    lb = make_lb(services=(svc,))
    assert only(lb.process(tcp(CLIENT, 1, VIP, VPORT, S, 1), TO_S, 0.0)).packet.dst == RS2
    none = make_lb(services=(service(RealServer(RS, RSPORT, weight=0)),))
    assert none.process(tcp(CLIENT, 1, VIP, VPORT, S, 1), TO_S, 0.0) == []
    assert none.stats["lb_dropped_no_dest"] == 1


def test_local_port_counter_skips_tuples_still_tracked_and_wraps() -> None:
    lb = make_lb(local_port_range=(5000, 5001))
    first = only(lb.process(tcp(CLIENT, 1, VIP, VPORT, S, 1), TO_S, 0.0)).packet.tcp.src_port
    second = only(lb.process(tcp(CLIENT, 2, VIP, VPORT, S, 1), TO_S, 0.0)).packet.tcp.src_port
    assert (first, second) == (5000, 5001)
    assert lb.process(tcp(CLIENT, 3, VIP, VPORT, S, 1), TO_S, 0.0) == []  # both ports busy
    assert lb.stats["lb_dropped_no_local_port"] == 1
    lb.on_timer(31.0)  # both SYN_RECV entries expire
    assert only(lb.process(tcp(CLIENT, 4, VIP, VPORT, S, 1), TO_S, 31.0)).packet.tcp.src_port == 5000


def test_listing_shows_client_and_rs_side_tuples() -> None:
    lb = make_lb()
    handshake(lb)
    assert lb.format_entries(now=0.2) == (
        "tcp      6 90 ESTABLISHED src=198.18.0.1 dst=198.18.0.100 sport=61902 dport=3306 "
        "src=198.19.0.2 dst=198.19.0.1 sport=3269 dport=5000 [ASSURED]"
    )


# --- what is not scheduled ---------------------------------------------------------------------------------


def test_only_a_bare_syn_creates_a_connection() -> None:
    lb = make_lb()
    for flags in (A, SA, F | S, R, PA):
        assert lb.process(tcp(CLIENT, CPORT, VIP, VPORT, flags, 1, 1), TO_S, 0.0) == []
    assert lb.stats["lb_dropped_no_conn"] == 5 and lb.entries() == []
    assert lb.process(tcp(RS, RSPORT, LIP, LPORT, SA, 1, 1), TO_C, 0.0) == []


def test_unrelated_traffic_passes_unchanged_or_is_dropped_when_configured() -> None:
    direct = tcp(CLIENT, CPORT, RS, RSPORT, S, 1)
    lb = make_lb()
    assert only(lb.process(direct, TO_S, 0.0)).packet == direct
    strict = make_lb(pass_unknown=False)
    assert strict.process(direct, TO_S, 0.0) == []
    udp = IPv4Packet(src=CLIENT, dst=VIP, payload=b"\x00" * 8, protocol=17)
    assert lb.process(udp, TO_S, 0.0) == [] and lb.stats[DROPPED_NOT_TCP] == 1


def test_a_new_syn_retires_a_time_wait_entry() -> None:
    lb = make_lb(lvs_isn=LVS_ISN)
    handshake(lb)
    lb.process(tcp(CLIENT, CPORT, VIP, VPORT, R, CLIENT_ISN + 1), TO_S, 1.0)  # CLOSE
    out = only(lb.process(client_syn(CLIENT_ISN + 100_000), TO_S, 1.5)).packet
    assert out.tcp.seq == LVS_ISN  # a fresh entry, ISN re-seeded for it
    assert out.tcp.src_port == LPORT + 1  # its own local port
    assert lb.stats["lb_conn_reused"] == 1 and len(lb.entries()) == 1


# --- IP header ---------------------------------------------------------------------------------------------


def test_ip_ident_tos_and_ttl_are_kept_by_default() -> None:
    lb = make_lb()
    syn = dataclasses.replace(client_syn(), ttl=33, tos=0x10, ident=777)
    out = only(lb.process(syn, TO_S, 0.0)).packet
    assert (out.ident, out.tos, out.ttl, out.dont_fragment) == (777, 0x10, 33, True)


def test_ttl_decrement_when_enabled_drops_at_one() -> None:
    lb = make_lb(decrement_ttl=True)
    assert only(lb.process(dataclasses.replace(client_syn(), ttl=33), TO_S, 0.0)).packet.ttl == 32
    assert lb.process(dataclasses.replace(client_syn(CLIENT_ISN), ttl=1), TO_S, 0.1) == []
    assert lb.stats["lb_dropped_ttl_exceeded"] == 1


def test_every_output_is_a_valid_packet_on_the_wire() -> None:
    lb = make_lb()
    outputs = [
        *lb.process(client_syn(), TO_S, 0.0),
        *lb.process(rs_synack(), TO_C, 0.1),
        *lb.process(tcp(CLIENT, CPORT, VIP, VPORT, A, CLIENT_ISN + 1, RS_ISN + 1), TO_S, 0.2),
    ]
    assert len(outputs) == 3
    for emitted in outputs:
        on_wire(emitted.packet)
    assert outputs[0].packet.tcp.flags == TcpFlags.SYN
