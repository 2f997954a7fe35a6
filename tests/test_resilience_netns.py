"""Builds that outlive the connection, on real OpenSSH hosts in network namespaces: sshd killed
mid-step, a link gone for good, a SIGKILLed controller resumed, timeouts, cancel and Ctrl-C.

Same scenarios as test_resilience_inprocess.py, but every fault is a real one (netlab.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from repro import detach
from repro.errors import HostError
from repro.inventory import load_inventory
from repro.netlab import NetnsLab
from repro.transport.asyncssh import AsyncsshTransport
from repro.transport.base import Completed
from tests.procs import controller, finish, starts, wait_for
from tests.test_cli_inprocess import only_run_dir, report, run_cli

pytestmark = pytest.mark.netns


# --- helpers -------------------------------------------------------------------------------------


def counting_playbook(tmp: Path, *, seconds: float = 3, timeout: str = "1m") -> Path:
    """Two steps; each appends to a counter in $HOME, so a test sees how often it started."""
    pb = tmp / "counting.yaml"
    pb.write_text(
        textwrap.dedent(f"""\
        name: counting
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
              while [ $i -lt {int(seconds * 10)} ]; do
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


def inventory_with(lab: NetnsLab, dest: Path, host_vars: dict[str, dict[str, Any]]) -> Path:
    """The lab's inventory plus extra host vars, written to `dest`."""
    doc = yaml.safe_load(lab.inventory_path.read_text())
    hosts = doc["all"]["children"]["netlab"]["hosts"]
    for name, extra in host_vars.items():
        hosts[name].update(extra)
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def host_run_dir(lab: NetnsLab, name: str, run_id: str) -> Path:
    """The run's directory on the host, as the root namespace sees it (HOME is /root there)."""
    return lab.host(name).home / ".cache" / "repro" / "runs" / run_id


def run_processes(lab: NetnsLab, name: str, run_id: str) -> list[str]:
    """Processes in the host whose cwd or command line belongs to the run, read inside the host.

    Only the host's own processes (its network namespace) are looked at: the machine's pid
    namespace is shared, and scanning all of it is slow and beside the point.
    """
    script = r"""
r=$1; shift
for pid do
  p=/proc/$pid
  cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
  cmd=$(tr '\0\n' '  ' < "$p/cmdline" 2>/dev/null) || continue
  state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "$p/status" 2>/dev/null)
  [ "$state" = Z ] && continue
  case "$cwd $cmd" in *"$r"*) echo "$pid cwd=$cwd cmd=$cmd";; esac
done
"""
    pids = [str(pid) for pid in lab.pids(name)]
    done = lab.exec(name, ["sh", "-c", script, "scan", run_id, *pids], timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hashes(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """host -> artifact -> sha256, from a report.json."""
    return {h["name"]: {k: v["sha256"] for k, v in h["artifacts"].items()} for h in data["hosts"]}


def assert_logs_complete(lab: NetnsLab, out_run: Path, name: str, seconds: float) -> None:
    """The controller's copy of the build log is byte for byte the host's, start to finish."""
    local = (out_run / "hosts" / name / "02-build.log").read_bytes()
    remote = (host_run_dir(lab, name, out_run.name) / "steps" / "1-02.log").read_bytes()
    assert local == remote
    ticks = [ln for ln in local.decode().splitlines() if ln.startswith("tick ")]
    assert len(ticks) == int(seconds) and local.decode().rstrip().endswith("finished"), local


# --- 1. sshd killed mid-step ----------------------------------------------------------------------


def test_sshd_killed_mid_step_and_restarted(netlab: NetnsLab, tmp_path: Path) -> None:
    pb = counting_playbook(tmp_path, seconds=4)
    out = tmp_path / "reports"
    proc = controller(
        "run", "--keep-work", "-i", str(netlab.inventory_path), "-p", str(pb), "--out", str(out)
    )
    wait_for(lambda: starts(netlab.host("h1").home) == 1, "the build step to start on h1", proc)
    netlab.stop_sshd("h1")  # drops the controller's connection; new ones are refused
    time.sleep(1.5)
    netlab.start_sshd("h1")
    code, _, err = finish(proc)
    assert code == 0, err
    assert "[h1] reconnecting" in err and "reconnected" in err, err
    for h in netlab.hosts:
        assert starts(h.home, "prepare") == 1
        assert starts(h.home, "build") == 1, f"{h.name}: the step ran again"
    data = report(out)
    assert [h["status"] for h in data["hosts"]] == ["ok", "ok", "ok"]
    assert data["verdict"] == "reproducible" and data["exit_code"] == 0
    (art,) = data["artifacts"]
    assert art["name"] == "out.txt" and len(art["groups"]) == 1
    built = host_run_dir(netlab, "h1", data["run_id"]) / "work" / "out.txt"
    assert built.read_text() == "input\nsame-bytes\n"
    assert art["groups"][0]["sha256"] == sha256_of(built)
    assert_logs_complete(netlab, only_run_dir(out), "h1", 4)


# --- 2. a link gone for good ----------------------------------------------------------------------


def test_link_down_for_good_is_unreachable_and_others_finish(
    netlab: NetnsLab, tmp_path: Path
) -> None:
    fast = {
        "repro_connect_timeout": 2,
        "repro_keepalive_interval": 1,
        "repro_keepalive_count_max": 2,
        "repro_reconnect_timeout": 4,
    }
    inv = inventory_with(netlab, tmp_path / "inv.yaml", {"h2": fast})
    pb = counting_playbook(tmp_path, seconds=3)
    out = tmp_path / "reports"
    began = time.monotonic()
    proc = controller("run", "--keep-work", "-i", str(inv), "-p", str(pb), "--out", str(out))
    wait_for(lambda: starts(netlab.host("h2").home) == 1, "the build step to start on h2", proc)
    netlab.link_down("h2")  # packets vanish: no RST, no FIN, only silence
    code, _, err = finish(proc)
    took = time.monotonic() - began
    assert code == 3, err
    assert took < 25, f"a dead link held the run for {took:.0f}s"
    data = report(out)
    status = {h["name"]: h["status"] for h in data["hosts"]}
    assert status == {"h1": "ok", "h2": "unreachable", "h3": "ok"}
    h2 = next(h for h in data["hosts"] if h["name"] == "h2")
    # The last reason it stayed away, not a bare "not connected".
    error = h2["error"]
    assert error.startswith(f"cannot connect to {netlab.host('h2').address}:22: "), error
    assert data["verdict"] == "inconclusive"
    assert any("h2" in r for r in data["reasons"]), data["reasons"]
    (art,) = data["artifacts"]
    assert sorted(art["groups"][0]["hosts"]) == ["h1", "h3"]
    # The build itself went on without the controller: the detached step is not tied to SSH.
    netlab.link_up("h2")
    rc = host_run_dir(netlab, "h2", data["run_id"]) / "steps" / "1-02.rc"
    wait_for(rc.exists, "the orphaned step on h2 to finish on its own", timeout=10)
    assert rc.read_text().strip() == "0" and starts(netlab.host("h2").home) == 1


# --- 3. the controller SIGKILLed, then --resume ---------------------------------------------------


def test_killed_controller_resumes_with_the_same_result(netlab: NetnsLab, tmp_path: Path) -> None:
    inv, pb = str(netlab.inventory_path), counting_playbook(tmp_path, seconds=3)
    ref_out, out = tmp_path / "reference", tmp_path / "reports"
    code, _, err = run_cli("run", "--keep-work", "-i", inv, "-p", str(pb), "--out", str(ref_out))
    assert code == 0, err
    reference = report(ref_out)
    for h in netlab.hosts:  # counters from here on count the interrupted run only
        for step in ("prepare", "build"):
            (h.home / f"starts-{step}").unlink()

    proc = controller("run", "--keep-work", "-i", inv, "-p", str(pb), "--out", str(out))
    wait_for(lambda: all(starts(h.home) == 1 for h in netlab.hosts), "builds", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    run_dir = only_run_dir(out)
    assert (run_dir / "run.json").exists() and not (run_dir / "report.json").exists()
    for h in netlab.hosts:  # the builds outlived their controller
        assert not (host_run_dir(netlab, h.name, run_dir.name) / "steps" / "1-02.rc").exists()

    code, _, err = run_cli("run", "--resume", run_dir.name, "--out", str(out))
    assert code == 0, err
    data = report(out)
    assert data["run_id"] == run_dir.name
    assert (data["verdict"], data["exit_code"]) == (reference["verdict"], reference["exit_code"])
    assert hashes(data) == hashes(reference)
    assert [a["groups"][0]["sha256"] for a in data["artifacts"]] == [
        a["groups"][0]["sha256"] for a in reference["artifacts"]
    ]
    for h in netlab.hosts:
        assert starts(h.home, "prepare") == 1, f"{h.name}: prepare was redone"
        assert starts(h.home, "build") == 1, f"{h.name}: build was redone"
        assert_logs_complete(netlab, run_dir, h.name, 3)
        steps = next(x for x in data["hosts"] if x["name"] == h.name)["steps"]
        assert [(s["name"], s["exit_status"]) for s in steps] == [("prepare", 0), ("build", 0)]


# --- 4. timeout, cancel, Ctrl-C: nothing of the run survives on the hosts -------------------------


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


def step_running(lab: NetnsLab, name: str) -> bool:
    pids = list((lab.host(name).home / ".cache" / "repro" / "runs").glob("*/steps/1-01.pid"))
    return bool(pids) and pids[0].read_text().strip() != ""


def assert_nothing_left(lab: NetnsLab, run_id: str, names: tuple[str, ...] = ()) -> None:
    """No process of the run on the hosts (all by default). A poll the controller dropped when
    it stopped may still be finishing its (at most 1 s) wait, so survivors get a few seconds."""
    left: dict[str, list[str]] = {}

    def gone() -> bool:
        left.update({n: run_processes(lab, n, run_id) for n in names or lab.names})
        return not any(left.values())

    deadline = time.monotonic() + 5
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(left.values()), f"processes of the run survive: {left}"


def assert_cancelled_report(out: Path, word: str) -> dict[str, Any]:
    data = report(out)
    assert data["verdict"] == "inconclusive" and data["exit_code"] == 3
    assert all(h["status"] == "failed" for h in data["hosts"]), data["hosts"]
    assert all(word in (h["error"] or "") for h in data["hosts"]), data["hosts"]
    assert all(h["facts"] for h in data["hosts"]), "facts gathered before the end are kept"
    return data


def test_step_timeout_kills_everything_of_the_run(netlab: NetnsLab, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    began = time.monotonic()
    code, _, err = run_cli(
        "run", "--keep-work",
        "-i", str(netlab.inventory_path), "-p", str(hang_playbook(tmp_path, "2s")),
        "--out", str(out),
    )  # fmt: skip
    assert code == 3, err
    assert time.monotonic() - began < 20
    run_id = only_run_dir(out).name
    assert all(starts(h.home, "hang") == 1 for h in netlab.hosts)
    assert_nothing_left(netlab, run_id)
    assert_cancelled_report(out, "timed out after 2s")


def test_ctrl_c_is_prompt_while_a_host_is_away(netlab: NetnsLab, tmp_path: Path) -> None:
    """Default keepalive and reconnect timeouts (minutes): Ctrl-C must not wait them out."""
    out = tmp_path / "reports"
    argv = ["run", "--keep-work", "-i", str(netlab.inventory_path)]
    argv += ["-p", str(hang_playbook(tmp_path))]
    proc = controller(*argv, "--out", str(out))
    wait_for(lambda: all(step_running(netlab, h.name) for h in netlab.hosts), "steps", proc)
    run_id = only_run_dir(out).name
    netlab.link_down("h2")  # the controller's next poll of h2 hangs on a silent link
    time.sleep(1.5)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code, stdout, err = finish(proc, timeout=30)
    assert time.monotonic() - began < 15, "Ctrl-C waited for an absent host"
    assert code == 130, err
    assert "INCONCLUSIVE" in stdout and err.endswith(f"is in {out / run_id}\n"), err
    data = assert_cancelled_report(out, "cancelled")
    assert {h["name"] for h in data["hosts"]} == {"h1", "h2", "h3"}
    assert_nothing_left(netlab, run_id, ("h1", "h3"))
    # h2's build could not be reached; `repro cancel` finishes the job once it is back.
    netlab.link_up("h2")
    assert run_processes(netlab, "h2", run_id), "h2's step should have outlived the controller"
    code, stdout, err = run_cli("cancel", run_id, "--out", str(out))
    assert code == 0, err
    assert "h2: killed 1 running step" in stdout, stdout
    assert_nothing_left(netlab, run_id)


def test_repro_cancel_stops_the_whole_run(netlab: NetnsLab, tmp_path: Path) -> None:
    """Running steps are killed; h3, still waiting for a slot (--forks 2), never starts one."""
    out = tmp_path / "reports"
    argv = ["run", "--keep-work", "-i", str(netlab.inventory_path)]
    argv += ["-p", str(hang_playbook(tmp_path))]
    proc = controller(*argv, "--forks", "2", "--out", str(out))
    wait_for(lambda: step_running(netlab, "h1") and step_running(netlab, "h2"), "steps", proc)
    run_id = only_run_dir(out).name
    assert run_processes(netlab, "h1", run_id) and run_processes(netlab, "h2", run_id)
    assert starts(netlab.host("h3").home, "hang") == 0
    code, stdout, err = run_cli("cancel", run_id, "--out", str(out))
    assert code == 0, err
    assert stdout.count("killed 1 running step") == 2 and "h3: nothing running" in stdout, stdout
    code, _, err = finish(proc, timeout=30)
    assert code == 3, err
    assert starts(netlab.host("h3").home, "hang") == 0, "a cancelled run started a build on h3"
    assert_nothing_left(netlab, run_id)
    assert_cancelled_report(out, "cancelled")
    # A cancelled run stays cancelled: a second cancel finds nothing, --resume starts nothing.
    code, stdout, _ = run_cli("cancel", run_id, "--out", str(out))
    assert code == 0 and stdout.count("nothing running") == 3, stdout
    code, _, err = run_cli("run", "--resume", run_id, "--out", str(out))
    assert code == 3, err
    assert [starts(h.home, "hang") for h in netlab.hosts] == [1, 1, 0]
    assert_nothing_left(netlab, run_id)


# --- a start cut short ----------------------------------------------------------------------------


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

    async def go() -> tuple[str, detach.Reply]:
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

    error, launched = asyncio.run(asyncio.wait_for(go(), 30))
    assert "could not write /root/cut/steps/1-01.sh" in error and "truncated" in error, error
    first = launched.polls[0]
    assert launched.fresh and first.exit_status == 0 and first.data == b"done\n", launched
    home = netlab.host("h1").home
    assert (home / "starts-cut").read_text() == "start\n"
    assert (home / "cut" / "work" / "parts").read_text() == "part\n" * 50
    assert (home / "cut" / "steps" / "1-01.sh").read_text() == script
    assert not list((home / "cut" / "steps").glob("*.repro-tmp"))
