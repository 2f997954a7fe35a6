# Tests of the built-in Guix playbooks, run against the TEST DOUBLE of GNU Guix
# (tests/guix_double) and FIXTURE repositories, following ../shared/reference/pipelines.md.
"""playbooks/{cuprated-guix,guix-generic,smoke}.yaml load, render the documented script calls,
and their rendered steps really run (git mirror, complete clone, build in the double's
containers, checksums, guard, on-host hashing).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from repro.artifacts import hash_command, parse_hash_output
from repro.errors import PlaybookError
from repro.playbook import Playbook, RenderedStep, load_playbook, render, uses_script
from tests.fixtures.guix_repos import (
    CUPRATE_TARGET,
    CUPRATED_VERSION,
    FIXTURE_GUIX_COMMIT,
    add_pull_request,
    git,
    make_bitcoin_repo,
    write_knob_file,
)

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
TIMEOUT = 120
HOST_VARS = {"inventory_hostname": "builder-1", "ref": "cuprated-0.0.9"}
CUPRATED_ARTIFACTS = {
    f"cuprated-{CUPRATED_VERSION}-{CUPRATE_TARGET}.tar.gz",
    "SHA256SUMS",
    "build-metadata.json",
    "rustc-version.txt",
    "cargo-version.txt",
    "guix-describe.json",
}


def load(name: str) -> Playbook:
    return load_playbook(PLAYBOOKS / f"{name}.yaml")


def by_name(steps: list[RenderedStep]) -> dict[str, str]:
    return {step.name: step.command for step in steps}


def run_step(
    step: RenderedStep, work: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run one rendered step as the runner does: POSIX sh, cwd = the work dir."""
    return subprocess.run(
        ["sh", "-c", step.command], cwd=work, env=env, capture_output=True, text=True,
        timeout=min(step.timeout, TIMEOUT), check=False,
    )  # fmt: skip


def run_all(steps: list[RenderedStep], work: Path, env: dict[str, str]) -> None:
    work.mkdir(parents=True)
    for step in steps:
        done = run_step(step, work, env)
        assert done.returncode == 0, f"step {step.name}: exit {done.returncode}\n{done.stderr}"


def hashes(playbook: Playbook, work: Path) -> dict[str, str]:
    """The on-host hashing command repro really sends, run in the work dir, parsed strictly."""
    done = subprocess.run(
        ["sh", "-c", hash_command(playbook)], cwd=work, capture_output=True, text=True,
        timeout=TIMEOUT, check=True,
    )  # fmt: skip
    return {name: h.sha256 for name, h in parse_hash_output("builder-1", done.stdout).items()}


def cuprated_steps(
    origin: Path, commit: str, playbook: str = "cuprated-guix"
) -> list[RenderedStep]:
    variables = {**HOST_VARS, "repo_url": str(origin), "commit": commit}
    return render(load(playbook), variables, source="builder-1")


# --- loading and rendering -------------------------------------------------------------------


def test_cuprated_guix_loads_with_the_documented_shape() -> None:
    pb = load("cuprated-guix")
    assert [s.name for s in pb.steps] == [
        "checkout", "distsrc", "build", "checksums", "native-guard"]  # fmt: skip
    assert pb.vars["commit"] is None and pb.vars["repo_url"].endswith("Cuprate/cuprate.git")
    assert (pb.vars["package"], pb.vars["target"], pb.vars["guix_system"]) == (
        "cuprated",
        CUPRATE_TARGET,
        "x86_64-linux",
    )
    assert pb.requires.commands == ("guix", "git")
    # Where the build writes (contrib/guix/.work in the work dir, the store), not /tmp.
    assert pb.requires.disk == {"work": 20 * 1024**3, "store": 10 * 1024**3}
    assert pb.guix_describe == "src/contrib/guix/out/guix-describe.json"
    globs = {a.glob for a in pb.artifacts}
    assert "cuprated-*-x86_64-unknown-linux-gnu.tar.gz" in globs
    assert not any("diag" in g or g.endswith(".log") for g in globs)


def test_cuprated_guix_renders_the_documented_invocations() -> None:
    cmds = by_name(cuprated_steps(Path("/srv/cuprate.git"), "ab" * 20))
    checkout = cmds["checkout"]
    assert f"\nset -- /srv/cuprate.git {'ab' * 20} cuprate\n" in checkout
    assert checkout.endswith(uses_script("checkout").split("\n", 1)[1])
    assert "worktree add" not in checkout and "--git-common-dir" in checkout
    assert "./contrib/guix/guix-mk-distsrc x86_64-linux 2>&1 1>&3" in cmds["distsrc"]
    assert "tail -n 1 ../distsrc.stdout" in cmds["distsrc"]
    assert "./contrib/guix/guix-checksums contrib/guix/out" in cmds["checksums"]
    assert (
        "./contrib/guix/guix-build --guix-system x86_64-linux --target x86_64-unknown-linux-gnu"
        ' --package cuprated --distsrc "$distsrc"'
    ) in cmds["build"]
    assert "export GUIX_ALLOW_COMMIT_MISMATCH=0;" in cmds["build"]
    assert "export GUIX_SKIP_FENV_WORKAROUND=0;" in cmds["build"]
    for step in ("distsrc", "build"):
        assert "unset RANDOMX_ARCH RANDOMX_DARCH" in cmds[step]
    assert "grep -nE -- '-march=native|-mcpu=native|target-cpu=native'" in cmds["native-guard"]


def test_values_are_quoted_and_the_commit_is_required() -> None:
    hostile = {"repo_url": "x; touch /tmp/pwned", "commit": "ab" * 20, "guix_system": "a b"}
    cmds = by_name(render(load("cuprated-guix"), hostile, source="builder-1"))
    assert "\nset -- 'x; touch /tmp/pwned' " in cmds["checkout"]
    assert "--guix-system 'a b' --target" in cmds["build"]
    with pytest.raises(PlaybookError, match="commit"):
        render(load("cuprated-guix"), {}, source="builder-1")


def test_smoke_extends_cuprated_guix_with_two_rounds() -> None:
    base, smoke = load("cuprated-guix"), load("smoke")
    assert (smoke.name, smoke.rounds, smoke.quorum) == ("smoke", 2, 1)
    assert smoke.description and smoke.description != base.description
    assert smoke.steps == base.steps and smoke.artifacts == base.artifacts
    assert smoke.vars == base.vars and smoke.guix_describe == base.guix_describe
    variables = {"commit": "cd" * 20}
    assert by_name(render(smoke, variables)) == by_name(render(base, variables))


def test_guix_generic_renders_hosts_jobs_and_substitutes() -> None:
    pb = load("guix-generic")
    assert [s.name for s in pb.steps] == ["checkout", "build"]
    assert [(m.glob, m.base) for m in pb.manifests] == [
        ("src/guix-build-*/output/*/SHA256SUMS.part", "..")
    ]
    assert {k for k, v in pb.vars.items() if v is None} == {"repo_url", "commit", "mirror_name"}
    variables = {"repo_url": "https://example.invalid/b.git", "commit": "ef" * 20,
                 "mirror_name": "bitcoin", "hosts": ["x86_64-linux-gnu", "aarch64-linux-gnu"],
                 "jobs": 4}  # fmt: skip
    build = by_name(render(pb, variables))["build"]
    assert "set -- x86_64-linux-gnu aarch64-linux-gnu" in build and "jobs=4" in build
    assert 'env HOSTS="$hosts" JOBS="$jobs" ./contrib/guix/guix-build' in build
    assert ('env HOSTS="$hosts" JOBS="$jobs" SUBSTITUTE_URLS="$substitute_urls" '
            "./contrib/guix/guix-build") in build  # fmt: skip
    assert "unset SUBSTITUTE_URLS" in build and "substitute_urls=''" in build
    checkout = by_name(render(pb, variables))["checkout"]
    assert f"\nset -- https://example.invalid/b.git {'ef' * 20} bitcoin\n" in checkout
    assert checkout == by_name(render(load("cuprated-guix"), variables))["checkout"]
    assert "unset SUBSTITUTE_URLS SOURCE_DATE_EPOCH FORCE_VERSION" in build


# --- running the rendered steps for real -------------------------------------------------------


def test_cuprated_steps_run_and_hash_only_the_compared_files(
    cuprate: tuple[Path, str], env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    origin, commit = cuprate
    pb = load("cuprated-guix")
    work = tmp_path / "run1" / "work"
    run_all(cuprated_steps(origin, commit), work, env)
    out = work / "src/contrib/guix/out"
    distsrc = f"cuprate-{CUPRATED_VERSION}-{commit[:12]}-src.tar.gz"
    for name in [*CUPRATED_ARTIFACTS, distsrc, f"build-{CUPRATE_TARGET}.log",
                 f"ldd-{CUPRATE_TARGET}.diag.txt"]:  # fmt: skip
        assert (out / name).is_file(), name
    assert (work / "distsrc.path").read_text() == f"{(out / distsrc).resolve()}\n"
    assert git(work / "src", "rev-parse", "HEAD") == commit
    assert (home / ".cache/repro/mirrors/cuprate.git").is_dir()
    described = json.loads((work / pb.guix_describe).read_text())  # type: ignore[operator]
    assert described[0]["commit"] == FIXTURE_GUIX_COMMIT
    found = hashes(pb, work)
    assert set(found) == CUPRATED_ARTIFACTS | {distsrc}
    for name, digest in found.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest

    sums = (out / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split()[1] for line in sums) == sorted(
        [distsrc, f"cuprated-{CUPRATED_VERSION}-{CUPRATE_TARGET}.tar.gz"])  # fmt: skip

    # A second run reuses the mirror and builds the same bytes in another work dir, though this
    # host exports what a miner's or a developer's shell might: none of it reaches the build.
    hostile = {**env, "RANDOMX_ARCH": "native", "RANDOMX_DARCH": "native",
               "SOURCE_DATE_EPOCH": "1", "GUIX_ALLOW_COMMIT_MISMATCH": "1",
               "RUSTFLAGS": "-C target-cpu=native"}  # fmt: skip
    work2 = tmp_path / "run2" / "work"
    run_all(cuprated_steps(origin, commit), work2, hostile)
    assert hashes(pb, work2) == found
    meta = json.loads((work2 / "src/contrib/guix/out/build-metadata.json").read_text())
    assert meta["randomx_arch"] == "default"


def test_checkout_is_a_complete_clone_through_the_persistent_mirror(
    cuprate: tuple[Path, str], env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    origin, first = cuprate
    checkout = cuprated_steps(origin, first)[0]
    old = tmp_path / "old"
    old.mkdir()
    assert run_step(checkout, old, env).returncode == 0
    mirror = home / ".cache/repro/mirrors/cuprate.git"
    inode = mirror.stat().st_ino
    # src/.git is a repository of its own: no worktree link, no alternates into the mirror.
    assert (old / "src/.git").is_dir()
    assert git(old / "src", "rev-parse", "--git-common-dir") == ".git"
    assert not (old / "src/.git/objects/info/alternates").exists()
    assert git(mirror, "worktree", "list", "--porcelain") == f"worktree {mirror}\nbare"
    assert git(old / "src", "remote", "get-url", "origin") == str(origin)
    # A nightly change, only on a pull-request ref (as GitHub serves refs/pull/N/head).
    second = add_pull_request(origin, 615, "nightly change\n")
    new = tmp_path / "new"
    new.mkdir()
    done = run_step(cuprated_steps(origin, second)[0], new, env)
    assert done.returncode == 0, done.stderr
    assert mirror.stat().st_ino == inode  # the same mirror, fetched, not cloned again
    assert git(new / "src", "rev-parse", "HEAD") == second
    # Nothing in src depends on the mirror: it checks out whole with the mirror gone.
    subprocess.run(["rm", "-rf", str(mirror)], check=True, timeout=TIMEOUT)
    git(new / "src", "fsck", "--full", "--strict")
    # Not fresh: the same work dir again is refused, and an unknown commit is named.
    assert "not fresh" in run_step(checkout, new, env).stderr
    other = tmp_path / "other"
    other.mkdir()
    missing = run_step(cuprated_steps(origin, "0" * 40)[0], other, env)
    assert missing.returncode != 0 and "0" * 40 in missing.stderr
    assert not (other / "src").exists()


def test_checkout_waits_for_the_mirror_lock(
    cuprate: tuple[Path, str], env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    """Two runs (or rounds) on one host take turns on the mirror: the second waits."""
    mirrors = home / ".cache/repro/mirrors"
    mirrors.mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    with open(mirrors / "cuprate.git.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        step = cuprated_steps(*cuprate)[0]
        proc = subprocess.Popen(["sh", "-c", step.command], cwd=work, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=1)  # while the lock is held it cannot finish
            assert not (mirrors / "cuprate.git").exists() and not (work / "src").exists()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert git(work / "src", "rev-parse", "HEAD") == cuprate[1]


def test_the_old_worktree_checkout_fails_in_the_container(
    cuprate: tuple[Path, str], env: dict[str, str], tmp_path: Path
) -> None:
    """The checkout this playbook had before: a worktree of the mirror. Its .git names the
    mirror, outside what `guix shell --container` sees, so the PR's scripts fail: the strict
    double catches it (the lenient one let it pass)."""
    origin, commit = cuprate
    work = tmp_path / "work"
    work.mkdir()
    mirror = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "--mirror", "--quiet", "--", str(origin), str(mirror)],
                   check=True, timeout=TIMEOUT, env=env)  # fmt: skip
    subprocess.run(["git", "-C", str(mirror), "worktree", "add", "--detach", "--quiet",
                    str(work / "src"), commit], check=True, timeout=TIMEOUT, env=env)  # fmt: skip
    steps = cuprated_steps(origin, commit)
    distsrc = run_step(steps[1], work, env)
    assert distsrc.returncode != 0
    assert "not a git repository" in distsrc.stderr
    assert not (work / "distsrc.path").exists()


def test_hostile_repo_url_never_runs(
    cuprate: tuple[Path, str], env: dict[str, str], tmp_path: Path
) -> None:
    canary = tmp_path / "pwned"
    url = f"/nonexistent/$(touch {canary})`touch {canary}`"
    steps = render(load("cuprated-guix"), {"repo_url": url, "commit": cuprate[1]})
    work = tmp_path / "work"
    work.mkdir()
    assert run_step(steps[0], work, env).returncode != 0
    assert not canary.exists()


def test_native_guard_fails_the_host_on_native_flags(
    cuprate: tuple[Path, str], env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    write_knob_file(home, GUIX_DOUBLE_NATIVE="1")
    steps = cuprated_steps(*cuprate)
    work = tmp_path / "work"
    run_all(steps[:4], work, env)
    guard = run_step(steps[4], work, env)
    assert guard.returncode == 1
    assert "-march=native" in guard.stderr and "host-CPU" in guard.stderr
    # Without the build log it was asked to check, the guard proves nothing: it fails.
    (work / f"src/contrib/guix/out/build-{CUPRATE_TARGET}.log").unlink()
    gone = run_step(steps[4], work, env)
    assert gone.returncode == 1 and "is missing" in gone.stderr


def test_native_guard_reads_every_log_not_only_cargo_s(
    cuprate: tuple[Path, str], env: dict[str, str], tmp_path: Path
) -> None:
    """A native flag that shows only in guix-mk-distsrc's output (a vendored crate's build
    script, say) is in logs/distsrc.log, not in the out dir: the guard still catches it."""
    origin, _ = cuprate
    script = origin / "contrib/guix/guix-mk-distsrc"
    marker = 'echo "INFO: source archive for'
    text = script.read_text().replace(
        marker, f'echo "   Running cc -march=native -c x.c" >&2\n{marker}'
    )
    script.write_text(text)
    git(origin, "commit", "--quiet", "-am", "a build script that compiles for the host CPU")
    steps = cuprated_steps(origin, git(origin, "rev-parse", "HEAD"))
    work = tmp_path / "work"
    run_all(steps[:4], work, env)
    cargo_log = work / f"src/contrib/guix/out/build-{CUPRATE_TARGET}.log"
    assert "-march=native" not in cargo_log.read_text()
    guard = run_step(steps[4], work, env)
    assert guard.returncode == 1
    assert "logs/distsrc.log:" in guard.stderr.splitlines()[-1]
    clean = tmp_path / "clean"
    run_all(cuprated_steps(*cuprate), clean, env)  # the same guard passes a clean build
    passed = run_step(steps[4], clean, env)
    assert passed.returncode == 0 and "no host-CPU code generation flags in 4 logs" in passed.stdout


def test_distsrc_outside_the_repo_is_refused(
    cuprate: tuple[Path, str], env: dict[str, str], tmp_path: Path
) -> None:
    origin, _ = cuprate
    script = origin / "contrib/guix/guix-mk-distsrc"
    outside = tmp_path / "elsewhere.tar.gz"
    outside.write_bytes(b"not a distsrc")
    script.write_text(f"#!/bin/sh\necho progress\necho {outside}\n")
    git(origin, "commit", "--quiet", "-am", "prints a path outside the repo")
    steps = cuprated_steps(origin, git(origin, "rev-parse", "HEAD"))
    work = tmp_path / "work"
    work.mkdir()
    assert run_step(steps[0], work, env).returncode == 0
    done = run_step(steps[1], work, env)
    assert done.returncode == 1 and "outside the repository" in done.stderr
    assert not (work / "distsrc.path").exists()


def test_guix_generic_steps_build_and_hash_every_listed_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    origin, commit = make_bitcoin_repo(tmp_path / "origin")
    pb = load("guix-generic")
    variables = {"repo_url": str(origin), "commit": commit, "mirror_name": "bitcoin",
                 "hosts": ["x86_64-linux-gnu", "aarch64-linux-gnu"], "jobs": 2}  # fmt: skip
    work = tmp_path / "work"
    run_all(render(pb, variables), work, env)
    found = hashes(pb, work)
    # What Bitcoin's script takes from the caller cannot change the build (see the build step).
    hostile = {**env, "SOURCE_DATE_EPOCH": "1", "FORCE_VERSION": "6.6.6"}
    run_all(render(pb, variables), tmp_path / "hostile", hostile)
    assert hashes(pb, tmp_path / "hostile") == found
    assert set(found) == {
        "dist-archive/bitcoin-0.1.0.tar.gz",
        "x86_64-linux-gnu/bitcoin-0.1.0-x86_64-linux-gnu.tar.gz",
        "aarch64-linux-gnu/bitcoin-0.1.0-aarch64-linux-gnu.tar.gz",
    }
    output = work / "src/guix-build-0.1.0/output"
    for name, digest in found.items():
        assert hashlib.sha256((output / name).read_bytes()).hexdigest() == digest
    canary = tmp_path / "pwned"
    bad = render(pb, {**variables, "hosts": f"x86_64-linux-gnu; touch {canary}", "jobs": "2"})
    other = tmp_path / "other"
    other.mkdir()
    assert run_step(bad[0], other, env).returncode == 0
    refused = run_step(bad[1], other, env)
    assert refused.returncode == 1 and "not a platform triple" in refused.stderr
    assert not canary.exists()


# --- uses: (the shared checkout), preflight's store, --ref ------------------------------------


def test_uses_takes_only_shipped_steps_and_never_with_run(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text("name: x\nsteps:\n  - {name: c, uses: checkout, run: 'true'}\n")
    with pytest.raises(PlaybookError, match="either run: or uses:"):
        load_playbook(both)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("name: x\nsteps:\n  - {name: c, uses: ../../etc/passwd}\n")
    with pytest.raises(PlaybookError, match="not a shipped step"):
        load_playbook(unknown)
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: x\nvars: {repo_url: u, mirror_name: m}\nsteps:\n"
                  "  - {name: c, uses: checkout}\n")  # fmt: skip
    pb = load_playbook(ok)
    # The script's arguments are the playbook's variables: commit is required like any other.
    with pytest.raises(PlaybookError, match="'commit' has no value"):
        render(pb, {})
    assert "{{" not in uses_script("checkout").split("\n", 1)[1]


def test_checkout_script_is_clean_posix_sh() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:  # as tests/test_hostside_lint.py: a missing linter is a failure
        pytest.fail("shellcheck is not installed (scripts/sysdeps.sh installs it)")
    script = Path(__file__).resolve().parent.parent / "repro" / "hostside" / "checkout.sh"
    done = subprocess.run([shellcheck, "-s", "sh", str(script)], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout


def test_preflight_measures_the_store_where_guix_has_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from repro.inventory import Host
    from repro.playbook import Requirements
    from repro.preflight import check
    from repro.transport.local import LocalTransport

    async def problems(disk: dict[str, int]) -> list[str]:
        transport = LocalTransport(Host(name="local", address="localhost", connection="local"))
        await transport.connect()
        try:
            return await check(transport, Requirements(disk=disk), {}, str(tmp_path))
        finally:
            await transport.close()

    monkeypatch.delenv("NIX_STORE_DIR", raising=False)
    assert asyncio.run(problems({"store": 1024})) == []
    [huge] = asyncio.run(problems({"store": 1024**5}))
    # No store on this machine: the file system it would be made on is measured, under its name.
    assert huge.startswith("only ")
    assert huge.endswith(" free in /gnu/store, playbook needs 1024.0 TiB")
    # Guix honours NIX_STORE_DIR; so does preflight (a plain path is shown as it is).
    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.setenv("NIX_STORE_DIR", str(store))
    [moved] = asyncio.run(problems({"store": 1024**5}))
    assert f" free in {store}, playbook needs" in moved
    monkeypatch.setenv("NIX_STORE_DIR", "/x\n/y; evil")
    [odd] = asyncio.run(problems({"store": 1024**5}))
    assert " free in /gnu/store, " in odd


def test_ref_takes_any_ref_the_remote_serves(cuprate: tuple[Path, str]) -> None:
    from repro.errors import UsageError
    from repro.source import resolve_ref

    origin, first = cuprate
    proposed = add_pull_request(origin, 615, "proposed\n")
    git(origin, "tag", "-a", "-m", "release", "cuprated-0.0.9", first)
    assert resolve_ref(str(origin), "pull/615/head") == proposed
    assert resolve_ref(str(origin), "refs/pull/615/head") == proposed
    assert resolve_ref(str(origin), "cuprated-0.0.9") == first  # the peeled tag, not the object
    assert resolve_ref(str(origin), "main") == first
    with pytest.raises(UsageError, match="pull/616/head"):
        resolve_ref(str(origin), "pull/616/head")


def test_docs_examples_set_nothing_the_pure_container_drops(tmp_path: Path) -> None:
    """docs/playbooks.md: no example puts build flags in a step's env (a `--pure` container
    drops them; the project's own scripts set them inside), and the Guix example loads."""
    import re

    import yaml

    docs = (PLAYBOOKS.parent / "docs" / "playbooks.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", docs, flags=re.S)
    dropped = {"SOURCE_DATE_EPOCH", "RUSTFLAGS", "CFLAGS", "CXXFLAGS", "LDFLAGS"}
    steps_seen = 0
    for block in blocks:
        data = yaml.safe_load(block)
        for step in (data or {}).get("steps", []) if isinstance(data, dict) else []:
            steps_seen += 1
            assert not dropped & set(step.get("env") or {}), step
    assert steps_seen >= 5
    example = next(b for b in blocks if b.startswith("name: myapp-guix"))
    (tmp_path / "myapp-guix.yaml").write_text(example)
    pb = load_playbook(tmp_path / "myapp-guix.yaml")
    steps = by_name(render(pb, {"commit": "ab" * 20}))
    assert "\nset -- https://example.org/myapp.git " in steps["checkout"]


def test_docs_name_a_commit_that_has_the_pipeline() -> None:
    """The README's headline run builds Cuprate PR #615's merge commit (the seed's evidence):
    no tag has contrib/guix yet, so `--ref cuprated-0.0.9` could never work."""
    root = PLAYBOOKS.parent
    merge = "dec0bbee5c18f2dc6baae9e9ca7bb0c4d041931d"
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert f"-p playbooks/cuprated-guix.yaml --ref {merge}" in readme
    assert "--ref cuprated-0.0.9" not in readme
    report_doc = (root / "docs" / "report-json.md").read_text(encoding="utf-8")
    assert f'"commit": "{merge}"' in report_doc
    assert '"ref": "cuprated-0.0.9"' not in report_doc
