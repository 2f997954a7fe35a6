"""The Fabric transport's own behaviour against the in-process lab: how it reads known_hosts
(paramiko's loader is not used), keepalive on a dead link, the thread pool, cancellation, and
`repro run` end to end with fabric. The faults both SSH transports share (host keys, refused,
timeouts, auth, ~/.ssh/config, a host stopped) are test_transport_failures.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest

from repro.cli import main
from repro.errors import ConnectError, HostKeyError, UsageError
from repro.inventory import Host, load_inventory
from repro.lab import LocalLab
from repro.netlab import NetnsLab
from repro.transport import fabric as fabric_mod
from repro.transport import make_transport
from repro.transport.asyncssh import AsyncsshTransport, known_hosts_entry
from repro.transport.fabric import FabricTransport
from tests.inlab import TEST_TIMEOUT, connect_error, in_lab, lab1_with_known_hosts, lab_fingerprint
from tests.labthread import LabThread

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "playbooks" / "demo.yaml"


# --- host keys --------------------------------------------------------------------------------


def test_system_known_hosts_is_not_consulted(
    local_lab: LocalLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~/.ssh/known_hosts trusting the host does not help when the inventory names another file."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))

    async def body(lab: LocalLab) -> None:
        (home / ".ssh" / "known_hosts").write_text(lab.known_hosts_path.read_text())
        host = lab1_with_known_hosts(lab, tmp_path / "empty_known_hosts")
        assert isinstance(await connect_error(FabricTransport, host), HostKeyError)
        # ...while the same file, named by default (no repro_known_hosts), is the one used
        async with FabricTransport(dataclasses.replace(host, known_hosts=None)) as t:
            assert (await t.run("echo ok")).stdout == "ok\n"

    in_lab(local_lab, body)


def test_key_for_port_22_form_does_not_match_another_port(
    local_lab: LocalLab, tmp_path: Path
) -> None:
    """`127.0.0.1 key` (no [addr]:port) vouches for port 22 only, as with OpenSSH."""

    async def body(lab: LocalLab) -> None:
        line = lab.host_key("lab1").export_public_key().decode()
        entry = known_hosts_entry("127.0.0.1", 22, line)
        host = lab1_with_known_hosts(lab, tmp_path / "known_hosts", entry)
        err = await connect_error(FabricTransport, host)
        assert isinstance(err, HostKeyError) and "unknown" in str(err)

    in_lab(local_lab, body)


def test_known_hosts_lines_paramiko_cannot_parse_are_skipped(
    local_lab: LocalLab, tmp_path: Path
) -> None:
    """Garbage and `@cert-authority` lines are skipped (as OpenSSH and asyncssh do), not fatal."""

    async def body(lab: LocalLab) -> None:
        ca = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
        known = tmp_path / "known_hosts"
        known.write_text(
            "127.0.0.1 ssh-ed25519 !!!not-base64!!!\n"
            f"@cert-authority *.example.com {ca}\n"
            "[127.0.0.1]:1 ssh-unknown-type AAAA\n" + lab.known_hosts_path.read_text()
        )
        host = dataclasses.replace(lab.host("lab1"), known_hosts=str(known))
        async with FabricTransport(host) as t:
            assert (await t.run("echo ok")).stdout == "ok\n"
        # garbage alone trusts nothing
        lab1_with_known_hosts(lab, known, "127.0.0.1 ssh-ed25519 !!!not-base64!!!")
        err = await connect_error(FabricTransport, host)
        assert isinstance(err, HostKeyError) and "unknown" in str(err)

    in_lab(local_lab, body)


def test_revoked_key_is_never_trusted(local_lab: LocalLab, tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        port = lab.hosts[0].port
        line = lab.host_key("lab1").export_public_key().decode()
        entry = known_hosts_entry("127.0.0.1", port, line)
        host = lab1_with_known_hosts(lab, tmp_path / "known_hosts", entry, f"@revoked {entry}")
        err = await connect_error(FabricTransport, host)
        assert isinstance(err, HostKeyError) and "@revoked" in str(err)
        assert lab_fingerprint(lab, "lab1") in str(err)

    in_lab(local_lab, body)


# --- a dead link -----------------------------------------------------------------------------


def test_dead_link_is_noticed_by_keepalive(netlab_factory: Callable[..., NetnsLab]) -> None:
    """Real OpenSSH, link taken down mid-command: lost within interval x count, not TCP's minutes.

    paramiko's keepalive never waits for an answer; TCP_USER_TIMEOUT makes it count.
    """
    lab = netlab_factory(1)
    base = next(iter(load_inventory(lab.inventory_path).hosts.values()))
    tuned = {"repro_keepalive_interval": 0.5, "repro_keepalive_count_max": 2}
    host = dataclasses.replace(base, vars={**base.vars, **tuned})

    async def body() -> None:
        async with FabricTransport(host) as t:
            running = asyncio.create_task(t.run("sleep 30"))
            await asyncio.sleep(0.3)
            lab.link_down(host.name)
            # the keepalives find the silent link: a "connection lost", long before the command
            # could end (the bound raises TimeoutError instead)
            with pytest.raises(ConnectError, match="connection lost"):
                await asyncio.wait_for(running, 15)

    asyncio.run(asyncio.wait_for(body(), TEST_TIMEOUT))


# --- threads, cancellation, signals -----------------------------------------------------------


def test_event_loop_keeps_running_during_commands(
    local_lab: LocalLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocking paramiko calls happen in worker threads, never on the loop's thread."""
    threads: set[int] = set()
    original = fabric_mod._exchange

    def spy(*args: Any) -> Any:
        threads.add(threading.get_ident())
        return original(*args)

    monkeypatch.setattr(fabric_mod, "_exchange", spy)

    async def body(lab: LocalLab) -> None:
        async with (
            FabricTransport(lab.host("lab1")) as a,
            FabricTransport(lab.host("lab2")) as b,
        ):
            # A barrier: each command waits (bounded) for the other's mark. With the loop
            # blocked in a's exchange, b's command would not even be sent until a gave up.
            d = shlex.quote(str(lab.base_dir))
            both = (f"touch {d}/mark-$1; i=0; while [ ! -e {d}/mark-$2 ] && [ $i -lt 100 ];"
                    f" do sleep 0.05; i=$((i+1)); done; [ -e {d}/mark-$2 ] && echo $1")  # fmt: skip
            ra, rb = await asyncio.gather(
                a.run(f"set -- a b; {both}"), b.run(f"set -- b a; {both}")
            )
        assert (ra.stdout, rb.stdout) == ("a\n", "b\n"), "blocked loop, or hosts run in turn"
        assert len(threads) == 2 and threading.get_ident() not in threads

    in_lab(local_lab, body)


def test_cancelled_run_kills_the_command(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        pidfile = shlex.quote(f"{lab.hosts[0].root}/pid")
        async with FabricTransport(lab.host("lab1")) as t:
            running = asyncio.create_task(t.run(f"echo $$ > {pidfile}; exec sleep 20"))
            await asyncio.sleep(0.5)
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                r = await t.run(f"kill -0 $(cat {pidfile}) 2>/dev/null")
                if r.exit_status != 0:
                    break
                await asyncio.sleep(0.05)
            assert r.exit_status != 0, "the cancelled command is still running"
            assert (await t.run("echo usable")).stdout == "usable\n"

    in_lab(local_lab, body)


def test_exit_signal_handling_stays_on_our_transports(local_lab: LocalLab) -> None:
    """The exit-signal hook is per connection: paramiko's own class table is untouched."""
    before = dict(paramiko.Transport._channel_handler_table)  # type: ignore[attr-defined]

    async def body(lab: LocalLab) -> None:
        async with FabricTransport(lab.host("lab1")) as t:
            assert (await t.run("kill -INT $$")).exit_status == 130

    in_lab(local_lab, body)
    assert paramiko.Transport._channel_handler_table == before  # type: ignore[attr-defined]


def test_pool_size_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fabric_mod, "_pool", None)
    monkeypatch.setenv("REPRO_FABRIC_THREADS", "3")
    pool = fabric_mod.executor()
    try:
        assert pool._max_workers == 3
        assert fabric_mod.executor() is pool, "one pool, shared"
    finally:
        pool.shutdown(wait=True)
    monkeypatch.delenv("REPRO_FABRIC_THREADS")
    assert fabric_mod.pool_size() == fabric_mod.DEFAULT_POOL_SIZE
    for bad in ("0", "-2", "many"):
        monkeypatch.setenv("REPRO_FABRIC_THREADS", bad)
        with pytest.raises(UsageError, match=f"REPRO_FABRIC_THREADS .*{bad!r}"):
            fabric_mod.pool_size()


def test_make_transport_picks_fabric() -> None:
    t = make_transport(Host("f", "127.0.0.1", transport="fabric"))
    assert isinstance(t, FabricTransport) and t.name == "fabric"
    assert isinstance(make_transport(Host("a", "127.0.0.1")), AsyncsshTransport)


# --- `repro run` end to end -------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def fabric_hosts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the hosts FabricTransport connected to (the real connect still runs)."""
    names: list[str] = []
    original = FabricTransport.connect

    async def connect(self: FabricTransport) -> None:
        names.append(self.host.name)
        await original(self)

    monkeypatch.setattr(FabricTransport, "connect", connect)
    return names


def run_demo(lab: LocalLab, out: Path, *extra: str) -> tuple[int, dict, str]:
    code, _, err = run_cli(
        "run", "-i", str(lab.inventory_path), "-p", str(DEMO), "--out", str(out), *extra
    )
    (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
    return code, json.loads((run_dir / "report.json").read_text()), err


def test_repro_run_with_transport_fabric(tmp_path: Path, fabric_hosts: list[str]) -> None:
    with LabThread(tmp_path / "lab") as lab:
        code, data, err = run_demo(lab, tmp_path / "reports", "--transport", "fabric")
    assert code == 0, err
    assert data["verdict"] == "reproducible"
    assert [h["status"] for h in data["hosts"]] == ["ok", "ok", "ok"]
    assert {a["status"] for a in data["artifacts"]} == {"identical"}
    assert sorted(set(fabric_hosts)) == ["lab1", "lab2", "lab3"]


def test_repro_run_with_one_fabric_host(tmp_path: Path, fabric_hosts: list[str]) -> None:
    host_vars = {"lab2": {"repro_transport": "fabric"}}
    with LabThread(tmp_path / "lab", host_vars=host_vars) as lab:
        code, data, err = run_demo(lab, tmp_path / "reports")
    assert code == 0, err
    assert data["verdict"] == "reproducible"
    assert [h["status"] for h in data["hosts"]] == ["ok", "ok", "ok"]
    assert set(fabric_hosts) == {"lab2"}
