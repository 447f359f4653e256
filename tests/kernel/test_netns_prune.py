"""A run killed by SIGTERM leaves its namespaces (neither `finally` nor atexit runs): the next test session
deletes those whose creator is gone and that hold no process, and nothing else."""

from __future__ import annotations

import subprocess
import sys

import pytest

from utcp.cli.main import main
from utcp.lab.netns import NETNS_DIR, Namespace, prune_stale_namespaces, stale_namespaces


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_leftovers_of_dead_runs_are_pruned(privileged: None) -> None:
    dead = _dead_pid()
    leftover = Namespace(f"utcp-{dead}-a1b2c3")  # as unique_name() names them, its creator gone
    busy = Namespace(f"utcp-{dead}-d4e5f6")  # the same, with a process still inside
    live = Namespace()  # ours: this process is alive
    foreign = Namespace(f"lab-{dead}-a1b2c3")  # not a name utcp makes
    made = [leftover, busy, live, foreign]
    try:
        for ns in made:
            ns.create()
        sleeper = busy.popen(["sleep", "30"])
        stale = stale_namespaces()
        assert leftover.name in stale
        assert busy.name not in stale and live.name not in stale and foreign.name not in stale
        deleted = prune_stale_namespaces()
        assert leftover.name in deleted
        assert not (NETNS_DIR / leftover.name).exists()
        for ns in (busy, live, foreign):
            assert ns.exists(), ns.name
        busy.terminate(sleeper)
    finally:
        for ns in made:
            ns.delete()


def test_the_cleanup_command_lists_then_deletes_them(
    privileged: None, capsys: pytest.CaptureFixture[str]
) -> None:
    leftover = Namespace(f"utcp-{_dead_pid()}-0f1e2d")
    try:
        leftover.create()
        assert main(["cleanup", "--dry-run"]) == 0
        assert f"stale {leftover.name}" in capsys.readouterr().out.splitlines()
        assert leftover.exists()
        assert main(["cleanup"]) == 0
        assert f"deleted {leftover.name}" in capsys.readouterr().out.splitlines()
        assert not leftover.exists()
    finally:
        leftover.delete()
