"""A build cannot forge its host's result, nor outlive its round, nor be handed a work dir
another local user controls; a full disk is called what it is. On real OpenSSH hosts
(issue 10: "Results a build can forge", "Shared work dirs", the host disk-full fault).

Each test fails on the tree before the fix: the staged scripts were re-read from files a step
could rewrite, `.start` was spliced into the reply, leftovers were only TERMed as a process
group, the work dir was taken as found, and a full disk read "stopped without an exit status".
"""

from __future__ import annotations

import hashlib
import os
import stat
import textwrap
from pathlib import Path

import pytest

from repro.netlab import NetnsLab
from tests.procs import controller, finish, marked, wait_for
from tests.test_cli_inprocess import only_run_dir, report, run_cli
from tests.test_hardening_netns import inventory_with

pytestmark = pytest.mark.netns


def playbook(tmp: Path, text: str, name: str = "book.yaml") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return path


def host_run_dir(lab: NetnsLab, out: Path, name: str = "h1") -> Path:
    return lab.host(name).home / ".cache" / "repro" / "runs" / only_run_dir(out).name


def run(lab: NetnsLab, book: Path, out: Path, *extra: str) -> tuple[int, str]:
    code, _, err = run_cli("run", "--keep-work", "-i", str(lab.inventory_path), "-p", str(book),
                           "--out", str(out), *extra)  # fmt: skip
    return code, err


# --- scripts and state a step can write --------------------------------------------------------


FORGER = """\
    name: forger
    steps:
      - name: build
        run: |
          echo genuine > out.txt
          # the steps after this one and the hashing, rewritten to pass and to lie
          printf 'exit 0\\n' > ../steps/1-02.sh
          printf 'echo %064d 7 out.txt\\n' 0 > ../steps/1-hash.sh
"""


def test_a_step_cannot_rewrite_the_hashing_or_a_later_step(netlab: NetnsLab, tmp_path: Path) -> None:
    guard = '      - name: guard\n        run: echo "the guard fails, as it should"; exit 1\n'
    book = playbook(tmp_path, FORGER + guard + "    artifacts: [{glob: out.txt}]\n")
    out = tmp_path / "reports"
    code, err = run(netlab, book, out)
    data = report(out)
    assert code != 0 and data["verdict"] != "reproducible", err
    for host in data["hosts"]:
        assert host["status"] == "failed", host
        assert "'guard' exited 1" in host["error"], host["error"]


def test_the_hashing_is_the_hosts_own(netlab: NetnsLab, tmp_path: Path) -> None:
    book = playbook(tmp_path, FORGER + "    artifacts: [{glob: out.txt}]\n")
    out = tmp_path / "reports"
    code, err = run(netlab, book, out, "--limit", "h1")
    assert code in (0, 3), err  # one host: inconclusive at best, but never forged
    (host,) = report(out)["hosts"]
    assert host["status"] == "ok", host
    want = hashlib.sha256(b"genuine\n").hexdigest()
    assert host["artifacts"]["out.txt"]["sha256"] == want


def test_a_step_cannot_set_its_own_exit_status(netlab: NetnsLab, tmp_path: Path) -> None:
    book = playbook(tmp_path, """\
        name: liar
        steps:
          - name: build
            run: |
              echo "1 rc=0 alive=0" > ../steps/1-01.start
              echo 0 > ../steps/1-01.rc
              exit 3
        artifacts: [{glob: out.txt}]
        """)
    out = tmp_path / "reports"
    run(netlab, book, out, "--limit", "h1")
    (host,) = report(out)["hosts"]
    assert host["status"] == "failed" and "'build' exited 3" in host["error"], host
    assert host["steps"][0]["exit_status"] == 3


# --- what a round started ends with it ---------------------------------------------------------


def test_what_a_step_leaves_behind_is_gone_before_the_hashing(
    netlab: NetnsLab, tmp_path: Path
) -> None:
    # In a session of its own (setsid), ignoring SIGTERM, it waits for the hashing to start
    # and then rewrites the artifact, again and again.
    book = playbook(tmp_path, """\
        name: leftovers
        steps:
          - name: build
            run: |
              echo genuine > out.txt
              setsid sh -c 'trap "" TERM; : repro-forge-marker
                while [ ! -e ../steps/1-hash.lock ]; do sleep 0.05; done
                while :; do echo forged > out.txt; sleep 0.01; done' > /dev/null 2>&1 &
              setsid sh -c 'trap "" TERM; exec sleep 4711' > /dev/null 2>&1 &
        artifacts: [{glob: out.txt}]
        """)
    out = tmp_path / "reports"
    code, err = run(netlab, book, out, "--limit", "h1")
    (host,) = report(out)["hosts"]
    assert host["status"] == "ok", err
    assert host["artifacts"]["out.txt"]["sha256"] == hashlib.sha256(b"genuine\n").hexdigest()
    assert marked(netlab, "h1", "repro-forge-marker") == []
    assert marked(netlab, "h1", "sleep 4711") == []
    work = host_run_dir(netlab, out) / "work"
    assert (work / "out.txt").read_text() == "genuine\n", "changed after it was hashed"


def test_repro_cancel_finds_what_left_the_process_group(netlab: NetnsLab, tmp_path: Path) -> None:
    book = playbook(tmp_path, """\
        name: escape
        steps:
          - name: build
            run: |
              setsid sh -c 'trap "" TERM; exec sleep 4712' > /dev/null 2>&1 &
              sleep 300
        artifacts: [{glob: out.txt}]
        """)
    out = tmp_path / "reports"
    proc = controller("run", "--keep-work", "-i", str(netlab.inventory_path), "-p", str(book),
                      "--limit", "h1", "--out", str(out))  # fmt: skip
    wait_for(lambda: bool(marked(netlab, "h1", "sleep 4712")), "the escaped child", proc)
    run_id = only_run_dir(out).name
    code, stdout, err = run_cli("cancel", run_id, "--out", str(out))
    assert code == 0, err
    assert "nothing running" not in stdout, stdout
    finish(proc, timeout=60)
    assert marked(netlab, "h1", "sleep 4712") == []
    assert marked(netlab, "h1", "sleep 300") == []


# --- shared work dirs ---------------------------------------------------------------------------


SIMPLE = """\
    name: simple
    steps:
      - name: build
        run: echo built > out.txt
    artifacts: [{glob: out.txt}]
    """


def test_a_work_dir_another_user_can_change_is_refused(netlab: NetnsLab, tmp_path: Path) -> None:
    # another local user made the shared work dir first, writable by all (like /var/tmp/repro)
    shared = netlab.host("h1").tmp / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    os.chown(shared, 65534, 65534)
    inv = inventory_with(netlab, tmp_path / "inv.yaml", {"h1": {"repro_work_dir": "/tmp/shared"}})
    out = tmp_path / "reports"
    code, _, err = run_cli("run", "--keep-work", "-i", str(inv), "-p", str(playbook(tmp_path, SIMPLE)),
                           "--limit", "h1", "--out", str(out))  # fmt: skip
    assert code != 0, err
    (host,) = report(out)["hosts"]
    assert host["status"] == "failed", host
    assert "refusing /tmp/shared: it belongs to another user (uid 65534)" in host["error"], host
    assert not list(shared.glob("*/steps/*.sh")), "a step script was staged there"

    # the user's own, but writable by the group (no sticky bit): refused too
    os.chown(shared, 0, 0)
    shared.chmod(0o775)
    out2 = tmp_path / "reports2"
    run_cli("run", "--keep-work", "-i", str(inv), "-p", str(playbook(tmp_path, SIMPLE)), "--limit", "h1",
            "--out", str(out2))  # fmt: skip
    (host,) = report(out2)["hosts"]
    assert "refusing /tmp/shared: others may write to it (mode 775" in (host["error"] or ""), host

    # sticky like /tmp, and the user's: taken, and what repro makes there is the user's alone
    shared.chmod(0o1777)
    out3 = tmp_path / "reports3"
    code, _, err = run_cli("run", "--keep-work", "-i", str(inv), "-p", str(playbook(tmp_path, SIMPLE)),
                           "--limit", "h1", "--out", str(out3))  # fmt: skip
    (host,) = report(out3)["hosts"]
    assert host["status"] == "ok", err
    run_dir = shared / only_run_dir(out3).name
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    scripts = list((run_dir / "steps").glob("*.sh"))
    assert scripts and all(stat.S_IMODE(s.stat().st_mode) == 0o600 for s in scripts)


# --- a full disk ---------------------------------------------------------------------------------


def test_a_full_disk_is_called_so(netlab: NetnsLab, tmp_path: Path) -> None:
    # a 1 MiB filesystem for h1's runs, in h1's own mount namespace
    (netlab.host("h1").home / "small").mkdir()
    mounted = netlab.exec("h1", ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/root/small"])
    assert mounted.returncode == 0, mounted.stderr
    inv = inventory_with(netlab, tmp_path / "inv.yaml",
                         {"h1": {"repro_work_dir": "/root/small/runs"}})  # fmt: skip
    book = playbook(tmp_path, """\
        name: filler
        steps:
          - name: fill
            run: head -c 4194304 /dev/zero > big
        artifacts: [{glob: big}]
        """)
    out = tmp_path / "reports"
    code, _, err = run_cli("run", "--keep-work", "-i", str(inv), "-p", str(book), "--limit", "h1",
                           "--out", str(out))  # fmt: skip
    (host,) = report(out)["hosts"]
    assert host["status"] == "failed", err
    run_id = only_run_dir(out).name
    assert host["steps"][0]["exit_status"] not in (None, 0), host
    assert f"no space left on device in /root/small/runs/{run_id}" in host["error"], host
