"""Ansible's `ansible_ssh_common_args` / `ansible_ssh_extra_args` read as ssh would read them.

The options that decide where a connection goes (ProxyJump, Port, User, IdentityFile) are used;
tuning ones map to repro's vars or are ignored with a warning; anything else is refused.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

#: the variables, in the order ssh sees them (Ansible puts common before extra; first one wins)
ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")

# ssh -o names (lower case) -> what they set here
_ROUTE = {"proxyjump": "proxy_jump", "port": "port", "user": "user", "identityfile": "key_file"}
_TUNING = {"connecttimeout": "repro_connect_timeout", "serveraliveinterval": "repro_keepalive_interval",
           "serveralivecountmax": "repro_keepalive_count_max"}  # fmt: skip
# Harmless for repro: connection sharing and the like, which it does its own way.
_IGNORED = {
    "controlmaster", "controlpath", "controlpersist", "compression", "forwardagent",
    "identitiesonly", "preferredauthentications", "pubkeyauthentication", "passwordauthentication",
    "kbdinteractiveauthentication", "gssapiauthentication", "loglevel", "batchmode",
    "addkeystoagent", "tcpkeepalive", "requesttty",
}  # fmt: skip
# Host key checking is never relaxed: these are ignored, and the warning says so.
_KEY_CHECKING = {"stricthostkeychecking", "globalknownhostsfile",
                 "checkhostip", "updatehostkeys", "hashknownhosts"}  # fmt: skip
# Which file holds the keys: honoured (as repro_known_hosts), but never "no file at all".
_KNOWN_HOSTS = "userknownhostsfile"
_NO_FILE = {"none", "/dev/null"}
_FLAGS = {"-J": "proxyjump", "-p": "port", "-l": "user", "-i": "identityfile", "-o": ""}
_IGNORED_FLAGS = {"-C", "-q", "-v", "-A", "-a", "-T", "-t", "-4", "-6", "-x", "-X", "-n"}


@dataclass
class SshArgs:
    """What the ssh arguments set (first value wins, as in ssh), and what was ignored."""

    route: dict[str, str] = field(default_factory=dict)  # proxy_jump/port/user/key_file
    known_hosts: str | None = None  # UserKnownHostsFile's first file; "" if it was ignored
    tuning: dict[str, str] = field(default_factory=dict)  # repro_* vars
    warnings: list[str] = field(default_factory=list)


class SshArgsError(ValueError):
    """An option repro cannot honour; the message names it."""


def parse_ssh_args(texts: list[tuple[str, str]]) -> SshArgs:
    """Parse (variable name, value) pairs in ssh's order; raise SshArgsError on a refusal."""
    result = SshArgs()
    for var, text in texts:
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise SshArgsError(f"{var}: cannot split {text!r}: {exc}") from None
        for name, value in _options(var, words):
            _apply(result, var, name, value)
    return result


def _options(var: str, words: list[str]) -> list[tuple[str, str]]:
    """(lower-case option name, value) pairs from `-o K=V`, `-oK=V`, `-o 'K V'`, `-J x`, ..."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        word = words[i]
        flag, attached = word[:2], word[2:]
        if flag in _FLAGS:
            if attached:
                value = attached
            elif i + 1 < len(words):
                i += 1
                value = words[i]
            else:
                raise SshArgsError(f"{var}: {word} needs a value")
            if flag == "-o":
                key, _, val = value.replace("=", " ", 1).partition(" ")
                pairs.append((key.strip().lower(), val.strip()))
            else:
                pairs.append((_FLAGS[flag], value))
        elif word in _IGNORED_FLAGS:
            pairs.append((word, ""))
        else:
            raise SshArgsError(
                f"{var}: {word!r} is not supported (repro reads -o ProxyJump/Port/User/"
                "IdentityFile, -J, -p, -l, -i)"
            )
        i += 1
    return pairs


def _apply(result: SshArgs, var: str, name: str, value: str) -> None:
    if name in _ROUTE:
        result.route.setdefault(_ROUTE[name], value)
    elif name in _TUNING:
        result.tuning.setdefault(_TUNING[name], value)
    elif name == _KNOWN_HOSTS:
        _known_hosts(result, var, value)
    elif name in _KEY_CHECKING:
        result.warnings.append(
            f"{var}: {name} ignored: repro always checks host keys against known_hosts"
        )
    elif name in _IGNORED or name in _IGNORED_FLAGS:
        result.warnings.append(f"{var}: {name or value} ignored (no effect on repro's SSH)")
    elif name == "proxycommand":
        raise SshArgsError(
            f"{var}: ProxyCommand is not supported here; use ProxyJump, or put the "
            "ProxyCommand in ~/.ssh/config"
        )
    else:
        raise SshArgsError(
            f"{var}: -o {name} is not supported (repro reads ProxyJump, Port, User, "
            "IdentityFile, ConnectTimeout, ServerAlive*)"
        )


def _known_hosts(result: SshArgs, var: str, value: str) -> None:
    if result.known_hosts is not None:
        return  # ssh keeps the first value
    path, warning = known_hosts_file(value)
    result.known_hosts = path or ""  # "": ignored, yet still the first value
    if warning:
        result.warnings.append(f"{var}: {warning}")


def known_hosts_file(value: str) -> tuple[str | None, str | None]:
    """UserKnownHostsFile's value (ssh args or ssh_config): the file repro reads, or None for
    the default, and a warning, or None.

    Its first file only: ssh reads them all and accepts a key from any, so one file trusts
    fewer keys, never more (the warning says which were left). "none", /dev/null or an
    unexpanded %-token leave the default file: keys are always checked.
    """
    files = value.split()
    if not files or files[0].lower() in _NO_FILE or "%" in files[0]:
        tokens = bool(files) and "%" in files[0]
        why = "%-tokens are not expanded" if tokens else "keys are always checked"
        return None, (
            f"UserKnownHostsFile {value!r} ignored ({why}; repro uses repro_known_hosts, "
            "else ~/.ssh/known_hosts)"
        )
    left = f"UserKnownHostsFile: only {files[0]} is read ({' '.join(files[1:])} not)"
    return files[0], left if files[1:] else None
