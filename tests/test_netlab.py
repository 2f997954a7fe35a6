"""Tests of the namespace lab itself: real sshd per host, reached with the real OpenSSH client.

Faults are real (SIGKILL sshd, veth down, new host key); teardown is checked against `ip`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from repro import netlab as netlab_mod
from repro.errors import UnknownHostError, UsageError
from repro.inventory import load_inventory
from repro.netlab import (
    NetlabError,
    NetlabUnavailable,
    NetnsLab,
    cleanup_stale,
    lab_down,
    lab_up,
)
from tests.procs import alive, wait_until

pytestmark = pytest.mark.netns

Factory = Callable[..., NetnsLab]
REPO = Path(__file__).resolve().parents[1]


def ssh(
    lab: NetnsLab, name: str, command: str, *, timeout: float = 20, connect_timeout: float = 5
) -> subprocess.CompletedProcess[str]:
    argv = lab.ssh_argv(name, command, connect_timeout=connect_timeout)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def ssh_ok(lab: NetnsLab, name: str, command: str) -> str:
    done = ssh(lab, name, command)
    assert done.returncode == 0, f"{name}: {command!r} -> {done.returncode}: {done.stderr}"
    return done.stdout


def ip_lines(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=30, check=True
    ).stdout


def leftovers(prefix: str, lab_id: int) -> list[str]:
    spaces = [line.split()[0] for line in ip_lines("netns", "list").splitlines() if line.strip()]
    links = [
        line.split(":")[1].strip().split("@")[0] for line in ip_lines("-o", "link").splitlines()
    ]
    mine = [n for n in spaces if n.startswith(f"{prefix}-{lab_id}-")]
    mine += [n for n in links if n == f"{prefix}br{lab_id}" or n.startswith(f"{prefix}{lab_id}v")]
    return mine


# --- the lab as a controller sees it ----------------------------------------------------------


def test_each_host_answers_ssh_with_its_own_hostname(netlab: NetnsLab) -> None:
    names = [h.name for h in netlab.hosts]
    assert names == ["h1", "h2", "h3"]
    for host in netlab.hosts:
        assert ipaddress.ip_address(host.address) in ipaddress.ip_network("198.18.0.0/15")
        assert ssh_ok(netlab, host.name, "hostname").strip() == host.name
        assert netlab.exec(host.name, ["hostname"]).stdout.strip() == host.name
    assert len({h.address for h in netlab.hosts}) == 3
    with pytest.raises(UnknownHostError, match="h9"):
        netlab.host("h9")


def test_a_lab_past_one_subnet_reaches_every_host(
    netlab_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lab larger than one /24 (past 245 hosts) puts the rest in 198.19.<id>.0/24 on the
    same bridge: shrunk here to 2 hosts a subnet, so 3 real hosts span both."""
    monkeypatch.setattr(netlab_mod, "_ONE_SUBNET", 2)
    monkeypatch.setattr(netlab_mod, "_PER_SUBNET", 2)
    lab = netlab_factory(3)
    subnets = {h.address.split(".")[1] for h in lab.hosts}
    assert subnets == {"18", "19"}, [h.address for h in lab.hosts]
    for host in lab.hosts:
        assert ssh_ok(lab, host.name, "hostname").strip() == host.name


def test_inventory_and_known_hosts_describe_the_real_hosts(netlab: NetnsLab) -> None:
    doc = yaml.safe_load(netlab.inventory_path.read_text())
    hosts = doc["all"]["children"]["netlab"]["hosts"]
    assert list(hosts) == ["h1", "h2", "h3"]
    inventory = load_inventory(netlab.inventory_path)
    for lab_host in netlab.hosts:
        host = inventory.hosts[lab_host.name]
        assert (host.address, host.port, host.user) == (lab_host.address, 22, "root")
        assert host.key_file == str(netlab.key_path)
        assert host.known_hosts == str(netlab.known_hosts_path)
        assert "netlab" in host.groups
    assert oct(netlab.key_path.stat().st_mode & 0o777) == "0o600"
    known = netlab.known_hosts_path.read_text().splitlines()
    assert [line.split()[0] for line in known] == [h.address for h in netlab.hosts]
    # The key sshd really presents, fetched over the wire, is the one known_hosts holds.
    h2 = netlab.host("h2")
    scanned = subprocess.run(
        ["ssh-keyscan", "-T", "5", "-t", "ed25519", h2.address],
        capture_output=True, text=True, timeout=20, check=False,
    ).stdout.split()  # fmt: skip
    assert scanned[1:3] == known[1].split()[1:3]


def test_each_host_sees_its_own_cpuinfo(netlab_factory: Factory, tmp_path: Path) -> None:
    fake_text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Lab Sapphire Rapids\n"
    fake_file = tmp_path / "zen4.txt"
    fake_file.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: Lab Zen 4\n")
    lab = netlab_factory(3, cpuinfo={"h1": fake_text, "h2": fake_file})
    assert ssh_ok(lab, "h1", "cat /proc/cpuinfo") == fake_text
    assert ssh_ok(lab, "h2", "cat /proc/cpuinfo") == fake_file.read_text()
    own = ssh_ok(lab, "h3", "cat /proc/cpuinfo")
    assert "processor" in own and "Lab " not in own
    # The controller's own /proc/cpuinfo is untouched.
    assert "Lab " not in Path("/proc/cpuinfo").read_text()


def test_home_and_tmp_are_private_per_host(netlab: NetnsLab) -> None:
    marker = f"netlab-{uuid.uuid4().hex}"
    ssh_ok(netlab, "h1", f"echo one > ~/{marker} && echo one > /tmp/{marker} && echo $HOME")
    assert ssh_ok(netlab, "h1", f"cat ~/{marker} /tmp/{marker}") == "one\none\n"
    for other in ("h2", "h3"):
        assert ssh(netlab, other, f"test -e ~/{marker} || test -e /tmp/{marker}").returncode == 1
    h1 = netlab.host("h1")
    assert (h1.home / marker).read_text() == "one\n"
    assert (h1.tmp / marker).read_text() == "one\n"
    assert not (Path("/root") / marker).exists() and not (Path("/tmp") / marker).exists()


def test_many_parallel_connections_to_one_host(netlab: NetnsLab) -> None:
    argv = netlab.ssh_argv("h1", "hostname")
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(30)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert outs == ["h1"] * 30


# --- faults ---------------------------------------------------------------------------------


def test_detached_build_survives_stop_sshd_and_start_sshd_restores(netlab: NetnsLab) -> None:
    session = subprocess.Popen(
        netlab.ssh_argv("h1", "echo open; sleep 60"), stdout=subprocess.PIPE, text=True
    )
    assert session.stdout is not None and session.stdout.readline() == "open\n"
    ssh_ok(
        netlab,
        "h1",
        "setsid sh -c 'echo $$ > /tmp/build.pid; exec sleep 30' </dev/null >/dev/null 2>&1 &",
    )
    assert wait_until(lambda: netlab.exec("h1", ["cat", "/tmp/build.pid"]).stdout.strip() != "")
    build_pid = int(netlab.exec("h1", ["cat", "/tmp/build.pid"]).stdout)

    netlab.stop_sshd("h1")

    assert session.wait(timeout=10) == 255  # the open connection dropped
    assert ssh(netlab, "h1", "true", connect_timeout=2).returncode == 255
    comms = [Path(f"/proc/{pid}/comm").read_text().strip() for pid in netlab.pids("h1")]
    assert not [c for c in comms if c.startswith("sshd")], comms
    assert build_pid in netlab.pids("h1") and alive(build_pid)
    assert netlab.exec("h1", ["sh", "-c", "kill -0 $(cat /tmp/build.pid)"]).returncode == 0
    assert ssh_ok(netlab, "h2", "hostname").strip() == "h2"

    netlab.start_sshd("h1")

    assert ssh_ok(netlab, "h1", "hostname; cat /tmp/build.pid").split() == ["h1", str(build_pid)]
    assert alive(build_pid)


def test_link_down_makes_host_unreachable_and_link_up_restores(netlab: NetnsLab) -> None:
    netlab.link_down("h2")
    done = ssh(netlab, "h2", "true", connect_timeout=2)
    assert done.returncode == 255
    assert "timed out" in done.stderr or "unreachable" in done.stderr.lower(), done.stderr
    assert ssh_ok(netlab, "h1", "hostname").strip() == "h1"

    netlab.link_up("h2")
    assert wait_until(lambda: ssh(netlab, "h2", "true", connect_timeout=2).returncode == 0, 15)
    assert ssh_ok(netlab, "h2", "hostname").strip() == "h2"


def test_regenerated_host_key_is_refused_by_strict_ssh(netlab: NetnsLab, tmp_path: Path) -> None:
    new_key = netlab.regenerate_host_key("h3")
    done = ssh(netlab, "h3", "true")
    assert done.returncode == 255
    assert "Host key verification failed" in done.stderr, done.stderr
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in done.stderr
    assert ssh_ok(netlab, "h1", "hostname").strip() == "h1"
    # sshd really serves the new key: trusting it on purpose gets in.
    trusted = tmp_path / "known_hosts"
    address = netlab.host("h3").address
    trusted.write_text(f"{address} {' '.join(new_key.split()[:2])}\n")
    argv = netlab.ssh_argv("h3", "hostname")
    argv[argv.index(f"UserKnownHostsFile={netlab.known_hosts_path}")] = (
        f"UserKnownHostsFile={trusted}"
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert done.stdout == "h3\n", done.stderr


# --- lifecycle ------------------------------------------------------------------------------


def test_two_labs_coexist_and_teardown_leaves_nothing(netlab_factory: Factory) -> None:
    first = netlab_factory(2)
    second = netlab_factory(2, names=["alpha", "beta"])
    assert first.lab_id != second.lab_id and first.bridge != second.bridge
    assert ssh_ok(first, "h2", "hostname").strip() == "h2"
    assert ssh_ok(second, "beta", "hostname").strip() == "beta"
    ssh_ok(first, "h1", "setsid sleep 60 </dev/null >/dev/null 2>&1 &")
    assert first.lab_id is not None
    pids = [pid for h in first.hosts for pid in first.pids(h.name)]
    assert len(pids) >= 2 * 3  # per host: holder, its parent, sshd (and the sleep on h1)
    lock = netlab_mod.STATE_DIR / f"rl-{first.lab_id}.lock"
    assert lock.exists()

    first.close()
    first.close()  # idempotent

    assert leftovers("rl", first.lab_id) == []
    assert wait_until(lambda: not any(alive(pid) for pid in pids), 15)
    assert not lock.exists() and not (netlab_mod.STATE_DIR / f"rl-{first.lab_id}").exists()
    assert ssh_ok(second, "alpha", "hostname").strip() == "alpha"  # the other lab is untouched


def test_failed_start_tears_down_what_was_built(
    netlab_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[tuple[str, int]] = []
    real_wait = netlab_mod._wait_listening

    def fail_after_sshd(hosts: list[netlab_mod.NetHost], procs: object, deadline: float) -> None:
        real_wait(hosts, procs, deadline)  # type: ignore[arg-type]
        built.append((hosts[0].netns.split("-")[0], int(hosts[0].netns.split("-")[1])))
        raise NetlabError("injected failure after every sshd came up")

    monkeypatch.setattr(netlab_mod, "_wait_listening", fail_after_sshd)
    with pytest.raises(NetlabError, match="injected"):
        netlab_factory(3)
    prefix, lab_id = built[0]
    assert leftovers(prefix, lab_id) == []


def test_cleanup_stale_removes_a_crashed_lab_only(netlab: NetnsLab, tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from repro.netlab import NetnsLab; "
        "lab = NetnsLab(Path(sys.argv[1]), 2, prefix='rlcs').start(); "
        "print(lab.lab_id, flush=True); time.sleep(120)"
    )
    crashed = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "crashed")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert crashed.stdout is not None
        lab_id = int(crashed.stdout.readline())
        assert len(leftovers("rlcs", lab_id)) == 2 + 2 + 1  # 2 netns, 2 veths, 1 bridge
        assert cleanup_stale("rlcs") == []  # its owner is alive
        assert not set(cleanup_stale("rl")) & {h.netns for h in netlab.hosts}
    finally:
        crashed.send_signal(signal.SIGKILL)
        crashed.wait(timeout=10)
    assert len(leftovers("rlcs", lab_id)) == 5  # a crash leaves the lab behind...
    removed = cleanup_stale("rlcs")
    assert sorted(removed) == sorted(
        [f"rlcs-{lab_id}-1", f"rlcs-{lab_id}-2", f"rlcs{lab_id}v1", f"rlcs{lab_id}v2"]
        + [f"rlcsbr{lab_id}"]
    )
    assert leftovers("rlcs", lab_id) == []
    assert cleanup_stale("rlcs") == []
    # ...and the live lab of this test (same machine, prefix "rl") still works.
    assert ssh_ok(netlab, "h1", "hostname").strip() == "h1"


def test_lab_up_outlives_its_owner_until_lab_down(netlab_factory: Factory, tmp_path: Path) -> None:
    netlab_factory(1)  # only to skip (or fail under REPRO_REQUIRE_NETNS) where labs cannot run
    base = tmp_path / "people"
    code = (
        "import sys; from pathlib import Path; from repro.netlab import lab_up; "
        "lab_up(Path(sys.argv[1]), 2, {}, prefix='rlup')"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code, str(base)], env=env, timeout=60, check=True)
    state = json.loads((base / "netlab.json").read_text())
    lab_id = state["lab_id"]
    try:
        assert cleanup_stale("rlup") == []  # kept on purpose, though its owner has exited
        inventory = load_inventory(base / "inventory.yaml")
        h2 = inventory.hosts["h2"]
        argv = ["ssh", "-F", "/dev/null", "-i", str(h2.key_file), "-o", "BatchMode=yes"]
        argv += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={h2.known_hosts}"]
        argv += [f"root@{h2.address}", "hostname"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        assert done.stdout == "h2\n", done.stderr
        with pytest.raises(UsageError, match="already up"):
            lab_up(base, 2, {}, prefix="rlup")
    finally:
        removed = lab_down(base)
    assert len(removed) == 5 and leftovers("rlup", lab_id) == []
    assert not (base / "netlab.json").exists()
    with pytest.raises(UsageError, match="no lab is up"):
        lab_down(base)


def test_ci_turns_unavailable_into_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import _started_netlab

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("REPRO_REQUIRE_NETNS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        _started_netlab(NetnsLab(tmp_path / "a"))
    monkeypatch.setenv("REPRO_REQUIRE_NETNS", "1")
    with pytest.raises(pytest.fail.Exception, match="REPRO_REQUIRE_NETNS=1.*needs root"):
        _started_netlab(NetnsLab(tmp_path / "b"))


# --- input and environment checks (no lab needed) -------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n=0"),
        ({"n": 501}, "n=501"),
        ({"prefix": "rl-1"}, "prefix"),
        ({"prefix": "toolong"}, "prefix"),
        ({"n": 2, "names": ["a", "a"]}, "'a' given twice"),
        ({"n": 1, "names": ["../x"]}, "'../x'"),
        ({"n": 2, "names": ["a"]}, "n=2 but 1 names"),
        ({"cpuinfo": {"h7": "x"}}, "'h7'"),
        ({"cpuinfo": {"h1": Path("/nonexistent/cpuinfo")}}, "does not exist"),
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace(".", r"\.")):
        NetnsLab(tmp_path, **kwargs)


@pytest.mark.parametrize("n", [1, 245, 246, 500])
def test_every_lab_size_has_distinct_addresses_in_its_subnets(tmp_path: Path, n: int) -> None:
    """Up to 245 hosts keep 198.18.<id>.10 on; a larger lab (up to 500) takes 198.19.<id>.0/24
    too: every host address unique, a usable host address, in a subnet of a bridge address."""
    lab = NetnsLab(tmp_path, n)
    lab.lab_id = 254  # as _allocate would set it (nothing is started)
    nets = [ipaddress.ip_interface(f"{g}/24").network for g in lab.gateways]
    assert all(net.subnet_of(ipaddress.ip_network("198.18.0.0/15")) for net in nets)
    # the addresses of the hosts the lab really makes (not of a helper called apart: a test of
    # `_address(0..n-1)` passed while the hosts got `_address(1..n)`, h500 outside every subnet)
    addresses = [ipaddress.ip_address(h.address) for h in lab._planned_hosts()]
    assert len(set(addresses)) == n
    gateways = {ipaddress.ip_address(g) for g in lab.gateways}
    for a in addresses:
        net = next(net for net in nets if a in net)
        assert a not in (net.network_address, net.broadcast_address) and a not in gateways
    if n <= 245:
        assert str(addresses[0]) == "198.18.254.10" and len(nets) == 1


def test_unavailable_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NetlabUnavailable, match="needs root"):
        NetnsLab(tmp_path / "a").start()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_which = netlab_mod.shutil.which
    monkeypatch.setattr(netlab_mod.shutil, "which", lambda t: None if t == "ip" else real_which(t))
    with pytest.raises(NetlabUnavailable, match="needs ip"):
        NetnsLab(tmp_path / "b").start()
    monkeypatch.setattr(netlab_mod.shutil, "which", lambda t: f"/usr/bin/{t}")
    with pytest.raises(NetlabUnavailable, match="openssh-server"):
        NetnsLab(tmp_path / "c", sshd=str(tmp_path / "no-sshd")).start()
    assert not (tmp_path / "a").exists()  # nothing was built


def test_a_lab_with_own_pids_gives_each_host_its_pid_space(netlab_factory: Factory) -> None:
    """own_pids (the benchmarks' labs): each host sees only its own processes in /proc, as a
    separate machine does; its PID 1 reaps what a detached job leaves; SSH and exec work, and
    teardown still finds every process (by network namespace)."""
    lab = netlab_factory(2, own_pids=True)
    seen = lab.exec("h1", ["sh", "-c", "echo $$; ls -d /proc/[0-9]* | wc -l"]).stdout.split()
    assert int(seen[1]) < 20, seen  # a handful: PID 1, its sleep, sshd, this shell
    out = subprocess.run(
        lab.ssh_argv("h1", "(sleep 0.2 &) ; ps -e -o stat=,comm= ; hostname"),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.split()[-1] == "h1", out.stderr
    assert "sh" in out.stdout and "sshd" in out.stdout
    orphan_gone = lab.exec("h1", ["sh", "-c", "sleep 1; ps -e -o stat= | grep -c '^Z' || true"])
    assert orphan_gone.stdout.strip() == "0", orphan_gone.stdout  # reaped by the host's PID 1
    # the hosts' pids are their own: h2's pid 1 is not h1's
    assert lab.exec("h2", ["sh", "-c", "cat /proc/1/comm"]).stdout.strip() == "sh"
    assert all(lab.pids(name) for name in lab.names)  # teardown's view: every host's processes
