"""`repro inventory`: what repro resolved from an inventory, in ansible-inventory's shapes
(--list JSON, --graph tree, --host JSON), plus where each variable came from (--vars).
"""

from __future__ import annotations

import json
from typing import Any

from repro.errors import UnknownHostError
from repro.inventory import Inventory
from repro.jinja_vars import UnsafeText


def _children(inventory: Inventory, group: str) -> list[str]:
    kids = list(inventory.tree[group][1])
    if group == "all" and "ungrouped" in kids:
        # Ansible makes `ungrouped` before reading any file: it is all's first child there.
        kids.remove("ungrouped")
        kids.insert(0, "ungrouped")
    return kids


def as_list(inventory: Inventory) -> dict[str, Any]:
    """`ansible-inventory --list`: groups with their direct hosts and children, and _meta."""
    result: dict[str, Any] = {}
    seen: set[str] = set()

    def visit(group: str) -> None:
        entry: dict[str, Any] = {}
        if group != "all":
            entry["hosts"] = list(inventory.tree[group][0])
        entry["children"] = _children(inventory, group)
        for kid in entry["children"]:
            if kid not in seen:
                seen.add(kid)
                visit(kid)
        entry = {k: v for k, v in entry.items() if v}
        if entry:
            result[group] = entry

    visit("all")
    hostvars = {
        name: _marked(host.raw_vars) for name, host in inventory.hosts.items() if host.raw_vars
    }
    result["_meta"] = {"hostvars": hostvars}
    return result


def _marked(value: Any) -> Any:
    """Values Ansible marked unsafe shown with its marker, as ansible-inventory shows them."""
    if isinstance(value, UnsafeText):
        return {"__ansible_unsafe": str(value)}
    if isinstance(value, dict):
        return {k: _marked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_marked(v) for v in value]
    return value


def as_graph(inventory: Inventory, group: str = "all") -> str:
    """`ansible-inventory --graph`: @groups and hosts, indented with `  |--`."""
    if group not in inventory.tree:
        raise UnknownHostError(f"no group {group!r} in {inventory.path}")
    lines: list[str] = []

    def visit(name: str, depth: int) -> None:
        lines.append(_indent(f"@{name}:", depth))
        for kid in _children(inventory, name):
            visit(kid, depth + 1)
        if name != "all":
            for host in inventory.tree[name][0]:
                lines.append(_indent(host, depth + 1))

    visit(group, 0)
    return "\n".join(lines) + "\n"


def _indent(name: str, depth: int) -> str:
    return "  |" * depth + "--" + name if depth else name


def host_vars(inventory: Inventory, name: str, *, resolved: bool = False) -> dict[str, Any]:
    """`ansible-inventory --host NAME`; `resolved`: templated values and where each came from."""
    if name not in inventory.hosts:
        raise UnknownHostError(f"no host {name!r} in {inventory.path}")
    host = inventory.hosts[name]
    if not resolved:
        return dict(host.raw_vars)
    shown: dict[str, Any] = {}
    for key in host.raw_vars:
        entry: dict[str, Any] = {"value": host.vars.get(key), "from": host.origins.get(key)}
        if key in host.var_errors:
            entry = {"error": host.var_errors[key], "from": host.origins.get(key)}
        elif host.vars.get(key) != host.raw_vars[key]:
            entry["as_written"] = host.raw_vars[key]
        shown[key] = entry
    return shown


def dumps(data: Any) -> str:
    """JSON as ansible-inventory prints it (sorted keys, four spaces)."""
    return json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False, default=str) + "\n"
