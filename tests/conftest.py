"""Shared fixtures. Each engineer adds theirs here; keep each one short and documented.

The lab is async: a fixture hands out an unstarted LocalLab and the test starts it inside
its own event loop (`asyncio.run(...)` + `async with local_lab:`), so no pytest plugin is needed.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from repro.lab import LocalLab
from repro.netlab import NetlabUnavailable, NetnsLab, cleanup_stale
from tests.fixtures.guix_repos import (
    container_problem,
    double_env,
    make_cuprate_repo,
    require_containers,
)


@pytest.fixture
def local_lab(tmp_path: Path) -> LocalLab:
    """A 3-host LocalLab in tmp_path, not yet started: `async with local_lab as lab: ...`."""
    return LocalLab(tmp_path / "lab", n=3)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word (a hung sshd)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


# --- the guix TEST DOUBLE run directly, outside any lab (tests/fixtures/guix_repos.py) ---------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME (tmp_path/home): where the guix double reads its knob file."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def guix_container() -> None:
    """The guix double's `shell --container` needs bubblewrap and user namespaces: without them
    the test skips with the reason, or fails under REPRO_REQUIRE_NETNS=1 (CI), like netns."""
    require_containers(container_problem(), os.environ.get("REPRO_REQUIRE_NETNS") == "1")


@pytest.fixture
def env(home: Path, guix_container: None) -> dict[str, str]:
    """The environment to run the guix double and the fixture scripts in, with HOME=home."""
    return double_env(home)


@pytest.fixture
def cuprate(tmp_path: Path) -> tuple[Path, str]:
    """The fixture Cuprate repository at tmp_path/origin and its commit."""
    return make_cuprate_repo(tmp_path / "origin")


# --- real OpenSSH hosts in network namespaces (repro/netlab.py) ------------------------------


def _started_netlab(lab: NetnsLab) -> NetnsLab:
    """Start `lab`; a machine that cannot host one skips, unless REPRO_REQUIRE_NETNS=1 (CI)."""
    try:
        return lab.start()
    except NetlabUnavailable as exc:
        if os.environ.get("REPRO_REQUIRE_NETNS") == "1":
            pytest.fail(f"REPRO_REQUIRE_NETNS=1 but the netns lab cannot be set up: {exc}")
        pytest.skip(f"netns lab unavailable: {exc}")


@pytest.fixture
def netlab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., NetnsLab]]:
    """Start real-OpenSSH labs on demand: `netlab_factory(5, cpuinfo={"h1": Path(...)})`.

    Takes NetnsLab's arguments except base_dir; every lab is torn down after the test.
    """
    labs: list[NetnsLab] = []
    cleanup_stale("rl")  # leftovers of a crashed earlier session; live labs are untouched

    def make(n: int = 3, **kwargs: Any) -> NetnsLab:
        lab = NetnsLab(tmp_path_factory.mktemp("netlab"), n, **kwargs)
        labs.append(lab)
        return _started_netlab(lab)

    yield make
    errors = []
    for lab in labs:  # close every lab even when one teardown fails
        try:
            lab.close()
        except Exception as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def netlab(netlab_factory: Callable[..., NetnsLab]) -> NetnsLab:
    """A started 3-host lab (h1..h3): `ssh` via lab.ssh_argv, inventory at lab.inventory_path."""
    return netlab_factory(3)


# --- real gpg keys (tests/gpgkeys.py) ---------------------------------------------------------


@pytest.fixture(scope="module")
def gpg_keys() -> Iterator[Any]:
    """A throwaway GNUPGHOME to make builder keys in, sign with and export from."""
    from tests.gpgkeys import GpgKeys

    keys = GpgKeys()
    yield keys
    keys.close()
