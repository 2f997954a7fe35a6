"""A step's timeout holds even when the host's clock does not: the controller's own clock backs
it up (repro.runner.CLOCK_GRACE), so a host with a broken /proc/uptime, or one that lies about
elapsed time, cannot keep a run from ever ending. Run for real on the local transport."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from repro import runner as runner_mod
from repro.inventory import Host
from repro.playbook import load_playbook, render
from repro.results import HostResult
from repro.runner import HostPlan, Runner, RunOptions
from repro.transport.base import Completed
from repro.transport.local import LocalTransport
from tests.procs import group_alive

RUN_ID = "20260101T000000Z-abcdef"


class NoClockHost(LocalTransport):
    """Every reply says the step's start time is unknown: the host's clock tells nothing."""

    async def run(
        self, command: str, *, timeout: float | None = None, stdin: bytes | None = None
    ) -> Completed:
        res = await super().run(command, timeout=timeout, stdin=stdin)
        raw = re.sub(rb"(repro-poll [^\n]*?)t0=[0-9]+", rb"\1t0=-", res.raw_stdout)
        return Completed(res.command, res.exit_status, raw.decode(), res.stderr, raw)


def run_on_local(tmp_path: Path, book_text: str, transport: type[LocalTransport]) -> HostResult:
    """The playbook `book_text` run by the Runner on one local host; its result."""
    book = tmp_path / "book.yaml"
    book.write_text(book_text)
    pb = load_playbook(book)
    host = Host(name="h1", address="localhost", connection="local",
                vars={"repro_work_dir": str(tmp_path / "runs")})  # fmt: skip
    steps = render(pb, {"inventory_hostname": "h1", "repro_run_id": RUN_ID}, source="h1")
    run = Runner(pb, [HostPlan(host, steps)], run_id=RUN_ID, report_dir=tmp_path / "reports",
                 transport_factory=transport,
                 options=RunOptions(gather_facts=False, poll_wait=20))  # fmt: skip
    return asyncio.run(asyncio.wait_for(run.run(), 60)).hosts[0]


def test_a_host_without_a_clock_still_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_mod, "CLOCK_GRACE", 1.0)
    result = run_on_local(
        tmp_path,
        "name: t\nsteps:\n  - name: hang\n    timeout: 1s\n    run: sleep 120\n"
        "  - name: after\n    run: touch after\n",
        NoClockHost,
    )
    assert result.status == "failed"
    assert result.error and "timed out after 1s" in result.error, result.error
    steps_dir = tmp_path / "runs" / RUN_ID / "steps"
    group = int((steps_dir / "1-plan.pid").read_text())
    assert not group_alive(group), "the timed-out round left processes behind"
    assert not (tmp_path / "runs" / RUN_ID / "work" / "after").exists()


def test_a_timed_out_step_is_killed_even_when_the_kill_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a loaded host the kill's round trip can outlast the few seconds a Ctrl-C may wait: a
    # timeout is not a Ctrl-C, and its processes must not outlive it.
    real_kill = runner_mod.detach.kill
    slow = runner_mod.KILL_WAIT + 1

    async def slow_kill(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(slow)
        await real_kill(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner_mod.detach, "kill", slow_kill)
    result = run_on_local(
        tmp_path,
        "name: t\nsteps:\n  - name: hang\n    timeout: 1s\n    run: sleep 300 & sleep 300\n",
        LocalTransport,
    )
    assert result.error and "timed out after 1s" in result.error, result.error
    group = int((tmp_path / "runs" / RUN_ID / "steps" / "1-plan.pid").read_text())
    assert not group_alive(group), "the timed-out step's processes outlived it"
