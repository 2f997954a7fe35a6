"""The host-side scripts end to end under each POSIX sh a host may have as /bin/sh: dash
(Debian, Ubuntu), bash (Fedora, Arch, Guix System) and busybox (Alpine, embedded), each
bind-mounted over /bin/sh in real OpenSSH lab hosts, running a real playbook: facts, upload,
a log longer than one reply, a step that outlives the launch's wait, globs and a manifest,
then a step killed at its timeout."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from repro.netlab import NetnsLab
from tests.procs import marked
from tests.test_cli_inprocess import only_run_dir, report, run_cli

pytestmark = pytest.mark.netns

SHELLS = {"dash": "dash", "bash": "bash", "busybox": "busybox"}
LINES = 4000  # ~400 KB of log: more than one reply's LOG_CHUNK (256 KiB)

PLAYBOOK = """\
name: shells
files:
  - src: input.txt
    dest: in/input.txt
steps:
  - name: files
    run: |
      mkdir -p out sums
      cp in/input.txt out/a.txt
      printf 'x y\\n' > 'out/b c.txt'
  - name: chatty
    run: |
      i=0
      while [ $i -lt {lines} ]; do
        echo "line $i of a log longer than one reply .........................................."
        i=$((i + 1))
      done
  - name: slow
    run: sleep 2; echo slept
  - name: manifest
    run: cd out && sha256sum a.txt 'b c.txt' > ../sums/SHA256SUMS
  - name: which-sh
    run: cp /bin/sh out/sh.bin
artifacts:
  - glob: "*"
    dir: out
manifests:
  - glob: sums/SHA256SUMS
    base: ../out
"""

TIMEOUT_PLAYBOOK = """\
name: shells-timeout
steps:
  - name: stuck
    run: echo started; sleep 4242 & sleep 4243; echo never
    timeout: 2
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_a_playbook_runs_with_this_shell_as_bin_sh(
    netlab_factory: Callable[..., NetnsLab], tmp_path: Path, shell: str
) -> None:
    binary = shutil.which(SHELLS[shell])
    if binary is None:
        pytest.fail(f"{shell} is not installed (scripts/sysdeps.sh installs it)")
    binary = os.path.realpath(binary)
    lab = netlab_factory(2, shells={"h1": binary, "h2": binary})
    book = tmp_path / "book" / "shells.yaml"
    book.parent.mkdir()
    book.write_text(PLAYBOOK.replace("{lines}", str(LINES)))
    (book.parent / "input.txt").write_text("shipped with the playbook\n")

    out = tmp_path / "reports"
    code, _, err = run_cli("run", "-i", str(lab.inventory_path), "-p", str(book), "--out", str(out))
    assert code == 0, err
    data = report(out)
    assert [h["status"] for h in data["hosts"]] == ["ok", "ok"], err
    for host in data["hosts"]:
        assert host["facts"]["hostname"] == host["name"]  # the facts script ran to its end
        assert host["facts"]["cores"] and host["facts"]["work_dir"]
        arts = host["artifacts"]
        # /bin/sh on the host was this shell, so every step and script ran under it
        assert arts["sh.bin"]["sha256"] == sha256(Path(binary))
        assert arts["a.txt"]["sha256"] == hashlib.sha256(b"shipped with the playbook\n").hexdigest()
        assert arts["b c.txt"]["sha256"] == hashlib.sha256(b"x y\n").hexdigest()
        assert set(arts) == {"a.txt", "b c.txt", "sh.bin"}
        chatty = next(s for s in host["steps"] if s["name"] == "chatty")
        log = (only_run_dir(out) / chatty["log"]).read_text()
        assert log.count("\n") == LINES and log.startswith("line 0 ") and "line 3999 " in log
        slow = next(s for s in host["steps"] if s["name"] == "slow")
        assert (only_run_dir(out) / slow["log"]).read_text() == "slept\n"
    assert data["verdict"] == "reproducible"

    # the kill scripts too: a step past its timeout is killed, with what it left behind
    book.write_text(TIMEOUT_PLAYBOOK)
    out2 = tmp_path / "reports2"
    code, _, err = run_cli("run", "-i", str(lab.inventory_path), "-p", str(book), "--out", str(out2),
                           "--limit", "h1")  # fmt: skip
    data = report(out2)
    (host,) = data["hosts"]
    assert code != 0 and host["status"] == "failed", err
    assert "timed out" in host["error"], host["error"]
    # the host's own processes only: the lab shares this machine's pid namespace
    assert marked(lab, "h1", "sleep 424") == []
