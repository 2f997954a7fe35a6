"""Ansible inventories -> Host records: YAML and INI files, directories, group_vars/host_vars,
the group graph. Building each host is repro.inventory_hosts; `--limit` is repro.host_patterns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from string import ascii_letters
from typing import TYPE_CHECKING, Any

import yaml

from repro import yamlsafe
from repro.errors import InputError, InventoryError, UnknownHostError, UsageError
from repro.inventory_model import (  # re-exported: repro.inventory is the public face
    _ADDRESS,
    _ADDRESS_VARS,
    _CONNECTIONS,
    _CONTROL,
    _DIGITS,
    _GROUP_KEYS,
    Host,
    _IDENTIFIER,
    Inventory,
    is_safe_name,
    _KEY_VARS,
    _kind,
    MAX_NAME_LEN,
    _MAX_NESTING,
    MAX_RANGE_HOSTS,
    _one_line,
    _PORT_VARS,
    SAFE_NAME,
    _show,
    _UNSAFE_TEXT,
    _USER_VARS,
)
from repro.host_patterns import select

if TYPE_CHECKING:
    from repro.inventory_hosts import Layers


# --- reading files ---------------------------------------------------------------------------


def _read_yaml(path: Path, error: type[InputError], what: str) -> Any:
    """yaml.safe_load of a file; every failure becomes one line naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not {what}") from None
    except PermissionError:
        raise error(f"{path}: cannot read {what} (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        return yamlsafe.load(text)
    except yaml.MarkedYAMLError as exc:
        line = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        problem = _one_line(exc.problem or exc.context or "syntax error")
        raise error(f"{path}: invalid YAML{line}: {problem}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML: {_one_line(str(exc))}") from None


# --- host ranges -----------------------------------------------------------------------------

_RANGE = re.compile(r"\[([^\[\]]*)\]")


def expand_host_range(pattern: str, limit: int = MAX_RANGE_HOSTS) -> list[str]:
    """Expand Ansible host ranges: `build[01:03]`, `node[1:10:2]`, `rack[a:c]`, several per name.

    Raises ValueError (with the reason) for a malformed range or one past `limit` hosts.
    """
    match = _RANGE.search(pattern)
    if match is None:
        if "[" in pattern or "]" in pattern:
            raise ValueError("unbalanced '[' or ']'")
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    if "[" in head or "]" in head:
        raise ValueError("unbalanced '[' or ']'")
    names: list[str] = []
    for item in _range_items(match.group(1), limit):
        # The tail may hold more ranges; each is expanded for every item of this one.
        names.extend(expand_host_range(head + item + tail, limit))
        if len(names) > limit:
            raise ValueError(f"expands to more than {limit} hosts")
    return names


def _range_items(spec: str, limit: int) -> list[str]:
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"[{spec}] is not [begin:end] or [begin:end:step]")
    begin, end = bounds[0] or "0", bounds[1]  # Ansible reads an empty begin as 0
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not _DIGITS.match(step_text) or int(step_text) < 1:
        raise ValueError(f"step {step_text!r} is not a positive whole number")
    step = int(step_text)
    if not end:
        raise ValueError(f"[{spec}] has no end")
    if len(begin) == 1 and len(end) == 1 and begin in ascii_letters and end in ascii_letters:
        return _letter_range(begin, end, step)
    if _DIGITS.match(begin) and _DIGITS.match(end):
        return _number_range(begin, end, step, limit)
    raise ValueError(f"[{spec}] needs two numbers or two single letters")


def _letter_range(begin: str, end: str, step: int) -> list[str]:
    first, last = ascii_letters.index(begin), ascii_letters.index(end)
    if first > last:
        raise ValueError(f"begin {begin!r} comes after end {end!r}")
    return list(ascii_letters[first : last + 1 : step])


def _number_range(begin: str, end: str, step: int, limit: int) -> list[str]:
    width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
    if width and len(end) != width:
        raise ValueError(f"zero-padded begin {begin!r} and end {end!r} differ in width")
    if int(begin) > int(end):
        raise ValueError(f"begin {begin} is greater than end {end}")
    numbers = range(int(begin), int(end) + 1, step)
    if len(numbers) > limit:
        raise ValueError(f"expands to more than {limit} hosts")
    return [str(n).zfill(width) for n in numbers]


def _split_port(key: str) -> tuple[str, int | None]:
    """`web1:2222` -> ("web1", 2222), as Ansible reads a port after a host name."""
    head, sep, tail = key.rpartition(":")
    # A colon inside brackets belongs to a range (`build[1:3]`), not to a port.
    if sep and _DIGITS.match(tail) and head.count("[") == head.count("]"):
        return head, int(tail)
    return key, None


# --- parsing ---------------------------------------------------------------------------------


@dataclass
class _Group:
    """A group as written: its own vars, direct hosts and child groups, in file order."""

    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    priority: int = 1  # ansible_group_priority: orders groups of equal depth before their name
    origins: dict[str, str] = field(default_factory=dict)  # var -> the file that set it

    def __repr__(self) -> str:
        return f"_Group({self.name!r}, {len(self.hosts)} hosts)"


class _Parser:
    """Walks the YAML tree once, merging repeated groups and hosts as Ansible does."""

    def __init__(self, path: Path) -> None:
        self.path = path  # the file being read now (an inventory can be several)
        # Ansible makes `ungrouped` before reading anything: first among all's children
        self.groups: dict[str, _Group] = {"all": _Group("all"), "ungrouped": _Group("ungrouped")}
        self.host_vars: dict[str, dict[str, Any]] = {}  # file order = inventory order
        self.host_origins: dict[str, dict[str, str]] = {}  # host -> var -> file
        self.host_groups: dict[str, list[str]] = {}  # groups a host is listed under directly

    # What the INI reader (repro.inventory_files.read_ini) feeds in.

    def declare(self, name: str) -> None:
        self.group(name, None, 0)

    def add_hosts(self, group: str, pattern: str, variables: dict[str, Any]) -> None:
        self.hosts(self.groups[group], {pattern: variables or None})

    def add_child(self, group: str, child: str) -> None:
        self.children(self.groups[group], {child: None}, 0)

    def set_var(self, group: str, key: str, value: Any) -> None:
        self.section(self.groups[group], "vars", {key: value}, 0)

    def fail(self, message: str) -> InventoryError:
        return InventoryError(f"{self.path}: {message}")

    def top(self, data: Any) -> None:
        if data is None:
            raise self.fail("inventory is empty (no hosts)")
        if not isinstance(data, dict):
            raise self.fail(
                f"top level must be a mapping of groups such as 'all:', not {_kind(data)}"
            )
        if "plugin" in data:
            raise self.fail(
                "this is an inventory plugin config ('plugin:'); only YAML inventories load"
            )
        for name, body in data.items():
            self.group(name, body, 0)

    def group(self, name: Any, body: Any, level: int) -> _Group:
        if not is_safe_name(name):
            raise self.fail(f"unsafe group name {_show(name)} (use letters, digits, '_', '.', '-')")
        group = self.groups.setdefault(name, _Group(name))
        if body is None:
            return group
        if not isinstance(body, dict):
            raise self.fail(
                f"group {name!r} must be a mapping of hosts/children/vars, not {_kind(body)}"
            )
        for key, value in body.items():
            self.section(group, key, value, level)
        return group

    def section(self, group: _Group, key: Any, value: Any, level: int) -> None:
        if key not in _GROUP_KEYS:
            raise self.fail(
                f"group {group.name!r}: unknown key {_show(key)} (only hosts, children, vars)"
            )
        if isinstance(value, str) and key != "vars":
            value = {value: None}  # Ansible accepts `hosts: web1` for a single host
        if value is None:
            return
        if not isinstance(value, dict):
            raise self.fail(f"group {group.name!r}: '{key}' must be a mapping, not {_kind(value)}")
        if key == "hosts":
            self.hosts(group, value)
        elif key == "children":
            self.children(group, value, level)
        else:
            variables = dict(self.variables(value, f"group {group.name!r}"))
            if "ansible_group_priority" in variables:  # a setting of the group, not a var
                group.priority = self.priority(group, variables.pop("ansible_group_priority"))
            group.vars.update(variables)
            group.origins.update(dict.fromkeys(variables, str(self.path)))

    def priority(self, group: _Group, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            return int(value)
        raise self.fail(
            f"group {group.name!r}: ansible_group_priority {_show(value)} is not a number"
        )

    def variables(self, mapping: dict[Any, Any], where: str) -> dict[str, Any]:
        for key in mapping:
            if not isinstance(key, str) or not key:
                raise self.fail(f"{where}: variable name {_show(key)} must be a non-empty string")
        return mapping

    def children(self, group: _Group, mapping: dict[Any, Any], level: int) -> None:
        if level >= _MAX_NESTING:
            raise self.fail(f"group {group.name!r}: children nested more than {_MAX_NESTING} deep")
        for name, body in mapping.items():
            child = self.group(name, body, level + 1)
            if child.name == "all":
                raise self.fail(f"group {group.name!r}: 'all' cannot be a child group")
            if child.name not in group.children:
                group.children.append(child.name)
                child.parents.append(group.name)

    def hosts(self, group: _Group, mapping: dict[Any, Any]) -> None:
        for key, body in mapping.items():
            names, port = self.host_names(group, key)
            if body is not None and not isinstance(body, dict):
                raise self.fail(
                    f"group {group.name!r}: host {key!r} must map to variables, not {_kind(body)}"
                )
            variables = self.variables(body or {}, f"host {key!r}")
            for name in names:
                self.add_host(group, name, port, variables)

    def host_names(self, group: _Group, key: Any) -> tuple[list[str], int | None]:
        if not isinstance(key, str):
            raise self.fail(
                f"group {group.name!r}: host name {_show(key)} must be a string (quote it)"
            )
        pattern, port = _split_port(key)
        try:
            names = expand_host_range(pattern)
        except ValueError as exc:
            raise self.fail(f"group {group.name!r}: bad host range {key!r}: {exc}") from None
        for name in names:
            if not is_safe_name(name):
                raise self.fail(
                    f"group {group.name!r}: unsafe host name {_show(name)} "
                    "(use letters, digits, '_', '.', '-'; not starting with '.' or '-')"
                )
        return names, port

    def add_host(
        self, group: _Group, name: str, port: int | None, variables: dict[str, Any]
    ) -> None:
        own = self.host_vars.setdefault(name, {})
        origins = self.host_origins.setdefault(name, {})
        if port is not None:
            own["ansible_port"] = port
            origins["ansible_port"] = str(self.path)
        own.update(variables)
        origins.update(dict.fromkeys(variables, str(self.path)))
        listed = self.host_groups.setdefault(name, [])
        if group.name not in listed:
            listed.append(group.name)
        if name not in group.hosts:
            group.hosts.append(name)


# --- the group graph -------------------------------------------------------------------------


def _link_groups(parser: _Parser) -> None:
    """Top-level groups become children of all; hosts in no group join 'ungrouped' (as Ansible)."""
    groups = parser.groups
    ungrouped = groups.setdefault("ungrouped", _Group("ungrouped"))
    for group in groups.values():
        if group.name != "all" and not group.parents:
            group.parents.append("all")
            groups["all"].children.append(group.name)
    for host, listed in parser.host_groups.items():
        if set(listed) <= {"all", "ungrouped"} and host not in ungrouped.hosts:
            ungrouped.hosts.append(host)
            listed.append("ungrouped")


def _depths(parser: _Parser) -> dict[str, int]:
    """Each group's longest distance from 'all' (Ansible's group depth); rejects cycles."""
    groups = parser.groups
    waiting = {name: len(group.parents) for name, group in groups.items()}
    depth = {"all": 0}
    ready = ["all"]
    while ready:  # Kahn's algorithm: a group is placed once all its parents are
        name = ready.pop()
        for child in groups[name].children:
            depth[child] = max(depth.get(child, 0), depth[name] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    looped = [name for name, left in waiting.items() if left > 0]
    if looped:
        raise parser.fail(
            f"groups {', '.join(map(repr, looped))} are each other's children (a cycle)"
        )
    return depth


# --- public API ------------------------------------------------------------------------------


#: what --inventory-via takes: the built-in loader, Ansible's (ansible-inventory), or auto
VIA = ("auto", "builtin", "ansible")


def load_inventory(
    path: str | Path | Sequence[str | Path],
    extra_vars: Mapping[str, Any] | None = None,
    *,
    via: str = "auto",
) -> Inventory:
    """Load an Ansible inventory; `extra_vars` (the `-e` values) override every variable.

    `path` is a YAML or INI file, a directory of them, `host1,host2,`, or a list of such
    sources (read in order, as several `-i`); group_vars/ and host_vars/ beside each load too.
    Variables are layered as Ansible does: groups' inventory vars < their group_vars/ files
    < host < host_vars/<host> < extra_vars; groups by depth (a child after its parent), then
    `ansible_group_priority`, then name; so when a host is in two sibling groups, the group
    whose name sorts later wins. Jinja in values is then templated (repro.jinja_vars). Hosts
    keep their first-seen file order.

    `via="ansible"` reads the inventory through `ansible-inventory`; "auto" does so only for
    sources the built-in loader cannot read (plugins, scripts, vault) and "builtin" never.
    """
    from repro import inventory_files as files

    if via not in VIA:
        raise UsageError(f"--inventory-via {via!r}: expected one of {', '.join(VIA)}")
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    if not paths:
        raise UsageError("no inventory given")
    extra = dict(extra_vars or {})
    if via == "ansible":
        return _via_ansible(paths, extra, why=None)
    from repro.inventory_hosts import Layers

    parser = _Parser(paths[0])
    layers = Layers()
    try:
        names = files.host_list(str(path)) if isinstance(path, str) else None
        if names is not None:
            parser.declare("ungrouped")
            for name in names:
                parser.add_hosts("ungrouped", name, {})
        else:
            basedirs: list[Path] = []
            for each in paths:
                found = files.sources(each)
                for source in found:
                    parser.path = source.path
                    _read_source(parser, source)
                basedirs.append(each if each.is_dir() else each.parent)
                basedirs += [source.path.parent for source in found]
            parser.path = paths[0]
            for basedir in dict.fromkeys(basedirs):
                _read_vars_dirs(parser, layers, basedir)
    except files.NeedsAnsible as need:
        if via == "builtin":
            raise InventoryError(
                f"{need}: only Ansible reads this; install ansible-core and use "
                "--inventory-via ansible"
            ) from None
        return _via_ansible(paths, extra, why=need)
    if not parser.host_vars:
        raise parser.fail("inventory has no hosts")
    return _assemble(parser, layers, extra)


def _assemble(parser: _Parser, layers: Layers, extra: dict[str, Any]) -> Inventory:
    from repro.inventory_hosts import build_host, ignored_settings

    _link_groups(parser)
    depth = _depths(parser)
    rank = {name: (depth[name], group.priority, name) for name, group in parser.groups.items()}
    hosts = {
        name: replace(build_host(parser, layers, name, rank, extra), inventory=str(parser.path))
        for name in parser.host_vars
    }
    members = {name: tuple(h.name for h in hosts.values() if name in h.groups) for name in rank}
    return Inventory(
        path=parser.path,
        hosts=hosts,
        groups=members,
        warnings=tuple(layers.warnings + ignored_settings(hosts.values())),
        tree={n: (tuple(g.hosts), tuple(g.children)) for n, g in parser.groups.items()},
    )


def _read_source(parser: _Parser, source: Any) -> None:
    from repro import inventory_files as files

    if source.kind == "yaml":
        text = source.path.read_text(encoding="utf-8", errors="replace")
        files.check_vault(source.path, text)
        parser.top(_read_yaml(source.path, InventoryError, "inventory file"))
        return
    try:
        text = source.path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise parser.fail(f"inventory is not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise parser.fail(f"cannot read inventory file: {exc.strerror or exc}") from None
    files.read_ini(parser, text)


def _read_vars_dirs(parser: _Parser, layers: Layers, basedir: Path) -> None:
    from repro import inventory_files as files

    for kind, known, table in (
        ("group_vars", parser.groups, layers.groups),
        ("host_vars", parser.host_vars, layers.hosts),
    ):
        for name in sorted(files.vars_names(basedir, kind)):
            if name not in known:
                what = "group" if kind == "group_vars" else "host"
                layers.warnings.append(
                    f"{basedir / kind / name}: no {what} {name!r} in the inventory; ignored"
                )
                continue
            for path in files.vars_files(basedir, kind, name):
                table.setdefault(name, []).append((str(path), _vars_file(parser, path)))


def _vars_file(parser: _Parser, path: Path) -> dict[str, Any]:
    from repro import inventory_files as files

    files.check_vault(path, path.read_text(encoding="utf-8", errors="replace"))
    data = _read_yaml(path, InventoryError, "vars file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: vars file must be a mapping of variables, not {_kind(data)}")
    saved, parser.path = parser.path, path
    try:
        return dict(parser.variables(data, "vars file"))
    finally:
        parser.path = saved


def _via_ansible(paths: list[Path], extra: dict[str, Any], why: Exception | None) -> Inventory:
    """The inventory as `ansible-inventory --list` resolves it (variables already layered)."""
    from repro.ansible_inventory import ansible_list

    path = paths[0]
    data, said = ansible_list(paths, why)
    parser = _Parser(path)
    meta = data.get("_meta", {}).get("hostvars", {})
    for group, body in data.items():
        if group == "_meta" or not isinstance(body, dict):
            continue
        parser.declare(group)
    for group, body in data.items():
        if group == "_meta" or not isinstance(body, dict):
            continue
        for child in body.get("children", []):
            parser.add_child(group, child)
        for host in body.get("hosts", []):
            parser.add_hosts(group, host, {})
    for host in parser.host_vars:
        hostvars = meta.get(host, {})
        if not isinstance(hostvars, dict):
            raise InventoryError(f"{path}: ansible-inventory gave host {host!r} no variables")
        parser.host_vars[host] = dict(parser.variables(hostvars, f"host {host!r}"))
        parser.host_origins[host] = dict.fromkeys(hostvars, f"{path} (via ansible-inventory)")
    if not parser.host_vars:
        raise InventoryError(f"{why or path}: ansible-inventory found no hosts ({said})")
    from repro.inventory_hosts import Layers

    return _assemble(parser, Layers(), extra)


def parse_extra_vars(items: Sequence[str], *, flag: str = "-e") -> dict[str, Any]:
    """`-e KEY=VALUE` (values stay strings) and `-e @vars.yaml` (a mapping); later items win.

    `flag` "--secret" for secret values: never shown in an error message."""
    result: dict[str, Any] = {}
    for item in items:
        # a --secret item is never echoed: without its `=` the whole item may be the value
        shown = _show(item) if flag == "-e" else "(value not shown)"
        if item.startswith("@"):
            result.update(_extra_vars_file(item[1:]))
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"{flag} {shown}: expected KEY=VALUE or @file.yaml")
        if not _IDENTIFIER.match(key):
            raise UsageError(f"{flag} {shown}: {_show(key)} is not a variable name")
        result[key] = value
    return result


def _extra_vars_file(name: str) -> dict[str, Any]:
    if not name:
        raise UsageError("-e '@': expected a file name after '@'")
    path = Path(name)
    data = _read_yaml(path, UsageError, "extra-vars file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"{path}: extra-vars file must be a mapping of variables, not {_kind(data)}"
        )
    for key in data:
        if not isinstance(key, str) or not _IDENTIFIER.match(key):
            raise UsageError(f"{path}: {_show(key)} is not a variable name")
    return data

__all__ = [
    "Host", "Inventory", "load_inventory", "parse_extra_vars", "select", "expand_host_range",
    "is_safe_name", "SAFE_NAME", "MAX_NAME_LEN", "MAX_RANGE_HOSTS", "VIA",
]  # fmt: skip
