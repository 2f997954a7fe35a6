"""Renderers: small visitors over (RunResult, Comparison), picked by name from `FORMATS`.

They only read the model; verdicts and groups come from `repro.compare`.
"""

from __future__ import annotations

from typing import Protocol

from repro.compare import Comparison
from repro.errors import UsageError
from repro.render import html, json, junit, markdown, text
from repro.results import RunResult


class Renderer(Protocol):
    def __call__(
        self, run: RunResult, comparison: Comparison, *, width: int = 100, color: bool = False
    ) -> str: ...


FORMATS: dict[str, Renderer] = {
    "table": text.render,
    "md": markdown.render,
    "json": json.render,
    "html": html.render,
    "junit": junit.render,
}


def render(
    fmt: str, run: RunResult, comparison: Comparison, *, width: int = 100, color: bool = False
) -> str:
    """The run in format `fmt`; an unknown format is a usage error naming the choices."""
    try:
        renderer = FORMATS[fmt]
    except KeyError:
        choices = ", ".join(FORMATS)
        raise UsageError(f"unknown report format {fmt!r}; choose one of {choices}") from None
    return renderer(run, comparison, width=width, color=color)
