"""Records of what a run did on each host: the runner fills them, compare and report read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

HostStatus = Literal["ok", "failed", "unreachable"]


@dataclass(frozen=True)
class ArtifactHash:
    """One file as hashed on the host. `name` and `sha256` are validated before construction."""

    name: str
    sha256: str
    size: int | None  # None: only the hash is known (read from a builder's SHA256SUMS file)

    def __repr__(self) -> str:
        return f"ArtifactHash({self.name!r}, {self.sha256[:12]})"


@dataclass
class StepResult:
    index: int
    name: str
    exit_status: int | None = None  # None: never finished (timeout, lost host, cancelled)
    started_at: str | None = None  # ISO 8601 UTC
    finished_at: str | None = None
    log: str | None = None  # path of the saved log, relative to the run directory

    def __repr__(self) -> str:
        return f"StepResult({self.index}, {self.name!r}, exit={self.exit_status})"


@dataclass
class HostResult:
    name: str
    status: HostStatus = "failed"
    artifacts: dict[str, ArtifactHash] = field(default_factory=dict)
    error: str | None = None  # one line for the person reading the report
    facts: dict[str, Any] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    address: str = ""
    # rounds 2.. of a playbook with `rounds: N` (round 1 is `artifacts`): built in another work
    # dir on the same host, so "not deterministic here" shows apart from "differs between hosts"
    extra_rounds: list[dict[str, ArtifactHash]] = field(default_factory=list)
    run_dir: str = ""  # the run's directory on the host, absolute ("" when never made)
    variables: dict[str, Any] = field(default_factory=dict)  # effective, secrets masked
    variations: list[dict[str, str]] = field(default_factory=list)  # --vary values per round
    paths: dict[str, str] = field(default_factory=dict)  # artifact -> its path on the host

    def __repr__(self) -> str:
        return f"HostResult({self.name!r}, {self.status}, {len(self.artifacts)} artifacts)"

    def work_dir(self, rnd: int = 1) -> str:
        """Round `rnd`'s build directory on the host (repro.store's layout), "" if unknown."""
        from repro.store import RemoteRun

        return RemoteRun(self.run_dir).work(rnd) if self.run_dir else ""


@dataclass
class RunResult:
    run_id: str
    playbook: str  # the playbook's name
    started_at: str
    finished_at: str | None = None
    hosts: list[HostResult] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)  # -e values and resolved ref/commit
    quorum: int = 2
    playbook_path: str = ""
    commit: str | None = None  # the resolved source commit, when the playbook builds one
    require: tuple[str, ...] = ()  # kinds of machine the quorum asks for (repro.quorum.TRAITS)
    expected: dict[str, str] = field(default_factory=dict)  # published hashes (--expect)

    def __repr__(self) -> str:
        return f"RunResult({self.run_id!r}, {len(self.hosts)} hosts)"
