"""Escaping for text that came from a host (names, errors, facts) before it reaches a reader.

One function per medium: a terminal, Markdown and HTML each have their own way to be fooled.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Categories a terminal or an editor acts on instead of showing: C0/C1 controls (ESC starts
# escape sequences), format characters (bidi overrides reorder what a reader sees), separators.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Inline markup (code, emphasis, links, strikethrough, tables, GitHub math) and escapes.
# Block markers (`#`, `-`, `1.`) only act at the start of a line; see _LEADING.
_MD_PUNCT = re.compile(r"([\\`*_\[\]|~$])")
_LEADING = re.compile(r"^([#+=-]|\d+(?=[.)]))")
_CODE_SAFE = re.compile(r"[A-Za-z0-9._+/-]+")
# What GitHub (and GitLab) turn into live links or notifications in a comment, from text alone:
# @mentions, #123 / GH-123 references, bare URLs and www. links. A zero-width space (as an
# entity: it survives copying as text) after the sigil keeps the text and kills the link.
_LIVE = re.compile(
    r"(?:[@#]|\bGH-|\b(?:https?|ftp|mailto|xmpp)(?=:)|\bwww(?=\.))(?=[A-Za-z0-9_/.:-])",
    re.IGNORECASE,
)
_ZWSP = "&#8203;"


def term_safe(s: str) -> str:
    """One line a terminal shows as-is: every control or invisible character becomes `\\xNN`."""
    if s.isprintable():  # no Cc/Cf/Zl/Zp character in it (the common case, fast in C)
        return s
    return "".join(_visible(ch) if unicodedata.category(ch) in _HIDDEN else ch for ch in s)


def _visible(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def md_escape(s: str) -> str:
    """Inline Markdown text (also safe in a GFM table cell) that renders as the literal string."""
    text = _MD_PUNCT.sub(r"\\\1", term_safe(s))
    # Escaped at the start too, so a value that opens a list item cannot become a heading.
    text = _LEADING.sub(lambda m: m[0] + "\\" if m[0].isdigit() else "\\" + m[0], text)
    # Entities, not backslashes, for HTML: a renderer that allows raw HTML must never see a tag.
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _LIVE.sub(lambda m: m[0] + _ZWSP, text)


def md_code(s: str) -> str:
    """A code span when `s` is a plain token (hash, file name); escaped text otherwise."""
    # A code span cannot be escaped from inside, so only plain tokens may go in one.
    return f"`{s}`" if _CODE_SAFE.fullmatch(s) else md_escape(s)


def html_text(s: str) -> str:
    """Text for an HTML element or attribute value."""
    return html.escape(term_safe(s), quote=True)
