"""The per-host state machine: connect, facts, preflight, upload, steps (detached), hash, close.

All hosts run at once, bounded by `forks` and, separately, by how many SSH handshakes may be in
flight. One host's failure is recorded in its HostResult and never stops the others. The runner
never prints: it emits `repro.events.Event`s and returns a `RunResult`.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from repro import artifacts, detach
from repro.errors import (
    Cancelled,
    ConnectError,
    HostError,
    HostKeyError,
    StepFailed,
    StepTimeout,
    UntrustedOutput,
)
from repro.hostenv import PRELUDE
from repro.events import Event, EventKind, Listener, ignore
from repro.inventory import Host
from repro.playbook import Playbook, RenderedStep
from repro.results import HostResult, RunResult, StepResult
from repro.transport.base import Transport

T = TypeVar("T")

DEFAULT_WORK_BASE = "~/.cache/repro/runs"
RUN_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")
_SAFE_REMOTE_PATH = re.compile(r"^/[A-Za-z0-9_./+@=,:-]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
#: how much of a step's log is kept in an error message and a report
TAIL_LINES = 20
#: how long hashing the artifacts may take on a host
HASH_TIMEOUT = 3600.0
#: the launch of a round waits on the host this many polls' worth for it to end
LAUNCH_WAITS = 3
#: seconds past a step's timeout, on the controller's clock, after which it is killed whatever
#: the host's clock says
CLOCK_GRACE = 300.0


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class HostPlan:
    """What one host will do: its record and its rendered steps (same for every round)."""

    host: Host
    steps: list[RenderedStep]

    def __repr__(self) -> str:
        return f"HostPlan({self.host.name!r}, {len(self.steps)} steps)"


@dataclass
class RunOptions:
    forks: int | None = None  # hosts worked on at once; None = all
    handshakes: int = 32  # SSH handshakes in flight at once (key exchange is CPU on both ends)
    rounds: int | None = None  # overrides the playbook's rounds
    reconnect_timeout: float = 300.0  # how long a host may stay away before it is unreachable
    poll_wait: int = detach.POLL_WAIT  # hundredths of a second a poll may wait on the host
    gather_facts: bool = True
    preflight: bool = True


@dataclass
class _HostState:
    plan: HostPlan
    result: HostResult
    transport: Transport
    started: float = field(default_factory=time.monotonic)
    run_dir: str = ""  # absolute, on the host
    # the step followed now, for a kill: (steps dir, its key, its round's plan id)
    current: tuple[str, str, str] | None = None


class Runner:
    """Runs one playbook on many hosts. Construct, then `await run()`; `cancel()` from outside."""

    def __init__(
        self,
        playbook: Playbook,
        plans: list[HostPlan],
        *,
        run_id: str,
        report_dir: Path,
        transport_factory: Callable[[Host], Transport],
        listener: Listener = ignore,
        options: RunOptions | None = None,
        variables: dict[str, Any] | None = None,
        commit: str | None = None,
    ) -> None:
        self.playbook = playbook
        self.plans = plans
        self.run_id = run_id
        self.report_dir = report_dir
        self.transport_factory = transport_factory
        self.listener = listener
        self.options = options or RunOptions()
        self.variables = dict(variables or {})
        self.commit = commit
        self._cancelled = asyncio.Event()
        self.result = RunResult(
            run_id=run_id,
            playbook=playbook.name,
            started_at=utcnow(),
            vars=self.variables,
            quorum=playbook.quorum,
            require=playbook.require,
            playbook_path=str(playbook.path),
            commit=commit,
            hosts=[HostResult(name=p.host.name, address=p.host.address) for p in plans],
        )

    @property
    def rounds(self) -> int:
        return self.options.rounds or self.playbook.rounds

    def cancel(self) -> None:
        """Stop every host: running steps' process groups are killed on the hosts."""
        self._cancelled.set()

    async def run(self) -> RunResult:
        forks = asyncio.Semaphore(self.options.forks or max(1, len(self.plans)))
        handshakes = asyncio.Semaphore(max(1, self.options.handshakes))

        async def one(plan: HostPlan, result: HostResult) -> None:
            async with forks:
                await self._host(plan, result, handshakes)

        await asyncio.gather(*(one(p, r) for p, r in zip(self.plans, self.result.hosts)))
        self.result.finished_at = utcnow()
        return self.result

    # --- one host ---------------------------------------------------------------------------

    def _emit(
        self, st: _HostState, kind: EventKind, message: str = "", step: str | None = None
    ) -> None:
        self.listener(Event(st.result.name, kind, message, step, time.monotonic() - st.started))

    async def _host(
        self, plan: HostPlan, result: HostResult, handshakes: asyncio.Semaphore
    ) -> None:
        st = _HostState(plan, result, self.transport_factory(plan.host))
        try:
            if self._cancelled.is_set():  # cancelled while this host waited for a fork
                raise Cancelled("cancelled", host=st.result.name)
            self._emit(st, "connecting", f"{plan.host.address}:{plan.host.port}")
            async with handshakes:
                await self._unless_cancelled(st, st.transport.connect())
            self._emit(st, "connected")
            if self.options.gather_facts:
                st.run_dir = await self._facts(st)  # the facts call also makes the run dir
            else:
                st.run_dir = await self._resolve_run_dir(st)
            if self.options.preflight:
                await self._preflight(st)
            for rnd in range(1, self.rounds + 1):
                await self._round(st, rnd)
            result.status = "ok"
        except Cancelled as exc:
            result.status = "failed"
            result.error = _one_line(exc.args[0] if exc.args else str(exc))
            await self._kill_current(st)  # cancelled mid-command: the step may still run
        except ConnectError as exc:
            result.status = "unreachable"
            result.error = _one_line(exc.args[0] if exc.args else str(exc))
        except HostError as exc:
            result.status = "failed"
            result.error = _one_line(exc.args[0] if exc.args else str(exc))
        except asyncio.CancelledError:
            result.status = "failed"
            result.error = "cancelled"
            await asyncio.shield(self._kill_current(st))
            raise
        except Exception as exc:  # a bug or an unexpected library error: record, don't spread
            result.status = "failed"
            result.error = _one_line(f"{type(exc).__name__}: {exc}")
        finally:
            await _quietly(st.transport.close())
            self._emit(
                st,
                "done",
                result.status if not result.error else f"{result.status}: {result.error}",
            )

    def _requested_run_dir(self, st: _HostState) -> str:
        """The run's directory as the inventory puts it; a leading `~` is the host's $HOME."""
        base = str(st.plan.host.vars.get("repro_work_dir") or DEFAULT_WORK_BASE).rstrip("/")
        return f"{base}/{self.run_id}"

    async def _resolve_run_dir(self, st: _HostState) -> str:
        """Create the run's directory on the host and return it, absolute; one round trip.

        Only for runs without facts: `_facts` makes the directory in its own round trip.
        A leading `~` is the host's $HOME, expanded by the host's shell; the rest is quoted.
        """
        requested = self._requested_run_dir(st)
        if requested.startswith("~/"):
            target = f'"$HOME"{shlex.quote(requested[1:])}'
        else:
            target = shlex.quote(requested)
        cmd = f'd={target}; mkdir -p -- "$d" && test -w "$d" && printf "%s\\n" "$d"'
        res = await self._retrying(st, lambda: st.transport.run(cmd, timeout=30))
        why = _one_line(res.stderr)[-200:]
        return self._checked_run_dir(st, requested, res.stdout.strip(), res.exit_status == 0, why)

    def _checked_run_dir(
        self, st: _HostState, requested: str, run_dir: str, writable: bool, why: str
    ) -> str:
        """The host's answer for the run's directory, if it is usable and a plain absolute path."""
        if not writable:
            raise HostError(
                f"preflight-failed: work dir {requested} is not writable"
                + (f": {why}" if why else ""),
                host=st.result.name,
            )
        if not _SAFE_REMOTE_PATH.match(run_dir) or "/../" in run_dir + "/":
            shown = run_dir[:100] if run_dir else requested[:100]
            raise UntrustedOutput(
                f"work dir {shown!r} is not a plain absolute path", host=st.result.name
            )
        return run_dir

    def _work_dir(self, st: _HostState, rnd: int) -> str:
        return f"{st.run_dir}/work" if rnd == 1 else f"{st.run_dir}/work-r{rnd}"

    async def _facts(self, st: _HostState) -> str:
        """Gather the host's facts and make the run's directory: one round trip. Returns it."""
        from repro.facts import gather_facts

        requested = self._requested_run_dir(st)
        # the steps' and round 1's directories too: the launcher then has no mkdir to run
        facts = await self._retrying(
            st,
            lambda: gather_facts(st.transport, requested, create=True, subdirs=("steps", "work")),
        )
        st.result.facts.update(facts)
        self._emit(st, "facts", str(facts.get("describe", "")))
        return self._checked_run_dir(
            st,
            requested,
            str(facts.get("work_dir") or ""),
            facts.get("work_dir_writable") is True,
            str(facts.get("work_dir_error") or ""),
        )

    async def _preflight(self, st: _HostState) -> None:
        from repro.preflight import check

        self._emit(st, "preflight")
        problems = await self._retrying(
            st, lambda: check(st.transport, self.playbook.requires, st.result.facts, st.run_dir)
        )
        if problems:
            raise HostError("preflight-failed: " + "; ".join(problems), host=st.result.name)

    async def _round(self, st: _HostState, rnd: int) -> None:
        """One round on one host: launch its supervisor, follow it step by step, get hashes."""
        work = self._work_dir(st, rnd)
        steps_dir = f"{st.run_dir}/steps"
        plan = f"{rnd}-plan"
        if self.playbook.files:
            await self._upload(st, work, f"{steps_dir}/{plan}.lock")
        steps = st.plan.steps
        keys = [_key(rnd, s.index) for s in steps] + [f"{rnd}-hash"]
        scripts = [PRELUDE + s.command for s in steps] + [artifacts.hash_command(self.playbook)]
        sent: list[str] | None = scripts
        if not detach.scripts_fit(scripts):
            sent = None  # too long for the command line: uploaded first (not if launched)
            for key, script in zip(keys, scripts):
                await self._retrying(
                    st,
                    lambda: st.transport.put(
                        script.encode(),
                        f"{steps_dir}/{key}.sh",
                        make_parent=True,
                        unless_exists=f"{steps_dir}/{plan}.lock",
                    ),
                )
        if self._cancelled.is_set():
            raise Cancelled("cancelled", host=st.result.name)
        st.current = (steps_dir, keys[0], plan)
        reply = await self._retrying(
            st,
            lambda: detach.launch(
                st.transport, steps_dir, plan, work, keys, sent, wait=self._launch_wait(steps)
            ),
        )
        index, offset = 0, 0
        watch: _StepWatch | None = None
        hash_out = bytearray()
        hashing_said = False
        seen: dict[str, float] = {}  # when the controller first saw each key running
        try:
            while True:
                last: detach.Poll | None = None
                for p in reply.polls:
                    if p.key != keys[index]:
                        raise UntrustedOutput(
                            f"the host reported step {p.key[:20]!r} for {keys[index]}",
                            host=st.result.name,
                        )
                    last = p
                    st.current = (steps_dir, keys[index], plan)
                    hashing = index == len(steps)
                    if not hashing and watch is None and (p.started or p.data or p.done):
                        watch = self._open_step(st, rnd, steps[index])
                    elif hashing and not hashing_said:
                        hashing_said = True
                        self._emit(st, "hashing")
                    if p.data:
                        if hashing:
                            hash_out += p.data
                            if len(hash_out) > artifacts.MAX_OUTPUT:
                                raise UntrustedOutput(
                                    f"artifact list is larger than {artifacts.MAX_OUTPUT} bytes",
                                    host=st.result.name,
                                )
                        else:
                            assert watch is not None
                            watch.write(p.data)
                            self._emit(st, "step-output", p.chunk, step=watch.label)
                    offset = p.next_offset
                    if p.done:
                        if hashing:
                            hashes = await self._hashes(st, steps_dir, keys[index], p, hash_out)
                            self._round_done(st, rnd, hashes)
                            if rnd == 1:
                                await self._read_guix_describe(st, work)
                            st.current = None
                            return
                        assert watch is not None
                        self._step_done(st, watch, steps[index], p.exit_status)
                        watch = None
                        index, offset = index + 1, 0
                        continue
                    if p.started:
                        seen.setdefault(p.key, time.monotonic())
                    await self._not_done(
                        st, p, watch, steps[index] if not hashing else None, seen.get(p.key)
                    )
                    break
                if self._cancelled.is_set():
                    await self._kill_current(st)
                    raise Cancelled("cancelled", host=st.result.name)
                more = last is not None and last.key == keys[index] and offset < last.size
                reply = await self._retrying(
                    st,
                    lambda: detach.poll(
                        st.transport,
                        steps_dir,
                        plan,
                        keys,
                        index,
                        offset,
                        wait=0 if more else self.options.poll_wait,
                    ),
                )
        finally:
            if watch is not None:
                watch.close()

    def _launch_wait(self, steps: list[RenderedStep]) -> int:
        """How long (hundredths of a second) the launch may wait on the host for the round.

        Waiting there is free (the launcher sleeps in `wait`, no naps), and a round of quick
        steps on a busy host may take more than one poll's wait: LAUNCH_WAITS polls' worth,
        but never past the shortest step timeout, which only a reply lets the controller see.
        """
        shortest = min((s.timeout for s in steps), default=HASH_TIMEOUT)
        return max(1, min(self.options.poll_wait * LAUNCH_WAITS, int(shortest * 100)))

    def _open_step(self, st: _HostState, rnd: int, step: RenderedStep) -> _StepWatch:
        label = step.name if self.rounds == 1 else f"{step.name} (round {rnd})"
        local_log = self._local_log(st, rnd, step)
        sr = StepResult(
            index=step.index,
            name=label,
            started_at=utcnow(),
            log=str(local_log.relative_to(self.report_dir)),
        )
        st.result.steps.append(sr)
        self._emit(st, "step-start", label, step=label)
        local_log.parent.mkdir(parents=True, exist_ok=True)
        return _StepWatch(label, sr, open(local_log, "wb"))

    def _step_done(
        self, st: _HostState, watch: _StepWatch, step: RenderedStep, status: int | None
    ) -> None:
        watch.close()
        watch.result.exit_status = status
        watch.result.finished_at = utcnow()
        self._emit(st, "step-done", f"exit {status}", step=watch.label)
        if status != 0:
            last = watch.tail.last_line()
            raise StepFailed(
                f"step '{watch.label}' exited {status}" + (f": {last}" if last else ""),
                host=st.result.name,
                command=step.command,
                exit_status=status,
                tail=watch.tail.text(),
            )

    async def _not_done(
        self,
        st: _HostState,
        p: detach.Poll,
        watch: _StepWatch | None,
        step: RenderedStep | None,
        seen_since: float | None,
    ) -> None:
        """A step (None: the hashing) that is still running or stopped without a status.

        Its timeout counts on the host's clock (right across a --resume); the controller's own
        clock backs it up, with CLOCK_GRACE to spare, so a host whose clock is broken (or that
        lies about it) cannot keep a run from ever ending.
        """
        label = watch.label if watch else (step.name if step else "hashing")
        tail = watch.tail.text() if watch else ""
        if p.vanished and p.next_offset >= p.size:
            if watch:
                watch.result.finished_at = utcnow()
            if p.killed:
                raise Cancelled(f"step '{label}' was cancelled", host=st.result.name)
            raise StepFailed(
                f"step '{label}' stopped without an exit status (killed on the host?)",
                host=st.result.name,
                command=step.command if step else "",
                tail=tail,
            )
        limit = step.timeout if step else HASH_TIMEOUT
        mine = time.monotonic() - seen_since if seen_since is not None else None
        host_says = p.elapsed is not None and p.elapsed > limit
        overdue = host_says or (mine is not None and mine > limit + CLOCK_GRACE)
        if p.exit_status is None and overdue:
            await self._kill_current(st)
            if watch:
                watch.result.finished_at = utcnow()
            raise StepTimeout(
                f"step '{label}' timed out after {_duration(limit)}; its processes were killed",
                host=st.result.name,
                command=step.command if step else "",
                tail=tail,
            )

    async def _hashes(
        self, st: _HostState, steps_dir: str, key: str, p: detach.Poll, out: bytearray
    ) -> dict[str, Any]:
        """The artifact hashes from the hashing step's output (untrusted, strictly parsed)."""
        if p.exit_status != 0:
            err = f"{steps_dir}/{key}.err"
            res = await self._retrying(
                st, lambda: st.transport.run(f"head -c 2000 -- {shlex.quote(err)}", timeout=30)
            )
            raise HostError(
                f"hashing the artifacts failed (exit {p.exit_status}): {_one_line(res.stdout)[-200:]}",
                host=st.result.name,
                exit_status=p.exit_status,
            )
        text = bytes(out).decode("utf-8", errors="replace")
        return dict(artifacts.parse_hash_output(st.result.name, text))

    def _round_done(self, st: _HostState, rnd: int, hashes: dict[str, Any]) -> None:
        if rnd == 1:
            st.result.artifacts = hashes
        else:
            st.result.extra_rounds.append(hashes)

    async def _upload(self, st: _HostState, work: str, plan_lock: str) -> None:
        # On a resumed run the upload already happened; re-uploading under a running build
        # could change its inputs, so a file is written only if the round never started.
        for spec in self.playbook.files:
            data = spec.src.read_bytes()
            dest = f"{work}/{spec.dest}"
            await self._retrying(
                st,
                lambda: st.transport.put(
                    data, dest, mode=spec.mode, make_parent=True, unless_exists=plan_lock
                ),
            )

    def _local_log(self, st: _HostState, rnd: int, step: RenderedStep) -> Path:
        name = (
            f"{step.index:02d}-{step.name}.log"
            if rnd == 1
            else f"r{rnd}-{step.index:02d}-{step.name}.log"
        )
        return self.report_dir / "hosts" / st.result.name / name

    async def _read_guix_describe(self, st: _HostState, work: str) -> None:
        """Record the Guix channel commit the build really used (from its describe file)."""
        rel = self.playbook.guix_describe
        if not rel:
            return
        path = f"{work}/{rel}"
        res = await self._retrying(
            st, lambda: st.transport.run(f"head -c 65536 -- {shlex.quote(path)}", timeout=30)
        )
        commit = ""
        if res.exit_status == 0:
            commit = guix_commit_from_describe(res.stdout)
        st.result.facts["guix_channel_commit"] = commit
        if not commit:
            raise UntrustedOutput(
                f"{rel} does not name a 'guix' channel commit", host=st.result.name
            )

    async def _kill_current(self, st: _HostState) -> None:
        if not st.current:
            return
        steps_dir, key, plan = st.current
        try:
            # Bounded: TERM, 2 s grace, KILL. A host that is away is not waited for (Ctrl-C
            # must stay prompt); `repro cancel RUN_ID` can finish the job once it is back.
            await asyncio.wait_for(
                detach.kill(st.transport, steps_dir, key, grace=2, plan=plan), 5
            )
            st.current = None
        except Exception:
            pass

    async def _retrying(self, st: _HostState, op: Callable[[], Awaitable[T]]) -> T:
        """Run `op`; on a lost connection reconnect with backoff and run it again.

        Every `op` passed here is safe to repeat (starting a step is idempotent on the host).
        A host that stays away past `reconnect_timeout`, counted from when the connection was
        found lost (not from when `op` began: a long hash must not use up that time), raises
        ConnectError (-> unreachable) naming the last reason. A cancel interrupts at once.
        """
        away = _host_reconnect_timeout(st.plan.host, self.options.reconnect_timeout)
        deadline: float | None = None
        delay = 0.5
        while True:
            try:
                return await self._unless_cancelled(st, op())
            except HostKeyError:
                raise  # a changed key never heals by retrying, and must not be waited out
            except (ConnectError, TimeoutError, OSError) as exc:
                lost: BaseException = exc
            deadline = deadline or time.monotonic() + away
            while True:
                if time.monotonic() >= deadline:
                    raise _gone(st.result.name, lost)
                self._emit(st, "reconnecting", _one_line(str(lost) or type(lost).__name__))
                await _quietly(st.transport.close())
                pause = min(delay, max(0.0, deadline - time.monotonic()))
                await self._unless_cancelled(st, asyncio.sleep(pause))
                delay = min(delay * 2, 10.0)
                try:
                    await self._unless_cancelled(st, st.transport.connect())
                except HostKeyError:
                    raise
                except (ConnectError, TimeoutError, OSError) as exc:
                    lost = exc  # report why the host is still away, not "not connected"
                    continue
                self._emit(st, "connected", "reconnected")
                break

    async def _unless_cancelled(self, st: _HostState, aw: Awaitable[T]) -> T:
        """Await `aw`, but drop it and raise Cancelled as soon as the run is cancelled.

        A command hung on a silent link, or a reconnect backoff, must not make Ctrl-C wait
        for keepalives and the reconnect timeout (minutes).
        """
        work = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self._cancelled.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
                await asyncio.wait({work})  # let it drop its channel before going on
        if work.cancelled():
            raise Cancelled("cancelled", host=st.result.name)
        return work.result()


def _gone(host: str, lost: BaseException) -> ConnectError:
    if isinstance(lost, ConnectError):
        return lost
    reason = _one_line(str(lost)) or type(lost).__name__
    return ConnectError(f"lost the connection: {reason}", host=host)


def guix_commit_from_describe(text: str) -> str:
    """The `guix` channel's commit from `guix describe --format=json`, or "" (validated hex)."""
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    if not isinstance(data, list):
        return ""
    for chan in data:
        if isinstance(chan, dict) and chan.get("name") == "guix":
            commit = chan.get("commit")
            if isinstance(commit, str) and _COMMIT_RE.match(commit):
                return commit
    return ""


def _host_reconnect_timeout(host: Host, default: float) -> float:
    """`repro_reconnect_timeout` (seconds) from the inventory, else the run's setting."""
    value = host.vars.get("repro_reconnect_timeout")
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _key(rnd: int, index: int) -> str:
    return f"{rnd}-{index:02d}"


class _StepWatch:
    """A step being followed: its result, its local log file and the tail for messages."""

    def __init__(self, label: str, result: StepResult, fh: Any) -> None:
        self.label = label
        self.result = result
        self.fh = fh
        self.tail = _Tail()
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.fh.flush()
        self.tail.add(self._decode.decode(data))

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()


class _Tail:
    """The last lines of a step's output, for error messages (bounded memory)."""

    def __init__(self, keep: int = 64 * 1024) -> None:
        self.buf = ""
        self.keep = keep

    def add(self, chunk: str) -> None:
        self.buf = (self.buf + chunk)[-self.keep :]

    def text(self) -> str:
        return "\n".join(self.buf.splitlines()[-TAIL_LINES:])

    def last_line(self) -> str:
        lines = [ln for ln in self.buf.splitlines() if ln.strip()]
        return _one_line(lines[-1])[:200] if lines else ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except Exception:
        pass
