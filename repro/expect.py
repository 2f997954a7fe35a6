"""Published hashes held against a run (`--expect`): a host that agrees with its peers but not
with what the project published is a mismatch. Reading them: repro.published.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from repro.compare import ArtifactComparison


def _match(expected: dict[str, str], artifact: str) -> str | None:
    """The published name an artifact is: itself, or its file name (SUMS list basenames)."""
    if artifact in expected:
        return artifact
    base = artifact.rsplit("/", 1)[-1]
    return base if base in expected else None


def expect_reasons(
    artifacts: tuple[ArtifactComparison, ...], expected: dict[str, str]
) -> tuple[list[str], list[str]]:
    """(differences from the published hashes, doubts): a difference makes the run a mismatch."""
    if not expected:
        return [], []
    differ, matched = [], set()
    for artifact in artifacts:
        name = _match(expected, artifact.name)
        if name is None:
            continue
        matched.add(name)
        want = expected[name]
        for group in artifact.groups:
            if group.sha256 != want:
                who = ", ".join(group.hosts)
                agree = " (agreeing with each other)" if len(group.hosts) > 1 else ""
                differ.append(
                    f"artifact {artifact.name} differs from the published hash: {who}{agree} "
                    f"built {group.sha256[:12]}…, the project published {want[:12]}…"
                )
    doubts = []
    if not matched:
        doubts.append("--expect: no artifact of this run is among the published hashes")
    return differ, doubts
