"""`--vary`: what reprotest varies between two builds on one machine, varied here across hosts and
rounds at once, so nondeterminism shows up even on identical hosts and attribution can name it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from repro.errors import UsageError
from repro.inventory import Host
from repro.store import work_base


@dataclass(frozen=True)
class Axis:
    name: str
    how: str  # how it is applied, for --help and docs/variations.md


#: every axis `--vary` takes, in the order they are applied; kernel and CPU cannot be varied
#: (they are facts: see attribution.FACTS)
AXES: dict[str, Axis] = {
    a.name: a
    for a in (
        Axis("build-path", "each host's run dir under its own base (repro_work_dir/b<N>); "
             "rounds already build in their own work dirs (work, work-r2, …)"),
        Axis("umask", "`umask` before each step: 0022, 0002, 0027, 0007, …"),
        Axis("tz", "TZ exported to each step: UTC, Etc/GMT+7, Etc/GMT-14, …"),
        Axis("locale", "LANG and LC_ALL exported to each step: C.UTF-8, C, POSIX"),
        Axis("jobs", "MAKEFLAGS=-jN, DEB_BUILD_OPTIONS=parallel=N and REPRO_JOBS=N "
             "exported to each step, N from 1 to 8"),
        Axis("home", "HOME exported to each step as a directory that does not exist "
             "(/nonexistent/repro-home-N), as reprotest and Debian's builders do"),
    )
}  # fmt: skip

_UMASKS = ("0022", "0002", "0027", "0007", "0023", "0003", "0026", "0006")
_LOCALES = ("C.UTF-8", "C", "POSIX")
_BUILD_PATH_VAR = "repro_work_dir"


def parse(text: str | None) -> tuple[str, ...]:
    """`build-path,umask,…` -> the axes, in AXES order; UsageError naming an unknown one."""
    if not text or text == "none":
        return ()
    wanted = [w.strip() for w in text.split(",") if w.strip()]
    for w in wanted:
        if w not in AXES:
            raise UsageError(f"--vary {w!r}: not an axis; choose from {', '.join(AXES)}")
    return tuple(a for a in AXES if a in wanted)


def value(axis: str, k: int) -> str:
    """Axis value number `k` (0, 1, 2 … one per host and round)."""
    if axis == "umask":
        return _UMASKS[k % len(_UMASKS)]
    if axis == "tz":
        offset = (k * 7 + 14) % 27 - 14  # 7 is prime to 27: 27 distinct zones, UTC first
        return "UTC" if offset == 0 else f"Etc/GMT{offset:+d}"
    if axis == "locale":
        return _LOCALES[k % len(_LOCALES)]
    if axis == "jobs":
        return str(k % 8 + 1)
    if axis == "home":
        return f"/nonexistent/repro-home-{k + 1}"
    if axis == "build-path":
        return f"b{k + 1}"
    raise UsageError(f"--vary {axis!r}: not an axis")


def plan(
    axes: Sequence[str], hosts: Sequence[str], rounds: int
) -> dict[str, list[dict[str, str]]]:
    """host -> one {axis: value} per round. Build path goes per host (rounds differ anyway)."""
    out: dict[str, list[dict[str, str]]] = {}
    for i, host in enumerate(hosts):
        out[host] = [
            {a: value(a, i if a == "build-path" else i * rounds + r) for a in axes}
            for r in range(rounds)
        ]
    return out


def host_vars(values: dict[str, str], host: Host) -> dict[str, object]:
    """The inventory variables a host gets for its round-1 values (the build path only: its
    runs go one directory deeper, under the axis value)."""
    if "build-path" not in values:
        return {}
    return {_BUILD_PATH_VAR: f"{work_base(host).rstrip('/')}/{values['build-path']}"}


def prelude(values: dict[str, str]) -> str:
    """sh lines put before each step of a round (after repro's own PATH prelude, before the
    step's `env:`, which wins: a playbook that pins TZ keeps it)."""
    lines = []
    if "umask" in values:
        lines.append(f"umask {values['umask']}")
    if "tz" in values:
        lines.append(f"TZ={shlex.quote(values['tz'])}; export TZ")
    if "locale" in values:
        q = shlex.quote(values["locale"])
        lines.append(f"LANG={q}; LC_ALL={q}; export LANG LC_ALL")
    if "jobs" in values:
        n = int(values["jobs"])
        lines.append(
            f"MAKEFLAGS=-j{n}; DEB_BUILD_OPTIONS=parallel={n}; REPRO_JOBS={n};"
            " export MAKEFLAGS DEB_BUILD_OPTIONS REPRO_JOBS"
        )
    if "home" in values:
        lines.append(f"HOME={shlex.quote(values['home'])}; export HOME")
    return "".join(line + "\n" for line in lines)
