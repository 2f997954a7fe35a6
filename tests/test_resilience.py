"""Builds that outlive the connection, on both labs (tests/bothlabs.py): sshd killed mid-step, a
SIGKILLed controller resumed, timeouts, Ctrl-C and `repro cancel` leave nothing behind; on real
OpenSSH hosts only, a link gone for good and an upload cut short.

Faults are real and every check is on the order of events: a step that must still run when the
fault comes waits for the test's go (`$HOME/go`), so a slow machine cannot slip past it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from repro import detach
from repro.errors import HostError
from repro.inventory import load_inventory
from repro.netlab import NetnsLab
from repro.transport.asyncssh import AsyncsshTransport
from repro.transport.base import Completed
from tests.bothlabs import Lab, lab, run_processes  # noqa: F401 - lab is the fixture
from tests.procs import controller, finish, starts, state, wait_for
from tests.test_cli_inprocess import only_run_dir, report, run_cli

# --- playbooks and checks ------------------------------------------------------------------------


def gated_playbook(tmp: Path, *, timeout: str = "1m") -> Path:
    """Two steps, each counting its starts in $HOME; the build runs until $HOME/go (30 s max)."""
    pb = tmp / "gated.yaml"
    pb.write_text(
        textwrap.dedent(f"""\
        name: gated
        steps:
          - name: prepare
            timeout: 30s
            run: |
              echo start >> "$HOME/starts-prepare"
              printf 'input\\n' > in.txt
          - name: build
            timeout: {timeout}
            run: |
              echo start >> "$HOME/starts-build"
              echo "pid $$"
              i=0
              while [ ! -e "$HOME/go" ] && [ $i -lt 300 ]; do
                [ $((i % 10)) -eq 0 ] && echo "tick $i"
                sleep 0.1; i=$((i+1))
              done
              cat in.txt > out.txt
              echo same-bytes >> out.txt
              echo finished
        artifacts:
          - glob: out.txt
        """)
    )
    return pb


def hang_playbook(tmp: Path, timeout: str = "1m") -> Path:
    """A step that leaves a child behind in its process group and a grandchild in a subshell."""
    pb = tmp / "hang.yaml"
    pb.write_text(
        textwrap.dedent(f"""\
        name: hang
        steps:
          - name: hang
            timeout: {timeout}
            run: |
              echo start >> "$HOME/starts-hang"
              sleep 300 &
              (sleep 300; echo never) &
              sleep 300
        artifacts: [{{glob: nothing}}]
        """)
    )
    return pb


def go(lab: Lab) -> None:
    for name in lab.names:
        (lab.home(name) / "go").touch()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hashes(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """host -> artifact -> sha256, from a report.json."""
    return {h["name"]: {k: v["sha256"] for k, v in h["artifacts"].items()} for h in data["hosts"]}


def assert_logs_complete(lab: Lab, out_run: Path, name: str) -> None:
    """The controller's copy of the build log is byte for byte the host's, start to finish."""
    local = (out_run / "hosts" / name / "02-build.log").read_bytes()
    remote = (lab.run_dir(name, out_run.name) / "steps" / "1-02.log").read_bytes()
    assert local == remote
    text = local.decode()
    assert text.startswith("pid ") and "tick 0" in text and text.rstrip().endswith("finished")


def step_running(lab: Lab, name: str) -> bool:
    pids = list((lab.home(name) / ".cache" / "repro" / "runs").glob("*/steps/1-01.pid"))
    return bool(pids) and state(pids[0]) is not None


def assert_nothing_left(lab: Lab, run_id: str, names: tuple[str, ...] = ()) -> None:
    """No process of the run on the hosts (all by default). A poll the controller dropped when
    it stopped may still be finishing its (at most 1 s) wait: survivors get a bounded while."""
    left: dict[str, list[str]] = {}

    def gone() -> bool:
        left.update(lab.leftovers(run_id, names))
        return not any(left.values())

    for _ in range(25):  # bounded: 5 s
        if gone():
            return
        time.sleep(0.2)
    assert not any(left.values()), f"processes of the run survive: {left}"


def assert_cancelled_report(out: Path, word: str) -> dict[str, Any]:
    data = report(out)
    assert data["verdict"] == "inconclusive" and data["exit_code"] == 3
    assert all(h["status"] == "failed" for h in data["hosts"]), data["hosts"]
    assert all(word in (h["error"] or "") for h in data["hosts"]), data["hosts"]
    assert all(h["facts"] for h in data["hosts"]), "facts gathered before the end are kept"
    return data


# --- 1. sshd killed mid-step ---------------------------------------------------------------------


def test_sshd_killed_mid_step_and_restarted(lab: Lab, tmp_path: Path) -> None:
    first = lab.names[0]
    pb, out = gated_playbook(tmp_path), tmp_path / "reports"
    proc = controller("run", "--keep-work", "-i", str(lab.inventory_path), "-p", str(pb), "--out", str(out))
    wait_for(lambda: all(starts(lab.home(n)) == 1 for n in lab.names), "builds started", proc)
    lab.stop_sshd(first)  # drops the controller's connection; new ones are refused
    time.sleep(1.5)  # how long the host stays away (not a measurement)
    lab.start_sshd(first)
    go(lab)  # only now may the builds end: the fault was mid-step
    code, _, err = finish(proc)
    assert code == 0, err
    # the controller lost the host, got it back, and only then saw its build end
    lines = err.splitlines()
    order = [next(i for i, ln in enumerate(lines) if ln.startswith(f"[{first}] {what}"))
             for what in ("reconnecting", "connected: reconnected", "step build: exit 0")]
    assert order == sorted(order), err
    for name in lab.names:
        assert starts(lab.home(name), "prepare") == 1
        assert starts(lab.home(name), "build") == 1, f"{name}: the step ran again"
    data = report(out)
    assert [h["status"] for h in data["hosts"]] == ["ok", "ok", "ok"]
    assert data["verdict"] == "reproducible" and data["exit_code"] == 0
    (art,) = data["artifacts"]
    assert art["name"] == "out.txt" and len(art["groups"]) == 1
    built = lab.run_dir(first, data["run_id"]) / "work" / "out.txt"
    assert built.read_text() == "input\nsame-bytes\n"
    assert art["groups"][0]["sha256"] == sha256_of(built)
    assert_logs_complete(lab, only_run_dir(out), first)


# --- 2. the controller SIGKILLed, then --resume --------------------------------------------------


def test_killed_controller_resumes_with_the_same_result(lab: Lab, tmp_path: Path) -> None:
    inv, pb = str(lab.inventory_path), gated_playbook(tmp_path)
    ref_out, out = tmp_path / "reference", tmp_path / "reports"
    go(lab)
    code, _, err = run_cli("run", "--keep-work", "-i", inv, "-p", str(pb), "--out", str(ref_out))
    assert code == 0, err
    reference = report(ref_out)
    for name in lab.names:  # from here on: the interrupted run only, and its builds wait
        for f in ("starts-prepare", "starts-build", "go"):
            (lab.home(name) / f).unlink()

    proc = controller("run", "--keep-work", "-i", inv, "-p", str(pb), "--out", str(out))
    wait_for(lambda: all(starts(lab.home(n)) == 1 for n in lab.names), "builds", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    run_dir = only_run_dir(out)
    assert (run_dir / "run.json").exists() and not (run_dir / "report.json").exists()
    go(lab)  # the builds outlived their controller; let them end while none follows them

    code, _, err = run_cli("run", "--resume", run_dir.name, "--out", str(out))
    assert code == 0, err
    data = report(out)
    assert data["run_id"] == run_dir.name
    assert (data["verdict"], data["exit_code"]) == (reference["verdict"], reference["exit_code"])
    assert hashes(data) == hashes(reference)
    for name in lab.names:
        assert starts(lab.home(name), "prepare") == 1, f"{name}: prepare was redone"
        assert starts(lab.home(name), "build") == 1, f"{name}: build was redone"
        assert_logs_complete(lab, run_dir, name)
        steps = next(x for x in data["hosts"] if x["name"] == name)["steps"]
        assert [(s["name"], s["exit_status"]) for s in steps] == [("prepare", 0), ("build", 0)]


def test_a_run_of_the_previous_layout_is_cancelled_but_never_resumed(
    lab: Lab, tmp_path: Path
) -> None:
    # A run started by a repro that launched steps one by one: resuming it with this one could
    # start a step twice, so --resume refuses (exit 2, saying why); cancel still works.
    out = tmp_path / "reports"
    go(lab)
    code, _, err = run_cli(
        "run", "--keep-work", "-i", str(lab.inventory_path), "-p", str(gated_playbook(tmp_path)),
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
    assert code == 0 and stdout.count("nothing running") == 3, err + stdout


def test_resume_of_unknown_run_is_bad_input(tmp_path: Path) -> None:
    code, _, err = run_cli("run", "--resume", "20260101T000000Z-abcdef", "--out", str(tmp_path))
    assert code == 2 and "20260101T000000Z-abcdef" in err and err.count("\n") == 1
    code, _, err = run_cli("run", "--resume", "../../etc", "--out", str(tmp_path))
    assert code == 2 and "is not of the form" in err


# --- 3. timeout, Ctrl-C, cancel: nothing of the run survives on the hosts ------------------------


def test_step_timeout_kills_everything_of_the_run(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    code, _, err = run_cli(
        "run", "--keep-work", "-i", str(lab.inventory_path), "-p", str(hang_playbook(tmp_path, "2s")),
        "--out", str(out),
    )  # fmt: skip
    assert code == 3, err
    run_id = only_run_dir(out).name
    assert all(starts(lab.home(n), "hang") == 1 for n in lab.names)
    assert_nothing_left(lab, run_id)
    assert_cancelled_report(out, "timed out after 2s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_kills_the_steps_and_keeps_what_was_gathered(
    lab: Lab, tmp_path: Path, sig: signal.Signals
) -> None:
    out = tmp_path / "reports"
    argv = ["run", "--keep-work", "-i", str(lab.inventory_path), "-p", str(hang_playbook(tmp_path))]
    proc = controller(*argv, "--out", str(out))
    wait_for(lambda: all(step_running(lab, n) for n in lab.names), "steps", proc)
    run_id = only_run_dir(out).name
    proc.send_signal(sig)
    code, stdout, err = finish(proc, timeout=30)
    assert code == 130, err  # the user's stop, after the report was written
    assert "INCONCLUSIVE" in stdout and err.endswith(f"is in {out / run_id}\n"), err
    assert_nothing_left(lab, run_id)
    assert_cancelled_report(out, "cancelled")


def test_repro_cancel_stops_the_whole_run(lab: Lab, tmp_path: Path) -> None:
    """Running steps are killed; the third host, still waiting for a slot (--forks 2), never
    starts one."""
    one, two, three = lab.names
    out = tmp_path / "reports"
    argv = ["run", "--keep-work", "-i", str(lab.inventory_path), "-p", str(hang_playbook(tmp_path))]
    proc = controller(*argv, "--forks", "2", "--out", str(out))
    wait_for(lambda: step_running(lab, one) and step_running(lab, two), "steps", proc)
    run_id = only_run_dir(out).name
    assert all(lab.leftovers(run_id, (one, two)).values())
    assert starts(lab.home(three), "hang") == 0
    code, stdout, err = run_cli("cancel", run_id, "--out", str(out))
    assert code == 0, err
    assert stdout.count("killed 1 running step") == 2, stdout
    assert f"{three}: nothing running" in stdout, stdout
    code, _, err = finish(proc, timeout=30)
    assert code == 3, err
    assert starts(lab.home(three), "hang") == 0, f"a cancelled run started a build on {three}"
    assert_nothing_left(lab, run_id)
    assert_cancelled_report(out, "cancelled")
    # A cancelled run stays cancelled: a second cancel finds nothing, --resume starts nothing.
    code, stdout, _ = run_cli("cancel", run_id, "--out", str(out))
    assert code == 0 and stdout.count("nothing running") == 3, stdout
    code, _, err = run_cli("run", "--resume", run_id, "--out", str(out))
    assert code == 2 and "nothing to resume" in err, err  # the run ended: refused (issue 10)
    assert [starts(lab.home(n), "hang") for n in lab.names] == [1, 1, 0]
    assert_nothing_left(lab, run_id)


# --- real OpenSSH only: a silent link -------------------------------------------------------------


def _net(netlab: NetnsLab) -> Lab:
    return Lab("netns", netlab.inventory_path, list(netlab.names),
               {h.name: h.home for h in netlab.hosts}, _net=netlab)  # fmt: skip


@pytest.mark.netns
def test_link_down_for_good_is_unreachable_and_others_finish(
    netlab: NetnsLab, tmp_path: Path
) -> None:
    lab = _net(netlab)
    fast = {
        "repro_connect_timeout": 2,
        "repro_keepalive_interval": 1,
        "repro_keepalive_count_max": 2,
        "repro_reconnect_timeout": 4,
    }
    inv = lab.inventory_with(tmp_path / "inv.yaml", {"h2": fast})
    out = tmp_path / "reports"
    proc = controller("run", "--keep-work", "-i", str(inv), "-p", str(gated_playbook(tmp_path)), "--out", str(out))
    wait_for(lambda: all(starts(lab.home(n)) == 1 for n in lab.names), "builds started", proc)
    netlab.link_down("h2")  # packets vanish: no RST, no FIN, only silence
    for name in ("h1", "h3"):
        (lab.home(name) / "go").touch()
    code, _, err = finish(proc)  # bounded: a dead link must not hold the run for minutes
    assert code == 3, err
    data = report(out)
    status = {h["name"]: h["status"] for h in data["hosts"]}
    assert status == {"h1": "ok", "h2": "unreachable", "h3": "ok"}
    h2 = next(h for h in data["hosts"] if h["name"] == "h2")
    # The last reason it stayed away, not a bare "not connected".
    error = h2["error"]
    assert error.startswith(f"cannot connect to {netlab.host('h2').address}:22: "), error
    assert data["verdict"] == "inconclusive"
    assert data["reasons"][0].startswith("host h2 unreachable: "), data["reasons"]
    (art,) = data["artifacts"]
    assert sorted(art["groups"][0]["hosts"]) == ["h1", "h3"]
    # The build itself went on without the controller: the detached step is not tied to SSH.
    netlab.link_up("h2")
    rc = lab.run_dir("h2", data["run_id"]) / "steps" / "1-02.rc"
    assert state(rc) is None, "h2's build waits for its go"
    (lab.home("h2") / "go").touch()
    wait_for(lambda: state(rc) is not None, "the orphaned step on h2 to finish on its own",
             timeout=10)  # fmt: skip
    assert state(rc) == "0" and starts(lab.home("h2")) == 1


@pytest.mark.netns
def test_ctrl_c_is_prompt_while_a_host_is_away(netlab: NetnsLab, tmp_path: Path) -> None:
    """Default keepalive and reconnect timeouts (minutes): Ctrl-C must not wait them out."""
    lab = _net(netlab)
    out = tmp_path / "reports"
    argv = ["run", "--keep-work", "-i", str(netlab.inventory_path), "-p", str(hang_playbook(tmp_path))]
    proc = controller(*argv, "--out", str(out))
    wait_for(lambda: all(step_running(lab, n) for n in lab.names), "steps", proc)
    run_id = only_run_dir(out).name
    netlab.link_down("h2")  # the controller's next poll of h2 hangs on a silent link
    time.sleep(1.5)  # let that poll go out (not a measurement)
    proc.send_signal(signal.SIGINT)
    code, stdout, err = finish(proc, timeout=30)  # bounded far below the minutes waited out
    assert code == 130, err
    assert "INCONCLUSIVE" in stdout and err.endswith(f"is in {out / run_id}\n"), err
    data = assert_cancelled_report(out, "cancelled")
    assert {h["name"] for h in data["hosts"]} == {"h1", "h2", "h3"}
    assert_nothing_left(lab, run_id, ("h1", "h3"))
    # h2's build could not be reached; `repro cancel` finishes the job once it is back.
    netlab.link_up("h2")
    assert run_processes(netlab, "h2", run_id), "h2's step should have outlived the controller"
    code, stdout, err = run_cli("cancel", run_id, "--out", str(out))
    assert code == 0, err
    assert "h2: killed 1 running step" in stdout, stdout
    assert_nothing_left(lab, run_id)


# --- real OpenSSH only: a start cut short ---------------------------------------------------------


class _CutTransport(AsyncsshTransport):
    """Real SSH, but the first command's stdin stops half-way, as when the link dies mid-send."""

    cut = True

    async def run(
        self, command: str, *, timeout: float | None = None, stdin: bytes | None = None
    ) -> Completed:
        if stdin and self.cut:
            self.cut = False
            stdin = stdin[: len(stdin) // 2]
        return await super().run(command, timeout=timeout, stdin=stdin)


@pytest.mark.netns
def test_a_truncated_step_script_is_never_run(netlab: NetnsLab) -> None:
    host = load_inventory(netlab.inventory_path).hosts["h1"]
    steps, work = "/root/cut/steps", "/root/cut/work"
    # Cut anywhere, this script would still count a start, then do only part of the job.
    # Over detach.MAX_ARG_SCRIPT, so it is uploaded before the launch (a smaller one rides in
    # the exec request's command line, which arrives whole or not at all).
    script = (
        'echo start >> "$HOME/starts-cut"\n'
        + "echo part >> parts\n" * 50
        + "# padding\n" * (detach.MAX_ARG_SCRIPT // 10 + 1)
        + "echo done\n"
    )
    assert not detach.scripts_fit([script, "true"])
    keys = ["1-01", "1-hash"]

    async def upload(t: AsyncsshTransport) -> None:
        for key, text in zip(keys, [script, "true"]):
            await t.put(text.encode(), f"{steps}/{key}.sh", make_parent=True,
                        unless_exists=f"{steps}/1-plan.lock")

    async def go_() -> tuple[str, detach.Reply]:
        t = _CutTransport(host)
        await t.connect()
        try:
            with pytest.raises(HostError) as cut:
                await upload(t)
            # The retry the runner makes after a lost connection: uploads whole, runs once.
            await upload(t)
            return str(cut.value), await detach.launch(t, steps, "1-plan", work, keys, None)
        finally:
            await t.close()

    error, launched = asyncio.run(asyncio.wait_for(go_(), 30))
    assert "could not write /root/cut/steps/1-01.sh" in error and "truncated" in error, error
    first = launched.polls[0]
    assert launched.fresh and first.exit_status == 0 and first.data == b"done\n", launched
    home = netlab.host("h1").home
    assert (home / "starts-cut").read_text() == "start\n"
    assert (home / "cut" / "work" / "parts").read_text() == "part\n" * 50
    assert (home / "cut" / "steps" / "1-01.sh").read_text() == script
    assert not list((home / "cut" / "steps").glob("*.repro-tmp"))


def gate_only_playbook(tmp: Path) -> Path:
    """One step that runs until $HOME/go, or for 250 naps of 0.2 s (50 s at the very least)."""
    pb = tmp / "gate.yaml"
    pb.write_text(
        textwrap.dedent("""\
        name: gate
        steps:
          - name: build
            timeout: 10m
            run: |
              i=0
              while [ ! -e "$HOME/go" ] && [ $i -lt 250 ]; do sleep 0.2; i=$((i+1)); done
              echo same-bytes > out.txt
        artifacts:
          - glob: out.txt
        """)
    )
    return pb


@pytest.mark.netns
def test_a_dead_link_is_reported_with_default_settings_before_the_step_ends(
    netlab: NetnsLab, tmp_path: Path
) -> None:
    """The controller waits on each host on one quiet channel; with nothing tuned, the
    keepalives find h2's silent link while the steps run (before a step that runs 50 s at
    least could have ended: the old 60-s poll timeout loses this race), and the run goes on
    once the link is back."""
    import threading

    lab = _net(netlab)
    out = tmp_path / "reports"
    proc = controller("run", "-i", str(netlab.inventory_path), "-p",
                      str(gate_only_playbook(tmp_path)), "--out", str(out))  # fmt: skip
    lines: list[str] = []
    assert proc.stderr is not None
    stderr = proc.stderr
    reader = threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")), daemon=True)
    reader.start()
    wait_for(lambda: all(step_running(lab, n) for n in lab.names), "steps", proc)
    run_id = only_run_dir(out).name
    netlab.link_down("h2")

    def lost() -> bool:
        return any("h2" in ln and "reconnecting" in ln for ln in list(lines))

    wait_for(lost, "h2 reported reconnecting", proc, timeout=120)
    # the order of events: h2 was reported lost while every step still ran
    for name in lab.names:
        rc = lab.run_dir(name, run_id) / "steps" / "1-01.rc"  # made at launch, holding "-"
        assert rc.read_text().split() == ["-"], name
    netlab.link_up("h2")
    go(lab)
    proc.stderr = None  # the reader thread owns it
    code = proc.wait(timeout=180)
    reader.join(timeout=10)
    assert code == 0, "".join(lines)[-3000:]
    data = report(out)
    assert {h["name"]: h["status"] for h in data["hosts"]} == {n: "ok" for n in lab.names}
