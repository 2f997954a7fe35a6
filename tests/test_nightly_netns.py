"""Done-when of the nightly issue, on real OpenSSH hosts: nightly runs of `--ref main` over a
repository whose build starts to depend on the host at a known commit; `repro history
--first-bad` and `repro bisect` both name that commit, and the hosts keep only the evidence."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from repro.netlab import NetnsLab
from tests.fixtures.nightly_repo import PLAYBOOK, make_nightly_repo, set_main
from tests.test_cli_inprocess import run_cli

pytestmark = pytest.mark.netns

BAD, BROKEN = 6, 4  # C6 leaks the host name into the artifact; C4 does not build at all


@pytest.fixture
def origin() -> Iterator[Path]:
    """Outside /tmp and /root, which are private on the lab hosts."""
    where = Path(tempfile.mkdtemp(prefix="repro-nightly-", dir="/var/tmp"))
    try:
        yield where / "origin"
    finally:
        shutil.rmtree(where, ignore_errors=True)


def host_runs(lab: NetnsLab, name: str) -> list[str]:
    base = lab.host(name).home / ".cache" / "repro" / "runs"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def test_history_and_bisect_name_the_first_bad_commit(
    netlab: NetnsLab, origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "controller-cache"))
    c = make_nightly_repo(origin, n=8, bad=BAD, broken=BROKEN)
    out = tmp_path / "reports"
    inv = str(netlab.inventory_path)
    common = ["-i", inv, "-p", str(PLAYBOOK), "-e", f"repo_url={origin}", "--out", str(out)]
    expected = {2: 0, 3: 0, BROKEN: 3, BAD: 1, 8: 1}
    runs: dict[int, str] = {}
    for night, code_wanted in expected.items():  # main moved on since last night
        set_main(origin, c[night - 1])
        code, _, err = run_cli("run", *common, "--ref", "main")
        assert code == code_wanted, (night, err)
        runs[night] = err.split("run ", 1)[1].split(":", 1)[0]
    # Retention: the reproducible and the failed nights left nothing on the hosts; the
    # mismatching ones stay for `repro diff` until `repro gc`.
    for h in ("h1", "h2", "h3"):
        assert host_runs(netlab, h) == sorted([runs[BAD], runs[8]])

    code, text, err = run_cli("history", "--out", str(out), "--first-bad")
    assert code == 0, err
    assert f"last reproducible at {c[2]}" in text and f"first mismatch at {c[BAD - 1]}" in text
    code, text, _ = run_cli("history", "--out", str(out), "--format", "json", "--first-bad")
    data = json.loads(text)
    (fb,) = data["first_bad"]
    assert fb["run"]["first_bad"] == {"commit": c[BAD - 1], "run_id": runs[BAD]}
    assert [a["artifact"] for a in fb["artifacts"]] == ["app.txt"]
    verdicts = [r["verdict"] for r in data["runs"]]
    assert verdicts == ["reproducible", "reproducible", "inconclusive", "mismatch", "mismatch"]
    flip = data["runs"][3]["changes"]
    assert {"kind": "verdict", "subject": "", "before": "inconclusive", "after": "mismatch"} in flip

    # Bisect from the first good night to the newest bad one, on two hosts: those that
    # disagreed at the bad commit in the history (every host's name differs: h1 and h2).
    argv = ["bisect", *common, "--good", c[0], "--bad", c[7]]
    code, text, err = run_cli(*argv)
    assert code == 1, err + text
    assert f"building on h1 and h2, which disagreed at {c[7][:12]} (run {runs[8]})" in err
    assert f"first bad commit: {c[BAD - 1]}" in text, text
    assert f"last good commit: {c[BAD - 2]}" in text
    probes = [ln for ln in err.splitlines() if ln.startswith("bisect: probing")]
    conclusive = [ln for ln in err.splitlines() if ln.endswith(("is reproducible", "is mismatch"))]
    assert 1 <= len(conclusive) <= 4  # ceil(log2 8) + 1: the 8 first-parent commits after C1
    assert f"{c[BROKEN - 1][:12]} is inconclusive (skipped" in err  # probed, and skipped
    assert "skipped (inconclusive): " + c[BROKEN - 1][:12] in text
    # each probe is a normal run, recorded in the history, built on the two hosts only
    code, text, _ = run_cli("history", "--out", str(out), "--format", "json")
    recorded = json.loads(text)["runs"]
    assert len(recorded) == len(expected) + len(probes)
    assert all(len(r["hosts"]) == 2 for r in recorded[len(expected) :])
    # the same command again (the hosts named this time) resumes: nothing is built
    code, text, err = run_cli(*argv, "-l", "h1:h2")
    assert code == 1 and "resuming" in err and "probing" not in err
    assert f"first bad commit: {c[BAD - 1]}" in text
