"""The remote side of artifact collection: one sh command that hashes on the host, and a strict
parser for what comes back (only `<sha256> <size> <name>` lines travel; they are untrusted).
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from repro import hostside
from repro.errors import PlaybookError, UntrustedOutput
from repro.paths import glob_problem, relpath_ok, safe_name
from repro.results import ArtifactHash

if TYPE_CHECKING:
    from repro.playbook import Playbook

MAX_OUTPUT = 4 * 1024 * 1024  # characters; 10000 artifacts with long names fit easily
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_SIZE_RE = re.compile(r"[0-9]{1,20}")


# --- the command run on the host ---------------------------------------------------------------

# Every process a host starts costs (a lab of a hundred hosts shares two cores), so the command
# is one `find` whose `-exec … +` batch (repro/hostside/hash.sh) hashes every file with ONE
# sha256sum and ONE wc and joins the two with shell builtins: five processes in all (the login
# shell, find, the batch's sh, sha256sum, wc) for every spec and file, until the names fill
# 32 KiB (about 500 files). The generated `classify` and, with manifests, `manifest`
# (repro/hostside/hash-manifest.sh) come before the batch. A carriage return (which manifests
# written on Windows end their lines with) is set here: it has no place in a text file.
_CR = "CR='\r'\n"


def batch_script(playbook: Playbook, *, comments: bool = False) -> str:
    """The batch script for `playbook`'s specs (with its files' comments: `comments`)."""
    specs = _specs(playbook)
    manifest = hostside.load("hash-manifest.sh", comments=comments) if playbook.manifests else ""
    return _CR + manifest + _classify(specs) + hostside.load("hash.sh", comments=comments)

# The globs go unquoted into `case` patterns on the host: hash_command checks them with the
# playbook's own grammar (repro.paths) whatever Playbook it is handed.


def _segments(dir_: str, glob: str, what: str) -> list[str]:
    """The path segments of `dir_/glob` below the work dir, checked (PlaybookError if unsafe)."""
    if not relpath_ok(dir_, dot_ok=True):
        raise PlaybookError(f"{what}.dir: {dir_!r} is not a plain relative path")
    if glob_problem(glob) is not None:
        raise PlaybookError(f"{what}.glob: {glob!r} cannot be matched safely on a host")
    return ([] if dir_ == "." else dir_.split("/")) + glob.split("/")


def _deeper(depth: int) -> str:
    """A -path/case pattern for paths with more than `depth` segments below `.`.

    Both find's -path and sh's case let `*` match '/'; a path with exactly as many segments as
    the pattern has makes each '/' of the pattern meet one '/' of the path, so every `*`, `?`
    and [...] stays inside one segment, like a shell glob.
    """
    return "./" + "*/" * depth + "*"


class _Spec:
    """One artifact or manifest spec, as find and the batch script match it."""

    def __init__(self, dir_: str, glob: str, action: str, what: str) -> None:
        parts = _segments(dir_, glob, what)
        prefix = "./" if dir_ == "." else f"./{dir_}/"
        self.depth = len(parts)
        self.pattern = "./" + "/".join(parts)
        # The dir part is literal (quoted); the glob part stays a pattern (its chars checked).
        self.case = shlex.quote(prefix) + glob
        self.action = action.replace("PREFIX", shlex.quote(prefix))
        self.dirs = ["./" + "/".join(parts[:i]) for i in range(1, self.depth)]

    def __repr__(self) -> str:
        return f"_Spec({self.pattern!r})"


def _specs(playbook: Playbook) -> list[_Spec]:
    # An artifact's name is its path without the dir; a manifest queues what it lists.
    specs = [
        _Spec(a.dir, a.glob, 'queue "$1" "${1#PREFIX}"', f"{playbook.path}: artifacts[{i}]")
        for i, a in enumerate(playbook.artifacts, start=1)
    ]
    specs += [
        _Spec(
            ".", m.glob, f'manifest "$1" {shlex.quote(m.base)}', f"{playbook.path}: manifests[{i}]"
        )
        for i, m in enumerate(playbook.manifests, start=1)
    ]
    return specs


def _classify(specs: list[_Spec]) -> str:
    """`classify PATH`: queue PATH under the name of every spec that matches it, once per name.

    Specs with the same action and depth share one case arm, so a file matched by two globs
    of one dir is queued once.
    """
    arms: dict[tuple[str, int], list[str]] = {}
    for s in specs:
        arms.setdefault((s.action, s.depth), []).append(s.case)
    body = [
        f"  case $1 in {_deeper(depth)}) ;; {'|'.join(dict.fromkeys(cases))}) {action};; esac"
        for (action, depth), cases in arms.items()
    ]
    return "classify() {\n" + "\n".join(body) + "\n}\n"


def _find_expr(specs: list[_Spec]) -> list[str]:
    """find's test: descend only into dirs some spec may reach, keep the files one matches.

    Every other dir is pruned before it is read, so the rest of the work dir costs nothing
    and an unreadable dir elsewhere cannot fail the command.
    """
    dirs = ["-path", "."]
    for d in dict.fromkeys(d for s in specs for d in s.dirs):
        dirs += ["-o", "-path", d, "!", "-path", _deeper(d.count("/"))]
    files: list[str] = []
    for pattern, depth in dict.fromkeys((s.pattern, s.depth) for s in specs):
        files += [*(["-o"] if files else []), "-path", pattern, "!", "-path", _deeper(depth)]
    deepest = max(s.depth for s in specs)
    return ["-maxdepth", str(deepest), "-type", "d", "(", *dirs, ")",
            "-o", "-type", "d", "-prune", "-o", "-type", "f", "(", *files, ")"]  # fmt: skip


_GLOB_CHARS = frozenset("*?[")


#: hash.sh's batch: its queue of paths is hashed (and printed) once it reaches this many bytes
_BATCH = 32768


def _literal_command(specs: list[_Spec], script: str) -> str:
    """hash_command when every spec names one path (no glob character, no manifest).

    No `find` to look for them, nor a `sh` for its batch: the batch script runs on the paths
    that find would have kept: a regular file, not a symlink, below directories that are not
    symlinks either (find does not follow them). Paths that fit one batch (the usual few) are
    hashed in the calling shell itself, in braces (the supervisor runs every step in a subshell
    of its own already): one batch prints all or nothing, so no `$(…)` process is needed;
    more go in a `$(…)`, as find's batches do.
    """
    patterns = list(dict.fromkeys(s.pattern for s in specs))
    tests = []
    for pattern in patterns:
        parts = pattern.split("/")[1:]  # "./a/b" -> ["a", "b"]
        checks = [
            f"[ -d {q} ] && [ ! -L {q} ]"
            for q in (shlex.quote("./" + "/".join(parts[:i])) for i in range(1, len(parts)))
        ]
        q = shlex.quote(pattern)
        checks.append(f"[ -f {q} ] && [ ! -L {q} ]")
        tests.append("if " + " && ".join(checks) + f'; then set -- "$@" {q}; fi')
    body = "LC_ALL=C; export LC_ALL; set --\n" + "\n".join(tests) + "\n" + script
    # half a batch: a path queued under two names counts twice there
    if sum(len(p.encode()) + 1 for p in patterns) < _BATCH // 2:
        return "{\n" + body + "\n}"
    return _all_or_nothing(body)


def _all_or_nothing(command: str) -> str:
    """Run `command` in $(…) and print its output only if it succeeded: all of it, or nothing."""
    return "{ out=$(" + command + ') && { [ -z "$out" ] || printf \'%s\\n\' "$out"; }; }'


def hash_command(playbook: Playbook) -> str:
    """One POSIX sh command, run in the work dir, printing `<sha256> <size> <name>` per file.

    Only regular files are hashed, never through a symlink. A file matched by two specs may
    be listed twice (parse_hash_output collapses identical lines). Exits non-zero, printing
    nothing, if a file can't be read. Raises PlaybookError for a dir or glob it cannot match
    safely (load_playbook refuses those first).
    """
    specs = _specs(playbook)
    if not specs:
        return "true"
    script = batch_script(playbook)
    if not playbook.manifests and not any(_GLOB_CHARS & set(s.pattern) for s in specs):
        return _literal_command(specs, script)
    words = ["find", ".", *_find_expr(specs), "-exec", "sh", "-c", script, "sh", "{}", "+"]
    find = " ".join(shlex.quote(w) for w in words)
    # One simple command in $(…): the shell execs find in the substitution's own process. The
    # output is held back until find (and so every batch) succeeded: all of it, or nothing.
    # C locale: the same bracket ranges in find and case, and untranslated tool output.
    return _all_or_nothing("LC_ALL=C " + find)


# --- the parser for what comes back -----------------------------------------------------------


def parse_hash_output(
    host: str, text: str, *, max_artifacts: int = 10000
) -> dict[str, ArtifactHash]:
    """Validate `hash_command`'s output from `host`; any bad line rejects all of it.

    Identical lines count once; the result is sorted by name. Raises UntrustedOutput (with
    host=) for a malformed hash, size or name, a name listed with two different hashes or
    sizes, or more than `max_artifacts` lines or MAX_OUTPUT characters.
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
        seen = found.get(item.name)
        # The same file matched by two specs (two globs, a glob and a manifest) is listed twice
        # with the same hash and size: one claim. Two different claims for one name are not.
        if seen is not None and (seen.sha256, seen.size) != (item.sha256, item.size):
            raise UntrustedOutput(f"artifact {item.name!r} listed twice (line {number})", host=host)
        found[item.name] = item
    return dict(sorted(found.items()))


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
