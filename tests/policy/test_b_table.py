"""Must-show 1: SCENARIOS.md B, every row, as ONE table of data (interop/b_table.py), replayed against a
utcp server per preset.

A utcp client plays the client role with the crafting API (hold the third ACK, craft RSTs with a normal,
missing, zero or stale timestamp, exact or inexact seq, SYNs, old-timestamp data). The `linux` column is
what the Linux 6.18 kernel here does (measured: SCENARIOS.md B, and tests/kernel/test_policy_b_kernel.py
replays this same table against the kernel); the other columns follow the presets' docstrings.
"""

from __future__ import annotations

import pytest

from interop.b_script import Row, classify, run_row_sim
from interop.b_table import PRESETS_UNDER_TEST, ROWS, TABLE
from utcp.tcp.events import SegmentDropped


def test_the_table_covers_every_b_case_for_every_preset() -> None:
    cases = {row.id.split("-")[0] for row in TABLE}
    assert cases == {"1", "2", "3", "4", "5", "E", "E'", "E''"}
    for row in TABLE:
        assert set(row.expect) == set(PRESETS_UNDER_TEST), row.id


def test_each_outcome_word_says_what_the_rest_of_its_expectation_does() -> None:
    """The outcome words are data; `classify` (which names observed runs) reads the same word off the
    expected counters and end state, so a word that contradicts its own row is caught here."""
    for row in TABLE:
        for preset, expect in row.expect.items():
            assert classify(expect, row.established_first) == expect.outcome, (row.id, preset)


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
