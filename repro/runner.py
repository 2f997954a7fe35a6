"""The per-host state machine: connect, facts, preflight, upload, steps (detached), hash, close.

All hosts run at once, bounded by `forks` and, separately, by how many SSH handshakes may be in
flight. One host's failure is recorded in its HostResult and never stops the others. The runner
never prints: it emits `repro.events.Event`s and returns a `RunResult`.
"""

from __future__ import annotations

import asyncio
import codecs
import shlex
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from repro import artifacts, detach, guix, variations
from repro import secrets as repro_secrets
from repro.secrets import Masker
from repro.errors import (
    Cancelled,
    ConnectError,
    CredentialsError,
    HostError,
    HostKeyError,
    NameNotFound,
    StepFailed,
    StepTimeout,
    UntrustedOutput,
)
from repro.hostenv import PRELUDE
from repro.events import Event, EventKind, Listener, ignore
from repro.follow import Ended, Output, RoundFollower, Seen, Turn, Waiting
from repro.inventory import Host
from repro.playbook import Playbook, RenderedStep
from repro.results import HostResult, RunResult, StepResult
from repro.store import (
    FIRST_SUBDIRS,
    RemoteRun,
    RunDir,
    plain_remote_path,
    requested_run_dir,
    shell_path,
)
from repro.transport.base import Held, Transport

T = TypeVar("T")
X = TypeVar("X")
#: SSH handshakes in flight at once, by default (`--handshakes`)
HANDSHAKES = 32

#: how much of a step's log is kept in an error message and a report
TAIL_LINES = 20
#: how long hashing the artifacts may take on a host
HASH_TIMEOUT = 3600.0
#: the launch of a round waits on the host this many polls' worth for it to end
LAUNCH_WAITS = 3
#: seconds past a step's timeout, on the controller's clock, after which it is killed whatever
#: the host's clock says
CLOCK_GRACE = 300.0
#: how long a kill on a cancel (Ctrl-C) may take before the controller goes on without it
KILL_WAIT = 5.0
#: the same for a step past its timeout: its processes must not outlive it on a loaded host
TIMEOUT_KILL_WAIT = 60.0


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FanOut:
    """Every host at once, bounded by `forks` (hosts worked on) and, separately, by how many
    SSH handshakes may be in flight: key exchange is CPU on both ends. Runs and host
    operations (facts, check, cancel) share it."""

    def __init__(self, n: int, *, forks: int | None = None, handshakes: int = HANDSHAKES) -> None:
        self.forks = asyncio.Semaphore(forks or max(1, n))
        self.handshakes = asyncio.Semaphore(max(1, handshakes))

    async def each(self, items: list[X], work: Callable[[X], Awaitable[T]]) -> list[T]:
        """`work` on every item at once (at most `forks` at a time); results in item order."""

        async def one(item: X) -> T:
            async with self.forks:
                return await work(item)

        return list(await asyncio.gather(*(one(i) for i in items)))

    async def connect(self, transport: Transport) -> None:
        async with self.handshakes:
            await transport.connect()


def host_time(elapsed: float | None) -> str:
    """When something happened `elapsed` seconds ago by the host's clock (seconds since its
    boot, as a reply reports it), on the controller's clock: the offset between the two is
    measured by each reply. None (the host did not say): now."""
    if elapsed is None:
        return utcnow()
    when = datetime.fromtimestamp(time.time() - max(0.0, elapsed), timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class HostPlan:
    """What one host will do: its record and its rendered steps (same for every round)."""

    host: Host
    steps: list[RenderedStep]
    #: secret name -> value, sent to the host in a 0600 file (value "" after a --resume:
    #: the host has it already); never in a step's script, a command line or a report
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"HostPlan({self.host.name!r}, {len(self.steps)} steps)"


@dataclass
class RunOptions:
    forks: int | None = None  # hosts worked on at once; None = all
    handshakes: int = HANDSHAKES  # SSH handshakes in flight at once
    rounds: int | None = None  # overrides the playbook's rounds
    reconnect_timeout: float = 300.0  # how long a host may stay away before it is unreachable
    #: a --resume: a host may have a build going on from before, so even one whose name does
    #: not resolve yet is waited for (reconnect_timeout), never given up on at once
    resumed: bool = False
    poll_wait: int = detach.POLL_WAIT  # hundredths of a second a poll may wait on the host
    host_wait: int = detach.HOST_WAIT  # seconds a wait on a running step may last
    # how soon (seconds) a growing log ends a wait on a host: 1 when output is shown as it
    # comes, a CI heartbeat's period for its log size, 0 when nobody looks (only a step's end)
    live_gap: int = 0
    # the link settings of the command line (repro_keepalive_interval, repro_keepalive_count_max,
    # repro_connect_timeout): for every host whose inventory does not set them
    link: dict[str, float] = field(default_factory=dict)
    gather_facts: bool = True
    preflight: bool = True
    # keep an ok host's connection open past its end (Runner.held), for what the run's ending
    # does on the hosts (retention): no second handshake per host
    hold: bool = False
    #: bytes of a step's log kept on the controller (head and tail); the host keeps it all
    log_cap: int = 16 * 1024 * 1024
    # --vary: host -> the axis values of each round (repro.variations), applied before each step
    variations: dict[str, list[dict[str, str]]] = field(default_factory=dict)


@dataclass
class _HostState:
    plan: HostPlan
    result: HostResult
    transport: Transport
    started: float = field(default_factory=time.monotonic)
    remote: RemoteRun = RemoteRun("")  # the run's directory on the host, once resolved
    follower: RoundFollower | None = None  # the round followed now: its step is what a kill stops
    secrets_sent: bool = False
    #: the run's masker plus this host's secret values read back from it (after --resume)
    masker: Masker | None = None
    #: the last round's last reply, held open on the host for the run's verdict (RunOptions.hold)
    final: Held | None = None
    #: connected at least once in this run: from then on a name that does not resolve is a
    #: resolver's passing trouble to wait out, not a typo in the inventory
    reached: bool = False


class Runner:
    """Runs one playbook on many hosts. Construct, then `await run()`; `cancel()` from outside."""

    def __init__(
        self,
        playbook: Playbook,
        plans: list[HostPlan],
        *,
        run_id: str,
        report_dir: Path | RunDir,
        transport_factory: Callable[[Host], Transport],
        listener: Listener = ignore,
        options: RunOptions | None = None,
        variables: dict[str, Any] | None = None,
        commit: str | None = None,
        masker: Masker | None = None,
    ) -> None:
        self.playbook = playbook
        self.plans = plans
        self.run_id = run_id
        self.store = report_dir if isinstance(report_dir, RunDir) else RunDir(report_dir)
        self.transport_factory = transport_factory
        self.listener = listener
        self.options = options or RunOptions()
        self.variables = dict(variables or {})
        self.commit = commit
        self.masker = masker or Masker()
        self._cancelled = asyncio.Event()
        self.held: dict[str, Transport] = {}  # host name -> its open connection (options.hold)
        # host name -> its last reply, waiting on the host for the verdict on its run dir
        self.finals: dict[str, Held] = {}
        self._keep_builds = False
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

    def cancel(self, *, kill: bool = True) -> None:
        """Stop every host: running steps' process groups are killed on the hosts, unless
        `kill` is False (the controller goes away; the builds go on for --resume)."""
        if not self._cancelled.is_set():
            self._keep_builds = not kill
        self._cancelled.set()

    async def run(self) -> RunResult:
        fan = FanOut(len(self.plans), forks=self.options.forks, handshakes=self.options.handshakes)

        async def one(pair: tuple[HostPlan, HostResult]) -> None:
            await self._host(pair[0], pair[1], fan.handshakes)

        await fan.each(list(zip(self.plans, self.result.hosts)), one)
        self.result.finished_at = utcnow()
        return self.result

    # --- one host ---------------------------------------------------------------------------

    def _emit(
        self, st: _HostState, kind: EventKind, message: str = "", step: str | None = None
    ) -> None:
        message = (st.masker or self.masker).text(message)
        self.listener(Event(st.result.name, kind, message, step, time.monotonic() - st.started))

    async def _host(
        self, plan: HostPlan, result: HostResult, handshakes: asyncio.Semaphore
    ) -> None:
        host = plan.host
        if self.options.link:
            host = replace(host, vars={**self.options.link, **host.vars})
        st = _HostState(plan, result, self.transport_factory(host), reached=self.options.resumed)
        try:
            if self._cancelled.is_set():  # cancelled while this host waited for a fork
                raise Cancelled("cancelled", host=st.result.name)
            self._emit(st, "connecting", f"{plan.host.address}:{plan.host.port}")
            async with handshakes:
                # a host away at the start gets the same reconnect window as one lost later
                await self._retrying(st, st.transport.connect)
            st.reached = True
            self._emit(st, "connected")
            if self.options.gather_facts:
                st.remote = RemoteRun(await self._facts(st))  # facts also make the run dir
            else:
                st.remote = RemoteRun(await self._resolve_run_dir(st))
            result.run_dir = st.remote.root
            if self.options.preflight:
                await self._preflight(st)
            for rnd in range(1, self.rounds + 1):
                await self._round(st, rnd)
            result.status = "ok"
        except Cancelled as exc:
            result.status = "failed"
            result.error = _one_line(exc.args[0] if exc.args else str(exc))
            if self._keep_builds and st.follower:
                result.error = "the controller stopped following; the build goes on (--resume)"
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
            # The secrets file goes first, while the connection is certainly open; then the
            # connection is either held for the run's ending (retention) or closed.
            await self._forget_secrets(st)
            if self.options.hold and result.status == "ok" and st.transport.connected:
                self.held[result.name] = st.transport
                if st.final is not None:
                    self.finals[result.name] = st.final
            else:
                if st.final is not None:
                    await _quietly(st.final.drop())  # the host keeps the run dir
                await _quietly(st.transport.close())
            masker = st.masker or self.masker
            result.error = masker.text(result.error) if result.error else result.error
            self._emit(
                st,
                "done",
                result.status if not result.error else f"{result.status}: {result.error}",
            )

    async def _resolve_run_dir(self, st: _HostState) -> str:
        """Create the run's directory on the host and return it, absolute; one round trip.

        Only for runs without facts: `_facts` makes the directory in its own round trip.
        A leading `~` is the host's $HOME, expanded by the host's shell; the rest is quoted.
        """
        requested = requested_run_dir(st.plan.host, self.run_id)
        # umask: what repro makes is the build user's alone (see docs/security.md)
        cmd = (
            f"umask 077; d={shell_path(requested)}; "
            'mkdir -p -- "$d" && test -w "$d" && printf "%s\\n" "$d"'
        )
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
        if not plain_remote_path(run_dir):
            shown = run_dir[:100] if run_dir else requested[:100]
            raise UntrustedOutput(
                f"work dir {shown!r} is not a plain absolute path", host=st.result.name
            )
        return run_dir

    async def _facts(self, st: _HostState) -> str:
        """Gather the host's facts and make the run's directory: one round trip. Returns it."""
        from repro.facts import gather_facts

        requested = requested_run_dir(st.plan.host, self.run_id)
        # the steps' and round 1's directories too: the launcher then has no mkdir to run
        facts = await self._retrying(
            st,
            lambda: gather_facts(st.transport, requested, create=True, subdirs=FIRST_SUBDIRS),
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
            st, lambda: check(st.transport, self.playbook.requires, st.result.facts, st.remote.root)
        )
        if problems:
            raise HostError("preflight-failed: " + "; ".join(problems), host=st.result.name)

    async def _round(self, st: _HostState, rnd: int) -> None:
        """One round on one host: launch its supervisor, follow it step by step, get hashes."""
        remote = st.remote
        if self.playbook.files:
            await self._upload(st, remote.work(rnd), remote.plan_lock(rnd))
        if not st.secrets_sent:
            await self._send_secrets(st, remote.steps)
        steps = st.plan.steps
        keys = [remote.key(rnd, s.index) for s in steps] + [remote.hash_key(rnd)]
        varied = self.options.variations.get(st.result.name, [])
        vary = variations.prelude(varied[rnd - 1]) if len(varied) >= rnd else ""
        scripts = [PRELUDE + vary + s.command for s in steps]
        scripts.append(artifacts.hash_command(self.playbook))
        sent: list[str] | None = scripts
        if not detach.scripts_fit(scripts):
            sent = None  # too long for the command line: uploaded first (not if launched)
            for key, script in zip(keys, scripts):
                await self._retrying(
                    st,
                    lambda: st.transport.put(
                        script.encode(),
                        remote.script(key),
                        make_parent=True,
                        unless_exists=remote.plan_lock(rnd),
                    ),
                )
        if self._cancelled.is_set():
            raise Cancelled("cancelled", host=st.result.name)
        follower = RoundFollower(
            st.transport,
            remote,
            rnd,
            keys,
            sent,
            poll_wait=self.options.poll_wait,
            launch_wait=self._launch_wait(steps),
            via=lambda op: self._retrying(st, op),
            host_wait=max(1, _host_int(st.plan.host, "repro_host_wait", self.options.host_wait)),
            live_gap=self.options.live_gap,
            limits=[s.timeout for s in steps] + [HASH_TIMEOUT],
            hold=self.options.hold and rnd == self.rounds,
        )
        st.follower = follower
        watch: _StepWatch | None = None
        seen: dict[int, float] = {}  # when the controller first saw each step running
        ended: StepResult | None = None  # the step that ended last, until the next one starts
        try:
            async for ev in follower:
                poll = ev.poll if isinstance(ev, (Ended, Waiting)) else None
                elapsed = ev.elapsed if isinstance(ev, Seen) else poll.elapsed if poll else None
                if ended is not None and elapsed is not None and (poll is None or poll.started):
                    # the step before ended when this one started (the supervisor goes
                    # straight on), by the host's clock: not when a controller noticed
                    ended.finished_at = min(ended.finished_at or "~", host_time(elapsed))
                    ended = None
                if isinstance(ev, Output):
                    assert watch is not None
                    shown = watch.write(ev.data)
                    self._emit(st, "step-output", shown, watch.label)
                elif isinstance(ev, Waiting):
                    if ev.poll.started:
                        seen.setdefault(ev.index, time.monotonic())
                    step = steps[ev.index] if ev.index < len(steps) else None
                    await self._not_done(st, ev.poll, watch, step, seen.get(ev.index))
                elif isinstance(ev, Turn):
                    if self._cancelled.is_set():
                        await self._kill_current(st)
                        raise Cancelled("cancelled", host=st.result.name)
                elif isinstance(ev, Seen):
                    if ev.index < len(steps):
                        watch = self._open_step(st, rnd, steps[ev.index], ev.elapsed)
                    else:
                        self._emit(st, "hashing")
                elif isinstance(ev, Ended) and ev.index < len(steps):
                    assert watch is not None
                    ended = watch.result
                    self._step_done(st, watch, steps[ev.index], ev.poll)
                    watch = None
                elif isinstance(ev, Ended):
                    st.final, follower.held = follower.held, None
                    hashes = await self._hashes(st, follower.key, ev.poll, ev.output)
                    self._round_done(st, rnd, hashes)
                    if rnd == 1:
                        await self._read_guix_describe(st, remote.work(rnd))
                    st.follower = None
        finally:
            if watch is not None:
                watch.close()
            if follower.held is not None:  # the round did not end as the held reply said
                await _quietly(follower.held.drop())

    def _launch_wait(self, steps: list[RenderedStep]) -> int:
        """How long (hundredths of a second) the launch may wait on the host for the round.

        Waiting there is free (the launcher sleeps in `wait`, no naps), and a round of quick
        steps on a busy host may take more than one poll's wait: LAUNCH_WAITS polls' worth,
        but never past the shortest step timeout, which only a reply lets the controller see.
        """
        shortest = min((s.timeout for s in steps), default=HASH_TIMEOUT)
        return max(1, min(self.options.poll_wait * LAUNCH_WAITS, int(shortest * 100)))

    def _open_step(
        self, st: _HostState, rnd: int, step: RenderedStep, elapsed: float | None = None
    ) -> _StepWatch:
        label = step.name if self.rounds == 1 else f"{step.name} (round {rnd})"
        local_log = self.store.step_log(st.result.name, rnd, step.index, step.name)
        sr = StepResult(
            index=step.index,
            name=label,
            started_at=host_time(elapsed),
            log=self.store.relative(local_log),
        )
        st.result.steps.append(sr)
        self._emit(st, "step-start", label, step=label)
        local_log.parent.mkdir(parents=True, exist_ok=True)
        host_log = st.remote.log(st.remote.key(rnd, step.index))
        fh = open(local_log, "wb")
        masker = st.masker or self.masker
        return _StepWatch(label, sr, fh, masker, self.options.log_cap, host_log)

    def _step_done(
        self, st: _HostState, watch: _StepWatch, step: RenderedStep, p: detach.Poll
    ) -> None:
        status = p.exit_status
        watch.close()
        watch.result.exit_status = status
        watch.result.finished_at = utcnow()
        self._emit(st, "step-done", f"exit {status}", step=watch.label)
        if status != 0:
            last = watch.tail.last_line()
            if p.no_space:  # its own complaint may not have fit in its log
                last = f"no space left on device in {st.remote.root} (the host's disk is full)"
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
            # no one waits for a prompt answer here: a loaded host gets time to kill
            await self._kill_current(st, within=TIMEOUT_KILL_WAIT)
            if watch:
                watch.result.finished_at = utcnow()
            raise StepTimeout(
                f"step '{label}' timed out after {_duration(limit)}; its processes were killed",
                host=st.result.name,
                command=step.command if step else "",
                tail=tail,
            )

    async def _hashes(
        self, st: _HostState, key: str, p: detach.Poll, out: bytes
    ) -> dict[str, Any]:
        """The artifact hashes from the hashing step's output (untrusted, strictly parsed)."""
        if p.exit_status != 0:
            err = st.remote.err(key)
            res = await self._retrying(
                st, lambda: st.transport.run(f"head -c 2000 -- {shlex.quote(err)}", timeout=30)
            )
            why = _one_line(res.stdout)[-200:]
            if p.no_space:
                why = f"no space left on device in {st.remote.root} (the host's disk is full)"
            raise HostError(
                f"hashing the artifacts failed (exit {p.exit_status}): {why}",
                host=st.result.name,
                exit_status=p.exit_status,
            )
        text = out.decode("utf-8", errors="replace")
        return dict(artifacts.parse_hash_output(st.result.name, text))

    def _round_done(self, st: _HostState, rnd: int, hashes: dict[str, Any]) -> None:
        if rnd == 1:
            st.result.artifacts = hashes
        else:
            st.result.extra_rounds.append(hashes)

    async def _send_secrets(self, st: _HostState, steps_dir: str) -> None:
        """The host's secret values, in a 0600 file its steps read (never on a command line:
        the bytes go on stdin). After a --resume the values are not known (run.json keeps only
        the names) and the host has them already, unless given again with --secret."""
        values = {k: v for k, v in st.plan.secrets.items() if v}
        dest = f"{steps_dir}/{repro_secrets.FILE_NAME}"
        if values:
            data = repro_secrets.file_text(values)
            await self._retrying(
                st, lambda: st.transport.put(data, dest, mode=0o600, make_parent=True)
            )
        if len(values) < len(st.plan.secrets):
            # Resumed: the logs echo values this controller was not given; what the host
            # holds is what must be masked in them (read for masking only, never used).
            cmd = f"cat -- {shlex.quote(dest)} 2>/dev/null || :"
            res = await self._retrying(st, lambda: st.transport.run(cmd, timeout=30))
            held = repro_secrets.parse_file(res.stdout, st.plan.secrets)
            st.masker = Masker([*self.masker.values, *held.values(), *values.values()])
        st.secrets_sent = True

    async def _forget_secrets(self, st: _HostState) -> None:
        """Remove the secrets file once the host is done (not when the builds go on without
        us: they still read it). Best effort, bounded: `repro cancel` removes it too."""
        if not st.secrets_sent or not st.plan.secrets or self._keep_builds:
            return
        path = shlex.quote(f"{st.remote.steps}/{repro_secrets.FILE_NAME}")
        await _quietly(asyncio.wait_for(st.transport.run(f"rm -f -- {path}", timeout=10), 15))

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

    async def _read_guix_describe(self, st: _HostState, work: str) -> None:
        """Record the Guix channel commit the build really used (from its describe file)."""
        rel = self.playbook.guix_describe
        if not rel:
            return
        cmd = guix.read_describe_command(f"{work}/{rel}")
        res = await self._retrying(st, lambda: st.transport.run(cmd, timeout=30))
        commit = guix.commit_from_describe(res.stdout) if res.exit_status == 0 else ""
        st.result.facts[guix.CHANNEL_FACT] = commit
        if not commit:
            raise UntrustedOutput(
                f"{rel} does not name a 'guix' channel commit", host=st.result.name
            )

    async def _kill_current(self, st: _HostState, within: float = KILL_WAIT) -> None:
        follower = st.follower
        if follower is None or self._keep_builds:
            return
        try:
            # Bounded: TERM, 2 s grace, KILL. A host that is away is not waited for (Ctrl-C
            # must stay prompt); `repro cancel RUN_ID` can finish the job once it is back.
            await asyncio.wait_for(
                detach.kill(
                    st.transport, follower.remote.steps, follower.key, grace=2, plan=follower.plan
                ),
                within,
            )
            st.follower = None
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
            except (HostKeyError, CredentialsError):
                raise  # a changed key never heals by retrying, and must not be waited out
            except (ConnectError, TimeoutError, OSError) as exc:
                _unless_never_there(st, exc)
                lost: BaseException = exc
            deadline = deadline or time.monotonic() + away
            while True:
                if time.monotonic() >= deadline:
                    raise _gone(st.result.name, lost)
                # a HostError's str() starts with the host's name, which the event carries
                said = lost.args[0] if isinstance(lost, HostError) and lost.args else str(lost)
                why = _one_line(str(said)) or type(lost).__name__
                # how long it goes on: a host away from the start waits out the whole window
                left = deadline - time.monotonic()
                self._emit(st, "reconnecting",
                           f"{why}; unreachable in {left:.0f} s if it stays away "
                           "(--reconnect-timeout)")  # fmt: skip
                await _quietly(st.transport.close())
                pause = min(delay, max(0.0, deadline - time.monotonic()))
                await self._unless_cancelled(st, asyncio.sleep(pause))
                delay = min(delay * 2, 10.0)
                try:
                    await self._unless_cancelled(st, st.transport.connect())
                except (HostKeyError, CredentialsError):
                    raise
                except (ConnectError, TimeoutError, OSError) as exc:
                    _unless_never_there(st, exc)
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


def _unless_never_there(st: _HostState, exc: BaseException) -> None:
    """Raise `exc` at once if it says the host's name does not exist and the host was never
    reached in this run (a typo, or a host gone from DNS, as ssh and Ansible say at once);
    once reached, the reconnect window applies to it as to any other loss."""
    if isinstance(exc, NameNotFound) and not st.reached:
        raise exc


def _gone(host: str, lost: BaseException) -> ConnectError:
    if isinstance(lost, ConnectError):
        return lost
    reason = _one_line(str(lost)) or type(lost).__name__
    return ConnectError(f"lost the connection: {reason}", host=host)


def _host_reconnect_timeout(host: Host, default: float) -> float:
    """`repro_reconnect_timeout` (seconds) from the inventory, else the run's setting."""
    value = host.vars.get("repro_reconnect_timeout")
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _host_int(host: Host, var: str, default: int) -> int:
    """A whole number of seconds from the inventory's `var`, else the run's setting."""
    value = host.vars.get(var)
    try:
        return int(float(value)) if value is not None else default
    except (TypeError, ValueError):
        return default


class _StepWatch:
    """A step being followed: its result, its local log file and the tail for messages.

    Secret values are masked before anything is kept. The local log is capped at `cap`
    bytes: the first half as it comes, then only the last half, written after a line that
    marks the cut when the step ends (the host keeps the whole log at `host_log`).
    """

    def __init__(
        self,
        label: str,
        result: StepResult,
        fh: Any,
        masker: Masker | None = None,
        cap: int = 16 * 1024 * 1024,
        host_log: str = "",
    ) -> None:
        self.label = label
        self.result = result
        self.fh = fh
        self.tail = _Tail()
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._mask = (masker or Masker()).stream()
        self._head = max(0, cap // 2)
        self._keep = max(0, cap - self._head)
        self._written = 0
        self._end = bytearray()  # the last `_keep` bytes once the head is full
        self._cut = 0
        self._host_log = host_log

    def write(self, data: bytes) -> str:
        """Keep `data` (masked); returns the masked text, for whoever streams the output."""
        data = self._mask.feed(data)
        self._keep_bytes(data)
        text = self._decode.decode(data)
        self.tail.add(text)
        return text

    def _keep_bytes(self, data: bytes) -> None:
        room = self._head - self._written
        if room > 0:
            self.fh.write(data[:room])
            self.fh.flush()
            self._written += min(room, len(data))
            data = data[room:]
        if data:
            self._end += data
            if len(self._end) > self._keep:
                drop = len(self._end) - self._keep
                self._cut += drop
                del self._end[:drop]

    def close(self) -> None:
        if self.fh.closed:
            return
        rest = self._mask.end()
        if rest:
            self._keep_bytes(rest)
            self.tail.add(self._decode.decode(rest))
        if self._cut:
            where = f" in {self._host_log}" if self._host_log else ""
            self.fh.write(
                f"\n[repro: {self._cut} bytes cut here; the whole log is on the host{where}]\n"
                .encode()
            )
        self.fh.write(bytes(self._end))
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


async def close_held(runner: Runner) -> None:
    """Close the connections a run kept open (RunOptions.hold) that nobody took."""
    held, runner.held = runner.held, {}
    finals, runner.finals = runner.finals, {}
    await asyncio.gather(*(_quietly(f.drop()) for f in finals.values()))  # they keep their dirs
    await asyncio.gather(*(_quietly(t.close()) for t in held.values()))


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except Exception:
        pass
