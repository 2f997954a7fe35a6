"""Processes and bounded polls shared by the tests: is a pid or a process group still alive, wait
for a condition with a deadline, the controller as its own process, and a step's start count."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from repro.netlab import NetnsLab

REPO = Path(__file__).resolve().parent.parent
#: the longest a controller started by `controller` gets to finish a scenario
RUN_TIMEOUT = 45.0


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a reaper (PID 1 in a container may never reap)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def group_alive(pgid: int) -> bool:
    """Some process of the group is there, and its leader is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # a zombie leader still answers the signal; its state tells
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pgid}/status").read_text()
    except FileNotFoundError:
        return False


def wait_until(
    check: Callable[[], bool], timeout: float = 10.0, proc: subprocess.Popen[str] | None = None
) -> bool:
    """Poll `check` for at most `timeout` s (less if `proc` ends first); True once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        if check():
            return True
        time.sleep(0.05)
    return check()


def wait_for(
    check: Callable[[], bool],
    what: str,
    proc: subprocess.Popen[str] | None = None,
    timeout: float = 20.0,
) -> None:
    """wait_until, or fail naming `what`, with what the controller `proc` said if there is one."""
    if wait_until(check, timeout, proc):
        return
    said = ""
    if proc is not None:
        proc.kill()
        said = (
            f"\ncontroller (exit {proc.wait(10)}) said:\n{proc.communicate(timeout=10)[1][-3000:]}"
        )
    raise AssertionError(f"gave up waiting for {what}{said}")


def controller(*argv: str) -> subprocess.Popen[str]:
    """`python -m repro.cli ARGV` as its own process, so a test can SIGKILL or SIGINT it."""
    env = dict(os.environ, PYTHONPATH=str(REPO), CI="1")
    return subprocess.Popen(
        [sys.executable, "-m", "repro.cli", *argv],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = RUN_TIMEOUT) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of a `controller`; killed and failed if it outlasts timeout."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"controller still running after {timeout:g}s:\n{err[-3000:]}")
    return proc.returncode, out, err


def starts(home: Path, step: str = "build") -> int:
    """How often `step` started on a host: the tests' playbooks append a line to
    $HOME/starts-<step> each time it starts, so a test sees a step that ran twice."""
    f = home / f"starts-{step}"
    return len(f.read_text().splitlines()) if f.exists() else 0


def state(path: Path) -> str | None:
    """What a supervisor state file (`<key>.rc`, `.pid`, `.start`) holds: its number, or None
    while it holds none (the supervisor makes them at launch, holding "-") or is missing."""
    try:
        words = path.read_text().split()
    except FileNotFoundError:
        return None
    return words[0] if words and words[0].lstrip("-").isdigit() else None


def marked(lab: NetnsLab, name: str, marker: str) -> list[str]:
    """The host's live processes whose command line holds `marker` (its netns, not zombies)."""
    script = r"""
m=$1; shift
for pid do
  s=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$pid/status" 2>/dev/null) || continue
  [ -n "$s" ] && [ "$s" != Z ] || continue
  c=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || continue
  case $c in *"$m"*) echo "$pid $c";; esac
done
"""
    pids = [str(p) for p in lab.pids(name)]
    done = lab.exec(name, ["sh", "-c", script, "scan", marker, *pids], timeout=30)
    return [ln for ln in done.stdout.splitlines() if ln]
