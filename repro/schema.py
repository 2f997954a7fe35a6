"""The report's versioned schema (`"schema": "repro-report/1"`): the model as a JSON-ready dict,
and that dict read back into the model with every value checked. No files here (repro.report).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from repro.compare import EXIT_CODES, ArtifactComparison, Comparison, HashGroup
from repro.errors import ReportError
from repro.records import from_plain, plain
from repro.results import ArtifactHash, HostResult, RunResult, StepResult

SCHEMA = "repro-report/1"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_HOST_STATUSES = ("ok", "failed", "unreachable")
_ARTIFACT_STATUSES = ("identical", "differs", "incomplete")


# --- model -> dict ---------------------------------------------------------------------------


def to_dict(run: RunResult, comparison: Comparison) -> dict[str, Any]:
    """The JSON-ready report; a fresh structure that shares nothing mutable with the model."""
    return {
        "schema": SCHEMA,
        "run_id": run.run_id,
        "playbook": run.playbook,
        "playbook_path": run.playbook_path,
        "commit": run.commit,
        "vars": copy.deepcopy(run.vars),
        "quorum": run.quorum,
        "require": list(run.require),
        "expected": dict(run.expected),
        "verdict": comparison.verdict,
        "exit_code": comparison.exit_code,
        "reasons": list(comparison.reasons),
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "hosts": [_host_dict(h) for h in run.hosts],
        "artifacts": [_artifact_dict(a) for a in comparison.artifacts],
    }


def _hashes(artifacts: dict[str, ArtifactHash]) -> dict[str, Any]:
    return {k: {"sha256": a.sha256, "size": a.size} for k, a in artifacts.items()}


def _host_dict(host: HostResult) -> dict[str, Any]:
    return {
        "name": host.name,
        "address": host.address,
        "status": host.status,
        "artifacts": _hashes(host.artifacts),
        "paths": dict(host.paths),  # artifact -> where it is on the host (round 1), when known
        "rounds": [_hashes(r) for r in host.extra_rounds],
        "run_dir": host.run_dir,
        "variables": copy.deepcopy(host.variables),
        "variations": copy.deepcopy(host.variations),
        "error": host.error,
        "facts": copy.deepcopy(host.facts),
        "steps": [
            {
                "index": s.index,
                "name": s.name,
                "exit_status": s.exit_status,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "log": s.log,
            }
            for s in host.steps
        ],
    }


def _artifact_dict(artifact: ArtifactComparison) -> dict[str, Any]:
    return {
        "name": artifact.name,
        "status": artifact.status,
        "groups": [
            {"sha256": g.sha256, "size": g.size, "hosts": list(g.hosts)} for g in artifact.groups
        ],
        "missing": list(artifact.missing),
        "unstable": list(artifact.unstable),
        "attribution": plain(artifact.attribution),
        "why": plain(artifact.why),
    }


# --- dict -> model, checking every value on the way ------------------------------------------


@dataclass(frozen=True)
class _Fields:
    """One JSON object being read; failures name the file and the key's full path."""

    data: dict[str, Any]
    where: str  # e.g. "hosts[2]."
    source: str

    def fail(self, key: str, expected: str) -> NoReturn:
        got = _shown(self.data[key]) if key in self.data else "nothing"
        raise ReportError(f"{self.source}: {self.where}{key} must be {expected}, got {got}")

    def get(self, key: str, kind: type | tuple[type, ...], expected: str) -> Any:
        value = self.data.get(key)
        # bool is an int to Python, never to a report reader
        if key not in self.data or isinstance(value, bool) or not isinstance(value, kind):
            self.fail(key, expected)
        return value

    def text(self, key: str) -> str:
        return str(self.get(key, str, "a string"))

    def maybe_text(self, key: str) -> str | None:
        value = self.get(key, (str, type(None)), "a string or null")
        return None if value is None else str(value)

    def integer(self, key: str) -> int:
        return int(self.get(key, int, "an integer"))

    def maybe_integer(self, key: str) -> int | None:
        value = self.get(key, (int, type(None)), "an integer or null")
        return None if value is None else int(value)

    def choice(self, key: str, choices: tuple[str, ...]) -> Any:
        value = self.text(key)
        if value not in choices:
            self.fail(key, "one of " + ", ".join(choices))
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value: dict[str, Any] = self.get(key, dict, "an object")
        return copy.deepcopy(value)

    def texts(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list, "a list of strings")
        if not all(isinstance(v, str) for v in values):
            self.fail(key, "a list of strings")
        return tuple(values)

    def objects(self, key: str) -> list[_Fields]:
        values = self.get(key, list, "a list of objects")
        return [self.child(f"{key}[{i}]", v) for i, v in enumerate(values)]

    def child(self, key: str, value: Any) -> _Fields:
        if not isinstance(value, dict):
            raise ReportError(f"{self.source}: {self.where}{key} must be an object")
        return _Fields(value, f"{self.where}{key}.", self.source)


def _shown(value: Any) -> str:
    # repr escapes control characters, so a hostile value cannot drive the terminal
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def from_dict(data: Any, *, source: str = "report") -> tuple[RunResult, Comparison]:
    """Read back what `to_dict` wrote; `source` (the file) starts every error message."""
    if not isinstance(data, dict):
        raise ReportError(f"{source}: a report must be a JSON object")
    top = _Fields(data, "", source)
    if data.get("schema") != SCHEMA:
        top.fail("schema", repr(SCHEMA))
    hosts = [_host(f) for f in top.objects("hosts")]
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        top.fail("hosts", "a list with each host name once")
    run = RunResult(
        run_id=top.text("run_id"),
        playbook=top.text("playbook"),
        started_at=top.text("started_at"),
        finished_at=top.maybe_text("finished_at"),
        hosts=hosts,
        vars=top.mapping("vars"),
        quorum=top.integer("quorum"),
        playbook_path=top.text("playbook_path"),
        commit=top.maybe_text("commit"),
        # absent from reports written before quorum diversity and --expect
        require=top.texts("require") if "require" in data else (),
        expected=_expected(top) if "expected" in data else {},
    )
    verdict = top.choice("verdict", tuple(EXIT_CODES))
    if top.integer("exit_code") != EXIT_CODES[verdict]:
        top.fail("exit_code", f"{EXIT_CODES[verdict]} for verdict {verdict}")
    artifacts = tuple(_artifact(f, set(names)) for f in top.objects("artifacts"))
    return run, Comparison(verdict, artifacts, top.texts("reasons"))


def _expected(top: _Fields) -> dict[str, str]:
    expected = top.mapping("expected")
    if not all(isinstance(v, str) and _SHA256.fullmatch(v) for v in expected.values()):
        top.fail("expected", "an object of artifact name -> sha256")
    return expected


def _host_hashes(f: _Fields, mapping: dict[str, Any], key: str) -> dict[str, ArtifactHash]:
    artifacts = {}
    for name, value in mapping.items():
        art = f.child(f"{key}[{_shown(name)}]", value)
        artifacts[name] = ArtifactHash(name, _sha256(art), _size(art))
    return artifacts


def _host(f: _Fields) -> HostResult:
    artifacts = _host_hashes(f, f.mapping("artifacts"), "artifacts")
    rounds = f.data.get("rounds", [])  # absent in reports of single-round runs before rounds
    if not isinstance(rounds, list) or not all(isinstance(r, dict) for r in rounds):
        f.fail("rounds", "a list of artifact mappings")
    extra = [_host_hashes(f, r, f"rounds[{i}]") for i, r in enumerate(rounds)]
    return HostResult(
        name=f.text("name"),
        status=f.choice("status", _HOST_STATUSES),
        artifacts=artifacts,
        error=f.maybe_text("error"),
        facts=f.mapping("facts"),
        steps=[_step(s) for s in f.objects("steps")],
        address=f.text("address"),
        extra_rounds=extra,
        run_dir=str(f.data.get("run_dir") or ""),
        variables=f.mapping("variables") if "variables" in f.data else {},
        variations=_variations(f),
        paths=_paths(f),
    )


def _paths(f: _Fields) -> dict[str, str]:
    value = f.data.get("paths", {})  # absent in reports written before fetching
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        f.fail("paths", "a mapping of artifact names to paths")
    return dict(value)


def _variations(f: _Fields) -> list[dict[str, str]]:
    value = f.data.get("variations", [])  # absent in reports written before --vary
    if not isinstance(value, list) or not all(
        isinstance(v, dict) and all(isinstance(x, str) for x in (*v, *v.values())) for v in value
    ):
        f.fail("variations", "a list of {axis: value} mappings")
    return copy.deepcopy(value)


def _step(f: _Fields) -> StepResult:
    return StepResult(
        index=f.integer("index"),
        name=f.text("name"),
        exit_status=f.maybe_integer("exit_status"),
        started_at=f.maybe_text("started_at"),
        finished_at=f.maybe_text("finished_at"),
        log=f.maybe_text("log"),
    )


def _artifact(f: _Fields, hosts: set[str]) -> ArtifactComparison:
    groups = []
    for g in f.objects("groups"):
        members = g.texts("hosts")
        if not members or not set(members) <= hosts:
            g.fail("hosts", "a non-empty list of hosts named in the report")
        groups.append(HashGroup(_sha256(g), _size(g), members))
    missing = f.texts("missing")
    if not set(missing) <= hosts:
        f.fail("missing", "a list of hosts named in the report")
    unstable = tuple(f.data.get("unstable", ()))
    if not all(isinstance(u, str) for u in unstable) or not set(unstable) <= hosts:
        f.fail("unstable", "a list of hosts named in the report")
    from repro.attribution import Attribution
    from repro.explain import Why

    where = f"{f.source}: {f.where}"
    attribution, why = f.data.get("attribution"), f.data.get("why")
    return ArtifactComparison(
        f.text("name"),
        f.choice("status", _ARTIFACT_STATUSES),
        tuple(groups),
        missing,
        unstable,
        None if attribution is None else from_plain(Attribution, attribution, where + "attribution"),
        None if why is None else from_plain(Why, why, where + "why"),
    )


def _sha256(f: _Fields) -> str:
    value = f.text("sha256")
    if not _SHA256.fullmatch(value):
        f.fail("sha256", "64 lowercase hex digits")
    return value


def _size(f: _Fields) -> int | None:
    value = f.maybe_integer("size")  # null: a hash read from a SHA256SUMS file has no size
    if value is not None and value < 0:
        f.fail("size", "a size in bytes (>= 0) or null")
    return value
