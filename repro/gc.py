"""Retention: after a run, its work dir on each host goes unless it is evidence (a mismatch) or
may still be needed (resumable); `repro gc` keeps the newest N run dirs on hosts and controller.

The host side is repro/hostside/gc.sh (after the detached rounds' helpers); it only ever
removes run directories repro made under the host's work base. The git mirrors stay.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.errors import ConnectError, UsageError
from repro.retention import Retention, retention
from repro.store import RUN_ID_RE, STEPS_DIR, RunDir, work_base

_LINE = re.compile(r"(removed|kept) ([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6})(?: (busy|protected|failed))?")


@dataclass
class Cleaned:
    """What one place (a host, or "controller") did."""

    where: str
    removed: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)
    error: str | None = None

    def summary(self) -> str:
        if self.error:
            return f"{self.where}: error: {self.error}"
        text = f"{self.where}: removed {len(self.removed)} run dir(s)"
        if self.kept:
            text += ", kept " + ", ".join(f"{rid} ({why})" for rid, why in self.kept)
        return text


def gc_command(base: str, keep: int | None, now_id: str | None, protected: list[str]) -> str:
    """The one command line that cleans `base` on a host; every word quoted."""
    for rid in [now_id or "-", *protected]:
        if rid != "-" and not RUN_ID_RE.match(rid):
            raise UsageError(f"{rid!r} is not a run id")
    from repro import hostside
    from repro.detach import _sh

    keep_word = str(-1 if keep is None else keep)
    return _sh(hostside.program("gc"), base, STEPS_DIR, keep_word, now_id or "-", *protected)


def parse_output(where: str, text: str) -> Cleaned:
    """The host's lines, strictly: anything else it prints is ignored, never shown."""
    out = Cleaned(where)
    for line in text.splitlines():
        m = _LINE.fullmatch(line.strip())
        if not m:
            continue
        if m[1] == "removed":
            out.removed.append(m[2])
        else:
            out.kept.append((m[2], m[3] or "kept"))
    return out


def keep_after(
    verdict: str, hosts: list[Any], artifacts: list[Any], policy: Retention
) -> str | None:
    """Why this run's work dirs stay on the hosts (None: they go).

    A mismatch or an unstable artifact is evidence `repro diff` needs on both sides; a run with
    a host that was unreachable or cancelled can be resumed; a failed run stays if asked."""
    if policy.keep_work:
        return "kept (repro_keep_work)"
    if verdict == "mismatch" or any(getattr(a, "unstable", ()) for a in artifacts):
        return "kept: mismatch (until repro gc)"
    if any(h.status == "unreachable" or (h.error or "").startswith("cancelled") for h in hosts):
        return "kept: can be resumed"
    if verdict != "reproducible" and policy.keep_failed:
        return "kept: failed (repro_keep_failed)"
    return None


#: what a held last reply is told (reply.sh's `held`), and what its exit status means
_REMOVE, _KEEP = b"remove\n", b"keep\n"
_HELD_SAYS = {3: "not a run dir repro made", 4: "it could not be removed"}


async def after_run(
    prep: Any,
    run: Any,
    comparison: Any,
    factory: Callable[[Any], Any] | None = None,
    finals: dict[str, Any] | None = None,
) -> list[str]:
    """Apply each host's retention once the run is over; returns notes for the person.

    The decision needs the verdict, which exists only once every host has finished. A host
    whose last reply is still held open (`finals`, repro.transport.base.Held) is told there,
    with no new channel or shell; the others (and a `keep N` policy's older runs) are reached
    with a command of their own."""
    from repro.hostops import _each, _error

    finals = finals if finals is not None else {}
    hosts, told, notes = [], [], []
    for plan, result in zip(prep.plans, run.hosts):
        policy = retention(plan.host.vars)
        why = keep_after(comparison.verdict, run.hosts, list(comparison.artifacts), policy)
        if getattr(prep, "aborted", None):  # stopped by a signal: --resume may follow it again
            why = why or "kept: can be resumed"
        final = finals.pop(plan.host.name, None)
        if final is not None:
            told.append((plan.host, final, why, policy.keep_runs))
            continue
        if result.status == "unreachable" or (why and policy.keep_runs is None):
            continue  # nothing to do there (or nothing we could do)
        hosts.append((plan.host, None if why else prep.run_id, policy.keep_runs))

    async def tell(h: Any, final: Any, why: str | None, keep: int | None) -> None:
        try:
            status = await final.finish(_KEEP if why else _REMOVE, timeout=600)
        except (ConnectError, TimeoutError):  # the reply is gone (it kept the dir): ask apart
            if not why or keep is not None:
                hosts.append((h, None if why else prep.run_id, keep))
            return
        if status in _HELD_SAYS and not why:
            notes.append(f"{h.name}: the run's work dir was kept: {_HELD_SAYS[status]}")
        if keep is not None:  # older runs beyond the newest `keep`: gc.sh, apart
            hosts.append((h, None, keep))

    await asyncio.gather(*(tell(*t) for t in told))
    if not hosts:
        return notes
    by_name = {h.name: (now_id, keep) for h, now_id, keep in hosts}

    async def work(h: Any, t: Any) -> Cleaned:
        now_id, keep = by_name[h.name]
        res = await t.run(gc_command(work_base(h), keep, now_id, []), timeout=600)
        cleaned = parse_output(h.name, res.stdout)
        if res.exit_status != 0:
            cleaned.error = f"cleaning exited {res.exit_status}"
        return cleaned

    results = await _each([h for h, _, _ in hosts], work, *([factory] if factory else []))
    for (h, _, _), r in zip(hosts, results):
        if not isinstance(r, Cleaned):
            notes.append(f"{h.name}: could not clean up the run's work dir: {_error(r)}")
        elif r.error or any(why == "failed" for _, why in r.kept):
            notes.append(r.summary())
    return notes


def resumable(out_dir: Path) -> list[str]:
    """Run ids under `out_dir` that are running now or can be resumed: a plan and no report,
    or a plan that says the run has not finished (stopped by a signal, its builds going on)."""
    if not out_dir.is_dir():
        return []
    return sorted(
        d.name
        for d in out_dir.iterdir()
        if RUN_ID_RE.match(d.name) and d.is_dir() and not d.is_symlink() and _unfinished(d)
    )


def _unfinished(run_dir: Path) -> bool:
    store = RunDir(run_dir)
    if not store.plan.is_file():
        return False
    if not store.report("json").is_file():
        return True
    try:
        plan = json.loads(store.plan.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    # only plans that record the end say so (older ones have no finished_at at all)
    return isinstance(plan, dict) and "finished_at" in plan and plan["finished_at"] is None


def clean_controller(out_dir: Path, keep: int) -> Cleaned:
    """Keep the newest `keep` run dirs under `out_dir` (and any without a report yet)."""
    out = Cleaned("controller")
    if not out_dir.is_dir():
        return out
    runs = sorted(
        (
            d
            for d in out_dir.iterdir()
            if RUN_ID_RE.match(d.name) and d.is_dir() and not d.is_symlink()
        ),
        key=lambda d: d.name,
        reverse=True,
    )
    waiting = set(resumable(out_dir))
    for d in runs[keep:]:
        if d.name in waiting:
            out.kept.append((d.name, "not finished"))
            continue
        try:
            shutil.rmtree(d)  # never follows a symlink inside the tree
            out.removed.append(d.name)
        except OSError as exc:
            out.kept.append((d.name, "failed"))
            out.error = f"{d}: {exc.strerror or exc}"
    return out


async def clean_hosts(hosts: list[Any], keep: int, protected: list[str]) -> list[Cleaned]:
    """`repro gc` on the hosts: keep the newest `keep` run dirs on each, never a busy one."""
    from repro.hostops import _each, _error

    async def work(h: Any, t: Any) -> Cleaned:
        res = await t.run(gc_command(work_base(h), keep, None, protected), timeout=600)
        cleaned = parse_output(h.name, res.stdout)
        if res.exit_status != 0:
            cleaned.error = (
                f"cleaning exited {res.exit_status}: {' '.join(res.stderr.split())[-200:]}"
            )
        return cleaned

    results = await _each(hosts, work)
    return [
        r if isinstance(r, Cleaned) else Cleaned(h.name, error=_error(r))
        for h, r in zip(hosts, results)
    ]
