"""The run directory's layout, on the controller and on a host, as one module states it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from repro.inventory import Host
from repro.store import (
    RUN_ID_RE,
    RemoteRun,
    RunDir,
    new_run_id,
    plain_remote_path,
    requested_run_dir,
    shell_path,
)

RID = "20261127T065000Z-0a1b2c"


def test_local_layout() -> None:
    d = RunDir.of("reports", RID)
    assert d.path == Path("reports") / RID
    assert d.plan == d.path / "run.json"
    assert d.report("json") == d.path / "report.json"
    assert d.step_log("h1", 1, 2, "build") == d.path / "hosts/h1/02-build.log"
    assert d.step_log("h1", 3, 2, "build") == d.path / "hosts/h1/r3-02-build.log"
    assert d.relative(d.step_log("h1", 1, 1, "x")) == "hosts/h1/01-x.log"


def test_remote_layout() -> None:
    r = RemoteRun("/srv/runs/" + RID)
    assert r.steps == f"/srv/runs/{RID}/steps"
    assert (r.work(1), r.work(2)) == (f"/srv/runs/{RID}/work", f"/srv/runs/{RID}/work-r2")
    assert (r.plan(2), r.key(2, 3), r.hash_key(2)) == ("2-plan", "2-03", "2-hash")
    assert r.plan_lock(1) == f"{r.steps}/1-plan.lock"
    assert (r.script("1-01"), r.log("1-01"), r.err("1-hash")) == (
        f"{r.steps}/1-01.sh", f"{r.steps}/1-01.log", f"{r.steps}/1-hash.err"
    )  # fmt: skip
    assert r.artifact(2, "bin/x", "out") == f"/srv/runs/{RID}/work-r2/out/bin/x"
    assert r.artifact(1, "x") == f"/srv/runs/{RID}/work/x"


def test_the_work_base_comes_from_the_inventory() -> None:
    assert requested_run_dir(Host("a", "127.0.0.1"), RID) == f"~/.cache/repro/runs/{RID}"
    host = Host("a", "127.0.0.1", vars={"repro_work_dir": "/scratch/r/"})
    assert RemoteRun.requested(host, RID).steps == f"/scratch/r/{RID}/steps"


def test_shell_path_expands_only_a_leading_tilde() -> None:
    out = subprocess.run(
        ["sh", "-c", f"printf %s {shell_path('~/a b/$x')} {shell_path('/c/~d')}"],
        env={"HOME": "/h", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out == "/h/a b/$x/c/~d"


def test_a_hosts_answer_must_be_a_plain_absolute_path() -> None:
    assert plain_remote_path("/home/b/.cache/repro/runs/x")
    for bad in ("", "relative", "/a/../b", "/a/..", "/a b", "/a\nb", "/a\n", "/a;b", "/$(x)"):
        assert not plain_remote_path(bad), bad


def test_run_ids() -> None:
    assert RUN_ID_RE.match(new_run_id())
    assert new_run_id() != new_run_id()
