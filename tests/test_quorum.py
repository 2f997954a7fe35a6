"""Quorum with diversity, in the playbook and on the command line: what a host is (from the
same facts the cpuinfo fixtures give), and a reason naming the kind of machine that is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.compare import compare
from repro.errors import PlaybookError
from repro.playbook import load_playbook
from repro.quorum import parse_quorum, parse_require, traits
from repro.results import ArtifactHash, HostResult, RunResult
from tests.test_facts import with_cpuinfo

SHA = "a" * 64


def host(name: str, fixture: str, **facts: object) -> HostResult:
    h = HostResult(name, "ok", facts={**with_cpuinfo(fixture), **facts})
    h.artifacts = {"x.tar.gz": ArtifactHash("x.tar.gz", SHA, 1)}
    return h


def test_traits_from_cpuinfo_fixtures() -> None:
    assert traits(with_cpuinfo("sapphire-rapids.txt")) == {"intel", "bare-metal"}
    assert traits(with_cpuinfo("zen4-genoa.txt")) == {"amd", "bare-metal"}
    assert traits(with_cpuinfo("cloud-vm-zen3.txt")) == {"amd", "vm"}  # the hypervisor flag
    # systemd-detect-virt naming a hypervisor is a VM too; a container is not
    assert "vm" in traits({**with_cpuinfo("zen4-genoa.txt"), "virtualization": "kvm"})
    assert "vm" not in traits({**with_cpuinfo("zen4-genoa.txt"), "virtualization": "docker"})
    assert traits({}) == set()  # no facts (a guix.sigs signer): nothing is claimed


def test_unmet_diversity_is_inconclusive_naming_what_is_missing() -> None:
    run = RunResult("r", "p", "t", hosts=[host("spr", "sapphire-rapids.txt"),
                                          host("genoa", "zen4-genoa.txt")])  # fmt: skip
    run.require = ("intel", "amd", "vm")
    c = compare(run)
    assert c.verdict == "inconclusive" and c.exit_code == 3
    assert c.reasons == (
        (
            "quorum not met: it asks for a VM host, and none finished ok "
            "(spr: Intel, bare-metal; genoa: AMD, bare-metal)"
        ),
    )
    run.hosts.append(host("cloudvm", "cloud-vm-zen3.txt"))
    assert compare(run).verdict == "reproducible"
    # a failed host does not count for its kind
    run.hosts[1].status = "failed"
    assert "an AMD" not in " ".join(compare(run).reasons)  # the cloud VM is AMD too
    run.hosts[0].status = "failed"
    assert "an Intel host" in " ".join(compare(run).reasons)


def test_parse_quorum_and_require() -> None:
    assert parse_quorum(3) == (3, ())
    assert parse_quorum({"hosts": 3, "require": ["intel", "amd", "vm"]}) == (
        3,
        ("intel", "amd", "vm"),
    )
    assert parse_require("Intel,AMD,baremetal") == ("intel", "amd", "bare-metal")
    for bad in ({"hosts": 0}, {"hosts": 2, "vendors": 2}, True, {"require": ["arm"]}):
        with pytest.raises(ValueError):
            parse_quorum(bad)


def test_playbook_quorum_mapping(tmp_path: Path) -> None:
    base = "name: q\nsteps: [{name: s, run: 'true'}]\n"
    p = tmp_path / "q.yaml"
    p.write_text(base + "quorum: {hosts: 3, require: [intel, amd, vm]}\n")
    pb = load_playbook(p)
    assert (pb.quorum, pb.require) == (3, ("intel", "amd", "vm"))
    p.write_text(base + "quorum: {hosts: 3, require: [risc-v]}\n")
    with pytest.raises(PlaybookError, match="quorum: 'risc-v' is not one of"):
        load_playbook(p)


def test_cuprated_guix_asks_for_intel_amd_and_a_vm() -> None:
    pb = load_playbook(Path(__file__).resolve().parents[1] / "playbooks" / "cuprated-guix.yaml")
    assert set(pb.require) >= {"intel", "amd", "vm"}
