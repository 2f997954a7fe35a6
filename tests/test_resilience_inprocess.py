"""Builds that outlive the connection, on the in-process SSH tier: a host's sshd dies mid-step and
comes back, the controller is SIGKILLed and `--resume`d, a step times out, Ctrl-C, `repro cancel`.
The same scenarios run against real OpenSSH in network namespaces in test_resilience_netns.py."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.labthread import LabThread
from tests.procs import controller, group_alive, starts, wait_for
from tests.test_cli_inprocess import only_run_dir, report, run_cli


def slow_playbook(tmp: Path, seconds: float = 3, timeout: str = "1m") -> Path:
    """A step that counts its own starts (so a test can see it ran once) and takes a while."""
    pb = tmp / "slow.yaml"
    pb.write_text(
        textwrap.dedent(f"""\
        name: slow
        steps:
          - name: build
            timeout: {timeout}
            run: |
              echo start >> "$HOME/starts-build"
              echo "pid $$"
              sleep {seconds}
              echo same-bytes > out.txt
              echo finished
        artifacts:
          - glob: out.txt
        """)
    )
    return pb


def step_pids(lab_root: Path) -> list[int]:
    """The process groups of a host's rounds (every step's pid file names its round's group)."""
    return sorted(
        {
            int(p.read_text())
            for p in lab_root.glob(".cache/repro/runs/*/steps/*.pid")
            if p.read_text().strip()
        }
    )


def gated_playbook(tmp: Path) -> Path:
    """A step that runs until the test creates $HOME/go (at most 30 s): "mid-step" for sure."""
    pb = tmp / "gated.yaml"
    pb.write_text(
        textwrap.dedent("""\
        name: gated
        steps:
          - name: build
            run: |
              echo start >> "$HOME/starts-build"
              echo "pid $$"
              i=0
              while [ ! -e "$HOME/go" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
              echo same-bytes > out.txt
              echo finished
        artifacts:
          - glob: out.txt
        """)
    )
    return pb


def test_sshd_dies_mid_step_and_returns(tmp_path: Path) -> None:
    pb = gated_playbook(tmp_path)
    out = tmp_path / "reports"
    lt = LabThread(tmp_path / "lab", n=2)
    with lt as lab:
        roots = {h.name: h.root for h in lab.hosts}
        proc = controller("run", "-i", str(lab.inventory_path), "-p", str(pb), "--out", str(out))
        wait_for(lambda: all(starts(r) == 1 for r in roots.values()), "steps started", proc)
        lt.stop_host("lab1")  # drops the open connection, refuses new ones
        time.sleep(1.5)  # how long the host stays away (not a measurement)
        lt.start_host("lab1")
        for root in roots.values():  # only now may the steps end: the fault was mid-step
            (root / "go").touch()
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    lines = stderr.splitlines()
    # lab1's step had started on the host (waited for above) and could end only after the go:
    # the controller lost it, got it back, and only then saw the step end
    order = [next(i for i, ln in enumerate(lines) if ln.startswith(f"[lab1] {what}"))
             for what in ("reconnecting", "connected: reconnected", "step build: exit 0")]
    assert order == sorted(order), stderr
    assert starts(roots["lab1"]) == 1, "the step was not started again"
    data = report(out)
    assert [h["status"] for h in data["hosts"]] == ["ok", "ok"]
    assert data["verdict"] == "reproducible"
    log = (only_run_dir(out) / "hosts" / "lab1" / "01-build.log").read_text()
    assert log.startswith("pid ") and log.rstrip().endswith("finished")


def test_killed_controller_resumes_without_redoing(tmp_path: Path) -> None:
    pb = slow_playbook(tmp_path, seconds=2)
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        roots = {h.name: h.root for h in lab.hosts}
        proc = controller("run", "-i", str(lab.inventory_path), "-p", str(pb), "--out", str(out))
        wait_for(lambda: all(starts(r) == 1 for r in roots.values()), "steps started", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        run_id = only_run_dir(out).name
        assert not (out / run_id / "report.json").exists()
        code, _, err = run_cli("run", "--resume", run_id, "--out", str(out))
    assert code == 0, err
    assert all(starts(r) == 1 for r in roots.values()), "resume must not start a step again"
    data = report(out)
    assert data["run_id"] == run_id and data["verdict"] == "reproducible"


def test_a_run_of_the_previous_layout_is_cancelled_but_never_resumed(tmp_path: Path) -> None:
    # A run started by a repro that launched steps one by one: resuming it with this one could
    # start a step twice, so --resume refuses (exit 2, saying why); cancel still works.
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        code, _, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(slow_playbook(tmp_path, 0.1)),
            "--out", str(out),
        )  # fmt: skip
        assert code == 0, err
        run_id = only_run_dir(out).name
        plan = out / run_id / "run.json"
        data = json.loads(plan.read_text())
        plan.write_text(json.dumps({**data, "schema": "repro-run/1"}))
        code, _, err = run_cli("run", "--resume", run_id, "--out", str(out))
        assert code == 2 and "started by an older repro" in err, err
        assert err.count("\n") == 1  # one line
        code, stdout, err = run_cli("cancel", run_id, "--out", str(out))
        assert code == 0 and "nothing running" in stdout, err + stdout


def test_resume_of_unknown_run_is_bad_input(tmp_path: Path) -> None:
    code, _, err = run_cli("run", "--resume", "20260101T000000Z-abcdef", "--out", str(tmp_path))
    assert code == 2 and "20260101T000000Z-abcdef" in err
    code, _, err = run_cli("run", "--resume", "../../etc", "--out", str(tmp_path))
    assert code == 2


def test_step_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pb = tmp_path / "t.yaml"
    pb.write_text(
        textwrap.dedent("""\
        name: hang
        steps:
          - name: hang
            timeout: 2s
            run: |
              sleep 300 &
              sleep 300
        artifacts: [{glob: nothing}]
        """)
    )
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        roots = [h.root for h in lab.hosts]
        code, _, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(pb), "--out", str(out), "--keep-failed"
        )
        pids = [p for r in roots for p in step_pids(r)]
        assert len(pids) == 2
        assert not any(group_alive(p) for p in pids), "a timed-out step left processes behind"
    assert code == 3, err
    data = report(out)
    assert all("timed out" in h["error"] for h in data["hosts"])


@contextmanager
def steps_in_flight(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[Path], Path]]:
    """A controller running a 60 s step on two lab hosts, once both steps have started:
    the controller, the hosts' roots, and its --out directory. The controller dies with it."""
    pb = slow_playbook(tmp_path, seconds=60)
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        roots = [h.root for h in lab.hosts]
        proc = controller(
            "run", "-i", str(lab.inventory_path), "-p", str(pb), "--out", str(out), "--keep-failed"
        )  # the steps' pid files stay for the checks below
        try:
            wait_for(lambda: all(step_pids(r) for r in roots), "steps started", proc)
            yield proc, roots, out
        finally:
            if proc.poll() is None:  # the test failed before the run ended
                proc.kill()
                proc.communicate(timeout=10)


def test_ctrl_c_kills_steps_and_keeps_what_was_gathered(tmp_path: Path) -> None:
    with steps_in_flight(tmp_path) as (proc, roots, out):
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        pids = [p for r in roots for p in step_pids(r)]
        assert not any(group_alive(p) for p in pids)
    assert proc.returncode == 130, stderr  # the user's stop, after the report was written
    data = report(out)
    assert {h["error"] for h in data["hosts"]} == {"cancelled"}
    assert data["hosts"][0]["facts"], "facts gathered before the cancel are kept"


def test_repro_cancel_kills_a_running_run(tmp_path: Path) -> None:
    with steps_in_flight(tmp_path) as (proc, roots, out):
        run_id = only_run_dir(out).name
        code, stdout, err = run_cli("cancel", run_id, "--out", str(out))
        assert code == 0, err
        assert stdout.count("killed 1 running step") == 2
        _, stderr = proc.communicate(timeout=60)
        pids = [p for r in roots for p in step_pids(r)]
        assert not any(group_alive(p) for p in pids)
    assert proc.returncode == 3, stderr
    data = json.loads((out / run_id / "report.json").read_text())
    assert all("cancelled" in h["error"] for h in data["hosts"]), data["hosts"]
