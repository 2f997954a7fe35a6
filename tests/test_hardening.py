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
