# Tests of the TEST DOUBLE of GNU Guix (tests/guix_double) and the FIXTURE repositories
# (tests/fixtures/guix_repos.py), following ../shared/reference/pipelines.md.
"""The guix double and the fixture contrib/guix scripts behave as the real interface says.

Everything runs for real: git, the double's time-machine/shell, gcc, tar, in tmp_path clones.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

from tests.fixtures.guix_repos import (
    BITCOIN_FIXTURE_GUIX_COMMIT,
    CUPRATE_TARGET,
    CUPRATED_VERSION,
    DOUBLE_BIN,
    FIXTURE_GUIX_COMMIT,
    git,
    make_bitcoin_repo,
    make_cuprate_repo,
    write_knob_file,
)

TIMEOUT = 60
ARTIFACT = f"cuprated-{CUPRATED_VERSION}-{CUPRATE_TARGET}.tar.gz"
COMPARED = (ARTIFACT, "build-metadata.json", "rustc-version.txt", "cargo-version.txt",
            "guix-describe.json")  # fmt: skip


def run(
    args: list[str], cwd: Path, env: dict[str, str], expect: int | None = 0
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if expect is not None:
        assert done.returncode == expect, f"{args}: exit {done.returncode}\n{done.stderr}"
    return done


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clone(origin: Path, dest: Path, env: dict[str, str]) -> Path:
    run(["git", "clone", "--quiet", str(origin), str(dest)], cwd=origin.parent, env=env)
    return dest


def mk_distsrc(repo: Path, env: dict[str, str]) -> Path:
    out = run(["./contrib/guix/guix-mk-distsrc"], cwd=repo, env=env).stdout
    return Path(out.splitlines()[-1])


def build(repo: Path, env: dict[str, str], *extra: str) -> Path:
    distsrc = mk_distsrc(repo, env)
    run(["./contrib/guix/guix-build", "--guix-system", "x86_64-linux", "--target", CUPRATE_TARGET,
         "--package", "cuprated", "--distsrc", str(distsrc), *extra], cwd=repo, env=env)  # fmt: skip
    return repo / "contrib/guix/out"


# --- the guix double -------------------------------------------------------------------------


def test_fixture_commit_is_stable(tmp_path: Path) -> None:
    _, first = make_cuprate_repo(tmp_path / "a")
    _, second = make_cuprate_repo(tmp_path / "b")
    assert first == second and len(first) == 40


def test_version_names_itself_a_double(env: dict[str, str], tmp_path: Path) -> None:
    out = run(["guix", "--version"], cwd=tmp_path, env=env).stdout.splitlines()
    assert out[0].startswith("guix (GNU Guix) ")
    assert any("TEST DOUBLE" in line for line in out)


def test_describe_commit_comes_from_env_then_knob_file(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    def commit(e: dict[str, str]) -> str:
        channels = json.loads(run(["guix", "describe", "--format=json"], tmp_path, e).stdout)
        assert [c["name"] for c in channels] == ["guix"]
        return str(channels[0]["commit"])

    default = commit(env)
    write_knob_file(home, GUIX_DOUBLE_CHANNEL_COMMIT="1" * 40)
    assert commit(env) == "1" * 40 != default
    assert commit({**env, "GUIX_DOUBLE_CHANNEL_COMMIT": "2" * 40}) == "2" * 40
    bad = run(["guix", "describe", "--format=json"], tmp_path,
              {**env, "GUIX_DOUBLE_CHANNEL_COMMIT": "xyz"}, expect=1)  # fmt: skip
    assert "40 hex" in bad.stderr


def test_time_machine_runs_the_pinned_guix(env: dict[str, str], cuprate: tuple[Path, str]) -> None:
    repo, _ = cuprate
    cmd = ["guix", "time-machine", "-C", "contrib/guix/channels.scm", "--"]
    channels = json.loads(run([*cmd, "describe", "--format=json"], repo, env).stdout)
    assert channels[0]["commit"] == FIXTURE_GUIX_COMMIT
    assert channels[0]["introduction"]["commit"] == "9edb3f66fd807b096b48283debdcddccfea34bad"
    version = run([*cmd, "--version"], repo, env).stdout
    assert version.startswith(f"guix (GNU Guix) {FIXTURE_GUIX_COMMIT}")
    by_commit = ["guix", "time-machine", f"--commit={BITCOIN_FIXTURE_GUIX_COMMIT}", "--"]
    channels = json.loads(run([*by_commit, "describe", "-f", "json"], repo, env).stdout)
    assert channels[0]["commit"] == BITCOIN_FIXTURE_GUIX_COMMIT
    missing = run(["guix", "time-machine", "-C", "nope.scm", "--", "describe"], repo, env, 1)
    assert "nope.scm" in missing.stderr
    run(["guix", "time-machine", "--frobnicate", "-C", "contrib/guix/channels.scm"], repo, env, 1)


def test_shell_container_pure_really_runs_with_a_clean_env(
    env: dict[str, str], home: Path, cuprate: tuple[Path, str]
) -> None:
    repo, _ = cuprate
    shell = ["guix", "shell", "-m", "contrib/guix/manifest.scm", "--container", "--pure"]
    script = 'env; command -v guix || echo "no guix"; pwd; touch made-inside'
    done = run([*shell, "--", "sh", "-c", script], repo, {**env, "LEAKY": "1"})
    lines = done.stdout.splitlines()
    assert "LC_ALL=C" in lines and "TZ=UTC" in lines
    assert not any(line.startswith("LEAKY=") for line in lines)
    assert f"HOME={home}" not in lines and any(line.startswith("HOME=") for line in lines)
    assert "no guix" in lines and str(DOUBLE_BIN) not in done.stdout
    assert str(repo) in lines and (repo / "made-inside").is_file()
    kept = run([*shell, "--preserve=^LEAKY$", "--", "sh", "-c", "echo $LEAKY"], repo,
               {**env, "LEAKY": "kept"})  # fmt: skip
    assert kept.stdout.strip() == "kept"
    assert run([*shell, "--", "sh", "-c", "exit 7"], repo, env, expect=7)
    run(["guix", "shell", "-m", "missing.scm", "--", "true"], repo, env, expect=1)
    run(["guix", "shell", "--bogus", "--", "true"], repo, env, expect=1)
    run(["guix", "shell", "--share=/tmp=/elsewhere", "--", "true"], repo, env, expect=1)


def test_gc_reports_a_daemon_unless_told_not_to(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    assert "current-guix" in run(["guix", "gc", "--list-roots"], tmp_path, env).stdout
    gone = run(["guix", "gc", "--list-roots"], tmp_path, {**env, "GUIX_DOUBLE_NO_DAEMON": "1"}, 1)
    assert "daemon-socket" in gone.stderr
    write_knob_file(home, GUIX_DOUBLE_NO_DAEMON="1")
    run(["guix", "gc", "--list-roots"], tmp_path, env, expect=1)
    run(["guix", "time-machine", "-C", "x.scm", "--", "describe"], tmp_path, env, expect=1)


# --- the Cuprate fixture ---------------------------------------------------------------------


def test_distsrc_path_is_the_last_stdout_line(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    repo = clone(cuprate[0], tmp_path / "a", env)
    commit = cuprate[1]
    done = run(["./contrib/guix/guix-mk-distsrc"], repo, env)
    lines = done.stdout.splitlines()
    assert len(lines) > 1, "progress lines come first, so 'last line' is what matters"
    path = Path(lines[-1])
    assert path.name == f"cuprate-{CUPRATED_VERSION}-{commit[:12]}-src.tar.gz"
    assert path.is_file() and path.resolve().is_relative_to(repo.resolve())
    sidecar = path.with_name(path.name + ".SHA256SUM").read_text()
    assert sidecar == f"{sha256(path)}  {path.name}\n"
    with tarfile.open(path) as tar:
        member = tar.extractfile(f"{path.name[: -len('-src.tar.gz')]}/.cuprate-distsrc.json")
        assert member is not None
        meta = json.loads(member.read())
        assert {m.uid for m in tar.getmembers()} == {0}
    assert meta["git_commit"] == commit and meta["version"] == CUPRATED_VERSION
    run(["git", "diff", "--quiet"], repo, env)  # the out dir is ignored: still clean
    assert run(["git", "status", "--porcelain"], repo, env).stdout == ""


def test_out_dir_has_exactly_the_documented_files(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    repo = clone(cuprate[0], tmp_path / "a", env)
    out = build(repo, env)
    distsrc = f"cuprate-{CUPRATED_VERSION}-{cuprate[1][:12]}-src.tar.gz"
    assert sorted(p.name for p in out.iterdir()) == sorted([
        distsrc, distsrc + ".SHA256SUM", ARTIFACT, ARTIFACT + ".SHA256SUM",
        "build-metadata.json", "guix-describe.json", "rustc-version.txt", "cargo-version.txt",
        f"build-{CUPRATE_TARGET}.log", f"ldd-{CUPRATE_TARGET}.diag.txt",
    ])  # fmt: skip
    meta = json.loads((out / "build-metadata.json").read_text())
    assert meta == {
        "package": "cuprated", "version": CUPRATED_VERSION, "guix_system": "x86_64-linux",
        "rust_target": CUPRATE_TARGET, "source_date_epoch": meta["source_date_epoch"],
        "git_commit": cuprate[1], "randomx_arch": "default", "distsrc": distsrc,
        "distsrc_sha256": sha256(out / distsrc),
    }  # fmt: skip
    describe = json.loads((out / "guix-describe.json").read_text())
    assert describe[0]["commit"] == FIXTURE_GUIX_COMMIT
    assert (
        out / (ARTIFACT + ".SHA256SUM")
    ).read_text() == f"{sha256(out / ARTIFACT)}  {ARTIFACT}\n"
    with tarfile.open(out / ARTIFACT) as tar:
        names = tar.getnames()
    assert f"cuprated-{CUPRATED_VERSION}-{CUPRATE_TARGET}/cuprated" in names
    run(["./contrib/guix/guix-checksums"], repo, env)
    sums = (out / "SHA256SUMS").read_text().splitlines()
    assert sums == sorted([f"{sha256(out / distsrc)}  {distsrc}",
                           f"{sha256(out / ARTIFACT)}  {ARTIFACT}"], key=lambda s: s[66:])  # fmt: skip
    # The binary the fixture built really runs.
    with tarfile.open(out / ARTIFACT) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    exe = tmp_path / "x" / f"cuprated-{CUPRATED_VERSION}-{CUPRATE_TARGET}" / "cuprated"
    assert run([str(exe)], tmp_path, env).stdout == f"cuprated {CUPRATED_VERSION}\n"


def test_two_builds_in_different_dirs_are_identical(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    out_a = build(clone(cuprate[0], tmp_path / "a", env), env)
    out_b = build(clone(cuprate[0], tmp_path / "deeper" / "b", env), env)
    names = sorted(p.name for p in out_a.iterdir())
    assert names == sorted(p.name for p in out_b.iterdir())
    for name in names:
        if name.endswith(".diag.txt"):
            continue  # host-variable by design: never compared
        assert sha256(out_a / name) == sha256(out_b / name), name
    # The diagnostic differs between builds, which is why the playbook never compares it.
    assert (out_a / f"ldd-{CUPRATE_TARGET}.diag.txt").read_text().startswith("\t")


def test_leak_knob_makes_the_artifact_differ(
    env: dict[str, str], home: Path, cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    clean = build(clone(cuprate[0], tmp_path / "a", env), env)
    leaky = build(clone(cuprate[0], tmp_path / "b", env), {**env, "GUIX_DOUBLE_LEAK_HOSTNAME": "1"})
    assert sha256(clean / ARTIFACT) != sha256(leaky / ARTIFACT)
    for name in ("build-metadata.json", "rustc-version.txt", "guix-describe.json"):
        assert sha256(clean / name) == sha256(leaky / name), name
    # The same knob through ~/.guix-double.env, as a test host gets it.
    write_knob_file(home, GUIX_DOUBLE_LEAK_HOSTNAME="1")
    from_file = build(clone(cuprate[0], tmp_path / "c", env), env)
    assert sha256(from_file / ARTIFACT) == sha256(leaky / ARTIFACT)


def test_native_and_channel_knobs(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    knobs = {"GUIX_DOUBLE_NATIVE": "1", "GUIX_DOUBLE_CHANNEL_COMMIT": "3" * 40}
    out = build(clone(cuprate[0], tmp_path / "a", env), {**env, **knobs})
    assert "-march=native" in (out / f"build-{CUPRATE_TARGET}.log").read_text()
    assert json.loads((out / "guix-describe.json").read_text())[0]["commit"] == "3" * 40
    plain = build(clone(cuprate[0], tmp_path / "b", env), env)
    assert "native" not in (plain / f"build-{CUPRATE_TARGET}.log").read_text()


def test_guix_build_rejects_bad_flags_and_paths(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    repo = clone(cuprate[0], tmp_path / "a", env)
    distsrc = mk_distsrc(repo, env)
    gb = "./contrib/guix/guix-build"
    assert "unknown flag" in run([gb, "--distsrc", str(distsrc), "--frob"], repo, env, 1).stderr
    assert "--distsrc" in run([gb, "--target", CUPRATE_TARGET], repo, env, 1).stderr
    outside = tmp_path / distsrc.name
    outside.write_bytes(distsrc.read_bytes())
    assert "inside the repository" in run([gb, "--distsrc", str(outside)], repo, env, 1).stderr
    run([gb, "--distsrc", str(distsrc), "--target", "aarch64-unknown-linux-gnu"], repo, env, 1)
    run([gb, "--distsrc", str(distsrc)], repo, {**env, "GUIX_SKIP_FENV_WORKAROUND": "yes"}, 1)
    run(["./contrib/guix/guix-mk-distsrc", "--out-dir", str(tmp_path)], repo, env, 1)
    run(["./contrib/guix/guix-mk-distsrc", "--bogus"], repo, env, 1)


def test_dirty_worktree_is_refused(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    repo = clone(cuprate[0], tmp_path / "a", env)
    (repo / "stray.txt").write_text("untracked\n")
    assert "dirty" in run(["./contrib/guix/guix-mk-distsrc"], repo, env, 1).stderr
    (repo / "stray.txt").unlink()
    with open(repo / "LICENSE", "a") as fh:
        fh.write("edited\n")
    assert "dirty" in run(["./contrib/guix/guix-mk-distsrc"], repo, env, 1).stderr
    assert not (repo / "contrib/guix/out").exists() or not any(
        (repo / "contrib/guix/out").iterdir()
    )


def test_commit_mismatch_needs_the_knob(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    repo = clone(cuprate[0], tmp_path / "a", env)
    distsrc = mk_distsrc(repo, env)
    (repo / "NEWS").write_text("a later commit\n")
    git(repo, "add", "NEWS")
    git(repo, "commit", "--quiet", "-m", "later")
    gb = ["./contrib/guix/guix-build", "--distsrc", str(distsrc)]
    assert "GUIX_ALLOW_COMMIT_MISMATCH" in run(gb, repo, env, 1).stderr
    run(gb, repo, {**env, "GUIX_ALLOW_COMMIT_MISMATCH": "1"})
    meta = json.loads((repo / "contrib/guix/out/build-metadata.json").read_text())
    assert meta["git_commit"] == cuprate[1]  # bound to the distsrc, not to the outer checkout


# --- the Bitcoin Core fixture ------------------------------------------------------------------


def test_bitcoin_guix_build_honours_hosts_and_writes_manifests(
    env: dict[str, str], tmp_path: Path
) -> None:
    origin, commit = make_bitcoin_repo(tmp_path / "origin")
    repo = clone(origin, tmp_path / "a", env)
    hosts = "x86_64-linux-gnu aarch64-linux-gnu"
    run(["./contrib/guix/guix-build"], repo, {**env, "HOSTS": hosts, "JOBS": "1"})
    output = repo / "guix-build-0.1.0" / "output"
    assert sorted(p.name for p in output.iterdir()) == sorted(
        ["dist-archive", "x86_64-linux-gnu", "aarch64-linux-gnu"]
    )
    for host in hosts.split():
        lines = (output / host / "SHA256SUMS.part").read_text().splitlines()
        listed = {line[66:]: line[:64] for line in lines}
        assert all(line[64:66] == "  " for line in lines)
        assert set(listed) == {"dist-archive/bitcoin-0.1.0.tar.gz",
                               f"{host}/bitcoin-0.1.0-{host}.tar.gz"}  # fmt: skip
        for name, digest in listed.items():
            assert sha256(output / name) == digest
    assert run(["git", "status", "--porcelain"], repo, env).stdout == ""
    again = run(["./contrib/guix/guix-build"], repo, {**env, "HOSTS": "x86_64-linux-gnu"}, 1)
    assert f"distsrc-{commit[:12]}-x86_64-linux-gnu" in again.stderr


def test_bitcoin_builds_agree_and_bad_input_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    origin, _ = make_bitcoin_repo(tmp_path / "origin")
    a = clone(origin, tmp_path / "a", env)
    b = clone(origin, tmp_path / "b", env)
    one = {**env, "HOSTS": "riscv64-linux-gnu"}
    run(["./contrib/guix/guix-build"], a, one)
    run(["./contrib/guix/guix-build"], b, one)
    part = "guix-build-0.1.0/output/riscv64-linux-gnu/SHA256SUMS.part"
    assert (a / part).read_text() == (b / part).read_text()
    c = clone(origin, tmp_path / "c", env)
    run(["./contrib/guix/guix-build"], c, {**one, "JOBS": "many"}, expect=1)
    run(["./contrib/guix/guix-build"], c, {**env, "HOSTS": "x86_64-apple-darwin"}, expect=1)
    run(["./contrib/guix/guix-build"], c, {**one, "SUBSTITUTE_URLS": "ftp://x"}, expect=1)
    (c / "stray").write_text("x\n")
    assert "dirty" in run(["./contrib/guix/guix-build"], c, one, expect=1).stderr
