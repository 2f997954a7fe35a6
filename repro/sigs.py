"""Read a guix.sigs-style tree (`<version>/<signer>/*.SHA256SUMS`) as a run, so the builders who
attested a release by hand are compared exactly like hosts repro built on.

Bitcoin Core writes `noncodesigned.SHA256SUMS` (and `all.SHA256SUMS` once codesigned outputs
exist); Monero writes only `all.SHA256SUMS`. Every signer's files are merged; a signer whose own
files disagree about a name is marked failed. Signatures (`.asc`) are NOT verified here: that is
gpg's job (`guix-verify` does both); the report says which signers shipped one.
"""

from __future__ import annotations

import re
from pathlib import Path

from repro.paths import safe_name
from repro.errors import UsageError
from repro.results import ArtifactHash, HostResult, RunResult

_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
_SIGNER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,99}$")
MAX_FILE = 4 * 1024 * 1024


def read_sigs(root: str | Path, version: str, *, quorum: int = 2) -> RunResult:
    """A RunResult with one 'host' per signer of `version` under `root`."""
    base = Path(root)
    if not _SIGNER.match(version):
        raise UsageError(f"version {version!r} is not a plain directory name")
    vdir = base / version
    if not vdir.is_dir():
        raise UsageError(f"{vdir}: no such version directory in {base}")
    hosts = []
    for signer_dir in sorted(p for p in vdir.iterdir() if p.is_dir() and not p.is_symlink()):
        if not _SIGNER.match(signer_dir.name):
            continue  # a name we would not print or use as a path
        hosts.append(_signer(signer_dir))
    if not hosts:
        raise UsageError(f"{vdir}: no signer directories with SHA256SUMS files")
    return RunResult(
        run_id=f"sigs-{version}",
        playbook=f"guix.sigs {version}",
        started_at="",
        hosts=hosts,
        quorum=quorum,
        playbook_path=str(vdir),
    )


def _signer(path: Path) -> HostResult:
    result = HostResult(name=path.name, status="ok")
    files = sorted(f for f in path.glob("*.SHA256SUMS") if f.is_file() and not f.is_symlink())
    if not files:
        result.status, result.error = "failed", "no *.SHA256SUMS file"
        return result
    result.facts = {
        "describe": "signed (.asc present, not verified)"
        if all((f.parent / (f.name + ".asc")).exists() for f in files)
        else "UNSIGNED (no .asc)",
        "files": [f.name for f in files],
    }
    for f in files:
        if f.stat().st_size > MAX_FILE:
            result.status, result.error = "failed", f"{f.name} is larger than {MAX_FILE} bytes"
            return result
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            m = _LINE.match(line)
            name = m.group(2) if m else ""
            if not m or not safe_name(name):
                result.status, result.error = (
                    "failed",
                    f"{f.name} line {n} is not '<sha256>  <name>'",
                )
                return result
            known = result.artifacts.get(name)
            if known and known.sha256 != m.group(1):
                result.status = "failed"
                result.error = f"{name} has two different hashes in this signer's files"
                return result
            result.artifacts[name] = ArtifactHash(name, m.group(1), None)
    return result
