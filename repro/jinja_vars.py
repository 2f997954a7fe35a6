"""Jinja in inventory variables, with Ansible's semantics: sandboxed, resolved lazily against the
host's final (precedence-applied) variables, one `{{ expr }}` keeps its type; sizes bounded.

Lookups and Ansible-only filters are refused with the file and key named: repro does not
reimplement Ansible's plugin library, and a half-right imitation would be worse than a refusal.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_CHARS = 64 * 1024  # a longer template in an inventory is a mistake or an attack
MAX_RESULT_CHARS = 1024 * 1024  # what one variable may grow to
MAX_DEPTH = 64  # variables referring to variables, this deep at most (and no cycles)
_MARKERS = ("{{", "{%", "{#")
_LOOKUPS = ("lookup", "query", "q")


class TemplateError(Exception):
    """A variable could not be templated; the message says why (the caller adds file and key)."""


class _Refused(jinja2.TemplateError):
    pass


def _refuse_lookup(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise _Refused(f"{name}() is an Ansible lookup, which repro does not run")

    return call


class _Env(ImmutableSandboxedEnvironment):
    """Sandboxed, no mutation of values, undefined names are errors, `*` and `**` bounded."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, int) and abs(right) > 1000:
                raise _Refused(f"exponent {right} is too large")
            return operator.pow(left, right)
        if isinstance(left, (str, list)) and isinstance(right, int):
            size, count = len(left), right
        elif isinstance(right, (str, list)) and isinstance(left, int):
            size, count = len(right), left
        else:
            return operator.mul(left, right)
        if size * count > MAX_RESULT_CHARS:
            raise _Refused(f"result would exceed {MAX_RESULT_CHARS} characters")
        return operator.mul(left, right)


_ENV = _Env(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
for _name in _LOOKUPS:
    _ENV.globals[_name] = _refuse_lookup(_name)


class UnsafeText(str):
    """A value Ansible marked unsafe (`__ansible_unsafe`): data, never templated."""

    __slots__ = ()


def needs_template(value: Any) -> bool:
    """Whether `value` (or anything nested in it) holds Jinja markup."""
    if isinstance(value, UnsafeText):
        return False
    if isinstance(value, str):
        return any(m in value for m in _MARKERS)
    if isinstance(value, dict):
        return any(needs_template(v) for v in value.values())
    if isinstance(value, list):
        return any(needs_template(v) for v in value)
    return False


@dataclass
class _Compiled:
    template: jinja2.Template
    native: bool  # one `{{ expr }}` and nothing else: the expression's own value


_CACHE: dict[str, _Compiled] = {}


def _compile(text: str) -> _Compiled:
    if text in _CACHE:
        return _CACHE[text]
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template is longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        tree = _ENV.parse(text)
        _check_filters(tree)
        native = (
            len(tree.body) == 1
            and isinstance(tree.body[0], nodes.Output)
            and len(tree.body[0].nodes) == 1
            and not isinstance(tree.body[0].nodes[0], nodes.TemplateData)
        )
        if native:
            # `{% set %}` at the top level lands in the context's vars, type intact.
            inner = text.strip()[2:-2]
            template = _ENV.from_string("{% set __repro_result = (" + inner + ") %}")
        else:
            template = _ENV.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"Jinja syntax error: {exc.message}") from None
    if len(_CACHE) > 4096:
        _CACHE.clear()
    _CACHE[text] = _Compiled(template, native)
    return _CACHE[text]


def _check_filters(tree: nodes.Template) -> None:
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        table = _ENV.filters if isinstance(node, nodes.Filter) else _ENV.tests
        if node.name not in table:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            raise TemplateError(
                f"the {kind} {node.name!r} is Ansible's, not Jinja's; repro does not implement it"
            )


class Templar:
    """Resolves one host's variables on demand: each one templated once, cycles caught."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw
        self._done: dict[str, Any] = {}
        self._active: list[str] = []

    def value(self, key: str) -> Any:
        """The templated value of `key`; raises TemplateError (KeyError if there is none)."""
        if key in self._done:
            return self._done[key]
        if key in self._active:
            chain = " -> ".join([*self._active[self._active.index(key) :], key])
            raise TemplateError(f"variables refer to each other in a cycle: {chain}")
        if len(self._active) >= MAX_DEPTH:
            raise TemplateError(f"variables refer to variables more than {MAX_DEPTH} deep")
        raw = self._raw[key]
        self._active.append(key)
        try:
            result = self.render(raw)
        finally:
            self._active.pop()
        self._done[key] = result
        return result

    def render(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v) for v in value]
        if not isinstance(value, str) or not needs_template(value):
            return value
        compiled = _compile(value)
        lazy: Any = _Lazy(self)  # jinja2 types vars as a dict; a Mapping is all it reads
        context = compiled.template.new_context(lazy, shared=True)
        try:
            text = compiled.template.environment.concat(
                compiled.template.root_render_func(context)
            )
        except TemplateError:
            raise
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"refused by the sandbox: {exc.message}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"undefined variable: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(str(exc.message or exc)) from None
        except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as exc:
            raise TemplateError(f"{type(exc).__name__}: {exc}") from None
        result = context.vars["__repro_result"] if compiled.native else text
        _defined(result)
        if _size(result) > MAX_RESULT_CHARS:
            raise TemplateError(f"result is larger than {MAX_RESULT_CHARS} characters")
        return result


class _Lazy(Mapping[str, Any]):
    """What a template sees: the host's variables, each templated only when it is read."""

    def __init__(self, templar: Templar) -> None:
        self._t = templar

    def __getitem__(self, key: str) -> Any:
        if key in self._t._raw:
            return self._t.value(key)
        # A shared context gets no globals of its own: Jinja's (range, dict, ...) and the
        # lookup refusals come from here, under the host's variables as in Ansible.
        return _ENV.globals[key]

    def __contains__(self, key: object) -> bool:
        return key in self._t._raw or key in _ENV.globals

    def __iter__(self) -> Iterator[str]:
        return iter(self._t._raw)

    def __len__(self) -> int:
        return len(self._t._raw)


def _defined(value: Any) -> None:
    """A native `{{ name }}` assigns an Undefined instead of failing: fail here, as Ansible."""
    if isinstance(value, jinja2.Undefined):
        try:
            str(value)
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"refused by the sandbox: {exc.message}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"undefined variable: {exc.message}") from None
        raise TemplateError("undefined value")
    if isinstance(value, dict):
        for item in value.values():
            _defined(item)
    elif isinstance(value, list):
        for item in value:
            _defined(item)


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, dict)):
        return len(repr(value))
    return 0
