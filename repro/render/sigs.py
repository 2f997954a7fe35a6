"""`repro sigs` output: a guix.sigs release stage by stage, one row per artifact and hash group,
naming signers only where they disagree ("all 23 agree"), small enough for a PR comment.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable

from repro.errors import UsageError
from repro.render.common import LABELS, SHORT_HASH, who
from repro.render.safe import html_text, md_code, md_escape, term_safe
from repro.schema import to_dict
from repro.sigs import Release, Stage

SCHEMA = "repro-sigs/1"


def _rows(stage: Stage) -> list[tuple[str, str, str]]:
    everyone = [h.name for h in stage.run.hosts if h.status == "ok"]
    rows = []
    for a in stage.comparison.artifacts:
        name = a.name
        for g in a.groups:
            rows.append((name, g.sha256[:SHORT_HASH], who(g.hosts, everyone)))
            name = ""
        if a.missing:
            rows.append((name, "missing", who(a.missing, everyone)))
    return rows


def _header(release: Release) -> list[str]:
    checked = (
        f"signatures checked with gpg against {release.keys}"
        if release.keys
        else "signatures NOT checked (give --keys builder-keys/ to check them with gpg)"
    )
    lines = [f"guix.sigs {release.version}: {len(release.signers)} signers, {checked}"]
    for s in release.excluded:
        lines.append(f"excluded {s.name}: {s.signature}" + (f" ({s.detail})" if s.detail else ""))
    if not release.stages:
        lines.append("no signer's files count, so nothing was compared")
    if release.include_unverified:
        lines += [
            f"counted on request: {s.name} ({s.signature})"
            for s in release.signers
            if s.signature not in ("verified", "signed", "bad")
        ]
    return lines


def _stage_title(stage: Stage) -> str:
    ok = [h for h in stage.run.hosts if h.status == "ok"]
    arts = stage.comparison.artifacts
    title = f"{stage.name}.SHA256SUMS, {len(stage.run.hosts)} signers: {LABELS[stage.comparison.verdict]}"
    if stage.comparison.verdict == "reproducible":
        title += f", all {len(ok)} agree on {len(arts)} artifacts"
    else:
        differs = [a for a in arts if a.status == "differs"]
        title += f", {len(differs)} of {len(arts)} artifacts differ" if differs else ""
    return title


def render_text(release: Release, *, width: int = 100) -> str:
    wrap = textwrap.TextWrapper(max(width, 40), subsequent_indent="    ", break_on_hyphens=False)
    lines = [term_safe(line) for line in _header(release)]
    for stage in release.stages:
        rows = [tuple(term_safe(c) for c in r) for r in _rows(stage)]
        name_w = max([len("artifact")] + [len(r[0]) for r in rows])
        lines += ["", term_safe(_stage_title(stage))]
        lines.append(f"  {'artifact':<{name_w}}  {'sha256':<{SHORT_HASH}}  signers")
        lines += [f"  {r[0]:<{name_w}}  {r[1]:<{SHORT_HASH}}  {r[2]}" for r in rows]
        wrap.initial_indent = "  - "
        for reason in stage.comparison.reasons:
            lines += wrap.wrap(term_safe(reason))
    lines += ["", f"{LABELS[release.verdict].upper()} (exit {release.exit_code})"]
    lines += [f"  - {term_safe(s.name)}: {term_safe(s.detail)}" for s in release.signers
              if s.signature == "bad"]  # fmt: skip
    return "\n".join(lines) + "\n"


def render_md(release: Release) -> str:
    lines = [f"**{LABELS[release.verdict]}** (exit {release.exit_code})", ""]
    lines += [f"- {md_escape(line)}" for line in _header(release)]
    for stage in release.stages:
        lines += ["", f"**{md_escape(_stage_title(stage))}**", ""]
        lines += ["| artifact | sha256 | signers |", "| --- | --- | --- |"]
        for name, sha, signers in _rows(stage):
            cell = sha if sha == "missing" else md_code(sha)
            lines.append(f"| {md_code(name) if name else ''} | {cell} | {md_escape(signers)} |")
        if stage.comparison.reasons:
            lines += ["", *(f"- {md_escape(r)}" for r in stage.comparison.reasons)]
    bad = [s for s in release.signers if s.signature == "bad"]
    if bad:
        lines += ["", *(f"- BAD: {md_escape(s.name)}: {md_escape(s.detail)}" for s in bad)]
    return "\n".join(lines) + "\n"


def render_json(release: Release) -> str:
    data = {
        "schema": SCHEMA,
        "version": release.version,
        "root": release.root,
        "keys": release.keys,
        "verdict": release.verdict,
        "exit_code": release.exit_code,
        "signers": [
            {
                "name": s.name,
                "signature": s.signature,
                "detail": s.detail,
                "counted": release.counts(s),
                "stages": sorted([*s.stages, *s.failed]),
            }
            for s in release.signers
        ],
        "stages": [
            {"stage": st.name, "report": to_dict(st.run, st.comparison)} for st in release.stages
        ],
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def render_html(release: Release) -> str:
    """The table as a page (every character escaped): one file to attach or publish."""
    title = html_text(f"guix.sigs {release.version}")
    body = "\n".join(html_text(line) for line in render_text(release).splitlines())
    return f"<!doctype html>\n<meta charset=utf-8>\n<title>{title}</title>\n<pre>{body}</pre>\n"


FORMATS: dict[str, Callable[[Release], str]] = {
    "table": render_text,
    "md": render_md,
    "json": render_json,
    "html": render_html,
}


def render(fmt: str, release: Release, *, width: int = 100) -> str:
    if fmt not in FORMATS:
        raise UsageError(f"repro sigs cannot write {fmt!r}; choose one of {', '.join(FORMATS)}")
    return render_text(release, width=width) if fmt == "table" else FORMATS[fmt](release)
