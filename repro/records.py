"""Frozen dataclass records <-> plain JSON data, every value checked against the field's type on
the way back in (report.json's attribution and why sections are read back by `repro report`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from repro.errors import ReportError

T = TypeVar("T")


def plain(record: Any) -> Any:
    """A dataclass record as JSON-ready dicts and lists (tuples become lists)."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: plain(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, (tuple, list)):
        return [plain(v) for v in record]
    return record


def from_plain(cls: type[T], data: Any, where: str) -> T:
    """Build `cls` from what `plain` wrote; ReportError naming `where` for a wrong value.
    A field missing from `data` takes its default (fields added later read old reports)."""
    if not isinstance(data, dict):
        raise ReportError(f"{where} must be an object")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ReportError(f"{where}.{f.name} is missing")
            continue
        values[f.name] = _convert(hints[f.name], data[f.name], f"{where}.{f.name}")
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise ReportError(f"{where} must be one of {', '.join(map(str, args))}, got {value!r:.40}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is type(None) and value is None:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ReportError(f"{where} must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ReportError(f"{where} must have {len(args)} items")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(hint):
        return from_plain(hint, value, where)  # type: ignore[arg-type]
    if hint in (str, int, float, bool):
        # bool is an int to Python, never to a report reader
        ok = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ReportError(f"{where} must be {hint.__name__}, got {value!r:.40}")
        return value
    raise ReportError(f"{where}: cannot read a value of type {hint}")
