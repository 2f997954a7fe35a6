"""Renderers: golden Markdown and JSON for a fixed run, the terminal table, and hostile hosts.

Golden files live in tests/golden/; REPRO_UPDATE_GOLDEN=1 rewrites them from the current output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from repro.compare import Comparison, compare
from repro.errors import UsageError
from repro.render import FORMATS, render
from repro.render.safe import md_escape, term_safe
from repro.schema import from_dict
from repro.results import ArtifactHash, HostResult, RunResult, StepResult

GOLDEN = Path(__file__).parent / "golden"
TARBALL = "cuprated-0.0.9-x86_64-unknown-linux-gnu.tar.gz"
DISTSRC = "cuprated-0.0.9-distsrc.tar.gz"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HOSTILE = "evil|`x`<script>alert(1)</script>\x1b[2J"


def sha(data: str) -> str:
    return hashlib.sha256(data.encode()).hexdigest()


def built(name: str, describe: str, tarball: str, *, status: str = "ok") -> HostResult:
    arts = {
        DISTSRC: ArtifactHash(DISTSRC, sha("distsrc"), 51_234_567),
        TARBALL: ArtifactHash(TARBALL, sha(tarball), 12_345_678),
    }
    return HostResult(
        name=name,
        status="ok",
        artifacts=arts,
        facts={"describe": describe, "guix_channel_commit": "a" * 40},
        steps=[
            StepResult(
                0,
                "build",
                0,
                "2026-05-17T21:00:05Z",
                "2026-05-17T21:31:40Z",
                f"hosts/{name}/0-build.log",
            )
        ],
        address=f"{name}.lab.example",
    )


def golden_run() -> RunResult:
    """3 hosts in run order sapphire, zen4, azure-vm; zen4's tarball differs."""
    return RunResult(
        run_id="20260517T210000Z-demo",
        playbook="cuprated-guix",
        started_at="2026-05-17T21:00:00Z",
        finished_at="2026-05-17T21:32:10Z",
        hosts=[
            built("sapphire", "Intel Xeon Gold 6430 (Sapphire Rapids)", "good"),
            built("zen4", "AMD EPYC 9454P (Zen 4)", "bad"),
            built("azure-vm", "GitHub Actions ubuntu-24.04 (Azure VM)", "good"),
        ],
        vars={"ref": "cuprated-0.0.9"},
        quorum=2,
        playbook_path="playbooks/cuprated-guix.yaml",
        commit="dec0bbee5c18f2dc6baae9e9ca7bb0c4d041931d",
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("REPRO_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run with REPRO_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8")


def md_cells(line: str) -> list[str]:
    """Split a GFM table row the way GitHub does: `\\|` and `\\\\` never end a cell."""
    cells, cell, chars = [], "", iter(line.strip().strip("|"))
    for ch in chars:
        if ch == "\\":
            cell += ch + next(chars, "")
        elif ch == "|":
            cells.append(cell)
            cell = ""
        else:
            cell += ch
    return [*cells, cell]


# --- golden files ----------------------------------------------------------------------------


def test_golden_markdown() -> None:
    run = golden_run()
    check_golden("report.md", render("md", run, compare(run), width=100))


def test_golden_json() -> None:
    run = golden_run()
    comparison = compare(run)
    text = render("json", run, comparison, width=100)
    check_golden("report.json", text)
    assert from_dict(json.loads(text)) == (run, comparison)


# --- the terminal table ----------------------------------------------------------------------


def test_table_groups_hosts_that_agree_and_states_the_verdict() -> None:
    run = golden_run()
    out = render("table", run, compare(run), width=100)
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines)
    order = [n for line in lines for n in ("sapphire", "azure-vm", "zen4") if line.startswith(n)]
    assert order == ["sapphire", "azure-vm", "zen4"]  # the agreeing pair sits together
    assert sha("good")[:12] in out and sha("bad")[:12] in out
    assert sha("good")[:13] not in out
    assert "Intel Xeon Gold 6430 (Sap" in out
    assert "MISMATCH (exit 1)" in out
    assert f"artifact {TARBALL} differs" in out.replace("\n    ", " ")
    assert "\x1b" not in out


def test_table_shows_everything_when_the_terminal_is_wide_enough() -> None:
    run = golden_run()
    out = render("table", run, compare(run), width=160)
    assert "…" not in out.split("\n\n")[1]
    assert "Intel Xeon Gold 6430 (Sapphire Rapids)" in out
    assert f"{DISTSRC}  " in out and out.split("\n\n")[1].splitlines()[0].endswith(TARBALL)


def test_table_shortens_names_to_fit_a_narrow_terminal() -> None:
    run = golden_run()
    out = render("table", run, compare(run), width=70)
    table = out.split("\n\n")[1].splitlines()
    assert all(len(line) <= 70 for line in out.splitlines())
    assert TARBALL not in table[0] and "…" in table[0]
    # the shared "cuprated-0.0.9-" goes first; what tells the two apart stays
    assert re.search(r"…dist\S*tar\.gz +…x86_64\S*tar\.gz$", table[0])
    assert sha("bad")[:8] in out


def test_table_colour_is_only_ansi_around_the_same_text() -> None:
    run = golden_run()
    comparison = compare(run)
    plain = render("table", run, comparison, width=100)
    coloured = render("table", run, comparison, width=100, color=True)
    assert "\x1b[31m" in coloured and "\x1b[32m" in coloured
    assert ANSI.sub("", coloured) == plain


def test_table_shows_failed_hosts_with_their_error() -> None:
    run = golden_run()
    run.hosts.append(HostResult("arm-box", "unreachable", error="connection refused"))
    out = render("table", run, compare(run), width=100)
    last = [line for line in out.splitlines() if line.startswith("arm-box")]
    assert last and last[0].split()[1].startswith("unreachable")
    assert "host arm-box unreachable: connection refused" in out


# --- hostile hosts ---------------------------------------------------------------------------


def hostile_run() -> tuple[RunResult, Comparison]:
    run = golden_run()
    run.hosts[2] = HostResult(
        HOSTILE,
        "failed",
        error="boom | `rm -rf` <script>x</script>\x1b[2J\nsecond line",
        facts={"describe": "<img src=x onerror=alert(1)> | `\u202egnp.exe"},
    )
    return run, compare(run)


def test_markdown_escapes_everything_from_a_host() -> None:
    run, comparison = hostile_run()
    out = render("md", run, comparison)
    assert "<script>" not in out and "<img" not in out
    assert "\x1b" not in out and "\u202e" not in out
    assert "`x`" not in out and "`rm -rf`" not in out
    table = [line for line in out.splitlines() if line.startswith("|")]
    header = md_cells(table[0])
    assert all(len(md_cells(row)) == len(header) for row in table)
    hostile_row = [row for row in table if "evil" in row]
    assert len(hostile_row) == 1  # the newline in the error did not start a new line
    assert md_cells(hostile_row[0])[0].strip() == md_escape(HOSTILE)
    reasons = out.split("Reasons:")[1]
    assert "<script>" not in reasons and "\\|" in reasons


def test_html_escapes_everything_from_a_host() -> None:
    run, comparison = hostile_run()
    out = render("html", run, comparison)
    assert "<script" not in out and "<img" not in out and "\x1b" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "\\x1b[2J" in out
    assert "default-src 'none'" in out  # no external assets, nothing to run


def test_table_neutralises_terminal_escapes() -> None:
    run, comparison = hostile_run()
    out = render("table", run, comparison, width=200)
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[2J" in out and "\\u202e" in out
    assert "\\n" in out and "second line" in out


def test_json_keeps_hostile_text_exact_but_inert() -> None:
    run, comparison = hostile_run()
    out = render("json", run, comparison)
    assert "\x1b" not in out and "\u202e" not in out  # escaped as \u001b, \u202e
    assert json.loads(out)["hosts"][2]["name"] == HOSTILE


def test_term_safe_shows_control_characters() -> None:
    assert term_safe("a\x1b[2Jb\x00\x7f\x9b\u2028\u202e\tc") == (
        "a\\x1b[2Jb\\x00\\x7f\\x9b\\u2028\\u202e\\tc"
    )
    assert term_safe("Intel® Xeon® ünïcode") == "Intel® Xeon® ünïcode"


# --- the format table ------------------------------------------------------------------------


def test_format_table_and_unknown_format() -> None:
    assert set(FORMATS) == {"table", "md", "json", "html", "junit"}
    run = golden_run()
    with pytest.raises(UsageError, match="'pdf'.*table, json, md, html"):
        render("pdf", run, compare(run))


def test_the_format_table_drives_the_cli_choices() -> None:
    from repro.cli import build_parser

    parser = build_parser()
    for command in (["run"], ["demo"], ["report", "x"], ["sigs", "r", "1"]):
        ok = parser.parse_args([*command, "--format", "html"])
        assert ok.format == "html"
        with pytest.raises(UsageError, match=r"invalid choice: 'pdf' \(choose from"):
            parser.parse_args([*command, "--format", "pdf"])


def test_every_format_renders_through_its_module() -> None:
    run = golden_run()
    for name, spec in FORMATS.items():
        assert spec.renderer(run, compare(run)) == render(name, run, compare(run))
        # plain names only (report.junit.xml is the one with two parts)
        assert spec.ext is None or all(part.isalnum() for part in spec.ext.split("."))


@pytest.mark.parametrize("fmt", ["md", "html", "table"])
def test_every_verdict_gets_a_headline(fmt: str) -> None:
    run = golden_run()
    run.hosts = [built(n, "", "good") for n in ("a", "b")]
    assert "Reproducible".lower() in render(fmt, run, compare(run)).lower()
    run.hosts.append(HostResult("c", "failed", error="step build exited 2"))
    out = render(fmt, run, compare(run))
    assert "inconclusive" in out.lower() and "step build exited 2" in out


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_a_run_without_hosts_still_renders(fmt: str) -> None:
    run = RunResult("r0", "demo", "2026-05-17T21:00:00Z")
    out = render(fmt, run, compare(run))
    assert "no host finished ok" in out


def test_many_artifacts_get_rows_of_their_own() -> None:
    # A Guix release compares six files: as columns the "what it is" column would be cut away.
    import hashlib

    from repro.compare import compare as compare_run
    from repro.results import ArtifactHash, HostResult, RunResult

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    names = [
        "cuprated-0.0.9-x86_64-unknown-linux-gnu.tar.gz",
        "cuprate-0.0.9-dec0bbee5c18-src.tar.gz",
        "build-metadata.json",
        "rustc-version.txt",
        "cargo-version.txt",
        "guix-describe.json",
    ]
    hosts = []
    for name, what in [
        ("spr", "Intel Sapphire Rapids, bare metal"),
        ("genoa", "AMD Zen 4, bare metal"),
    ]:
        arts = {
            a: ArtifactHash(
                a, digest(a + ("!" if name == "genoa" and a.startswith("cuprated") else "")), 1
            )
            for a in names
        }
        hosts.append(HostResult(name, "ok", arts, facts={"describe": what}))
    run = RunResult("r", "cuprated-guix", "t", hosts=hosts)
    text = render("table", run, compare_run(run), width=100)
    assert all(len(line) <= 100 for line in text.splitlines())
    assert "Intel Sapphire Rapids, bare metal" in text
    assert "cuprated-0.0.9-x86_64-unknown-linux-gnu.tar.gz  differs" in text
    assert "spr, genoa" in text  # an identical artifact names every host in its one group


def test_many_hosts_and_artifacts_read_whole_names_and_counts() -> None:
    """A guix.sigs-sized run: names never cut in the middle (powerpc64 vs powerpc64le), a group
    of everyone reads "all N agree", and Markdown stays one row per hash group."""
    names = [f"bitcoin-30.0-{t}-debug.tar.gz" for t in
             ("powerpc64-linux-gnu", "powerpc64le-linux-gnu", "riscv64-linux-gnu", "x86_64-linux-gnu")]  # fmt: skip
    hosts = []
    for i in range(30):
        arts = {n: ArtifactHash(n, hashlib.sha256(n.encode()).hexdigest(), None) for n in names}
        if i == 29:
            arts[names[0]] = ArtifactHash(names[0], "f" * 64, None)
        hosts.append(HostResult(f"builder{i:02d}", "ok", arts))
    run = RunResult("r", "guix.sigs 30.0", "t", hosts=hosts)
    text = render("table", run, compare(run), width=100)
    assert all(f"{n}  " in text for n in names)
    assert "all 30 agree" in text and "29: all but builder29" in text
    md = render("md", run, compare(run))
    assert "all 30 agree" in md and len(md) < 6000
    assert "| `bitcoin-30.0-powerpc64le-linux-gnu-debug.tar.gz` | identical |" in md
def test_a_new_format_is_one_line_of_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Add a report format" (docs/architecture.md): its module and its line in FORMATS; the
    # CLI's choices, the files a run writes and `repro report` follow. (The module is text's.)
    from repro.cli import build_parser
    from repro.render import Format
    from repro.report import write_report

    monkeypatch.setitem(FORMATS, "txt", Format("txt", "text", ext="txt", saved=True))
    for command in (["run"], ["demo"], ["report", "x"], ["sigs", "r", "1"]):
        assert build_parser().parse_args([*command, "--format", "txt"]).format == "txt"
    run = golden_run()
    paths = write_report(tmp_path, run, compare(run))
    assert [p.name for p in paths] == ["report.json", "report.md", "report.html", "report.txt"]
    assert (tmp_path / "report.txt").read_text() == render("table", run, compare(run))
