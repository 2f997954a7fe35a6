"""report.json and friends: exact round trips, atomic writes, and clear errors for bad files.

Writes go to pytest's tmp_path; failures are injected at the OS calls the writer makes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from repro import store
from repro.compare import Comparison, compare
from repro.errors import ReportError, ReportWriteError, UsageError
from repro.report import load_report, write_report
from repro.schema import SCHEMA, from_dict, to_dict
from repro.results import ArtifactHash, HostResult, RunResult, StepResult

A, B = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()


def sample() -> tuple[RunResult, Comparison]:
    steps = [
        StepResult(0, "fetch", 0, "2026-05-17T21:00:01Z", "2026-05-17T21:00:09Z", "hosts/h1/0.log"),
        StepResult(1, "build"),
    ]
    facts: dict[str, Any] = {"describe": "Intel Xeon", "cpu": {"flags": ["avx2", "aes"], "n": 48}}
    run = RunResult(
        run_id="20260517T210000Z-demo",
        playbook="demo",
        started_at="2026-05-17T21:00:00Z",
        finished_at="2026-05-17T21:05:00Z",
        hosts=[
            HostResult(
                "h1", "ok", {"hello": ArtifactHash("hello", A, 10)}, None, facts, steps, "10.0.0.1"
            ),
            HostResult("h2", "ok", {"hello": ArtifactHash("hello", B, 11)}, address="10.0.0.2"),
            HostResult("h3", "unreachable", error="connection refused", address="10.0.0.3"),
        ],
        vars={"ref": "v1.0", "jobs": 4, "nested": {"a": [1, None, True]}},
        quorum=2,
        playbook_path="playbooks/demo.yaml",
        commit="dec0bbee5c18f2dc6baae9e9ca7bb0c4d041931d",
    )
    return run, compare(run)


def write_json(run_dir: Path, data: Any) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "report.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- the dict --------------------------------------------------------------------------------


def test_to_dict_has_exactly_the_documented_shape() -> None:
    run, comparison = sample()
    data = to_dict(run, comparison)
    assert set(data) == {
        "schema", "run_id", "playbook", "playbook_path", "commit", "vars", "quorum", "require",
        "expected", "verdict", "exit_code", "reasons", "started_at", "finished_at", "hosts", "artifacts",
    }  # fmt: skip
    assert (data["schema"], data["verdict"], data["exit_code"]) == (SCHEMA, "mismatch", 1)
    h1 = data["hosts"][0]
    assert set(h1) == {
        "name", "address", "status", "artifacts", "rounds", "error", "facts", "steps",
        "run_dir", "variables", "variations", "paths",
    }  # fmt: skip
    assert h1["artifacts"] == {"hello": {"sha256": A, "size": 10}}
    assert h1["steps"][0] == {
        "index": 0, "name": "fetch", "exit_status": 0, "started_at": "2026-05-17T21:00:01Z",
        "finished_at": "2026-05-17T21:00:09Z", "log": "hosts/h1/0.log",
    }  # fmt: skip
    assert data["artifacts"] == [
        {
            "name": "hello",
            "status": "differs",
            "groups": [
                {"sha256": A, "size": 10, "hosts": ["h1"]},
                {"sha256": B, "size": 11, "hosts": ["h2"]},
            ],
            "missing": [],
            "unstable": [],
            # the sample's hosts have no facts or variables: nothing to line up
            "attribution": {
                "wording": "unexplained",
                "factors": [],
                "note": "nothing was recorded about these hosts",
            },
            "why": None,
        }
    ]


def test_round_trip_is_exact_even_through_json_text() -> None:
    run, comparison = sample()
    assert from_dict(to_dict(run, comparison)) == (run, comparison)
    text = json.dumps(to_dict(run, comparison))
    assert from_dict(json.loads(text)) == (run, comparison)


def test_to_dict_shares_nothing_mutable_with_the_model() -> None:
    run, comparison = sample()
    data = to_dict(run, comparison)
    data["vars"]["nested"]["a"].append("x")
    data["hosts"][0]["facts"]["cpu"]["flags"].clear()
    assert run.vars["nested"]["a"] == [1, None, True]
    assert run.hosts[0].facts["cpu"]["flags"] == ["avx2", "aes"]


# --- files -----------------------------------------------------------------------------------


def test_write_then_load(tmp_path: Path) -> None:
    run, comparison = sample()
    run_dir = tmp_path / "reports" / run.run_id
    paths = write_report(run_dir, run, comparison)
    assert paths == [run_dir / "report.json", run_dir / "report.md", run_dir / "report.html"]
    # report.html comes with every run; no temp files left
    assert sorted(os.listdir(run_dir)) == ["report.html", "report.json", "report.md"]
    assert stat.S_IMODE((run_dir / "report.json").stat().st_mode) == 0o644
    assert load_report(run_dir) == (run, comparison)
    assert (run_dir / "report.md").read_text().startswith("**Mismatch**")


def test_formats_can_be_chosen(tmp_path: Path) -> None:
    run, comparison = sample()
    paths = write_report(tmp_path, run, comparison, formats=("json", "md", "html"))
    assert [p.name for p in paths] == ["report.json", "report.md", "report.html"]
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_unknown_format_writes_nothing(tmp_path: Path) -> None:
    run, comparison = sample()
    with pytest.raises(UsageError, match="'table'"):
        write_report(tmp_path, run, comparison, formats=("json", "table"))
    assert os.listdir(tmp_path) == []


def test_a_failed_replace_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, comparison = sample()
    write_report(tmp_path, run, comparison, formats=("json",))
    old = (tmp_path / "report.json").read_text()

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device", dst)

    monkeypatch.setattr(store.os, "replace", refuse)
    run.run_id = "a-newer-run"
    with pytest.raises(ReportWriteError, match="report.json: cannot write the report: No space"):
        write_report(tmp_path, run, comparison, formats=("json",))
    assert (tmp_path / "report.json").read_text() == old
    assert os.listdir(tmp_path) == ["report.json"]


def test_a_failure_while_writing_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, comparison = sample()
    write_report(tmp_path, run, comparison, formats=("json",))
    old = (tmp_path / "report.json").read_text()
    seen: list[str] = []

    def fail_fsync(fd: int) -> None:
        # the temp file already holds the new text when the disk gives up
        seen.extend(p for p in os.listdir(tmp_path) if p.endswith(".tmp"))
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store.os, "fsync", fail_fsync)
    run.run_id = "a-newer-run"
    with pytest.raises(ReportWriteError, match="Input/output error"):
        write_report(tmp_path, run, comparison, formats=("json",))
    assert seen and seen[0].startswith(".report.json.")
    assert (tmp_path / "report.json").read_text() == old
    assert os.listdir(tmp_path) == ["report.json"]


def test_missing_directory_and_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run"
    with pytest.raises(ReportError, match=f"^{re.escape(str(missing))}: no such run directory$"):
        load_report(missing)
    with pytest.raises(
        ReportError, match=f"^{re.escape(str(tmp_path))}/report.json: no report.json"
    ):
        load_report(tmp_path)


def test_not_json(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text('{"schema": ', encoding="utf-8")
    with pytest.raises(ReportError, match=r"report.json: not valid JSON \(line 1, column 12\)"):
        load_report(tmp_path)


def test_a_json_value_that_is_not_an_object(tmp_path: Path) -> None:
    write_json(tmp_path, ["schema"])
    with pytest.raises(ReportError, match="report.json: a report must be a JSON object"):
        load_report(tmp_path)


def test_wrong_schema_names_the_file(tmp_path: Path) -> None:
    run, comparison = sample()
    data = to_dict(run, comparison)
    data["schema"] = "repro-report/2"
    path = write_json(tmp_path, data)
    with pytest.raises(ReportError) as caught:
        load_report(tmp_path)
    assert str(caught.value) == (f"{path}: schema must be 'repro-report/1', got 'repro-report/2'")


_DELETE = object()


def _set(data: dict[str, Any], where: str, value: Any) -> None:
    *parents, last = where.split("/")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is _DELETE:
        del node[last]
    else:
        node[last] = value


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("quorum", "2", "quorum must be an integer, got '2'"),
        ("quorum", True, "quorum must be an integer, got True"),
        ("run_id", _DELETE, "run_id must be a string, got nothing"),
        ("commit", 7, "commit must be a string or null, got 7"),
        ("vars", [], "vars must be an object, got []"),
        ("verdict", "fine", "verdict must be one of reproducible, mismatch, inconclusive"),
        ("exit_code", 0, "exit_code must be 1 for verdict mismatch, got 0"),
        ("reasons", [1], "reasons must be a list of strings"),
        ("hosts", {}, "hosts must be a list of objects"),
        ("hosts/0", "h1", "hosts[0] must be an object"),
        ("hosts/1/name", "h1", "hosts must be a list with each host name once"),
        ("hosts/2/status", "gone", "hosts[2].status must be one of ok, failed, unreachable"),
        ("hosts/0/steps/1/exit_status", "x", "hosts[0].steps[1].exit_status must be an integer"),
        ("hosts/0/artifacts/hello/sha256", "ABC", "hosts[0].artifacts['hello'].sha256 must be 64"),
        ("hosts/0/artifacts/hello/size", -1, "hosts[0].artifacts['hello'].size must be a size"),
        ("artifacts/0/status", "same", "artifacts[0].status must be one of identical"),
        ("artifacts/0/groups/0/hosts", ["h9"], "artifacts[0].groups[0].hosts must be a non-empty"),
        ("artifacts/0/groups/0/hosts", [], "artifacts[0].groups[0].hosts must be a non-empty"),
        ("artifacts/0/missing", ["h9"], "artifacts[0].missing must be a list of hosts named"),
    ],
)
def test_bad_values_name_the_file_and_the_key(
    tmp_path: Path, where: str, value: Any, message: str
) -> None:
    run, comparison = sample()
    data = to_dict(run, comparison)
    _set(data, where, value)
    path = write_json(tmp_path, data)
    with pytest.raises(ReportError, match=f"^{re.escape(str(path))}: ") as caught:
        load_report(tmp_path)
    assert message in str(caught.value)


def test_a_hostile_value_is_shown_escaped_and_short(tmp_path: Path) -> None:
    run, comparison = sample()
    data = to_dict(run, comparison)
    data["hosts"][2]["error"] = {"\x1b[2J": "\x1b]0;pwned\x07" * 30}
    write_json(tmp_path, data)
    with pytest.raises(ReportError, match=r"hosts\[2\]\.error must be a string or null") as caught:
        load_report(tmp_path)
    assert "\x1b" not in str(caught.value) and "\x07" not in str(caught.value)
    assert "{'\\x1b[2J'" in str(caught.value) and str(caught.value).endswith("…")
