"""Every `utcp` subcommand, given a wrong argument, a missing namespace, no root or no /dev/net/tun, prints
exactly one line on stderr (no traceback) and exits non-zero (issue 7 must-show 7). No root needed: the
privilege checks are fooled by monkeypatching `os.geteuid` and the TUN path, and nothing may start."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import pytest
import trio

import utcp.cli.boxes
import utcp.cli.commands
import utcp.cli.demo
import utcp.cli.matrix
from utcp.cli.main import main
from utcp.lab.netns import Namespace

MISSING_NS = "utcp-missing-never-created"  # constant: xdist workers must collect the same ids
NETNS_CELL = "A/rewrite/client=utcp,lb=utcp,rs=utcp/linux/netns"
BOX_NS = ["--client-netns", "utcp-cli-c", "--server-netns", "utcp-cli-s"]
LB = ["lb", *BOX_NS, "--vip", "198.18.1.100:80", "--rs", "198.18.2.2:8080", "--laddr", "198.18.2.100"]
TOA = ["toa", *BOX_NS]
SNAT = ["snat", *BOX_NS, "--to", "198.18.2.100"]
IMPAIR = ["impair", *BOX_NS, "--drop", "dir=c2s"]
PEER = ["peer", "--netns", "utcp-cli-ns", "--listen", "7"]
CONNECT = ["connect", "--netns", "utcp-cli-ns", "198.18.0.1", "80"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits itself
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, needle: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("utcp"), lines[0]
    assert needle.lower() in lines[0].lower(), lines[0]


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that got past its checks would start trio: make that a test failure, not a hang."""

    def refuse(*_args: Any, **_kw: Any) -> Any:
        raise AssertionError("the command started although its checks should have stopped it")

    for module in (utcp.cli.commands, utcp.cli.demo, utcp.cli.matrix, utcp.cli.boxes):
        monkeypatch.setattr(module.trio, "run", refuse)


@pytest.fixture
def namespaces_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Namespace, "exists", lambda self: True)


@pytest.fixture
def no_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


@pytest.fixture
def no_tun(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_exists: Callable[[Any], bool] = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda path: path != "/dev/net/tun" and real_exists(path))
    monkeypatch.setattr(utcp.cli.boxes, "TUN_PATH", tmp_path / "no-tun")


BAD_ARGUMENTS = [
    ([], "required"),
    (["frobnicate"], "invalid choice"),
    (["--log-level", "loud", "policies"], "invalid choice"),
    (["policies", "--yaml"], "unrecognized"),
    # peer / connect
    (["peer", "--netns", "x"], "required"),
    (["peer", "--netns", "x", "--listen", "0"], "out of range"),
    (["peer", "--netns", "x", "--listen", "http"], "invalid port"),
    ([*PEER, "--seed", "abc"], "invalid int"),
    ([*PEER, "--workers", "0"], "--workers must be >= 1, not 0"),
    ([*PEER, "--workers", "many"], "invalid number of workers 'many'"),
    ([*PEER, "--mtu", "abc"], "invalid MTU"),
    ([*PEER, "--address", "198.18.0.2/31"], "is not in"),
    (["connect", "--netns", "x", "198.18.0.1", "99999"], "out of range"),
    (["connect", "--netns", "x", "example.com", "80"], "invalid IPv4"),
    (["connect", "--netns", "x", "--timeout", "soon", "198.18.0.1", "80"], "invalid float"),
    (["peer", "--netns", MISSING_NS, "--listen", "7"], "does not exist"),
    (["connect", "--netns", MISSING_NS, "198.18.0.1", "80"], "does not exist"),
    ([*PEER, "--pcap", "/no/such/dir/x.pcap"], "does not exist"),
    ([*CONNECT[:1], "--pcap", "/no/such/dir/x.pcap", *CONNECT[1:]], "does not exist"),
    # demo
    (["demo", "--bytes", "lots"], "invalid int"),
    # matrix / scenario
    (["matrix", "--jobs", "0"], "--jobs must be >= 1"),
    (["matrix", "--backend", "vm"], "invalid choice"),
    (["matrix", "--only", "no-such-cell-anywhere"], "no cell matches"),
    (["scenario"], "required"),
    (["scenario", "run"], "required"),
    (["scenario", "run", "Z"], "unknown scenario"),
    (["scenario", "run", "A", "--case", "nope"], "no case"),
    (["scenario", "run", "A", "--role", "client"], "expected ROLE=IMPL"),
    (["scenario", "run", "A", "--role", "client=bsd"], "unknown implementation"),
    (["scenario", "run", "A", "--role", "nobody=kernel"], "no role"),
    (["scenario", "run", "A", "--client", "bsd"], "invalid choice"),
    (["scenario", "run", "A", "--policy", "nosuch"], "unknown policy"),
    # boxes
    (["lb", *BOX_NS, "--rs", "198.18.2.2:8080", "--laddr", "198.18.2.100"], "required"),
    ([*LB[:-6], "--vip", "10.0.0.1:80", *LB[-4:]], "only lab addresses"),
    ([*LB, "--rs", "198.18.2.3:http"], "invalid port"),
    ([*LB, "--rs", "198.18.2.2:8080"], "given twice"),
    ([*LB, "--lport-range", "9000-100"], "empty port range"),
    ([*LB, "--mss-clamp", "10"], "out of range"),
    ([*LB, "--mtu", "9"], "out of range"),
    ([*LB, "--client-addr", "198.18.2.1/24"], "overlap"),
    ([*LB, "--stats-interval", "0.001"], "too short"),
    ([*LB, "--pcap", "/no/such/dir/x.pcap"], "does not exist"),
    (["lb", "--client-netns", "same", "--server-netns", "same", *LB[5:]], "two different namespaces"),
    ([*TOA, "--mode", "magic"], "invalid choice"),
    ([*TOA, "--strip-option"], "--mode rewrite"),
    (["snat", *BOX_NS], "required"),
    ([*SNAT, "--ports", "5-x"], "invalid port"),
    ([*SNAT, "--to", "198.18.1.5"], "inside the masqueraded"),
    ([*IMPAIR, "--rule", "explode"], "unknown action"),
    ([*IMPAIR, "--rule", "drop nth=0"], "nth must be >= 1"),
    ([*IMPAIR, "--delay", ""], "delay needs SECONDS"),
    ([*IMPAIR, "--hold", "until-set=Q"], "unknown flag"),
    ([*LB[:1], "--client-netns", MISSING_NS, "--server-netns", "utcp-cli-s", *LB[5:]], "does not exist"),
    ([*IMPAIR[:1], "--client-netns", "utcp-cli-c", "--server-netns", MISSING_NS], "does not exist"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD_ARGUMENTS, ids=[" ".join(a[:5]) for a, _ in BAD_ARGUMENTS])
def test_a_bad_argument_is_one_line_and_a_failure(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], nothing_starts: None
) -> None:
    code, err = run(argv, capsys)
    assert_one_line(code, err, needle)


NEEDS_PRIVILEGES = [PEER, CONNECT, ["demo"], ["matrix", "--only", NETNS_CELL], LB, TOA, SNAT, IMPAIR]
# `scenario run` selects the same netns cells through its own path.
NEEDS_PRIVILEGES.append(["scenario", "run", "A", "--case", "rewrite", "--backend", "netns"])
IDS = [" ".join(argv[:2]) for argv in NEEDS_PRIVILEGES]


@pytest.mark.parametrize("argv", NEEDS_PRIVILEGES, ids=IDS)
def test_without_root_one_line_and_a_failure(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    nothing_starts: None,
    namespaces_exist: None,
    no_root: None,
) -> None:
    code, err = run(argv, capsys)
    assert_one_line(code, err, "root")


@pytest.mark.parametrize("argv", NEEDS_PRIVILEGES, ids=IDS)
def test_without_dev_net_tun_one_line_and_a_failure(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    nothing_starts: None,
    namespaces_exist: None,
    no_tun: None,
) -> None:
    code, err = run(argv, capsys)
    assert_one_line(code, err, "tun")  # the boxes name their (patched) TUN path


def test_without_root_matrix_list_still_works(
    capsys: pytest.CaptureFixture[str], nothing_starts: None, no_root: None
) -> None:
    # the privilege check is for running cells: listing them needs nothing
    assert main(["matrix", "--list", "--only", NETNS_CELL]) == 0
    assert capsys.readouterr().out.split() == [NETNS_CELL]


def test_connect_refuses_a_timeout_that_is_not_positive(
    capsys: pytest.CaptureFixture[str], nothing_starts: None, namespaces_exist: None
) -> None:
    code, err = run([*CONNECT[:1], "--timeout", "-1", *CONNECT[1:]], capsys)
    assert_one_line(code, err, "--timeout")


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--pcap", "/no/such/dir/x.pcap"],
        ["matrix", "--only", "B/1/client=utcp,server=utcp/linux/sim", "--out", "/proc/no-report-here"],
        ["scenario", "run", "B", "--backend", "sim", "--out", "/proc/no-report-here"],
    ],
    ids=["demo --pcap", "matrix --out", "scenario --out"],
)
def test_an_unusable_output_path_is_one_line_before_anything_runs(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    nothing_starts: None,
    namespaces_exist: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # past the privilege checks, as root would be
    code, err = run(argv, capsys)
    assert_one_line(code, err, "--")


class _BrokenStack:
    """A UtcpStack whose TUN device cannot be opened (EBUSY), as when the namespace vanished."""

    def __init__(self, **_kw: Any) -> None:
        pass

    async def __aenter__(self) -> _BrokenStack:
        raise OSError(errno.EBUSY, "Device or resource busy")

    async def __aexit__(self, *_exc: object) -> None:
        return None


@pytest.mark.parametrize("argv", [PEER, CONNECT], ids=["peer", "connect"])
def test_a_device_failing_at_start_is_one_line(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    namespaces_exist: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(utcp.cli.commands, "environment_problem", lambda: None)
    monkeypatch.setattr(utcp.cli.commands, "UtcpStack", _BrokenStack)
    code, err = run(argv, capsys)
    assert_one_line(code, err, "busy")


def test_ctrl_c_wrapped_by_nurseries_is_a_quiet_exit_130(
    capsys: pytest.CaptureFixture[str], namespaces_exist: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trio raises KeyboardInterrupt in whichever task runs; crossing nurseries wraps it in a group
    def interrupted(*_args: Any, **_kw: Any) -> int:
        raise BaseExceptionGroup("nursery", [BaseExceptionGroup("inner", [KeyboardInterrupt()])])

    monkeypatch.setattr(utcp.cli.commands, "environment_problem", lambda: None)
    monkeypatch.setattr(trio, "run", interrupted)
    assert main(PEER) == 128 + 2
    assert capsys.readouterr().err == ""
