"""Operations on many hosts that are not a build: facts, preflight, and cancelling a run.

Each host is connected to through the runner's fan-out (handshakes bounded alike), its outcome
recorded; one host's failure never stops the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from repro.errors import ReproError
from repro.inventory import Host
from repro.playbook import Playbook
from repro.runner import FanOut
from repro.store import RemoteRun, work_base
from repro.transport import make_transport
from repro.transport.base import Transport

T = TypeVar("T")


@dataclass
class HostFacts:
    name: str
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    error: str | None = None  # unreachable or failed

    def __repr__(self) -> str:
        return f"HostFacts({self.name!r}, error={self.error!r})"


async def _each(
    hosts: list[Host],
    work: Callable[[Host, Transport], Awaitable[T]],
    factory: Callable[[Host], Transport] = make_transport,
) -> list[T | ReproError | Exception]:
    fan = FanOut(len(hosts))

    async def one(h: Host) -> T | ReproError | Exception:
        t = factory(h)
        try:
            await fan.connect(t)
            return await work(h, t)
        except Exception as exc:  # recorded per host; never stops the others
            return exc
        finally:
            try:
                await t.close()
            except Exception:
                pass

    return await fan.each(hosts, one)


def _error(exc: Exception) -> str:
    if isinstance(exc, ReproError):
        return " ".join(str(exc.args[0] if exc.args else exc).split())
    return f"{type(exc).__name__}: {exc}"


async def gather_all(hosts: list[Host]) -> list[HostFacts]:
    from repro.facts import gather_facts

    async def work(h: Host, t: Transport) -> HostFacts:
        # the facts script expands a leading ~ itself: one round trip per host
        return HostFacts(h.name, await gather_facts(t, work_base(h)))

    out = []
    for h, r in zip(hosts, await _each(hosts, work)):
        out.append(r if isinstance(r, HostFacts) else HostFacts(h.name, error=_error(r)))
    return out


async def preflight_all(hosts: list[Host], playbook: Playbook) -> list[HostFacts]:
    from repro.facts import gather_facts
    from repro.preflight import check

    async def work(h: Host, t: Transport) -> HostFacts:
        facts = await gather_facts(t, work_base(h), create=True)
        base = facts.get("work_dir") or work_base(h)
        problems = (
            []
            if facts.get("work_dir_writable")
            else [
                f"work dir {base} is not writable"
                + (f": {facts['work_dir_error']}" if facts.get("work_dir_error") else "")
            ]
        )
        problems += await check(t, playbook.requires, facts, base)
        return HostFacts(h.name, facts, problems)

    out = []
    for h, r in zip(hosts, await _each(hosts, work)):
        out.append(r if isinstance(r, HostFacts) else HostFacts(h.name, error=_error(r)))
    return out


async def cancel_run(prep: Any) -> list[tuple[str, str]]:
    """Kill every step of the run still running on its hosts (`repro cancel RUN_ID`)."""
    from repro import detach

    hosts = [p.host for p in prep.plans]

    async def work(h: Host, t: Transport) -> str:
        # a leading ~ stays: the kill script expands it on the host
        steps_dir = RemoteRun.requested(h, prep.run_id).steps
        killed = await detach.kill_all(t, steps_dir)
        return f"killed {len(killed)} running step(s)" if killed else "nothing running"

    results = await _each(hosts, work)
    return [
        (h.name, r if isinstance(r, str) else f"error: {_error(r)}") for h, r in zip(hosts, results)
    ]
