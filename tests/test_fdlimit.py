"""The open-files limit for many hosts: raised to the hard limit when it is short, one line
when even that is not enough, untouched when there are enough. Run in a child process each, so
the test's own limit is never changed."""

from __future__ import annotations

import subprocess
import sys

from tests.procs import REPO

PROBE = """
import resource, sys
from repro import fdlimit
soft, hard = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
said = fdlimit.ensure(int(sys.argv[3]))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], said or "-")
"""


def probe(soft: int, hard: int, hosts: int) -> tuple[int, str]:
    res = subprocess.run([sys.executable, "-c", PROBE, str(soft), str(hard), str(hosts)],
                         cwd=REPO, capture_output=True, text=True, check=True)  # fmt: skip
    now, _, said = res.stdout.strip().partition(" ")
    return int(now), said


def test_a_short_soft_limit_is_raised_to_the_hard_one() -> None:
    assert probe(256, 4096, 500) == (4096, "-")


def test_enough_is_left_alone() -> None:
    assert probe(1024, 4096, 10) == (1024, "-")


def test_a_hard_limit_too_low_is_one_line() -> None:
    now, said = probe(256, 512, 500)
    assert now == 512  # raised as far as it goes
    assert said.startswith("500 hosts may need 2064 open files but the limit is 512 (hard 512)")
    assert "\\n" not in said
