"""SNAT / masquerade: Linux-like port preservation and fallback, untouched timestamps, expiry."""

from __future__ import annotations

import dataclasses

import pytest

from tests.middlebox.packets import FA, SA, A, S, only, tcp
from utcp.middlebox import ConnEntry, Direction, PortSelection, Snat, SnatConfig, SnatMapping, TcpConnState
from utcp.wire.packet import IPv4Packet, Mss, Nop, SackPermitted, Timestamps, WindowScale

TO_S, TO_C = Direction.TO_SERVER, Direction.TO_CLIENT
A_IN = "198.18.1.2"  # inside client A
B_IN = "198.18.1.3"  # inside client B
NAT = "198.19.3.51"  # the outside address
SERVER = "198.19.3.111"
SERVER2 = "198.19.3.112"


def syn_from(src: str, sport: int, tsval: int, dst: str = SERVER, dport: int = 19090) -> IPv4Packet:
    opts = (Mss(1260), SackPermitted(), Timestamps(tsval, 0), Nop(), WindowScale(7))
    return tcp(src, sport, dst, dport, S, 1000, options=opts, ident=55, ttl=64)


def state_of(entry: ConnEntry[SnatMapping]) -> TcpConnState:
    return entry.state


def make(**overrides: object) -> Snat:
    config = SnatConfig(outside_address=NAT, inside_networks=("198.18.1.0/24",), seed=7)
    return Snat(dataclasses.replace(config, **overrides))  # type: ignore[arg-type]


def test_source_port_and_timestamps_preserved_ttl_decremented() -> None:
    nat = make()
    syn = syn_from(A_IN, 57104, tsval=3075335984)
    out = only(nat.process(syn, TO_S, 0.0)).packet
    assert out == dataclasses.replace(syn, src=NAT, ttl=63)
    assert nat.stats["snat_port_preserved"] == 1


def test_reply_is_un_natted_back_to_the_inside_client() -> None:
    nat = make()
    nat.process(syn_from(A_IN, 57104, 1), TO_S, 0.0)
    synack = tcp(SERVER, 19090, NAT, 57104, SA, 2846609535, 1001, options=(Mss(1260),), ident=9)
    assert only(nat.process(synack, TO_C, 0.1)).packet == tcp(
        SERVER, 19090, A_IN, 57104, SA, 2846609535, 1001, options=(Mss(1260),), ident=9, ttl=63
    )
    ack = tcp(A_IN, 57104, SERVER, 19090, A, 1001, 2846609536)
    assert only(nat.process(ack, TO_S, 0.2)).packet == tcp(
        NAT, 57104, SERVER, 19090, A, 1001, 2846609536, ttl=63
    )
    assert nat.format_entries(0.2) == (
        "tcp      6 432000 ESTABLISHED src=198.18.1.2 dst=198.19.3.111 sport=57104 dport=19090 "
        "src=198.19.3.111 dst=198.19.3.51 sport=19090 dport=57104 [ASSURED]"
    )


def test_second_client_with_the_same_port_to_the_same_server_gets_another_port() -> None:
    nat = make(port_selection=PortSelection.SEQUENTIAL)
    first = only(nat.process(syn_from(A_IN, 40000, 1), TO_S, 0.0)).packet
    second = only(nat.process(syn_from(B_IN, 40000, 2), TO_S, 0.0)).packet
    assert first.tcp.src_port == 40000
    assert second.tcp.src_port == 1024  # the rover starts at the bottom of 1024-65535
    third = only(nat.process(syn_from("198.18.1.4", 40000, 3), TO_S, 0.0)).packet
    assert third.tcp.src_port == 1025
    # Replies find their way to the right inside client.
    back = only(nat.process(tcp(SERVER, 19090, NAT, 1024, SA, 5, 1001), TO_C, 0.1)).packet
    assert (back.dst, back.tcp.dst_port) == (B_IN, 40000)
    assert nat.stats["snat_port_changed"] == 2


def test_random_fallback_is_in_range_and_reproducible_by_seed() -> None:
    ports = []
    for _ in range(2):
        nat = make(seed=99)
        nat.process(syn_from(A_IN, 40000, 1), TO_S, 0.0)
        out = only(nat.process(syn_from(B_IN, 40000, 2), TO_S, 0.0)).packet
        ports.append(out.tcp.src_port)
    assert ports[0] == ports[1]
    assert 1024 <= ports[0] <= 65535 and ports[0] != 40000


def test_same_port_towards_different_servers_keeps_it_for_both() -> None:
    nat = make()
    a = only(nat.process(syn_from(A_IN, 40000, 1), TO_S, 0.0)).packet
    b = only(nat.process(syn_from(B_IN, 40000, 2, dst=SERVER2), TO_S, 0.0)).packet
    assert a.tcp.src_port == b.tcp.src_port == 40000


def test_an_inside_endpoint_keeps_its_current_mapping_for_new_destinations() -> None:
    nat = make(port_selection=PortSelection.SEQUENTIAL)
    nat.process(syn_from(A_IN, 40000, 1), TO_S, 0.0)
    moved = only(nat.process(syn_from(B_IN, 40000, 2), TO_S, 0.0)).packet
    assert moved.tcp.src_port == 1024
    # B:40000 again, to another server: find_appropriate_src reuses 1024 rather than 40000.
    again = only(nat.process(syn_from(B_IN, 40000, 3, dst=SERVER2), TO_S, 1.0)).packet
    assert again.tcp.src_port == 1024
    assert nat.stats["snat_port_reused"] == 1


def test_privileged_ports_search_their_own_class() -> None:
    nat = make(port_selection=PortSelection.SEQUENTIAL)
    nat.process(syn_from(A_IN, 700, 1), TO_S, 0.0)
    out = only(nat.process(syn_from(B_IN, 700, 2), TO_S, 0.0)).packet
    assert out.tcp.src_port == 600


def test_explicit_range_and_no_preservation() -> None:
    nat = make(port_range=(20000, 20001), preserve_port=False, port_selection=PortSelection.SEQUENTIAL)
    ports = [only(nat.process(syn_from(A_IN, 40000 + i, 1), TO_S, 0.0)).packet.tcp.src_port for i in range(2)]
    assert ports == [20000, 20001]
    assert nat.process(syn_from(A_IN, 40002, 1), TO_S, 0.0) == []
    assert nat.stats["snat_dropped_no_port"] == 1


def test_timestamps_of_two_clients_pass_untouched_scenario_d() -> None:
    nat = make()
    a = only(nat.process(syn_from(A_IN, 58164, tsval=3075920126), TO_S, 0.0)).packet
    b = only(nat.process(syn_from(B_IN, 34234, tsval=1741395578), TO_S, 0.76)).packet
    # One source address, unrelated TS clocks: what a tw_recycle server's per-peer cache trips on.
    assert a.src == b.src == NAT
    assert a.tcp.option(Timestamps) == Timestamps(3075920126, 0)
    assert b.tcp.option(Timestamps) == Timestamps(1741395578, 0)


def test_unknown_replies_and_mid_stream_packets_are_dropped() -> None:
    nat = make()
    assert nat.process(tcp(SERVER, 19090, NAT, 40000, A, 1, 1), TO_C, 0.0) == []
    assert nat.process(tcp(A_IN, 40000, SERVER, 19090, A, 1, 1), TO_S, 0.0) == []
    assert nat.stats["snat_dropped_no_conn"] == 2
    outsider = tcp("198.18.9.9", 1, SERVER, 19090, S, 1)  # not an inside address: routed as is
    assert only(nat.process(outsider, TO_S, 0.0)).packet == outsider


def test_entries_expire_and_the_port_is_free_again() -> None:
    nat = make(port_selection=PortSelection.SEQUENTIAL)
    nat.process(syn_from(A_IN, 40000, 1), TO_S, 0.0)
    assert nat.next_deadline() == 120.0  # an unanswered SYN: nf_conntrack SYN_SENT, 2 min
    nat.on_timer(120.0)
    assert nat.entries() == [] and nat.stats["snat_conn_expired"] == 1
    out = only(nat.process(syn_from(B_IN, 40000, 2), TO_S, 121.0)).packet
    assert out.tcp.src_port == 40000


def test_close_then_a_new_syn_reuses_the_entry_and_its_mapping() -> None:
    nat = make(port_selection=PortSelection.SEQUENTIAL)
    nat.process(syn_from(A_IN, 40000, 1), TO_S, 0.0)
    nat.process(syn_from(B_IN, 40000, 2), TO_S, 0.0)  # -> 1024
    nat.process(tcp(SERVER, 19090, NAT, 1024, SA, 5, 1001), TO_C, 0.1)
    nat.process(tcp(B_IN, 40000, SERVER, 19090, A, 1001, 6), TO_S, 0.2)
    nat.process(tcp(B_IN, 40000, SERVER, 19090, FA, 1001, 6), TO_S, 0.3)
    nat.process(tcp(SERVER, 19090, NAT, 1024, FA, 6, 1002), TO_C, 0.4)
    entry = next(e for e in nat.entries() if e.ext.inside == (B_IN, 40000))
    assert entry.state is TcpConnState.TIME_WAIT
    again = only(nat.process(syn_from(B_IN, 40000, 9), TO_S, 1.0)).packet
    assert again.tcp.src_port == 1024
    assert state_of(entry) is TcpConnState.SYN_RECV  # re-opened, not replaced


def test_ttl_one_is_dropped_and_garbage_counted() -> None:
    nat = make()
    assert nat.process(tcp(A_IN, 1, SERVER, 2, S, 1, ttl=1), TO_S, 0.0) == []
    assert nat.stats["snat_dropped_ttl_exceeded"] == 1
    assert nat.process(b"\x45" * 30, TO_S, 0.0) == []  # parses, but the IP checksum is wrong
    assert nat.stats["dropped_bad_checksum"] == 1
    assert nat.process(b"\x45\x00garbage", TO_S, 0.0) == []
    assert nat.stats["dropped_unparseable"] == 1
    assert nat.entries() == []


@pytest.mark.parametrize("bad", [(0, 5), (10, 5), (1, 70000)])
def test_bad_port_ranges_are_refused(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="bad port range"):
        SnatConfig(outside_address=NAT, port_range=bad)
