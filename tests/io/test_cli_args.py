"""`utcp` rejects bad arguments with one clear line and exit status 2 (no root needed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from utcp.cli.main import load_policy, main
from utcp.policy import PRESETS

BASE = ["peer", "--netns", "utcp-no-such-namespace-here", "--listen", "7"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "required"),
        (["peer", "--netns", "x", "--listen", "99999"], "out of range"),
        (["peer", "--netns", "x", "--listen", "7", "--serve", "gopher"], "invalid choice"),
        (["peer", "--netns", "x", "--listen", "7", "--address", "198.18.0.300/24"], "invalid IPv4"),
        (["peer", "--netns", "x", "--listen", "7", "--address", "198.18.0.2"], "needs a prefix"),
        (["peer", "--netns", "x", "--listen", "7", "--mtu", "100"], "MTU 100"),
        (["connect", "--netns", "x", "198.18.0.1"], "required"),
        ([*BASE, "--peer-address", "10.1.1.1"], "not in 198.18.0.0/24"),
        ([*BASE, "--peer-address", "198.18.0.2"], "both"),
        (BASE, "does not exist"),
        (["peer", "--netns", "x", "--listen", "7", "--policy", "nosuch"], "unknown policy"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_console_entry_point_exits_2_on_bad_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "utcp.cli.main", "peer", "--listen", "0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


def test_a_bad_nap_in_the_environment_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("UTCP_TUN_WRITE_NAP_US", "soon")
    assert main(["demo"]) == 2  # before any namespace or device is made
    assert capsys.readouterr().err == (
        "utcp demo: error: UTCP_TUN_WRITE_NAP_US must be microseconds in 0..999999, not 'soon'\n"
    )


def test_policy_can_be_named_by_module_path() -> None:
    obj = load_policy("tests.policy.userpolicies:TrustingRsts")
    assert type(obj).__name__ == "TrustingRsts"


def test_a_class_that_is_not_a_policy_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["peer", "--netns", "x", "--listen", "7", "--policy", "collections:OrderedDict"])
    err = capsys.readouterr().err
    assert code == 2
    assert "not a utcp.policy.Policy" in err, err


def test_policies_lists_every_preset_and_knob(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policies", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listing["presets"]] == list(PRESETS)
    knob_names = {k["name"] for k in listing["knobs"]}
    assert {"paws", "paws_window", "rfc1337", "tw_recycle"} <= knob_names
    assert main(["policies"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in PRESETS)
