"""The preset registry, `resolve_policy` (preset names and package.module:Name), `describe_policies` and
`describe_knobs` (what `utcp policies [--json]` prints), knob validation and counter names."""

from __future__ import annotations

import json

import pytest

from tests.policy import userpolicies
from utcp.policy import (
    KNOBS,
    POLICY_COUNTERS,
    PRESETS,
    LinuxPolicy,
    LinuxTwRecyclePolicy,
    Policy,
    Rfc793Policy,
    Rfc5961Policy,
    Rfc7323Policy,
    describe_knobs,
    describe_policies,
    linux_counter_name,
    resolve_policy,
    utcp_counter_name,
)


def test_presets_are_the_five_named_in_the_issue() -> None:
    assert dict(PRESETS) == {
        "linux": LinuxPolicy,
        "linux-tw-recycle": LinuxTwRecyclePolicy,
        "rfc793": Rfc793Policy,
        "rfc5961": Rfc5961Policy,
        "rfc7323": Rfc7323Policy,
    }
    with pytest.raises(TypeError):
        PRESETS["mine"] = Policy  # type: ignore[index]


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_preset_name_resolves_to_a_fresh_instance(name: str) -> None:
    a, b = resolve_policy(name), resolve_policy(f"  {name} ")
    assert type(a) is PRESETS[name] and a.name == name
    assert a is not b and a.peer_cache is not b.peer_cache


def test_user_policies_load_as_class_instance_or_factory() -> None:
    cls = resolve_policy("tests.policy.userpolicies:TrustingRsts")
    assert type(cls) is userpolicies.TrustingRsts
    assert resolve_policy("tests.policy.userpolicies:STRICT_LINUX") is userpolicies.STRICT_LINUX
    made = resolve_policy("tests.policy.userpolicies:make_lenient")
    assert type(made) is LinuxPolicy and made.rst_paws_request == "always"
    nested = resolve_policy("utcp.policy:LinuxPolicy")
    assert type(nested) is LinuxPolicy


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "bsd",
            "unknown policy preset 'bsd'; known presets: linux, linux-tw-recycle, rfc793, rfc5961, rfc7323",
        ),
        ("tests.policy.userpolicies.TrustingRsts", "package.module:Name"),
        ("no_such_pkg.mod:Thing", "cannot import module 'no_such_pkg.mod'"),
        ("tests.policy.userpolicies:Missing", "has no attribute 'Missing'"),
        ("tests.policy.userpolicies:NotAPolicy", "class NotAPolicy is not a utcp.policy.Policy subclass"),
        ("tests.policy.userpolicies:NOT_CALLABLE", "int is neither a Policy"),
        ("tests.policy.userpolicies:returns_a_string", "factory returned str, not a utcp.policy.Policy"),
        (":LinuxPolicy", "expected package.module:Name"),
    ],
)
def test_resolve_policy_says_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        resolve_policy(spec)
    assert message in str(info.value)


def test_describe_policies_is_json_ready_and_cites_its_sources() -> None:
    described = describe_policies()
    json.dumps(described)
    assert [d["name"] for d in described] == list(PRESETS)
    knob_names = [k.name for k in KNOBS]
    for d in described:
        assert d["summary"] and d["class"].startswith("utcp.policy.")
        assert list(d["knobs"]) == knob_names
        assert "RFC" in d["doc"] or "tcp_" in d["doc"], d["name"]
    by_name = {d["name"]: d for d in described}
    assert "tcp_check_req" in by_name["linux"]["doc"] and "tcp_validate_incoming" in by_name["linux"]["doc"]
    assert "tcp_peer_is_proven" in by_name["linux-tw-recycle"]["doc"]
    assert "RFC 5961" in by_name["rfc5961"]["doc"] and "5.2" in by_name["rfc7323"]["doc"]
    assert by_name["linux"]["knobs"]["rst_paws_request"] == "after-msl"
    assert by_name["rfc7323"]["knobs"]["rst_paws_request"] == "always"


def test_describe_knobs_documents_every_knob_with_its_value_per_preset() -> None:
    knobs = describe_knobs()
    json.dumps(knobs)
    assert [k["name"] for k in knobs] == [k.name for k in KNOBS]
    for k in knobs:
        assert k["doc"] and k["states"] and set(k["presets"]) == set(PRESETS)
    by_name = {k["name"]: k for k in knobs}
    assert by_name["rst_rule_synchronized"]["choices"] == ["rfc793", "rfc5961", "exact"]
    assert by_name["rst_rule_synchronized"]["presets"]["rfc793"] == "rfc793"
    assert by_name["tw_recycle"]["presets"] == {
        "linux": False,
        "linux-tw-recycle": True,
        "rfc793": False,
        "rfc5961": False,
        "rfc7323": False,
    }


def test_the_knob_set_covers_the_issue() -> None:
    names = {k.name for k in KNOBS}
    assert {
        "paws",
        "paws_window",
        "rst_paws_syn_sent",
        "rst_paws_request",
        "rst_paws_synchronized",
        "rst_paws_time_wait",
        "rst_rule_synchronized",
        "syn_rule",
        "ack_range_check",
        "synack_tsecr_check",
        "challenge_ack_interval",
        "tw_recycle",
        "paws_msl",
        "rfc1337",
    } <= names


def test_rfc7323_is_the_base_policy_defaults() -> None:
    assert Rfc7323Policy().knobs() == Policy().knobs()


def test_knobs_are_validated() -> None:
    with pytest.raises(TypeError, match="unknown policy knob 'nope'"):
        LinuxPolicy(nope=1)
    with pytest.raises(ValueError, match="rst_rule_synchronized='rfc1122'"):
        LinuxPolicy(rst_rule_synchronized="rfc1122")
    with pytest.raises(ValueError, match="paws=1: expected True or False"):
        LinuxPolicy(paws=1)
    with pytest.raises(ValueError, match="rst_paws_syn_sent='after-msl'"):
        LinuxPolicy(rst_paws_syn_sent="after-msl")
    with pytest.raises(ValueError, match="challenge_ack_interval=-1"):
        LinuxPolicy(challenge_ack_interval=-1)

    class Broken(LinuxPolicy):
        syn_rule = "ignore"  # type: ignore[assignment]

    with pytest.raises(ValueError, match="syn_rule='ignore'"):
        Broken()


def test_repr_shows_the_knobs_that_differ_from_the_class() -> None:
    assert repr(LinuxPolicy()) == "LinuxPolicy()"
    assert repr(LinuxPolicy(rfc1337=True, paws_msl=10.0)) == "LinuxPolicy(paws_msl=10.0, rfc1337=True)"


@pytest.mark.parametrize(
    ("name", "linux"),
    [
        ("PAWSEstab", "TcpExtPAWSEstab"),
        ("PAWSActive", "TcpExtPAWSActive"),
        ("PAWSPassive", "TcpExtPAWSPassive"),
        ("TCPChallengeACK", "TcpExtTCPChallengeACK"),
        ("TCPSYNChallenge", "TcpExtTCPSYNChallenge"),
        ("TCPACKSkippedChallenge", "TcpExtTCPACKSkippedChallenge"),
        ("EmbryonicRsts", "TcpExtEmbryonicRsts"),
        ("EstabResets", "TcpEstabResets"),
        ("OutRsts", "TcpOutRsts"),
        ("AttemptFails", "TcpAttemptFails"),
        ("InErrs", "TcpInErrs"),
        ("TcpTimeoutRehash", "TcpExtTcpTimeoutRehash"),  # a TcpExt name that itself starts with "Tcp"
    ],
)
def test_counter_names_map_to_nstat(name: str, linux: str) -> None:
    assert linux_counter_name(name) == linux
    assert linux_counter_name(linux) == linux
    assert utcp_counter_name(linux) == name


def test_policy_counters_all_have_nstat_names() -> None:
    for name in POLICY_COUNTERS:
        assert linux_counter_name(name).startswith(("Tcp", "TcpExt"))
    with pytest.raises(ValueError):
        utcp_counter_name("IpExtInOctets")
