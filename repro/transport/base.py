"""The transport contract: the few verbs the runner needs from any way of reaching a host.

Every transport (asyncssh, fabric, local) passes the same contract tests in
tests/test_transport_contract.py. Long-running work is not a transport concern: the runner
starts steps detached on the host through plain `run` calls (see repro/detach.py), so a
transport only needs short commands to be reliable.
"""

from __future__ import annotations

import abc
import errno
import hashlib
import os
import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from repro.errors import ConnectError, HostError, NameNotFound, UntrustedOutput

if TYPE_CHECKING:
    from repro.inventory import Host


#: the most bytes one command may send back on stdout (and on stderr): every reply repro asks
#: for is far smaller (a poll brings 256 KiB of log at most), and a host whose ~/.bashrc prints
#: a gigabyte must not take the controller's memory with it
MAX_REPLY = 8 * 1024 * 1024


class ReplyTooLarge(UntrustedOutput):
    """A command sent back more than MAX_REPLY bytes; it was stopped."""


def check_reply_size(size: int, command: str, host: str) -> None:
    if size > MAX_REPLY:
        raise ReplyTooLarge(
            f"the host sent more than {MAX_REPLY // (1024 * 1024)} MiB in reply to one command"
            " (does a login file such as ~/.bashrc print something?); stopped reading",
            host=host,
            command=command,
        )


_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable (no route to host)",
    errno.ETIMEDOUT: "timed out",
    errno.ECONNRESET: "connection reset",
    errno.EACCES: "blocked on the way (permission denied)",
    errno.EPERM: "blocked on the way (operation not permitted)",
}


#: getaddrinfo's answers that a name does not exist; EAI_AGAIN and the like may heal
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def unresolved(exc: socket.gaierror) -> type[ConnectError]:
    """The error class for a host name that did not resolve: NameNotFound when the resolver
    said it does not exist (a run stops waiting for a host it never reached), else
    ConnectError (a resolver that could not answer now may answer later)."""
    return NameNotFound if exc.errno in _NO_SUCH_NAME else ConnectError


def os_reason(exc: OSError) -> str:
    """Why a connection failed, the same words on every transport (errno, not its wrapper)."""
    if exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    return " ".join((exc.strerror or str(exc) or type(exc).__name__).split())


@dataclass(frozen=True)
class Completed:
    """The outcome of one short command. Output is decoded with errors="replace".

    `raw_stdout` is stdout's exact bytes, for replies framed by byte counts (repro.detach).
    """

    command: str
    exit_status: int
    stdout: str
    stderr: str
    raw_stdout: bytes = b""

    def __repr__(self) -> str:
        return f"Completed(exit={self.exit_status}, {self.command[:40]!r})"

    @property
    def stdout_bytes(self) -> bytes:
        """stdout's exact bytes (encoded back from the text where a transport kept none)."""
        return self.raw_stdout or self.stdout.encode()


@dataclass(frozen=True)
class Got:
    """What `Transport.get` wrote: its size and the sha256 of the bytes as they arrived."""

    size: int
    sha256: str

    def __repr__(self) -> str:
        return f"Got({self.size}, {self.sha256[:12]})"


#: receives each chunk of a streamed command's stdout, in order
Sink = Callable[[bytes], None]

#: exit status of the get command when the path is not a regular file (or is a symlink)
NOT_A_FILE = 66


class TooLarge(Exception):
    """A streamed file grew past the caller's cap; what arrived so far was discarded."""


def tcp_keepalive(sock: object, interval: float, count: int) -> bool:
    """Let the kernel watch an idle TCP link to a host: a probe after `interval` s of silence,
    then every `interval` s, the link given up after `count` unanswered ones (and data left
    unacknowledged as long), (count + 1) x interval in all, as the SSH keepalive settings
    promise. Why the kernel: an SSH keepalive is a request and a reply through the controller's
    Python (encrypted, per host, every few seconds: most of what a long wait cost at 100 hosts),
    a TCP probe costs no process anything on either side. Also TCP_NODELAY (a short command
    must not wait on Nagle + delayed ACK). False for what is not a TCP socket (a ProxyCommand's
    pipe, a hop tunnelled through a jump host): SSH keepalives must do it there."""
    family = getattr(sock, "family", None)
    if family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(sock, "setsockopt"):
        return False
    every = max(1, int(round(interval)))
    tries = max(1, count)
    wanted = [
        (socket.SOL_SOCKET, "SO_KEEPALIVE", 1),
        (socket.IPPROTO_TCP, "TCP_KEEPIDLE", every),  # Linux (macOS: TCP_KEEPALIVE)
        (socket.IPPROTO_TCP, "TCP_KEEPINTVL", every),
        (socket.IPPROTO_TCP, "TCP_KEEPCNT", tries),
    ]
    extra = [
        (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", every * (tries + 1) * 1000),  # Linux
        (socket.IPPROTO_TCP, "TCP_NODELAY", 1),
    ]
    watched = True
    for level, name, value in wanted + extra:
        option = getattr(socket, name, None)
        try:
            if option is None:
                raise OSError(name)
            sock.setsockopt(level, option, value)
        except OSError:
            # a platform without it: SSH keepalives stay in charge (the caller keeps them)
            watched = watched and (level, name, value) not in wanted
    return watched


#: what a held command writes as the last bytes of its stdout: "my reply is complete, and I
#: wait alive for one more word on stdin" (see `Transport.run_held`). Not end of file: a login
#: shell that runs the command as its child instead of exec'ing it keeps stdout open. Log bytes
#: that happen to end with it can only make a reply look short (its byte counts then do not add
#: up: repro.detach asks again); nothing is taken from them.
HELD_MARK = b"repro-held\n"


#: what a transport's Held keeps of the command: its process, its channel
H = TypeVar("H")


class Held(abc.ABC, Generic[H]):
    """A command that has sent its whole reply and waits, alive, for one word on its stdin.

    Why: the runner's last contact with a host (the reply that brings the round's hashes) can
    stay open until the run's verdict is known, and then say what to do with the run's work
    dir, instead of opening a new channel and shell on every host for it (repro/gc.py).
    A transport's subclass keeps its handle on the command here, and takes it with `_take`.
    """

    def __init__(self, handle: H, host: str, command: str) -> None:
        self._handle: H | None = handle
        self._host = host
        self._command = command

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._host!r}, open={self._handle is not None})"

    def _take(self) -> H | None:
        """The command's handle, once: after a finish or a drop there is none (None)."""
        handle, self._handle = self._handle, None
        return handle

    def _late(self, timeout: float) -> TimeoutError:
        """What `finish` raises when the command did not end in `timeout` seconds."""
        return TimeoutError(f"{self._host}: a held command did not end in {timeout:g}s")

    @abc.abstractmethod
    async def finish(self, data: bytes, *, timeout: float) -> int:
        """Send `data` and end stdin; the command's exit status. ConnectError when the
        connection went, TimeoutError when it did not end in time (it is dropped then)."""

    @abc.abstractmethod
    async def drop(self) -> None:
        """Close the channel without a word: the command reads end of file. Safe twice."""


class Transport(abc.ABC):
    """One connection to one host, reused for every command of a run.

    `run` never raises for a non-zero exit status: that is returned in `Completed`.
    It raises `repro.errors.ConnectError` (or `HostKeyError`) when the host cannot be reached
    or the connection is lost, and `TimeoutError` when `timeout` passes.
    """

    #: the name used in inventories (`repro_transport: asyncssh`) and on the command line
    name: str = "base"

    def __init__(self, host: Host) -> None:
        self.host = host

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection, verifying the host key. Idempotent."""

    @abc.abstractmethod
    async def run(
        self, command: str, *, timeout: float | None = None, stdin: bytes | None = None
    ) -> Completed:
        """Run a shell command line (already quoted by the caller) with /bin/sh semantics."""

    async def run_held(
        self, command: str, *, timeout: float | None = None
    ) -> tuple[Completed, Held | None]:
        """Run `command` like `run`, with its stdin open. A command whose stdout ends with
        HELD_MARK is returned at once, alive, with a `Held` (its Completed says exit status 0
        and holds stdout without the mark, and no stderr); any other is waited for as by `run`
        (and None). A transport that cannot hold a
        command keeps this default: stdin at end of file, so a held command reads nothing and
        ends; the caller then does what it would have sent in a command of its own. Its
        HELD_MARK (written before it read end of file) is taken off stdout here, so the reply
        reads as a held one's does."""
        done = await self.run(command, timeout=timeout)
        raw = done.stdout_bytes
        if not raw.endswith(HELD_MARK):
            return done, None
        raw = raw[: -len(HELD_MARK)]
        return replace(done, stdout=raw.decode(errors="replace"), raw_stdout=raw), None

    async def stream(
        self, command: str, sink: Sink, *, timeout: float | None = None
    ) -> Completed:
        """Run `command` like `run`, but hand stdout to `sink` chunk by chunk as it arrives.

        Memory stays bounded whatever the size of the output: nothing of stdout is kept
        (`Completed.stdout` is empty); stderr is kept (its last 64 KiB). An exception raised
        by `sink` stops the command (its channel is dropped) and propagates. Every transport
        repro ships implements it (the contract suite checks); a test double need not.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot stream a command's output")

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection. Safe to call twice, or after a failed connect."""

    @property
    def connected(self) -> bool:
        """Whether `run` can be called without `connect` first."""
        return False

    async def put(
        self,
        data: bytes,
        remote_path: str,
        *,
        mode: int = 0o644,
        make_parent: bool = False,
        unless_exists: str | None = None,
    ) -> None:
        """Write `data` to `remote_path` on the host (atomically, via a temp file).

        Done over `run` with the bytes on stdin so every transport gets it for free.
        `make_parent` creates the directory first; `unless_exists` names a path whose
        existence makes the write a no-op (checked on the host, in the same round trip).
        """
        q = shlex.quote(remote_path)
        tmp = shlex.quote(remote_path + ".repro-tmp")
        # A link that dies mid-send ends stdin early and `cat` succeeds on what came: the size
        # check keeps a truncated file from ever taking the real name.
        cmd = (
            f"cat > {tmp} && n=$(wc -c < {tmp}) && if [ \"$n\" -ne {len(data)} ]; then"
            f" rm -f {tmp}; echo 'repro: upload arrived truncated' >&2; exit 93; fi"
            f" && chmod {mode:o} {tmp} && mv -f {tmp} {q}"
        )
        if make_parent:
            cmd = f"mkdir -p -- {shlex.quote(remote_path.rsplit('/', 1)[0] or '/')} && {cmd}"
        # The temp file is never readable by others, even before its chmod (a secret's file).
        cmd = f"umask 077 && {cmd}"
        if unless_exists is not None:
            cmd = f"if [ -e {shlex.quote(unless_exists)} ]; then cat >/dev/null; else {cmd}; fi"
        result = await self.run(cmd, stdin=data)
        if result.exit_status != 0:
            detail = result.stderr.strip()[-200:]
            what = f"could not write {remote_path}"
            raise HostError.of(what, result, detail, host=self.host.name)

    async def get(
        self,
        remote_path: str,
        local_path: Path,
        *,
        max_bytes: int,
        timeout: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Got:
        """Copy the regular file `remote_path` (absolute; a symlink is refused) to `local_path`.

        Streamed to disk and hashed on the way, so memory stays bounded; `local_path` is
        created 0600 and never left half-written under its name (a temp file beside it is
        renamed at the end). More than `max_bytes` raises TooLarge; a missing or odd file
        raises HostError with exit status NOT_A_FILE. `progress` gets the byte count so far.
        """
        q = shlex.quote(remote_path)
        cmd = (
            f"if [ -f {q} ] && [ ! -L {q} ]; then exec cat -- {q}; fi;"
            f" echo 'not a regular file' >&2; exit {NOT_A_FILE}"
        )
        digest = hashlib.sha256()
        tmp = local_path.with_name(f".{local_path.name}.part")
        count = 0
        fd = open(tmp, "wb", opener=_opener)  # noqa: SIM115 (closed below)

        def sink(chunk: bytes) -> None:
            nonlocal count
            count += len(chunk)
            if count > max_bytes:
                raise TooLarge(f"{remote_path} is larger than {max_bytes} bytes")
            digest.update(chunk)
            fd.write(chunk)
            if progress is not None:
                progress(count)

        try:
            try:
                done = await self.stream(cmd, sink, timeout=timeout)
            finally:
                fd.close()
            if done.exit_status != 0:
                why = done.stderr.strip().splitlines()[-1:] or [f"exit {done.exit_status}"]
                raise HostError.of(f"cannot fetch {remote_path}", done, why[0][:200],
                                   host=self.host.name)  # fmt: skip
            tmp.replace(local_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Got(count, digest.hexdigest())

    async def __aenter__(self) -> Transport:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Reader(Protocol):
    async def read(self, n: int = -1, /) -> bytes: ...


async def read_tail(stream: _Reader, keep: int, chunk: int = 65536) -> bytes:
    """Read `stream` to its end, keeping only its last `keep` bytes (a host's stderr is
    untrusted and may be endless)."""
    tail = b""
    while data := await stream.read(chunk):
        tail = (tail + data)[-keep:]
    return tail


def _opener(path: str, flags: int) -> int:
    # 0600: a fetched artifact may be private; O_EXCL would refuse a leftover .part, so not.
    return os.open(path, flags | os.O_NOFOLLOW, 0o600)
