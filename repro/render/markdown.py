"""report.md: a verdict line, the run's identity and the host x artifact table, ready for a PR.

Every string that came from a host (or a report file) is escaped: it can add no markup.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from urllib.parse import quote

from repro.compare import ArtifactComparison, Comparison
from repro.render.common import (
    LABELS,
    describe,
    hash_of,
    headline,
    ordered_hosts,
    status_text,
    who,
    why_lines,
)
from repro.render.safe import md_code, md_escape
from repro.results import HostResult, RunResult


def render(run: RunResult, comparison: Comparison, *, width: int = 100, color: bool = False) -> str:
    # Markdown wraps itself and has no colour: width and color exist for the format table.
    lines = [
        f"**{LABELS[comparison.verdict]}**: {headline(run, comparison, md_code)}",
        "",
        *_identity(run),
        "",
    ]
    if len(comparison.artifacts) > MAX_HASH_COLUMNS:
        lines += [*_table(run, comparison, hashes=False), "", *_artifact_rows(run, comparison)]
    else:
        lines += _table(run, comparison, hashes=True)
    if comparison.reasons:
        lines += ["", "Reasons:", "", *(f"- {md_escape(r)}" for r in comparison.reasons)]
    for artifact in comparison.artifacts:
        found = why_lines(artifact)
        if found:
            lines += ["", f"Why {md_code(artifact.name)} differs:", ""]
            lines += [f"{'  ' * depth}- {md_escape(text)}" for depth, text in found]
    lines += _variables(run)
    lines += _logs(run)
    return "\n".join(lines) + "\n"


_MAX_VARIABLE_ROWS = 50
_MAX_VALUE = 80
_UNSET = "(not set)"


def _variables(run: RunResult) -> list[str]:
    """The effective variables (as recorded, secrets masked) that are not the same on every
    host, each value with the hosts that had it: the ones the same everywhere explain nothing."""
    hosts = [h for h in run.hosts if h.variables]
    if len(hosts) < 2:
        return []
    rows = []
    for key in sorted({k for h in hosts for k in h.variables}):
        by_value: dict[str, list[str]] = {}
        for host in hosts:
            value = host.variables[key] if key in host.variables else _UNSET
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            if len(shown) > _MAX_VALUE:
                shown = shown[: _MAX_VALUE - 1] + "…"
            by_value.setdefault(shown, []).append(host.name)
        if len(by_value) > 1:
            cells = [f"{md_code(v)}: {md_escape(', '.join(n))}" for v, n in by_value.items()]
            rows.append(_line([md_code(key), "; ".join(cells)]))
    if not rows:
        return []
    more = len(rows) - _MAX_VARIABLE_ROWS
    shown_rows = rows[:_MAX_VARIABLE_ROWS]
    tail = ["", f"… and {more} more (report.json has every host's variables)"] if more > 0 else []
    head = ["", "Variables that differ between hosts:", ""]
    return [*head, _line(["Variable", "value: hosts"]), _line(["---"] * 2), *shown_rows, *tail]


#: past this many artifacts, one row per artifact (hosts grouped by hash) instead of a column each
MAX_HASH_COLUMNS = 3
_SHORT = 16  # hex digits of a hash shown in the per-artifact table (report.json has all 64)


def _artifact_rows(run: RunResult, comparison: Comparison) -> list[str]:
    rows = [_line(["Artifact", "status", "hosts by sha256"]), _line(["---"] * 3)]
    everyone = [h.name for h in run.hosts if h.status == "ok"]  # 30 builders: "all 30 agree"
    for artifact in comparison.artifacts:
        groups = [
            f"{md_code(g.sha256[:_SHORT])}…: {md_escape(who(g.hosts, everyone))}"
            for g in artifact.groups
        ]
        if artifact.missing:
            groups.append(f"*missing*: {md_escape(who(artifact.missing, everyone))}")
        cell = "; ".join(groups) or "-"
        rows.append(_line([md_code(artifact.name), md_escape(artifact.status), cell]))
    return rows


def _logs(run: RunResult) -> list[str]:
    """Links to each host's step logs, relative to report.md (both live in the run dir)."""
    lines = []
    for host in run.hosts:
        links = [
            f"[{step.index} {md_escape(step.name)}]({_link(step.log)})"
            for step in host.steps
            if step.log and _relative(step.log)
        ]
        if links:
            lines.append(f"- {md_escape(host.name)}: " + ", ".join(links))
    return ["", "Step logs:", "", *lines] if lines else []


def _relative(path: str) -> bool:
    # Only a plain path inside the run directory becomes a link: nothing absolute, no `..`.
    parts = PurePosixPath(path).parts
    return not PurePosixPath(path).is_absolute() and ".." not in parts and bool(parts)


def _link(path: str) -> str:
    return quote(path, safe="/")


def _identity(run: RunResult) -> list[str]:
    playbook = md_code(run.playbook)
    if run.playbook_path:
        # An absolute path says where the controller's checkout was, not what was built.
        shown = PurePosixPath(run.playbook_path)
        playbook += f" ({md_code(shown.name if shown.is_absolute() else str(shown))})"
    lines = [f"- Playbook: {playbook}"]
    if run.commit:
        lines.append(f"- Commit: {md_code(run.commit)}")
    when = f"started {md_escape(run.started_at)}"
    if run.finished_at:
        when += f", finished {md_escape(run.finished_at)}"
    lines.append(f"- Run: {md_code(run.run_id)}, {when}")
    return lines


def _table(run: RunResult, comparison: Comparison, *, hashes: bool) -> list[str]:
    artifacts = comparison.artifacts if hashes else ()
    headers = ["Host", "what it is", "status"]
    headers += [f"{md_code(a.name)} sha256" for a in artifacts]
    rows = [_row(h, artifacts) for h in ordered_hosts(run, comparison)]
    return [_line(headers), _line(["---"] * len(headers)), *(_line(r) for r in rows)]


def _row(host: HostResult, artifacts: tuple[ArtifactComparison, ...]) -> list[str]:
    cells = [md_escape(host.name), md_escape(describe(host)), md_escape(status_text(host))]
    for artifact in artifacts:
        sha = hash_of(host, artifact)
        cells.append("-" if sha is None else md_code(sha) if sha else "*missing*")
    return cells


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
