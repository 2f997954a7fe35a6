"""Which files make up an Ansible inventory, as Ansible reads them: a YAML or INI file, a
directory of them, `host1,host2,` lists, and the group_vars/ and host_vars/ beside them.

Anything only Ansible itself can read (plugin configs, scripts, vault) raises NeedsAnsible.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from repro.errors import InventoryError

YAML_EXTS = (".yaml", ".yml", ".json")
# Ansible's INVENTORY_IGNORE_EXTS (REJECT_EXTS + .orig, .cfg, .retry) and its vars dir names
_IGNORED_EXTS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig",
                 ".cfg", ".retry")  # fmt: skip
_VARS_DIRS = ("group_vars", "host_vars")
_VARS_EXTS = ("", ".yml", ".yaml", ".json")  # Ansible's host_group_vars plugin
_MAX_FILES = 10_000  # an inventory directory past this is a wrong path (/ or $HOME)
_VAULT = "$ANSIBLE_VAULT"


class NeedsAnsible(Exception):
    """A source only Ansible's own loader reads; `reason` says which and why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Source:
    """One inventory file and how to read it."""

    path: Path
    kind: str  # "yaml" or "ini"

    def __repr__(self) -> str:
        return f"Source({str(self.path)!r}, {self.kind})"


def sources(path: Path) -> list[Source]:
    """The files of inventory `path` in Ansible's order (a directory: sorted, recursively)."""
    if path.is_dir():
        found = list(_walk(path))
        if not found:
            raise InventoryError(f"{path}: inventory directory holds no inventory file")
        return found
    if not path.exists():
        raise InventoryError(f"{path}: inventory file not found")
    return [_source(path)]


def _walk(directory: Path) -> Iterator[Source]:
    count = 0
    for entry in sorted(directory.iterdir()):
        name = entry.name
        if name.startswith(".") or name.endswith(_IGNORED_EXTS) or name in _VARS_DIRS:
            continue
        count += 1
        if count > _MAX_FILES:
            raise InventoryError(f"{directory}: more than {_MAX_FILES} files in an inventory")
        if entry.is_dir():
            yield from _walk(entry)
        elif entry.is_file():
            yield _source(entry)


def _source(path: Path) -> Source:
    if path.suffix in YAML_EXTS:
        head = _head(path)
        if re.search(r"^plugin\s*:", head, re.M):
            raise NeedsAnsible(path, "is an inventory plugin config ('plugin:')")
        if _VAULT in head or "!vault" in head:
            raise NeedsAnsible(path, "holds Ansible Vault data")
        return Source(path, "yaml")
    if path.suffix == ".toml":
        raise NeedsAnsible(path, "is a TOML inventory")
    if os.access(path, os.X_OK):
        raise NeedsAnsible(path, "is an executable (a dynamic inventory script)")
    if _head(path).startswith(_VAULT):
        raise NeedsAnsible(path, "is Ansible Vault encrypted")
    return Source(path, "ini")


def _head(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read inventory file: {exc.strerror or exc}") from None


def host_list(text: str) -> list[str] | None:
    """`-i 'web1,web2,'` (Ansible's host_list): the names, or None if `text` is not one."""
    if "," not in text or os.path.exists(text):
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


# --- INI ---------------------------------------------------------------------------------------


class GroupSink(Protocol):
    """What the INI reader feeds (repro.inventory's parser)."""

    def declare(self, name: str) -> None: ...
    def add_hosts(self, group: str, pattern: str, variables: dict[str, Any]) -> None: ...
    def add_child(self, group: str, child: str) -> None: ...
    def set_var(self, group: str, key: str, value: Any) -> None: ...
    def fail(self, message: str) -> InventoryError: ...


_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_LINE = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


def read_ini(sink: GroupSink, text: str) -> None:
    """Ansible's INI format, line by line as its ini plugin reads it (values literal_eval'd)."""
    group, state = "ungrouped", "hosts"
    pending: dict[str, tuple[int, str]] = {}  # group -> (line, "vars" or "children")
    declared = {"ungrouped", "all"}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        where = f"line {lineno}"
        section = _SECTION.match(line)
        if section:
            group, state = section.group(1), section.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise sink.fail(f"{where}: section [{group}:{state}] has unknown type {state!r}")
            if state == "vars":
                if group not in declared:
                    pending.setdefault(group, (lineno, "vars"))
            else:
                declared.add(group)
                pending.pop(group, None)
            sink.declare(group)
            continue
        if line.startswith("[") and line.endswith("]"):
            raise sink.fail(f"{where}: invalid section {line!r} (no spaces in section names)")
        if state == "hosts":
            pattern, variables = _host_line(sink, line, where)
            sink.add_hosts(group, pattern, variables)
        elif state == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise sink.fail(f"{where}: expected key=value in [{group}:vars], got {line!r}")
            sink.set_var(group, key.strip(), _value(value.strip()))
        else:
            child = _GROUP_LINE.match(line)
            if not child:
                raise sink.fail(f"{where}: expected a group name in [{group}:children]")
            name = child.group(1)
            if name not in declared:
                pending.setdefault(name, (lineno, f"children of {group}"))
            sink.add_child(group, name)
    for name, (lineno, what) in pending.items():
        if name not in declared:
            if what == "vars":
                raise sink.fail(f"line {lineno}: [{name}:vars] is for a group defined nowhere")
            raise sink.fail(f"line {lineno}: group {name!r} ({what}) is defined nowhere")


def _host_line(sink: GroupSink, line: str, where: str) -> tuple[str, dict[str, Any]]:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise sink.fail(f"{where}: cannot parse host line {line!r}: {exc}") from None
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep:
            raise sink.fail(f"{where}: expected key=value after the host name, got {token!r}")
        variables[key] = _value(value)
    if tokens[0].endswith(":"):
        raise sink.fail(f"{where}: host {tokens[0]!r} ends in ':' with no port")
    return tokens[0], variables


def _value(text: str) -> Any:
    """As Ansible: a Python literal if it is one (5, True, [1, 2], 'quoted'), else the text."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is ... or isinstance(value, complex):
        return "..." if value is ... else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return value


# --- group_vars/ and host_vars/ -------------------------------------------------------------------


def vars_files(basedir: Path, kind: str, name: str) -> list[Path]:
    """As Ansible's find_vars_files: the first of group_vars/NAME{,.yml,.yaml,.json} that exists;
    a directory stands for every vars file under it, in sorted order."""
    for ext in _VARS_EXTS:
        candidate = basedir / kind / (name + ext)
        if candidate.is_dir():
            return list(_vars_dir(candidate))
        if candidate.is_file():
            return [candidate]
    return []


def _vars_dir(folder: Path) -> Iterator[Path]:
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and not entry.suffix:
            yield from _vars_dir(entry)
        elif entry.is_file() and entry.suffix in _VARS_EXTS:
            yield entry


def vars_names(basedir: Path, kind: str) -> set[str]:
    """Every entity name group_vars/ (or host_vars/) has a file or directory for."""
    root = basedir / kind
    if not root.is_dir():
        return set()
    names = set()
    for entry in root.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            names.add(entry.name)
        elif entry.suffix in _VARS_EXTS[1:]:
            names.add(entry.stem)
        elif entry.suffix == "":
            names.add(entry.name)
    return names


def check_vault(path: Path, text: str) -> None:
    if text.lstrip().startswith(_VAULT) or "!vault" in text:
        raise NeedsAnsible(path, "holds Ansible Vault data")
