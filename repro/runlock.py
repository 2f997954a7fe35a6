"""One controller per run: an exclusive lock on the run's report directory, held while it runs.

A second `repro run --resume` of a run whose controller is alive would follow (and could kill)
the same builds twice; it is refused with one line instead. The lock is flock(2) on the
directory itself: no file to leave behind, and the kernel drops it with the process.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from repro.errors import UsageError


class RunLock:
    """`with RunLock(run_dir):` holds the run; raises UsageError (exit 2) if another has it."""

    def __init__(self, run_dir: Path, run_id: str) -> None:
        self.path = run_dir
        self.run_id = run_id
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"RunLock({str(self.path)!r}, held={self._fd is not None})"

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(
                f"run {self.run_id} is being run by another repro right now; "
                "wait for it to end, or stop it first"
            ) from None
        self._fd = fd
        return self

    def check(self) -> None:
        """Raise now, before anything is printed, if another controller holds the run (the
        real hold is taken when the run starts)."""
        if self.path.is_dir():
            with self:
                pass

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None
