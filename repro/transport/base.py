"""The transport contract: the few verbs the runner needs from any way of reaching a host.

Every transport (asyncssh, fabric, local) passes the same contract tests in
tests/test_transport_contract.py. Long-running work is not a transport concern: the runner
starts steps detached on the host through plain `run` calls (see repro/detach.py), so a
transport only needs short commands to be reliable.
"""

from __future__ import annotations

import abc
import errno
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from repro.errors import UntrustedOutput

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
            from repro.errors import HostError

            raise HostError(
                f"could not write {remote_path}: {result.stderr.strip()[-200:]}",
                host=self.host.name,
                command=cmd,
                exit_status=result.exit_status,
                tail=result.stderr[-2000:],
            )

    async def __aenter__(self) -> Transport:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
