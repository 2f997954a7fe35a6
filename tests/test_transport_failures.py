"""The SSH transports (asyncssh and Fabric) against the in-process lab under the same faults: host
keys unknown, changed or with no file, refused, silent, unresolvable, bad keys and vars, ssh_config,
a host stopped mid-command. Every handshake is real SSH over loopback; nothing turns host key
checking off. What only one transport has is tested in test_transport_{asyncssh,fabric}.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from repro.errors import ConnectError, HostKeyError, InventoryError
from repro.lab import LocalLab
from repro.transport.asyncssh import AsyncsshTransport, fingerprint, known_hosts_entry
from repro.transport.base import Transport
from repro.transport.fabric import FabricTransport
from tests.inlab import connect_error, free_port, in_lab, lab1_with_known_hosts, lab_fingerprint


@dataclass(frozen=True)
class Flavour:
    """A transport, and what its host key messages say beyond the words both share.

    The phrases are formatted with {offered} (the key lab1 serves), {known} (the key
    known_hosts pins), {port} and {known_hosts}.
    """

    name: str
    kind: type[Transport]
    unknown_key_says: tuple[str, ...]
    changed_key_says: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Flavour({self.name})"


FLAVOURS = [
    Flavour(
        "asyncssh",
        AsyncsshTransport,
        unknown_key_says=(),
        changed_key_says=(
            "known {known}, offered {offered}",
            "ssh-keygen -R '[127.0.0.1]:{port}' -f {known_hosts}",
            "`repro hosts trust --limit lab1`",
        ),
    ),
    Flavour(
        "fabric",
        FabricTransport,
        unknown_key_says=("it offers ssh-ed25519 {offered}",),
        changed_key_says=("known_hosts has {known}, the host offers {offered}",),
    ),
]


@pytest.fixture(params=FLAVOURS, ids=lambda f: f.name)
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return request.param


# --- host keys --------------------------------------------------------------------------------


def test_known_host_connects(local_lab: LocalLab, flavour: Flavour) -> None:
    async def body(lab: LocalLab) -> None:
        async with flavour.kind(lab.host("lab2")) as t:
            assert t.connected and t.name == flavour.name
            r = await t.run("echo $HOME")
            assert r.stdout.strip() == str(lab.hosts[1].root)
            assert "connected" in repr(t)

    in_lab(local_lab, body)


def test_unknown_host_key_is_refused(local_lab: LocalLab, flavour: Flavour, tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        empty = tmp_path / "empty_known_hosts"
        host = lab1_with_known_hosts(lab, empty)
        err = await connect_error(flavour.kind, host)
        assert isinstance(err, HostKeyError)
        assert "unknown" in str(err) and str(err).startswith("lab1: ")
        assert "`repro hosts trust --limit lab1`" in str(err)
        for phrase in flavour.unknown_key_says:
            assert phrase.format(offered=lab_fingerprint(lab, "lab1")) in str(err)
        # nothing trusted on first use (no AutoAddPolicy): known_hosts was not written
        assert empty.read_text() == ""

    in_lab(local_lab, body)


def test_missing_known_hosts_file_says_how_to_trust(
    local_lab: LocalLab, flavour: Flavour, tmp_path: Path
) -> None:
    async def body(lab: LocalLab) -> None:
        host = dataclasses.replace(lab.host("lab1"), known_hosts=str(tmp_path / "nope"))
        err = await connect_error(flavour.kind, host)
        assert isinstance(err, HostKeyError)
        assert "no known_hosts file" in str(err) and "repro hosts trust --limit lab1" in str(err)
        assert not (tmp_path / "nope").exists()

    in_lab(local_lab, body)


def test_changed_host_key_is_refused(local_lab: LocalLab, flavour: Flavour, tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        port = lab.hosts[0].port
        impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        known = tmp_path / "known_hosts"
        host = lab1_with_known_hosts(lab, known, known_hosts_entry("127.0.0.1", port, impostor))
        err = await connect_error(flavour.kind, host)
        assert isinstance(err, HostKeyError)
        assert "CHANGED" in str(err) and f"127.0.0.1:{port}" in str(err)
        assert str(err).startswith("lab1: ")
        # both fingerprints: the trusted one and the one the host now offers
        offered = lab_fingerprint(lab, "lab1")
        assert fingerprint(impostor) in str(err) and offered in str(err)
        for phrase in flavour.changed_key_says:
            said = phrase.format(
                known=fingerprint(impostor), offered=offered, port=port, known_hosts=known
            )
            assert said in str(err)

        # another lab host's (valid) key for this address is just as wrong
        other = lab.host_key("lab2").export_public_key().decode()
        lab1_with_known_hosts(lab, known, known_hosts_entry("127.0.0.1", port, other))
        err = await connect_error(flavour.kind, host)
        assert isinstance(err, HostKeyError) and lab_fingerprint(lab, "lab2") in str(err)

    in_lab(local_lab, body)


def test_changed_key_type_is_refused(local_lab: LocalLab, flavour: Flavour, tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        # known_hosts pins an ECDSA key; the server only has ed25519 now
        port = lab.hosts[0].port
        ecdsa = asyncssh.generate_private_key("ecdsa-sha2-nistp256").export_public_key().decode()
        entry = known_hosts_entry("127.0.0.1", port, ecdsa)
        host = lab1_with_known_hosts(lab, tmp_path / "known_hosts", entry)
        err = await connect_error(flavour.kind, host)
        assert isinstance(err, HostKeyError) and "CHANGED" in str(err)
        assert fingerprint(ecdsa) in str(err)

    in_lab(local_lab, body)


# --- connection faults ------------------------------------------------------------------------


def test_refused_port(local_lab: LocalLab, flavour: Flavour) -> None:
    async def body(lab: LocalLab) -> None:
        port = free_port()
        host = dataclasses.replace(lab.host("lab1"), port=port)
        err = await connect_error(flavour.kind, host)
        assert not isinstance(err, HostKeyError)
        assert str(err) == f"lab1: cannot connect to 127.0.0.1:{port}: connection refused"

    in_lab(local_lab, body)


def test_connect_timeout_from_host_vars(
    local_lab: LocalLab, flavour: Flavour, silent_port: int
) -> None:
    async def body(lab: LocalLab) -> None:
        base = lab.host("lab1")
        host = dataclasses.replace(
            base, port=silent_port, vars={**base.vars, "repro_connect_timeout": 0.5}
        )
        err = await connect_error(flavour.kind, host)
        assert str(err).endswith("timed out after 0.5s")  # its own timeout, not the test's

    in_lab(local_lab, body)


def test_unresolvable_name(local_lab: LocalLab, flavour: Flavour) -> None:
    async def body(lab: LocalLab) -> None:
        host = dataclasses.replace(lab.host("lab1"), address="no-such-host.invalid")
        err = await connect_error(flavour.kind, host)
        assert "cannot resolve host name 'no-such-host.invalid'" in str(err)

    in_lab(local_lab, body)


def test_wrong_client_key_is_an_auth_failure(
    local_lab: LocalLab, flavour: Flavour, tmp_path: Path
) -> None:
    async def body(lab: LocalLab) -> None:
        other = tmp_path / "other_key"
        other.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
        other.chmod(0o600)
        host = dataclasses.replace(lab.host("lab1"), key_file=str(other), user="builder")
        err = await connect_error(flavour.kind, host)
        assert not isinstance(err, HostKeyError)
        assert str(err).endswith("authentication failed for user builder")

    in_lab(local_lab, body)


def test_unreadable_key_file(local_lab: LocalLab, flavour: Flavour, tmp_path: Path) -> None:
    async def body(lab: LocalLab) -> None:
        host = dataclasses.replace(lab.host("lab1"), key_file=str(tmp_path / "missing_key"))
        err = await connect_error(flavour.kind, host)
        assert "missing_key" in str(err)

    in_lab(local_lab, body)


def test_bad_connection_var_is_an_inventory_error(local_lab: LocalLab, flavour: Flavour) -> None:
    async def body(lab: LocalLab) -> None:
        base = lab.host("lab1")
        host = dataclasses.replace(base, vars={**base.vars, "repro_keepalive_interval": "often"})
        with pytest.raises(InventoryError, match="lab1: repro_keepalive_interval .* 'often'"):
            await flavour.kind(host).connect()

    in_lab(local_lab, body)


def test_ssh_config_is_honoured(
    local_lab: LocalLab, flavour: Flavour, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)

    async def body(lab: LocalLab) -> None:
        # no key in the inventory, no agent, no ~/.ssh/id_*: only the config's IdentityFile
        host = dataclasses.replace(lab.host("lab1"), key_file=None)
        assert "authentication failed" in str(await connect_error(flavour.kind, host))
        (home / ".ssh" / "config").write_text(
            f"Host 127.0.0.1\n  IdentityFile {lab.client_key_path}\n"
        )
        async with flavour.kind(host) as t:
            assert (await t.run("echo via config")).stdout == "via config\n"

    in_lab(local_lab, body)


def test_stop_and_start_host_drop_and_restore(local_lab: LocalLab, flavour: Flavour) -> None:
    async def body(lab: LocalLab) -> None:
        t = flavour.kind(lab.host("lab1"))
        await t.connect()
        try:
            running = asyncio.create_task(t.run("sleep 20"))
            await asyncio.sleep(0.3)
            await lab.stop_host("lab1")
            # a `sleep 20` that ended by itself would return, not raise
            with pytest.raises(ConnectError, match="connection lost"):
                await running
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
