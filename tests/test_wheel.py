"""The wheel is the product: build it from this tree, install it (not editable) into a fresh
venv, and run `repro demo` from there, in a directory that is not a checkout. Offline: the
build uses this venv's setuptools, and the dependencies come from this venv's site-packages
(on sys.path after the new venv's own, so the installed repro is the one imported)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP = (".git", ".venv", ".venv-*", "reports", "build", "dist", ".lab", "*.egg-info", "__pycache__",
        ".pytest_cache", ".mypy_cache", ".ruff_cache")  # fmt: skip


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False,
                          **kwargs)  # type: ignore[call-overload]  # fmt: skip


def test_repro_demo_runs_from_the_installed_wheel(tmp_path: Path) -> None:
    for module in ("setuptools", "wheel"):
        if run([sys.executable, "-c", f"import {module}"]).returncode != 0:
            pytest.fail(f"{module} is missing from the test venv: pip install -e '.[test]'")
    # a copy of the tree, so the build leaves nothing in the checkout
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*SKIP))
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                 "-w", str(dist), str(src)], env=env)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("repro-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"repro/playbooks/demo.yaml", "repro/playbooks/demo/hello.c",
            "repro/hostside/lib.sh", "repro/hostside/facts.sh"} <= names  # fmt: skip
    assert any(".dist-info/" in n and n.endswith("/LICENSE") for n in names)  # MIT, shipped
    for sh in (REPO / "repro" / "hostside").glob("*.sh"):
        assert f"repro/hostside/{sh.name}" in names, sh.name
    for book in (REPO / "playbooks").rglob("*"):
        if book.is_file():
            assert f"repro/playbooks/{book.relative_to(REPO / 'playbooks')}" in names, book

    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], env=env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       env=env).stdout.strip())  # fmt: skip
    # the dependencies: this venv's site-packages, after the new one's (a .pth appends it; the
    # editable install's own .pth files there are not run, so this checkout stays out)
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    inst = run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                "--no-deps", "--no-index", str(wheel)], env=env)  # fmt: skip
    assert inst.returncode == 0, inst.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([str(python), "-c", "import repro; print(repro.__file__)"], cwd=elsewhere, env=env)
    assert where.stdout.strip().startswith(str(purelib)), where.stdout + where.stderr
    demo = run([str(venv / "bin" / "repro"), "demo", "--out", str(elsewhere / "reports")],
               cwd=elsewhere, env=env)  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "REPRODUCIBLE" in demo.stdout.upper(), demo.stdout
    assert list((elsewhere / "reports").glob("*/report.json")), "no report written"
