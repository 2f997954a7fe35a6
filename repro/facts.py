"""Host facts (CPU, memory, OS, virtualization, disk, Guix) gathered by one POSIX sh script.

Everything a host prints is untrusted: `parse_facts` neutralises it into plain, capped values.
"""

from __future__ import annotations

import json
import re
import shlex
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from repro import hostside
from repro.hostenv import PRELUDE

if TYPE_CHECKING:
    from repro.transport.base import Transport

#: the prefix of every section marker line the script prints: "@@repro-facts@@ NAME"
MARKER = "@@repro-facts@@"

#: the flags that change what a compiler may emit, reported in this order
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "amx_tile", "amx_bf16", "amx_int8", "sha_ni", "vaes", "bmi2", "adx",
)  # fmt: skip

MAX_INPUT = 1 << 20  # the script's own caps keep honest output far below this
MAX_STR = 200

# --- CPU tables -------------------------------------------------------------------------------
# Intel (family, model) -> name, from the kernel's arch/x86/include/asm/intel-family.h.
# Model 85 is split by stepping in _intel().
_INTEL: dict[tuple[int, int], str] = {
    (6, 42): "Sandy Bridge", (6, 45): "Sandy Bridge-EP",
    (6, 58): "Ivy Bridge", (6, 62): "Ivy Bridge-EP",
    (6, 60): "Haswell", (6, 69): "Haswell", (6, 70): "Haswell", (6, 63): "Haswell-EP",
    (6, 61): "Broadwell", (6, 71): "Broadwell", (6, 79): "Broadwell-EP", (6, 86): "Broadwell-DE",
    (6, 78): "Skylake", (6, 94): "Skylake",
    (6, 142): "Kaby Lake/Coffee Lake", (6, 158): "Kaby Lake/Coffee Lake",
    (6, 165): "Comet Lake", (6, 166): "Comet Lake",
    (6, 102): "Cannon Lake",
    (6, 125): "Ice Lake", (6, 126): "Ice Lake",
    (6, 106): "Ice Lake-SP", (6, 108): "Ice Lake-SP",
    (6, 140): "Tiger Lake", (6, 141): "Tiger Lake",
    (6, 167): "Rocket Lake",
    (6, 143): "Sapphire Rapids",
    (6, 207): "Emerald Rapids",
    (6, 173): "Granite Rapids", (6, 174): "Granite Rapids",
    (6, 151): "Alder Lake", (6, 154): "Alder Lake", (6, 190): "Alder Lake-N",
    (6, 183): "Raptor Lake", (6, 186): "Raptor Lake", (6, 191): "Raptor Lake",
    (6, 170): "Meteor Lake", (6, 172): "Meteor Lake",
    (6, 181): "Arrow Lake", (6, 197): "Arrow Lake", (6, 198): "Arrow Lake",
    (6, 189): "Lunar Lake",
    (6, 95): "Denverton", (6, 134): "Snow Ridge",
    (6, 175): "Sierra Forest", (6, 182): "Grand Ridge", (6, 221): "Clearwater Forest",
    (6, 87): "Knights Landing", (6, 133): "Knights Mill",
    (19, 1): "Diamond Rapids",
}  # fmt: skip

# AMD family -> (first model, last model, name), from the kernel's bsp_init_amd() Zen ranges.
# The first match wins, so the Zen+ singletons sit before the Zen range that contains them.
_AMD: dict[int, tuple[tuple[int, int, str], ...]] = {
    0x17: (
        (0x08, 0x08, "Zen+"), (0x18, 0x18, "Zen+"),
        (0x00, 0x2F, "Zen"), (0x50, 0x5F, "Zen"),
        (0x30, 0x4F, "Zen 2"), (0x60, 0x7F, "Zen 2"), (0x90, 0x91, "Zen 2"), (0xA0, 0xAF, "Zen 2"),
    ),
    0x19: (
        (0x00, 0x0F, "Zen 3"), (0x20, 0x5F, "Zen 3"),
        (0x10, 0x1F, "Zen 4"), (0x60, 0xAF, "Zen 4"),
    ),
    0x1A: (
        (0x00, 0x2F, "Zen 5"), (0x40, 0x4F, "Zen 5"), (0x60, 0x7F, "Zen 5"),
        (0x50, 0x5F, "Zen 6"), (0x80, 0xAF, "Zen 6"), (0xC0, 0xCF, "Zen 6"),
    ),
}  # fmt: skip

_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}

# systemd-detect-virt names -> how a person calls the hypervisor
_HYPERVISORS = {
    "kvm": "KVM", "google": "KVM", "qemu": "QEMU", "microsoft": "Hyper-V", "amazon": "Nitro",
    "xen": "Xen", "vmware": "VMware", "oracle": "VirtualBox", "bhyve": "bhyve",
    "parallels": "Parallels", "zvm": "z/VM", "powervm": "PowerVM", "acrn": "ACRN",
    "bochs": "Bochs", "uml": "UML", "apple": "Apple", "qnx": "QNX", "sre": "SRE",
}  # fmt: skip
_CONTAINERS = frozenset(
    {"docker", "podman", "lxc", "lxc-libvirt", "systemd-nspawn", "openvz", "rkt", "wsl",
     "proot", "pouch", "container-other"}
)  # fmt: skip
_CLOUD_LABELS = {"AWS": "AWS", "GCP": "Google", "Azure": "Azure"}


def classify_cpu(vendor: str, family: int | None, model: int | None, stepping: int | None) -> str:
    """Name the microarchitecture ("Sapphire Rapids", "Zen 4"), or "" when unknown."""
    if family is None or model is None:
        return ""
    vendor = _VENDORS.get(vendor, vendor)
    if vendor == "Intel":
        return _intel(family, model, stepping)
    if vendor == "AMD":
        for first, last, name in _AMD.get(family, ()):
            if first <= model <= last:
                return name
    return ""


def _intel(family: int, model: int, stepping: int | None) -> str:
    if (family, model) == (6, 85):
        # one model number, three generations; the kernel tells them apart by stepping
        if stepping is None:
            return "Skylake-SP/Cascade Lake"
        if stepping >= 10:
            return "Cooper Lake"
        return "Cascade Lake" if stepping >= 5 else "Skylake-SP"
    return _INTEL.get((family, model), "")


# --- neutralising untrusted text --------------------------------------------------------------

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, screen clears
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS/SOS/PM/APC strings
    r"|\x1b[@-Z\\-_]?"  # any other escape, and a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)


def clean(value: object, limit: int = MAX_STR) -> str:
    """Plain one-line text: escape sequences and control/format characters gone, capped."""
    text = str(value)[: limit * 8]
    text = _ESCAPES.sub("", text)
    # categories C* (controls, bidi overrides, ...) and Z[lp] (line breaks) can rewrite a terminal
    kept = "".join(
        " " if ch in "\t\n\r" else ch
        for ch in text
        if ch in "\t\n\r" or not unicodedata.category(ch).startswith(("C", "Zl", "Zp"))
    )
    return " ".join(kept.split())[:limit]


def _int(text: str, digits: int = 18) -> int | None:
    m = re.fullmatch(rf"(?a)\s*(\d{{1,{digits}}})\s*", text)
    return int(m.group(1)) if m else None


def _sections(text: str) -> dict[str, str]:
    """Split the script's output at marker lines; first occurrence of a known name wins."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text[:MAX_INPUT].split("\n"):
        if line.startswith(MARKER):
            name = line[len(MARKER) :].strip()
            current = None
            if name in SECTIONS and name not in found:
                current = found[name] = []
            continue
        if current is not None:
            current.append(line[:70000])
    return {name: "\n".join(lines).strip() for name, lines in found.items()}


def _cpuinfo(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.split("\n"):
        if not line.strip():
            if fields:
                break  # later processors repeat the first
            continue
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key and key not in fields:
            fields[key] = value.strip()
    return fields


def _os_release(text: str) -> str:
    values: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_]{1,32}", key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values.setdefault(key, re.sub(r"\\(.)", r"\1", value))
    name = values.get("PRETTY_NAME") or " ".join(
        v for v in (values.get("NAME", ""), values.get("VERSION_ID", "")) if v
    )
    return clean(name)


def _glibc(text: str) -> str:
    line = text.split("\n")[0] if text else ""
    if not re.search(r"glibc|gnu libc", line, re.IGNORECASE):
        return ""  # musl and friends: no glibc to report
    versions = re.findall(r"(?a)\b(\d{1,3}\.\d{1,3}(?:\.\d{1,3})?)\b", line)
    return versions[-1] if versions else ""


def _df_available(text: str) -> int | None:
    # Available is the column before Capacity ("NN%"); mount points may contain spaces
    for line in text.split("\n")[1:]:
        m = re.search(r"(?a)\s(\d{1,20})\s+(\d{1,20})\s+(\d{1,20})\s+(?:\d{1,3}|-)%(?:\s|$)", line)
        if m:
            return int(m.group(3)) * 1024
    return None


MAX_PATH = 4096


def _work_dir(text: str) -> tuple[str, bool, str]:
    """(absolute path or "", writable, why not) from the work-dir section.

    The section is "[path]" (absent when the path is relative or unprintable), mkdir's
    complaint if it had one, and the verdict on the last line.
    """
    lines = text.split("\n") if text else []
    path = ""
    if lines and lines[0].startswith("[/") and lines[0].endswith("]"):
        raw = lines.pop(0)[1:-1]
        # the runner works in this directory as it is: a path clean() would alter is not taken
        if len(raw) <= MAX_PATH and clean(raw, MAX_PATH) == raw:
            path = raw
    verdict = lines.pop() if lines and lines[-1] in ("writable", "not-writable") else ""
    if verdict == "writable":
        return path, True, ""
    # the script cut short (killed, no sh) says nothing; mkdir's own words say why it failed
    return path, False, clean(" ".join(lines[:5])) if verdict else "the host did not say"


def _guix_version(text: str) -> str:
    m = re.search(r"\(GNU Guix\)\s+([0-9A-Za-z][0-9A-Za-z.+_-]{0,63})", text)
    return m.group(1) if m else ""


_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _channels(text: str) -> list[dict[str, str]]:
    try:
        data = json.loads(text) if text else []
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, list):
        return []
    channels = []
    for item in data[:50]:
        if isinstance(item, dict):
            name, url, commit = (item.get(k) for k in ("name", "url", "commit"))
            channels.append(
                {
                    "name": clean(name, 64) if isinstance(name, str) else "",
                    "url": clean(url) if isinstance(url, str) else "",
                    "commit": commit
                    if isinstance(commit, str) and _COMMIT.fullmatch(commit)
                    else "",
                }
            )
    return channels


def _cloud(vendor: str, product: str) -> str:
    if vendor.startswith("Amazon EC2"):
        return "AWS"
    if vendor == "Google" or product.startswith("Google Compute Engine"):
        return "GCP"
    # Azure's VMs say exactly this; so does a local Hyper-V guest, which is far rarer on a build farm
    if vendor == "Microsoft Corporation" and product == "Virtual Machine":
        return "Azure"
    if vendor == "QEMU" or product.startswith("QEMU"):
        return "QEMU"
    return ""


def _first(text: str) -> str:
    return text.split("\n")[0]


def _hostname(text: str) -> str:
    return clean(_first(text), 253)


def _clock(text: str) -> int | None:
    m = re.fullmatch(r"(?a)\s*(-?\d{1,12})\s*", text)
    return int(m.group(1)) if m else None


CPU_COLUMNS = (
    "cpu_vendor", "cpu_model_name", "cpu_family", "cpu_model", "cpu_stepping", "microarch",
    "microcode", "isa", "hypervisor",
)  # fmt: skip


def _cpu(text: str) -> tuple[Any, ...]:
    """The CPU_COLUMNS from the first processor's block of /proc/cpuinfo."""
    cpu = _cpuinfo(text)
    flags = set(cpu.get("flags", "").split())
    raw_vendor = clean(cpu.get("vendor_id", ""), 40)
    family = _int(cpu.get("cpu family", ""), 6)
    model = _int(cpu.get("model", ""), 6)
    stepping = _int(cpu.get("stepping", ""), 6)
    return (
        _VENDORS.get(raw_vendor, raw_vendor),
        clean(cpu.get("model name", "")),
        family,
        model,
        stepping,
        classify_cpu(raw_vendor, family, model, stepping),
        clean(cpu.get("microcode", ""), 40),
        [f for f in ISA_FLAGS if f in flags],
        "hypervisor" in flags,
    )


def _cores(text: str) -> int | None:
    return _int(_first(text), 7) or None


def _memory(text: str) -> int | None:
    mem = re.search(r"(?a)MemTotal:\s*(\d{1,15})\s*kB", text)
    return int(mem.group(1)) * 1024 if mem else None


def _virt(text: str) -> str:
    virt = _first(text).strip().lower()
    return virt if re.fullmatch(r"[a-z0-9_-]{1,40}", virt) else ""


def _channel_facts(text: str) -> tuple[list[dict[str, str]], str]:
    channels = _channels(text)
    return channels, next((c["commit"] for c in channels if c["name"] == "guix"), "")


#: the build-env section's keys, as reported
_BUILD_ENV_KEYS = {
    "umask": "umask", "tz": "tz", "lang": "lang", "lc_all": "lc_all", "user": "user",
    "home": "home", "source_date_epoch": "source_date_epoch", "Uid": "uid", "Gid": "gid",
    "domain": "domain",
}  # fmt: skip


def _build_env(text: str) -> dict[str, str]:
    """The build-env section: known `key=value` lines only, each value cleaned and capped."""
    env: dict[str, str] = {}
    for line in text.split("\n")[:32]:
        key, sep, value = line.partition("=")
        if sep and key in _BUILD_ENV_KEYS:
            env[_BUILD_ENV_KEYS[key]] = clean(value)
    return env


@dataclass(frozen=True)
class Fact:
    """One section of the facts script: what the host runs for it and what repro keeps of it."""

    section: str  # the marker's name; the script prints the sections in the table's order
    snippet: str  # sh printing the section's body (helpers: repro/hostside/facts.sh)
    parse: Callable[[str], Any]  # the section's text (untrusted) -> the column's plain value
    column: str | tuple[str, ...]  # the fact's key; a tuple: parse returns one value for each


# Adding a host fact: a row here (and, if its snippet needs more than a line, a helper in
# repro/hostside/facts.sh). Facts computed from several sections are set in parse_facts.
FACTS: tuple[Fact, ...] = (
    # the UTS namespace's name, as `uname -n` prints it
    Fact("hostname", "if [ -r /proc/sys/kernel/hostname ]; then "
         "_rf_lines /proc/sys/kernel/hostname 1 256; else uname -n; fi", _hostname, "hostname"),
    Fact("clock", "_rf_clock", _clock, "clock"),
    # first processor block only: a 192-core box prints megabytes
    Fact("cpuinfo", "_rf_lines /proc/cpuinfo 80 8192 block", _cpu, CPU_COLUMNS),
    Fact("nproc", "_rf_cores", _cores, "cores"),
    Fact("meminfo", "_rf_field /proc/meminfo MemTotal: 256", _memory, "memory_bytes"),
    Fact("uname", "_rf_uname", lambda t: clean(_first(t)), "kernel"),
    Fact("os-release", "_rf_os_release", _os_release, "distro"),
    Fact("glibc", "_rf_glibc", _glibc, "glibc"),
    Fact("virt", "_rf_virt", _virt, "virtualization"),
    Fact("dmi-vendor", "_rf_lines /sys/class/dmi/id/sys_vendor 1 256", clean, "dmi_vendor"),
    Fact("dmi-product", "_rf_lines /sys/class/dmi/id/product_name 1 256", clean, "dmi_product"),
    # absolute, "~" expanded ("" when relative or not plain text); a dir this user may write
    # in; mkdir's complaint when it could not be made. Also measures both dirs for df-*.
    Fact("work-dir", '_rf_work_dir "$@"', _work_dir,
         ("work_dir", "work_dir_writable", "work_dir_error")),
    Fact("df-work", '_rf_print "$_rf_dfw" 8192', _df_available, "free_work_bytes"),
    # where the build's temporary files go
    Fact("tmp-dir", '_rf_put "${TMPDIR:-/tmp}" 4096', lambda t: clean(t.strip()), "tmp_dir"),
    Fact("df-tmp", '_rf_print "$_rf_dft" 8192', _df_available, "free_tmp_bytes"),
    # reprotest's build-environment list, as a login shell shows it: umask, TZ, locale, …
    Fact("build-env", "_rf_build_env", _build_env, "build_env"),
    Fact("guix-version", '_rf_have guix && _rf_put "$(_rf_guix --version)" 256', _guix_version,
         "guix_version"),
    Fact("guix-describe", "_rf_guix_describe", _channel_facts,
         ("guix_channels", "guix_channel_commit")),
    Fact("guix-daemon", "_rf_guix_daemon", lambda t: _first(t).strip() == "yes", "guix_daemon"),
)  # fmt: skip

#: every section the script prints, in order (the last one says it ran to its end); the parser
#: ignores any other marker
SECTIONS = (*(f.section for f in FACTS), "end")

# The script, sent on stdin: the same PATH as steps and preflight see (a per-user `guix pull`),
# the helpers, then one function printing every section. $1 is the work dir; the snippets get
# what follows it ("create" and the subdirs to make).
def facts_script(*, comments: bool = False) -> str:
    """The facts script (with its files' comments for the lint test: `comments`)."""
    return (
        PRELUDE
        + hostside.load("facts.sh", comments=comments)
        + '_repro_facts() {\n_rf_start "${1-}"\n[ $# -eq 0 ] || shift\n'
        + "".join(f"_rf_sec {f.section}\n{f.snippet}\n" for f in FACTS)
        + "_rf_sec end\n}\n"
        + '_repro_facts "$@" </dev/null 2>/dev/null\nexit 0\n'
    )


FACTS_SCRIPT = facts_script()


def parse_facts(text: str) -> dict[str, Any]:
    """Turn FACTS_SCRIPT's output into plain facts. Never raises; unknown pieces come back empty."""
    if not isinstance(text, str):
        text = ""
    s = _sections(text)
    facts: dict[str, Any] = {}
    for fact in FACTS:
        value = fact.parse(s.get(fact.section, ""))
        if isinstance(fact.column, tuple):
            facts.update(zip(fact.column, value, strict=True))
        else:
            facts[fact.column] = value
    facts["cloud"] = _cloud(facts["dmi_vendor"], facts["dmi_product"])
    facts["describe"] = describe(facts)
    return facts


def describe(facts: dict[str, Any]) -> str:
    """The short "what it is": "Intel Sapphire Rapids, bare metal", "AMD Zen 3, KVM VM (Google)"."""
    vendor = str(facts.get("cpu_vendor") or "")
    arch = str(facts.get("microarch") or "")
    cpu = f"{vendor} {arch}".strip() if arch else str(facts.get("cpu_model_name") or vendor)
    virt = str(facts.get("virtualization") or "")
    container = virt in _CONTAINERS
    where = _where(facts, virt, container)
    if container:
        # systemd-detect-virt's catch-all must not read "container-other container"
        kind = "container" if virt == "container-other" else f"{virt} container"
        where = f"{where}, {kind}" if where else kind
    return clean(", ".join(p for p in (cpu or "unknown CPU", where) if p))


def _where(facts: dict[str, Any], virt: str, container: bool) -> str:
    cloud = str(facts.get("cloud") or "")
    label = _CLOUD_LABELS.get(cloud, "")
    hv = "" if container else _HYPERVISORS.get(virt, virt if virt != "none" else "")
    if facts.get("hypervisor") or hv:
        if cloud == "Azure":
            return "Azure VM"  # always Hyper-V there; naming it twice is noise
        if hv:
            return f"{hv} VM ({label})" if label else f"{hv} VM"
        if label:
            return f"VM ({label})"
        return "QEMU VM" if cloud == "QEMU" else "VM"
    # without cpuinfo and systemd-detect-virt there is nothing to call it bare metal on
    if virt != "none" and not facts.get("cpu_vendor"):
        return ""
    return f"bare metal ({label})" if label else "bare metal"


async def gather_facts(
    transport: Transport,
    work_dir: str | None = None,
    *,
    create: bool = False,
    subdirs: tuple[str, ...] = (),
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Run FACTS_SCRIPT on the host (script on stdin, work dir as a quoted argument) and parse it.

    `work_dir` may start with "~" (the host's $HOME). With `create`, the script also makes it
    (`mkdir -p`), and `subdirs` inside it, in the same round trip; either way the facts `work_dir` (absolute) and
    `work_dir_writable` say what the host has.
    """
    args = [work_dir or ""] if work_dir or create else []
    if create:
        args += ["create", *subdirs]
    command = " ".join(["sh -s --", *(shlex.quote(a) for a in args)])
    result = await transport.run(command, timeout=timeout, stdin=FACTS_SCRIPT.encode())
    # the script always exits 0; anything else (no sh, killed) still parses to what came back
    return parse_facts(result.stdout)
