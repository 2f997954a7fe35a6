"""The detached-round protocol (repro/detach.py), run for real through the local transport: a
round launched once and never twice, quick steps and their hashing in one round trip, logs
followed by offset (byte for byte), a failed step ending the round, kills that take the whole
process group, `repro cancel`, and a step killed from outside told apart from a cancelled one."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from repro import detach
from repro.errors import HostError
from repro.inventory import Host
from repro.transport.base import Completed
from repro.transport.local import LocalTransport
from tests.procs import group_alive


def transport() -> LocalTransport:
    return LocalTransport(Host(name="here", address="localhost", connection="local"))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def keys_for(n: int, rnd: int = 1) -> list[str]:
    return [f"{rnd}-{i:02d}" for i in range(1, n + 1)] + [f"{rnd}-hash"]


async def launch(tmp_path: Path, scripts: list[str], *, wait: int = 200, rnd: int = 1,
                 work: str = "w") -> detach.Reply:
    t = transport()
    await t.connect()
    return await detach.launch(t, str(tmp_path / "steps"), f"{rnd}-plan", str(tmp_path / work),
                               keys_for(len(scripts) - 1, rnd), scripts, wait=wait)


async def poll(tmp_path: Path, n: int, index: int, offset: int, *, wait: int = 0,
               exact: bool = False) -> detach.Reply:
    t = transport()
    await t.connect()
    return await detach.poll(t, str(tmp_path / "steps"), "1-plan", keys_for(n), index, offset,
                             wait=wait, exact=exact)


def test_a_quick_round_ends_in_the_launch_round_trip(tmp_path: Path) -> None:
    scripts = ["echo out; echo err >&2; pwd", "printf 'caf\\303\\251 \\377 end'", ":",
               "echo hashes; echo warning >&2"]
    r = run(launch(tmp_path, scripts))
    assert r.fresh
    assert [p.key for p in r.polls] == keys_for(3)
    assert all(p.exit_status == 0 and p.started and p.done for p in r.polls)
    first, second, third, hashing = r.polls
    assert first.data == f"out\nerr\n{tmp_path / 'w'}\n".encode()
    assert second.data == b"caf\xc3\xa9 \xff end"  # bytes as the step wrote them
    assert third.data == b"" and third.size == 0
    assert hashing.data == b"hashes\n"  # the hashing step's stderr is kept apart
    assert (tmp_path / "steps" / "1-hash.err").read_text() == "warning\n"
    assert (tmp_path / "steps" / "1-plan.rc").read_text().split() == ["0"]


def test_a_round_is_never_launched_twice(tmp_path: Path) -> None:
    scripts = ["echo one >> count", "echo two >> count", "true"]

    async def go() -> tuple[detach.Reply, detach.Reply]:
        return await launch(tmp_path, scripts), await launch(tmp_path, scripts)

    first, again = run(go())
    assert first.fresh and not again.fresh
    assert [p.exit_status for p in again.polls] == [0, 0, 0]
    assert (tmp_path / "w" / "count").read_text() == "one\ntwo\n"


def test_a_failed_step_ends_the_round(tmp_path: Path) -> None:
    scripts = ["echo a", "echo broken; exit 3", "touch never", "touch never-hashed"]
    r = run(launch(tmp_path, scripts))
    assert [(p.key, p.exit_status) for p in r.polls] == [("1-01", 0), ("1-02", 3)]
    assert r.polls[1].data == b"broken\n"
    assert not (tmp_path / "w" / "never").exists()
    assert not (tmp_path / "w" / "never-hashed").exists()
    later = run(poll(tmp_path, 3, 2, 0)).polls[0]  # a step the supervisor never reached
    assert later.key == "1-03" and later.vanished and not later.started and not later.killed


def test_a_long_step_is_followed_by_offset_and_chunks(tmp_path: Path) -> None:
    # more than one LOG_CHUNK of output, then a pause, then the end; a quick step after it
    script = f"head -c {detach.LOG_CHUNK + 1000} /dev/zero | tr '\\0' x; sleep 0.5; echo; echo done"
    keys = keys_for(2)

    async def go() -> tuple[dict[str, bytes], list[detach.Poll]]:
        # follow the round the way the runner does: key by key, by offset
        r = await launch(tmp_path, [script, "echo next", "true"], wait=0)
        seen: list[detach.Poll] = []
        logs = dict.fromkeys(keys, b"")
        index = 0
        for _ in range(200):
            off = 0
            for p in r.polls:
                seen.append(p)
                logs[p.key] += p.data
                off = p.next_offset
                if not p.done:
                    break
                index, off = index + 1, 0
            if index == len(keys):
                break
            more = off < r.polls[-1].size and r.polls[-1].key == keys[index]
            r = await poll(tmp_path, 2, index, off, wait=0 if more else 20)
        return logs, seen

    logs, seen = run(go())
    assert logs["1-01"] == b"x" * (detach.LOG_CHUNK + 1000) + b"\ndone\n"
    assert logs["1-02"] == b"next\n"
    assert any(p.key == "1-01" and 0 < len(p.data) <= detach.LOG_CHUNK for p in seen)
    assert sum(1 for p in seen if p.key == "1-01" and not p.done) >= 2  # followed, not waited out


def test_the_log_budget_is_shared_by_the_steps_of_one_reply(tmp_path: Path) -> None:
    size = detach.LOG_CHUNK * 3 // 4
    make = f"head -c {size} /dev/zero"
    r = run(launch(tmp_path, [make, make, "true"]))
    one, two = r.polls  # the reply stops at the step whose log did not fit
    assert one.done and len(one.data) == size
    assert two.exit_status == 0 and len(two.data) == detach.LOG_CHUNK - size and not two.done
    rest = run(poll(tmp_path, 2, 1, two.next_offset)).polls
    assert rest[0].key == "1-02" and rest[0].done and len(rest[0].data) == 2 * size - detach.LOG_CHUNK
    assert rest[1].key == "1-hash" and rest[1].done


def test_exact_mode_sends_the_same_bytes(tmp_path: Path) -> None:
    run(launch(tmp_path, ["printf 'a\\nb'", "echo second", "true"]))
    fast = run(poll(tmp_path, 2, 0, 0))
    exact = run(poll(tmp_path, 2, 0, 0, exact=True))
    assert [(p.key, p.data) for p in fast.polls] == [(p.key, p.data) for p in exact.polls]
    assert fast.polls[0].data == b"a\nb"


def test_a_reply_whose_bytes_do_not_add_up_is_refused(tmp_path: Path) -> None:
    # What a log that grew between `wc` and `cat` looks like: more bytes than the headers say.
    t = transport()
    body = b"repro-plan n=1 now=5 fresh=0\nrepro-poll key=1-01 rc=0 alive=0 started=1 " \
           b"killed=0 size=3 take=3 t0=1\nabcd"
    res = Completed("x", 0, body.decode(), "", body)
    assert detach._parse(t, res, "x", 0, "what") is None
    good = Completed("x", 0, "", "", body[:-1])
    reply = detach._parse(t, good, "x", 0, "what")
    assert reply is not None and reply.polls[0].data == b"abc" and reply.polls[0].elapsed == 4.0
    with pytest.raises(HostError, match="no step reported"):
        detach._parse(t, Completed("x", 0, "", "", b"repro-plan n=0 now=1 fresh=0\n"), "x", 0, "w")
    with pytest.raises(HostError, match="garbled"):
        detach._parse(t, Completed("x", 0, "", "", b"repro-plan n=2 now=1\nrepro-poll key=1-01\n"),
                      "x", 0, "w")
    with pytest.raises(HostError, match="exit 1"):
        detach._parse(t, Completed("x", 1, "oops", "no such dir", b"oops"), "x", 0, "what")


def test_kill_takes_the_whole_group_and_marks_it(tmp_path: Path) -> None:
    steps = str(tmp_path / "steps")

    async def go() -> tuple[int, detach.Poll]:
        t = transport()
        await t.connect()
        r = await launch(tmp_path, ["sleep 300 & sleep 300", "touch after", "true"], wait=20)
        assert r.polls[0].alive and r.polls[0].exit_status is None
        pgid = int((tmp_path / "steps" / "1-01.pid").read_text())
        await detach.kill(t, steps, "1-01", grace=1, plan="1-plan")
        return pgid, (await poll(tmp_path, 2, 0, 0)).polls[0]

    pgid, p = run(go())
    assert not group_alive(pgid)
    assert p.vanished and p.killed and p.exit_status is None
    assert not (tmp_path / "w" / "after").exists()


def test_killing_a_step_not_reached_yet_stops_its_round(tmp_path: Path) -> None:
    steps = str(tmp_path / "steps")

    async def go() -> detach.Poll:
        t = transport()
        await t.connect()
        await launch(tmp_path, ["sleep 300", "touch never", "true"], wait=10)
        await detach.kill(t, steps, "1-02", grace=1, plan="1-plan")
        return (await poll(tmp_path, 2, 1, 0)).polls[0]

    p = run(go())
    assert p.key == "1-02" and p.vanished and p.killed and not p.started
    assert not (tmp_path / "w" / "never").exists()


def test_a_step_killed_from_outside_is_vanished_not_cancelled(tmp_path: Path) -> None:
    async def go() -> detach.Poll:
        await launch(tmp_path, ["sleep 300", "true"], wait=10)
        pgid = int((tmp_path / "steps" / "1-01.pid").read_text())
        os.killpg(pgid, signal.SIGKILL)  # the OOM killer, a reboot, an admin
        deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return (await poll(tmp_path, 1, 0, 0)).polls[0]

    p = run(go())
    assert p.vanished and not p.killed


def test_kill_all_kills_every_running_round_and_no_round_starts_after(tmp_path: Path) -> None:
    steps = str(tmp_path / "steps")

    async def go() -> tuple[list[str], list[int], detach.Reply]:
        t = transport()
        await t.connect()
        await launch(tmp_path, ["exit 0", "sleep 300", "true"], wait=20)
        await launch(tmp_path, ["sleep 300", "true"], wait=10, rnd=2, work="w2")
        pgids = [int((tmp_path / "steps" / f"{k}.pid").read_text()) for k in ("1-02", "2-01")]
        killed = await detach.kill_all(t, steps, grace=1)
        later = await launch(tmp_path, ["touch never", "true"], rnd=3, work="w3")
        return killed, pgids, later

    killed, pgids, later = run(go())
    assert sorted(killed) == ["1-02", "2-01"]
    assert not any(group_alive(g) for g in pgids)
    assert not (tmp_path / "steps" / "1-01.killed").exists()
    p = later.polls[0]
    assert p.key == "3-01" and p.vanished and p.killed
    assert not (tmp_path / "w3" / "never").exists()


def test_hostile_paths_are_data_not_code(tmp_path: Path) -> None:
    odd = tmp_path / "a dir; touch CANARY $(touch CANARY2)"

    async def go() -> detach.Reply:
        t = transport()
        await t.connect()
        return await detach.launch(t, str(odd / "steps"), "1-plan", str(odd / "w"),
                                   keys_for(1), ["echo ok", "true"])

    r = run(go())
    assert r.polls[0].exit_status == 0 and r.polls[0].data == b"ok\n"
    assert not list(tmp_path.rglob("CANARY*")) and not Path("CANARY").exists()


def test_scripts_travel_whole_by_argument_or_upload(tmp_path: Path) -> None:
    # Small scripts ride in the command line, large ones are uploaded first; both must reach
    # the host byte for byte (quotes, $, backslashes, a last line without newline).
    nasty = "printf '%s\\n' 'a \"b\" $c `d` \\\\e'\n"
    big = nasty + "# pad\n" * (detach.MAX_ARG_SCRIPT // 6 + 1) + "echo big"
    assert detach.scripts_fit([nasty, "true"]) and not detach.scripts_fit([big, "true"])
    quotes = "'" * (detach.MAX_ARG_SCRIPT // 4)  # a quarter of the limit, unquoted
    assert not detach.scripts_fit([quotes, "true"])  # but over it once quoted
    steps = tmp_path / "steps"

    async def go() -> tuple[detach.Reply, detach.Reply]:
        small = await launch(tmp_path, [nasty, "true"])
        t = transport()
        await t.connect()
        for key, script in zip(keys_for(1, 2), [big, "true"]):
            await t.put(script.encode(), f"{steps}/{key}.sh", make_parent=True)
        large = await detach.launch(t, str(steps), "2-plan", str(tmp_path / "w2"),
                                    keys_for(1, 2), None, wait=200)
        return small, large

    small, large = run(go())
    assert small.polls[0].exit_status == 0 and small.polls[0].data == b'a "b" $c `d` \\\\e\n'
    assert large.polls[0].exit_status == 0
    assert large.polls[0].data == b'a "b" $c `d` \\\\e\nbig\n'


def test_a_round_whose_scripts_were_not_uploaded_is_refused(tmp_path: Path) -> None:
    async def go() -> detach.Reply:
        t = transport()
        await t.connect()
        return await detach.launch(t, str(tmp_path / "s"), "1-plan", str(tmp_path / "w"),
                                   keys_for(1), None)

    with pytest.raises(HostError, match="1-01.sh was not uploaded"):
        run(go())


def test_the_launch_wait_is_bounded_whatever_its_length(tmp_path: Path) -> None:
    # A long step: the launch must come back while it still runs, for a nap-sized wait and for
    # a timer-sized one alike (the test gives up long before the step would end).
    steps = tmp_path / "steps"

    async def go(rnd: int, wait: int) -> detach.Poll:
        r = await asyncio.wait_for(
            launch(tmp_path, ["sleep 60", "true"], wait=wait, rnd=rnd, work=f"w{rnd}"), 30
        )
        return r.polls[0]

    try:
        for rnd, wait in ((1, 0), (2, 10), (3, 60), (4, 150)):
            p = run(go(rnd, wait))
            # running, or not started yet by its (live) supervisor: never waited out
            assert p.key == f"{rnd}-01" and p.alive and p.exit_status is None
    finally:
        async def stop() -> None:
            t = transport()
            await t.connect()
            await detach.kill_all(t, str(steps), grace=1)

        run(stop())


def test_a_step_whose_round_was_cancelled_before_it_started_reads_as_cancelled(
    tmp_path: Path,
) -> None:
    # `repro cancel` killed the supervisor between step 1 and step 2: step 2 never started.
    steps = tmp_path / "steps"

    async def go() -> detach.Poll:
        await launch(tmp_path, ["true", "true", "true"])
        for name in ("1-02.lock", "1-02.pid", "1-02.start", "1-02.log", "1-02.rc"):
            (steps / name).unlink()
        (steps / "1-plan.rc").unlink()
        (steps / "1-plan.killed").write_text("cancelled\n")
        return (await poll(tmp_path, 2, 1, 0)).polls[0]

    p = run(go())
    assert p.key == "1-02" and not p.started and p.vanished and p.killed


def test_a_log_still_written_after_its_step_ended_is_read_exactly(tmp_path: Path) -> None:
    # A step that leaves a writer behind (it keeps the log open and chatters): the log grows
    # between the reply's `wc` and its `cat`, and the controller asks again, a `head -c` per log.
    steps = str(tmp_path / "steps")
    # the writer ignores the TERM its round sends leftovers when it ends: cancel must KILL it
    chatter = "(trap '' TERM; while :; do echo chatter; done) & sleep 0.3; echo end-of-step"

    async def go() -> list[detach.Reply]:
        t = transport()
        await t.connect()
        try:
            out = [await launch(tmp_path, [chatter, "echo two", "true"])]
            for _ in range(5):
                out.append(await poll(tmp_path, 2, 0, 0))
            return out
        finally:
            await detach.kill_all(t, steps, grace=1)

    replies = run(go())
    group = int((tmp_path / "steps" / "1-plan.pid").read_text())
    assert not group_alive(group), "cancel left the round's background writer running"
    for reply in replies:
        first = reply.polls[0]
        assert first.exit_status == 0 and len(first.data) == first.next_offset
        # what was sent is a prefix of the log, cut where `wc` measured it: whole lines
        assert set(first.data.decode().splitlines()) <= {"chatter", "end-of-step"}
        for p in reply.polls[1:]:
            assert p.key in ("1-02", "1-hash")
            assert p.data in (b"two\n", b"", b"two")


def test_kill_all_takes_a_steps_dir_under_the_hosts_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `repro cancel` names the dir as the inventory does ("~/.cache/…"): the host expands it.
    monkeypatch.setenv("HOME", str(tmp_path))

    async def go() -> tuple[list[str], int]:
        t = transport()
        await t.connect()
        await launch(tmp_path, ["sleep 300", "true"], wait=10)
        pgid = int((tmp_path / "steps" / "1-01.pid").read_text())
        return await detach.kill_all(t, "~/steps", grace=1), pgid

    killed, pgid = run(go())
    assert killed == ["1-01"] and not group_alive(pgid)
    assert (tmp_path / "steps" / "cancelled").exists()


def test_the_largest_launch_fits_any_ssh_servers_packet(tmp_path: Path) -> None:
    # Scripts just inside the limit: the exec request stays within RFC 4253's 32 KiB payload.
    commands: list[str] = []

    class Recording(LocalTransport):
        async def run(self, command: str, **kw):  # type: ignore[no-untyped-def]
            commands.append(command)
            return await super().run(command, **kw)

    scripts = ["echo " + "x" * detach.MAX_ARG_SCRIPT, "echo " + "y" * 100, "true"]
    while not detach.scripts_fit(scripts):
        scripts[0] = scripts[0][:-64]
    long_dir = str(tmp_path / ("d" * 200))

    async def go() -> detach.Reply:
        t = Recording(Host(name="here", address="localhost", connection="local"))
        await t.connect()
        keys = [f"1-{i:02d}" for i in range(1, 3)] + ["1-hash"]
        return await detach.launch(t, long_dir + "/steps", "1-plan", long_dir + "/w", keys,
                                   scripts)

    reply = run(go())
    assert reply.polls[0].exit_status == 0
    assert len(commands[0].encode()) <= detach.MAX_COMMAND, len(commands[0])


def test_what_a_step_leaves_in_the_background_ends_with_its_round(tmp_path: Path) -> None:
    r = run(launch(tmp_path, ["sleep 300 & echo started", "true"]))
    assert [p.exit_status for p in r.polls] == [0, 0]
    group = int((tmp_path / "steps" / "1-plan.pid").read_text())
    deadline = time.monotonic() + 10
    while group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(group), "a background process outlived its round"
