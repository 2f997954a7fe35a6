"""Why two copies of an artifact differ: the real diffoscope on each pair, its output kept in the
run dir and a short bounded summary (differing members, first differing lines) read from --json.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

#: how long one diffoscope run may take (seconds)
DEFAULT_TIMEOUT = 600.0
#: --max-report-size for its text and HTML reports (bytes)
MAX_REPORT = 20 * 1024 * 1024
#: what the summary keeps, so a report stays readable whatever the difference
MAX_MEMBERS = 6
MAX_LINES = 4
MAX_LINE = 160
#: how to get diffoscope, for the one line shown when it is missing
INSTALL = "apt-get install diffoscope-minimal (or: pip install 'repro[diffoscope]')"
_JSON_LIMIT = 64 * 1024 * 1024  # a --json report larger than this is not parsed

PairStatus = Literal["differ", "same", "error", "timeout", "no-diffoscope"]
_METADATA = ("file list", "stat {}", "tar --full-time", "zipinfo", "ar t", "file metadata")


@dataclass(frozen=True)
class Member:
    """One differing piece inside the artifacts: a path of nested names, and how it differs."""

    path: tuple[str, ...]  # outermost first, below the artifact itself
    kind: str  # "content", "metadata", "only in one" or what diffoscope's comment says
    lines: tuple[str, ...] = ()  # the first differing lines, "-old" / "+new"

    def __repr__(self) -> str:
        return f"Member({' > '.join(self.path)!r}, {self.kind})"


@dataclass(frozen=True)
class PairDiff:
    """diffoscope's verdict on one pair of copies (the largest group's against another)."""

    artifact: str
    left: str  # "group 1 (lab1)" / "round 1 (lab2)"
    right: str
    status: PairStatus
    members: tuple[Member, ...] = ()
    text: str | None = None  # diffoscope's text report, relative to the run dir
    html: str | None = None
    detail: str = ""  # one line: trouble, or the install command
    truncated: bool = False  # more members differ than the summary keeps

    def __repr__(self) -> str:
        return f"PairDiff({self.artifact!r}, {self.left} vs {self.right}, {self.status})"


def available() -> str | None:
    """The diffoscope executable, or None."""
    return shutil.which("diffoscope")


async def run_pair(
    artifact: str,
    left: tuple[str, Path],
    right: tuple[str, Path],
    *,
    run_dir: Path,
    out_stem: str,
    timeout: float = DEFAULT_TIMEOUT,
    max_report: int = MAX_REPORT,
    strip: tuple[str, ...] = (),
) -> PairDiff:
    """diffoscope LEFT RIGHT, keeping text, HTML and JSON reports as `out_stem`.{txt,html,json}
    (relative to run_dir). Exit 0: same; 1: they differ; anything else, or a timeout: trouble."""
    exe = available()
    if exe is None:
        members, truncated = stdlib_members(left[1], right[1])
        return PairDiff(artifact, left[0], right[0], "no-diffoscope", members, None, None,
                        f"diffoscope is not installed: {INSTALL}", truncated)  # fmt: skip
    stem = run_dir / out_stem
    stem.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text, page, js = (stem.with_suffix(s) for s in (".txt", ".html", ".json"))
    argv = [
        exe, "--no-progress", "--text", str(text), "--html", str(page), "--json", str(js),
        "--max-report-size", str(max_report), "--max-text-report-size", str(max_report),
        "--timeout", str(max(1, int(timeout * 0.9))), str(left[1]), str(right[1]),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its helpers (readelf, objdump …) die with it on a timeout
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await proc.wait()
        return PairDiff(artifact, left[0], right[0], "timeout",
                        detail=f"diffoscope did not finish within {timeout:g}s")  # fmt: skip
    rel = {p: str(p.relative_to(run_dir)) if p.exists() else None for p in (text, page)}
    if proc.returncode == 0:
        return PairDiff(artifact, left[0], right[0], "same", (), rel[text], rel[page])
    if proc.returncode != 1:
        why = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return PairDiff(artifact, left[0], right[0], "error", (), rel[text], rel[page],
                        f"diffoscope exited {proc.returncode}: {why[0][:200]}")  # fmt: skip
    members, truncated = members_from_json(js, strip)
    return PairDiff(artifact, left[0], right[0], "differ", members, rel[text], rel[page],
                    "", truncated)  # fmt: skip


# --- reading diffoscope's --json ---------------------------------------------------------------


def members_from_json(
    path: Path, strip: tuple[str, ...] = ()
) -> tuple[tuple[Member, ...], bool]:
    """The differing leaves of a diffoscope --json report, at most MAX_MEMBERS of them, the
    most telling first: files inside the artifact, then strings and debug info (where a
    leaked path or date shows), then the rest in diffoscope's order. `strip`: the prefixes
    of our local file names, which diffoscope shows in the name of a decompressed member."""
    try:
        if path.stat().st_size > _JSON_LIMIT:
            return (), True
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return (), False
    found = [_renamed(m, strip) for m in sorted(_leaves(data, ()), key=_rank)]
    return tuple(found[:MAX_MEMBERS]), len(found) > MAX_MEMBERS


def _rank(member: Member) -> int:
    last = member.path[-1] if member.path else ""
    if "{}" not in last:
        return 0  # a file inside the artifact, not a tool's view of one
    return 1 if any(t in last for t in ("strings", "debug-dump=info", "debug-dump=rawline")) else 2


def _renamed(member: Member, prefixes: tuple[str, ...]) -> Member:
    """The first path element without our own `<label>-<host>-` file-name prefix."""
    if not member.path or not prefixes:
        return member
    first = member.path[0]
    for prefix in prefixes:
        if first.startswith(prefix) and len(first) > len(prefix):
            return Member((first[len(prefix) :], *member.path[1:]), member.kind, member.lines)
    return member


def _leaves(node: Any, trail: tuple[str, ...]) -> Iterator[Member]:
    if not isinstance(node, dict):
        return
    here = trail
    source = node.get("source1")
    if trail != () or "diffoscope-json-version" not in node:
        # the top node names the two fetched files: the path starts below them
        here = (*trail, _clip(str(source)))
    details = node.get("details") or []
    diff = node.get("unified_diff")
    comments = [str(c) for c in node.get("comments") or []]
    if diff or (comments and not details):
        kind = "metadata" if any(m in str(source) for m in _METADATA) else "content"
        if comments and not diff:
            kind = _clip(comments[0])
        yield Member(here, kind, _first_lines(str(diff or "")))
    for child in details if isinstance(details, list) else []:
        yield from _leaves(child, here)


def _first_lines(diff: str) -> tuple[str, ...]:
    """The first removed and the first added lines (half of MAX_LINES each), in diff order."""
    out: list[str] = []
    taken = {"-": 0, "+": 0}
    for line in diff.splitlines():
        sign = line[:1]
        if sign in taken and not line.startswith(("+++", "---")) and taken[sign] < MAX_LINES // 2:
            taken[sign] += 1
            out.append(_clip(line))
            if len(out) == MAX_LINES:
                break
    return tuple(out)


def _clip(text: str) -> str:
    one = " ".join(text.split())
    return one if len(one) <= MAX_LINE else one[: MAX_LINE - 1] + "…"


# --- without diffoscope: archive members, with the standard library ---------------------------


def stdlib_members(left: Path, right: Path) -> tuple[tuple[Member, ...], bool]:
    """Which members of two archives (tar, gzip, zip, ar/.deb) differ, by content hash.
    Cheap and shallow; nothing when the files are not archives the stdlib reads."""
    try:
        a, b = _listing(left), _listing(right)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, ValueError):
        return (), False
    if a is None or b is None:
        return (), False
    found = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            found.append(Member((name,), "only in one"))
        elif a[name][0] != b[name][0]:
            found.append(Member((name,), "content"))
        elif a[name][1] != b[name][1]:
            found.append(Member((name,), "metadata"))
    # an archive inside (a .deb's data.tar.xz) differs because its members do: show those;
    # and files before directories, whose dates differ along with their files'
    names = {m.path[0] for m in found}
    found = [m for m in found if not any(n.startswith(m.path[0] + "/") for n in names)]
    found.sort(key=lambda m: len((a.get(m.path[0]) or b[m.path[0]])[0]) == 1)
    return tuple(found[:MAX_MEMBERS]), len(found) > MAX_MEMBERS


Listing = dict[str, tuple[str, str]]  # member -> (content sha256, metadata)


def _listing(path: Path) -> Listing | None:
    with path.open("rb") as f:
        magic = f.read(8)
    if magic.startswith(b"!<arch>\n"):
        return _ar(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return {i.filename: (_digest(z.open(i)), f"{i.date_time} {i.external_attr}")
                    for i in z.infolist()}  # fmt: skip
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as t:
            return _tar(t)
    if magic.startswith(b"\x1f\x8b"):
        with gzip.open(path) as g:
            return {path.name.removesuffix(".gz"): (_digest(g), "")}
    return None


def _tar(t: tarfile.TarFile) -> Listing:
    out: Listing = {}
    for m in t:
        fh = t.extractfile(m) if m.isfile() else None
        meta = f"{m.mode:o} {m.uid}:{m.gid} {m.mtime} {m.linkname}"
        out[m.name] = (_digest(fh) if fh else m.type.decode("latin-1"), meta)
    return out


def _ar(path: Path) -> Listing:
    """An ar archive (a .deb): each member, and the members of its inner tarballs."""
    out: Listing = {}
    with path.open("rb") as f:
        f.seek(8)
        while header := f.read(60):
            if len(header) < 60:
                break
            name = header[:16].decode("latin-1").strip().rstrip("/")
            size = int(header[48:58].decode("latin-1").strip() or 0)
            start = f.tell()
            if ".tar" in name:
                with tarfile.open(fileobj=_Window(f, start, size)) as t:  # type: ignore[call-overload]
                    out.update({f"{name}/{k}": v for k, v in _tar(t).items()})
            f.seek(start)
            out[name] = (_digest(_Window(f, start, size)), "")
            f.seek(start + size + (size & 1))
    return out


class _Window:
    """A read-only view of `size` bytes of `f` from `start` (an ar member, without copying)."""

    def __init__(self, f: IO[bytes], start: int, size: int) -> None:
        self.f, self.start, self.size, self.pos = f, start, size, 0

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.pos
        n = left if n < 0 else min(n, left)
        self.f.seek(self.start + self.pos)
        data = self.f.read(n)
        self.pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = {0: pos, 1: self.pos + pos, 2: self.size + pos}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def _digest(fh: Any) -> str:
    h = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()
