"""`repro compare SOURCE…`: one run from the evidence of many controllers and builders — run dirs,
in-toto statements, Cuprate attestation.json files, guix.sigs version dirs — compared as hosts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from repro.attest import CUPRATE_SCHEMA, STATEMENT_TYPE
from repro.errors import UsageError
from repro.report import load_report
from repro.results import ArtifactHash, HostResult, RunResult
from repro.signatures import Check, gpg_verify, key_files, ssh_verify
from repro.sigs import Signature, counts, first_stage, read_signers, stage_hosts

MAX_JSON = 16 * 1024 * 1024


@dataclass
class Source:
    """What one SOURCE argument contributed: its builders, and the commit they built (if known)."""

    label: str
    kind: str  # "run", "statement", "cuprate", "guix.sigs"
    hosts: list[HostResult]
    commit: str | None
    playbook: str
    quorum: int = 2
    require: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)  # for the person: what was left out and why
    tampered: bool = False  # a signature in it is bad: the verdict is a mismatch, as in sigs

    def __repr__(self) -> str:
        return f"Source({self.label!r}, {self.kind}, {len(self.hosts)} hosts)"


def load_source(
    spec: str,
    *,
    include_unverified: bool = False,
    keys: Path | None = None,
    allowed_signers: Path | None = None,
) -> Source:
    """One SOURCE. A statement or attestation.json file counts as guix.sigs signers do: its
    signature beside it (`.sig`, ssh-keygen -Y; `.asc`, gpg) checked against `allowed_signers`
    or `keys` when given; unsigned or of an unknown key only with `include_unverified`; a bad
    one never (its builders show as failed, and the comparison is a mismatch)."""
    path = Path(spec)
    if path.is_dir() and (path / "report.json").is_file():
        run, _ = load_report(path)
        return Source(spec, "run", run.hosts, run.commit, run.playbook, run.quorum, run.require)
    if path.is_dir():
        return _guix_sigs(spec, path, include_unverified, keys)
    if not path.is_file():
        raise UsageError(f"{spec}: no such run dir, attestation file or guix.sigs version dir")
    if path.stat().st_size > MAX_JSON:
        raise UsageError(f"{spec}: larger than {MAX_JSON} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{spec}: not readable JSON evidence ({exc})") from None
    try:
        if isinstance(data, dict) and data.get("_type") == STATEMENT_TYPE:
            source = _statement(spec, data)
        elif isinstance(data, dict) and data.get("schema") == CUPRATE_SCHEMA:
            source = _cuprate(spec, data)
        else:
            raise UsageError(f"{spec}: neither an in-toto statement nor a {CUPRATE_SCHEMA} file")
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UsageError(f"{spec}: malformed evidence ({type(exc).__name__}: {exc})") from None
    return _as_signed(source, path, include_unverified, keys, allowed_signers)


def _as_signed(
    source: Source, path: Path, include_unverified: bool, keys: Path | None, allowed: Path | None
) -> Source:
    """`source` as its file's signature lets it count (see load_source)."""
    signature, detail = file_signature(path, keys, allowed)
    if signature == "bad":
        source.hosts = [HostResult(h.name, "failed", error=f"BAD signature: {detail}")
                        for h in source.hosts]  # fmt: skip
        source.tampered = True
    elif signature == "signed":
        source.notes.append(f"{source.label}: signature not checked (give --allowed-signers "
                            "or --keys to check it)")  # fmt: skip
    elif signature != "verified":
        if include_unverified:
            source.notes.append(f"{source.label}: counted though {signature} ({detail})")
        else:
            names = ", ".join(h.name for h in source.hosts)
            source.notes.append(f"{source.label}: {names} not counted ({signature}: {detail}; "
                                "--include-unverified counts it)")  # fmt: skip
            source.hosts = []
    return source


def file_signature(path: Path, keys: Path | None, allowed: Path | None) -> tuple[Signature, str]:
    """What the detached signature beside an evidence file says, in guix.sigs' terms."""
    sig, asc = path.with_name(path.name + ".sig"), path.with_name(path.name + ".asc")
    checks: list[Check] = []
    if allowed is not None:
        checks.append(ssh_verify(path, sig, allowed))
    if keys is not None:
        checks.append(gpg_verify(path, asc, key_files(keys)))
    if not checks:
        if sig.is_file() or asc.is_file():
            return "signed", ""
        return "unsigned", f"no {sig.name} or {asc.name}"
    bad = [c for c in checks if c.outcome == "bad"]
    if bad:
        return "bad", bad[0].detail
    good = [c for c in checks if c.outcome == "good"]
    if good:
        return "verified", good[0].detail
    if all(c.outcome == "missing" for c in checks):
        return "unsigned", "; ".join(c.detail for c in checks)
    return "unknown-key", "; ".join(c.detail for c in checks if c.outcome != "missing")


def _hash(name: str, sha: Any, size: Any = None) -> ArtifactHash:
    from repro.paths import safe_name

    if (
        not safe_name(name)
        or not isinstance(sha, str)
        or len(sha) != 64
        or sha.strip("0123456789abcdef")
    ):
        raise ValueError(f"artifact {name!r} has no valid sha256")
    return ArtifactHash(name, sha, size if isinstance(size, int) else None)


def _statement(spec: str, data: dict[str, Any]) -> Source:
    pred = data["predicate"]
    hosts = []
    for h in pred["hosts"]:
        host = HostResult(str(h["name"]), h["status"], error=h.get("error"), facts=dict(h["facts"]))
        if host.status not in ("ok", "failed", "unreachable"):
            raise ValueError(f"host {host.name!r} has status {host.status!r}")
        host.artifacts = {n: _hash(n, a["sha256"], a["size"]) for n, a in h["artifacts"].items()}
        hosts.append(host)
    playbook = str(pred["playbook"]["name"])
    require = tuple(str(r) for r in pred.get("require", ()))
    return Source(spec, "statement", hosts, pred["source"]["commit"], playbook,
                  int(pred["quorum"]), require)  # fmt: skip


def _cuprate(spec: str, data: dict[str, Any]) -> Source:
    host = HostResult(str(data["builder_id"]), "ok", facts={"describe": "Cuprate guix-attest"})
    for part in ("artifact", "distsrc"):
        item = data[part]
        host.artifacts[item["filename"]] = _hash(item["filename"], item["sha256"], item.get("size"))
    if data.get("guix_channel_commit"):
        host.facts["guix_channel_commit"] = data["guix_channel_commit"]
    return Source(spec, "cuprate", [host], data.get("git_commit"), str(data.get("package")))


def _guix_sigs(spec: str, vdir: Path, include_unverified: bool, keys: Path | None) -> Source:
    """A guix.sigs version dir: a builder per signer that counts, from the first stage published
    (what a build produces before anything is codesigned)."""
    everyone = read_signers(vdir, keys)
    signers = [s for s in everyone if counts(s, include_unverified)]
    stage = first_stage(signers)
    hosts = stage_hosts(signers, stage) if stage else []
    if not hosts:
        raise UsageError(f"{spec}: no signer that counts has a SHA256SUMS file")
    # a bad signature is shown as a failed builder (its bytes are not compared); signers that
    # are only unsigned or of unknown key are left out and named in the notes
    hosts += [HostResult(s.name, "failed", error=f"BAD signature: {s.detail}")
              for s in everyone if s.signature == "bad"]  # fmt: skip
    notes = [f"{spec}: {s.name} not counted ({s.signature}{': ' + s.detail if s.detail else ''})"
             for s in everyone if not counts(s, include_unverified) and s.signature != "bad"]  # fmt: skip
    bad = any(s.signature == "bad" for s in everyone)
    return Source(
        spec, "guix.sigs", hosts, None, f"guix.sigs {vdir.name}", notes=notes, tampered=bad
    )


def _sizes_alike(hosts: list[HostResult]) -> None:
    # SHA256SUMS files carry no sizes: where one builder's size is unknown, compare only the
    # hashes, or the same bytes would read as two groups (sha, 1234) and (sha, None).
    unsized = {n for h in hosts for n, a in h.artifacts.items() if a.size is None}
    for host in hosts:
        for name in unsized & set(host.artifacts):
            host.artifacts[name] = ArtifactHash(name, host.artifacts[name].sha256, None)


def _names_alike(hosts: list[HostResult]) -> None:
    # SHA256SUMS and attestation.json name files, a run names paths under the artifact dir
    # (out/x.tar.gz): where both kinds meet, every builder's artifacts go by file name.
    names = [n for h in hosts for n in h.artifacts]
    if not any("/" in n for n in names) or all("/" in n for n in names):
        return
    for host in hosts:
        by_file = {n.rsplit("/", 1)[-1]: a for n, a in host.artifacts.items()}
        if len(by_file) < len(host.artifacts):
            raise UsageError(f"compare: {host.name} has two artifacts of one file name")
        host.artifacts = {n: ArtifactHash(n, a.sha256, a.size) for n, a in by_file.items()}


def merge(
    sources: list[Source], *, quorum: int | None = None, require: tuple[str, ...] = ()
) -> RunResult:
    """One run of every source's builders. Different commits, or one builder twice, are bad
    input: they would compare different builds, or count one build's evidence twice."""
    commits = {s.commit for s in sources if s.commit}
    if len(commits) > 1:
        shown = "; ".join(f"{s.label} built {s.commit}" for s in sources if s.commit)
        raise UsageError(f"compare: the sources built different commits: {shown}")
    seen: dict[str, str] = {}
    hosts = []
    for source in sources:
        for host in source.hosts:
            if host.name in seen:
                raise UsageError(
                    f"compare: builder {host.name} appears twice, in {seen[host.name]} and in "
                    f"{source.label}: one build's evidence must not count twice"
                )
            seen[host.name] = source.label
            host.facts["source"] = source.label
            hosts.append(host)
    _names_alike(hosts)
    _sizes_alike(hosts)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return RunResult(
        run_id="compare-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        playbook=" + ".join(dict.fromkeys(s.playbook for s in sources)),
        started_at=now,
        finished_at=now,
        hosts=hosts,
        quorum=quorum if quorum is not None else max(s.quorum for s in sources),
        playbook_path=", ".join(s.label for s in sources),
        commit=commits.pop() if commits else None,
        require=tuple(dict.fromkeys([*(r for s in sources for r in s.require), *require])),
    )
