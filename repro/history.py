"""Run history in one SQLite file: every finished run (verdict, hosts, artifact hash groups),
read back as a timeline per playbook, what changed between runs, and the first bad commit.

The file is written with the standard library's sqlite3 in WAL mode; every write is one
`BEGIN IMMEDIATE` transaction, so runs that finish at the same moment (two nightly jobs, two
bisect probes) queue for a moment instead of losing a record. The schema is versioned with
`PRAGMA user_version` and migrated forward when an older file is opened.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from repro.errors import ReportError

FILENAME = "history.sqlite"
#: how long a writer waits for another one to finish its transaction (ms)
BUSY_TIMEOUT_MS = 30_000

# Each entry moves the file from version i to i + 1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    # 1: runs, their hosts and their artifacts' hash groups
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        playbook TEXT NOT NULL,
        commit_id TEXT,
        verdict TEXT NOT NULL,
        exit_code INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        report_dir TEXT
    );
    CREATE TABLE hosts (
        run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        facts TEXT NOT NULL,
        PRIMARY KEY (run, name)
    );
    CREATE TABLE artifacts (
        run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        groups TEXT NOT NULL,
        PRIMARY KEY (run, name)
    );
    """,
    # 2: the ref a run was asked for (a branch builds a new commit every night), and an index
    # for the one query every command makes: one playbook's runs in time order
    """
    ALTER TABLE runs ADD COLUMN ref TEXT;
    CREATE INDEX runs_by_playbook ON runs (playbook, started_at, id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class HistoryError(ReportError):
    """The history file cannot be opened, read or written."""


# --- records ---------------------------------------------------------------------------------


# Named tuples, not dataclasses: a long history holds tens of thousands of these, and a
# frozen dataclass costs several times as much to make.
class HostEntry(NamedTuple):
    name: str
    status: str
    error: str | None
    facts: dict[str, Any]  # {} unless asked for (runs(facts=True))


class ArtifactEntry(NamedTuple):
    name: str
    status: str
    groups: tuple[tuple[str, tuple[str, ...]], ...]  # (sha256, hosts), largest group first

    @property
    def hashes(self) -> frozenset[str]:
        return frozenset(h for h, _ in self.groups)


@dataclass(frozen=True)
class RunEntry:
    """One recorded run, as `repro history` shows it."""

    run_id: str
    playbook: str
    commit: str | None
    ref: str | None
    verdict: str
    exit_code: int
    started_at: str
    finished_at: str | None
    report_dir: str | None
    hosts: tuple[HostEntry, ...] = ()
    artifacts: tuple[ArtifactEntry, ...] = ()

    def __repr__(self) -> str:
        return f"RunEntry({self.run_id!r}, {self.playbook!r}, {self.verdict})"


@dataclass(frozen=True)
class Change:
    """One thing that differs from the playbook's previous run."""

    kind: str  # verdict | artifact | artifact-new | artifact-gone | host-joined | host-left | host-status
    subject: str  # the artifact or host concerned ("" for the verdict)
    before: str
    after: str


@dataclass(frozen=True)
class TimelineEntry:
    run: RunEntry
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class Transition:
    """Where a playbook (or one artifact of it) went from reproducible to mismatching."""

    playbook: str
    artifact: str | None  # None: the run's verdict as a whole
    last_good: RunEntry | None  # None: it never was reproducible in the history
    first_bad: RunEntry


@dataclass(frozen=True)
class FirstBad:
    playbook: str
    run: Transition | None  # None: no mismatch recorded, or the latest runs are good again
    artifacts: tuple[Transition, ...]


# --- the file --------------------------------------------------------------------------------


def default_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / FILENAME


def connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open (and create or migrate) the history file; raises HistoryError naming it."""
    p = Path(path)
    if not create and not p.is_file():
        raise HistoryError(f"{p}: no history file (runs are recorded in <out>/{FILENAME})")
    try:
        if create:
            p.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(p, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise HistoryError(f"{p}: cannot open the history: {exc}") from exc
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        mode = _wal(db)
        if str(mode).lower() != "wal":
            raise HistoryError(f"{p}: cannot switch the history to WAL mode (got {mode})")
        db.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL; a commit costs no fsync
        _migrate(db, p)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise HistoryError(f"{p}: not a repro history file: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db


def _wal(db: sqlite3.Connection) -> str:
    """Switch to WAL. Two processes opening a new file at once can both want to switch; SQLite
    then answers "locked" at once instead of calling the busy handler, so wait here (bounded)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise HistoryError(
            f"{path}: history schema {version} is newer than this repro's ({SCHEMA_VERSION})"
        )
    with _writing(db):
        # Read again under the write lock: another process may have migrated meanwhile.
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for i in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[i]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {i + 1}")


def _statements(script: str) -> Iterator[str]:
    # executescript would COMMIT our transaction; these scripts have no ';' inside a statement.
    for part in script.split(";"):
        if part.strip():
            yield part


@contextmanager
def _writing(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (IMMEDIATE), so two writers queue, never deadlock."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@contextmanager
def opened(path: str | Path, *, create: bool = True) -> Iterator[sqlite3.Connection]:
    db = connect(path, create=create)
    try:
        yield db
    finally:
        db.close()


# --- writing ---------------------------------------------------------------------------------


def record(db: sqlite3.Connection, report: dict[str, Any], report_dir: str | None) -> bool:
    """Record one run from its report dict (`repro.schema.to_dict`). False: already there."""
    variables = report.get("vars") or {}
    ref = variables.get("ref") if isinstance(variables, dict) else None
    try:
        with _writing(db):
            cur = db.execute(
                "INSERT OR IGNORE INTO runs (run_id, playbook, commit_id, ref, verdict, "
                "exit_code, started_at, finished_at, report_dir) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    report["run_id"],
                    report["playbook"],
                    report.get("commit"),
                    ref if isinstance(ref, str) else None,
                    report["verdict"],
                    report["exit_code"],
                    report["started_at"],
                    report.get("finished_at"),
                    report_dir,
                ),
            )
            if cur.rowcount == 0:
                return False
            rowid = cur.lastrowid
            db.executemany(
                "INSERT INTO hosts (run, name, status, error, facts) VALUES (?,?,?,?,?)",
                [
                    (rowid, h["name"], h["status"], h.get("error"), json.dumps(h.get("facts", {})))
                    for h in report["hosts"]
                ],
            )
            db.executemany(
                "INSERT INTO artifacts (run, name, status, groups) VALUES (?,?,?,?)",
                [
                    (
                        rowid,
                        a["name"],
                        a["status"],
                        json.dumps([[g["sha256"], g["hosts"]] for g in a["groups"]]),
                    )
                    for a in report["artifacts"]
                ],
            )
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot record run {report.get('run_id')!r}: {exc}") from exc
    return True


def record_run(path: str | Path, report: dict[str, Any], report_dir: str | Path | None) -> bool:
    """Open the history at `path`, record one run, close."""
    with opened(path) as db:
        return record(db, report, str(report_dir) if report_dir is not None else None)


@dataclass
class ImportResult:
    recorded: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (dir, why)


def import_runs(db: sqlite3.Connection, root: Path) -> ImportResult:
    """Record every run dir under `root` (or `root` itself) that has a readable report.json."""
    from repro.report import load_report
    from repro.schema import to_dict

    if not root.is_dir():
        raise HistoryError(f"{root}: no such directory")
    dirs = [root] if (root / "report.json").is_file() else sorted(p for p in root.iterdir())
    result = ImportResult()
    for d in dirs:
        if not d.is_dir() or d.is_symlink() or not (d / "report.json").is_file():
            continue
        try:
            run, comparison = load_report(d)
        except ReportError as exc:
            result.skipped.append((str(d), str(exc)))
            continue
        if record(db, to_dict(run, comparison), str(d.resolve())):
            result.recorded.append(run.run_id)
        else:
            result.already.append(run.run_id)
    return result


# --- reading ---------------------------------------------------------------------------------


_RELATIVE = re.compile(r"^(\d{1,5})([hdw])$")


def parse_since(text: str, *, now: datetime | None = None) -> str:
    """`--since`: 7d, 24h, 2w, or an ISO date/time (UTC); returns the ISO bound runs compare to."""
    from repro.errors import UsageError

    now = now or datetime.now(UTC)
    m = _RELATIVE.match(text)
    if m:
        unit = {"h": "hours", "d": "days", "w": "weeks"}[m[2]]
        when = now - timedelta(**{unit: int(m[1])})
    else:
        try:
            when = datetime.fromisoformat(text)  # 3.11 reads a trailing Z too
        except ValueError:
            raise UsageError(
                f"--since {text!r}: expected 7d, 24h, 2w or a date like 2026-03-01"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def runs(
    db: sqlite3.Connection,
    *,
    playbook: str | None = None,
    since: str | None = None,
    commit: str | None = None,
    facts: bool = False,
) -> list[RunEntry]:
    """Recorded runs, oldest first, with hosts and artifacts. Start times have whole seconds:
    runs that start in the same one are in the order they were recorded (ended)."""
    where, args = [], []
    if playbook is not None:
        where.append("playbook = ?")
        args.append(playbook)
    if commit is not None:
        where.append("commit_id = ?")
        args.append(commit)
    if since is not None:
        where.append("started_at >= ?")
        args.append(since)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    try:
        rows = db.execute(
            "SELECT id, run_id, playbook, commit_id, ref, verdict, exit_code, started_at, "
            f"finished_at, report_dir FROM runs {clause} ORDER BY started_at, id",
            args,
        ).fetchall()
        hosts: dict[int, list[HostEntry]] = {}
        arts: dict[int, list[ArtifactEntry]] = {}
        # One query per table for all runs: 10,000 runs must read in well under a second.
        sub = f"SELECT id FROM runs {clause}" if clause else ""
        only = f"WHERE run IN ({sub})" if sub else ""
        # Facts are the bulk of the file and no view of the timeline needs them: read on demand.
        column = "facts" if facts else "NULL"
        for run, name, status, error, text in db.execute(
            f"SELECT run, name, status, error, {column} FROM hosts {only} ORDER BY run, rowid",
            args,
        ):
            found = _json(text, {}) if text is not None else {}
            hosts.setdefault(run, []).append(HostEntry(name, status, error, found))
        for run, name, status, groups in db.execute(
            f"SELECT run, name, status, groups FROM artifacts {only} ORDER BY run, name",
            args,
        ):
            parsed = tuple([(str(g[0]), tuple(g[1])) for g in _json(groups, [])])
            arts.setdefault(run, []).append(ArtifactEntry(name, status, parsed))
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot read the history: {exc}") from exc
    return [
        RunEntry(
            run_id=r[1],
            playbook=r[2],
            commit=r[3],
            ref=r[4],
            verdict=r[5],
            exit_code=r[6],
            started_at=r[7],
            finished_at=r[8],
            report_dir=r[9],
            hosts=tuple(hosts.get(r[0], ())),
            artifacts=tuple(arts.get(r[0], ())),
        )
        for r in rows
    ]


def _json(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return default


def by_playbook(entries: Iterable[RunEntry]) -> dict[str, list[RunEntry]]:
    out: dict[str, list[RunEntry]] = {}
    for e in entries:
        out.setdefault(e.playbook, []).append(e)
    return dict(sorted(out.items()))


def changes(prev: RunEntry | None, cur: RunEntry) -> tuple[Change, ...]:
    """What differs in `cur` from the same playbook's previous run `prev`."""
    if prev is None:
        return ()
    out: list[Change] = []
    if prev.verdict != cur.verdict:
        out.append(Change("verdict", "", prev.verdict, cur.verdict))
    before = {h.name: h for h in prev.hosts}
    after = {h.name: h for h in cur.hosts}
    for name in after.keys() - before.keys():
        out.append(Change("host-joined", name, "", after[name].status))
    for name in before.keys() - after.keys():
        out.append(Change("host-left", name, before[name].status, ""))
    for name in sorted(after.keys() & before.keys()):
        if before[name].status != after[name].status:
            out.append(Change("host-status", name, before[name].status, after[name].status))
    old = {a.name: a for a in prev.artifacts}
    new = {a.name: a for a in cur.artifacts}
    for name in sorted(new.keys() | old.keys()):
        a, b = old.get(name), new.get(name)
        if a is None and b is not None:
            out.append(Change("artifact-new", name, "", _hash_list(b)))
        elif b is None and a is not None:
            out.append(Change("artifact-gone", name, _hash_list(a), ""))
        elif a is not None and b is not None and a.hashes != b.hashes:
            out.append(Change("artifact", name, _hash_list(a), _hash_list(b)))
    out.sort(key=lambda c: (c.kind != "verdict", c.kind, c.subject))
    return tuple(out)


def _hash_list(a: ArtifactEntry) -> str:
    return " ".join(h for h, _ in a.groups)


def timeline(entries: list[RunEntry]) -> list[TimelineEntry]:
    """Each run with its changes since the previous run of its playbook (entries oldest first)."""
    last: dict[str, RunEntry] = {}
    out = []
    for e in entries:
        out.append(TimelineEntry(e, changes(last.get(e.playbook), e)))
        last[e.playbook] = e
    return out


def first_bad(entries: list[RunEntry]) -> list[FirstBad]:
    """Per playbook: the last reproducible run before its current mismatch and the first
    mismatching one after it; the same per artifact. Inconclusive runs are stepped over."""
    out = []
    for playbook, rs in by_playbook(entries).items():
        whole = _transition(playbook, None, [(r, r.verdict) for r in rs])
        states: dict[str, list[tuple[RunEntry, str]]] = {}
        for r in rs:  # one pass: a Guix build compares dozens of artifacts per run
            for a in r.artifacts:
                states.setdefault(a.name, []).append((r, _artifact_verdict(a)))
        per_artifact = []
        for name in sorted(states):
            t = _transition(playbook, name, states[name])
            if t is not None:
                per_artifact.append(t)
        out.append(FirstBad(playbook, whole, tuple(per_artifact)))
    return out


def _artifact_verdict(a: ArtifactEntry) -> str:
    return {"identical": "reproducible", "differs": "mismatch"}.get(a.status, "inconclusive")


def _transition(
    playbook: str, artifact: str | None, states: list[tuple[RunEntry, str]]
) -> Transition | None:
    """The newest good -> bad step, if the newest conclusive state is bad."""
    conclusive = [(r, v) for r, v in states if v in ("reproducible", "mismatch")]
    if not conclusive or conclusive[-1][1] != "mismatch":
        return None
    i = len(conclusive) - 1
    while i > 0 and conclusive[i - 1][1] == "mismatch":
        i -= 1
    last_good = conclusive[i - 1][0] if i > 0 else None
    return Transition(playbook, artifact, last_good, conclusive[i][0])


def latest_at_commit(db: sqlite3.Connection, playbook: str, commit: str) -> RunEntry | None:
    """The newest conclusive run of `playbook` at `commit`, if any (bisect reuses it)."""
    found = [
        r
        for r in runs(db, playbook=playbook, commit=commit)
        if r.verdict in ("reproducible", "mismatch")
    ]
    return found[-1] if found else None


def disagreeing_hosts(run: RunEntry) -> list[str]:
    """Two hosts that built different bytes in `run` (one from each of the first two groups
    of the first differing artifact), or [] if none did: all a bisect needs to build on."""
    for a in run.artifacts:
        if len(a.groups) > 1 and a.groups[0][1] and a.groups[1][1]:
            return [a.groups[0][1][0], a.groups[1][1][0]]
    return []
