"""From "differs" to "why": fetch the copies a mismatch needs, run diffoscope on each pair and
put the result (`Why`) on the comparison, for every renderer to show and report.json to keep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from repro import diffoscope
from repro.compare import ArtifactComparison, Comparison
from repro.diffoscope import PairDiff
from repro.events import Event, Listener, ignore
from repro.fetch import Copy, FetchOptions, candidates, fetch_all, plan
from repro.inventory import Host
from repro.playbook import Playbook
from repro.results import RunResult
from repro.store import atomic_write
from repro.transport.base import Transport

#: diffoscope runs at once (each is CPU-bound, with helpers of its own)
_DIFF_PARALLEL = 2


@dataclass(frozen=True)
class Why:
    """The copies fetched for one artifact and diffoscope's verdict on each pair of them."""

    copies: tuple[Copy, ...]
    pairs: tuple[PairDiff, ...] = ()
    note: str = ""  # one line: why there is no diff (too large, gone, no diffoscope …)

    def __repr__(self) -> str:
        return f"Why({len(self.copies)} copies, {len(self.pairs)} pairs)"


@dataclass
class WhyOptions:
    enabled: bool = True
    fetch: FetchOptions = field(default_factory=FetchOptions)
    diff_timeout: float = diffoscope.DEFAULT_TIMEOUT
    max_report: int = diffoscope.MAX_REPORT
    # the run's secret values out of the summary (an artifact may hold one): repro.secrets
    mask: Callable[[str], str] = str


def record_paths(run: RunResult, playbook: Playbook) -> None:
    """Each artifact's path on its host, where the playbook's artifacts specs say it alone."""
    for host in run.hosts:
        for name in host.artifacts:
            found = candidates(playbook, name)
            if host.run_dir and len(found) == 1 and name not in host.paths:
                host.paths[name] = f"{host.work_dir(1)}/{found[0]}"


async def explain(
    run: RunResult,
    comparison: Comparison,
    *,
    playbook: Playbook,
    hosts: dict[str, Host],
    run_dir: Path,
    transport_factory: Callable[[Host], Transport],
    listener: Listener = ignore,
    options: WhyOptions | None = None,
    only: str | None = None,
) -> Comparison:
    """The comparison with a `why` on every differing artifact (or only `only`)."""
    opts = options or WhyOptions()
    wanted = plan(run, comparison, only)
    if not wanted or not opts.enabled:
        return comparison
    copies = await fetch_all(
        run,
        wanted,
        playbook=playbook,
        hosts=hosts,
        run_dir=run_dir,
        transport_factory=transport_factory,
        listener=listener,
        options=opts.fetch,
    )
    by_name = {h.name: h for h in run.hosts}
    for c in copies:
        if c.remote_path and c.round == 1:
            by_name[c.host].paths[c.artifact] = c.remote_path
    gate = asyncio.Semaphore(_DIFF_PARALLEL)
    started = time.monotonic()

    async def diff(art: ArtifactComparison) -> ArtifactComparison:
        mine = tuple(c for c in copies if c.artifact == art.name)
        if not mine:
            return art
        async with gate:
            why = await _diff_copies(art.name, mine, run_dir, opts, listener, started)
        return dataclasses.replace(art, why=why)

    artifacts = await asyncio.gather(*(diff(a) for a in comparison.artifacts))
    lies = [
        f"host {c.host} sent bytes for {c.artifact} that do not hash to what it reported"
        f" (evidence of tampering, or of an artifact changed after hashing): {c.detail}"
        for c in copies
        if c.status == "claim-mismatch"
    ]
    return dataclasses.replace(
        comparison, artifacts=tuple(artifacts), reasons=(*comparison.reasons, *lies)
    )


async def _diff_copies(
    name: str,
    copies: tuple[Copy, ...],
    run_dir: Path,
    opts: WhyOptions,
    listener: Listener,
    started: float,
) -> Why:
    missing = [c for c in copies if c.local is None]
    note = "; ".join(f"{c.label} ({c.host}): {c.detail}" for c in missing)
    pairs = []
    # groups against the largest group, rounds against round 1: never a group against a round
    for kind in ("group", "round"):
        side = [c for c in copies if c.label.startswith(kind)]
        if side and side[0].local is not None:
            pairs += await _pairs(name, side, run_dir, opts, listener, started)
    if not pairs:
        return Why(copies, (), note or "fewer than two copies could be fetched")
    if any(p.status == "no-diffoscope" for p in pairs):
        note = "; ".join(x for x in (pairs[0].detail, note) if x)
    return Why(copies, tuple(pairs), note)


async def _pairs(
    name: str,
    side: list[Copy],
    run_dir: Path,
    opts: WhyOptions,
    listener: Listener,
    started: float,
) -> list[PairDiff]:
    """diffoscope on the first copy of `side` against each other copy that arrived."""
    left, *rest = side
    pairs = []
    for right in (c for c in rest if c.local is not None):
        stem = str(Path(left.local or "").parent / f"{_tag(left)}-vs-{_tag(right)}")
        listener(Event("diffoscope", "diffing", f"{name}: {left.label} vs {right.label}",
                       None, time.monotonic() - started))  # fmt: skip
        pairs.append(_masked(opts.mask, await diffoscope.run_pair(
                name,
                (f"{left.label} ({left.host})", run_dir / (left.local or "")),
                (f"{right.label} ({right.host})", run_dir / (right.local or "")),
                run_dir=run_dir,
                out_stem=stem,
                timeout=opts.diff_timeout,
                max_report=opts.max_report,
                strip=(f"{_tag(left)}-{left.host}-", f"{_tag(right)}-{right.host}-"),
            ), run_dir))  # fmt: skip
    return pairs


def _masked(mask: Callable[[str], str], pair: PairDiff, run_dir: Path) -> PairDiff:
    """The pair's summary and diffoscope's own reports with every secret value masked: a
    build that printed a token into an artifact must not leave it in diff/ (0700, but kept,
    copied into PRs, uploaded as CI artifacts)."""
    for rel in (pair.text, pair.html):
        if rel:
            for path in {run_dir / rel, (run_dir / rel).with_suffix(".json")}:
                _scrub(mask, path)
    members = tuple(
        dataclasses.replace(m, path=tuple(map(mask, m.path)), lines=tuple(map(mask, m.lines)))
        for m in pair.members
    )
    return dataclasses.replace(pair, members=members)


def _scrub(mask: Callable[[str], str], path: Path) -> None:
    """Rewrite `path` (a report we wrote) with `mask` applied, atomically, if it changes."""
    if mask is str or not path.is_file() or path.is_symlink():
        return
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    masked = mask(text)
    if masked != text:  # 0600: the copies' directory is the run's own
        atomic_write(path, masked.encode("utf-8", errors="surrogateescape"), mode=0o600)


def _tag(c: Copy) -> str:
    return c.label.replace(" ", "")
