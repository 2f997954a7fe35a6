"""The four steps every controller in the fan-out benchmark runs, and the check of their output.

Shared by bench/fanout.py and the bare controllers so that all of them run the same commands
and every run is held to the same proof that it really did the work on the right host.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

#: (step name, shell command). `uname -n` proves which host answered (each lab host has its
#: own UTS hostname); step 2 writes the artifact `f` that repro hashes.
STEPS: tuple[tuple[str, str], ...] = (
    ("uname", "uname -n -r"),
    ("hello", "echo hello > f && sha256sum f"),
    ("ls", "ls /"),
    ("random", "head -c 1000 /dev/urandom | sha256sum"),
)
COMMANDS: tuple[str, ...] = tuple(cmd for _, cmd in STEPS)
HELLO_SHA256 = hashlib.sha256(b"hello\n").hexdigest()
_RANDOM_RE = re.compile(r"^[0-9a-f]{64}  -$")
_ROOT_DIRS = ("etc", "root", "tmp", "usr")


@dataclass(frozen=True)
class LabHost:
    """A host as the bare controllers get it: inventory name and address."""

    name: str
    address: str

    def __repr__(self) -> str:
        return f"LabHost({self.name!r}, {self.address})"


def load_hosts(path: str | Path) -> list[LabHost]:
    """Read the hosts file fanout.py writes: a JSON list of {"name", "address"}."""
    data = json.loads(Path(path).read_text())
    return [LabHost(str(h["name"]), str(h["address"])) for h in data]


def write_outputs(path: str | Path, outputs: dict[str, list[str]], errors: dict[str, str]) -> None:
    """What a bare controller saw: every host's four stdouts, or the error that stopped it."""
    Path(path).write_text(json.dumps({"outputs": outputs, "errors": errors}, indent=1) + "\n")


def read_outputs(path: str | Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    data = json.loads(Path(path).read_text())
    return dict(data.get("outputs") or {}), dict(data.get("errors") or {})


def check_outputs(outputs: dict[str, list[str]], hosts: list[str]) -> list[str]:
    """Problems with a run's outputs (empty: every host ran all four steps correctly).

    The random hashes must all differ: equal ones would mean one host's answer was counted twice.
    """
    problems: list[str] = []
    missing = sorted(set(hosts) - set(outputs), key=_natural)
    if missing:
        problems.append(f"{len(missing)} hosts gave no output (first: {missing[0]})")
    extra = sorted(set(outputs) - set(hosts))
    if extra:
        problems.append(f"output for hosts not in the lab: {extra[:3]}")
    release = os.uname().release
    randoms: list[str] = []
    for name in sorted(set(hosts) & set(outputs), key=_natural):
        problem = _check_host(name, outputs[name], release)
        if problem:
            problems.append(f"host {name}: {problem}")
        elif outputs[name]:
            randoms.append(outputs[name][3].strip())
    if len(set(randoms)) != len(randoms):
        problems.append("two hosts returned the same random hash")
    return problems


def _check_host(name: str, out: list[str], release: str) -> str:
    if len(out) != len(STEPS):
        return f"{len(out)} outputs, expected {len(STEPS)}"
    if out[0].split() != [name, release]:
        return f"step uname printed {out[0].strip()[:60]!r}, expected '{name} {release}'"
    if out[1].strip() != f"{HELLO_SHA256}  f":
        return f"step hello printed {out[1].strip()[:80]!r}"
    listed = set(out[2].split())
    if not all(d in listed for d in _ROOT_DIRS):
        return f"step ls printed {out[2].strip()[:60]!r}, not a root directory listing"
    if not _RANDOM_RE.match(out[3].strip()):
        return f"step random printed {out[3].strip()[:80]!r}"
    return ""


def _natural(name: str) -> tuple[int, str]:
    digits = "".join(c for c in name if c.isdigit())
    return (int(digits) if digits else 0, name)


def driver_args(doc: str, argv: list[str] | None, timeout_help: str) -> argparse.Namespace:
    """The command line every comparison driver takes (fanout.py passes the same to each)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--hosts", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--known-hosts", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--timeout", type=float, default=60.0, help=timeout_help)
    return p.parse_args(argv)


def report_errors(driver: str, errors: dict[str, str]) -> int:
    """Print the first few per-host errors; the driver's exit status."""
    for name, err in sorted(errors.items())[:5]:
        print(f"{driver}: {name}: {err}", file=sys.stderr)
    return 1 if errors else 0
