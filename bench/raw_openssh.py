"""Raw OpenSSH: one ControlMaster per host, four `ssh` commands through it, then `ssh -O exit`.

Usage: raw_openssh.py --hosts hosts.json --key KEY --known-hosts FILE --out out.json
All hosts in parallel (one thread each); the masters go to the background (`-f`), so this
process makes itself their subreaper and reaps them: their CPU counts as the controller's.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workload import COMMANDS, LabHost, driver_args, load_hosts, report_errors, write_outputs

PR_SET_CHILD_SUBREAPER = 36


class HostFailed(Exception):
    """One ssh invocation failed; the message carries its exit status and stderr."""


def ssh_base(key: str, known_hosts: str, control: Path, timeout: float) -> list[str]:
    return [
        "ssh", "-F", "/dev/null", "-i", key,
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"ConnectTimeout={max(1, int(timeout))}",
        "-o", "LogLevel=ERROR", "-o", f"ControlPath={control}/%C",
    ]  # fmt: skip


def _ssh(argv: list[str], timeout: float) -> str:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=timeout, check=False)
    if done.returncode != 0:
        raise HostFailed(f"exit {done.returncode}: {' '.join(done.stderr.split())[:200]}")
    return done.stdout


def one_host(host: LabHost, base: list[str], timeout: float) -> list[str]:
    target = f"root@{host.address}"
    # -f goes to the background only once authenticated, so the mux socket is ready after it.
    _ssh(base + ["-M", "-N", "-f", "-o", "ControlPersist=yes", target], timeout)
    try:
        return [_ssh(base + ["-o", "ControlMaster=no", target, "--", cmd], timeout)
                for cmd in COMMANDS]
    finally:
        with contextlib.suppress(HostFailed, subprocess.TimeoutExpired):
            _ssh(base + ["-O", "exit", target], timeout)


def reap_masters(deadline: float) -> None:
    """Wait for the backgrounded masters (ours by subreaping) until none is left or time is up."""
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


def run_all(hosts: list[LabHost], key: str, known_hosts: str, timeout: float
            ) -> tuple[dict[str, list[str]], dict[str, str]]:
    outputs: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    # A short directory: a unix socket path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="rawssh-", dir="/tmp") as control:
        base = ssh_base(key, known_hosts, Path(control), timeout)
        with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
            futures = {h.name: pool.submit(one_host, h, base, timeout) for h in hosts}
        for name, fut in futures.items():
            try:
                outputs[name] = fut.result()
            except (HostFailed, subprocess.TimeoutExpired) as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
        reap_masters(time.monotonic() + timeout)
    return outputs, errors


def main(argv: list[str] | None = None) -> int:
    args = driver_args(__doc__ or "", argv, "per ssh invocation")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("raw_openssh: cannot become a subreaper; masters' CPU is not counted", file=sys.stderr)
    hosts = load_hosts(args.hosts)
    outputs, errors = run_all(hosts, args.key, args.known_hosts, args.timeout)
    write_outputs(args.out, outputs, errors)
    return report_errors("raw_openssh", errors)


if __name__ == "__main__":
    sys.exit(main())
