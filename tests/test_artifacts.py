"""On-host hashing: `hash_command` really run by /bin/sh in a temp work dir, checked against
hashlib (and the external commands it starts counted); and `parse_hash_output`, which must
refuse every malformed or hostile line.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from repro.artifacts import MAX_OUTPUT, hash_command, parse_hash_output
from repro.paths import safe_name
from repro.errors import PlaybookError, UntrustedOutput
from repro.playbook import ArtifactSpec, ManifestSpec, Playbook, Step
from repro.results import ArtifactHash

H = "a" * 64


def playbook(
    artifacts: list[ArtifactSpec], manifests: list[ManifestSpec] | None = None
) -> Playbook:
    return Playbook(
        path=Path("t.yaml"),
        name="t",
        description="",
        vars={},
        steps=(Step("s", "true"),),
        artifacts=tuple(artifacts),
        manifests=tuple(manifests or ()),
    )


def put(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def expect(data: bytes) -> tuple[str, int]:
    return hashlib.sha256(data).hexdigest(), len(data)


def sh(
    command: str, cwd: Path, *prefix: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, "/bin/sh", "-c", command],
        cwd=cwd, capture_output=True, text=True, timeout=20, check=False, env=env,
    )  # fmt: skip


def run_hash(work: Path, pb: Playbook) -> dict[str, tuple[str, int | None]]:
    result = sh(hash_command(pb), work)
    assert result.returncode == 0, result.stderr
    parsed = parse_hash_output("h1", result.stdout)
    return {name: (a.sha256, a.size) for name, a in parsed.items()}


# --- hash_command, for real ---------------------------------------------------------------------


def test_globs_under_dirs_with_odd_names_subdirs_and_symlinks(tmp_path: Path) -> None:
    work = tmp_path / "work"
    outside = tmp_path / "outside"
    a = put(work / "out" / "a.tar.gz", b"tarball a")
    spaced = put(work / "out" / "with space.tar.gz", b"spaces are fine")
    put(work / "out" / "sub" / "deep.tar.gz", b"not matched: * stays in one segment")
    (work / "out" / "dir.tar.gz").mkdir()  # a directory is not an artifact
    bin1 = put(work / "out" / "sub" / "x.bin", b"\x00\x01binary")
    empty = put(work / "out" / "sub" / "y.bin", b"")
    put(outside / "secret.tar.gz", b"outside the work dir")
    put(outside / "z.bin", b"outside too")
    (work / "out" / "link.tar.gz").symlink_to(outside / "secret.tar.gz")
    (work / "out" / "linkdir").symlink_to(outside)
    top = put(work / "TOP-1.txt", b"top level")
    pb = playbook(
        [
            ArtifactSpec("*.tar.gz", "out"),
            ArtifactSpec("sub/*.bin", "out"),
            ArtifactSpec("linkdir/*.bin", "out"),
            ArtifactSpec("[A-Z]*-?.txt"),
            ArtifactSpec("*.tar.gz", "missing-dir"),
        ]
    )
    assert run_hash(work, pb) == {
        "a.tar.gz": expect(a),
        "with space.tar.gz": expect(spaced),
        "sub/x.bin": expect(bin1),
        "sub/y.bin": expect(empty),
        "TOP-1.txt": expect(top),
    }


def test_a_symlinked_dir_is_not_followed(tmp_path: Path) -> None:
    work = tmp_path / "work"
    put(tmp_path / "elsewhere" / "out" / "x.tar.gz", b"x")
    work.mkdir()
    (work / "out").symlink_to(tmp_path / "elsewhere" / "out")
    (work / "nested").mkdir()
    (work / "nested" / "link").symlink_to(tmp_path / "elsewhere")
    pb = playbook([ArtifactSpec("*.tar.gz", "out"), ArtifactSpec("*.tar.gz", "nested/link/out")])
    assert run_hash(work, pb) == {}


def test_multi_segment_globs_match_exactly_one_dir_per_star(tmp_path: Path) -> None:
    work = tmp_path / "w"
    good = put(work / "guix-build-1.0" / "output" / "x86_64" / "b-1.0.tar.gz", b"good")
    put(work / "guix-build-1.0" / "output" / "x86_64" / "extra" / "c.tar.gz", b"too deep")
    put(work / "guix-build-1.0" / "c.tar.gz", b"too shallow")
    pb = playbook([ArtifactSpec("guix-build-*/output/*/*.tar.gz")])
    assert run_hash(work, pb) == {"guix-build-1.0/output/x86_64/b-1.0.tar.gz": expect(good)}


def test_a_file_matched_twice_is_listed_once(tmp_path: Path) -> None:
    work = tmp_path / "w"
    data = put(work / "out" / "hello", b"hello")
    pb = playbook(
        [ArtifactSpec("hello", "out"), ArtifactSpec("h*", "out"), ArtifactSpec("*", "out")]
    )
    assert run_hash(work, pb) == {"hello": expect(data)}


def test_literal_paths_skip_find_and_keep_its_rules(tmp_path: Path) -> None:
    # Every spec names one path: no find, same answer as find would give.
    work = tmp_path / "w"
    hello = put(work / "out" / "hello", b"hello")
    top = put(work / "f", b"top")
    put(tmp_path / "elsewhere" / "x", b"outside")
    (work / "out" / "link").symlink_to(tmp_path / "elsewhere" / "x")  # a symlinked file
    (work / "d").symlink_to(tmp_path / "elsewhere")  # a symlinked dir: not followed
    (work / "out" / "adir").mkdir()  # a directory is not an artifact
    specs = [ArtifactSpec("hello", "out"), ArtifactSpec("f"), ArtifactSpec("link", "out"),
             ArtifactSpec("x", "d"), ArtifactSpec("adir", "out"), ArtifactSpec("missing"),
             ArtifactSpec("out/hello")]  # the same file under a second name
    pb = playbook(specs)
    assert "find" not in hash_command(pb)
    want = {"hello": expect(hello), "f": expect(top), "out/hello": expect(hello)}
    assert run_hash(work, pb) == want
    # the general command (one glob among them) agrees
    assert run_hash(work, playbook([*specs, ArtifactSpec("nothing-*")])) == want
    env, log = shim_env(tmp_path)
    assert sh(hash_command(pb), work, env=env).returncode == 0
    assert commands_run(log) == Counter({"sha256sum": 1, "wc": 1})


def test_manifests_hash_the_listed_files_by_their_listed_names(tmp_path: Path) -> None:
    work = tmp_path / "w"
    out = work / "guix-build-26.0" / "output"
    tarball = put(out / "x86_64-linux-gnu" / "bitcoin-26.0-x86_64.tar.gz", b"the release")
    debug = put(out / "x86_64-linux-gnu" / "bitcoin-26.0-debug.tar.gz", b"debug symbols")
    put(tmp_path / "outside.tar.gz", b"outside the work dir")
    (out / "x86_64-linux-gnu" / "link.tar.gz").symlink_to(tmp_path / "outside.tar.gz")
    (out / "escape").symlink_to(tmp_path)
    claimed = hashlib.sha256(b"the manifest may be stale").hexdigest()
    lines = [
        f"{claimed}  x86_64-linux-gnu/bitcoin-26.0-x86_64.tar.gz",
        f"{hashlib.sha256(debug).hexdigest()} *x86_64-linux-gnu/bitcoin-26.0-debug.tar.gz\r",
        f"{H}  x86_64-linux-gnu/not-built.tar.gz",
        f"{H}  x86_64-linux-gnu/link.tar.gz",
        f"{H}  escape/outside.tar.gz",
        f"{H}  ../../../outside.tar.gz",
        f"{H}  /etc/hostname",
        "not a hash line at all",
        f"{'g' * 64}  x86_64-linux-gnu/bitcoin-26.0-x86_64.tar.gz",
        "",
    ]
    put(out / "x86_64-linux-gnu" / "SHA256SUMS.part", "\n".join(lines).encode())
    pb = playbook([], [ManifestSpec("guix-build-*/output/*/SHA256SUMS.part", "..")])
    result = sh(hash_command(pb), work)
    assert result.returncode == 0, result.stderr
    got = parse_hash_output("h1", result.stdout)
    assert {n: (a.sha256, a.size) for n, a in got.items()} == {
        "x86_64-linux-gnu/bitcoin-26.0-x86_64.tar.gz": expect(tarball),  # real bytes, not claims
        "x86_64-linux-gnu/bitcoin-26.0-debug.tar.gz": expect(debug),
    }
    assert "unsafe name" in result.stderr and "outside the work dir" in result.stderr


def test_manifest_without_trailing_newline_and_default_base(tmp_path: Path) -> None:
    work = tmp_path / "w"
    data = put(work / "dist" / "src.tar.gz", b"source")
    put(work / "dist" / "SHA256SUMS", f"{H}  src.tar.gz".encode())
    pb = playbook([ArtifactSpec("SHA256SUMS", "dist")], [ManifestSpec("dist/SHA256SUMS")])
    got = run_hash(work, pb)
    assert got["src.tar.gz"] == expect(data)
    assert got["SHA256SUMS"] == expect(f"{H}  src.tar.gz".encode())


def test_nothing_to_hash_prints_nothing(tmp_path: Path) -> None:
    assert run_hash(tmp_path, playbook([])) == {}
    assert run_hash(tmp_path, playbook([ArtifactSpec("*", "out")])) == {}


def test_guarded_by_the_callers_cd(tmp_path: Path) -> None:
    """The runner sends `cd -- WORK && <hash_command>`: a failed cd must stop all of it."""
    put(tmp_path / "x.bin", b"not in the work dir")
    pb = playbook([ArtifactSpec("*.bin")])
    cmd = f"cd -- {shlex.quote(str(tmp_path / 'gone'))} && " + hash_command(pb)
    result = sh(cmd, tmp_path)
    assert result.returncode != 0 and result.stdout == ""


def test_a_name_with_a_newline_is_refused_not_misread(tmp_path: Path) -> None:
    work = tmp_path / "w"
    put(work / "out" / f"evil\n{H} 5 fake.bin", b"x")
    result = sh(hash_command(playbook([ArtifactSpec("*", "out")])), work)
    # Printed as is, the name would forge a valid line for "fake.bin": the command must refuse.
    assert result.returncode != 0 and result.stdout == ""
    assert "newline" in result.stderr


def test_an_unreadable_file_fails_the_command(tmp_path: Path) -> None:
    work = tmp_path / "w"
    put(work / "out" / "ok.bin", b"fine")
    put(work / "out" / "bad.bin", b"unreadable")
    (work / "out" / "bad.bin").chmod(0)
    # root reads anything: drop to nobody so the permission really bites (cwd is set first)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    prefix = nobody if os.getuid() == 0 else []
    result = sh(hash_command(playbook([ArtifactSpec("*.bin", "out")])), work, *prefix)
    assert result.returncode != 0, result.stdout
    assert result.stdout == ""
    assert "bad.bin" in result.stderr


def test_a_file_under_two_dirs_gets_both_names(tmp_path: Path) -> None:
    work = tmp_path / "w"
    data = put(work / "out" / "sub" / "x.bin", b"one file, two specs")
    pb = playbook([ArtifactSpec("sub/*.bin", "out"), ArtifactSpec("*.bin", "out/sub")])
    assert run_hash(work, pb) == {"sub/x.bin": expect(data), "x.bin": expect(data)}


def test_a_file_listed_by_a_manifest_and_matched_by_a_glob_counts_once(tmp_path: Path) -> None:
    work = tmp_path / "w"
    data = put(work / "dist" / "src.tar.gz", b"source")
    put(work / "dist" / "SHA256SUMS", f"{H}  src.tar.gz\n{H}  src.tar.gz\n".encode())
    pb = playbook([ArtifactSpec("*.tar.gz", "dist")], [ManifestSpec("dist/SHA256SUMS")])
    result = sh(hash_command(pb), work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("src.tar.gz") == 3  # the same line, collapsed by the parser
    assert parse_hash_output("h1", result.stdout) == {
        "src.tar.gz": ArtifactHash("src.tar.gz", *expect(data))
    }


def test_names_sha256sum_escapes_are_paired_by_position(tmp_path: Path) -> None:
    """GNU sha256sum escapes a name with a backslash or CR and marks its line with a backslash:
    the hash still goes with the right file, and the parser refuses the name (as it always did).
    """
    work = tmp_path / "w"
    names = ["a.bin", "back\\slash.bin", "car\rriage.bin", "z.bin"]
    data = {name: put(work / "out" / name, name.encode() * 3) for name in names}
    # bytes: text mode would turn the CR into a newline
    done = subprocess.run(
        ["/bin/sh", "-c", hash_command(playbook([ArtifactSpec("*.bin", "out")]))],
        cwd=work, capture_output=True, timeout=20, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    lines = [line.split(" ", 2) for line in text.split("\n")[:-1]]
    assert {name: (sha, int(size)) for sha, size, name in lines} == {
        name: expect(content) for name, content in data.items()
    }
    with pytest.raises(UntrustedOutput, match="not a safe file name"):
        parse_hash_output("h1", text)


def test_unrelated_dirs_are_never_read(tmp_path: Path) -> None:
    """find descends only into dirs a spec can reach: an unreadable dir elsewhere is harmless."""
    work = tmp_path / "w"
    data = put(work / "out" / "x.bin", b"x")
    put(work / "private" / "SHA256SUMS", b"")
    (work / "private").chmod(0)
    (work / "out" / "locked").mkdir()
    (work / "out" / "locked").chmod(0)
    pb = playbook([ArtifactSpec("*.bin", "out")], [ManifestSpec("dist/*/SHA256SUMS")])
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    result = sh(hash_command(pb), work, *(nobody if os.getuid() == 0 else []))
    assert result.returncode == 0, result.stderr
    assert parse_hash_output("h1", result.stdout) == {"x.bin": ArtifactHash("x.bin", *expect(data))}


@pytest.mark.parametrize(
    ("spec", "bad"),
    [
        (ArtifactSpec("]x[/]y["), "glob"),  # a [ ] pair would span the '/' and match it
        (ArtifactSpec("*/[ab/c]"), "glob"),
        (ArtifactSpec("a;b"), "glob"),
        (ArtifactSpec("*", "a b"), "dir"),
        (ArtifactSpec("*", "out/*"), "dir"),
        (ArtifactSpec("*", "../up"), "dir"),
        (ManifestSpec("../SHA256SUMS"), "glob"),
    ],
)
def test_unsafe_specs_are_refused_before_anything_runs(
    spec: ArtifactSpec | ManifestSpec, bad: str
) -> None:
    specs = ([spec], []) if isinstance(spec, ArtifactSpec) else ([], [spec])
    with pytest.raises(PlaybookError, match=bad):
        hash_command(playbook(*specs))


# --- how many processes hashing costs on the host ----------------------------------------------

SHIMMED = ("find", "sh", "sha256sum", "shasum", "wc", "sort", "stat", "cat", "head", "cut", "tr")


def shim_env(tmp_path: Path, commands: tuple[str, ...] = SHIMMED) -> tuple[dict[str, str], Path]:
    """A PATH of only logging wrappers around `commands`: any other command is not found, and
    every one found through PATH leaves its name in the log."""
    shims, log = tmp_path / "shims", tmp_path / "commands.log"
    shims.mkdir()
    for name in commands:
        real = shutil.which(name)
        assert real, f"{name} is not installed"
        wrapper = shims / name
        wrapper.write_text(f'#!/bin/sh\necho {name} >> {shlex.quote(str(log))}\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
    return {"PATH": str(shims), "HOME": str(tmp_path)}, log


def commands_run(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def fleet(work: Path, n: int) -> tuple[Playbook, dict[str, tuple[str, int]]]:
    """`n` files under a glob in one dir, `n` listed by a manifest in another, one top file."""
    want: dict[str, tuple[str, int]] = {}
    listed = []
    for i in range(n):
        want[f"f{i}.bin"] = expect(put(work / "out" / f"f{i}.bin", b"glob %d" % i))
        data = put(work / "rel" / "x86" / f"r{i}.tar.gz", b"listed %d" % i)
        listed.append(f"{hashlib.sha256(data).hexdigest()}  x86/r{i}.tar.gz")
        want[f"x86/r{i}.tar.gz"] = expect(data)
    put(work / "rel" / "x86" / "SHA256SUMS.part", ("\n".join(listed) + "\n").encode())
    want["TOP.txt"] = expect(put(work / "TOP.txt", b"top"))
    pb = playbook(
        [ArtifactSpec("*.bin", "out"), ArtifactSpec("TOP.*")],
        [ManifestSpec("rel/*/SHA256SUMS.part", "..")],
    )
    return pb, want


@pytest.mark.parametrize("n", [1, 3, 20])
def test_any_number_of_files_costs_the_same_few_commands(tmp_path: Path, n: int) -> None:
    work = tmp_path / "w"
    pb, want = fleet(work, n)
    env, log = shim_env(tmp_path)
    result = sh(hash_command(pb), work, env=env)
    assert result.returncode == 0, result.stderr
    got = parse_hash_output("h1", result.stdout)
    assert {name: (a.sha256, a.size) for name, a in got.items()} == want
    # One find, one batch script, one sha256sum and one wc for every file of every spec (the
    # old command started a sha256sum and a wc per file); the rest is shell builtins.
    assert commands_run(log) == Counter({"find": 1, "sh": 1, "sha256sum": 1, "wc": 1})


def test_shasum_is_the_fallback(tmp_path: Path) -> None:
    work = tmp_path / "w"
    pb, want = fleet(work, 3)
    env, log = shim_env(tmp_path, ("find", "sh", "wc", "shasum"))
    result = sh(hash_command(pb), work, env=env)
    assert result.returncode == 0, result.stderr
    got = parse_hash_output("h1", result.stdout)
    assert {name: (a.sha256, a.size) for name, a in got.items()} == want
    assert commands_run(log) == Counter({"find": 1, "sh": 1, "shasum": 1, "wc": 1})


def test_thousands_of_files_cost_a_few_batches(tmp_path: Path) -> None:
    """Past find's argument limit (two batches) and the script's 32 KiB queue, still every
    file, once, hashed right; commands grow with the bytes of names, not with the files."""
    work = tmp_path / "w"
    want = {}
    for i in range(2500):
        name = f"artifact-{i:05d}-{'x' * 40}.bin"
        want[name] = expect(put(work / "out" / name, b"%d" % i))
    env, log = shim_env(tmp_path)
    result = sh(hash_command(playbook([ArtifactSpec("*.bin", "out")])), work, env=env)
    assert result.returncode == 0, result.stderr
    got = parse_hash_output("h1", result.stdout)
    assert {name: (a.sha256, a.size) for name, a in got.items()} == want
    ran = commands_run(log)
    path_bytes = sum(len(f"./out/{name}") + 1 for name in want)
    assert ran["find"] == 1 and 1 <= ran["sh"] <= 3
    assert ran["sha256sum"] == ran["wc"] <= path_bytes // 32768 + ran["sh"]
    assert set(ran) == {"find", "sh", "sha256sum", "wc"}


# --- parse_hash_output ----------------------------------------------------------------------


def test_parse_valid_output() -> None:
    text = f"{H} 0 a.tar.gz\n{'b' * 64} 123456789 dir/with space.bin\n{'c' * 64} 7 ünï.tar\n"
    got = parse_hash_output("h1", text)
    assert got == {
        "a.tar.gz": ArtifactHash("a.tar.gz", H, 0),
        "dir/with space.bin": ArtifactHash("dir/with space.bin", "b" * 64, 123456789),
        "ünï.tar": ArtifactHash("ünï.tar", "c" * 64, 7),
    }
    assert parse_hash_output("h1", "") == {}


BAD_LINES = [
    f"{H.upper()} 1 x",  # uppercase hex
    f"{H[:63]} 1 x",
    f"{H}0 1 x",
    f"{'g' * 64} 1 x",
    f"{H} -1 x",
    f"{H} 1.5 x",
    f"{H} +1 x",
    f"{H} ١ x",  # a non-ASCII digit that int() would accept
    f"{H} 1_000 x",
    f"{H} 123456789012345678901 x",
    f"{H}  1 x",  # double space shifts the fields
    f"{H} 1",
    f"{H} 1 ",  # empty name
    H,
    f"{H} 1 /etc/passwd",
    f"{H} 1 ../x",
    f"{H} 1 a/../../x",
    f"{H} 1 ..",
    f"{H} 1 a\\b",
    f"{H} 1 a\x1b[31mred",
    f"{H} 1 a\x00b",
    f"{H} 1 a\rb",
    f"{H} 1 a\x9bb",  # C1 CSI
    f"{H} 1 evil\u202egz.exe",  # right-to-left override
    f"{H} 1 zero\u200bwidth",
    f"{H} 1 a//b",
    f"{H} 1 ./a",
    f"{H} 1 a/",
    f"{H} 1 {'n' * 256}",
    f"{H} 1 a\udcffb",  # an undecodable byte, as surrogateescape gives it
    "",  # an empty line in the middle
]


@pytest.mark.parametrize("line", BAD_LINES, ids=range(len(BAD_LINES)))
def test_parse_rejects_bad_lines(line: str) -> None:
    text = f"{'b' * 64} 5 fine.bin\n{line}\n{'c' * 64} 6 also-fine.bin\n"
    with pytest.raises(UntrustedOutput) as info:
        parse_hash_output("h1", text)
    assert info.value.host == "h1"
    assert str(info.value).startswith("h1: line 2")
    assert "\x1b" not in str(info.value) and "\u202e" not in str(info.value)


def test_parse_rejects_duplicates() -> None:
    with pytest.raises(UntrustedOutput, match="'x' listed twice"):
        parse_hash_output("h1", f"{H} 1 x\n{'b' * 64} 1 x\n")
    with pytest.raises(UntrustedOutput, match="'x' listed twice"):
        parse_hash_output("h1", f"{H} 1 x\n{H} 2 x\n")


def test_parse_collapses_identical_lines_and_sorts_by_name() -> None:
    got = parse_hash_output("h1", f"{H} 1 z\n{'b' * 64} 2 a\n{H} 1 z\n")
    assert list(got) == ["a", "z"]
    assert got["z"] == ArtifactHash("z", H, 1)


def test_parse_caps_lines_and_size() -> None:
    lines = "".join(f"{H} 1 f{i}\n" for i in range(11))
    assert len(parse_hash_output("h1", lines, max_artifacts=11)) == 11
    with pytest.raises(UntrustedOutput, match="more than 10 artifacts"):
        parse_hash_output("h1", lines, max_artifacts=10)
    with pytest.raises(UntrustedOutput, match="larger than"):
        parse_hash_output("h1", "x" * (MAX_OUTPUT + 1))


def test_a_name_of_255_characters_is_fine() -> None:
    name = "n" * 255
    assert parse_hash_output("h1", f"{H} 1 {name}")[name].size == 1


@pytest.mark.parametrize(
    "name", ["a", "a/b.tar.gz", "with space", "-leading-dash", "...", "a..b", "ünï/✓"]
)
def test_safe_name_accepts(name: str) -> None:
    assert safe_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "/a", "..", "a/..", "../a", "a/../b", ".", "a/./b", "a//b", "a/", "a\\b", "a\nb",
     "a\tb", "\x7f", "\u2066isolate", "x" * 256],
)  # fmt: skip
def test_safe_name_rejects(name: str) -> None:
    assert not safe_name(name)


def test_literal_paths_are_hashed_in_the_callers_own_shell(tmp_path: Path) -> None:
    """The usual few literal artifacts: hashed by the shell that runs the command (on a host,
    the supervisor's subshell for the step), no `$(…)` process around it; its tools are its
    own children. A batch still prints all or nothing."""
    work = tmp_path / "w"
    data = put(work / "out" / "a.bin", b"a")
    pb = playbook([ArtifactSpec("a.bin", "out"), ArtifactSpec("f")])
    put(work / "f", b"f")
    shims, log = tmp_path / "shims", tmp_path / "parents.log"
    shims.mkdir()
    for name in ("sha256sum", "wc"):
        real = shutil.which(name)
        assert real
        (shims / name).write_text(
            f'#!/bin/sh\necho "{name} $PPID" >> {shlex.quote(str(log))}\nexec {real} "$@"\n'
        )
        (shims / name).chmod(0o755)
    env = {"PATH": f"{shims}:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        ["/bin/sh", "-c", hash_command(pb)], cwd=work, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert parse_hash_output("h1", out)["a.bin"] == ArtifactHash("a.bin", *expect(data))
    # each tool ran in a `$(…)` of the calling shell: its parent is that shell, nothing between
    parents = [line.split() for line in log.read_text().splitlines()]
    assert sorted(n for n, _ in parents) == ["sha256sum", "wc"]
    assert {int(p) for _, p in parents} == {proc.pid}, (parents, proc.pid)
    # an artifact that cannot be read: nothing printed, a failure
    if os.getuid() == 0:
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        work.chmod(0o755)
        (work / "out").chmod(0o755)
        (work / "f").chmod(0o644)
        (work / "out" / "a.bin").chmod(0)
        result = sh(hash_command(pb), work, *nobody)
    else:
        (work / "out" / "a.bin").chmod(0)
        result = sh(hash_command(pb), work)
    assert result.returncode != 0 and result.stdout == "", result


def test_many_literal_paths_are_hashed_in_batches_all_or_nothing(tmp_path: Path) -> None:
    """Literal paths beyond half a batch go in a `$(…)`, as find's batches do: every one is
    hashed, and one that cannot be read leaves the output empty."""
    work = tmp_path / "w"
    names = [f"{'d' * 180}{i:03d}" for i in range(100)]  # 18 KB of paths: over half a batch
    want = {n: expect(put(work / n, n.encode())) for n in names}
    pb = playbook([ArtifactSpec(n) for n in names])
    assert hash_command(pb).startswith("{ out=$(")
    assert run_hash(work, pb) == want
    (work / names[-1]).unlink()
    (work / names[-1]).mkdir()  # not a regular file: skipped, the rest hashed
    assert len(run_hash(work, pb)) == len(names) - 1
