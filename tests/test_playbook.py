"""Playbook loading, validation, `extends`, and rendering: quoted values really run in /bin/sh.

The demo playbook is built for real, twice in two directories: prefix_map decides whether the
bytes are identical.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from repro.artifacts import hash_command, parse_hash_output
from repro.errors import PlaybookError
from repro.playbook import (
    ArtifactSpec,
    ManifestSpec,
    Playbook,
    load_playbook,
    parse_duration,
    parse_size,
    render,
    required_vars,
    used_vars,
)
from repro.results import ArtifactHash

REPO = Path(__file__).resolve().parent.parent
PLAYBOOKS = REPO / "playbooks"


def base_doc() -> dict[str, Any]:
    return {
        "name": "t",
        "vars": {"cflags": ["-O2", "-g"], "repo_url": None},
        "steps": [{"name": "compile", "run": "echo {{ cflags }}"}],
    }


def write(tmp_path: Path, doc: Any, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def load_error(tmp_path: Path, doc: Any) -> str:
    with pytest.raises(PlaybookError) as info:
        load_playbook(write(tmp_path, doc))
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(str(tmp_path / "x.yaml") + ": "), message
    return message


def sh(command: str, cwd: Path, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


# --- loading --------------------------------------------------------------------------------


def test_full_playbook_loads(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "hello.c").write_text("int main(void) { return 0; }\n")
    doc = {
        "name": "demo-1.0",
        "description": "One line.",
        "vars": {"cflags": ["-O2", "-g"], "prefix_map": True, "jobs": 4, "repo_url": None},
        "quorum": 3,
        "rounds": 2,
        "guix_describe": "out/guix-describe.json",
        "requires": {"commands": ["gcc", "tar", "g++"], "disk": {"work": "1G", "tmp": "100M"}},
        "files": [{"src": "demo/hello.c", "dest": "src/hello.c", "mode": "0755"}],
        "steps": [
            {
                "name": "compile",
                "run": "gcc {{ cflags }} -o out/hello src/hello.c\n",
                "timeout": "10m",
                "env": {"SOURCE_DATE_EPOCH": "{{ epoch }}", "LC_ALL": "C"},
            },
            {"name": "pack", "run": "tar cf out/x.tar out", "timeout": 90},
        ],
        "artifacts": [{"glob": "*.tar.gz", "dir": "out"}, {"glob": "hello"}],
        "manifests": [{"glob": "guix-build-*/output/*/SHA256SUMS.part", "base": ".."}],
    }
    pb = load_playbook(write(tmp_path, doc))
    assert pb.name == "demo-1.0" and pb.description == "One line."
    assert pb.vars == {"cflags": ["-O2", "-g"], "prefix_map": True, "jobs": 4, "repo_url": None}
    assert (pb.quorum, pb.rounds, pb.guix_describe) == (3, 2, "out/guix-describe.json")
    assert pb.requires.commands == ("gcc", "tar", "g++")
    assert pb.requires.disk == {"work": 1024**3, "tmp": 100 * 1024**2}
    (f,) = pb.files
    assert f.src == (tmp_path / "demo" / "hello.c").resolve() and f.src.is_absolute()
    assert (f.dest, f.mode) == ("src/hello.c", 0o755)
    assert [s.name for s in pb.steps] == ["compile", "pack"]
    assert [s.timeout for s in pb.steps] == [600.0, 90.0]
    assert pb.steps[0].env == {"SOURCE_DATE_EPOCH": "{{ epoch }}", "LC_ALL": "C"}
    assert pb.artifacts == (ArtifactSpec("*.tar.gz", "out"), ArtifactSpec("hello", "."))
    assert pb.manifests == (ManifestSpec("guix-build-*/output/*/SHA256SUMS.part", ".."),)
    assert required_vars(pb) == ["repo_url"]
    assert used_vars(pb) == ["epoch", "cflags"]  # env first, as rendered
    assert repr(pb) == "Playbook('demo-1.0', 2 steps)"


def test_defaults(tmp_path: Path) -> None:
    pb = load_playbook(write(tmp_path, {"name": "t", "steps": [{"name": "s", "run": "true"}]}))
    assert (pb.quorum, pb.rounds, pb.guix_describe, pb.description) == (2, 1, None, "")
    assert pb.steps[0].timeout == 3600.0
    assert (pb.artifacts, pb.manifests, pb.files, pb.vars) == ((), (), (), {})
    assert pb.requires.commands == () and pb.requires.disk == {}


def test_the_documented_error_format(tmp_path: Path) -> None:
    doc = base_doc()
    doc["steps"][0]["timeout"] = "10q"
    path = write(tmp_path, doc)
    with pytest.raises(PlaybookError) as info:
        load_playbook(path)
    assert str(info.value) == f"{path}: step 'compile': timeout: '10q' is not a duration"
    assert info.value.exit_code == 2


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b` / `steps.0.timeout` in a nested doc; value DELETE removes the key."""
    *parents, last = dotted.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    elif value is DELETE:
        del node[last]
    else:
        node[last] = value


DELETE = object()

# (where, value, what the message must contain)
BAD = [
    ("bogus", 1, "bogus: unknown key"),
    ("name", DELETE, "name: missing"),
    ("name", "has space", "name: 'has space' is not a name"),
    ("name", "..", "name: '..' is not a name"),
    ("name", 5, "name: 5 is not a name"),
    ("description", ["a"], "description: ['a'] is not a string"),
    ("description", "two\nlines", "description: must be one line"),
    ("vars", ["a"], "vars: must be a mapping"),
    ("vars.bad-name", 1, "vars.bad-name: is not a variable name"),
    ("vars.d", {"a": 1}, "vars.d: must be a string, number, boolean, list"),
    ("vars.l", [["nested"]], "vars.l: must be a string"),
    ("vars.c", "a\x1bb", "vars.c: contains the control character U+001B"),
    ("quorum", 0, "quorum: 0 is not a whole number >= 1"),
    ("quorum", "2", "quorum: '2' is not a whole number"),
    ("quorum", True, "quorum: True is not a whole number"),
    ("rounds", 0, "rounds: 0 is not a whole number between 1 and 5"),
    ("rounds", 6, "rounds: 6 is not a whole number between 1 and 5"),
    ("requires", ["gcc"], "requires: must be a mapping"),
    ("requires.memory", 1, "requires.memory: unknown key"),
    ("requires.commands", "gcc", "requires.commands: must be a list"),
    ("requires.commands", ["gcc; rm -rf /"], "requires.commands: 'gcc; rm -rf /' is not a command"),
    ("requires.disk", {"home": "1G"}, "requires.disk.home: unknown key"),
    ("requires.disk", {"work": "10X"}, "requires.disk.work: '10X' is not a size"),
    ("requires.disk", {"tmp": -1}, "requires.disk.tmp: -1 is not a size"),
    ("requires.disk", {"tmp": True}, "requires.disk.tmp: True is not a size"),
    ("steps", DELETE, "steps: missing"),
    ("steps", [], "steps: must list at least one step"),
    ("steps", {"a": 1}, "steps: must be a list"),
    ("steps.0", "echo hi", "steps[1]: must be a mapping"),
    ("steps.0.name", DELETE, "step '#1': name: missing"),
    ("steps.0.name", "a/b", "step 'a/b': name: 'a/b' is not a name"),
    ("steps.0.run", DELETE, "step 'compile': run: missing"),
    ("steps.0.run", "  \n", "step 'compile': run: missing or empty"),
    ("steps.0.shell", "bash", "step 'compile': shell: unknown step key"),
    ("steps.0.timeout", "10q", "step 'compile': timeout: '10q' is not a duration"),
    ("steps.0.timeout", 0, "step 'compile': timeout: 0 is not a duration of more than 0"),
    ("steps.0.timeout", "-5m", "step 'compile': timeout: '-5m' is not a duration"),
    ("steps.0.timeout", True, "step 'compile': timeout: True is not a duration"),
    ("steps.0.timeout", "1000h", "timeout: '1000h' is not a duration of more than 0"),
    ("steps.0.env", ["A=1"], "step 'compile': env: must be a mapping"),
    ("steps.0.env", {"1A": "x"}, "step 'compile': env.1A: is not an environment variable"),
    ("steps.0.env", {"A": {"b": 1}}, "step 'compile': env.A: {'b': 1} is not a string"),
    ("steps.0.env", {"A": "{{ a b }}"}, "step 'compile': env.A: '{{ a b }}' is not a template"),
    ("steps.0.run", "echo {{ x-y }}", "step 'compile': run: '{{ x-y }}' is not a template"),
    ("steps.0.run", "echo {{ $(id) }}", "step 'compile': run: '{{ $(id) }}' is not a template"),
    ("steps.0.run", "echo {{ x", "step 'compile': run: '{{' without a closing '}}'"),
    ("artifacts", {"glob": "*"}, "artifacts: must be a list"),
    ("artifacts", [{"glob": "*", "mode": 1}], "artifacts[1].mode: unknown key"),
    ("artifacts", [{"dir": "out"}], "artifacts[1].glob: None is not a glob"),
    ("artifacts", [{"glob": "../*.gz"}], "artifacts[1].glob: '../*.gz' has an empty, '.' or '..'"),
    ("artifacts", [{"glob": "a/../b"}], "artifacts[1].glob: 'a/../b' has an empty"),
    ("artifacts", [{"glob": "/etc/*"}], "artifacts[1].glob: '/etc/*' has an empty"),
    ("artifacts", [{"glob": "a//b"}], "artifacts[1].glob: 'a//b' has an empty"),
    ("artifacts", [{"glob": "a b"}], "artifacts[1].glob: 'a b' is not a glob"),
    ("artifacts", [{"glob": "$(id)"}], "artifacts[1].glob: '$(id)' is not a glob"),
    ("artifacts", [{"glob": "*;id"}], "artifacts[1].glob: '*;id' is not a glob"),
    ("artifacts", [{"glob": "x[a"}], "artifacts[1].glob: 'x[a' has an unbalanced"),
    ("artifacts", [{"glob": "x[a/]b"}], "artifacts[1].glob: 'x[a/]b' has an unbalanced"),
    # what only the host-side check refused before: one grammar (repro.paths) now for both
    ("artifacts", [{"glob": "a]b["}], "artifacts[1].glob: 'a]b[' has an unbalanced or empty"),
    ("artifacts", [{"glob": "x[]"}], "artifacts[1].glob: 'x[]' has an unbalanced or empty"),
    ("artifacts", [{"glob": "*", "dir": "../out"}], "artifacts[1].dir: '../out' is not a relative"),
    ("artifacts", [{"glob": "*", "dir": "/out"}], "artifacts[1].dir: '/out' is not a relative"),
    ("artifacts", [{"glob": "*", "dir": "a b"}], "artifacts[1].dir: 'a b' is not a relative"),
    ("artifacts", [{"glob": "*", "dir": "-rf"}], "artifacts[1].dir: '-rf' is not a relative"),
    ("manifests", [{"glob": "S;"}], "manifests[1].glob: 'S;' is not a glob"),
    ("manifests", [{"glob": "S", "base": "/"}], "manifests[1].base: '/' is not a relative"),
    ("manifests", [{"glob": "S", "base": "a b"}], "manifests[1].base: 'a b' is not a relative"),
    ("manifests", [{"glob": "S", "base": 1}], "manifests[1].base: 1 is not a relative"),
    ("files", [{"src": "nope.c", "dest": "a"}], "files[1].src: 'nope.c' does not exist"),
    ("files", [{"src": "/etc/hostname", "dest": "a"}], "files[1].src: '/etc/hostname' is not"),
    ("files", [{"src": "../outside.c", "dest": "a"}], "files[1].src: '../outside.c' is outside"),
    ("files", [{"src": "ok.c"}], "files[1].dest: None is not a relative path"),
    ("files", [{"src": "ok.c", "dest": "/etc/x"}], "files[1].dest: '/etc/x' is not a relative"),
    ("files", [{"src": "ok.c", "dest": "../x"}], "files[1].dest: '../x' is not a relative"),
    ("files", [{"src": "ok.c", "dest": "a/../../x"}], "files[1].dest: 'a/../../x' is not"),
    ("files", [{"src": "ok.c", "dest": "a\\b"}], "files[1].dest: 'a\\\\b' is not a relative"),
    ("files", [{"src": "ok.c", "dest": "a", "mode": 644}], "files[1].mode: 644 is not a quoted"),
    ("files", [{"src": "ok.c", "dest": "a", "mode": "999"}], "files[1].mode: '999' is not"),
    ("files", [{"src": "ok.c", "dest": "a", "owner": "x"}], "files[1].owner: unknown key"),
    (
        "files",
        [{"src": "ok.c", "dest": "a"}, {"src": "ok.c", "dest": "a"}],
        "files[2].dest: 'a' is the destination of two files",
    ),
    ("guix_describe", "../describe.json", "guix_describe: '../describe.json' is not a relative"),
    ("guix_describe", "/tmp/d.json", "guix_describe: '/tmp/d.json' is not a relative"),
    ("extends", "/etc/base.yaml", "extends: '/etc/base.yaml' is not a relative path"),
    ("extends", "missing.yaml", "extends: 'missing.yaml' does not exist (looked for"),
]


@pytest.mark.parametrize(("where", "value", "expected"), BAD, ids=[b[2] for b in BAD])
def test_invalid_playbooks_name_file_step_and_key(
    tmp_path: Path, where: str, value: Any, expected: str
) -> None:
    (tmp_path / "ok.c").write_text("int x;\n")
    (tmp_path.parent / "outside.c").write_text("int x;\n")
    doc = base_doc()
    _set(doc, where, value)
    assert expected in load_error(tmp_path, doc)


def test_duplicate_step_names(tmp_path: Path) -> None:
    doc = base_doc()
    doc["steps"].append({"name": "compile", "run": "true"})
    assert "step 'compile': name: used by two steps" in load_error(tmp_path, doc)


def test_a_file_symlink_out_of_the_playbook_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path.parent / "secret").write_text("x")
    (tmp_path / "link.c").symlink_to(tmp_path.parent / "secret")
    doc = {**base_doc(), "files": [{"src": "link.c", "dest": "a"}]}
    assert "files[1].src: 'link.c' is outside" in load_error(tmp_path, doc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("", "must be a YAML mapping"),
        (b"name: \xff\xfe\n", "not UTF-8"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str | bytes, expected: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(PlaybookError, match=f"^{path}: .*{expected}"):
        load_playbook(path)


def test_missing_file() -> None:
    with pytest.raises(PlaybookError, match=r"^nowhere/x\.yaml: no such playbook file$"):
        load_playbook("nowhere/x.yaml")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90.0), (1.5, 1.5), ("90", 90.0), ("30s", 30.0), ("10m", 600.0), ("2h", 7200.0),
     ("1.5h", 5400.0), (" 5 m ", 300.0)],
)  # fmt: skip
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["10q", "", "m", "1d", "-1", 0, -3, True, None, [1], "1e3"])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 0), (1000, 1000), ("512", 512), ("1K", 1024), ("100M", 100 * 1024**2),
     ("1G", 1024**3), ("2T", 2 * 1024**4), ("1.5G", 3 * 1024**3 // 2), ("20GiB", 20 * 1024**3),
     ("4g", 4 * 1024**3)],
)  # fmt: skip
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["10X", "G", "", "-1G", -1, True, None, 1.5, "1 G B"])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


# --- extends --------------------------------------------------------------------------------


def _cuprated_like(tmp_path: Path) -> Path:
    """A parent in its own directory with a shipped file, like cuprated-guix.yaml."""
    base = tmp_path / "base"
    (base / "files").mkdir(parents=True)
    (base / "files" / "helper.sh").write_text("echo helper\n")
    return write(
        base,
        {
            "name": "cuprated-guix",
            "description": "The real build.",
            "vars": {"ref": None, "jobs": 4, "target": "x86_64-unknown-linux-gnu"},
            "quorum": 2,
            "requires": {"commands": ["guix", "git"], "disk": {"work": "20G"}},
            "files": [{"src": "files/helper.sh", "dest": "bin/helper.sh", "mode": "0755"}],
            "steps": [{"name": "build", "run": "sh bin/helper.sh {{ ref }}", "timeout": "2h"}],
            "artifacts": [{"glob": "*.tar.gz", "dir": "out"}],
            "guix_describe": "out/guix-describe.json",
        },
        "cuprated-guix.yaml",
    )


def test_extends_overrides_top_level_keys_and_merges_vars(tmp_path: Path) -> None:
    _cuprated_like(tmp_path)
    smoke = write(
        tmp_path,
        {
            "extends": "base/cuprated-guix.yaml",
            "name": "smoke",
            "rounds": 2,
            "vars": {"jobs": 2, "extra": "yes"},
        },
        "smoke.yaml",
    )
    pb = load_playbook(smoke)
    assert (pb.name, pb.rounds, pb.path) == ("smoke", 2, smoke)
    assert pb.description == "The real build."
    assert pb.vars == {"ref": None, "jobs": 2, "target": "x86_64-unknown-linux-gnu", "extra": "yes"}
    assert required_vars(pb) == ["ref"]
    assert [s.name for s in pb.steps] == ["build"] and pb.steps[0].timeout == 7200.0
    assert pb.requires.disk == {"work": 20 * 1024**3}
    assert pb.guix_describe == "out/guix-describe.json"
    # files stay relative to the file that declared them, not to smoke.yaml
    assert pb.files[0].src == (tmp_path / "base" / "files" / "helper.sh").resolve()
    (step,) = render(pb, {"ref": "cuprated-0.0.9"})
    assert step.command.endswith("sh bin/helper.sh cuprated-0.0.9")


def test_extends_replaces_lists_whole_and_chains(tmp_path: Path) -> None:
    _cuprated_like(tmp_path)
    write(tmp_path, {"extends": "base/cuprated-guix.yaml", "rounds": 2}, "mid.yaml")
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "mine.sh").write_text("true\n")
    top = write(
        tmp_path / "top",
        {
            "extends": "../mid.yaml",
            "name": "top",
            "steps": [{"name": "quick", "run": "true"}],
            "files": [{"src": "mine.sh", "dest": "mine.sh"}],
            "vars": {"ref": "main"},
        },
        "top.yaml",
    )
    pb = load_playbook(top)
    assert [s.name for s in pb.steps] == ["quick"]
    assert pb.rounds == 2 and pb.quorum == 2
    assert [f.src for f in pb.files] == [(tmp_path / "top" / "mine.sh").resolve()]
    assert pb.vars["ref"] == "main" and pb.vars["jobs"] == 4
    assert required_vars(pb) == []


def test_extends_errors_name_the_file_that_has_the_problem(tmp_path: Path) -> None:
    base = _cuprated_like(tmp_path)
    text = base.read_text().replace("timeout: 2h", "timeout: 2x")
    base.write_text(text)
    write(tmp_path, {"extends": "base/cuprated-guix.yaml", "rounds": 9}, "smoke.yaml")
    with pytest.raises(PlaybookError) as info:
        load_playbook(tmp_path / "smoke.yaml")
    assert str(info.value).startswith(f"{tmp_path}/base/cuprated-guix.yaml: step 'build': timeout")
    base.write_text(text.replace("timeout: 2x", "timeout: 2h"))
    with pytest.raises(PlaybookError) as info:
        load_playbook(tmp_path / "smoke.yaml")
    assert str(info.value) == (
        f"{tmp_path}/smoke.yaml: rounds: 9 is not a whole number between 1 and 5"
    )
    base.write_text(text.replace("timeout: 2x", "timeout: 2h") + "colour: blue\n")
    with pytest.raises(PlaybookError, match=r"base/cuprated-guix\.yaml: colour: unknown key"):
        load_playbook(tmp_path / "smoke.yaml")


def test_extends_cycles_are_detected(tmp_path: Path) -> None:
    write(tmp_path, {**base_doc(), "extends": "b.yaml"}, "a.yaml")
    write(tmp_path, {"extends": "c.yaml"}, "b.yaml")
    write(tmp_path, {"extends": "a.yaml"}, "c.yaml")
    with pytest.raises(PlaybookError, match=r"extends: 'a\.yaml' makes a cycle "
                       r"\(a\.yaml -> b\.yaml -> c\.yaml -> a\.yaml\)"):  # fmt: skip
        load_playbook(tmp_path / "a.yaml")
    write(tmp_path, {**base_doc(), "extends": "self.yaml"}, "self.yaml")
    with pytest.raises(PlaybookError, match=r"self\.yaml: extends: 'self\.yaml' makes a cycle"):
        load_playbook(tmp_path / "self.yaml")


# --- the playbooks in the repository ----------------------------------------------------------


@pytest.mark.parametrize("path", sorted(PLAYBOOKS.glob("*.yaml")), ids=lambda p: p.name)
def test_builtin_playbooks_load_and_render(path: Path) -> None:
    pb = load_playbook(path)
    values = {name: "v" for name in required_vars(pb)}
    steps = render(pb, values, source="h1")
    assert [s.index for s in steps] == list(range(1, len(pb.steps) + 1))
    assert pb.artifacts or pb.manifests, "a playbook with nothing to compare proves nothing"


def test_demo_is_among_the_builtin_playbooks() -> None:
    assert (PLAYBOOKS / "demo.yaml").is_file()


def test_builtin_smoke_is_cuprated_guix_twice() -> None:
    """playbooks/smoke.yaml only says `extends: cuprated-guix.yaml` and what differs."""
    smoke = load_playbook(PLAYBOOKS / "smoke.yaml")
    full = load_playbook(PLAYBOOKS / "cuprated-guix.yaml")
    assert (smoke.name, smoke.rounds, full.rounds) == ("smoke", 2, 1)
    assert smoke.steps == full.steps and smoke.artifacts == full.artifacts
    assert smoke.vars == full.vars and smoke.files == full.files
    assert smoke.guix_describe == full.guix_describe


# --- rendering ------------------------------------------------------------------------------

HOSTILE = [
    "a; touch canary",
    "$(touch canary)",
    "`touch canary`",
    'it\'s "quoted"',
    "two\nlines; touch canary",
    "  spaces  and\ttab ",
    "*",
    "-n",
    "\\x41 \\ back",
    "{{ epoch }}",
    "",
    "ünïcødé ✓",
]


def _playbook(tmp_path: Path, run: str, env: dict[str, str] | None = None) -> Playbook:
    step: dict[str, Any] = {"name": "s", "run": run}
    if env:
        step["env"] = env
    return load_playbook(write(tmp_path, {"name": "t", "steps": [step]}))


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_values_pass_through_the_shell_literally(tmp_path: Path, value: str) -> None:
    pb = _playbook(
        tmp_path,
        "printf '%s' {{ v }} > run.out\nprintf '%s' \"$V\" > env.out\n"
        "for w in {{ many }}; do printf '<%s>' \"$w\"; done > list.out\n",
        env={"V": "pre {{ v }} post"},
    )
    (step,) = render(pb, {"v": value, "many": [value, 7, True, value]}, source="h1")
    result = sh(step.command, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run.out").read_text() == value
    assert (tmp_path / "env.out").read_text() == f"pre {value} post"
    assert (tmp_path / "list.out").read_text() == f"<{value}><7><true><{value}>"
    assert not (tmp_path / "canary").exists()


def test_scalars_render_as_shell_words(tmp_path: Path) -> None:
    pb = _playbook(tmp_path, "x {{ b }} {{ f }} {{ n }} {{ s }} {{ l }} {{ e }} end")
    (step,) = render(pb, {"b": False, "f": 1.5, "n": 42, "s": "a b", "l": ["-O2", "x y"], "e": []})
    assert step.command.splitlines()[-1] == "x false 1.5 42 'a b' -O2 'x y'  end"


def test_command_shape_set_e_then_exports_then_script(tmp_path: Path) -> None:
    pb = _playbook(tmp_path, "echo {{ a }}\n", env={"SOURCE_DATE_EPOCH": "{{ epoch }}", "Z": "1"})
    (step,) = render(pb, {"a": "x", "epoch": 1700000000})
    assert step.command == "set -e\nexport SOURCE_DATE_EPOCH=1700000000;\nexport Z=1;\necho x\n"
    assert (step.index, step.name, step.timeout) == (1, "s", 3600.0)


def test_a_failing_line_fails_the_step(tmp_path: Path) -> None:
    (step,) = render(_playbook(tmp_path, "false\ntouch reached\n"), {})
    assert sh(step.command, tmp_path).returncode != 0
    assert not (tmp_path / "reached").exists()


def test_layering_defaults_below_variables(tmp_path: Path) -> None:
    doc = base_doc()
    doc["vars"]["who"] = "default"
    doc["steps"] = [{"name": "s", "run": "echo {{ who }} {{ repo_url }}"}]
    pb = load_playbook(write(tmp_path, doc))
    (step,) = render(pb, {"repo_url": "https://x/y.git", "unrelated": {"a": "dict"}})
    assert step.command.endswith("echo default https://x/y.git")
    (step,) = render(pb, {"repo_url": "u", "who": "cli"})
    assert step.command.endswith("echo cli u")


def test_required_variable_without_value(tmp_path: Path) -> None:
    doc = base_doc()
    doc["steps"] = [{"name": "fetch", "run": "git clone {{ repo_url }} src"}]
    path = write(tmp_path, doc)
    pb = load_playbook(path)
    with pytest.raises(PlaybookError) as info:
        render(pb, {}, source="h1")
    assert str(info.value) == (
        f"variable 'repo_url' has no value (playbook {path}, host h1, step 'fetch', run): "
        "set it with -e repo_url=..."
    )
    with pytest.raises(PlaybookError, match="variable 'nope' has no value"):
        render(_playbook(tmp_path, "echo {{ nope }}"), {"repo_url": "x"})


@pytest.mark.parametrize("bad", ["a\x00b", "\x1b[2J", "a\rb", "\x7f", "\x85", "\x07"])
def test_control_characters_are_rejected(tmp_path: Path, bad: str) -> None:
    pb = _playbook(tmp_path, "echo {{ v }}", env={"E": "{{ w }}"})
    code = f"U\\+{ord(bad.strip('ab')[0]):04X}"
    with pytest.raises(PlaybookError, match=rf"variable 'v' contains the control character {code}"):
        render(pb, {"v": bad, "w": "ok"}, source="h1")
    with pytest.raises(PlaybookError, match=r"variable 'w' contains .*host h1, step 's', env E"):
        render(pb, {"v": "ok", "w": ["fine", bad]}, source="h1")


def test_tab_and_newline_are_allowed(tmp_path: Path) -> None:
    (step,) = render(_playbook(tmp_path, "printf '%s' {{ v }} > o"), {"v": "a\tb\nc"})
    assert sh(step.command, tmp_path).returncode == 0
    assert (tmp_path / "o").read_text() == "a\tb\nc"


@pytest.mark.parametrize(
    ("value", "expected"),
    [({"a": 1}, "is a mapping"), ([{"a": 1}], "contains a dict"), ([None], "contains an empty"),
     (object(), "contains a object"), ([[1]], "contains a list")],
)  # fmt: skip
def test_unrenderable_values(tmp_path: Path, value: object, expected: str) -> None:
    with pytest.raises(PlaybookError, match=f"variable 'v' {expected}"):
        render(_playbook(tmp_path, "echo {{ v }}"), {"v": value})


def test_template_spacing_variants(tmp_path: Path) -> None:
    (step,) = render(_playbook(tmp_path, "x {{a}} {{  a  }} {{ a}} ${{ a }}"), {"a": "$HOME"})
    assert step.command.endswith("x '$HOME' '$HOME' '$HOME' $'$HOME'")


def test_a_hand_built_playbook_with_a_bad_template_still_fails_cleanly(tmp_path: Path) -> None:
    pb = _playbook(tmp_path, "true")
    broken = Playbook(pb.path, "t", "", {}, (type(pb.steps[0])("s", "echo {{ a.b }}"),))
    with pytest.raises(PlaybookError, match=r"step 's': run: '\{\{ a\.b \}\}' is not a template"):
        render(broken, {})


# --- the demo playbook, built for real ------------------------------------------------------


def _build_demo(work: Path, prefix_map: bool) -> dict[str, ArtifactHash]:
    pb = load_playbook(PLAYBOOKS / "demo.yaml")
    work.mkdir(parents=True)
    for spec in pb.files:  # what the runner's upload does
        dest = work / spec.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(spec.src, dest)
        dest.chmod(spec.mode)
    for step in render(pb, {"prefix_map": prefix_map}, source="local"):
        result = sh(step.command, work, timeout=min(step.timeout, 30))
        assert result.returncode == 0, f"{step.name}: {result.stderr}"
    hashed = sh(hash_command(pb), work)
    assert hashed.returncode == 0, hashed.stderr
    return parse_hash_output("local", hashed.stdout)


def test_demo_with_prefix_map_is_reproducible_across_build_dirs(tmp_path: Path) -> None:
    a = _build_demo(tmp_path / "a" / "work", prefix_map=True)
    b = _build_demo(tmp_path / "somewhere-else" / "deeper" / "w", prefix_map=True)
    assert sorted(a) == ["hello", "hello-demo.tar.gz"]
    assert a == b


def test_demo_without_prefix_map_leaks_the_build_dir(tmp_path: Path) -> None:
    a = _build_demo(tmp_path / "a" / "work", prefix_map=False)
    b = _build_demo(tmp_path / "somewhere-else" / "deeper" / "w", prefix_map=False)
    assert sorted(a) == sorted(b) == ["hello", "hello-demo.tar.gz"]
    assert a["hello"].sha256 != b["hello"].sha256
    assert a["hello-demo.tar.gz"].sha256 != b["hello-demo.tar.gz"].sha256
    assert str(tmp_path / "a" / "work").encode() in (tmp_path / "a/work/out/hello").read_bytes()


def test_a_glob_the_host_cannot_match_safely_is_refused_at_load(tmp_path: Path) -> None:
    # `[...]` spanning a `/` would let `*` cross a directory level on the host
    pb = tmp_path / "g.yaml"
    pb.write_text("name: g\nsteps: [{name: s, run: 'true'}]\nartifacts: [{glob: ']x[/]y['}]\n")
    with pytest.raises(PlaybookError) as err:
        load_playbook(pb)
    assert "g.yaml" in str(err.value)
