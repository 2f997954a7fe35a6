"""Host facts on real OpenSSH hosts: three netns hosts with their own /proc/cpuinfo (Intel SPR,
AMD Zen 4, a Zen 3 cloud VM) must each be reported as what they are, by `repro facts`,
`repro check` and in a `repro run`'s report.json and report.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from repro.facts import ISA_FLAGS
from repro.netlab import NetnsLab
from tests.fixtures.guix_repos import FIXTURE_GUIX_COMMIT
from tests.guix_scenarios import CUPRATED, install_double
from tests.test_cli_inprocess import only_run_dir, report, run_cli

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[1]
CPUINFO = REPO / "tests" / "fixtures" / "cpuinfo"
DEMO = REPO / "playbooks" / "demo.yaml"
# host name -> (cpuinfo fixture, vendor, microarchitecture, hypervisor flag, model name)
MISSION = {
    "spr": ("sapphire-rapids.txt", "Intel", "Sapphire Rapids", False, "Intel(R) Xeon(R) Gold 6430"),
    "genoa": ("zen4-genoa.txt", "AMD", "Zen 4", False, "AMD EPYC 9454P 48-Core Processor"),
    "cloudvm": ("cloud-vm-zen3.txt", "AMD", "Zen 3", True, "AMD EPYC 7B13"),
}
# What systemd-detect-virt calls containers: there, the hypervisor flag alone says VM or not.
CONTAINERS = {"docker", "podman", "lxc", "lxc-libvirt", "systemd-nspawn", "openvz", "rkt",
              "wsl", "proot", "pouch", "container-other"}  # fmt: skip

Factory = Callable[..., NetnsLab]


@pytest.fixture
def mission_lab(netlab_factory: Factory) -> NetnsLab:
    cpuinfo = {name: CPUINFO / spec[0] for name, spec in MISSION.items()}
    return netlab_factory(3, names=list(MISSION), cpuinfo=cpuinfo)


def machine_virt() -> str:
    """What systemd-detect-virt says on this machine: the lab hosts share its kernel."""
    if shutil.which("systemd-detect-virt") is None:
        return ""
    done = subprocess.run(
        ["systemd-detect-virt"], capture_output=True, text=True, timeout=20, check=False
    )
    return done.stdout.strip()


def assert_reads_as(name: str, facts: dict[str, Any]) -> None:
    """`describe` names the CPU the host's cpuinfo shows and VM or bare metal as it should."""
    _, vendor, arch, hypervisor, _ = MISSION[name]
    text = facts["describe"]
    assert text.startswith(f"{vendor} {arch}, "), text
    virt = facts["virtualization"]
    if virt in CONTAINERS or virt in ("", "none"):
        # Inside a container (or with no detector) the cpuinfo hypervisor flag decides.
        assert ("VM" in text) is hypervisor and ("bare metal" in text) is not hypervisor, text
        if virt in CONTAINERS:
            assert text.endswith(" container") and "container-other" not in text, text
    else:
        assert text.endswith(" VM"), text  # the machine itself is a VM: every host is one


def facts_cli(lab: NetnsLab, fmt: str) -> tuple[int, str, str]:
    return run_cli("facts", "-i", str(lab.inventory_path), "--format", fmt)


# --- repro facts ----------------------------------------------------------------------------


def test_facts_json_reports_each_hosts_own_cpu(mission_lab: NetnsLab) -> None:
    code, out, err = facts_cli(mission_lab, "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "repro-facts/1"
    data = doc["hosts"]
    assert [d["name"] for d in data] == list(MISSION)
    virt = machine_virt()
    for item in data:
        name, facts = item["name"], item["facts"]
        fixture, vendor, arch, hypervisor, model_name = MISSION[name]
        assert item["error"] is None
        assert facts["hostname"] == name  # each host's own UTS namespace, read over SSH
        assert (facts["cpu_vendor"], facts["microarch"]) == (vendor, arch)
        assert facts["cpu_model_name"] == model_name
        assert facts["hypervisor"] is hypervisor
        flags = set((CPUINFO / fixture).read_text().split("flags", 1)[1].split("\n", 1)[0].split())
        assert facts["isa"] == [f for f in ISA_FLAGS if f in flags]
        assert facts["virtualization"] == virt
        assert facts["cores"] == len(os.sched_getaffinity(0))
        assert facts["kernel"].split()[:2] == [os.uname().sysname, os.uname().release]
        assert isinstance(facts["free_work_bytes"], int) and facts["free_work_bytes"] > 0
        assert (facts["guix_version"], facts["guix_daemon"]) == ("", False)  # no Guix there
        assert_reads_as(name, facts)
    # AMX only on the Sapphire Rapids box: the hosts' ISAs really differ.
    isa = {d["name"]: d["facts"]["isa"] for d in data}
    assert "amx_tile" in isa["spr"] and "amx_tile" not in isa["genoa"] + isa["cloudvm"]
    assert "avx512f" in isa["genoa"] and "avx512f" not in isa["cloudvm"]


def test_facts_table_has_one_row_per_host_saying_what_it_is(mission_lab: NetnsLab) -> None:
    code, out, err = facts_cli(mission_lab, "json")
    assert code == 0, err
    described = {d["name"]: d["facts"]["describe"] for d in json.loads(out)["hosts"]}
    code, table, err = facts_cli(mission_lab, "table")
    assert code == 0, err
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["host", "what", "it", "is"]
    for name, (_, _, _, _, model_name) in MISSION.items():
        row = next(line for line in lines if line.startswith(name + " "))
        assert described[name] in row and model_name in row, row
        assert "no guix" in row


def test_facts_of_an_unreachable_host_is_an_error_row(mission_lab: NetnsLab) -> None:
    mission_lab.stop_sshd("genoa")
    code, out, err = facts_cli(mission_lab, "json")
    assert code == 3, err
    data = {d["name"]: d for d in json.loads(out)["hosts"]}
    assert data["genoa"]["error"] and data["genoa"]["facts"] == {}
    assert data["spr"]["facts"]["microarch"] == "Sapphire Rapids"
    assert data["cloudvm"]["facts"]["microarch"] == "Zen 3"


# --- repro run stores the facts -------------------------------------------------------------


def test_run_stores_facts_and_what_it_is_in_the_report(
    mission_lab: NetnsLab, tmp_path: Path
) -> None:
    out = tmp_path / "reports"
    code, stdout, err = run_cli("run", "-i", str(mission_lab.inventory_path), "-p", str(DEMO),
                                "--out", str(out))  # fmt: skip
    assert code == 0, err + stdout
    data = report(out)
    hosts = {h["name"]: h for h in data["hosts"]}
    assert set(hosts) == set(MISSION)
    for name, (_, vendor, arch, hypervisor, _) in MISSION.items():
        facts = hosts[name]["facts"]
        assert hosts[name]["status"] == "ok"
        assert facts["hostname"] == name
        assert (facts["cpu_vendor"], facts["microarch"], facts["hypervisor"]) == (
            vendor, arch, hypervisor
        )  # fmt: skip
        assert_reads_as(name, facts)
    assert all(a["status"] == "identical" for a in data["artifacts"])
    md = only_run_dir(out).joinpath("report.md").read_text()
    for name in MISSION:
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        assert f"| {hosts[name]['facts']['describe']} |" in row, row
    # The short "what it is" is also what the terminal table starts each row with.
    assert "Sapphire" in stdout and "Zen 4" in stdout


# --- repro check ----------------------------------------------------------------------------


def check_cli(lab: NetnsLab) -> tuple[int, dict[str, str]]:
    code, out, err = run_cli("check", "-i", str(lab.inventory_path), "-p", str(CUPRATED))
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    assert set(rows) == set(MISSION), out + err
    return code, rows


def test_check_cuprated_guix_names_each_hosts_problem(mission_lab: NetnsLab) -> None:
    install_double(mission_lab.host("spr").home)
    install_double(mission_lab.host("genoa").home, GUIX_DOUBLE_NO_DAEMON="1")
    # cloudvm has no Guix at all.
    code, rows = check_cli(mission_lab)
    assert code == 3
    assert rows["spr"].split()[1] == "ok" and "Intel Sapphire Rapids" in rows["spr"]
    assert rows["genoa"].split()[1] == "preflight-failed"
    assert "no guix-daemon answers" in rows["genoa"] and "command not found" not in rows["genoa"]
    assert rows["cloudvm"].split()[1] == "preflight-failed"
    assert "command not found: guix" in rows["cloudvm"]
    assert "guix-daemon" not in rows["cloudvm"]  # one cause, said once

    install_double(mission_lab.host("genoa").home)
    install_double(mission_lab.host("cloudvm").home)
    code, rows = check_cli(mission_lab)
    assert code == 0, rows
    assert "AMD Zen 4" in rows["genoa"] and "AMD Zen 3" in rows["cloudvm"]


def test_facts_see_the_guix_a_login_shell_would(mission_lab: NetnsLab) -> None:
    install_double(mission_lab.host("cloudvm").home)
    code, out, err = facts_cli(mission_lab, "json")
    assert code == 0, err
    facts = {d["name"]: d["facts"] for d in json.loads(out)["hosts"]}
    assert facts["cloudvm"]["guix_daemon"] is True
    assert facts["cloudvm"]["guix_channel_commit"] not in ("", FIXTURE_GUIX_COMMIT)
    assert facts["cloudvm"]["guix_version"] == facts["cloudvm"]["guix_channel_commit"]
    assert facts["spr"]["guix_version"] == "" and facts["spr"]["guix_daemon"] is False
