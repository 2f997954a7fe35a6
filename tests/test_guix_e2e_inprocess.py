"""cuprated-guix.yaml end to end over real SSH (in-process tier), through the guix test double:
reproducible, a host-specific leak (mismatch), the native-flag guard, a Guix channel
disagreement, a preflight failure, and the smoke playbook's two rounds per host."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests import guix_scenarios
from tests.guix_scenarios import ARTIFACT, SMOKE, fixture_repo, install_double


def run_args(*args: Any, **kwargs: Any) -> list[str]:
    # The in-process hosts are all this one machine: there is no Intel + AMD + VM to find here
    # (the real-OpenSSH tier, with per-host cpuinfo, holds cuprated-guix to its quorum).
    return [*guix_scenarios.run_args(*args, **kwargs), "--require", "none"]
from tests.labthread import LabThread
from tests.test_cli_inprocess import report, run_cli

# The guix double's containers need bubblewrap: skip without (fail under REPRO_REQUIRE_NETNS=1).
pytestmark = pytest.mark.usefixtures("guix_container")


def lab_with_double(
    tmp_path: Path, knobs: dict[str, dict[str, str]] | None = None, n: int = 3
) -> LabThread:
    lt = LabThread(tmp_path / "lab", n=n)
    return lt


def setup_hosts(lab, knobs: dict[str, dict[str, str]]) -> None:
    for h in lab.hosts:
        install_double(h.root, **knobs.get(h.name, {}))


def test_reproducible_build_names_the_commit(tmp_path: Path) -> None:
    repo, commit = fixture_repo(tmp_path / "src")
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab") as lab:
        setup_hosts(lab, {})
        code, stdout, err = run_cli(*run_args(lab.inventory_path, repo, out))
    assert code == 0, err + stdout
    data = report(out)
    assert data["commit"] == commit and data["vars"]["ref"] == "main"
    names = {a["name"]: a for a in data["artifacts"]}
    assert names[ARTIFACT]["status"] == "identical"
    assert {
        "build-metadata.json",
        "rustc-version.txt",
        "cargo-version.txt",
        "guix-describe.json",
    } <= set(names)
    assert not any("ldd" in n or n.endswith(".log") for n in names)
    assert all(h["facts"]["guix_channel_commit"] for h in data["hosts"])


def test_host_specific_leak_is_a_mismatch_naming_the_host(tmp_path: Path) -> None:
    repo, _ = fixture_repo(tmp_path / "src")
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab") as lab:
        setup_hosts(lab, {"lab2": {"GUIX_DOUBLE_LEAK_HOSTNAME": "1"}})
        code, stdout, err = run_cli(*run_args(lab.inventory_path, repo, out))
    assert code == 1, err
    data = report(out)
    art = next(a for a in data["artifacts"] if a["name"] == ARTIFACT)
    assert art["status"] == "differs" and art["groups"][1]["hosts"] == ["lab2"]
    # the table's groups: lab2 alone on a hash of its own
    pattern = rf"(?m)^{re.escape(ARTIFACT)} +differs +\w{{12}} +lab1, lab3\n +\w{{12}} +lab2$"
    assert re.search(pattern, stdout), stdout


def test_native_flag_in_a_build_log_fails_that_host(tmp_path: Path) -> None:
    repo, _ = fixture_repo(tmp_path / "src")
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab") as lab:
        setup_hosts(lab, {"lab3": {"GUIX_DOUBLE_NATIVE": "1"}})
        code, _, err = run_cli(*run_args(lab.inventory_path, repo, out))
    assert code == 3, err
    hosts = {h["name"]: h for h in report(out)["hosts"]}
    assert hosts["lab3"]["status"] == "failed"
    assert "native-guard" in hosts["lab3"]["error"] and "-march=native" in hosts["lab3"]["error"]
    assert hosts["lab1"]["status"] == hosts["lab2"]["status"] == "ok"


def test_channel_commit_disagreement_is_inconclusive(tmp_path: Path) -> None:
    repo, _ = fixture_repo(tmp_path / "src")
    out = tmp_path / "reports"
    other = "1" * 40
    with LabThread(tmp_path / "lab") as lab:
        setup_hosts(lab, {"lab1": {"GUIX_DOUBLE_CHANNEL_COMMIT": other}})
        code, _, err = run_cli(*run_args(lab.inventory_path, repo, out))
    assert code == 3, err
    data = report(out)
    assert any("Guix channel commit" in r and "lab1" in r for r in data["reasons"])


def test_preflight_failure_is_reported_and_not_built_on(tmp_path: Path) -> None:
    repo, _ = fixture_repo(tmp_path / "src")
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab") as lab:
        setup_hosts(lab, {"lab2": {"GUIX_DOUBLE_NO_DAEMON": "1"}})
        code, _, err = run_cli(*run_args(lab.inventory_path, repo, out))
        lab2_root = next(h.root for h in lab.hosts if h.name == "lab2")
        assert not list(lab2_root.glob(".cache/repro/runs/*/steps/*.pid")), "nothing ran on lab2"
    assert code == 3, err
    hosts = {h["name"]: h for h in report(out)["hosts"]}
    assert (
        hosts["lab2"]["error"].startswith("preflight-failed:")
        and "guix-daemon" in hosts["lab2"]["error"]
    )


def test_ref_that_does_not_resolve_is_bad_input(tmp_path: Path) -> None:
    repo, _ = fixture_repo(tmp_path / "src")
    out = tmp_path / "reports"
    inv = tmp_path / "inv.yaml"
    inv.write_text("all:\n  hosts:\n    h1: {ansible_connection: local}\n")
    args = run_args(inv, repo, out)
    args[args.index("main")] = "no-such-branch"
    code, _, err = run_cli(*args)
    assert code == 2 and "no-such-branch" in err
    assert not out.exists()


def test_smoke_builds_twice_per_host(tmp_path: Path) -> None:
    repo, _ = fixture_repo(tmp_path / "src")
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        setup_hosts(lab, {})
        code, _, err = run_cli(*run_args(lab.inventory_path, repo, out, playbook=SMOKE))
    assert code == 0, err
    data = report(out)
    assert all(len(h["rounds"]) == 1 and h["rounds"][0] == h["artifacts"] for h in data["hosts"])
    steps = [s["name"] for s in data["hosts"][0]["steps"]]
    assert "build (round 2)" in steps


def test_guix_generic_compares_every_file_of_the_manifests(tmp_path: Path) -> None:
    from tests.fixtures.guix_repos import make_bitcoin_repo

    repo, commit = make_bitcoin_repo(tmp_path / "src")
    out = tmp_path / "reports"
    generic = Path(__file__).resolve().parent.parent / "playbooks" / "guix-generic.yaml"
    with LabThread(tmp_path / "lab", n=2) as lab:
        setup_hosts(lab, {})
        code, stdout, err = run_cli(
            "run",
            "-i",
            str(lab.inventory_path),
            "-p",
            str(generic),
            "-e",
            f"repo_url={repo}",
            "-e",
            "mirror_name=bitcoin",
            "-e",
            "hosts=x86_64-linux-gnu aarch64-linux-gnu",
            "--ref",
            "v0.1.0",
            "--out",
            str(out),
        )
    assert code == 0, err + stdout
    data = report(out)
    assert data["commit"] == commit
    names = [a["name"] for a in data["artifacts"]]
    # one tarball per platform triple, named as SHA256SUMS.part lists them
    assert any(n.startswith("x86_64-linux-gnu/") for n in names)
    assert any(n.startswith("aarch64-linux-gnu/") for n in names)
    assert all(a["status"] == "identical" for a in data["artifacts"])


def test_a_pull_request_ref_is_resolved_once_and_built(tmp_path: Path) -> None:
    from tests.fixtures.guix_repos import add_pull_request

    repo, first = fixture_repo(tmp_path / "src")
    proposed = add_pull_request(repo, 615, "Fixture: a proposed change.\n")
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", n=2) as lab:
        setup_hosts(lab, {})
        args = run_args(lab.inventory_path, repo, out)
        args[args.index("main")] = "pull/615/head"
        code, stdout, err = run_cli(*args)
    assert code == 0, err + stdout
    data = report(out)
    assert data["commit"] == proposed != first and data["vars"]["ref"] == "pull/615/head"
    assert all(h["status"] == "ok" for h in data["hosts"])


def test_a_distribution_s_guix_builds_too(tmp_path: Path) -> None:
    """Debian's `guix` package: `guix --version` says 1.4.0 and `guix describe` fails ("failed
    to determine origin"). The build's time-machine still pins the channel, and the report
    takes the commit from the build's guix-describe.json."""
    from tests.fixtures.guix_repos import FIXTURE_GUIX_COMMIT

    repo, _ = fixture_repo(tmp_path / "src")
    out = tmp_path / "reports"
    distro = {"GUIX_DOUBLE_NO_ORIGIN": "1", "GUIX_DOUBLE_VERSION": "1.4.0"}
    with LabThread(tmp_path / "lab", n=2) as lab:
        setup_hosts(lab, {"lab1": distro})
        code, stdout, err = run_cli(*run_args(lab.inventory_path, repo, out))
    assert code == 0, err + stdout
    hosts = {h["name"]: h for h in report(out)["hosts"]}
    assert hosts["lab1"]["facts"]["guix_version"] == "1.4.0"
    assert hosts["lab2"]["facts"]["guix_version"] == "0ee6fa5a652a01699cb7d49a69d2aeeccf4d95e5"
    assert {h["facts"]["guix_channel_commit"] for h in hosts.values()} == {FIXTURE_GUIX_COMMIT}
