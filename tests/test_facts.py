"""Tests for repro.facts: CPU classification, parsing untrusted facts, and the real facts script.

Fixtures under tests/fixtures/ are hand-written dumps shaped like the real /proc/cpuinfo and script.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from repro.facts import (
    FACTS_SCRIPT,
    ISA_FLAGS,
    MARKER,
    SECTIONS,
    classify_cpu,
    clean,
    describe,
    gather_facts,
    parse_facts,
)
from repro.inventory import Host
from repro.playbook import load_playbook, render
from repro.results import HostResult
from repro.runner import HostPlan, Runner, RunOptions
from repro.transport.base import Completed

FIXTURES = Path(__file__).parent / "fixtures"
CPUINFO = FIXTURES / "cpuinfo"

KEYS = {
    "hostname", "cpu_vendor", "cpu_model_name", "cpu_family", "cpu_model", "cpu_stepping",
    "microarch", "microcode", "isa", "cores", "memory_bytes", "kernel", "distro", "glibc",
    "virtualization", "hypervisor", "dmi_vendor", "dmi_product", "cloud", "free_work_bytes",
    "free_tmp_bytes", "tmp_dir", "guix_version", "guix_channels", "guix_channel_commit", "guix_daemon",
    "clock", "describe", "work_dir", "work_dir_writable", "work_dir_error", "build_env",
}  # fmt: skip


def facts_text(**sections: str) -> str:
    """Output shaped like FACTS_SCRIPT's, with only the given sections (dashes as underscores)."""
    parts = [f"\n{MARKER} {name.replace('_', '-')}\n{body}\n" for name, body in sections.items()]
    return "".join(parts)


def with_cpuinfo(name: str, **sections: str) -> dict[str, Any]:
    return parse_facts(facts_text(cpuinfo=(CPUINFO / name).read_text(), **sections))


# --- classify_cpu ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "family", "model", "stepping", "expected"),
    [
        ("Intel", 6, 85, 4, "Skylake-SP"),
        ("Intel", 6, 85, 0, "Skylake-SP"),
        ("Intel", 6, 85, 5, "Cascade Lake"),
        ("Intel", 6, 85, 7, "Cascade Lake"),
        ("Intel", 6, 85, 11, "Cooper Lake"),
        ("Intel", 6, 85, None, "Skylake-SP/Cascade Lake"),
        ("Intel", 6, 106, 6, "Ice Lake-SP"),
        ("Intel", 6, 108, 1, "Ice Lake-SP"),
        ("GenuineIntel", 6, 143, 8, "Sapphire Rapids"),
        ("Intel", 6, 207, 2, "Emerald Rapids"),
        ("Intel", 6, 173, 1, "Granite Rapids"),
        ("Intel", 6, 174, 0, "Granite Rapids"),
        ("Intel", 6, 175, 3, "Sierra Forest"),
        ("Intel", 6, 151, 2, "Alder Lake"),
        ("Intel", 6, 183, 1, "Raptor Lake"),
        ("Intel", 6, 144, 0, ""),  # unassigned model
        ("Intel", 15, 143, 0, ""),  # right model, wrong family
        # AMD family 0x17
        ("AMD", 23, 1, 2, "Zen"),
        ("AMD", 23, 8, 2, "Zen+"),
        ("AMD", 23, 24, 1, "Zen+"),
        ("AMD", 23, 0x2F, 0, "Zen"),
        ("AMD", 23, 0x30, 0, "Zen 2"),
        ("AMD", 23, 49, 0, "Zen 2"),
        ("AMD", 23, 96, 1, "Zen 2"),
        ("AMD", 23, 113, 0, "Zen 2"),
        ("AMD", 23, 0x4F, 0, "Zen 2"),
        ("AMD", 23, 0x50, 0, "Zen"),
        ("AMD", 23, 0x80, 0, ""),
        # AMD family 0x19: the ranges interleave, so every boundary is checked
        ("AuthenticAMD", 25, 0x00, 0, "Zen 3"),
        ("AMD", 25, 1, 1, "Zen 3"),
        ("AMD", 25, 0x0F, 0, "Zen 3"),
        ("AMD", 25, 0x10, 0, "Zen 4"),
        ("AMD", 25, 17, 1, "Zen 4"),
        ("AMD", 25, 0x1F, 0, "Zen 4"),
        ("AMD", 25, 0x20, 0, "Zen 3"),
        ("AMD", 25, 0x2F, 0, "Zen 3"),
        ("AMD", 25, 0x40, 0, "Zen 3"),
        ("AMD", 25, 0x5F, 0, "Zen 3"),
        ("AMD", 25, 0x60, 0, "Zen 4"),
        ("AMD", 25, 0x7F, 0, "Zen 4"),
        ("AMD", 25, 0xA0, 0, "Zen 4"),
        ("AMD", 25, 0xAF, 0, "Zen 4"),
        ("AMD", 25, 0xB0, 0, ""),
        # AMD family 0x1A
        ("AMD", 26, 0x02, 1, "Zen 5"),
        ("AMD", 26, 0x2F, 0, "Zen 5"),
        ("AMD", 26, 0x30, 0, ""),
        ("AMD", 26, 0x44, 0, "Zen 5"),
        ("AMD", 26, 0x50, 0, "Zen 6"),
        ("AMD", 26, 0xD0, 0, ""),
        # unknowns
        ("AMD", 24, 1, 0, ""),
        ("HygonGenuine", 24, 1, 0, ""),
        ("CentaurHauls", 6, 15, 0, ""),
        ("", 6, 143, 8, ""),
        ("Intel", None, 143, 8, ""),
        ("AMD", 25, None, 1, ""),
    ],
)
def test_classify_cpu(
    vendor: str, family: int | None, model: int | None, stepping: int | None, expected: str
) -> None:
    assert classify_cpu(vendor, family, model, stepping) == expected


# --- parse_facts on cpuinfo fixtures ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "vendor", "family", "model", "stepping", "arch", "hypervisor"),
    [
        ("sapphire-rapids.txt", "Intel", 6, 143, 8, "Sapphire Rapids", False),
        ("zen4-genoa.txt", "AMD", 25, 17, 1, "Zen 4", False),
        ("cloud-vm-zen3.txt", "AMD", 25, 1, 0, "Zen 3", True),
        ("cascade-lake.txt", "Intel", 6, 85, 7, "Cascade Lake", False),
        ("skylake-sp.txt", "Intel", 6, 85, 4, "Skylake-SP", False),
    ],
)
def test_cpuinfo_fixtures(
    fixture: str, vendor: str, family: int, model: int, stepping: int, arch: str, hypervisor: bool
) -> None:
    facts = with_cpuinfo(fixture)
    assert set(facts) == KEYS
    assert (facts["cpu_vendor"], facts["cpu_family"], facts["cpu_model"]) == (vendor, family, model)
    assert facts["cpu_stepping"] == stepping
    assert facts["microarch"] == arch
    assert facts["hypervisor"] is hypervisor
    assert facts["microcode"].startswith("0x")
    assert list(facts["isa"]) == [f for f in ISA_FLAGS if f in facts["isa"]]  # table order


def test_isa_flags_tell_generations_apart() -> None:
    spr = with_cpuinfo("sapphire-rapids.txt")["isa"]
    assert {"amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni"} <= set(spr)
    assert spr == list(ISA_FLAGS)  # Sapphire Rapids has every flag we track
    cascade = set(with_cpuinfo("cascade-lake.txt")["isa"])
    skylake = set(with_cpuinfo("skylake-sp.txt")["isa"])
    assert cascade - skylake == {"avx512_vnni"}
    assert "sha_ni" not in skylake and "amx_tile" not in cascade
    genoa = set(with_cpuinfo("zen4-genoa.txt")["isa"])
    assert {"avx512f", "avx512_bf16", "sha_ni", "vaes"} <= genoa and "amx_tile" not in genoa
    milan = set(with_cpuinfo("cloud-vm-zen3.txt")["isa"])
    assert "avx512f" not in milan and {"avx2", "sha_ni", "vaes", "bmi2", "adx"} <= milan


def test_model_names() -> None:
    assert with_cpuinfo("sapphire-rapids.txt")["cpu_model_name"] == "Intel(R) Xeon(R) Gold 6430"
    assert with_cpuinfo("zen4-genoa.txt")["cpu_model_name"] == "AMD EPYC 9454P 48-Core Processor"
    assert with_cpuinfo("cloud-vm-zen3.txt")["cpu_model_name"] == "AMD EPYC 7B13"


def test_full_cpuinfo_of_many_processors_reads_the_first_block() -> None:
    block = (CPUINFO / "zen4-genoa.txt").read_text()
    second = block.replace("processor\t: 0", "processor\t: 1").replace(
        "model\t\t: 17", "model\t\t: 1"
    )
    facts = parse_facts(facts_text(cpuinfo=block + second * 191))
    assert (facts["cpu_model"], facts["microarch"]) == (17, "Zen 4")


# --- parse_facts on complete script outputs ---------------------------------------------------


def test_bare_metal_host() -> None:
    facts = parse_facts((FIXTURES / "facts-baremetal-spr.txt").read_text())
    assert set(facts) == KEYS
    assert facts["hostname"] == "build-spr-01"
    assert facts["microarch"] == "Sapphire Rapids"
    assert facts["cores"] == 64
    assert facts["memory_bytes"] == 527898712 * 1024
    assert facts["kernel"] == "Linux 6.1.0-28-amd64 x86_64"
    assert facts["distro"] == "Debian GNU/Linux 12 (bookworm)"
    assert facts["glibc"] == "2.36"
    assert (facts["virtualization"], facts["hypervisor"]) == ("none", False)
    assert (facts["dmi_vendor"], facts["dmi_product"], facts["cloud"]) == (
        "Supermicro", "SYS-221H-TNR", ""
    )  # fmt: skip
    assert facts["free_work_bytes"] == 2647163772 * 1024
    assert facts["free_tmp_bytes"] == 65533952 * 1024
    commit = "4a1f1c0d7c54d7f8a3b6e6c4b3d2a1908f7e6d5c"
    assert facts["guix_version"] == commit
    assert facts["guix_channels"] == [
        {"name": "guix", "url": "https://git.guix.gnu.org/guix.git", "commit": commit}
    ]
    assert facts["guix_channel_commit"] == commit
    assert facts["guix_daemon"] is True
    assert facts["clock"] == 1767225600
    assert facts["describe"] == "Intel Sapphire Rapids, bare metal"
    json.dumps(facts)  # facts go into report.json as they are


def test_cloud_host() -> None:
    facts = parse_facts((FIXTURES / "facts-gcp-zen3.txt").read_text())
    assert set(facts) == KEYS
    assert facts["microarch"] == "Zen 3" and facts["hypervisor"] is True
    assert facts["cores"] == 4
    assert facts["distro"] == "Ubuntu 24.04.1 LTS"
    assert facts["glibc"] == "2.39"  # from the `ldd --version` fallback line
    assert facts["virtualization"] == "kvm"
    assert facts["cloud"] == "GCP"
    assert facts["free_work_bytes"] == 185276424 * 1024  # mount point with a space in it
    assert facts["guix_version"] == "1.4.0"
    assert [c["name"] for c in facts["guix_channels"]] == ["guix", "nonguix"]
    assert facts["guix_channel_commit"] == "8e2f32cee982d42a79e53fc1e9aa7b8ff0514714"
    assert facts["guix_daemon"] is False  # "no-socket"
    assert facts["describe"] == "AMD Zen 3, KVM VM (Google)"


def test_minimal_host_without_optional_tools() -> None:
    facts = parse_facts((FIXTURES / "facts-zen4-minimal.txt").read_text())
    assert set(facts) == KEYS
    assert facts["distro"] == "Guix System"
    assert facts["glibc"] == "2.39"
    assert (facts["virtualization"], facts["dmi_vendor"], facts["cloud"]) == ("", "", "")
    assert facts["free_work_bytes"] is None and facts["free_tmp_bytes"] is None
    assert (facts["guix_version"], facts["guix_channels"], facts["guix_daemon"]) == ("", [], False)
    assert facts["describe"] == "AMD Zen 4, bare metal"  # no hypervisor flag in cpuinfo


def test_fixtures_use_the_scripts_section_names() -> None:
    script_sections = re.findall(r"_rf_sec ([a-z-]+)", FACTS_SCRIPT)
    assert tuple(script_sections) == SECTIONS
    for path in FIXTURES.glob("facts-*.txt"):
        names = re.findall(rf"^{re.escape(MARKER)} (\S+)$", path.read_text(), re.MULTILINE)
        assert names and set(names) <= set(SECTIONS), path.name
        assert names[-1] == "end", path.name


# --- describe ---------------------------------------------------------------------------------


def host(vendor: str, arch: str, virt: str, hypervisor: bool, cloud: str = "") -> dict[str, Any]:
    return {"cpu_vendor": vendor, "microarch": arch, "virtualization": virt,
            "hypervisor": hypervisor, "cloud": cloud}  # fmt: skip


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (host("Intel", "Ice Lake-SP", "microsoft", True, "Azure"), "Intel Ice Lake-SP, Azure VM"),
        (host("AMD", "Zen 3", "google", True, "GCP"), "AMD Zen 3, KVM VM (Google)"),
        (host("Intel", "Sapphire Rapids", "amazon", True, "AWS"),
         "Intel Sapphire Rapids, Nitro VM (AWS)"),
        (host("Intel", "Sapphire Rapids", "none", False, "AWS"),
         "Intel Sapphire Rapids, bare metal (AWS)"),
        (host("AMD", "Zen 4", "kvm", True, "QEMU"), "AMD Zen 4, KVM VM"),
        (host("AMD", "Zen 4", "", True, "QEMU"), "AMD Zen 4, QEMU VM"),
        (host("AMD", "Zen 2", "", True), "AMD Zen 2, VM"),
        (host("AMD", "Zen 5", "docker", True), "AMD Zen 5, VM, docker container"),
        (host("Intel", "Raptor Lake", "podman", False),
         "Intel Raptor Lake, bare metal, podman container"),
        ({"cpu_vendor": "Intel", "cpu_model_name": "Intel(R) Xeon(R) CPU E5-2690 v4",
          "virtualization": "none"}, "Intel(R) Xeon(R) CPU E5-2690 v4, bare metal"),
        ({}, "unknown CPU"),
        ({"virtualization": "none"}, "unknown CPU, bare metal"),
    ],
)  # fmt: skip
def test_describe(facts: dict[str, Any], expected: str) -> None:
    assert describe(facts) == expected


# --- hostile and broken input -----------------------------------------------------------------

NASTY = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m\u202egnp.exe\u2028x\r\x00\x9b1mz"


def assert_plain(value: object) -> None:
    """No string anywhere in `value` can move a cursor, retitle a window or reorder text."""
    if isinstance(value, str):
        assert len(value) <= 253
        assert not re.search(
            r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]", value
        ), value
    elif isinstance(value, dict):
        for item in value.values():
            assert_plain(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain(item)


def test_escape_sequences_are_neutralised() -> None:
    cpuinfo = (
        f"vendor_id\t: Genuine{NASTY}\ncpu family\t: 6\nmodel\t\t: 143\nstepping\t: 8\n"
        f"model name\t: Xeon {NASTY}\nmicrocode\t: 0x2b{NASTY}\nflags\t\t: avx2 {NASTY}\n"
    )
    text = facts_text(
        hostname=f"evil{NASTY}",
        cpuinfo=cpuinfo,
        uname=f"Linux {NASTY}",
        os_release=f'PRETTY_NAME="Debian {NASTY}"',
        virt=f"kvm{NASTY}",
        dmi_vendor=f"Amazon EC2{NASTY}",
        dmi_product=NASTY,
        guix_describe=json.dumps([{"name": f"guix{NASTY}", "url": NASTY, "commit": "a" * 40}]),
    )
    facts = parse_facts(text)
    assert_plain(facts)
    assert facts["hostname"] == "evilredgnp.exex z"
    assert facts["cpu_model_name"].startswith("Xeon red")
    assert facts["cpu_vendor"] != "Intel"  # a doctored vendor is not believed
    assert facts["virtualization"] == ""  # not a plain systemd-detect-virt word
    assert facts["guix_channel_commit"] == ""  # the "guix" channel's name was not plain
    assert "owned" not in json.dumps(facts)


def test_clean_caps_and_strips() -> None:
    assert clean("a\tb\n c") == "a b c"
    assert clean("x" * 10_000) == "x" * 200
    assert clean("\x1b[1;31mbold\x1b[0m", 10) == "bold"
    assert clean("\u202eabc\u202c") == "abc"


def test_huge_lines_and_inputs_are_capped() -> None:
    huge = "A" * 3_000_000
    facts = parse_facts(
        facts_text(hostname=huge, cpuinfo=f"model name\t: {huge}\nflags\t\t: {'avx2 ' * 400_000}",
                   uname=huge, guix_describe="[" * 200_000)
    )  # fmt: skip
    assert len(facts["hostname"]) <= 253 and len(facts["cpu_model_name"]) <= 200
    assert len(facts["kernel"]) <= 200
    assert facts["guix_channels"] == []
    assert_plain(facts)


def test_deeply_nested_json_does_not_raise() -> None:
    facts = parse_facts(facts_text(guix_describe="[" * 5000 + "]" * 5000))
    assert facts["guix_channels"] == []


@pytest.mark.parametrize(
    "describe_json",
    [
        '{"name": "guix"}',
        '[1, "x", null, {"name": 5, "commit": ["a"]}]',
        '[{"name": "guix", "commit": "not-a-commit; rm -rf /"}]',
        '[{"name": "guix", "commit": "../../etc/passwd"}]',
        "guix describe: error: failed to determine origin",
    ],
)
def test_bad_channel_json(describe_json: str) -> None:
    facts = parse_facts(facts_text(guix_describe=describe_json))
    assert facts["guix_channel_commit"] == ""
    assert all(c["commit"] == "" for c in facts["guix_channels"])


def test_non_numeric_fields_become_none() -> None:
    facts = parse_facts(
        facts_text(
            cpuinfo="vendor_id\t: GenuineIntel\ncpu family\t: six\nmodel\t\t: 0x8f\n"
            "stepping\t: -1\nflags\t\t: \n",
            nproc="lots",
            meminfo="MemTotal:       many kB",
            df_work="Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x a b c d% /",
            df_tmp="nothing here",
            clock="yesterday",
        )
    )
    assert facts["cpu_vendor"] == "Intel"
    assert (facts["cpu_family"], facts["cpu_model"], facts["cpu_stepping"]) == (None, None, None)
    assert facts["microarch"] == ""
    for key in ("cores", "memory_bytes", "free_work_bytes", "free_tmp_bytes", "clock"):
        assert facts[key] is None, key
    assert facts["describe"] == "Intel, bare metal"


def test_enormous_numbers_are_refused() -> None:
    facts = parse_facts(facts_text(nproc="9" * 400, cpuinfo="cpu family\t: " + "9" * 5000))
    assert facts["cores"] is None and facts["cpu_family"] is None


def test_missing_and_spoofed_sections() -> None:
    assert set(parse_facts("")) == KEYS
    facts = parse_facts("no markers at all\nMemTotal: 100 kB\n")
    assert facts["memory_bytes"] is None and facts["describe"] == "unknown CPU"
    # a repeated or unknown section never overrides the first, genuine one
    text = facts_text(hostname="real") + f"{MARKER} hostname\nspoof\n{MARKER} ../../x\nzzz\n"
    assert parse_facts(text)["hostname"] == "real"


def test_random_garbage_never_raises() -> None:
    rng = random.Random(615)
    pieces = [*(f"{MARKER} {s}\n" for s in SECTIONS), "flags\t: avx2\n", "model\t: 143\n",
              "vendor_id : GenuineIntel\n", "MemTotal: 12 kB\n", "\x1b[", "\n", ":", "%", "[{"]  # fmt: skip
    for _ in range(300):
        parts = [rng.choice(pieces) if rng.random() < 0.6 else
                 "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(40)))
                 for _ in range(rng.randrange(60))]  # fmt: skip
        facts = parse_facts("".join(parts))
        assert set(facts) == KEYS
        assert_plain(facts)
    assert set(parse_facts(None)) == KEYS  # type: ignore[arg-type]


# --- the real script on this machine ----------------------------------------------------------


# bash reads a piped script byte by byte, so a command that reads stdin would eat the rest of it
SHELLS = [sh for sh in ("/bin/sh", "/bin/dash", "/bin/bash", "/bin/busybox sh")
          if os.path.exists(sh.split()[0])]  # fmt: skip


def run_script(
    *args: str, env: dict[str, str] | None = None, shell: str = "/bin/sh"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*shell.split(), "-s", "--", *args],
        input=FACTS_SCRIPT,
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_build_env_section_keeps_known_keys_only() -> None:
    text = facts_text(
        build_env="umask=0022\ntz=Europe/Paris\nevil=\x1b[31m\nUid=1000\nhome=/h\x1b]0;x\x07"
    )
    env = parse_facts(text)["build_env"]
    assert set(env) == {"umask", "tz", "uid", "home"}
    assert env["tz"] == "Europe/Paris" and env["uid"] == "1000"
    assert "\x1b" not in env["home"]


def test_script_on_this_machine_through_local_transport(tmp_path: Path) -> None:
    from repro.transport.local import LocalTransport

    async def gather() -> dict[str, Any]:
        async with LocalTransport(
            Host(name="localhost", address="localhost", connection="local")
        ) as t:
            return await gather_facts(t, str(tmp_path / "not yet" / "made"))

    facts = asyncio.run(gather())
    assert set(facts) == KEYS
    assert facts["cores"] is not None and facts["cores"] >= 1
    assert facts["cores"] == len(os.sched_getaffinity(0))
    assert facts["memory_bytes"] is not None and facts["memory_bytes"] > 0
    assert facts["kernel"].startswith(os.uname().sysname)
    assert facts["hostname"] == clean(os.uname().nodename, 253)
    vendor = re.search(r"^vendor_id\s*:\s*(\S+)", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    assert facts["cpu_vendor"] == ({"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(
        vendor.group(1), vendor.group(1)) if vendor else "")  # fmt: skip
    assert facts["free_work_bytes"] is not None and facts["free_work_bytes"] > 0
    assert facts["free_tmp_bytes"] is not None and facts["free_tmp_bytes"] > 0
    assert facts["clock"] is not None and abs(facts["clock"] - time.time()) < 120
    assert facts["distro"]
    env = facts["build_env"]
    assert env["umask"] == f"{_umask():04o}"
    assert (env["uid"], env["gid"]) == (str(os.getuid()), str(os.getgid()))
    assert env["home"] == os.environ["HOME"] and env["tz"] == os.environ.get("TZ", "")
    assert env["lc_all"] == os.environ.get("LC_ALL", "")
    if shutil.which("guix") is None:
        assert (facts["guix_version"], facts["guix_channels"]) == ("", [])
        assert (facts["guix_channel_commit"], facts["guix_daemon"]) == ("", False)
    assert facts["describe"]
    assert not (tmp_path / "not yet").exists()  # the script only looks


@pytest.mark.parametrize("shell", SHELLS)
def test_script_exits_0_and_prints_every_section(shell: str) -> None:
    proc = run_script(shell=shell)
    assert proc.returncode == 0, proc.stderr
    names = re.findall(rf"^{re.escape(MARKER)} (\S+)$", proc.stdout, re.MULTILINE)
    assert tuple(names) == SECTIONS  # nothing ate the script from stdin halfway


@pytest.mark.parametrize("shell", SHELLS)
def test_script_with_no_commands_at_all(tmp_path: Path, shell: str) -> None:
    # every external command missing: their facts come back empty, exit 0; what the kernel's
    # files say is read with sh builtins and still comes back
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    proc = run_script(str(tmp_path / "run"), "create", env=env, shell=shell)
    assert proc.returncode == 0
    names = re.findall(rf"^{re.escape(MARKER)} (\S+)$", proc.stdout, re.MULTILINE)
    assert tuple(names) == SECTIONS
    facts = parse_facts(proc.stdout)
    assert facts["glibc"] == ""
    # the kernel's own files stand in for uname and nproc
    u = os.uname()
    assert facts["kernel"] == f"{u.sysname} {u.release} {u.machine}"
    assert facts["cores"] == len(os.sched_getaffinity(0))
    assert facts["free_work_bytes"] is None and facts["free_tmp_bytes"] is None
    assert facts["work_dir_writable"] is False and "mkdir" in facts["work_dir_error"]
    assert facts["hostname"] == clean(os.uname().nodename, 253)
    assert facts["memory_bytes"] is not None and facts["memory_bytes"] > 0


def test_work_dir_is_never_interpreted(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    hostile = f"$(touch {canary}); `touch {canary}` ' \" -rf"
    proc = run_script(hostile)
    assert proc.returncode == 0
    assert not canary.exists()
    assert parse_facts(proc.stdout)["free_work_bytes"]  # fell back to the nearest existing dir


@pytest.mark.parametrize("shell", SHELLS)
def test_script_finds_a_guix_and_its_daemon(tmp_path: Path, shell: str) -> None:
    """Runs the real script against a `guix` test double and a real listening unix socket."""
    commit = "8e2f32cee982d42a79e53fc1e9aa7b8ff0514714"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    double = bin_dir / "guix"
    double.write_text(
        "#!/bin/sh\n# test double for guix: just the three calls the facts script makes;\n"
        "# like the real one, `guix gc` fails when nothing listens on the daemon socket\n"
        'case "$1" in\n'
        "  --version) cat >/dev/null; echo 'guix (GNU Guix) 1.4.0'; echo 'Copyright (C) 2022' ;;\n"
        '  describe) printf \'%s\\n\' \'[{"name":"guix","url":"https://example.org/guix.git",'
        f'"commit":"{commit}"}}]\' ;;\n'
        '  gc) [ -S "$GUIX_DAEMON_SOCKET" ] && [ "$2" = --list-roots ] && cat >/dev/null'
        " && echo /gnu/store/x-profile ;;\n"
        "  *) exit 1 ;;\n"
        "esac\n"
    )
    double.chmod(0o755)
    sock_path = tmp_path / "daemon-socket"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "GUIX_DAEMON_SOCKET": str(sock_path),
    }

    proc = run_script(env=env, shell=shell)
    names = re.findall(rf"^{re.escape(MARKER)} (\S+)$", proc.stdout, re.MULTILINE)
    assert tuple(names) == SECTIONS  # the double reads stdin: it must not get the script
    facts = parse_facts(proc.stdout)
    assert facts["guix_version"] == "1.4.0"
    assert facts["guix_channel_commit"] == commit
    assert facts["guix_daemon"] is False  # nothing listens yet: `guix gc` fails

    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock_path))
        server.listen(1)
        facts = parse_facts(run_script(env=env, shell=shell).stdout)
    assert facts["guix_daemon"] is True


def test_script_reports_the_temporary_directory_builds_use(tmp_path: Path) -> None:
    # preflight names this directory when it is too small (the seed's ENOSPC lesson)
    facts = parse_facts(run_script(env={**os.environ, "TMPDIR": str(tmp_path)}).stdout)
    assert facts["tmp_dir"] == str(tmp_path)
    assert isinstance(facts["free_tmp_bytes"], int) and facts["free_tmp_bytes"] > 0


# --- few processes on the host ----------------------------------------------------------------

#: the commands the script may run on a host without Guix: each gives a fact no file holds
#: (sh itself is the one more process; with bash as sh, `date` is not needed either)
CHEAP_COMMANDS = {"date", "nproc", "uname", "getconf", "systemd-detect-virt", "df", "mkdir",
                  "stat"}  # stat: who may write to the run dir and above it (with create)


def command_shims(tmp_path: Path) -> tuple[Path, Path]:
    """A PATH dir wrapping every command on this machine's PATH (but guix): each wrapper logs
    its name, then execs the real command, so the log lists the commands a script found via
    PATH. It cannot see forks that run no command; the script has none of those."""
    shims, log = tmp_path / "shims", tmp_path / "commands.log"
    shims.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            shim = shims / entry.name
            if entry.name == "guix" or shim.exists() or not entry.is_file():
                continue
            if not os.access(entry.path, os.X_OK):
                continue
            shim.write_text(
                f"#!/bin/sh\nprintf '%s\\n' {shlex.quote(entry.name)} >>{shlex.quote(str(log))}\n"
                f'exec {shlex.quote(entry.path)} "$@"\n'
            )
            shim.chmod(0o755)
    return shims, log


@pytest.mark.parametrize("shell", SHELLS)
def test_script_runs_few_commands(tmp_path: Path, shell: str) -> None:
    # at 100 hosts every process a host starts costs the controller's machine ~0.65 ms of CPU
    shims, log = command_shims(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PATH": str(shims), "HOME": str(home)}
    run_dir = home / ".cache" / "repro" / "runs" / "r1"

    facts = parse_facts(
        run_script("~/.cache/repro/runs/r1", "create", "steps", "work", env=env, shell=shell).stdout
    )
    ran = log.read_text().split()
    assert len(ran) <= 7 and set(ran) <= CHEAP_COMMANDS, ran
    # one mkdir for the run dir and its subdirectories, one df for work dir and /tmp
    assert (ran.count("mkdir"), ran.count("df")) == (1, 1), ran
    # the kernel's files stand in for uname and nproc where it has them (Linux >= 6.1)
    if Path("/proc/sys/kernel/arch").exists():
        assert "uname" not in ran and "nproc" not in ran, ran
    assert "date" not in ran, ran  # the clock is btime + uptime
    assert abs(facts["clock"] - time.time()) < 5
    assert facts["work_dir"] == str(run_dir) and run_dir.is_dir()
    assert (run_dir / "steps").is_dir() and (run_dir / "work").is_dir()
    assert facts["cores"] and facts["kernel"] and facts["free_work_bytes"] and facts["glibc"]

    log.unlink()
    again = parse_facts(run_script(str(run_dir), "create", env=env, shell=shell).stdout)
    ran = log.read_text().split()
    assert "mkdir" not in ran  # a resumed run: it is there
    # systemd-detect-virt's answer is kept per boot in ~/.cache/repro/virt once that dir exists
    # (the first run made it after asking): the third run does not ask again
    log.unlink()
    third = parse_facts(run_script(str(run_dir), env=env, shell=shell).stdout)
    assert "systemd-detect-virt" not in log.read_text().split()
    assert third["virtualization"] == again["virtualization"] == facts["virtualization"]


@pytest.mark.skipif(not shutil.which("systemd-detect-virt"), reason="no systemd-detect-virt here")
def test_the_cached_virtualization_is_checked_before_it_is_believed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".cache" / "repro").mkdir(parents=True)
    cache = home / ".cache" / "repro" / "virt"
    env = {**os.environ, "HOME": str(home)}
    real = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True).stdout.strip()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    host = Path("/proc/sys/kernel/hostname").read_text().strip()
    for stale in (
        f"{boot} {host} $(touch {tmp_path}/CANARY)",  # not an answer: ignored
        f"another-boot {host} xen",  # another boot: ignored
        f"{boot} other-host xen",  # another hostname (a container sharing this home)
    ):
        cache.write_text(stale + "\n")
        assert parse_facts(run_script(env=env).stdout)["virtualization"] == real
        assert cache.read_text() == f"{boot} {host} {real}\n"
    assert not (tmp_path / "CANARY").exists()
    cache.write_text(f"{boot} {host} kvm\n")  # a valid entry for this boot is believed
    assert parse_facts(run_script(env=env).stdout)["virtualization"] == "kvm"


# --- the work dir: made in the facts round trip -----------------------------------------------

RUN_ID = "20260101T000000Z-abcdef"


def gather_locally(work_dir: str | None, *, create: bool = False) -> dict[str, Any]:
    from repro.transport.local import LocalTransport

    async def gather() -> dict[str, Any]:
        async with LocalTransport(
            Host(name="localhost", address="localhost", connection="local")
        ) as t:
            return await gather_facts(t, work_dir, create=create)

    return asyncio.run(gather())


def test_gather_facts_creates_the_work_dir_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    run_dir = home / ".cache" / "repro" / "runs" / RUN_ID

    facts = gather_locally(f"~/.cache/repro/runs/{RUN_ID}", create=True)
    assert run_dir.is_dir()
    assert (facts["work_dir"], facts["work_dir_writable"], facts["work_dir_error"]) == (
        str(run_dir), True, "",
    )  # fmt: skip
    assert isinstance(facts["free_work_bytes"], int) and facts["free_work_bytes"] > 0
    assert facts["describe"] and facts["cores"]

    # without create it only looks
    facts = gather_locally("~/not/made")
    assert (facts["work_dir"], facts["work_dir_writable"]) == (str(home / "not" / "made"), False)
    assert not (home / "not").exists()
    assert gather_locally("~")["work_dir"] == str(home)


def test_work_dir_under_a_file_is_not_writable(tmp_path: Path) -> None:
    # a file where a directory should be stops mkdir even for root
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / RUN_ID
    facts = parse_facts(run_script(str(target), "create").stdout)
    assert (facts["work_dir"], facts["work_dir_writable"]) == (str(target), False)
    assert "Not a directory" in facts["work_dir_error"]
    assert facts["free_work_bytes"]  # df still answers for the nearest existing directory


@pytest.mark.parametrize("shell", SHELLS)
def test_work_dir_without_write_permission(shell: str) -> None:
    # root may write anywhere, so as root the script runs as nobody, in a dir nobody can reach
    nobody = 65534 if os.geteuid() == 0 else None
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        os.chmod(top, 0o755)
        locked = Path(top) / "locked"
        locked.mkdir(mode=0o555)
        for target, error in ((locked, ""), (locked / RUN_ID, "Permission denied")):
            proc = subprocess.run(
                [*shell.split(), "-s", "--", str(target), "create"],
                input=FACTS_SCRIPT,
                capture_output=True,
                text=True,
                timeout=90,
                env={"PATH": os.environ["PATH"], "HOME": top},
                check=False,
                user=nobody,
                group=nobody,
                extra_groups=None if nobody is None else [],
            )
            facts = parse_facts(proc.stdout)
            assert (facts["work_dir"], facts["work_dir_writable"]) == (str(target), False)
            assert error in facts["work_dir_error"] and bool(facts["work_dir_error"]) is bool(error)
        assert not (locked / RUN_ID).exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_hostile_work_dir_is_made_as_named_and_runs_nothing(tmp_path: Path, shell: str) -> None:
    home, runs = tmp_path / "home", tmp_path / "runs"
    home.mkdir()
    runs.mkdir()
    name = "$(cd; touch canary); `cd; touch canary` ' \" -rf * ~ ;touch canary"
    target = runs / name
    env = {**os.environ, "HOME": str(home)}
    facts = parse_facts(run_script(str(target), "create", env=env, shell=shell).stdout)
    assert list(home.iterdir()) == []  # nothing ran
    assert [p.name for p in runs.iterdir()] == [name] and target.is_dir()
    assert (facts["work_dir"], facts["work_dir_writable"]) == (str(target), True)


def test_work_dir_cannot_forge_facts(tmp_path: Path) -> None:
    target = tmp_path / f"x\n{MARKER} hostname\nforged\n[/etc]\nwritable"
    facts = parse_facts(run_script(str(target), "create").stdout)
    assert target.is_dir()  # made as named...
    assert facts["hostname"] == clean(os.uname().nodename, 253)  # ...but no section was forged
    assert facts["work_dir"] == ""  # and a path with a newline is never handed back


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("[/home/b/.cache/repro/runs/x]\nwritable", ("/home/b/.cache/repro/runs/x", True, "")),
        ("[/srv/a b]\nnot-writable", ("/srv/a b", False, "")),
        ("[/x/y]\nmkdir: cannot create directory '/x/y': Permission denied\nnot-writable",
         ("/x/y", False, "mkdir: cannot create directory '/x/y': Permission denied")),
        ("writable", ("", True, "")),  # a relative work dir: no path line
        ("[/x\x1b[2J]\nwritable", ("", True, "")),  # not plain text: not handed back
        ("[/a  b]\nwritable", ("", True, "")),  # clean() would change it: not handed back
        ("[relative]\nwritable", ("", True, "")),
        ("[/x]\nwritable\nmore", ("/x", False, "the host did not say")),  # verdict not last
        ("[/x]", ("/x", False, "the host did not say")),  # cut short
        ("", ("", False, "the host did not say")),
    ],
)  # fmt: skip
def test_work_dir_section(section: str, expected: tuple[str, bool, str]) -> None:
    facts = parse_facts(facts_text(work_dir=section))
    assert (facts["work_dir"], facts["work_dir_writable"], facts["work_dir_error"]) == expected
    assert_plain(facts)


# --- the script's builtin helpers -------------------------------------------------------------

SCRIPT_FUNCTIONS = FACTS_SCRIPT.rsplit('\n_repro_facts "$@"', 1)[0]


def run_functions(body: str, shell: str, *args: str) -> str:
    """Run `body` with the script's function definitions loaded; positional args are `args`."""
    return subprocess.run(
        [*shell.split(), "-c", f"{SCRIPT_FUNCTIONS}\n{body}", "sh", *args],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip


@pytest.mark.parametrize("shell", SHELLS)
def test_nearest_existing_ancestor(tmp_path: Path, shell: str) -> None:
    (tmp_path / "a b").mkdir()
    t = str(tmp_path)
    cases = {
        f"{t}/a b/c/d/": f"{t}/a b", f"{t}/a b": f"{t}/a b", f"{t}//x//y": f"{t}/",
        f"{t}/a b/": f"{t}/a b/", "/nonexistent-repro/x": "/", "//nonexistent-repro": "/",
        "nonexistent-repro/x": ".", "": ".", "/*/x-repro": "/", "-rf/x": ".",
    }  # fmt: skip
    body = 'for p in "$@"; do _rf_existing "$p"; printf "%s|" "$_rf_d"; done'
    assert run_functions(body, shell, *cases).split("|")[:-1] == list(cases.values())


@pytest.mark.parametrize("shell", SHELLS)
def test_line_reader_bounds_lines(tmp_path: Path, shell: str) -> None:
    f = tmp_path / "f"
    f.write_text("a\n" + "x" * 9000 + "\nb\n \t\nafter\n")
    assert run_functions('_rf_lines "$1" 80 8192 block', shell, str(f)) == "a\nb\n"
    assert run_functions('_rf_lines "$1" 80 8192', shell, str(f)) == "a\nb\n \t\nafter\n"
    assert run_functions('_rf_lines "$1" 2 8192', shell, str(f)) == "a\n"  # long line counts
    many = tmp_path / "many"
    many.write_text("".join(f"{i}\n" for i in range(1000)))
    assert run_functions('_rf_lines "$1" 80 10', shell, str(many)).split() == [
        str(i) for i in range(80)
    ]
    tail = tmp_path / "tail"
    tail.write_text("one\n  two  ")  # no final newline; spaces kept
    assert run_functions('_rf_lines "$1" 80 100', shell, str(tail)) == "one\n  two  \n"
    assert run_functions('_rf_lines "$1" 80 100', shell, str(tmp_path / "missing")) == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_one_df_for_both_dirs_and_one_each_when_that_fails(tmp_path: Path, shell: str) -> None:
    body = '_rf_df "$1" "$2"; printf "%s\\n--\\n%s\\n" "$_rf_dfw" "$_rf_dft"'
    work, tmp = run_functions(body, shell, str(tmp_path), "/").split("\n--\n")
    assert _avail(work) and _avail(tmp)
    work, tmp = run_functions(body, shell, str(tmp_path), str(tmp_path / "gone")).split("\n--\n")
    assert _avail(work) and tmp.strip() == ""  # df failed on one: the other still answers


def _avail(df_text: str) -> int | None:
    return parse_facts(facts_text(df_work=df_text))["free_work_bytes"]


# --- the runner: facts and the run dir in one round trip --------------------------------------


def run_one_local_host(
    tmp_path: Path, work_base: str, *, gather: bool = True
) -> tuple[HostResult, list[str]]:
    """A whole run on one local host; returns its result and the commands it ran, in order."""
    from repro.transport.local import LocalTransport

    commands: list[str] = []

    class Recording(LocalTransport):
        async def run(
            self, command: str, *, timeout: float | None = None, stdin: bytes | None = None
        ) -> Completed:
            commands.append(command)
            return await super().run(command, timeout=timeout, stdin=stdin)

    book = tmp_path / "book.yaml"
    book.write_text("name: t\nsteps:\n  - name: s\n    run: echo hi > out.txt\n")
    pb = load_playbook(book)
    host = Host(name="h1", address="localhost", connection="local",
                vars={"repro_work_dir": work_base})  # fmt: skip
    steps = render(pb, {"inventory_hostname": "h1", "repro_run_id": RUN_ID}, source="h1")
    runner = Runner(pb, [HostPlan(host, steps)], run_id=RUN_ID, report_dir=tmp_path / "reports",
                    transport_factory=Recording, options=RunOptions(gather_facts=gather))  # fmt: skip
    return asyncio.run(runner.run()).hosts[0], commands


@pytest.mark.parametrize("gather", [True, False])
def test_runner_makes_the_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gather: bool
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    result, commands = run_one_local_host(tmp_path, "~/runs/", gather=gather)
    run_dir = home / "runs" / RUN_ID
    assert result.status == "ok", result.error
    assert (run_dir / "work" / "out.txt").read_text() == "hi\n"
    if gather:
        # one round trip for facts and the run dir: no separate mkdir command
        assert commands[0] == f"sh -s -- '~/runs/{RUN_ID}' create steps work"
        assert not any(c.startswith("umask 077; d=") for c in commands)
        assert result.facts["work_dir"] == str(run_dir) and result.facts["cores"]
    else:
        assert commands[0].startswith("umask 077; d=") and result.facts == {}


@pytest.mark.parametrize("gather", [True, False])
def test_runner_refuses_a_work_dir_it_cannot_write(tmp_path: Path, gather: bool) -> None:
    (tmp_path / "file").write_text("x")
    result, _ = run_one_local_host(tmp_path, str(tmp_path / "file"), gather=gather)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith(
        f"preflight-failed: work dir {tmp_path}/file/{RUN_ID} is not writable: "
    ), result.error
    assert "Not a directory" in result.error


@pytest.mark.parametrize("gather", [True, False])
def test_runner_refuses_a_relative_work_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gather: bool
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    result, commands = run_one_local_host(tmp_path, "relative/runs", gather=gather)
    assert result.status == "failed"
    assert result.error is not None and "is not a plain absolute path" in result.error
    assert not any("echo hi" in c for c in commands)  # no step ran
