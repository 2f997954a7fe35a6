"""Where a connection goes: ~/.ssh/config (User, Port, HostName, IdentityFile, ProxyJump,
Include) under the inventory's values, and jump hosts whose keys are checked on both transports.
The in-process lab's hosts forward to each other, so lab1 serves as a bastion for lab2.
"""

from __future__ import annotations

import dataclasses
import getpass
from pathlib import Path

import asyncssh
import pytest

from repro.errors import HostKeyError, InventoryError
from repro.inventory import Host
from repro.lab import LocalLab
from repro.transport.asyncssh import AsyncsshTransport, known_hosts_entry
from repro.transport.base import Transport
from repro.transport.fabric import FabricTransport
from repro.transport.route import read_config, resolve
from tests.inlab import connect_error, in_lab, lab_fingerprint

KINDS = [AsyncsshTransport, FabricTransport]


@pytest.fixture
def local_lab(tmp_path: Path) -> LocalLab:
    """Three lab hosts that forward to each other: lab1 is the bastion for lab2."""
    return LocalLab(tmp_path / "lab", n=3, jump_hosts=True)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME with ~/.ssh, so the machine's own ssh_config never leaks in."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def _config(home: Path, text: str) -> None:
    (home / ".ssh" / "config").write_text(text)


# --- resolution (OpenSSH's precedence) --------------------------------------------------------


def test_inventory_values_win_and_ssh_config_fills_the_rest(home: Path) -> None:
    _config(
        home,
        "Host web1\n  HostName 10.1.1.1\n  User deploy\n  Port 2222\n"
        f"  IdentityFile {home}/.ssh/id_web\n",
    )
    (home / ".ssh" / "id_web").write_text("x")
    bare = Host(name="web1", address="web1", port_set=False)
    route = resolve(bare)
    assert route.jumps == ()
    t = route.target
    assert (t.address, t.port, t.user, t.key_files) == (
        "10.1.1.1", 2222, "deploy", (f"{home}/.ssh/id_web",)
    )  # fmt: skip
    # what the inventory sets wins over the config, field by field
    set_ = Host(name="web1", address="web1", port=22, user="me", key_file="/k")
    t = resolve(set_).target
    assert (t.address, t.port, t.user, t.key_files) == ("10.1.1.1", 22, "me", ("/k",))
    # nothing anywhere: port 22, the local user, the agent and default keys
    t = resolve(Host(name="db", address="db", port_set=False)).target
    assert (t.port, t.user, t.key_files) == (22, getpass.getuser(), ())


def test_proxyjump_from_config_and_inventory(home: Path) -> None:
    (home / ".ssh" / "conf.d").mkdir()
    (home / ".ssh" / "conf.d" / "bastions").write_text(
        "Host outer\n  HostName 192.0.2.1\n  User gate\nHost inner\n  ProxyJump outer\n  Port 2200\n"
    )
    _config(home, "Include conf.d/*\nHost web*\n  ProxyJump inner\nHost db\n  ProxyJump none\n")
    route = resolve(Host(name="web1", address="web1", key_file="/inv-key"))
    # the first hop's own ProxyJump puts another hop before it
    assert [(h.label, h.address, h.port, h.user) for h in route.jumps] == [
        ("jump host outer", "192.0.2.1", 22, "gate"),
        ("jump host inner", "inner", 2200, getpass.getuser()),
    ]
    # a jump host with no IdentityFile of its own uses the inventory's key
    assert all(h.key_files == ("/inv-key",) for h in route.jumps)
    assert resolve(Host(name="db", address="db")).jumps == ()
    # the inventory's ProxyJump (from ansible_ssh_common_args) beats the config's
    route = resolve(Host(name="web1", address="web1", proxy_jump="ops@[2001:db8::1]:2022"))
    assert [(h.address, h.port, h.user) for h in route.jumps] == [("2001:db8::1", 2022, "ops")]
    with pytest.raises(InventoryError, match="'gate:x' is not host"):
        resolve(Host(name="web1", address="web1", proxy_jump="gate:x"))


def test_proxyjump_loop_is_bounded(home: Path) -> None:
    _config(home, "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(InventoryError, match="longer than"):
        resolve(Host(name="t", address="a"))


def test_bad_port_in_config_names_the_file(home: Path) -> None:
    _config(home, "Host x\n  Port many\n")
    with pytest.raises(InventoryError, match=r"\.ssh/config: Port 'many' for x"):
        resolve(Host(name="x", address="x", port_set=False))
    assert read_config(home / "missing").lookup("x") == {"hostname": "x"}


# --- real connections -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_host_without_user_connects_and_config_user_applies(
    local_lab: LocalLab, kind: type[Transport], home: Path, tmp_path: Path
) -> None:
    async def body(lab: LocalLab) -> None:
        # no ansible_user at all: the local user, as ssh does (this used to crash)
        host = dataclasses.replace(lab.host("lab1"), user=None)
        async with kind(host) as t:
            assert (await t.run("echo ok")).stdout == "ok\n"
        # the config's User is the one tried (the wrong key makes the server say no)
        _config(home, "Host 127.0.0.1\n  User from-config\n")
        other = tmp_path / "other_key"
        other.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
        other.chmod(0o600)
        err = await connect_error(kind, dataclasses.replace(host, key_file=str(other)))
        assert str(err).endswith("authentication failed for user from-config")

    in_lab(local_lab, body)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_port_and_proxyjump_from_ssh_config(
    local_lab: LocalLab, kind: type[Transport], home: Path
) -> None:
    async def body(lab: LocalLab) -> None:
        p1, p2 = lab.hosts[0].port, lab.hosts[1].port
        _config(
            home,
            f"Host bastion\n  HostName 127.0.0.1\n  Port {p1}\n"
            f"Host target\n  HostName 127.0.0.1\n  Port {p2}\n  ProxyJump bastion\n",
        )
        # the inventory names only the alias: Port and the jump come from ~/.ssh/config
        host = dataclasses.replace(lab.host("lab2"), address="target", port=22, port_set=False)
        async with kind(host) as t:
            assert (await t.run("echo $HOME")).stdout.strip() == str(lab.hosts[1].root)
        # lab1 down: the jump host is what fails, and the message says so
        await lab.stop_host("lab1")
        err = await connect_error(kind, host)
        assert f"cannot connect to jump host bastion (127.0.0.1:{p1})" in str(err)

    in_lab(local_lab, body)


def _via_lab1(lab: LocalLab, known: Path, *lines: str) -> Host:
    known.write_text("".join(f"{line}\n" for line in lines))
    return dataclasses.replace(
        lab.host("lab2"),
        known_hosts=str(known),
        proxy_jump=f"127.0.0.1:{lab.hosts[0].port}",
    )


def _entry(lab: LocalLab, name: str, key: str | None = None) -> str:
    port = lab.hosts[int(name[-1]) - 1].port
    key = key or lab.host_key(name).export_public_key().decode()
    return known_hosts_entry("127.0.0.1", port, key)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_unknown_jump_host_key_is_refused_naming_the_jump_host(
    local_lab: LocalLab, kind: type[Transport], home: Path, tmp_path: Path
) -> None:
    async def body(lab: LocalLab) -> None:
        p1 = lab.hosts[0].port
        known = tmp_path / "known_hosts"
        err = await connect_error(kind, _via_lab1(lab, known, _entry(lab, "lab2")))
        assert isinstance(err, HostKeyError)
        text = str(err)
        assert text.startswith("lab2: host key for jump host 127.0.0.1 (127.0.0.1:") and (
            f":{p1})" in text
        )
        assert "unknown" in text and "CHANGED" not in text and "ssh-keygen -R" not in text
        assert known.read_text() == _entry(lab, "lab2") + "\n"  # nothing added

    in_lab(local_lab, body)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_rekeyed_jump_host_is_refused(
    local_lab: LocalLab, kind: type[Transport], home: Path, tmp_path: Path
) -> None:
    async def body(lab: LocalLab) -> None:
        p1 = lab.hosts[0].port
        impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        host = _via_lab1(
            lab, tmp_path / "known_hosts", _entry(lab, "lab1", impostor), _entry(lab, "lab2")
        )
        err = await connect_error(kind, host)
        assert isinstance(err, HostKeyError)
        assert f"host key for jump host 127.0.0.1 (127.0.0.1:{p1}) has CHANGED" in str(err)
        assert lab_fingerprint(lab, "lab1") in str(err)
        if kind is AsyncsshTransport:  # advice names the jump host's entry, not lab2's
            assert f"ssh-keygen -R '[127.0.0.1]:{p1}'" in str(err)

    in_lab(local_lab, body)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_rekeyed_target_behind_a_jump_host_is_refused(
    local_lab: LocalLab, kind: type[Transport], home: Path, tmp_path: Path
) -> None:
    async def body(lab: LocalLab) -> None:
        p2 = lab.hosts[1].port
        impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        host = _via_lab1(
            lab, tmp_path / "known_hosts", _entry(lab, "lab1"), _entry(lab, "lab2", impostor)
        )
        err = await connect_error(kind, host)
        assert isinstance(err, HostKeyError)
        assert f"host key for 127.0.0.1:{p2} has CHANGED" in str(err)
        # the key lab2 offers now was fetched again through the (checked) jump host
        assert lab_fingerprint(lab, "lab2") in str(err)

    in_lab(local_lab, body)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_jump_host_that_will_not_forward(
    tmp_path: Path, kind: type[Transport], home: Path
) -> None:
    async def body(lab: LocalLab) -> None:
        host = dataclasses.replace(
            lab.host("lab2"), proxy_jump=f"127.0.0.1:{lab.hosts[0].port}"
        )
        err = await connect_error(kind, host)
        assert not isinstance(err, HostKeyError)
        assert f"cannot connect to 127.0.0.1:{lab.hosts[1].port}: the jump host refused" in str(
            err
        )

    in_lab(LocalLab(tmp_path / "closed", n=2), body)  # forwards nothing


def test_hosts_trust_follows_the_route(local_lab: LocalLab, home: Path, tmp_path: Path) -> None:
    """`repro hosts trust` records the jump host's key first, then fetches the target's key
    through the (now checked) jump host; a changed jump host key stops there."""
    import io

    from repro.trust import trust_hosts

    async def body(lab: LocalLab) -> None:
        known = tmp_path / "known_hosts"
        host = _via_lab1(lab, known)
        asked: list[str] = []

        def yes(question: str) -> bool:
            asked.append(question)
            return True

        out = io.StringIO()
        assert await trust_hosts([host], confirm=yes, out=out) == 0
        assert len(asked) == 2 and "jump host 127.0.0.1" in asked[0] and "lab2 (" in asked[1]
        assert known.read_text() == _entry(lab, "lab1") + "\n" + _entry(lab, "lab2") + "\n"
        async with AsyncsshTransport(host) as t:
            assert (await t.run("echo in")).stdout == "in\n"
        # run again: both already trusted, nothing asked
        out = io.StringIO()
        assert await trust_hosts([host], confirm=yes, out=out) == 0
        assert len(asked) == 2 and out.getvalue().count("already trusted") == 2
        # the jump host's key changes: refused, and lab2 is not even looked at
        impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        host = _via_lab1(lab, known, _entry(lab, "lab1", impostor))
        out = io.StringIO()
        assert await trust_hosts([host], confirm=yes, out=out) == 3
        assert "jump host 127.0.0.1: HOST KEY CHANGED" in out.getvalue()
        assert len(asked) == 2  # nothing new was asked: not the jump host, not lab2

    in_lab(local_lab, body)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_ssh_config_known_hosts_file_checks_the_keys(
    local_lab: LocalLab, kind: type[Transport], home: Path, tmp_path: Path
) -> None:
    """ssh_config's UserKnownHostsFile is where a host's key is looked up when the inventory
    names no repro_known_hosts (which wins); the key is checked against it, every hop."""

    async def body(lab: LocalLab) -> None:
        fleet = tmp_path / "fleet_known_hosts"
        fleet.write_text(f"{_entry(lab, 'lab1')}\n")
        host = dataclasses.replace(lab.host("lab1"), known_hosts=None)
        # no file for it at all: ~/.ssh/known_hosts does not exist in this HOME
        err = await connect_error(kind, host)
        assert f"no known_hosts file at {home}/.ssh/known_hosts" in str(err)
        _config(home, f"Host 127.0.0.1\n  UserKnownHostsFile {fleet} ~/.ssh/known_hosts\n")
        assert resolve(host).known_hosts == fleet
        async with kind(host) as t:
            assert (await t.run("echo ok")).stdout == "ok\n"
        # the file is what is trusted: another host's key there is a refusal, not a pass
        stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        fleet.write_text(f"{_entry(lab, 'lab1', stranger)}\n")
        err = await connect_error(kind, host)
        assert isinstance(err, HostKeyError) and "CHANGED" in str(err) and str(fleet) in str(err)
        # repro_known_hosts wins over the config's file
        assert resolve(dataclasses.replace(host, known_hosts="/mine")).known_hosts == Path("/mine")

    in_lab(local_lab, body)


def test_ssh_config_known_hosts_file_that_cannot_be_used_is_named(home: Path) -> None:
    from repro.transport.route import check_config

    _config(home, "Host a\n  UserKnownHostsFile kh\nHost b\n  UserKnownHostsFile /dev/null\n"
                  "Host c\n  UserKnownHostsFile ~/x ~/y\n")  # fmt: skip
    hosts = [Host(name=n, address=n) for n in "abc"]
    default = home / ".ssh" / "known_hosts"
    assert [resolve(h).known_hosts for h in hosts] == [default, default, home / "x"]
    text = "\n".join(check_config(hosts))
    assert "UserKnownHostsFile 'kh' ignored (not an absolute path); hosts a" in text
    assert "UserKnownHostsFile '/dev/null' ignored (keys are always checked" in text
    assert "UserKnownHostsFile: only ~/x is read (~/y not); hosts c" in text


def test_ssh_config_options_not_applied_are_named(home: Path) -> None:
    from repro.transport.route import check_config

    _config(
        home,
        "Host web*\n  GlobalKnownHostsFile /etc/other\n  ControlMaster auto\n"
        "  ProxyCommand nc %h %p\n  ProxyJump gate\nHost *\n  ServerAliveInterval 5\n",
    )
    hosts = [Host(name=f"web{i}", address=f"web{i}") for i in range(5)]
    hosts.append(Host(name="here", address="localhost", connection="local"))
    lines = check_config(hosts)
    text = "\n".join(lines)
    assert "globalknownhostsfile is not applied (set repro_known_hosts" in text
    assert "serveralivecountmax" not in text and "serveraliveinterval is not applied" in text
    assert "proxycommand is not applied (ProxyJump is used instead)" in text
    assert "controlmaster" not in text  # changes nothing for repro: no noise
    assert "hosts web0, web1, web2 and 2 more" in lines[0] and "here" not in text
    # a value that cannot work is bad input before anything connects, naming the file
    _config(home, "Host web0\n  Port twenty\n")
    with pytest.raises(InventoryError, match=r"\.ssh/config: Port 'twenty' for web0"):
        check_config([Host(name="web0", address="web0", port_set=False)])


def test_bad_ssh_config_is_bad_input_before_connecting(home: Path, tmp_path: Path) -> None:
    import io

    from repro.cli import main

    _config(home, "Host 192.0.2.9\n  Port 99999\n")
    inv = tmp_path / "inv.yaml"
    inv.write_text("h:\n  hosts:\n    h1: {ansible_host: 192.0.2.9}\n")
    err = io.StringIO()
    assert main(["facts", "-i", str(inv)], stderr=err) == 2
    assert "Port '99999' for 192.0.2.9 is not a port number" in err.getvalue()


def test_the_asyncssh_path_does_not_import_paramiko_without_an_ssh_config(tmp_path: Path) -> None:
    """paramiko costs ~55 ms to import; only a real ~/.ssh/config (or fabric) needs it."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path\n"
        "import repro.cli, repro.session, repro.transport.asyncssh, repro.transport.route as r\n"
        "c = r.read_config(Path(sys.argv[1]))\n"
        "assert c.lookup('h1') == {'hostname': 'h1'}, c.lookup('h1')\n"
        "assert 'paramiko' not in sys.modules\n"
        "r.read_config(Path(sys.argv[2]))\n"
        "assert 'paramiko' in sys.modules\n"
    )
    cfg = tmp_path / "config"
    cfg.write_text("Host h1\n  Port 2222\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none"), str(cfg)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
