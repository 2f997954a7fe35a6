"""Where an SSH connection to an inventory host really goes: ~/.ssh/config applied, hop by hop.

OpenSSH's precedence: what the inventory sets wins, ssh_config fills the rest; every jump host
is a Hop of its own, checked against the same known_hosts as the target by both transports.
"""

from __future__ import annotations

import dataclasses
import getpass
import glob
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.errors import InventoryError
from repro.ssh_args import known_hosts_file

if TYPE_CHECKING:
    import paramiko

MAX_JUMPS = 8  # a ProxyJump chain longer than this is a loop in ssh_config, not a network
_MAX_INCLUDE_DEPTH = 16  # OpenSSH's own limit for nested Include


@dataclass(frozen=True)
class Hop:
    """One SSH server on the way: its address as dialled, and who logs in with which keys."""

    label: str  # how messages name it: "jump host bastion" or the inventory host name
    alias: str  # the name ssh_config was looked up with
    address: str  # HostName from ssh_config, else the alias
    port: int
    user: str
    key_files: tuple[str, ...] = ()  # (): the agent and ~/.ssh/id_*

    def __repr__(self) -> str:
        return f"Hop({self.label!r}, {self.where})"

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"


def default_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


@dataclass(frozen=True)
class Route:
    """The jump hosts, first one first, then the target; or a ProxyCommand for the target."""

    jumps: tuple[Hop, ...]
    target: Hop
    proxy_command: str | None = None
    #: the file every hop's key is checked against: repro_known_hosts, else ssh_config's
    #: UserKnownHostsFile for the target, else ~/.ssh/known_hosts
    known_hosts: Path = field(default_factory=default_known_hosts)

    def __repr__(self) -> str:
        return f"Route({' -> '.join(h.where for h in (*self.jumps, self.target))})"


def config_path() -> Path:
    return Path("~/.ssh/config").expanduser()


def _known_hosts(host: Any, found: dict[str, Any]) -> Path:
    if host.known_hosts:
        return Path(host.known_hosts).expanduser()
    path = _config_known_hosts(found)[0]
    return path if path is not None else default_known_hosts()


def _config_known_hosts(found: dict[str, Any]) -> tuple[Path | None, str | None]:
    """ssh_config's UserKnownHostsFile for a host: (the file, or None), a warning or None. A
    relative name is not guessed at (ssh would take it from wherever it was started)."""
    value = found.get("userknownhostsfile")
    if value is None:
        return None, None
    name, warning = known_hosts_file(str(value))
    if name is None:
        return None, warning
    path = Path(name).expanduser()
    if not path.is_absolute():
        return None, f"UserKnownHostsFile {name!r} ignored (not an absolute path)"
    return path, warning


class _NoConfig:
    """What an absent ~/.ssh/config says about any host (paramiko's empty SSHConfig says the
    same): nothing but its name. Saves importing paramiko (~55 ms) on the asyncssh path."""

    def lookup(self, hostname: str) -> dict[str, Any]:
        return {"hostname": hostname}


#: parsed configs by their text (Include expanded): a run resolves every host of the inventory,
#: and parsing it anew for each was the cost, not reading it
_PARSED: dict[str, Any] = {}


def read_config(path: Path | None = None) -> paramiko.SSHConfig:
    """~/.ssh/config parsed by paramiko, with `Include` expanded (paramiko does not follow it)."""
    path = path or config_path()
    if not path.is_file():
        return _NoConfig()  # type: ignore[return-value]
    text = _expanded(path, 0)
    if text in _PARSED:
        return _PARSED[text]
    import paramiko  # only when there is a config to read (fabric imports it anyway)

    try:
        config = paramiko.SSHConfig.from_text(text)
    except (paramiko.ConfigParseError, ValueError) as exc:
        raise InventoryError(f"{path}: cannot parse ssh_config: {exc}") from None
    if len(_PARSED) > 16:
        _PARSED.clear()
    _PARSED[text] = config
    return config


def _expanded(path: Path, depth: int) -> str:
    if depth > _MAX_INCLUDE_DEPTH:
        raise InventoryError(f"{path}: Include nested more than {_MAX_INCLUDE_DEPTH} deep")
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read ssh_config: {exc.strerror or exc}") from None
    out: list[str] = []
    for line in lines:
        words = line.strip().replace("=", " ", 1).split(None, 1)
        if not words or words[0].lower() != "include":
            out.append(line)
            continue
        for pattern in shlex.split(words[1] if len(words) > 1 else ""):
            # Relative names are relative to ~/.ssh, as OpenSSH reads a user config's Include.
            full = os.path.join(os.path.expanduser("~/.ssh"), os.path.expanduser(pattern))
            for name in sorted(glob.glob(full)):
                if os.path.isfile(name):
                    out.append(_expanded(Path(name), depth + 1))
    return "\n".join(out)


def resolve(host: Any, config: paramiko.SSHConfig | None = None) -> Route:
    """The route to `host` (a repro.inventory.Host): inventory values set win, ssh_config fills."""
    config = config if config is not None else read_config()
    found = config.lookup(host.address)
    target = Hop(
        label=host.name,
        alias=host.address,
        address=str(found.get("hostname", host.address)),
        port=host.port if host.port_set else _port(found, host.address),
        user=host.user or str(found.get("user") or getpass.getuser()),
        key_files=(host.key_file,) if host.key_file else _keys(found),
    )
    spec = host.proxy_jump if host.proxy_jump is not None else found.get("proxyjump")
    jumps = _jumps(config, spec, host.name, 0) if spec else ()
    if host.key_file:
        # A jump host with no IdentityFile of its own logs in with the inventory's key, the one
        # key the user named for reaching this host (OpenSSH would offer only ~/.ssh/id_*).
        jumps = tuple(
            hop if hop.key_files else dataclasses.replace(hop, key_files=(host.key_file,))
            for hop in jumps
        )
    command = found.get("proxycommand") if not jumps and host.proxy_jump is None else None
    if command is not None and command.strip().lower() == "none":
        command = None
    return Route(jumps, target, command, _known_hosts(host, found))


def _jumps(config: paramiko.SSHConfig, spec: str, name: str, depth: int) -> tuple[Hop, ...]:
    """ProxyJump `[user@]host[:port],...`; each hop's own ssh_config (and ProxyJump) applies."""
    if spec.strip().lower() == "none":
        return ()
    hops: list[Hop] = []
    for item in spec.split(","):
        user, _, rest = item.strip().rpartition("@")
        alias, port = _host_port(rest, name, spec)
        found = config.lookup(alias)
        if "proxyjump" in found and not hops:  # the first hop may itself be behind another
            if depth >= MAX_JUMPS:
                raise InventoryError(f"host {name}: ProxyJump chain longer than {MAX_JUMPS} hops")
            hops.extend(_jumps(config, found["proxyjump"], name, depth + 1))
        hops.append(
            Hop(
                label=f"jump host {alias}",
                alias=alias,
                address=str(found.get("hostname", alias)),
                port=port if port is not None else _port(found, alias),
                user=user or str(found.get("user") or getpass.getuser()),
                key_files=_keys(found),
            )
        )
    if len(hops) > MAX_JUMPS:
        raise InventoryError(f"host {name}: ProxyJump chain longer than {MAX_JUMPS} hops")
    return tuple(hops)


def _host_port(text: str, name: str, spec: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [v6addr]:port
        addr, _, tail = text[1:].partition("]")
        port_text = tail.removeprefix(":")
    elif text.count(":") == 1:
        addr, _, port_text = text.partition(":")
    else:
        addr, port_text = text, ""
    if not addr or (port_text and not (port_text.isdigit() and 1 <= int(port_text) <= 65535)):
        raise InventoryError(f"host {name}: ProxyJump {spec!r}: {text!r} is not host[:port]")
    return addr, int(port_text) if port_text else None


def _port(found: dict[str, Any], alias: str) -> int:
    text = str(found.get("port", "22"))
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise InventoryError(f"{config_path()}: Port {text!r} for {alias} is not a port number")
    return int(text)


def _keys(found: dict[str, Any]) -> tuple[str, ...]:
    # OpenSSH skips an IdentityFile that does not exist; so do we (the agent may hold the key).
    names = (os.path.expanduser(k) for k in found.get("identityfile", ()))
    return tuple(name for name in names if os.path.isfile(name))


# ssh_config options that change where or how a connection goes, which repro does not apply:
# worth a warning (ControlMaster, ForwardAgent and the like change nothing here and pass quietly).
_UNAPPLIED = {
    "hostkeyalias": "known_hosts is matched by HostName and Port",
    "globalknownhostsfile": "set repro_known_hosts for the host instead",
    "stricthostkeychecking": "repro always checks host keys",
    "certificatefile": "certificates are not offered",
    "identityagent": "the agent is $SSH_AUTH_SOCK",
    "pkcs11provider": "PKCS#11 keys are not used",
    "connecttimeout": "set repro_connect_timeout",
    "serveraliveinterval": "set repro_keepalive_interval",
    "serveralivecountmax": "set repro_keepalive_count_max",
    "ciphers": "the SSH library's defaults apply",
    "kexalgorithms": "the SSH library's defaults apply",
    "hostkeyalgorithms": "the SSH library's defaults apply",
    "macs": "the SSH library's defaults apply",
    "bindaddress": "not applied",
    "addressfamily": "not applied",
    "remotecommand": "repro runs its own commands",
    "localcommand": "not run",
}


def check_config(hosts: list[Any], config: paramiko.SSHConfig | None = None) -> list[str]:
    """Resolve every host's route now, so a bad ~/.ssh/config value is bad input before anything
    connects (InventoryError); and one warning line per option that would matter to ssh but
    that repro does not apply (naming the hosts), so nothing in it is dropped without a word."""
    config = config if config is not None else read_config()
    seen: dict[str, list[str]] = {}  # what is said -> the hosts it is said of
    for host in hosts:
        if host.connection != "ssh":
            continue
        resolve(host, config)
        found = config.lookup(host.address)
        for key in sorted(set(found) & set(_UNAPPLIED)):
            seen.setdefault(f"{key} is not applied ({_UNAPPLIED[key]})", []).append(host.name)
        warning = None if host.known_hosts else _config_known_hosts(found)[1]
        if warning:
            seen.setdefault(warning, []).append(host.name)
        if found.get("proxycommand") and (host.proxy_jump or found.get("proxyjump")):
            what = "proxycommand is not applied (ProxyJump is used instead)"
            seen.setdefault(what, []).append(host.name)
    lines = []
    for said, names in seen.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        lines.append(f"{config_path()}: {said}; hosts {shown}")
    return lines
