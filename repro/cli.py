"""The command line: parse arguments, call the library, map errors to exit codes, render.

Exit codes (DESIGN.md): 0 reproducible, 1 an artifact differs, 2 bad input (nothing run),
3 inconclusive (a host failed or was unreachable, or the quorum was not met), 4 repro itself
failed (a bug, or a report it cannot write: one line, and a debug log), 130 stopped by the user.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Sequence, TextIO

from repro import __version__
from repro.errors import Aborted, ControllerError, InputError, ReproError, UsageError
from repro.evidence_cli import add_parsers, add_quorum_options, add_signing_options
from repro.render import FACTS_FORMATS, FORMATS
from repro.render.safe import term_safe
from repro.transport import TRANSPORTS

EXIT_USAGE = 2
EXIT_CRASH = 4
EXIT_ABORTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2 like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="repro", description="Run a pinned build on many hosts and compare the bytes.")
    p.add_argument("--version", action="version", version=f"repro {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common_hosts(sp: argparse.ArgumentParser) -> None:
        _inventory_args(sp)
        sp.add_argument(
            "-l",
            "--limit",
            help="Ansible host pattern (a:b, a:!b, a:&b, globs, ~regex, group[0], @file)",
        )
        sp.add_argument(
            "-e",
            "--extra-vars",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="set a variable (repeatable; @file.yaml for a file)",
        )

    def report_format(sp: argparse.ArgumentParser, what: str) -> None:
        sp.add_argument("--format", choices=list(FORMATS), default="table", help=what)

    r = sub.add_parser("run", help="run a playbook on every host and compare")
    common_hosts(r)
    r.add_argument("-p", "--playbook", help="playbook file (playbooks/NAME.yaml)")
    r.add_argument("--ref", help="tag, branch or commit to build (resolved once, on this machine)")
    r.add_argument("--forks", type=int, help="hosts worked on at once (default: all)")
    r.add_argument("--rounds", type=int, help="builds per host, each in its own work dir")
    r.add_argument(
        "--handshakes", type=int, help="SSH handshakes in flight at once (default 32)"
    )
    r.add_argument("--transport", choices=list(TRANSPORTS), help="override the inventory's")
    r.add_argument("--out", default="reports", help="where run directories go (default reports/)")
    r.add_argument(
        "--reconnect-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long a host may stay away before it is unreachable (default 300)",
    )
    r.add_argument(
        "--keepalive-interval",
        type=float,
        metavar="SECONDS",
        help="SSH keepalive every this often on a quiet link (default 5; repro_keepalive_interval)",
    )
    r.add_argument(
        "--keepalive-count",
        type=int,
        metavar="N",
        help="a link is dead after N keepalives go unanswered (default 3, so a dead host is"
        " noticed in about 20 s; repro_keepalive_count_max)",
    )
    r.add_argument(
        "--connect-timeout",
        type=float,
        metavar="SECONDS",
        help="how long one connection attempt may take (default 10; repro_connect_timeout)",
    )
    r.add_argument(
        "--host-wait",
        type=int,
        default=600,  # repro.detach.HOST_WAIT (not imported here: start-up time)
        metavar="SECONDS",
        help="while a step runs, each host answers at least this often (default 600; a step's"
        " end, or output shown live, answers at once)",
    )
    r.add_argument("--resume", metavar="RUN_ID", help="reattach to a run whose controller died")
    r.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="set a secret variable (KEY alone: from the environment variable KEY); "
        "steps get it from their environment, reports and logs show ***",
    )
    r.add_argument(
        "--log-cap",
        default="16M",
        metavar="SIZE",
        help="bytes of each step's log kept in the report dir, head and tail (default 16M)",
    )
    why_options(r)
    report_format(r, "what to print at the end (a file format is also saved in the run dir)")
    _heartbeat_arg(r)
    add_quorum_options(r)
    r.add_argument("--attest", action="store_true", help="write an in-toto statement of the run")
    add_signing_options(r)
    from repro.cli_nightly import add_retention_options

    add_retention_options(r)

    d = sub.add_parser("demo", help="run the demo playbook on a local lab of SSH hosts")
    d.add_argument("--hosts", type=int, default=3, help="how many lab hosts (default 3)")
    why_options(d, demo=True)
    d.add_argument("--out", default="reports")
    report_format(d, "what to print at the end")
    _heartbeat_arg(d)
    add_retention_options(d)

    df = sub.add_parser(
        "diff", help="fetch a saved run's differing artifacts again and explain them"
    )
    df.add_argument("run_dir", help="reports/<run-id> (its hosts must still hold the files)")
    df.add_argument("artifact", nargs="?", help="only this artifact (default: every one)")
    df.add_argument("--max-fetch", default="2G", metavar="SIZE", help="largest artifact fetched")
    df.add_argument("--diff-timeout", type=float, default=600.0, metavar="SECONDS")
    df.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="the run's secret variables again (never stored), so that diffoscope's reports "
        "show *** for them (KEY alone: from the environment variable KEY)",
    )
    report_format(df, "how to print the explained run")
    _heartbeat_arg(df)

    rep = sub.add_parser("report", help="re-render a saved run")
    rep.add_argument("run_dir", help="reports/<run-id>")
    report_format(rep, "how to render it")
    rep.add_argument("-o", "--output", default="-", help="file to write, or - (default)")

    g = sub.add_parser(
        "sigs", help="compare the builders of a guix.sigs tree (<version>/<signer>/*.SHA256SUMS)"
    )
    g.add_argument("root", help="a guix.sigs checkout")
    g.add_argument("version", help="the release directory, e.g. 28.0")
    g.add_argument("--quorum", type=int, default=2, help="signers that must agree (default 2)")
    report_format(g, "what to print")
    g.add_argument("--keys", metavar="DIR", help="check each .asc with gpg (builder-keys/)")
    g.add_argument(
        "--include-unverified", action="store_true", help="count unsigned or unknown-key signers"
    )

    add_parsers(sub)

    f = sub.add_parser("facts", help="show what each host is (CPU, microarchitecture, VM, Guix)")
    common_hosts(f)
    f.add_argument("--format", choices=list(FACTS_FORMATS), default="table")

    c = sub.add_parser("check", help="preflight: can each host run this playbook?")
    common_hosts(c)
    c.add_argument("-p", "--playbook", required=True)

    h = sub.add_parser("hosts", help="manage host keys")
    hsub = h.add_subparsers(dest="hosts_command", required=True, parser_class=_Parser)
    t = hsub.add_parser("trust", help="fetch host keys, show fingerprints, add them to known_hosts")
    common_hosts(t)
    t.add_argument("--yes", action="store_true", help="trust without asking")

    x = sub.add_parser("cancel", help="kill a run's steps on every host")
    x.add_argument("run_id")
    x.add_argument("--out", default="reports")

    from repro.cli_nightly import add_nightly_commands

    add_nightly_commands(sub, common_hosts)
    _heartbeat_arg(sub.choices["bisect"])  # its probes are runs: they show progress as run does
    _add_inventory_command(sub)
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh"])

    lab = sub.add_parser("lab", help="real OpenSSH hosts in network namespaces (root)")
    lsub = lab.add_subparsers(dest="lab_command", required=True, parser_class=_Parser)
    up = lsub.add_parser("up", help="start N hosts and write an inventory")
    up.add_argument("-n", type=int, default=3)
    up.add_argument("--dir", default=".lab/netlab")
    up.add_argument(
        "--cpuinfo",
        action="append",
        default=[],
        metavar="HOST=FILE",
        help="bind-mount FILE over /proc/cpuinfo on HOST",
    )
    down = lsub.add_parser("down", help="stop the lab and remove its namespaces")
    down.add_argument("--dir", default=".lab/netlab")
    _output_flags(p)
    return p


def why_options(sp: argparse.ArgumentParser, *, demo: bool = False) -> None:
    """--vary and the fetch/diffoscope knobs, the same for run and demo."""
    from repro.variations import AXES

    extra = (
        "; build-path also makes the last host build without -ffile-prefix-map (a real leak)"
        if demo
        else ""
    )
    sp.add_argument(
        "--vary",
        default="none",
        metavar="AXES",
        help=f"give each host/round its own value of each axis: {','.join(AXES)}{extra}",
    )
    sp.add_argument(
        "--max-fetch", default="2G", metavar="SIZE", help="largest artifact fetched on a mismatch"
    )
    sp.add_argument("--diff-timeout", type=float, default=600.0, metavar="SECONDS")
    sp.add_argument(
        "--no-why", action="store_true", help="on a mismatch, do not fetch and run diffoscope"
    )


def _heartbeat_arg(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--heartbeat",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="in CI logs, a line per host in a quiet step this often (default 30; 0: none)",
    )


def _output_flags(parser: argparse.ArgumentParser) -> None:
    """-v/-q on every command (and subcommand), after its own options."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in subs:
        for child in action.choices.values():
            _output_flags(child)
    if subs:
        return
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more output: run/demo stream build output; -vv SSH library logs, -vvv debug",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="errors, warnings and results only"
    )


_LOG_HANDLERS: list[Any] = []  # ours, so a second main() in one process does not double them


def _logging(verbose: int, err: TextIO) -> None:
    """-vv: the SSH libraries' INFO logs (connects, auth methods) to stderr; -vvv: DEBUG."""
    import logging

    for name in ("repro", "asyncssh", "paramiko"):
        for handler in _LOG_HANDLERS:
            logging.getLogger(name).removeHandler(handler)
    _LOG_HANDLERS.clear()
    if verbose <= 0:
        return
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("repro: %(name)s: %(message)s"))
    _LOG_HANDLERS.append(handler)
    ssh_level = {1: logging.WARNING, 2: logging.INFO}.get(verbose, logging.DEBUG)
    for name, level in (("repro", logging.INFO), ("asyncssh", ssh_level), ("paramiko", ssh_level)):
        logger = logging.getLogger(name)
        logger.setLevel(min(level, logging.DEBUG) if verbose >= 3 else level)
        logger.addHandler(handler)


def _inventory_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "-i",
        "--inventory",
        action="append",
        help="Ansible inventory: YAML or INI file, directory, or host1,host2, (repeatable; "
        "default: $ANSIBLE_INVENTORY, else inventory.yaml)",
    )
    sp.add_argument(
        "--inventory-via",
        choices=["auto", "builtin", "ansible"],
        default="auto",
        help="read -i with repro's loader, or through ansible-inventory (auto: only what "
        "repro cannot read: plugins, scripts, vault)",
    )


def _add_inventory_command(sub: Any) -> None:
    inv = sub.add_parser(
        "inventory", help="show the hosts, groups and variables an inventory resolves to"
    )
    _inventory_args(inv)
    inv.add_argument(
        "-e", "--extra-vars", action="append", default=[], metavar="KEY=VALUE", help="as for run"
    )
    shape = inv.add_mutually_exclusive_group()
    shape.add_argument("--list", action="store_true", help="every group and host (default)")
    shape.add_argument("--graph", nargs="?", const="all", metavar="GROUP", help="a tree")
    shape.add_argument("--host", metavar="HOST", help="one host's variables")
    inv.add_argument(
        "--resolved",
        action="store_true",
        help="with --host: templated values and the file each came from",
    )


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    # The error boundary (pypa/build's and pyinfra's): every way out is one of the exit codes.
    try:
        with _stopped_by_signals():
            parser = build_parser()
            args = parser.parse_args(argv)
            if getattr(args, "quiet", False) and getattr(args, "verbose", 0):
                raise UsageError("-q/--quiet and -v/--verbose cannot go together")
            _logging(getattr(args, "verbose", 0), err)
            if args.command == "completion":  # the one command that needs the parser itself
                from repro.completion import script

                out.write(script(args.shell, parser))
                return 0
            from repro import commands

            return commands.dispatch(args, out, err)
    except Aborted as exc:
        err.write(f"repro: {_one_line(exc)}\n")
        return EXIT_ABORTED
    except ControllerError as exc:
        return _crashed(exc, f"error: {_one_line(exc)}", argv, err)
    except ReproError as exc:
        # a message may quote a host (its banner, a DISCONNECT reason): never raw to a terminal
        err.write(f"repro: error: {term_safe(str(exc))}\n")
        return exc.exit_code if isinstance(exc, InputError) else 3
    except (KeyboardInterrupt, _Stop):
        err.write("repro: interrupted\n")
        return EXIT_ABORTED
    except Exception as exc:  # a bug: never 1 (a difference) nor 2 (bad input)
        what = f"internal error: {type(exc).__name__}: {_one_line(exc)}"[:300]
        return _crashed(exc, what, argv, err)


class _Stop(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside a run (a run cancels its hosts and writes its report).

    Raised only where no event loop runs (see _raise_stop); a KeyboardInterrupt so that any code
    that lets Ctrl-C through lets it through too."""


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the CLI like Ctrl-C does (exit 130), not with the signal's
    own status. Only in the main thread; the handlers before are put back after."""
    before = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            before[sig] = signal.signal(sig, _raise_stop)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _raise_stop(signum: int, frame: object) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no event loop: stop right here
        raise _Stop(signal.Signals(signum).name) from None
    # Inside asyncio.run, raising here would land in whatever callback or task is running (a
    # host's connect) and read as that host's error. asyncio.run has a clean way out for
    # SIGINT (cancel the main task, then KeyboardInterrupt): take it.
    signal.raise_signal(signal.SIGINT)


def _crashed(exc: BaseException, what: str, argv: Sequence[str] | None, err: TextIO) -> int:
    """Exit 4: one line for the terminal, the traceback in a debug log only its owner reads."""
    try:
        log = write_debug_log(exc, sys.argv[1:] if argv is None else list(argv))
        where = f"details in {log}"
    except OSError as e:  # the disk that refused the report may refuse this too
        where = f"no debug log: {e.strerror or e}"
    err.write(f"repro: {what} ({where})\n")
    return EXIT_CRASH


def write_debug_log(exc: BaseException, argv: list[str]) -> str:
    """The traceback of `exc` in a new file (0600) in the temp dir; returns its path."""
    fd, path = tempfile.mkstemp(prefix="repro-debug-", suffix=".log")  # 0600 from the start
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
        f.write(f"repro {__version__}, Python {sys.version.split()[0]}\nargv: {argv!r}\n\n")
        f.write("".join(traceback.format_exception(exc)))
    return path


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def main_entry() -> None:
    """console_scripts entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_entry()
