"""Renderers: small visitors over (RunResult, Comparison), picked by name from the format table.

`FORMATS` is the one list of report formats: the CLI's `--format` choices, the files a run
writes (`report.<ext>`) and `repro report`'s choices all come from it. They only read the model.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from repro.compare import Comparison
from repro.errors import UsageError
from repro.results import RunResult


class Renderer(Protocol):
    def __call__(
        self, run: RunResult, comparison: Comparison, *, width: int = 100, color: bool = False
    ) -> str: ...


@dataclass(frozen=True)
class Format:
    """One report format: the module under repro.render whose `render` makes it, and where
    it goes in a run dir."""

    name: str  # what `--format` takes
    module: str  # repro.render.<module>.render; imported only when used (the CLI starts fast)
    ext: str | None = None  # saved as report.<ext> in a run dir; None: printed only
    saved: bool = False  # written with every run (else only when asked for)

    @property
    def renderer(self) -> Renderer:
        mod = importlib.import_module(f"repro.render.{self.module}")
        render: Renderer = mod.render
        return render


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("table", "text"),
        Format("json", "json", ext="json", saved=True),
        Format("md", "markdown", ext="md", saved=True),
        Format("html", "html", ext="html", saved=True),
        Format("junit", "junit", ext="junit.xml"),
    )
}
#: `repro facts --format`: not a report of a run, but host records (repro.render.facts)
FACTS_FORMATS: tuple[str, ...] = ("table", "json")


def saved() -> tuple[str, ...]:
    """The formats written into every run's directory."""
    return tuple(f.name for f in FORMATS.values() if f.saved)


def file_formats() -> tuple[str, ...]:
    """The formats a run's directory can hold (as report.<ext>)."""
    return tuple(f.name for f in FORMATS.values() if f.ext)


def render(
    fmt: str, run: RunResult, comparison: Comparison, *, width: int = 100, color: bool = False
) -> str:
    """The run in format `fmt`; an unknown format is a usage error naming the choices."""
    try:
        spec = FORMATS[fmt]
    except KeyError:
        choices = ", ".join(FORMATS)
        raise UsageError(f"unknown report format {fmt!r}; choose one of {choices}") from None
    return spec.renderer(run, comparison, width=width, color=color)
