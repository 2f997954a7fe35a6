"""Published hashes (`--expect`): a release's SHA256SUMS, a guix.sigs version directory, or
NAME=SHA256. A host that agrees with its peers but not with what was published is a mismatch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from repro.errors import UsageError
from repro.sums import SumsError, read_sums

if TYPE_CHECKING:
    from repro.compare import ArtifactComparison

_PAIR = re.compile(r"^([^=]+)=([0-9a-f]{64})$")


def load_expected(specs: list[str]) -> dict[str, str]:
    """Every spec merged into name -> sha256; two specs naming one artifact must agree."""
    expected: dict[str, str] = {}
    for spec in specs:
        for name, sha in _one(spec).items():
            if expected.setdefault(name, sha) != sha:
                raise UsageError(f"--expect {spec}: {name} has another hash in an earlier --expect")
    return expected


def _one(spec: str) -> dict[str, str]:
    path = Path(spec)
    if path.is_dir():
        return _from_sigs(path)
    if path.is_file():
        try:
            return read_sums(path)
        except SumsError as exc:
            raise UsageError(f"--expect {exc}") from None
    m = _PAIR.match(spec)
    if not m:
        raise UsageError(
            f"--expect {spec!r}: not a SHA256SUMS file, a guix.sigs version dir, or NAME=SHA256"
        )
    return {m.group(1): m.group(2)}


def _from_sigs(vdir: Path) -> dict[str, str]:
    """The hashes a guix.sigs version's signed builders published, in the first stage: the
    artifacts a build produces before anything is codesigned. Signers must agree."""
    from repro.sigs import counts, first_stage, read_signers

    signers = [s for s in read_signers(vdir, None) if counts(s)]
    published: dict[str, str] = {}
    stage = first_stage(signers)
    for s in signers:
        for name, sha in s.stages.get(stage or "", {}).items():
            if published.setdefault(name, sha) != sha:
                raise UsageError(f"--expect {vdir}: the signers disagree about {name}")
    if not published:
        raise UsageError(f"--expect {vdir}: no signed SHA256SUMS in this guix.sigs version dir")
    return published


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
