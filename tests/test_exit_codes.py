"""The CLI's error boundary: a bug or a report the controller cannot write exits 4 with one line
and a private debug log (never 1, a difference, nor 2, bad input); a user's stop exits 130.

The full disk is a real one: a small tmpfs, mounted for the test (root; as for the netns tier,
REPRO_REQUIRE_NETNS=1 turns "cannot" into a failure).
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from repro import commands
from repro.cli import main
from tests.labthread import LabThread
from tests.procs import controller, finish, wait_for
from tests.test_cli_inprocess import only_run_dir, report, run_cli

DEBUG_LINE = re.compile(r"^repro: (.*) \(details in (/\S+/repro-debug-\S+\.log)\)\n$")


@pytest.fixture
def debug_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where debug logs go for this test (the temp dir, as TMPDIR would set it)."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def debug_log(err: str, debug_dir: Path) -> tuple[str, str]:
    """The one line's message and the debug log's text; the log is private to its owner."""
    m = DEBUG_LINE.match(err)
    assert m, f"not one line naming a debug log: {err!r}"
    log = Path(m.group(2))
    assert log.parent == debug_dir
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    return m.group(1), log.read_text()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB filesystem (tmpfs), unmounted after the test."""
    if os.geteuid() != 0:
        if os.environ.get("REPRO_REQUIRE_NETNS") == "1":
            pytest.fail("REPRO_REQUIRE_NETNS=1 but not root: cannot mount a tmpfs")
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "repro-test", str(mnt)], check=True
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def fill(fs: Path) -> None:
    """Write to `fs` until it has no space left."""
    with open(fs / "filler", "wb", buffering=0) as f:
        with pytest.raises(OSError) as full:
            for _ in range(10_000):  # bounded: 40 MiB, far past the tmpfs's size
                f.write(b"\0" * 4096)
    assert full.value.errno == 28  # ENOSPC


def saved_run(tmp_path: Path) -> Path:
    """A real run's directory to re-render (from the in-process lab)."""
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        code, _, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(DEMO), "--out", str(out)
        )
    assert code == 0, err
    return only_run_dir(out)


DEMO = Path(__file__).resolve().parent.parent / "playbooks" / "demo.yaml"


# --- 4: repro itself failed ------------------------------------------------------------------


def test_a_bug_exits_4_with_one_line_and_a_private_debug_log(
    tmp_path: Path, debug_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*args: object) -> int:
        raise KeyError("no such thing\nsecond line")

    monkeypatch.setattr(commands, "cmd_report", bug)
    code, out, err = run_cli("report", str(tmp_path))
    assert (code, out) == (4, "")
    what, log = debug_log(err, debug_dir)
    assert what == "internal error: KeyError: 'no such thing\\nsecond line'"
    assert "Traceback (most recent call last)" in log and "in bug" in log
    assert "argv: ['report', " in log


def test_a_full_disk_under_the_report_exits_4(
    tmp_path: Path, tmpfs: Path, debug_dir: Path
) -> None:
    run_dir = saved_run(tmp_path)
    fill(tmpfs)
    dest = tmpfs / "report.html"
    code, out, err = run_cli("report", str(run_dir), "--format", "html", "-o", str(dest))
    assert (code, out) == (4, "")
    what, log = debug_log(err, debug_dir)
    assert what == f"error: {dest}: cannot write the report: No space left on device"
    assert "OSError: [Errno 28] No space left on device" in log
    assert sorted(p.name for p in tmpfs.iterdir()) == ["filler"]  # nothing half-written


def test_a_run_whose_disk_fills_exits_4_and_still_shows_what_it_gathered(
    tmp_path: Path, tmpfs: Path, debug_dir: Path
) -> None:
    pb = tmp_path / "chatty.yaml"
    pb.write_text(
        textwrap.dedent("""\
        name: chatty
        steps:
          - name: build
            run: |
              head -c 600000 /dev/zero | tr '\\0' x
              echo same > out.txt
        artifacts:
          - glob: out.txt
        """)
    )
    with LabThread(tmp_path / "lab", n=2) as lab:
        code, out, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(pb), "--out", str(tmpfs),
            "--format", "md",
        )  # fmt: skip
    assert code == 4, err
    # the step logs filled the disk: each host failed saying so, and the report could not be
    # written; the comparison still reached stdout
    assert out.startswith("**Inconclusive**"), out
    assert out.count("No space left on device") >= 2, out
    last = err.splitlines(keepends=True)[-1]
    what, log = debug_log(last, debug_dir)
    assert re.fullmatch(r"error: \S+: cannot write the report: No space left on device", what)
    assert "ReportWriteError" in log
    run_dir = only_run_dir(tmpfs)
    assert (run_dir / "run.json").exists() and not (run_dir / "report.json").exists()


def test_no_debug_log_is_still_one_line_and_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))

    def bug(*args: object) -> int:
        raise ValueError("x")

    monkeypatch.setattr(commands, "cmd_report", bug)
    code, _, err = run_cli("report", str(tmp_path))
    assert code == 4
    assert re.fullmatch(r"repro: internal error: ValueError: x \(no debug log: .+\)\n", err), err


# --- 130: stopped by the user ----------------------------------------------------------------


def slow_playbook(tmp: Path) -> Path:
    pb = tmp / "slow.yaml"
    pb.write_text(
        textwrap.dedent("""\
        name: slow
        steps:
          - name: build
            run: |
              echo started > "$HOME/started"
              sleep 60
        artifacts:
          - glob: out.txt
        """)
    )
    return pb


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_run_exits_130_after_writing_the_report(
    tmp_path: Path, sig: signal.Signals
) -> None:
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        homes = [h.root for h in lab.hosts]
        proc = controller(
            "run", "-i", str(lab.inventory_path), "-p", str(slow_playbook(tmp_path)),
            "--out", str(out),
        )  # fmt: skip
        wait_for(lambda: all((h / "started").exists() for h in homes), "steps started", proc)
        proc.send_signal(sig)
        code, stdout, err = finish(proc)
        if sig == signal.SIGHUP:  # the builds went on (issue 10): stop them before the lab goes
            assert run_cli("cancel", only_run_dir(out).name, "--out", str(out))[0] == 0
    assert code == 130, err
    said = (
        "stopped following by SIGHUP; the builds go on on the hosts"
        if sig == signal.SIGHUP
        else f"aborted by {sig.name}; the running steps were killed on the hosts"
    )
    assert f"repro: {said}" in err, err
    assert err.endswith(f"; the report of what was gathered is in {only_run_dir(out)}\n"), err
    assert "INCONCLUSIVE" in stdout  # what was gathered is shown too
    data = report(out)
    gone = "the controller stopped following; the build goes on (--resume)"
    assert [h["error"] for h in data["hosts"]] == [
        gone if sig == signal.SIGHUP else "cancelled"
    ] * 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_outside_a_run_exits_130(sig: signal.Signals, tmp_path: Path) -> None:
    # `repro facts` on a host whose SSH server accepts and never speaks: stopped while it waits
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        inv = tmp_path / "inv.yaml"
        known = tmp_path / "known_hosts"
        known.write_text("# no key: the handshake never gets that far\n")
        inv.write_text(
            "all:\n  hosts:\n    mute:\n      ansible_host: 127.0.0.1\n"
            f"      ansible_port: {srv.getsockname()[1]}\n      ansible_user: nobody\n"
            f"      repro_known_hosts: {known}\n"
        )
        proc = controller("facts", "-i", str(inv))
        srv.settimeout(20)
        conn, _ = srv.accept()  # the controller is connecting now
        with conn:
            proc.send_signal(sig)
            code, out, err = finish(proc, timeout=20)
    assert (code, out, err) == (130, "", "repro: interrupted\n")


def test_ctrl_c_before_anything_runs_is_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "cmd_report", interrupted)
    o, e = io.StringIO(), io.StringIO()
    assert main(["report", "x"], stdout=o, stderr=e) == 130
    assert (o.getvalue(), e.getvalue()) == ("", "repro: interrupted\n")
