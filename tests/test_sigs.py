"""`repro sigs`: a guix.sigs tree compared like hosts, with fixtures shaped like the real files
(Bitcoin Core's two stages, 23.0rc1's name listed once per architecture, Monero's all-only
layout), and signatures checked with real gpg against a builder-keys/ dir."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from repro.sums import SumsError, format_sums, parse_sums
from tests.gpgkeys import GpgKeys
from tests.test_cli_inprocess import run_cli


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


V = "23.0rc1"
# 23.0rc1's shape: the osx-unsigned pair listed twice (arm64, then x86_64), each its own hash
NONCODESIGNED = {
    f"bitcoin-{V}-aarch64-linux-gnu.tar.gz": h("aarch64"),
    f"bitcoin-{V}-arm64-apple-darwin.tar.gz": h("arm64-darwin"),
    f"bitcoin-{V}-osx-unsigned.dmg": h("arm64 dmg"),
    f"bitcoin-{V}.tar.gz": h("source"),
    f"bitcoin-{V}-powerpc64-linux-gnu-debug.tar.gz": h("ppc64 debug"),
    f"bitcoin-{V}-powerpc64le-linux-gnu-debug.tar.gz": h("ppc64le debug"),
    f"bitcoin-{V}-osx-unsigned.dmg#2": h("x86_64 dmg"),
    f"bitcoin-{V}-x86_64-linux-gnu.tar.gz": h("x86_64"),
}
CODESIGNED = {
    f"bitcoin-{V}-osx-signed.dmg": h("signed dmg"),
    f"bitcoin-{V}-win64-setup.exe": h("exe"),
}


def signer(root: Path, name: str, stages: dict[str, dict[str, str]], keys: GpgKeys | None) -> Path:
    d = root / V / name
    d.mkdir(parents=True)
    for stage, entries in stages.items():
        f = d / f"{stage}.SHA256SUMS"
        f.write_text(format_sums(entries))
        if keys is not None:
            keys.sign(name, f)
    return d


@pytest.fixture(scope="module")
def builders(gpg_keys: GpgKeys) -> GpgKeys:
    for name in ("achow101", "fanquake", "guggero", "hebasto", "mallory"):
        gpg_keys.make(name)
    return gpg_keys


def tree(tmp_path: Path, keys: GpgKeys) -> Path:
    """achow101 and fanquake: both stages; guggero: noncodesigned only (normal); keys exported."""
    root = tmp_path / "guix.sigs"
    both = {"noncodesigned": NONCODESIGNED, "all": NONCODESIGNED | CODESIGNED}
    signer(root, "achow101", both, keys)
    signer(root, "fanquake", both, keys)
    signer(root, "guggero", {"noncodesigned": NONCODESIGNED}, keys)
    for name in ("achow101", "fanquake", "guggero", "hebasto"):
        keys.export(name, root / "builder-keys" / f"{name}.gpg")
    return root


def sigs(*argv: str) -> tuple[int, str, str]:
    return run_cli("sigs", *argv)


def as_json(root: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code, out, err = sigs(str(root), V, "--format", "json", *extra)
    return code, json.loads(out) if out else {"err": err}


def test_duplicate_names_across_architectures_are_kept_apart_by_position() -> None:
    text = format_sums(NONCODESIGNED)
    assert text.count(f"bitcoin-{V}-osx-unsigned.dmg\n") == 2  # written as the real file has it
    assert parse_sums(text, "x") == NONCODESIGNED
    with pytest.raises(SumsError, match="x line 2"):
        parse_sums(f"{h('a')}  a\nnot a line\n", "x")


def test_both_stages_compared_separately_and_verified(tmp_path: Path, builders: GpgKeys) -> None:
    root = tree(tmp_path, builders)
    code, data = as_json(root, "--keys", str(root / "builder-keys"))
    assert code == 0, data
    assert data["verdict"] == "reproducible" and data["schema"] == "repro-sigs/1"
    stages = {s["stage"]: s["report"] for s in data["stages"]}
    assert list(stages) == ["noncodesigned", "all"]
    # guggero has only the first stage: compared there, not "missing" in the second
    assert [h["name"] for h in stages["all"]["hosts"]] == ["achow101", "fanquake"]
    assert len(stages["noncodesigned"]["hosts"]) == 3
    names = [a["name"] for a in stages["noncodesigned"]["artifacts"]]
    assert f"bitcoin-{V}-osx-unsigned.dmg#2" in names and len(names) == len(NONCODESIGNED)
    assert stages["all"]["started_at"].endswith("+00:00")  # when the comparison was made
    assert {s["signature"] for s in data["signers"]} == {"verified"}


def test_output_is_readable_with_many_signers(tmp_path: Path, builders: GpgKeys) -> None:
    root = tree(tmp_path, builders)
    code, out, _ = sigs(str(root), V, "--keys", str(root / "builder-keys"))
    assert code == 0
    assert f"bitcoin-{V}-powerpc64-linux-gnu-debug.tar.gz " in out  # full names, never cut
    assert f"bitcoin-{V}-powerpc64le-linux-gnu-debug.tar.gz " in out
    assert "achow101, fanquake, guggero\n" in out and "achow101, fanquake\n" in out
    code, md, _ = sigs(str(root), V, "--format", "md")
    assert code == 0 and len(md) < 4000 and "signatures NOT checked" in md
    code, page, _ = sigs(str(root), V, "--format", "html")
    assert code == 0 and page.startswith("<!doctype html>") and "achow101, fanquake" in page


def test_unsigned_copy_is_reported_and_not_counted(tmp_path: Path, builders: GpgKeys) -> None:
    root = tmp_path / "guix.sigs"
    signer(root, "achow101", {"noncodesigned": NONCODESIGNED}, builders)
    copy = signer(root, "fanquake", {"noncodesigned": NONCODESIGNED}, None)  # no .asc
    builders.export("achow101", root / "builder-keys" / "achow101.gpg")
    # without keys the copy is still refused: it has no .asc at all
    code, data = as_json(root)
    assert code == 3, data  # one signer left: under the quorum of 2
    assert {s["name"]: s["counted"] for s in data["signers"]} == {
        "achow101": True,
        "fanquake": False,
    }
    assert "only 1 host" in " ".join(data["stages"][0]["report"]["reasons"])
    # an .asc that is not fanquake's (made with another builder's key) does not make it count
    builders.sign("mallory", copy / "noncodesigned.SHA256SUMS")
    builders.export("fanquake", root / "builder-keys" / "fanquake.gpg")
    code, data = as_json(root, "--keys", str(root / "builder-keys"))
    assert code == 3 and data["signers"][1]["signature"] == "unknown-key"
    # counted only when asked
    code, data = as_json(root, "--keys", str(root / "builder-keys"), "--include-unverified")
    assert code == 0 and data["signers"][1]["counted"] is True


def test_bad_signature_is_tampering(tmp_path: Path, builders: GpgKeys) -> None:
    root = tree(tmp_path, builders)
    f = root / V / "fanquake" / "noncodesigned.SHA256SUMS"
    f.write_text(f.read_text().replace(h("x86_64"), h("evil")))  # the .asc no longer matches
    code, out, _ = sigs(str(root), V, "--keys", str(root / "builder-keys"))
    assert code == 1, out
    assert "excluded fanquake: bad" in out and "BAD signature" in out
    assert "achow101, guggero\n" in out  # fanquake's altered bytes were not compared


def test_a_signer_with_other_bytes_is_a_mismatch_named(tmp_path: Path, builders: GpgKeys) -> None:
    root = tree(tmp_path, builders)
    signer(root, "hebasto", {"noncodesigned": NONCODESIGNED | {f"bitcoin-{V}.tar.gz": h("x")}},
           builders)  # fmt: skip
    code, out, _ = sigs(str(root), V, "--keys", str(root / "builder-keys"))
    assert code == 1
    assert "3: all but hebasto" not in out  # 3 names fit: listed
    assert f"bitcoin-{V}.tar.gz" in out and "hebasto" in out


def test_malformed_signers_fail_and_monero_layout(tmp_path: Path) -> None:
    root = tmp_path / "s"
    a = {"monero-x86_64-linux-gnu-v0.18.3.4.tar.bz2": h("m")}
    for name in ("binaryFate", "sethsimmons"):
        (root / V / name).mkdir(parents=True)
        (root / V / name / "all.SHA256SUMS").write_text(format_sums(a))
        (root / V / name / "all.SHA256SUMS.asc").write_text("-----BEGIN PGP SIGNATURE-----\n")
    (root / V / "garbled").mkdir()
    (root / V / "garbled" / "all.SHA256SUMS").write_text("not a hash line\n")
    (root / V / "garbled" / "all.SHA256SUMS.asc").write_text("x")
    (root / V / "escape").mkdir()
    (root / V / "escape" / "all.SHA256SUMS").write_text(f"{h('a')}  ../../etc/passwd\n")
    (root / V / "escape" / "all.SHA256SUMS.asc").write_text("x")
    code, data = as_json(root)
    assert code == 3
    hosts = {x["name"]: x for x in data["stages"][0]["report"]["hosts"]}
    assert hosts["garbled"]["status"] == hosts["escape"]["status"] == "failed"
    assert "line 1" in hosts["garbled"]["error"]


def test_bad_version_or_root_is_bad_input(tmp_path: Path) -> None:
    code, _, err = sigs(str(tmp_path), "9.9")
    assert code == 2 and "9.9" in err
    code, _, err = sigs(str(tmp_path), "../..")
    assert code == 2
    (tmp_path / "1.0" / "x").mkdir(parents=True)
    code, _, err = sigs(str(tmp_path), "1.0", "--keys", str(tmp_path / "nokeys"))
    assert code == 2 and "nokeys" in err


def test_no_signer_counts_is_inconclusive_and_said(tmp_path: Path) -> None:
    root = tmp_path / "guix.sigs"
    signer(root, "achow101", {"noncodesigned": NONCODESIGNED}, None)
    code, out, _ = sigs(str(root), V)
    assert code == 3
    assert "excluded achow101: unsigned (no noncodesigned.SHA256SUMS.asc)" in out
    assert "nothing was compared" in out


def test_compare_reads_guix_sigs_with_the_same_rules(tmp_path: Path, builders: GpgKeys) -> None:
    root = tree(tmp_path, builders)
    keys = str(root / "builder-keys")
    code, out, err = run_cli("compare", str(root / V), "--keys", keys, "--format", "json")
    assert code == 0, err
    assert [h["name"] for h in json.loads(out)["hosts"]] == ["achow101", "fanquake", "guggero"]
    signer(root, "mallory", {"noncodesigned": NONCODESIGNED}, None)  # an unsigned copy
    f = root / V / "fanquake" / "noncodesigned.SHA256SUMS"
    f.write_text(f.read_text().replace(h("x86_64"), h("evil")))
    code, out, err = run_cli("compare", str(root / V), "--keys", keys, "--format", "json")
    assert code == 1, err  # fanquake's bad signature: tampered
    hosts = {x["name"]: x for x in json.loads(out)["hosts"]}
    assert hosts["fanquake"]["status"] == "failed" and "BAD signature" in hosts["fanquake"]["error"]
    assert "mallory" not in hosts and "mallory not counted (unsigned" in err
