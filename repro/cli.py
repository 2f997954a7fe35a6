"""The command line: parse arguments, call the library, map errors to exit codes, render.

Exit codes (DESIGN.md): 0 reproducible, 1 an artifact differs, 2 bad input (nothing run),
3 inconclusive (a host failed or was unreachable, or the quorum was not met), 4 repro itself
failed (a bug, or a report it cannot write: one line, and a debug log), 130 stopped by the user.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Sequence, TextIO

from repro import __version__
from repro.errors import Aborted, ControllerError, InputError, ReproError, UsageError
from repro.render import FACTS_FORMATS, FORMATS
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
        sp.add_argument(
            "-i", "--inventory", default="inventory.yaml", help="Ansible YAML inventory"
        )
        sp.add_argument(
            "-l", "--limit", help="Ansible host pattern (a:b, a:!b, a:&b, globs, ~regex)"
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
    r.add_argument("--resume", metavar="RUN_ID", help="reattach to a run whose controller died")
    report_format(r, "what to print at the end (a file format is also saved in the run dir)")
    r.add_argument("-v", "--verbose", action="store_true", help="stream every host's build output")
    from repro.cli_nightly import add_retention_options

    add_retention_options(r)

    d = sub.add_parser("demo", help="run the demo playbook on a local lab of SSH hosts")
    d.add_argument("--hosts", type=int, default=3, help="how many lab hosts (default 3)")
    d.add_argument(
        "--vary",
        choices=["none", "build-path"],
        default="none",
        help="build-path: the last host builds without -ffile-prefix-map (a real mismatch)",
    )
    d.add_argument("--out", default="reports")
    report_format(d, "what to print at the end")
    d.add_argument("-v", "--verbose", action="store_true")
    add_retention_options(d)

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
    return p


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    # The error boundary (pypa/build's and pyinfra's): every way out is one of the exit codes.
    try:
        with _stopped_by_signals():
            args = build_parser().parse_args(argv)
            from repro import commands

            return commands.dispatch(args, out, err)
    except Aborted as exc:
        err.write(f"repro: {_one_line(exc)}\n")
        return EXIT_ABORTED
    except ControllerError as exc:
        return _crashed(exc, f"error: {_one_line(exc)}", argv, err)
    except ReproError as exc:
        err.write(f"repro: error: {exc}\n")
        return exc.exit_code if isinstance(exc, InputError) else 3
    except (KeyboardInterrupt, _Stop):
        err.write("repro: interrupted\n")
        return EXIT_ABORTED
    except Exception as exc:  # a bug: never 1 (a difference) nor 2 (bad input)
        what = f"internal error: {type(exc).__name__}: {_one_line(exc)}"[:300]
        return _crashed(exc, what, argv, err)


class _Stop(BaseException):
    """SIGTERM or SIGHUP outside a run (a run cancels its hosts and writes its report)."""


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
    raise _Stop(signal.Signals(signum).name)


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
