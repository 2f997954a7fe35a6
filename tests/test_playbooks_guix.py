# Tests of the built-in Guix playbooks, run against the TEST DOUBLE of GNU Guix
# (tests/guix_double) and FIXTURE repositories, following ../shared/reference/pipelines.md.
"""playbooks/{cuprated-guix,guix-generic,smoke}.yaml load, render the documented script calls,
and their rendered steps really run (git mirror, worktree, build, guard, on-host hashing).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from repro.artifacts import hash_command, parse_hash_output
from repro.errors import PlaybookError
from repro.playbook import Playbook, RenderedStep, load_playbook, render
from tests.fixtures.guix_repos import (
    CUPRATE_TARGET,
    CUPRATED_VERSION,
    FIXTURE_GUIX_COMMIT,
    git,
    make_bitcoin_repo,
    write_knob_file,
)

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
TIMEOUT = 120
HOST_VARS = {"inventory_hostname": "builder-1", "ref": "cuprated-0.0.9"}
CUPRATED_ARTIFACTS = {
    f"cuprated-{CUPRATED_VERSION}-{CUPRATE_TARGET}.tar.gz",
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
    assert [s.name for s in pb.steps] == ["checkout", "distsrc", "build", "native-guard"]
    assert pb.vars["commit"] is None and pb.vars["repo_url"].endswith("Cuprate/cuprate.git")
    assert (pb.vars["package"], pb.vars["target"], pb.vars["guix_system"]) == (
        "cuprated",
        CUPRATE_TARGET,
        "x86_64-linux",
    )
    assert pb.requires.commands == ("guix", "git")
    assert pb.requires.disk == {"work": 20 * 1024**3, "tmp": 20 * 1024**3}
    assert pb.guix_describe == "src/contrib/guix/out/guix-describe.json"
    globs = {a.glob for a in pb.artifacts}
    assert "cuprated-*-x86_64-unknown-linux-gnu.tar.gz" in globs
    assert not any("diag" in g or g.endswith(".log") for g in globs)


def test_cuprated_guix_renders_the_documented_invocations() -> None:
    cmds = by_name(cuprated_steps(Path("/srv/cuprate.git"), "ab" * 20))
    checkout = cmds["checkout"]
    assert "mirror=$mirrors/$mirror_name.git" in checkout and "mirror_name=cuprate" in checkout
    assert 'git clone --mirror --quiet -- "$repo_url"' in checkout
    assert "fetch --prune --quiet origin" in checkout and "worktree prune" in checkout
    assert 'worktree add --detach --quiet "$PWD/src" "$commit"' in checkout
    assert "commit=" + "ab" * 20 in checkout and "repo_url=/srv/cuprate.git" in checkout
    assert "./contrib/guix/guix-mk-distsrc x86_64-linux > ../distsrc.stdout" in cmds["distsrc"]
    assert "tail -n 1 ../distsrc.stdout" in cmds["distsrc"]
    assert (
        "./contrib/guix/guix-build --guix-system x86_64-linux --target x86_64-unknown-linux-gnu"
        ' --package cuprated --distsrc "$distsrc"'
    ) in cmds["build"]
    assert "export GUIX_ALLOW_COMMIT_MISMATCH=0;" in cmds["build"]
    assert "export GUIX_SKIP_FENV_WORKAROUND=0;" in cmds["build"]
    assert "grep -nE -- '-march=native|-mcpu=native|target-cpu=native'" in cmds["native-guard"]


def test_values_are_quoted_and_the_commit_is_required() -> None:
    hostile = {"repo_url": "x; touch /tmp/pwned", "commit": "ab" * 20, "guix_system": "a b"}
    cmds = by_name(render(load("cuprated-guix"), hostile, source="builder-1"))
    assert "repo_url='x; touch /tmp/pwned'" in cmds["checkout"]
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
    assert "mirror_name=bitcoin" in by_name(render(pb, variables))["checkout"]


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

    # A second run reuses the mirror and builds the same bytes in another work dir.
    work2 = tmp_path / "run2" / "work"
    run_all(cuprated_steps(origin, commit), work2, env)
    assert hashes(pb, work2) == found


def test_checkout_fetches_new_commits_and_prunes_stale_worktrees(
    cuprate: tuple[Path, str], env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    origin, first = cuprate
    checkout = cuprated_steps(origin, first)[0]
    old = tmp_path / "old"
    old.mkdir()
    assert run_step(checkout, old, env).returncode == 0
    mirror = home / ".cache/repro/mirrors/cuprate.git"
    (origin / "NEWS").write_text("nightly change\n")
    git(origin, "add", "NEWS")
    git(origin, "commit", "--quiet", "-m", "nightly")
    second = git(origin, "rev-parse", "HEAD")
    subprocess.run(["rm", "-rf", str(old)], check=True, timeout=TIMEOUT)
    new = tmp_path / "new"
    new.mkdir()
    done = run_step(cuprated_steps(origin, second)[0], new, env)
    assert done.returncode == 0, done.stderr
    assert git(new / "src", "rev-parse", "HEAD") == second
    worktrees = git(mirror, "worktree", "list", "--porcelain")
    assert str(new / "src") in worktrees and str(old) not in worktrees
    # Not fresh: the same work dir again is refused, and an unknown commit is named.
    assert "not fresh" in run_step(checkout, new, env).stderr
    other = tmp_path / "other"
    other.mkdir()
    missing = run_step(cuprated_steps(origin, "0" * 40)[0], other, env)
    assert missing.returncode != 0 and "0" * 40 in missing.stderr


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
    run_all(steps[:3], work, env)
    guard = run_step(steps[3], work, env)
    assert guard.returncode == 1
    assert "-march=native" in guard.stderr and "host-CPU" in guard.stderr
    # With no log at all the guard proves nothing, so it fails rather than pass silently.
    for log in (work / "src/contrib/guix/out").glob("*.log"):
        log.unlink()
    assert run_step(steps[3], work, env).returncode == 1


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
