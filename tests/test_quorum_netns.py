"""Quorum with diversity on real OpenSSH hosts, each with its own /proc/cpuinfo (Intel Sapphire
Rapids, AMD Zen 4, a Zen 3 cloud VM told by its `hypervisor` flag): Intel + AMD + VM is met only
when all three kinds built, and a run that lacks one is inconclusive naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.netlab import NetnsLab
from tests.test_cli_inprocess import only_run_dir, run_cli
from tests.test_facts_netns import DEMO, mission_lab  # noqa: F401 - the fixture

pytestmark = pytest.mark.netns


def run(lab: NetnsLab, out: Path, *extra: str) -> tuple[int, dict, str]:
    code, stdout, err = run_cli("run", "-i", str(lab.inventory_path), "-p", str(DEMO),
                                "--out", str(out), *extra)  # fmt: skip
    return code, json.loads((only_run_dir(out) / "report.json").read_text()), stdout + err


def test_intel_amd_vm_quorum_on_real_hosts(mission_lab: NetnsLab, tmp_path: Path) -> None:  # noqa: F811
    code, data, text = run(
        mission_lab, tmp_path / "all", "--require", "intel,amd,vm", "--quorum", "3"
    )
    assert code == 0, text
    assert data["require"] == ["intel", "amd", "vm"] and data["quorum"] == 3
    # without the cloud VM: the two bare-metal hosts agree, but no VM built
    code, data, text = run(mission_lab, tmp_path / "metal", "--require", "intel,amd,vm",
                           "--limit", "spr:genoa")  # fmt: skip
    assert code == 3, text
    assert data["reasons"] == [
        (
            "quorum not met: it asks for a VM host, and none finished ok "
            "(spr: Intel, bare-metal; genoa: AMD, bare-metal)"
        )
    ]
    assert "quorum not met: it asks for a VM host" in text
    # without the Intel host: both AMD, one of them a VM
    code, data, text = run(mission_lab, tmp_path / "amd", "--require", "intel,amd,vm,bare-metal",
                           "--limit", "genoa:cloudvm")  # fmt: skip
    assert code == 3 and "asks for an Intel host" in data["reasons"][0], text
