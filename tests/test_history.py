"""The run history (repro/history.py): recording, the schema's migrations, two processes
recording at once, the timeline's changes, the first bad commit, import, and its views."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from repro import history
from repro.render import history as view
from tests.test_cli_inprocess import run_cli

H = {c: c * 64 for c in "abcdef"}
C = {i: f"{i:040x}" for i in range(1, 10)}


def report(
    n: int,
    commit: str | None,
    verdict: str,
    groups: dict[str, list[tuple[str, list[str]]]],
    hosts: dict[str, str] | None = None,
    playbook: str = "demo",
) -> dict[str, Any]:
    """A report dict as repro.report.to_dict makes it (the fields history reads)."""
    hosts = hosts or {"h1": "ok", "h2": "ok"}
    status = {"reproducible": "identical", "mismatch": "differs", "inconclusive": "incomplete"}
    return {
        "schema": "repro-report/1",
        "run_id": f"20260301T{n:06d}Z-abcdef",
        "playbook": playbook,
        "commit": commit,
        "vars": {"ref": "main"},
        "verdict": verdict,
        "exit_code": {"reproducible": 0, "mismatch": 1, "inconclusive": 3}[verdict],
        "started_at": f"2026-03-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "finished_at": None,
        "playbook_path": f"/pb/{playbook}.yaml",
        "quorum": 2,
        "reasons": [],
        "hosts": [
            {
                "name": k,
                "address": "",
                "status": v,
                "error": None if v == "ok" else "boom",
                "facts": {"cores": 2},
                "steps": [],
                "artifacts": {
                    name: {"sha256": sha, "size": 1}
                    for name, gs in groups.items()
                    for sha, hs in gs
                    if k in hs
                },
            }
            for k, v in hosts.items()
        ],
        "artifacts": [
            {
                "name": name,
                "status": status[verdict] if len(gs) > 1 else "identical",
                "groups": [{"sha256": s, "size": 1, "hosts": hs} for s, hs in gs],
                "missing": [],
                "unstable": [],
            }
            for name, gs in groups.items()
        ],
    }


def same(sha: str) -> list[tuple[str, list[str]]]:
    return [(sha, ["h1", "h2"])]


def split(a: str, b: str) -> list[tuple[str, list[str]]]:
    return [(a, ["h1"]), (b, ["h2"])]


def nightly(db: sqlite3.Connection) -> None:
    """Five nights: good at C1, C2 (new bin hash), C3 inconclusive, then C4 and C5 mismatch."""
    history.record(
        db, report(1, C[1], "reproducible", {"bin": same(H["a"]), "doc": same(H["b"])}), None
    )
    history.record(
        db, report(2, C[2], "reproducible", {"bin": same(H["c"]), "doc": same(H["b"])}), None
    )
    history.record(
        db,
        report(3, C[3], "inconclusive", {"bin": same(H["c"])}, {"h1": "ok", "h2": "failed"}),
        None,
    )
    history.record(
        db, report(4, C[4], "mismatch", {"bin": split(H["c"], H["d"]), "doc": same(H["b"])}), None
    )
    history.record(
        db,
        report(5, C[5], "mismatch", {"bin": split(H["c"], H["d"]), "doc": split(H["b"], H["e"])}),
        None,
    )


@pytest.fixture
def db(tmp_path: Path) -> Any:
    with history.opened(tmp_path / "h.sqlite") as conn:
        yield conn


def test_first_bad_names_the_last_good_and_first_mismatching_commit(db: Any) -> None:
    nightly(db)
    (found,) = history.first_bad(history.runs(db))
    assert found.run is not None
    assert found.run.last_good is not None and found.run.last_good.commit == C[2]
    assert found.run.first_bad.commit == C[4]  # the inconclusive night is stepped over
    per = {t.artifact: t for t in found.artifacts}
    # at C3 bin was identical on the one host that built it
    assert per["bin"].first_bad.commit == C[4] and per["bin"].last_good.commit == C[3]
    assert per["doc"].first_bad.commit == C[5] and per["doc"].last_good.commit == C[4]


def test_good_again_means_no_open_mismatch(db: Any) -> None:
    nightly(db)
    history.record(
        db, report(6, C[6], "reproducible", {"bin": same(H["f"]), "doc": same(H["b"])}), None
    )
    (found,) = history.first_bad(history.runs(db))
    assert found.run is None and found.artifacts == ()


def test_timeline_says_what_changed(db: Any) -> None:
    nightly(db)
    items = history.timeline(history.runs(db))
    assert [t.run.commit for t in items] == [C[i] for i in range(1, 6)]
    assert items[0].changes == ()
    kinds = {(c.kind, c.subject) for c in items[1].changes}
    assert kinds == {("artifact", "bin")}
    third = {(c.kind, c.subject, c.before, c.after) for c in items[2].changes}
    assert ("verdict", "", "reproducible", "inconclusive") in third
    assert ("host-status", "h2", "ok", "failed") in third
    assert ("artifact-gone", "doc", H["b"], "") in third
    text = view.table(items)
    assert (
        "verdict reproducible -> inconclusive" in text
        and f"bin: {H['a'][:12]} -> {H['c'][:12]}" in text
    )


def test_since_and_playbook_filter(db: Any) -> None:
    nightly(db)
    history.record(db, report(7, C[7], "reproducible", {"x": same(H["a"])}, playbook="other"), None)
    assert len(history.runs(db, playbook="other")) == 1
    assert [r.commit for r in history.runs(db, since="2026-03-01T00:00:04Z")] == [C[4], C[5], C[7]]
    assert history.parse_since("2026-03-01") == "2026-03-01T00:00:00Z"
    assert history.parse_since("2d", now=datetime(2026, 3, 3, tzinfo=UTC)) == (
        "2026-03-01T00:00:00Z"
    )


def test_recording_twice_keeps_one_row(db: Any) -> None:
    r = report(1, C[1], "reproducible", {"bin": same(H["a"])})
    assert history.record(db, r, None) is True
    assert history.record(db, r, None) is False
    assert len(history.runs(db)) == 1
    (run,) = history.runs(db, facts=True)  # facts are kept, read when asked for
    assert run.hosts[0].facts == {"cores": 2} and history.runs(db)[0].hosts[0].facts == {}


def test_a_version_1_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(history.MIGRATIONS[0])
    old.execute(
        "INSERT INTO runs (run_id, playbook, commit_id, verdict, exit_code, started_at) "
        "VALUES ('20260101T000000Z-000000', 'demo', ?, 'reproducible', 0, '2026-01-01T00:00:00Z')",
        (C[1],),
    )
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()
    with history.opened(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        (run,) = history.runs(db)
        assert run.commit == C[1] and run.ref is None
        indexes = {r[1] for r in db.execute("PRAGMA index_list(runs)")}
        assert "runs_by_playbook" in indexes


def test_a_newer_or_foreign_file_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(history.HistoryError, match="newer than this repro"):
        history.connect(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    code, _, err = run_cli("history", "--history", str(junk))
    assert code == 2 and "not a repro history file" in err
    code, _, err = run_cli("history", "--history", str(tmp_path / "none.sqlite"))
    assert code == 2 and "no history file" in err


def _writer(path: str, start: int, count: int, barrier: Any) -> None:
    barrier.wait()  # both processes begin writing at the same moment
    with history.opened(path) as db:
        for n in range(start, start + count):
            history.record(db, report(n, C[1], "reproducible", {"bin": same(H["a"])}), None)


def test_two_processes_recording_at_once_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: really two processes
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, s, 150, barrier)) for s in (1000, 2000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with history.opened(path) as db:
        got = history.runs(db)
    assert len(got) == 300 and all(len(r.hosts) == 2 and len(r.artifacts) == 1 for r in got)


def test_json_and_markdown_views(db: Any) -> None:
    nightly(db)
    entries = history.runs(db)
    data = json.loads(view.as_json(history.timeline(entries), history.first_bad(entries)))
    assert data["schema"] == "repro-history/1" and len(data["runs"]) == 5
    assert data["first_bad"][0]["run"]["first_bad"]["commit"] == C[4]
    assert data["runs"][1]["changes"][0]["kind"] == "artifact"
    md = view.first_bad_text(history.first_bad(entries), md=True)
    assert f"first mismatch at `{C[4]}`" in md


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs


def test_html_page_escapes_everything_recorded(db: Any) -> None:
    evil = '<script>alert(1)</script>"onmouseover=x'
    r = report(1, C[1], "mismatch", {evil: split(H["a"], H["b"])}, {evil: "ok", "h2": "failed"})
    r["hosts"][1]["error"] = "<img src=x onerror=alert(1)>"
    r["artifacts"][0]["groups"][0]["hosts"] = [evil]
    history.record(db, r, None)
    entries = history.runs(db)
    page = view.html_page(
        history.timeline(entries),
        history.first_bad(entries),
        {r["run_id"]: 'javascript:alert(1)/../x"><b>'},
    )
    parser = _Tags()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags and "b" not in parser.tags
    assert not any(k.startswith("on") for k, _ in parser.attrs)
    hrefs = [v for k, v in parser.attrs if k == "href"]
    assert hrefs and all(v and not v.startswith("javascript:") for v in hrefs)
    assert "default-src 'none'" in page


def test_cli_history_import_and_first_bad(tmp_path: Path) -> None:
    """`repro history import` reads run dirs written by real report files."""
    from repro.report import from_dict, write_report

    reports = tmp_path / "old-reports"
    for n, commit, verdict, groups in (
        (1, C[1], "reproducible", {"bin": same(H["a"])}),
        (2, C[2], "mismatch", {"bin": split(H["a"], H["b"])}),
    ):
        r = report(n, commit, verdict, groups)
        run, comparison = from_dict(r)
        write_report(reports / r["run_id"], run, comparison)
    (reports / "not-a-run").mkdir()
    (reports / "20260301T000009Z-abcdef").mkdir()
    (reports / "20260301T000009Z-abcdef" / "report.json").write_text("{broken")
    db_path = tmp_path / "h.sqlite"
    code, out, err = run_cli("history", "import", str(reports), "--history", str(db_path))
    assert code == 0 and "recorded 2 run(s)" in out and "1 skipped" in out, err
    code, out, _ = run_cli("history", "import", str(reports), "--history", str(db_path))
    assert "2 already there" in out
    code, out, _ = run_cli("history", "--first-bad", "--history", str(db_path))
    assert (
        code == 0 and f"first mismatch at {C[2]}" in out and f"last reproducible at {C[1]}" in out
    )
    page = tmp_path / "site" / "history.html"
    code, _, err = run_cli(
        "history", "--format", "html", "-o", str(page), "--history", str(db_path)
    )
    assert code == 0, err
    text = page.read_text()
    assert 'href="../old-reports/20260301T000001Z-abcdef/report.html"' in text


def test_bad_since_is_bad_input(tmp_path: Path) -> None:
    code, _, err = run_cli("history", "--since", "last tuesday", "--history", str(tmp_path / "x"))
    assert code == 2 and "--since 'last tuesday'" in err
    code, _, err = run_cli("history", "frobnicate", "--history", str(tmp_path / "x"))
    assert code == 2 and "the only action is `import DIR`" in err


def test_the_bench_script_runs(tmp_path: Path) -> None:
    """bench/history.py works (on a tiny history; its timings are the lead's to take)."""
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench" / "history.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--runs", "60", "--repeat", "1", "--dir", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["runs"] == 60 and set(result["goals"]) == {
        "history under 1 s",
        "recording under 50 ms",
    }
    with history.opened(tmp_path / "history.sqlite") as db:
        assert len(history.runs(db)) == 60 + 4  # and the runs recorded one by one
