"""Source pinning: resolve a user's --ref (tag, branch, any ref the remote serves such as
GitHub's pull/615/head, or a commit) to one full commit.

Done once, on the controller, before anything runs, so every host builds exactly the same
commit and the report can name it. A ref that does not resolve is bad input (exit 2).
"""

from __future__ import annotations

import re
import subprocess

from repro.errors import UsageError

_FULL_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# git's own rules are stricter; this rejects anything that could be read as an option or
# carry shell or revision syntax (`..`, `@{`, `^`, `~`, `:`, spaces, control characters).
_REF_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*@\{)[A-Za-z0-9._/+-]{1,200}$")


def validate_ref(ref: str) -> str:
    if not _REF_RE.match(ref) or ref.endswith((".lock", "/", ".")):
        raise UsageError(f"--ref {ref!r} is not a valid tag, branch or commit name")
    return ref


def resolve_ref(repo_url: str, ref: str, *, timeout: float = 60.0) -> str:
    """Return the full commit `ref` names in `repo_url`: a peeled tag, a branch, any other ref
    the remote serves (`pull/615/head` is `refs/pull/615/head`; `refs/...` is taken as is), or
    a full commit id."""
    validate_ref(ref)
    if _FULL_COMMIT.match(ref):
        return ref
    if repo_url.startswith("-"):
        raise UsageError(f"repo_url {repo_url!r} is not a repository URL")
    if ref.startswith("refs/") or ref == "HEAD":
        wanted = [f"{ref}^{{}}", ref]
    else:
        wanted = [f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}", f"refs/{ref}"]
    try:
        proc = subprocess.run(
            ["git", "ls-remote", "--", repo_url, *wanted],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": _path()},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot resolve --ref {ref!r} in {repo_url}: {exc}") from exc
    if proc.returncode != 0:
        msg = " ".join(proc.stderr.split())[-200:]
        raise UsageError(f"cannot resolve --ref {ref!r} in {repo_url}: {msg}")
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and _FULL_COMMIT.match(parts[0]):
            found[parts[1]] = parts[0]
    for name in wanted:  # a peeled annotated tag first: it names the commit, not the tag object
        if name in found:
            return found[name]
    if re.fullmatch(r"[0-9a-f]{7,39}", ref):
        raise UsageError(f"--ref {ref!r} looks like an abbreviated commit; give all 40 hex digits")
    raise UsageError(f"--ref {ref!r} is not a tag, branch or other ref of {repo_url}")


def _path() -> str:
    import os

    return os.environ.get("PATH", "/usr/bin:/bin")
