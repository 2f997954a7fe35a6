"""report.junit.xml: one JUnit test case per artifact (a mismatch is a failure carrying the
hash groups), so CI systems show a nightly run like any test run; hosts that failed are errors.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from repro.compare import ArtifactComparison, Comparison
from repro.render.safe import term_safe
from repro.results import RunResult


def _text(s: str) -> str:
    # XML 1.0 cannot carry most control characters at all; term_safe spells them out.
    return term_safe(s).replace("\\n", "\n")


def _groups(a: ArtifactComparison) -> str:
    lines = [f"{g.sha256}  {', '.join(g.hosts)}" for g in a.groups]
    lines += [f"missing on {h}" for h in a.missing]
    lines += [f"unstable on {h} (its own rounds differ)" for h in a.unstable]
    return "\n".join(lines)


def render(run: RunResult, comparison: Comparison, *, width: int = 100, color: bool = False) -> str:
    # width and color exist for the format table; XML has neither.
    suite_name = f"repro {run.playbook}"
    classname = f"repro.{run.playbook}"
    cases: list[ET.Element] = []
    failures = errors = 0
    for a in comparison.artifacts:
        case = ET.Element("testcase", classname=_text(classname), name=_text(a.name))
        if a.status == "differs" or a.unstable:
            failures += 1
            what = f"{len(a.groups)} different hashes" if len(a.groups) > 1 else "unstable"
            el = ET.SubElement(case, "failure", message=_text(f"{a.name}: {what}"), type="mismatch")
            el.text = _text(_groups(a))
        elif a.status == "incomplete":
            errors += 1
            el = ET.SubElement(
                case, "error", message=_text(f"{a.name}: incomplete"), type="incomplete"
            )
            el.text = _text(_groups(a))
        else:
            ET.SubElement(case, "system-out").text = _text(_groups(a))
        cases.append(case)
    for h in run.hosts:
        if h.status == "ok":
            continue
        errors += 1
        case = ET.Element("testcase", classname=_text(f"{classname}.hosts"), name=_text(h.name))
        el = ET.SubElement(case, "error", message=_text(f"{h.name}: {h.status}"), type=h.status)
        el.text = _text(h.error or h.status)
        cases.append(case)
    if not cases:  # nothing was built: the run itself is the one case
        errors += 1
        case = ET.Element("testcase", classname=_text(classname), name="run")
        el = ET.SubElement(case, "error", message=comparison.verdict, type=comparison.verdict)
        el.text = _text("\n".join(comparison.reasons))
        cases.append(case)
    suite = ET.Element(
        "testsuite",
        name=_text(suite_name),
        tests=str(len(cases)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        timestamp=run.started_at.rstrip("Z"),
        id=_text(run.run_id),
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("run_id", run.run_id),
        ("commit", run.commit or ""),
        ("verdict", comparison.verdict),
    ):
        ET.SubElement(props, "property", name=key, value=_text(value))
    suite.extend(cases)
    root = ET.Element(
        "testsuites",
        name="repro",
        tests=str(len(cases)),
        failures=str(failures),
        errors=str(errors),
    )
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
