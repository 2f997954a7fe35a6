"""Retention settings: what a host keeps of its runs, read from its inventory vars (or `-e`,
or `repro run --keep N --keep-failed --keep-work`). Imports nothing of repro: inventory checks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: the per-host settings (inventory vars, or `-e`/`repro run --keep…`)
KEEP_RUNS, KEEP_FAILED, KEEP_WORK = "repro_keep_runs", "repro_keep_failed", "repro_keep_work"


@dataclass(frozen=True)
class Retention:
    """What a host keeps after a run (from its vars)."""

    keep_runs: int | None = None  # None: older run dirs are left to `repro gc`
    keep_failed: bool = False  # keep the work dir of a run that failed (inconclusive)
    keep_work: bool = False  # keep every run's work dir (debugging a playbook)


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ValueError(f"{key} {value!r} is not true or false")


def retention(variables: dict[str, Any]) -> Retention:
    """Read the retention vars; ValueError names the bad one (inventory: exit 2)."""
    keep = variables.get(KEEP_RUNS)
    if keep is not None:
        text = str(keep) if not isinstance(keep, bool) else ""
        if not text.isdigit() or int(text) > 100_000:
            raise ValueError(f"{KEEP_RUNS} {keep!r} is not a number of runs (0 or more)")
        keep = int(text)
    return Retention(
        keep_runs=keep,
        keep_failed=_flag(KEEP_FAILED, variables.get(KEEP_FAILED, False)),
        keep_work=_flag(KEEP_WORK, variables.get(KEEP_WORK, False)),
    )
