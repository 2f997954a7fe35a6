"""The asyncssh transport's own helpers, against the in-process lab: fetching a host's keys
for `repro hosts trust`, fingerprints, known_hosts lines. The faults both SSH transports share
(host keys, refused, timeouts, auth, ~/.ssh/config, a host stopped) are test_transport_failures.py.
"""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from repro.errors import ConnectError
from repro.lab import LocalLab
from repro.transport.asyncssh import fetch_host_keys, fingerprint, known_hosts_entry
from tests.inlab import TEST_TIMEOUT, free_port, in_lab

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
    # its own timeout must fire: the outer bound would raise TimeoutError, not ConnectError
    with pytest.raises(ConnectError, match="timed out after 0.3s"):
        asyncio.run(asyncio.wait_for(fetch_host_keys("127.0.0.1", silent_port, timeout=0.3), 10))


def test_fingerprint_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not an OpenSSH public key"):
        fingerprint("ssh-ed25519 not-base64!!")


def test_known_hosts_entry_format() -> None:
    line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB comment"
    assert (
        known_hosts_entry("10.0.0.1", 22, line) == "10.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB"
    )
    assert known_hosts_entry("10.0.0.1", 2222, line).startswith("[10.0.0.1]:2222 ssh-ed25519 ")
