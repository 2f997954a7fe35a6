"""Building one inventory host: its variables layered in Ansible's order and templated, its
connection settings (ssh arguments included) validated, and what repro ignores reported.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.errors import InventoryError
from repro.inventory_model import (
    _ADDRESS,
    _ADDRESS_VARS,
    _CONNECTIONS,
    _CONTROL,
    _DIGITS,
    _KEY_VARS,
    _PORT_VARS,
    _UNSAFE_TEXT,
    _USER_VARS,
    Host,
    _show,
)
from repro.ssh_args import ARG_VARS, SshArgsError, parse_ssh_args
from repro.transport import DEFAULT_TRANSPORT, TRANSPORTS

if TYPE_CHECKING:
    from repro.inventory import _Parser

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
    "repro_host_wait",
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
        if parsed.known_hosts and "repro_known_hosts" not in self.vars:
            self.vars["repro_known_hosts"] = parsed.known_hosts
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
            where = self.origins.get(str(exc).split(" ", 1)[0], str(self.path))
            raise InventoryError(f"{where}: host {self.name!r}: {exc}") from None

    def transport(self) -> str:
        value = self.vars.get("repro_transport", DEFAULT_TRANSPORT)
        if value not in TRANSPORTS:
            raise self.fail("repro_transport", value, f"is not one of {', '.join(TRANSPORTS)}")
        return str(value)


@dataclass
class Layers:
    """group_vars/ and host_vars/ files: entity name -> [(file, its variables)] in load order."""

    groups: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    hosts: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Layers({len(self.groups)} groups, {len(self.hosts)} hosts)"


def build_host(
    parser: _Parser,
    layers: Layers,
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


def ignored_settings(hosts: Any) -> list[str]:
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
