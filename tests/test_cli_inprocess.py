"""The in-process SSH tier: the CLI called as `main(argv)` against real asyncssh servers on
loopback (tests/labthread.py), covering the outcomes DESIGN.md promises: reproducible (0),
mismatch (1), bad input (2, nothing written), unreachable or failed host (3)."""

from __future__ import annotations

import io
import json
import re
import textwrap
from pathlib import Path

import pytest

from repro.cli import main
from tests.labthread import LabThread

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "playbooks" / "demo.yaml"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def only_run_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def report(out: Path) -> dict:
    return json.loads((only_run_dir(out) / "report.json").read_text())


def test_reproducible_run(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab") as lab:
        code, stdout, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(DEMO), "--out", str(out)
        )
    assert code == 0, err
    data = report(out)
    assert data["schema"] == "repro-report/1"
    assert data["verdict"] == "reproducible"
    assert [h["status"] for h in data["hosts"]] == ["ok", "ok", "ok"]
    assert {a["status"] for a in data["artifacts"]} == {"identical"}
    # each artifact: one group holding all three hosts, a real sha256
    for art in data["artifacts"]:
        assert len(art["groups"]) == 1 and sorted(art["groups"][0]["hosts"]) == [
            "lab1",
            "lab2",
            "lab3",
        ]
        assert len(art["groups"][0]["sha256"]) == 64
    run_dir = only_run_dir(out)
    logs = list((run_dir / "hosts" / "lab2").glob("*.log"))
    assert logs, "each host's step logs are saved"
    # the Markdown view shows each host's row with the one hash every host agreed on
    md = (run_dir / "report.md").read_text()
    assert md.startswith("**Reproducible**")
    for host in ("lab1", "lab2", "lab3"):
        (row,) = [ln for ln in md.splitlines() if ln.startswith(f"| {host} |")]
        assert all(f"`{a['groups'][0]['sha256']}`" in row for a in data["artifacts"]), row
    assert "reproducible" in stdout.lower()
    # facts were gathered and are in the report
    assert data["hosts"][0]["facts"].get("cores", 0) >= 1


def test_mismatch_names_the_odd_host(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", host_vars={"lab3": {"prefix_map": False}}) as lab:
        code, stdout, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(DEMO), "--out", str(out)
        )
    assert code == 1, err
    data = report(out)
    assert data["verdict"] == "mismatch"
    differs = [a for a in data["artifacts"] if a["status"] == "differs"]
    assert differs
    groups = differs[0]["groups"]
    assert sorted(groups[0]["hosts"]) == ["lab1", "lab2"] and groups[1]["hosts"] == ["lab3"]
    # the terminal names lab3 as the odd one, not merely as one of the hosts
    name = re.escape(differs[0]["name"])
    assert re.search(rf"artifact {name} differs: lab1, lab2 have \w{{12}}…; lab3 has \w{{12}}…",
                     stdout), stdout  # fmt: skip


def test_unreachable_host_is_inconclusive_and_others_finish(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    lt = LabThread(tmp_path / "lab")
    with lt as lab:
        lt.stop_host("lab2")
        code, _, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(DEMO), "--out", str(out),
            "--reconnect-timeout", "2",
        )  # fmt: skip
    assert code == 3, err
    # away from the start, it was given the reconnect window too (issue 10)
    assert "[lab2] reconnecting: cannot connect to" in err, err
    # and it is told how long that lasts
    assert re.search(r"\[lab2\] reconnecting: .*; unreachable in [0-2] s if it stays away", err)
    data = report(out)
    status = {h["name"]: h["status"] for h in data["hosts"]}
    assert status == {"lab1": "ok", "lab2": "unreachable", "lab3": "ok"}
    assert data["verdict"] == "inconclusive"
    assert data["reasons"][0].startswith("host lab2 unreachable: "), data["reasons"]


def test_failing_step_is_inconclusive_and_others_finish(tmp_path: Path) -> None:
    pb = tmp_path / "fail.yaml"
    pb.write_text(
        textwrap.dedent("""\
        name: fail-on-one
        vars: {fail: "no"}
        steps:
          - name: build
            run: |
              echo building
              if [ {{ fail }} = yes ]; then echo "boom: compiler exploded" >&2; exit 7; fi
              echo same > out.txt
        artifacts:
          - glob: out.txt
        """)
    )
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab", host_vars={"lab1": {"fail": "yes"}}) as lab:
        code, _, err = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(pb), "--out", str(out)
        )
    assert code == 3, err
    data = report(out)
    hosts = {h["name"]: h for h in data["hosts"]}
    assert hosts["lab1"]["status"] == "failed"
    assert "exited 7" in hosts["lab1"]["error"] and "compiler exploded" in hosts["lab1"]["error"]
    assert hosts["lab2"]["status"] == hosts["lab3"]["status"] == "ok"
    assert data["artifacts"][0]["status"] == "identical"


@pytest.mark.parametrize(
    "argv_tail, needle",
    [
        (["-i", "{tmp}/missing.yaml"], "missing.yaml"),
        (["-i", "{tmp}/bad.yaml"], "bad.yaml"),
        (["-i", "{inv}", "-e", "novalue"], "novalue"),
        (["-i", "{inv}", "--limit", "nosuchhost"], "nosuchhost"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, argv_tail: list[str], needle: str
) -> None:
    (tmp_path / "bad.yaml").write_text("all:\n  hosts: [oops\n")
    inv = tmp_path / "inv.yaml"
    inv.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n")
    out = tmp_path / "reports"
    argv = ["run", "-p", str(DEMO), "--out", str(out)] + [
        a.format(tmp=tmp_path, inv=inv) for a in argv_tail
    ]
    code, _, err = run_cli(*argv)
    assert code == 2
    assert needle in err and err.count("\n") == 1, err
    assert not out.exists()


def test_required_variable_without_value_exits_2(tmp_path: Path) -> None:
    pb = tmp_path / "needs.yaml"
    pb.write_text(
        "name: needs\nvars: {repo_url: ~}\nsteps:\n  - {name: s, run: 'echo {{ repo_url }}'}\n"
    )
    inv = tmp_path / "inv.yaml"
    inv.write_text("all:\n  hosts:\n    h1:\n      ansible_connection: local\n")
    out = tmp_path / "reports"
    code, _, err = run_cli("run", "-i", str(inv), "-p", str(pb), "--out", str(out))
    assert code == 2 and "repo_url" in err
    assert not out.exists()


def test_report_rerenders_a_saved_run(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab") as lab:
        code, _, _ = run_cli(
            "run", "-i", str(lab.inventory_path), "-p", str(DEMO), "--out", str(out)
        )
    assert code == 0
    run_dir = only_run_dir(out)
    code, md, _ = run_cli("report", str(run_dir), "--format", "md")
    assert code == 0 and md == (run_dir / "report.md").read_text()
    code, js, _ = run_cli("report", str(run_dir), "--format", "json")
    assert code == 0 and json.loads(js)["run_id"] == run_dir.name
    code, _, err = run_cli("report", str(tmp_path / "nope"))
    assert code == 2 and "nope" in err


def test_demo_and_demo_mismatch(tmp_path: Path) -> None:
    code, stdout, err = run_cli("demo", "--out", str(tmp_path / "a"))
    assert code == 0, err
    code, stdout, err = run_cli("demo", "--vary", "build-path", "--out", str(tmp_path / "b"))
    assert code == 1, err
    assert re.search(r"artifact hello differs: lab1, lab2 have \w{12}…; lab3 has \w{12}…", stdout)


def test_local_connection_hosts_run_a_playbook_to_a_verdict(tmp_path: Path) -> None:
    """`ansible_connection: local` goes through the same launch/wait/held last reply as SSH
    hosts; the local transport cannot hold a command, so the reply runs to its end and its
    held mark must not be taken for log bytes (it was: every local host failed)."""
    pb = tmp_path / "pb.yaml"
    pb.write_text(
        "name: local\nsteps:\n  - {name: s, run: 'mkdir -p out && echo hi > out/a.txt'}\n"
        "artifacts:\n  - {glob: '*.txt', dir: out}\n"
    )
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "all:\n  hosts:\n"
        + "".join(
            f"    {h}: {{ansible_connection: local, repro_work_dir: {tmp_path / h}}}\n"
            for h in ("l1", "l2")
        )
    )
    out = tmp_path / "reports"
    code, stdout, err = run_cli("run", "-i", str(inv), "-p", str(pb), "--out", str(out))
    assert code == 0, stdout + err
    data = json.loads(next(out.glob("*/report.json")).read_text())
    assert [h["status"] for h in data["hosts"]] == ["ok", "ok"]
    # reproducible: each host's run dir is removed (what the held reply would have been told)
    for h in ("l1", "l2"):
        assert (tmp_path / h).is_dir() and not list((tmp_path / h).iterdir()), h


def test_ssh_args_known_hosts_file_checks_the_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Ansible inventory that says where its host keys are with `-o UserKnownHostsFile`
    runs against that file (no repro_known_hosts, no ~/.ssh/known_hosts); without it, the
    same hosts are refused for want of their keys."""
    import shutil

    import yaml

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh/known_hosts at all
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab") as lab:
        shutil.copy(lab.known_hosts_path, tmp_path / "fleet_known_hosts")
        data = yaml.safe_load(lab.inventory_path.read_text())
        hosts = data["all"]["children"]["lab"]["hosts"]
        for hvars in hosts.values():
            del hvars["repro_known_hosts"]
        bare = tmp_path / "bare.yaml"
        bare.write_text(yaml.safe_dump(data))
        args = "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=fleet_known_hosts"
        data["all"]["vars"] = {"ansible_ssh_common_args": args}
        inv = tmp_path / "inv.yaml"
        inv.write_text(yaml.safe_dump(data))
        code, stdout, err = run_cli("run", "-i", str(inv), "-p", str(DEMO), "--out", str(out))
        assert code == 0, stdout + err
        assert [h["status"] for h in report(out)["hosts"]] == ["ok", "ok", "ok"]
        assert "stricthostkeychecking ignored" in err
        code, stdout, err = run_cli(
            "run", "-i", str(bare), "-p", str(DEMO), "--out", str(tmp_path / "bare-out")
        )
    assert code == 3, stdout + err
    assert "no known_hosts file at" in stdout


@pytest.mark.parametrize("transport", ["asyncssh", "fabric"])
def test_a_host_name_that_does_not_exist_is_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    """A name the resolver says does not exist (a typo) makes that host unreachable at once,
    as ssh and Ansible say it, and the run goes on with the others; a resolver that cannot
    answer now ("temporary failure") is waited for, as any host away is."""
    import socket

    import yaml

    real = socket.getaddrinfo
    answers = {"typo.invalid": socket.EAI_NONAME, "flaky.invalid": socket.EAI_AGAIN}

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host in answers:  # the resolver's answer, for the names this test owns
            raise socket.gaierror(answers[str(host)], "resolver says no")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    out = tmp_path / "reports"
    with LabThread(tmp_path / "lab") as lab:
        data = yaml.safe_load(lab.inventory_path.read_text())
        hosts = data["all"]["children"]["lab"]["hosts"]
        for name in answers:
            hosts[name.split(".")[0]] = {**hosts["lab1"], "ansible_host": name}
        inv = tmp_path / "inv.yaml"
        inv.write_text(yaml.safe_dump(data))
        code, stdout, err = run_cli(
            "run", "-i", str(inv), "-p", str(DEMO), "--out", str(out), "--transport", transport,
            "--reconnect-timeout", "2",
        )  # fmt: skip
    assert code == 3, stdout + err  # inconclusive: two hosts unreachable, the rest identical
    got = {h["name"]: h for h in report(out)["hosts"]}
    assert [got[h]["status"] for h in ("lab1", "lab2", "lab3")] == ["ok"] * 3
    for name in ("typo", "flaky"):
        assert got[name]["status"] == "unreachable"
        assert f"cannot resolve host name '{name}.invalid'" in got[name]["error"], got[name]
    assert "[flaky] reconnecting: " in err, err
    assert "[typo] reconnecting" not in err, err
