"""`repro hosts trust`: the one explicit way a new host key enters known_hosts.

The key is fetched, its fingerprint shown, and it is written only when the user confirms (or
passed --yes). A key that differs from the one already known is never replaced: that is exactly
the attack host key checking exists for, so the user is told both fingerprints and what to do.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Callable, TextIO

import asyncssh

from repro.inventory import Host
from repro.render.safe import term_safe


def known_hosts_path(host: Host) -> Path:
    return Path(host.known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()


def host_pattern(host: Host) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def known_keys(path: Path, host: Host) -> list[asyncssh.SSHKey]:
    """Keys known_hosts already holds for this host (hashed entries included)."""
    if not path.exists():
        return []
    kh = asyncssh.read_known_hosts(str(path))
    trusted = kh.match(host.address, "", host.port)[0]
    return list(trusted)


async def trust_hosts(hosts: list[Host], *, confirm: Callable[[str], bool], out: TextIO) -> int:
    """Returns 0 when every host is trusted afterwards, 3 when one is not (changed or unreachable)."""
    from repro.transport.asyncssh import fetch_host_keys, fingerprint

    ssh_hosts = [h for h in hosts if h.connection != "local"]
    fetched = await asyncio.gather(
        *(fetch_host_keys(h.address, h.port, 10.0) for h in ssh_hosts), return_exceptions=True
    )
    status = 0
    for host, keys in zip(ssh_hosts, fetched):
        name = term_safe(host.name)
        if isinstance(keys, BaseException):
            out.write(f"{name}: cannot fetch its key: {term_safe(str(keys))}\n")
            status = 3
            continue
        path = known_hosts_path(host)
        known = known_keys(path, host)
        known_lines = {k.export_public_key().decode().split()[1] for k in known}
        offered = [(kt, line) for kt, line in keys]
        if any(line.split()[1] in known_lines for _, line in offered):
            out.write(f"{name}: already trusted ({path})\n")
            continue
        if known:
            old = ", ".join(fingerprint(k.export_public_key().decode()) for k in known)
            new = ", ".join(fingerprint(line) for _, line in offered)
            out.write(
                f"{name}: HOST KEY CHANGED for {host_pattern(host)}: known {old}, offered {new}. "
                f"Not changed. If the host was really reinstalled, remove the old key with "
                f"`ssh-keygen -R '{host_pattern(host)}' -f {path}` and run this again.\n"
            )
            status = 3
            continue
        kt, line = offered[0]
        out.write(f"{name}: {host_pattern(host)} offers {kt} {fingerprint(line)}\n")
        if not confirm(f"Trust {name} ({host_pattern(host)}) with key {fingerprint(line)}?"):
            out.write(f"{name}: not trusted\n")
            status = 3
            continue
        _append(path, f"{host_pattern(host)} {line.strip()}\n")
        out.write(f"{name}: added to {path}\n")
    return status


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(old + line)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
