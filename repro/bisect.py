"""`repro bisect`: the first commit whose hosts disagree, between a good and a bad one, by
building first-parent commits on the hosts, each probe a normal recorded run.

The commits come from a mirror cached on the controller (~/.cache/repro/controller-mirrors),
fetched again on each bisect. Progress is saved after every probe in <out>/bisect-<key>.json,
so the same command run again resumes where it stopped. An inconclusive probe (a host failed)
is skipped as `git bisect skip` does: the search goes on around it and the answer names it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from repro.errors import ReportError, UsageError
from repro.source import validate_ref

STATE_SCHEMA = "repro-bisect/1"
_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass
class Probe:
    commit: str
    verdict: str  # reproducible | mismatch | inconclusive
    run_id: str | None = None
    reused: bool = False  # not built by this bisect: from its saved state or the history


@dataclass
class Bisection:
    """Where a bisect stands (or ended)."""

    good: str
    bad: str
    commits: list[str]  # first-parent commits after `good` up to `bad`, oldest first
    probes: dict[str, Probe] = field(default_factory=dict)
    bad_reproducible: bool = False  # the "bad" commit built identically: nothing to find

    def index(self, commit: str) -> int:
        return self.commits.index(commit)

    def bounds(self) -> tuple[int, int]:
        """(i, j): commits[i] is the newest known good (-1: `good`), commits[j] the oldest
        known bad after it (len - 1: `bad`)."""
        lo, hi = -1, len(self.commits) - 1
        for c, p in self.probes.items():
            if c not in self.commits:
                continue
            i = self.index(c)
            if p.verdict == "reproducible" and i > lo:
                lo = i
        for c, p in self.probes.items():
            if c in self.commits and p.verdict == "mismatch" and lo < self.index(c) < hi:
                hi = self.index(c)
        return lo, hi

    def untested(self) -> list[str]:
        lo, hi = self.bounds()
        return [c for c in self.commits[lo + 1 : hi] if c not in self.probes]

    def next_probe(self) -> str | None:
        """The commit to build next: the middle of what is left, or near it past skipped ones."""
        if self.bad_reproducible:
            return None
        bad = self.commits[-1]
        if bad not in self.probes:
            return bad  # the one allowed extra probe: is `bad` really bad?
        if self.probes[bad].verdict != "mismatch":
            return None
        lo, hi = self.bounds()
        todo = self.untested()
        if not todo:
            return None
        middle = (lo + hi) / 2
        return min(todo, key=lambda c: (abs(self.index(c) - middle), self.index(c)))

    @property
    def first_bad(self) -> str | None:
        """The answer, once every commit between the last good and first bad is known."""
        bad = self.probes.get(self.commits[-1])
        if bad is None or bad.verdict != "mismatch":
            return None
        lo, hi = self.bounds()
        between = self.commits[lo + 1 : hi]
        return self.commits[hi] if not between else None

    @property
    def last_good(self) -> str:
        lo, _ = self.bounds()
        return self.good if lo < 0 else self.commits[lo]

    @property
    def suspects(self) -> list[str]:
        """When skipped commits hide the answer: every commit that may be the first bad one."""
        lo, hi = self.bounds()
        return self.commits[lo + 1 : hi + 1]

    @property
    def skipped(self) -> list[str]:
        return [
            c for c in self.commits if self.probes.get(c, Probe(c, "")).verdict == "inconclusive"
        ]

    @property
    def done(self) -> bool:
        return self.next_probe() is None

    @property
    def exit_code(self) -> int:
        """As `repro run`: 1 a first bad commit was found, 0 `bad` is reproducible after all,
        3 the skipped probes leave it open (or `bad` itself was inconclusive)."""
        if self.first_bad is not None:
            return 1
        return 0 if self.bad_reproducible else 3

    @property
    def max_conclusive(self) -> int:
        return math.ceil(math.log2(len(self.commits))) + 1 if len(self.commits) > 1 else 1


# --- the controller's mirror -----------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "repro" / "controller-mirrors"


def _git(args: list[str], *, cwd: Path | None = None, timeout: float = 600) -> str:
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"git {args[0]}: {exc}") from exc
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args[:2])}: {' '.join(done.stderr.split())[-300:]}")
    return done.stdout


def mirror(repo_url: str, where: Path | None = None) -> Path:
    """A bare mirror of `repo_url` on the controller, cloned once and fetched on each call."""
    if not repo_url or repo_url.startswith("-"):
        raise UsageError(f"repo_url {repo_url!r} is not a repository URL")
    root = where or cache_dir()
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", repo_url.rstrip("/").rsplit("/", 1)[-1])[:40]
    path = root / f"{name}-{hashlib.sha256(repo_url.encode()).hexdigest()[:12]}.git"
    if path.is_dir():
        _git(["-C", str(path), "fetch", "--prune", "--quiet", "origin"])
        return path
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    _git(["clone", "--mirror", "--quiet", "--", repo_url, str(tmp)])
    os.replace(tmp, path)  # an interrupted clone never looks like a mirror
    return path


def first_parent_commits(repo: Path, good: str, bad: str) -> tuple[str, str, list[str]]:
    """(good, bad) as full commits and the first-parent commits after good up to bad."""
    full = []
    for which, ref in (("--good", good), ("--bad", bad)):
        validate_ref(ref)
        try:
            full.append(
                _git(
                    ["-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"]
                ).strip()
            )
        except UsageError:
            raise UsageError(f"{which} {ref!r} is not a commit of the repository") from None
    g, b = full
    try:
        _git(["-C", str(repo), "merge-base", "--is-ancestor", g, b])
    except UsageError:
        raise UsageError(f"--good {good} is not an ancestor of --bad {bad}") from None
    commits = _git(
        ["-C", str(repo), "rev-list", "--first-parent", "--reverse", f"{g}..{b}"]
    ).split()
    if not commits:
        raise UsageError(f"--good and --bad are the same commit ({g})")
    return g, b, commits


# --- state -----------------------------------------------------------------------------------


def state_path(out_dir: Path, playbook: str, good: str, bad: str, limit: str | None) -> Path:
    key = hashlib.sha256(json.dumps([playbook, good, bad, limit]).encode()).hexdigest()[:12]
    return out_dir / f"bisect-{key}.json"


def load_state(path: Path, b: Bisection) -> None:
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != STATE_SCHEMA:
            raise ValueError(f"schema is not {STATE_SCHEMA}")
        for p in data["probes"]:
            if p["commit"] in b.commits and p["verdict"] in (
                "reproducible",
                "mismatch",
                "inconclusive",
            ):
                b.probes[p["commit"]] = Probe(p["commit"], p["verdict"], p.get("run_id"), True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"{path}: cannot resume this bisect: {exc}") from None
    bad = b.probes.get(b.commits[-1])
    b.bad_reproducible = bad is not None and bad.verdict == "reproducible"


def save_state(path: Path, b: Bisection) -> None:
    from repro.store import atomic_write

    data = {
        "schema": STATE_SCHEMA,
        "good": b.good,
        "bad": b.bad,
        "probes": [asdict(p) | {"reused": False} for p in b.probes.values()],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2) + "\n")


# --- the search ------------------------------------------------------------------------------

#: builds one commit, records it as a run; returns (verdict, run id); raises KeyboardInterrupt
#: when the probe was cancelled
Builder = Callable[[str], tuple[str, str]]


def bisect(
    b: Bisection,
    build: Builder,
    *,
    state: Path | None = None,
    on_probe: Callable[[Probe, Bisection], None] | None = None,
) -> Bisection:
    """Probe until the first bad commit is known (or the skipped ones hide it)."""
    while True:
        commit = b.next_probe()
        if commit is None:
            return b
        verdict, run_id = build(commit)
        probe = Probe(commit, verdict, run_id)
        b.probes[commit] = probe
        if commit == b.commits[-1] and verdict == "reproducible":
            b.bad_reproducible = True
        if state is not None:
            save_state(state, b)
        if on_probe:
            on_probe(probe, b)


def as_dict(b: Bisection) -> dict[str, Any]:
    return {
        "schema": "repro-bisect-result/1",
        "good": b.good,
        "bad": b.bad,
        "commits": len(b.commits),
        "first_bad": b.first_bad,
        "last_good": b.last_good,
        "suspects": [] if b.first_bad else b.suspects,
        "skipped": b.skipped,
        "bad_reproducible": b.bad_reproducible,
        "exit_code": b.exit_code,
        "probes": [asdict(p) for p in b.probes.values()],
    }
