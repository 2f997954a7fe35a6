"""`repro sigs`: a guix.sigs tree compared like hosts — Bitcoin Core's and Monero's layouts."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.test_cli_inprocess import run_cli

A = hashlib.sha256(b"a").hexdigest()
B = hashlib.sha256(b"b").hexdigest()
C = hashlib.sha256(b"c").hexdigest()


def signer(root: Path, version: str, name: str, files: dict[str, str], asc: bool = True) -> None:
    d = root / version / name
    d.mkdir(parents=True)
    for fname, text in files.items():
        (d / fname).write_text(text)
        if asc:
            (d / (fname + ".asc")).write_text("-----BEGIN PGP SIGNATURE-----\n")


def test_agreeing_signers_are_reproducible(tmp_path: Path) -> None:
    body = f"{A}  bitcoin-28.0-x86_64-linux-gnu.tar.gz\n{B}  bitcoin-28.0.tar.gz\n"
    for name in ("achow101", "fanquake", "guggero"):
        signer(tmp_path, "28.0", name, {"noncodesigned.SHA256SUMS": body, "all.SHA256SUMS": body})
    code, out, err = run_cli("sigs", str(tmp_path), "28.0", "--format", "md")
    assert code == 0, out + err
    assert "achow101" in out and "bitcoin-28.0.tar.gz" in out
    assert "not verified" in err


def test_a_signer_with_other_bytes_is_a_mismatch_named(tmp_path: Path) -> None:
    signer(
        tmp_path,
        "0.18.3.4",
        "binaryFate",
        {"all.SHA256SUMS": f"{A}  monero-x86_64-linux-gnu.tar.bz2\n"},
    )
    signer(
        tmp_path,
        "0.18.3.4",
        "sethsimmons",
        {"all.SHA256SUMS": f"{A}  monero-x86_64-linux-gnu.tar.bz2\n"},
    )
    signer(
        tmp_path,
        "0.18.3.4",
        "mallory",
        {"all.SHA256SUMS": f"{C}  monero-x86_64-linux-gnu.tar.bz2\n"},
        asc=False,
    )
    code, out, _ = run_cli("sigs", str(tmp_path), "0.18.3.4")
    assert code == 1
    assert "mallory" in out and "UNSIGNED" in out


def test_malformed_and_self_contradicting_signers_fail(tmp_path: Path) -> None:
    signer(tmp_path, "1.0", "good1", {"all.SHA256SUMS": f"{A}  x.tar.gz\n"})
    signer(tmp_path, "1.0", "good2", {"all.SHA256SUMS": f"{A}  x.tar.gz\n"})
    signer(tmp_path, "1.0", "garbled", {"all.SHA256SUMS": "not a hash line\n"})
    signer(
        tmp_path,
        "1.0",
        "twofaced",
        {"a.SHA256SUMS": f"{A}  x.tar.gz\n", "b.SHA256SUMS": f"{B}  x.tar.gz\n"},
    )
    signer(tmp_path, "1.0", "escape", {"all.SHA256SUMS": f"{A}  ../../etc/passwd\n"})
    code, out, _ = run_cli("sigs", str(tmp_path), "1.0", "--format", "json")
    assert code == 3  # the two good ones agree; three signers failed
    import json

    hosts = {h["name"]: h for h in json.loads(out)["hosts"]}
    assert (
        hosts["garbled"]["status"]
        == hosts["twofaced"]["status"]
        == hosts["escape"]["status"]
        == "failed"
    )
    assert "two different hashes" in hosts["twofaced"]["error"]


def test_bad_version_or_root_is_bad_input(tmp_path: Path) -> None:
    code, _, err = run_cli("sigs", str(tmp_path), "9.9")
    assert code == 2 and "9.9" in err
    code, _, err = run_cli("sigs", str(tmp_path), "../..")
    assert code == 2
