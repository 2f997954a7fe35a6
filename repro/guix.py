"""What repro knows about GNU Guix: the channel commit a build used (from `guix describe`), why
hosts on different commits prove nothing, and what preflight asks of a host that runs guix.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from repro.results import HostResult

#: the host fact holding the `guix` channel commit the build used (or "" when unknown)
CHANNEL_FACT = "guix_channel_commit"
#: how much of a describe file is read: a channel list is a few hundred bytes
DESCRIBE_MAX = 65536
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


def read_describe_command(path: str) -> str:
    """The command printing a `guix describe --format=json` file the build wrote at `path`."""
    return f"head -c {DESCRIBE_MAX} -- {shlex.quote(path)}"


def commit_from_describe(text: str) -> str:
    """The `guix` channel's commit from `guix describe --format=json`, or "" (validated hex)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(data, list):
        return ""
    for chan in data:
        if isinstance(chan, dict) and chan.get("name") == "guix":
            commit = chan.get("commit")
            if isinstance(commit, str) and _COMMIT_RE.fullmatch(commit):
                return commit
    return ""


def channel_groups(ok: list[HostResult]) -> dict[str, list[str]]:
    """The hosts that finished ok, by the Guix channel commit they built from (run order).

    More than one group: identical bytes from different commits prove nothing about the
    pinned build, so compare makes such a run inconclusive whatever the hashes say.
    """
    by_commit: dict[str, list[str]] = {}
    for host in ok:
        commit = host.facts.get(CHANNEL_FACT)
        if commit is not None:
            by_commit.setdefault(str(commit), []).append(host.name)
    return by_commit


def daemon_problem(commands: tuple[str, ...], problems: list[str], facts: dict[str, Any]) -> str:
    """Preflight's complaint when a playbook needs guix, guix is there, but no daemon answers."""
    if "guix" in commands and "guix" not in " ".join(problems) and not facts.get("guix_daemon"):
        return "no guix-daemon answers (start it: `sudo systemctl start guix-daemon`)"
    return ""
