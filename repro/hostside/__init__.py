"""The POSIX sh repro runs on hosts, kept as real files (linted by shellcheck, run under dash,
bash and busybox sh by the tests) and assembled into commands once, at import.

Each file says at its top what it expects; `load` joins files in order. Full-line comments go
at load time (they would only cost bytes on the wire and in the argument limits), so they are
free to explain. Nothing from a host or an inventory is ever spliced into these texts: values
travel as quoted arguments or as files.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def source(name: str) -> str:
    """The text of `repro/hostside/<name>` as shipped, comments and all."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")


def strip_comments(text: str) -> str:
    """`text` without its full-line comments and blank lines (no file has a multi-line string
    with such a line in it; the lint test checks that each file is still the same program)."""
    kept = [ln for ln in text.split("\n") if ln.strip() and not ln.lstrip().startswith("#")]
    return "\n".join(kept) + "\n"


@cache
def _stripped(name: str) -> str:
    # once per file and process: the runner loads hash.sh and gc's files for every host
    return strip_comments(source(name))


def load(*names: str, comments: bool = False) -> str:
    """The files `names` joined in order: one script (comments stripped unless `comments`: the
    lint test keeps them, shellcheck's directives among them)."""
    return "".join(source(n) if comments else _stripped(n) for n in names)


#: the detached rounds' commands (repro/detach.py): the files each is made of, in order
PROGRAMS: dict[str, tuple[str, ...]] = {
    "launch": ("lib.sh", "follow.sh", "launch.sh", "rundir.sh", "reply.sh"),
    "poll": ("lib.sh", "follow.sh", "poll.sh", "rundir.sh", "reply.sh"),
    "wait": ("lib.sh", "follow.sh", "wait.sh", "rundir.sh", "reply.sh"),
    "supervisor": ("lib.sh", "stop.sh", "supervisor.sh"),
    "kill": ("lib.sh", "stop.sh", "kill.sh"),
    "cancel": ("lib.sh", "stop.sh", "cancel.sh"),
    "gc": ("lib.sh", "stop.sh", "rundir.sh", "gc.sh"),  # repro/gc.py
}


def program(name: str, *, comments: bool = False) -> str:
    """The command `name` of PROGRAMS, as one script."""
    return load(*PROGRAMS[name], comments=comments)
