"""Real OpenSSH hosts in network namespaces: the third test tier and the `repro lab` command.

Each host is a netns on a private bridge in 198.18.0.0/15 with its own hostname, HOME, /tmp,
optional /proc/cpuinfo and sshd; faults (kill sshd, link down, new host key) are real.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import yaml

from repro.errors import ReproError, UnknownHostError, UsageError

SSHD = "/usr/sbin/sshd"
# Shared by every lab on the machine: id allocation lock, one lock file per live lab, and the
# per-lab directory sshd and the holders see base_dir through (see _holder_script).
STATE_DIR = Path("/run/repro-netlab")
MAX_HOSTS = 500
#: hosts a lab puts in its one subnet 198.18.<id>.0/24 (.10 to .254); a larger lab takes
#: 198.19.<id>.0/24 too, 250 hosts in each (.2 to .251): both within 198.18.0.0/15
_ONE_SUBNET = 245
_PER_SUBNET = 250
SSH_PORT = 22
GROUP = "netlab"
LAB_PREFIX = "rlab"  # `repro lab up` labs, apart from the tests' "rl" labs
STATE_FILE = "netlab.json"  # in base_dir of a detached lab
STATE_SCHEMA = "repro-netlab/1"

# Letters only, so `<prefix><id>v<i>` (veth) can never be read back with another prefix's id.
_PREFIX_RE = re.compile(r"^[a-z]{1,6}$")
# A valid inventory name, path component and UTS hostname at once.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_LAB_IDS = range(1, 255)  # third octet of 198.18.<id>.0/24; 0 and 255 left alone
_TOOLS = ("ip", "nsenter", "unshare", "ssh-keygen")
_EPERM_HINTS = ("Operation not permitted", "Permission denied", "Read-only file system")


class NetlabError(ReproError):
    """A lab could not be built, changed or torn down; the message names the host and command."""


class NetlabUnavailable(NetlabError):
    """This machine cannot host a lab at all (not root, no sshd, no `ip`, netns refused)."""


@dataclass(frozen=True)
class NetHost:
    """One lab host as the controller sees it. home/tmp are the root-namespace paths."""

    name: str
    address: str
    netns: str
    home: Path
    tmp: Path = field(default=Path("/nonexistent"), compare=False)
    veth: str = field(default="", compare=False)  # root-side end, the one link_down takes down

    def __repr__(self) -> str:
        return f"NetHost({self.name!r}, {self.address}, netns={self.netns!r})"


@dataclass
class _Proc:
    """The processes the lab started for one host; reaped on stop and close."""

    holder: subprocess.Popen[bytes] | None = None
    holder_pid: int = 0  # the `sleep infinity` that owns the host's UTS and mount namespaces
    sshd: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"_Proc(holder={self.holder_pid}, sshd={self.sshd.pid if self.sshd else None})"


class NetnsLab:
    """n real OpenSSH hosts, each in its own netns/UTS/mount namespaces, for one controller.

    Use as a context manager (or `start()` / `close()`); `close()` leaves nothing behind and is
    idempotent. `cpuinfo` maps a host name to the text of its /proc/cpuinfo (a `str`) or to a
    file holding it (a `Path`). `shells` maps a host name to the program that is `/bin/sh`
    on that host (bind-mounted over it in the host's mount namespace: dash, bash, busybox).
    """

    def __init__(
        self,
        base_dir: Path,
        n: int = 3,
        *,
        names: list[str] | None = None,
        cpuinfo: dict[str, str | Path] | dict[str, str] | dict[str, Path] | None = None,
        prefix: str = "rl",
        shells: dict[str, str | Path] | dict[str, str] | dict[str, Path] | None = None,
        sshd: str = SSHD,
        ready_timeout: float = 30.0,
        own_pids: bool = False,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        # Each host in a PID namespace of its own, with its own /proc, as separate machines
        # are: what a host scans in /proc (the supervisor's cookie scan) is then its own
        # processes, not every process of every host of the lab (N times as many). The
        # benchmarks use it; the tests keep one PID space (they check host pids from outside).
        self.own_pids = own_pids
        self.prefix = _check_prefix(prefix)
        self.names = _check_names(n, names)
        self.cpuinfo: dict[str, str | Path] = _check_cpuinfo(dict(cpuinfo or {}), self.names)
        self.shells = _check_shells(dict(shells or {}), self.names)
        self.sshd_path = sshd
        self.ready_timeout = ready_timeout
        self.lab_id: int | None = None
        self._hosts: list[NetHost] = []
        self._procs: dict[str, _Proc] = {}
        self._lock_fd: int | None = None
        self._closed = False

    def __repr__(self) -> str:
        where = (
            " + ".join(f"{g.rsplit('.', 1)[0]}.0/24" for g in self.gateways)
            if self.lab_id is not None
            else "not started"
        )
        return f"NetnsLab({self.prefix!r}, {len(self.names)} hosts, {where})"

    # --- context manager ------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- what callers read ----------------------------------------------------------------

    @property
    def hosts(self) -> list[NetHost]:
        return list(self._hosts)

    @property
    def inventory_path(self) -> Path:
        return self.base_dir / "inventory.yaml"

    @property
    def known_hosts_path(self) -> Path:
        return self.base_dir / "known_hosts"

    @property
    def key_path(self) -> Path:
        return self.base_dir / "id_ed25519"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br{self._id()}"

    @property
    def gateway(self) -> str:
        """The controller's address on the lab bridge (what hosts see connections come from)."""
        return f"198.18.{self._id()}.1"

    @property
    def gateways(self) -> list[str]:
        """The bridge's address in each of the lab's subnets (the first is `gateway`)."""
        subnets = 1 if len(self.names) <= _ONE_SUBNET else 2
        return [f"198.{18 + s}.{self._id()}.1" for s in range(subnets)]

    def _address(self, index: int) -> str:
        if len(self.names) <= _ONE_SUBNET:
            return f"198.18.{self._id()}.{index + 10}"
        return f"198.{18 + index // _PER_SUBNET}.{self._id()}.{index % _PER_SUBNET + 2}"

    def host(self, name: str) -> NetHost:
        for host in self._hosts:
            if host.name == name:
                return host
        raise UnknownHostError(f"netlab: no host named {name!r} (hosts: {', '.join(self.names)})")

    def ssh_argv(self, name: str, command: str, *, connect_timeout: float = 5.0) -> list[str]:
        """An OpenSSH client command line that reaches `name` with strict host-key checking."""
        return [
            "ssh",
            "-F", "/dev/null",
            "-i", str(self.key_path),
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts_path}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"ConnectTimeout={max(1, int(connect_timeout))}",
            "-o", "LogLevel=ERROR",
            "-p", str(SSH_PORT),
            f"root@{self.host(name).address}",
            "--",
            command,
        ]  # fmt: skip

    # --- set-up ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Build the lab; on any failure tear down what was built and re-raise."""
        if self._hosts or self._closed:
            raise NetlabError(f"netlab {self!r}: start() called twice")
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        _preflight(self.sshd_path)
        started = time.monotonic()
        self._write_client_files()
        self._allocate()
        self._hosts = self._planned_hosts()
        self._write_host_files()
        self._create_links()
        self._start_holders(started + self.ready_timeout)
        for host in self._hosts:
            self._spawn_sshd(host)
        _wait_listening(self._hosts, self._procs, started + self.ready_timeout)
        self._write_known_hosts()
        self._write_inventory()

    def _id(self) -> int:
        if self.lab_id is None:
            raise NetlabError(f"netlab {self.prefix!r}: the lab is not started")
        return self.lab_id

    def _alias(self) -> Path:
        """base_dir as sshd and the holders see it: /tmp and /root are private on the hosts."""
        return STATE_DIR / f"{self.prefix}-{self._id()}"

    def _planned_hosts(self) -> list[NetHost]:
        """The hosts `start` makes, once the lab has its id."""
        return [self._make_host(i, name) for i, name in enumerate(self.names, start=1)]

    def _make_host(self, index: int, name: str) -> NetHost:
        lab = self._id()
        return NetHost(
            name=name,
            address=self._address(index - 1),  # index counts from 1 (names), addresses from 0
            netns=f"{self.prefix}-{lab}-{index}",
            home=self.base_dir / name / "home",
            tmp=self.base_dir / name / "tmp",
            veth=f"{self.prefix}{lab}v{index}",
        )

    def _write_client_files(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        _keygen(self.key_path, "repro-netlab-controller")
        pub = (self.base_dir / "id_ed25519.pub").read_text()
        _write(self.base_dir / "authorized_keys", pub, 0o644)

    def _allocate(self) -> None:
        with _alloc_lock():
            used = _used_lab_ids()
            free = [i for i in _LAB_IDS if i not in used]
            if not free:
                raise NetlabError("netlab: every 198.18.<id>.0/24 lab subnet is in use")
            self.lab_id = free[0]
            self._lock_fd = _take_lab_lock(self.prefix, self.lab_id)
            self._alias().mkdir(mode=0o755, exist_ok=True)
            _probe_netns(f"{self.prefix}-{self.lab_id}-0")
            # The address goes on under the lock so the next allocator sees this id as used.
            _ip_batch(
                [
                    f"link add name {self.bridge} type bridge",
                    f"link set dev {self.bridge} addrgenmode none",
                    *(f"addr add {g}/24 dev {self.bridge}" for g in self.gateways),
                    f"link set dev {self.bridge} up",
                ],
                what=f"bridge {self.bridge}",
            )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir

    def _write_host_files(self) -> None:
        penalties = _sshd_supports(self.sshd_path, "PerSourcePenalties=no")
        jobs = []
        for host in self._hosts:
            hdir = self.base_dir / host.name
            # A reused base_dir must not hand us an earlier lab's holder pid or logs.
            for old in ("holder.pid", "holder.pid.new", "sshd.pid", "holder.log", "sshd.log"):
                with contextlib.suppress(FileNotFoundError):
                    (hdir / old).unlink()
            for sub in (host.home, host.tmp):
                shutil.rmtree(sub, ignore_errors=True)
                sub.mkdir(parents=True)
            host.tmp.chmod(0o1777)  # like a real /tmp
            host.home.chmod(0o700)
            cpu = self.cpuinfo.get(host.name)
            if cpu is not None:
                text = cpu.read_text() if isinstance(cpu, Path) else cpu
                _write(hdir / "cpuinfo", text, 0o444)
            _write(hdir / "sshd_config", self._sshd_config(host, penalties), 0o644)
            jobs.append((hdir / "ssh_host_ed25519_key", f"repro-netlab-{host.name}"))
        with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
            list(pool.map(lambda job: _keygen(*job), jobs))

    def _sshd_config(self, host: NetHost, penalties: bool) -> str:
        hdir = self._alias() / host.name
        lines = [
            f"# repro.netlab host {host.name} ({host.netns}); removed with the lab",
            f"ListenAddress {host.address}:{SSH_PORT}",
            "AddressFamily inet",
            f"HostKey {hdir / 'ssh_host_ed25519_key'}",
            f"PidFile {hdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self._alias() / 'authorized_keys'}",
            # The key files live under temp dirs whose owners and modes sshd would refuse.
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "Subsystem sftp internal-sftp",
            # One controller opens up to 100 connections at once from one address.
            "MaxStartups 200",
            "MaxSessions 100",
            "LoginGraceTime 30",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "LogLevel ERROR",
        ]
        if penalties:
            # OpenSSH >= 9.8 would otherwise block the controller after the fault tests.
            lines.append("PerSourcePenalties no")
        return "\n".join(lines) + "\n"

    def _create_links(self) -> None:
        root = []
        for host in self._hosts:
            root += [
                f"netns add {host.netns}",
                f"link add name {host.veth} type veth peer name eth0 netns {host.netns}",
                f"link set dev {host.veth} addrgenmode none",
                f"link set dev {host.veth} master {self.bridge} up",
            ]
        _ip_batch(root, what=f"netns for lab {self.prefix}-{self._id()}")

        def inside(host: NetHost) -> None:
            cmds = [
                "link set dev lo up",
                f"addr add {host.address}/24 dev eth0",
                "link set dev eth0 up",
            ]
            _ip_batch(cmds, netns=host.netns, what=f"host {host.name} ({host.netns})")

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(inside, self._hosts))

    def _start_holders(self, deadline: float) -> None:
        for host in self._hosts:
            script = self._holder_script(host)
            argv = ["ip", "netns", "exec", host.netns, "unshare", "--uts", "--mount", "--fork"]
            if self.own_pids:
                argv += ["--pid", "--mount-proc"]
            argv += ["--propagation", "private", "sh", "-c", script]
            proc = _spawn(argv, self.base_dir / host.name / "holder.log")
            self._procs[host.name] = _Proc(holder=proc)
        for host in self._hosts:
            self._procs[host.name].holder_pid = self._wait_holder(host, deadline)

    def _holder_script(self, host: NetHost) -> str:
        alias = self._alias()
        hdir = alias / host.name
        q = shlex.quote
        steps = [
            "set -e",
            # Bind base_dir where it stays visible once /tmp and /root are covered below.
            f"mount --bind {q(str(self.base_dir))} {q(str(alias))}",
            f"mount --bind {q(str(hdir / 'home'))} /root",
            f"mount --bind {q(str(hdir / 'tmp'))} /tmp",
        ]
        if host.name in self.cpuinfo:
            steps.append(f"mount --bind {q(str(hdir / 'cpuinfo'))} /proc/cpuinfo")
        if host.name in self.shells:
            # over what /bin/sh resolves to (here the same as outside): a symlink is no target
            sh = Path("/bin/sh").resolve()
            steps.append(f"mount --bind {q(str(self.shells[host.name]))} {q(str(sh))}")
        steps += [
            f"printf %s {q(host.name)} > /proc/sys/kernel/hostname",
            f"echo $$ > {q(str(hdir / 'holder.pid.new'))}",
            f"mv {q(str(hdir / 'holder.pid.new'))} {q(str(hdir / 'holder.pid'))}",
        ]
        if self.own_pids:
            # PID 1 of the host: it must reap the orphans a detached round leaves (dash's
            # `wait` reaps any child), and a signal from outside must end it
            steps.append("trap 'exit 0' TERM INT HUP; while :; do sleep 3600 & wait; done")
        else:
            steps.append("exec sleep infinity")
        return "; ".join(steps)

    def _wait_holder(self, host: NetHost, deadline: float) -> int:
        pidfile = self.base_dir / host.name / "holder.pid"
        proc = self._procs[host.name].holder
        assert proc is not None
        while time.monotonic() < deadline:
            text = pidfile.read_text().strip() if pidfile.exists() else ""
            if text.isdigit() and self.own_pids:
                child = _child_of(proc.pid)  # $$ is 1 in its own PID namespace
                if child:
                    return child
            elif text.isdigit():
                return int(text)
            if proc.poll() is not None:
                tail = _tail(self.base_dir / host.name / "holder.log")
                raise NetlabError(
                    f"netlab host {host.name}: namespace holder exited ({proc.returncode}): {tail}"
                )
            time.sleep(0.02)
        raise NetlabError(f"netlab host {host.name}: namespace holder not ready in time")

    def _spawn_sshd(self, host: NetHost) -> None:
        procs = self._procs[host.name]
        config = self._alias() / host.name / "sshd_config"
        argv = self._nsenter(host.name) + [self.sshd_path, "-D", "-e", "-f", str(config)]
        procs.sshd = _spawn(argv, self.base_dir / host.name / "sshd.log")

    def _nsenter(self, name: str) -> list[str]:
        pid = self._procs[name].holder_pid if name in self._procs else 0
        if not pid:
            raise NetlabError(f"netlab host {name}: not running")
        spaces = ["--mount", "--uts", "--net"] + (["--pid"] if self.own_pids else [])
        return ["nsenter", f"--target={pid}", *spaces, "--wd=/root", "--"]

    def _write_known_hosts(self) -> None:
        lines = []
        for host in self._hosts:
            pub = (self.base_dir / host.name / "ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"{host.address} {pub[0]} {pub[1]}")
        _write(self.known_hosts_path, "\n".join(lines) + "\n", 0o644)

    def _write_inventory(self) -> None:
        hosts = {
            h.name: {
                "ansible_host": h.address,
                "ansible_port": SSH_PORT,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key_path),
                "repro_known_hosts": str(self.known_hosts_path),
            }
            for h in self._hosts
        }
        doc = {"all": {"children": {GROUP: {"hosts": hosts}}}}
        header = f"# repro netlab {self.prefix}-{self._id()}: {len(hosts)} hosts on {self.bridge}\n"
        _write(self.inventory_path, header + yaml.safe_dump(doc, sort_keys=False), 0o644)

    # --- faults and probes ----------------------------------------------------------------

    def pids(self, name: str) -> list[int]:
        """Every process in the host's network namespace (as `ip netns pids` lists them)."""
        return _netns_pids([self.host(name).netns]).get(self.host(name).netns, [])

    def stop_sshd(self, name: str, timeout: float = 10.0) -> None:
        """SIGKILL the host's sshd listener and every per-connection sshd: open sessions drop."""
        host = self.host(name)
        deadline = time.monotonic() + timeout
        while True:
            victims = [pid for pid in self.pids(name) if _is_sshd(pid)]
            if not victims:
                break
            if time.monotonic() > deadline:
                raise NetlabError(f"netlab host {name}: sshd pids {victims} survive SIGKILL")
            for pid in victims:
                _kill(pid)
            time.sleep(0.02)
        proc = self._procs[host.name].sshd
        if proc is not None:
            _reap(proc)
            self._procs[host.name].sshd = None

    def start_sshd(self, name: str) -> None:
        """Start sshd again in the host's namespaces and wait until it accepts connections."""
        host = self.host(name)
        proc = self._procs[host.name].sshd
        if proc is not None and proc.poll() is None:
            return
        self._spawn_sshd(host)
        _wait_listening([host], self._procs, time.monotonic() + self.ready_timeout)

    def link_down(self, name: str) -> None:
        """Take the root-side veth down: packets to the host vanish, connections time out."""
        host = self.host(name)
        _ip_batch([f"link set dev {host.veth} down"], what=f"host {name} link down")

    def link_up(self, name: str) -> None:
        host = self.host(name)
        _ip_batch([f"link set dev {host.veth} up"], what=f"host {name} link up")

    def regenerate_host_key(self, name: str) -> str:
        """Give the host a new key and restart its sshd; known_hosts keeps the old key.

        Returns the new public key line, for tests that then trust it on purpose.
        """
        host = self.host(name)
        key = self.base_dir / host.name / "ssh_host_ed25519_key"
        _keygen(key, f"repro-netlab-{host.name}")
        self.stop_sshd(name)
        self.start_sshd(name)
        return (key.parent / (key.name + ".pub")).read_text().strip()

    def exec(
        self, name: str, argv: Sequence[str], *, timeout: float = 30.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the host's namespaces (not over SSH); never raises on exit status."""
        env = {k: v for k, v in os.environ.items() if k != "TMPDIR"}
        env["HOME"] = "/root"
        return subprocess.run(
            self._nsenter(self.host(name).name) + list(argv),
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=env,
            check=False,
        )

    # --- teardown -------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every process in the lab, delete netns, veths and bridge. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.lab_id is not None:
                _teardown(self.prefix, self.lab_id)
        finally:
            for procs in self._procs.values():
                for proc in (procs.holder, procs.sshd):
                    if proc is not None:
                        _reap(proc)
            if self._lock_fd is not None:
                with contextlib.suppress(OSError):
                    _lock_path(self.prefix, self._id()).unlink()
                os.close(self._lock_fd)
                self._lock_fd = None

    def detach(self) -> Path:
        """Leave the lab running after this process exits, for `repro lab up`.

        Writes base_dir/netlab.json and a keep marker that cleanup_stale respects; only
        `lab_down(base_dir)` removes the lab afterwards. close() becomes a no-op here.
        """
        lab_id = self._id()
        state = {
            "schema": STATE_SCHEMA,
            "prefix": self.prefix,
            "lab_id": lab_id,
            "base_dir": str(self.base_dir),
            "bridge": self.bridge,
            "hosts": [
                {"name": h.name, "address": h.address, "netns": h.netns} for h in self._hosts
            ],
        }
        _write(_keep_path(self.prefix, lab_id), str(self.base_dir) + "\n", 0o644)
        _write(self.base_dir / STATE_FILE, json.dumps(state, indent=2) + "\n", 0o644)
        self._closed = True
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the keep marker, not this process, now says "alive"
            self._lock_fd = None
        return self.base_dir / STATE_FILE


def run_lab(base_dir: Path, n: int, cpuinfo_files: dict[str, Path], prefix: str = "rl") -> NetnsLab:
    """Clean up crashed labs with `prefix`, then start a new one (the caller closes it)."""
    cleanup_stale(prefix)
    return NetnsLab(base_dir, n, cpuinfo=dict(cpuinfo_files), prefix=prefix).start()


def lab_up(
    base_dir: Path, n: int, cpuinfo_files: dict[str, Path], prefix: str = LAB_PREFIX
) -> NetnsLab:
    """Start a lab that outlives this process (`repro lab up`); `lab_down` removes it."""
    base = Path(base_dir).resolve()
    if (base / STATE_FILE).exists():
        raise UsageError(f"netlab: a lab is already up in {base}; stop it with `repro lab down`")
    cleanup_stale(prefix)
    lab = NetnsLab(base, n, cpuinfo=dict(cpuinfo_files), prefix=prefix).start()
    try:
        lab.detach()
    except BaseException:
        lab._closed = False  # detach failed half-way: tear the lab down after all
        lab.close()
        raise
    return lab


def lab_down(base_dir: Path) -> list[str]:
    """Remove the lab `lab_up` started in base_dir; returns the netns and links removed."""
    base = Path(base_dir).resolve()
    state_path = base / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
        prefix = _check_prefix(state["prefix"])
        lab_id = int(state["lab_id"])
    except FileNotFoundError:
        raise UsageError(f"netlab: no lab is up in {base} (no {STATE_FILE})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"netlab: {state_path} is not a lab state file ({exc})") from None
    if os.geteuid() != 0:
        raise NetlabUnavailable(f"netlab needs root (running as uid {os.geteuid()})")
    removed: list[str] = []
    with _alloc_lock():
        keep = _keep_path(prefix, lab_id)
        owner = keep.read_text().strip() if keep.exists() else ""
        # After a reboot the id may belong to someone else's lab: only remove our own.
        if owner == str(base):
            removed = _teardown(prefix, lab_id)
            for path in (keep, _lock_path(prefix, lab_id)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    state_path.unlink()
    return removed


def cleanup_stale(prefix: str = "rl") -> list[str]:
    """Remove labs with `prefix` whose owning process is gone; live labs are left alone.

    Returns the names of the namespaces and links it removed.
    """
    _check_prefix(prefix)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return []
    removed: list[str] = []
    with _alloc_lock():
        for lab_id in sorted(_lab_ids_of(prefix)):
            lock = _lock_path(prefix, lab_id)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if _keep_path(prefix, lab_id).exists():
                    continue  # started by `repro lab up`; only lab_down removes it
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its owner is alive
                removed += _teardown(prefix, lab_id)
                with contextlib.suppress(OSError):
                    lock.unlink()
            finally:
                os.close(fd)
    return removed


# --- validation ---------------------------------------------------------------------------


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise UsageError(f"netlab: prefix {prefix!r} must be 1-6 lowercase letters")
    return prefix


def _check_names(n: int, names: list[str] | None) -> list[str]:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_HOSTS:
        raise UsageError(f"netlab: n={n!r} must be a whole number from 1 to {MAX_HOSTS}")
    if names is None:
        return [f"h{i}" for i in range(1, n + 1)]
    names = list(names)
    if len(names) != n:
        raise UsageError(f"netlab: n={n} but {len(names)} names were given")
    for name in names:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise UsageError(f"netlab: host name {name!r} must match {_NAME_RE.pattern}")
    dupes = sorted({x for x in names if names.count(x) > 1})
    if dupes:
        raise UsageError(f"netlab: host name {dupes[0]!r} given twice")
    return names


def _check_cpuinfo(cpuinfo: dict[str, str | Path], names: list[str]) -> dict[str, str | Path]:
    for name, value in cpuinfo.items():
        if name not in names:
            raise UsageError(f"netlab: cpuinfo for {name!r}, which is not a lab host")
        if isinstance(value, Path) and not value.is_file():
            raise UsageError(f"netlab: cpuinfo file {str(value)!r} for {name!r} does not exist")
        if not isinstance(value, (str, Path)):
            raise UsageError(f"netlab: cpuinfo for {name!r} must be text or a Path")
    return cpuinfo


def _check_shells(shells: dict[str, str | Path], names: list[str]) -> dict[str, str | Path]:
    unknown = sorted(set(shells) - set(names))
    if unknown:
        raise UsageError(f"netlab: shells for unknown hosts: {', '.join(unknown)}")
    for name, path in shells.items():
        if not Path(path).is_absolute() or not os.access(path, os.X_OK):
            raise UsageError(f"netlab: the shell for {name}, {path}, is not an executable path")
    return shells


def _preflight(sshd: str) -> None:
    if os.geteuid() != 0:
        raise NetlabUnavailable(f"netlab needs root (running as uid {os.geteuid()})")
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        raise NetlabUnavailable(
            f"netlab needs {', '.join(missing)} on PATH (iproute2, util-linux, openssh-client)"
        )
    if not os.access(sshd, os.X_OK):
        raise NetlabUnavailable(f"netlab needs {sshd} (install openssh-server)")


# --- ip, processes, files -----------------------------------------------------------------


def _ip_batch(cmds: list[str], *, what: str, netns: str | None = None, force: bool = False) -> str:
    """Run `ip` commands in one process; the error names `what` and the failing command."""
    argv = (
        ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + ["-batch", "-"]
    )
    try:
        done = subprocess.run(
            argv,
            input="\n".join(cmds) + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NetlabError(f"netlab {what}: `{' '.join(argv)}` timed out") from exc
    if done.returncode != 0 and not force:
        detail = " ".join(done.stderr.split())[:300] or f"exit status {done.returncode}"
        cls = NetlabUnavailable if any(h in done.stderr for h in _EPERM_HINTS) else NetlabError
        raise cls(f"netlab {what}: ip failed: {detail}")
    return done.stdout


def _ip_out(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise NetlabError(f"netlab: `ip {' '.join(args)}` failed: {done.stderr.strip()[:300]}")
    return done.stdout


def _probe_netns(name: str) -> None:
    """Create and delete one netns so a refusal reads as 'unavailable', not as a bug."""
    done = subprocess.run(
        ["ip", "netns", "add", name], check=False, capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        raise NetlabUnavailable(f"netlab: cannot create network namespaces: {done.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)


def _link_names() -> list[str]:
    names = []
    for line in _ip_out("-o", "link", "show").splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def _netns_names() -> list[str]:
    return [line.split()[0] for line in _ip_out("netns", "list").splitlines() if line.strip()]


def _used_lab_ids() -> set[int]:
    """Subnet ids taken by any lab (any prefix), or by anything else routed in 198.18/15."""
    text = _ip_out("-o", "-4", "addr", "show") + _ip_out("-4", "route", "show", "table", "all")
    used = {int(m) for m in re.findall(r"\b198\.1[89]\.(\d+)\.", text)}
    used |= {
        int(m) for m in re.findall(r"^[a-z]+-(\d+)-\d+$", "\n".join(_netns_names()), re.MULTILINE)
    }
    if STATE_DIR.is_dir():
        used |= {
            int(m)
            for p in STATE_DIR.iterdir()
            for m in re.findall(r"^[a-z]+-(\d+)(?:\.lock|\.keep)?$", p.name)
        }
    return used


def _lab_ids_of(prefix: str) -> set[int]:
    p = re.escape(prefix)
    ids = {int(m) for n in _netns_names() for m in re.findall(rf"^{p}-(\d+)-\d+$", n)}
    for link in _link_names():
        match = re.match(rf"^{p}br(\d+)$", link) or re.match(rf"^{p}(\d+)v\d+$", link)
        if match:
            ids.add(int(match.group(1)))
    if STATE_DIR.is_dir():
        ids |= {
            int(m)
            for q in STATE_DIR.iterdir()
            for m in re.findall(rf"^{p}-(\d+)(?:\.lock|\.keep)?$", q.name)
        }
    return ids


def _teardown(prefix: str, lab_id: int) -> list[str]:
    """Remove everything of lab `prefix`-`lab_id`: processes, netns, veths, bridge, alias dir."""
    p = re.escape(prefix)
    bridge = f"{prefix}br{lab_id}"
    spaces = [n for n in _netns_names() if re.match(rf"^{p}-{lab_id}-\d+$", n)]
    veths = [n for n in _link_names() if re.match(rf"^{p}{lab_id}v\d+$", n)]
    _kill_all(spaces)
    if spaces:
        _ip_batch(
            [f"netns del {n}" for n in spaces], what=f"teardown of {prefix}-{lab_id}", force=True
        )
    # The kernel removes each veth pair with its emptied netns, in one batch: ~50x faster than
    # `ip link del` per veth for n=100. Whatever is still there after a while goes by hand.
    _wait_gone(veths, timeout=5.0)
    stale = [n for n in _link_names() if n in veths or n == bridge]
    if stale:
        _ip_batch(
            [f"link del dev {n}" for n in stale], what=f"teardown of {prefix}-{lab_id}", force=True
        )
    with contextlib.suppress(FileNotFoundError):
        (STATE_DIR / f"{prefix}-{lab_id}").rmdir()
    removed = spaces + veths + ([bridge] if bridge in stale else [])
    left = [n for n in _netns_names() if n in spaces] + [n for n in _link_names() if n in removed]
    if left:
        raise NetlabError(f"netlab teardown of {prefix}-{lab_id} left {', '.join(left)}")
    return removed


def _wait_gone(links: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while links and time.monotonic() < deadline:
        present = set(_link_names())
        if not any(n in present for n in links):
            return
        time.sleep(0.02)


def _netns_pids(spaces: list[str]) -> dict[str, list[int]]:
    """pids per netns name, matched by namespace inode exactly as `ip netns pids` does."""
    wanted: dict[tuple[int, int], str] = {}
    for name in spaces:
        with contextlib.suppress(OSError):
            st = os.stat(f"/run/netns/{name}")
            wanted[(st.st_dev, st.st_ino)] = name
    found: dict[str, list[int]] = {name: [] for name in spaces}
    if not wanted:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # exited, or a kernel thread
        owner = wanted.get((st.st_dev, st.st_ino))
        if owner is not None:
            found[owner].append(int(entry))
    return found


def _kill_all(spaces: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for group in _netns_pids(spaces).values() for pid in group]
        if not pids:
            return
        if time.monotonic() > deadline:
            raise NetlabError(
                f"netlab: processes {pids[:10]} in {', '.join(spaces)} survive SIGKILL"
            )
        for pid in pids:
            _kill(pid)
        time.sleep(0.02)


def _child_of(pid: int) -> int:
    """The one child of `pid` (unshare --fork's: PID 1 of the host's namespace), by its pid out
    here; 0 when it has none (yet)."""
    try:
        words = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    return int(words[0]) if words else 0


def _kill(pid: int) -> None:
    # A killed child of ours turns zombie, and zombies have no ns/net link, so the scan that
    # found it no longer sees it; Popen.wait reaps it later.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _is_sshd(pid: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        argv0 = (
            Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        )
    except OSError:
        return False
    # Listener: comm "sshd"; per-connection: "sshd" or, since 9.8, "sshd-session"/"sshd-auth".
    return comm.startswith("sshd") or os.path.basename(argv0).startswith("sshd")


def _wait_listening(hosts: list[NetHost], procs: dict[str, _Proc], deadline: float) -> None:
    for host in hosts:
        while True:
            sshd = procs[host.name].sshd
            if sshd is not None and sshd.poll() is not None:
                log = _tail(host.home.parent / "sshd.log")
                raise NetlabError(
                    f"netlab host {host.name}: sshd exited ({sshd.returncode}): {log}"
                )
            try:
                with socket.create_connection((host.address, SSH_PORT), timeout=1.0):
                    break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise NetlabError(
                        f"netlab host {host.name}: sshd on {host.address}:{SSH_PORT} not accepting ({exc})"
                    ) from exc
                time.sleep(0.02)


def _sshd_supports(sshd: str, option: str) -> bool:
    """Whether this sshd knows `option` (newer knobs make older sshd refuse the whole config)."""
    done = subprocess.run(
        [sshd, "-t", "-f", "/dev/null", "-o", option],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return "Bad configuration option" not in done.stderr and "Unsupported option" not in done.stderr


def _keygen(path: Path, comment: str) -> None:
    for old in (path, path.parent / (path.name + ".pub")):
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    done = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise NetlabError(f"netlab: ssh-keygen for {path} failed: {done.stderr.strip()}")


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.parent / (path.name + ".new")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(no output)"
    except OSError:
        return "(no log)"


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a long-lived lab process logging to log_path."""
    with open(log_path, "ab") as log:
        # Own session: a Ctrl-C at the terminal must not kill lab hosts before teardown.
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )


def _lock_path(prefix: str, lab_id: int) -> Path:
    return STATE_DIR / f"{prefix}-{lab_id}.lock"


def _keep_path(prefix: str, lab_id: int) -> Path:
    return STATE_DIR / f"{prefix}-{lab_id}.keep"


def _take_lab_lock(prefix: str, lab_id: int) -> int:
    """Held for the lab's lifetime: cleanup_stale treats a lab whose lock is free as crashed."""
    fd = os.open(_lock_path(prefix, lab_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise NetlabError(f"netlab: lab {prefix}-{lab_id} is locked by another process") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # for people; the flock is what counts
    return fd


@contextlib.contextmanager
def _alloc_lock(timeout: float = 60.0) -> Iterator[None]:
    try:
        STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise NetlabUnavailable(f"netlab: cannot create {STATE_DIR}: {exc.strerror}") from exc
    fd = os.open(STATE_DIR / "alloc.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if (
                    exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK)
                    or time.monotonic() > deadline
                ):
                    raise NetlabError(
                        f"netlab: cannot lock {STATE_DIR / 'alloc.lock'}: {exc}"
                    ) from exc
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
