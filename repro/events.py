"""Events the runner emits while it works; the CLI (or any listener) decides how they look.

The library never prints: it calls a listener with an `Event`, as pyinfra's state callbacks do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

EventKind = Literal[
    "connecting",  # opening the SSH connection
    "connected",
    "facts",  # host facts gathered
    "preflight",  # checking requirements
    "step-start",
    "step-output",  # a new chunk of a step's log (message = the new text, possibly partial)
    "step-done",
    "reconnecting",  # lost the connection; trying again with backoff
    "hashing",
    "done",  # the host finished; message = status (ok/failed/unreachable)
    "fetching",  # copying an artifact of a mismatch to the controller (message: how far)
    "fetched",  # one copy arrived and was re-hashed, or could not be fetched (message: which)
    "diffing",  # diffoscope is comparing two copies
]


@dataclass(frozen=True)
class Event:
    host: str
    kind: EventKind
    message: str = ""
    step: str | None = None
    elapsed: float = 0.0  # seconds since this host started

    def __repr__(self) -> str:
        return f"Event({self.host!r}, {self.kind}, {self.message[:30]!r})"


Listener = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default listener: a library caller that doesn't care about progress."""
