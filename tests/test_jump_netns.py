"""ProxyJump through a real OpenSSH bastion (netns tier), set the way fleets set it
(`ansible_ssh_common_args` in group_vars/), on both transports: the bastion's key is checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from repro.errors import HostKeyError
from repro.inventory import Host, load_inventory
from repro.netlab import NetnsLab
from repro.transport.asyncssh import AsyncsshTransport
from repro.transport.base import Transport
from repro.transport.fabric import FabricTransport

pytestmark = pytest.mark.netns
KINDS = [AsyncsshTransport, FabricTransport]


def _behind_bastion(lab: NetnsLab, tmp_path: Path) -> Host:
    """h2, from an inventory whose group_vars send it through h1."""
    bastion = lab.host("h1").address
    inventory = Path(lab.inventory_path)
    gv = inventory.parent / "group_vars"
    gv.mkdir(exist_ok=True)
    (gv / "inner.yml").write_text(f"ansible_ssh_common_args: -o ProxyJump=root@{bastion}\n")
    text = inventory.read_text() + "    inner:\n      hosts:\n        h2:\n"
    (inventory.parent / "with-jump.yaml").write_text(text)
    return load_inventory(inventory.parent / "with-jump.yaml").hosts["h2"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/config of the machine's
    return tmp_path


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_proxyjump_through_openssh_bastion_checks_its_key(
    netlab_factory: Callable[..., NetnsLab], kind: type[Transport], tmp_path: Path, home: Path
) -> None:
    lab = netlab_factory(2)
    host = _behind_bastion(lab, tmp_path)
    bastion = lab.host("h1").address
    assert host.proxy_jump == f"root@{bastion}"

    async def through() -> str:
        async with kind(host) as t:
            r = await t.run("hostname; echo $SSH_CONNECTION")
            return r.stdout

    out = asyncio.run(asyncio.wait_for(through(), 30)).split()
    # h2 saw the connection come from the bastion's address, not the controller's
    assert out[0] == "h2" and out[1] == bastion

    # the bastion is rekeyed (a reinstall, or someone in the middle): nothing runs on h2
    lab.regenerate_host_key("h1")

    async def refused() -> HostKeyError:
        t = kind(host)
        try:
            with pytest.raises(HostKeyError) as info:
                await t.connect()
            return info.value
        finally:
            await t.close()

    err = asyncio.run(asyncio.wait_for(refused(), 30))
    assert f"host key for jump host {bastion} ({bastion}:22) has CHANGED" in str(err)
    assert str(err).startswith("h2: ")
