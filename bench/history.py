"""How fast the run history is: `repro history` over 10,000 recorded runs (goal: under 1 s) and
recording one more run into it (goal: under 50 ms), on a real SQLite file on this disk.

Usage: bench/history.py [--runs 10000] [--hosts 3] [--artifacts 4] [--dir DIR] [--out out.json]
Run it on a quiet machine: timings taken under someone else's load mean nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repro import history
from repro.cli import main


def sha(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def a_report(n: int, hosts: int, artifacts: int, playbooks: int) -> dict[str, Any]:
    """A report like a nightly run's: facts of a real host's size, an artifact that changes
    hash every 7th night and one host that disagrees every 50th."""
    names = [f"h{i}" for i in range(1, hosts + 1)]
    when = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=n)
    commit = sha("commit", n // 3)[:40]
    arts = []
    for a in range(artifacts):
        good = sha("art", a, n // 7)
        if n % 50 == 0 and a == 0:
            groups = [{"sha256": good, "size": 1000, "hosts": names[:-1]},
                      {"sha256": sha("odd", n), "size": 1001, "hosts": names[-1:]}]  # fmt: skip
        else:
            groups = [{"sha256": good, "size": 1000, "hosts": names}]
        arts.append({"name": f"dist/artifact-{a}.tar.gz", "status": "identical"
                     if len(groups) == 1 else "differs", "groups": groups})  # fmt: skip
    facts = {f"fact_{k}": f"value {k} " * 4 for k in range(40)}
    return {
        "run_id": when.strftime("%Y%m%dT%H%M%SZ") + f"-{n % 0xFFFFFF:06x}",
        "playbook": f"playbook-{n % playbooks}",
        "commit": commit,
        "vars": {"ref": "main"},
        "verdict": "mismatch" if n % 50 == 0 else "reproducible",
        "exit_code": 1 if n % 50 == 0 else 0,
        "started_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finished_at": None,
        "hosts": [{"name": h, "status": "ok", "error": None, "facts": facts} for h in names],
        "artifacts": arts,
    }


def timed(fn: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "median_ms": round(statistics.median(s) * 1000, 2),
        "p95_ms": round(s[min(len(s) - 1, int(len(s) * 0.95))] * 1000, 2),
        "max_ms": round(s[-1] * 1000, 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    where = Path(args.dir or tempfile.mkdtemp(prefix="repro-bench-history-"))
    path = where / "history.sqlite"
    path.unlink(missing_ok=True)
    start = time.perf_counter()
    with history.opened(path) as db:
        for n in range(args.runs):
            history.record(db, a_report(n, args.hosts, args.artifacts, args.playbooks), None)
    fill = time.perf_counter() - start
    size = sum(p.stat().st_size for p in where.glob("history.sqlite*"))
    extra = iter(range(args.runs, args.runs + 10_000))

    def record_one() -> None:  # what a run's end pays: open, migrate check, insert, close
        history.record_run(path, a_report(next(extra), args.hosts, args.artifacts, 2), None)

    def cli(*argv: str) -> None:
        sink = io.StringIO()
        assert main(["history", "--history", str(path), *argv], stdout=sink, stderr=sink) == 0

    result: dict[str, Any] = {
        "runs": args.runs,
        "hosts": args.hosts,
        "artifacts": args.artifacts,
        "fill_s": round(fill, 2),
        "file_mb": round(size / 1e6, 1),
        "record_one_run": summary(timed(record_one, args.repeat * 4)),
        "history_table": summary(timed(lambda: cli(), args.repeat)),
        "history_one_playbook": summary(timed(lambda: cli("-p", "playbook-0"), args.repeat)),
        "history_first_bad": summary(timed(lambda: cli("--first-bad"), args.repeat)),
        "history_json": summary(timed(lambda: cli("--format", "json"), args.repeat)),
        "history_html": summary(
            timed(lambda: cli("--format", "html", "-o", str(where / "h.html")), args.repeat)
        ),
    }
    # what a user waits for at the prompt: a fresh interpreter, imports and all
    cmd = [sys.executable, "-m", "repro.cli", "history", "--history", str(path)]
    result["history_table_process"] = summary(
        timed(lambda: subprocess.run(cmd, check=True, capture_output=True), args.repeat)
    )
    result["goals"] = {
        "history under 1 s": result["history_table_process"]["median_ms"] < 1000,
        "recording under 50 ms": result["record_one_run"]["median_ms"] < 50,
    }
    return result


def main_bench() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--artifacts", type=int, default=4)
    p.add_argument("--playbooks", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dir", help="where the history file goes (default: a new temp dir)")
    p.add_argument("--out", help="also write the results here as JSON")
    args = p.parse_args()
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main_bench()
