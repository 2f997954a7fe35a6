"""The grammar of paths a playbook names on a host and a host names back, checked in one place:
relative paths that cannot leave the work dir, globs a host matches safely, safe file names.
"""

from __future__ import annotations

import re
import unicodedata

MAX_NAME = 255
# Cc: terminal escapes and newlines; Cf: bidi overrides and zero-width characters that make a
# name look like another one; Cs/Co/Cn: surrogates (undecodable bytes), private, unassigned.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Paths the playbook names on the host: the same characters the runner accepts in remote paths.
RELPATH_RE = re.compile(r"[A-Za-z0-9_./+@=,:-]+")
GLOB_RE = re.compile(r"[A-Za-z0-9_.*?+@=,:\[\]/-]+")
# The globs go unquoted into `case` patterns and find's -path on the host: each [...] must be
# closed inside its own segment (a '/' inside one would let it match across directories).
_GLOB_SEGMENT_RE = re.compile(r"(?:[A-Za-z0-9_.*?+@=,:-]|\[[A-Za-z0-9_.*?+@=,:-]+\])+")


def safe_name(name: str) -> bool:
    """Whether `name` is a canonical relative path that is safe to show and to join to a dir.

    Not empty, at most 255 characters, not absolute, no backslash, no empty, `.` or `..`
    segment, and no control, format (bidi, zero-width), surrogate or unassigned characters.
    """
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        return False
    if name.startswith("/") or "\\" in name:
        return False
    if any(seg in ("", ".", "..") for seg in name.split("/")):
        return False
    return not any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in name)


def relpath_ok(value: object, *, dot_ok: bool = False) -> bool:
    """A path relative to the work dir, of plain characters, that cannot leave it (`.` if
    `dot_ok`) and cannot be taken for an option."""
    if not isinstance(value, str):
        return False
    if dot_ok and value == ".":
        return True
    return bool(RELPATH_RE.fullmatch(value)) and safe_name(value) and not value.startswith("-")


def glob_problem(value: object) -> str | None:
    """What is wrong with `value` as an artifact or manifest glob, or None if a host can
    match it safely. The problem reads after the value: "'x[a' has an unbalanced [ ] …"."""
    if not isinstance(value, str) or not GLOB_RE.fullmatch(value):
        return "is not a glob (letters, digits, _.*?+@=,:-[] and /)"
    for segment in value.split("/"):
        if segment in ("", ".", ".."):
            return "has an empty, '.' or '..' path segment"
        if not _GLOB_SEGMENT_RE.fullmatch(segment):
            return f"has an unbalanced or empty [ ] in {segment!r}"
    return None
