"""Attestation files of a Cuprate-shaped run (a distsrc and a release tarball) and of a Bitcoin
Core-shaped one (codesigned outputs): Cuprate's attestation.json, guix.sigs' two SHA256SUMS, and
both read back by `repro verify` and `repro compare`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from repro.attest import Signing, attest, sums_files
from repro.compare import compare
from repro.report import write_report
from repro.results import ArtifactHash, HostResult, RunResult
from repro.schema import to_dict
from tests.test_cli_inprocess import run_cli
from tests.test_evidence import ssh_key

COMMIT = "dec0bbee5c18f2dc6baae9e9ca7bb0c4d041931d"
RELEASE = "src/contrib/guix/out/cuprated-0.0.9-x86_64-unknown-linux-gnu.tar.gz"
DISTSRC = "src/contrib/guix/out/cuprate-0.0.9-dec0bbee5c18-src.tar.gz"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run_of(artifacts: dict[str, str], names: tuple[str, ...] = ("spr", "genoa")) -> RunResult:
    hosts = []
    for name in names:
        h = HostResult(name, "ok", facts={"guix_channel_commit": "c" * 40, "cpu_vendor": "AMD"})
        h.artifacts = {n: ArtifactHash(n, s, 100) for n, s in artifacts.items()}
        hosts.append(h)
    return RunResult("20261127T070000Z-abcdef", "cuprated-guix", "2026-11-27T07:00:00Z",
                     "2026-11-27T07:30:00Z", hosts, vars={"ref": "cuprated-0.0.9",
                     "package": "cuprated"}, commit=COMMIT)  # fmt: skip


def saved(tmp_path: Path, run: RunResult) -> tuple[Path, dict]:
    comparison = compare(run)
    write_report(tmp_path / "run", run, comparison)
    return tmp_path / "run", to_dict(run, comparison)


def test_cuprate_attestation_and_verify(tmp_path: Path) -> None:
    run_dir, report = saved(tmp_path, run_of({RELEASE: sha("release"), DISTSRC: sha("distsrc")}))
    key, line = ssh_key(tmp_path / "k", "builder1")
    (tmp_path / "allowed").write_text(line)
    written = attest(run_dir, report, Signing(ssh_key=key), signer="builder1", version="0.0.9")
    sigs = run_dir / "attestation" / "sigs" / "0.0.9" / "builder1"
    assert sigs / "attestation.json.sig" in written
    data = json.loads((sigs / "attestation.json").read_text())
    assert data["schema"] == "cuprate-guix-attestation/v1"
    assert data["artifact"] == {
        "filename": "cuprated-0.0.9-x86_64-unknown-linux-gnu.tar.gz",
        "sha256": sha("release"),
        "size": 100,
    }
    assert data["distsrc"]["sha256"] == sha("distsrc") and data["git_commit"] == COMMIT
    assert data["guix_channel_commit"] == "c" * 40 and data["builder_id"] == "builder1"
    assert (sigs / "attestation.json").read_text() == json.dumps(
        data, indent=2, sort_keys=True
    ) + "\n"
    assert not (sigs / "all.SHA256SUMS").exists()
    code, out, _ = run_cli("verify", str(sigs / "attestation.json"), "--allowed-signers",
                           str(tmp_path / "allowed"))  # fmt: skip
    assert code == 0, out
    # attestation.json as a source of repro compare: one more builder of the same commit
    code, out, err = run_cli("compare", str(run_dir), str(sigs / "attestation.json"), "--format",
                             "json")  # fmt: skip
    assert code == 0, err
    assert [h["name"] for h in json.loads(out)["hosts"]] == ["spr", "genoa", "builder1"]


def test_codesigned_outputs_get_all_sha256sums() -> None:
    run = run_of({
        "output/x86_64-apple-darwin/bitcoin-28.0-x86_64-apple-darwin-unsigned.tar.gz": sha("u"),
        "output/x86_64-apple-darwin-codesigned/bitcoin-28.0-x86_64-apple-darwin.tar.gz": sha("s"),
        "output/dist-archive/bitcoin-28.0.tar.gz": sha("src"),
    })  # fmt: skip
    files = sums_files(to_dict(run, compare(run)))
    assert files["noncodesigned.SHA256SUMS"] == (
        f"{sha('u')}  bitcoin-28.0-x86_64-apple-darwin-unsigned.tar.gz\n"
        f"{sha('src')}  bitcoin-28.0.tar.gz\n"
    )
    assert files["all.SHA256SUMS"].count("\n") == 3
    assert f"{sha('s')}  bitcoin-28.0-x86_64-apple-darwin.tar.gz\n" in files["all.SHA256SUMS"]


def test_signed_evidence_that_does_not_match_its_report_is_tampered(tmp_path: Path) -> None:
    """Good signatures over content the report does not hold: a SHA256SUMS line and an
    attestation.json of bytes no host built, re-signed by the builder's own key."""
    run_dir, report = saved(tmp_path, run_of({RELEASE: sha("release"), DISTSRC: sha("distsrc")}))
    key, line = ssh_key(tmp_path / "k", "builder1")
    (tmp_path / "allowed").write_text(line)
    attest(run_dir, report, Signing(ssh_key=key), signer="builder1", version="0.0.9")
    sigs = run_dir / "attestation" / "sigs" / "0.0.9" / "builder1"
    sums = sigs / "noncodesigned.SHA256SUMS"
    sums.write_text(sums.read_text().replace(sha("release"), sha("backdoored")))
    data = json.loads((sigs / "attestation.json").read_text())
    data["git_commit"] = "0" * 40
    (sigs / "attestation.json").write_text(json.dumps(data))
    for path in (sums, sigs / "attestation.json"):
        Signing(ssh_key=key).sign(path)  # a valid signature over what no longer matches
    code, out, _ = run_cli("verify", str(sums), str(sigs / "attestation.json"),
                           "--allowed-signers", str(tmp_path / "allowed"))  # fmt: skip
    assert code == 1, out
    assert "which no host built in the report" in out
    assert "git_commit is not the report's commit" in out
