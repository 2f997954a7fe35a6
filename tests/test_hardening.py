"""Hardening on the controller side (issue 10), tiers that need no root: hostile YAML, secrets
masked in every file the controller writes, bounded replies and logs, escaped host text.
The same points on real OpenSSH hosts are in test_hardening_netns.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

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
