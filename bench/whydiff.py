"""Why-it-differs benchmark: from a mismatch to its explanation for a large artifact on 3 hosts.

Run as root on a quiet machine: `python3 bench/whydiff.py [--size 100M] [--repeat 3]`.
Hosts are a NetnsLab (real OpenSSH in network namespaces on this machine). It measures, for the
two copies a 2-group mismatch needs:
  scp       the same two files with OpenSSH's scp, in parallel (the floor for fetching)
  fetch     repro's fetch alone (repro.fetch: stream, re-hash, write), in-process
  diffo     diffoscope alone on the fetched copies, with the options repro passes
  explain   `repro diff RUN_DIR`: fetch + diffoscope + report, end to end, and its peak RSS
Goals (issue 12): fetch <= 1.5x scp; explain <= 1.2x (fetch + diffo); RSS far below the
artifact size (the copies are streamed to disk).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # repro, when run from a checkout without installing

from repro import diffoscope  # noqa: E402
from repro.fetch import FetchOptions, fetch_all, plan  # noqa: E402
from repro.inventory import load_inventory  # noqa: E402
from repro.netlab import NetnsLab  # noqa: E402
from repro.playbook import load_playbook, parse_size  # noqa: E402
from repro.report import load_report  # noqa: E402
from repro.transport import make_transport  # noqa: E402

# One tarball: SIZE bytes of seeded pseudo-random data (the same on every host) and a small
# stamp file that differs on h3 (an inventory variable), so diffoscope has one member to find.
PLAYBOOK = """
name: whydiff-bench
description: A large tarball that differs in one small member on one host.
vars: {stamp: same, size: 1000}
quorum: 2
steps:
  - name: make
    timeout: 30m
    run: |
      mkdir -p pkg out
      python3 -c 'import random, sys; n = int(sys.argv[1]); r = random.Random(1)
      out = sys.stdout.buffer
      while n > 0:
          k = min(n, 1 << 22); out.write(r.randbytes(k)); n -= k' {{ size }} > pkg/big.bin
      echo {{ stamp }} > pkg/stamp.txt
      tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \\
        -C pkg -cf out/big.tar big.bin stamp.txt
artifacts:
  - {glob: big.tar, dir: out}
"""


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """Wall seconds, exit status and peak RSS (KiB) of one child process: wait4's rusage is
    that child's own (with any descendants it waited for), not every child's so far."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - start, proc.returncode, usage.ru_maxrss


def fetch_only(run_dir: Path, dest: Path, inventory: Path, playbook: Path) -> int:
    """The fetch alone, as its own process (so its peak RSS is the controller's alone)."""
    run, comparison = load_report(run_dir)
    copies = asyncio.run(fetch_all(
        run, plan(run, comparison), playbook=load_playbook(playbook),
        hosts=load_inventory(inventory).hosts, run_dir=dest, transport_factory=make_transport,
        options=FetchOptions(max_bytes=1 << 40),
    ))  # fmt: skip
    return 0 if all(c.status == "ok" for c in copies) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="100M", help="artifact size (default 100M)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default="/var/tmp", help="where the lab and reports go")
    ap.add_argument("--fetch-only", nargs=4, metavar=("RUN_DIR", "DEST", "INVENTORY", "PLAYBOOK"),
                    help=argparse.SUPPRESS)  # fmt: skip
    args = ap.parse_args()
    if args.fetch_only:
        return fetch_only(*(Path(a) for a in args.fetch_only))
    size = parse_size(args.size)
    base = Path(tempfile.mkdtemp(prefix="repro-whydiff-bench-", dir=args.work))
    try:
        with NetnsLab(base / "lab", 3, prefix="rwhy", ready_timeout=120.0) as lab:
            return bench(lab, base, size, args.repeat)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bench(lab: NetnsLab, base: Path, size: int, repeat: int) -> int:
    pb = base / "whydiff.yaml"
    pb.write_text(PLAYBOOK)
    inv = yaml.safe_load(lab.inventory_path.read_text())
    for group in inv["all"]["children"].values():
        for name, values in group["hosts"].items():
            values.update({"size": size, "stamp": "other" if name == "h3" else "same"})
    inventory = base / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(inv))
    out = base / "reports"
    repro = [sys.executable, "-m", "repro.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [*repro, "run", "-i", str(inventory), "-p", str(pb), "--out", str(out), "--no-why"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 1:
        print(f"expected a mismatch (exit 1), got {done.returncode}:\n{done.stderr[-2000:]}")
        return 2
    run_dir = next(out.iterdir())
    run, comparison = load_report(run_dir)
    wanted = plan(run, comparison)
    hosts = load_inventory(inventory).hosts
    paths = {h.name: h.paths for h in run.hosts}
    samples: dict[str, list[float]] = {"scp": [], "fetch": [], "diffo": [], "explain": []}
    rss: dict[str, list[int]] = {"fetch": [], "explain": []}
    for _ in range(repeat):
        # scp: the same two files, in parallel, as a person would fetch them
        scp_dir = base / "scp"
        shutil.rmtree(scp_dir, ignore_errors=True)
        scp_dir.mkdir()
        start = time.monotonic()
        procs = [subprocess.Popen(
            ["scp", "-q", "-i", str(hosts[w.host].key_file), "-o",
             f"UserKnownHostsFile={hosts[w.host].known_hosts}", "-o", "StrictHostKeyChecking=yes",
             f"root@{hosts[w.host].address}:{paths[w.host][w.artifact]}", str(scp_dir / w.host)])
            for w in wanted]  # fmt: skip
        if any(p.wait() for p in procs):
            print("scp failed")
            return 2
        samples["scp"].append(time.monotonic() - start)
        # fetch alone, in its own process
        fetch_dir = base / "fetch"
        shutil.rmtree(fetch_dir, ignore_errors=True)
        wall, code, peak = timed([sys.executable, __file__, "--fetch-only", str(run_dir),
                                  str(fetch_dir), str(inventory), str(pb)], env)  # fmt: skip
        if code != 0:
            print("fetch failed")
            return 2
        samples["fetch"].append(wall)
        rss["fetch"].append(peak)
        copies = sorted(fetch_dir.glob("diff/*/*"))
        # diffoscope alone, with repro's options
        left, right = copies[:2]
        js = base / "d.json"
        wall, _, _ = timed(["diffoscope", "--no-progress", "--text", str(base / "d.txt"), "--html",
                         str(base / "d.html"), "--json", str(js), "--max-report-size",
                         str(diffoscope.MAX_REPORT), str(left), str(right)])  # fmt: skip
        samples["diffo"].append(wall)
        # the whole explanation, end to end (peak RSS: repro's, or a diffoscope tool's)
        shutil.rmtree(run_dir / "diff", ignore_errors=True)
        wall, code, peak = timed([*repro, "diff", str(run_dir)], env)
        if code != 1:
            print(f"repro diff exited {code}")
            return 2
        samples["explain"].append(wall)
        rss["explain"].append(peak)
    med = {k: statistics.median(v) for k, v in samples.items()}
    result = {
        "size_bytes": size,
        "hosts": 3,
        "copies": len(wanted),
        "median_seconds": {k: round(v, 3) for k, v in med.items()},
        "fetch_over_scp": round(med["fetch"] / med["scp"], 2),
        "explain_over_fetch_plus_diffoscope": round(med["explain"] / (med["fetch"] + med["diffo"]), 2),
        "fetch_peak_rss_kib": max(rss["fetch"]),
        "explain_peak_rss_kib": max(rss["explain"]),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
