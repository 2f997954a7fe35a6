"""cuprated-guix.yaml end to end on real OpenSSH hosts (the mission: Intel SPR, AMD Zen 4 and a
Zen 3 cloud VM must agree), through the guix TEST DOUBLE: reproducible, a hostname leak, the
native-flag guard, a channel disagreement, a too-small /tmp, mirror reuse, and smoke rounds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from repro.netlab import NetnsLab
from tests.fixtures.guix_repos import (
    FIXTURE_GUIX_COMMIT,
    container_probe,
    git,
    make_bitcoin_repo,
    probe_problem,
    require_containers,
)
from tests.guix_scenarios import ARTIFACT, CUPRATED, SMOKE, fixture_repo, install_double, run_args
from tests.test_cli_inprocess import report, run_cli

# The guix double's containers need bubblewrap: skip without (fail under REPRO_REQUIRE_NETNS=1).
pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("guix_container")]

REPO = Path(__file__).resolve().parents[1]
CPUINFO = REPO / "tests" / "fixtures" / "cpuinfo"
GENERIC = REPO / "playbooks" / "guix-generic.yaml"
MISSION = {
    "spr": ("sapphire-rapids.txt", "Sapphire Rapids"),
    "genoa": ("zen4-genoa.txt", "Zen 4"),
    "cloudvm": ("cloud-vm-zen3.txt", "Zen 3"),
}
OUT_DIR = "src/contrib/guix/out"  # the playbook's artifact dir, inside each run's work dir
MIRROR = ".cache/repro/mirrors/cuprate.git"  # under the host's HOME, kept between runs

Factory = Callable[..., NetnsLab]
Knobs = dict[str, dict[str, str]]


@pytest.fixture
def src() -> Iterator[Path]:
    """Where the fixture repo lives: outside /tmp and /root, which are private on lab hosts."""
    where = Path(tempfile.mkdtemp(prefix="repro-guix-netns-", dir="/var/tmp"))
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def mission(netlab_factory: Factory) -> Callable[[Knobs], NetnsLab]:
    """A started 3-host lab with the three mission CPUs and the guix double in every HOME."""

    def make(knobs: Knobs) -> NetnsLab:
        cpuinfo = {name: CPUINFO / fixture for name, (fixture, _) in MISSION.items()}
        lab = netlab_factory(3, names=list(MISSION), cpuinfo=cpuinfo)
        # The double's containers inside a lab host (its own mount namespace and /proc/cpuinfo).
        probe = container_probe()
        assert probe is not None  # the guix_container fixture checked bwrap on this machine
        inside = probe_problem(lab.exec("spr", probe))
        require_containers(inside, os.environ.get("REPRO_REQUIRE_NETNS") == "1")
        for host in lab.hosts:
            install_double(host.home, **knobs.get(host.name, {}))
        return lab

    return make


def run(
    lab: NetnsLab, repo: Path, out: Path, *extra: str, playbook: Path = CUPRATED
) -> tuple[int, str, str]:
    # --keep-work: the tests look at what each host built, in its work dir
    argv = run_args(lab.inventory_path, repo, out, "--keep-work", *extra, playbook=playbook)
    return run_cli(*argv)


def latest_report(out: Path) -> dict[str, Any]:
    """report.json of the newest run in out. Not by run id: two runs can start in the same
    second, and then the ids' random suffixes decide their order."""
    newest = max(
        (p / "report.json" for p in out.iterdir() if (p / "report.json").is_file()),
        key=lambda p: p.stat().st_mtime_ns,
    )
    data: dict[str, Any] = json.loads(newest.read_text())
    return data


def work_dir(lab: NetnsLab, name: str, run_id: str, rnd: int = 1) -> Path:
    """A run's work dir on host `name`, as the controller sees that host's HOME."""
    suffix = "work" if rnd == 1 else f"work-r{rnd}"
    return lab.host(name).home / ".cache" / "repro" / "runs" / run_id / suffix


def run_built(tarball: Path, where: Path) -> str:
    """What the cuprated binary in a host's tarball prints (run here: same machine, same libc)."""
    where.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/cuprated"))
        fh = tar.extractfile(member)
        assert fh is not None
        exe = where / "cuprated"
        exe.write_bytes(fh.read())
    exe.chmod(0o755)
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=10, check=True)
    return done.stdout


def host_git(lab: NetnsLab, name: str, path: str, *args: str) -> str:
    """git on the host itself, in the host's namespaces (its HOME is /root there)."""
    done = lab.exec(name, ["git", "-C", path, *args])
    assert done.returncode == 0, f"{name}: git {args}: {done.stderr}"
    return done.stdout.strip()


# --- the mission ------------------------------------------------------------------------------


def test_three_different_machines_agree(
    mission: Callable[[Knobs], NetnsLab], src: Path, tmp_path: Path
) -> None:
    repo, commit = fixture_repo(src)
    lab = mission({})
    out = tmp_path / "reports"
    code, stdout, err = run(lab, repo, out)
    assert code == 0, err + stdout
    data = report(out)
    assert data["commit"] == commit and data["verdict"] == "reproducible"
    assert f"- Commit: `{commit}`" in (out / data["run_id"] / "report.md").read_text()
    hosts = {h["name"]: h for h in data["hosts"]}
    for name, (_, arch) in MISSION.items():
        facts = hosts[name]["facts"]
        assert hosts[name]["status"] == "ok", hosts[name]["error"]
        assert (facts["hostname"], facts["microarch"]) == (name, arch)
        assert facts["guix_channel_commit"] == FIXTURE_GUIX_COMMIT  # from the pinned channels.scm
        # The hash in the report is the hash of the file the host really built.
        built = work_dir(lab, name, data["run_id"]) / OUT_DIR / ARTIFACT
        assert (
            hashlib.sha256(built.read_bytes()).hexdigest()
            == hosts[name]["artifacts"][ARTIFACT]["sha256"]
        )
        assert run_built(built, tmp_path / "bin" / name) == "cuprated 0.0.9\n"
    arts = {a["name"]: a for a in data["artifacts"]}
    assert arts[ARTIFACT]["status"] == "identical"
    assert all(a["status"] == "identical" for a in arts.values())
    assert "guix-describe.json" in arts and not any("ldd" in n for n in arts)


def test_hostname_leak_on_one_host_is_a_mismatch_naming_it(
    mission: Callable[[Knobs], NetnsLab], src: Path, tmp_path: Path
) -> None:
    repo, _ = fixture_repo(src)
    lab = mission({"genoa": {"GUIX_DOUBLE_LEAK_HOSTNAME": "1"}})
    out = tmp_path / "reports"
    code, stdout, err = run(lab, repo, out)
    assert code == 1, err + stdout
    data = report(out)
    art = next(a for a in data["artifacts"] if a["name"] == ARTIFACT)
    assert art["status"] == "differs"
    assert [g["hosts"] for g in art["groups"]] == [["spr", "cloudvm"], ["genoa"]]
    assert any("genoa" in r and ARTIFACT in r for r in data["reasons"])
    assert "genoa has" in " ".join(stdout.split())
    # The difference is the one the knob makes: genoa's own UTS hostname, in its binary only.
    for name, says in (("genoa", "cuprated 0.0.9 built on genoa\n"), ("spr", "cuprated 0.0.9\n")):
        built = work_dir(lab, name, data["run_id"]) / OUT_DIR / ARTIFACT
        assert run_built(built, tmp_path / "bin" / name) == says


def test_native_flag_fails_that_host_and_quotes_the_line(
    mission: Callable[[Knobs], NetnsLab], src: Path, tmp_path: Path
) -> None:
    repo, _ = fixture_repo(src)
    lab = mission({"cloudvm": {"GUIX_DOUBLE_NATIVE": "1"}})
    out = tmp_path / "reports"
    code, stdout, err = run(lab, repo, out)
    assert code == 3, err + stdout
    data = report(out)
    hosts = {h["name"]: h for h in data["hosts"]}
    assert hosts["spr"]["status"] == hosts["genoa"]["status"] == "ok"
    bad = hosts["cloudvm"]
    assert bad["status"] == "failed"
    assert "step 'native-guard' exited 1" in bad["error"]
    assert ("native-guard: host-CPU code generation in the build logs: "
            "src/contrib/guix/out/build-x86_64-unknown-linux-gnu.log:2:") in bad["error"]
    assert "Running `gcc -O2 -D_GLIBCXX_HAVE_FENV_H=1 -march=native" in bad["error"]
    assert [s["exit_status"] for s in bad["steps"]] == [0, 0, 0, 0, 1]
    log = (out / data["run_id"] / bad["steps"][-1]["log"]).read_text()
    assert "-march=native" in log
    assert any("cloudvm" in r and "failed" in r for r in data["reasons"])


def test_channel_commit_disagreement_is_inconclusive(
    mission: Callable[[Knobs], NetnsLab], src: Path, tmp_path: Path
) -> None:
    repo, _ = fixture_repo(src)
    other = "1" * 40
    lab = mission({"spr": {"GUIX_DOUBLE_CHANNEL_COMMIT": other}})
    out = tmp_path / "reports"
    code, stdout, err = run(lab, repo, out)
    assert code == 3, err + stdout
    data = report(out)
    assert data["verdict"] == "inconclusive"
    assert all(h["status"] == "ok" for h in data["hosts"])
    commits = {h["name"]: h["facts"]["guix_channel_commit"] for h in data["hosts"]}
    assert commits == {"spr": other, "genoa": FIXTURE_GUIX_COMMIT, "cloudvm": FIXTURE_GUIX_COMMIT}
    reason = next(r for r in data["reasons"] if "Guix channel commit" in r)
    assert reason.startswith("hosts disagree on the Guix channel commit: ")
    assert "spr has 111111111111" in reason and "genoa, cloudvm have 655069ec7da3" in reason
    assert "hosts disagree on the Guix channel commit" in " ".join(stdout.split())


def test_preflight_checks_where_the_build_writes_not_tmp(
    mission: Callable[[Knobs], NetnsLab], src: Path, tmp_path: Path
) -> None:
    repo, _ = fixture_repo(src)
    lab = mission({})
    # A cloud runner's small /tmp (64 MiB here) does not matter: the PR moved the build's
    # TMPDIR into the repository, so genoa builds. spr's work dir is what is small.
    mounted = lab.exec("genoa", ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", "/tmp"])
    assert mounted.returncode == 0, mounted.stderr
    runs = "/root/.cache/repro/runs"
    mount = f"mkdir -p {runs} && mount -t tmpfs -o size=64m small-runs {runs}"
    small = lab.exec("spr", ["sh", "-c", mount])
    assert small.returncode == 0, small.stderr
    assert "small-runs" in lab.exec("spr", ["df", "-P", runs]).stdout

    code, table, err = run_cli("check", "-i", str(lab.inventory_path), "-p", str(CUPRATED))
    assert code == 3, err
    rows = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert "only 64.0 MiB free in /root/.cache/repro/runs" in rows["spr"]
    assert "playbook needs 20.0 GiB" in rows["spr"]
    assert "/tmp" not in rows["genoa"] and "free in" not in rows["genoa"]

    out = tmp_path / "reports"
    code, stdout, err = run(lab, repo, out)
    assert code == 3, err + stdout
    data = report(out)
    hosts = {h["name"]: h for h in data["hosts"]}
    assert hosts["spr"]["status"] == "failed"
    assert hosts["spr"]["error"].startswith("preflight-failed: only 64.0 MiB free in /root/")
    assert hosts["spr"]["steps"] == []
    assert hosts["genoa"]["status"] == hosts["cloudvm"]["status"] == "ok"
    assert next(a for a in data["artifacts"] if a["name"] == ARTIFACT)["status"] == "identical"
    # Nothing ran on spr: no step was started, no mirror cloned.
    assert not (lab.host("spr").home / MIRROR).exists()
    assert (lab.host("genoa").home / MIRROR).is_dir()


def test_guix_generic_builds_bitcoin_style_on_every_host(
    mission: Callable[[Knobs], NetnsLab], src: Path, tmp_path: Path
) -> None:
    repo, commit = make_bitcoin_repo(src)
    lab = mission({})
    out = tmp_path / "reports"
    code, stdout, err = run(lab, repo, out, "-e", "mirror_name=bitcoin", "-e",
                            "hosts=x86_64-linux-gnu riscv64-linux-gnu", playbook=GENERIC)  # fmt: skip
    assert code == 0, err + stdout
    data = report(out)
    assert data["commit"] == commit and data["verdict"] == "reproducible"
    names = sorted(a["name"] for a in data["artifacts"])
    assert names == ["dist-archive/bitcoin-0.1.0.tar.gz",
                     "riscv64-linux-gnu/bitcoin-0.1.0-riscv64-linux-gnu.tar.gz",
                     "x86_64-linux-gnu/bitcoin-0.1.0-x86_64-linux-gnu.tar.gz"]  # fmt: skip
    assert all(a["status"] == "identical" for a in data["artifacts"])


# --- every night ------------------------------------------------------------------------------


def object_files(mirror: Path) -> dict[str, int]:
    return {
        str(p.relative_to(mirror)): p.stat().st_ino
        for p in (mirror / "objects").rglob("*")
        if p.is_file()
    }


def test_second_run_reuses_the_mirror_and_picks_up_a_new_commit(
    mission: Callable[[Knobs], NetnsLab], src: Path, tmp_path: Path
) -> None:
    repo, first = fixture_repo(src)
    lab = mission({})
    out = tmp_path / "reports"
    code, stdout, err = run(lab, repo, out)
    assert code == 0, err + stdout
    one = latest_report(out)
    assert one["commit"] == first
    before = {
        h.name: ((h.home / MIRROR).stat().st_ino, object_files(h.home / MIRROR)) for h in lab.hosts
    }
    for host in lab.hosts:  # a fresh clone would not have this file
        (host.home / MIRROR / "repro-test-marker").write_text(host.name)

    (repo / "NEWS").write_text("Fixture: a change that lands overnight.\n")
    git(repo, "add", "NEWS")
    git(repo, "commit", "--quiet", "--no-verify", "-m", "Fixture: overnight change")
    second = git(repo, "rev-parse", "HEAD")
    assert second != first

    code, stdout, err = run(lab, repo, out)
    assert code == 0, err + stdout
    two = latest_report(out)
    assert two["run_id"] != one["run_id"] and two["commit"] == second
    for host in lab.hosts:
        mirror = host.home / MIRROR
        inode, objects = before[host.name]
        # The same mirror (not a fresh clone) now holds the old objects untouched and the new commit.
        assert mirror.stat().st_ino == inode
        assert (mirror / "repro-test-marker").read_text() == host.name
        after = object_files(mirror)
        assert all(after.get(name) == ino for name, ino in objects.items())
        assert len(after) > len(objects)
        assert git(mirror, "cat-file", "-t", second) == "commit"
        src_dir = f"/root/.cache/repro/runs/{two['run_id']}/work/src"
        assert host_git(lab, host.name, src_dir, "rev-parse", "HEAD") == second
    meta = [
        {h["name"]: h["artifacts"]["build-metadata.json"]["sha256"] for h in r["hosts"]}
        for r in (one, two)
    ]
    assert len(set(meta[0].values())) == len(set(meta[1].values())) == 1
    assert set(meta[0].values()) != set(meta[1].values())  # it built the new commit


def test_smoke_builds_twice_on_every_host(
    mission: Callable[[Knobs], NetnsLab], src: Path, tmp_path: Path
) -> None:
    repo, _ = fixture_repo(src)
    lab = mission({})
    out = tmp_path / "reports"
    code, stdout, err = run(lab, repo, out, playbook=SMOKE)
    assert code == 0, err + stdout
    data = report(out)
    assert data["playbook"] == "smoke"
    for host in data["hosts"]:
        assert host["status"] == "ok", host["error"]
        assert len(host["rounds"]) == 1 and host["rounds"][0] == host["artifacts"]
        steps = [s["name"] for s in host["steps"]]
        assert steps[:5] == [
            "checkout (round 1)",
            "distsrc (round 1)",
            "build (round 1)",
            "checksums (round 1)",
            "native-guard (round 1)",
        ]
        assert steps[5:] == [s.replace("round 1", "round 2") for s in steps[:5]]
        # Two real builds in two work dirs, both from the one mirror.
        for rnd in (1, 2):
            built = work_dir(lab, host["name"], data["run_id"], rnd) / OUT_DIR / ARTIFACT
            assert (
                hashlib.sha256(built.read_bytes()).hexdigest()
                == host["artifacts"][ARTIFACT]["sha256"]
            )
    assert all(a["status"] == "identical" for a in data["artifacts"])
    assert "REPRODUCIBLE (exit 0)" in stdout
