"""Quorum with diversity: which kinds of machine (Intel, AMD, VM, bare metal) must be among the
hosts that built, read from host facts; unmet -> inconclusive, with a reason naming what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from repro.results import HostResult

#: what a playbook's `quorum.require` or `--require` may ask for
TRAITS = ("intel", "amd", "vm", "bare-metal")
_LABELS = {"intel": "Intel", "amd": "AMD", "vm": "VM", "bare-metal": "bare-metal"}
# systemd-detect-virt names that are containers, not VMs (repro.facts reads them the same way)
_CONTAINERS = frozenset({"docker", "podman", "lxc", "lxc-libvirt", "systemd-nspawn", "openvz",
                         "rkt", "wsl", "proot", "pouch", "container-other"})  # fmt: skip


def traits(facts: dict[str, Any]) -> set[str]:
    """What a host is, from its facts. A VM is told by the cpuinfo `hypervisor` flag (every x86
    guest sees it) or by systemd-detect-virt naming a hypervisor; bare metal needs a CPU read."""
    found = set()
    vendor = str(facts.get("cpu_vendor") or "")
    if vendor in ("Intel", "AMD"):
        found.add(vendor.lower())
    virt = str(facts.get("virtualization") or "")
    if facts.get("hypervisor") is True or (virt not in ("", "none") and virt not in _CONTAINERS):
        found.add("vm")
    elif vendor:
        found.add("bare-metal")
    return found


def parse_require(value: object) -> tuple[str, ...]:
    """`[intel, amd, vm]` or `"intel,amd,vm"`; raises ValueError naming the bad word."""
    if value == "none":
        return ()  # on the command line: this run asks for no particular kind of machine
    words = value.split(",") if isinstance(value, str) else value
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ValueError("must be a list of " + ", ".join(TRAITS))
    out = []
    for word in (w.strip().lower().replace("baremetal", "bare-metal") for w in words):
        if word not in TRAITS:
            raise ValueError(f"{word!r} is not one of " + ", ".join(TRAITS))
        out.append(word)
    return tuple(dict.fromkeys(out))


def parse_quorum(value: object) -> tuple[int, tuple[str, ...]]:
    """A playbook's `quorum:` — `3`, or `{hosts: 3, require: [intel, amd, vm]}`."""
    if isinstance(value, dict):
        unknown = set(value) - {"hosts", "require"}
        if unknown:
            raise ValueError(f"unknown key {min(unknown)!r} (hosts, require)")
        hosts, require = value.get("hosts", 2), parse_require(value.get("require", []))
    else:
        hosts, require = value, ()
    if not isinstance(hosts, int) or isinstance(hosts, bool) or hosts < 1:
        raise ValueError(f"{hosts!r} is not a whole number >= 1")
    return hosts, require


def diversity_reasons(hosts: Iterable[HostResult], require: tuple[str, ...]) -> list[str]:
    """One reason per required kind of machine that no host which finished ok is."""
    ok = [h for h in hosts if h.status == "ok"]
    have = {h.name: traits(h.facts) for h in ok}
    missing = [t for t in require if not any(t in kinds for kinds in have.values())]
    if not missing:
        return []
    shown = "; ".join(
        f"{name}: {', '.join(_LABELS[t] for t in TRAITS if t in kinds) or 'unknown'}"
        for name, kinds in have.items()
    )
    need = " and ".join(f"an {_LABELS[t]}" if t in ("intel", "amd") else f"a {_LABELS[t]}"
                        for t in missing)  # fmt: skip
    return [f"quorum not met: it asks for {need} host, and none finished ok ({shown or 'no host'})"]
