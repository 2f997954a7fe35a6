"""The remote side of artifact collection: one sh command that hashes on the host, and a strict
parser for what comes back (only `<sha256> <size> <name>` lines travel; they are untrusted).
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from typing import TYPE_CHECKING

from repro.errors import UntrustedOutput
from repro.results import ArtifactHash

if TYPE_CHECKING:
    from repro.playbook import ArtifactSpec, ManifestSpec, Playbook

MAX_NAME = 255
MAX_OUTPUT = 4 * 1024 * 1024  # characters; 10000 artifacts with long names fit easily
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_SIZE_RE = re.compile(r"[0-9]{1,20}")
# Cc: terminal escapes and newlines; Cf: bidi overrides and zero-width characters that make a
# name look like another one; Cs/Co/Cn: surrogates (undecodable bytes), private, unassigned.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def safe_name(name: str) -> bool:
    """Whether `name` is a canonical relative path that is safe to show and to join to a dir.

    Not empty, at most 255 characters, not absolute, no backslash, no empty, `.` or `..`
    segment, and no control, format (bidi, zero-width), surrogate or unassigned characters.
    """
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        return False
    if name.startswith("/") or "\\" in name:
        return False
    if any(seg in ("", ".", "..") for seg in name.split("/")):
        return False
    return not any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in name)


# --- the command run on the host ---------------------------------------------------------------

# Hashes the files given as arguments; $1 is the prefix to strip to get each file's name.
# A newline in a name could forge a whole output line, so such a name fails the command.
# stdin redirection keeps sha256sum from escaping odd file names; `shasum` is for BSD/macOS.
_HASH_FILES = r"""p=$1; shift
nl='
'
for f do
  case $f in *"$nl"*) printf 'repro: refusing a file name with a newline under %s\n' "$p" >&2; exit 1;; esac
  if command -v sha256sum >/dev/null 2>&1; then h=$(sha256sum < "$f"); else h=$(shasum -a 256 < "$f"); fi || { printf 'repro: cannot hash %s\n' "$f" >&2; exit 1; }
  s=$(wc -c < "$f") || exit 1
  printf '%s %s %s\n' "${h%% *}" "${s##* }" "${f#"$p"}"
done"""

# Reads SHA256SUMS-style manifests (the arguments; $1 is `base`) and hashes every listed file
# that is a regular file inside the work dir; the name printed is the listed name.
_HASH_MANIFESTS = r"""b=$1; shift
W=$(pwd -P)
CR=$(printf '\r')
q='????????????????????????????????????????????????????????????????'
for m do
  d=${m%/*}
  while IFS= read -r line || [ -n "$line" ]; do
    rest=${line#$q}
    case ${line%"$rest"} in ''|*[!0-9a-fA-F]*) continue;; esac
    case $rest in '  '*|' *'*) n=${rest#??}; n=${n%"$CR"};; *) continue;; esac
    case /$n/ in //*|*//*|*/./*|*/../*) printf 'repro: %s lists an unsafe name; skipped\n' "$m" >&2; continue;; esac
    t=$d/$b/$n
    if [ ! -f "$t" ] || [ -L "$t" ]; then continue; fi
    td=$(cd -P -- "${t%/*}" 2>/dev/null && pwd -P) || continue
    case $td/ in "$W"/*) ;; *) printf 'repro: %s lists a file outside the work dir; skipped\n' "$m" >&2; continue;; esac
    if command -v sha256sum >/dev/null 2>&1; then h=$(sha256sum < "$t"); else h=$(shasum -a 256 < "$t"); fi || { printf 'repro: cannot hash %s\n' "$t" >&2; exit 1; }
    s=$(wc -c < "$t") || exit 1
    printf '%s %s %s\n' "${h%% *}" "${s##* }" "$n"
  done < "$m"
done"""


def _no_symlink_in(dir_: str) -> str:
    """A test that `./dir` is a directory reached through no symlink (so it is in the work dir)."""
    if dir_ == ".":
        return "true"
    parts = dir_.split("/")
    prefixes = ["./" + "/".join(parts[: i + 1]) for i in range(len(parts))]
    tests = [f"[ -d {shlex.quote(prefixes[-1])} ]"]
    tests += [f"[ ! -L {shlex.quote(p)} ]" for p in prefixes]
    return " && ".join(tests)


def _find(start: str, glob: str, script: str, arg: str) -> str:
    """`find` matching `start/glob` exactly like a shell glob would, without following symlinks.

    find's -path lets `*` match `/`; fixing the depth to the glob's number of segments
    (validated: no '/' inside [...]) makes every `*` stay inside one segment.
    """
    depth = glob.count("/") + 1
    pattern = f"{start}/{glob}"
    return (
        f"find {shlex.quote(start)} -mindepth {depth} -maxdepth {depth} -type f"
        f" -path {shlex.quote(pattern)} -exec sh -c {script} sh {shlex.quote(arg)} {{}} +"
    )


def _artifact_line(spec: ArtifactSpec) -> str:
    start = "." if spec.dir == "." else f"./{spec.dir}"
    find = _find(start, spec.glob, '"$P"', start + "/")
    return f"if {_no_symlink_in(spec.dir)}; then {find} || rc=1; fi"


def _manifest_line(spec: ManifestSpec) -> str:
    return _find(".", spec.glob, '"$M"', spec.base) + " || rc=1"


def hash_command(playbook: Playbook) -> str:
    """One POSIX sh command, run in the work dir, printing `<sha256> <size> <name>` per file.

    Only regular files are hashed, never through a symlink. Identical lines (a file matched
    by two specs) are printed once. Exits non-zero, printing nothing, if a file can't be read.
    """
    lines = [f"P={shlex.quote(_HASH_FILES)}", f"M={shlex.quote(_HASH_MANIFESTS)}", "rc=0"]
    lines += [_artifact_line(spec) for spec in playbook.artifacts]
    lines += [_manifest_line(spec) for spec in playbook.manifests]
    lines.append("exit $rc")
    inner = "\n".join(lines)
    # A subshell, so a caller's `cd -- work && <this>` guards all of it.
    return (
        f"(out=$(\n{inner}\n) || exit 1\n"
        '[ -z "$out" ] || printf \'%s\\n\' "$out" | LC_ALL=C sort -u)'
    )


# --- the parser for what comes back -----------------------------------------------------------


def parse_hash_output(
    host: str, text: str, *, max_artifacts: int = 10000
) -> dict[str, ArtifactHash]:
    """Validate `hash_command`'s output from `host`; any bad line rejects all of it.

    Raises UntrustedOutput (with host=) for a malformed hash, size or name, a duplicate name,
    or more than `max_artifacts` lines or MAX_OUTPUT characters.
    """
    if len(text) > MAX_OUTPUT:
        raise UntrustedOutput(f"artifact list is larger than {MAX_OUTPUT} characters", host=host)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) > max_artifacts:
        raise UntrustedOutput(f"more than {max_artifacts} artifacts", host=host)
    found: dict[str, ArtifactHash] = {}
    for number, line in enumerate(lines, start=1):
        item = _parse_line(host, number, line)
        if item.name in found:
            raise UntrustedOutput(f"artifact {item.name!r} listed twice (line {number})", host=host)
        found[item.name] = item
    return found


def _parse_line(host: str, number: int, line: str) -> ArtifactHash:
    parts = line.split(" ", 2)
    if len(parts) != 3:
        raise UntrustedOutput(f"line {number} of the artifact list is malformed", host=host)
    sha, size, name = parts
    if not _HASH_RE.fullmatch(sha):
        raise UntrustedOutput(f"line {number}: {_clip(sha)} is not a sha256", host=host)
    if not _SIZE_RE.fullmatch(size):
        raise UntrustedOutput(f"line {number}: {_clip(size)} is not a size", host=host)
    if not safe_name(name):
        raise UntrustedOutput(f"line {number}: {_clip(name)} is not a safe file name", host=host)
    return ArtifactHash(name=name, sha256=sha, size=int(size))


def _clip(value: str) -> str:
    """Untrusted text for an error message: escaped by repr, and short."""
    text = ascii(value)
    return text if len(text) <= 80 else text[:77] + "..."
