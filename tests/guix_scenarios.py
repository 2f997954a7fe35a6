"""The cuprated-guix scenarios of the mission, shared by the in-process and the OpenSSH tiers.

Each host gets the guix TEST DOUBLE (tests/guix_double) where a `guix pull` would put Guix,
`~/.config/guix/current/bin/guix`, and its knobs in `~/.guix-double.env`; the source is the
fixture repository from tests/fixtures/guix_repos.py. Everything else is the real playbook, the
real runner and real SSH.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.fixtures.guix_repos import DOUBLE_BIN, make_cuprate_repo, write_knob_file

REPO = Path(__file__).resolve().parent.parent
CUPRATED = REPO / "playbooks" / "cuprated-guix.yaml"
SMOKE = REPO / "playbooks" / "smoke.yaml"
ARTIFACT = "cuprated-0.0.9-x86_64-unknown-linux-gnu.tar.gz"


def install_double(home: Path, **knobs: str) -> None:
    """Put the guix double on a host as `guix pull` would, with its knobs for this host."""
    current = home / ".config" / "guix" / "current"
    # A copy, not a link: the checkout may live under /tmp (CI clones anywhere), and a
    # netns lab host has a private /tmp where a link into the checkout would dangle. The
    # package table travels with it (share/guix-double/packages.tsv, beside bin/).
    for rel in ("bin/guix", "share/guix-double/packages.tsv"):
        target = current / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        shutil.copy2(DOUBLE_BIN.parent / rel, target)
    write_knob_file(home, **knobs)


def fixture_repo(where: Path) -> tuple[Path, str]:
    """The fixture Cuprate repository (a real git repo) and its commit."""
    return make_cuprate_repo(where)


def run_args(
    inventory: Path, repo: Path, out: Path, *extra: str, playbook: Path = CUPRATED
) -> list[str]:
    # Tag-free fixture: --ref names the branch; the controller resolves it to the commit.
    return [
        "run",
        "-i",
        str(inventory),
        "-p",
        str(playbook),
        "-e",
        f"repo_url={repo}",
        "--ref",
        "main",
        "--out",
        str(out),
        *extra,
    ]
