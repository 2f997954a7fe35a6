"""Long-wait benchmark: N real OpenSSH hosts run one step of S seconds; what waiting costs.

Run as root: `python3 bench/longwait.py --hosts 100 --seconds 300`. Reports, for the part of
the run when every host's step runs (from the last step's start to its end, less a margin): the
controller's CPU seconds and CPU as % of one core, processes started on the machine per host
per minute (the kernel's fork counter in /proc/stat, both sides: sshd, sh, helpers), and the
controller's peak RSS; then how long, with default settings, the controller takes to report a
host whose link went silent mid-step. Hosts are a NetnsLab; nothing else is ever contacted.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # repro.netlab, when run from a checkout without installing

from fanout import machine_counters  # noqa: E402  (bench/ is this script's own directory)

from repro.netlab import MAX_HOSTS, NetnsLab, cleanup_stale  # noqa: E402

LAB_PREFIX = "rlong"
#: the window measured ends this long before the step does (the step's end is not waiting)
MARGIN = 5.0


@dataclass(frozen=True)
class Waiting:
    """What the controller and the hosts cost while every step ran."""

    hosts: int
    window: float  # seconds measured
    cpu: float  # controller CPU seconds in the window
    forks: int  # processes started on the machine in the window
    idle_forks_per_minute: float  # the machine's rate with the lab up and no controller
    peak_rss_mb: float  # the controller's, over the whole run
    exit_code: int

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu / self.window

    @property
    def per_host_minute(self) -> float:
        """Forks in the window less the idle rate, per host and minute (0 when below it)."""
        rate = self.forks / (self.window / 60.0) - self.idle_forks_per_minute
        return max(0.0, rate) / self.hosts

    @property
    def raw_per_host_minute(self) -> float:
        """Every fork in the window, per host and minute: an upper bound, whatever else ran."""
        return self.forks / (self.window / 60.0) / self.hosts


def playbook(path: Path, seconds: int) -> Path:
    path.write_text(
        "name: longwait\n"
        "steps:\n"
        "  - name: wait\n"
        f"    timeout: {seconds + 600}s\n"
        f"    run: sleep {seconds} && echo done > out.txt\n"
        "artifacts:\n"
        "  - glob: out.txt\n"
    )
    return path


def started(lab: NetnsLab) -> int:
    """How many hosts' step has started (its lock file exists on the host)."""
    return sum(1 for h in lab.hosts if any(h.home.rglob("steps/1-01.lock")))


def proc_cpu(pid: int) -> float:
    """User+system CPU seconds of `pid` so far (its own threads; it starts no processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def controller(lab: NetnsLab, book: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CI="1")
    argv = [sys.executable, "-m", "repro.cli", "run", "-i", str(lab.inventory_path), "-p",
            str(book), "--out", str(out), "--format", "json", *extra]  # fmt: skip
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"longwait: {what} did not happen within {timeout:g} s")
        time.sleep(0.2)


def idle_rate(window: float) -> float:
    """Processes the machine starts per minute with no controller running (others' work)."""
    _, forks0 = machine_counters()
    time.sleep(window)
    _, forks1 = machine_counters()
    return (forks1 - forks0) / (window / 60.0)


def measure_waiting(lab: NetnsLab, work: Path, seconds: int) -> Waiting:
    idle = idle_rate(min(30.0, seconds / 2))
    book = playbook(work / "wait.yaml", seconds)
    proc = controller(lab, book, work / "reports-wait")
    assert proc.stderr is not None
    drain = threading.Thread(target=proc.stderr.read, daemon=True)
    drain.start()
    until(lambda: started(lab) == len(lab.hosts), 120 + len(lab.hosts), "every step started")
    t0 = time.monotonic()
    cpu0, (_, forks0) = proc_cpu(proc.pid), machine_counters()
    time.sleep(max(1.0, seconds - MARGIN - (time.monotonic() - t0)))
    cpu1, (_, forks1) = proc_cpu(proc.pid), machine_counters()
    window = time.monotonic() - t0
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Waiting(
        hosts=len(lab.hosts),
        window=window,
        cpu=cpu1 - cpu0,
        forks=forks1 - forks0,
        idle_forks_per_minute=idle,
        peak_rss_mb=usage.ru_maxrss / 1024,
        exit_code=proc.returncode,
    )


def measure_dead_link(lab: NetnsLab, work: Path) -> float:
    """Seconds from a host's link going silent mid-step to the controller reporting it."""
    book = playbook(work / "dead.yaml", 3600)
    proc = controller(lab, book, work / "reports-dead")
    assert proc.stderr is not None
    lines: list[str] = []
    stderr = proc.stderr
    reader = threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")), daemon=True)
    reader.start()
    victim = lab.hosts[0].name
    try:
        until(lambda: started(lab) == len(lab.hosts), 120 + len(lab.hosts), "every step started")
        time.sleep(2.0)  # the controller's wait on the victim is out and quiet
        t0 = time.monotonic()
        lab.link_down(victim)
        lost = re.compile(rf"(^|\W){re.escape(victim)}\W.*reconnecting")
        until(lambda: any(lost.search(ln) for ln in list(lines)), 600, f"{victim} reported lost")
        return time.monotonic() - t0
    finally:
        lab.link_up(victim)
        proc.send_signal(signal.SIGINT)  # writes the report and kills the builds
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=100, help=f"host count, 1..{MAX_HOSTS}")
    p.add_argument("--seconds", type=int, default=300, help="how long the one step runs")
    p.add_argument("--no-dead-link", action="store_true", help="skip the dead-link measure")
    p.add_argument("--work-dir", type=Path, default=Path("/var/tmp"), metavar="DIR")
    args = p.parse_args(argv)
    if not 1 <= args.hosts <= MAX_HOSTS:
        p.error(f"--hosts must be 1..{MAX_HOSTS}")
    if args.seconds < 2 * MARGIN + 5:
        p.error(f"--seconds must be at least {2 * MARGIN + 5:g}")
    return args


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the lab's __exit__ tears it down


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("longwait: needs root (network namespaces and sshd)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _sigterm)
    cleanup_stale(LAB_PREFIX)
    base = Path(tempfile.mkdtemp(prefix="repro-longwait-", dir=args.work_dir))
    try:
        with NetnsLab(base / "lab", args.hosts, prefix=LAB_PREFIX, ready_timeout=120.0,
                      own_pids=True) as lab:
            print(f"lab up: {lab!r}", flush=True)
            w = measure_waiting(lab, base, args.seconds)
            print(f"N = {w.hosts}, step of {args.seconds} s (exit {w.exit_code}); while every "
                  f"step ran ({w.window:.0f} s):")  # fmt: skip
            print(f"  controller CPU        {w.cpu:.2f} s = {w.cpu_percent:.2f} % of one core")
            # The raw count is an upper bound; the idle rate, measured before the run, can be
            # anything the machine did then (it once read more than the run's own rate).
            print(f"  processes started     at most {w.raw_per_host_minute:.2f} per host per"
                  f" minute ({w.forks} on the machine); {w.per_host_minute:.2f} less the"
                  f" {w.idle_forks_per_minute:.0f}/min the machine started idle before the run")  # fmt: skip
            print(f"  controller peak RSS   {w.peak_rss_mb:.1f} MB")
            if not args.no_dead_link:
                dead = measure_dead_link(lab, base)
                print(f"  dead link reported    {dead:.1f} s after it went silent (defaults)")
    except KeyboardInterrupt:
        print("longwait: interrupted; the lab was torn down", file=sys.stderr)
        return 130
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False, timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
