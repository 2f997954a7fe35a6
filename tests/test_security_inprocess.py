"""Security over real SSH (in-process tier): hostile values never reach a shell unquoted, and
what a hostile host sends back never reaches the terminal, a report or the file system raw."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from repro.lab import LocalLab
from tests.labthread import LabThread
from tests.test_cli_inprocess import report, run_cli

NASTY = [
    "a; touch CANARY",
    "$(touch CANARY)",
    "`touch CANARY`",
    'it\'s "quoted"',
    "line1\nline2; touch CANARY",
    "-rf --no-preserve-root",
    "${HOME}/../x",
]


def echo_playbook(tmp: Path) -> Path:
    pb = tmp / "echo.yaml"
    pb.write_text(
        textwrap.dedent("""\
        name: echo
        vars: {value: ~}
        steps:
          - name: write
            env: {VALUE_ENV: "{{ value }}"}
            run: |
              printf '%s' {{ value }} > got.txt
              printf '%s' "$VALUE_ENV" > got-env.txt
        artifacts: [{glob: "got*.txt"}]
        """)
    )
    return pb


def run_on(lab: LocalLab, pb: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    """`repro run` of playbook `pb` on every lab host, reports in `out`: code, stdout, stderr.
    The work dirs stay (--keep-work): the tests read what the steps wrote there."""
    return run_cli(
        "run", "-i", str(lab.inventory_path), "-p", str(pb), "--out", str(out), "--keep-work", *extra
    )


@pytest.mark.parametrize("value", NASTY)
def test_extra_vars_pass_through_literally(tmp_path: Path, value: str) -> None:
    pb = echo_playbook(tmp_path)
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        code, _, err = run_on(lab, pb, out, "-e", f"value={value}")
        roots = [h.root for h in lab.hosts]
        assert code == 0, err
        for root in roots:
            assert not list(root.rglob("CANARY")), "an injected command ran on the host"
            got = list(root.glob(".cache/repro/runs/*/work/got.txt"))
            assert [g.read_text() for g in got] == [value]
            got_env = list(root.glob(".cache/repro/runs/*/work/got-env.txt"))
            assert [g.read_text() for g in got_env] == [value]
    assert report(out)["verdict"] == "reproducible"


def test_inventory_vars_pass_through_literally(tmp_path: Path) -> None:
    pb = echo_playbook(tmp_path)
    value = "x'; touch CANARY; echo '$(touch CANARY)`touch CANARY`"
    with LabThread(
        tmp_path / "lab", n=2, host_vars={"lab1": {"value": value}, "lab2": {"value": value}}
    ) as lab:
        code, _, err = run_on(lab, pb, tmp_path / "r")
        assert code == 0, err
        for h in lab.hosts:
            assert not list(h.root.rglob("CANARY"))


def test_value_that_cannot_be_made_safe_is_rejected(tmp_path: Path) -> None:
    pb = echo_playbook(tmp_path)
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        code, _, err = run_on(lab, pb, out, "-e", "value=bell\x07\x1b[2J")
    assert code == 2 and "value" in err
    assert "\x1b" not in err
    assert not out.exists()


def test_hostile_artifact_names_and_logs_are_neutralised(tmp_path: Path) -> None:
    pb = tmp_path / "hostile.yaml"
    pb.write_text(
        textwrap.dedent("""\
        name: hostile
        steps:
          - name: make
            run: |
              mkdir -p out
              printf 'x' > "out/$(printf 'evil\\033[2J\\033]0;pwned\\007name')"
              printf 'clear the screen: \\033[2J\\033[H and ring \\007\\n'
        artifacts: [{glob: "*", dir: out}]
        """)
    )
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        code, stdout, err = run_on(lab, pb, out, "-v")
    assert code == 3
    assert "\x1b" not in stdout and "\x1b" not in err and "\x07" not in err
    data = report(out)
    assert all(h["status"] == "failed" for h in data["hosts"])
    assert all(h["artifacts"] == {} for h in data["hosts"])
    md = next(out.iterdir()).joinpath("report.md").read_text()
    assert "\x1b" not in md
    # nothing a host named became a path on the controller
    names = {p.name for p in out.rglob("*")}
    assert not any("evil" in n for n in names)
    assert "\x1b" not in json.dumps(data, ensure_ascii=False)
    # refused as a name, shown escaped: the error quotes it with its escapes spelled out
    assert all(
        re.fullmatch(r"line 1: 'evil\\x1b\[2J\\x1b\]0;pwned\\x07name' is not a safe file name",
                     h["error"]) for h in data["hosts"]
    ), [h["error"] for h in data["hosts"]]  # fmt: skip
