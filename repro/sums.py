"""SHA256SUMS files ("<sha256>  <name>" lines), as guix.sigs builders and release pages publish
them: read strictly, with a name listed twice (once per architecture) kept apart by its position.
"""

from __future__ import annotations

import re
from pathlib import Path

from repro.paths import safe_name
from repro.errors import InputError

_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
MAX_FILE = 4 * 1024 * 1024


class SumsError(InputError):
    """A SHA256SUMS file is missing, too large or has a line that is not `<sha256>  <name>`."""


def parse_sums(text: str, source: str) -> dict[str, str]:
    """name -> sha256 in file order. The n-th listing (n >= 2) of a name is keyed `name#n`:
    Bitcoin Core 23.0rc1 lists `…-osx-unsigned.dmg` once for arm64 and once for x86_64, each with
    its own hash, in the same order in every builder's file, so position is what tells them apart.
    """
    entries: dict[str, str] = {}
    seen: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m or not safe_name(m.group(2)):
            raise SumsError(f"{source} line {n} is not '<sha256>  <name>'")
        name = m.group(2)
        seen[name] = seen.get(name, 0) + 1
        entries[name if seen[name] == 1 else f"{name}#{seen[name]}"] = m.group(1)
    return entries


def read_sums(path: Path) -> dict[str, str]:
    """parse_sums of a file, refusing anything but a regular file of sane size."""
    try:
        if path.is_symlink() or not path.is_file():
            raise SumsError(f"{path}: not a regular file")
        if path.stat().st_size > MAX_FILE:
            raise SumsError(f"{path}: larger than {MAX_FILE} bytes")
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise SumsError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_sums(text, str(path))


def format_sums(entries: dict[str, str]) -> str:
    """The file `parse_sums` reads back: `#n` keys are written as the name they stand for."""

    def listed(key: str) -> str:
        base = re.sub(r"#[0-9]+$", "", key)
        return base if base != key and base in entries else key

    return "".join(f"{sha}  {listed(key)}\n" for key, sha in entries.items())
