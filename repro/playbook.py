"""Playbook YAML -> Playbook/Step records, validation, and safe rendering of commands.

The format is documented in docs/playbooks.md. Every `{{ var }}` in a command is replaced by
a shell-quoted value; there is no way to interpolate a value unquoted.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from repro import secrets, yamlsafe
from repro.paths import RELPATH_RE, glob_problem, relpath_ok
from repro.errors import PlaybookError

DEFAULT_STEP_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Step:
    name: str
    run: str  # a shell template; {{ var }} is replaced by a quoted value
    timeout: float = DEFAULT_STEP_TIMEOUT
    env: dict[str, str] = field(default_factory=dict, compare=False)  # values are templates

    def __repr__(self) -> str:
        return f"Step({self.name!r})"


@dataclass(frozen=True)
class ArtifactSpec:
    """Files to hash on the host: `glob` under `dir` (both relative to the work dir).

    An artifact's name in reports is its path relative to `dir`.
    """

    glob: str
    dir: str = "."


@dataclass(frozen=True)
class ManifestSpec:
    """SHA256SUMS-style files (`<sha256>  <name>` lines); every listed file is hashed too.

    Listed names are relative to `<the manifest's dir>/<base>`, as in Bitcoin Core's
    `output/<host-triple>/SHA256SUMS.part`, whose names start with the host triple.
    """

    glob: str
    base: str = "."


@dataclass(frozen=True)
class FileSpec:
    """A file shipped with the playbook, uploaded to the host's work dir before step 1."""

    src: Path  # absolute path on the controller
    dest: str  # relative to the work dir
    mode: int = 0o644


@dataclass(frozen=True)
class Requirements:
    """What preflight checks on every host before building."""

    commands: tuple[str, ...] = ()
    disk: dict[str, int] = field(default_factory=dict, compare=False)  # work/tmp/store -> bytes


@dataclass(frozen=True)
class Playbook:
    path: Path
    name: str
    description: str
    vars: dict[str, Any]  # defaults; a None value means "required, no default"
    steps: tuple[Step, ...]
    artifacts: tuple[ArtifactSpec, ...] = ()
    manifests: tuple[ManifestSpec, ...] = ()
    files: tuple[FileSpec, ...] = ()
    quorum: int = 2  # hosts that must produce every artifact for a conclusive verdict
    require: tuple[str, ...] = ()  # kinds of machine among them: intel, amd, vm, bare-metal
    requires: Requirements = field(default_factory=Requirements)
    # Builds per host, each in its own work dir: 2 tells "not deterministic on one machine"
    # apart from "differs between machines" (what `guix build --rounds=2` checks, on every host).
    rounds: int = 1
    # A `guix describe --format=json` file the build writes (relative to the work dir): the
    # Guix channel commit each host really used is read from it and compared across hosts.
    guix_describe: str | None = None
    # Variables whose values are secret (repro.secrets): steps get them from the environment,
    # never in their script, and every report and log shows them as ***.
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Playbook({self.name!r}, {len(self.steps)} steps)"


@dataclass(frozen=True)
class RenderedStep:
    """A step ready to send: `command` is a complete, quoted shell command line."""

    index: int
    name: str
    command: str
    timeout: float

    def __repr__(self) -> str:
        return f"RenderedStep({self.index}, {self.name!r})"


# --- the grammar ----------------------------------------------------------------------------

TOP_KEYS = (
    "name", "description", "extends", "vars", "quorum", "rounds", "requires", "files",
    "steps", "artifacts", "manifests", "guix_describe", "secrets",
)  # fmt: skip
STEP_KEYS = ("name", "run", "uses", "timeout", "env")
# `uses: NAME`: a step script shipped with repro (repro/hostside/<file>), written once for every
# playbook that needs it, and the variables it takes as its arguments, in order.
USES = {"checkout": ("checkout.sh", ("repo_url", "commit", "mirror_name"))}
MAX_ROUNDS = 5
MAX_EXTENDS_DEPTH = 8
# A playbook is a page of YAML; the cap keeps a hostile or wrong file from eating memory.
MAX_PLAYBOOK_BYTES = 1024 * 1024
# Long enough for a Guix bootstrap from source; short enough that a typo like "1000h" is caught.
MAX_TIMEOUT = 7 * 24 * 3600.0

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMAND_RE = re.compile(r"[A-Za-z0-9_.+-]+")
_MODE_RE = re.compile(r"[0-7]{3,4}")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smh]?)", re.ASCII)
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.ASCII | re.IGNORECASE)
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_duration(value: object) -> float:
    """Seconds from `90`, `1.5`, `"30s"`, `"10m"` or `"2h"`. Raises ValueError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.fullmatch(value.strip())):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(f"{_show(value)} is not a duration")
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_TIMEOUT:
        raise ValueError(f"{_show(value)} is not a duration of more than 0 and at most 7 days")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from `1024`, `"100M"`, `"1G"`, `"1.5GiB"` (K/M/G/T are powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (m := _SIZE_RE.fullmatch(value.strip())):
        return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])
    raise ValueError(f"{_show(value)} is not a size (use e.g. 100M or 20G)")


def _show(value: object) -> str:
    """A value quoted for an error message, short and with control characters escaped."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- templates ------------------------------------------------------------------------------


class _TemplateError(Exception):
    pass


def _substitute(template: str, value_of: Callable[[str], str]) -> str:
    """Replace every `{{ name }}` by `value_of(name)`; anything else in `{{ }}` is an error."""
    out: list[str] = []
    pos = 0
    while (start := template.find("{{", pos)) >= 0:
        end = template.find("}}", start + 2)
        if end < 0:
            raise _TemplateError("'{{' without a closing '}}'")
        inner = template[start + 2 : end].strip(" \t")
        if not _IDENT_RE.fullmatch(inner):
            raise _TemplateError(
                f"{_show(template[start : end + 2])} is not a template: use {{{{ name }}}}"
            )
        out.append(template[pos:start])
        out.append(value_of(inner))
        pos = end + 2
    out.append(template[pos:])
    return "".join(out)


def template_names(template: str) -> list[str]:
    """The variable names a template uses, in order of first use (it must be well formed)."""
    names: list[str] = []

    def note(name: str) -> str:
        if name not in names:
            names.append(name)
        return ""

    try:
        _substitute(template, note)
    except _TemplateError as exc:
        raise ValueError(str(exc)) from None
    return names


def _control_char(text: str) -> str | None:
    """The first control character other than tab and newline, as U+XXXX, or None."""
    for ch in text:
        if ch not in "\t\n" and unicodedata.category(ch) == "Cc":
            return f"U+{ord(ch):04X}"
    return None


def _scalar_text(value: object) -> str | None:
    """How a scalar reads in a shell word; None for anything that is not a scalar."""
    if isinstance(value, bool):  # before int: True is an int
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return None


# --- rendering ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Where a value is being rendered, for error messages."""

    playbook: str
    host: str
    step: str
    key: str

    def fail(self, name: str, problem: str, hint: str = "") -> PlaybookError:
        parts = [f"playbook {self.playbook}"]
        if self.host:
            parts.append(f"host {self.host}")
        parts.append(f"step {self.step!r}, {self.key}")
        tail = f": {hint}" if hint else ""
        return PlaybookError(f"variable {name!r} {problem} ({', '.join(parts)}){tail}")


def _value_texts(name: str, values: Mapping[str, Any], where: _Where) -> list[str]:
    """The texts a variable stands for: one for a scalar, one per element for a list."""
    value = values.get(name)
    if value is None:
        raise where.fail(name, "has no value", f"set it with -e {name}=...")
    if isinstance(value, Mapping):
        raise where.fail(name, "is a mapping; only strings, numbers, booleans and lists render")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    texts: list[str] = []
    for item in items:
        text = _scalar_text(item)
        if text is None:
            kind = "an empty value" if item is None else f"a {type(item).__name__}"
            raise where.fail(name, f"contains {kind}; only strings, numbers and booleans render")
        if bad := _control_char(text):
            raise where.fail(name, f"contains the control character {bad}")
        texts.append(text)
    return texts


def _secret_text(name: str, values: Mapping[str, Any], where: _Where) -> str:
    """A secret's one text (checked like any value; a list would need one word per item)."""
    texts = _value_texts(name, values, where)
    if len(texts) != 1 or isinstance(values.get(name), (list, tuple)):
        raise where.fail(name, "is secret and must be one string, number or boolean, not a list")
    return texts[0]


def _render_shell(
    template: str, values: Mapping[str, Any], where: _Where, secret: frozenset[str] = frozenset()
) -> str:
    """Shell text: each substitution becomes quoted words, the rest is the author's script.
    A secret becomes a reference to its environment variable (checked, never written)."""

    def word(name: str) -> str:
        if name in secret:
            _secret_text(name, values, where)
            return secrets.reference(name)
        return " ".join(shlex.quote(t) for t in _value_texts(name, values, where))

    try:
        return _substitute(template, word)
    except _TemplateError as exc:
        raise PlaybookError(f"{where.playbook}: step {where.step!r}: {where.key}: {exc}") from None


def _render_env(
    template: str, values: Mapping[str, Any], where: _Where, secret: frozenset[str] = frozenset()
) -> str:
    """An env value is a string: substitute raw texts, then quote the whole as one word.
    A secret splits it: the quoted pieces around it and its reference make one shell word."""
    marks: list[str] = []

    def text(name: str) -> str:
        if name in secret:
            _secret_text(name, values, where)
            marks.append(name)
            return "\0"  # never in a value (control characters are refused)
        return " ".join(_value_texts(name, values, where))

    try:
        whole = _substitute(template, text)
    except _TemplateError as exc:
        raise PlaybookError(f"{where.playbook}: step {where.step!r}: {where.key}: {exc}") from None
    pieces = whole.split("\0")
    out = [shlex.quote(pieces[0])]
    for name, piece in zip(marks, pieces[1:]):
        out += [secrets.reference(name), shlex.quote(piece)]
    return "".join(out)


def render(
    playbook: Playbook,
    variables: Mapping[str, Any],
    *,
    source: str = "",
    secret: Iterable[str] = (),
) -> list[RenderedStep]:
    """The playbook's steps as complete shell scripts for one host, numbered from 1.

    `variables` are that host's layered values (inventory vars < -e); the playbook's `vars`
    defaults sit below them. `source` (the host name) is only used in error messages.
    Each script starts with `set -e`, then one `export KEY=<quoted>;` line per env entry.
    """
    values: dict[str, Any] = {**playbook.vars, **variables}
    hidden = frozenset(secret) | frozenset(playbook.secrets)
    rendered: list[RenderedStep] = []
    for index, step in enumerate(playbook.steps, start=1):
        lines = ["set -e"]
        for key, template in step.env.items():
            where = _Where(str(playbook.path), source, step.name, f"env {key}")
            lines.append(f"export {key}={_render_env(template, values, where, hidden)};")
        where = _Where(str(playbook.path), source, step.name, "run")
        lines.append(_render_shell(step.run, values, where, hidden))
        rendered.append(RenderedStep(index, step.name, "\n".join(lines), step.timeout))
    return rendered


def required_vars(playbook: Playbook) -> list[str]:
    """Variables the playbook declares with no default: the inventory or -e must set them."""
    return [name for name, value in playbook.vars.items() if value is None]


def used_vars(playbook: Playbook) -> list[str]:
    """Every variable the steps' templates use, in order of first use."""
    names: list[str] = []
    for step in playbook.steps:
        for template in (*step.env.values(), step.run):
            names += [n for n in template_names(template) if n not in names]
    return names


# --- loading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """One YAML file of an `extends` chain: where it is, and how errors name it."""

    path: Path
    shown: str

    def fail(self, key: str, problem: str, step: str | None = None) -> PlaybookError:
        at = f"step {step!r}: " if step is not None else ""
        return PlaybookError(f"{self.shown}: {at}{key}: {problem}")


def load_playbook(path: str | Path) -> Playbook:
    """Read, merge (`extends`) and validate a playbook file. Raises PlaybookError."""
    path = Path(path)
    src = _Source(path, str(path))
    data, origin = _load_chain(src, ())
    # Every dir and glob passed repro.paths' grammar, the one the hashing command on the
    # host relies on: nothing is discovered unsafe at hash time, after hours of building.
    return _build(path, data, origin)


def _read_yaml(src: _Source) -> dict[str, Any]:
    try:
        with open(src.path, "rb") as fh:
            raw = fh.read(MAX_PLAYBOOK_BYTES + 1)
    except FileNotFoundError:
        raise PlaybookError(f"{src.shown}: no such playbook file") from None
    except OSError as exc:
        raise PlaybookError(f"{src.shown}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_PLAYBOOK_BYTES:
        raise PlaybookError(f"{src.shown}: larger than {MAX_PLAYBOOK_BYTES} bytes")
    try:
        data = yamlsafe.load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PlaybookError(f"{src.shown}: not UTF-8 text") from None
    except yamlsafe.YamlTooLarge as exc:
        raise PlaybookError(f"{src.shown}: not valid YAML: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed"
        raise PlaybookError(f"{src.shown}: not valid YAML: {problem}{line}") from None
    if not isinstance(data, dict):
        raise PlaybookError(f"{src.shown}: must be a YAML mapping (name:, steps:, ...)")
    for key in data:
        if key not in TOP_KEYS:
            raise src.fail(str(key), f"unknown key (known: {', '.join(TOP_KEYS)})")
    # Checked per file, before merging, so a bad default is blamed on the file that has it.
    data["vars"] = _vars(src, data.get("vars"))
    return data


def _load_chain(src: _Source, seen: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, _Source]]:
    """This file's keys over its `extends` parent's (vars merged key by key), with origins."""
    data = _read_yaml(src)
    seen = (*seen, src.path.resolve())
    parent = data.pop("extends", None)
    if parent is None:
        return data, {key: src for key in data}
    if not isinstance(parent, str) or not parent or os.path.isabs(parent):
        raise src.fail("extends", f"{_show(parent)} is not a relative path to a playbook")
    parent_src = _Source(
        src.path.parent / parent, os.path.normpath(os.path.join(os.path.dirname(src.shown), parent))
    )
    if not parent_src.path.is_file():
        raise src.fail("extends", f"{parent!r} does not exist (looked for {parent_src.shown})")
    if parent_src.path.resolve() in seen:
        chain = " -> ".join([*(p.name for p in seen), parent_src.path.name])
        raise src.fail("extends", f"{parent!r} makes a cycle ({chain})")
    if len(seen) > MAX_EXTENDS_DEPTH:
        raise src.fail("extends", f"more than {MAX_EXTENDS_DEPTH} levels of extends")
    merged, origin = _load_chain(parent_src, seen)
    for key, value in data.items():
        merged[key] = {**merged.get("vars", {}), **value} if key == "vars" else value
        origin[key] = src
    return merged, origin


def _build(path: Path, data: dict[str, Any], origin: dict[str, _Source]) -> Playbook:
    root = _Source(path, str(path))

    def src(key: str) -> _Source:
        return origin.get(key, root)

    name = data.get("name")
    if name is None:
        raise root.fail("name", "missing (every playbook needs a name)")
    steps = data.get("steps")
    if steps is None:
        raise root.fail("steps", "missing (a playbook needs at least one step)")
    quorum, require = _quorum(src("quorum"), data.get("quorum", 2))
    return Playbook(
        path=path,
        name=_name(src("name"), "name", name),
        description=_description(src("description"), data.get("description", "")),
        vars=data.get("vars") or {},
        steps=_steps(src("steps"), steps),
        artifacts=_artifacts(src("artifacts"), data.get("artifacts")),
        manifests=_manifests(src("manifests"), data.get("manifests")),
        files=_files(src("files"), data.get("files")),
        quorum=quorum,
        require=require,
        requires=_requires(src("requires"), data.get("requires")),
        rounds=_int(src("rounds"), "rounds", data.get("rounds", 1), 1, MAX_ROUNDS),
        guix_describe=_guix_describe(src("guix_describe"), data.get("guix_describe")),
        secrets=_secret_names(src("secrets"), data.get("secrets")),
    )


def _quorum(src: _Source, value: object) -> tuple[int, tuple[str, ...]]:
    from repro.quorum import parse_quorum

    try:
        return parse_quorum(value)
    except ValueError as exc:
        raise src.fail("quorum", str(exc)) from None
def _secret_names(src: _Source, value: object) -> tuple[str, ...]:
    names = _list(src, "secrets", value)
    for name in names:
        if not isinstance(name, str) or not _IDENT_RE.fullmatch(name):
            raise src.fail("secrets", f"{_show(name)} is not a variable name")
    return tuple(dict.fromkeys(names))


def _name(src: _Source, key: str, value: object, step: str | None = None) -> str:
    # All-dot names match the character class but would be "." and ".." as path components.
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or not value.strip("."):
        raise src.fail(key, f"{_show(value)} is not a name (letters, digits, _ . -)", step)
    return value


def _description(src: _Source, value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise src.fail("description", f"{_show(value)} is not a string")
    text = value.strip()
    if "\n" in text or _control_char(text):
        raise src.fail("description", "must be one line of plain text")
    return text


def _int(src: _Source, key: str, value: object, low: int, high: int | None) -> int:
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and low <= value
        and (high is None or value <= high)
    ):
        return value
    bound = f"between {low} and {high}" if high is not None else f">= {low}"
    raise src.fail(key, f"{_show(value)} is not a whole number {bound}")


def _list(src: _Source, key: str, value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise src.fail(key, f"must be a list, not {type(value).__name__}")
    return value


def _mapping(src: _Source, key: str, value: object, known: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise src.fail(key, f"must be a mapping, not {type(value).__name__}")
    for k in value:
        if k not in known:
            raise src.fail(f"{key}.{k}", f"unknown key (known: {', '.join(known)})")
    return value


def _vars(src: _Source, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise src.fail("vars", f"must be a mapping, not {type(value).__name__}")
    for name, default in value.items():
        if not isinstance(name, str) or not _IDENT_RE.fullmatch(name):
            raise src.fail(f"vars.{name}", "is not a variable name ([A-Za-z_][A-Za-z0-9_]*)")
        items = default if isinstance(default, list) else [default]
        if default is not None and any(_scalar_text(i) is None for i in items):
            raise src.fail(
                f"vars.{name}", "must be a string, number, boolean, list of them, or ~ (required)"
            )
        if bad := next((c for i in items if (c := _control_char(str(i)))), None):
            raise src.fail(f"vars.{name}", f"contains the control character {bad}")
    return dict(value)


def _template(src: _Source, key: str, value: object, step: str) -> str:
    if isinstance(value, str):
        text = value
    elif (scalar := _scalar_text(value)) is not None:
        text = scalar
    else:
        raise src.fail(key, f"{_show(value)} is not a string", step)
    try:
        template_names(text)
    except ValueError as exc:
        raise src.fail(key, str(exc), step) from None
    return text


def _steps(src: _Source, value: object) -> tuple[Step, ...]:
    items = _list(src, "steps", value)
    if not items:
        raise src.fail("steps", "must list at least one step")
    steps: list[Step] = []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise src.fail(f"steps[{i}]", f"must be a mapping (name:, run:), not {_show(item)}")
        label = item["name"] if isinstance(item.get("name"), str) else f"#{i}"
        for key in item:
            if key not in STEP_KEYS:
                raise src.fail(str(key), f"unknown step key (known: {', '.join(STEP_KEYS)})", label)
        step = _step(src, item, label)
        if any(s.name == step.name for s in steps):
            raise src.fail("name", "used by two steps; step names must be unique", label)
        steps.append(step)
    return tuple(steps)


def _step(src: _Source, item: dict[str, Any], label: str) -> Step:
    if "name" not in item:
        raise src.fail("name", "missing", label)
    name = _name(src, "name", item["name"], label)
    run: object = _uses(src, item, name) if "uses" in item else item.get("run")
    if not isinstance(run, str) or not run.strip():
        raise src.fail("run", "missing or empty (a shell script)", name)
    run = _template(src, "run", run, name)
    try:
        timeout = parse_duration(item.get("timeout", DEFAULT_STEP_TIMEOUT))
    except ValueError as exc:
        raise src.fail("timeout", str(exc), name) from None
    env = item.get("env") or {}
    if not isinstance(env, dict):
        raise src.fail("env", f"must be a mapping, not {type(env).__name__}", name)
    rendered_env: dict[str, str] = {}
    for key, tmpl in env.items():
        if not isinstance(key, str) or not _IDENT_RE.fullmatch(key):
            raise src.fail(f"env.{key}", "is not an environment variable name", name)
        rendered_env[key] = _template(src, f"env.{key}", tmpl, name)
    return Step(name=name, run=run, timeout=timeout, env=rendered_env)


def uses_script(uses: str) -> str:
    """The step script `uses: NAME` stands for: its arguments set from variables, then the file."""
    from repro import hostside

    file, args = USES[uses]
    # The file is plain sh (linted as such); only this first line is a template.
    return "set -- " + " ".join(f"{{{{ {a} }}}}" for a in args) + "\n" + hostside.load(file)


def _uses(src: _Source, item: dict[str, Any], name: str) -> str:
    if "run" in item:
        raise src.fail("uses", "a step has either run: or uses:, not both", name)
    uses = item["uses"]
    if not isinstance(uses, str) or uses not in USES:
        known = ", ".join(USES)
        raise src.fail("uses", f"{_show(uses)} is not a shipped step (known: {known})", name)
    return uses_script(uses)


def _relpath(src: _Source, key: str, value: object, *, dot_ok: bool = False) -> str:
    """A path on the host, relative to the work dir, that cannot leave it."""
    if relpath_ok(value, dot_ok=dot_ok):
        return str(value)
    raise src.fail(key, f"{_show(value)} is not a relative path inside the work dir")


def _glob(src: _Source, key: str, value: object) -> str:
    problem = glob_problem(value)
    if problem is not None:
        raise src.fail(key, f"{_show(value)} {problem}")
    return str(value)


def _artifacts(src: _Source, value: object) -> tuple[ArtifactSpec, ...]:
    specs = []
    for i, item in enumerate(_list(src, "artifacts", value), start=1):
        key = f"artifacts[{i}]"
        item = _mapping(src, key, item, ("glob", "dir"))
        glob = _glob(src, f"{key}.glob", item.get("glob"))
        specs.append(
            ArtifactSpec(glob, _relpath(src, f"{key}.dir", item.get("dir", "."), dot_ok=True))
        )
    return tuple(specs)


def _manifests(src: _Source, value: object) -> tuple[ManifestSpec, ...]:
    specs = []
    for i, item in enumerate(_list(src, "manifests", value), start=1):
        key = f"manifests[{i}]"
        item = _mapping(src, key, item, ("glob", "base"))
        glob = _glob(src, f"{key}.glob", item.get("glob"))
        base = item.get("base", ".")
        # `..` is the point of base (names relative to the manifest's parent); the hashing
        # command still refuses any listed file outside the work dir.
        segments = base.split("/") if isinstance(base, str) else [""]
        if not all(s and RELPATH_RE.fullmatch(s) and not s.startswith("-") for s in segments):
            raise src.fail(f"{key}.base", f"{_show(base)} is not a relative directory")
        specs.append(ManifestSpec(glob, base))
    return tuple(specs)


def _files(src: _Source, value: object) -> tuple[FileSpec, ...]:
    specs: list[FileSpec] = []
    home = src.path.parent.resolve()
    for i, item in enumerate(_list(src, "files", value), start=1):
        key = f"files[{i}]"
        item = _mapping(src, key, item, ("src", "dest", "mode"))
        rel = item.get("src")
        if not isinstance(rel, str) or not rel or os.path.isabs(rel):
            raise src.fail(f"{key}.src", f"{_show(rel)} is not a path relative to the playbook")
        local = (home / rel).resolve()
        if not local.is_relative_to(home):
            raise src.fail(f"{key}.src", f"{rel!r} is outside the playbook's directory {home}")
        if not local.is_file():
            raise src.fail(f"{key}.src", f"{rel!r} does not exist (looked for {local})")
        dest = _relpath(src, f"{key}.dest", item.get("dest"))
        if any(s.dest == dest for s in specs):
            raise src.fail(f"{key}.dest", f"{dest!r} is the destination of two files")
        mode = item.get("mode", "0644")
        if not isinstance(mode, str) or not _MODE_RE.fullmatch(mode):
            raise src.fail(f"{key}.mode", f'{_show(mode)} is not a quoted octal mode like "0644"')
        specs.append(FileSpec(local, dest, int(mode, 8)))
    return tuple(specs)


def _requires(src: _Source, value: object) -> Requirements:
    if value is None:
        return Requirements()
    item = _mapping(src, "requires", value, ("commands", "disk"))
    commands = _list(src, "requires.commands", item.get("commands"))
    for command in commands:
        if not isinstance(command, str) or not _COMMAND_RE.fullmatch(command):
            raise src.fail("requires.commands", f"{_show(command)} is not a command name")
    disk = _mapping(src, "requires.disk", item.get("disk") or {}, ("work", "tmp", "store"))
    sizes: dict[str, int] = {}
    for where, size in disk.items():
        try:
            sizes[where] = parse_size(size)
        except ValueError as exc:
            raise src.fail(f"requires.disk.{where}", str(exc)) from None
    return Requirements(commands=tuple(commands), disk=sizes)


def _guix_describe(src: _Source, value: object) -> str | None:
    return None if value is None else _relpath(src, "guix_describe", value)
