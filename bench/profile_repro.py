"""Where `repro run` spends its time on N lab hosts: round trips by kind, their latency, host-side
processes, and (with --cprofile) the controller's CPU by function. Companion to bench/fanout.py.

Run as root: `python3 bench/profile_repro.py --hosts 100 [--transport fabric] [--cprofile OUT]`.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from fanout import check_repro, machine_counters

from repro.events import Event
from repro.inventory import Host
from repro.netlab import NetnsLab, cleanup_stale
from repro.runner import RunOptions
from repro.session import execute, prepare
from repro.transport import make_transport
from repro.transport.base import Completed, Held, Transport

LAB_PREFIX = "rbprof"
T = TypeVar("T")


@dataclass
class Call:
    """One round trip (a `Transport.run`, or the connect): its kind, sent and answered when."""

    host: str
    kind: str
    start: float
    end: float
    processes: int = 0  # started on the machine meanwhile: only attributable with one host

    def __repr__(self) -> str:
        return f"Call({self.host!r}, {self.kind}, {self.end - self.start:.3f}s)"


@dataclass
class Recorder:
    """Every round trip and connect of one run, by host."""

    t0: float = field(default_factory=time.monotonic)
    calls: list[Call] = field(default_factory=list)
    done_at: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Recorder({len(self.calls)} calls)"

    def listener(self, event: Event) -> None:
        if event.kind == "done":
            self.done_at[event.host] = time.monotonic()


#: how a round trip is named, by what its command line contains (first match wins); the
#: runner moves fast, so anything unknown is shown by its first words instead
KINDS: tuple[tuple[str, str], ...] = (
    ("setsid", "launch the round (detach.launch)"),
    ("repro-poll", "poll the round (detach.poll)"),
    ("sh -s", "facts (+ preflight)"),
    ("mkdir -p", "work dir"),
    ('"$HOME"', "home dir"),
    ("head -c 2000", "hashing error (.err)"),
    ("cat > ", "upload (put)"),
    ("head -c 65536", "guix describe"),
    ("command -v", "preflight"),
)


@functools.cache  # once: kind_of runs in the profiled process, for every round trip
def _program_markers() -> tuple[tuple[str, str], ...]:
    """Each host-side program (repro/hostside) by a line of the last file that is its alone:
    the programs share lib.sh, rundir.sh, reply.sh..., which tell them apart."""
    from collections import Counter

    from repro import hostside

    used = Counter(f for files in hostside.PROGRAMS.values() for f in files)
    out = []
    for name, files in hostside.PROGRAMS.items():
        own = next(f for f in reversed(files) if used[f] == 1)
        lines = hostside.strip_comments(hostside.source(own)).split("\n")
        line = next(ln for ln in lines if len(ln.strip()) > 12 and "'" not in ln)
        out.append((line, f"{name} ({own})"))
    return tuple(out)


def kind_of(command: str) -> str:
    for needle, kind in _program_markers() + KINDS:
        if needle in command:
            return kind
    return "other: " + " ".join(command.split()[:3])[:40]


class CountingTransport(Transport):
    """Wraps the real transport; records each connect and run with its caller and latency."""

    def __init__(self, inner: Transport, rec: Recorder) -> None:
        super().__init__(inner.host)
        self.inner = inner
        self.rec = rec
        self.name = inner.name

    def __repr__(self) -> str:
        return f"CountingTransport({self.inner!r})"

    @property
    def connected(self) -> bool:
        return self.inner.connected

    async def connect(self) -> None:
        if self.inner.connected:  # a no-op: not a handshake
            return
        start = time.monotonic()
        await self.inner.connect()
        self.rec.calls.append(Call(self.host.name, "connect (handshake)", start, time.monotonic()))

    async def run(self, command: str, *, timeout: float | None = None,
                  stdin: bytes | None = None) -> Completed:
        return await self._recorded(command, self.inner.run(command, timeout=timeout,
                                                             stdin=stdin))

    async def run_held(self, command: str, *,
                       timeout: float | None = None) -> tuple[Completed, Held | None]:
        # the inner transport's own: the base's default would run the held reply to its end
        return await self._recorded(command, self.inner.run_held(command, timeout=timeout))

    async def _recorded(self, command: str, call: Awaitable[T]) -> T:
        """`call` (the inner transport running `command`), recorded with its latency."""
        kind = kind_of(command)
        forks0 = machine_counters()[1]
        start = time.monotonic()
        try:
            return await call
        finally:
            end = time.monotonic()
            forks = machine_counters()[1] - forks0
            self.rec.calls.append(Call(self.host.name, kind, start, end, forks))

    async def close(self) -> None:
        start = time.monotonic()
        await self.inner.close()
        self.rec.calls.append(Call(self.host.name, "close", start, time.monotonic()))


def report(rec: Recorder, n: int, wall: float, cpu: float, forks: int) -> str:
    by_kind: dict[str, list[Call]] = defaultdict(list)
    for call in rec.calls:
        by_kind[call.kind].append(call)
    per_host_rt = [sum(1 for c in rec.calls if c.host == h and c.kind != "close")
                   for h in {c.host for c in rec.calls}]
    lines = [
        (f"wall {wall:.2f} s, controller CPU {cpu:.2f} s, {forks / n:.0f} processes started "
        f"per host (machine-wide), round trips per host: median "
        f"{statistics.median(per_host_rt):.0f} (handshake counted once)"),
        "",
        ("| round trip | per host | median s | p90 s | sum per host s (median) "
        "| processes per call (1 host only) |"),
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = sorted(by_kind, key=lambda k: min(c.start for c in by_kind[k]))
    for kind in order:
        calls = by_kind[kind]
        lat = sorted(c.end - c.start for c in calls)
        sums: dict[str, float] = defaultdict(float)
        for c in calls:
            sums[c.host] += c.end - c.start
        lines.append(
            f"| {kind} | {len(calls) / n:.1f} | {statistics.median(lat):.3f} "
            f"| {lat[int(0.9 * (len(lat) - 1))]:.3f} | {statistics.median(sums.values()):.2f} "
            f"| {statistics.median(c.processes for c in calls) if n == 1 else '–'} |"
        )
    connected = sorted(c.end - rec.t0 for c in by_kind.get("connect (handshake)", []))
    if connected:
        lines += ["", (f"hosts connected: first {connected[0]:.2f} s, median "
                       f"{statistics.median(connected):.2f} s, last {connected[-1]:.2f} s "
                       "after the run started")]
    done = sorted(t - rec.t0 for t in rec.done_at.values())
    if done:
        lines += [(f"hosts done: first {done[0]:.2f} s, median {statistics.median(done):.2f} s,"
                      f" last {done[-1]:.2f} s after the run started")]
    return "\n".join(lines)


def profile_text(prof: cProfile.Profile, limit: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(
        r"(asyncssh/connection.py.*(connect|_connect|create_session|create_process|"
        r"open_session)|asyncssh/kex|asyncssh/public_key.py.*sign|runner.py|facts.py)"
    )
    return out.getvalue()


def run_once(lab: NetnsLab, out_dir: Path, transport: str, prof: cProfile.Profile | None,
             handshakes: int | None = None) -> tuple[Recorder, float, float, int, list[str]]:
    rec = Recorder()
    options = RunOptions()
    if handshakes:
        options.handshakes = handshakes
    prep = prepare(inventory=lab.inventory_path, playbook=BENCH / "four-steps.yaml",
                   extra_vars={}, out_dir=out_dir / "reports", transport=transport,
                   options=options)

    def factory(host: Host) -> Transport:
        return CountingTransport(make_transport(host), rec)

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    _, forks0 = machine_counters()
    rec.t0 = time.monotonic()
    if prof is not None:
        prof.enable()
    try:
        execute(prep, listener=rec.listener, transport_factory=factory)
    finally:
        if prof is not None:
            prof.disable()
    wall = time.monotonic() - rec.t0
    _, forks1 = machine_counters()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    problems = check_repro_dir(lab, out_dir)
    return rec, wall, cpu, forks1 - forks0, problems


def check_repro_dir(lab: NetnsLab, out_dir: Path) -> list[str]:
    """The same proof fanout.py asks for: every host ok, f hashed right, four step logs right."""
    from fanout import Ctx, Measured

    ctx = Ctx(lab, out_dir, out_dir / "hosts.json", out_dir / "ansible.cfg", 0)
    return check_repro(ctx, out_dir, Measured(0, 0, 0, 0, 0, 0))


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the lab's __exit__ tears it down, as on Ctrl-C


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=100)
    p.add_argument("--transport", choices=["asyncssh", "fabric"], default="asyncssh")
    p.add_argument("--handshakes", type=int, metavar="K",
                   help="SSH handshakes in flight at once (RunOptions.handshakes; default: repro's)")
    p.add_argument("--cprofile", type=Path, metavar="OUT.prof",
                   help="also run once under cProfile and save the stats here")
    p.add_argument("--top", type=int, default=25, help="functions shown from the profile")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("profile_repro: needs root (network namespaces and sshd)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    cleanup_stale(LAB_PREFIX)
    with tempfile.TemporaryDirectory(prefix="repro-profile-") as tmp:
        base = Path(tmp)
        with NetnsLab(base / "lab", args.hosts, prefix=LAB_PREFIX, ready_timeout=120.0,
                      own_pids=True) as lab:
            run_once(lab, base / "warmup", args.transport, None, args.handshakes)  # sshd and page cache warm
            rec, wall, cpu, forks, problems = run_once(lab, base / "timed", args.transport, None,
                                                     args.handshakes)
            if problems:
                print("profile_repro: the run did not do the work: " + "; ".join(problems[:3]))
                return 1
            limit = f", handshakes={args.handshakes}" if args.handshakes else ""
            print(f"## repro --transport {args.transport}, {args.hosts} hosts{limit} "
                  "(no profiler)\n")
            print(report(rec, args.hosts, wall, cpu, forks))
            if args.cprofile:
                prof = cProfile.Profile()
                _, pwall, pcpu, _, problems = run_once(lab, base / "prof", args.transport, prof,
                                                args.handshakes)
                prof.dump_stats(args.cprofile)
                print(f"\n## under cProfile: wall {pwall:.2f} s, CPU {pcpu:.2f} s "
                      f"(profiler overhead included); stats in {args.cprofile}\n")
                print(profile_text(prof, args.top))
                if problems:
                    print("profile_repro: the profiled run did not do the work: "
                          + "; ".join(problems[:3]))
                    return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
