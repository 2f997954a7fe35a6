"""How run progress looks: a live per-host status block on a terminal, `[host] …` lines in CI logs.

Both are listeners for `repro.events.Event`. Everything that came from a host is passed through
`term_safe` so a hostile build log cannot move the cursor or clear the screen.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
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


#: seconds between heartbeat lines in CI logs (`repro run --heartbeat`)
DEFAULT_HEARTBEAT = 30.0


class LineProgress:
    """Plain lines, one per event that matters; step output only with `verbose`; and, while
    a step runs quietly, a heartbeat line per host every `heartbeat` seconds (0: none)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        verbose: bool = False,
        heartbeat: float = DEFAULT_HEARTBEAT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.heartbeat = heartbeat
        self.clock = clock
        self.running: dict[str, _Running] = {}

    def __call__(self, ev: Event) -> None:
        self._track(ev)
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

    def _track(self, ev: Event) -> None:
        now = self.clock()
        if ev.kind == "step-start":
            self.running[ev.host] = _Running(ev.step or "", now, 0, now)
        elif ev.kind == "step-output" and ev.host in self.running:
            self.running[ev.host].log_bytes += len(ev.message.encode("utf-8", errors="replace"))
        elif ev.kind in ("step-done", "done"):
            self.running.pop(ev.host, None)

    def beat(self) -> None:
        """A line for every host in a step that has said nothing for `heartbeat` seconds."""
        now = self.clock()
        for host, run in list(self.running.items()):
            if now - run.said < self.heartbeat:
                continue
            elapsed = now - run.started
            self._line(host, f"step {run.step} running {elapsed:.0f}s, log {_size(run.log_bytes)}")

    async def tick(self) -> None:
        """Heartbeats until cancelled (the session runs this beside the run)."""
        if self.heartbeat <= 0:
            return
        while True:
            await asyncio.sleep(min(self.heartbeat, 5.0))
            self.beat()

    def _line(self, host: str, text: str) -> None:
        if host in self.running:
            self.running[host].said = self.clock()
        self.stream.write(f"[{term_safe(host)}] {term_safe(text)}\n")
        self.stream.flush()


@dataclass
class _Running:
    """A host in a step, for heartbeats (times from LineProgress.clock)."""

    step: str
    started: float
    log_bytes: int
    said: float  # when its last line was written

    def __repr__(self) -> str:
        return f"_Running({self.step!r}, {self.log_bytes} bytes)"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


class LiveProgress:
    """One line per host, redrawn in place: phase, current step, elapsed, last log line."""

    def __init__(
        self,
        hosts: list[str],
        stream: TextIO | None = None,
        *,
        width: int = 100,
        height: int = 0,
    ) -> None:
        self.stream = stream or sys.stderr
        self.hosts = hosts
        self.width = width
        # terminal rows (0: unlimited). A block taller than the screen cannot be redrawn in
        # place (the cursor cannot go back into the scrollback): past it, hosts fold into a
        # summary line.
        self.height = height
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

    def _visible(self) -> tuple[list[str], str | None]:
        """The hosts that get a line, and the summary line for the rest (None: all fit)."""
        room = max(self.height - 1, 2) if self.height else len(self.hosts)
        if len(self.hosts) <= room:
            return self.hosts, None
        running = [h for h in self.hosts if h not in self.frozen and self._phase(h) != "waiting"]
        waiting = [h for h in self.hosts if self._phase(h) == "waiting"]
        done = [h for h in self.hosts if h in self.frozen]
        chosen = set((running + waiting + done)[: room - 1])  # what is moving matters most
        shown = [h for h in self.hosts if h in chosen]
        counts = Counter(self._phase(h) for h in self.hosts if h not in chosen)
        rest = ", ".join(f"{n} {phase}" for phase, n in sorted(counts.items()))
        return shown, f"... and {len(self.hosts) - len(shown)} more hosts: {rest}"

    def _phase(self, host: str) -> str:
        return self.state[host][0]

    def draw(self) -> None:
        out = []
        if self.drawn:
            out.append(f"\x1b[{self.drawn}F")  # back to the first line of the block
        shown, summary = self._visible()
        for h in shown:
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
        if summary is not None:
            out.append("\x1b[2K" + term_safe(summary)[: self.width - 1] + "\n")
        out.append("\x1b[J")  # a shorter block than last time leaves no old lines below
        self.stream.write("".join(out))
        self.stream.flush()
        self.drawn = len(shown) + (summary is not None)
        self.last_draw = time.monotonic()
