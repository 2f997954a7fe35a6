"""The host-side sh (repro/hostside/) linted by shellcheck as POSIX sh, each command as it is
assembled, and the assembly itself: every file is part of a command, comments go cleanly."""

from __future__ import annotations

import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest

from repro import artifacts, hostside
from repro.facts import facts_script
from repro.playbook import load_playbook

HOSTSIDE = Path(str(files("repro.hostside")))
# SC2317: a library function this one command does not call (lib.sh serves them all).
# SC3040: `set -o posix` runs only under bash (guarded by BASH_VERSION).
EXCLUDE = "SC2317,SC3040"
#: files owned elsewhere, linted on their own
STANDALONE = {"checkout.sh"}


def hash_playbook(tmp_path: Path) -> object:
    book = tmp_path / "book.yaml"
    book.write_text(
        "name: t\nsteps:\n  - name: s\n    run: 'true'\n"
        "artifacts:\n  - glob: '*.tar.gz'\n    dir: out\n  - glob: 'a/b'\n"
        "manifests:\n  - glob: 'x/SHA256SUMS'\n    base: '..'\n"
    )
    return load_playbook(book)


def commands(tmp_path: Path) -> dict[str, str]:
    """Every command repro sends to a host's sh, with its files' comments (and directives)."""
    out = {name: hostside.program(name, comments=True) for name in hostside.PROGRAMS}
    out["facts"] = facts_script(comments=True)
    out["hash"] = artifacts.batch_script(hash_playbook(tmp_path), comments=True)  # type: ignore[arg-type]
    return out


def shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (scripts/sysdeps.sh installs it)")
    return subprocess.run(
        ["shellcheck", "-s", "sh", "-e", EXCLUDE, "-f", "gcc", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_every_command_passes_shellcheck(tmp_path: Path) -> None:
    problems = []
    for name, text in commands(tmp_path).items():
        path = tmp_path / f"{name}.sh"
        path.write_text(text)
        res = shellcheck(path)
        if res.returncode != 0:
            problems.append(f"{name}:\n{res.stdout}{res.stderr}")
    assert not problems, "\n".join(problems)


def test_standalone_scripts_pass_shellcheck() -> None:
    for path in HOSTSIDE.glob("*.sh"):
        if path.name in STANDALONE:
            res = shellcheck(path)
            assert res.returncode == 0, res.stdout + res.stderr


def test_every_file_is_part_of_a_command() -> None:
    used = {f for names in hostside.PROGRAMS.values() for f in names}
    used |= {"prelude.sh", "facts.sh", "hash.sh", "hash-manifest.sh"}
    shipped = {p.name for p in HOSTSIDE.glob("*.sh")}
    assert shipped - STANDALONE == used


def test_the_shipped_commands_are_the_linted_ones_without_comments(tmp_path: Path) -> None:
    # Stripping comments must leave the same program: sh parses both, and the only lines that
    # go are comments (no multi-line string holds a line that looks like one).
    for name, text in commands(tmp_path).items():
        stripped = hostside.strip_comments(text)
        for shell in ("dash", "bash"):
            res = subprocess.run([shell, "-n"], input=stripped, capture_output=True, text=True,
                                 timeout=30, check=False)  # fmt: skip
            assert res.returncode == 0, (name, shell, res.stderr)
    assert hostside.program("launch") == hostside.strip_comments(hostside.program("launch", comments=True))


def test_no_eval_and_no_dollar_zero_script() -> None:
    for path in HOSTSIDE.glob("*.sh"):
        if path.name in STANDALONE:
            continue
        code = hostside.strip_comments(path.read_text())
        # the one eval runs a step's script, which the supervisor holds in memory
        evals = [ln.strip() for ln in code.split("\n") if "eval " in ln]
        allowed = ['eval "unset _repro_s; $_repro_s"'] if path.name == "supervisor.sh" else []
        assert evals == allowed, path.name
        assert '"$0"' not in code, path.name
