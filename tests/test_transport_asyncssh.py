"""The asyncssh transport against the in-process lab: host keys, connection faults, key helpers.

Everything here is a real SSH handshake over loopback; nothing turns host key checking off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncssh
import pytest

from repro.errors import ConnectError, HostKeyError, InventoryError
from repro.inventory import Host
from repro.lab import LocalLab
from repro.transport.asyncssh import (
    AsyncsshTransport,
    fetch_host_keys,
    fingerprint,
    known_hosts_entry,
)

TEST_TIMEOUT = 30.0


def in_lab(lab: LocalLab, body: Callable[[LocalLab], Awaitable[None]]) -> None:
    async def main() -> None:
        async with lab:
            await asyncio.wait_for(body(lab), TEST_TIMEOUT)

    asyncio.run(main())


async def connect_error(host: Host) -> ConnectError:
    t = AsyncsshTransport(host)
    try:
        with pytest.raises(ConnectError) as info:
            await t.connect()
        assert not t.connected
        return info.value
    finally:
        await t.close()


def free_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung sshd)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


# --- host keys --------------------------------------------------------------------------------


def test_known_host_connects(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        async with AsyncsshTransport(lab.host("lab2")) as t:
            assert t.connected
            r = await t.run("echo $HOME")
            assert r.stdout.strip() == str(lab.hosts[1].root)

    in_lab(local_lab, body)


def test_unknown_host_key_is_refused(local_lab: LocalLab, tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        empty = tmp_path / "empty_known_hosts"
        empty.write_text("")
        host = dataclasses.replace(lab.host("lab1"), known_hosts=str(empty))
        err = await connect_error(host)
        assert isinstance(err, HostKeyError)
        assert "unknown" in str(err) and str(err).startswith("lab1: ")
        assert "`repro hosts trust --limit lab1`" in str(err)

    in_lab(local_lab, body)


def test_missing_known_hosts_file_says_how_to_trust(local_lab: LocalLab, tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        host = dataclasses.replace(lab.host("lab1"), known_hosts=str(tmp_path / "nope"))
        err = await connect_error(host)
        assert isinstance(err, HostKeyError)
        assert "no known_hosts file" in str(err) and "repro hosts trust --limit lab1" in str(err)

    in_lab(local_lab, body)


def test_changed_host_key_is_refused(local_lab: LocalLab, tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        port = lab.hosts[0].port
        impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        known = tmp_path / "known_hosts"
        known.write_text(known_hosts_entry("127.0.0.1", port, impostor) + "\n")
        host = dataclasses.replace(lab.host("lab1"), known_hosts=str(known))
        err = await connect_error(host)
        assert isinstance(err, HostKeyError)
        assert "CHANGED" in str(err) and f"127.0.0.1:{port}" in str(err)
        # both fingerprints, and the real commands that would accept the new key
        real = lab.host_key("lab1").get_fingerprint("sha256")
        assert f"known {fingerprint(impostor)}, offered {real}" in str(err)
        assert f"ssh-keygen -R '[127.0.0.1]:{port}' -f {known}" in str(err)
        assert "`repro hosts trust --limit lab1`" in str(err)

        # another lab host's (valid) key for this address is just as wrong
        other = lab.host_key("lab2").export_public_key().decode()
        known.write_text(known_hosts_entry("127.0.0.1", port, other) + "\n")
        assert isinstance(await connect_error(host), HostKeyError)

    in_lab(local_lab, body)


def test_changed_key_type_is_refused(local_lab: LocalLab, tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        # known_hosts pins an ECDSA key; the server only has ed25519 now
        port = lab.hosts[0].port
        ecdsa = asyncssh.generate_private_key("ecdsa-sha2-nistp256").export_public_key().decode()
        known = tmp_path / "known_hosts"
        known.write_text(known_hosts_entry("127.0.0.1", port, ecdsa) + "\n")
        host = dataclasses.replace(lab.host("lab1"), known_hosts=str(known))
        err = await connect_error(host)
        assert isinstance(err, HostKeyError) and "CHANGED" in str(err)

    in_lab(local_lab, body)


# --- connection faults ------------------------------------------------------------------------


def test_refused_port(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        host = dataclasses.replace(lab.host("lab1"), port=free_port())
        err = await connect_error(host)
        assert not isinstance(err, HostKeyError)
        assert str(err).endswith("connection refused")

    in_lab(local_lab, body)


def test_connect_timeout_from_host_vars(local_lab: LocalLab, silent_port: int) -> None:
    async def body(lab: LocalLab) -> None:
        base = lab.host("lab1")
        host = dataclasses.replace(
            base, port=silent_port, vars={**base.vars, "repro_connect_timeout": 0.5}
        )
        start = time.monotonic()
        err = await connect_error(host)
        assert time.monotonic() - start < 5
        assert str(err).endswith("timed out after 0.5s")

    in_lab(local_lab, body)


def test_unresolvable_name(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        host = dataclasses.replace(lab.host("lab1"), address="no-such-host.invalid")
        err = await connect_error(host)
        assert "cannot resolve host name 'no-such-host.invalid'" in str(err)

    in_lab(local_lab, body)


def test_wrong_client_key_is_an_auth_failure(local_lab: LocalLab, tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        other = tmp_path / "other_key"
        other.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
        other.chmod(0o600)
        host = dataclasses.replace(lab.host("lab1"), key_file=str(other), user="builder")
        err = await connect_error(host)
        assert not isinstance(err, HostKeyError)
        assert str(err).endswith("authentication failed for user builder")

    in_lab(local_lab, body)


def test_unreadable_key_file(local_lab: LocalLab, tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        host = dataclasses.replace(lab.host("lab1"), key_file=str(tmp_path / "missing_key"))
        err = await connect_error(host)
        assert "missing_key" in str(err)

    in_lab(local_lab, body)


def test_bad_connection_var_is_an_inventory_error(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        base = lab.host("lab1")
        host = dataclasses.replace(base, vars={**base.vars, "repro_keepalive_interval": "often"})
        with pytest.raises(InventoryError, match="lab1: repro_keepalive_interval .* 'often'"):
            await AsyncsshTransport(host).connect()

    in_lab(local_lab, body)


def test_ssh_config_is_honoured(
    local_lab: LocalLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)

    async def body(lab: LocalLab) -> None:
        # no key in the inventory, no agent, no ~/.ssh/id_*: only the config's IdentityFile
        host = dataclasses.replace(lab.host("lab1"), key_file=None)
        assert "authentication failed" in str(await connect_error(host))
        (home / ".ssh" / "config").write_text(
            f"Host 127.0.0.1\n  IdentityFile {lab.client_key_path}\n"
        )
        async with AsyncsshTransport(host) as t:
            assert (await t.run("echo via config")).stdout == "via config\n"

    in_lab(local_lab, body)


def test_stop_and_start_host_drop_and_restore(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        t = AsyncsshTransport(lab.host("lab1"))
        await t.connect()
        try:
            running = asyncio.create_task(t.run("sleep 20"))
            await asyncio.sleep(0.3)
            start = time.monotonic()
            await lab.stop_host("lab1")
            with pytest.raises(ConnectError, match="connection lost"):
                await running
            assert time.monotonic() - start < 5
            await asyncio.sleep(0.1)
            assert not t.connected
            with pytest.raises(ConnectError):
                await t.run("true")
            with pytest.raises(ConnectError, match="connection refused"):
                await t.connect()

            await lab.start_host("lab1")
            await t.connect()  # same port, same key: known_hosts still matches
            assert (await t.run("echo back")).stdout == "back\n"
        finally:
            await t.close()

    in_lab(local_lab, body)


# --- host key helpers -------------------------------------------------------------------------


def test_fetch_host_keys_and_fingerprint(local_lab: LocalLab) -> None:
    async def body(lab: LocalLab) -> None:
        for lab_host in lab.hosts:
            keys = await fetch_host_keys("127.0.0.1", lab_host.port, timeout=5)
            expected = lab.host_key(lab_host.name)
            assert [k[0] for k in keys] == ["ssh-ed25519"]
            line = keys[0][1]
            assert line == expected.export_public_key().decode().strip()
            fp = fingerprint(line)
            assert fp.startswith("SHA256:") and fp == expected.get_fingerprint("sha256")
        # different hosts, different keys
        prints = {
            fingerprint((await fetch_host_keys("127.0.0.1", h.port))[0][1]) for h in lab.hosts
        }
        assert len(prints) == len(lab.hosts)
        with pytest.raises(ConnectError, match="connection refused"):
            await fetch_host_keys("127.0.0.1", free_port(), timeout=5)

    in_lab(local_lab, body)


def test_fetch_host_keys_sees_every_key_type() -> None:
    """A server with two host keys: both come back, once each, in the order we ask."""
    keys = [
        asyncssh.generate_private_key("ecdsa-sha2-nistp256"),
        asyncssh.generate_private_key("ssh-ed25519"),
    ]

    async def main() -> list[tuple[str, str]]:
        server = await asyncssh.listen("127.0.0.1", 0, server_host_keys=keys)
        try:
            return await fetch_host_keys("127.0.0.1", server.get_port(), timeout=5)
        finally:
            server.close()
            await server.wait_closed()

    found = asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT))
    assert [t for t, _ in found] == ["ssh-ed25519", "ecdsa-sha2-nistp256"]
    assert {fingerprint(line) for _, line in found} == {k.get_fingerprint("sha256") for k in keys}


def test_fetch_host_keys_times_out(silent_port: int) -> None:
    start = time.monotonic()
    with pytest.raises(ConnectError, match="timed out after 0.3s"):
        asyncio.run(fetch_host_keys("127.0.0.1", silent_port, timeout=0.3))
    assert time.monotonic() - start < 5


def test_fingerprint_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not an OpenSSH public key"):
        fingerprint("ssh-ed25519 not-base64!!")


def test_known_hosts_entry_format() -> None:
    line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB comment"
    assert (
        known_hosts_entry("10.0.0.1", 22, line) == "10.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB"
    )
    assert known_hosts_entry("10.0.0.1", 2222, line).startswith("[10.0.0.1]:2222 ssh-ed25519 ")
