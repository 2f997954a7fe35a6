"""The link settings a user can see and set (the `run` flags stand for host vars, an
inventory's own value wins, bad values are one line and exit 2, the defaults give up on a
silent link within 30 s), and how often a growing log ends a wait on a host."""

from __future__ import annotations

import asyncio
from pathlib import Path

from repro.inventory import Host
from repro.playbook import load_playbook, render
from repro.runner import HostPlan, Runner, RunOptions
from repro.transport.asyncssh import KEEPALIVE_COUNT_MAX, KEEPALIVE_INTERVAL
from repro.transport.local import LocalTransport
from tests.test_cli_inprocess import run_cli

RUN_ID = "20260101T000000Z-abcdef"


def test_the_flags_reach_every_host_the_inventory_leaves_unset(tmp_path: Path) -> None:
    book = tmp_path / "book.yaml"
    book.write_text("name: t\nsteps:\n  - name: one\n    run: 'true'\n")
    pb = load_playbook(book)
    seen: dict[str, dict[str, object]] = {}

    def factory(host: Host) -> LocalTransport:
        seen[host.name] = dict(host.vars)
        return LocalTransport(host)

    plans = []
    for name, own in (("h1", {}), ("h2", {"repro_keepalive_interval": 9})):
        host = Host(name=name, address="localhost", connection="local",
                    vars={"repro_work_dir": str(tmp_path / name), **own})  # fmt: skip
        steps = render(pb, {"inventory_hostname": name, "repro_run_id": RUN_ID}, source=name)
        plans.append(HostPlan(host, steps))
    link = {"repro_keepalive_interval": 2.0, "repro_keepalive_count_max": 2}
    run = Runner(pb, plans, run_id=RUN_ID, report_dir=tmp_path / "reports",
                 transport_factory=factory,
                 options=RunOptions(gather_facts=False, preflight=False, link=link))  # fmt: skip
    result = asyncio.run(asyncio.wait_for(run.run(), 60))
    assert [h.status for h in result.hosts] == ["ok", "ok"]
    assert seen["h1"]["repro_keepalive_interval"] == 2.0
    assert seen["h2"]["repro_keepalive_interval"] == 9  # the inventory's own value
    assert seen["h1"]["repro_keepalive_count_max"] == seen["h2"]["repro_keepalive_count_max"] == 2


def test_a_bad_link_flag_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for flag in ("--keepalive-interval", "--keepalive-count", "--connect-timeout"):
        code, _, err = run_cli("run", "-p", "x", flag, "0")
        assert code == 2, err
        assert err.strip().splitlines() == [f"repro: error: {flag} 0: must be positive"]


def test_the_default_keepalives_give_up_on_a_silent_link_within_30_s() -> None:
    # asyncssh drops the link when count_max keepalives in a row got no answer, one interval
    # apart, after an interval of silence: (count + 1) x interval
    assert (KEEPALIVE_COUNT_MAX[1] + 1) * KEEPALIVE_INTERVAL[1] <= 30


def test_a_growing_log_ends_a_wait_as_often_as_the_progress_shows_it() -> None:
    import argparse
    import io

    from repro.commands import output_gap

    def gap(quiet: bool = False, verbose: int = 0, heartbeat: float = 30.0) -> int:
        args = argparse.Namespace(quiet=quiet, verbose=verbose, heartbeat=heartbeat)
        return output_gap(io.StringIO(), args)  # not a terminal: plain lines

    assert gap(verbose=1) == 1  # every line shown as it comes
    assert gap() == 30  # CI heartbeats show the log's size every 30 s
    assert gap(heartbeat=0) == 0 and gap(quiet=True) == 0  # nobody looks: a step's end only


def test_the_kernel_watches_a_direct_tcp_link_as_the_settings_say() -> None:
    """base.tcp_keepalive: a probe after `interval` s of silence, every `interval` s, given up
    after `count`, unacknowledged data as long; nothing set on what is not a TCP socket."""
    import socket

    from repro.transport.base import tcp_keepalive

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert tcp_keepalive(sock, 5.0, 3)
        got = {
            name: sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
            for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT")
        }
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert got == {"TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3,
                       "TCP_USER_TIMEOUT": 20_000}  # fmt: skip
    a, b = socket.socketpair()
    with a, b:
        assert not tcp_keepalive(a, 5.0, 3)  # a pipe-like link: SSH keepalives stay in charge
    assert not tcp_keepalive(None, 5.0, 3)


def test_both_transports_hand_their_direct_links_to_the_kernel_and_asyncssh_uses_aes_gcm(tmp_path: Path) -> None:
    import asyncio
    import dataclasses
    import socket

    from repro.lab import LocalLab
    from repro.transport.asyncssh import AsyncsshTransport
    from repro.transport.fabric import FabricTransport

    async def main() -> None:
        async with LocalLab(tmp_path / "lab", n=1) as lab:
            host = lab.host("lab1")
            host = dataclasses.replace(host, vars={**host.vars, "repro_keepalive_interval": 7})
            a, f = AsyncsshTransport(host), FabricTransport(host)
            await a.connect()
            await f.connect()
            try:
                socks = [
                    a._conn.get_extra_info("socket"),  # type: ignore[union-attr]
                    f._conn.transport.sock,
                ]
                for sock in socks:
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
                assert (await a.run("echo ok")).stdout == "ok\n"
                # bulk bytes (a fetch) go through AES-GCM: one C call per packet
                cipher = a._conn.get_extra_info("send_cipher")  # type: ignore[union-attr]
                assert cipher == "aes128-gcm@openssh.com"
                assert (await f.run("echo ok")).stdout == "ok\n"
            finally:
                await a.close()
                await f.close()

    asyncio.run(main())


def test_a_name_that_stops_resolving_after_the_host_was_reached_is_waited_for(
    tmp_path: Path,
) -> None:
    """Only a host never reached is given up on when its name does not exist; once reached,
    "no such name" is a resolver's passing trouble (split DNS, a VPN coming back), waited out
    within the reconnect window like any other loss."""
    from repro.errors import ConnectError, NameNotFound
    from repro.events import Event

    class NameGoesAway(LocalTransport):
        """Reached at first; then the link drops and the name fails to resolve twice."""

        connects = 0

        async def connect(self) -> None:
            NameGoesAway.connects += 1
            if NameGoesAway.connects in (2, 3):
                raise NameNotFound("cannot resolve host name 'h1.example'", host=self.host.name)
            await super().connect()

        async def run(self, command: str, **kwargs: object) -> object:  # type: ignore[override]
            if NameGoesAway.connects == 1:
                await self.close()
                raise ConnectError("connection lost: reset", host=self.host.name)
            return await super().run(command, **kwargs)  # type: ignore[arg-type]

    book = tmp_path / "book.yaml"
    book.write_text("name: t\nsteps:\n  - name: one\n    run: 'true'\n")
    pb = load_playbook(book)
    host = Host(name="h1", address="h1.example", connection="local",
                vars={"repro_work_dir": str(tmp_path / "h1")})  # fmt: skip
    steps = render(pb, {"inventory_hostname": "h1", "repro_run_id": RUN_ID}, source="h1")
    events: list[Event] = []
    run = Runner(pb, [HostPlan(host, steps)], run_id=RUN_ID, report_dir=tmp_path / "reports",
                 transport_factory=NameGoesAway, listener=events.append,
                 options=RunOptions(gather_facts=False, preflight=False,
                                    reconnect_timeout=60))  # fmt: skip
    result = asyncio.run(asyncio.wait_for(run.run(), 60))
    assert [h.status for h in result.hosts] == ["ok"], result.hosts[0].error
    said = [e.message for e in events if e.kind == "reconnecting"]
    assert len(said) == 3 and "cannot resolve host name" in said[1], said


def test_a_resumed_run_waits_for_a_name_that_does_not_resolve_yet(tmp_path: Path) -> None:
    """After --resume a host may be building from before: a name that does not resolve at the
    first connect is waited for, where a fresh run gives that host up at once."""
    from repro.errors import NameNotFound

    def attempt(resumed: bool) -> tuple[str, int]:
        tries = 0

        class NameLate(LocalTransport):
            async def connect(self) -> None:
                nonlocal tries
                tries += 1
                if tries <= 2:
                    raise NameNotFound("cannot resolve host name 'h1.example'", host="h1")
                await super().connect()

        book = tmp_path / "book.yaml"
        book.write_text("name: t\nsteps:\n  - name: one\n    run: 'true'\n")
        pb = load_playbook(book)
        host = Host(name="h1", address="h1.example", connection="local",
                    vars={"repro_work_dir": str(tmp_path / f"h1-{resumed}")})  # fmt: skip
        steps = render(pb, {"inventory_hostname": "h1", "repro_run_id": RUN_ID}, source="h1")
        run = Runner(pb, [HostPlan(host, steps)], run_id=RUN_ID,
                     report_dir=tmp_path / f"reports-{resumed}", transport_factory=NameLate,
                     options=RunOptions(gather_facts=False, preflight=False,
                                        reconnect_timeout=60, resumed=resumed))  # fmt: skip
        result = asyncio.run(asyncio.wait_for(run.run(), 60))
        return result.hosts[0].status, tries

    assert attempt(resumed=False) == ("unreachable", 1)
    status, tries = attempt(resumed=True)
    assert status == "ok" and tries > 2  # both failures waited out
