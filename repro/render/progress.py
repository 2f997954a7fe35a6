"""How run progress looks: a live per-host status block on a terminal, `[host] …` lines in CI logs.

Both are listeners for `repro.events.Event`. Everything that came from a host is passed through
`term_safe` so a hostile build log cannot move the cursor or clear the screen.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from repro.events import Event
from repro.render.safe import term_safe

_PHASE = {
    "connecting": "connecting",
    "connected": "connected",
    "facts": "facts",
    "preflight": "preflight",
    "step-start": "step",
    "step-done": "step done",
    "reconnecting": "reconnecting",
    "hashing": "hashing",
    "done": "done",
}


class LineProgress:
    """Plain lines, one per event that matters; step output only with `verbose`."""

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.verbose = verbose

    def __call__(self, ev: Event) -> None:
        if ev.kind == "step-output":
            if self.verbose:
                for line in ev.message.splitlines():
                    self._line(ev.host, line)
            return
        what = _PHASE.get(ev.kind, ev.kind)
        if ev.kind == "step-start":
            text = f"step {ev.step} started"
        elif ev.kind == "step-done":
            text = f"step {ev.step}: {ev.message}"
        else:
            text = f"{what}: {ev.message}" if ev.message else what
        self._line(ev.host, f"{text} ({ev.elapsed:.1f}s)")

    def _line(self, host: str, text: str) -> None:
        self.stream.write(f"[{term_safe(host)}] {term_safe(text)}\n")
        self.stream.flush()


class LiveProgress:
    """One line per host, redrawn in place: phase, current step, elapsed, last log line."""

    def __init__(self, hosts: list[str], stream: TextIO | None = None, *, width: int = 100) -> None:
        self.stream = stream or sys.stderr
        self.hosts = hosts
        self.width = width
        self.state: dict[str, tuple[str, float, str]] = {h: ("waiting", 0.0, "") for h in hosts}
        self.frozen: dict[str, float] = {}
        self.t0 = time.monotonic()
        self.drawn = 0
        self.last_draw = 0.0
        self.namew = max((len(h) for h in hosts), default=4)

    def __call__(self, ev: Event) -> None:
        phase, _, last = self.state.get(ev.host, ("", 0.0, ""))
        if ev.kind == "step-output":
            lines = [ln for ln in ev.message.splitlines() if ln.strip()]
            if lines:
                last = lines[-1]
        elif ev.kind in ("step-start", "step-done"):
            phase, last = f"step {ev.step}", "" if ev.kind == "step-start" else last
        elif ev.kind == "done":
            phase, last = ev.message, ""
        else:
            phase = _PHASE.get(ev.kind, ev.kind)
        # remember when the host started, so a redraw shows time that passed without events;
        # a finished host's time stops
        self.state[ev.host] = (phase, time.monotonic() - ev.elapsed, last)
        if ev.kind == "done":
            self.frozen[ev.host] = ev.elapsed
        now = time.monotonic()
        if ev.kind in ("done", "step-start", "connecting") or now - self.last_draw > 0.1:
            self.draw()

    async def tick(self, every: float = 0.5) -> None:
        """Redraw now and then, so elapsed times move while hosts are quiet; cancel to stop."""
        while True:
            await asyncio.sleep(every)
            self.draw()

    def draw(self) -> None:
        out = []
        if self.drawn:
            out.append(f"\x1b[{self.drawn}F")  # back to the first line of the block
        for h in self.hosts:
            phase, start, last = self.state[h]
            if h in self.frozen:
                elapsed = self.frozen[h]
            elif phase == "waiting":
                elapsed = 0.0
            else:
                elapsed = time.monotonic() - start
            line = f"{h:<{self.namew}}  {elapsed:6.1f}s  {phase}"
            if last:
                line += f"  | {last}"
            out.append("\x1b[2K" + term_safe(line)[: self.width - 1] + "\n")
        self.stream.write("".join(out))
        self.stream.flush()
        self.drawn = len(self.hosts)
        self.last_draw = time.monotonic()
