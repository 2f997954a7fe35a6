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
from repro.transport.route import Hop, Route, resolve
from repro.render.safe import term_safe


def host_pattern(hop: Hop) -> str:
    return hop.address if hop.port == 22 else f"[{hop.address}]:{hop.port}"


def known_keys(path: Path, hop: Hop) -> list[asyncssh.SSHKey]:
    """Keys known_hosts already holds for this hop (hashed entries included)."""
    if not path.exists():
        return []
    kh = asyncssh.read_known_hosts(str(path))
    trusted = kh.match(hop.address, "", hop.port)[0]
    return list(trusted)


async def trust_hosts(hosts: list[Host], *, confirm: Callable[[str], bool], out: TextIO) -> int:
    """Returns 0 when every host is trusted afterwards, 3 when one is not (changed or unreachable).

    Each host's route is followed as the transports follow it (~/.ssh/config, jump hosts): a
    jump host is trusted first, then the next hop's key is fetched through it, checked.
    """
    from repro.transport.asyncssh import fetch_host_keys

    ssh_hosts = [h for h in hosts if h.connection != "local"]
    routes = [resolve(h) for h in ssh_hosts]
    firsts = [(*r.jumps, r.target)[0] for r in routes]
    fetched = await asyncio.gather(
        *(fetch_host_keys(hop.address, hop.port, 10.0, proxy_command=_command(r, hop))
          for r, hop in zip(routes, firsts)),
        return_exceptions=True,
    )  # fmt: skip
    status = 0
    for host, route, keys in zip(ssh_hosts, routes, fetched):
        status = max(status, await _trust_route(host, route, keys, confirm, out))
    return status


def _command(route: Route, hop: Hop) -> str | None:
    return route.proxy_command if hop is route.target else None


async def _trust_route(
    host: Host,
    route: Route,
    first: list[tuple[str, str]] | BaseException,
    confirm: Callable[[str], bool],
    out: TextIO,
) -> int:
    from repro.errors import ConnectError
    from repro.transport.asyncssh import _open_hop, fetch_host_keys

    path = route.known_hosts
    tunnels: list[asyncssh.SSHClientConnection] = []
    try:
        for hop in (*route.jumps, route.target):
            keys: list[tuple[str, str]] | BaseException = first
            if tunnels:
                try:
                    keys = await fetch_host_keys(hop.address, hop.port, 10.0, tunnel=tunnels[-1])
                except ConnectError as exc:
                    keys = exc
            if not _trust_hop(host, hop, path, keys, confirm, out):
                return 3
            if hop is not route.target:
                try:
                    tunnels.append(
                        await _open_hop(host, hop, path, tunnels[-1] if tunnels else None, None)
                    )
                except ConnectError as exc:
                    out.write(f"{term_safe(str(exc))}\n")
                    return 3
        return 0
    finally:
        for conn in reversed(tunnels):
            conn.close()


def _trust_hop(
    host: Host,
    hop: Hop,
    path: Path,
    keys: list[tuple[str, str]] | BaseException,
    confirm: Callable[[str], bool],
    out: TextIO,
) -> bool:
    """Whether `hop` is trusted afterwards; asks before recording a new key."""
    from repro.transport.asyncssh import fingerprint

    name = term_safe(host.name if hop.label == host.name else f"{host.name}: {hop.label}")
    if isinstance(keys, BaseException):
        out.write(f"{name}: cannot fetch its key: {term_safe(str(keys))}\n")
        return False
    pattern = term_safe(host_pattern(hop))
    known = known_keys(path, hop)
    known_lines = {k.export_public_key().decode().split()[1] for k in known}
    if any(line.split()[1] in known_lines for _, line in keys):
        out.write(f"{name}: already trusted ({path})\n")
        return True
    if known:
        old = ", ".join(fingerprint(k.export_public_key().decode()) for k in known)
        new = ", ".join(fingerprint(line) for _, line in keys)
        out.write(
            f"{name}: HOST KEY CHANGED for {pattern}: known {old}, offered {new}. "
            f"Not changed. If the host was really reinstalled, remove the old key with "
            f"`ssh-keygen -R '{pattern}' -f {path}` and run this again.\n"
        )
        return False
    kt, line = keys[0]
    out.write(f"{name}: {pattern} offers {kt} {fingerprint(line)}\n")
    if not confirm(f"Trust {name} ({pattern}) with key {fingerprint(line)}?"):
        out.write(f"{name}: not trusted\n")
        return False
    _append(path, f"{host_pattern(hop)} {line.strip()}\n")
    out.write(f"{name}: added to {path}\n")
    return True


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(old + line)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
