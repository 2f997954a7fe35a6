"""The local lab: the files it writes, the environment commands see, and what it cleans up.

These run real commands through real SSH connections to the lab's in-process servers.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import stat
import time
from pathlib import Path

import asyncssh
import pytest
import yaml

from repro.errors import ConnectError, UsageError
from repro.lab import LocalLab
from repro.transport.asyncssh import AsyncsshTransport, fetch_host_keys, fingerprint
from repro.transport.base import Transport
from tests.inlab import in_lab
from tests.procs import alive


async def wait_dead(pid: int, seconds: float = 5.0) -> bool:
    """Bounded poll that yields to the loop, where the lab's servers live."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return not alive(pid)


async def read_pid(t: Transport, path: str, seconds: float = 5.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = await t.run(f"cat {path} 2>/dev/null")
        if r.stdout.strip().isdigit():
            return int(r.stdout)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_files_the_lab_writes(tmp_path: Path) -> None:
    lab = LocalLab(tmp_path / "lab", n=2, host_vars={"lab2": {"repro_connect_timeout": 3}})

    async def body(lab: LocalLab) -> None:
        inv = yaml.safe_load(lab.inventory_path.read_text())
        hosts = inv["all"]["children"]["lab"]["hosts"]
        assert list(hosts) == ["lab1", "lab2"]
        for lab_host in lab.hosts:
            hv = hosts[lab_host.name]
            assert hv["ansible_host"] == "127.0.0.1"
            assert hv["ansible_port"] == lab_host.port
            assert hv["ansible_user"] == lab.user
            assert hv["ansible_ssh_private_key_file"] == str(lab.client_key_path)
            assert hv["repro_known_hosts"] == str(lab.known_hosts_path)
            assert lab_host.root == lab.base_dir / lab_host.name / "root"
            assert lab_host.root.is_dir()
        assert hosts["lab2"]["repro_connect_timeout"] == 3
        assert "repro_connect_timeout" not in hosts["lab1"]
        assert lab.host("lab2").vars["repro_connect_timeout"] == 3

        assert stat.S_IMODE(lab.client_key_path.stat().st_mode) == 0o600
        lines = lab.known_hosts_path.read_text().splitlines()
        assert len(lines) == 2
        for line, lab_host in zip(lines, lab.hosts):
            name, keytype, _ = line.split()
            assert (name, keytype) == (f"[127.0.0.1]:{lab_host.port}", "ssh-ed25519")
            # the known_hosts entry is the key the server really presents
            served = await fetch_host_keys("127.0.0.1", lab_host.port, timeout=5)
            assert fingerprint(line.split(maxsplit=1)[1]) == fingerprint(served[0][1])

    in_lab(lab, body)


def test_commands_run_in_the_host_root(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        async with AsyncsshTransport(lab.host("lab3")) as t:
            r = await t.run("pwd; echo $HOME; echo $LANG $SHELL $USER $LOGNAME; echo $0")
            root = str(lab.hosts[2].root)
            user = lab.user
            assert r.stdout.splitlines() == [
                root,
                root,
                f"C.UTF-8 /bin/sh {user} {user}",
                "/bin/sh",
            ]
            await t.run("echo made-here > f.txt")
        assert (lab.hosts[2].root / "f.txt").read_text() == "made-here\n"
        assert not (lab.hosts[0].root / "f.txt").exists()

    in_lab(local_lab, body)


def test_hosts_run_in_parallel(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        ts = [AsyncsshTransport(lab.host(h.name)) for h in lab.hosts]
        await asyncio.gather(*(t.connect() for t in ts))
        # A barrier: each command waits (bounded) until every host's has started. Run one
        # after the other, the first would give up waiting and see only itself.
        barrier = lab.base_dir / "barrier"
        barrier.mkdir()
        b = shlex.quote(str(barrier))
        wait = (f'touch {b}/"$(hostname)-$$"; i=0; while [ "$(ls {b} | wc -l)" -lt 3 ] '
                f'&& [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; ls {b} | wc -l')  # fmt: skip
        try:
            results = await asyncio.gather(*(t.run(wait) for t in ts))
            assert [r.stdout.strip() for r in results] == ["3"] * 3
        finally:
            await asyncio.gather(*(t.close() for t in ts))

    in_lab(local_lab, body)


def test_closing_the_connection_kills_the_foreground_command(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        t = AsyncsshTransport(lab.host("lab1"))
        await t.connect()
        running = asyncio.create_task(t.run("echo $$ > fg.pid; exec sleep 30"))
        try:
            watcher = AsyncsshTransport(lab.host("lab1"))
            async with watcher:
                pid = await read_pid(watcher, "fg.pid")
            assert alive(pid)
            await t.close()
            assert await wait_dead(pid), "the command outlived its connection"
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    in_lab(local_lab, body)


def test_stop_host_drops_connections_and_keeps_others_up(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        one = AsyncsshTransport(lab.host("lab1"))
        two = AsyncsshTransport(lab.host("lab2"))
        await one.connect()
        await two.connect()
        try:
            port = lab.hosts[0].port
            running = asyncio.create_task(one.run("echo $$ > fg.pid; exec sleep 30"))
            pid = await read_pid(two, str(lab.hosts[0].root / "fg.pid"))
            await lab.stop_host("lab1")
            with pytest.raises(ConnectError):
                await running
            assert await wait_dead(pid), "sshd died but its command kept running"
            assert (await two.run("echo fine")).stdout == "fine\n"

            await lab.start_host("lab1")
            await lab.start_host("lab1")  # already up: a no-op
            assert lab.hosts[0].port == port
            await one.connect()
            assert (await one.run("echo back")).stdout == "back\n"
        finally:
            await one.close()
            await two.close()

    in_lab(local_lab, body)


def test_aclose_kills_detached_processes(local_lab: LocalLab) -> None:
    pids: list[int] = []

    async def body(lab: LocalLab) -> None:
        async with AsyncsshTransport(lab.host("lab2")) as t:
            r = await t.run(
                "setsid sh -c 'echo $$ > bg.pid; exec sleep 60' > bg.log 2>&1 < /dev/null &"
            )
            assert r.exit_status == 0
            pids.append(await read_pid(t, "bg.pid"))
        assert alive(pids[0]), "the detached process did not survive its connection"

    in_lab(local_lab, body)
    assert asyncio.run(wait_dead(pids[0])), "aclose left a lab process running"


def test_names_and_host_vars_are_checked(tmp_path: Path) -> None:
    lab = LocalLab(tmp_path, names=["alpha", "beta"])
    assert lab.names == ["alpha", "beta"]
    with pytest.raises(UsageError, match="'../x'"):
        LocalLab(tmp_path, names=["../x"])
    with pytest.raises(UsageError, match="'.hidden'"):
        LocalLab(tmp_path, names=[".hidden"])
    with pytest.raises(UsageError, match="repeat"):
        LocalLab(tmp_path, names=["a", "a"])
    with pytest.raises(UsageError, match="'lab9'"):
        LocalLab(tmp_path, n=2, host_vars={"lab9": {}})
    with pytest.raises(UsageError, match="no lab host named 'zeta'"):
        lab.host("zeta")


def test_named_hosts_get_their_own_keys(tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        assert [h.name for h in lab.hosts] == ["spr", "zen4"]
        prints = {lab.host_key(h.name).get_fingerprint("sha256") for h in lab.hosts}
        assert len(prints) == 2
        for h in lab.hosts:
            async with AsyncsshTransport(lab.host(h.name)) as t:
                assert (await t.run("basename $(dirname $HOME)")).stdout == f"{h.name}\n"

    in_lab(LocalLab(tmp_path / "named", names=["spr", "zen4"]), body)


def test_key_file_permissions_never_loosen(tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        assert oct(stat.S_IMODE(os.stat(lab.client_key_path).st_mode)) == oct(0o600)

    in_lab(LocalLab(tmp_path / "perm", n=1), body)


def test_only_exec_requests_are_served(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        h = lab.hosts[0]
        async with asyncssh.connect(
            "127.0.0.1",
            h.port,
            username=lab.user,
            client_keys=[str(lab.client_key_path)],
            known_hosts=str(lab.known_hosts_path),
            config=None,
        ) as conn:
            # no sftp (its protocol must never reach a shell), no port forwarding
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.run(subsystem="sftp", check=False)
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.create_connection(asyncssh.SSHTCPSession, "127.0.0.1", h.port)

    in_lab(local_lab, body)
