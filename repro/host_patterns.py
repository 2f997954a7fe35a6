"""Ansible host patterns (`--limit`): names, globs, ~regex, unions, `&` and `!`, subscripts
(`web[0]`, `web[1:2]`, `web[-1]`, `web[5:]`) and `@file` lists, over a loaded inventory.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from repro.errors import UnknownHostError, UsageError
from repro.inventory_model import _show

if TYPE_CHECKING:
    from repro.inventory_model import Host, Inventory


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
