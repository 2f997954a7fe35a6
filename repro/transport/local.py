"""The transport for `ansible_connection: local`: commands run on the controller itself,
with the same contract as SSH (/bin/sh semantics, bytes on stdin, output decoded with replace).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from repro.errors import ConnectError
from repro.inventory import Host
from repro.transport.base import Completed, Sink, Transport, read_tail

#: how long to wait for a killed command's pipes to close before giving up on them
_REAP_SECONDS = 5.0
_CHUNK = 256 * 1024
_ERR_KEEP = 64 * 1024


class LocalTransport(Transport):
    """Run commands with /bin/sh on this machine, from the home directory as sshd would."""

    name = "local"

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self._open = False

    def __repr__(self) -> str:
        return f"LocalTransport({self.host.name!r}, {'open' if self._open else 'closed'})"

    @property
    def connected(self) -> bool:
        return self._open

    async def connect(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def run(
        self, command: str, *, timeout: float | None = None, stdin: bytes | None = None
    ) -> Completed:
        if not self._open:
            raise ConnectError(
                "not connected (call connect() first)", host=self.host.name, command=command
            )
        proc = await _spawn(command, stdin=bool(stdin))
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin or None), timeout)
        except TimeoutError:
            await _kill_group(proc)
            raise TimeoutError(
                f"{self.host.name}: command timed out after {timeout:g}s: {command[:80]}"
            ) from None
        except BaseException:
            await _kill_group(proc)  # cancelled: leave nothing running behind us
            raise
        status = proc.returncode if proc.returncode is not None else -1
        # A negative return code is "killed by signal N"; report it the way a shell does.
        if status < 0:
            status = 128 - status
        return Completed(
            command,
            status,
            out.decode("utf-8", errors="replace"),
            err.decode("utf-8", errors="replace"),
            out,
        )


    async def stream(
        self, command: str, sink: Sink, *, timeout: float | None = None
    ) -> Completed:
        if not self._open:
            raise ConnectError(
                "not connected (call connect() first)", host=self.host.name, command=command
            )
        proc = await _spawn(command, stdin=False)
        assert proc.stdout is not None and proc.stderr is not None

        async def pump() -> bytes:
            assert proc.stdout is not None and proc.stderr is not None
            errs = asyncio.ensure_future(read_tail(proc.stderr, _ERR_KEEP))
            try:
                while chunk := await proc.stdout.read(_CHUNK):
                    sink(chunk)
                await proc.wait()
                return await errs
            finally:
                errs.cancel()

        try:
            err = await asyncio.wait_for(pump(), timeout)
        except TimeoutError:
            await _kill_group(proc, drain=True)
            raise TimeoutError(
                f"{self.host.name}: command timed out after {timeout:g}s: {command[:80]}"
            ) from None
        except BaseException:
            await _kill_group(proc, drain=True)
            raise
        status = proc.returncode if proc.returncode is not None else -1
        return Completed(
            command,
            128 - status if status < 0 else status,
            "",
            err.decode("utf-8", errors="replace"),
        )


async def _spawn(command: str, *, stdin: bool) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Start where an SSH session would, so relative paths mean the same thing.
        cwd=str(Path.home()),
        # Its own process group, so a timeout kills the whole command, not just sh.
        start_new_session=True,
    )


async def _kill_group(proc: asyncio.subprocess.Process, *, drain: bool = False) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone
    if drain:
        # A stream left mid-way has unread pipes; read them to their end (the group is dead,
        # so that is at most a pipe's buffer) so they close while the loop still runs.
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    await asyncio.wait_for(read_tail(pipe, 1), _REAP_SECONDS)
                except TimeoutError:
                    pass
    try:
        await asyncio.wait_for(proc.wait(), _REAP_SECONDS)
    except TimeoutError:
        pass
