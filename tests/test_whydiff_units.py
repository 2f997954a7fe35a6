"""The pieces of "why it differs" on their own: attribution's rules, --vary's values, safe
local names for fetched copies, the stdlib fallback's archive members, records read back."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from repro import variations
from repro.attribution import MASK, Attribution, attribute, is_secret, masked, profile
from repro.diffoscope import Member, members_from_json, stdlib_members
from repro.errors import ReportError, UsageError
from repro.explain import Why
from repro.fetch import Copy, Wanted, candidates, checked_relpath, local_name, locate_command
from repro.playbook import load_playbook
from repro.records import from_plain, plain
from repro.results import ArtifactHash

REPO = Path(__file__).resolve().parent.parent
SHA = "a" * 64


def prof(**values: str) -> dict[tuple[str, str], str]:
    return {tuple(k.split("__")): v for k, v in values.items()}  # type: ignore[misc]


# --- attribution -----------------------------------------------------------------------------


def test_one_factor_constant_within_groups_and_different_between_reads_differs_by() -> None:
    profiles = {
        "w1": prof(variable__SOURCE_DATE_EPOCH="(unset)", fact__cpu_vendor="Intel", fact__hostname="w1"),
        "w2": prof(variable__SOURCE_DATE_EPOCH="(unset)", fact__cpu_vendor="AMD", fact__hostname="w2"),
        "w3": prof(variable__SOURCE_DATE_EPOCH="1700000000", fact__cpu_vendor="AMD", fact__hostname="w3"),
    }  # fmt: skip
    att = attribute([["w1", "w2"], ["w3"]], profiles)
    # cpu_vendor is not constant within w1+w2; hostname differs on every host: neither counts
    assert att.wording == "differs by"
    assert [(f.kind, f.name, f.values) for f in att.factors] == [
        ("variable", "SOURCE_DATE_EPOCH", (("w1, w2", "(unset)"), ("w3", "1700000000")))
    ]


def test_several_factors_read_consistent_with_never_caused_by() -> None:
    profiles = {
        "a": prof(fact__cpu_vendor="Intel", fact__microarch="Sapphire Rapids"),
        "b": prof(fact__cpu_vendor="Intel", fact__microarch="Sapphire Rapids"),
        "c": prof(fact__cpu_vendor="AMD", fact__microarch="Zen 4"),
    }
    att = attribute([["a", "b"], ["c"]], profiles)
    assert att.wording == "consistent with"
    assert [f.name for f in att.factors] == ["cpu_vendor", "microarch"]


def test_values_unique_to_every_host_count_only_when_nothing_else_does() -> None:
    profiles = {
        "a": prof(fact__hostname="a", **{"build-env__home": "/home/a"}),
        "b": prof(fact__hostname="b", **{"build-env__home": "/home/b"}),
        "c": prof(fact__hostname="c", **{"build-env__home": "/home/c"}),
    }
    att = attribute([["a"], ["b"], ["c"]], profiles)
    assert att.wording == "consistent with"
    assert {f.name for f in att.factors} == {"hostname", "home"}
    assert all(f.on_every_host for f in att.factors)
    assert "only values that differ on every host" in att.note
    # with something the groups share, the host-unique ones drop out
    for name, kernel in (("a", "6.1"), ("b", "6.1"), ("c", "6.8")):
        profiles[name][("fact", "kernel")] = kernel
    att = attribute([["a", "b"], ["c"]], profiles)
    assert (att.wording, [f.name for f in att.factors]) == ("differs by", ["kernel"])


def test_nothing_lines_up_is_unexplained() -> None:
    profiles = {"a": prof(fact__kernel="6.1"), "b": prof(fact__kernel="6.1")}
    att = attribute([["a"], ["b"]], profiles)
    assert (att.wording, att.factors) == ("unexplained", ())
    assert "nondeterminism in the build itself" in att.note


def test_a_factor_must_differ_between_every_two_groups() -> None:
    profiles = {"a": prof(fact__kernel="6.1"), "b": prof(fact__kernel="6.8"),
                "c": prof(fact__kernel="6.8")}  # fmt: skip
    # groups b and c share a kernel: it does not tell them apart
    assert attribute([["a"], ["b"], ["c"]], profiles).factors == ()


def test_secrets_are_masked_and_never_compared() -> None:
    assert is_secret("ansible_password") and is_secret("ansible_become_pass")
    assert is_secret("github_token") and is_secret("signing_key", declared=["signing_key"])
    assert not is_secret("prefix_map") and not is_secret("epoch")
    shown = masked({"ansible_ssh_pass": "hunter2", "release_key": "x", "jobs": 4}, ["release_key"])
    assert shown == {"ansible_ssh_pass": MASK, "jobs": 4, "release_key": MASK}
    p = profile({}, shown, {}, "")
    assert ("variable", "ansible_ssh_pass") not in p and ("variable", "release_key") not in p


def test_profile_reads_facts_build_env_axes_and_skips_connection_vars() -> None:
    facts = {"cpu_vendor": "AMD", "isa": ["avx2", "sha_ni"], "build_env": {"umask": "0022"},
             "free_work_bytes": 123}  # fmt: skip
    p = profile(facts, {"ansible_host": "10.0.0.1", "prefix_map": False}, {"tz": "UTC"}, "/w")
    assert p == {
        ("axis", "tz"): "UTC",
        ("variable", "prefix_map"): "false",
        ("build-env", "umask"): "0022",
        ("build-env", "build path"): "/w",
        ("fact", "cpu_vendor"): "AMD",
        ("fact", "isa"): "avx2 sha_ni",
    }


# --- variations ------------------------------------------------------------------------------


def test_vary_parses_known_axes_in_a_fixed_order() -> None:
    assert variations.parse("tz,build-path") == ("build-path", "tz")
    assert variations.parse("none") == () and variations.parse(None) == ()
    with pytest.raises(UsageError, match="'cpu': not an axis"):
        variations.parse("umask,cpu")


def test_every_host_and_round_gets_its_own_value() -> None:
    plan = variations.plan(("umask", "tz", "jobs", "home", "build-path"), ["a", "b", "c"], 2)
    for axis in ("umask", "tz", "jobs", "home"):
        seen = [r[axis] for h in "abc" for r in plan[h]]
        assert len(set(seen)) == 6, (axis, seen)
    # the build path goes per host: rounds build in their own work dirs anyway
    assert [r["build-path"] for r in plan["b"]] == ["b2", "b2"]
    assert len({variations.value("tz", k) for k in range(27)}) == 27


def test_prelude_quotes_and_exports() -> None:
    text = variations.prelude({"umask": "0002", "tz": "Etc/GMT+7", "locale": "C", "jobs": "3",
                               "home": "/nonexistent/repro-home-2"})  # fmt: skip
    done = subprocess.run(
        ["sh", "-c", text + 'umask; echo "$TZ|$LANG|$LC_ALL|$MAKEFLAGS|$DEB_BUILD_OPTIONS|$HOME"'],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.split("\n")[:2] == [
        "0002", "Etc/GMT+7|C|C|-j3|parallel=3|/nonexistent/repro-home-2"
    ]  # fmt: skip


# --- fetch: names and paths we make, never a host's ---------------------------------------------


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "a/../../b", ".hidden", "x\x1b[31m.deb", "é/ü.tar.gz", "-rf"]
)
def test_local_names_stay_under_diff_and_use_safe_characters(name: str) -> None:
    w = Wanted(name, "lab-1.x", 2, ArtifactHash(name, SHA, 1), "round 2")
    rel = local_name(3, w)
    parts = rel.split("/")
    assert parts[0] == "diff" and len(parts) == 3
    assert all(p not in ("", ".", "..") and not p.startswith(".") for p in parts)
    assert all(ch.isascii() and (ch.isalnum() or ch in "._+-/") for ch in rel)
    assert parts[2].startswith("round2-lab-1.x-")


def test_located_paths_must_be_plain_and_inside_the_work_dir() -> None:
    assert checked_relpath("out/hello\n") == "out/hello"
    assert checked_relpath("sub/../base/x.deb\n") == "base/x.deb"
    for bad in ("../x\n", "/etc/passwd\n", "a\nb\n", "out/\x1b]0;x\n", "..\n"):
        assert checked_relpath(bad) is None, bad


def test_locate_command_finds_spec_and_manifest_files(tmp_path: Path) -> None:
    pb_file = tmp_path / "pb.yaml"
    pb_file.write_text(
        "name: t\nsteps: [{name: s, run: 'true'}]\n"
        "artifacts: [{glob: '*.tar.gz', dir: out}]\n"
        "manifests: [{glob: 'sums/*.SHA256SUMS', base: ..}]\n"
    )
    pb = load_playbook(pb_file)
    assert candidates(pb, "a.tar.gz") == ["out/a.tar.gz"] and candidates(pb, "x/a.tar.gz") == []
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.tar.gz").write_bytes(b"x")
    (tmp_path / "sums").mkdir()
    (tmp_path / "sums" / "v1.SHA256SUMS").write_text(f"{SHA}  bin/it's.zip\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "it's.zip").write_bytes(b"y")
    for name, want in (("a.tar.gz", "out/a.tar.gz"), ("bin/it's.zip", "sums/../bin/it's.zip")):
        done = subprocess.run(["sh", "-c", locate_command(pb, name)], cwd=tmp_path,
                              capture_output=True, text=True)  # fmt: skip
        assert (done.returncode, done.stdout) == (0, want + "\n")
        assert checked_relpath(done.stdout) == want.replace("sums/../", "")
    done = subprocess.run(["sh", "-c", locate_command(pb, "gone.tar.gz")], cwd=tmp_path)
    assert done.returncode == 1


# --- diffoscope's json and the stdlib fallback ---------------------------------------------------


def _tar(path: Path, files: dict[str, bytes], mtime: int = 0) -> None:
    with tarfile.open(path, "w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            t.addfile(info, io.BytesIO(data))


def test_stdlib_members_of_two_tarballs(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    _tar(a, {"same": b"1", "changed": b"old", "gone": b"x"})
    _tar(b, {"same": b"1", "changed": b"new", "added": b"y"})
    members, truncated = stdlib_members(a, b)
    assert not truncated
    assert {(m.path, m.kind) for m in members} == {
        (("added",), "only in one"), (("changed",), "content"), (("gone",), "only in one")
    }  # fmt: skip
    _tar(b, {"same": b"1", "changed": b"old", "gone": b"x"}, mtime=5)
    assert [(m.path, m.kind) for m in stdlib_members(a, b)[0]] == [
        (("changed",), "metadata"), (("gone",), "metadata"), (("same",), "metadata")
    ]  # fmt: skip
    plain_file = tmp_path / "x.bin"
    plain_file.write_bytes(b"not an archive")
    assert stdlib_members(plain_file, a) == ((), False)


def test_stdlib_members_of_a_deb(tmp_path: Path) -> None:
    debs = []
    for i, epoch in enumerate(("1700000000", "1700000500")):
        root = tmp_path / f"pkg{i}"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "usr" / "bin").mkdir(parents=True)
        (root / "usr" / "bin" / "tool").write_text("#!/bin/sh\n")
        (root / "DEBIAN" / "control").write_text(
            "Package: t\nVersion: 1\nArchitecture: all\nMaintainer: m <m@x>\nDescription: d\n"
        )
        deb = tmp_path / f"t{i}.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                       check=True, capture_output=True,
                       env={"SOURCE_DATE_EPOCH": epoch, "PATH": "/usr/bin:/bin"})  # fmt: skip
        debs.append(deb)
    names = {" / ".join(m.path): m.kind for m in stdlib_members(*debs)[0]}
    assert names.get("data.tar.xz/./usr/bin/tool") == "metadata"


def test_members_from_a_diffoscope_json_report_are_bounded_and_ranked(tmp_path: Path) -> None:
    details = [
        {"source1": f"readelf --wide --x{i} {{}}", "source2": "…", "unified_diff": "@@\n-a\n+b\n"}
        for i in range(10)
    ]
    details.append({"source1": "strings --all --bytes=8 {}", "source2": "…",
                    "unified_diff": "@@\n-./src/x.c\n-two\n-three\n+/build/leak/src/x.c\n"})  # fmt: skip
    top = {"diffoscope-json-version": 1, "source1": "/r/diff/01-x/group1-h1-x.tar.gz",
           "source2": "…", "details": [{"source1": "group1-h1-x.tar", "source2": "group2-h2-x.tar",
                                        "details": details}]}  # fmt: skip
    path = tmp_path / "r.json"
    path.write_text(json.dumps(top))
    members, truncated = members_from_json(path, ("group1-h1-",))
    assert truncated and len(members) == 6
    assert members[0] == Member(("x.tar", "strings --all --bytes=8 {}"), "content",
                                ("-./src/x.c", "-two", "+/build/leak/src/x.c"))  # fmt: skip


# --- records ---------------------------------------------------------------------------------


def test_why_and_attribution_read_back_exactly_and_refuse_bad_values() -> None:
    why = Why((Copy("a", "h", 1, "group 1", SHA, "/w/a", "diff/01-a/group1-h-a", "ok", "", 3),),
              (), "note")  # fmt: skip
    assert from_plain(Why, plain(why), "why") == why
    att = attribute([["a"], ["b"]], {"a": prof(fact__kernel="1"), "b": prof(fact__kernel="2")})
    assert from_plain(Attribution, plain(att), "x") == att
    bad = plain(why)
    bad["copies"][0]["status"] = "fine"
    with pytest.raises(ReportError, match=r"why.copies\[0\].status must be one of"):
        from_plain(Why, bad, "why")
    bad = plain(why)
    bad["copies"][0]["round"] = True
    with pytest.raises(ReportError, match=r"round must be int"):
        from_plain(Why, bad, "why")


def test_nothing_recorded_says_so_rather_than_blame_the_build() -> None:
    att = attribute([["signer-a"], ["signer-b"]], {"signer-a": {}, "signer-b": {}})
    assert (att.wording, att.note) == ("unexplained", "nothing was recorded about these hosts")


# --- rendering: what diffoscope read from a host's bytes is text, never markup ----------------


def test_why_lines_from_host_bytes_are_escaped_in_every_format() -> None:
    import dataclasses

    from repro.compare import compare
    from repro.diffoscope import PairDiff
    from repro.render import render
    from repro.results import HostResult, RunResult

    evil = "\x1b]0;owned\x07<script>alert(1)</script> [x](http://e) **b**"
    hosts = [
        HostResult("h1", "ok", {"a": ArtifactHash("a", SHA, 1)}),
        HostResult("h2", "ok", {"a": ArtifactHash("a", "b" * 64, 1)}),
    ]
    run = RunResult("20260101T000000Z-abcdef", "p", "2026-01-01T00:00:00Z", hosts=hosts)
    comparison = compare(run)
    pair = PairDiff("a", "group 1 (h1)", "group 2 (h2)", "differ",
                    (Member(("inner", evil), "content", ("-" + evil, "+ok")),))  # fmt: skip
    why = Why((), (pair,), "")
    comparison = dataclasses.replace(
        comparison, artifacts=tuple(dataclasses.replace(a, why=why) for a in comparison.artifacts)
    )
    text = render("table", run, comparison)
    md = render("md", run, comparison)
    page = render("html", run, comparison)
    assert "\x1b" not in text + md + page and "\x07" not in text + md + page
    assert "<script>" not in md and "<script>" not in page
    assert "&lt;script&gt;" in page and "\\[x\\]" in md
