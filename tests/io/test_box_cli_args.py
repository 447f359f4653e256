"""`utcp lb|toa|snat|impair` refuse bad arguments with one line and exit 2, a missing environment with
one line and exit 1, and map their options faithfully onto the middlebox configs (no root needed)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from utcp.cli import boxes
from utcp.cli.main import build_parser, main
from utcp.middlebox import (
    DPVS_TCP_TIMEOUTS,
    NF_CONNTRACK_TCP_TIMEOUTS,
    Delay,
    Direction,
    Drop,
    Duplicate,
    FullNat,
    HoldUntil,
    ImpairBox,
    Match,
    MssAdjust,
    PortSelection,
    RealServer,
    Reorder,
    RsToa,
    Rule,
    Scheduler,
    Snat,
    ToaMode,
)
from utcp.wire.packet import TcpFlags

NS = ["--client-netns", "utcp-no-such-ns-c", "--server-netns", "utcp-no-such-ns-s"]
LB = ["lb", *NS, "--vip", "198.18.1.100:80", "--rs", "198.18.2.1:8080", "--laddr", "198.18.2.100"]
SNAT = ["snat", *NS, "--to", "198.18.2.100"]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    try:
        code: object = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["lb", "--vip", "198.18.1.100:80"], "required"),
        (LB[:-2], "--laddr"),  # required
        ([*LB, "--client-addr", "10.0.0.1/24"], "not inside 198.18.0.0/15"),
        ([*LB, "--server-addr", "198.18.2.1"], "needs a prefix"),
        ([*LB, "--server-addr", "198.18.2.1/31"], "<= /30"),
        ([*LB, "--server-addr", "198.18.1.7/24"], "overlap"),
        ([*LB, "--rs", "198.18.2.2"], "not IP:PORT[:WEIGHT]"),
        ([*LB, "--rs", "198.18.2.2:99999"], "out of range"),
        ([*LB, "--rs", "198.18.2.2:80:heavy"], "invalid weight"),
        ([*LB, "--rs", "198.18.2.2:80:-1"], "out of range 0-65535"),
        ([*LB, "--rs", "192.168.1.1:80"], "not in 198.18.0.0/15"),
        ([*LB, "--rs", "198.18.2.1:8080"], "given twice"),
        ([*LB, "--rs", "198.18.1.5:8080"], "client side"),
        (
            ["lb", *NS, "--vip", "198.18.1.100:80", "--rs", "198.18.2.1:80:0", "--laddr", "198.18.2.100"],
            "weight 0",
        ),
        (["lb", *NS, "--vip", "198.18.1.100", "--rs", "198.18.2.1:80", "--laddr", "198.18.2.100"], "IP:PORT"),
        (
            ["lb", *NS, "--vip", "8.8.8.8:53", "--rs", "198.18.2.1:80", "--laddr", "198.18.2.100"],
            "not in 198.18",
        ),
        (
            ["lb", *NS, "--vip", "198.18.5.1:80", "--rs", "198.18.2.1:80", "--laddr", "198.18.2.100"],
            "neither",
        ),
        (
            ["lb", *NS, "--vip", "198.18.1.1:80", "--rs", "198.18.2.1:80", "--laddr", "198.18.2.100"],
            "kernel's own",
        ),
        (
            ["lb", *NS, "--vip", "198.18.1.100:80", "--rs", "198.18.2.1:80", "--laddr", "198.18.2.1"],
            "kernel's own",
        ),
        (
            ["lb", *NS, "--vip", "198.18.1.100:80", "--rs", "198.18.2.1:80", "--laddr", "198.18.1.100"],
            "also a",
        ),
        (
            ["lb", *NS, "--vip", "198.18.1.255:80", "--rs", "198.18.2.1:80", "--laddr", "198.18.2.9"],
            "broadcast",
        ),
        ([*LB, "--lport-range", "9000-8000"], "empty port range"),
        ([*LB, "--lport-range", "9000"], "LOW-HIGH"),
        ([*LB, "--mss-clamp", "100"], "MSS 100"),
        ([*LB, "--mss-clamp", "1400", "--no-mss-adjust"], "not allowed with"),
        ([*LB, "--mtu", "70000"], "MTU 70000"),
        ([*LB, "--stats-interval", "-1"], "out of range"),
        ([*LB, "--stats-interval", "nan"], "out of range"),
        ([*LB, "--stats-interval", "0.001"], "too short"),
        ([*LB, "--status-file", "/nonexistent-dir/status.json"], "does not exist"),
        (["lb", "--client-netns", "same", "--server-netns", "same", *LB[5:]], "two different"),
        (LB, "utcp-no-such-ns-c' does not exist"),
        (["toa", *NS, "--mode", "magic"], "invalid choice"),
        (["toa", *NS, "--strip-option"], "needs --mode rewrite"),
        (["toa", *NS], "does not exist"),
        (["snat", *NS], "--to"),
        ([*SNAT, "--ports", "0-100"], "out of range"),
        ([*SNAT, "--inside", "10.0.0.0/8"], "not inside"),
        (["snat", *NS, "--to", "198.18.1.50"], "inside the masqueraded network"),
        (["snat", *NS, "--to", "198.18.9.9"], "neither"),
        (SNAT, "does not exist"),
        (["impair", *NS, "--rule", "explode"], "unknown action"),
        (["impair", *NS, "--rule", "drop dir=sideways"], "unknown direction"),
        (["impair", *NS, "--rule", "drop flags=SX"], "unknown flag"),
        (["impair", *NS, "--rule", "drop nth=0"], "nth must be >= 1"),
        (["impair", *NS, "--rule", "drop colour=red"], "unknown key"),
        (["impair", *NS, "--rule", "drop dir=c2s payload"], "not KEY=VALUE"),
        (["impair", *NS, "--rule", "drop 3"], "takes no argument"),
        (["impair", *NS, "--rule", "delay"], "needs SECONDS"),
        (["impair", *NS, "--delay", "soon"], "invalid number of seconds"),
        (["impair", *NS, "--dup", "0"], "copies must be >= 1"),
        (["impair", *NS, "--rule", "drop until-set=R"], "hold only"),
        (["impair", *NS, "--rule", "drop max-hold=1"], "reorder and hold only"),
        (["impair", *NS, "--rule", "drop dir=c2s dir=s2c"], "given twice"),
        (["impair", *NS, "--drop", "name=a", "--drop", "name=a"], "unique"),
        (["impair", *NS, "--drop", "dir=c2s"], "does not exist"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(argv, capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err
    assert "Traceback" not in err


def test_prefix_inside_the_lab_range_is_accepted_and_then_checked_for_overlap(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 198.18.1.7/16 is 198.18.0.0/16: inside 198.18.0.0/15, so only the overlap check refuses it.
    code, err = _run([*LB, "--server-addr", "198.18.1.7/16"], capsys)
    assert code == 2
    assert "overlap" in err


@pytest.mark.parametrize(
    ("problem", "needle"),
    [("uid", "needs root"), ("tun", "no-tun is missing")],
)
def test_missing_environment_gives_one_line_and_exit_1(
    problem: str,
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(boxes, "_check_namespaces", lambda args: None)  # pretend both exist
    if problem == "uid":
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    else:
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        monkeypatch.setattr(boxes, "TUN_PATH", tmp_path / "no-tun")
    code, err = _run(SNAT, capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_the_entry_point_exits_2_with_one_line_for_an_outside_address() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "utcp.cli.main", "snat", *NS, "--to", "10.1.2.3"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "utcp snat: error: argument --to: 10.1.2.3 is not in 198.18.0.0/15 (only lab addresses are allowed)"
    ]
    assert proc.stdout == ""


def _build(argv: list[str]) -> tuple[argparse.Namespace, object]:
    args = build_parser().parse_args(argv)
    boxes._check_common(args)
    return args, boxes._BUILDERS[args.command](args)


def test_lb_options_map_onto_the_fullnat_config() -> None:
    _, box = _build(
        [*LB[:-2], "--laddr", "198.18.2.100", "--laddr", "198.18.2.101", "--rs", "198.18.2.2:8080:3",
         "--lport-range", "20000-20999", "--no-toa", "--keep-ts", "--mss-clamp", "1400", "--no-expire-rst",
         "--decrement-ttl", "--drop-unknown", "--timeouts", "nf", "--mtu", "1400"]
    )  # fmt: skip
    assert isinstance(box, FullNat)
    config = box.config
    (svc,) = config.services
    assert (svc.vip, svc.vport) == ("198.18.1.100", 80)
    assert svc.real_servers == (RealServer("198.18.2.1", 8080, 1), RealServer("198.18.2.2", 8080, 3))
    assert svc.scheduler is Scheduler.WRR  # a weight was given
    assert config.local_addresses == ("198.18.2.100", "198.18.2.101")
    assert config.local_port_range == (20000, 20999)
    assert not config.insert_toa and not config.remove_timestamps
    assert config.mss_adjust is MssAdjust.CLAMP and config.mss_clamp == 1400
    assert not config.rst_on_expire and config.decrement_ttl and not config.pass_unknown
    assert dict(config.timeouts) == dict(NF_CONNTRACK_TCP_TIMEOUTS)
    assert config.mtu == 1400


def test_lb_defaults_follow_the_fullnat_defaults() -> None:
    _, box = _build(LB)
    assert isinstance(box, FullNat)
    config = box.config
    assert config.services[0].scheduler is Scheduler.RR
    assert config.insert_toa and config.remove_timestamps and config.rst_on_expire
    assert config.mss_adjust is MssAdjust.SUBTRACT_TOA
    assert dict(config.timeouts) == dict(DPVS_TCP_TIMEOUTS)
    _, box = _build([*LB, "--no-mss-adjust", "--scheduler", "wrr"])
    assert isinstance(box, FullNat)
    assert box.config.mss_adjust is MssAdjust.OFF
    assert box.config.services[0].scheduler is Scheduler.WRR


def test_snat_and_toa_options_map_onto_their_configs() -> None:
    _, box = _build(
        [*SNAT, "--ports", "2000-2999", "--random", "--sequential", "--no-ttl-decrement", "--seed", "7"]
    )
    assert isinstance(box, Snat)
    config = box.config
    assert config.outside_address == "198.18.2.100"
    assert config.inside_networks == ("198.18.1.0/24",)
    assert config.port_range == (2000, 2999)
    assert not config.preserve_port and config.port_selection is PortSelection.SEQUENTIAL
    assert not config.decrement_ttl and config.seed == 7
    _, box = _build(SNAT)
    assert isinstance(box, Snat)
    assert box.config.preserve_port and box.config.port_selection is PortSelection.RANDOM
    _, box = _build(["toa", *NS, "--mode", "rewrite", "--strip-option"])
    assert isinstance(box, RsToa)
    assert box.config.mode is ToaMode.REWRITE and box.config.strip_option


def test_impair_rules_keep_their_order_across_options() -> None:
    _, box = _build(["impair", *NS, "--drop", "dir=c2s flags=S nth=1", "--rule", "delay 0.25 dir=s2c",
                        "--dup", "2 payload=yes", "--reorder", "3 set=P clear=F max-hold=1.5"])  # fmt: skip
    assert isinstance(box, ImpairBox)
    assert box.rules == (
        Rule(Match(direction=Direction.TO_SERVER, flags=TcpFlags.SYN), Drop(), nth=1),
        Rule(Match(direction=Direction.TO_CLIENT), Delay(0.25)),
        Rule(Match(has_payload=True), Duplicate(2)),
        Rule(Match(flags_set=TcpFlags.PSH, flags_clear=TcpFlags.FIN), Reorder(3, max_hold=1.5)),
    )


def test_hold_rule_carries_its_release_match() -> None:
    rule = boxes.parse_rule(
        "hold dir=c2s flags=. payload=no nth=1,3 until-dir=c2s until-set=R max-hold=2 name=third-ack"
    )
    assert rule == Rule(
        Match(direction=Direction.TO_SERVER, flags=TcpFlags.ACK, has_payload=False),
        HoldUntil(Match(direction=Direction.TO_SERVER, flags_set=TcpFlags.RST), max_hold=2.0),
        nth=(1, 3),
        name="third-ack",
    )
    assert boxes.parse_rule("drop flags=none").match.flags == TcpFlags.NONE
    assert boxes.parse_rule("drop flags=SA").match.flags == TcpFlags.SYN | TcpFlags.ACK
    assert boxes.parse_rule("drop flags=FPUEW").match.flags == (
        TcpFlags.FIN | TcpFlags.PSH | TcpFlags.URG | TcpFlags.ECE | TcpFlags.CWR
    )


def test_device_failures_while_running_are_recognised_inside_exception_groups() -> None:
    gone = OSError(19, "No such device")
    assert boxes._environment_error(gone) is gone
    assert boxes._environment_error(ExceptionGroup("tasks", [gone, OSError(9, "bad fd")])) is gone
    # A bug is not an environment problem: it must surface as itself.
    assert boxes._environment_error(ExceptionGroup("tasks", [gone, KeyError("x")])) is None
    assert boxes._environment_error(ValueError("x")) is None
