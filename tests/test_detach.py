"""The detached-step protocol (repro/detach.py), run for real through the local transport:
never started twice, quick steps in one round trip, logs followed by offset, kills that take
the whole process group, and a step killed from outside told apart from a cancelled one."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from repro import detach
from repro.inventory import Host
from repro.transport.local import LocalTransport
from tests.procs import group_alive


def transport() -> LocalTransport:
    return LocalTransport(Host(name="here", address="localhost", connection="local"))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_quick_step_finishes_in_the_start_round_trip(tmp_path: Path) -> None:
    async def go() -> detach.Poll:
        t = transport()
        await t.connect()
        return await detach.start(
            t,
            str(tmp_path / "steps"),
            "1-01",
            str(tmp_path / "w"),
            "echo out; echo err >&2; pwd; exit 3",
        )

    p = run(go())
    assert p.fresh and p.started and p.exit_status == 3
    assert p.chunk == f"out\nerr\n{tmp_path / 'w'}\n"
    assert p.next_offset == p.size == len(p.chunk.encode())


def test_a_step_is_never_started_twice(tmp_path: Path) -> None:
    steps, work = str(tmp_path / "steps"), str(tmp_path / "w")

    async def go() -> tuple[detach.Poll, detach.Poll]:
        t = transport()
        await t.connect()
        first = await detach.start(t, steps, "1-01", work, "echo ran >> count")
        again = await detach.start(t, steps, "1-01", work, "echo ran >> count")
        return first, again

    first, again = run(go())
    assert first.fresh and not again.fresh
    assert again.exit_status == 0
    assert (tmp_path / "w" / "count").read_text() == "ran\n"


def test_long_step_is_followed_by_offset_and_chunks(tmp_path: Path) -> None:
    steps, work = str(tmp_path / "steps"), str(tmp_path / "w")
    # more than one LOG_CHUNK of output, then a pause, then the end
    script = f"head -c {detach.LOG_CHUNK + 1000} /dev/zero | tr '\\0' x; sleep 0.5; echo; echo done"

    async def go() -> tuple[str, list[detach.Poll]]:
        t = transport()
        await t.connect()
        p = await detach.start(t, steps, "1-01", work, script, wait=0)
        polls = [p]
        text, off = p.chunk, p.next_offset
        for _ in range(100):
            if p.exit_status is not None and off >= p.size:
                break
            p = await detach.poll(t, steps, "1-01", off, wait=20)
            polls.append(p)
            text += p.chunk
            off = p.next_offset
        return text, polls

    text, polls = run(go())
    assert text == "x" * (detach.LOG_CHUNK + 1000) + "\ndone\n"
    assert polls[-1].exit_status == 0
    assert any(0 < len(p.chunk) <= detach.LOG_CHUNK for p in polls)


def test_kill_takes_the_whole_group_and_marks_it(tmp_path: Path) -> None:
    steps, work = str(tmp_path / "steps"), str(tmp_path / "w")

    async def go() -> tuple[int, detach.Poll]:
        t = transport()
        await t.connect()
        p = await detach.start(t, steps, "1-01", work, "sleep 300 & sleep 300", wait=20)
        assert p.alive and p.exit_status is None
        pgid = int((tmp_path / "steps" / "1-01.pid").read_text())
        await detach.kill(t, steps, "1-01", grace=1)
        return pgid, await detach.poll(t, steps, "1-01", 0, wait=0)

    pgid, p = run(go())
    assert not group_alive(pgid)
    assert p.vanished and p.killed and p.exit_status is None


def test_a_step_killed_from_outside_is_vanished_not_cancelled(tmp_path: Path) -> None:
    steps, work = str(tmp_path / "steps"), str(tmp_path / "w")

    async def go() -> detach.Poll:
        t = transport()
        await t.connect()
        await detach.start(t, steps, "1-01", work, "sleep 300", wait=10)
        pgid = int((tmp_path / "steps" / "1-01.pid").read_text())
        os.killpg(pgid, signal.SIGKILL)  # the OOM killer, a reboot, an admin
        deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return await detach.poll(t, steps, "1-01", 0, wait=0)

    p = run(go())
    assert p.vanished and not p.killed


def test_kill_all_kills_every_running_step_of_a_run(tmp_path: Path) -> None:
    steps, work = str(tmp_path / "steps"), str(tmp_path / "w")

    async def go() -> tuple[list[str], list[int]]:
        t = transport()
        await t.connect()
        await detach.start(t, steps, "1-01", work, "exit 0")
        await detach.start(t, steps, "1-02", work, "sleep 300", wait=10)
        await detach.start(t, steps, "2-01", work + "2", "sleep 300", wait=10)
        pgids = [int((tmp_path / "steps" / f"{k}.pid").read_text()) for k in ("1-02", "2-01")]
        return await detach.kill_all(t, steps, grace=1), pgids

    killed, pgids = run(go())
    assert sorted(killed) == ["1-02", "2-01"]
    assert not any(group_alive(g) for g in pgids)
    assert not (tmp_path / "steps" / "1-01.killed").exists()


def test_hostile_paths_are_data_not_code(tmp_path: Path) -> None:
    odd = tmp_path / "a dir; touch CANARY $(touch CANARY2)"

    async def go() -> detach.Poll:
        t = transport()
        await t.connect()
        return await detach.start(t, str(odd / "steps"), "1-01", str(odd / "w"), "echo ok")

    p = run(go())
    assert p.exit_status == 0 and p.chunk == "ok\n"
    assert not list(tmp_path.rglob("CANARY*")) and not Path("CANARY").exists()


def test_scripts_travel_whole_by_argument_or_stdin(tmp_path: Path) -> None:
    # Small scripts ride in the command line, large ones on stdin with an end marker; both
    # must reach the host byte for byte (quotes, $, backslashes, a last line without newline).
    nasty = "printf '%s\\n' 'a \"b\" $c `d` \\\\e'\n"
    big = nasty + "# pad\n" * (detach.MAX_ARG_SCRIPT // 6 + 1) + "echo big"

    async def go() -> list[detach.Poll]:
        t = transport()
        await t.connect()
        out = []
        for i, script in enumerate((nasty, big), 1):
            out.append(await detach.start(t, str(tmp_path / "steps"), f"1-0{i}",
                                          str(tmp_path / "w"), script, wait=200))
        return out
    small, large = run(go())
    assert small.exit_status == 0 and small.chunk == 'a "b" $c `d` \\\\e\n'
    assert large.exit_status == 0 and large.chunk == 'a "b" $c `d` \\\\e\nbig\n'


def test_a_finished_steps_whole_log_comes_with_the_start(tmp_path: Path) -> None:
    # The launcher skips measuring the log of a step that already ended; the controller must
    # still get every byte, and, for a log too long to be sure of, read it again measured.
    async def go() -> tuple[detach.Poll, detach.Poll]:
        t = transport()
        await t.connect()
        small = await detach.start(t, str(tmp_path / "s"), "1-01", str(tmp_path / "w"),
                                   "printf 'caf\\303\\251 \\377 end'", wait=200)
        large = await detach.start(t, str(tmp_path / "s"), "1-02", str(tmp_path / "w"),
                                   f"head -c {detach.LOG_CHUNK * 2} /dev/zero", wait=200)
        return small, large
    small, large = run(go())
    assert small.exit_status == 0 and small.chunk == "café \ufffd end"
    assert small.next_offset >= small.size  # nothing more to read
    assert large.exit_status == 0 and large.chunk == "" and large.next_offset == 0
    assert large.size > large.next_offset  # the runner polls again, measured
