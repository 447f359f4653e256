"""SCENARIOS.md B as ONE table of data: every row the client plays, and what each server does, per policy.

The `linux` column is what the Linux 6.18 kernel here does (measured: SCENARIOS.md B; interop/scenario_b.py
and tests/kernel/test_policy_b_kernel.py replay this table against the kernel); the other columns follow
the presets' docstrings (utcp/policy). tests/policy/test_b_table.py replays it against utcp servers on
virtual time, interop/scenario_b.py as cells of the interop matrix.
"""

from __future__ import annotations

from interop.b_script import (
    ACCEPTED,
    CHALLENGE,
    CHALLENGED,
    DROPPED,
    DUPACK,
    LEFTOVER,
    RESET,
    RST_TO_ACK,
    Expect,
    Reply,
    Row,
    ack,
    bare_ack,
    data,
    rst,
    syn,
    wait,
)

__all__ = ["EMBRYONIC_RESET", "ESTAB_RESET", "PAWS_LEFTOVER", "PRESETS_UNDER_TEST", "ROWS", "TABLE"]

PRESETS_UNDER_TEST = ("linux", "linux-tw-recycle", "rfc793", "rfc5961", "rfc7323")

# --- outcomes that recur ---------------------------------------------------------------------------------
# Request socket reset by the RST (tcp_check_req embryonic_reset); the late ACK then meets the listener,
# which answers <SEQ=SEG.ACK><CTL=RST> without options: no leftover.
EMBRYONIC_RESET = Expect(RESET, (RST_TO_ACK,), False, {"EmbryonicRsts": 1, "AttemptFails": 1, "OutRsts": 1})
# The RST is dropped by the request socket's PAWS; the late ACK creates the child: a leftover.
PAWS_LEFTOVER = Expect(LEFTOVER, (), True, {"PAWSEstab": 1, "PassiveOpens": 1})
# An established connection reset by the peer's RST.
ESTAB_RESET = Expect(RESET, (), False, {"PassiveOpens": 1, "EstabResets": 1})


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
            "linux": Expect(CHALLENGED, (CHALLENGE,), True, {"TCPChallengeACK": 1, "PassiveOpens": 1}),
            "linux-tw-recycle": EMBRYONIC_RESET,  # <= 4.11 tcp_check_req: any in-window RST resets
            "rfc793": EMBRYONIC_RESET,
            "rfc5961": Expect(CHALLENGED, (CHALLENGE,), True, {"TCPChallengeACK": 1, "PassiveOpens": 1}),
            "rfc7323": Expect(CHALLENGED, (CHALLENGE,), True, {"TCPChallengeACK": 1, "PassiveOpens": 1}),
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
                CHALLENGED,
                (CHALLENGE,),
                True,
                {"TCPChallengeACK": 1, "TSEcrRejected": 1, "TCPACKSkippedSynRecv": 1, "PassiveOpens": 1},
            ),
            "linux-tw-recycle": Expect(
                RESET, (RST_TO_ACK, RST_TO_ACK), False, {"EmbryonicRsts": 1, "AttemptFails": 1, "OutRsts": 2}
            ),
            "rfc793": Expect(
                RESET, (RST_TO_ACK, RST_TO_ACK), False, {"EmbryonicRsts": 1, "AttemptFails": 1, "OutRsts": 2}
            ),
            "rfc5961": Expect(CHALLENGED, (CHALLENGE,), True, {"TCPChallengeACK": 1, "PassiveOpens": 1}),
            # the fresh ACK completes the handshake; the held one is then older than TS.Recent (RFC 7323 R1)
            "rfc7323": Expect(
                CHALLENGED,
                (CHALLENGE, DUPACK),
                True,
                {"TCPChallengeACK": 1, "PassiveOpens": 1, "PAWSEstab": 1},
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
                    CHALLENGED,
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
                    CHALLENGED,
                    (CHALLENGE,),
                    True,
                    {"TCPSYNChallenge": 1, "TCPChallengeACK": 1, "InErrs": 1, "PassiveOpens": 1},
                )
            ),
            # RFC 793: reset; the SYN has no ACK bit, so <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
            "rfc793": Expect(
                RESET,
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
            **each(Expect(DROPPED, (DUPACK,), True, {"PAWSEstab": 1, "PassiveOpens": 1})),
            # no PAWS: the data is taken and acknowledged (delayed ACK)
            "rfc793": Expect(ACCEPTED, (Reply("A", "snd", "rcv+5", True),), True, {"PassiveOpens": 1}),
            "rfc5961": Expect(ACCEPTED, (Reply("A", "snd", "rcv+5", True),), True, {"PassiveOpens": 1}),
        },
    ),
    Row(
        "E''-ack",
        "ESTABLISHED, pure ACK with TS=T-100000",
        (ack(), bare_ack(ts="T-100000")),
        {
            **each(Expect(DROPPED, (DUPACK,), True, {"PAWSEstab": 1, "PassiveOpens": 1})),
            "rfc793": Expect(ACCEPTED, (), True, {"PassiveOpens": 1}),
            "rfc5961": Expect(ACCEPTED, (), True, {"PassiveOpens": 1}),
        },
    ),
)

ROWS = {row.id: row for row in TABLE}
