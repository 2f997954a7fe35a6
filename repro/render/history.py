"""`repro history` views: a timeline of runs with what changed, and the first bad commit,
as a table, Markdown, JSON or one self-contained HTML page; every recorded string is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

from repro.history import (
    ArtifactEntry,
    Change,
    FirstBad,
    RunEntry,
    TimelineEntry,
    Transition,
    by_playbook,
)
from repro.render.html import page_start
from repro.render.safe import html_text, md_code, md_escape, term_safe

SCHEMA = "repro-history/1"
SHORT = 12
#: runs shown as columns of the per-host status grid on the HTML page (the newest ones)
GRID_RUNS = 30
#: rows of a playbook's timeline on the HTML page (the newest; older ones: --format md)
TIMELINE_RUNS = 1000


def _short(value: str | None) -> str:
    return (value or "")[:SHORT]


def describe_change(c: Change, short: Callable[[str], str] = _short) -> str:
    """One plain sentence for a change; the caller escapes it for its medium."""
    if c.kind == "verdict":
        return f"verdict {c.before} -> {c.after}"
    if c.kind == "artifact":
        return f"{c.subject}: {_hashes(c.before, short)} -> {_hashes(c.after, short)}"
    if c.kind == "artifact-new":
        return f"{c.subject}: new ({_hashes(c.after, short)})"
    if c.kind == "artifact-gone":
        return f"{c.subject}: no longer built"
    if c.kind == "host-joined":
        return f"host {c.subject} joined ({c.after})"
    if c.kind == "host-left":
        return f"host {c.subject} dropped out"
    return f"host {c.subject}: {c.before} -> {c.after}"


def _hashes(text: str, short: Callable[[str], str]) -> str:
    return "/".join(short(h) for h in text.split()) or "-"


def _hosts_ok(r: RunEntry) -> str:
    return f"{sum(h.status == 'ok' for h in r.hosts)}/{len(r.hosts)}"


# --- table and Markdown ----------------------------------------------------------------------


def table(items: list[TimelineEntry]) -> str:
    if not items:
        return "no runs recorded\n"
    rows = [
        [
            term_safe(t.run.started_at),
            term_safe(t.run.playbook),
            term_safe(_short(t.run.commit)) or "-",
            term_safe(t.run.verdict),
            _hosts_ok(t.run),
            term_safe("; ".join(describe_change(c) for c in t.changes)),
        ]
        for t in items
    ]
    headers = ["started", "playbook", "commit", "verdict", "hosts ok", "changed since previous"]
    return _columns(headers, rows)


def _columns(headers: list[str], rows: list[list[str]]) -> str:
    """tabulate's "simple" layout, made directly: a long history has ten thousand rows, which
    tabulate would spend seconds on guessing column types that are all text here."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(cells: list[str]) -> str:
        return "  ".join(
            c if i == last else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        )

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r).rstrip() for r in rows]
    return "\n".join(out) + "\n"


def markdown(items: list[TimelineEntry]) -> str:
    if not items:
        return "No runs recorded.\n"
    lines = [
        "| Started | Playbook | Commit | Verdict | Hosts ok | Changed since previous |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t in items:
        change = "<br>".join(md_escape(describe_change(c)) for c in t.changes)
        lines.append(
            f"| {md_escape(t.run.started_at)} | {md_code(t.run.playbook)} | "
            f"{md_code(_short(t.run.commit)) if t.run.commit else '-'} | {md_escape(t.run.verdict)} | "
            f"{_hosts_ok(t.run)} | {change} |"
        )
    return "\n".join(lines) + "\n"


def _transition_line(t: Transition, code: Callable[[str], str]) -> str:
    what = f"artifact {code(t.artifact)}" if t.artifact else "the run"
    good = (
        f"last reproducible at {code(t.last_good.commit or '?')} (run {code(t.last_good.run_id)})"
        if t.last_good
        else "never reproducible in the history"
    )
    return (
        f"{what}: {good}; first mismatch at {code(t.first_bad.commit or '?')} "
        f"(run {code(t.first_bad.run_id)})"
    )


def first_bad_text(found: list[FirstBad], *, md: bool = False) -> str:
    code: Callable[[str], str] = md_code if md else term_safe
    lines = []
    for fb in found:
        lines.append(f"{'## ' if md else ''}{code(fb.playbook)}")
        if fb.run is None:
            lines.append(
                f"{'- ' if md else '  '}reproducible (no mismatch since the last good run)"
            )
        for t in ([fb.run] if fb.run else []) + list(fb.artifacts):
            lines.append(f"{'- ' if md else '  '}{_transition_line(t, code)}")
    return "\n".join(lines) + "\n" if lines else "no runs recorded\n"


# --- JSON ------------------------------------------------------------------------------------


def _run_dict(r: RunEntry) -> dict[str, object]:
    return {
        "run_id": r.run_id,
        "playbook": r.playbook,
        "commit": r.commit,
        "ref": r.ref,
        "verdict": r.verdict,
        "exit_code": r.exit_code,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "report_dir": r.report_dir,
        "hosts": [{"name": h.name, "status": h.status, "error": h.error} for h in r.hosts],
        "artifacts": [
            {
                "name": a.name,
                "status": a.status,
                "groups": [{"sha256": s, "hosts": list(hs)} for s, hs in a.groups],
            }
            for a in r.artifacts
        ],
    }


def _transition_dict(t: Transition | None) -> dict[str, object] | None:
    if t is None:
        return None
    good = t.last_good
    return {
        "artifact": t.artifact,
        "last_good": {"commit": good.commit, "run_id": good.run_id} if good else None,
        "first_bad": {"commit": t.first_bad.commit, "run_id": t.first_bad.run_id},
    }


def as_json(items: list[TimelineEntry], found: list[FirstBad] | None) -> str:
    data: dict[str, object] = {
        "schema": SCHEMA,
        "runs": [_run_dict(t.run) | {"changes": [c.__dict__ for c in t.changes]} for t in items],
    }
    if found is not None:
        data["first_bad"] = [
            {
                "playbook": fb.playbook,
                "run": _transition_dict(fb.run),
                "artifacts": [_transition_dict(t) for t in fb.artifacts],
            }
            for fb in found
        ]
    # No indent: json's C encoder only runs without one, and a long history is megabytes.
    return json.dumps(data, sort_keys=True) + "\n"


# --- HTML ------------------------------------------------------------------------------------

_MORE_STYLE = """
h2 { margin-top: 2em; } .timeline td.verdict { font-weight: bold; }
.ok { background: #dafbe1; } .cell { text-align: center; }
"""


def _href(link: str | None) -> str:
    # Only a relative path made by repro goes in, percent-quoted: no scheme (javascript:),
    # no quote, no angle bracket can survive into the attribute.
    return html_text(quote(link, safe="/._-")) if link else ""


def _run_cell(r: RunEntry, links: dict[str, str]) -> str:
    label = f"<code>{html_text(r.run_id)}</code>"
    href = _href(links.get(r.run_id))
    return f'<a href="{href}">{label}</a>' if href else label


def html_page(items: list[TimelineEntry], found: list[FirstBad], links: dict[str, str]) -> str:
    """One static page: per playbook the first bad commit, a timeline, per artifact its hash
    changes, per host its status over the newest runs. No script, no external asset."""
    by_pb = by_playbook(t.run for t in items)
    changes = {t.run.run_id: t.changes for t in items}
    fb = {f.playbook: f for f in found}
    parts = [*page_start("repro history", _MORE_STYLE), "<h1>repro history</h1>"]
    if not by_pb:
        parts.append("<p>No runs recorded.</p>")
    for playbook, rs in by_pb.items():
        parts.append(f"<h2>Playbook <code>{html_text(playbook)}</code></h2>")
        parts.append(_first_bad_html(fb.get(playbook)))
        parts.append(_timeline_html(rs[-TIMELINE_RUNS:], changes, links))
        if len(rs) > TIMELINE_RUNS:
            parts.append(f"<p>{len(rs) - TIMELINE_RUNS} older runs: repro history --format md</p>")
        parts.append(_artifacts_html(rs, changes, links))
        parts.append(_hosts_html(rs[-GRID_RUNS:], links))
    parts += ["</body>", "</html>"]
    return "\n".join(p for p in parts if p) + "\n"


def _code(s: str) -> str:
    return f"<code>{html_text(s)}</code>"


def _first_bad_html(f: FirstBad | None) -> str:
    if f is None or (f.run is None and not f.artifacts):
        return '<p class="reproducible">No open mismatch.</p>'
    items = "".join(
        f"<li>{_transition_line(t, _code)}</li>"
        for t in ([f.run] if f.run else []) + list(f.artifacts)
    )
    return f'<p class="mismatch">First bad commit:</p><ul>{items}</ul>'


def _timeline_html(
    rs: list[RunEntry], changes: dict[str, tuple[Change, ...]], links: dict[str, str]
) -> str:
    rows = []
    for r in reversed(rs):  # newest first: what a reader opens the page for
        what = "<br>".join(html_text(describe_change(c)) for c in changes.get(r.run_id, ()))
        rows.append(
            f"<tr><td>{html_text(r.started_at)}</td><td>{_code(_short(r.commit)) if r.commit else '-'}</td>"
            f'<td class="verdict {html_text(r.verdict)}">{html_text(r.verdict)}</td>'
            f"<td>{_hosts_ok(r)}</td><td>{_run_cell(r, links)}</td><td>{what}</td></tr>"
        )
    return (
        '<h3>Timeline</h3>\n<table class="timeline"><thead><tr><th>Started</th><th>Commit</th>'
        "<th>Verdict</th><th>Hosts ok</th><th>Report</th><th>Changed since previous</th></tr>"
        f"</thead>\n<tbody>\n{''.join(rows)}</tbody></table>"
    )


def _artifacts_html(
    rs: list[RunEntry], changes: dict[str, tuple[Change, ...]], links: dict[str, str]
) -> str:
    names = sorted({a.name for r in rs for a in r.artifacts})
    if not names:
        return ""
    out = ["<h3>Hash changes per artifact</h3>"]
    shown: dict[str, list[tuple[RunEntry, ArtifactEntry]]] = {name: [] for name in names}
    for r in rs:  # per artifact: its first run, then each run where its hashes changed
        changed = {c.subject for c in changes.get(r.run_id, ()) if c.kind.startswith("artifact")}
        for a in r.artifacts:
            if r is rs[0] or a.name in changed:
                shown[a.name].append((r, a))
    for name in names:
        rows = []
        for r, a in shown[name]:
            groups = "<br>".join(
                f"{_code(s[:SHORT])}: {html_text(', '.join(hs))}" for s, hs in a.groups
            )
            css = {"identical": "reproducible", "differs": "mismatch"}.get(a.status, "inconclusive")
            rows.append(
                f"<tr><td>{html_text(r.started_at)}</td><td>{_code(_short(r.commit))}</td>"
                f'<td class="{css}">{html_text(a.status)}</td><td>{groups}</td>'
                f"<td>{_run_cell(r, links)}</td></tr>"
            )
        out.append(
            f"<h4>{_code(name)}</h4>\n<table><thead><tr><th>Run started</th><th>Commit</th>"
            "<th>Status</th><th>sha256: hosts</th><th>Report</th></tr></thead>\n"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    return "\n".join(out)


def _hosts_html(rs: list[RunEntry], links: dict[str, str]) -> str:
    names = list(dict.fromkeys(h.name for r in rs for h in r.hosts))
    if not names:
        return ""
    head = "".join(f"<th>{_code(_short(r.commit) or r.run_id[:15])}</th>" for r in rs)
    rows = []
    for name in names:
        cells = []
        for r in rs:
            h = next((x for x in r.hosts if x.name == name), None)
            if h is None:
                cells.append('<td class="cell">-</td>')
            else:
                title = html_text(h.error or h.status)
                cells.append(
                    f'<td class="cell {html_text(h.status)}" title="{title}">'
                    f"{html_text(h.status)}</td>"
                )
        rows.append(f"<tr><th>{html_text(name)}</th>{''.join(cells)}</tr>")
    return (
        f"<h3>Host status (newest {len(rs)} runs)</h3>\n<table><thead><tr><th>Host</th>{head}"
        f"</tr></thead>\n<tbody>{''.join(rows)}</tbody></table>"
    )
