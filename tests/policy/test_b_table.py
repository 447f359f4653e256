"""Must-show 1: SCENARIOS.md B, every row, as ONE table of data, replayed against a utcp server per preset.

A utcp client plays the client role with the crafting API (hold the third ACK, craft RSTs with a normal,
missing, zero or stale timestamp, exact or inexact seq, SYNs, old-timestamp data). The `linux` column is
what the Linux 6.18 kernel here does (measured: SCENARIOS.md B, and tests/kernel/test_policy_b_kernel.py
replays this same table against the kernel); the other columns follow the presets' docstrings.
"""

from __future__ import annotations

import pytest

from tests.policy.bscript import (
    CHALLENGE,
    DUPACK,
    RST_TO_ACK,
    Expect,
    Reply,
    Row,
    ack,
    bare_ack,
    data,
    rst,
    run_row_sim,
    syn,
    wait,
)
from utcp.tcp.events import SegmentDropped

PRESETS_UNDER_TEST = ("linux", "linux-tw-recycle", "rfc793", "rfc5961", "rfc7323")

# --- outcomes that recur ---------------------------------------------------------------------------------
# Request socket reset by the RST (tcp_check_req embryonic_reset); the late ACK then meets the listener,
# which answers <SEQ=SEG.ACK><CTL=RST> without options: no leftover.
EMBRYONIC_RESET = Expect((RST_TO_ACK,), False, {"EmbryonicRsts": 1, "AttemptFails": 1, "OutRsts": 1})
# The RST is dropped by the request socket's PAWS; the late ACK creates the child: a leftover.
PAWS_LEFTOVER = Expect((), True, {"PAWSEstab": 1, "PassiveOpens": 1})
# An established connection reset by the peer's RST.
ESTAB_RESET = Expect((), False, {"PassiveOpens": 1, "EstabResets": 1})


def each(expect: Expect) -> dict[str, Expect]:
    return dict.fromkeys(PRESETS_UNDER_TEST, expect)


def paws_split(with_paws: Expect, without: Expect) -> dict[str, Expect]:
    """Linux presets drop the old-timestamp RST on the request socket; RFC presets never do (rfc793 and
    rfc5961 have no PAWS, rfc7323 exempts RSTs)."""
    return {
        "linux": with_paws,
        "linux-tw-recycle": with_paws,
        "rfc793": without,
        "rfc5961": without,
        "rfc7323": without,
    }


TABLE: tuple[Row, ...] = (
    Row(
        "1",
        "SYN(TS=T), SYN-ACK, ACK, RST(seq=isn+1, no options)",
        (ack(), rst(ts="none")),
        each(ESTAB_RESET),
    ),
    Row(
        "2",
        "SYN(TS=T), SYN-ACK, RST(TS=T), ACK",
        (rst(ts="T"), ack()),
        each(EMBRYONIC_RESET),
    ),
    Row(
        "3",
        "as 2, RST without options",
        (rst(ts="none"), ack()),
        each(EMBRYONIC_RESET),
    ),
    Row(
        "4-ts0",
        "as 2, RST TS=0",
        (rst(ts="0"), ack()),
        paws_split(PAWS_LEFTOVER, EMBRYONIC_RESET),
    ),
    Row(
        "4-stale",
        "as 2, RST TS=T-2",
        (rst(ts="T-2"), ack()),
        paws_split(PAWS_LEFTOVER, EMBRYONIC_RESET),
    ),
    Row(
        "4-T-1",
        "as 2, RST TS=T-1",
        (rst(ts="T-1"), ack()),
        paws_split(PAWS_LEFTOVER, EMBRYONIC_RESET),
        note="measured on 6.18: the request socket's PAWS has no TCP_PAWS_WINDOW tolerance "
        "(tcp_paws_reject -> tcp_paws_check(rx_opt, 0)), unlike SCENARIOS.md's prose",
    ),
    Row(
        "5",
        "as 2, RST in window but seq = isn+1+1000",
        (rst(ts="T", seq=1000), ack()),
        {
            "linux": Expect((CHALLENGE,), True, {"TCPChallengeACK": 1, "PassiveOpens": 1}),
            "linux-tw-recycle": EMBRYONIC_RESET,  # <= 4.11 tcp_check_req: any in-window RST resets
            "rfc793": EMBRYONIC_RESET,
            "rfc5961": Expect((CHALLENGE,), True, {"TCPChallengeACK": 1, "PassiveOpens": 1}),
            "rfc7323": Expect((CHALLENGE,), True, {"TCPChallengeACK": 1, "PassiveOpens": 1}),
        },
    ),
    Row(
        "5-echo",
        "as 5, then a fresh ACK echoing the challenge ACK's TSval, then the held third ACK",
        (rst(ts="T", seq=1000), bare_ack(), ack()),
        {
            # >= 6.15: the TSecr is none of the SYN-ACK TSvals: dropped, its ACK rate-limited (the challenge
            # ACK went out 50 ms before); the held ACK then completes the handshake
            "linux": Expect(
                (CHALLENGE,),
                True,
                {"TCPChallengeACK": 1, "TSEcrRejected": 1, "TCPACKSkippedSynRecv": 1, "PassiveOpens": 1},
            ),
            "linux-tw-recycle": Expect(
                (RST_TO_ACK, RST_TO_ACK), False, {"EmbryonicRsts": 1, "AttemptFails": 1, "OutRsts": 2}
            ),
            "rfc793": Expect(
                (RST_TO_ACK, RST_TO_ACK), False, {"EmbryonicRsts": 1, "AttemptFails": 1, "OutRsts": 2}
            ),
            "rfc5961": Expect((CHALLENGE,), True, {"TCPChallengeACK": 1, "PassiveOpens": 1}),
            # the fresh ACK completes the handshake; the held one is then older than TS.Recent (RFC 7323 R1)
            "rfc7323": Expect(
                (CHALLENGE, DUPACK), True, {"TCPChallengeACK": 1, "PassiveOpens": 1, "PAWSEstab": 1}
            ),
        },
        note="measured on 6.18: Linux 6.15 tcp_check_req checks TSecr against [snt_tsval_first, "
        "snt_tsval_last], and its own challenge ACK's TSval lies outside",
    ),
    Row(
        "E",
        "ESTABLISHED, RST at rcv_nxt with TS=0",
        (ack(), rst(ts="0")),
        each(ESTAB_RESET),
    ),
    Row(
        "E'-rst",
        "ESTABLISHED, in-window RSTs at +10, +20 (same 500 ms), then +30 after 0.6 s",
        (ack(), rst(seq=10), rst(seq=20), wait(0.6), rst(seq=30)),
        {
            **each(
                Expect(
                    (CHALLENGE, CHALLENGE),
                    True,
                    {"TCPChallengeACK": 2, "TCPACKSkippedChallenge": 1, "PassiveOpens": 1},
                )
            ),
            "rfc793": ESTAB_RESET,  # the first in-window RST kills it; later RSTs meet a closed port
        },
    ),
    Row(
        "E'-syn",
        "ESTABLISHED, SYN at isn+1+5 (in window)",
        (ack(), syn(seq=5)),
        {
            **each(
                Expect(
                    (CHALLENGE,),
                    True,
                    {"TCPSYNChallenge": 1, "TCPChallengeACK": 1, "InErrs": 1, "PassiveOpens": 1},
                )
            ),
            # RFC 793: reset; the SYN has no ACK bit, so <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
            "rfc793": Expect(
                (Reply("RA", "0", "rcv+6", False),),
                False,
                {"PassiveOpens": 1, "EstabResets": 1, "OutRsts": 1},
            ),
        },
    ),
    Row(
        "E''-data",
        "ESTABLISHED, data with TS=T-100000",
        (ack(), data(ts="T-100000")),
        {
            **each(Expect((DUPACK,), True, {"PAWSEstab": 1, "PassiveOpens": 1})),
            # no PAWS: the data is taken and acknowledged (delayed ACK)
            "rfc793": Expect((Reply("A", "snd", "rcv+5", True),), True, {"PassiveOpens": 1}),
            "rfc5961": Expect((Reply("A", "snd", "rcv+5", True),), True, {"PassiveOpens": 1}),
        },
    ),
    Row(
        "E''-ack",
        "ESTABLISHED, pure ACK with TS=T-100000",
        (ack(), bare_ack(ts="T-100000")),
        {
            **each(Expect((DUPACK,), True, {"PAWSEstab": 1, "PassiveOpens": 1})),
            "rfc793": Expect((), True, {"PassiveOpens": 1}),
            "rfc5961": Expect((), True, {"PassiveOpens": 1}),
        },
    ),
)

ROWS = {row.id: row for row in TABLE}


def test_the_table_covers_every_b_case_for_every_preset() -> None:
    cases = {row.id.split("-")[0] for row in TABLE}
    assert cases == {"1", "2", "3", "4", "5", "E", "E'", "E''"}
    for row in TABLE:
        assert set(row.expect) == set(PRESETS_UNDER_TEST), row.id


@pytest.mark.parametrize("preset", PRESETS_UNDER_TEST)
@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_b_row(row: Row, preset: str) -> None:
    observed, _server = run_row_sim(row, preset)
    assert observed.mismatches(row.expect[preset]) == [], f"{row.id} [{row.what}] with {preset}"


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_the_comparison_tells_presets_apart(row: Row) -> None:
    """Where two columns differ, a run of one preset fails the other's expectation: the table can fail."""
    for preset in PRESETS_UNDER_TEST:
        observed, _ = run_row_sim(row, preset)
        for other in PRESETS_UNDER_TEST:
            if row.expect[other] != row.expect[preset]:
                assert observed.mismatches(row.expect[other]), (row.id, preset, other)


@pytest.mark.parametrize("row_id", ["4-ts0", "4-stale", "4-T-1"])
def test_rfc7323_leaves_no_leftover_in_case_4(row_id: str) -> None:
    linux, _ = run_row_sim(ROWS[row_id], "linux")
    rfc7323, _ = run_row_sim(ROWS[row_id], "rfc7323")
    assert linux.leftover and linux.counters["PAWSEstab"] == 1
    assert not rfc7323.leftover and rfc7323.counters["EmbryonicRsts"] == 1


def test_rfc793_resets_on_an_inexact_in_window_rst() -> None:
    observed, server = run_row_sim(ROWS["E'-rst"], "rfc793")
    assert observed.counters["EstabResets"] == 1 and not observed.leftover
    assert server.connections() == []
    linux, _ = run_row_sim(ROWS["E'-rst"], "linux")
    assert linux.leftover and linux.counters["EstabResets"] == 0


def test_the_dropped_rst_is_reported_with_its_reason_and_counter() -> None:
    _observed, server = run_row_sim(ROWS["4-ts0"], "linux")
    drops = [e for e in server.events() if isinstance(e, SegmentDropped)]
    paws = [e for e in drops if e.counter == "PAWSEstab"]
    assert len(paws) == 1
    assert "paws" in paws[0].reason and "RST" in paws[0].reason
    assert "[R]" in paws[0].summary and "SYN_RECEIVED" in paws[0].summary


def test_challenge_acks_are_reported_as_drops() -> None:
    _observed, server = run_row_sim(ROWS["E'-rst"], "linux")
    drops = [e for e in server.events() if isinstance(e, SegmentDropped)]
    challenged = [e for e in drops if "RFC 5961 3.2" in e.reason]
    assert len(challenged) == 3  # all three RSTs are discarded; two draw an ACK, one is rate-limited
    assert any(e.counter == "TCPACKSkippedChallenge" for e in drops)
