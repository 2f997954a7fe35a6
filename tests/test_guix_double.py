# Tests of the TEST DOUBLE of GNU Guix (tests/guix_double) and the FIXTURE repositories
# (tests/fixtures/guix_repos.py), following ../shared/reference/pipelines.md.
"""The guix double and the fixture contrib/guix scripts behave as the real interface says.

Everything runs for real: git, the double's time-machine/shell, gcc, tar, in tmp_path clones.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest

from repro.facts import _guix_version

from tests.fixtures.guix_repos import (
    BITCOIN_FIXTURE_GUIX_COMMIT,
    CUPRATE_TARGET,
    CUPRATED_VERSION,
    FIXTURE_GUIX_COMMIT,
    git,
    make_bitcoin_repo,
    make_cuprate_repo,
    require_containers,
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


def test_missing_containers_skip_or_fail_in_ci() -> None:
    require_containers(None, required=True)  # containers here: nothing happens
    with pytest.raises(pytest.skip.Exception, match="no bwrap"):
        require_containers("no bwrap", required=False)
    with pytest.raises(pytest.fail.Exception, match="REPRO_REQUIRE_NETNS=1.*no bwrap"):
        require_containers("no bwrap", required=True)


def test_fixture_commit_is_stable(tmp_path: Path) -> None:
    _, first = make_cuprate_repo(tmp_path / "a")
    _, second = make_cuprate_repo(tmp_path / "b")
    assert first == second and len(first) == 40


def test_version_formats(env: dict[str, str], home: Path, cuprate: tuple[Path, str]) -> None:
    def version(e: dict[str, str], *pre: str) -> str:
        out = run(["guix", *pre, "--version"], cwd=cuprate[0], env=e).stdout.splitlines()
        assert any("TEST DOUBLE" in line for line in out)
        return out[0]

    # After `guix pull`: the channel commit; a distribution's guix: its release or snapshot.
    assert version(env) == "guix (GNU Guix) 0ee6fa5a652a01699cb7d49a69d2aeeccf4d95e5"
    for shipped in ("1.4.0", "1.3.0.27848-a3264"):
        line = version({**env, "GUIX_DOUBLE_VERSION": shipped})
        assert line == f"guix (GNU Guix) {shipped}"
        assert _guix_version(line) == shipped  # what `repro facts` reports
    # Under time-machine it is the pinned Guix speaking.
    pinned = version({**env, "GUIX_DOUBLE_VERSION": "1.4.0"}, "time-machine", "-C",
                     "contrib/guix/channels.scm", "--")  # fmt: skip
    assert pinned == f"guix (GNU Guix) {FIXTURE_GUIX_COMMIT}"


def test_describe_json_has_guix_shape(env: dict[str, str], tmp_path: Path) -> None:
    out = run(["guix", "describe", "--format=json"], tmp_path, env).stdout
    # guile-json's compact output; name, url, commit and the introduction; no branch.
    assert out == (
        '[{"name":"guix","url":"https://git.guix.gnu.org/guix.git",'
        '"commit":"0ee6fa5a652a01699cb7d49a69d2aeeccf4d95e5","introduction":'
        '{"commit":"9edb3f66fd807b096b48283debdcddccfea34bad",'
        '"signer":"BBB0 2DDF 2CEA F6A8 0D1D  E643 A2A0 6DF2 A33A 54FA"}}]\n'
    )
    assert run(["guix", "describe", "-f", "json"], tmp_path, env).stdout == out
    run(["guix", "describe", "--format=yaml"], tmp_path, env, expect=1)
    run(["guix", "describe", "--frob"], tmp_path, env, expect=1)


def test_describe_fails_as_a_distribution_guix_does(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    write_knob_file(home, GUIX_DOUBLE_NO_ORIGIN="1", GUIX_DOUBLE_VERSION="1.4.0")
    done = run(["guix", "describe", "--format=json"], tmp_path, env, expect=1)
    assert done.stdout == ""
    assert done.stderr.startswith("guix describe: error: failed to determine origin\n")
    assert "1.4.0" in done.stderr


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


def test_time_machine_takes_the_options_pipelines_use(
    env: dict[str, str], cuprate: tuple[Path, str]
) -> None:
    repo, _ = cuprate

    def described(*opts: str) -> dict[str, object]:
        done = run(["guix", "time-machine", *opts, "--", "describe", "--format=json"], repo, env)
        channels = json.loads(done.stdout)
        assert len(channels) == 1 and set(channels[0]) <= {"name", "url", "commit", "introduction"}
        return dict(channels[0])

    pinned = described("-C", "contrib/guix/channels.scm", "--no-grafts")
    assert pinned["commit"] == FIXTURE_GUIX_COMMIT
    assert pinned["introduction"] == {"commit": "9edb3f66fd807b096b48283debdcddccfea34bad",
        "signer": "BBB0 2DDF 2CEA F6A8 0D1D  E643 A2A0 6DF2 A33A 54FA"}  # fmt: skip
    by_commit = described(f"--commit={BITCOIN_FIXTURE_GUIX_COMMIT}")
    assert by_commit["commit"] == BITCOIN_FIXTURE_GUIX_COMMIT
    # A tag or a branch names a commit (the double derives a stable one from the name).
    by_tag = described("--commit=v1.4.0", "--disable-authentication", "--cores=2")
    assert re.fullmatch(r"[0-9a-f]{40}", str(by_tag["commit"]))
    assert described("--commit", "v1.4.0")["commit"] == by_tag["commit"]
    assert described("--branch=master", "--url=https://git.guix.gnu.org/guix.git", "-q")["commit"]
    missing = run(["guix", "time-machine", "-C", "nope.scm", "--", "describe"], repo, env, 1)
    assert "nope.scm" in missing.stderr
    for bad in (["--frobnicate"], ["--cores=many"], ["-C", "contrib/guix/channels.scm",
                "--commit=v1"], ["--substitute-urls=ftp://x"]):  # fmt: skip
        run(["guix", "time-machine", *bad, "--", "describe"], repo, env, expect=1)


# --- guix shell: the environment -------------------------------------------------------------

SHELL = ["guix", "shell", "-m", "contrib/guix/manifest.scm"]


def test_container_environment_is_guix_s(
    env: dict[str, str], cuprate: tuple[Path, str]
) -> None:
    repo, _ = cuprate
    caller = {**env, "LEAKY": "1", "TERM": "xterm", "TZ": "UTC", "LC_ALL": "C.UTF-8",
              "RANDOMX_ARCH": "native"}  # fmt: skip
    done = run([*SHELL, "--container", "--pure", "--", "env"], repo, caller)
    seen = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert seen.pop("PWD") == str(repo)  # bubblewrap sets it; Guix leaves it to the shell
    # Everything cleared, then exactly what Guix sets (guix/scripts/environment.scm).
    assert set(seen) == {"TMPDIR", "TEMPDIR", "TMP", "TEMP", "PS1", "USER", "LOGNAME", "HOME",
                         "PATH", "GUIX_ENVIRONMENT"}  # fmt: skip
    assert seen["TMPDIR"] == "/tmp" and seen["HOME"] != env["HOME"]
    profile = seen["GUIX_ENVIRONMENT"]
    assert re.fullmatch(r"/gnu/store/[0-9a-z]{32}-profile", profile)
    assert seen["PATH"] == f"{profile}/bin:{profile}/sbin"
    kept = run([*SHELL, "--container", "--preserve=^LEAKY$", "-E", "^TERM$", "--", "env"], repo,
               caller).stdout.splitlines()  # fmt: skip
    assert "LEAKY=1" in kept and "TERM=xterm" in kept and "LC_ALL=C.UTF-8" not in kept


def test_pure_without_container_keeps_only_precious_variables(
    env: dict[str, str], cuprate: tuple[Path, str]
) -> None:
    repo, _ = cuprate
    caller = {**env, "LEAKY": "1", "TERM": "xterm", "PAGER": "less", "LC_ALL": "C.UTF-8"}
    seen = dict(line.split("=", 1) for line in
                run([*SHELL, "--pure", "--", "env"], repo, caller).stdout.splitlines())  # fmt: skip
    assert seen["TERM"] == "xterm" and seen["PAGER"] == "less" and seen["HOME"] == env["HOME"]
    assert "LEAKY" not in seen and "LC_ALL" not in seen
    assert seen["PATH"] == f"{seen['GUIX_ENVIRONMENT']}/bin"
    mixed = run([*SHELL, "--", "env"], repo, caller).stdout.splitlines()
    assert "LEAKY=1" in mixed  # not pure: the caller's environment stays


def test_only_the_manifest_s_commands_are_on_path(
    env: dict[str, str], cuprate: tuple[Path, str]
) -> None:
    repo, _ = cuprate
    shell = [*SHELL, "--container", "--"]
    ok = run([*shell, "sh", "-c", "command -v git gcc tar sha256sum sh"], repo, env).stdout
    assert len(ok.splitlines()) == 5
    # Not in the manifest: Guix's gcc-toolchain has no `cc`, and nothing provides curl or guix.
    for missing in ("cc", "curl", "guix", "python3", "make"):
        inside = run([*shell, "sh", "-c", f"{missing} --version"], repo, env, expect=127)
        assert "command not found" in inside.stderr
        direct = run([*shell, missing], repo, env, expect=127)
        assert direct.stderr.startswith(f"guix shell: error: {missing}: command not found")
    # No /usr/bin in a Guix container: a `#!/usr/bin/env` script fails there too.
    assert run([*shell, "sh", "-c", "test -e /usr/bin/env"], repo, env, expect=1)
    extra = run(["guix", "shell", "--container", "coreutils", "make", "--", "sh", "-c",
                 "command -v make"], repo, env, expect=None)  # fmt: skip
    assert extra.returncode == 127  # bash is not in that profile, so there is no `sh`
    run(["guix", "shell", "--container", "no-such-package", "--", "true"], repo, env, expect=1)


# --- guix shell --container: what it sees ----------------------------------------------------


def test_container_sees_only_cwd_and_mappings(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    repo, _ = cuprate
    other = tmp_path / "other"
    (other / "ro").mkdir(parents=True)
    (other / "rw").mkdir()
    (other / "secret.txt").write_text("host only\n")
    shell = [*SHELL, "--container"]
    inside = f"test -e {other}/secret.txt || echo hidden; pwd; touch made-inside"
    done = run([*shell, "--", "sh", "-c", inside], repo, env)
    assert done.stdout.splitlines() == ["hidden", str(repo)]
    assert (repo / "made-inside").is_file()
    # --expose is read-only, --share read-write, SRC=DST remaps.
    mapped = (f"--expose={other}/ro=/srv/ro", f"--share={other}/rw=/srv/rw")
    script = "touch /srv/rw/new && ! touch /srv/ro/new 2>/dev/null && echo mapped"
    assert run([*shell, *mapped, "--", "sh", "-c", script], repo, env).stdout == "mapped\n"
    assert (other / "rw/new").is_file() and not (other / "ro/new").exists()
    # --no-cwd: the current directory is not there; the command starts in the empty HOME.
    script = f"test -e {repo}/LICENSE || echo no-cwd; pwd; ls -A"
    no_cwd = run([*shell, "--no-cwd", "--", "sh", "-c", script], repo, env).stdout.splitlines()
    assert no_cwd[0] == "no-cwd" and no_cwd[1] != str(repo) and no_cwd[2:] == []
    run(["guix", "shell", "--no-cwd", "--", "true"], repo, env, expect=1)  # needs --container
    for unimplemented in ("--emulate-fhs", "--user=alice", "-P"):
        refused = run([*shell, unimplemented, "--", "true"], repo, env, expect=1)
        assert "does not implement" in refused.stderr
    run([*shell, "--share=/nonexistent-dir=/x", "--", "true"], repo, env, expect=1)


def test_writes_outside_the_shares_never_reach_the_host(
    env: dict[str, str], home: Path, cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    repo, _ = cuprate
    exposed = tmp_path / "exposed"
    exposed.mkdir()
    script = (f'touch "$HOME/in-home" /made-in-root {home}/knob {tmp_path}/beside; '
              f"touch {exposed}/x 2>/dev/null && echo wrote-exposed; echo done")  # fmt: skip
    done = run([*SHELL, "--container", f"--expose={exposed}", "--", "sh", "-c", script], repo,
               env, expect=None)  # fmt: skip
    assert "wrote-exposed" not in done.stdout
    for path in (home / "in-home", home / "knob", tmp_path / "beside", exposed / "x"):
        assert not path.exists(), path
    assert not Path("/made-in-root").exists()


def test_container_tmp_is_private_and_small(
    env: dict[str, str], cuprate: tuple[Path, str]
) -> None:
    repo, _ = cuprate
    small = {**env, "GUIX_DOUBLE_TMPFS_SIZE": "1M"}
    script = "df -P /tmp | tail -n 1; ls -A /tmp; head -c 2000000 /dev/zero > /tmp/big"
    done = run([*SHELL, "--container", "--", "sh", "-c", script], repo, small, expect=None)
    # The PR's lesson: the container's /tmp is a tmpfs of its own, and it fills up.
    assert done.returncode != 0 and "No space left on device" in done.stderr
    df, *listing = done.stdout.splitlines()
    assert df.startswith("tmpfs ") and " 1024 " in f" {df} "
    assert listing == [] or all(str(repo).startswith(f"/tmp/{name}") for name in listing)


def test_no_network_unless_asked(env: dict[str, str], cuprate: tuple[Path, str]) -> None:
    repo, _ = cuprate
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        probe = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"
        isolated = run([*SHELL, "--container", "--", "bash", "-c", probe], repo, env, expect=None)
        assert isolated.returncode != 0 and "connected" not in isolated.stdout
        shared = run([*SHELL, "--container", "--network", "--", "bash", "-c", probe], repo, env)
        assert shared.stdout == "connected\n"


def test_git_in_a_worktree_whose_git_dir_is_outside_fails(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    origin, commit = cuprate
    mirror = tmp_path / "mirror.git"
    run(["git", "clone", "--quiet", "--mirror", str(origin), str(mirror)], tmp_path, env)
    worktree = tmp_path / "wt"
    run(["git", "-C", str(mirror), "worktree", "add", "--quiet", "--detach", str(worktree),
         commit], tmp_path, env)  # fmt: skip
    assert (worktree / ".git").is_file()  # "gitdir: <mirror>/worktrees/wt", outside the cwd
    inside = [*SHELL, "--container", "--", "git", "rev-parse", "HEAD"]
    failed = run(inside, worktree, env, expect=128)
    assert "not a git repository" in failed.stderr
    # Exposing the git dir is what Bitcoin's script does; a complete clone needs nothing.
    exposed = [*SHELL, "--container", f"--expose={mirror}", "--", "git", "rev-parse", "HEAD"]
    assert run(exposed, worktree, env).stdout.strip() == commit
    whole = tmp_path / "whole"
    run(["git", "clone", "--quiet", "--no-local", str(mirror), str(whole)], tmp_path, env)
    assert run(inside, whole, env).stdout.strip() == commit


def test_gc_reports_a_daemon_unless_told_not_to(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    assert "current-guix" in run(["guix", "gc", "--list-roots"], tmp_path, env).stdout
    gone = run(["guix", "gc", "--list-roots"], tmp_path, {**env, "GUIX_DOUBLE_NO_DAEMON": "1"}, 1)
    assert "daemon-socket" in gone.stderr
    write_knob_file(home, GUIX_DOUBLE_NO_DAEMON="1")
    run(["guix", "gc", "--list-roots"], tmp_path, env, expect=1)
    run(["guix", "time-machine", "-C", "x.scm", "--", "describe"], tmp_path, env, expect=1)
    run(["guix", "shell", "--container", "--", "true"], tmp_path, env, expect=1)


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
    # Bitcoin's real container flags: the repository at /bitcoin, not at its own path.
    script = (repo / "contrib/guix/guix-build").read_text()
    assert '--no-cwd \\\n        --share="$PWD"=/bitcoin' in script
    assert "--expose=" not in script  # a checkout must be whole without the git dir exposed
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


def test_builds_never_need_the_container_tmp(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    # The PR's fix: TMPDIR is contrib/guix/.work in the repository, so a tiny /tmp is fine.
    out = build(clone(cuprate[0], tmp_path / "a", env), {**env, "GUIX_DOUBLE_TMPFS_SIZE": "64K"})
    assert (out / ARTIFACT).is_file()


def test_randomx_arch_from_the_caller_reaches_the_build(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    # As in the PR: guix-build passes the caller's RANDOMX_ARCH into the pure container.
    out = build(clone(cuprate[0], tmp_path / "a", env), {**env, "RANDOMX_ARCH": "native"})
    assert "-march=native" in (out / f"build-{CUPRATE_TARGET}.log").read_text()
    assert json.loads((out / "build-metadata.json").read_text())["randomx_arch"] == "native"


def test_bitcoin_script_honours_the_caller_s_epoch_and_version(
    env: dict[str, str], tmp_path: Path
) -> None:
    origin, _ = make_bitcoin_repo(tmp_path / "origin")
    repo = clone(origin, tmp_path / "a", env)
    hostile = {**env, "HOSTS": "x86_64-linux-gnu", "FORCE_VERSION": "9.9",
               "SOURCE_DATE_EPOCH": "1"}  # fmt: skip
    run(["./contrib/guix/guix-build"], repo, hostile)
    output = repo / "guix-build-9.9/output/x86_64-linux-gnu"
    assert (output / "bitcoin-9.9-x86_64-linux-gnu.tar.gz").is_file()


def test_the_pr_s_enospc_lesson(
    env: dict[str, str], cuprate: tuple[Path, str], tmp_path: Path
) -> None:
    """Before the PR's fix, the build's temporary files went to the container's /tmp, a tmpfs
    that filled up on cloud runners. The double's /tmp is small too: that build fails here."""
    origin, _ = cuprate
    script = origin / "contrib/guix/guix-build"
    script.write_text(script.read_text().replace('env TMPDIR="$work" ', "env "))
    git(origin, "commit", "--quiet", "-am", "build in the container's /tmp")
    repo = clone(origin, tmp_path / "a", env)
    distsrc = mk_distsrc(repo, env)
    done = run(["./contrib/guix/guix-build", "--distsrc", str(distsrc)], repo,
               {**env, "GUIX_DOUBLE_TMPFS_SIZE": "16K"}, expect=None)  # fmt: skip
    assert done.returncode != 0 and "No space left on device" in done.stderr
