"""docs/nightly.md's scheduler files, checked offline with the tools that read them: the systemd
units with systemd-analyze verify, the CI files against their schemas (check-jsonschema's
vendored ones), the cron line's fields and shell, and every repro command line they hold
against repro's own parser. Also: `--format junit` and GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from repro.cli import build_parser
from tests.labthread import LabThread
from tests.test_cli_inprocess import DEMO, run_cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "nightly.md"
BIN = Path(sys.executable).parent


def blocks() -> dict[str, str]:
    """The files the doc shows, by the name in the comment before each fenced block."""
    text = DOC.read_text()
    found = dict(re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, re.DOTALL))
    assert set(found) == {
        "repro-nightly.service",
        "repro-nightly.timer",
        "crontab",
        ".github/workflows/repro-nightly.yml",
        ".gitlab-ci.yml",
    }
    return found


def repro_commands(text: str) -> list[list[str]]:
    """Every `…/repro ARGS` command in `text`, as argv (without the program)."""
    out = []
    for line in text.replace(">-\n", "").replace("\n          ", " ").splitlines():
        for m in re.finditer(
            r"(?:^|[\s=])\S*/?repro ((?:run|history|gc|bisect|report) [^>&|\n]*)", line
        ):
            out.append(shlex.split(m.group(1)))
    return out


def test_every_repro_command_in_the_doc_parses() -> None:
    parser = build_parser()
    commands = [c for text in blocks().values() for c in repro_commands(text)]
    assert len(commands) >= 8
    for argv in commands:
        parser.parse_args(argv)  # raises UsageError on an option repro does not have


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_units_verify(tmp_path: Path) -> None:
    repro = BIN / "repro"
    assert repro.is_file(), "repro's console script (pip install -e .)"
    for name in ("repro-nightly.service", "repro-nightly.timer"):
        text = blocks()[name].replace("/opt/repro/.venv/bin/repro", str(repro))
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "repro-nightly.service"),
         str(tmp_path / "repro-nightly.timer")],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # verify exits 0 on many problems it only warns about: any word about our files is one
    ours = [ln for ln in done.stderr.splitlines() if "repro-nightly" in ln]
    assert done.returncode == 0 and not ours, done.stderr


def test_the_cron_line() -> None:
    (line,) = [ln for ln in blocks()["crontab"].splitlines() if ln and not ln.startswith("#")]
    fields = line.split(None, 5)
    cron_field = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
    assert all(cron_field.match(f) for f in fields[:5]), fields[:5]
    minute, hour = int(fields[0]), int(fields[1])
    assert 0 <= minute < 60 and 0 <= hour < 24
    done = subprocess.run(
        ["sh", "-n", "-c", fields[5]], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr  # cron hands the rest of the line to sh


def check_jsonschema() -> str:
    path = shutil.which("check-jsonschema") or str(BIN / "check-jsonschema")
    if not Path(path).is_file():
        pytest.fail("check-jsonschema is missing: pip install -e '.[test]'")
    return path


@pytest.mark.parametrize(
    "name, schema",
    [
        (".github/workflows/repro-nightly.yml", "vendor.github-workflows"),
        (".gitlab-ci.yml", "vendor.gitlab-ci"),
    ],
)
def test_ci_files_match_their_schemas(tmp_path: Path, name: str, schema: str) -> None:
    path = tmp_path / Path(name).name
    path.write_text(blocks()[name])
    yaml.safe_load(path.read_text())  # plain YAML first
    done = subprocess.run(
        [check_jsonschema(), "--builtin-schema", schema, str(path)],
        check=False, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # and the check really checks: a misspelt key is refused
    bad = tmp_path / f"bad-{path.name}"
    bad.write_text(blocks()[name].replace("schedule", "schedul").replace("script:", "scrip:"))
    done = subprocess.run(
        [check_jsonschema(), "--builtin-schema", schema, str(bad)],
        check=False, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout


def test_junit_report_and_the_github_step_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", host_vars={"lab3": {"prefix_map": False}}) as lab:
        code, stdout, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(DEMO), "--out", str(out),
            "--format", "junit",
        )  # fmt: skip
    assert code == 1, err
    (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
    saved = (run_dir / "report.junit.xml").read_text()
    assert saved == stdout
    root = ET.fromstring(saved)
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "2"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {"hello", "hello-demo.tar.gz"}
    failure = cases["hello"].find("failure")
    assert (
        failure is not None
        and "lab3" in (failure.text or "")
        and "lab1, lab2" in (failure.text or "")
    )
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "**Mismatch**" in text
    # `repro report --format junit` writes the same file from report.json
    (run_dir / "report.junit.xml").unlink()
    code, again, _ = run_cli("report", str(run_dir), "--format", "junit")
    assert code == 0 and again == saved == (run_dir / "report.junit.xml").read_text()
