"""The `utcp` command: `peer` (serve on a TUN in a namespace), `connect` (nc over utcp), `policies`,
`demo`, `cleanup` (namespaces left by killed runs), the middleboxes `lb`, `toa`, `snat`, `impair`
(utcp.cli.boxes), and the interop `matrix` and `scenario list|run` (utcp.cli.matrix)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
from collections.abc import Sequence

from utcp.cli.boxes import BOX_COMMANDS, add_box_commands, run_box
from utcp.cli.commands import run_connect, run_peer
from utcp.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    OneLineParser,
    UsageError,
    count_argument,
    interface_argument,
    mtu_argument,
)
from utcp.cli.demo import run_demo
from utcp.cli.logs import configure_logging
from utcp.cli.matrix import add_matrix_commands, run_interop_command
from utcp.io.stack import split_addresses
from utcp.io.tun import write_nap_us
from utcp.lab.netns import Namespace, NamespaceError, prune_stale_namespaces, stale_namespaces
from utcp.policy import PRESETS, Policy, describe_knobs, describe_policies, resolve_policy


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port {value} out of range 1-65535")
    return value


def _address(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IPv4 address {text!r}") from None


def load_policy(spec: str) -> Policy:
    """A preset name or `package.module:Name`, resolved by utcp.policy.resolve_policy."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(
            os.getcwd()
        )  # a user's policy module in the current directory, as `python -m` finds it
    try:
        return resolve_policy(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    common = OneLineParser(add_help=False)
    common.add_argument("--log-json", action="store_true", help="log JSON lines instead of console lines")
    common.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))

    parser = OneLineParser(prog="utcp", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def tun_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--netns", required=True, help="existing network namespace to create the TUN in")
        p.add_argument(
            "--address", type=interface_argument, default="198.18.0.2/24", help="utcp's address/prefix"
        )
        p.add_argument("--peer-address", type=_address, default="198.18.0.1", help="the kernel end's address")
        p.add_argument("--mtu", type=mtu_argument, default=1500)
        p.add_argument(
            "--policy", default="linux", help=f"{'|'.join(PRESETS)}, or package.module:Name (a user policy)"
        )
        p.add_argument("--pcap", help="write what the utcp host sends and receives to this pcap file")
        p.add_argument("--seed", type=int, help="seed ISNs, ports and timestamp offsets")

    peer = sub.add_parser("peer", parents=[common], help="serve on a TUN device inside a namespace")
    tun_options(peer)
    peer.add_argument("--listen", type=_port, required=True, metavar="PORT")
    peer.add_argument("--serve", choices=("echo", "discard", "chargen", "http"), default="echo")
    peer.add_argument(
        "--workers",
        type=count_argument("--workers", "number of workers"),
        metavar="N",
        help="serve with a pool of N handler tasks: further connections wait in the accept queue, and past"
        " its backlog SYNs are dropped (default: a task per connection)",
    )

    connect = sub.add_parser("connect", parents=[common], help="like nc: stdin/stdout over a utcp connection")
    tun_options(connect)
    connect.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the handshake")
    connect.add_argument("host", type=_address)
    connect.add_argument("port", type=_port)

    policies = sub.add_parser("policies", parents=[common], help="list policy presets and their knobs")
    policies.add_argument("--json", action="store_true", help="machine-readable output")

    demo = sub.add_parser("demo", parents=[common], help="a kernel client talks to a utcp server, traced")
    demo.add_argument("--bytes", type=int, default=20000, dest="nbytes", help="size of the HTTP download")
    demo.add_argument("--pcap", help="also write the trace to this pcap file")
    demo.add_argument("--quiet", action="store_true", help="do not print the packets")
    cleanup = sub.add_parser(
        "cleanup", parents=[common], help="delete the namespaces runs killed by a signal left behind"
    )
    cleanup.add_argument("--dry-run", action="store_true", help="only list them")
    add_box_commands(sub)
    add_matrix_commands(sub)
    return parser


def _check_tun_args(args: argparse.Namespace) -> None:
    try:
        split_addresses(args.address, args.peer_address)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    args.policy_obj = load_policy(args.policy)
    if not Namespace(args.netns, owned=False).exists():
        raise UsageError(f"network namespace {args.netns!r} does not exist (create it: ip netns add NAME)")


def show_policies(*, as_json: bool) -> int:
    presets, knobs = describe_policies(), describe_knobs()
    if as_json:
        print(json.dumps({"presets": presets, "knobs": knobs}, indent=2, sort_keys=True))
        return 0
    for preset in presets:
        print(f"{preset['name']:<18} {preset['summary']}")
    names = [preset["name"] for preset in presets]
    print()
    print("knob".ljust(28) + "".join(name.ljust(18) for name in names))
    for knob in knobs:
        values = "".join(str(knob["presets"][name]).ljust(18) for name in names)
        print(f"{knob['name']:<28}{values}")
    return 0


def cleanup(*, dry_run: bool) -> int:
    """utcp-<pid>-<hex> namespaces whose creator is gone and that hold no process (utcp.lab.netns)."""
    if os.geteuid() != 0:
        raise PermissionError("deleting network namespaces needs CAP_SYS_ADMIN")
    names = stale_namespaces() if dry_run else prune_stale_namespaces()
    for name in names:
        print(f"{'stale' if dry_run else 'deleted'} {name}")
    return 0


def _check_environment() -> None:
    """The environment's knobs that devices read when they open: a bad one is a usage error up front,
    not a traceback from the first device."""
    try:
        write_nap_us()  # UTCP_TUN_WRITE_NAP_US
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(json_lines=args.log_json, level=args.log_level)
    try:
        _check_environment()
        if args.command in ("peer", "connect"):
            _check_tun_args(args)
        if args.command == "peer":
            return run_peer(args)
        if args.command == "connect":
            return run_connect(args)
        if args.command in BOX_COMMANDS:
            return run_box(args)
        if args.command in ("matrix", "scenario"):
            return run_interop_command(args)
        if args.command == "policies":
            return show_policies(as_json=args.json)
        if args.command == "cleanup":
            return cleanup(dry_run=args.dry_run)
        return run_demo(args)
    except UsageError as exc:
        print(f"utcp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PermissionError as exc:
        print(f"utcp {args.command}: error: {exc} (run as root)", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, NamespaceError) as exc:
        # the environment failed under a running command (a device, a namespace): one line, not a traceback
        print(f"utcp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BaseExceptionGroup as group:
        # trio delivers Ctrl-C to whichever task runs, so it may arrive wrapped by the nurseries it
        # crossed: still a clean stop, not a traceback.
        if group.split(KeyboardInterrupt)[1] is None:
            return 128 + signal.SIGINT
        raise


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
