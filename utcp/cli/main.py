"""The `utcp` command: `peer` (serve on a TUN in a namespace), `connect` (nc over utcp), `demo`."""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from utcp.cli.commands import run_connect, run_peer
from utcp.cli.common import EXIT_FAILED, EXIT_USAGE, UsageError
from utcp.cli.demo import run_demo
from utcp.cli.logs import configure_logging
from utcp.io.stack import split_addresses
from utcp.lab.netns import Namespace


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port {value} out of range 1-65535")
    return value


def _interface(text: str) -> str:
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IPv4 address/prefix {text!r}") from None
    if "/" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} needs a prefix length, e.g. {text}/24")
    return str(iface)


def _address(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IPv4 address {text!r}") from None


def _mtu(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid MTU {text!r}") from None
    if not 576 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"MTU {value} out of range 576-65535")
    return value


POLICY_PRESETS = {"linux": "utcp.policy:LinuxPolicy"}


def load_policy(name: str) -> Any:
    """`linux` or `package.module:Name` (a class is instantiated without arguments)."""
    spec = POLICY_PRESETS.get(name, name)
    if ":" not in spec:
        known = ", ".join(sorted(POLICY_PRESETS))
        raise UsageError(f"unknown policy {name!r} (known: {known}; or give package.module:Name)")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"policy {name!r}: cannot import {module_name}: {exc}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise UsageError(f"policy {name!r}: {module_name} has no {attr!r}") from None
    return obj() if isinstance(obj, type) else obj


def build_parser() -> argparse.ArgumentParser:
    common = _OneLineParser(add_help=False)
    common.add_argument("--log-json", action="store_true", help="log JSON lines instead of console lines")
    common.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))

    parser = _OneLineParser(prog="utcp", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def tun_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--netns", required=True, help="existing network namespace to create the TUN in")
        p.add_argument("--address", type=_interface, default="198.18.0.2/24", help="utcp's address/prefix")
        p.add_argument("--peer-address", type=_address, default="198.18.0.1", help="the kernel end's address")
        p.add_argument("--mtu", type=_mtu, default=1500)
        p.add_argument("--policy", default="linux", help="linux, or package.module:Name")
        p.add_argument("--pcap", help="write what the utcp host sends and receives to this pcap file")
        p.add_argument("--seed", type=int, help="seed ISNs, ports and timestamp offsets")

    peer = sub.add_parser("peer", parents=[common], help="serve on a TUN device inside a namespace")
    tun_options(peer)
    peer.add_argument("--listen", type=_port, required=True, metavar="PORT")
    peer.add_argument("--serve", choices=("echo", "discard", "chargen", "http"), default="echo")

    connect = sub.add_parser("connect", parents=[common], help="like nc: stdin/stdout over a utcp connection")
    tun_options(connect)
    connect.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the handshake")
    connect.add_argument("host", type=_address)
    connect.add_argument("port", type=_port)

    demo = sub.add_parser("demo", parents=[common], help="a kernel client talks to a utcp server, traced")
    demo.add_argument("--bytes", type=int, default=20000, dest="nbytes", help="size of the HTTP download")
    demo.add_argument("--pcap", help="also write the trace to this pcap file")
    demo.add_argument("--quiet", action="store_true", help="do not print the packets")
    return parser


def _check_tun_args(args: argparse.Namespace) -> None:
    try:
        split_addresses(args.address, args.peer_address)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    args.policy_obj = load_policy(args.policy)
    if not Namespace(args.netns, owned=False).exists():
        raise UsageError(f"network namespace {args.netns!r} does not exist (create it: ip netns add NAME)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(json_lines=args.log_json, level=args.log_level)
    try:
        if args.command in ("peer", "connect"):
            _check_tun_args(args)
        if args.command == "peer":
            return run_peer(args)
        if args.command == "connect":
            return run_connect(args)
        return run_demo(args)
    except UsageError as exc:
        print(f"utcp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PermissionError as exc:
        print(f"utcp {args.command}: error: {exc} (run as root)", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
