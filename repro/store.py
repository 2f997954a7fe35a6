"""The run directory, one owner: where every file of a run lives, on the controller
(`reports/<run-id>/…`) and on each host (`<work base>/<run-id>/…`), and how local files are written.

Controller side (`RunDir`), written by session (run.json), runner (logs) and report (report.*):
  <out>/<run-id>/run.json                  the plan, for --resume and cancel
  <out>/<run-id>/report.<ext>              report.json (the contract), report.md, report.html
  <out>/<run-id>/hosts/<host>/NN-<step>.log       a step's output (round 1)
  <out>/<run-id>/hosts/<host>/rR-NN-<step>.log    the same step in round R

Host side (`RemoteRun`), under `repro_work_dir` (default ~/.cache/repro/runs):
  <base>/<run-id>/steps/         the supervisor's files per round and step (see repro.detach)
  <base>/<run-id>/work/          round 1's work dir: the build and its artifacts
  <base>/<run-id>/work-rR/       round R's work dir
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from repro.inventory import Host

DEFAULT_WORK_BASE = "~/.cache/repro/runs"
RUN_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")
PLAN_FILE = "run.json"
REPORT_STEM = "report"
DIFF_DIR = "diff"  # copies fetched on a mismatch and diffoscope's reports (repro.fetch)
HOSTS_DIR = "hosts"
STEPS_DIR = "steps"
#: a host's answer for its run dir must be a plain absolute path: it goes into every command
_SAFE_REMOTE_PATH = re.compile(r"/[A-Za-z0-9_./+@=,:-]*")


def new_run_id() -> str:
    """A fresh run id: the UTC time it started and 24 random bits (20261125T194203Z-1a2b3c)."""
    now = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


# --- the controller's side -------------------------------------------------------------------


@dataclass(frozen=True)
class RunDir:
    """One run's directory on the controller: `<out>/<run-id>`."""

    path: Path

    @classmethod
    def of(cls, out_dir: str | Path, run_id: str) -> RunDir:
        return cls(Path(out_dir) / run_id)

    @property
    def plan(self) -> Path:
        return self.path / PLAN_FILE

    def report(self, ext: str) -> Path:
        """`report.<ext>`: the report in one format (the format table names `ext`)."""
        return self.path / f"{REPORT_STEM}.{ext}"

    def host(self, host: str) -> Path:
        return self.path / HOSTS_DIR / host

    def step_log(self, host: str, rnd: int, index: int, step: str) -> Path:
        """Where a step's output is kept; a report names it relative to the run dir."""
        name = f"{index:02d}-{step}.log" if rnd == 1 else f"r{rnd}-{index:02d}-{step}.log"
        return self.host(host) / name

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.path))

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def atomic_write(path: Path, text: str | bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `text` (UTF-8; bytes as they are) so readers see the old file or the
    new, never a part."""
    # The temp file sits in the same directory, so os.replace is a rename on one filesystem.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sync_dir(directory: Path) -> None:
    """Make renames in `directory` durable: they are only once its entry reaches the disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the host's side -------------------------------------------------------------------------


def work_base(host: Host) -> str:
    """Where a host keeps its runs, as the inventory puts it (a leading `~` is its $HOME)."""
    return str(host.vars.get("repro_work_dir") or DEFAULT_WORK_BASE).rstrip("/") or "/"


def requested_run_dir(host: Host, run_id: str) -> str:
    """The run's directory on `host` before the host has resolved it (may start with `~/`)."""
    return f"{work_base(host).rstrip('/')}/{run_id}"


def shell_path(path: str) -> str:
    """`path` as a shell word; a leading `~/` stays the host's $HOME, the rest is quoted."""
    if path.startswith("~/"):
        return f'"$HOME"{shlex.quote(path[1:])}'
    return shlex.quote(path)


def plain_remote_path(path: str) -> bool:
    """Whether a host's answer for a directory is a plain absolute path, safe in a command."""
    return bool(_SAFE_REMOTE_PATH.fullmatch(path)) and "/../" not in path + "/"


@dataclass(frozen=True)
class RemoteRun:
    """One run's directory on one host. `root` is absolute once the host resolved it; the
    unresolved form (`~/…`) serves only scripts that expand it themselves (cancel)."""

    root: str

    @classmethod
    def requested(cls, host: Host, run_id: str) -> RemoteRun:
        return cls(requested_run_dir(host, run_id))

    @property
    def steps(self) -> str:
        return f"{self.root}/{STEPS_DIR}"

    def work(self, rnd: int) -> str:
        """Round `rnd`'s work dir: the build runs there and its artifacts are hashed there."""
        return f"{self.root}/work" if rnd == 1 else f"{self.root}/work-r{rnd}"

    def artifact(self, rnd: int, name: str, spec_dir: str = ".") -> str:
        """An artifact named `name` in a report, found under its spec's `dir` in round `rnd`.

        `name` must already have passed `repro.artifacts.safe_name` (the host sent it).
        """
        base = self.work(rnd) if spec_dir == "." else f"{self.work(rnd)}/{spec_dir}"
        return f"{base}/{name}"

    # per round and step, in the steps dir (the supervisor's file names: repro.detach)
    @staticmethod
    def plan(rnd: int) -> str:
        return f"{rnd}-plan"

    @staticmethod
    def key(rnd: int, index: int) -> str:
        return f"{rnd}-{index:02d}"

    @staticmethod
    def hash_key(rnd: int) -> str:
        return f"{rnd}-hash"

    def plan_lock(self, rnd: int) -> str:
        return f"{self.steps}/{self.plan(rnd)}.lock"

    def script(self, key: str) -> str:
        return f"{self.steps}/{key}.sh"

    def log(self, key: str) -> str:
        return f"{self.steps}/{key}.log"

    def err(self, key: str) -> str:
        return f"{self.steps}/{key}.err"

    def __repr__(self) -> str:
        return f"RemoteRun({self.root!r})"


#: made with the run dir by the facts round trip, so the launcher has no mkdir to run
FIRST_SUBDIRS = (STEPS_DIR, "work")
