"""Why it differs, on the in-process SSH tier: a mismatch ends with the copies fetched and
re-hashed, the real diffoscope's differing members, and the fact or variable behind the split."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from repro import diffoscope
from tests.labthread import LabThread
from tests.test_cli_inprocess import DEMO, only_run_dir, report, run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEBPKG = FIXTURES / "debpkg" / "debpkg.yaml"
ROUNDS = FIXTURES / "rounds" / "rounds.yaml"

needs_diffoscope = pytest.mark.skipif(
    shutil.which("diffoscope") is None, reason="diffoscope is not installed (scripts/sysdeps.sh)"
)


def artifact(data: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(a for a in data["artifacts"] if a["name"] == name)
    return found


def member_text(art: dict[str, Any]) -> str:
    """Every differing member's path and lines, as one string to search."""
    return "\n".join(
        " / ".join(m["path"]) + "\n" + "\n".join(m["lines"])
        for p in art["why"]["pairs"]
        for m in p["members"]
    )


def check_copies(run_dir: Path, art: dict[str, Any]) -> None:
    """Every copy arrived under a name we made, hashing to what its host claimed."""
    for c in art["why"]["copies"]:
        assert c["status"] == "ok", c
        local = run_dir / c["local"]
        assert local.resolve().is_relative_to((run_dir / "diff").resolve())
        assert hashlib.sha256(local.read_bytes()).hexdigest() == c["claimed"]
        assert c["remote_path"].startswith("/")


@needs_diffoscope
def test_demo_mismatch_names_the_leaked_build_dir_and_the_variable(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    code, stdout, err = run_cli("demo", "--vary", "build-path", "--out", str(out))
    assert code == 1, err
    data = report(out)
    run_dir = only_run_dir(out)
    for name in ("hello", "hello-demo.tar.gz"):
        art = artifact(data, name)
        att = art["attribution"]
        # the build paths differ on every host (the axis): only prefix_map lines up
        assert att["wording"] == "differs by", att
        assert [(f["kind"], f["name"]) for f in att["factors"]] == [("variable", "prefix_map")]
        assert att["factors"][0]["values"] == [["lab1, lab2", "true"], ["lab3", "false"]]
        check_copies(run_dir, art)
        [pair] = art["why"]["pairs"]
        assert pair["status"] == "differ"
        assert (run_dir / pair["text"]).is_file() and (run_dir / pair["html"]).is_file()
        # the leaked build directory, as diffoscope shows it in the binary's strings/debug info
        assert "/lab3/root/.cache/repro/runs/b3/" in member_text(art)
    assert "hello-demo.tar / hello-demo/hello" in member_text(artifact(data, "hello-demo.tar.gz"))
    hosts = {h["name"]: h for h in data["hosts"]}
    assert hosts["lab3"]["paths"]["hello"].endswith("/runs/b3/%s/work/out/hello"
                                                                % data["run_id"])  # fmt: skip
    assert hosts["lab3"]["variations"] == [{"build-path": "b3"}]
    assert hosts["lab1"]["variables"]["prefix_map"] is True
    md = (run_dir / "report.md").read_text()
    assert "Why `hello` differs:" in md and "differs by: inventory variable prefix\\_map" in md
    assert "Why hello differs:" in stdout
    # progress, in order: each copy is announced, then verified; diffoscope runs after both
    lines = err.splitlines()
    at = {key: next(i for i, ln in enumerate(lines) if ln.startswith(key)) for key in (
        "[lab1] fetching: hello ", "[lab3] fetching: hello ",
        "[lab1] fetched: hello (", "[lab3] fetched: hello (", "[diffoscope] diffing: hello:",
    )}  # fmt: skip
    assert at["[lab1] fetching: hello "] < at["[lab1] fetched: hello ("]
    assert at["[lab3] fetching: hello "] < at["[lab3] fetched: hello ("]
    assert max(at["[lab1] fetched: hello ("], at["[lab3] fetched: hello ("]) < at[
        "[diffoscope] diffing: hello:"
    ]
    assert "sha256 verified" in lines[at["[lab3] fetched: hello ("]]
    code, page, err = run_cli("report", str(run_dir), "--format", "html")
    assert code == 0 and "<h2>Why <code>hello</code> differs</h2>" in page


@needs_diffoscope
def test_rounds_that_disagree_on_one_host_name_the_varied_umask(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=1) as lab:
        code, stdout, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(ROUNDS), "--out", str(out),
            "--vary", "umask",
        )  # fmt: skip
    assert code == 1, err
    data = report(out)
    art = artifact(data, "data.tar.gz")
    assert art["unstable"] == ["lab1"]
    assert art["attribution"]["wording"] == "differs by"
    [factor] = art["attribution"]["factors"]
    assert (factor["kind"], factor["name"]) == ("axis", "umask")
    assert factor["values"] == [["round 1", "0022"], ["round 2", "0002"]]
    assert [c["label"] for c in art["why"]["copies"]] == ["round 1", "round 2"]
    check_copies(only_run_dir(out), art)
    text = member_text(art)
    assert "data.tar / file list" in text and "-rw-rw-r--" in text
    assert data["hosts"][0]["variations"] == [{"umask": "0022"}, {"umask": "0002"}]


def test_rounds_without_vary_are_only_consistent_with_their_build_paths(tmp_path: Path) -> None:
    # the build is deterministic here, so make it not: a round stamps its own work dir in
    pb = tmp_path / "stamp.yaml"
    pb.write_text(
        ROUNDS.read_text().replace(
            'echo "same bytes every time"', 'pwd'
        ).replace("name: umask-rounds", "name: stamp-rounds")
    )
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=1) as lab:
        code, _, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(pb), "--out", str(out), "--no-why"
        )
    assert code == 1, err
    att = artifact(report(out), "data.tar.gz")["attribution"]
    assert att["wording"] == "consistent with"
    assert [(f["name"], f["on_every_host"]) for f in att["factors"]] == [("build path", True)]
    assert "only values that differ on every round" in att["note"]
    assert artifact(report(out), "data.tar.gz")["why"] is None  # --no-why: nothing fetched


@needs_diffoscope
def test_debian_package_names_the_member_and_the_inventory_variable(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", host_vars={"lab3": {"sde": 1700000500}}) as lab:
        code, stdout, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(DEBPKG), "--out", str(out)
        )
    assert code == 1, err
    art = artifact(report(out), "hello-repro_1.0_amd64.deb")
    assert art["attribution"]["wording"] == "differs by"
    [factor] = art["attribution"]["factors"]
    assert (factor["kind"], factor["name"]) == ("variable", "sde")
    assert factor["values"] == [["lab1, lab2", "(empty)"], ["lab3", "1700000500"]]
    check_copies(only_run_dir(out), art)
    text = member_text(art)
    # dpkg-deb took lab3's SOURCE_DATE_EPOCH: 1700000500 is 2023-11-14 22:21:40 UTC
    assert "data.tar.xz / data.tar / file list" in text and "22:21:40" in text


def test_without_diffoscope_the_install_line_and_stdlib_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diffoscope, "available", lambda: None)
    out = tmp_path / "reports"
    code, stdout, err = run_cli("demo", "--vary", "build-path", "--out", str(out))
    assert code == 1, err
    art = artifact(report(out), "hello-demo.tar.gz")
    [pair] = art["why"]["pairs"]
    assert pair["status"] == "no-diffoscope" and pair["text"] is None
    assert "apt-get install diffoscope-minimal" in pair["detail"]
    assert [m["path"] for m in pair["members"]] == [["hello-demo/hello"]]
    assert pair["members"][0]["kind"] == "content"
    check_copies(only_run_dir(out), art)  # the fetched files are kept
    assert stdout.count("diffoscope is not installed") == 2  # once per artifact, one line each


def test_size_cap_skips_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    code, stdout, err = run_cli(
        "demo", "--vary", "build-path", "--out", str(out), "--max-fetch", "1K"
    )
    assert code == 1, err
    art = artifact(report(out), "hello")
    assert {c["status"] for c in art["why"]["copies"]} == {"too-large"}
    assert "larger than the fetch cap of 1.0 KiB" in art["why"]["copies"][0]["detail"]
    assert art["why"]["pairs"] == []
    assert not (only_run_dir(out) / "diff").exists()
    assert art["attribution"]["wording"] == "differs by"  # attribution needs no bytes


def _demo_run(lab: Any, out: Path, *extra: str) -> tuple[Path, dict[str, Any]]:
    code, _, err = run_cli(
        "run", "-i", str(lab.inventory_path), "-p", str(DEMO), "--out", str(out), *extra
    )
    assert code == 1, err
    return only_run_dir(out), report(out)


@needs_diffoscope
def test_repro_diff_rehashes_and_names_a_host_whose_bytes_changed(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", host_vars={"lab3": {"prefix_map": False}}) as lab:
        run_dir, data = _demo_run(lab, out, "--no-why")
        assert artifact(data, "hello")["why"] is None
        lab3 = {h["name"]: h for h in data["hosts"]}["lab3"]
        on_host = Path(lab3["paths"]["hello"])
        with on_host.open("ab") as f:
            f.write(b"changed after hashing")
        code, stdout, err = run_cli("diff", str(run_dir), "hello")
    assert code == 1, err
    again = json.loads((run_dir / "report.json").read_text())
    art = artifact(again, "hello")
    statuses = {c["host"]: c["status"] for c in art["why"]["copies"]}
    assert statuses == {"lab1": "ok", "lab3": "claim-mismatch"}
    assert any(r.startswith("host lab3 sent bytes for hello that do not hash") for r in
               again["reasons"])  # fmt: skip
    assert artifact(again, "hello-demo.tar.gz")["why"] is None  # only the artifact asked for


def test_repro_diff_names_the_host_whose_file_is_gone(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", host_vars={"lab3": {"prefix_map": False}}) as lab:
        run_dir, data = _demo_run(lab, out, "--no-why")
        lab3 = {h["name"]: h for h in data["hosts"]}["lab3"]
        Path(lab3["paths"]["hello"]).unlink()
        code, stdout, err = run_cli("diff", str(run_dir), "hello")
    assert code == 3
    assert "repro: error: lab3: cannot fetch hello:" in err and "gone" in err
    code, _, err = run_cli("diff", str(run_dir), "no-such-artifact")
    assert code == 2 and "no artifact named 'no-such-artifact'" in err


def test_unknown_vary_axis_is_bad_input(tmp_path: Path) -> None:
    code, _, err = run_cli("demo", "--vary", "build-path,kernel", "--out", str(tmp_path))
    assert code == 2
    assert "--vary 'kernel': not an axis; choose from build-path, umask" in err
    assert not any(tmp_path.iterdir())


@needs_diffoscope
def test_hosts_that_differ_and_rounds_that_disagree_get_both_pairs(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        code, _, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(ROUNDS), "--out", str(out),
            "--vary", "umask",
        )  # fmt: skip
    assert code == 1, err
    art = artifact(report(out), "data.tar.gz")
    assert art["unstable"] == ["lab1", "lab2"] and len(art["groups"]) == 2
    [factor] = art["attribution"]["factors"]
    assert factor["values"] == [["lab1", "0022"], ["lab2", "0027"]]
    labels = [(p["left"], p["right"]) for p in art["why"]["pairs"]]
    assert labels == [("group 1 (lab1)", "group 2 (lab2)"), ("round 1 (lab1)", "round 2 (lab1)")]
    assert all(p["status"] == "differ" for p in art["why"]["pairs"])


@needs_diffoscope
def test_a_secret_the_build_leaked_is_masked_in_the_why(tmp_path: Path) -> None:
    pb = tmp_path / "leaky.yaml"
    pb.write_text(
        "name: leaky\nsecrets: [token]\nvars: {bit: a, token: null}\n"
        "steps:\n  - name: write\n    run: |\n      mkdir -p out\n"
        "      echo {{ bit }}-{{ token }} > out/info.txt\n"
        "artifacts: [{glob: info.txt, dir: out}]\n"
    )
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", host_vars={"lab3": {"bit": "b"}}) as lab:
        code, stdout, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(pb), "--out", str(out),
            "--secret", "token=s3cr3t<&>value",
        )  # fmt: skip
        assert code == 1, err
        run_dir = only_run_dir(out)
        # explained again later: the values are never stored, so they are asked for again
        later, _, warned = run_cli("diff", str(run_dir), "-q")
        assert later == 1 and "give them again with --secret" in warned, warned
        later, _, warned = run_cli("diff", str(run_dir), "-q", "--secret", "token=s3cr3t<&>value")
        assert later == 1 and "--secret" not in warned, warned
    art = artifact(report(out), "info.txt")
    assert "-a-***" in member_text(art) and "+b-***" in member_text(art)
    for name in ("report.json", "report.md", "report.html"):
        text = (run_dir / name).read_text()
        assert "s3cr3t" not in text and "s3cr3t&lt;&amp;&gt;value" not in text, name
    assert "s3cr3t" not in stdout
    assert (run_dir / "diff").stat().st_mode & 0o077 == 0  # copies stay private
    # diffoscope's own reports (text, HTML with the value escaped, JSON) are masked too; only
    # the fetched copies themselves hold what the build wrote
    reports = [p for p in (run_dir / "diff").rglob("*") if p.suffix in (".txt", ".html", ".json")]
    assert {p.suffix for p in reports} >= {".txt", ".html", ".json"}, reports
    for path in reports:
        if path.name.endswith("info.txt"):
            continue  # a fetched copy
        assert "s3cr3t" not in path.read_text(errors="replace"), path
