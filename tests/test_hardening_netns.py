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
import textwrap
import time
from pathlib import Path

import pytest

from repro.netlab import NetnsLab
from tests.procs import controller, finish, wait_for
from tests.test_cli_inprocess import only_run_dir, report, run_cli
from tests.test_resilience_netns import host_run_dir, inventory_with
from tests.test_security_netns import QUICK

pytestmark = pytest.mark.netns


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


def test_secrets_stay_off_command_lines_and_out_of_every_file(
    netlab: NetnsLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"tok-S3CRET-{secrets.token_hex(6)}"
    api = f"api-S3CRET-{secrets.token_hex(6)}"
    become = f"bec-S3CRET-{secrets.token_hex(6)}"
    inv = inventory_with(
        netlab,
        tmp_path / "inv.yaml",
        {h.name: {"ansible_become_password": become} for h in netlab.hosts},
    )
    pb = tmp_path / "secret.yaml"
    pb.write_text(SECRET_PB)
    out = tmp_path / "reports"
    # Neither value on the controller's own command line either: a file and the environment.
    extra = tmp_path / "vars.yaml"
    extra.write_text(f"token: {token}\n")
    monkeypatch.setenv("api_key", api)
    proc = controller(
        "run", "-i", str(inv), "-p", str(pb), "--out", str(out),
        "-e", f"@{extra}", "--secret", "api_key",
    )  # fmt: skip
    homes = [h.home for h in netlab.hosts]
    try:
        wait_for(lambda: all((home / "started").exists() for home in homes), "steps", proc)
        # While every step runs: no process on the machine shows a value in its command line
        # (the launcher, the supervisor, the step's shell, sshd's session, the controller).
        for line in all_cmdlines():
            for value in (token, api, become):
                assert value.encode() not in line, line[:300]
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
        assert stat.S_IMODE((steps / "secrets").stat().st_mode) == 0o600
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
    import subprocess
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
    argv = ["run", "-i", str(netlab.inventory_path), "-p", str(pb), "--out", str(out)]
    code, rss_kib, err = controller_rss([*argv, "--transport", transport], tmp_path)
    assert code == 3, err
    hosts = {h["name"]: h for h in report(out)["hosts"]}
    assert hosts["h1"]["status"] == hosts["h3"]["status"] == "ok"
    assert hosts["h2"]["status"] == "failed"
    assert "more than 8 MiB in reply to one command" in hosts["h2"]["error"]
    assert rss_kib < 200 * 1024, f"the controller grew to {rss_kib // 1024} MiB"
