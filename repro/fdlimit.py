"""Open files for a run of many hosts: each connection holds a socket (more behind a jump host,
with fabric its threads' pipes), so the soft RLIMIT_NOFILE is raised to the hard one if needed.

The library never prints: `ensure` returns the one line to show when the limit cannot be raised.
"""

from __future__ import annotations

import resource

#: open files a host of a run may hold at once, counted generously (jump hosts, fabric)
PER_HOST = 4
#: what the controller holds besides: its logs, the run dir, the report, sqlite, stdio
BASE = 64


def needed(hosts: int) -> int:
    return BASE + PER_HOST * hosts


def ensure(hosts: int) -> str | None:
    """Raise the soft limit on open files to the hard one if `hosts` may need more than it;
    None when there are enough, else one line saying what is missing and how to get it."""
    want = needed(hosts)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    except (ValueError, OSError):
        pass
    if soft == resource.RLIM_INFINITY or soft >= want:
        return None
    return (
        f"{hosts} hosts may need {want} open files but the limit is {soft} (hard {hard});"
        " raise it (ulimit -n) or use --forks"
    )
