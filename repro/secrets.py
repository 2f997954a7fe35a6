"""Secret variables: which ones are secret, how steps get them without a command line or a
readable file, and masking their values (`***`) in everything the controller writes or shows.

A variable is secret when the playbook lists it under `secrets:`, when it is given with
`--secret KEY=VALUE`, or when it is one of Ansible's password variables.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MASK = "***"
#: the environment variable a step reads a secret from (the value never enters its script)
ENV_PREFIX = "REPRO_SECRET_"
#: the file, in the run's steps dir on the host (0600), that the supervisor reads for each step
FILE_NAME = "secrets"

# Ansible's connection and privilege-escalation passwords, by any of their spellings.
_ANSIBLE = re.compile(
    r"ansible_(?:ssh_|become_|sudo_|su_|winrm_|httpapi_|net_|vault_)?"
    r"(?:pass|password|passwd|passphrase)(?:_file)?\Z"
)


def is_ansible_secret(name: str) -> bool:
    return bool(_ANSIBLE.match(name))


def names_for(declared: Iterable[str], variables: Mapping[str, Any]) -> list[str]:
    """The secret names among a host's variables: `declared` (playbook + --secret) that have
    a value, and every Ansible password variable it has."""
    wanted = set(declared)
    return sorted(n for n in variables if n in wanted or is_ansible_secret(n))


def env_name(name: str) -> str:
    return ENV_PREFIX + name


def reference(name: str) -> str:
    """The shell word a step's script holds instead of the value: the step fails, naming the
    secret, if the value did not reach the host."""
    return f'"${{{env_name(name)}?repro: secret {name} did not reach this host}}"'


def file_text(values: Mapping[str, str]) -> bytes:
    """The host-side secrets file: one `REPRO_SECRET_NAME=value` line each, the value as it
    is (one line: see `check_value`). The supervisor reads it as data, never as a script."""
    lines = [f"{env_name(k)}={v}" for k, v in sorted(values.items())]
    return ("\n".join(lines) + "\n").encode()


def check_value(name: str, value: str) -> str | None:
    """Why `value` cannot be a secret's value, or None: it travels as one line of a file."""
    if "\n" in value or "\0" in value:
        return f"secret {name} must be one line (no newline)"
    return None


def parse_file(text: str, names: Iterable[str]) -> dict[str, str]:
    """The values of `names` in a secrets file as `file_text` wrote it (anything else in it,
    or a line that does not parse, is ignored: the file came back from a host)."""
    wanted = {env_name(n): n for n in names}
    found: dict[str, str] = {}
    for line in text.split("\n"):
        key, _, value = line.partition("=")
        if key in wanted and value:
            found[wanted[key]] = value
    return found


def masked_vars(variables: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """`variables` with the value of every secret name replaced by MASK."""
    secret = set(names)
    return {
        k: MASK if (k in secret or is_ansible_secret(k)) and v is not None else v
        for k, v in variables.items()
    }


class Masker:
    """Replaces every secret value by MASK in text, bytes and nested JSON-like data."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        uniq = sorted({v for v in values if v}, key=len, reverse=True)
        self.values = uniq
        self._text = re.compile("|".join(re.escape(v) for v in uniq)) if uniq else None
        raw = [v.encode() for v in uniq]
        self._bytes = re.compile(b"|".join(re.escape(v) for v in raw)) if raw else None
        #: bytes a stream must hold back: a value may be cut between two chunks
        self.holdback = max((len(v) for v in raw), default=1) - 1

    def __bool__(self) -> bool:
        return self._text is not None

    def text(self, s: str) -> str:
        return self._text.sub(MASK, s) if self._text else s

    def data(self, b: bytes) -> bytes:
        return self._bytes.sub(MASK.encode(), b) if self._bytes else b

    def obj(self, value: Any) -> Any:
        """A copy of `value` (str, list, dict, scalars) with every string masked."""
        if not self:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.obj(k): self.obj(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.obj(v) for v in value)
        return value

    def stream(self) -> StreamMasker:
        return StreamMasker(self)


def report_mask(masker: Masker) -> Callable[[str], str]:
    """`masker` for a report another tool wrote (diffoscope's): its values, and the same as
    HTML escapes them; `str` itself when there is nothing to mask (callers skip the rewrite)."""
    if not masker:
        return str
    return Masker([*masker.values, *(html.escape(v) for v in masker.values)]).text


class StreamMasker:
    """Masks a byte stream that arrives in chunks: a value split between two chunks is still
    masked, at the cost of holding back a few bytes until the next chunk (or `end`)."""

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if not self.masker:
            return chunk
        buf = self.pending + chunk
        keep = self.masker.holdback
        # Mask what is complete; bytes that could still start a value wait for more.
        cut = max(0, len(buf) - keep)
        out = []
        pos = 0
        assert self.masker._bytes is not None
        for m in self.masker._bytes.finditer(buf):
            if m.start() >= cut:
                break
            out.append(buf[pos : m.start()] + MASK.encode())
            pos = m.end()
        cut = max(cut, pos)
        out.append(buf[pos:cut])
        self.pending = buf[cut:]
        return b"".join(out)

    def end(self) -> bytes:
        rest, self.pending = self.masker.data(self.pending), b""
        return rest
