"""report.md: a verdict line, the run's identity and the host x artifact table, ready for a PR.

Every string that came from a host (or a report file) is escaped: it can add no markup.
"""

from __future__ import annotations

from repro.compare import ArtifactComparison, Comparison
from repro.render.common import (
    LABELS,
    describe,
    hash_of,
    headline,
    ordered_hosts,
    status_text,
    who,
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
        *(_stacked(run, comparison) if len(comparison.artifacts) > 3 else _table(run, comparison)),
    ]
    if comparison.reasons:
        lines += ["", "Reasons:", "", *(f"- {md_escape(r)}" for r in comparison.reasons)]
    return "\n".join(lines) + "\n"


def _identity(run: RunResult) -> list[str]:
    playbook = md_code(run.playbook)
    if run.playbook_path:
        playbook += f" ({md_code(run.playbook_path)})"
    lines = [f"- Playbook: {playbook}"]
    if run.commit:
        lines.append(f"- Commit: {md_code(run.commit)}")
    when = f"started {md_escape(run.started_at)}"
    if run.finished_at:
        when += f", finished {md_escape(run.finished_at)}"
    lines.append(f"- Run: {md_code(run.run_id)}, {when}")
    return lines


def _table(run: RunResult, comparison: Comparison) -> list[str]:
    headers = ["Host", "what it is", "status"]
    headers += [f"{md_code(a.name)} sha256" for a in comparison.artifacts]
    rows = [_row(h, comparison.artifacts) for h in ordered_hosts(run, comparison)]
    return [_line(headers), _line(["---"] * len(headers)), *(_line(r) for r in rows)]


def _stacked(run: RunResult, comparison: Comparison) -> list[str]:
    """Many artifacts or hosts (a release, a guix.sigs version): hosts, then one row per hash
    group naming its hosts ("all 23 agree"): small enough for a PR comment."""
    hosts = ordered_hosts(run, comparison)
    everyone = [h.name for h in hosts if h.status == "ok"]
    lines = [_line(["Host", "what it is", "status"]), _line(["---"] * 3)]
    lines += [_line(_row(h, ())) for h in hosts]
    lines += ["", _line(["artifact", "status", "sha256", "hosts"]), _line(["---"] * 4)]
    for a in comparison.artifacts:
        name, status = md_code(a.name), str(a.status)
        for g in a.groups:
            lines.append(
                _line([name, status, md_code(g.sha256), md_escape(who(g.hosts, everyone))])
            )
            name = status = ""
        if a.missing:
            lines.append(_line([name, status, "*missing*", md_escape(who(a.missing, everyone))]))
    return lines


def _row(host: HostResult, artifacts: tuple[ArtifactComparison, ...]) -> list[str]:
    cells = [md_escape(host.name), md_escape(describe(host)), md_escape(status_text(host))]
    for artifact in artifacts:
        sha = hash_of(host, artifact)
        cells.append("-" if sha is None else md_code(sha) if sha else "*missing*")
    return cells


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
