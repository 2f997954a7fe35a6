"""Read a guix.sigs tree (`<version>/<signer>/<stage>.SHA256SUMS` + `.asc`) as runs, one per stage,
so the builders who attested a release by hand are compared exactly like hosts repro built on.

Bitcoin Core writes `noncodesigned.SHA256SUMS`, then `all.SHA256SUMS` once the codesigned stage
exists; Monero writes only `all.SHA256SUMS`. Each stage is compared on its own: a signer who has
published only the first stage is normal, not missing. A signer whose signature is absent, cannot
be checked, or is bad is reported and kept out of the comparison (and so out of the quorum).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from repro.compare import EXIT_CODES, Comparison, compare
from repro.errors import UsageError
from repro.results import ArtifactHash, HostResult, RunResult
from repro.signatures import gpg_verify, key_files
from repro.sums import SumsError, read_sums

_SIGNER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,99}$")
STAGE_ORDER = ("noncodesigned", "codesigned", "all")  # the order the stages are published in
Signature = Literal["verified", "signed", "unsigned", "unknown-key", "bad"]
#: the signer is compared; "signed" means an .asc is present but no keys were given to check it
COUNTED: tuple[Signature, ...] = ("verified", "signed")


@dataclass
class Signer:
    """One builder's directory and what its signatures say."""

    name: str
    signature: Signature = "signed"
    detail: str = ""
    stages: dict[str, dict[str, str]] = field(default_factory=dict)  # stage -> name -> sha256
    failed: dict[str, str] = field(default_factory=dict)  # stage -> why its file is unreadable

    def __repr__(self) -> str:
        return f"Signer({self.name!r}, {self.signature}, {sorted(self.stages)})"


@dataclass
class Stage:
    name: str
    run: RunResult
    comparison: Comparison


@dataclass
class Release:
    """A version of a guix.sigs tree, read and compared stage by stage."""

    version: str
    root: str
    signers: list[Signer]
    stages: list[Stage]
    keys: str | None  # the keys dir signatures were checked against
    include_unverified: bool = False

    @property
    def excluded(self) -> list[Signer]:
        return [s for s in self.signers if not self.counts(s)]

    def counts(self, signer: Signer) -> bool:
        return counts(signer, self.include_unverified)

    @property
    def verdict(self) -> str:
        verdicts = {s.comparison.verdict for s in self.stages}
        if "mismatch" in verdicts or any(s.signature == "bad" for s in self.signers):
            return "mismatch"  # a bad signature is a statement that does not match: tampered
        return "inconclusive" if "inconclusive" in verdicts or not self.stages else "reproducible"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def counts(signer: Signer, include_unverified: bool = False) -> bool:
    """Whether a signer is compared: signed (and verified, where keys were given); unsigned and
    unknown-key ones only on request; a bad signature never."""
    return signer.signature in COUNTED or (include_unverified and signer.signature != "bad")


def version_dir(root: str | Path, version: str) -> Path:
    if not _SIGNER.match(version):
        raise UsageError(f"version {version!r} is not a plain directory name")
    vdir = Path(root) / version
    if not vdir.is_dir():
        raise UsageError(f"{vdir}: no such version directory in {root}")
    return vdir


def read_signers(vdir: Path, keys: Path | None) -> list[Signer]:
    """Every signer directory of a version, with its stage files read and signatures checked."""
    key_list = key_files(keys) if keys is not None else []
    signers = []
    for d in sorted(p for p in vdir.iterdir() if p.is_dir() and not p.is_symlink()):
        if _SIGNER.match(d.name):  # a name we would not print or use as a path is skipped
            signers.append(_signer(d, keys, key_list))
    if not signers:
        raise UsageError(f"{vdir}: no signer directories with SHA256SUMS files")
    return signers


def _signer(path: Path, keys: Path | None, key_list: list[Path]) -> Signer:
    signer = Signer(path.name)
    files = sorted(f for f in path.glob("*.SHA256SUMS") if f.is_file() and not f.is_symlink())
    if not files:
        signer.signature, signer.detail = "unsigned", "no *.SHA256SUMS file"
    own = [k for k in key_list if k.stem == path.name]  # builder-keys/<signer>.gpg
    verdicts = []
    for f in files:
        stage = f.name.removesuffix(".SHA256SUMS")
        try:
            signer.stages[stage] = read_sums(f)
        except SumsError as exc:
            signer.failed[stage] = str(exc).replace(str(path) + "/", "")
        asc = f.with_name(f.name + ".asc")
        if keys is None:
            # repro attest may sign with ssh-keygen -Y: that .sig counts as a signature too
            signed = asc.is_file() or f.with_name(f.name + ".sig").is_file()
            verdicts.append(("signed", "") if signed else ("unsigned", f"no {asc.name}"))
            continue
        check = gpg_verify(f, asc, own)
        if check.outcome == "good":
            verdicts.append(("verified", check.detail))
        elif check.outcome == "missing":
            verdicts.append(("unsigned", f"no {asc.name}"))
        elif check.outcome == "bad":
            verdicts.append(("bad", f"{f.name}: {check.detail}"))
        else:
            why = check.detail if own else f"no {path.name}.gpg in {keys}"
            verdicts.append(("unknown-key", f"{f.name}: {why}"))
    # the weakest file decides: one bad or unsigned stage taints the signer
    for worst in ("bad", "unsigned", "unknown-key", "signed", "verified"):
        found = [d for v, d in verdicts if v == worst]
        if found:
            signer.signature, signer.detail = worst, found[0]
            break
    return signer


def read_sigs(
    root: str | Path,
    version: str,
    *,
    quorum: int = 2,
    keys: str | Path | None = None,
    include_unverified: bool = False,
) -> Release:
    """Read `root/version`, check signatures against `keys` (a builder-keys/ dir) when given,
    and compare every stage among the signers that count."""
    vdir = version_dir(root, version)
    keys_dir = Path(keys) if keys is not None else None
    release = Release(version, str(root), read_signers(vdir, keys_dir), [],
                      str(keys_dir) if keys_dir else None, include_unverified)  # fmt: skip
    started = datetime.now(UTC).isoformat(timespec="seconds")
    counted = [s for s in release.signers if release.counts(s)]
    names = {n for s in counted for n in [*s.stages, *s.failed]}
    for stage in sorted(names, key=_stage_key):
        run = stage_run(release, stage, counted, quorum, started)
        release.stages.append(Stage(stage, run, compare(run)))
    return release


def stage_run(
    release: Release, stage: str, signers: list[Signer], quorum: int, started: str
) -> RunResult:
    """One stage as a run: a 'host' per signer who published that stage's file."""
    return RunResult(
        run_id=f"sigs-{release.version}-{stage}",
        playbook=f"guix.sigs {release.version} {stage}",
        started_at=started,
        finished_at=started,
        hosts=stage_hosts(signers, stage),
        quorum=quorum,
        playbook_path=str(Path(release.root) / release.version),
    )


def stage_hosts(signers: list[Signer], stage: str) -> list[HostResult]:
    """A 'host' per signer who published `stage` (one who has not yet is normal, not missing)."""
    hosts = []
    for s in signers:
        host = HostResult(s.name, "ok", facts={"describe": _describe(s)})
        if stage in s.failed:
            host.status, host.error = "failed", s.failed[stage]
        elif stage in s.stages:
            host.artifacts = {n: ArtifactHash(n, h, None) for n, h in s.stages[stage].items()}
        else:
            continue
        hosts.append(host)
    return hosts


def first_stage(signers: list[Signer]) -> str | None:
    """The earliest stage any of them published: what a build produces before codesigning."""
    names = {n for s in signers for n in [*s.stages, *s.failed]}
    return min(names, key=_stage_key) if names else None


def _stage_key(name: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(name) if name in STAGE_ORDER else len(STAGE_ORDER), name)


def _describe(signer: Signer) -> str:
    return {
        "verified": "signature verified",
        "signed": "signed (.asc not checked)",
    }.get(signer.signature, f"{signer.signature} (counted on request)")
