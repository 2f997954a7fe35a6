"""Security on both labs (tests/bothlabs.py): hostile values must reach the host's shell as data,
hostile output must not reach the terminal (a real pty), the report or the controller's file
system; on real OpenSSH hosts only, host keys changed mid-run or trusted on purpose.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from repro.netlab import NetnsLab
from repro.transport.asyncssh import fingerprint
from tests.bothlabs import Lab, lab  # noqa: F401 - lab is the fixture
from tests.procs import REPO, controller, finish, starts, wait_for
from tests.test_cli_inprocess import only_run_dir, report, run_cli
from tests.test_resilience import _net, gated_playbook

QUICK = textwrap.dedent("""\
    name: quick
    steps:
      - name: build
        run: echo same-bytes > out.txt
    artifacts: [{glob: out.txt}]
    """)


def known_fingerprint(lab: NetnsLab, name: str) -> str:
    """The fingerprint the lab's known_hosts holds for `name`."""
    address = lab.host(name).address
    for line in lab.known_hosts_path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == address:
            return fingerprint(" ".join(fields[1:3]))
    raise AssertionError(f"{name} ({address}) is not in {lab.known_hosts_path}")


def keyscan(address: str) -> str:
    """The ed25519 key the host really serves, as `type base64`, read by OpenSSH's own tool."""
    done = subprocess.run(
        ["ssh-keyscan", "-T", "5", "-t", "ed25519", address],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    lines = [ln.split() for ln in done.stdout.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 1 and lines[0][0] == address, done.stdout + done.stderr
    return " ".join(lines[0][1:3])


# --- 5. a changed host key ------------------------------------------------------------------------


@pytest.mark.netns
def test_changed_host_key_mid_run_stops_that_host_only(netlab: NetnsLab, tmp_path: Path) -> None:
    pb = gated_playbook(tmp_path)
    out = tmp_path / "reports"
    old = known_fingerprint(netlab, "h2")
    # Default reconnect timeout (300 s): a changed key must stop h2 at once, not be waited out
    # (finish's bound is far below it).
    proc = controller("run", "--keep-work", "-i", str(netlab.inventory_path), "-p", str(pb), "--out", str(out))
    wait_for(lambda: starts(netlab.host("h2").home) == 1, "the build step to start on h2", proc)
    new = fingerprint(netlab.regenerate_host_key("h2"))  # sshd restarts: the controller reconnects
    for h in netlab.hosts:
        (h.home / "go").touch()
    code, stdout, err = finish(proc)
    assert code == 3, err
    data = report(out)
    status = {h["name"]: h["status"] for h in data["hosts"]}
    assert status == {"h1": "ok", "h2": "unreachable", "h3": "ok"}
    error = next(h["error"] for h in data["hosts"] if h["name"] == "h2")
    address = netlab.host("h2").address
    assert f"host key for {address}:22 has CHANGED" in error, error
    assert f"known {old}, offered {new}" in error, error
    assert f"ssh-keygen -R {address} -f {netlab.known_hosts_path}" in error
    # the hint is a command that works as it is: it names the inventory (issue 10)
    assert f"`repro hosts trust -i {netlab.inventory_path} --limit h2`" in error, error
    assert "[h2]" in err and "CHANGED" in err, "the terminal names the host and the reason"
    assert re.search(r"(?m)^h2 .* unreachable\b", stdout), stdout
    assert data["verdict"] == "inconclusive"
    assert (netlab.known_hosts_path.read_text().count(address)) == 1, "known_hosts untouched"


# --- 6. repro hosts trust -------------------------------------------------------------------------


@pytest.mark.netns
def test_hosts_trust_records_real_keys_and_never_replaces_one(
    netlab: NetnsLab, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    inv = _net(netlab).inventory_with(
        tmp_path / "inv.yaml",
        {h.name: {"repro_known_hosts": str(known)} for h in netlab.hosts},
    )
    pb = tmp_path / "quick.yaml"
    pb.write_text(QUICK)

    # Nothing is trusted yet: a run refuses every host, and says how to trust them.
    code, _, err = run_cli("run", "--keep-work", "-i", str(inv), "-p", str(pb), "--out", str(tmp_path / "r0"))
    assert code == 3, err
    data = report(tmp_path / "r0")
    assert {h["status"] for h in data["hosts"]} == {"unreachable"}
    assert all(f"repro hosts trust -i {inv} --limit {h['name']}" in h["error"] for h in data["hosts"])

    # No terminal and no --yes: refuse, exit 2, write nothing.
    code, _, err = finish(controller("hosts", "trust", "-i", str(inv)), timeout=60)
    assert code == 2, err
    assert "--yes" in err and err.count("\n") == 1
    assert known.read_text() == ""

    # --yes: every host's real key, exactly as OpenSSH sees it, and the lab's own record of it.
    code, stdout, err = run_cli("hosts", "trust", "-i", str(inv), "--yes")
    assert code == 0, stdout + err
    lines = known.read_text().splitlines()
    lab_lines = netlab.known_hosts_path.read_text().splitlines()
    assert lines == lab_lines == [f"{h.address} {keyscan(h.address)}" for h in netlab.hosts]
    for h in netlab.hosts:
        assert (
            f"{h.name}: {h.address} offers ssh-ed25519 {known_fingerprint(netlab, h.name)}"
            in stdout
        )
    code, _, err = run_cli("run", "--keep-work", "-i", str(inv), "-p", str(pb), "--out", str(tmp_path / "r1"))
    assert code == 0, err

    # Trusting again is a no-op.
    code, stdout, _ = run_cli("hosts", "trust", "-i", str(inv), "--yes")
    assert code == 0 and stdout.count("already trusted") == 3
    assert known.read_text().splitlines() == lines

    # A changed key is never replaced, even with --yes: both fingerprints, exit 3, file as it was.
    before = known.read_bytes()
    old = known_fingerprint(netlab, "h3")
    new = fingerprint(netlab.regenerate_host_key("h3"))
    code, stdout, err = run_cli("hosts", "trust", "-i", str(inv), "--yes")
    assert code == 3, stdout + err
    assert known.read_bytes() == before
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("h3:")]
    assert "HOST KEY CHANGED" in line and f"known {old}, offered {new}" in line, line
    assert f"ssh-keygen -R '{netlab.host('h3').address}' -f {known}" in line
    assert stdout.count("already trusted") == 2

    # The run names h3 and the way out; following that advice on purpose lets h3 back in.
    code, _, err = run_cli("run", "--keep-work", "-i", str(inv), "-p", str(pb), "--out", str(tmp_path / "r2"))
    assert code == 3, err
    error = next(h["error"] for h in report(tmp_path / "r2")["hosts"] if h["name"] == "h3")
    forget = re.search(r"`(ssh-keygen -R [^`]+)`", error)
    assert forget and f"`repro hosts trust -i {inv} --limit h3`" in error, error
    done = subprocess.run(
        shlex.split(forget.group(1)), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    code, stdout, err = run_cli("hosts", "trust", "-i", str(inv), "--limit", "h3", "--yes")
    assert code == 0, stdout + err
    assert f"{netlab.host('h3').address} {keyscan(netlab.host('h3').address)}" in known.read_text()
    code, _, err = run_cli("run", "--keep-work", "-i", str(inv), "-p", str(pb), "--out", str(tmp_path / "r3"))
    assert code == 0, err


# --- 7. hostile values reach the host's shell as data ---------------------------------------------

NASTY = [
    "a; touch CANARY",
    "$(touch CANARY)",
    '`touch "$HOME/CANARY"`',
    'it\'s "quoted" \\ and \\\\ back',
    "line1\nline2; touch /tmp/CANARY",
    "-rf --no-preserve-root",
    "${HOME}/../x $((6*7)) * ?",
    "x' ; touch CANARY ; echo '",
    "$(printf '\\164ouch CANARY')",
]
INVENTORY_NASTY = [
    "$(touch CANARY)`touch CANARY`",
    "a\nb'; touch \"$HOME/CANARY\"; echo '",
    '\\"; touch /tmp/CANARY #',
]


def echo_playbook(tmp: Path) -> Path:
    """Every -e value and one inventory value, written by printf and through the environment."""
    names = [f"v{i}" for i in range(len(NASTY))] + ["inv"]
    writes = "".join(
        f"printf '%s' {{{{ {n} }}}} > got-{n}.txt\nprintf '%s' \"$E_{n}\" > env-{n}.txt\n"
        for n in names
    )
    doc = {
        "name": "echo",
        "vars": {n: None for n in names},
        "steps": [
            {"name": "write", "env": {f"E_{n}": f"{{{{ {n} }}}}" for n in names}, "run": writes}
        ],
        # -e values are the same everywhere; the inventory's differ per host, so not compared
        "artifacts": [{"glob": "got-v*.txt"}, {"glob": "env-v*.txt"}],
    }
    pb = tmp / "echo.yaml"
    pb.write_text(json.dumps(doc))  # JSON is YAML: no quoting of ours to get wrong
    return pb


def test_hostile_values_pass_through_literally(lab: Lab, tmp_path: Path) -> None:
    nasty = dict(zip(lab.names, INVENTORY_NASTY))
    inv = lab.inventory_with(tmp_path / "inv.yaml", {n: {"inv": v} for n, v in nasty.items()})
    pb = echo_playbook(tmp_path)
    out = tmp_path / "reports"
    argv = ["run", "--keep-work", "-i", str(inv), "-p", str(pb), "--out", str(out)]
    for i, value in enumerate(NASTY):
        argv += ["-e", f"v{i}={value}"]
    cwd_before = set(os.listdir())
    code, _, err = run_cli(*argv)
    assert code == 0, err
    data = report(out)
    for name in lab.names:
        assert lab.canaries(name) == [], f"an injected command ran on {name}"
        work = lab.run_dir(name, data["run_id"]) / "work"
        for i, value in enumerate(NASTY):
            assert (work / f"got-v{i}.txt").read_text() == value
            assert (work / f"env-v{i}.txt").read_text() == value
        assert (work / "got-inv.txt").read_text() == nasty[name]
        assert (work / "env-inv.txt").read_text() == nasty[name]
    assert set(os.listdir()) == cwd_before and not list(tmp_path.rglob("*CANARY*"))
    assert data["verdict"] == "reproducible" and len(data["artifacts"]) == 2 * len(NASTY)
    # (--keep-work is a variable too: repro_keep_work, recorded like the others)
    assert data["vars"] == {f"v{i}": v for i, v in enumerate(NASTY)} | {"repro_keep_work": True}


# --- 8. hostile output: names, paths and escape sequences from a host -----------------------------

HOSTILE = textwrap.dedent(r"""
    name: hostile
    vars: {mode: plain}
    steps:
      - name: make
        run: |
          mkdir -p out
          printf 'fine\n' > out/good.txt
          case {{ mode }} in
            escape) printf 'x' > "out/$(printf 'evil\033[2J\033]0;pwned\007name')";;
            newline) printf 'x' > "out/$(printf 'evil\nname')";;
            escape-dir)
              # out/.. and a symlink out of the work dir: neither may name a file to hash
              ln -s /etc/passwd out/passwd-link
              ln -s / out/root-link
              printf '%s  %s\n' "$(sha256sum < /etc/passwd | cut -c1-64)" ../../../../../etc/passwd \
                "$(printf fine | sha256sum | cut -c1-64)" ../good.txt > out/SHA256SUMS;;
          esac
          printf 'clear: \033[2J\033[H title: \033]0;pwned\007 link: \033]8;;http://evil/\033\\x\033]8;;\033\\ bell \007\n'
          printf 'the last line \033[2J\033]0;pwned\007\n'
    artifacts: [{glob: "*", dir: out}]
    manifests: [{glob: out/SHA256SUMS}]
    """)
# What the controller itself may send to a terminal: cursor up (F), clear line (2K), colours (m).
OWN_ESCAPES = re.compile(r"\x1b\[(?:[0-9]+F|2K|J|[0-9;]*m)")  # J: erase below a shrunk block


def run_in_pty(argv: list[str], timeout: float = 45.0) -> tuple[int, str]:
    """The controller with a real terminal on stdin/stdout/stderr: what a person would see."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PYTHONPATH=str(REPO), TERM="xterm-256color", COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, "-m", "repro.cli", *argv],
        cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the controller closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        else:
            raise AssertionError(f"controller still running after {timeout:g}s: {seen[-2000:]!r}")
        return proc.wait(10), seen.decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)


def test_hostile_output_never_reaches_terminal_report_or_disk(lab: Lab, tmp_path: Path) -> None:
    h1, h2, h3 = lab.names
    modes = {h1: "escape", h2: "newline", h3: "escape-dir"}
    inv = lab.inventory_with(tmp_path / "inv.yaml", {n: {"mode": m} for n, m in modes.items()})
    pb = tmp_path / "hostile.yaml"
    pb.write_text(HOSTILE)
    out = tmp_path / "reports"
    code, screen = run_in_pty(["run", "--keep-work", "-i", str(inv), "-p", str(pb), "--out", str(out)])
    assert code == 3, screen
    assert "\x1b[2K" in screen, "the live per-host view was drawn (a real terminal)"
    stray = OWN_ESCAPES.sub("", screen)
    assert "\x1b" not in stray and "\x07" not in stray, ascii(stray)[-2000:]
    assert "pwned" not in screen.replace("\\x1b]0;pwned", ""), "a title escape got through"

    data = report(out)
    hosts = {h["name"]: h for h in data["hosts"]}
    assert hosts[h1]["status"] == hosts[h2]["status"] == "failed"
    # refused as a name, shown escaped: the error quotes it with its escapes spelled out
    assert re.fullmatch(r"line \d+: 'evil\\x1b\[2J\\x1b\]0;pwned\\x07name' is not a safe file name",
                        hosts[h1]["error"]), hosts[h1]["error"]  # fmt: skip
    h2_error = hosts[h2]["error"]
    assert h2_error.startswith("hashing the artifacts failed (exit 1): ") and "newline" in h2_error
    assert hosts[h1]["artifacts"] == hosts[h2]["artifacts"] == {}
    # h3: only its real files; nothing through `..`, a symlink or the manifest's escapes
    assert hosts[h3]["status"] == "ok", hosts[h3]["error"]
    assert set(hosts[h3]["artifacts"]) == {"good.txt", "SHA256SUMS"}
    assert data["verdict"] == "inconclusive"

    run_dir = only_run_dir(out)
    for name in ("report.json", "report.md", "report.html"):
        text = (run_dir / name).read_text()
        assert "\x1b" not in text and "\x07" not in text, name
    # the plain line view streams every step's output (-v): escaped there too
    code, stdout, err = run_cli("run", "--keep-work", "-i", str(inv), "-p", str(pb), "-v",
                                "--out", str(tmp_path / "lines"))  # fmt: skip
    assert code == 3 and "clear: \\x1b[2J" in err, err
    assert not {"\x1b", "\x07"} & set(stdout + err), ascii(stdout + err)[-2000:]
    code, html, _ = run_cli("report", str(run_dir), "--format", "html")
    assert code == 0 and "\x1b" not in html and "<script" not in html.lower()
    assert html == (run_dir / "report.html").read_text()  # written with the run, the same
    # Nothing a host named became a path on the controller: only the files repro itself names.
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    expected = [f"{run_dir.name}/hosts/{h}/01-make.log" for h in (h1, h2, h3)]
    expected += [f"{run_dir.name}/{f}" for f in ("report.html", "report.json", "report.md", "run.json")]
    expected += ["history.sqlite"]  # the run's row in the history
    assert made == sorted(expected), made
    # ... and the history shows what those hosts sent as text, never as markup or escapes
    code, page, _ = run_cli("history", "--out", str(out), "--format", "html")
    assert code == 0 and "\x1b" not in page and "<script" not in page.lower()
    code, table, _ = run_cli("history", "--out", str(out))
    assert code == 0 and "\x1b" not in table and "\x07" not in table
    # The build log is kept as the host wrote it (it is evidence), in the run's own directory.
    log = (run_dir / "hosts" / h1 / "01-make.log").read_bytes()
    assert b"\x1b]0;pwned\x07" in log


def test_value_that_cannot_be_made_safe_is_rejected(tmp_path: Path) -> None:
    # refused before any host is contacted: the inventory's one host does not exist
    pb = echo_playbook(tmp_path)
    inv = tmp_path / "inv.yaml"
    inv.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 192.0.2.1\n")
    out = tmp_path / "reports"
    argv = ["run", "--keep-work", "-i", str(inv), "-p", str(pb), "--out", str(out)]
    code, _, err = run_cli(*argv, *(f"-e v{i}=x" for i in range(len(NASTY))), "-e", "inv=x",
                           "-e", "v0=bell\x07\x1b[2J")  # fmt: skip
    assert code == 2 and re.search(r"\bv0\b", err) and err.count("\n") == 1, err
    assert "\x1b" not in err
    assert not out.exists()
