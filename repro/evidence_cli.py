"""The command line of release-day evidence: `repro attest`, `verify`, `compare`, and the options
`repro run` takes for it (quorum diversity, published hashes, attestations). Parsing and glue only.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from repro.errors import UsageError
from repro.render import FORMATS


def add_quorum_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quorum", type=int, help="hosts that must agree (overrides the playbook)")
    p.add_argument(
        "--require",
        metavar="KINDS",
        help="kinds of machine among them, e.g. intel,amd,vm (intel, amd, vm, bare-metal)",
    )
    p.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="SUMS|SIGS_DIR|NAME=SHA256",
        help="published hashes every host must match (repeatable)",
    )


def add_signing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--signer", help="also write guix.sigs files and attestation.json as NAME")
    p.add_argument("--release", metavar="VERSION", help="their <version> dir (default: --ref)")
    p.add_argument("--ssh-key", metavar="FILE", help="sign with ssh-keygen -Y (namespace repro)")
    p.add_argument("--gpg-sign", action="store_true", help="sign with gpg --detach-sign")
    p.add_argument("--gpg-key", metavar="KEYID", help="gpg key to sign with (implies --gpg-sign)")


def add_parsers(sub: Any) -> None:
    """`repro attest`, `repro verify` and `repro compare`, on cli's subparsers."""
    a = sub.add_parser(
        "attest", help="write (and sign) a run's in-toto statement and guix.sigs files"
    )
    a.add_argument("run_dir", help="reports/<run-id>")
    a.add_argument("--out", help="where to write (default RUN_DIR/attestation)")
    add_signing_options(a)

    v = sub.add_parser("verify", help="check signed evidence and that it matches its run's report")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("--allowed-signers", metavar="FILE", help="ssh-keygen allowed_signers file")
    v.add_argument("--keyring", metavar="DIR", help="directory of gpg public keys (builder-keys/)")
    v.add_argument("--report", metavar="RUN_DIR", help="the run to match (default: found beside)")

    c = sub.add_parser("compare", help="one comparison from run dirs, attestations, guix.sigs dirs")
    c.add_argument("sources", nargs="+", metavar="SOURCE")
    add_quorum_options(c)
    c.add_argument("--keys", metavar="DIR",
                   help="check guix.sigs and statement signatures (.asc) with gpg")
    c.add_argument("--allowed-signers", metavar="FILE",
                   help="check statement signatures (.sig) with ssh-keygen -Y")
    c.add_argument("--include-unverified", action="store_true", help="count unsigned signers")
    c.add_argument("--out", help="also write the merged report into this directory")
    c.add_argument("--format", choices=list(FORMATS), default="table")


def _signing(args: argparse.Namespace) -> Any:
    from repro.attest import Signing

    return Signing(
        Path(args.ssh_key) if args.ssh_key else None,
        bool(args.gpg_sign or args.gpg_key),
        args.gpg_key,
    )


def apply_run_options(prep: Any, args: argparse.Namespace) -> None:
    """--quorum/--require/--expect onto a prepared run, checked before anything runs."""
    from repro.published import load_expected
    from repro.quorum import parse_require

    quorum, require = prep.playbook.quorum, prep.playbook.require
    if args.quorum is not None:
        if args.quorum < 1:
            raise UsageError(f"--quorum {args.quorum}: must be at least 1")
        quorum = args.quorum
    if args.require is not None:
        try:
            require = parse_require(args.require)
        except ValueError as exc:
            raise UsageError(f"--require {args.require}: {exc}") from None
    prep.playbook = replace(prep.playbook, quorum=quorum, require=require)
    prep.expected = load_expected(args.expect)
    _check_signing(args)


def _check_signing(args: argparse.Namespace) -> None:
    from repro.signatures import gpg_check_key

    if args.ssh_key and not Path(args.ssh_key).is_file():
        raise UsageError(f"--ssh-key {args.ssh_key}: no such file")
    if args.gpg_sign or args.gpg_key:
        gpg_check_key(args.gpg_key)


def attest_run(
    args: argparse.Namespace, run: Any, comparison: Any, run_dir: Path, err: TextIO
) -> None:
    """`repro run --attest`: the statement always; guix.sigs files only for a reproducible run."""
    from repro.attest import attest
    from repro.schema import to_dict

    if not (args.attest or args.signer or args.ssh_key or args.gpg_sign or args.gpg_key):
        return
    signer = args.signer
    if signer and comparison.verdict != "reproducible":
        err.write(f"attest: no guix.sigs files for {signer}: the run is {comparison.verdict}\n")
        signer = None
    written = attest(run_dir, to_dict(run, comparison), _signing(args), signer=signer,
                     version=args.release)  # fmt: skip
    err.write(f"attestation: {len(written)} files in {run_dir / 'attestation'}\n")


def cmd_attest(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro.attest import attest
    from repro.report import load_report
    from repro.schema import to_dict

    run_dir = Path(args.run_dir)
    run, comparison = load_report(run_dir)
    _check_signing(args)
    written = attest(
        run_dir,
        to_dict(run, comparison),
        _signing(args),
        signer=args.signer,
        version=args.release,
        out=Path(args.out) if args.out else None,
    )
    out.writelines(f"{path}\n" for path in written)
    return 0


def cmd_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro.render.safe import term_safe
    from repro.verify import verify_files

    code, results = verify_files(
        [Path(f) for f in args.files],
        allowed_signers=Path(args.allowed_signers) if args.allowed_signers else None,
        keyring=Path(args.keyring) if args.keyring else None,
        report=Path(args.report) if args.report else None,
    )
    out.writelines(
        f"{term_safe(str(r.path))}: {r.outcome.upper()}: {term_safe(r.detail)}\n" for r in results
    )
    return code


def cmd_compare(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from repro.compare import compare
    from repro.merge import load_source, merge
    from repro.published import load_expected
    from repro.quorum import parse_require
    from repro.render import render
    from repro.render.safe import term_safe
    from repro.report import write_report

    if args.quorum is not None and args.quorum < 1:
        raise UsageError(f"--quorum {args.quorum}: must be at least 1")
    try:
        require = parse_require(args.require) if args.require else ()
    except ValueError as exc:
        raise UsageError(f"--require {args.require}: {exc}") from None
    keys = Path(args.keys) if args.keys else None
    if keys is not None and not keys.is_dir():
        raise UsageError(f"--keys {keys}: not a directory of public keys")
    allowed = Path(args.allowed_signers) if args.allowed_signers else None
    if allowed is not None and not allowed.is_file():
        raise UsageError(f"--allowed-signers {allowed}: no such file")
    sources = [load_source(s, include_unverified=args.include_unverified, keys=keys,
                           allowed_signers=allowed) for s in args.sources]  # fmt: skip
    err.writelines(f"note: {term_safe(n)}\n" for s in sources for n in s.notes)
    run = merge(sources, quorum=args.quorum, require=require)
    run.expected = load_expected(args.expect)
    comparison = compare(run)
    if any(s.tampered for s in sources):
        # a file changed after it was signed is a statement that does not match: exit 1
        comparison = replace(comparison, verdict="mismatch")
    if args.out:
        dest = Path(args.out) / run.run_id
        write_report(dest, run, comparison)
        err.write(f"report: {dest / 'report.md'} (and report.json)\n")
    out.write(render(args.format, run, comparison))
    return comparison.exit_code
