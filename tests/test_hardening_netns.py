"""Hardening on real OpenSSH hosts (issue 10, the controller's side): secrets never on a command
line or in a readable file, bounded replies, faults reported as what they are, aborts that
still write the report. Fault tests check the order of events, never how long things took.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from repro.netlab import NetnsLab
from tests.procs import controller, finish, state, wait_for
from tests.test_cli_inprocess import only_run_dir, report, run_cli
from tests.bothlabs import RUNS, Lab
from tests.test_security import QUICK

pytestmark = pytest.mark.netns


def host_run_dir(lab: NetnsLab, name: str, run_id: str) -> Path:
    """The run's directory on host `name`, as this process sees it."""
    return lab.host(name).home / RUNS / run_id


def inventory_with(lab: NetnsLab, dest: Path, host_vars: dict[str, dict[str, object]]) -> Path:
    homes = {h.name: h.home for h in lab.hosts}
    return Lab("netns", lab.inventory_path, list(homes), homes, _net=lab).inventory_with(
        dest, host_vars
    )


def all_cmdlines() -> list[bytes]:
    """Every process's command line on this machine (the lab shares its pid namespace)."""
    lines = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    lines.append(fh.read())
            except OSError:
                continue
    return lines


SECRET_PB = textwrap.dedent("""\
    name: secretive
    secrets: [token]
    steps:
      - name: use
        env: {AUTH: "Bearer {{ token }}"}
        run: |
          echo "token={{ token }} api={{ api_key }} become={{ ansible_become_password }} auth=$AUTH"
          printf '%s' {{ token }} > token.txt
          printf '%s' "$AUTH" > auth.txt
          : > "$HOME/started"
          i=0
          while [ ! -e "$HOME/go" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
    artifacts: [{glob: "*.txt"}]
    """)


def secret_run(
    lab: NetnsLab, tmp: Path, monkeypatch: pytest.MonkeyPatch, *argv: str
) -> tuple[subprocess.Popen[str], Path, tuple[str, str, str]]:
    """A controller running SECRET_PB with three secrets: `token` (the playbook's, from an -e
    file), `api_key` (--secret, from the environment) and every host's Ansible become
    password. None is on the controller's own command line either."""
    token = f"tok-S3CRET-{secrets.token_hex(6)}"
    api = f"api-S3CRET-{secrets.token_hex(6)}"
    become = f"bec-S3CRET-{secrets.token_hex(6)}"
    inv = inventory_with(
        lab, tmp / "inv.yaml", {h.name: {"ansible_become_password": become} for h in lab.hosts}
    )
    pb = tmp / "secret.yaml"
    pb.write_text(SECRET_PB)
    out = tmp / "reports"
    extra = tmp / "vars.yaml"
    extra.write_text(f"token: {token}\n")
    monkeypatch.setenv("api_key", api)
    proc = controller(
        "run", "--keep-work", "-i", str(inv), "-p", str(pb), "--out", str(out),
        "-e", f"@{extra}", "--secret", "api_key", *argv,
    )  # fmt: skip
    return proc, out, (token, api, become)


def test_secrets_stay_off_command_lines_and_out_of_every_file(
    netlab: NetnsLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, out, (token, api, become) = secret_run(netlab, tmp_path, monkeypatch)
    homes = [h.home for h in netlab.hosts]
    try:
        wait_for(lambda: all((home / "started").exists() for home in homes), "steps", proc)
        # While every step runs: no process on the machine shows a value in its command line
        # (the launcher, the supervisor, the step's shell, sshd's session, the controller).
        for line in all_cmdlines():
            for value in (token, api, become):
                assert value.encode() not in line, line[:300]
        # the values wait for the steps in a file only the build account can read
        for h in netlab.hosts:
            (run_dir,) = (h.home / ".cache" / "repro" / "runs").iterdir()
            assert stat.S_IMODE((run_dir / "steps" / "secrets").stat().st_mode) == 0o600
    finally:
        for home in homes:
            (home / "go").touch()
    code, _, err = finish(proc)
    assert code == 0, err
    for value in (token, api, become):
        assert value not in err

    data = report(out)
    run_dir = only_run_dir(out)
    # the values did reach the steps
    for h in netlab.hosts:
        work = host_run_dir(netlab, h.name, data["run_id"]) / "work"
        assert (work / "token.txt").read_text() == token
        assert (work / "auth.txt").read_text() == f"Bearer {token}"
        steps = work.parent / "steps"
        assert not (steps / "secrets").exists(), "removed once the host was done"
        for script in steps.glob("*.sh"):
            assert token not in script.read_text() and api not in script.read_text()
    # ... and nowhere on the controller's disk but as ***
    code, html, _ = run_cli("report", str(run_dir), "--format", "html")
    assert code == 0
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    for blob in [html, *(p.read_text() for p in files)]:
        for value in (token, api, become):
            assert value not in blob
    log = (run_dir / "hosts" / "h1" / "01-use.log").read_text()
    assert log.startswith("token=*** api=*** become=*** auth=Bearer ***"), log
    assert data["vars"]["token"] == data["vars"]["api_key"] == "***"
    plan = json.loads((run_dir / "run.json").read_text())
    assert plan["hosts"][0]["vars"]["ansible_become_password"] == "***"
    assert stat.S_IMODE((run_dir / "run.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700


# --- a bounded controller -------------------------------------------------------------------------

def controller_rss(argv: list[str], tmp: Path) -> tuple[int, int, str]:
    """Run the controller to its end; (exit status, its peak RSS in KiB, its stderr)."""
    import sys

    from tests.procs import REPO

    err = tmp / "controller.err"
    with open(err, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "repro.cli", *argv],
            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO), CI="1"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=fh,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:  # bounded: a controller that hangs fails the test
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("controller still running: " + err.read_text()[-2000:])
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss, err.read_text()


@pytest.mark.parametrize("transport", ["asyncssh", "fabric"])
def test_a_host_that_floods_its_replies_cannot_grow_the_controller(
    netlab: NetnsLab, tmp_path: Path, transport: str
) -> None:
    # h2's login shell prints 512 MiB before every command (bash reads ~/.bashrc for ssh)
    (netlab.host("h2").home / ".bashrc").write_text("head -c 536870912 /dev/zero\n")
    pb = tmp_path / "quick.yaml"
    pb.write_text(QUICK)
    out = tmp_path / "reports"
    argv = ["run", "--keep-work", "-i", str(netlab.inventory_path), "-p", str(pb), "--out", str(out)]
    code, rss_kib, err = controller_rss([*argv, "--transport", transport], tmp_path)
    assert code == 3, err
    hosts = {h["name"]: h for h in report(out)["hosts"]}
    assert hosts["h1"]["status"] == hosts["h3"]["status"] == "ok"
    assert hosts["h2"]["status"] == "failed"
    assert "more than 8 MiB in reply to one command" in hosts["h2"]["error"]
    assert rss_kib < 200 * 1024, f"the controller grew to {rss_kib // 1024} MiB"


# --- aborts, --resume, one controller per run ---------------------------------------------------

WAITING = textwrap.dedent("""\
    name: waiting
    steps:
      - name: build
        timeout: 2m
        run: |
          : > "$HOME/started"
          i=0
          while [ ! -e "$HOME/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
          echo same > out.txt
    artifacts: [{glob: out.txt}]
    """)


def start_waiting(lab: NetnsLab, tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    pb = tmp / "waiting.yaml"
    pb.write_text(WAITING)
    out = tmp / "reports"
    proc = controller("run", "--keep-work", "-i", str(lab.inventory_path), "-p", str(pb), "--out", str(out))
    wait_for(lambda: all((h.home / "started").exists() for h in lab.hosts), "steps", proc)
    return proc, out


def supervisor_alive(lab: NetnsLab, name: str, run_id: str) -> bool:
    from tests.procs import group_alive

    pid = (host_run_dir(lab, name, run_id) / "steps" / "1-plan.pid").read_text().strip()
    return group_alive(int(pid))


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_sighup_writes_the_report_leaves_builds_running_and_resume_keeps_host_times(
    netlab: NetnsLab, tmp_path: Path
) -> None:
    proc, out = start_waiting(netlab, tmp_path)
    hup = time.time()
    proc.send_signal(signal.SIGHUP)
    code, _, err = finish(proc)
    assert code == 130, err
    assert "the builds go on" in err and "--resume" in err
    first = report(out)
    rid = first["run_id"]
    assert {h["status"] for h in first["hosts"]} == {"failed"}
    # the builds went on without a controller, and ended while none was there
    assert all(supervisor_alive(netlab, h.name, rid) for h in netlab.hosts)
    for h in netlab.hosts:
        (h.home / "go").touch()
    steps = [host_run_dir(netlab, h.name, rid) / "steps" for h in netlab.hosts]
    wait_for(lambda: all(state(s / "1-plan.rc") is not None for s in steps), "the rounds to end")
    ended = time.time()
    # The host's clock counts whole seconds (the times are right to within 1 s): the resume
    # comes well after that, so "seen by a controller" cannot pass for "happened".
    time.sleep(2.5)
    code, _, err = run_cli("run", "--resume", rid, "--out", str(out))
    assert code == 0, err
    data = report(out)
    assert data["verdict"] == "reproducible"
    assert data["started_at"] == first["started_at"], "a resumed run keeps its first start"
    for h in data["hosts"]:
        (step,) = h["steps"]
        # taken from the host's clock: it started before the SIGHUP and ended before the
        # resume, which is when a controller first saw it end
        assert step["started_at"] <= iso(hup + 1), step
        assert step["finished_at"] <= iso(ended + 1), step
    # a finished run is not run again, and its report stays as it is
    before = (only_run_dir(out) / "report.json").read_bytes()
    code, _, err = run_cli("run", "--resume", rid, "--out", str(out))
    assert code == 2 and "nothing to resume" in err and err.count("\n") == 1, err
    assert (only_run_dir(out) / "report.json").read_bytes() == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_write_the_report_kill_the_builds_and_exit_130(
    netlab: NetnsLab, tmp_path: Path, sig: signal.Signals
) -> None:
    proc, out = start_waiting(netlab, tmp_path)
    proc.send_signal(sig)
    code, _, err = finish(proc)
    assert code == 130, err
    data = report(out)
    assert {h["status"] for h in data["hosts"]} == {"failed"}
    assert not any(supervisor_alive(netlab, h.name, data["run_id"]) for h in netlab.hosts)


def test_a_second_controller_on_a_live_run_is_refused(netlab: NetnsLab, tmp_path: Path) -> None:
    proc, out = start_waiting(netlab, tmp_path)
    rid = only_run_dir(out).name
    try:
        code, _, err = run_cli("run", "--resume", rid, "--out", str(out))
        assert code == 2, err
        assert err.count("\n") == 1 and "being run by another repro right now" in err, err
    finally:
        for h in netlab.hosts:
            (h.home / "go").touch()
    code, _, err = finish(proc)
    assert code == 0, err


# --- faults reported as what they are -------------------------------------------------------------


def test_a_host_away_at_the_first_connect_gets_the_reconnect_window(
    netlab: NetnsLab, tmp_path: Path
) -> None:
    import threading

    pb = tmp_path / "quick.yaml"
    pb.write_text(QUICK)
    out = tmp_path / "reports"
    netlab.stop_sshd("h2")
    proc = controller(
        "run", "--keep-work", "-i", str(netlab.inventory_path), "-p", str(pb), "--out", str(out),
        "--reconnect-timeout", "60",
    )  # fmt: skip
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
    reader.start()
    try:
        wait_for(lambda: any(ln.startswith("[h2] reconnecting") for ln in lines), "a retry", proc)
        netlab.start_sshd("h2")
        assert proc.wait(60) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(10)
    h2 = [ln for ln in lines if ln.startswith("[h2]")]
    said = [ln.split(":")[0].split("] ")[1] for ln in h2]
    assert said.index("reconnecting") < said.index("connected"), h2
    assert "connection refused" in h2[said.index("reconnecting")], h2
    assert {h["status"] for h in report(out)["hosts"]} == {"ok"}


@pytest.mark.parametrize("transport", ["asyncssh", "fabric"])
def test_why_a_host_is_unreachable_is_said_as_it_is(
    netlab: NetnsLab, tmp_path: Path, transport: str
) -> None:
    pb = tmp_path / "quick.yaml"
    pb.write_text(QUICK)
    out = tmp_path / "reports"
    netlab.stop_sshd("h2")  # nothing listens: refused
    netlab.link_down("h3")  # nothing answers: timed out
    inv = inventory_with(netlab, tmp_path / "inv.yaml", {"h3": {"repro_connect_timeout": 1}})
    code, _, err = run_cli(
        "run", "--keep-work", "-i", str(inv), "-p", str(pb), "--out", str(out), "--transport", transport,
        "--reconnect-timeout", "2",
    )  # fmt: skip
    assert code == 3, err
    hosts = {h["name"]: h for h in report(out)["hosts"]}
    assert hosts["h1"]["status"] == "ok"
    assert hosts["h2"]["status"] == hosts["h3"]["status"] == "unreachable"
    assert hosts["h2"]["error"].endswith(": connection refused"), hosts["h2"]["error"]
    assert hosts["h3"]["error"].endswith(": timed out after 1s"), hosts["h3"]["error"]
    for name in ("h2", "h3"):
        assert "lost" not in hosts[name]["error"] and "Errno" not in hosts[name]["error"]
        assert f"[{name}] reconnecting: cannot connect to" in err, err



def test_a_resumed_run_masks_the_secrets_it_was_not_given_again(
    netlab: NetnsLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, out, (token, api, become) = secret_run(netlab, tmp_path, monkeypatch, "-l", "h1")
    home = netlab.host("h1").home
    wait_for(lambda: (home / "started").exists(), "the step", proc)
    proc.send_signal(signal.SIGHUP)
    code, _, err = finish(proc)
    assert code == 130, err
    (home / "go").touch()
    rid = only_run_dir(out).name
    steps = host_run_dir(netlab, "h1", rid) / "steps"
    wait_for(lambda: state(steps / "1-plan.rc") is not None, "the round to end")
    # no value given again: the new controller reads the log from the start, masked
    code, _, err = run_cli("run", "--resume", rid, "--out", str(out))
    assert code == 3 or code == 0, err  # quorum 2 with one host: inconclusive
    files = [p for p in only_run_dir(out).rglob("*") if p.is_file()]
    for blob in [err, *(p.read_text() for p in files)]:
        for value in (token, api, become):
            assert value not in blob
    log = (only_run_dir(out) / "hosts" / "h1" / "01-use.log").read_text()
    assert log.startswith("token=*** api=*** become=*** auth=Bearer ***"), log
    assert not (steps / "secrets").exists(), "removed once the resumed run was done"


def test_a_step_that_writes_the_secrets_file_gets_nothing_run(
    netlab: NetnsLab, tmp_path: Path
) -> None:
    # Round 1's step appends shell code to the secrets file; round 2's supervisor reads that
    # file as data (NAME=value lines), so none of it runs.
    pb = tmp_path / "tamper.yaml"
    pb.write_text(textwrap.dedent("""\
        name: tamper
        secrets: [token]
        rounds: 2
        steps:
          - name: tamper
            run: |
              printf '%s\\n' 'touch "$HOME/CANARY-1"' \\
                'REPRO_SECRET_token=$(touch "$HOME/CANARY-2")' >> ../steps/secrets
              printf '%s' {{ token }} > token.txt
        artifacts: [{glob: token.txt}]
        """))
    out = tmp_path / "reports"
    extra = tmp_path / "vars.yaml"
    extra.write_text("token: the-token\n")
    code, _, err = run_cli(
        "run", "--keep-work", "-i", str(netlab.inventory_path), "-p", str(pb), "--out", str(out),
        "-e", f"@{extra}", "-l", "h1",
    )  # fmt: skip
    assert code == 1, err  # round 2 built with the value the step wrote: not stable
    home = netlab.host("h1").home
    assert not list(home.glob("CANARY*")), "the supervisor ran what a step wrote"
    work2 = host_run_dir(netlab, "h1", only_run_dir(out).name) / "work-r2"
    assert (work2 / "token.txt").read_text() == '$(touch "$HOME/CANARY-2")'  # as data


def test_a_chatty_step_keeps_head_and_tail_on_the_controller_and_all_on_the_host(
    netlab: NetnsLab, tmp_path: Path
) -> None:
    pb = tmp_path / "chatty.yaml"
    pb.write_text(textwrap.dedent("""\
        name: chatty
        steps:
          - name: talk
            run: |
              echo first-line
              yes 'the same line, again and again' | head -c 8000000
              echo last-line
              echo same > out.txt
        artifacts: [{glob: out.txt}]
        """))
    out = tmp_path / "reports"
    code, _, err = run_cli(
        "run", "--keep-work", "-i", str(netlab.inventory_path), "-p", str(pb), "--out", str(out),
        "-l", "h1", "--log-cap", "64K",
    )  # fmt: skip
    assert code == 3, err  # one host: below the quorum, inconclusive
    local = (only_run_dir(out) / "hosts" / "h1" / "01-talk.log").read_bytes()
    assert len(local) < 64 * 1024 + 200, len(local)
    assert local.startswith(b"first-line\n") and local.endswith(b"last-line\n")
    assert b"bytes cut here; the whole log is on the host in " in local
    remote = host_run_dir(netlab, "h1", only_run_dir(out).name) / "steps" / "1-01.log"
    assert remote.stat().st_size == len("first-line\n") + 8000000 + len("last-line\n")

