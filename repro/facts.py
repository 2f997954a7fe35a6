"""Host facts (CPU, memory, OS, virtualization, disk, Guix) gathered by one POSIX sh script.

Everything a host prints is untrusted: `parse_facts` neutralises it into plain, capped values.
"""

from __future__ import annotations

import json
import re
import shlex
import unicodedata
from typing import TYPE_CHECKING, Any

from repro.hostenv import PRELUDE

if TYPE_CHECKING:
    from repro.transport.base import Transport

#: the prefix of every section marker line the script prints: "@@repro-facts@@ NAME"
MARKER = "@@repro-facts@@"

# The script is sent on stdin to `sh -s -- WORK_DIR [create]`, so nothing is ever interpolated
# into it. All work happens inside functions, read in full before anything runs, and with stdin
# from /dev/null: bash reads a piped script byte by byte, so a command that reads stdin would
# otherwise swallow the part of the script not yet read.
# The same PATH as steps and preflight see (a per-user `guix pull`): repro.hostenv.
FACTS_SCRIPT = PRELUDE + r"""# repro host facts: sections between marker lines; always exits 0
# Cheap on purpose: at 100 hosts every process a host starts costs the controller's machine
# ~0.65 ms of CPU, so files are read with shell builtins and commands run only for facts no
# file holds. Output stays bounded without `head`/`cut`: files and captured output go through
# line-count and line-length checks; what is printed directly (date, nproc, uname, getconf)
# is short by construction.
# the login environment's locale, before the C locale below replaces it (a build-env fact)
_rf_lc_all=${LC_ALL-}
LC_ALL=C
export LC_ALL
# GNU nproc obeys these; the build's own settings must not shrink the core count we report
unset OMP_NUM_THREADS OMP_THREAD_LIMIT
_rf_nl='
'

_rf_have() { command -v "$1" >/dev/null 2>&1; }

_rf_sec() { printf '\n%s %s\n' '@@repro-facts@@' "$1"; }

# _rf_put TEXT MAX: TEXT's first line, left out when longer than MAX (no builtin cuts a line)
_rf_put() {
  _rf_p=${1%%"$_rf_nl"*}
  [ "${#_rf_p}" -gt "$2" ] || printf '%s\n' "$_rf_p"
}

# _rf_lines FILE LINES MAX [block]: FILE's first LINES lines, each left out when longer than
# MAX; with "block", stop at the first blank line
_rf_lines() {
  [ -r "$1" ] || return 0
  _rf_n=0
  while [ "$_rf_n" -lt "$2" ]; do
    _rf_l=
    IFS= read -r _rf_l || [ -n "$_rf_l" ] || break
    if [ "${4-}" = block ]; then
      case $_rf_l in *[![:space:]]*) ;; *) break ;; esac
    fi
    [ "${#_rf_l}" -gt "$3" ] || printf '%s\n' "$_rf_l"
    _rf_n=$((_rf_n + 1))
  done <"$1"
}

# the only commands that get a time limit: guix is slow, and a wedged daemon must not stall
# the run. Called in a subshell: it replaces that subshell, so timeout costs no extra process.
_rf_guix() {
  if [ -n "$_rf_timeout" ]; then exec timeout 20 guix "$@"; else exec guix "$@"; fi
}

# dirname's rules without running dirname: "/a/b/" -> "/a", "/a" -> "/", "a" -> "."
_rf_up() {
  case $_rf_d in */*) ;; *) _rf_d=.; return 0 ;; esac
  _rf_d=${_rf_d%"${_rf_d##*[!/]}"}
  case $_rf_d in
    */*) _rf_d=${_rf_d%/*}; _rf_d=${_rf_d%"${_rf_d##*[!/]}"}; _rf_d=${_rf_d:-/} ;;
    "") _rf_d=/ ;;
    *) _rf_d=. ;;
  esac
}

# _rf_nproc LIST: how many CPUs an affinity list ("0-3,8,10-11") names; fails on anything else
_rf_nproc() {
  case $1 in *[0-9]*) ;; *) return 1 ;; esac
  _rf_c=0
  _rf_old=$IFS
  IFS=,
  for _rf_r in $1; do
    _rf_r=${_rf_r#"${_rf_r%%[! 	]*}"}
    _rf_r=${_rf_r%"${_rf_r##*[! 	]}"}
    case $_rf_r in
      *[!0-9-]* | "" | -* | *- | *-*-*) IFS=$_rf_old; return 1 ;;
      *-*) _rf_c=$((_rf_c + ${_rf_r#*-} - ${_rf_r%-*} + 1)) ;;
      *) _rf_c=$((_rf_c + 1)) ;;
    esac
  done
  IFS=$_rf_old
  [ "$_rf_c" -gt 0 ] && echo "$_rf_c"
}

# The time (epoch seconds) without a `date` process: Linux's boot time (btime in /proc/stat,
# which moves with every clock step) plus the seconds since boot; to a second or two, plenty
# for the clock-skew check. `date` where either file is missing or odd.
_rf_clock() {
  _rf_bt=
  _rf_up=
  if [ -r /proc/stat ] && [ -r /proc/uptime ]; then
    _rf_n=0
    while [ "$_rf_n" -lt 10000 ] && IFS=' ' read -r _rf_k _rf_v _rf_rest; do
      if [ "$_rf_k" = btime ]; then _rf_bt=$_rf_v; break; fi
      _rf_n=$((_rf_n + 1))
    done </proc/stat
    IFS=' ' read -r _rf_up _rf_rest </proc/uptime
    _rf_up=${_rf_up%%.*}
  fi
  case $_rf_bt in '' | *[!0-9]*) date +%s; return ;; esac
  case $_rf_up in '' | *[!0-9]*) date +%s; return ;; esac
  echo $((_rf_bt + _rf_up))
}

# systemd-detect-virt, kept per boot: it costs a few ms (4x any other command of this script),
# and what it says cannot change before a reboot. The answer is cached in ~/.cache/repro/virt
# under the kernel's boot id and the hostname (a container sharing the host's home has its own
# name); read back only if it looks like an answer, and written only where that dir exists.
_rf_virt() {
  _rf_key=
  _rf_cache=
  if [ -n "${HOME:-}" ] && [ -r /proc/sys/kernel/random/boot_id ] \
    && IFS= read -r _rf_key </proc/sys/kernel/random/boot_id; then
    _rf_h=
    [ -r /proc/sys/kernel/hostname ] && IFS= read -r _rf_h </proc/sys/kernel/hostname
    _rf_key="$_rf_key $_rf_h"
    _rf_cache=$HOME/.cache/repro/virt
    if [ -f "$_rf_cache" ] && IFS= read -r _rf_l <"$_rf_cache"; then
      _rf_v=${_rf_l#"$_rf_key "}
      if [ "$_rf_v" != "$_rf_l" ]; then
        case $_rf_v in *[!a-z0-9_-]* | "") ;; *) echo "$_rf_v"; return 0 ;; esac
      fi
    fi
  fi
  _rf_v=$(systemd-detect-virt)
  _rf_put "$_rf_v" 64
  [ -n "$_rf_cache" ] && [ -d "${_rf_cache%/*}" ] || return 0
  case $_rf_v in
    *[!a-z0-9_-]* | "") ;;
    *) printf '%s %s\n' "$_rf_key" "$_rf_v" >"$_rf_cache" 2>/dev/null ;;
  esac
  return 0
}

# nearest existing ancestor: without create, the work dir is usually made later
_rf_existing() {
  _rf_d=$1
  _rf_n=0
  while [ ! -e "$_rf_d" ] && [ "$_rf_n" -lt 64 ]; do
    _rf_up
    _rf_n=$((_rf_n + 1))
  done
}

# df for both directories at once; one at a time when that is not three clean lines (a
# failure on one of them, a mount point with a newline in its name)
_rf_df() {
  _rf_dfw=
  _rf_dft=
  _rf_have df || return 0
  if _rf_o=$(df -Pk -- "$1" "$2"); then
    _rf_r=${_rf_o#*"$_rf_nl"}
    _rf_a=${_rf_r%%"$_rf_nl"*}
    _rf_b=${_rf_r#*"$_rf_nl"}
    if [ "$_rf_a" != "$_rf_r" ] && [ "$_rf_b" = "${_rf_b%%"$_rf_nl"*}" ]; then
      _rf_dfw=${_rf_o%%"$_rf_nl"*}$_rf_nl$_rf_a
      _rf_dft=${_rf_o%%"$_rf_nl"*}$_rf_nl$_rf_b
      return 0
    fi
  fi
  _rf_dfw=$(df -Pk -- "$1")
  _rf_dft=$(df -Pk -- "$2")
}

_rf_guix_daemon() {
  # Asking the daemon is the check: `guix gc --list-roots` fails at once when no daemon
  # listens (on the default socket, GUIX_DAEMON_SOCKET, or guix://), and a socket file alone
  # proves nothing about a daemon behind it.
  if (_rf_guix gc --list-roots >/dev/null 2>&1); then echo yes; else echo no-answer; fi
}

# $1: the work dir ("~" and "~/…" are $HOME's); $2: "create" makes it (mkdir -p)
_repro_facts() {
  _rf_w=${1:-$HOME}
  case $_rf_w in
    "~") _rf_w=$HOME ;;
    "~/"*) _rf_w=$HOME/${_rf_w#"~/"} ;;
  esac
  _rf_timeout=
  if _rf_have timeout; then _rf_timeout=yes; fi

  _rf_sec hostname
  # the UTS namespace's name, as `uname -n` prints it
  if [ -r /proc/sys/kernel/hostname ]; then
    _rf_lines /proc/sys/kernel/hostname 1 256
  else
    uname -n
  fi
  _rf_sec clock
  # bash (sh on Fedora, Arch, Guix System) knows the time without running date
  case ${BASH_VERSION-}:${EPOCHSECONDS-} in
    [5-9]*:[0-9]*) echo "$EPOCHSECONDS" ;;
    *) _rf_clock ;;
  esac
  # first processor block only: a 192-core box prints megabytes
  _rf_sec cpuinfo
  _rf_lines /proc/cpuinfo 80 8192 block
  _rf_sec nproc
  # the CPUs this process may run on, as nproc counts them, from the affinity list ("0-3,8")
  _rf_cpus=
  if [ -r /proc/self/status ]; then
    while IFS= read -r _rf_l; do
      case $_rf_l in Cpus_allowed_list:*) _rf_cpus=${_rf_l#*:}; break ;; esac
    done </proc/self/status
  fi
  _rf_nproc "$_rf_cpus" || nproc || getconf _NPROCESSORS_ONLN
  _rf_sec meminfo
  if [ -r /proc/meminfo ]; then
    while IFS= read -r _rf_l; do
      case $_rf_l in MemTotal:*) _rf_put "$_rf_l" 256; break ;; esac
    done </proc/meminfo
  fi
  _rf_sec uname
  # what `uname -srm` prints, from the kernel's own files when it has them all (Linux >= 6.1)
  _rf_k=/proc/sys/kernel
  if [ -r $_rf_k/ostype ] && [ -r $_rf_k/osrelease ] && [ -r $_rf_k/arch ] \
    && IFS= read -r _rf_os <$_rf_k/ostype && IFS= read -r _rf_rel <$_rf_k/osrelease \
    && IFS= read -r _rf_arch <$_rf_k/arch && [ -n "$_rf_os$_rf_rel$_rf_arch" ]; then
    _rf_put "$_rf_os $_rf_rel $_rf_arch" 512
  else
    uname -srm
  fi
  _rf_sec os-release
  _rf_f=/etc/os-release
  [ -r "$_rf_f" ] || _rf_f=/usr/lib/os-release
  _rf_lines "$_rf_f" 60 4096
  _rf_sec glibc
  if ! getconf GNU_LIBC_VERSION && _rf_have ldd; then
    _rf_put "$(ldd --version 2>&1)" 256
  fi
  _rf_sec virt
  if _rf_have systemd-detect-virt; then _rf_virt; fi
  _rf_sec dmi-vendor
  _rf_lines /sys/class/dmi/id/sys_vendor 1 256
  _rf_sec dmi-product
  _rf_lines /sys/class/dmi/id/product_name 1 256
  _rf_sec work-dir
  # "[path]" so that no leading or trailing space is lost; a relative path is unknown here
  case $_rf_w in
    *"$_rf_nl"*) ;;
    /*) [ "${#_rf_w}" -gt 4096 ] || printf '[%s]\n' "$_rf_w" ;;
  esac
  # mkdir's complaint, if any, lands in this section; the verdict is always its last line
  # with "create", the names after it are made inside too (the run's subdirectories): one mkdir
  if [ "${2-}" = create ]; then
    shift 2
    _rf_n=$#
    for _rf_s do set -- "$@" "$_rf_w/$_rf_s"; done
    shift "$_rf_n"
    { [ -d "$_rf_w" ] && [ $# -eq 0 ]; } || mkdir -p -- "$_rf_w" "$@" 2>&1
  fi
  if [ -d "$_rf_w" ] && [ -w "$_rf_w" ]; then echo writable; else echo not-writable; fi
  _rf_existing "$_rf_w"
  _rf_dw=$_rf_d
  _rf_existing "${TMPDIR:-/tmp}"
  _rf_df "$_rf_dw" "$_rf_d"
  _rf_sec df-work
  [ "${#_rf_dfw}" -gt 8192 ] || printf '%s\n' "$_rf_dfw"
  _rf_sec tmp-dir
  _rf_put "${TMPDIR:-/tmp}" 4096
  _rf_sec df-tmp
  [ "${#_rf_dft}" -gt 8192 ] || printf '%s\n' "$_rf_dft"
  _rf_sec build-env
  # what reprotest varies, as a step starts from it (a step's own env and --vary go on top);
  # builtins and /proc only: no process per fact
  _rf_put "umask=$(umask)" 64
  _rf_put "tz=${TZ-}" 256
  _rf_put "lang=${LANG-}" 256
  _rf_put "lc_all=$_rf_lc_all" 256
  _rf_put "user=${USER:-${LOGNAME-}}" 256
  _rf_put "home=${HOME-}" 1024
  _rf_put "source_date_epoch=${SOURCE_DATE_EPOCH-}" 64
  if [ -r /proc/self/status ]; then
    while IFS= read -r _rf_l; do
      case $_rf_l in Uid:*|Gid:*)
        # "Uid:<tab>real<tab>effective…": the real id, without a process
        _rf_v=${_rf_l#*:}
        _rf_v=${_rf_v#"${_rf_v%%[![:space:]]*}"}
        _rf_put "${_rf_l%%:*}=${_rf_v%%[[:space:]]*}" 64 ;;
      esac
    done </proc/self/status
  fi
  [ -r /proc/sys/kernel/domainname ] && IFS= read -r _rf_l </proc/sys/kernel/domainname \
    && _rf_put "domain=$_rf_l" 256
  _rf_sec guix-version
  if _rf_have guix; then _rf_put "$(_rf_guix --version)" 256; fi
  _rf_sec guix-describe
  if _rf_have guix; then
    _rf_o=$(_rf_guix describe --format=json)
    [ "${#_rf_o}" -gt 500000 ] || printf '%s\n' "$_rf_o"
  fi
  _rf_sec guix-daemon
  if _rf_have guix; then _rf_guix_daemon; fi
  _rf_sec end
}

_repro_facts "$@" </dev/null 2>/dev/null
exit 0
"""

#: every section the script prints, in order; the parser ignores any other marker
SECTIONS = (
    "hostname", "clock", "cpuinfo", "nproc", "meminfo", "uname", "os-release", "glibc", "virt",
    "dmi-vendor", "dmi-product", "work-dir", "df-work", "tmp-dir", "df-tmp", "build-env",
    "guix-version",
    "guix-describe", "guix-daemon", "end",
)  # fmt: skip

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


#: the build-env section's keys (reprotest's variations that a login shell shows), as reported
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


def parse_facts(text: str) -> dict[str, Any]:
    """Turn FACTS_SCRIPT's output into plain facts. Never raises; unknown pieces come back empty."""
    if not isinstance(text, str):
        text = ""
    s = _sections(text)
    cpu = _cpuinfo(s.get("cpuinfo", ""))
    flags = set(cpu.get("flags", "").split())
    raw_vendor = clean(cpu.get("vendor_id", ""), 40)
    family = _int(cpu.get("cpu family", ""), 6)
    model = _int(cpu.get("model", ""), 6)
    stepping = _int(cpu.get("stepping", ""), 6)
    mem = re.search(r"(?a)MemTotal:\s*(\d{1,15})\s*kB", s.get("meminfo", ""))
    cores = _int(s.get("nproc", "").split("\n")[0], 7)
    virt = s.get("virt", "").split("\n")[0].strip().lower()
    dmi_vendor = clean(s.get("dmi-vendor", ""))
    dmi_product = clean(s.get("dmi-product", ""))
    channels = _channels(s.get("guix-describe", ""))
    clock = re.fullmatch(r"(?a)\s*(-?\d{1,12})\s*", s.get("clock", ""))
    work_dir, work_dir_writable, work_dir_error = _work_dir(s.get("work-dir", ""))
    facts: dict[str, Any] = {
        "hostname": clean(s.get("hostname", "").split("\n")[0], 253),
        "cpu_vendor": _VENDORS.get(raw_vendor, raw_vendor),
        "cpu_model_name": clean(cpu.get("model name", "")),
        "cpu_family": family,
        "cpu_model": model,
        "cpu_stepping": stepping,
        "microarch": classify_cpu(raw_vendor, family, model, stepping),
        "microcode": clean(cpu.get("microcode", ""), 40),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "cores": cores if cores else None,
        "memory_bytes": int(mem.group(1)) * 1024 if mem else None,
        "kernel": clean(s.get("uname", "").split("\n")[0]),
        "distro": _os_release(s.get("os-release", "")),
        "glibc": _glibc(s.get("glibc", "")),
        "virtualization": virt if re.fullmatch(r"[a-z0-9_-]{1,40}", virt) else "",
        "hypervisor": "hypervisor" in flags,
        "dmi_vendor": dmi_vendor,
        "dmi_product": dmi_product,
        "cloud": _cloud(dmi_vendor, dmi_product),
        "free_work_bytes": _df_available(s.get("df-work", "")),
        "free_tmp_bytes": _df_available(s.get("df-tmp", "")),
        "tmp_dir": clean(s.get("tmp-dir", "").strip()),  # where the build's temporary files go
        "guix_version": _guix_version(s.get("guix-version", "")),
        "guix_channels": channels,
        "guix_channel_commit": next((c["commit"] for c in channels if c["name"] == "guix"), ""),
        "guix_daemon": s.get("guix-daemon", "").split("\n")[0].strip() == "yes",
        "clock": int(clock.group(1)) if clock else None,
        "work_dir": work_dir,  # absolute, "~" expanded; "" when relative or not plain text
        "work_dir_writable": work_dir_writable,  # it is a directory this user may write in
        "work_dir_error": work_dir_error,  # mkdir's complaint when it could not be made
        "build_env": _build_env(s.get("build-env", "")),
    }
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
