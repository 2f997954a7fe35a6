"""Retention (repro/gc.py, repro/hostside/gc.sh): the host-side removal run for real on real
directories (symlinks, read-only trees, a live supervisor), and a nightly series of demo runs
on three SSH hosts that leaves at most the configured number of run dirs on each."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from repro import gc
from repro.errors import UsageError
from repro.retention import Retention, retention
from tests.labthread import LabThread
from tests.test_cli_inprocess import DEMO, run_cli

OLD = time.time() - 7200  # older than the hour a run without a launched round is left alone


def run_id(n: int) -> str:
    return f"202603{n:02d}T000000Z-{n:06x}"


def make_run(base: Path, n: int, *, finished: bool = True) -> Path:
    d = base / run_id(n)
    (d / "steps").mkdir(parents=True)
    (d / "work").mkdir()
    (d / "work" / "out.bin").write_bytes(b"x" * 100)
    (d / "steps" / "1-plan.lock").write_text("100\n")
    if finished:
        (d / "steps" / "1-plan.rc").write_text("0\n")
    age(d, n)
    return d


def age(d: Path, n: int) -> None:
    """Run n ended n seconds after OLD (gc orders runs by when their steps dir last changed)."""
    os.utime(d / "steps", (OLD + n, OLD + n))
    os.utime(d, (OLD, OLD))


def host_gc(home: Path, base: str, keep: int | None, now: str | None, *protected: str) -> str:
    cmd = gc.gc_command(base, keep, now, list(protected))
    done = subprocess.run(
        cmd, shell=True, check=False, capture_output=True, text=True, timeout=60,
        env={"HOME": str(home), "PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_only_run_dirs_repro_made_are_removed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    base = home / ".cache" / "repro" / "runs"
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    for n in range(1, 4):
        make_run(base, n)
    # named like a run but a symlink out of the base: only the link could go, never its target
    (base / run_id(9)).symlink_to(outside)
    # a run dir with a symlink out, and a read-only tree inside (rm alone could not empty it)
    (base / run_id(2) / "work" / "link").symlink_to(outside)
    ro = base / run_id(2) / "work" / "ro"
    (ro / "sub").mkdir(parents=True)
    (ro / "sub" / "f").write_text("x")
    (ro / "sub").chmod(0o555)
    ro.chmod(0o555)
    (base / "not-a-run").mkdir()
    (base / run_id(10)).mkdir()  # named like one, but has no steps/: not ours
    os.utime(base / run_id(10), (OLD, OLD))
    said = host_gc(home, "~/.cache/repro/runs", 0, None)
    assert sorted(said.split("\n")[:-1]) == [f"removed {run_id(n)}" for n in (1, 2, 3)]
    assert (outside / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in base.iterdir()) == sorted(["not-a-run", run_id(9), run_id(10)])
    # the mirror next to the runs is never looked at
    assert host_gc(home, str(base), 0, None) == ""


def test_keep_n_keeps_the_newest_and_never_a_busy_or_protected_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    base = tmp_path / "runs"
    for n in range(1, 7):
        make_run(base, n)
    # run 0: made just now and no round launched yet (still gathering facts or uploading)
    (base / run_id(0) / "steps").mkdir(parents=True)
    os.utime(base / run_id(0) / "steps", (OLD, OLD))
    # run 1: its round is alive (a real process group, led by its supervisor)
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a group, as a round
    try:
        (base / run_id(1) / "steps" / "1-plan.rc").unlink()
        (base / run_id(1) / "steps" / "1-plan.pid").write_text(f"{sleeper.pid}\n")
        age(base / run_id(1), 1)
        said = host_gc(home, str(base), 2, None, run_id(3))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert set(said.split("\n")[:-1]) == {
        f"kept {run_id(0)} busy",
        f"kept {run_id(1)} busy",
        f"removed {run_id(2)}",
        f"kept {run_id(3)} protected",
        f"removed {run_id(4)}",
    }  # 5 and 6 are the newest two
    assert sorted(p.name for p in base.iterdir()) == [run_id(n) for n in (0, 1, 3, 5, 6)]
    # the supervisor gone, the next gc takes run 1; `now` removes the given run first
    said = host_gc(home, str(base), 1, run_id(6))
    assert f"removed {run_id(6)}" in said and f"removed {run_id(1)}" in said
    assert sorted(p.name for p in base.iterdir()) == [run_id(0), run_id(5)]


def test_run_ids_and_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        gc.gc_command("~/.cache/repro/runs", 1, "x; rm -rf /", [])
    with pytest.raises(ValueError, match="repro_keep_runs"):
        retention({"repro_keep_runs": "-1"})
    with pytest.raises(ValueError, match="repro_keep_failed"):
        retention({"repro_keep_failed": "maybe"})
    assert retention({"repro_keep_runs": "3", "repro_keep_work": "true"}) == Retention(
        3, False, True
    )
    inv = tmp_path / "inv.yaml"
    inv.write_text("all:\n  hosts:\n    h1: {repro_keep_runs: lots}\n")
    code, _, err = run_cli("gc", "-i", str(inv), "--out", str(tmp_path / "r"))
    assert code == 2 and "repro_keep_runs 'lots'" in err


def test_controller_gc_keeps_the_newest_and_runs_not_finished(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    for n in range(1, 7):
        d = out / run_id(n)
        d.mkdir(parents=True)
        # run 1 never wrote a report (running, or its controller died); run 2 was stopped by
        # SIGHUP: its report is written, its plan says it has not finished (--resume follows it)
        plan = {"finished_at": None} if n == 2 else {"finished_at": "2026-03-01T00:00:00Z"}
        (d / "run.json").write_text(json.dumps(plan))
        if n != 1:
            (d / "report.json").write_text("{}")
    (out / "history.sqlite").write_text("")
    code, stdout, _ = run_cli("gc", "--keep", "2", "--out", str(out))
    assert code == 0 and "controller: removed 2 run dir(s)" in stdout
    assert f"{run_id(1)} (not finished)" in stdout and f"{run_id(2)} (not finished)" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [run_id(1), run_id(2), run_id(5), run_id(6), "history.sqlite"]
    )


def runs_on(root: Path) -> list[str]:
    base = root / ".cache" / "repro" / "runs"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def test_a_nightly_series_leaves_at_most_keep_run_dirs_per_host(tmp_path: Path) -> None:
    """30 demo runs on 3 SSH hosts, every third one a mismatch (lab3 leaks its build path):
    with --keep 3 each host holds at most 3 run dirs after every run, the newest mismatch
    among them; then `repro gc -i` takes the hosts down to what it is told."""
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", host_vars={"lab3": {"prefix_map": False}}) as lab:
        roots = [h.root for h in lab.hosts]
        inv = str(lab.inventory_path)
        last_mismatch = None
        for night in range(30):
            fix = [] if night % 3 == 0 else ["-e", "prefix_map=true"]
            code, _, err = run_cli(
                "run", "-i", inv, "-p", str(DEMO), "--out", str(out), "--keep", "3", *fix
            )
            newest = err.split("run ", 1)[1].split(":", 1)[0]
            assert code == (1 if not fix else 0), err
            if code == 1:
                last_mismatch = newest
            for root in roots:
                assert len(runs_on(root)) <= 3, (night, runs_on(root))
        assert last_mismatch is not None
        for root in roots:
            assert last_mismatch in runs_on(root)  # evidence for `repro diff` stays
        # without --keep a reproducible run leaves nothing behind and touches nothing older
        before = [runs_on(r) for r in roots]
        code, _, err = run_cli("run", "-i", inv, "-p", str(DEMO), "--out", str(out),
                               "-e", "prefix_map=true")  # fmt: skip
        assert code == 0, err
        assert [runs_on(r) for r in roots] == before
        code, stdout, err = run_cli("gc", "-i", inv, "--keep", "1", "--out", str(out))
        assert code == 0, err
        assert all(len(runs_on(r)) == 1 for r in roots), stdout
        assert len([p for p in out.iterdir() if p.name != "history.sqlite"]) == 1
        for root in roots:  # the git mirrors beside the runs are never touched
            assert not (root / ".cache" / "repro" / "runs").is_symlink()
    code, stdout, _ = run_cli("history", "--out", str(out), "--first-bad")
    assert code == 0 and "demo" in stdout


def test_the_cleanup_rides_the_runs_own_connections(tmp_path: Path) -> None:
    """After a reproducible run each host's work dir goes, over the connection the run had
    open: one connection per host in all (a fleet of 100 pays no second handshake)."""
    from repro.session import execute, prepare
    from repro.transport import make_transport

    made: list[str] = []  # one entry per SSH handshake (a transport may connect again)
    cleaned: list[str] = []  # hosts sent gc.sh as a command of its own

    def counting(host: object) -> object:
        t = make_transport(host)  # type: ignore[arg-type]
        connect, run = t.connect, t.run

        async def counted() -> None:
            if not t.connected:
                made.append(host.name)  # type: ignore[attr-defined]
            await connect()

        async def running(command: str, **kw: object) -> object:
            if "kept $id busy" in command:
                cleaned.append(host.name)  # type: ignore[attr-defined]
            return await run(command, **kw)  # type: ignore[arg-type]

        t.connect = counted  # type: ignore[method-assign]
        t.run = running  # type: ignore[method-assign]
        return t

    with LabThread(tmp_path / "lab") as lab:
        prep = prepare(inventory=lab.inventory_path, playbook=DEMO, extra_vars={},
                       out_dir=tmp_path / "reports")  # fmt: skip
        _, comparison = execute(prep, transport_factory=counting)  # type: ignore[arg-type]
        assert comparison.verdict == "reproducible"
        assert sorted(made) == ["lab1", "lab2", "lab3"]
        assert all(runs_on(h.root) == [] for h in lab.hosts)
        assert prep.notes == []
        # nor a channel and a shell: each host's last reply was held open for the verdict
        assert cleaned == []
        # with fewer forks than hosts nothing is held: the ending connects again
        made.clear()
        prep = prepare(inventory=lab.inventory_path, playbook=DEMO, extra_vars={},
                       out_dir=tmp_path / "reports")  # fmt: skip
        prep.options.forks = 1
        execute(prep, transport_factory=counting)  # type: ignore[arg-type]
        assert sorted(made) == ["lab1", "lab1", "lab2", "lab2", "lab3", "lab3"]
        assert all(runs_on(h.root) == [] for h in lab.hosts)
        assert sorted(cleaned) == ["lab1", "lab2", "lab3"]


def test_a_held_last_reply_removes_only_a_run_dir_repro_made(tmp_path: Path) -> None:
    """The host side of the held reply (reply.sh's `held`): told "remove", it removes its run
    dir (read-only trees too); told anything else, or nothing (the controller gone), it keeps
    it; a steps dir whose parent is not named like a run is refused (exit 3), never removed."""
    import asyncio

    from repro import detach
    from repro.lab import LocalLab
    from repro.transport.asyncssh import AsyncsshTransport

    async def round_in(t: AsyncsshTransport, run_dir: Path) -> detach.Reply:
        scripts = ["mkdir -p ro/sub && touch ro/sub/f && chmod 555 ro/sub ro", "echo hashes"]
        return await detach.launch(t, str(run_dir / "steps"), "1-plan", str(run_dir / "work"),
                                   ["1-01", "1-hash"], scripts, wait=1000, hold=True)  # fmt: skip

    async def main() -> None:
        async with LocalLab(tmp_path / "lab", n=1) as lab:
            t = AsyncsshTransport(lab.host("lab1"))
            await t.connect()
            try:
                base = lab.hosts[0].root / "runs"
                said = {}
                for name, word in ((run_id(1), b"remove\n"), (run_id(2), b"keep\n"),
                                   ("not-a-run", b"remove\n"), (run_id(3), None)):  # fmt: skip
                    reply = await round_in(t, base / name)
                    assert reply.held is not None, name
                    assert [p.exit_status for p in reply.polls] == [0, 0]
                    if word is None:
                        await reply.held.drop()
                    else:
                        said[name] = await reply.held.finish(word, timeout=30)
                assert said == {run_id(1): 0, run_id(2): 0, "not-a-run": 3}
                assert sorted(p.name for p in base.iterdir()) == sorted(
                    ["not-a-run", run_id(2), run_id(3)]
                )
                # a round that has not ended is never held: its reply is a plain one
                reply = await detach.launch(
                    t, str(base / run_id(4) / "steps"), "1-plan", str(base / run_id(4) / "w"),
                    ["1-01", "1-hash"], ["sleep 3", "true"], wait=10, hold=True,
                )  # fmt: skip
                assert reply.held is None and reply.polls[0].exit_status is None
            finally:
                await t.close()

    asyncio.run(main())
