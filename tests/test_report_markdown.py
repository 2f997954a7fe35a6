"""report.md as people read it: one row per artifact when there are many, links to each host's
step logs (only paths inside the run dir), and no absolute playbook path; report.html too."""

from __future__ import annotations

from repro.compare import compare
from repro.render import render, saved
from repro.results import ArtifactHash, HostResult, RunResult, StepResult

A, B = "a" * 64, "b" * 64


def _run(artifacts: int, *, odd_host: str = "zen4") -> RunResult:
    hosts = []
    for name in ("spr", "zen4", "cloud"):
        arts = {
            f"guix-{i}.tar.gz": ArtifactHash(
                f"guix-{i}.tar.gz", B if (name == odd_host and i == 1) else A, 10
            )
            for i in range(artifacts)
        }
        steps = [StepResult(1, "build [x](y)", 0, log=f"hosts/{name}/1-build.log")]
        hosts.append(HostResult(name, "ok", arts, steps=steps))
    hosts[2].steps.append(StepResult(2, "evil", 0, log="../../etc/passwd"))
    return RunResult(
        "20260101T000000Z-abcdef", "guix", "2026-01-01T00:00:00Z", hosts=hosts,
        playbook_path="/home/someone/checkout/playbooks/guix.yaml",
    )  # fmt: skip


def test_many_artifacts_get_one_row_each_with_hosts_grouped() -> None:
    run = _run(9)
    text = render("md", run, compare(run))
    assert "sha256 |" not in text.splitlines()[6]  # the host table has no hash columns
    row = next(line for line in text.splitlines() if line.startswith("| `guix-1.tar.gz`"))
    assert f"`{A[:16]}`…: spr, cloud" in row and f"`{B[:16]}`…: zen4" in row
    assert "differs" in row
    assert sum(line.startswith("| `guix-") for line in text.splitlines()) == 9
    assert max(len(line) for line in text.splitlines()) < 200


def test_few_artifacts_keep_the_host_table() -> None:
    run = _run(2)
    text = render("md", run, compare(run))
    assert "`guix-0.tar.gz` sha256" in text and A in text


def test_log_links_and_no_absolute_playbook_path() -> None:
    run = _run(2)
    text = render("md", run, compare(run))
    assert "/home/someone" not in text and "(`guix.yaml`)" in text
    assert "- spr: [1 build \\[x\\](y)](hosts/spr/1-build.log)" in text
    assert "etc/passwd" not in text  # a path out of the run dir is never a link


def test_report_html_is_written_with_every_run() -> None:
    # report.py writes every saved format; tests/test_report.py checks the files themselves
    assert saved() == ("json", "md", "html")


def test_variables_that_differ_between_hosts_are_shown() -> None:
    run = _run(2)
    for host in run.hosts:
        host.variables = {"same": "x", "jobs": 8, "prefix_map": True, "token": "********"}
    run.hosts[1].variables["prefix_map"] = False
    run.hosts[2].variables["cc"] = "gcc-13 `rm -rf` |x|"
    text = render("md", run, compare(run))
    block = text.split("Variables that differ between hosts:", 1)[1].split("Step logs:")[0]
    assert "| `prefix_map` | `true`: spr, cloud; `false`: zen4 |" in block
    # a value the inventory set is still text in a table: no code span, no cell break
    assert "| `cc` | (not set): spr, zen4; gcc-13 \\`rm -rf\\` \\|x\\|: cloud |" in block
    assert "`same`" not in block and "`jobs`" not in block and "token" not in block
