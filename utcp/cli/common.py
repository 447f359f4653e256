"""Pieces the `utcp` subcommands share."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import structlog
import trio

from utcp.cli.services import Handler
from utcp.io.api import UtcpStream

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """A bad argument found after parsing (e.g. a namespace that does not exist): exit status 2."""


def guarded(service: Handler) -> Handler:
    """Wrap a per-connection service so one connection's failure is logged, never fatal to a server."""

    async def handle(stream: trio.abc.HalfCloseableStream) -> None:
        log = structlog.get_logger("utcp.cli")
        if isinstance(stream, UtcpStream):
            log = log.bind(remote="{}:{}".format(*stream.getpeername()))
        try:
            await service(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("connection ended abnormally", error=str(exc))
        finally:
            await stream.aclose()

    return handle


def add_log_options(parser: argparse.ArgumentParser, *, level: str = "info") -> None:
    """--log-json and --log-level on one command. Not shared through `parents=`: argparse shares a
    parent's Action objects, so one command's set_defaults would change every command's default."""
    parser.add_argument("--log-json", action="store_true", help="log JSON lines instead of console lines")
    parser.add_argument("--log-level", default=level, choices=("debug", "info", "warning", "error"))


def count_argument(option: str, what: str, maximum: int | None = None) -> Callable[[str], int]:
    """argparse type for an option taking a count of at least 1 (`--jobs`, `--workers`) and at most
    `maximum` if given; `what` names the count in the error for text that is not a number."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{option} must be >= 1, not {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{option} must be <= {maximum}, not {value}")
        return value

    return parse


def mtu_argument(text: str) -> int:
    """argparse type for --mtu: an int in 576..65535 (RFC 791's minimum datagram every host accepts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid MTU {text!r}") from None
    if not 576 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"MTU {value} out of range 576-65535")
    return value


def check_output_path(option: str, path: str | Path | None) -> None:
    """A file the command will write (--pcap, ...): its directory must exist, or exit 2 before starting."""
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise UsageError(f"{option}: directory of {str(path)!r} does not exist")


def interface_argument(text: str) -> str:
    """argparse type for an interface address with its prefix ("198.18.0.2/24")."""
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IPv4 address/prefix {text!r}") from None
    if "/" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} needs a prefix length, e.g. {text}/24")
    return str(iface)
