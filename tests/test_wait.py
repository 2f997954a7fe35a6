"""The long wait on a host (repro/hostside/wait.sh) under dash, bash and busybox sh: it answers
when the step ends, when its log grows (only if asked), or when its bound passes, and while it
waits it starts no process per check (bash and busybox: none at all; dash: one helper)."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from repro import detach
from repro.transport.base import Completed
from repro.transport.local import LocalTransport
from tests.test_detach import keys_for, transport

SHELLS = [s for s in (["dash"], ["bash"], ["busybox", "sh"]) if shutil.which(s[0])]


class ShellTransport(LocalTransport):
    """Runs each `sh -c …` under the shell given, and notes the pid of the one running."""

    def __init__(self, shell: list[str]) -> None:
        super().__init__(transport().host)
        self.shell = shell
        self.pid: int | None = None

    async def run(
        self, command: str, *, timeout: float | None = None, stdin: bytes | None = None
    ) -> Completed:
        words = shlex.split(command)
        assert words[:2] == ["sh", "-c"]
        proc = await asyncio.create_subprocess_exec(
            *self.shell, *words[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.pid = proc.pid
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return Completed(command, proc.returncode, out.decode(errors="replace"), err.decode(), out)


def children(pid: int) -> list[str]:
    """The names of `pid`'s child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        if int(rest.split()[1]) == pid:
            found.append(name)
    return found


async def kill(steps: str, key: str) -> None:
    t = transport()
    await t.connect()
    await detach.kill(t, steps, key, grace=1)


async def launched(tmp_path: Path, script: str) -> tuple[str, list[str], int]:
    t = transport()
    await t.connect()
    steps, keys = str(tmp_path / "steps"), keys_for(1)
    r = await detach.launch(t, steps, "1-plan", str(tmp_path / "w"), keys, [script, "true"],
                            wait=10)  # fmt: skip
    return steps, keys, r.polls[0].next_offset


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_a_wait_answers_when_the_step_ends_not_at_its_bound(tmp_path: Path, shell: list[str]) -> None:
    async def go() -> detach.Reply:
        steps, keys, off = await launched(tmp_path, "sleep 2; echo done")
        t = ShellTransport(shell)
        return await detach.wait(t, steps, "1-plan", keys, 0, off, bound=600)

    reply = asyncio.run(asyncio.wait_for(go(), 60))
    assert reply.polls[0].exit_status == 0 and reply.polls[0].data.endswith(b"done\n")


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_a_growing_log_answers_only_when_asked_to(tmp_path: Path, shell: list[str]) -> None:
    async def go() -> tuple[detach.Reply, detach.Reply]:
        steps, keys, off = await launched(
            tmp_path, "sleep 1; echo one; touch ../grew; sleep 600"
        )
        t = ShellTransport(shell)
        # quiet about growth: it waits out its bound, whatever the log does
        quiet = await detach.wait(t, steps, "1-plan", keys, 0, off, bound=3, gap=0)
        assert (tmp_path / "grew").exists(), "the bound passed before the step wrote"
        grown = await detach.wait(t, steps, "1-plan", keys, 0, off, bound=600, gap=1)
        await kill(steps, keys[0])
        return quiet, grown

    quiet, grown = asyncio.run(asyncio.wait_for(go(), 60))
    assert quiet.polls[0].exit_status is None and quiet.polls[0].alive
    assert grown.polls[0].exit_status is None and grown.polls[0].data == b"one\n"


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_a_wait_starts_no_process_per_check(tmp_path: Path, shell: list[str]) -> None:
    async def go() -> list[list[str]]:
        steps, keys, off = await launched(tmp_path, "sleep 600")
        t = ShellTransport(shell)
        waiting = asyncio.ensure_future(
            detach.wait(t, steps, "1-plan", keys, 0, off, bound=5, gap=1)
        )
        seen: list[list[str]] = []
        deadline = time.monotonic() + 30
        while not waiting.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if t.pid is not None:
                seen.append(children(t.pid))
        reply = await waiting
        await kill(steps, keys[0])
        assert reply.polls[0].exit_status is None and reply.polls[0].alive
        return seen

    seen = asyncio.run(asyncio.wait_for(go(), 60))
    during = {name for names in seen for name in names}
    # the reply's own `wc`/`cat` come after the wait, and no `sleep` ever
    assert "sleep" not in during, during
    if shell[0] == "dash":
        assert during <= {"bash", "busybox", "dash", "wc", "cat"}, during
    else:
        assert during <= {"wc", "cat"}, during
    assert os.path.exists(tmp_path / "steps" / "1-plan.nap")
