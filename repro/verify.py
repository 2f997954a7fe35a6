"""`repro verify`: a signed statement, SHA256SUMS or attestation.json checked twice: the signature
(ssh-keygen -Y or gpg), then that what was signed matches the run's report.json beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from repro.attest import CUPRATE_SCHEMA, STATEMENT_TYPE, statement
from repro.errors import UsageError
from repro.report import load_report
from repro.schema import to_dict
from repro.signatures import Check, gpg_verify, key_files, ssh_verify
from repro.sums import SumsError, parse_sums

Outcome = Literal["verified", "tampered", "undecided"]
EXIT = {"verified": 0, "tampered": 1, "undecided": 3}
MAX_FILE = 16 * 1024 * 1024
_REPORT_DEPTH = 5  # RUN_DIR/attestation/sigs/<version>/<signer>/file: report.json is 4 up


@dataclass(frozen=True)
class FileResult:
    path: Path
    outcome: Outcome
    detail: str

    def __repr__(self) -> str:
        return f"FileResult({self.path.name!r}, {self.outcome})"


def verify_files(
    files: list[Path],
    *,
    allowed_signers: Path | None = None,
    keyring: Path | None = None,
    report: Path | None = None,
) -> tuple[int, list[FileResult]]:
    """Exit code (0 verified, 1 tampered, 3 undecided) and one result per file. Bad input
    (no way to check given, unreadable keys or report, a file that is not evidence) raises."""
    if allowed_signers is None and keyring is None:
        raise UsageError("verify: give --allowed-signers FILE (ssh) or --keyring DIR (gpg)")
    if allowed_signers is not None and not allowed_signers.is_file():
        raise UsageError(f"--allowed-signers {allowed_signers}: no such file")
    keys = key_files(keyring) if keyring is not None else []
    given = _report(report) if report is not None else None
    results = [_verify(f, allowed_signers, keys, given) for f in files]
    worst = max((EXIT[r.outcome] for r in results), key=lambda c: (c == 1, c == 3))
    return worst, results


def _report(run_dir: Path) -> dict[str, Any]:
    run, comparison = load_report(run_dir if run_dir.is_dir() else run_dir.parent)
    return to_dict(run, comparison)


def _find_report(path: Path) -> dict[str, Any] | None:
    for parent in list(path.resolve().parents)[:_REPORT_DEPTH]:
        if (parent / "report.json").is_file():
            return _report(parent)
    return None


def _verify(
    path: Path, allowed: Path | None, keys: list[Path], report: dict[str, Any] | None
) -> FileResult:
    if not path.is_file():
        return FileResult(path, "undecided", "no such file")
    if path.stat().st_size > MAX_FILE:
        raise UsageError(f"{path}: larger than {MAX_FILE} bytes; not evidence repro writes")
    checks: list[Check] = []
    if allowed is not None:
        checks.append(ssh_verify(path, path.with_name(path.name + ".sig"), allowed))
    if keys:
        checks.append(gpg_verify(path, path.with_name(path.name + ".asc"), keys))
    bad = [c for c in checks if c.outcome == "bad"]
    if bad:
        return FileResult(path, "tampered", bad[0].detail)
    good = [c for c in checks if c.outcome == "good"]
    if not good:
        return FileResult(path, "undecided", "; ".join(c.detail for c in checks))
    report = report if report is not None else _find_report(path)
    if report is None:
        return FileResult(path, "verified", good[0].detail + "; no report.json beside it to match")
    problem = _mismatch(path, report)
    if problem:
        return FileResult(path, "tampered", f"{good[0].detail}, but {problem}")
    return FileResult(path, "verified", good[0].detail + f"; matches run {report['run_id']}")


def _mismatch(path: Path, report: dict[str, Any]) -> str | None:
    """What in the signed file disagrees with the report, or None."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.name.endswith(".SHA256SUMS"):
        try:
            listed = parse_sums(text, path.name)
        except SumsError as exc:
            raise UsageError(str(exc)) from None
        built: dict[str, set[str]] = {}
        for a in report["artifacts"]:
            built.setdefault(a["name"].rsplit("/", 1)[-1], set()).update(
                g["sha256"] for g in a["groups"]
            )
        for key, sha in listed.items():
            name = key.split("#", 1)[0] if key not in built else key
            if sha not in built.get(name, set()):
                return f"{key} is listed with {sha[:12]}…, which no host built in the report"
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise UsageError(f"{path}: neither a *.SHA256SUMS file nor JSON evidence") from None
    if isinstance(data, dict) and data.get("_type") == STATEMENT_TYPE:
        playbook = (data.get("predicate") or {}).get("playbook") or {}
        expected = statement(report, playbook.get("sha256"))
        return _first_difference(data, expected, "")
    if isinstance(data, dict) and data.get("schema") == CUPRATE_SCHEMA:
        hashes = {a["name"].rsplit("/", 1)[-1]: {g["sha256"] for g in a["groups"]}
                  for a in report["artifacts"]}  # fmt: skip
        for part in ("artifact", "distsrc"):
            item = data.get(part) or {}
            if item.get("sha256") not in hashes.get(str(item.get("filename")), set()):
                return f"its {part} {item.get('filename')!r} has a hash no host built in the report"
        if data.get("git_commit") != report["commit"]:
            return "its git_commit is not the report's commit"
        return None
    raise UsageError(f"{path}: not an in-toto statement, a SHA256SUMS or a Cuprate attestation")


def _first_difference(got: Any, want: Any, where: str) -> str | None:
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(set(got) | set(want)):
            found = _first_difference(got.get(key), want.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        for i, (g, w) in enumerate(zip(got, want)):
            found = _first_difference(g, w, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if got == want else f"the statement's {where.lstrip('.')} does not match the report"
