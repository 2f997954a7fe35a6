"""Helpers for tests on the in-process SSH lab (repro.lab.LocalLab): run a body in a started lab
under a timeout, pin lab1 to a known_hosts file, expect a failed connect, find a port that refuses."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from repro.errors import ConnectError
from repro.inventory import Host
from repro.lab import LocalLab
from repro.transport.base import Transport

TEST_TIMEOUT = 30.0


def in_lab(lab: LocalLab, body: Callable[[LocalLab], Awaitable[None]]) -> None:
    """Start `lab`, run `body(lab)` within TEST_TIMEOUT, stop the lab, all in a fresh loop."""

    async def main() -> None:
        async with lab:
            await asyncio.wait_for(body(lab), TEST_TIMEOUT)

    asyncio.run(main())


async def connect_error(kind: type[Transport], host: Host) -> ConnectError:
    """The ConnectError a `kind` transport raises connecting to `host`; it is left closed."""
    t = kind(host)
    try:
        with pytest.raises(ConnectError) as info:
            await t.connect()
        assert not t.connected
        return info.value
    finally:
        await t.close()


def lab1_with_known_hosts(lab: LocalLab, path: Path, *lines: str) -> Host:
    """lab1, checked against the known_hosts file `path`, written to hold exactly `lines`."""
    path.write_text("".join(f"{line}\n" for line in lines))
    return dataclasses.replace(lab.host("lab1"), known_hosts=str(path))


def lab_fingerprint(lab: LocalLab, name: str) -> str:
    """The SHA256 fingerprint of the host key lab host `name` really serves."""
    return str(lab.host_key(name).get_fingerprint("sha256"))


def free_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
