"""Fetching the bytes behind a mismatch: one copy per hash group (or per disagreeing round),
streamed into reports/<run-id>/diff/ under names we make, and re-hashed here against the claim.
"""

from __future__ import annotations

import asyncio
import fnmatch
import posixpath
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from repro.paths import safe_name
from repro.compare import ArtifactComparison, Comparison
from repro.errors import HostError, ReproError
from repro.events import Event, EventKind, Listener, ignore
from repro.inventory import Host
from repro.playbook import Playbook
from repro.results import ArtifactHash, HostResult, RunResult
from repro.store import DIFF_DIR
from repro.transport.base import TooLarge, Transport

#: the largest artifact fetched by default (bytes); `--max-fetch` changes it
DEFAULT_MAX_BYTES = 2 * 1024**3
#: how many hosts are fetched from at once
PARALLEL = 8
#: how long fetching one artifact may take
FETCH_TIMEOUT = 3600.0
#: a progress event at most this often per file (seconds)
_PROGRESS_EVERY = 0.5
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")

CopyStatus = Literal["ok", "claim-mismatch", "too-large", "failed"]


@dataclass(frozen=True)
class Wanted:
    """One artifact copy to fetch: `label` says which side of the difference it stands for."""

    artifact: str
    host: str
    round: int  # 1 = the host's main build; 2.. = its extra rounds
    claim: ArtifactHash
    label: str  # "group 1" (the largest), "group 2", … or "round 2", …

    def __repr__(self) -> str:
        return f"Wanted({self.artifact!r}, {self.host!r}, round {self.round})"


@dataclass(frozen=True)
class Copy:
    """What became of one Wanted: where it is here and on its host, and whether it is honest."""

    artifact: str
    host: str
    round: int
    label: str
    claimed: str  # the sha256 the host reported
    remote_path: str  # absolute on the host; "" when it could not be located
    local: str | None  # relative to the run directory; None when nothing was kept
    status: CopyStatus
    detail: str = ""  # one line: why it was not fetched, or what the bytes really hash to
    size: int | None = None  # bytes received

    def __repr__(self) -> str:
        return f"Copy({self.artifact!r}, {self.host!r}, {self.status})"


# --- what to fetch --------------------------------------------------------------------------


def plan(run: RunResult, comparison: Comparison, only: str | None = None) -> list[Wanted]:
    """One representative (the first host) of each hash group of every differing artifact;
    and where an artifact is not deterministic on one host, that host's disagreeing rounds."""
    hosts = {h.name: h for h in run.hosts}
    wanted: list[Wanted] = []
    for art in comparison.artifacts:
        if art.status != "differs" or (only is not None and art.name != only):
            continue
        if len(art.groups) > 1:
            for i, group in enumerate(art.groups, 1):
                host = hosts[group.hosts[0]]
                claim = host.artifacts[art.name]
                wanted.append(Wanted(art.name, host.name, 1, claim, f"group {i}"))
        if art.unstable:
            wanted += _rounds_of(hosts[art.unstable[0]], art)
    return wanted


def _rounds_of(host: HostResult, art: ArtifactComparison) -> list[Wanted]:
    """Round 1, and every later round whose bytes differ from all rounds before it."""
    seen: set[str] = set()
    out: list[Wanted] = []
    for rnd, hashes in enumerate([host.artifacts, *host.extra_rounds], 1):
        claim = hashes.get(art.name)
        if claim is not None and claim.sha256 not in seen:
            seen.add(claim.sha256)
            out.append(Wanted(art.name, host.name, rnd, claim, f"round {rnd}"))
    return out


# --- where it is on the host ----------------------------------------------------------------


def candidates(playbook: Playbook, name: str) -> list[str]:
    """Paths below the work dir an artifact `name` can have come from (artifacts specs)."""
    out = []
    for spec in playbook.artifacts:
        if fnmatch.fnmatchcase(name, spec.glob) and name.count("/") == spec.glob.count("/"):
            out.append(name if spec.dir == "." else f"{spec.dir}/{name}")
    return list(dict.fromkeys(out))


def locate_command(playbook: Playbook, name: str) -> str:
    """A sh command, run in the work dir, printing the first regular file `name` came from:
    an artifacts spec's path, else a manifest's listed file (manifest dir/base/name)."""
    tests = [
        f"if [ -f {q} ] && [ ! -L {q} ]; then printf '%s\\n' {q}; exit 0; fi"
        for q in (shlex.quote(c) for c in candidates(playbook, name))
    ]
    for m in playbook.manifests:
        # the glob is checked by the playbook loader (no quote, no space); set -f is off here
        tail = shlex.quote(f"/{m.base}/{name}")
        tests.append(
            f"for m in {m.glob}; do case $m in */*) d=${{m%/*}};; *) d=.;; esac;"
            f' t="$d"{tail}; if [ -f "$m" ] && [ -f "$t" ] && [ ! -L "$t" ]; then'
            ' printf "%s\\n" "$t"; exit 0; fi; done'
        )
    return "\n".join(tests) + "\nexit 1"


def checked_relpath(raw: str) -> str | None:
    """The host's answer to locate_command, if it is a plain path inside the work dir."""
    text = raw.strip("\n")
    if "\n" in text:
        return None
    norm = posixpath.normpath(text)
    return norm if safe_name(norm) else None


def local_name(index: int, want: Wanted) -> str:
    """diff/NN-<artifact>/<label>-<host>-<basename>: only characters we chose, never a host's
    path; the basename keeps its extension, which is what diffoscope's readers go by."""
    base = _UNSAFE.sub("_", want.artifact.rsplit("/", 1)[-1])[-80:].lstrip(".") or "artifact"
    folder = _UNSAFE.sub("_", want.artifact)[:60].strip("._") or "artifact"
    label = want.label.replace(" ", "")
    return f"{DIFF_DIR}/{index:02d}-{folder}/{label}-{_UNSAFE.sub('_', want.host)}-{base}"


# --- fetching -------------------------------------------------------------------------------


@dataclass
class FetchOptions:
    max_bytes: int = DEFAULT_MAX_BYTES
    parallel: int = PARALLEL
    timeout: float = FETCH_TIMEOUT


async def fetch_all(
    run: RunResult,
    wanted: list[Wanted],
    *,
    playbook: Playbook,
    hosts: dict[str, Host],
    run_dir: Path,
    transport_factory: Callable[[Host], Transport],
    listener: Listener = ignore,
    options: FetchOptions | None = None,
) -> list[Copy]:
    """Fetch every Wanted, one connection per host, several hosts at once. Never raises for a
    host's trouble: each copy records its own outcome."""
    opts = options or FetchOptions()
    # one folder per artifact: every copy of an artifact lands beside the others
    folders: dict[str, int] = {}
    for w in wanted:
        folders.setdefault(w.artifact, len(folders) + 1)
    names = {id(w): local_name(folders[w.artifact], w) for w in wanted}
    by_host: dict[str, list[Wanted]] = {}
    for w in wanted:
        by_host.setdefault(w.host, []).append(w)
    results: dict[int, Copy] = {}
    gate = asyncio.Semaphore(max(1, opts.parallel))
    started = time.monotonic()

    def emit(host: str, kind: EventKind, message: str) -> None:
        listener(Event(host, kind, message, None, time.monotonic() - started))

    async def one_host(name: str, items: list[Wanted]) -> None:
        async with gate:
            host_result = next(h for h in run.hosts if h.name == name)
            transport: Transport | None = None
            try:
                for w in items:
                    if w.claim.size is not None and w.claim.size > opts.max_bytes:
                        results[id(w)] = _copy(w, "", None, "too-large", _too_large(w, opts))
                        emit(name, "fetched", f"{w.artifact}: skipped, {_too_large(w, opts)}")
                        continue
                    if transport is None:
                        transport = transport_factory(hosts[name])
                        await transport.connect()
                    results[id(w)] = await _fetch_one(
                        transport, w, host_result, playbook, run_dir, names[id(w)], opts, emit
                    )
            except (ReproError, OSError, TimeoutError) as exc:
                for w in items:
                    if id(w) not in results:
                        results[id(w)] = _copy(w, "", None, "failed", _one_line(exc))
                emit(name, "fetched", f"failed: {_one_line(exc)}")
            finally:
                if transport is not None:
                    await transport.close()

    await asyncio.gather(*(one_host(n, items) for n, items in by_host.items()))
    return [results[id(w)] for w in wanted]


async def _fetch_one(
    transport: Transport,
    w: Wanted,
    host: HostResult,
    playbook: Playbook,
    run_dir: Path,
    name: str,
    opts: FetchOptions,
    emit: Callable[[str, EventKind, str], None],
) -> Copy:
    if not host.run_dir:
        return _copy(w, "", None, "failed", "the host's run directory is not known")
    work = host.work_dir(w.round)
    found = await transport.run(
        f"cd {shlex.quote(work)} && {{ {locate_command(playbook, w.artifact)}\n}}", timeout=60
    )
    rel = checked_relpath(found.stdout) if found.exit_status == 0 else None
    if rel is None:
        why = "gone" if found.exit_status != 0 else "not a plain path inside the work dir"
        return _copy(w, "", None, "failed", f"{w.artifact} in {work}: {why}")
    remote = f"{work}/{rel}"
    dest = run_dir / name
    # private: the copies (and diffoscope's reports beside them) may hold what a build leaked
    (run_dir / DIFF_DIR).mkdir(parents=True, exist_ok=True, mode=0o700)
    dest.parent.mkdir(exist_ok=True, mode=0o700)
    emit(w.host, "fetching", f"{w.artifact} ({_size(w.claim.size)})")
    last = [0.0]
    loop = asyncio.get_running_loop()

    def progress(count: int) -> None:
        # fabric calls this from its worker thread: hop to the loop before telling anyone
        now = time.monotonic()
        if now - last[0] >= _PROGRESS_EVERY:
            last[0] = now
            loop.call_soon_threadsafe(emit, w.host, "fetching", f"{w.artifact}: {_size(count)}")

    try:
        got = await transport.get(
            remote, dest, max_bytes=opts.max_bytes, timeout=opts.timeout, progress=progress
        )
    except TooLarge:
        return _copy(w, remote, None, "too-large", _too_large(w, opts))
    except HostError as exc:
        return _copy(w, remote, None, "failed", _one_line(exc))
    rel_local = str(dest.relative_to(run_dir))
    if got.sha256 != w.claim.sha256:
        # the host said one thing and sent another: tampering, or a file changed after hashing
        detail = (
            f"{w.host} reported {w.claim.sha256[:12]}… for {w.artifact} but sent bytes hashing"
            f" to {got.sha256[:12]}…"
        )
        emit(w.host, "fetched", detail)
        return _copy(w, remote, rel_local, "claim-mismatch", detail, got.size)
    emit(w.host, "fetched", f"{w.artifact} ({_size(got.size)}, sha256 verified)")
    return _copy(w, remote, rel_local, "ok", "", got.size)


def _copy(
    w: Wanted, remote: str, local: str | None, status: CopyStatus, detail: str, size: int | None = None
) -> Copy:
    return Copy(w.artifact, w.host, w.round, w.label, w.claim.sha256, remote, local, status,
                detail, size)  # fmt: skip


def _too_large(w: Wanted, opts: FetchOptions) -> str:
    return f"larger than the fetch cap of {_size(opts.max_bytes)} (raise it with --max-fetch)"


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
