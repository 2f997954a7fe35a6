"""The terminal table: one row per host, hosts that agree side by side, then verdict and reasons.

Everything from a host goes through `term_safe`; colour is added only when asked for.
"""

from __future__ import annotations

import os
import re
import textwrap

from tabulate import tabulate

from repro.compare import ArtifactComparison, Comparison
from repro.render.common import (
    LABELS,
    SHORT_HASH,
    describe,
    group_index,
    hash_of,
    headline,
    ordered_hosts,
    status_text,
    who,
    why_lines,
)
from repro.render.safe import term_safe
from repro.results import HostResult, RunResult

_GAP = 2  # tabulate's "simple" format puts two spaces between columns...
_HEADER_PAD = 2  # ...and makes every column at least its header plus two
_FIRST_ARTIFACT = 3  # columns: host, what it is, status, then one per artifact
_MIN_TEXT = 10
_MIN_HASH = 8  # still enough hex to tell two groups apart by eye
_ELLIPSIS = "…"
_NO_HASH = ("-", "missing")

# One colour per hash group of an artifact, so the eye finds who agrees.
_GROUP_COLOURS = ("32", "31", "35", "36", "33", "34")
_STATUS_COLOURS = {"ok": "32", "failed": "31", "unreachable": "33"}
_VERDICT_COLOURS = {"reproducible": "1;32", "mismatch": "1;31", "inconclusive": "1;33"}


#: more artifacts than this do not fit side by side as columns: they get rows of their own
_MAX_ARTIFACT_COLUMNS = 3


def render(run: RunResult, comparison: Comparison, *, width: int = 100, color: bool = False) -> str:
    if len(comparison.artifacts) > _MAX_ARTIFACT_COLUMNS:
        return _render_stacked(run, comparison, width=width, color=color)
    hosts = ordered_hosts(run, comparison)
    names = [term_safe(a.name) for a in comparison.artifacts]
    rows = [_row(h, comparison.artifacts) for h in hosts]
    headers = ["host", "what it is", "status", *names]
    if _natural_width(headers, rows) > width:
        headers[_FIRST_ARTIFACT:] = _distinct_parts(names)
    widths = _fit(headers, rows, width)
    headers = [_header(h, w, i) for i, (h, w) in enumerate(zip(headers, widths))]
    rows = [[_cell(c, w, i) for i, (c, w) in enumerate(zip(row, widths))] for row in rows]
    if color:
        rows = [_colour_row(r, h, comparison.artifacts) for r, h in zip(rows, hosts)]
    table = tabulate(rows, headers, tablefmt="simple", disable_numparse=True)
    lines = [_title(run, width), "", table, "", *_verdict(run, comparison, width, color)]
    return "\n".join(lines) + "\n"


def _render_stacked(run: RunResult, comparison: Comparison, *, width: int, color: bool) -> str:
    """Many artifacts (a Guix release has six or more): a host table, then one row per hash group
    of each artifact naming the hosts in it."""
    hosts = ordered_hosts(run, comparison)
    host_rows = [
        [term_safe(h.name), term_safe(describe(h)), term_safe(status_text(h))] for h in hosts
    ]
    widths = _fit(["host", "what it is", "status"], host_rows, width)
    host_rows = [[_cell(c, w, i) for i, (c, w) in enumerate(zip(r, widths))] for r in host_rows]
    if color:
        host_rows = [
            r[:2] + [_ansi(r[2], _STATUS_COLOURS.get(h.status, "0"))]
            for r, h in zip(host_rows, hosts)
        ]
    art_rows: list[list[str]] = []
    everyone = [h.name for h in hosts if h.status == "ok"]
    for artifact in comparison.artifacts:
        name, status = term_safe(artifact.name), str(artifact.status)
        for i, group in enumerate(artifact.groups):
            sha = group.sha256[:SHORT_HASH]
            if color and len(artifact.groups) > 1:
                sha = _ansi(sha, _GROUP_COLOURS[i % len(_GROUP_COLOURS)])
            art_rows.append([name, status, sha, term_safe(who(group.hosts, everyone))])
            name, status = "", ""
        if artifact.missing:
            art_rows.append([name, status, "missing", term_safe(who(artifact.missing, everyone))])
    # Names stay whole: powerpc64 and powerpc64le builds differ only in the middle.
    lines = [
        _title(run, width),
        "",
        tabulate(
            host_rows, ["host", "what it is", "status"], tablefmt="simple", disable_numparse=True
        ),
        "",
        tabulate(
            art_rows,
            ["artifact", "status", "sha256", "hosts"],
            tablefmt="simple",
            disable_numparse=True,
        ),
        "",
        *_verdict(run, comparison, width, color),
    ]
    return "\n".join(lines) + "\n"


def _row(host: HostResult, artifacts: tuple[ArtifactComparison, ...]) -> list[str]:
    cells = [term_safe(host.name), term_safe(describe(host)), term_safe(status_text(host))]
    for artifact in artifacts:
        sha = hash_of(host, artifact)
        cells.append("-" if sha is None else term_safe(sha[:SHORT_HASH]) if sha else "missing")
    return cells


def _column_widths(headers: list[str], rows: list[list[str]]) -> list[int]:
    widths = [len(h) + _HEADER_PAD for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    return widths


def _natural_width(headers: list[str], rows: list[list[str]]) -> int:
    return sum(_column_widths(headers, rows)) + _GAP * (len(headers) - 1)


def _distinct_parts(names: list[str]) -> list[str]:
    """Artifact names without the prefix they all share (`cuprated-0.0.9-`), which says nothing."""
    if len(names) < 2:
        return names
    shared = os.path.commonprefix(names)
    cut = max((m.end() for m in re.finditer(r"[-_.]", shared)), default=0)
    return [_ELLIPSIS + n[cut:] for n in names] if cut >= 4 else names


def _fit(headers: list[str], rows: list[list[str]], width: int) -> list[int]:
    """Column widths whose total fits `width`, taken from the widest columns first."""
    widths = _column_widths(headers, rows)
    floors = [
        min(w, _MIN_HASH if i >= _FIRST_ARTIFACT else _MIN_TEXT) for i, w in enumerate(widths)
    ]
    excess = sum(widths) + _GAP * (len(widths) - 1) - width
    while excess > 0:
        shrinkable = [i for i, (w, f) in enumerate(zip(widths, floors)) if w > f]
        if not shrinkable:
            break  # too many columns for the terminal: best effort, wider than asked
        widths[max(shrinkable, key=lambda i: widths[i])] -= 1
        excess -= 1
    return widths


def _header(text: str, width: int, column: int) -> str:
    # Names keep both ends: the version and the extension are what tell artifacts apart.
    return _shorten(text, width - _HEADER_PAD, middle=column != 1)


def _cell(text: str, width: int, column: int) -> str:
    if column >= _FIRST_ARTIFACT and text not in _NO_HASH:
        return text[:width]  # a shorter hex prefix is still a prefix, no ellipsis needed
    return _shorten(text, width, middle=column == 0)


def _shorten(text: str, width: int, *, middle: bool) -> str:
    if len(text) <= width:
        return text
    if width <= 1:
        return text[: max(width, 0)]
    if not middle:
        return text[: width - 1] + _ELLIPSIS
    head = width // 2
    tail = width - 1 - head
    return text[:head] + _ELLIPSIS + (text[-tail:] if tail else "")


def _colour_row(
    row: list[str], host: HostResult, artifacts: tuple[ArtifactComparison, ...]
) -> list[str]:
    out = list(row)
    out[2] = _ansi(row[2], _STATUS_COLOURS.get(host.status, "0"))
    for i, artifact in enumerate(artifacts, start=_FIRST_ARTIFACT):
        index = group_index(host.name, artifact)
        if index is not None:
            out[i] = _ansi(row[i], _GROUP_COLOURS[index % len(_GROUP_COLOURS)])
        elif row[i] == "missing":
            out[i] = _ansi(row[i], "33")
    return out


def _ansi(text: str, code: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m"


def _title(run: RunResult, width: int) -> str:
    parts = [f"playbook {run.playbook}", f"run {run.run_id}"]
    if run.commit:
        parts.append(f"commit {run.commit}")
    return _shorten(term_safe("  ".join(parts)), width, middle=False)


def _verdict(run: RunResult, comparison: Comparison, width: int, color: bool) -> list[str]:
    label = f"{LABELS[comparison.verdict].upper()} (exit {comparison.exit_code}):"
    summary = term_safe(headline(run, comparison, str))
    # Wrapped before colouring: textwrap would count the escape codes as text.
    wrap = textwrap.TextWrapper(max(width, 20), subsequent_indent="    ", break_on_hyphens=False)
    lines = wrap.wrap(f"{label} {summary}")
    if color:
        lines[0] = _ansi(label, _VERDICT_COLOURS[comparison.verdict]) + lines[0][len(label) :]
    wrap.initial_indent = "  - "
    for reason in comparison.reasons:
        lines += wrap.wrap(term_safe(reason))
    for artifact in comparison.artifacts:
        found = why_lines(artifact)
        if found:
            lines += ["", term_safe(f"Why {artifact.name} differs:")]
        for depth, text in found:
            indent = "  " * (depth + 1)
            lines.append(_shorten(indent + term_safe(text), max(width, 40), middle=False))
    return lines
