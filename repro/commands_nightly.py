"""What `repro history`, `repro bisect` and `repro gc` do, given parsed arguments: the glue
between cli_nightly and the library (repro.history, repro.bisect, repro.gc). Never parses argv.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from repro.errors import UsageError
from repro.events import Listener
from repro.render.safe import term_safe


def history_path(args: argparse.Namespace) -> Path:
    from repro.history import default_path

    chosen = getattr(args, "history", None) or os.environ.get("REPRO_HISTORY")
    return Path(chosen) if chosen else default_path(args.out)


def retention_vars(args: argparse.Namespace) -> dict[str, Any]:
    """`run --keep N --keep-failed --keep-work` as the per-host vars they stand for."""
    from repro import retention as r

    out: dict[str, Any] = {}
    if getattr(args, "keep", None) is not None:
        if args.keep < 0:
            raise UsageError(f"--keep {args.keep}: must be 0 or more")
        out[r.KEEP_RUNS] = args.keep
    if getattr(args, "keep_failed", False):
        out[r.KEEP_FAILED] = True
    if getattr(args, "keep_work", False):
        out[r.KEEP_WORK] = True
    return out


def write_out(text: str, output: str, out: TextIO, err: TextIO) -> None:
    if output == "-":
        out.write(text)
        return
    from repro.store import atomic_write

    dest = Path(output)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, text)
    except OSError as exc:
        raise UsageError(f"{output}: cannot write: {exc.strerror or exc}") from None
    err.write(f"wrote {output}\n")


# --- history ---------------------------------------------------------------------------------


def cmd_history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro import history
    from repro.render import history as view

    path = history_path(args)
    if args.action:
        if args.action[0] != "import" or len(args.action) != 2:
            raise UsageError("history: the only action is `import DIR`")
        with history.opened(path) as db:
            result = history.import_runs(db, Path(args.action[1]))
        err.writelines(
            f"skipped {term_safe(where)}: {term_safe(why)}\n" for where, why in result.skipped
        )
        out.write(
            f"recorded {len(result.recorded)} run(s) in {path}"
            f" ({len(result.already)} already there, {len(result.skipped)} skipped)\n"
        )
        return 0
    since = history.parse_since(args.since) if args.since else None
    with history.opened(path, create=False) as db:
        entries = history.runs(db, playbook=args.playbook, since=since)
    if args.playbook and not entries:
        err.write(f"no runs of playbook {term_safe(args.playbook)} in {path}\n")
    items = history.timeline(entries)
    found = history.first_bad(entries) if args.first_bad or args.format == "html" else None
    if args.format == "json":
        text = view.as_json(items, found)
    elif args.format == "html":
        text = view.html_page(items, found or [], _links(entries, args.output))
    elif args.first_bad:
        text = view.first_bad_text(found or [], md=args.format == "md")
    else:
        text = view.table(items) if args.format == "table" else view.markdown(items)
    write_out(text, args.output, out, err)
    return 0


def _links(entries: list[Any], output: str) -> dict[str, str]:
    """Each run's report, relative to where the page is written; only reports that exist."""
    here = Path(output).resolve().parent if output != "-" else Path.cwd()
    links = {}
    for e in entries:
        if not e.report_dir:
            continue
        for name in ("report.html", "report.md", "report.json"):
            target = Path(e.report_dir) / name
            if target.is_file():
                links[e.run_id] = os.path.relpath(target, here)
                break
    return links


# --- gc --------------------------------------------------------------------------------------


def cmd_gc(
    args: argparse.Namespace, out: TextIO, err: TextIO, hosts: Callable[[], list[Any]]
) -> int:
    """`hosts`: the inventory's hosts, as every command selects them (only with -i)."""
    from repro import gc

    if args.keep < 0:
        raise UsageError(f"--keep {args.keep}: must be 0 or more")
    out_dir = Path(args.out)
    results = []
    if args.inventory:
        results += asyncio.run(gc.clean_hosts(hosts(), args.keep, gc.resumable(out_dir)))
    results.append(gc.clean_controller(out_dir, args.keep))
    out.writelines(term_safe(r.summary()) + "\n" for r in results)
    return 3 if any(r.error for r in results) else 0


# --- bisect ----------------------------------------------------------------------------------


def cmd_bisect(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    make_listener: Callable[[list[str], TextIO, argparse.Namespace], Listener],
    inventory: str | list[str],
) -> int:
    """`make_listener`: how the CLI shows a run's progress; `inventory`: the path -i or
    $ANSIBLE_INVENTORY names (repro.commands owns both)."""
    import json

    from repro import bisect
    from repro.inventory import parse_extra_vars
    from repro.playbook import load_playbook
    from repro.session import execute, prepare

    extra = parse_extra_vars(args.extra_vars)
    pb = load_playbook(args.playbook)
    repo_url = extra.get("repo_url", pb.vars.get("repo_url"))
    if not isinstance(repo_url, str) or not repo_url:
        raise UsageError(f"bisect needs a repository: {pb.path} has no repo_url (-e repo_url=...)")
    out_dir = Path(args.out)
    hist = history_path(args)
    repo = bisect.mirror(repo_url)
    good, bad, commits = bisect.first_parent_commits(repo, args.good, args.bad)
    limit = args.limit or _hosts_that_disagreed(hist, pb.name, bad, inventory, args, err)
    b = bisect.Bisection(good, bad, commits)
    state = bisect.state_path(out_dir, str(Path(pb.path).resolve()), good, bad, limit)
    bisect.load_state(state, b)
    if b.probes:
        err.write(f"bisect: resuming ({len(b.probes)} probe(s) done, {state})\n")
    err.write(
        f"bisect: {len(commits)} first-parent commit(s) after {good[:12]} up to {bad[:12]}; "
        f"at most {b.max_conclusive} conclusive probe(s)\n"
    )

    def build(commit: str) -> tuple[str, str]:
        prep = prepare(
            inventory=inventory,
            inventory_via=args.inventory_via,
            playbook=args.playbook,
            extra_vars=extra,
            limit=limit,
            ref=commit,
            out_dir=out_dir,
        )
        prep.history = hist
        names = [p.host.name for p in prep.plans]
        err.write(f"bisect: probing {commit[:12]} (run {prep.run_id})\n")
        run, comparison = execute(prep, listener=make_listener(names, err, args))
        err.writelines(f"note: {term_safe(note)}\n" for note in prep.notes)
        if any((h.error or "").startswith("cancelled") for h in run.hosts):
            raise KeyboardInterrupt  # the probe was aborted: it decides nothing; resume later
        return comparison.verdict, prep.run_id

    def said(p: bisect.Probe, now: bisect.Bisection) -> None:
        skip = " (skipped, as git bisect skip)" if p.verdict == "inconclusive" else ""
        err.write(f"bisect: {p.commit[:12]} is {p.verdict}{skip}\n")

    bisect.bisect(b, build, state=state, on_probe=said)
    if args.format == "json":
        out.write(json.dumps(bisect.as_dict(b), indent=2) + "\n")
    else:
        out.write(_bisect_text(b))
    return b.exit_code


def _hosts_that_disagreed(
    hist: Path,
    playbook: str,
    bad: str,
    inventory: str | list[str],
    args: argparse.Namespace,
    err: TextIO,
) -> str | None:
    """Without --limit: the two hosts that disagreed at `bad` in the history, if they are in
    the inventory (building on two is enough to see the difference); else every host."""
    from repro import history
    from repro.inventory import load_inventory, parse_extra_vars

    if not hist.is_file():
        return None
    with history.opened(hist, create=False) as db:
        found = history.latest_at_commit(db, playbook, bad)
    pair = history.disagreeing_hosts(found) if found and found.verdict == "mismatch" else []
    extra = parse_extra_vars(args.extra_vars)
    known = load_inventory(inventory, extra, via=args.inventory_via).hosts
    if len(pair) != 2 or not all(h in known for h in pair):
        return None
    err.write(
        f"bisect: building on {term_safe(pair[0])} and {term_safe(pair[1])}, which "
        f"disagreed at {bad[:12]} (run {found.run_id if found else '?'})\n"
    )
    return ":".join(pair)


def _bisect_text(b: Any) -> str:
    lines = []
    if b.first_bad:
        lines.append(f"first bad commit: {b.first_bad}")
        lines.append(f"last good commit: {b.last_good}")
    elif b.bad_reproducible:
        lines.append(f"{b.bad} is reproducible on these hosts: nothing to bisect")
    elif b.commits[-1] in b.probes and b.probes[b.commits[-1]].verdict == "inconclusive":
        lines.append(f"{b.bad} could not be built on every host (inconclusive): nothing decided")
    else:
        lines.append("the first bad commit is one of (skipped commits hide which):")
        lines += [f"  {c}" for c in b.suspects]
    if b.skipped:
        lines.append("skipped (inconclusive): " + " ".join(c[:12] for c in b.skipped))
    for p in b.probes.values():
        lines.append(
            f"  {p.commit[:12]} {p.verdict:<13} run {p.run_id or '-'}{' (earlier)' if p.reused else ''}"
        )
    return "\n".join(lines) + "\n"
