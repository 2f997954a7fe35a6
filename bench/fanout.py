"""Fan-out benchmark: the same four steps on N real OpenSSH hosts through six controllers.

Run as root: `python3 bench/fanout.py --hosts 10,50,100 [--write docs/benchmarks.md]`.
Hosts are a NetnsLab (network namespaces on this machine); nothing else is ever contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import platform
import re
import select
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # repro.netlab, when run from a checkout without installing

from workload import COMMANDS, HELLO_SHA256, STEPS, check_outputs, read_outputs

from repro.netlab import MAX_HOSTS, NetnsLab, cleanup_stale

LAB_PREFIX = "rbench"
ANSIBLE_VENV = BENCH / ".venv-ansible"
PR_SET_CHILD_SUBREAPER = 36
DOC_BEGIN = "<!-- fanout-bench:begin -->"
DOC_END = "<!-- fanout-bench:end -->"
FLOOR = "bare-asyncssh"
GOAL_N = 100
# The labs (every host's home) and the runs' output go on a tmpfs mounted for the benchmark: on
# the machine of docs/benchmarks.md, creating a file on the disk costs 0.5-0.9 ms of kernel CPU
# in a directory tree where many files were deleted lately (as after every benchmark run: 400
# files took 0.17-0.38 s there, under 0.03 s elsewhere on the same disk), and which tree that is
# changes from run to run. That charged each file a host writes to whichever controller makes
# it write, at random: the same repro run measured 1.5x and 2.5x the floor.
DEFAULT_WORK_DIR = "/var/tmp"


# --- measuring one process tree -------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One controller run: its exit code, wall time, and what its process tree cost."""

    exit_code: int
    wall: float  # seconds until the controller's own process exited
    cpu: float  # user+sys of the controller and every descendant it (or we) reaped
    maxrss_mb: float  # the largest single process in that tree (ru_maxrss), not a sum
    machine_cpu: float  # busy CPU seconds of the whole machine meanwhile: sshd side included
    processes: int  # processes started on the machine meanwhile (both sides: ssh, sshd, sh)
    timed_out: bool = False

    def __repr__(self) -> str:
        return f"Measured(exit={self.exit_code}, {self.wall:.2f}s, cpu={self.cpu:.2f}s)"


def become_subreaper() -> None:
    """Orphans of a controller (backgrounded ssh ControlMasters) are re-parented to us, so we
    can reap them and add their CPU to the controller that started them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def children() -> set[int]:
    """Our direct children (zombies included), from /proc."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # comm may hold spaces and parentheses: the fields after the last ')' are fixed.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == me:
            found.add(int(entry))
    return found


def machine_counters() -> tuple[float, int]:
    """Busy CPU seconds of all cores since boot (all but idle and iowait), and forks since boot."""
    with open("/proc/stat") as fh:
        lines = fh.read().splitlines()
    ticks = [int(x) for x in lines[0].split()[1:9]]
    forks = next(int(ln.split()[1]) for ln in lines if ln.startswith("processes "))
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"), forks


def wait_quiet(max_wait: float, cores: float = 0.3, window: float = 0.5) -> bool:
    """Wait (bounded) until the machine is nearly idle: other work on these 2 cores (a test
    suite, another benchmark) would be charged to whichever controller runs now."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, _ = machine_counters()
        time.sleep(window)
        busy1, _ = machine_counters()
        if (busy1 - busy0) / window < cores:
            return True
        if time.monotonic() > deadline:
            return False


def _wait_rusage(pid: int, timeout: float) -> tuple[int, Any] | None:
    """wait4 for `pid` with a deadline, without polling: a pidfd is readable once it exits."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
    finally:
        os.close(fd)
    if not ready:
        return None
    _, status, usage = os.wait4(pid, 0)
    return status, usage


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _reap_leftovers(pids: set[int]) -> tuple[float, float]:
    """TERM the orphans a controller left (persisting ssh masters), reap them; (cpu, maxrss_kb)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    cpu, rss = 0.0, 0.0
    deadline = time.monotonic() + 10
    for pid in pids:
        got = _wait_rusage(pid, deadline - time.monotonic())
        if got is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            got = _wait_rusage(pid, 5.0)
        if got is not None:
            cpu += got[1].ru_utime + got[1].ru_stime
            rss = max(rss, float(got[1].ru_maxrss))
    return cpu, rss


def measure(argv: list[str], *, cwd: Path, env: dict[str, str], log: Path,
            timeout: float) -> Measured:
    """Run argv in its own session; time it and account for its whole process tree."""
    before = children()
    with open(log, "wb") as out:
        busy0, forks0 = machine_counters()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    timed_out = False
    try:
        got = _wait_rusage(proc.pid, timeout)
        if got is None:
            timed_out = True
            _kill_group(proc.pid)
            got = _wait_rusage(proc.pid, 30.0)
            if got is None:
                raise RuntimeError(f"{argv[0]} (pid {proc.pid}) survives SIGKILL")
        wall = time.perf_counter() - t0
        busy1, forks1 = machine_counters()
    except BaseException:
        _kill_group(proc.pid)
        with contextlib.suppress(ChildProcessError):
            os.wait4(proc.pid, 0)
        proc.returncode = -9
        _reap_leftovers(children() - before)
        raise
    status, usage = got
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by us, not by Popen
    _kill_group(proc.pid)  # anything still in its session (a stuck worker) goes too
    extra_cpu, extra_rss = _reap_leftovers(children() - before - {proc.pid})
    return Measured(
        exit_code=proc.returncode,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime + extra_cpu,
        maxrss_mb=max(float(usage.ru_maxrss), extra_rss) / 1024,
        machine_cpu=busy1 - busy0,
        processes=forks1 - forks0 - 1,  # the controller itself is not one the hosts cost
        timed_out=timed_out,
    )


# --- the controllers ------------------------------------------------------------------------


@dataclass
class Ctx:
    """One lab and what every controller needs to reach it."""

    lab: NetnsLab
    work: Path
    hosts_file: Path
    ansible_cfg: Path
    timeout: float
    quiet_wait: float = 0.0

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.lab.hosts]

    @property
    def n(self) -> int:
        return len(self.lab.hosts)


@dataclass(frozen=True)
class Tool:
    """A controller under test: how to start it in a run dir, and how to prove it did the work."""

    name: str
    label: str
    argv: Callable[[Ctx, Path], list[str]]
    check: Callable[[Ctx, Path, Measured], list[str]]
    env: Callable[[Ctx, Path], dict[str, str]] = field(default=lambda ctx, d: {})
    available: Callable[[], str] = field(default=lambda: "")  # "" or why not

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def _bare_argv(script: str) -> Callable[[Ctx, Path], list[str]]:
    def argv(ctx: Ctx, run_dir: Path) -> list[str]:
        return [sys.executable, str(BENCH / script), "--hosts", str(ctx.hosts_file),
                "--key", str(ctx.lab.key_path), "--known-hosts", str(ctx.lab.known_hosts_path),
                "--out", str(run_dir / "out.json"), "--timeout", "60"]
    return argv


def _check_out_json(ctx: Ctx, run_dir: Path, m: Measured) -> list[str]:
    problems = [f"exit {m.exit_code}"] if m.exit_code != 0 else []
    try:
        outputs, errors = read_outputs(run_dir / "out.json")
    except (OSError, ValueError) as exc:
        return problems + [f"no readable out.json: {exc}"]
    problems += [f"host {n}: {e}" for n, e in sorted(errors.items())[:3]]
    return problems + check_outputs(outputs, ctx.names)


def _repro_argv(transport: str) -> Callable[[Ctx, Path], list[str]]:
    def argv(ctx: Ctx, run_dir: Path) -> list[str]:
        return [sys.executable, "-m", "repro.cli", "run", "-i", str(ctx.lab.inventory_path),
                "-p", str(BENCH / "four-steps.yaml"), "--transport", transport,
                "--out", str(run_dir / "reports"), "--format", "json"]
    return argv


def _repro_env(ctx: Ctx, run_dir: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "CI": "1"}  # CI: plain progress lines, no live display


def check_repro(ctx: Ctx, run_dir: Path, m: Measured) -> list[str]:
    """exit 0, every host ok with the right hash of f, and every step's log as expected."""
    problems = [f"exit {m.exit_code}"] if m.exit_code != 0 else []
    runs = sorted((run_dir / "reports").glob("*/report.json"))
    if len(runs) != 1:
        return problems + [f"{len(runs)} report.json files under {run_dir / 'reports'}"]
    report = json.loads(runs[0].read_text())
    outputs: dict[str, list[str]] = {}
    for host in report.get("hosts", []):
        name = str(host.get("name"))
        if host.get("status") != "ok":
            problems.append(f"host {name}: {host.get('status')}: {host.get('error')}")
            continue
        sha = _artifact_sha(host.get("artifacts"), "f")
        if sha != HELLO_SHA256:
            problems.append(f"host {name}: artifact f has sha256 {sha!r}")
        logs = runs[0].parent / "hosts" / name
        try:
            outputs[name] = [(logs / f"{i:02d}-{step}.log").read_text(errors="replace")
                             for i, (step, _) in enumerate(STEPS, start=1)]
        except OSError as exc:
            problems.append(f"host {name}: step log missing: {exc.filename}")
    return problems + check_outputs(outputs, ctx.names)


def _artifact_sha(artifacts: Any, name: str) -> str | None:
    # report.json has had artifacts as {name: {...}} and as [{name: ...}]; accept both.
    if isinstance(artifacts, dict):
        entry = artifacts.get(name)
        return entry.get("sha256") if isinstance(entry, dict) else entry
    if isinstance(artifacts, list):
        for entry in artifacts:
            if isinstance(entry, dict) and entry.get("name") == name:
                return entry.get("sha256")
    return None


def _fabric_transport_available() -> str:
    if (ROOT / "repro" / "transport" / "fabric.py").is_file():
        return ""
    return "repro/transport/fabric.py does not exist yet"


def _ansible_available() -> str:
    exe = ANSIBLE_VENV / "bin" / "ansible-playbook"
    return "" if exe.exists() else f"{exe} missing (run without --no-install)"


def _ansible_argv(ctx: Ctx, run_dir: Path) -> list[str]:
    return [str(ANSIBLE_VENV / "bin" / "ansible-playbook"), "-i", str(ctx.lab.inventory_path),
            "--forks", str(ctx.n), str(BENCH / "four-steps-ansible.yaml")]


def _ansible_env(ctx: Ctx, run_dir: Path) -> dict[str, str]:
    return {
        "ANSIBLE_CONFIG": str(ctx.ansible_cfg),
        "ANSIBLE_HOME": str(run_dir / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(run_dir / "ansible-tmp"),
        "BENCH_COLLECT_OUT": str(run_dir / "out.json"),
    }


def write_ansible_cfg(ctx_work: Path, lab: NetnsLab) -> Path:
    """Ansible at its fastest that is still safe: pipelining, persistent masters, checked keys."""
    control = ctx_work / "ac"  # kept short: a unix socket path must fit in 108 bytes
    control.mkdir(mode=0o700)
    ssh_args = " ".join([
        "-o ControlMaster=auto", "-o ControlPersist=60s", "-o IdentitiesOnly=yes",
        "-o StrictHostKeyChecking=yes", f"-o UserKnownHostsFile={lab.known_hosts_path}",
        "-o GlobalKnownHostsFile=/dev/null",
    ])
    cfg = ctx_work / "ansible.cfg"
    cfg.write_text(
        "[defaults]\n"
        "host_key_checking = True\n"
        "gathering = explicit\n"
        "interpreter_python = /usr/bin/python3\n"
        "retry_files_enabled = False\n"
        f"callback_plugins = {BENCH / 'ansible_plugins' / 'callback'}\n"
        "callbacks_enabled = bench_collect\n"
        "timeout = 60\n"
        "\n[ssh_connection]\n"
        "pipelining = True\n"
        f"ssh_args = {ssh_args}\n"
        f"control_path_dir = {control}\n"
        "control_path = %(directory)s/%%C\n"
    )
    return cfg


TOOLS: tuple[Tool, ...] = (
    Tool(FLOOR, "bare asyncssh (floor)", _bare_argv("bare_asyncssh.py"), _check_out_json),
    Tool("repro-asyncssh", "repro --transport asyncssh", _repro_argv("asyncssh"), check_repro,
         env=_repro_env),
    Tool("repro-fabric", "repro --transport fabric", _repro_argv("fabric"), check_repro,
         env=_repro_env, available=_fabric_transport_available),
    Tool("fabric-group", "Fabric ThreadingGroup", _bare_argv("fabric_group.py"), _check_out_json),
    Tool("openssh", "OpenSSH, ControlMaster per host", _bare_argv("raw_openssh.py"),
         _check_out_json),
    Tool("ansible", "ansible-playbook (pipelining)", _ansible_argv, _check_out_json,
         env=_ansible_env, available=_ansible_available),
)


# --- running the matrix ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    tool: str
    n: int
    m: Measured
    problems: tuple[str, ...]
    quiet: bool = True  # the machine was idle when the run began

    @property
    def ok(self) -> bool:
        return not self.problems and not self.m.timed_out

    def __repr__(self) -> str:
        return f"Sample({self.tool!r}, n={self.n}, {self.m!r}, ok={self.ok})"


def run_tool(tool: Tool, ctx: Ctx, rep: int) -> Sample:
    run_dir = ctx.work / f"{tool.name}-{rep}"
    run_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYTHON"))}
    env.update(tool.env(ctx, run_dir))
    quiet = wait_quiet(ctx.quiet_wait)
    m = measure(tool.argv(ctx, run_dir), cwd=ROOT, env=env, log=run_dir / "output.log",
                timeout=ctx.timeout)
    problems = [f"timed out after {ctx.timeout:g}s"] if m.timed_out else []
    problems += tool.check(ctx, run_dir, m)
    sample = Sample(tool.name, ctx.n, m, tuple(problems), quiet)
    status = "ok" if sample.ok else "FAILED: " + "; ".join(problems[:3])
    busy = "" if quiet else " (machine was busy when it began)"
    print(f"  n={ctx.n:<4} {tool.name:<15} run {rep}: {m.wall:7.2f} s wall, "
          f"{m.cpu:6.2f} s cpu, {m.maxrss_mb:6.1f} MB, {m.processes / ctx.n:5.0f} proc/host  "
          f"{status}{busy}  ({run_dir})", flush=True)
    return sample


@contextlib.contextmanager
def lab_for(n: int, base: Path) -> Iterator[NetnsLab]:
    started = time.monotonic()
    # own_pids: every host its own PID space and /proc, as separate machines have (what a host
    # scans in /proc is then its own processes, not the whole lab's)
    lab = NetnsLab(base / f"lab-{n}", n, prefix=LAB_PREFIX, ready_timeout=120.0, own_pids=True)
    with lab:
        print(f"lab of {n} hosts up in {time.monotonic() - started:.1f} s ({lab!r})", flush=True)
        yield lab


def bench_n(n: int, tools: list[Tool], repeat: int, base: Path, timeout: float,
            quiet_wait: float) -> list[Sample]:
    samples = []
    with lab_for(n, base) as lab:
        work = base / f"n{n}"
        work.mkdir()
        hosts_file = work / "hosts.json"
        hosts_file.write_text(json.dumps([{"name": h.name, "address": h.address}
                                          for h in lab.hosts]))
        ctx = Ctx(lab, work, hosts_file, write_ansible_cfg(work, lab), timeout, quiet_wait)
        # Warm-up, not measured: first connections to a fresh sshd and a cold page cache
        # would otherwise be charged to whichever tool happens to go first.
        warm = run_tool(TOOLS[0], Ctx(lab, work / "warmup", hosts_file, ctx.ansible_cfg,
                                      timeout), 0)
        if not warm.ok:
            raise SystemExit(f"fanout: warm-up with {FLOOR} failed at n={n}: {warm.problems}")
        # Interleaved, so a slow minute on the machine hurts every tool alike.
        for rep in range(1, repeat + 1):
            for tool in tools:
                why = tool.available()
                if why:
                    print(f"  n={n:<4} {tool.name:<15} skipped: {why}", flush=True)
                    continue
                samples.append(run_tool(tool, ctx, rep))
    return samples


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    tool: str
    n: int
    runs: int
    failed: int
    wall: float | None
    cpu: float | None
    rss: float | None
    machine: float | None
    per_host: float | None
    ratio: float | None = None

    def __repr__(self) -> str:
        return f"Row({self.tool!r}, n={self.n}, wall={self.wall})"


def summarize(samples: list[Sample], tools: list[Tool]) -> list[Row]:
    rows = []
    for n in sorted({s.n for s in samples}):
        floor = _median([s.m.wall for s in samples if s.n == n and s.tool == FLOOR and s.ok])
        for tool in tools:
            mine = [s for s in samples if s.n == n and s.tool == tool.name]
            good = [s for s in mine if s.ok]
            wall = _median([s.m.wall for s in good])
            rows.append(Row(
                tool.name, n, len(mine), len(mine) - len(good), wall,
                _median([s.m.cpu for s in good]), _median([s.m.maxrss_mb for s in good]),
                _median([s.m.machine_cpu for s in good]),
                _median([s.m.processes / n for s in good]),
                wall / floor if wall is not None and floor else None,
            ))
    return rows


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def table(rows: list[Row], tools: list[Tool]) -> str:
    labels = {t.name: t.label for t in tools}
    lines = [
        ("| hosts | controller | wall s | × floor | controller CPU s | peak RSS MB "
         "| machine CPU s | processes / host | runs ok |"),
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r.runs == 0:
            lines.append(f"| {r.n} | {labels[r.tool]} | – | – | – | – | – | – | not run |")
            continue
        lines.append(
            f"| {r.n} | {labels[r.tool]} | {_f(r.wall, 2)} | {_f(r.ratio, 2, '×')} "
            f"| {_f(r.cpu, 2)} | {_f(r.rss, 0)} | {_f(r.machine, 1)} | {_f(r.per_host, 0)} "
            f"| {r.runs - r.failed}/{r.runs} |"
        )
    return "\n".join(lines)


def _f(x: float | None, digits: int, suffix: str = "") -> str:
    return "FAILED" if x is None else f"{x:.{digits}f}{suffix}"


def goals(rows: list[Row]) -> list[str]:
    """The issue's goals at N=100, each with PASS/FAIL and the numbers behind it."""
    at = {r.tool: r for r in rows if r.n == GOAL_N}
    repro, ansible = at.get("repro-asyncssh"), at.get("ansible")
    against = against_baseline(rows)
    if repro is None or repro.wall is None:
        return [f"goals: not evaluated (no successful repro run at n={GOAL_N})", *against]
    out = []
    if repro.ratio is not None:
        out.append(_goal(repro.ratio <= 1.5, f"repro/asyncssh within 1.5× of the bare asyncssh "
                                             f"floor: {repro.ratio:.2f}×"))
    if ansible is not None and ansible.wall is not None:
        speedup = ansible.wall / repro.wall
        out.append(_goal(speedup >= 15, f"at least 15× faster than ansible-playbook: "
                                        f"{speedup:.1f}×"))
    if repro.rss is not None:
        out.append(_goal(repro.rss < 100, f"peak RSS under 100 MB: {repro.rss:.0f} MB"))
    return out + against


def against_baseline(rows: list[Row]) -> list[str]:
    """The regression rule, at every n with a baseline (--baseline): repro/asyncssh's ratio to
    the floor at most 5 % above the baseline tree's, measured in the same runs."""
    out = []
    for n in sorted({r.n for r in rows}):
        mine = next((r for r in rows if r.n == n and r.tool == "repro-asyncssh"), None)
        base = next((r for r in rows if r.n == n and r.tool == BASELINE), None)
        if mine and base and mine.ratio and base.ratio:
            change = mine.ratio / base.ratio - 1
            out.append(_goal(change <= 0.05, f"n = {n}: no more than 5 % slower than the baseline "
                                             f"tree in the same lab: {mine.ratio:.2f}× against "
                                             f"{base.ratio:.2f}× ({change:+.1%})"))
    return out


def _goal(ok: bool, text: str) -> str:
    return f"- {'PASS' if ok else 'FAIL'}: {text}"


# --- the document ---------------------------------------------------------------------------


def machine_facts() -> list[tuple[str, str]]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, timeout=10, check=False)
    sshd_v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "openssh-server"],
                            capture_output=True, text=True, timeout=10, check=False)
    facts = [
        ("cores (nproc)", str(os.cpu_count())),
        ("CPU", cpu),
        ("RAM", f"{mem_kb / 1024 / 1024:.1f} GiB"),
        ("kernel", platform.release()),
        ("OpenSSH client", ssh.stderr.strip() or "unknown"),
        ("OpenSSH server", sshd_v.stdout.strip() or "unknown"),
        ("Python", platform.python_version()),
    ]
    return facts + _package_versions() + [("repro tree", _tree_state())]


def _tree_state() -> str:
    """The commit measured, and whether repro/ had uncommitted work in it (it moves fast)."""
    head = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
                          capture_output=True, text=True, timeout=30, check=False)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "repro"],
                           capture_output=True, text=True, timeout=30, check=False)
    state = head.stdout.strip()[:70] or "unknown"
    return state + (" + uncommitted changes in repro/" if dirty.stdout.strip() else "")


def _package_versions() -> list[tuple[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for pkg in ("asyncssh", "fabric", "paramiko"):
        with contextlib.suppress(PackageNotFoundError):
            found.append((pkg, version(pkg)))
    exe = ANSIBLE_VENV / "bin" / "ansible-playbook"
    if exe.exists():
        done = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                              timeout=60, check=False)
        first = done.stdout.splitlines()[0] if done.stdout else "unknown"
        match = re.search(r"core ([0-9][^\]\s]*)", first)
        found.append(("ansible-core", match.group(1) if match else first))
    return found


def results_block(rows: list[Row], tools: list[Tool], command: str, repeat: int,
                  samples: list[Sample]) -> str:
    facts = "\n".join(f"| {k} | {v} |" for k, v in machine_facts())
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        DOC_BEGIN,
        f"Measured {date} with:",
        "",
        "```sh",
        command,
        "```",
        "",
        "| machine | |",
        "| --- | --- |",
        facts,
        "",
        (f"Median of {repeat} runs per cell. × floor: wall time over the bare asyncssh "
         "script's in the same run. " + busy_note(samples)),
        "",
        table(rows, tools),
        "",
        f"Goals from the issue, at n = {GOAL_N}"
        + (" (the baseline's, at every n):" if any(t.name == BASELINE for t in tools) else ":"),
        "",
        *goals(rows),
        DOC_END,
    ])


def busy_note(samples: list[Sample]) -> str:
    busy = sum(1 for s in samples if not s.quiet)
    if not busy:
        return "Every run began on an idle machine."
    return (f"{busy} of {len(samples)} runs began while other work was using the machine "
            "(waited the --quiet-wait limit for it to go idle); their cells may read high.")


def write_doc(path: Path, block: str) -> None:
    """Replace the results between the markers, keeping the prose around them."""
    text = path.read_text() if path.exists() else ""
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        tail = rest.split(DOC_END, 1)[1]
        text = head + block + tail
    else:
        text = (text.rstrip() + "\n\n" if text else "# Benchmarks\n\n") + block + "\n"
    path.write_text(text)


# --- set-up and main ------------------------------------------------------------------------


def ensure_ansible(install: bool) -> None:
    """ansible-core lives in the benchmark's own venv, never in repro's dependencies."""
    if (ANSIBLE_VENV / "bin" / "ansible-playbook").exists() or not install:
        return
    print(f"creating {ANSIBLE_VENV} with ansible-core (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)], check=True, timeout=300)
    subprocess.run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "-q", "ansible-core"],
                   check=True, timeout=900)


def check_workloads_agree() -> None:
    """The YAML playbooks must run exactly the commands in workload.STEPS."""
    pb = yaml.safe_load((BENCH / "four-steps.yaml").read_text())
    repro_cmds = tuple(str(s["run"]).strip() for s in pb["steps"])
    plays = yaml.safe_load((BENCH / "four-steps-ansible.yaml").read_text())
    ansible_cmds = tuple(
        str(t.get("ansible.builtin.command") or t.get("ansible.builtin.shell")).strip()
        for t in plays[0]["tasks"]
    )
    for what, cmds in (("four-steps.yaml", repro_cmds), ("four-steps-ansible.yaml", ansible_cmds)):
        if cmds != COMMANDS:
            raise SystemExit(f"fanout: bench/{what} runs {cmds}, not workload.STEPS {COMMANDS}")


def parse_hosts(text: str) -> list[int]:
    try:
        ns = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"fanout: --hosts {text!r}: give host counts like 10,50,100") from None
    if not ns or any(not 1 <= n <= MAX_HOSTS for n in ns):
        raise SystemExit(f"fanout: --hosts {text!r}: each count must be 1..{MAX_HOSTS}")
    return ns


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", default="10,50,100", help="host counts, comma-separated")
    p.add_argument("--repeat", type=int, default=3, help="runs per tool and host count (median)")
    p.add_argument("--tools", default=",".join(t.name for t in TOOLS),
                   help=f"comma-separated subset of {','.join(t.name for t in TOOLS)} "
                        f"({FLOOR} always runs)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per controller run")
    p.add_argument("--quiet-wait", type=float, default=120.0, metavar="SECONDS",
                   help="before each run, wait up to this long for the machine to be idle")
    p.add_argument("--write", type=Path, metavar="MD", help="write the results into this file")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, reports)")
    p.add_argument("--no-install", action="store_true", help="never create the ansible venv")
    p.add_argument("--work-dir", type=Path, default=Path(DEFAULT_WORK_DIR), metavar="DIR",
                   help="where the labs (the hosts' homes) and every run's output go "
                        f"(default {DEFAULT_WORK_DIR})")
    p.add_argument("--on-disk", action="store_true",
                   help="keep them on the disk instead of a tmpfs mounted for the benchmark "
                        "(see docs/benchmarks.md: file creation cost on this machine's disk)")
    p.add_argument("--baseline", type=Path, metavar="TREE",
                   help="also run repro/asyncssh from this checkout of an older commit, in the "
                        "same lab and rounds, and compare (the regression rule)")
    args = p.parse_args(argv)
    if not args.work_dir.is_dir():
        p.error(f"--work-dir {args.work_dir}: not a directory")
    if not 1 <= args.repeat <= 10:
        p.error("--repeat must be 1..10")
    return args


def select_tools(text: str, baseline: Path | None = None) -> list[Tool]:
    wanted = {x.strip() for x in text.split(",") if x.strip()} | {FLOOR}
    unknown = wanted - {t.name for t in TOOLS}
    if unknown:
        raise SystemExit(f"fanout: unknown tool(s) {sorted(unknown)}; "
                         f"choose from {[t.name for t in TOOLS]}")
    chosen = [t for t in TOOLS if t.name in wanted]
    return chosen + ([baseline_tool(baseline)] if baseline is not None else [])


#: the tool `--baseline` adds: repro/asyncssh from another checkout
BASELINE = "repro-baseline"


def baseline_tool(tree: Path) -> Tool:
    """repro --transport asyncssh as an older checkout has it (e.g. `git worktree add /tmp/b
    561e975`), run by this script in the same lab, interleaved with the others: the 5 % rule of
    docs/benchmarks.md compares trees in the same lab and hour, since this VM's speed drifts by
    more than 5 % between hours (the floor is the same script for both)."""
    tree = tree.resolve()
    if not (tree / "repro" / "cli.py").is_file():
        raise SystemExit(f"fanout: --baseline {tree}: not a checkout of repro (no repro/cli.py)")
    label = f"repro --transport asyncssh, baseline {_describe_tree(tree)}"

    def env(ctx: Ctx, run_dir: Path) -> dict[str, str]:
        return {"PYTHONPATH": str(tree), "CI": "1"}

    return Tool(BASELINE, label, _repro_argv("asyncssh"), check_repro, env=env)


def _describe_tree(tree: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %cd",
                              "--date=format:%Y-%m-%d"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or tree.name


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # same clean-up path as Ctrl-C: the lab's __exit__ tears it down


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("fanout: needs root (network namespaces and sshd)", file=sys.stderr)
        return 2
    ns, tools = parse_hosts(args.hosts), select_tools(args.tools, args.baseline)
    check_workloads_agree()
    if any(t.name == "ansible" for t in tools):
        ensure_ansible(not args.no_install)
    become_subreaper()
    # Explicitly: a shell that starts us in the background leaves SIGINT ignored, and a closed
    # terminal (SIGHUP) must tear the lab down too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _sigterm)
    cleanup_stale(LAB_PREFIX)
    base = Path(tempfile.mkdtemp(prefix="repro-fanout-", dir=args.work_dir))
    samples: list[Sample] = []
    mounted = False
    try:
        if not args.on_disk:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g,mode=0755", "tmpfs", str(base)],
                           check=True, timeout=30)
            mounted = True
        for n in ns:
            samples += bench_n(n, tools, args.repeat, base, args.timeout, args.quiet_wait)
    except KeyboardInterrupt:
        print("fanout: interrupted; the lab was torn down", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"work dir kept: {base}" + (" (a tmpfs: `umount` it when done)" if mounted else ""))
        else:
            if mounted:
                subprocess.run(["umount", str(base)], check=False, timeout=60)
            subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False, timeout=120)
    rows = summarize(samples, tools)
    command = "python3 bench/fanout.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    print()
    print(table(rows, tools))
    print()
    print("\n".join(goals(rows)))
    if args.write:
        write_doc(args.write, results_block(rows, tools, command, args.repeat, samples))
        print(f"wrote {args.write}")
    failed = [s for s in samples if not s.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
