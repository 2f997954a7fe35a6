"""What each `repro` subcommand does, given parsed arguments: the glue between cli and library.

Kept apart from cli.py so the parser stays readable; nothing here parses argv, and the library
modules it calls never print.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path
from collections.abc import Iterator
from typing import Any, TextIO

from repro import commands_nightly as nightly
from repro import evidence_cli
from repro.compare import Comparison
from repro.errors import ReportWriteError, ReproError, Unfinished, UsageError
from repro.events import Listener
from repro.inventory import load_inventory, parse_extra_vars, select
from repro.render.safe import term_safe
from repro.results import RunResult


def dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    handler = {
        "run": cmd_run,
        "demo": cmd_demo,
        "report": cmd_report,
        "diff": cmd_diff,
        "facts": cmd_facts,
        "check": cmd_check,
        "hosts": cmd_hosts,
        "cancel": cmd_cancel,
        "sigs": cmd_sigs,
        "lab": cmd_lab,
        "attest": evidence_cli.cmd_attest,
        "verify": evidence_cli.cmd_verify,
        "compare": evidence_cli.cmd_compare,
        "inventory": cmd_inventory,
        "history": nightly.cmd_history,
        "bisect": lambda a, o, e: nightly.cmd_bisect(a, o, e, make_listener, inventory_path(a)),
        "gc": lambda a, o, e: nightly.cmd_gc(a, o, e, lambda: _hosts(a, e)),
    }[args.command]
    return handler(args, out, err)


# --- helpers ---------------------------------------------------------------------------------


def is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM", "") not in ("", "dumb")
    except (AttributeError, ValueError):
        return False


def term_width(stream: TextIO) -> int:
    if is_tty(stream):
        return max(60, shutil.get_terminal_size((100, 24)).columns)
    return 100


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return is_tty(stream) and not os.environ.get("NO_COLOR")


def make_listener(hosts: list[str], err: TextIO, args: argparse.Namespace) -> Listener:
    from repro.events import ignore
    from repro.render.progress import LineProgress, LiveProgress

    if args.quiet:
        return ignore
    if args.heartbeat < 0:
        raise UsageError(f"--heartbeat {args.heartbeat:g}: must be 0 (none) or more seconds")
    if _live_terminal(err, args):
        size = shutil.get_terminal_size((100, 24))
        return LiveProgress(hosts, err, width=term_width(err), height=size.lines)
    return LineProgress(err, verbose=args.verbose > 0, heartbeat=args.heartbeat)


def _live_terminal(err: TextIO, args: argparse.Namespace) -> bool:
    return is_tty(err) and not args.verbose and os.environ.get("CI") is None


def output_gap(err: TextIO, args: argparse.Namespace) -> int:
    """How soon (seconds) a growing log should end a wait on a host, for what the progress
    shows: at once for output shown as it comes (-v, a terminal's live view), every heartbeat
    for the log size in CI heartbeats, never when nothing is shown (only a step's end)."""
    from repro.detach import LIVE_GAP

    if args.quiet:
        return 0
    if args.verbose > 0 or _live_terminal(err, args):
        return LIVE_GAP
    return max(0, int(args.heartbeat))


def playbooks_dir() -> Path:
    """The built-in playbooks: `repro/playbooks/` when installed (package data, see setup.py),
    `playbooks/` beside the `repro` package in a checkout."""
    package = Path(__file__).resolve().parent
    for here in (package / "playbooks", package.parent / "playbooks"):
        if (here / "demo.yaml").is_file():
            return here
    raise UsageError(f"built-in playbooks not found in {package}: a broken install of repro?")


def why_options(args: argparse.Namespace) -> Any:
    """The fetch/diffoscope options from --max-fetch, --diff-timeout and --no-why."""
    from repro.explain import WhyOptions
    from repro.fetch import FetchOptions
    from repro.playbook import parse_size

    try:
        cap = parse_size(args.max_fetch)
    except ValueError as exc:
        raise UsageError(f"--max-fetch {args.max_fetch!r}: {exc}") from None
    if args.diff_timeout <= 0:
        raise UsageError(f"--diff-timeout {args.diff_timeout}: must be positive")
    enabled = not getattr(args, "no_why", False)
    return WhyOptions(enabled, FetchOptions(max_bytes=cap), diff_timeout=args.diff_timeout)


def finish(
    run: RunResult,
    comparison: Comparison,
    prep: Any,
    fmt: str,
    out: TextIO,
    err: TextIO,
    quiet: bool = False,
) -> int:
    from repro.render import FORMATS, render, saved
    from repro.store import RunDir

    report_dir = prep.report_dir
    out.write(render(fmt, run, comparison, width=term_width(out), color=use_color(out)))
    warn(err, prep.notes)  # the run's ending: not recorded, not cleaned up
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:  # a GitHub Actions job: the Markdown report on the run's summary page
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(RunDir(report_dir).report("md").read_text(encoding="utf-8") + "\n")
        except OSError as exc:
            warn(err, [f"cannot append to GITHUB_STEP_SUMMARY: {exc.strerror}"])
    if quiet:
        return comparison.exit_code
    first, *rest = (RunDir(report_dir).report(str(FORMATS[f].ext)) for f in saved())
    also = f" (and {', '.join(p.name for p in rest)})" if rest else ""
    err.write(f"report: {first}{also}\n")
    return comparison.exit_code


def _formats(fmt: str) -> tuple[str, ...]:
    """The report files a run writes: the saved ones, and the one printed if it is a file
    format (`--format junit` leaves report.junit.xml in the run dir for CI)."""
    from repro.render import file_formats, saved

    return saved() + ((fmt,) if fmt in file_formats() and fmt not in saved() else ())


@contextlib.contextmanager
def shown_anyway(fmt: str, out: TextIO) -> Iterator[None]:
    """A run stopped by the user, or whose report cannot be written, still prints what it
    gathered before the CLI maps the error to its exit code (130, 4): no result is lost."""
    from repro.render import render

    try:
        yield
    except Unfinished as exc:
        if exc.outcome is not None:
            run, comparison = exc.outcome
            out.write(render(fmt, run, comparison, width=term_width(out), color=is_tty(out)))
        raise


# --- run, demo, report -----------------------------------------------------------------------


def _secret_item(item: str) -> str:
    """`--secret NAME` takes the value from the environment variable NAME, so it need not be
    on the controller's own command line (where other users' `ps` would see it)."""
    if "=" in item or item.startswith("@"):
        return item
    if item not in os.environ:
        raise UsageError(f"--secret {item}: no environment variable {item} to take it from")
    return f"{item}={os.environ[item]}"


def _link_settings(args: argparse.Namespace) -> dict[str, float]:
    """The host vars the link flags of `run` stand for (an inventory's own value wins)."""
    flags = (
        ("keepalive_interval", "repro_keepalive_interval"),
        ("keepalive_count", "repro_keepalive_count_max"),
        ("connect_timeout", "repro_connect_timeout"),
    )
    link: dict[str, float] = {}
    for attr, var in flags:
        value = getattr(args, attr, None)
        if value is None:
            continue
        if value <= 0:
            raise UsageError(f"--{attr.replace('_', '-')} {value:g}: must be positive")
        link[var] = value
    return link


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro.runner import HANDSHAKES, RunOptions
    from repro.session import execute, load_plan, prepare

    if args.forks is not None and args.forks < 1:
        raise UsageError(f"--forks {args.forks}: must be at least 1")
    if args.rounds is not None and not 1 <= args.rounds <= 5:
        raise UsageError(f"--rounds {args.rounds}: must be 1 to 5")
    if args.reconnect_timeout <= 0:
        raise UsageError(f"--reconnect-timeout {args.reconnect_timeout}: must be positive")
    if args.host_wait < 1:
        raise UsageError(f"--host-wait {args.host_wait}: must be at least 1 second")
    link = _link_settings(args)
    if args.handshakes is not None and args.handshakes < 1:
        raise UsageError(f"--handshakes {args.handshakes}: must be at least 1")
    from repro.playbook import parse_size

    try:
        log_cap = parse_size(args.log_cap)
    except ValueError as exc:
        raise UsageError(f"--log-cap: {exc}") from None
    if log_cap < 4096:
        raise UsageError(f"--log-cap {args.log_cap}: keep at least 4K of each step's log")
    secret_vars = parse_extra_vars(
        [_secret_item(item) for item in args.secret], flag="--secret"
    )
    from repro import variations

    vary = variations.parse(args.vary)
    why = why_options(args)
    options = RunOptions(
        forks=args.forks,
        rounds=args.rounds,
        handshakes=args.handshakes or HANDSHAKES,
        reconnect_timeout=args.reconnect_timeout,
        host_wait=args.host_wait,
        live_gap=output_gap(err, args),
        link=link,
        log_cap=log_cap,
    )
    if args.resume:
        options.resumed = True
        prep = load_plan(args.out, args.resume, options=options, secret_vars=secret_vars)
        from repro.runlock import RunLock

        RunLock(prep.report_dir, prep.run_id).check()
    else:
        if not args.playbook:
            raise UsageError("run: -p/--playbook is required (or --resume RUN_ID)")
        prep = prepare(
            inventory=inventory_path(args),
            inventory_via=args.inventory_via,
            playbook=args.playbook,
            extra_vars=parse_extra_vars(args.extra_vars) | nightly.retention_vars(args),
            limit=args.limit,
            ref=args.ref,
            out_dir=args.out,
            transport=args.transport,
            options=options,
            secret_vars=secret_vars,
            vary=vary,
        )
    prep.history = nightly.history_path(args)
    evidence_cli.apply_run_options(prep, args)
    prep.why = why
    warn(err, prep.warnings)
    warn(err, config_warnings([p.host for p in prep.plans]))
    names = [p.host.name for p in prep.plans]
    from repro import fdlimit

    short = fdlimit.ensure(min(len(names), args.forks or len(names)))
    warn(err, [short] if short else [])
    if not args.quiet:
        err.write(f"run {prep.run_id}: playbook {prep.playbook.name} on {len(names)} hosts\n")
    with shown_anyway(args.format, out):
        run, comparison = execute(
            prep, listener=make_listener(names, err, args), formats=_formats(args.format)
        )
    evidence_cli.attest_run(args, run, comparison, prep.report_dir, err)
    return finish(run, comparison, prep, args.format, out, err, args.quiet)


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro import variations
    from repro.lab import LocalLab
    from repro.session import execute_async, prepare

    if not 2 <= args.hosts <= 20:
        raise UsageError(f"--hosts {args.hosts}: the demo lab takes 2 to 20 hosts")
    vary = variations.parse(args.vary)
    why = why_options(args)
    playbook = playbooks_dir() / "demo.yaml"
    names = [f"lab{i}" for i in range(1, args.hosts + 1)]
    host_vars: dict[str, dict[str, Any]] = {}
    if "build-path" in vary:
        # Every host builds in its own path (the axis); the last one also builds without
        # -ffile-prefix-map, so its path leaks into the binary's debug info and __FILE__: a
        # real and classic reproducibility bug, which the report then explains.
        host_vars[names[-1]] = {"prefix_map": False}
    base = Path(tempfile.mkdtemp(prefix="repro-lab-"))

    async def go() -> tuple[Any, RunResult, Comparison]:
        async with LocalLab(base, n=args.hosts, names=names, host_vars=host_vars) as lab:
            prep = prepare(
                inventory=lab.inventory_path,
                playbook=playbook,
                extra_vars=nightly.retention_vars(args),
                out_dir=args.out,
                vary=vary,
                why=why,
            )
            prep.history = nightly.history_path(args)
            if not args.quiet:
                err.write(
                    f"demo: {args.hosts} SSH hosts on 127.0.0.1 "
                    f"(ports {', '.join(str(h.port) for h in lab.hosts)}), run {prep.run_id}\n"
                )
            run, comparison = await execute_async(
                prep,
                listener=make_listener(names, err, args),
                formats=_formats(args.format),
            )
            return prep, run, comparison

    try:
        with shown_anyway(args.format, out):
            prep, run, comparison = asyncio.run(go())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return finish(run, comparison, prep, args.format, out, err, args.quiet)


def cmd_report(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro.render import render
    from repro.report import load_report

    run, comparison = load_report(Path(args.run_dir))
    if args.format == "junit":  # CI reads it from the run dir: written there too
        from repro.report import write_report

        write_report(Path(args.run_dir), run, comparison, formats=("junit",))
    text = render(
        args.format,
        run,
        comparison,
        width=term_width(out),
        color=args.output == "-" and use_color(out),
    )
    if args.output == "-":
        out.write(text)
    else:
        from repro.store import atomic_write

        dest = Path(args.output)
        try:
            atomic_write(dest, text)
        except OSError as e:
            raise ReportWriteError(f"{dest}: cannot write the report: {e.strerror}") from e
        if not args.quiet:
            err.write(f"wrote {dest}\n")
    return 0


def cmd_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Fetch and explain a saved run's differences again, from hosts that still hold them."""
    from repro.explain import explain, record_paths
    from repro.render import render
    from repro.report import load_report, write_report
    from repro.secrets import report_mask
    from repro.session import load_plan, masker
    from repro.transport import make_transport

    run_dir = Path(args.run_dir)
    run, comparison = load_report(run_dir)
    if args.artifact is not None and args.artifact not in {a.name for a in comparison.artifacts}:
        raise UsageError(f"{run_dir}: the run has no artifact named {args.artifact!r}")
    if not any(a.status == "differs" for a in comparison.artifacts):
        err.write(f"{run_dir}: nothing differs in this run; nothing to explain\n")
        return comparison.exit_code
    secret_vars = parse_extra_vars(
        [_secret_item(item) for item in args.secret], flag="--secret"
    )
    prep = load_plan(run_dir.parent, run_dir.name, to_cancel=True, secret_vars=secret_vars)
    names = [h.name for h in run.hosts]
    record_paths(run, prep.playbook)
    # Secret values are never stored: only what is given again can be masked in diffoscope's
    # reports (the summary in the report was masked when the run was made).
    unknown = sorted({n for p in prep.plans for n, v in p.secrets.items() if not v})
    if unknown:
        err.write(
            f"repro: warning: the run had secret variables ({', '.join(unknown)}); give them "
            "again with --secret to mask them in diffoscope's reports under diff/\n"
        )
    explained = asyncio.run(
        explain(
            run,
            comparison,
            playbook=prep.playbook,
            hosts={p.host.name: p.host for p in prep.plans},
            run_dir=run_dir,
            transport_factory=make_transport,
            listener=make_listener(names, err, args),
            options=dataclasses.replace(why_options(args), mask=report_mask(masker(prep))),
            only=args.artifact,
        )
    )
    write_report(run_dir, run, explained)
    out.write(render(args.format, run, explained, width=term_width(out), color=is_tty(out)))
    gone = [
        c for a in explained.artifacts if a.why for c in a.why.copies if c.status == "failed"
    ]
    for c in gone:
        err.write(f"repro: error: {c.host}: cannot fetch {c.artifact}: {c.detail}\n")
    return 3 if gone else explained.exit_code


def cmd_sigs(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro.render.sigs import render
    from repro.sigs import read_sigs

    if args.quorum < 1:
        raise UsageError(f"--quorum {args.quorum}: must be at least 1")
    release = read_sigs(
        args.root,
        args.version,
        quorum=args.quorum,
        keys=args.keys,
        include_unverified=args.include_unverified,
    )
    out.write(render(args.format, release, width=term_width(out)))
    return release.exit_code


# --- facts, check ----------------------------------------------------------------------------


def inventory_path(args: argparse.Namespace) -> str | list[str]:
    """-i (one source, or several in order), else $ANSIBLE_INVENTORY (a comma-separated list of
    paths, as Ansible reads it), else inventory.yaml."""
    given: list[str] = list(args.inventory or [])
    if not given:
        env = os.environ.get("ANSIBLE_INVENTORY", "")
        given = [p.strip() for p in env.split(",") if p.strip()] or ["inventory.yaml"]
    return given if len(given) > 1 else given[0]


def config_warnings(hosts: list[Any]) -> list[str]:
    """~/.ssh/config checked for these hosts (bad values raise); what it sets that is unused."""
    from repro.transport.route import check_config

    return check_config(hosts)


def warn(err: TextIO, warnings: Any) -> None:
    from repro.render.safe import term_safe

    for line in warnings:
        err.write(f"repro: warning: {term_safe(line)}\n")


def _hosts(args: argparse.Namespace, err: TextIO) -> list[Any]:
    inv = load_inventory(
        inventory_path(args), parse_extra_vars(args.extra_vars), via=args.inventory_via
    )
    warn(err, inv.warnings)
    hosts = select(inv, args.limit)
    warn(err, config_warnings(hosts))
    return hosts


def cmd_inventory(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro import inventory_view as view

    inv = load_inventory(
        inventory_path(args), parse_extra_vars(args.extra_vars), via=args.inventory_via
    )
    warn(err, inv.warnings)
    if args.resolved and not args.host:
        raise UsageError("inventory: --resolved goes with --host HOST")
    if args.graph:
        out.write(view.as_graph(inv, args.graph))
    elif args.host:
        out.write(view.dumps(view.host_vars(inv, args.host, resolved=args.resolved)))
    else:
        out.write(view.dumps(view.as_list(inv)))
    return 0


def cmd_facts(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro.hostops import gather_all
    from repro.render.facts import facts_json, facts_table

    hosts = _hosts(args, err)
    results = asyncio.run(gather_all(hosts))
    out.write(
        facts_json(results)
        if args.format == "json"
        else facts_table(results, width=term_width(out))
    )
    return 0 if all(r.error is None for r in results) else 3


def cmd_check(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro.hostops import preflight_all
    from repro.playbook import load_playbook
    from repro.render.facts import check_table

    pb = load_playbook(args.playbook)
    hosts = _hosts(args, err)
    results = asyncio.run(preflight_all(hosts, pb))
    out.write(check_table(results))
    return 0 if all(r.error is None and not r.problems for r in results) else 3


# --- hosts trust, cancel, lab ----------------------------------------------------------------


def cmd_hosts(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro.trust import trust_hosts

    hosts = _hosts(args, err)

    def confirm(question: str) -> bool:
        if args.yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(
                "hosts trust: no terminal to confirm on; check the fingerprints and pass --yes"
            )
        err.write(question + " [y/N] ")
        err.flush()
        return sys.stdin.readline().strip().lower() in ("y", "yes")

    return asyncio.run(trust_hosts(hosts, confirm=confirm, out=out))


def cmd_cancel(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro.hostops import cancel_run
    from repro.session import load_plan

    prep = load_plan(args.out, args.run_id, to_cancel=True)
    results = asyncio.run(cancel_run(prep))
    bad = 0
    for name, msg in results:
        out.write(f"{name}: {term_safe(msg)}\n")  # a host's DISCONNECT reason, say
        bad += msg.startswith("error")
    return 3 if bad else 0


def cmd_lab(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro import netlab

    base = Path(args.dir)
    if args.lab_command == "down":
        netlab.lab_down(base)
        out.write(f"lab in {base} stopped\n")
        return 0
    cpuinfo: dict[str, Path] = {}
    for item in args.cpuinfo:
        host, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise UsageError(f"--cpuinfo {item!r}: expected HOST=FILE with an existing FILE")
        cpuinfo[host] = Path(path)
    try:
        lab = netlab.lab_up(base, args.n, cpuinfo)
    except ReproError:
        raise
    out.write(f"{len(lab.hosts)} OpenSSH hosts up; inventory: {lab.inventory_path}\n")
    for h in lab.hosts:
        out.write(f"  {h.name}  {h.address}\n")
    out.write(f"stop with: repro lab down --dir {base}\n")
    return 0
