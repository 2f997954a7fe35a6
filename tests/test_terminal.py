"""The terminal and CI logs: live progress that fits the screen, heartbeats in piped output,
NO_COLOR, -q and -v on every command, `python -m repro`, shell completion, the licence, and
`repro facts --format json`'s versioned shape.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from repro.cli import build_parser, main
from repro.commands import use_color
from repro.events import Event
from repro.render.facts import facts_json
from repro.render.progress import LineProgress, LiveProgress
from tests.labthread import LabThread

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "playbooks" / "demo.yaml"


class Clock:
    """A clock the test moves by hand: no test here depends on how fast the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- progress ---------------------------------------------------------------------------------


def test_live_progress_with_more_hosts_than_rows_stays_in_place() -> None:
    hosts = [f"h{i:03d}" for i in range(60)]
    stream = io.StringIO()
    live = LiveProgress(hosts, stream, width=80, height=12)
    for i, host in enumerate(hosts):
        live(Event(host, "connecting"))
        if i % 3 == 0:
            live(Event(host, "step-start", step="build"))
        if i % 5 == 0:
            live(Event(host, "done", message="ok", elapsed=1.0))
    live.draw()
    frames = stream.getvalue().split("\x1b[J")[:-1]
    assert len(frames) > 10
    for frame in frames:
        lines = frame.count("\n")
        assert lines <= 11, "a frame taller than the terminal scrolls away"
        up = re.match(r"\x1b\[(\d+)F", frame)
        assert up is None or int(up.group(1)) <= 11
    last = frames[-1]
    assert "... and 50 more hosts:" in last and "12 ok" in last  # finished hosts fold first
    # hosts at work come before finished and waiting ones
    assert "h003" in last and "step build" in last


def test_live_progress_shows_every_host_when_they_fit() -> None:
    stream = io.StringIO()
    live = LiveProgress(["a", "b"], stream, height=24)
    live(Event("a", "step-start", step="s1"))
    assert "more hosts" not in stream.getvalue()
    assert stream.getvalue().count("\n") == 2


def test_piped_progress_heartbeat_per_host() -> None:
    clock = Clock()
    stream = io.StringIO()
    lines = LineProgress(stream, heartbeat=30, clock=clock)
    lines(Event("web1", "step-start", step="build"))
    lines(Event("web2", "step-start", step="test"))
    lines(Event("web1", "step-output", message="x" * 2048))
    before = stream.getvalue()
    clock.now += 10
    lines.beat()
    assert stream.getvalue() == before  # nothing due yet
    clock.now += 25
    lines.beat()
    beats = stream.getvalue()[len(before) :].splitlines()
    assert beats == [
        "[web1] step build running 35s, log 2.0 KiB",
        "[web2] step test running 35s, log 0 B",
    ]
    lines(Event("web2", "step-done", step="test", message="ok"))
    clock.now += 31
    lines.beat()
    assert stream.getvalue().splitlines()[-1] == "[web1] step build running 66s, log 2.0 KiB"


# --- colour, -q, -v -----------------------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(FakeTTY())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(FakeTTY())
    assert not use_color(io.StringIO())


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    return [leaf for a in subs for name, p in a.choices.items() for leaf in _leaves(p, (*path, name))]


def test_every_command_takes_verbose_and_quiet() -> None:
    leaves = _leaves(build_parser())
    assert len(leaves) >= 12
    for path, parser in leaves:
        options = {o for a in parser._actions for o in a.option_strings}
        assert {"-v", "--verbose", "-q", "--quiet"} <= options, path
    err = io.StringIO()
    assert main(["inventory", "-q", "-v"], stderr=err) == 2
    assert "cannot go together" in err.getvalue()


def test_quiet_run_prints_the_result_and_nothing_else(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with LabThread(tmp_path / "lab") as lab:
        code = main(
            ["run", "-q", "-i", str(lab.inventory_path), "-p", str(DEMO),
             "--out", str(tmp_path / "reports")],
            stdout=out, stderr=err,
        )  # fmt: skip
    assert code == 0, err.getvalue()
    assert err.getvalue() == ""
    assert "reproducible" in out.getvalue().lower()


# --- python -m repro, completion, licence ------------------------------------------------------


def test_python_dash_m_repro() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "repro", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("repro ")


def _complete(script: str, words: list[str]) -> list[str]:
    """Ask the generated bash function, as bash's completion would, for COMP_WORDS `words`."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (
        f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        '_repro; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True, text=True, timeout=30, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion() -> None:
    out = io.StringIO()
    assert main(["completion", "bash"], stdout=out) == 0
    script = out.getvalue()
    assert "inventory" in _complete(script, ["repro", "inv"])
    assert set(_complete(script, ["repro", "hosts", ""])) >= {"trust"}
    assert "--inventory-via" in _complete(script, ["repro", "run", "-i", "x.yaml", "--inv"])
    assert set(_complete(script, ["repro", "run", "--format", ""])) >= {"table", "md", "json"}
    assert _complete(script, ["repro", "inventory", "--gr"]) == ["--graph"]
    out = io.StringIO()
    assert main(["completion", "zsh"], stdout=out) == 0
    assert out.getvalue().startswith("autoload -U +X bashcompinit")


def test_mit_licence_ships_with_the_package() -> None:
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert metadata.metadata("repro")["License"] == "MIT"


# --- facts JSON ---------------------------------------------------------------------------------


def test_facts_json_is_versioned() -> None:
    class R:
        def __init__(self, name: str, error: str | None, facts: dict) -> None:
            self.name, self.error, self.facts = name, error, facts

    doc = json.loads(facts_json([R("a", None, {"cores": 4}), R("b", "b: refused", {})]))
    assert doc == {
        "schema": "repro-facts/1",
        "hosts": [
            {"name": "a", "error": None, "facts": {"cores": 4}},
            {"name": "b", "error": "b: refused", "facts": {}},
        ],
    }
    assert (REPO / "docs" / "facts-json.md").read_text().count("repro-facts/1") >= 1
    assert os.path.exists(REPO / "docs" / "facts-json.md")
