"""A LocalLab running in a background thread, so a test can call the CLI (`main(argv)`, which
runs its own event loop) against real SSH servers, and stop or start hosts mid-run."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Coroutine, TypeVar

from repro.lab import LocalLab

T = TypeVar("T")


class LabThread:
    def __init__(
        self,
        base_dir: Path,
        n: int = 3,
        host_vars: dict[str, dict[str, Any]] | None = None,
        names: list[str] | None = None,
    ):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.lab = LocalLab(base_dir, n=n, names=names, host_vars=host_vars)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> LocalLab:
        self.thread.start()
        self.call(self.lab.start())
        return self.lab

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.lab.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def stop_host(self, name: str) -> None:
        self.call(self.lab.stop_host(name))

    def start_host(self, name: str) -> None:
        self.call(self.lab.start_host(name))
