"""What every renderer reads the same way from the model: row order, cells and the headline.

Nothing here decides a verdict or a group; it only arranges what `repro.compare` decided.
"""

from __future__ import annotations

from collections.abc import Callable

from repro.attribution import Factor
from repro.compare import ArtifactComparison, Comparison
from repro.results import HostResult, RunResult

LABELS = {"reproducible": "Reproducible", "mismatch": "Mismatch", "inconclusive": "Inconclusive"}
SHORT_HASH = 12
_LISTED = 6  # at most this many names in a cell; beyond, "all but …" or a count


def ordered_hosts(run: RunResult, comparison: Comparison) -> list[HostResult]:
    """Ok hosts first, those that agree next to each other (largest group first); then the rest."""
    ok = [h for h in run.hosts if h.status == "ok"]
    rest = [h for h in run.hosts if h.status != "ok"]
    # sorted() is stable, so hosts with the same groups stay in run order.
    return sorted(ok, key=lambda h: _group_key(h.name, comparison.artifacts)) + rest


def _group_key(host: str, artifacts: tuple[ArtifactComparison, ...]) -> tuple[int, ...]:
    # A host lacking an artifact sorts after every group that has it.
    indexes = (group_index(host, a) for a in artifacts)
    return tuple(len(a.groups) if i is None else i for a, i in zip(artifacts, indexes))


def group_index(host: str, artifact: ArtifactComparison) -> int | None:
    """Which of the artifact's groups the host is in (0 = the largest), None if in none."""
    for i, group in enumerate(artifact.groups):
        if host in group.hosts:
            return i
    return None


def hash_of(host: HostResult, artifact: ArtifactComparison) -> str | None:
    """What a host's cell for an artifact shows: its sha256, "" when it lacks the artifact,
    or None when the host did not finish ok (compare ignored it; a hash would look like a vote).
    """
    if host.status != "ok":
        return None
    found = host.artifacts.get(artifact.name)
    return found.sha256 if found is not None else ""


def describe(host: HostResult) -> str:
    """The "what it is" column: filled by facts gathering, empty when unknown."""
    value = host.facts.get("describe")
    return "" if value is None else str(value)


def status_text(host: HostResult) -> str:
    return host.status if host.status == "ok" or not host.error else f"{host.status}: {host.error}"


def headline(run: RunResult, comparison: Comparison, name: Callable[[str], str]) -> str:
    """The sentence after the verdict label; `name` formats an artifact name for the medium."""
    ok = sum(1 for h in run.hosts if h.status == "ok")
    if comparison.verdict == "mismatch":
        differs = [a.name for a in comparison.artifacts if a.status == "differs"]
        if not differs:
            return "the hosts agree, but not with the published hashes (--expect)"
        verb = "differs" if len(differs) == 1 else "differ"
        return f"{_listed(differs, name)} {verb} between hosts"
    if comparison.verdict == "reproducible":
        built = _listed([a.name for a in comparison.artifacts], name)
        return f"{_count(ok, 'host')} built {built} with identical bytes"
    if any(a.status == "differs" for a in comparison.artifacts):
        # only when the hosts did not run the same pinned toolchain (compare decides that)
        return (
            "artifacts differ, but the hosts did not build with the same toolchain; see the reasons"
        )
    return f"no difference seen among {_count(ok, 'host')} that finished, but see the reasons"


def _listed(names: list[str], name: Callable[[str], str]) -> str:
    return ", ".join(name(n) for n in names)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def who(hosts: tuple[str, ...], everyone: list[str]) -> str:
    """A hash group's hosts (or signers) among `everyone`, as short as stays exact."""
    if set(hosts) == set(everyone):
        # a few names say more than "all 3 agree"; past a screenful, the count is what reads
        return f"all {len(everyone)} agree" if len(everyone) > _LISTED else ", ".join(hosts)
    if len(hosts) <= _LISTED:
        return ", ".join(hosts)
    rest = [h for h in everyone if h not in hosts]
    if len(rest) <= _LISTED:
        return f"{len(hosts)}: all but {', '.join(rest)}"
    return f"{len(hosts)} of {len(everyone)}"


# --- why it differs: the same bounded lines for every renderer --------------------------------

_KIND_LABELS = {
    "axis": "--vary axis",
    "variable": "inventory variable",
    "build-env": "build environment",
    "fact": "host fact",
}


def why_lines(artifact: ArtifactComparison) -> list[tuple[int, str]]:
    """(depth, text) lines explaining one differing artifact: what lines up with the split
    (attribution), what diffoscope found (members, first differing lines) and where the full
    reports are. Bounded: compare and diffoscope cap what they keep."""
    lines: list[tuple[int, str]] = []
    att = artifact.attribution
    if att is not None:
        if att.factors:
            shown = "; ".join(_factor(f) for f in att.factors)
            lines.append((0, f"{att.wording}: {shown}"))
        if att.note:
            lines.append((0, att.note))
    why = artifact.why
    if why is None:
        return lines
    for pair in why.pairs:
        head = f"diffoscope, {pair.left} vs {pair.right}: "
        if pair.status == "differ":
            count = f"{len(pair.members)}{'+' if pair.truncated else ''}"
            lines.append((0, head + f"{count} differing member(s)"))
        elif pair.status == "same":
            lines.append((0, head + "no difference found"))
        else:
            lines.append((0, head + (pair.detail or pair.status)))
        for member in pair.members:
            lines.append((1, f"{' › '.join(member.path)} ({member.kind})"))
            lines += [(2, line) for line in member.lines]
        for label, path in (("text", pair.text), ("html", pair.html)):
            if path:
                lines.append((1, f"full {label} report: {path}"))
    for c in why.copies:
        if c.status != "ok":
            lines.append((0, f"{c.label} ({c.host}): {c.status}: {c.detail}"))
    if why.note and not any(why.note in text for _, text in lines):
        lines.append((0, why.note))
    return lines


def _factor(f: Factor) -> str:
    values = "; ".join(f"{value} on {who}" for who, value in f.values)
    weak = ", different on every one" if f.on_every_host else ""
    return f"{_KIND_LABELS.get(f.kind, f.kind)} {f.name} ({values}{weak})"
