"""Evidence of a run, written on the controller from its report: an in-toto Statement v1, and for
a named signer the guix.sigs files and Cuprate's attestation.json, each signed with gpg or ssh-keygen.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from repro.errors import UsageError
from repro.signatures import gpg_sign, ssh_sign
from repro.store import atomic_write

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/repro-tools/repro/attestation/v1"
CUPRATE_SCHEMA = "cuprate-guix-attestation/v1"
STATEMENT = "statement.intoto.json"
#: what a statement keeps of each host's facts: what it is, and the toolchain it built with
FACTS = ("describe", "cpu_vendor", "cpu_model_name", "microarch", "hypervisor", "virtualization",
         "cloud", "kernel", "glibc", "guix_version", "guix_channel_commit")  # fmt: skip
_SIGNER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,99}$")


@dataclass(frozen=True)
class Signing:
    """How to sign: an ssh private key file, a gpg key (None: gpg's default key), or both."""

    ssh_key: Path | None = None
    gpg: bool = False
    gpg_key: str | None = None

    def sign(self, path: Path) -> list[Path]:
        out = []
        if self.ssh_key is not None:
            out.append(ssh_sign(path, self.ssh_key))
        if self.gpg:
            out.append(gpg_sign(path, self.gpg_key))
        return out


def file_sha256(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def statement(report: dict[str, Any], playbook_sha256: str | None) -> dict[str, Any]:
    """The in-toto Statement of a report: subjects are the artifacts every host agreed on."""
    subjects = [
        {"name": a["name"], "digest": {"sha256": a["groups"][0]["sha256"]}}
        for a in report["artifacts"]
        if len(a["groups"]) == 1
    ]
    hosts = [
        {
            "name": h["name"],
            "status": h["status"],
            "error": h["error"],
            "artifacts": {
                n: {"sha256": v["sha256"], "size": v["size"]} for n, v in h["artifacts"].items()
            },
            "facts": {k: h["facts"][k] for k in FACTS if k in h["facts"]},
        }
        for h in report["hosts"]
    ]
    variables = report.get("vars") or {}
    predicate = {
        "run_id": report["run_id"],
        "source": {
            "commit": report["commit"],
            "ref": variables.get("ref"),
            "repo_url": variables.get("repo_url"),
        },
        "playbook": {
            "name": report["playbook"],
            "path": report["playbook_path"],
            "sha256": playbook_sha256,
        },
        "started_at": report["started_at"],
        "finished_at": report["finished_at"],
        "quorum": report["quorum"],
        "require": report.get("require", []),
        "expected": report.get("expected", {}),
        "verdict": report["verdict"],
        "exit_code": report["exit_code"],
        "reasons": report["reasons"],
        "hosts": hosts,
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def agreed(report: dict[str, Any]) -> dict[str, tuple[str, int | None]]:
    """name -> (sha256, size) of every artifact, for a run whose hosts all agreed."""
    return {
        a["name"]: (a["groups"][0]["sha256"], a["groups"][0]["size"]) for a in report["artifacts"]
    }


def is_codesigned(name: str) -> bool:
    # Bitcoin Core's guix-codesign writes to output/<host>-codesigned/: its guix-attest puts
    # those in all.SHA256SUMS only, and writes that file only when such outputs exist.
    return any(part.endswith("-codesigned") for part in name.split("/")[:-1])


def sums_files(report: dict[str, Any]) -> dict[str, str]:
    """guix.sigs file name -> content: noncodesigned always, all only with codesigned outputs."""
    # listed by file name, as guix-attest does; a name two output dirs share is listed twice
    lines = sorted(
        (n.rsplit("/", 1)[-1], sha, is_codesigned(n)) for n, (sha, _) in agreed(report).items()
    )
    files = {"noncodesigned.SHA256SUMS": "".join(f"{s}  {n}\n" for n, s, c in lines if not c)}
    if any(c for _, _, c in lines):
        files["all.SHA256SUMS"] = "".join(f"{s}  {n}\n" for n, s, _ in lines)
    return files


def cuprate_attestation(report: dict[str, Any], signer: str, version: str) -> dict[str, Any] | None:
    """Cuprate's guix-attest JSON (sorted keys), when the run built a distsrc and a release
    tarball; rustc/cargo versions only when passed as -e rustc_version=… / cargo_version=…"""
    hashes = agreed(report)
    distsrc = [n for n in hashes if n.endswith("-src.tar.gz")]
    release = [n for n in hashes if n.endswith(".tar.gz") and n not in distsrc]
    if len(distsrc) != 1 or len(release) != 1:
        return None
    channels = {h["facts"].get("guix_channel_commit") for h in report["hosts"]} - {None, ""}
    variables = report.get("vars") or {}
    name = release[0].rsplit("/", 1)[-1]
    return {
        "schema": CUPRATE_SCHEMA,
        "builder_id": signer,
        "package": variables.get("package") or name.split("-", 1)[0],
        "version": version,
        "git_commit": report["commit"],
        "artifact": {
            "filename": name,
            "sha256": hashes[release[0]][0],
            "size": hashes[release[0]][1],
        },
        "distsrc": {"filename": distsrc[0].rsplit("/", 1)[-1], "sha256": hashes[distsrc[0]][0]},
        "guix_channel_commit": channels.pop() if len(channels) == 1 else None,
        "rustc_version": variables.get("rustc_version"),
        "cargo_version": variables.get("cargo_version"),
        "attested_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def attest(
    run_dir: Path,
    report: dict[str, Any],
    signing: Signing,
    *,
    signer: str | None = None,
    version: str | None = None,
    out: Path | None = None,
) -> list[Path]:
    """Write (and sign, when `signing` says how) the run's evidence under `out` (default
    RUN_DIR/attestation); returns every file written. Checks everything before writing."""
    dest = out or run_dir / "attestation"
    texts: dict[Path, str] = {
        dest / STATEMENT: _dump(statement(report, file_sha256(report["playbook_path"])))
    }
    if signer is not None:
        version = version or (report.get("vars") or {}).get("ref")
        for value, what in ((signer, "--signer"), (version, "--version")):
            if not isinstance(value, str) or not _SIGNER.match(value):
                raise UsageError(f"{what} {value!r}: a plain name is needed ([A-Za-z0-9_.@+-])")
        assert version is not None  # checked just above; mypy cannot see it
        if report["verdict"] != "reproducible":
            raise UsageError(
                f"{run_dir}: the run is {report['verdict']}, so there is no one set of hashes "
                f"for {signer} to sign; only a reproducible run gets guix.sigs files"
            )
        sigs_dir = dest / "sigs" / version / signer
        texts.update({sigs_dir / n: t for n, t in sums_files(report).items()})
        cuprate = cuprate_attestation(report, signer, version)
        if cuprate is not None:
            texts[sigs_dir / "attestation.json"] = _dump(cuprate)
    written: list[Path] = []
    try:
        for path, text in texts.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            for old in (".sig", ".asc"):  # a signature of an earlier attest no longer applies
                path.with_name(path.name + old).unlink(missing_ok=True)
            atomic_write(path, text)
            written.append(path)
            written += signing.sign(path)
    except BaseException:
        for path in written:  # a key that cannot sign leaves no unsigned evidence behind
            path.unlink(missing_ok=True)
        raise
    return written
