"""The inventory's records (Host, Inventory) and the names and values rules they obey, shared by
the loader (repro.inventory), host building (repro.inventory_hosts) and patterns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.transport import DEFAULT_TRANSPORT


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
    # the inventory file it came from, for the commands a message suggests (`-i FILE`)
    inventory: str = field(default="", compare=False)

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
