"""compare(): groups per artifact, the verdict and exit code, and one reason line per cause.

Runs are built by hand so every rule in DESIGN.md's contract has a case that would catch it.
"""

from __future__ import annotations

import hashlib

from repro.compare import HashGroup, compare
from repro.results import ArtifactHash, HostResult, RunResult


def sha(data: str) -> str:
    return hashlib.sha256(data.encode()).hexdigest()


A, B, C = sha("a"), sha("b"), sha("c")


def ok(name: str, channel: str | None = None, **artifacts: str) -> HostResult:
    """An ok host; each keyword is an artifact name and the data its hash is taken of."""
    arts = {k: ArtifactHash(k, v, 100) for k, v in artifacts.items()}
    facts = {} if channel is None else {"guix_channel_commit": channel}
    return HostResult(name, "ok", arts, facts=facts)


def run_of(*hosts: HostResult, quorum: int = 2) -> RunResult:
    return RunResult("r1", "demo", "2026-05-17T21:00:00Z", hosts=list(hosts), quorum=quorum)


def test_reproducible_when_every_host_built_the_same_bytes() -> None:
    result = compare(run_of(ok("h1", hello=A), ok("h2", hello=A), ok("h3", hello=A)))
    assert (result.verdict, result.exit_code, result.reasons) == ("reproducible", 0, ())
    (hello,) = result.artifacts
    assert hello.status == "identical" and hello.missing == ()
    assert hello.groups == (HashGroup(A, 100, ("h1", "h2", "h3")),)


def test_artifacts_are_the_sorted_union_over_ok_hosts() -> None:
    result = compare(run_of(ok("h1", zeta=A, alpha=B), ok("h2", alpha=B, zeta=A)))
    assert [a.name for a in result.artifacts] == ["alpha", "zeta"]
    assert result.verdict == "reproducible"


def test_mismatch_names_who_has_which_hash() -> None:
    result = compare(run_of(ok("h1", hello=A), ok("h2", hello=A), ok("h3", hello=B)))
    assert (result.verdict, result.exit_code) == ("mismatch", 1)
    assert result.artifacts[0].status == "differs"
    assert result.reasons == (f"artifact hello differs: h1, h2 have {A[:12]}…; h3 has {B[:12]}…",)


def test_a_difference_wins_over_a_failure() -> None:
    failed = HostResult("h3", "failed", error="step build exited 2")
    result = compare(run_of(ok("h1", hello=A), ok("h2", hello=B), failed))
    assert (result.verdict, result.exit_code) == ("mismatch", 1)
    assert result.reasons[0] == "host h3 failed: step build exited 2"
    assert result.reasons[1].startswith("artifact hello differs: h1 has")


def test_a_failure_alone_is_inconclusive() -> None:
    failed = HostResult("h3", "failed", error="step build exited 2")
    result = compare(run_of(ok("h1", hello=A), ok("h2", hello=A), failed))
    assert (result.verdict, result.exit_code) == ("inconclusive", 3)
    assert result.reasons == ("host h3 failed: step build exited 2",)
    assert result.artifacts[0].status == "identical"  # the failed host is not counted as missing


def test_an_unreachable_host_is_inconclusive() -> None:
    down = HostResult("h3", "unreachable", error="connection refused")
    result = compare(run_of(ok("h1", hello=A), ok("h2", hello=A), down))
    assert result.verdict == "inconclusive"
    assert result.reasons == ("host h3 unreachable: connection refused",)


def test_a_failed_host_without_an_error_still_gets_a_reason() -> None:
    result = compare(run_of(ok("h1", hello=A), ok("h2", hello=A), HostResult("h3", "failed")))
    assert result.reasons == ("host h3 failed",)


def test_hashes_from_failed_hosts_are_not_votes() -> None:
    failed = HostResult("h3", "failed", {"hello": ArtifactHash("hello", B, 100)})
    result = compare(run_of(ok("h1", hello=A), ok("h2", hello=A), failed))
    assert result.verdict == "inconclusive"
    assert result.artifacts[0].groups == (HashGroup(A, 100, ("h1", "h2")),)


def test_an_artifact_some_ok_hosts_lack_is_incomplete() -> None:
    result = compare(run_of(ok("h1", hello=A, extra=C), ok("h2", hello=A), ok("h3", hello=A)))
    extra = result.artifacts[0]
    assert (extra.name, extra.status, extra.missing) == ("extra", "incomplete", ("h2", "h3"))
    assert result.verdict == "inconclusive"
    assert "artifact extra is missing on h2, h3" in result.reasons
    assert "only 1 host produced extra; the playbook asks for 2" in result.reasons


def test_differs_even_when_some_hosts_lack_the_artifact() -> None:
    result = compare(run_of(ok("h1", hello=A), ok("h2", hello=B), ok("h3")))
    hello = result.artifacts[0]
    assert (hello.status, hello.missing) == ("differs", ("h3",))
    assert result.verdict == "mismatch"
    assert result.reasons == (
        f"artifact hello differs: h1 has {A[:12]}…; h2 has {B[:12]}…; h3 lacks it",
    )


def test_quorum_not_met() -> None:
    result = compare(run_of(ok("h1", hello=A), ok("h2", hello=A), quorum=3))
    assert result.verdict == "inconclusive"
    assert result.reasons == ("only 2 hosts produced hello; the playbook asks for 3",)


def test_a_quorum_of_one_accepts_a_single_host() -> None:
    assert compare(run_of(ok("h1", hello=A), quorum=1)).verdict == "reproducible"
    single = compare(run_of(ok("h1", hello=A)))
    assert single.verdict == "inconclusive"
    assert single.reasons == ("only 1 host produced hello; the playbook asks for 2",)


def test_no_artifacts_is_inconclusive() -> None:
    result = compare(run_of(ok("h1"), ok("h2")))
    assert (result.verdict, result.artifacts) == ("inconclusive", ())
    assert result.reasons == ("no artifacts: no host produced any",)


def test_no_host_finished() -> None:
    down = [HostResult(f"h{i}", "unreachable", error="no route to host") for i in (1, 2)]
    result = compare(run_of(*down))
    assert result.verdict == "inconclusive"
    assert result.reasons == (
        "host h1 unreachable: no route to host",
        "host h2 unreachable: no route to host",
        "no artifacts: no host finished ok",
    )


def test_no_hosts_at_all_is_inconclusive() -> None:
    assert compare(run_of()).verdict == "inconclusive"


def test_channel_commit_disagreement_makes_identical_bytes_inconclusive() -> None:
    c1, c2 = "1" * 40, "2" * 40
    hosts = ok("h1", c1, hello=A), ok("h2", c2, hello=A), ok("h3", c1, hello=A)
    result = compare(run_of(*hosts))
    assert (result.verdict, result.exit_code) == ("inconclusive", 3)
    assert result.reasons == (
        f"hosts disagree on the Guix channel commit: h1, h3 have {c1[:12]}…; h2 has {c2[:12]}…",
    )


def test_channel_commit_disagreement_is_inconclusive_whatever_the_hashes_say() -> None:
    # Different pinned toolchains: a difference in bytes is not evidence against the build.
    result = compare(run_of(ok("h1", "1" * 40, hello=A), ok("h2", "2" * 40, hello=B)))
    assert (result.verdict, result.exit_code) == ("inconclusive", 3)
    assert result.artifacts[0].status == "differs"
    assert result.reasons[-1].startswith("hosts disagree on the Guix channel commit")


def test_an_agreed_channel_commit_is_fine() -> None:
    result = compare(run_of(ok("h1", "1" * 40, hello=A), ok("h2", "1" * 40, hello=A)))
    assert result.verdict == "reproducible"


def test_groups_largest_first_then_by_first_host_in_run_order() -> None:
    hosts = [ok("h1", x=A), ok("h2", x=B), ok("h3", x=B), ok("h4", x=C), ok("h5", x=A)]
    result = compare(run_of(*hosts))
    # A and B both have two hosts; A's first host (h1) runs before B's (h2).
    assert [g.hosts for g in result.artifacts[0].groups] == [("h1", "h5"), ("h2", "h3"), ("h4",)]
    later_majority = compare(run_of(ok("h1", x=A), ok("h2", x=B), ok("h3", x=B)))
    assert [g.sha256 for g in later_majority.artifacts[0].groups] == [B, A]


def test_same_hash_different_size_is_a_difference() -> None:
    h2 = HostResult("h2", "ok", {"x": ArtifactHash("x", A, 101)})
    result = compare(run_of(ok("h1", x=A), h2))
    assert result.verdict == "mismatch"
    assert [(g.size, g.hosts) for g in result.artifacts[0].groups] == [
        (100, ("h1",)),
        (101, ("h2",)),
    ]


def with_rounds(host: HostResult, *rounds: dict[str, str]) -> HostResult:
    host.extra_rounds = [{k: ArtifactHash(k, v, 100) for k, v in r.items()} for r in rounds]
    return host


def test_rounds_that_agree_keep_the_run_reproducible() -> None:
    result = compare(
        run_of(
            with_rounds(ok("h1", hello=A), {"hello": A}),
            with_rounds(ok("h2", hello=A), {"hello": A}),
        )
    )
    assert result.verdict == "reproducible" and result.artifacts[0].unstable == ()


def test_a_host_whose_rounds_disagree_is_not_deterministic_there() -> None:
    # Same bytes across hosts in round 1, but h2's second build differs: that is a mismatch
    # on one machine, told apart from a difference between machines.
    result = compare(
        run_of(
            with_rounds(ok("h1", hello=A), {"hello": A}),
            with_rounds(ok("h2", hello=A), {"hello": B}),
        )
    )
    (hello,) = result.artifacts
    assert (result.verdict, hello.status, hello.unstable) == ("mismatch", "differs", ("h2",))
    assert len(hello.groups) == 1
    assert result.reasons == (
        f"artifact hello is not deterministic on one machine: h2 (round 1 has {A[:12]}…, round 2 has {B[:12]}…)",
    )


def test_an_artifact_missing_from_a_later_round_is_unstable() -> None:
    result = compare(
        run_of(with_rounds(ok("h1", hello=A), {}), with_rounds(ok("h2", hello=A), {"hello": A}))
    )
    assert result.artifacts[0].unstable == ("h1",)
    assert "round 2 lacks it" in result.reasons[0]
