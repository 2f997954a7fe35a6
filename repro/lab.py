"""A local lab for `repro demo` and the in-process tests: n asyncssh servers on 127.0.0.1
that run commands for real, with real host keys, one client key and a root folder per host.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncssh
import yaml

from repro.errors import UsageError
from repro.inventory import Host
from repro.transport.asyncssh import known_hosts_entry
from repro.transport.base import read_tail

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*\Z")
_CHUNK = 65536
#: how long a server waits for a killed command's output pipes before giving up on them
_DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class LabHost:
    """One lab host as the outside sees it."""

    name: str
    port: int
    root: Path

    def __repr__(self) -> str:
        return f"LabHost({self.name!r}, 127.0.0.1:{self.port})"


@dataclass(eq=False)
class _Node:
    """A lab host's private state: its key, its listener and its live connections."""

    host: LabHost
    key: asyncssh.SSHKey
    acceptor: asyncssh.SSHAcceptor | None = None
    conns: set[asyncssh.SSHServerConnection] = field(default_factory=set)

    def __repr__(self) -> str:
        return f"_Node({self.host.name!r}, up={self.acceptor is not None})"


class LocalLab:
    """n SSH servers on loopback, with a generated inventory, key and known_hosts.

    Use as `async with LocalLab(tmp) as lab:`; everything it started is stopped on exit.
    """

    def __init__(
        self,
        base_dir: Path,
        n: int = 3,
        names: list[str] | None = None,
        host_vars: dict[str, dict[str, Any]] | None = None,
        *,
        jump_hosts: bool = False,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        # Whether hosts forward TCP to each other (ProxyJump tests); off, none is forwarded.
        self.jump_hosts = jump_hosts
        self.names = list(names) if names is not None else [f"lab{i}" for i in range(1, n + 1)]
        self.host_vars = dict(host_vars or {})
        _check_names(self.names, self.host_vars)
        self.user = getpass.getuser()
        self._client_key = asyncssh.generate_private_key("ssh-ed25519", comment="repro-lab")
        self._nodes: dict[str, _Node] = {}
        self._pids: set[int] = set()
        self._serving: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"LocalLab({str(self.base_dir)!r}, {len(self.names)} hosts)"

    # --- paths and records ----------------------------------------------------------------

    @property
    def inventory_path(self) -> Path:
        return self.base_dir / "inventory.yaml"

    @property
    def known_hosts_path(self) -> Path:
        return self.base_dir / "known_hosts"

    @property
    def client_key_path(self) -> Path:
        return self.base_dir / "id_ed25519"

    @property
    def hosts(self) -> list[LabHost]:
        return [node.host for node in self._nodes.values()]

    def host_key(self, name: str) -> asyncssh.SSHKey:
        """The private host key of lab host `name` (tests compare fingerprints with it)."""
        return self._node(name).key

    def host(self, name: str) -> Host:
        """The inventory record of lab host `name`, as the inventory loader would build it."""
        node = self._node(name)
        hvars = self._inventory_vars(node)
        return Host(
            name=name,
            address="127.0.0.1",
            port=node.host.port,
            user=self.user,
            key_file=str(self.client_key_path),
            known_hosts=str(self.known_hosts_path),
            groups=("all", "lab"),
            vars=hvars,
        )

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start every host and write the inventory, client key and known_hosts."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            root = self.base_dir / name / "root"
            root.mkdir(parents=True, exist_ok=True)
            key = asyncssh.generate_private_key("ssh-ed25519")
            node = _Node(LabHost(name, 0, root), key)
            self._nodes[name] = node
            await self._listen(node, port=0)
        self._write_files()

    async def aclose(self) -> None:
        """Stop every server and kill whatever the lab's hosts left running."""
        for node in self._nodes.values():
            await self._shut(node)
        _kill_groups(self._leftover_groups())
        self._pids.clear()
        # Let the per-command tasks see their channels close and finish on their own.
        if self._serving:
            await asyncio.wait(set(self._serving), timeout=_DRAIN_SECONDS)

    async def stop_host(self, name: str) -> None:
        """Simulate sshd dying: stop listening and drop every open connection."""
        await self._shut(self._node(name))

    async def start_host(self, name: str) -> None:
        """Bring a stopped host back on the same port with the same host key."""
        node = self._node(name)
        if node.acceptor is None:
            await self._listen(node, port=node.host.port)

    # --- servers --------------------------------------------------------------------------

    async def _listen(self, node: _Node, port: int) -> None:
        authorized = asyncssh.import_authorized_keys(
            self._client_key.export_public_key("openssh").decode("ascii")
        )
        node.acceptor = await asyncssh.listen(
            host="127.0.0.1",
            port=port,
            server_host_keys=[node.key],
            authorized_client_keys=authorized,
            server_factory=lambda: _LabServer(node, self.jump_hosts),
            process_factory=lambda process: self._serve(node, process),
            encoding=None,
            login_timeout=10,
            # asyncssh < 2.17 defaults to False: start_host rebinds the port it just closed
            reuse_address=True,
        )
        if port == 0:
            node.host = LabHost(node.host.name, node.acceptor.get_port(), node.host.root)

    async def _shut(self, node: _Node) -> None:
        acceptor, node.acceptor = node.acceptor, None
        if acceptor is not None:
            acceptor.close()
        # abort, not close: a dying sshd sends no goodbye, and the client must notice.
        for conn in list(node.conns):
            conn.abort()
        node.conns.clear()
        if acceptor is not None:
            await asyncio.wait_for(acceptor.wait_closed(), 5)

    async def _serve(self, node: _Node, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """Run one exec request as `/bin/sh -c <command>`, wired to the channel."""
        argv = ["/bin/sh", "-c", process.command] if process.command is not None else ["/bin/sh"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=node.host.root,
                env=self._env(node.host.root),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Own process group: a closed channel kills the whole command, and setsid'd
                # children (detached builds) are out of reach of that kill, as with sshd.
                start_new_session=True,
            )
        except OSError as exc:
            process.stderr.write(f"lab: cannot start /bin/sh: {exc}\n".encode())
            process.exit(127)
            return
        self._pids.add(proc.pid)
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)
        try:
            await _pump(process, proc)
        finally:
            if task is not None:
                self._serving.discard(task)

    def _env(self, root: Path) -> dict[str, str]:
        return {
            "HOME": str(root),
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "USER": self.user,
            "LOGNAME": self.user,
            "SHELL": "/bin/sh",
        }

    # --- files ----------------------------------------------------------------------------

    def _inventory_vars(self, node: _Node) -> dict[str, Any]:
        hvars: dict[str, Any] = {
            "ansible_host": "127.0.0.1",
            "ansible_port": node.host.port,
            "ansible_user": self.user,
            "ansible_ssh_private_key_file": str(self.client_key_path),
            "repro_known_hosts": str(self.known_hosts_path),
        }
        hvars.update(self.host_vars.get(node.host.name, {}))
        return hvars

    def _write_files(self) -> None:
        key = self._client_key.export_private_key("openssh")
        _write(self.client_key_path, key, mode=0o600)
        pub = self._client_key.export_public_key("openssh")
        _write(self.client_key_path.with_suffix(".pub"), pub, mode=0o644)
        lines = []
        for node in self._nodes.values():
            pub_line = node.key.export_public_key("openssh").decode("ascii")
            lines.append(known_hosts_entry("127.0.0.1", node.host.port, pub_line) + "\n")
        _write(self.known_hosts_path, "".join(lines).encode("ascii"), mode=0o644)
        hosts = {name: self._inventory_vars(node) for name, node in self._nodes.items()}
        inventory = {"all": {"children": {"lab": {"hosts": hosts}}}}
        text = "# written by repro's local lab; regenerated on every start\n"
        text += yaml.safe_dump(inventory, sort_keys=False)
        _write(self.inventory_path, text.encode("utf-8"), mode=0o644)

    # --- cleanup --------------------------------------------------------------------------

    def _node(self, name: str) -> _Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise UsageError(
                f"no lab host named {name!r} (lab hosts: {', '.join(self.names)})"
            ) from None

    def _leftover_groups(self) -> set[int]:
        """Process groups still alive from lab commands, detached ones included."""
        roots = {f"HOME={n.host.root}".encode() for n in self._nodes.values()}
        groups: set[int] = set()
        for pid in self._pids | set(_pids_with_env(roots)):
            try:
                groups.add(os.getpgid(pid))
            except (ProcessLookupError, PermissionError):
                continue
        # Never our own group: that would take the controller (or pytest) down with it.
        groups.discard(os.getpgrp())
        return groups


class _LabServer(asyncssh.SSHServer):
    """Tracks a node's connections (so stop_host can drop them); public key auth only."""

    def __init__(self, node: _Node, jump_host: bool = False) -> None:
        self._node = node
        self._jump_host = jump_host
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._node.conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._node.conns.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # always require auth; the authorized client key is the only way in

    def password_auth_supported(self) -> bool:
        return False

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        # A lab made with jump_hosts=True forwards to its own hosts on loopback; nowhere else.
        return self._jump_host and dest_host == "127.0.0.1"


async def _pump(
    process: asyncssh.SSHServerProcess[bytes], proc: asyncio.subprocess.Process
) -> None:
    """Copy the channel to the command and back; kill the command if the channel goes away."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    feeder = asyncio.create_task(_feed(process, proc))
    outputs: asyncio.Future[Any] = asyncio.ensure_future(_outputs(process, proc))
    channel_gone: asyncio.Future[Any] = asyncio.create_task(process.channel.wait_closed())
    exited = asyncio.create_task(proc.wait())
    try:
        await asyncio.wait({exited, channel_gone}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            _killpg(proc.pid, signal.SIGKILL)  # the client went away: so does its command
            await _reaped(exited, outputs, proc)
            return
        # The command is done; its output may still be in the pipes (or held open by a
        # child that did not detach, which sshd would also wait for).
        await asyncio.wait({outputs, channel_gone}, return_when=asyncio.FIRST_COMPLETED)
        if channel_gone.done():
            _killpg(proc.pid, signal.SIGKILL)
            return
        status = proc.returncode if proc.returncode is not None else 255
        if status < 0:
            process.exit_with_signal(signal.Signals(-status).name[3:])
        else:
            process.exit(status)
    finally:
        feeder.cancel()
        channel_gone.cancel()
        outputs.cancel()
        # Let the cancelled copies see their cancellation before the loop moves on.
        await asyncio.gather(feeder, outputs, return_exceptions=True)
        if proc.returncode is not None:
            # A client that left mid-output (a fetch over its size cap) leaves unread pipes:
            # read them to their end (the group is dead) so they close while the loop runs.
            await _drain(proc)


async def _drain(proc: asyncio.subprocess.Process) -> None:
    """Read a dead command's output pipes to their end, both at once, for at most
    _DRAIN_SECONDS (a detached child may still hold one open)."""
    pipes = [pipe for pipe in (proc.stdout, proc.stderr) if pipe is not None]
    reads = (asyncio.wait_for(read_tail(pipe, 1), _DRAIN_SECONDS) for pipe in pipes)
    await asyncio.gather(*reads, return_exceptions=True)


async def _reaped(
    exited: asyncio.Task[int], outputs: asyncio.Future[Any], proc: asyncio.subprocess.Process
) -> None:
    """Wait for a killed command, reading its output pipes to their end meanwhile.

    A copy held up by the channel's flow control (a client that left mid-fetch) stops reading
    the pipes, and asyncio reports a child's exit only once its pipes have closed: waiting
    for the exit alone would hang (until the lab's close gives up on it, 5 s later).
    """
    outputs.cancel()
    await asyncio.gather(outputs, return_exceptions=True)
    await _drain(proc)  # the group is killed: nothing writes to them any more
    await exited


async def _feed(
    process: asyncssh.SSHServerProcess[bytes], proc: asyncio.subprocess.Process
) -> None:
    """Channel -> command stdin; a signal request from the client goes to the command."""
    assert proc.stdin is not None
    try:
        while True:
            try:
                chunk = await process.stdin.read(_CHUNK)
            except asyncssh.SignalReceived as sig:
                _signal_named(proc.pid, sig.signal)
                continue
            except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
                continue
            if not chunk:
                break
            proc.stdin.write(chunk)
            await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command stopped reading: the rest of its input is not wanted
    except asyncssh.Error:
        pass  # the channel closed; the pump kills the command
    finally:
        proc.stdin.close()


async def _outputs(
    process: asyncssh.SSHServerProcess[bytes], proc: asyncio.subprocess.Process
) -> None:
    """Both outputs to the channel, then end of file on it, as sshd does once a command has
    closed stdout and stderr, whether or not it has exited (a held reply, repro.detach)."""
    assert proc.stdout is not None and proc.stderr is not None
    await asyncio.gather(_copy(proc.stdout, process.stdout), _copy(proc.stderr, process.stderr))
    try:
        process.stdout.write_eof()
    except (OSError, asyncssh.Error):
        pass  # the channel is closing already


async def _copy(src: asyncio.StreamReader, dst: asyncssh.SSHWriter[bytes]) -> None:
    while chunk := await src.read(_CHUNK):
        dst.write(chunk)
        await dst.drain()


def _signal_named(pid: int, name: str) -> None:
    try:
        signum = signal.Signals["SIG" + name]
    except KeyError:
        return
    _killpg(pid, signum)


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_groups(groups: set[int]) -> None:
    for pgid in groups:
        _killpg(pgid, signal.SIGKILL)


def _pids_with_env(needles: set[bytes]) -> list[int]:
    """Pids of our own processes whose environment holds one of `needles` (Linux /proc)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = set(fh.read().split(b"\0"))
        except OSError:
            continue  # gone, or not ours
        if env & needles:
            found.append(int(entry))
    return found


def _check_names(names: list[str], host_vars: dict[str, dict[str, Any]]) -> None:
    if not names:
        raise UsageError("a lab needs at least one host")
    for name in names:
        if not _NAME.match(name):
            raise UsageError(f"lab host name {name!r} must use only letters, digits, _ . -")
    if len(set(names)) != len(names):
        raise UsageError(f"lab host names repeat: {', '.join(names)}")
    for name in host_vars:
        if name not in names:
            raise UsageError(f"host_vars names {name!r}, which is not a lab host")


def _write(path: Path, data: bytes, *, mode: int) -> None:
    """Write atomically with `mode` from the start (a key must never be readable by others)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
