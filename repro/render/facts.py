"""How `repro facts` and `repro check` look: a table (tabulate) or JSON, over HostFacts records."""

from __future__ import annotations

import json
from typing import Any

from tabulate import tabulate

from repro.preflight import human_bytes
from repro.render.safe import term_safe


def _mem(v: Any) -> str:
    return human_bytes(v) if isinstance(v, int) else ""


def facts_table(results: list[Any], *, width: int = 100) -> str:
    rows = []
    for r in results:
        f = r.facts
        if r.error:
            rows.append([r.name, f"unreachable/failed: {r.error}", "", "", "", ""])
            continue
        rows.append(
            [
                r.name,
                f.get("describe", ""),
                f.get("cpu_model_name", ""),
                f"{f.get('cores', '')} / {_mem(f.get('memory_bytes'))}",
                f"{f.get('distro', '')}; {f.get('kernel', '')}; glibc {f.get('glibc', '')}",
                f.get("guix_version", "") or "no guix",
            ]
        )
    safe = [[term_safe(str(c))[:width] for c in row] for row in rows]
    return (
        tabulate(safe, headers=["host", "what it is", "CPU", "cores / memory", "system", "guix"])
        + "\n"
    )


#: `repro facts --format json` (docs/facts-json.md); bumped when a field changes meaning
FACTS_SCHEMA = "repro-facts/1"


def facts_json(results: list[Any]) -> str:
    hosts = [{"name": r.name, "error": r.error, "facts": r.facts} for r in results]
    return json.dumps({"schema": FACTS_SCHEMA, "hosts": hosts}, indent=2, sort_keys=True) + "\n"


def check_table(results: list[Any]) -> str:
    rows = []
    for r in results:
        if r.error:
            rows.append([r.name, "unreachable", r.error])
        elif r.problems:
            rows.append([r.name, "preflight-failed", "; ".join(r.problems)])
        else:
            rows.append([r.name, "ok", r.facts.get("describe", "")])
    safe = [[term_safe(str(c)) for c in row] for row in rows]
    return tabulate(safe, headers=["host", "status", "details"]) + "\n"
