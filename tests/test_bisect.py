"""repro bisect's search (repro/bisect.py) over real git history: first-parent commits from the
controller's mirror, the probe order, skips, the probe bound, and resuming from saved state."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from repro import bisect
from repro.errors import UsageError
from tests.fixtures.nightly_repo import make_nightly_repo


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, list[str]]:
    where = tmp_path / "origin"
    return where, make_nightly_repo(where)


def searcher(verdicts: dict[str, str]) -> tuple[bisect.Builder, list[str]]:
    """A builder that answers from a table and notes what it was asked (the search's input)."""
    asked: list[str] = []

    def build(commit: str) -> tuple[str, str]:
        asked.append(commit)
        return verdicts[commit], f"run-{len(asked)}"

    return build, asked


def test_first_parent_commits_from_the_controllers_mirror(
    repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    origin, c = repo
    m = bisect.mirror(str(origin), tmp_path / "cache")
    good, bad, commits = bisect.first_parent_commits(m, c[0], c[7])
    assert (good, bad) == (c[0], c[7])
    # the merge commit stands in for C2's merge; the side branch's commit is not walked
    assert len(commits) == 8 and commits[-1] == c[7] and c[1] in commits
    assert bisect.mirror(str(origin), tmp_path / "cache") == m  # cached: fetched, not cloned
    with pytest.raises(UsageError, match="not an ancestor"):
        bisect.first_parent_commits(m, c[7], c[0])
    with pytest.raises(UsageError, match="not a commit"):
        bisect.first_parent_commits(m, "f" * 40, c[0])
    with pytest.raises(UsageError, match="valid"):
        bisect.first_parent_commits(m, "HEAD~1", c[0])


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 31, 100])
@pytest.mark.parametrize("where", [0.0, 0.3, 0.99, 1.0])
def test_finds_the_first_bad_within_the_bound(n: int, where: float) -> None:
    commits = [f"{i:040x}" for i in range(1, n + 1)]
    first = min(n - 1, int(where * n))
    table = {c: ("mismatch" if i >= first else "reproducible") for i, c in enumerate(commits)}
    b = bisect.Bisection("0" * 40, commits[-1], commits)
    build, asked = searcher(table)
    bisect.bisect(b, build)
    assert b.first_bad == commits[first] and b.exit_code == 1
    assert (
        len(asked) == len(set(asked)) <= math.ceil(math.log2(n)) + 1 if n > 1 else len(asked) == 1
    )
    assert asked[0] == commits[-1]  # the bad end is checked first


def test_an_inconclusive_probe_is_skipped_and_reported() -> None:
    commits = [f"{i:040x}" for i in range(1, 8)]
    table = {c: "reproducible" for c in commits[:4]} | {c: "mismatch" for c in commits[4:]}
    table[commits[2]] = "inconclusive"
    b = bisect.Bisection("0" * 40, commits[-1], commits)
    build, asked = searcher(table)
    bisect.bisect(b, build)
    assert commits[2] in asked and b.skipped == [commits[2]]
    assert b.first_bad == commits[4] and b.exit_code == 1


def test_skips_that_hide_the_answer_name_the_suspects() -> None:
    commits = [f"{i:040x}" for i in range(1, 6)]
    table = {commits[0]: "reproducible", commits[1]: "inconclusive"}
    table |= {c: "mismatch" for c in commits[2:]}
    b = bisect.Bisection("0" * 40, commits[-1], commits)
    bisect.bisect(b, searcher(table)[0])
    assert b.first_bad is None and b.exit_code == 3
    assert b.suspects == [commits[1], commits[2]]


def test_a_reproducible_bad_end_stops_at_once() -> None:
    commits = [f"{i:040x}" for i in range(1, 6)]
    b = bisect.Bisection("0" * 40, commits[-1], commits)
    build, asked = searcher({c: "reproducible" for c in commits})
    bisect.bisect(b, build)
    assert asked == [commits[-1]] and b.bad_reproducible and b.exit_code == 0


def test_resumes_from_saved_state(tmp_path: Path) -> None:
    commits = [f"{i:040x}" for i in range(1, 17)]
    table = {c: ("mismatch" if i >= 11 else "reproducible") for i, c in enumerate(commits)}
    state = tmp_path / "bisect-x.json"
    b = bisect.Bisection("0" * 40, commits[-1], commits)
    build, asked = searcher(table)

    def stop_after_two(p: bisect.Probe, now: bisect.Bisection) -> None:
        if len(asked) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bisect.bisect(b, build, state=state, on_probe=stop_after_two)
    again = bisect.Bisection("0" * 40, commits[-1], commits)
    bisect.load_state(state, again)
    assert set(again.probes) == set(asked) and all(p.reused for p in again.probes.values())
    build2, asked2 = searcher(table)
    bisect.bisect(again, build2, state=state)
    assert not set(asked2) & set(asked)  # nothing built twice
    assert again.first_bad == commits[11]
    state.write_text("{not json")
    with pytest.raises(Exception, match="cannot resume"):
        bisect.load_state(state, bisect.Bisection("0" * 40, commits[-1], commits))


def test_bad_input_is_exit_2_and_builds_nothing(
    repo: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixtures.nightly_repo import PLAYBOOK
    from tests.test_cli_inprocess import run_cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    origin, c = repo
    inv = tmp_path / "inv.yaml"
    inv.write_text("all:\n  hosts:\n    h1: {ansible_host: 127.0.0.1}\n")
    out = tmp_path / "reports"
    base = ["bisect", "-i", str(inv), "-p", str(PLAYBOOK), "--out", str(out)]
    cases = [
        ([*base, "--good", c[0], "--bad", c[3]], "needs a repository"),
        ([*base, "-e", f"repo_url={origin}", "--good", c[5], "--bad", c[1]], "not an ancestor"),
        ([*base, "-e", f"repo_url={origin}", "--good", c[0], "--bad", "main@{1}"], "not a valid"),
        ([*base, "-e", f"repo_url={tmp_path / 'nowhere'}", "--good", c[0], "--bad", c[1]], "git"),
        ([*base, "-e", f"repo_url={origin}", "--good", c[0]], "--bad"),
    ]
    for argv, said in cases:
        code, _, err = run_cli(*argv)
        assert code == 2 and said in err, (argv, err)
        assert err.count("\n") == 1, err  # one clear line
    assert not out.exists()  # nothing was run, nothing written
