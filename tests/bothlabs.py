"""One face for both labs, so a scenario is written once and runs on each: the in-process asyncssh
hosts (repro.lab, any machine) and real OpenSSH hosts in network namespaces (repro.netlab, root).

`lab` is the fixture: parametrised over both; the netns one carries the `netns` marker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from repro.netlab import NetnsLab
from tests.labthread import LabThread
from tests.procs import group_alive

RUNS = Path(".cache") / "repro" / "runs"


@dataclass
class Lab:
    """Three hosts a test can run repro on and break: the same calls on either lab."""

    kind: str  # "inprocess" or "netns"
    inventory_path: Path
    names: list[str]
    homes: dict[str, Path]  # each host's HOME, as this process sees it
    _thread: LabThread | None = field(default=None, repr=False)
    _net: NetnsLab | None = field(default=None, repr=False)

    def home(self, name: str) -> Path:
        return self.homes[name]

    def run_dir(self, name: str, run_id: str) -> Path:
        """The run's directory on host `name` (the default work base, under its HOME)."""
        return self.home(name) / RUNS / run_id

    def stop_sshd(self, name: str) -> None:
        """The host's SSH server goes away: its connections drop, new ones are refused."""
        if self._thread:
            self._thread.stop_host(name)
        else:
            assert self._net
            self._net.stop_sshd(name)

    def start_sshd(self, name: str) -> None:
        if self._thread:
            self._thread.start_host(name)
        else:
            assert self._net
            self._net.start_sshd(name)

    def inventory_with(self, dest: Path, host_vars: dict[str, dict[str, Any]]) -> Path:
        """The lab's inventory plus extra host vars, written to `dest`."""
        doc = yaml.safe_load(self.inventory_path.read_text())
        for group in doc["all"]["children"].values():
            for name, extra in host_vars.items():
                if name in group.get("hosts", {}):
                    group["hosts"][name].update(extra)
        dest.write_text(yaml.safe_dump(doc, sort_keys=False))
        return dest

    def canaries(self, name: str) -> list[Path]:
        """Files named CANARY a hostile value would have made: in the host's HOME or /tmp."""
        tmp = self._net.host(name).tmp if self._net else Path("/tmp")
        return [*self.home(name).rglob("*CANARY*"), *(p for p in [tmp / "CANARY"] if p.exists())]

    def leftovers(self, run_id: str, names: tuple[str, ...] = ()) -> dict[str, list[str]]:
        """Processes of the run still alive on the hosts (all by default), per host."""
        if self._net:
            return {n: run_processes(self._net, n, run_id) for n in names or self.names}
        out = {}
        for n in names or self.names:
            groups = {
                int(text)
                for p in (self.run_dir(n, run_id) / "steps").glob("*.pid")
                if (text := p.read_text().strip()).isdigit()
            }
            out[n] = [f"process group {g}" for g in sorted(groups) if group_alive(g)]
        return out


def run_processes(lab: NetnsLab, name: str, run_id: str) -> list[str]:
    """Processes in a netns host whose cwd or command line belongs to the run, read inside it.

    Only the host's own processes (its network namespace) are looked at: the machine's pid
    namespace is shared, and scanning all of it is slow and beside the point.
    """
    script = r"""
r=$1; shift
for pid do
  p=/proc/$pid
  cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
  cmd=$(tr '\0\n' '  ' < "$p/cmdline" 2>/dev/null) || continue
  state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "$p/status" 2>/dev/null)
  [ "$state" = Z ] && continue
  case "$cwd $cmd" in *"$r"*) echo "$pid cwd=$cwd cmd=$cmd";; esac
done
"""
    pids = [str(pid) for pid in lab.pids(name)]
    done = lab.exec(name, ["sh", "-c", script, "scan", run_id, *pids], timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture(params=["inprocess", pytest.param("netns", marks=pytest.mark.netns)])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    """Three started hosts of each kind in turn."""
    if request.param == "inprocess":
        thread = LabThread(tmp_path / "lab", n=3)
        with thread as local:
            yield Lab(
                "inprocess",
                local.inventory_path,
                [h.name for h in local.hosts],
                {h.name: h.root for h in local.hosts},
                _thread=thread,
            )
        return
    net: NetnsLab = request.getfixturevalue("netlab")
    yield Lab(
        "netns",
        net.inventory_path,
        list(net.names),
        {h.name: h.home for h in net.hosts},
        _net=net,
    )
