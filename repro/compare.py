"""The comparison model: an artifact x host matrix grouped by hash, and the run's verdict.

`compare` computes; it never formats. Renderers in repro/render only read what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from repro import guix
from repro.expect import expect_reasons
from repro.quorum import diversity_reasons
from repro.attribution import Attribution, Profile, attribute, profile
from repro.results import HostResult, RunResult

if TYPE_CHECKING:
    from repro.explain import Why

Verdict = Literal["reproducible", "mismatch", "inconclusive"]
ArtifactStatus = Literal["identical", "differs", "incomplete"]

EXIT_CODES: dict[str, int] = {"reproducible": 0, "mismatch": 1, "inconclusive": 3}


@dataclass(frozen=True)
class HashGroup:
    """Hosts that produced the same bytes for one artifact."""

    sha256: str
    size: int | None
    hosts: tuple[str, ...]

    def __repr__(self) -> str:
        return f"HashGroup({self.sha256[:12]}, {list(self.hosts)})"


@dataclass(frozen=True)
class ArtifactComparison:
    name: str
    status: ArtifactStatus
    groups: tuple[HashGroup, ...]  # largest group first, then by first host in run order
    missing: tuple[str, ...] = ()  # hosts that finished ok but did not produce this artifact
    # hosts whose own rounds (`rounds: 2`) disagree: not deterministic even on one machine
    unstable: tuple[str, ...] = ()
    # what lines up with the split (computed here); why the bytes differ (diffoscope, later)
    attribution: Attribution | None = None
    why: Why | None = None

    def __repr__(self) -> str:
        return f"ArtifactComparison({self.name!r}, {self.status}, {len(self.groups)} groups)"


@dataclass(frozen=True)
class Comparison:
    verdict: Verdict
    artifacts: tuple[ArtifactComparison, ...]
    reasons: tuple[str, ...] = ()  # one line each: why the verdict is not `reproducible`

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def __repr__(self) -> str:
        return f"Comparison({self.verdict}, {len(self.artifacts)} artifacts)"


# --- computing the comparison --------------------------------------------------------------

_SHORT = 12  # hex digits of a hash or commit shown in a reason line


def compare(run: RunResult) -> Comparison:
    """Group every artifact's hashes across the hosts that finished ok, and decide the verdict."""
    ok = [h for h in run.hosts if h.status == "ok"]
    names = sorted({name for h in ok for name in h.artifacts})
    artifacts = tuple(_compare_artifact(name, ok) for name in names)
    channels = _channel_reasons(ok)
    published, doubts = expect_reasons(artifacts, run.expected)
    reasons = [
        *_host_reasons(run.hosts),
        *(_round_reason(a, ok) for a in artifacts if a.unstable),
        *(_artifact_reason(a) for a in artifacts if len(a.groups) > 1 or a.missing),
        *_quorum_reasons(artifacts, run.quorum, bool(ok)),
        *diversity_reasons(ok, run.require),
        *published,
        *doubts,
        *channels,
    ]
    verdict = _verdict(artifacts, reasons, bool(channels))
    if published and not channels:
        verdict = "mismatch"  # the hosts agree, but not on the bytes the project released
    return Comparison(verdict, artifacts, tuple(reasons))


def _verdict(
    artifacts: tuple[ArtifactComparison, ...], reasons: list[str], toolchains_differ: bool
) -> Verdict:
    # Hosts that built with different Guix channel commits did not run the same build: their
    # bytes prove nothing either way, whatever the hashes say.
    if toolchains_differ:
        return "inconclusive"
    # A difference wins over a failure: bytes that differ are evidence, a failure is only doubt.
    if any(a.status == "differs" for a in artifacts):
        return "mismatch"
    return "inconclusive" if reasons else "reproducible"


def _compare_artifact(name: str, ok: list[HostResult]) -> ArtifactComparison:
    by_hash: dict[tuple[str, int | None], list[str]] = {}
    missing: list[str] = []
    for host in ok:
        art = host.artifacts.get(name)
        if art is None:
            missing.append(host.name)
        else:
            by_hash.setdefault((art.sha256, art.size), []).append(host.name)
    # dicts keep insertion order, i.e. the run order of each group's first host: a stable sort
    # by size alone leaves ties in that order.
    ordered = sorted(by_hash.items(), key=lambda item: -len(item[1]))
    groups = tuple(HashGroup(sha, size, tuple(hosts)) for (sha, size), hosts in ordered)
    unstable = tuple(h.name for h in ok if name in h.artifacts and _rounds_disagree(h, name))
    status: ArtifactStatus = (
        "differs" if len(groups) > 1 or unstable else "incomplete" if missing else "identical"
    )
    found = _attribution(name, groups, unstable, ok) if status == "differs" else None
    return ArtifactComparison(name, status, groups, tuple(missing), unstable, found)


def _attribution(
    name: str, groups: tuple[HashGroup, ...], unstable: tuple[str, ...], ok: list[HostResult]
) -> Attribution | None:
    """Between hosts when their groups differ; else between the rounds of the first unstable
    host (same facts, so only its rounds' build paths and --vary values can line up)."""
    if len(groups) > 1:
        return attribute([g.hosts for g in groups], {h.name: _profile(h, 1) for h in ok})
    if not unstable:
        return None
    host = next(h for h in ok if h.name == unstable[0])
    by_hash: dict[str, list[str]] = {}
    profiles: dict[str, Profile] = {}
    for rnd, hashes in enumerate([host.artifacts, *host.extra_rounds], 1):
        if name in hashes:
            by_hash.setdefault(hashes[name].sha256, []).append(f"round {rnd}")
            profiles[f"round {rnd}"] = _profile(host, rnd)
    return attribute(list(by_hash.values()), profiles, members="round")


def _profile(host: HostResult, rnd: int) -> Profile:
    axes = host.variations[rnd - 1] if len(host.variations) >= rnd else {}
    return profile(host.facts, host.variables, axes, host.work_dir(rnd))


def _rounds_disagree(host: HostResult, name: str) -> bool:
    first = host.artifacts[name]
    return any(
        (r.get(name) is None) or (r[name].sha256, r[name].size) != (first.sha256, first.size)
        for r in host.extra_rounds
    )


def _round_reason(artifact: ArtifactComparison, ok: list[HostResult]) -> str:
    parts = []
    for host in ok:
        if host.name not in artifact.unstable:
            continue
        seen = [host.artifacts[artifact.name]] + [r.get(artifact.name) for r in host.extra_rounds]
        shown = ", ".join(
            f"round {i} {'has ' + _short(a.sha256) if a else 'lacks it'}"
            for i, a in enumerate(seen, 1)
        )
        parts.append(f"{host.name} ({shown})")
    return f"artifact {artifact.name} is not deterministic on one machine: " + "; ".join(parts)


def _host_reasons(hosts: list[HostResult]) -> list[str]:
    return [
        f"host {h.name} {h.status}" + (f": {h.error}" if h.error else "")
        for h in hosts
        if h.status != "ok"
    ]


def _artifact_reason(artifact: ArtifactComparison) -> str:
    if artifact.status == "differs":
        parts = [_who_has(g.hosts, g.sha256) for g in artifact.groups]
        if artifact.missing:
            parts.append(
                f"{_names(artifact.missing)} {_verb(artifact.missing, 'lacks', 'lack')} it"
            )
        return f"artifact {artifact.name} differs: " + "; ".join(parts)
    return f"artifact {artifact.name} is missing on {_names(artifact.missing)}"


def _quorum_reasons(
    artifacts: tuple[ArtifactComparison, ...], quorum: int, any_ok: bool
) -> list[str]:
    if not artifacts:
        return ["no artifacts: " + ("no host produced any" if any_ok else "no host finished ok")]
    reasons = []
    for artifact in artifacts:
        built = sum(len(g.hosts) for g in artifact.groups)
        if built < quorum:
            count = f"{built} host" + ("" if built == 1 else "s")
            reasons.append(f"only {count} produced {artifact.name}; the playbook asks for {quorum}")
    return reasons


def _channel_reasons(ok: list[HostResult]) -> list[str]:
    by_commit = guix.channel_groups(ok)
    if len(by_commit) < 2:
        return []
    parts = [_who_has(hosts, commit) for commit, hosts in by_commit.items()]
    return ["hosts disagree on the Guix channel commit: " + "; ".join(parts)]


def _who_has(hosts: tuple[str, ...] | list[str], value: str) -> str:
    return f"{_names(hosts)} {_verb(hosts, 'has', 'have')} {_short(value)}"


def _names(hosts: tuple[str, ...] | list[str]) -> str:
    return ", ".join(hosts)


def _verb(hosts: tuple[str, ...] | list[str], one: str, many: str) -> str:
    return one if len(hosts) == 1 else many


def _short(value: str) -> str:
    return value if len(value) <= _SHORT else value[:_SHORT] + "…"
