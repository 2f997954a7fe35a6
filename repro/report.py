"""Report files of one run: `report.<ext>` written atomically in the run dir, and report.json
read back. `report.json` is the contract scripts rely on (its schema: repro.schema).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from repro.compare import Comparison
from repro.errors import ReportError, ReportWriteError, UsageError
from repro.results import RunResult
from repro.render import FORMATS, file_formats, render, saved
from repro.schema import from_dict
from repro.store import RunDir, atomic_write, sync_dir


# --- files -----------------------------------------------------------------------------------


def write_report(
    run_dir: Path,
    run: RunResult,
    comparison: Comparison,
    formats: Iterable[str] | None = None,
) -> list[Path]:
    """Write report.<ext> for each of `formats` into `run_dir`, each atomically; returns the
    paths written (None: the formats every run saves). Raises ReportWriteError when the disk
    refuses (full, read-only)."""
    store = RunDir(run_dir)
    wanted = list(dict.fromkeys(saved() if formats is None else formats))
    for fmt in wanted:
        if fmt not in file_formats():
            raise UsageError(
                f"cannot write a {fmt!r} report; choose from {', '.join(file_formats())}"
            )
    # Render everything first: a renderer failing must not leave a half-updated set of files.
    texts = {
        store.report(str(FORMATS[fmt].ext)): render(fmt, run, comparison) for fmt in wanted
    }
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for path, text in texts.items():
            atomic_write(path, text)
        sync_dir(run_dir)
    except OSError as e:
        raise ReportWriteError(
            f"{e.filename or run_dir}: cannot write the report: {e.strerror}"
        ) from e
    return list(texts)


def load_report(run_dir: Path) -> tuple[RunResult, Comparison]:
    """Read run_dir/report.json back into the model."""
    path = RunDir(run_dir).report("json")
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run directory")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: no report.json in this run directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot read the report: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise ReportError(f"{path}: JSON nested too deeply") from None
    return from_dict(data, source=str(path))
