"""Published hashes for `--expect`: a release's SHA256SUMS, a guix.sigs version directory (what
its signed builders agree on), or NAME=SHA256, merged into one name -> sha256 map.
"""

from __future__ import annotations

import re
from pathlib import Path

from repro.errors import UsageError
from repro.sigs import counts, first_stage, read_signers
from repro.sums import SumsError, read_sums

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
