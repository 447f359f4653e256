"""`utcp lb`, `utcp toa`, `utcp snat`, `utcp impair`: one middlebox between two TUN devices.

Each command creates a TUN device in each of two existing namespaces (`--client-netns`, `--server-netns`),
gives the kernel there an address (`--client-addr`, `--server-addr`: different subnets inside
198.18.0.0/15), adds a route to the far subnet through the device, and runs the box between the two
devices (utcp.io.boxrun) until SIGINT or SIGTERM; then the devices are removed and it exits 0.
What the client side sends travels "c2s" (Direction.TO_SERVER), what the server side sends "s2c".

    utcp lb --client-netns C --server-netns S --vip 198.18.1.100:80 \\
            --rs 198.18.2.1:8080[:WEIGHT] [--rs ...] --laddr 198.18.2.100 [--laddr ...] \\
            [--scheduler rr|wrr] [--lport-range 5000-65000] [--no-toa] [--keep-ts] \\
            [--mss-clamp N | --no-mss-adjust] [--no-expire-rst] [--decrement-ttl] [--drop-unknown] \\
            [--timeouts dpvs|nf] [--seed N]
        FullNAT (utcp.middlebox.fullnat.FullNat). The VIP and local addresses must lie in the client or
        server subnet (so the kernels route them into the devices) and differ from the kernels' own.
        --scheduler defaults to wrr when any --rs has a weight, else rr.
    utcp toa --client-netns LB --server-netns RS --mode getpeername|rewrite [--strip-option]
        RS-side TOA (utcp.middlebox.toa.RsToa); the client side is the LB's, the server side the RS's.
    utcp snat --client-netns IN --server-netns OUT --to 198.18.2.100 [--ports LO-HI] [--random]
              [--sequential] [--inside NET ...] [--no-ttl-decrement] [--seed N]
        Masquerade (utcp.middlebox.snat.Snat) of --inside (default: the client subnet) to --to.
        --random (also --random-fully): never keep the source port (NF_NAT_RANGE_PROTO_RANDOM_ALL);
        --sequential: search the range from a rover (pre-5.x kernels) instead of a random offset.
    utcp impair --client-netns C --server-netns S [--rule RULE ...]
        The rule box (utcp.middlebox.impair.ImpairBox). RULE is `ACTION [ARG] [KEY=VALUE ...]`:
          drop | delay SECONDS | dup [COPIES] | reorder [AFTER] | hold
          dir=c2s|s2c   flags=FLAGS (exactly)   set=FLAGS (at least)   clear=FLAGS (none of)
          payload=yes|no   nth=N[,N...] (act on the N-th match, 1-based)   name=NAME
          max-hold=SECONDS (reorder, hold)   until-dir= until-flags= until-set= until-clear=
          until-payload= (hold: the packet whose passing releases the held one)
        FLAGS are tcpdump letters: F S R P . (or A) U E W (or C), or `none`. Shortcuts: --drop, --delay,
        --dup, --reorder, --hold X mean --rule 'ACTION X'. Example (the RST overtakes the third ACK):
          --hold 'dir=c2s flags=. payload=no nth=1 until-dir=c2s until-set=R max-hold=2'

Common options: --mtu, --stats-interval S (a `stats` log line every S seconds, 0: none), --status-file
PATH (JSON: counters and conntrack entries, rewritten every S seconds, or every second with S = 0, and at
exit), --pcap PATH (what the box forwarded), --no-fast-path (FullNAT: parse and rebuild every packet).
A line `running COMMAND client=DEV@NS server=DEV@NS` on stdout says the devices are up.
Bad arguments give one line on stderr and exit 2; no root or no /dev/net/tun, exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import structlog
import trio

from utcp.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_log_options,
    interface_argument,
    mtu_argument,
)
from utcp.io.boxrun import BoxRuntime, box_between_namespaces
from utcp.lab.netns import Namespace, NamespaceError
from utcp.middlebox import (
    DPVS_TCP_TIMEOUTS,
    NF_CONNTRACK_TCP_TIMEOUTS,
    Delay,
    Direction,
    Drop,
    Duplicate,
    FullNat,
    FullNatConfig,
    HoldUntil,
    ImpairBox,
    Match,
    Middlebox,
    MssAdjust,
    PortSelection,
    RealServer,
    Reorder,
    RsToa,
    RsToaConfig,
    Rule,
    Scheduler,
    Snat,
    SnatConfig,
    ToaMode,
    VirtualService,
)
from utcp.wire.packet import TcpFlags

__all__ = ["BOX_COMMANDS", "LAB_NETWORK", "add_box_commands", "parse_rule", "run_box"]

BOX_COMMANDS = ("lb", "toa", "snat", "impair")
LAB_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544 benchmarking range: the network rule
TUN_PATH = Path("/dev/net/tun")
TIMEOUTS = {"dpvs": DPVS_TCP_TIMEOUTS, "nf": NF_CONNTRACK_TCP_TIMEOUTS}

# tcpdump's letters (print-tcp.c tcp_flag_values), plus A and C as people also write them.
_FLAG_LETTERS = {
    "F": TcpFlags.FIN,
    "S": TcpFlags.SYN,
    "R": TcpFlags.RST,
    "P": TcpFlags.PSH,
    ".": TcpFlags.ACK,
    "A": TcpFlags.ACK,
    "U": TcpFlags.URG,
    "E": TcpFlags.ECE,
    "W": TcpFlags.CWR,
    "C": TcpFlags.CWR,
}
_DIRECTIONS = {
    "c2s": Direction.TO_SERVER,
    "to_server": Direction.TO_SERVER,
    "s2c": Direction.TO_CLIENT,
    "to_client": Direction.TO_CLIENT,
}


# --- argument types (argparse turns ArgumentTypeError into one line, exit 2) ----------------------------


def _lab_address(text: str) -> str:
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IPv4 address {text!r}") from None
    if address not in LAB_NETWORK:
        raise argparse.ArgumentTypeError(f"{text} is not in {LAB_NETWORK} (only lab addresses are allowed)")
    return str(address)


def _lab_interface(text: str) -> str:
    iface = ipaddress.IPv4Interface(interface_argument(text))
    if not iface.network.subnet_of(LAB_NETWORK):
        raise argparse.ArgumentTypeError(
            f"{text} is not inside {LAB_NETWORK} (only lab addresses are allowed)"
        )
    if iface.network.prefixlen > 30:
        raise argparse.ArgumentTypeError(
            f"{text}: the prefix must leave room for the box's addresses (<= /30)"
        )
    return str(iface)


def _lab_network(text: str) -> str:
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IPv4 network {text!r}") from None
    if not network.subnet_of(LAB_NETWORK):
        raise argparse.ArgumentTypeError(f"{text} is not inside {LAB_NETWORK}")
    return str(network)


def _port_number(text: str, what: str = "port") -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{what} {value} out of range 1-65535")
    return value


def _endpoint(text: str) -> tuple[str, int]:
    """IP:PORT."""
    address, sep, port = text.rpartition(":")
    if not sep or not address:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP:PORT")
    return _lab_address(address), _port_number(port)


def _real_server(text: str) -> tuple[RealServer, bool]:
    """IP:PORT[:WEIGHT]; the flag says whether a weight was given."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP:PORT[:WEIGHT]")
    address, port = _lab_address(parts[0]), _port_number(parts[1])
    if len(parts) == 2:
        return RealServer(address, port), False
    try:
        weight = int(parts[2])
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid weight {parts[2]!r} in {text!r}") from None
    if not 0 <= weight <= 65535:  # ip_vs: IP_VS_DEST_WEIGHT range (ipvsadm -w 0..65535)
        raise argparse.ArgumentTypeError(f"weight {weight} out of range 0-65535 in {text!r}")
    return RealServer(address, port, weight), True


def _port_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW-HIGH")
    low, high = _port_number(lo), _port_number(hi)
    if low > high:
        raise argparse.ArgumentTypeError(f"empty port range {text!r}")
    return low, high


def _mss(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid MSS {text!r}") from None
    if not 536 <= value <= 65495:  # RFC 9293 3.7.1 default 536; 65495 is what Linux lo advertises
        raise argparse.ArgumentTypeError(f"MSS {value} out of range 536-65495")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds {text!r}") from None
    if not 0 <= value < 86400:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} seconds out of range 0-86400")
    return value


def _interval(text: str) -> float:
    value = _seconds(text)
    if 0 < value < 0.05:
        raise argparse.ArgumentTypeError(f"interval {text} too short (0 or at least 0.05 seconds)")
    return value


# --- the impairment rule syntax ------------------------------------------------------------------------


def _flags(text: str) -> TcpFlags:
    if text.lower() == "none":
        return TcpFlags.NONE
    flags = TcpFlags.NONE
    for letter in text:
        flag = _FLAG_LETTERS.get(letter.upper() if letter != "." else letter)
        if flag is None:
            raise ValueError(f"unknown flag {letter!r} in {text!r} (use F S R P . U E W)")
        flags |= flag
    return flags


def _yes_no(text: str) -> bool:
    if text.lower() in ("yes", "y", "true", "1"):
        return True
    if text.lower() in ("no", "n", "false", "0"):
        return False
    raise ValueError(f"expected yes or no, not {text!r}")


def _direction(text: str) -> Direction:
    try:
        return _DIRECTIONS[text.lower()]
    except KeyError:
        raise ValueError(f"unknown direction {text!r} (c2s or s2c)") from None


def _match(keys: dict[str, str]) -> Match:
    return Match(
        direction=_direction(keys["dir"]) if "dir" in keys else None,
        flags=_flags(keys["flags"]) if "flags" in keys else None,
        flags_set=_flags(keys["set"]) if "set" in keys else TcpFlags.NONE,
        flags_clear=_flags(keys["clear"]) if "clear" in keys else TcpFlags.NONE,
        has_payload=_yes_no(keys["payload"]) if "payload" in keys else None,
    )


_MATCH_KEYS = ("dir", "flags", "set", "clear", "payload")
_RULE_KEYS = {*_MATCH_KEYS, "nth", "name", "max-hold", *(f"until-{k}" for k in _MATCH_KEYS)}


def _count(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"invalid {what} {text!r}") from None
    if value < 1:
        raise ValueError(f"{what} must be >= 1")
    return value


def parse_rule(text: str) -> Rule:
    """`ACTION [ARG] [KEY=VALUE ...]` (see the module docstring) -> an ImpairBox `Rule`."""
    words = text.split()
    if not words:
        raise ValueError("empty rule")
    action_name, rest = words[0].lower(), words[1:]
    arg: str | None = None
    if rest and "=" not in rest[0]:
        arg, rest = rest[0], rest[1:]
    keys: dict[str, str] = {}
    for word in rest:
        key, sep, value = word.partition("=")
        if not sep or not value:
            raise ValueError(f"{word!r} is not KEY=VALUE")
        if key not in _RULE_KEYS:
            raise ValueError(f"unknown key {key!r} (one of {', '.join(sorted(_RULE_KEYS))})")
        if key in keys:
            raise ValueError(f"{key} given twice")
        keys[key] = value
    max_hold = _seconds_value(keys["max-hold"]) if "max-hold" in keys else None
    if max_hold is not None and action_name not in ("reorder", "hold"):
        raise ValueError("max-hold applies to reorder and hold only")
    if any(k.startswith("until-") for k in keys) and action_name != "hold":
        raise ValueError("until-* keys apply to hold only")
    action: Drop | Delay | Duplicate | Reorder | HoldUntil
    if action_name == "drop":
        _no_arg(arg, "drop")
        action = Drop()
    elif action_name == "delay":
        if arg is None:
            raise ValueError("delay needs SECONDS, e.g. 'delay 0.2'")
        action = Delay(_seconds_value(arg))
    elif action_name in ("dup", "duplicate"):
        action = Duplicate(1 if arg is None else _count(arg, "copies"))
    elif action_name == "reorder":
        action = Reorder(1 if arg is None else _count(arg, "reorder distance"), max_hold=max_hold)
    elif action_name == "hold":
        _no_arg(arg, "hold")
        release = _match({k.removeprefix("until-"): v for k, v in keys.items() if k.startswith("until-")})
        action = HoldUntil(release, max_hold=max_hold)
    else:
        raise ValueError(f"unknown action {action_name!r} (drop, delay, dup, reorder, hold)")
    nth: tuple[int, ...] | None = None
    if "nth" in keys:
        nth = tuple(_count(part, "nth") for part in keys["nth"].split(","))
    return Rule(
        match=_match(keys),
        action=action,
        nth=nth[0] if nth is not None and len(nth) == 1 else nth,
        name=keys.get("name", ""),
    )


def _no_arg(arg: str | None, action: str) -> None:
    if arg is not None:
        raise ValueError(f"{action} takes no argument (got {arg!r})")


def _seconds_value(text: str) -> float:
    try:
        return _seconds(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None


def _rule_type(prefix: str) -> Callable[[str], Rule]:
    def parse(text: str) -> Rule:
        try:
            return parse_rule(f"{prefix} {text}".strip())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad rule {f'{prefix} {text}'.strip()!r}: {exc}") from None

    parse.__name__ = "rule"
    return parse


# --- the parsers ---------------------------------------------------------------------------------------


def add_box_commands(sub: Any) -> None:
    """Register lb, toa, snat and impair on the `utcp` subparsers (`sub`)."""

    def box_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        add_log_options(p)
        p.add_argument(
            "--client-netns", required=True, metavar="NS", help="existing namespace of the clients"
        )
        p.add_argument(
            "--server-netns", required=True, metavar="NS", help="existing namespace of the servers"
        )
        p.add_argument(
            "--client-addr",
            type=_lab_interface,
            default="198.18.1.1/24",
            metavar="A/P",
            help="the client kernel's address on its device (default 198.18.1.1/24)",
        )
        p.add_argument(
            "--server-addr",
            type=_lab_interface,
            default="198.18.2.1/24",
            metavar="A/P",
            help="the server kernel's address on its device (default 198.18.2.1/24)",
        )
        p.add_argument("--mtu", type=mtu_argument, default=1500)
        p.add_argument(
            "--stats-interval",
            type=_interval,
            default=10.0,
            metavar="S",
            help="log a stats line every S seconds (0: only at exit)",
        )
        p.add_argument("--status-file", metavar="PATH", help="keep JSON status (counters, conntrack) here")
        p.add_argument("--pcap", metavar="PATH", help="write what the box forwards to this pcap file")
        p.add_argument(
            "--no-fast-path",
            action="store_true",
            help="parse and rebuild every packet (FullNAT otherwise rewrites bytes in place)",
        )
        return p

    lb = box_parser("lb", "FullNAT load balancer (LVS) with TOA between two namespaces")
    lb.add_argument("--vip", type=_endpoint, required=True, metavar="IP:PORT", help="the virtual service")
    lb.add_argument(
        "--rs",
        type=_real_server,
        action="append",
        required=True,
        metavar="IP:PORT[:WEIGHT]",
        help="a real server (repeat for more)",
    )
    lb.add_argument(
        "--laddr",
        type=_lab_address,
        action="append",
        required=True,
        metavar="IP",
        help="a local (source) address towards the real servers (repeat for a pool)",
    )
    lb.add_argument(
        "--scheduler",
        choices=[s.value for s in Scheduler],
        help="rr or wrr (default: wrr when a weight is given, else rr)",
    )
    lb.add_argument("--lport-range", type=_port_range, default=(5000, 65000), metavar="LO-HI")
    lb.add_argument(
        "--toa",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="insert TOA (client address) towards the real server (default on)",
    )
    lb.add_argument("--keep-ts", action="store_true", help="leave the SYN's timestamp option alone")
    mss = lb.add_mutually_exclusive_group()
    mss.add_argument("--mss-clamp", type=_mss, metavar="N", help="clamp the SYN-ACK's MSS to N")
    mss.add_argument("--no-mss-adjust", action="store_true", help="leave the SYN-ACK's MSS alone")
    lb.add_argument(
        "--expire-rst",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="RST both sides when an ESTABLISHED entry expires (default on)",
    )
    lb.add_argument("--decrement-ttl", action="store_true", help="decrement the TTL (DPVS xmit_ttl)")
    lb.add_argument("--drop-unknown", action="store_true", help="drop packets for neither VIP nor laddr")
    lb.add_argument("--timeouts", choices=sorted(TIMEOUTS), default="dpvs", help="conntrack timeout table")
    lb.add_argument("--seed", type=int, help="seed the ISN generator")

    toa = box_parser("toa", "RS-side TOA (getpeername or rewrite mode) in front of a real server")
    toa.add_argument("--mode", choices=[m.value for m in ToaMode], default=ToaMode.GETPEERNAME.value)
    toa.add_argument("--strip-option", action="store_true", help="rewrite mode: remove the TOA option")
    toa.add_argument("--timeouts", choices=sorted(TIMEOUTS), default="nf", help="conntrack timeout table")

    snat = box_parser("snat", "SNAT / masquerade between two namespaces")
    snat.add_argument("--to", type=_lab_address, required=True, metavar="IP", help="the outside address")
    snat.add_argument("--ports", type=_port_range, metavar="LO-HI", help="port range (default: Linux's)")
    snat.add_argument(
        "--random",
        "--random-fully",
        action="store_true",
        dest="random",
        help="never keep the source port (NF_NAT_RANGE_PROTO_RANDOM_ALL)",
    )
    snat.add_argument(
        "--sequential",
        action="store_true",
        help="search ports from a rover (old kernels) instead of a random offset",
    )
    snat.add_argument(
        "--inside",
        type=_lab_network,
        action="append",
        metavar="NET",
        help="masquerade only these sources (default: the client subnet)",
    )
    snat.add_argument("--no-ttl-decrement", action="store_true", help="leave the TTL alone")
    snat.add_argument("--timeouts", choices=sorted(TIMEOUTS), default="nf", help="conntrack timeout table")
    snat.add_argument("--seed", type=int, help="seed the random port search")

    impair = box_parser("impair", "rule-driven impairment box (drop, delay, dup, reorder, hold)")
    impair.set_defaults(rules=[])
    impair.add_argument(
        "--rule",
        type=_rule_type(""),
        action="append",
        dest="rules",
        metavar="RULE",
        help="ACTION [ARG] [KEY=VALUE ...], e.g. 'drop dir=c2s flags=. nth=3'",
    )
    for action in ("drop", "delay", "dup", "reorder", "hold"):
        impair.add_argument(
            f"--{action}",
            type=_rule_type(action),
            action="append",
            dest="rules",
            metavar="SPEC",
            help=f"same as --rule '{action} SPEC'",
        )


# --- checks after parsing --------------------------------------------------------------------------------


def _subnets(args: argparse.Namespace) -> tuple[ipaddress.IPv4Interface, ipaddress.IPv4Interface]:
    client = ipaddress.IPv4Interface(args.client_addr)
    server = ipaddress.IPv4Interface(args.server_addr)
    if client.network.overlaps(server.network):
        raise UsageError(f"--client-addr {client} and --server-addr {server} overlap: use different subnets")
    return client, server


def _box_address(
    what: str, address: str, client: ipaddress.IPv4Interface, server: ipaddress.IPv4Interface
) -> None:
    """An address the box answers for: routed into a device by a kernel, and not a kernel's own."""
    ip = ipaddress.IPv4Address(address)
    if ip in (client.ip, server.ip):
        raise UsageError(f"{what} {address} is a kernel's own address; pick another address of its subnet")
    if ip not in client.network and ip not in server.network:
        raise UsageError(f"{what} {address} is in neither {client.network} nor {server.network}")
    for iface in (client, server):
        if ip in (iface.network.network_address, iface.network.broadcast_address):
            raise UsageError(f"{what} {address} is the network or broadcast address of {iface.network}")


def _check_common(args: argparse.Namespace) -> None:
    _subnets(args)
    if args.client_netns == args.server_netns:
        raise UsageError("--client-netns and --server-netns must be two different namespaces")
    for option, name in (("--client-netns", args.client_netns), ("--server-netns", args.server_netns)):
        if "/" in name or name in ("", ".", ".."):
            raise UsageError(f"{option} {name!r} is not a namespace name")
    for option, path in (("--status-file", args.status_file), ("--pcap", args.pcap)):
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise UsageError(f"{option}: directory of {path!r} does not exist")


def _check_namespaces(args: argparse.Namespace) -> None:
    for option, name in (("--client-netns", args.client_netns), ("--server-netns", args.server_netns)):
        if not Namespace(name, owned=False).exists():
            raise UsageError(f"{option}: network namespace {name!r} does not exist (ip netns add {name})")


def _build_lb(args: argparse.Namespace) -> FullNat:
    client, server = _subnets(args)
    vip, vport = args.vip
    _box_address("--vip", vip, client, server)
    for laddr in args.laddr:
        _box_address("--laddr", laddr, client, server)
    if vip in args.laddr:
        raise UsageError(f"--vip {vip} is also a --laddr")
    if len(set(args.laddr)) != len(args.laddr):
        raise UsageError("a --laddr is given twice")
    servers = [rs for rs, _ in args.rs]
    seen: set[tuple[str, int]] = set()
    for rs in servers:
        if (rs.address, rs.port) in seen:
            raise UsageError(f"--rs {rs.address}:{rs.port} is given twice")
        seen.add((rs.address, rs.port))
        if rs.address == vip or rs.address in args.laddr:
            raise UsageError(f"--rs {rs.address} is the box's own address")
        if ipaddress.IPv4Address(rs.address) in client.network:
            raise UsageError(f"--rs {rs.address} is on the client side ({client.network})")
    if not any(rs.weight > 0 for rs in servers):
        raise UsageError("every --rs has weight 0: nothing to schedule")
    weighted = any(explicit for _, explicit in args.rs)
    scheduler = Scheduler(args.scheduler) if args.scheduler else (Scheduler.WRR if weighted else Scheduler.RR)
    if args.no_mss_adjust:
        mss_adjust = MssAdjust.OFF
    elif args.mss_clamp is not None:
        mss_adjust = MssAdjust.CLAMP
    else:
        mss_adjust = MssAdjust.SUBTRACT_TOA
    config = FullNatConfig(
        services=(VirtualService(vip, vport, tuple(servers), scheduler),),
        local_addresses=tuple(args.laddr),
        local_port_range=args.lport_range,
        seed=args.seed,
        remove_timestamps=not args.keep_ts,
        insert_toa=args.toa,
        mss_adjust=mss_adjust,
        mss_clamp=args.mss_clamp if args.mss_clamp is not None else 1452,
        mtu=args.mtu,
        rst_on_expire=args.expire_rst,
        decrement_ttl=args.decrement_ttl,
        pass_unknown=not args.drop_unknown,
        timeouts=TIMEOUTS[args.timeouts],
    )
    return FullNat(config)


def _build_toa(args: argparse.Namespace) -> RsToa:
    if args.strip_option and args.mode != ToaMode.REWRITE.value:
        raise UsageError("--strip-option needs --mode rewrite")
    return RsToa(
        RsToaConfig(mode=ToaMode(args.mode), strip_option=args.strip_option, timeouts=TIMEOUTS[args.timeouts])
    )


def _build_snat(args: argparse.Namespace) -> Snat:
    client, server = _subnets(args)
    _box_address("--to", args.to, client, server)
    inside = tuple(args.inside) if args.inside else (str(client.network),)
    if any(ipaddress.IPv4Address(args.to) in ipaddress.IPv4Network(net) for net in inside):
        raise UsageError(f"--to {args.to} is inside the masqueraded network")
    config = SnatConfig(
        outside_address=args.to,
        inside_networks=inside,
        port_range=args.ports,
        preserve_port=not args.random,
        port_selection=PortSelection.SEQUENTIAL if args.sequential else PortSelection.RANDOM,
        seed=args.seed,
        decrement_ttl=not args.no_ttl_decrement,
        timeouts=TIMEOUTS[args.timeouts],
    )
    return Snat(config)


def _build_impair(args: argparse.Namespace) -> ImpairBox:
    try:
        return ImpairBox(args.rules)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


_BUILDERS: dict[str, Callable[[argparse.Namespace], Middlebox]] = {
    "lb": _build_lb,
    "toa": _build_toa,
    "snat": _build_snat,
    "impair": _build_impair,
}


def environment_problem() -> str | None:
    """Why this process cannot create TUN devices in namespaces, or None."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) to create TUN devices in namespaces"
    if not TUN_PATH.exists():
        return f"{TUN_PATH} is missing (modprobe tun)"
    return None


# --- running -------------------------------------------------------------------------------------------


def _write_status(path: str, status: dict[str, Any]) -> None:
    """Replace the file atomically, so a reader never sees half a document."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(status, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    rt = status["runtime"]
    summary = {
        "in_client": rt.get("packets_in_client", 0),
        "in_server": rt.get("packets_in_server", 0),
        "out_to_server": rt.get("packets_out_to_server", 0),
        "out_to_client": rt.get("packets_out_to_client", 0),
        "malformed": rt.get("malformed_dropped", 0),
    }
    if "conntrack" in status:
        summary["conntrack"] = status["conntrack"]["count"]
    return summary


class _Reporter:
    """The periodic stats line and status file, and the final ones."""

    def __init__(self, args: argparse.Namespace, rt: BoxRuntime, log: Any) -> None:
        self.args = args
        self.rt = rt
        self.log = log
        self.started = trio.current_time()

    def status(self, *, running: bool) -> dict[str, Any]:
        now = trio.current_time()
        status = self.rt.status(now)
        status.update(
            command=self.args.command,
            pid=os.getpid(),
            running=running,
            time=time.time(),
            uptime=round(now - self.started, 3),
            client={
                "netns": self.args.client_netns,
                "address": self.args.client_addr,
                "device": self.rt.client_side.name,
            },
            server={
                "netns": self.args.server_netns,
                "address": self.args.server_addr,
                "device": self.rt.server_side.name,
            },
        )
        return status

    def write(self, status: dict[str, Any]) -> None:
        if self.args.status_file is None:
            return
        try:
            _write_status(self.args.status_file, status)
        except OSError as exc:
            self.log.warning("cannot write status file", path=self.args.status_file, error=str(exc))

    async def run(self) -> None:
        interval = self.args.stats_interval
        if interval == 0 and self.args.status_file is None:
            await trio.sleep_forever()
        while True:
            await trio.sleep(interval if interval > 0 else 1.0)
            status = self.status(running=True)
            self.write(status)
            if interval > 0:
                self.log.info("stats", **_summary(status), counters=status["stats"])


async def _serve(args: argparse.Namespace, box: Middlebox) -> int:
    log = structlog.get_logger("utcp.cli").bind(command=args.command)
    ns_client = Namespace(args.client_netns, owned=False)
    ns_server = Namespace(args.server_netns, owned=False)
    with contextlib.ExitStack() as files, trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        pcap: IO[bytes] | None = files.enter_context(open(args.pcap, "wb")) if args.pcap else None
        async with contextlib.AsyncExitStack() as stack:
            try:
                rt = await stack.enter_async_context(
                    box_between_namespaces(
                        box,
                        ns_client,
                        ns_server,
                        args.client_addr,
                        args.server_addr,
                        mtu=args.mtu,
                        pcap=pcap,
                        logger=structlog.get_logger("utcp.io.box"),
                        bytes_path=not args.no_fast_path,
                    )
                )
            except (OSError, NamespaceError, ValueError) as exc:
                print(f"utcp {args.command}: error: {exc}", file=sys.stderr)
                return EXIT_FAILED
            reporter = _Reporter(args, rt, log)
            reporter.write(reporter.status(running=True))
            log.info(
                "running",
                box=type(box).__name__,
                client=f"{rt.client_side.name}@{args.client_netns}",
                server=f"{rt.server_side.name}@{args.server_netns}",
            )
            # A line on stdout that scripts can wait for.
            print(
                f"running {args.command} client={rt.client_side.name}@{args.client_netns}"
                f" server={rt.server_side.name}@{args.server_netns}",
                flush=True,
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reporter.run)
                async for signum in signals:
                    log.info("stopping", signal=signal.Signals(signum).name)
                    break
                nursery.cancel_scope.cancel()
            final = reporter.status(running=False)
        # The devices are closed (and so removed) here.
        reporter.write(final)
        log.info("stopped", **_summary(final), counters=final["stats"])
    return EXIT_OK


def run_box(args: argparse.Namespace) -> int:
    """Check the arguments (UsageError: exit 2), the environment (exit 1), then run until a signal."""
    _check_common(args)
    box = _BUILDERS[args.command](args)
    _check_namespaces(args)
    problem = environment_problem()
    if problem is not None:
        print(f"utcp {args.command}: error: {problem}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return trio.run(_serve, args, box)
    except Exception as exc:
        # A device or namespace failing while the box runs (e.g. the namespace deleted under it).
        cause = _environment_error(exc)
        if cause is None:
            raise
        print(f"utcp {args.command}: error: {cause}", file=sys.stderr)
        return EXIT_FAILED


def _environment_error(exc: BaseException) -> BaseException | None:
    """The first OSError/NamespaceError inside `exc` (possibly an exception group) when every leaf is one."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_environment_error(inner) for inner in exc.exceptions]
        return leaves[0] if leaves and all(leaf is not None for leaf in leaves) else None
    return exc if isinstance(exc, OSError | NamespaceError) else None
