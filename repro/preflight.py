"""Preflight: is everything a playbook needs there on a host, before any build starts?

A host that fails is not built on; the report says why in one line per problem, e.g.
"only 3.1 GiB free in /gnu/store, playbook needs 10.0 GiB": free space is checked where the
build writes (the work dir, the Guix store, and /tmp only for playbooks that say they use it).
"""

from __future__ import annotations

import re
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
#: where Guix keeps its store; Guix itself honours NIX_STORE_DIR (guix/config.scm), so do we.
STORE_DIR = "/gnu/store"
_SAFE_PATH = re.compile(r"/[A-Za-z0-9_./+@=,:-]{0,254}")
# Free space of the store's file system: of its nearest existing ancestor when there is no store
# yet (a first `guix pull` makes it there). One line each, whatever the path holds.
_STORE_PROBE = r"""
s=${NIX_STORE_DIR:-/gnu/store}
case $s in /*) ;; *) s=/gnu/store ;; esac
case $s in *'
'*) s=/gnu/store ;; esac
d=$s; n=0
while [ ! -e "$d" ] && [ "$n" -lt 64 ]; do d=$(dirname -- "$d"); n=$((n + 1)); done
printf 'store %s\n' "$s"
df -Pk -- "$d" 2>/dev/null | tail -n 1 | { read -r _ _ _ a _ && echo "avail $a"; }
"""


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
    store: tuple[str, int | None] = (STORE_DIR, None)
    if requires.commands or "store" in requires.disk:
        missing, store = await _probe(transport, requires.commands, "store" in requires.disk)
        problems += missing
    if requires.commands:
        daemon = guix.daemon_problem(requires.commands, problems, facts)
        if daemon:
            problems.append(daemon)
    for where, need in sorted(requires.disk.items()):
        if where == "store":
            label, have = store
        else:
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


async def _probe(
    transport: Transport, commands: tuple[str, ...], store: bool
) -> tuple[list[str], tuple[str, int | None]]:
    """Missing commands, and the store's path and free bytes: one round trip for all."""
    # Names were validated by the playbook loader, and are quoted anyway.
    script = PRELUDE
    if commands:
        script += (
            "for c in "
            + " ".join(shlex.quote(c) for c in commands)
            + '; do command -v "$c" >/dev/null 2>&1 || echo "missing $c"; done\n'
        )
    if store:
        script += _STORE_PROBE
    res = await transport.run(script + "exit 0\n", timeout=30)
    missing: list[str] = []
    label, avail = STORE_DIR, None
    for line in res.stdout.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "missing" and value in commands:
            missing.append(f"command not found: {value}")
        elif key == "store" and _SAFE_PATH.fullmatch(value):
            label = value  # a host's NIX_STORE_DIR is shown only when it is a plain path
        elif key == "avail" and value.isdigit() and len(value) < 19:
            avail = int(value) * 1024
    return missing, (label, avail)
