"""Soak on virtual time (issue 7, must-show 3): connections opened, used and closed between two utcp hosts,
directly and through a FullNAT LB, leave nothing behind: no connection (TIME-WAIT included), no timer, no
listener queue entry, no conntrack entry, no packet in flight, no leftover objects, traced memory back near
the baseline. Default 5,000 connections (seconds); UTCP_SOAK=100000 for the full run (CI sets it), or
tools/soak.py, which prints a JSON report."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

N = int(os.environ.get("UTCP_SOAK", "5000"))


def _soak_module() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "tools" / "soak.py"
    spec = importlib.util.spec_from_file_location("utcp_tools_soak", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


soak = _soak_module()


@pytest.mark.parametrize("through", ["direct", "fullnat"])
def test_soak_leaves_no_state_behind(through: str) -> None:
    report = soak.run_soak(N, trace_memory=False, through=through)
    assert report.completed == N and report.failed == 0
    assert report.leftover_client_connections == 0
    assert report.leftover_server_connections == 0
    assert report.leftover_timers == 0 and report.heap_entries == 0
    assert report.leftover_listener_queues == 0
    assert report.packets_in_flight == 0
    if through == "fullnat":
        assert report.lb_scheduled >= N  # every connection went through the LB (plus the warm-up's)
        assert report.leftover_conntrack_entries == 0 and report.lb_expire_rsts == 0
    assert report.final_objects - report.baseline_objects < 50  # no per-connection object survives
    assert report.clean


def test_soak_memory_returns_to_baseline() -> None:
    report = soak.run_soak(1000, trace_memory=True)
    assert report.clean
    assert report.peak_bytes > report.baseline_bytes + 1_000_000  # the connections did take memory
    assert report.growth_bytes < 300_000, report  # and gave it back (dict high-water marks aside)
