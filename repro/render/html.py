"""report.html: one standalone page (no external assets, no scripts) with the same table.

Every string from a host goes through `html_text`; a strict CSP forbids anything but inline CSS.
"""

from __future__ import annotations

from repro.compare import ArtifactComparison, Comparison
from repro.render.common import (
    LABELS,
    describe,
    group_index,
    hash_of,
    headline,
    ordered_hosts,
    status_text,
    why_lines,
)
from repro.render.safe import html_text
from repro.results import HostResult, RunResult

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
code { font-family: ui-monospace, monospace; font-size: .9em; word-break: break-all; }
.reproducible { color: #1a7f37; } .mismatch { color: #cf222e; } .inconclusive { color: #9a6700; }
.g0 { background: #dafbe1; } .g1 { background: #ffebe9; } .g2 { background: #fbefff; }
.g3 { background: #ddf4ff; } .missing, .failed, .unreachable { background: #fff8c5; }
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def render(run: RunResult, comparison: Comparison, *, width: int = 100, color: bool = False) -> str:
    # A page sizes and colours itself: width and color exist for the format table.
    label = LABELS[comparison.verdict]
    title = html_text(f"repro {run.run_id}: {label}")
    summary = headline(run, comparison, lambda name: f"<code>{html_text(name)}</code>")
    parts = [
        *page_start(title),
        f'<h1 class="{comparison.verdict}">{label}</h1>',
        f"<p>{summary} (exit {comparison.exit_code})</p>",
        _identity(run),
        _table(run, comparison),
        _reasons(comparison),
        *(_why(a) for a in comparison.artifacts),
        "</body>",
        "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def page_start(title: str, style: str = "") -> list[str]:
    """The head of a standalone page (`title` already escaped) up to the opened body."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>{title}</title>",
        f"<style>{_STYLE}{style}</style>",
        "</head>",
        "<body>",
    ]


def _identity(run: RunResult) -> str:
    rows = [("Playbook", run.playbook), ("Playbook file", run.playbook_path)]
    rows += [("Commit", run.commit or ""), ("Run", run.run_id), ("Started", run.started_at)]
    rows.append(("Finished", run.finished_at or ""))
    items = "".join(f"<dt>{k}</dt><dd>{html_text(v)}</dd>" for k, v in rows if v)
    return f"<dl>{items}</dl>"


def _table(run: RunResult, comparison: Comparison) -> str:
    head = "".join(
        f"<th><code>{html_text(a.name)}</code> sha256</th>" for a in comparison.artifacts
    )
    rows = "".join(_row(h, comparison.artifacts) for h in ordered_hosts(run, comparison))
    return (
        "<table>\n<thead><tr><th>Host</th><th>what it is</th><th>status</th>"
        f"{head}</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>"
    )


def _row(host: HostResult, artifacts: tuple[ArtifactComparison, ...]) -> str:
    cells = [html_text(host.name), html_text(describe(host))]
    cells.append(f'<span class="{html_text(host.status)}">{html_text(status_text(host))}</span>')
    tds = "".join(f"<td>{c}</td>" for c in cells)
    for artifact in artifacts:
        tds += _hash_cell(host, artifact)
    return f"<tr>{tds}</tr>\n"


def _hash_cell(host: HostResult, artifact: ArtifactComparison) -> str:
    sha = hash_of(host, artifact)
    if sha is None:
        return "<td>-</td>"
    if not sha:
        return '<td class="missing">missing</td>'
    index = group_index(host.name, artifact)
    css = f' class="g{index % 4}"' if index is not None else ""
    return f"<td{css}><code>{html_text(sha)}</code></td>"


def _reasons(comparison: Comparison) -> str:
    if not comparison.reasons:
        return ""
    items = "".join(f"<li>{html_text(r)}</li>" for r in comparison.reasons)
    return f"<h2>Reasons</h2>\n<ul>{items}</ul>"


def _why(artifact: ArtifactComparison) -> str:
    found = why_lines(artifact)
    if not found:
        return ""
    items = "".join(
        f'<li style="margin-left: {depth * 1.5}em">{html_text(text)}</li>' for depth, text in found
    )
    return f"<h2>Why <code>{html_text(artifact.name)}</code> differs</h2>\n<ul>{items}</ul>"
