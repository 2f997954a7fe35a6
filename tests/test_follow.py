"""The round follower over a fake transport: what each reply means, in order, and what it asks
the host next (which step, from which log offset, waiting or not).

The fake answers with replies in repro.detach's wire format; every other tier runs the real
host-side scripts. This one pins the cursor's arithmetic without a host.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from repro import detach
from repro.errors import UntrustedOutput
from repro.follow import Ended, Happening, Output, RoundFollower, Seen, Turn, Waiting
from repro.inventory import Host
from repro.store import RemoteRun
from repro.transport.base import Completed, Transport

REMOTE = RemoteRun("/home/b/.cache/repro/runs/20261127T000000Z-abcdef")
KEYS = ["1-01", "1-02", "1-hash"]
HASH_LINE = b"a" * 64 + b" 3 out.bin\n"


def poll(key: str, *, rc: int | None = None, alive: bool = True, started: bool = True,
         size: int = 0, data: bytes = b"", t0: int = 100) -> dict[str, Any]:  # fmt: skip
    return {"key": key, "rc": "-" if rc is None else rc, "alive": int(alive),
            "started": int(started), "size": size, "data": data, "t0": t0}  # fmt: skip


def reply(*polls: dict[str, Any], fresh: bool = True) -> bytes:
    head = [f"repro-plan n={len(polls)} now=150 fresh={int(fresh)}"]
    for p in polls:
        head.append(
            f"repro-poll key={p['key']} rc={p['rc']} alive={p['alive']} started={p['started']} "
            f"killed=0 size={p['size']} take={len(p['data'])} t0={p['t0']}"
        )
    return ("\n".join(head) + "\n").encode() + b"".join(p["data"] for p in polls)


@dataclass
class Asked:
    """One launch or poll as the host received it."""

    verb: str  # "launch", "poll" (at once) or "wait" (on the host, for news)
    index: int | None  # poll: the key asked about (from 0)
    offset: int | None  # poll: of its log
    wait: int  # poll: hundredths of a second the host may wait; wait: its bound (seconds)


@dataclass
class FakeTransport(Transport):
    """Answers each command with the next scripted reply; records what it was asked."""

    replies: list[bytes]
    asked: list[Asked] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(Host(name="h1", address="127.0.0.1"))

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def run(
        self, command: str, *, timeout: float | None = None, stdin: bytes | None = None
    ) -> Completed:
        words = shlex.split(command)
        at = words.index(REMOTE.steps)  # the scripts come first; the steps dir starts the args
        if words[at + 2] == REMOTE.work(1):  # launch: steps, plan, work dir, wait, …
            self.asked.append(Asked("launch", None, None, int(words[at + 3])))
        else:  # poll or wait: steps, plan, index (from 1), offset, wait or bound, …
            index, offset, wait = (int(w) for w in words[at + 2 : at + 5])
            verb = "wait" if words[2] == detach._WAIT else "poll"
            self.asked.append(Asked(verb, index - 1, offset, wait))
        if not self.replies:
            raise AssertionError(f"asked more than scripted: {self.asked}")
        out = self.replies.pop(0)
        return Completed(command, 0, out.decode(errors="replace"), "", out)


def follow(t: FakeTransport, *, vias: list[int] | None = None) -> list[Happening]:
    async def via(op: Any) -> Any:
        if vias is not None:
            vias.append(1)
        return await op()

    async def go() -> list[Happening]:
        f = RoundFollower(t, REMOTE, 1, KEYS, ["true"] * 3, poll_wait=100, launch_wait=300,
                          via=via)  # fmt: skip
        out = [ev async for ev in f]
        assert f.finished
        return out

    return asyncio.run(go())


def kinds(events: list[Happening]) -> list[tuple[str, int | None]]:
    return [(type(e).__name__, getattr(e, "index", None)) for e in events]


def test_a_quick_round_is_one_launch_and_every_step_in_order() -> None:
    t = FakeTransport([reply(
        poll("1-01", rc=0, alive=False, size=5, data=b"hello"),
        poll("1-02", rc=0, alive=False),
        poll("1-hash", rc=0, alive=False, size=len(HASH_LINE), data=HASH_LINE),
    )])  # fmt: skip
    vias: list[int] = []
    events = follow(t, vias=vias)
    assert kinds(events) == [
        ("Seen", 0), ("Output", 0), ("Ended", 0), ("Seen", 1), ("Ended", 1), ("Seen", 2),
        ("Ended", 2),
    ]  # fmt: skip
    assert events[1] == Output(0, b"hello")
    end = events[-1]
    assert isinstance(end, Ended) and end.output == HASH_LINE and end.poll.exit_status == 0
    assert t.asked == [Asked("launch", None, None, 300)]
    assert vias == [1]  # every call to the host goes through the runner's reconnect wrapper


def test_a_log_not_all_sent_is_asked_for_at_once_from_where_it_stopped() -> None:
    t = FakeTransport([
        reply(poll("1-01", size=10, data=b"abcd")),
        reply(poll("1-01", size=10, data=b"efghij"), fresh=False),
        reply(poll("1-01", rc=0, alive=False, size=10),
              poll("1-02", rc=0, alive=False, size=0),
              poll("1-hash", rc=0, alive=False, size=0), fresh=False),
    ])  # fmt: skip
    events = follow(t)
    assert kinds(events) == [
        ("Seen", 0), ("Output", 0), ("Waiting", 0), ("Turn", None),
        ("Output", 0), ("Waiting", 0), ("Turn", None),
        ("Ended", 0), ("Seen", 1), ("Ended", 1), ("Seen", 2), ("Ended", 2),
    ]  # fmt: skip
    assert [e.data for e in events if isinstance(e, Output)] == [b"abcd", b"efghij"]
    assert t.asked == [
        Asked("launch", None, None, 300),
        Asked("poll", 0, 4, 0),  # 6 bytes left on the host: no waiting
        Asked("wait", 0, 10, detach.HOST_WAIT),  # all read, still running: wait on the host
    ]


def test_a_step_not_started_is_not_seen_and_the_next_poll_starts_at_it() -> None:
    t = FakeTransport([
        reply(poll("1-01", rc=0, alive=False, size=2, data=b"ok"),
              poll("1-02", started=False)),
        reply(poll("1-02", rc=0, alive=False), poll("1-hash", rc=0, alive=False),
              fresh=False),
    ])  # fmt: skip
    events = follow(t)
    assert kinds(events) == [
        ("Seen", 0), ("Output", 0), ("Ended", 0), ("Waiting", 1), ("Turn", None),
        ("Seen", 1), ("Ended", 1), ("Seen", 2), ("Ended", 2),
    ]  # fmt: skip
    assert t.asked[1] == Asked("wait", 1, 0, detach.HOST_WAIT)


def test_the_hashing_is_seen_when_reported_and_its_output_is_kept_not_streamed() -> None:
    half = len(HASH_LINE) // 2
    t = FakeTransport([
        reply(poll("1-01", rc=0, alive=False), poll("1-02", rc=0, alive=False),
              poll("1-hash", started=False, size=len(HASH_LINE), data=HASH_LINE[:half])),
        reply(poll("1-hash", rc=0, alive=False, size=len(HASH_LINE), data=HASH_LINE[half:]),
              fresh=False),
    ])  # fmt: skip
    events = follow(t)
    assert ("Seen", 2) in kinds(events)
    assert not [e for e in events if isinstance(e, Output)]
    end = events[-1]
    assert isinstance(end, Ended) and end.output == HASH_LINE
    assert t.asked[1] == Asked("poll", 2, half, 0)


def test_a_reply_for_another_step_is_refused() -> None:
    t = FakeTransport([reply(poll("1-02", rc=0, alive=False))])
    with pytest.raises(UntrustedOutput, match="reported step '1-02' for 1-01"):
        follow(t)


def test_a_step_skipped_by_the_host_is_refused() -> None:
    # after 1-01 ended the next poll must be 1-02's: a host jumping to the hashing lies
    t = FakeTransport([reply(poll("1-01", rc=0, alive=False), poll("1-hash", rc=0))])
    with pytest.raises(UntrustedOutput, match="'1-hash' for 1-02"):
        follow(t)


def test_hashing_output_past_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from repro import follow as follow_mod

    monkeypatch.setattr(follow_mod, "MAX_OUTPUT", 100)
    big = b"x" * 101
    t = FakeTransport([reply(poll("1-01", rc=0, alive=False), poll("1-02", rc=0, alive=False),
                             poll("1-hash", size=len(big), data=big))])  # fmt: skip
    with pytest.raises(UntrustedOutput, match="larger than 100 bytes"):
        follow(t)


def test_the_key_to_kill_is_the_one_followed_now() -> None:
    async def go() -> list[str]:
        t = FakeTransport([
            reply(poll("1-01", rc=0, alive=False), poll("1-02")),
            reply(poll("1-02", rc=0, alive=False), poll("1-hash", rc=0, alive=False),
                  fresh=False),
        ])  # fmt: skip
        f = RoundFollower(t, REMOTE, 1, KEYS, None)
        return [f.key async for _ in f]

    keys = asyncio.run(go())
    # Seen/Ended 1-01, then Seen 1-02 … Waiting on 1-02, its end, the hashing's
    assert keys[0] == "1-01" and keys[-1] == "1-hash" and "1-02" in keys
    assert keys == sorted(keys, key=KEYS.index)  # never goes back


def test_a_quick_round_costs_the_facts_and_the_launch_and_nothing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fan-out's hot path, end to end on a real (local) host: the follower adds no round trip.
    from tests.test_facts import RUN_ID, run_one_local_host

    monkeypatch.setenv("HOME", str(tmp_path))
    result, commands = run_one_local_host(tmp_path, "~/runs")
    assert result.status == "ok", result.error
    assert len(commands) == 2, commands
    assert commands[0].startswith(f"sh -s -- '~/runs/{RUN_ID}' create")
    assert f"{tmp_path}/runs/{RUN_ID}/steps" in commands[1]  # the launch
