"""Why it differs, on real OpenSSH hosts in network namespaces: the same three stories as the
in-process tier (a leaked build path, rounds that disagree, a .deb) over asyncssh and fabric."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from repro.netlab import NetnsLab
from tests.test_cli_inprocess import DEMO, only_run_dir, report, run_cli
from tests.test_whydiff_inprocess import (
    DEBPKG,
    ROUNDS,
    artifact,
    check_copies,
    member_text,
    needs_diffoscope,
)

pytestmark = [pytest.mark.netns, needs_diffoscope]

Factory = Callable[..., NetnsLab]


def inventory_with(lab: NetnsLab, tmp: Path, host_vars: dict[str, dict[str, Any]]) -> Path:
    """The lab's inventory with extra variables on some hosts (how a user configures one)."""
    doc = yaml.safe_load(lab.inventory_path.read_text())
    for group in doc["all"]["children"].values():
        for name, values in host_vars.items():
            if name in group["hosts"]:
                group["hosts"][name].update(values)
    path = tmp / "inventory.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_varied_build_paths_on_identical_hosts_show_the_leak_over_fabric(
    netlab_factory: Factory, tmp_path: Path
) -> None:
    # Every host has the same HOME: without --vary the leak would go unseen (same path).
    lab = netlab_factory(3)
    out = tmp_path / "reports"
    code, stdout, err = run_cli(
        "run", "-i", str(lab.inventory_path), "-p", str(DEMO), "--out", str(out),
        "-e", "prefix_map=false", "--vary", "build-path", "--transport", "fabric",
    )  # fmt: skip
    assert code == 1, err
    data = report(out)
    art = artifact(data, "hello")
    assert [g["hosts"] for g in art["groups"]] == [["h1"], ["h2"], ["h3"]]
    att = art["attribution"]
    assert att["wording"] == "differs by", att
    [factor] = att["factors"]
    assert (factor["kind"], factor["name"]) == ("axis", "build-path")
    assert factor["values"] == [["h1", "b1"], ["h2", "b2"], ["h3", "b3"]]
    check_copies(only_run_dir(out), art)
    assert [p["status"] for p in art["why"]["pairs"]] == ["differ", "differ"]
    assert "/root/.cache/repro/runs/b3/" in member_text(art)


def test_rounds_that_disagree_name_the_umask_over_openssh(
    netlab_factory: Factory, tmp_path: Path
) -> None:
    lab = netlab_factory(1)
    out = tmp_path / "reports"
    code, _, err = run_cli(
        "run", "-i", str(lab.inventory_path), "-p", str(ROUNDS), "--out", str(out),
        "--vary", "umask",
    )  # fmt: skip
    assert code == 1, err
    art = artifact(report(out), "data.tar.gz")
    assert art["unstable"] == ["h1"]
    [factor] = art["attribution"]["factors"]
    assert (factor["name"], factor["values"]) == ("umask", [["round 1", "0022"], ["round 2", "0002"]])
    check_copies(only_run_dir(out), art)
    assert "-rw-rw-r--" in member_text(art)


def test_debian_package_names_the_member_and_the_variable_over_openssh(
    netlab_factory: Factory, tmp_path: Path
) -> None:
    lab = netlab_factory(3)
    inventory = inventory_with(lab, tmp_path, {"h3": {"sde": 1700000500}})
    out = tmp_path / "reports"
    code, _, err = run_cli("run", "-i", str(inventory), "-p", str(DEBPKG), "--out", str(out))
    assert code == 1, err
    art = artifact(report(out), "hello-repro_1.0_amd64.deb")
    assert art["attribution"]["wording"] == "differs by"
    [factor] = art["attribution"]["factors"]
    assert (factor["kind"], factor["name"]) == ("variable", "sde")
    check_copies(only_run_dir(out), art)
    assert "data.tar.xz / data.tar / file list" in member_text(art)
    hosts = {h["name"]: h for h in report(out)["hosts"]}
    assert hosts["h3"]["paths"]["hello-repro_1.0_amd64.deb"] == (
        f"/root/.cache/repro/runs/{report(out)['run_id']}/work/hello-repro_1.0_amd64.deb"
    )
