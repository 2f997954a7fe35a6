"""Hardening on the controller side (issue 10), tiers that need no root: hostile YAML, secrets
masked in every file the controller writes, bounded replies and logs, escaped host text.
The same points on real OpenSSH hosts are in test_hardening_netns.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from repro import yamlsafe
from tests.test_cli_inprocess import run_cli

# 9 levels of 9: 9**9 (387 million) strings from a few hundred bytes
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
    f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
    for i in range(8)
)


def test_yaml_bomb_is_refused_before_it_is_built() -> None:
    assert len(BOMB) < 1000
    with pytest.raises(yamlsafe.YamlTooLarge, match="expands to more than"):
        yamlsafe.load(BOMB)
    with pytest.raises(yamlsafe.YamlTooLarge):
        yamlsafe.load("a: &a [*a]\n")  # a list that contains itself never ends
    # ordinary anchors (Ansible inventories use them for shared vars) still load
    assert yamlsafe.load("x: &v {p: 1}\ny: *v\n") == {"x": {"p": 1}, "y": {"p": 1}}
    # aliases are counted on the composed graph (libyaml's loader composes in C)
    many = "a: &a x\n" + "".join(f"k{i}: *a\n" for i in range(yamlsafe.MAX_ALIASES + 1))
    with pytest.raises(yamlsafe.YamlTooLarge, match="aliases"):
        yamlsafe.load(many)
    assert len(yamlsafe.load(many.rsplit("k", 2)[0])) == yamlsafe.MAX_ALIASES
    # nesting without end is yaml's own error (one line where it is reported), never a crash
    with pytest.raises(yaml.YAMLError):
        yamlsafe.load("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("where", ["inventory", "playbook", "extra-vars"])
def test_yaml_bomb_anywhere_is_one_line_and_exit_2(tmp_path: Path, where: str) -> None:
    inv = tmp_path / "inv.yaml"
    pb = tmp_path / "pb.yaml"
    ev = tmp_path / "ev.yaml"
    inv.write_text("all:\n  hosts:\n    h1: {ansible_host: 127.0.0.1}\n")
    pb.write_text("name: p\nsteps: [{name: s, run: 'true'}]\nartifacts: [{glob: x}]\n")
    ev.write_text("k: v\n")
    bomb = {"inventory": inv, "playbook": pb, "extra-vars": ev}[where]
    if where == "inventory":
        bomb.write_text(
            "all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n      big:\n"
            + textwrap.indent(BOMB, "        ")
        )
    elif where == "playbook":
        bomb.write_text(
            "name: p\nvars:\n  big:\n" + textwrap.indent(BOMB, "    ")
            + "steps: [{name: s, run: 'true'}]\nartifacts: [{glob: x}]\n"
        )  # fmt: skip
    else:
        bomb.write_text(BOMB)
    out = tmp_path / "reports"
    code, stdout, err = run_cli(
        "run", "-i", str(inv), "-p", str(pb), "-e", f"@{ev}", "--out", str(out)
    )
    assert code == 2, err
    assert err.count("\n") == 1 and str(bomb) in err and "expands to more than" in err, err
    assert not out.exists()


# --- secrets: masking -------------------------------------------------------------------------


def test_stream_masking_catches_a_value_cut_between_chunks() -> None:
    from repro.secrets import Masker

    m = Masker(["hunter2", "hunter2-long", ""])
    stream = m.stream()
    text = b"a hunter2-long b hunter2 c hunter2"
    for size in (1, 2, 3, 5, 7, 100):
        stream = m.stream()
        out = b"".join(stream.feed(text[i : i + size]) for i in range(0, len(text), size))
        assert out + stream.end() == b"a *** b *** c ***", size
    assert m.obj({"k": ["x hunter2"], "n": 1}) == {"k": ["x ***"], "n": 1}
    assert not Masker([])  # nothing to mask: text passes untouched
    assert Masker([]).stream().feed(b"abc") == b"abc"


def test_secret_values_render_as_references_never_as_text(tmp_path: Path) -> None:
    from repro.playbook import load_playbook, render

    pb = tmp_path / "pb.yaml"
    pb.write_text(
        "name: p\nsecrets: [tok]\nsteps:\n"
        "  - {name: s, env: {A: 'x {{ tok }} y'}, run: 'echo {{ tok }} {{ plain }}'}\n"
        "artifacts: [{glob: x}]\n"
    )
    steps = render(load_playbook(pb), {"tok": "v4lue'", "plain": "p"})
    assert "v4lue" not in steps[0].command
    assert "\"${REPRO_SECRET_tok?" in steps[0].command and "echo \"${" in steps[0].command
    assert "export A='x '\"${REPRO_SECRET_tok?" in steps[0].command
    import subprocess

    # the script run by sh with the value in its environment prints the value, quoted right
    done = subprocess.run(
        ["sh", "-c", steps[0].command + '\nprintf "%s|" "$A"'],
        env={"REPRO_SECRET_tok": "v4lue' $(x)", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout == "v4lue' $(x) p\nx v4lue' $(x) y|"
    gone = subprocess.run(["sh", "-c", steps[0].command], env={}, capture_output=True, text=True)
    assert gone.returncode != 0 and "secret tok did not reach this host" in gone.stderr


def test_step_log_is_capped_head_and_tail_with_the_cut_marked(tmp_path: Path) -> None:
    from repro.results import StepResult
    from repro.runner import _StepWatch
    from repro.secrets import Masker

    log = tmp_path / "step.log"
    watch = _StepWatch(
        "s", StepResult(1, "s"), open(log, "wb"), Masker(["SECRET"]), 1000, "/h/steps/1-01.log"
    )
    for i in range(2000):
        watch.write(f"line {i:05d} SECRET\n".encode())
    watch.close()
    data = log.read_bytes()
    assert len(data) < 1200 and b"SECRET" not in data
    assert data.startswith(b"line 00000 ***\n")
    assert data.endswith(b"line 01999 ***\n")
    assert b"bytes cut here; the whole log is on the host in /h/steps/1-01.log]" in data
    assert "line 01999 ***" in watch.tail.text()


# --- host text on the terminal ------------------------------------------------------------------

EVIL = b"\x1b]0;pwned\x07\x1b[2J\x1b]8;;http://evil/\x1b\\x"


class _EvilServer:
    """A TCP server on loopback that speaks just enough SSH to hurt: `mode` "banner" sends
    lines of escape sequences and never a version; "disconnect" sends a version, then an SSH
    DISCONNECT (allowed before key exchange, unencrypted) whose reason is escape sequences."""

    def __init__(self, mode: str) -> None:
        import socket
        import threading

        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(30)
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _reply(self) -> bytes:
        import struct

        if self.mode == "banner":
            return b"".join(EVIL + b" line %d\r\n" % i for i in range(120))
        reason = EVIL + b" go away"
        payload = bytes([1]) + struct.pack(">I", 11) + struct.pack(">I", len(reason)) + reason
        payload += struct.pack(">I", 0)
        pad = 8 - (len(payload) + 5) % 8
        pad += 8 if pad < 4 else 0
        packet = struct.pack(">IB", len(payload) + pad + 1, pad) + payload + bytes(pad)
        return b"SSH-2.0-evil\r\n" + packet

    def _serve(self) -> None:
        for _ in range(64):  # bounded: a test needs a few connections at most
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(self._reply())
                    conn.settimeout(2)
                    conn.recv(4096)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def _evil_inventory(tmp_path: Path, port: int, transport: str) -> Path:
    (tmp_path / "known_hosts").write_text("")
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        f"all:\n  hosts:\n    e1: {{ansible_host: 127.0.0.1, ansible_port: {port}, "
        f"ansible_user: u, repro_transport: {transport}, "
        f"repro_known_hosts: {tmp_path / 'known_hosts'}, repro_connect_timeout: 5}}\n"
    )
    return inv


def _cli_process(*argv: str) -> tuple[int, str]:
    """The controller as its own process (paramiko's log goes to the real stderr)."""
    import os
    import subprocess
    import sys

    from tests.procs import REPO

    done = subprocess.run(
        [sys.executable, "-m", "repro.cli", *argv],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
        timeout=60, check=False,
    )  # fmt: skip
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


@pytest.mark.parametrize("transport", ["asyncssh", "fabric"])
def test_a_servers_banner_never_reaches_the_terminal_raw(tmp_path: Path, transport: str) -> None:
    server = _EvilServer("banner")
    try:
        code, seen = _cli_process("facts", "-i", str(_evil_inventory(tmp_path, server.port, transport)))
    finally:
        server.close()
    assert code == 3, seen
    assert "\x1b" not in seen and "\x07" not in seen, seen[-3000:]
    assert "e1" in seen


@pytest.mark.parametrize("transport", ["asyncssh", "fabric"])
def test_repro_cancel_escapes_a_disconnect_reason(tmp_path: Path, transport: str) -> None:
    from repro.session import prepare, save_plan

    server = _EvilServer("disconnect")
    try:
        inv = _evil_inventory(tmp_path, server.port, transport)
        pb = tmp_path / "pb.yaml"
        pb.write_text("name: p\nsteps: [{name: s, run: 'true'}]\nartifacts: [{glob: x}]\n")
        prep = prepare(inventory=inv, playbook=pb, extra_vars={}, out_dir=tmp_path / "reports")
        prep.report_dir.mkdir(parents=True)
        save_plan(prep)
        code, seen = _cli_process("cancel", prep.run_id, "--out", str(tmp_path / "reports"))
    finally:
        server.close()
    assert code == 3, seen
    assert "\x1b" not in seen and "\x07" not in seen, seen[-3000:]
    if transport == "asyncssh":  # paramiko only logs the reason, then the handshake times out
        assert "go away" in seen and "\\x1b]0;pwned" in seen, seen


def test_report_md_neutralises_mentions_references_and_links_from_host_text() -> None:
    import re

    from repro.compare import compare
    from repro.render import render
    from repro.results import HostResult, RunResult

    said = "ping @octocat, fixes #123 and GH-7, see https://evil.example/x or www.evil.example"
    run = RunResult(
        run_id="20261127T000000Z-abcdef",
        playbook="p",
        started_at="2026-11-27T00:00:00Z",
        hosts=[
            HostResult(name="h1", address="a", status="failed", error=said),
            HostResult(name="h2", address="b", status="failed", error=said),
        ],
    )
    md = render("md", run, compare(run))
    assert "octocat" in md and "evil.example/x" in md  # the text is all still there
    live = [r"@octocat", r"#123", r"GH-7", r"https://", r"www\.evil"]
    for pattern in live:
        assert not re.search(pattern, md), pattern


def test_connection_failures_read_the_same_on_both_transports() -> None:
    import errno

    import paramiko

    from repro.transport.base import os_reason
    from repro.transport.fabric import _failure_reason

    unreachable = OSError(errno.EHOSTUNREACH, "No route to host")
    assert os_reason(OSError(errno.ENETUNREACH, "Network is unreachable")) == "network unreachable"
    assert os_reason(unreachable) == "host unreachable (no route to host)"
    # paramiko's own message for it is "[Errno None] Unable to connect to port 22 on ..."
    exc = paramiko.ssh_exception.NoValidConnectionsError({("198.18.0.1", 22): unreachable})
    assert _failure_reason(object(), None, exc) == "host unreachable (no route to host)"  # type: ignore[arg-type]


def test_memory_exhausted_is_exit_4_never_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The alias bomb ended in a MemoryError after two minutes and exit 1 ("differs"): were
    # memory to run out anywhere, the CLI's boundary says 4 (repro failed), never 1.
    import repro.commands

    def exhausted(*args: object, **kwargs: object) -> object:
        raise MemoryError()

    monkeypatch.setattr(repro.commands, "load_inventory", exhausted)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    code, _, err = run_cli("facts", "-i", str(tmp_path / "inv.yaml"))
    assert code == 4 and err.startswith("repro: internal error: MemoryError"), err
