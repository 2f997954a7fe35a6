"""The nightly commands' arguments: `history`, `bisect`, `gc`, and the retention options of
`run`/`demo`. argparse only, like repro/cli.py; the handlers are in repro/commands_nightly.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_retention_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep",
        type=int,
        metavar="N",
        help="after the run, keep only the newest N run dirs on each host (repro_keep_runs)",
    )
    p.add_argument(
        "--keep-failed",
        action="store_true",
        help="keep a failed run's work dirs on the hosts (repro_keep_failed)",
    )
    p.add_argument(
        "--keep-work",
        action="store_true",
        help="keep this run's work dirs on the hosts whatever its verdict (repro_keep_work)",
    )
    add_history_option(p)


def add_history_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--history",
        metavar="PATH",
        help="the history file (default: $REPRO_HISTORY, else <out>/history.sqlite)",
    )


def add_nightly_commands(sub: Any, common_hosts: Callable[[argparse.ArgumentParser], None]) -> None:
    """`common_hosts`: cli.py's -i/-l/-e, so every command reads them alike."""
    h = sub.add_parser("history", help="runs over time, what changed, the first bad commit")
    h.add_argument(
        "action", nargs="*", metavar="import DIR", help="import DIR: record the run dirs in DIR"
    )
    h.add_argument("-p", "--playbook", help="only this playbook (its name)")
    h.add_argument("--since", help="only runs started since: 7d, 24h, 2w or a date (UTC)")
    h.add_argument("--format", choices=["table", "md", "json", "html"], default="table")
    h.add_argument(
        "--first-bad",
        action="store_true",
        help="the last reproducible and the first mismatching commit, per playbook and artifact",
    )
    h.add_argument("--out", default="reports", help="where run directories are (default reports/)")
    h.add_argument("-o", "--output", default="-", help="file to write, or - (default)")
    add_history_option(h)

    b = sub.add_parser("bisect", help="find the first commit whose hosts disagree")
    common_hosts(b)
    b.add_argument("--good", required=True, help="a commit whose hosts agree")
    b.add_argument("--bad", required=True, help="a later commit whose hosts disagree")
    b.add_argument("-p", "--playbook", required=True, help="playbook file (playbooks/NAME.yaml)")
    b.add_argument("--out", default="reports", help="where the probes' run dirs go")
    b.add_argument("--format", choices=["table", "json"], default="table")
    add_history_option(b)

    g = sub.add_parser("gc", help="remove old run dirs on the hosts and under --out")
    common_hosts(g)  # -i: also clean these hosts (only when given: else the controller only)
    g.add_argument("--keep", type=int, default=5, metavar="N", help="newest run dirs kept (5)")
    g.add_argument("--out", default="reports", help="the controller's run directories")
