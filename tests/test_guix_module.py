"""repro/guix.py, the one home of what repro knows about Guix: the channel commit a build used,
hosts that disagree on it, and preflight's daemon check."""

from __future__ import annotations

import json

from repro.guix import (
    CHANNEL_FACT,
    channel_groups,
    commit_from_describe,
    daemon_problem,
    read_describe_command,
)
from repro.results import HostResult

GUIX = "9edb3f66fd807b096b48283debdcddccfea34bad"


def describe(*channels: dict[str, object]) -> str:
    return json.dumps(list(channels))


def test_the_guix_channels_commit_is_read_and_checked() -> None:
    text = describe({"name": "nonguix", "commit": "a" * 40}, {"name": "guix", "commit": GUIX})
    assert commit_from_describe(text) == GUIX
    for bad in (
        "", "not json", "{}", "[1]", "[" * 100_000,
        describe({"name": "guix", "commit": GUIX.upper()}),
        describe({"name": "guix", "commit": GUIX + "\n"}),
        describe({"name": "guix", "commit": 40}),
        describe({"name": "nonguix", "commit": GUIX}),
    ):  # fmt: skip
        assert commit_from_describe(bad) == "", bad[:40]


def test_the_describe_file_is_read_quoted_and_bounded() -> None:
    assert read_describe_command("/w/a b/d.json") == "head -c 65536 -- '/w/a b/d.json'"


def test_hosts_are_grouped_by_the_commit_they_built_from() -> None:
    hosts = [
        HostResult("a", "ok", facts={CHANNEL_FACT: GUIX}),
        HostResult("b", "ok", facts={CHANNEL_FACT: "b" * 40}),
        HostResult("c", "ok", facts={CHANNEL_FACT: GUIX}),
        HostResult("d", "ok"),  # no describe file asked for: not counted
    ]
    assert channel_groups(hosts) == {GUIX: ["a", "c"], "b" * 40: ["b"]}


def test_the_daemon_is_asked_for_only_when_guix_is_needed_and_there() -> None:
    problem = "no guix-daemon answers (start it: `sudo systemctl start guix-daemon`)"
    assert daemon_problem(("guix",), [], {"guix_daemon": False}) == problem
    assert daemon_problem(("guix",), [], {"guix_daemon": True}) == ""
    assert daemon_problem(("make",), [], {}) == ""
    # guix itself missing says so already: no second complaint about its daemon
    assert daemon_problem(("guix",), ["command not found: guix"], {}) == ""
