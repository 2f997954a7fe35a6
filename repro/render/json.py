"""report.json: the versioned report dict from `repro.schema`, as stable, diff-friendly JSON.

Keys are sorted and non-ASCII is escaped, so a host's bytes cannot hide in the file.
"""

from __future__ import annotations

import json

from repro.compare import Comparison
from repro.schema import to_dict
from repro.results import RunResult


def render(run: RunResult, comparison: Comparison, *, width: int = 100, color: bool = False) -> str:
    return json.dumps(to_dict(run, comparison), indent=2, sort_keys=True) + "\n"
