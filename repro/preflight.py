"""Preflight: is everything a playbook needs there on a host, before any build starts?

A host that fails is not built on; the report says why in one line per problem, e.g.
"only 3.1 GiB free in /tmp, playbook needs 20 GiB" (the seed's lesson: a too-small /tmp
killed cloud builds with ENOSPC after half an hour).
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from repro import guix
from repro.hostenv import PRELUDE
from repro.playbook import Requirements
from repro.transport.base import Transport

#: how far a host's clock may be from the controller's before builds are refused: a skewed
#: clock breaks TLS to substitute servers and makes logs and reports lie about time.
MAX_CLOCK_SKEW = 300


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


async def check(
    transport: Transport, requires: Requirements, facts: dict[str, Any], run_dir: str
) -> list[str]:
    """Return the problems found on this host (empty when it is fit to build)."""
    problems: list[str] = []
    if requires.commands:
        problems += await _missing_commands(transport, requires.commands)
        daemon = guix.daemon_problem(requires.commands, problems, facts)
        if daemon:
            problems.append(daemon)
    for where, need in sorted(requires.disk.items()):
        have = facts.get("free_work_bytes" if where == "work" else "free_tmp_bytes")
        label = run_dir if where == "work" else (facts.get("tmp_dir") or "/tmp")
        if not isinstance(have, int):
            problems.append(
                f"cannot tell free space in {label}; playbook needs {human_bytes(need)}"
            )
        elif have < need:
            problems.append(
                f"only {human_bytes(have)} free in {label}, playbook needs {human_bytes(need)}"
            )
    clock = facts.get("clock")
    if isinstance(clock, int):
        skew = clock - time.time()
        if abs(skew) > MAX_CLOCK_SKEW:
            problems.append(f"clock is {abs(skew):.0f} s {'ahead' if skew > 0 else 'behind'}")
    return problems


async def _missing_commands(transport: Transport, commands: tuple[str, ...]) -> list[str]:
    # One round trip for all commands; names were validated by the playbook loader, and are
    # quoted anyway.
    script = (
        PRELUDE
        + "for c in "
        + " ".join(shlex.quote(c) for c in commands)
        + ('; do command -v "$c" >/dev/null 2>&1 || echo "$c"; done; exit 0')
    )
    res = await transport.run(script, timeout=30)
    missing = [ln.strip() for ln in res.stdout.splitlines() if ln.strip() in commands]
    return [f"command not found: {c}" for c in missing]
