"""Ansible-style YAML inventories -> Host records, with layered variables and --limit patterns.

A user's existing Ansible inventory loads unchanged: all/children/hosts/vars, host ranges
(`build[01:03]`), ansible_host/port/user/ssh_private_key_file/connection.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import ascii_letters
from typing import Any

import yaml

from repro.errors import InputError, InventoryError, UnknownHostError, UsageError
from repro.ssh_args import ARG_VARS, SshArgsError, parse_ssh_args
from repro.transport import DEFAULT_TRANSPORT, TRANSPORTS


@dataclass(frozen=True)
class Host:
    """One build host, with every variable already layered (all < group < child < host < -e)."""

    name: str  # inventory_hostname; validated as path-safe ([A-Za-z0-9_.-], no leading dot)
    address: str  # ansible_host, or the name
    port: int = 22  # ansible_port
    port_set: bool = True  # False: the inventory sets no port, so ~/.ssh/config's Port applies
    user: str | None = None  # ansible_user
    key_file: str | None = None  # ansible_ssh_private_key_file (~ expanded)
    connection: str = "ssh"  # ansible_connection: "ssh" or "local"
    transport: str = DEFAULT_TRANSPORT  # repro_transport: a name in TRANSPORTS (ssh hosts only)
    known_hosts: str | None = None  # repro_known_hosts: file; None means ~/.ssh/known_hosts
    proxy_jump: str | None = None  # ProxyJump from ansible_ssh_*_args; None: ~/.ssh/config's
    groups: tuple[str, ...] = ()  # every group the host is in, outermost first ("all" first)
    vars: dict[str, Any] = field(default_factory=dict, compare=False)  # layered, templated
    # What `repro inventory` shows: the values as written, and the file each one came from
    raw_vars: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # Variables whose Jinja failed: an error only once something uses them (Ansible is lazy too)
    var_errors: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __repr__(self) -> str:
        where = "local" if self.connection == "local" else f"{self.address}:{self.port}"
        return f"Host({self.name!r}, {where})"


@dataclass(frozen=True)
class Inventory:
    """A loaded inventory: hosts in file order, and group name -> member host names."""

    path: Path | None
    hosts: dict[str, Host]
    groups: dict[str, tuple[str, ...]]
    # Ansible settings repro does not act on, one line each naming file and key (the CLI prints)
    warnings: tuple[str, ...] = ()
    # group -> (its direct hosts, its child groups), as written: `repro inventory` shows it
    tree: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __repr__(self) -> str:
        return f"Inventory({str(self.path)!r}, {len(self.hosts)} hosts)"


# --- names and values ------------------------------------------------------------------------

# Host and group names become directory names under reports/, so they must be path-safe.
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
MAX_NAME_LEN = 255  # a file name's limit on every common filesystem
# What ssh and asyncssh accept as a destination: DNS names, IPv4, IPv6 (with a %zone).
_ADDRESS = re.compile(r"[A-Za-z0-9_.:%-]+\Z")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UNSAFE_TEXT = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")

MAX_RANGE_HOSTS = 10_000  # one `[a:b]` pattern expanding past this is a typo, not a fleet
_MAX_NESTING = 64  # keeps a hostile file from exhausting the recursion limit
_GROUP_KEYS = ("hosts", "children", "vars")
_CONNECTIONS = {
    "ssh": "ssh",
    "smart": "ssh",
    "paramiko": "ssh",
    "paramiko_ssh": "ssh",
    "local": "local",
}
# Ansible reads each setting from several variables; the last one present wins, as there.
_ADDRESS_VARS = ("ansible_host", "ansible_ssh_host")
_PORT_VARS = ("ansible_port", "ansible_ssh_port")
_USER_VARS = ("ansible_user", "ansible_ssh_user")
_KEY_VARS = ("ansible_private_key_file", "ansible_ssh_private_key_file")


def is_safe_name(name: object) -> bool:
    """Whether `name` can be a host or group name (and so a directory name in a report)."""
    return isinstance(name, str) and len(name) <= MAX_NAME_LEN and bool(SAFE_NAME.match(name))


def _show(value: object) -> str:
    """A value for a one-line message: repr escapes control characters; long ones are cut."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: object) -> str:
    kinds = {list: "a list", str: "a string", bool: "a boolean", dict: "a mapping"}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return kinds.get(type(value), f"a {type(value).__name__}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
        return yaml.safe_load(text)
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


def _host_groups(parser: _Parser, host: str, rank: dict[str, tuple[int, int, str]]) -> list[str]:
    """Every group holding `host`, directly or through a child, lowest precedence first."""
    found: set[str] = set()
    todo = list(parser.host_groups[host])
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(parser.groups[name].parents)
    return sorted(found, key=rank.__getitem__)


#: per-host timeouts the transports and the runner read (seconds)
_SECONDS_VARS = (
    "repro_connect_timeout", "repro_keepalive_interval", "repro_reconnect_timeout",
)  # fmt: skip
#: where runs go on the host: "~" or "~/…" (the host's $HOME) or an absolute path
_WORK_DIR = re.compile(r"^(~|~/[A-Za-z0-9_./+@=,:-]*|/[A-Za-z0-9_./+@=,:-]*)$")

# --- building hosts --------------------------------------------------------------------------


def _pick(variables: Mapping[str, Any], names: Sequence[str]) -> tuple[str, Any]:
    """The last of `names` that is set, and its value (names[0], None if none is)."""
    for name in reversed(names):
        if name in variables:
            return name, variables[name]
    return names[0], None


class _HostBuilder:
    """Turns one host's layered variables into a validated Host."""

    def __init__(
        self, path: Path, name: str, variables: dict[str, Any], origins: dict[str, str]
    ) -> None:
        self.path, self.name, self.vars, self.origins = path, name, variables, origins
        self.warnings: list[str] = []
        self.proxy_jump: str | None = None
        self.apply_ssh_args()

    def apply_ssh_args(self) -> None:
        """ansible_ssh_common_args/_extra_args: their -o values fill what the vars leave unset
        (Ansible passes ansible_port & co. to ssh first, and ssh keeps the first value)."""
        texts = []
        for key in ARG_VARS:
            value = self.vars.get(key)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise self.fail(key, value, "is not a string of ssh arguments")
            texts.append((key, value))
        try:
            parsed = parse_ssh_args(texts)
        except SshArgsError as exc:
            where = self.origins.get(str(exc).partition(":")[0], str(self.path))
            raise InventoryError(f"{where}: host {self.name!r}: {exc}") from None
        self.warnings.extend(parsed.warnings)
        route = parsed.route
        for names, key in ((_PORT_VARS, "port"), (_USER_VARS, "user"), (_KEY_VARS, "key_file")):
            if key in route and _pick(self.vars, names)[1] is None:
                self.vars[names[0]] = route[key]
        self.proxy_jump = route.get("proxy_jump")
        for key, value in parsed.tuning.items():
            if key not in self.vars:
                try:
                    self.vars[key] = float(value.rstrip("s"))
                except ValueError:
                    raise self.fail(key, value, "(from ssh -o) is not a number of seconds") from None

    def fail(self, key: str, value: Any, why: str) -> InventoryError:
        where = self.origins.get(key, str(self.path))
        return InventoryError(f"{where}: host {self.name!r}: {key} {_show(value)} {why}")

    def build(self, groups: tuple[str, ...]) -> Host:
        self.check_repro_vars()
        return Host(
            name=self.name,
            address=self.address(),
            port=self.port(),
            port_set=_pick(self.vars, _PORT_VARS)[1] is not None,
            user=self.user(),
            key_file=self.key_file(),
            connection=self.connection(),
            transport=self.transport(),
            known_hosts=self.known_hosts(),
            proxy_jump=self.proxy_jump,
            groups=groups,
            vars=self.vars,
        )

    def address(self) -> str:
        key, value = _pick(self.vars, _ADDRESS_VARS)
        if value is None:
            return self.name
        if not isinstance(value, str) or not _ADDRESS.match(value) or value.startswith("-"):
            raise self.fail(key, value, "is not a host name or IP address")
        return value

    def port(self) -> int:
        key, value = _pick(self.vars, _PORT_VARS)
        if value is None:
            return 22
        text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
        if not _DIGITS.match(text) or not 1 <= int(text) <= 65535:
            raise self.fail(key, value, "is not a port number (1-65535)")
        return int(text)

    def user(self) -> str | None:
        key, value = _pick(self.vars, _USER_VARS)
        if value is None:
            return None
        if not isinstance(value, str) or not value or _UNSAFE_TEXT.search(value) or value[0] == "-":
            raise self.fail(key, value, "is not a user name")
        return value

    def key_file(self) -> str | None:
        key, value = _pick(self.vars, _KEY_VARS)
        if value is None:
            return None
        return os.path.expanduser(self.path_text(key, value))

    def known_hosts(self) -> str | None:
        value = self.vars.get("repro_known_hosts")
        if value is None:
            return None
        path = Path(os.path.expanduser(self.path_text("repro_known_hosts", value)))
        # Relative to the inventory, so a checked-in inventory and known_hosts travel together.
        return str(path if path.is_absolute() else self.path.absolute().parent / path)

    def path_text(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value or _CONTROL.search(value):
            raise self.fail(key, value, "is not a file path")
        return value

    def connection(self) -> str:
        value = self.vars.get("ansible_connection", "ssh")
        name = value.removeprefix("ansible.builtin.") if isinstance(value, str) else value
        if name not in _CONNECTIONS:
            raise self.fail("ansible_connection", value, "is not supported (ssh, paramiko, local)")
        return _CONNECTIONS[name]

    def check_repro_vars(self) -> None:
        """repro's own tuning vars are read at run time; a bad one is bad input now (exit 2)."""
        for key in _SECONDS_VARS:
            value = self.vars.get(key)
            if value is None:
                continue
            try:
                ok = not isinstance(value, bool) and float(value) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise self.fail(key, value, "is not a positive number of seconds")
        work = self.vars.get("repro_work_dir")
        if work is not None and (
            not isinstance(work, str) or not _WORK_DIR.match(work) or "/../" in work + "/"
        ):
            raise self.fail(
                "repro_work_dir", work, "is not an absolute path or ~/path of plain characters"
            )
        from repro.retention import retention

        try:
            retention(self.vars)
        except ValueError as exc:
            raise InventoryError(f"{self.path}: host {self.name!r}: {exc}") from None

    def transport(self) -> str:
        value = self.vars.get("repro_transport", DEFAULT_TRANSPORT)
        if value not in TRANSPORTS:
            raise self.fail("repro_transport", value, f"is not one of {', '.join(TRANSPORTS)}")
        return str(value)


# --- public API ------------------------------------------------------------------------------


#: what --inventory-via takes: the built-in loader, Ansible's (ansible-inventory), or auto
VIA = ("auto", "builtin", "ansible")


def load_inventory(
    path: str | Path, extra_vars: Mapping[str, Any] | None = None, *, via: str = "auto"
) -> Inventory:
    """Load an Ansible inventory; `extra_vars` (the `-e` values) override every variable.

    `path` is a YAML or INI file, a directory of them, or `host1,host2,`; group_vars/ and
    host_vars/ beside it load too. Variables are layered as Ansible does: all < group_vars/all
    < groups < group_vars/<group> < host < host_vars/<host> < extra_vars; groups by depth (a
    child after its parent), then `ansible_group_priority`, then name; so when a host is in
    two sibling groups, the group whose name sorts later wins. Jinja in values is then
    templated (repro.jinja_vars). Hosts keep their first-seen file order.

    `via="ansible"` reads the inventory through `ansible-inventory`; "auto" does so only for
    sources the built-in loader cannot read (plugins, scripts, vault) and "builtin" never.
    """
    from repro import inventory_files as files

    if via not in VIA:
        raise UsageError(f"--inventory-via {via!r}: expected one of {', '.join(VIA)}")
    path = Path(path)
    extra = dict(extra_vars or {})
    if via == "ansible":
        return _via_ansible(path, extra, why=None)
    parser = _Parser(path)
    layers = _Layers()
    try:
        names = files.host_list(str(path))
        if names is not None:
            parser.declare("ungrouped")
            for name in names:
                parser.add_hosts("ungrouped", name, {})
        else:
            found = files.sources(path)
            for source in found:
                parser.path = source.path
                _read_source(parser, source)
            parser.path = path
            basedirs = [path if path.is_dir() else path.parent]
            basedirs += [source.path.parent for source in found]
            for basedir in dict.fromkeys(basedirs):
                _read_vars_dirs(parser, layers, basedir)
    except files.NeedsAnsible as need:
        if via == "builtin":
            raise InventoryError(
                f"{need}: only Ansible reads this; install ansible-core and use "
                "--inventory-via ansible"
            ) from None
        return _via_ansible(path, extra, why=need)
    if not parser.host_vars:
        raise parser.fail("inventory has no hosts")
    return _assemble(parser, layers, extra)


def _assemble(parser: _Parser, layers: _Layers, extra: dict[str, Any]) -> Inventory:
    _link_groups(parser)
    depth = _depths(parser)
    rank = {name: (depth[name], group.priority, name) for name, group in parser.groups.items()}
    hosts = {name: _build_host(parser, layers, name, rank, extra) for name in parser.host_vars}
    members = {name: tuple(h.name for h in hosts.values() if name in h.groups) for name in rank}
    return Inventory(
        path=parser.path,
        hosts=hosts,
        groups=members,
        warnings=tuple(layers.warnings + _ignored_settings(hosts.values())),
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


@dataclass
class _Layers:
    """group_vars/ and host_vars/ files: entity name -> [(file, its variables)] in load order."""

    groups: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    hosts: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"_Layers({len(self.groups)} groups, {len(self.hosts)} hosts)"


def _read_vars_dirs(parser: _Parser, layers: _Layers, basedir: Path) -> None:
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


def _build_host(
    parser: _Parser,
    layers: _Layers,
    name: str,
    rank: dict[str, tuple[int, int, str]],
    extra: dict[str, Any],
) -> Host:
    from repro.jinja_vars import Templar, TemplateError

    groups = _host_groups(parser, name, rank)
    raw: dict[str, Any] = {}
    origins: dict[str, str] = {}

    def put(values: Mapping[str, Any], where: Mapping[str, str] | str) -> None:
        for key, value in values.items():
            raw[key] = value
            origins[key] = where if isinstance(where, str) else where.get(key, str(parser.path))

    # Ansible's order (checked against ansible-core by the differential tests): every group's
    # inventory-file vars (all first, children after parents), then every group's group_vars/
    # files in the same order, then the host's own, then its host_vars/ files.
    for group in groups:
        put(parser.groups[group].vars, parser.groups[group].origins)
    for group in groups:
        for where, layer in layers.groups.get(group, []):
            put(layer, where)
    put(parser.host_vars[name], parser.host_origins.get(name, {}))
    for where, layer in layers.hosts.get(name, []):
        put(layer, where)
    put(extra, "-e")
    raw["inventory_hostname"] = name
    origins["inventory_hostname"] = "the host's name"
    templar = Templar(raw)
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key in raw:
        try:
            values[key] = templar.value(key)
        except TemplateError as exc:
            errors[key] = f"{origins[key]}: host {name!r}: {key}: {exc}"
    for key, message in errors.items():
        if key.startswith(("ansible_", "repro_")):  # read by repro now, so needed now
            raise InventoryError(message)
    # Hosts must not share nested values: one host's change would show up on another.
    variables = copy.deepcopy(values)
    builder = _HostBuilder(parser.path, name, variables, origins)
    host = builder.build(tuple(groups))
    return dataclasses.replace(
        host,
        raw_vars=copy.deepcopy({k: v for k, v in raw.items() if k != "inventory_hostname"}),
        origins=origins,
        var_errors=errors,
        warnings=tuple(builder.warnings),
    )


#: ansible_* variables repro acts on; any other one set in an inventory is reported, not dropped
_USED_SETTINGS = frozenset(
    {*_ADDRESS_VARS, *_PORT_VARS, *_USER_VARS, *_KEY_VARS, *ARG_VARS, "ansible_connection",
     "ansible_group_priority"}
)  # fmt: skip


def _ignored_settings(hosts: Any) -> list[str]:
    seen: dict[str, list[str]] = {}
    lines: list[str] = []
    for host in hosts:
        for message in host.warnings:
            where = host.origins.get(message.partition(":")[0], "")
            line = f"{where}: {message}" if where else message
            if line not in lines:
                lines.append(line)
        for key in host.raw_vars:
            if key.startswith("ansible_") and key not in _USED_SETTINGS:
                seen.setdefault(f"{host.origins.get(key, '')}: {key}", []).append(host.name)
    for where_key, names in seen.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        lines.append(f"{where_key} is not used by repro; ignored (hosts {shown})")
    return lines


def _via_ansible(path: Path, extra: dict[str, Any], why: Exception | None) -> Inventory:
    """The inventory as `ansible-inventory --list` resolves it (variables already layered)."""
    from repro.ansible_inventory import ansible_list

    data, said = ansible_list(path, why)
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
    return _assemble(parser, _Layers(), extra)


def parse_extra_vars(items: Sequence[str]) -> dict[str, Any]:
    """`-e KEY=VALUE` (values stay strings) and `-e @vars.yaml` (a mapping); later items win."""
    result: dict[str, Any] = {}
    for item in items:
        if item.startswith("@"):
            result.update(_extra_vars_file(item[1:]))
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"-e {_show(item)}: expected KEY=VALUE or @file.yaml")
        if not _IDENTIFIER.match(key):
            raise UsageError(f"-e {_show(item)}: {_show(key)} is not a variable name")
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


# Ansible's split: commas if there are any, else colons outside `[...]`.
_COLON_PARTS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


def select(inventory: Inventory, pattern: str | None) -> list[Host]:
    """The hosts an Ansible `--limit` pattern selects, in inventory order.

    Elements are names, globs or `~regex` (matched from the start of the name, as Ansible's
    re.match), against groups and hosts; `a:b` or `a,b` is a union, `&x` an intersection,
    `!x` an exclusion, applied in that order whatever the order written. An element that
    matches no host, or an empty result, raises UnknownHostError; a malformed pattern (empty,
    a bad regex) raises UsageError.
    """
    if pattern is None:
        return list(inventory.hosts.values())
    parts = _limit_files(_split_pattern(pattern))
    if not parts:
        raise UsageError(f"empty host pattern {_show(pattern)}")
    unions = [p for p in parts if p[0] not in "&!"] or ["all"]
    chosen: set[str] = set()
    for part in unions:
        chosen |= {part} if part in inventory.hosts else _subscripted(inventory, part)
    for part in (p for p in parts if p[0] == "&"):
        chosen &= _subscripted(inventory, part[1:])
    for part in (p for p in parts if p[0] == "!"):
        chosen -= _subscripted(inventory, part[1:])
    hosts = [host for name, host in inventory.hosts.items() if name in chosen]
    if not hosts:
        raise UnknownHostError(
            f"host pattern {_show(pattern)} selects no host in {_where(inventory)}"
        )
    return hosts


_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+):([0-9]*))\]$")
_MAX_LIMIT_FILE = 1 << 20


def _limit_files(parts: list[str]) -> list[str]:
    """`@file` elements replaced by the host names in the file, one a line (Ansible's retry files)."""
    result: list[str] = []
    for part in parts:
        if not part.startswith("@"):
            result.append(part)
            continue
        path = Path(part[1:])
        try:
            with path.open(encoding="utf-8") as f:
                text = f.read(_MAX_LIMIT_FILE + 1)
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise UsageError(f"--limit {part}: cannot read {path}: {why}") from None
        if len(text) > _MAX_LIMIT_FILE:
            raise UsageError(f"--limit {part}: {path} is larger than {_MAX_LIMIT_FILE} bytes")
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            raise UsageError(f"--limit {part}: {path} names no host")
        result.extend(names)
    return result


def _subscripted(inventory: Inventory, element: str) -> set[str]:
    """`group[0]`, `group[-1]`, `group[1:2]` (inclusive), `web[5:]`: Ansible's subscripts, over
    the hosts the element matches in inventory order; otherwise `_match`."""
    found = _SUBSCRIPT.match(element)
    if not found:
        return _match(inventory, element)
    base, index, start, end = found.groups()
    matched = _match(inventory, base)
    ordered = [name for name in inventory.hosts if name in matched]
    if index is not None:
        i = int(index)
        if not -len(ordered) <= i < len(ordered):
            raise UnknownHostError(
                f"{_show(element)}: {base} has {len(ordered)} hosts, no index {i}"
            )
        return {ordered[i]}
    last = int(end) if end else len(ordered) - 1
    picked = ordered[int(start) : last + 1]
    if not picked:
        raise UnknownHostError(f"{_show(element)}: {base} has {len(ordered)} hosts, none there")
    return set(picked)


def _split_pattern(pattern: str) -> list[str]:
    parts = pattern.split(",") if "," in pattern else _COLON_PARTS.findall(pattern)
    return [part.strip() for part in parts if part.strip()]


def _where(inventory: Inventory) -> str:
    return str(inventory.path) if inventory.path is not None else "the inventory"


def _match(inventory: Inventory, element: str) -> set[str]:
    """Host names one pattern element matches; raises when it matches none."""
    if not element:
        raise UsageError("a '&' or '!' in a host pattern must be followed by a name")
    test = _compile(element)
    groups = [name for name in inventory.groups if test(name)]
    names = {host for group in groups for host in inventory.groups[group]}
    # As Ansible: a plain word that names a group is only that group; globs also match hosts.
    if not groups or element[0] == "~" or any(c in element for c in ".?*["):
        names |= {name for name in inventory.hosts if test(name)}
    if groups and not names:
        raise UnknownHostError(
            f"{_show(element)} matches only empty groups in {_where(inventory)}: "
            + ", ".join(groups)
        )
    if not names:
        raise UnknownHostError(f"no host or group in {_where(inventory)} matches {_show(element)}")
    return names


def _compile(element: str) -> Callable[[str], object]:
    try:
        if element.startswith("~"):
            return re.compile(element[1:]).match
        return re.compile(fnmatch.translate(element)).match
    except re.error as exc:
        raise UsageError(
            f"bad regular expression in host pattern {_show(element)}: {exc}"
        ) from None
