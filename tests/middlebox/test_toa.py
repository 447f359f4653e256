"""RS-side TOA: getpeername mode, rewrite (slb_toa) mode, and the crossing of SCENARIOS.md A."""

from __future__ import annotations

from tests.middlebox.packets import CLIENT, CLIENT2, LIP, PA, RS, SA, VIP, A, R, S, on_wire, only, tcp
from tests.middlebox.test_fullnat import CLIENT_ISN, LVS_ISN, NOPPED_SYN_OPTIONS, client_syn, make_lb
from utcp.middlebox import Direction, FullNat, RsToa, RsToaConfig, TcpConnState, ToaMode
from utcp.wire.packet import IPv4Packet, Mss, Nop, SackPermitted, TcpFlags, Toa, WindowScale

TO_S, TO_C = Direction.TO_SERVER, Direction.TO_CLIENT
CPORT, VPORT, RSPORT, LPORT = 61902, 3306, 3269, 5000
TOA = Toa(port=CPORT, address=CLIENT)
RS_LVS_ISN = 900_000  # the RS's ISN on the connection that came through the LB
RS_DIRECT_ISN = 5_000_000  # the RS's ISN on the direct connection
DIRECT_ISN = 70_000  # the client's ISN on the direct connection


def lvs_syn(options: tuple[object, ...] = (TOA, Mss(1460))) -> IPv4Packet:
    return tcp(LIP, LPORT, RS, RSPORT, S, 100, options=options)  # type: ignore[arg-type]


def rewrite_box(strip: bool = False) -> RsToa:
    return RsToa(RsToaConfig(mode=ToaMode.REWRITE, strip_option=strip))


# --- getpeername mode ---------------------------------------------------------------------------------------


def test_getpeername_mode_leaves_packets_alone_and_reports_the_toa() -> None:
    box = RsToa()
    syn = lvs_syn()
    assert only(box.process(syn, TO_S, 0.0)).packet == syn
    assert box.client_address((RS, RSPORT), (LIP, LPORT)) == (CLIENT, CPORT)
    synack = tcp(RS, RSPORT, LIP, LPORT, SA, 7, 101)
    assert only(box.process(synack, TO_C, 0.1)).packet == synack
    assert box.client_address((RS, RSPORT), (LIP, LPORT + 1)) is None
    assert box.client_address((RS, RSPORT), (CLIENT, CPORT)) is None


def test_getpeername_mode_the_third_ack_toa_wins() -> None:
    box = RsToa()
    box.process(lvs_syn(), TO_S, 0.0)
    moved = Toa(port=1234, address=CLIENT2)
    box.process(tcp(LIP, LPORT, RS, RSPORT, A, 101, 8, options=(moved,)), TO_S, 0.2)
    assert box.client_address((RS, RSPORT), (LIP, LPORT)) == (CLIENT2, 1234)
    assert box.entries()[0].state is TcpConnState.ESTABLISHED


def test_getpeername_mode_toa_seen_only_on_the_third_ack_is_recorded() -> None:
    box = RsToa()
    box.process(tcp(LIP, LPORT, RS, RSPORT, S, 100), TO_S, 0.0)  # SYN without TOA (no room)
    assert box.client_address((RS, RSPORT), (LIP, LPORT)) is None
    box.process(tcp(LIP, LPORT, RS, RSPORT, A, 101, 8, options=(TOA,)), TO_S, 0.2)
    assert box.client_address((RS, RSPORT), (LIP, LPORT)) == (CLIENT, CPORT)


# --- rewrite mode -------------------------------------------------------------------------------------------


def test_rewrite_mode_inbound_source_becomes_the_client_toa_kept() -> None:
    box = rewrite_box()
    out = only(box.process(lvs_syn(), TO_S, 0.0)).packet
    assert out == tcp(CLIENT, CPORT, RS, RSPORT, S, 100, options=(TOA, Mss(1460)))
    # The third ACK without a TOA is rewritten from the remembered mapping.
    ack = tcp(LIP, LPORT, RS, RSPORT, A, 101, 8)
    assert only(box.process(ack, TO_S, 0.2)).packet == tcp(CLIENT, CPORT, RS, RSPORT, A, 101, 8)
    assert box.stats["toa_in_rewritten"] == 2


def test_rewrite_mode_outbound_destination_goes_back_to_the_lb_local_address() -> None:
    box = rewrite_box()
    box.process(lvs_syn(), TO_S, 0.0)
    synack = tcp(RS, RSPORT, CLIENT, CPORT, SA, 7, 101, options=(Mss(1460),), ident=31)
    assert only(box.process(synack, TO_C, 0.1)).packet == tcp(
        RS, RSPORT, LIP, LPORT, SA, 7, 101, options=(Mss(1460),), ident=31
    )
    assert box.format_entries(0.1) == (
        "tcp      6 120 SYN_RECV src=198.19.0.1 dst=198.19.0.2 sport=5000 dport=3269 "
        "src=198.19.0.2 dst=198.18.0.1 sport=3269 dport=61902"
    )


def test_rewrite_mode_can_strip_the_option() -> None:
    box = rewrite_box(strip=True)
    out = only(box.process(lvs_syn(), TO_S, 0.0)).packet
    assert out == tcp(CLIENT, CPORT, RS, RSPORT, S, 100, options=(Mss(1460),))


def test_rewrite_mode_unmapped_traffic_passes_untouched() -> None:
    box = rewrite_box()
    direct = tcp(CLIENT2, 40000, RS, RSPORT, S, 1)
    assert only(box.process(direct, TO_S, 0.0)).packet == direct
    reply = tcp(RS, RSPORT, CLIENT2, 40000, SA, 9, 2)
    assert only(box.process(reply, TO_C, 0.0)).packet == reply
    assert box.stats["toa_passed"] == 2


def test_rewrite_mode_a_second_lvs_tuple_for_the_same_client_takes_over_the_mapping() -> None:
    box = rewrite_box()
    box.process(lvs_syn(), TO_S, 0.0)
    other_lb = tcp("198.19.0.9", 7000, RS, RSPORT, S, 100, options=(TOA,))
    assert only(box.process(other_lb, TO_S, 1.0)).packet.src == CLIENT
    assert box.stats["toa_mapping_replaced"] == 1
    reply = tcp(RS, RSPORT, CLIENT, CPORT, SA, 7, 101)
    out = only(box.process(reply, TO_C, 1.1)).packet
    assert (out.dst, out.tcp.dst_port) == ("198.19.0.9", 7000)
    assert len(box.entries()) == 1


def test_mappings_expire_with_conntrack_timeouts() -> None:
    box = rewrite_box()
    box.process(lvs_syn(), TO_S, 0.0)
    box.process(tcp(RS, RSPORT, CLIENT, CPORT, SA, 7, 101), TO_C, 0.1)
    box.process(tcp(LIP, LPORT, RS, RSPORT, A, 101, 8), TO_S, 0.2)
    assert box.next_deadline() == 0.2 + 432000  # ESTABLISHED: nf_conntrack's 5 days
    box.process(tcp(LIP, LPORT, RS, RSPORT, R, 101), TO_S, 1.0)  # CLOSE: 10 s
    assert box.next_deadline() == 11.0
    assert box.on_timer(11.0) == []
    assert box.entries() == [] and box.stats["toa_mapping_expired"] == 1
    late = tcp(RS, RSPORT, CLIENT, CPORT, A, 7, 101)
    assert only(box.process(late, TO_C, 12.0)).packet == late


# --- the crossing (SCENARIOS.md A, seed 000) ----------------------------------------------------------


class Path:
    """Client -- LB -- RS-side TOA box -- RS stack, with the direct path client -- TOA box -- RS."""

    def __init__(self, mode: ToaMode) -> None:
        self.lb: FullNat = make_lb(lvs_isn=LVS_ISN)
        self.toa = RsToa(RsToaConfig(mode=mode))
        self.now = 0.0

    def tick(self) -> float:
        self.now += 0.01
        return self.now

    def via_lb(self, packet: IPv4Packet) -> IPv4Packet:
        """Client -> VIP, as the RS stack receives it."""
        to_rs = only(self.lb.process(packet, TO_S, self.tick())).packet
        return only(self.toa.process(to_rs, TO_S, self.tick())).packet

    def direct(self, packet: IPv4Packet) -> IPv4Packet:
        """Client -> RS without the LB, as the RS stack receives it."""
        return only(self.toa.process(packet, TO_S, self.tick())).packet

    def from_rs(self, packet: IPv4Packet) -> IPv4Packet:
        """RS stack -> wherever the boxes send it, as the client receives it."""
        out = only(self.toa.process(packet, TO_C, self.tick())).packet
        if out.dst == LIP:
            return only(self.lb.process(out, TO_C, self.tick())).packet
        return out


def establish_direct(path: Path) -> tuple[tuple[str, int, str, int], ...]:
    seen = [
        path.direct(tcp(CLIENT, CPORT, RS, RSPORT, S, DIRECT_ISN, options=(Mss(1460),))),
        path.direct(tcp(CLIENT, CPORT, RS, RSPORT, A, DIRECT_ISN + 1, RS_DIRECT_ISN + 1)),
    ]
    got = path.from_rs(tcp(RS, RSPORT, CLIENT, CPORT, SA, RS_DIRECT_ISN, DIRECT_ISN + 1, ident=16438))
    assert (got.src, got.tcp.src_port) == (RS, RSPORT)  # the direct handshake works
    return tuple((p.src, p.tcp.src_port, p.dst, p.tcp.dst_port) for p in seen)


def test_slb_toa_collapses_the_direct_and_the_lvs_connection_onto_one_4_tuple() -> None:
    path = Path(ToaMode.REWRITE)
    direct_tuples = establish_direct(path)
    # Later the client reuses port 61902 towards the VIP (a different 4-tuple on its side).
    at_rs = path.via_lb(client_syn())
    assert at_rs.tcp.options == (TOA, *NOPPED_SYN_OPTIONS)
    lvs_tuple = (at_rs.src, at_rs.tcp.src_port, at_rs.dst, at_rs.tcp.dst_port)
    assert set(direct_tuples) == {lvs_tuple} == {(CLIENT, CPORT, RS, RSPORT)}

    # The RS has one socket for that 4-tuple: the direct connection's. What it sends on it, here the
    # ACK for the client's query on the direct connection, now leaves through the LB path.
    data_ack = tcp(RS, RSPORT, CLIENT, CPORT, A, RS_DIRECT_ISN + 1, DIRECT_ISN + 51, ident=16439)
    seen_by_client = path.from_rs(data_ack)
    assert seen_by_client == tcp(
        VIP,
        VPORT,
        CLIENT,
        CPORT,
        A,
        RS_DIRECT_ISN + 1,  # the direct connection's seq, untouched by FullNAT
        (DIRECT_ISN + 51 - (LVS_ISN - CLIENT_ISN)) % (1 << 32),  # un-shifted by the LB's delta
        ident=16439,  # the RS's IP id: LVS keeps it
    )
    on_wire(seen_by_client)
    # And its RST (the trace's id 42889) reaches the client from VIP:3306 too, never from RS:3269.
    rst = path.from_rs(tcp(RS, RSPORT, CLIENT, CPORT, R, RS_DIRECT_ISN + 1, ident=42889))
    assert (rst.src, rst.tcp.src_port, rst.tcp.flags, rst.tcp.seq, rst.ident) == (
        VIP,
        VPORT,
        TcpFlags.RST,
        RS_DIRECT_ISN + 1,
        42889,
    )
    # Meanwhile the client's retransmitted query on the direct connection still reaches the RS directly:
    query = tcp(CLIENT, CPORT, RS, RSPORT, PA, DIRECT_ISN + 1, RS_DIRECT_ISN + 1, payload=b"q" * 50)
    assert path.direct(query) == query


def test_stock_toa_keeps_the_two_connections_apart() -> None:
    path = Path(ToaMode.GETPEERNAME)
    direct_tuples = establish_direct(path)
    at_rs = path.via_lb(client_syn())
    lvs_tuple = (at_rs.src, at_rs.tcp.src_port, at_rs.dst, at_rs.tcp.dst_port)
    assert lvs_tuple == (LIP, LPORT, RS, RSPORT)
    assert lvs_tuple not in direct_tuples
    assert path.toa.client_address((RS, RSPORT), (LIP, LPORT)) == (CLIENT, CPORT)
    # The direct connection's ACK goes straight back to the client from RS:3269.
    data_ack = tcp(RS, RSPORT, CLIENT, CPORT, A, RS_DIRECT_ISN + 1, DIRECT_ISN + 51, ident=16439)
    assert path.from_rs(data_ack) == data_ack
    # The LVS connection's SYN-ACK goes to the LB and reaches the client from the VIP.
    synack = tcp(
        RS,
        RSPORT,
        LIP,
        LPORT,
        SA,
        RS_LVS_ISN,
        LVS_ISN + 1,
        options=(Mss(1460), SackPermitted(), Nop(), WindowScale(7)),
    )
    got = path.from_rs(synack)
    assert (got.src, got.tcp.src_port, got.tcp.ack) == (VIP, VPORT, CLIENT_ISN + 1)


def test_unparseable_input_is_counted_and_dropped() -> None:
    box = rewrite_box()
    assert box.process(b"\x00\x01", TO_S, 0.0) == []
    assert box.stats["dropped_unparseable"] == 1
