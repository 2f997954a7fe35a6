"""Release-day evidence on the in-process SSH tier: a run signs its in-toto statement with
`ssh-keygen -Y` (and gpg), `repro verify` accepts it and rejects tampered copies, two controllers'
runs merge with `repro compare`, and `--expect` holds hosts to published hashes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gpgkeys import GpgKeys
from tests.labthread import LabThread
from tests.test_cli_inprocess import DEMO, only_run_dir, run_cli


def ssh_key(dest: Path, principal: str) -> tuple[Path, str]:
    """A new ed25519 key and its allowed_signers line (as `git` uses them), via real ssh-keygen."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f",
                    str(dest)], check=True, timeout=30)  # fmt: skip
    pub = dest.with_name(dest.name + ".pub").read_text().split()
    return dest, f'{principal} namespaces="repro" {pub[0]} {pub[1]}\n'


@pytest.fixture(scope="module")
def two_controllers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Controller A (hosts a1, a2) signs its run as alice; controller B (b1, b2) runs the same."""
    base = tmp_path_factory.mktemp("evidence")
    key, line = ssh_key(base / "alice", "alice")
    allowed = base / "allowed_signers"
    allowed.write_text(line)
    runs = {}
    for name, extra in (("a", ["--attest", "--signer", "alice", "--release", "1.0",
                               "--ssh-key", str(key)]), ("b", [])):  # fmt: skip
        out = base / f"reports-{name}"
        with LabThread(base / f"lab-{name}", n=2, names=[f"{name}1", f"{name}2"]) as lab:
            code, _, err = run_cli("run", "-i", str(lab.inventory_path), "-p", str(DEMO),
                                   "--out", str(out), *extra)  # fmt: skip
        assert code == 0, err
        runs[name] = only_run_dir(out)
    yield {"base": base, "allowed": allowed, "key": key, **runs}


def test_a_run_writes_a_signed_statement_and_guix_sigs_files(two_controllers: dict) -> None:
    run = two_controllers["a"]
    att = run / "attestation"
    statement = json.loads((att / "statement.intoto.json").read_text())
    report = json.loads((run / "report.json").read_text())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == {
        a["name"]: a["groups"][0]["sha256"] for a in report["artifacts"]
    }
    pred = statement["predicate"]
    assert pred["verdict"] == "reproducible" and [h["name"] for h in pred["hosts"]] == ["a1", "a2"]
    assert len(pred["playbook"]["sha256"]) == 64 and "describe" in pred["hosts"][0]["facts"]
    sigs = att / "sigs" / "1.0" / "alice"
    assert sorted(p.name for p in sigs.iterdir()) == [
        "noncodesigned.SHA256SUMS",
        "noncodesigned.SHA256SUMS.sig",
    ]  # no codesigned outputs: no all.SHA256SUMS, as Bitcoin Core's guix-attest
    assert (att / "statement.intoto.json.sig").read_text().startswith("-----BEGIN SSH SIGNATURE")


def test_verify_accepts_the_statement_and_rejects_tampering(
    two_controllers: dict, tmp_path: Path
) -> None:
    run, allowed = two_controllers["a"], str(two_controllers["allowed"])
    att = run / "attestation"
    statement = att / "statement.intoto.json"
    sums = att / "sigs" / "1.0" / "alice" / "noncodesigned.SHA256SUMS"
    code, out, err = run_cli("verify", str(statement), str(sums), "--allowed-signers", allowed)
    assert code == 0, out + err
    assert out.count("VERIFIED") == 2 and "good signature by alice" in out and "matches run" in out
    # a copy with one hash changed, beside the original signature: the signature is bad
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    cstate = copy / "attestation" / "statement.intoto.json"
    cstate.write_text(cstate.read_text().replace(json.loads(cstate.read_text())["subject"][0]
                                                 ["digest"]["sha256"], "0" * 64))  # fmt: skip
    code, out, _ = run_cli("verify", str(cstate), "--allowed-signers", allowed)
    assert code == 1 and "TAMPERED" in out and "BAD signature" in out
    # signed by a key nobody allowed: cannot decide
    shutil.copy(statement, cstate)
    mkey, _ = ssh_key(tmp_path / "mallory", "mallory")
    cstate.with_name(cstate.name + ".sig").unlink()
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(mkey), "-n", "repro",
                    str(cstate)], check=True, timeout=30, input=b"")  # fmt: skip
    code, out, _ = run_cli("verify", str(cstate), "--allowed-signers", allowed)
    assert code == 3 and "UNDECIDED" in out
    # a good signature over a statement the report beside it does not match: tampered report
    shutil.copy(
        statement.with_name(statement.name + ".sig"), cstate.with_name(cstate.name + ".sig")
    )
    report = json.loads((copy / "report.json").read_text())
    report["hosts"][1]["facts"]["describe"] = "Intel Sapphire Rapids, bare metal"
    (copy / "report.json").write_text(json.dumps(report))
    code, out, _ = run_cli("verify", str(cstate), "--allowed-signers", allowed)
    assert code == 1 and "hosts[1].facts.describe does not match" in out
    code, out, _ = run_cli("verify", str(tmp_path / "nothing.json"), "--allowed-signers", allowed)
    assert code == 3 and "no such file" in out
    code, _, err = run_cli("verify", str(statement))
    assert code == 2 and "--allowed-signers" in err


def test_attest_signs_with_gpg(two_controllers: dict, gpg_keys: GpgKeys, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    gpg_keys.make("carol")
    monkeypatch.setenv("GNUPGHOME", gpg_keys.home)
    dest = tmp_path / "att"
    code, out, err = run_cli("attest", str(two_controllers["b"]), "--out", str(dest), "--signer",
                             "carol", "--release", "1.0", "--gpg-key", "carol@builders.example")  # fmt: skip
    assert code == 0, err
    assert (dest / "sigs" / "1.0" / "carol" / "noncodesigned.SHA256SUMS.asc").is_file()
    keys = tmp_path / "builder-keys"
    gpg_keys.export("carol", keys / "carol.gpg")
    files = [
        str(dest / "statement.intoto.json"),
        str(dest / "sigs/1.0/carol/noncodesigned.SHA256SUMS"),
    ]
    code, out, _ = run_cli(
        "verify", *files, "--keyring", str(keys), "--report", str(two_controllers["b"])
    )
    assert code == 0 and out.count("VERIFIED") == 2, out
    # compare checks the statement's .asc against the keys given, and only those
    code, out, err = run_cli("compare", files[0], str(two_controllers["a"]), "--keys", str(keys),
                             "--quorum", "4", "--format", "json")  # fmt: skip
    assert code == 0 and "not counted" not in err, err
    assert [h["name"] for h in json.loads(out)["hosts"]] == ["b1", "b2", "a1", "a2"]
    others = tmp_path / "other-keys"
    gpg_keys.make("dave")
    gpg_keys.export("dave", others / "dave.gpg")
    code, out, err = run_cli("compare", files[0], str(two_controllers["a"]), "--keys",
                             str(others), "--format", "json")  # fmt: skip
    assert "b1, b2 not counted (unknown-key" in err, err
    assert [h["name"] for h in json.loads(out)["hosts"]] == ["a1", "a2"]
    # a run that is not reproducible gets no guix.sigs files: there is nothing one could sign
    copy = tmp_path / "run"
    shutil.copytree(two_controllers["b"], copy)
    report = json.loads((copy / "report.json").read_text())
    report.update(verdict="inconclusive", exit_code=3, reasons=["host b2 failed"])
    (copy / "report.json").write_text(json.dumps(report))
    code, _, err = run_cli("attest", str(copy), "--signer", "carol", "--release", "1.0")
    assert code == 2 and "inconclusive" in err and not (copy / "attestation").exists()


def test_two_controllers_merge_into_one_report(two_controllers: dict, tmp_path: Path) -> None:
    a, b = str(two_controllers["a"]), str(two_controllers["b"])
    code, out, err = run_cli("compare", a, b, "--format", "json", "--out", str(tmp_path))
    assert code == 0, err
    merged = json.loads(out)
    assert [h["name"] for h in merged["hosts"]] == ["a1", "a2", "b1", "b2"]
    assert all(len(x["groups"][0]["hosts"]) == 4 for x in merged["artifacts"])
    assert len(list(tmp_path.glob("compare-*/report.json"))) == 1
    # the statement of a's run is a source too; with a's run dir it would count a1, a2 twice
    statement = str(two_controllers["a"] / "attestation" / "statement.intoto.json")
    code, out, _ = run_cli("compare", statement, b, "--quorum", "4")
    assert code == 0, out
    code, _, err = run_cli("compare", a, statement)
    assert code == 2 and "builder a1 appears twice" in err
    # a guix.sigs version dir of signed SHA256SUMS merges as builders
    sigs = two_controllers["a"] / "attestation" / "sigs" / "1.0"
    code, out, err = run_cli("compare", str(sigs), b, "--format", "md")
    assert code == 0 and "alice" in out, out + err


def test_compare_counts_a_statement_as_its_signature_allows(
    two_controllers: dict, tmp_path: Path
) -> None:
    """`repro compare` treats a statement file as guix.sigs treats a signer: checked against
    --allowed-signers when given; a bad signature is a mismatch whose builders are failed; an
    unsigned one or one of a key nobody allowed is left out unless --include-unverified."""
    b, allowed = str(two_controllers["b"]), str(two_controllers["allowed"])
    statement = two_controllers["a"] / "attestation" / "statement.intoto.json"
    code, out, err = run_cli("compare", str(statement), b, "--allowed-signers", allowed,
                             "--quorum", "4", "--format", "json")  # fmt: skip
    assert code == 0, out + err
    assert [h["status"] for h in json.loads(out)["hosts"]] == ["ok"] * 4
    assert "not checked" not in err and "not counted" not in err
    # signed, but nothing given to check it with: counted, and said so
    code, _, err = run_cli("compare", str(statement), b, "--quorum", "4")
    assert code == 0 and "signature not checked" in err, err
    # one hash changed after signing: the builders of that statement are failed, exit 1
    forged = tmp_path / "forged" / statement.name
    forged.parent.mkdir()
    text = statement.read_text()
    sha = json.loads(text)["predicate"]["hosts"][0]["artifacts"]
    first = next(iter(sha.values()))["sha256"]
    forged.write_text(text.replace(first, "0" * 64))
    sig = ".sig"
    shutil.copy(statement.with_name(statement.name + sig), forged.with_name(forged.name + sig))
    code, out, err = run_cli("compare", str(forged), b, "--allowed-signers", allowed,
                             "--format", "json")  # fmt: skip
    hosts = {h["name"]: h for h in json.loads(out)["hosts"]}
    assert code == 1, err
    assert hosts["a1"]["status"] == "failed" and "BAD signature" in hosts["a1"]["error"]
    # unsigned: not counted (a1, a2 absent), unless asked
    bare = tmp_path / "bare" / statement.name
    bare.parent.mkdir()
    shutil.copy(statement, bare)
    code, out, err = run_cli("compare", str(bare), b, "--allowed-signers", allowed,
                             "--format", "json")  # fmt: skip
    assert code == 0 and "a1, a2 not counted (unsigned" in err, err
    assert [h["name"] for h in json.loads(out)["hosts"]] == ["b1", "b2"]
    code, out, err = run_cli("compare", str(bare), b, "--include-unverified", "--quorum", "4")
    assert code == 0 and "counted though unsigned" in err, err
    # signed by a key that is not allowed: not counted
    mkey, _ = ssh_key(tmp_path / "mallory", "mallory")
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(mkey), "-n", "repro",
                    str(bare)], check=True, timeout=30, input=b"")  # fmt: skip
    code, _, err = run_cli("compare", str(bare), b, "--allowed-signers", allowed)
    assert code == 0 and "not counted (unknown-key" in err, err
    # bad input: one line, exit 2
    code, _, err = run_cli("compare", str(bare), b, "--allowed-signers", str(tmp_path / "no"))
    assert code == 2 and err.count("\n") == 1 and "--allowed-signers" in err, err


def test_compare_refuses_sources_of_different_commits(
    two_controllers: dict, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(two_controllers["b"], other)
    for run, commit in ((two_controllers["a"], "a" * 40), (other, "b" * 40)):
        if run == two_controllers["a"]:
            run = shutil.copytree(run, tmp_path / "a")
        report = json.loads((Path(run) / "report.json").read_text())
        report["commit"] = commit
        (Path(run) / "report.json").write_text(json.dumps(report))
    code, _, err = run_cli("compare", str(tmp_path / "a"), str(other))
    assert code == 2 and "different commits" in err and "a" * 40 in err


def test_expect_published_hashes(two_controllers: dict, tmp_path: Path) -> None:
    report = json.loads((two_controllers["a"] / "report.json").read_text())
    name, sha = report["artifacts"][0]["name"], report["artifacts"][0]["groups"][0]["sha256"]
    sums = (
        two_controllers["a"] / "attestation" / "sigs" / "1.0" / "alice" / "noncodesigned.SHA256SUMS"
    )
    b = str(two_controllers["b"])
    code, out, _ = run_cli("compare", b, "--expect", str(sums))
    assert code == 0, out
    code, out, _ = run_cli("compare", b, "--expect", str(sums.parent.parent))  # guix.sigs dir
    assert code == 0, out
    code, out, _ = run_cli("compare", b, "--expect", f"{name}={'f' * 64}")
    assert code == 1
    assert "hosts agree, but not with the published hashes" in out
    assert f"artifact {name} differs from the published hash: b1, b2 (agreeing" in out
    code, out, _ = run_cli("compare", b, "--expect", f"{name}={sha}")
    assert code == 0, out
    code, _, err = run_cli("compare", b, "--expect", "nonsense")
    assert code == 2 and "nonsense" in err
    # repro run --expect: the same rule while building
    with LabThread(tmp_path / "lab", n=2) as lab:
        code, out, err = run_cli("run", "-i", str(lab.inventory_path), "-p", str(DEMO), "--out",
                                 str(tmp_path / "r"), "--expect", f"{name}={'f' * 64}")  # fmt: skip
    assert code == 1, err
    assert json.loads((only_run_dir(tmp_path / "r") / "report.json").read_text())["expected"] == {
        name: "f" * 64
    }


def test_a_key_that_cannot_sign_is_bad_input_before_anything(two_controllers: dict,
                                                             tmp_path: Path, gpg_keys: GpgKeys,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("GNUPGHOME", gpg_keys.home)
    code, _, err = run_cli("attest", str(two_controllers["b"]), "--out", str(tmp_path / "x"),
                           "--gpg-key", "nobody@nowhere.example")  # fmt: skip
    assert code == 2 and "nobody@nowhere.example" in err and not (tmp_path / "x").exists()
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("all:\n  hosts:\n    h1: {ansible_connection: local}\n")
    code, _, err = run_cli("run", "-i", str(inventory), "-p", str(DEMO), "--out",
                           str(tmp_path / "out"), "--ssh-key", str(tmp_path / "nokey"))  # fmt: skip
    assert code == 2 and "--ssh-key" in err and not (tmp_path / "out").exists()
