"""The cursor over one round's replies on one host: which step is next, from which log offset,
and what each reply means (a step seen, its output, its end, still running), in order.

It launches the round, then waits on the host (repro.detach.wait: one channel at a time that
answers on news or after `host_wait` seconds) through a `via` wrapper the runner gives it for
reconnects; timeouts, cancels and local logs are the runner's. Nothing here trusts the host.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from repro import detach
from repro.artifacts import MAX_OUTPUT
from repro.errors import UntrustedOutput
from repro.store import RemoteRun
from repro.transport.base import Held, Transport

@dataclass(frozen=True)
class Seen:
    """Step `index` showed it began (for the hashing: its steps all ended, it is next)."""

    index: int
    #: seconds since it began, by the host's clock (None: not begun yet, or not said)
    elapsed: float | None = None


@dataclass(frozen=True)
class Output:
    """More of step `index`'s log (never of the hashing: that is kept for `Ended`)."""

    index: int
    data: bytes


@dataclass(frozen=True)
class Ended:
    """Step `index` has an exit status and all its log was read; `output` is the hashing's."""

    index: int
    poll: detach.Poll
    output: bytes = b""


@dataclass(frozen=True)
class Waiting:
    """Step `index` has not ended (still running, or gone without a status)."""

    index: int
    poll: detach.Poll


@dataclass(frozen=True)
class Turn:
    """A reply has been taken in; the next poll goes out when the iteration resumes."""


Happening = Seen | Output | Ended | Waiting | Turn
Via = Callable[[Callable[[], Awaitable[detach.Reply]]], Awaitable[detach.Reply]]


async def _direct(op: Callable[[], Awaitable[detach.Reply]]) -> detach.Reply:
    return await op()


class RoundFollower:
    """Launches round `rnd` of `keys` (the last key hashes) and follows it to its end.

    Iterate it: each reply yields what it says, in order, then a `Turn`. It stops after the
    hashing's `Ended`. A poll the host sends for another key than the one asked for, or
    hashing output past MAX_OUTPUT, raises UntrustedOutput.
    """

    def __init__(
        self,
        transport: Transport,
        remote: RemoteRun,
        rnd: int,
        keys: list[str],
        scripts: list[str] | None,
        *,
        poll_wait: int = detach.POLL_WAIT,
        launch_wait: int = detach.POLL_WAIT,
        via: Via = _direct,
        host_wait: int = detach.HOST_WAIT,
        live_gap: int = 0,
        limits: list[float] | None = None,
        hold: bool = False,
    ) -> None:
        self.transport = transport
        self.remote = remote
        self.plan = remote.plan(rnd)
        self.work = remote.work(rnd)
        self.keys = keys
        self.scripts = scripts
        self.poll_wait = poll_wait
        self.launch_wait = launch_wait
        self.via = via
        self.host_wait = host_wait
        self.live_gap = live_gap  # 0: a growing log does not end a wait (nobody shows it live)
        self.limits = limits or []  # each key's timeout (seconds): a wait ends in time for it
        self.index = 0  # the key asked about next
        self.offset = 0  # of its log
        self.finished = False
        # hold: the reply that ends the round stays open on the host, waiting for the run's
        # verdict on its run dir (repro/gc.py); it is here once the hashing has Ended
        self.hold = hold
        self.held: Held | None = None

    @property
    def key(self) -> str:
        """The key followed now (the one a kill must stop)."""
        return self.keys[min(self.index, len(self.keys) - 1)]

    @property
    def host(self) -> str:
        return self.transport.host.name

    def __repr__(self) -> str:
        return f"RoundFollower({self.host!r}, {self.plan}, at {self.key}+{self.offset})"

    def __aiter__(self) -> AsyncIterator[Happening]:
        return self._follow()

    async def _follow(self) -> AsyncIterator[Happening]:
        steps = self.remote.steps
        reply = await self.via(
            lambda: detach.launch(
                self.transport, steps, self.plan, self.work, self.keys, self.scripts,
                wait=self.launch_wait, hold=self.hold,
            )
        )  # fmt: skip
        hashing_at = len(self.keys) - 1
        seen = -1  # the last index a Seen was given for
        hash_out = bytearray()
        while True:
            if self.held is not None:  # a round goes on only after a reply that held nothing
                await self.held.drop()
            self.held = reply.held  # the caller drops it if the round does not end here
            last: detach.Poll | None = None
            for p in reply.polls:
                if p.key != self.keys[self.index]:
                    raise UntrustedOutput(
                        f"the host reported step {p.key[:20]!r} for {self.keys[self.index]}",
                        host=self.host,
                    )
                last = p
                hashing = self.index == hashing_at
                if seen < self.index and (hashing or p.started or p.data or p.done):
                    seen = self.index
                    yield Seen(self.index, p.elapsed if p.started else None)
                if p.data:
                    if hashing:
                        hash_out += p.data
                        if len(hash_out) > MAX_OUTPUT:
                            raise UntrustedOutput(
                                f"artifact list is larger than {MAX_OUTPUT} bytes",
                                host=self.host,
                            )
                    else:
                        yield Output(self.index, p.data)
                self.offset = p.next_offset
                if p.done:
                    if hashing:
                        self.finished = True
                        yield Ended(self.index, p, bytes(hash_out))
                        return
                    yield Ended(self.index, p)
                    self.index, self.offset = self.index + 1, 0
                    continue
                yield Waiting(self.index, p)
                break
            yield Turn()
            # a log only partly brought back is asked for again at once; else wait on the host
            more = last is not None and last.key == self.key and self.offset < last.size
            index, offset = self.index, self.offset
            if more or self.host_wait <= 0:  # host_wait 0: short polls, as before the waits
                wait = 0 if more else self.poll_wait
                reply = await self.via(
                    lambda: detach.poll(
                        self.transport, steps, self.plan, self.keys, index, offset, wait=wait,
                        hold=self.hold,
                    )
                )  # fmt: skip
            else:
                bound = self._bound(index, last)
                reply = await self.via(
                    lambda: detach.wait(
                        self.transport, steps, self.plan, self.keys, index, offset,
                        bound=bound, gap=self.live_gap, hold=self.hold,
                    )
                )  # fmt: skip

    def _bound(self, index: int, last: detach.Poll | None) -> int:
        """How long the next wait may last: `host_wait`, but never past the step's timeout
        (on the host's clock) by more than a second, since only a reply lets the runner see it."""
        bound = self.host_wait
        if index < len(self.limits):
            elapsed = last.elapsed if last is not None and last.elapsed is not None else 0.0
            bound = min(bound, int(self.limits[index] - elapsed) + 1)
        return max(1, bound)
