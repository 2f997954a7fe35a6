"""One `repro run` from start to finish: validate all input, plan, run, compare, write the report.

Everything that can be wrong with the input is found in `prepare` before a directory is created
or a host is contacted (exit 2, nothing written). The plan is saved as `run.json` in the run's
report directory so `repro run --resume RUN_ID` and `repro cancel RUN_ID` can reattach later.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from repro import variations
from repro.attribution import masked
from repro.compare import Comparison, compare
from repro.errors import Aborted, InventoryError, ReportError, ReportWriteError, UsageError
from repro.events import Listener, ignore
from repro.explain import WhyOptions, explain, record_paths
from repro.inventory import Host, load_inventory, select
from repro import secrets as repro_secrets
from repro.playbook import Playbook, RenderedStep, load_playbook, render, used_vars
from repro.report import write_report
from repro.results import RunResult
from repro.runlock import RunLock
from repro.runner import HostPlan, RunOptions, Runner, close_held, utcnow
from repro.source import resolve_ref
from repro.store import RUN_ID_RE, RunDir, atomic_write, new_run_id
from repro.transport import TRANSPORTS, make_transport
from repro.transport.base import Held, Transport

#: /2: the hosts run a round under one supervisor (repro.detach); a run started by a repro that
#: launched steps one by one (/1) must not be resumed by this one: it could start a step twice.
PLAN_SCHEMA = "repro-run/2"
OLD_PLAN_SCHEMA = "repro-run/1"
#: signals that stop a run the way Ctrl-C does: report written, exit 130
ABORT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Prepared:
    """A validated run, ready to start: nothing has been written or contacted yet."""

    run_id: str
    playbook: Playbook
    plans: list[HostPlan]
    out_dir: Path
    variables: dict[str, Any]
    commit: str | None
    inventory_path: str
    limit: str | None
    transport: str | None = None
    options: RunOptions = field(default_factory=RunOptions)
    history: Path | None = None  # the history file; None: <out_dir>/history.sqlite
    notes: list[str] = field(default_factory=list)  # what the run's ending wants said
    expected: dict[str, str] = field(default_factory=dict)  # published hashes (--expect)
    #: names given with --secret (secret whatever the playbook says)
    secret_names: tuple[str, ...] = ()
    #: the run's original start, kept across --resume
    started_at: str | None = None
    #: set when the run ended, unless aborted: nothing is left to resume
    finished_at: str | None = None
    #: the signal that aborted the run (SIGINT, SIGTERM, SIGHUP), if one did
    aborted: str | None = None
    vary: tuple[str, ...] = ()  # --vary axes (repro.variations)
    why: WhyOptions = field(default_factory=WhyOptions)  # fetch + diffoscope on a mismatch
    warnings: tuple[str, ...] = ()  # Ansible settings the inventory has that repro ignores

    @property
    def all_secret_names(self) -> tuple[str, ...]:
        return (*self.playbook.secrets, *self.secret_names)

    @property
    def store(self) -> RunDir:
        return RunDir.of(self.out_dir, self.run_id)

    @property
    def report_dir(self) -> Path:
        return self.store.path

    def __repr__(self) -> str:
        return f"Prepared({self.run_id!r}, {len(self.plans)} hosts)"


def prepare(
    *,
    inventory: str | Path | list[str],
    playbook: str | Path,
    extra_vars: dict[str, Any],
    limit: str | None = None,
    ref: str | None = None,
    out_dir: str | Path = "reports",
    transport: str | None = None,
    options: RunOptions | None = None,
    run_id: str | None = None,
    secret_vars: dict[str, Any] | None = None,
    vary: tuple[str, ...] = (),
    why: WhyOptions | None = None,
    inventory_via: str = "auto",
) -> Prepared:
    """Load and check everything; render every step for every host. Raises InputError (exit 2).

    `secret_vars` (--secret) are extra vars whose values are secret (repro.secrets)."""
    if transport is not None and transport not in TRANSPORTS:
        raise UsageError(f"--transport {transport!r}: choose {' or '.join(TRANSPORTS)}")
    pb = load_playbook(playbook)
    variables = dict(extra_vars) | dict(secret_vars or {})
    secret_names = tuple(sorted(secret_vars or {}))
    commit = None
    if ref is not None:
        repo_url = variables.get("repo_url", pb.vars.get("repo_url"))
        if not isinstance(repo_url, str) or not repo_url:
            raise UsageError(
                f"--ref needs a repository: playbook {pb.path} has no repo_url (set -e repo_url=...)"
            )
        commit = resolve_ref(repo_url, ref)
        variables["ref"] = ref
        variables["commit"] = commit
    elif isinstance(variables.get("commit"), str):
        commit = resolve_ref(
            str(variables.get("repo_url", pb.vars.get("repo_url", ""))), variables["commit"]
        )
        variables["commit"] = commit
    rid = run_id or new_run_id()
    inv = load_inventory(inventory, variables, via=inventory_via)
    hosts = select(inv, limit)
    if transport:
        hosts = [_with_transport(h, transport) for h in hosts]
    opts = options or RunOptions()
    hosts = _varied(hosts, vary, opts, pb)
    plans = [_plan_for(pb, h, rid, secret_names) for h in hosts]
    return Prepared(
        run_id=rid,
        playbook=pb,
        plans=plans,
        out_dir=Path(out_dir),
        variables=variables,
        commit=commit,
        inventory_path=str(inventory) if isinstance(inventory, (str, Path)) else ",".join(inventory),
        limit=limit,
        transport=transport,
        options=opts,
        secret_names=secret_names,
        vary=vary,
        why=why or WhyOptions(),
        warnings=inv.warnings,
    )


def _varied(hosts: list[Host], vary: tuple[str, ...], opts: RunOptions, pb: Playbook) -> list[Host]:
    """Apply --vary: each host's (and round's) axis values into the options; the build-path
    axis into the host's repro_work_dir."""
    if not vary:
        return hosts
    opts.variations = variations.plan(vary, [h.name for h in hosts], opts.rounds or pb.rounds)
    return [
        replace(h, vars={**h.vars, **variations.host_vars(opts.variations[h.name][0], h)})
        for h in hosts
    ]


def _plan_for(pb: Playbook, host: Host, run_id: str, secret_names: tuple[str, ...]) -> HostPlan:
    for name in used_vars(pb):
        if name in host.var_errors:  # its Jinja failed, and now it is used: bad input
            raise InventoryError(host.var_errors[name])
    values = dict(host.vars)
    values.setdefault("inventory_hostname", host.name)
    values["repro_run_id"] = run_id
    # a secret may have its value from the playbook's defaults too
    merged = {**pb.vars, **values}
    names = repro_secrets.names_for((*pb.secrets, *secret_names), merged)
    steps = render(pb, values, source=host.name, secret=names)
    shown = {n: merged[n] for n in names if merged.get(n) is not None}
    for n, v in shown.items():
        if problem := repro_secrets.check_value(n, str(v)):
            raise UsageError(f"host {host.name}: {problem}")
    return HostPlan(host, steps, {n: str(_scalar(v)) for n, v in shown.items()})


def _scalar(value: Any) -> Any:
    # how a boolean renders in a step (playbook._scalar_text); other scalars as str() does
    return ("true" if value else "false") if isinstance(value, bool) else value


def masker(prep: Prepared) -> repro_secrets.Masker:
    """Masks every secret value of every host of the run."""
    return repro_secrets.Masker(v for p in prep.plans for v in p.secrets.values())


def _masked_host(plan: HostPlan) -> dict[str, Any]:
    data = _host_record(plan.host)
    data["vars"] = repro_secrets.masked_vars(plan.host.vars, plan.secrets)
    return data | {"steps": [asdict(s) for s in plan.steps], "secrets": sorted(plan.secrets)}


def _with_transport(host: Host, transport: str) -> Host:
    return host if host.connection == "local" else replace(host, transport=transport)


def save_plan(prep: Prepared) -> None:
    """Write run.json atomically: what `--resume` and `cancel` need to find the run again."""
    data = {
        "schema": PLAN_SCHEMA,
        "run_id": prep.run_id,
        "playbook_path": str(Path(prep.playbook.path).resolve()),
        "inventory_path": str(Path(prep.inventory_path).resolve()),
        "limit": prep.limit,
        "variables": repro_secrets.masked_vars(prep.variables, prep.all_secret_names),
        "secret_names": list(prep.secret_names),
        "started_at": prep.started_at,
        "finished_at": prep.finished_at,
        "commit": prep.commit,
        "transport": prep.transport,
        "rounds": prep.options.rounds,
        "vary": list(prep.vary),
        "hosts": [_masked_host(p) for p in prep.plans],
    }
    # Secret values are masked above, but the plan is still nobody else's business: 0600.
    text = masker(prep).text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    atomic_write(prep.store.plan, text, mode=0o600)


def _host_record(host: Host) -> dict[str, Any]:
    """A host as run.json keeps it: what connecting and running need, not the inventory's
    as-written values and their origins (those are for `repro inventory`)."""
    record = asdict(host)
    for key in ("raw_vars", "origins", "var_errors", "warnings"):
        record.pop(key, None)
    return record


def load_plan(
    out_dir: str | Path,
    run_id: str,
    *,
    options: RunOptions | None = None,
    to_cancel: bool = False,
    secret_vars: dict[str, Any] | None = None,
) -> Prepared:
    """Rebuild a Prepared run from its run.json (for --resume and, `to_cancel`, for cancel:
    that also takes a run of the previous plan schema, whose host-side files it can kill)."""
    if not RUN_ID_RE.match(run_id):
        raise UsageError(f"run id {run_id!r} is not of the form 20261125T194203Z-1a2b3c")
    path = RunDir.of(out_dir, run_id).plan
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: no such run (looked for its run.json)") from exc
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read: {exc}") from exc
    if isinstance(data, dict) and data.get("schema") == OLD_PLAN_SCHEMA and to_cancel:
        data["schema"] = PLAN_SCHEMA
    if isinstance(data, dict) and data.get("schema") == OLD_PLAN_SCHEMA:
        raise ReportError(
            f"{path}: this run was started by an older repro, whose hosts run steps another way; "
            "resume it with that version, or cancel it and start a new run"
        )
    if not isinstance(data, dict) or data.get("schema") != PLAN_SCHEMA:
        raise ReportError(f"{path}: not a repro run plan ({PLAN_SCHEMA})")
    if data.get("finished_at") and not to_cancel:
        raise UsageError(
            f"run {run_id} finished at {data['finished_at']}: nothing to resume "
            f"(its report: repro report {path.parent})"
        )
    pb = load_playbook(data["playbook_path"])
    plans = []
    for h in data["hosts"]:
        steps = [RenderedStep(**s) for s in h.pop("steps")]
        # Only the names were saved: the values are on the hosts already (sent before their
        # first round), or come again with --secret.
        names = h.pop("secrets", [])
        h["groups"] = tuple(h.get("groups", ()))
        again = {n: str(v) for n, v in (secret_vars or {}).items() if n in names}
        plans.append(HostPlan(Host(**h), steps, {n: again.get(n, "") for n in names}))
    opts = options or RunOptions()
    if data.get("rounds"):
        opts.rounds = int(data["rounds"])
    vary = tuple(variations.parse(",".join(data.get("vary") or [])))
    if vary:  # the hosts' vars already hold their build paths; the rounds need their values
        opts.variations = variations.plan(
            vary, [p.host.name for p in plans], opts.rounds or pb.rounds
        )
    return Prepared(
        run_id=run_id,
        playbook=pb,
        plans=plans,
        out_dir=Path(out_dir),
        variables=data.get("variables") or {},
        commit=data.get("commit"),
        inventory_path=data.get("inventory_path", ""),
        limit=data.get("limit"),
        transport=data.get("transport"),
        options=opts,
        secret_names=tuple(data.get("secret_names") or ()),
        started_at=data.get("started_at"),
        vary=vary,
    )


def execute(
    prep: Prepared,
    *,
    listener: Listener = ignore,
    transport_factory: Callable[[Host], Transport] = make_transport,
    formats: tuple[str, ...] | None = None,
    on_runner: Callable[[Runner], None] | None = None,
) -> tuple[RunResult, Comparison]:
    """Run a prepared plan (synchronously, in a fresh event loop) and write its report."""
    return asyncio.run(
        execute_async(
            prep,
            listener=listener,
            transport_factory=transport_factory,
            formats=formats,
            on_runner=on_runner,
        )
    )


async def execute_async(
    prep: Prepared,
    *,
    listener: Listener = ignore,
    transport_factory: Callable[[Host], Transport] = make_transport,
    formats: tuple[str, ...] | None = None,
    on_runner: Callable[[Runner], None] | None = None,
) -> tuple[RunResult, Comparison]:
    try:
        prep.report_dir.mkdir(parents=True, exist_ok=True)
        prep.report_dir.chmod(0o700)  # the run's own state (run.json, logs): its owner's only
    except OSError as e:
        raise ReportWriteError(f"{prep.report_dir}: cannot make the run's directory: {e.strerror}")
    with RunLock(prep.report_dir, prep.run_id):
        return await _locked(prep, listener, transport_factory, formats, on_runner)


async def _locked(
    prep: Prepared,
    listener: Listener,
    transport_factory: Callable[[Host], Transport],
    formats: tuple[str, ...] | None,
    on_runner: Callable[[Runner], None] | None,
) -> tuple[RunResult, Comparison]:
    prep.started_at = prep.started_at or utcnow()  # a resumed run keeps its first start
    _save_plan_or_fail(prep)
    runner = Runner(
        prep.playbook,
        prep.plans,
        run_id=prep.run_id,
        report_dir=prep.store,
        transport_factory=transport_factory,
        listener=listener,
        # connections stay open for the run's ending when every host is worked on at once
        # anyway (no more connections at a time than the run itself had)
        options=replace(
            prep.options, hold=(prep.options.forks or len(prep.plans)) >= len(prep.plans)
        ),
        variables=repro_secrets.masked_vars(prep.variables, prep.all_secret_names),
        commit=prep.commit,
        masker=masker(prep),
    )
    runner.result.started_at = prep.started_at
    for plan, host in zip(prep.plans, runner.result.hosts):
        secret = (*prep.all_secret_names, *plan.secrets)
        host.variables = runner.masker.obj(masked({**prep.playbook.vars, **plan.host.vars}, secret))
        host.variations = prep.options.variations.get(host.name, [])
    if on_runner:
        on_runner(runner)
    loop = asyncio.get_running_loop()
    installed = []

    def abort(sig: signal.Signals) -> None:
        prep.aborted = prep.aborted or sig.name
        # SIGHUP (the terminal went away): the builds go on, detached, for --resume; Ctrl-C
        # and SIGTERM stop them (every host kills its running step's process group).
        runner.cancel(kill=sig != signal.SIGHUP)

    # Every abort still writes the report with what was gathered. Only in the main thread,
    # where asyncio can install handlers.
    for sig in ABORT_SIGNALS:
        try:
            loop.add_signal_handler(sig, abort, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    # A listener that wants to redraw on its own (the live terminal view) gets a ticker.
    tick = getattr(listener, "tick", None)
    ticker = asyncio.ensure_future(tick()) if callable(tick) else None
    try:
        try:
            result = await runner.run()
        finally:
            if ticker:
                ticker.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)
        result.expected = dict(prep.expected)
        comparison = compare(result)
        record_paths(result, prep.playbook)
        if comparison.verdict == "mismatch" and prep.why.enabled and not prep.aborted:
            try:
                comparison = await explain(
                    result,
                    comparison,
                    playbook=prep.playbook,
                    hosts={p.host.name: p.host for p in prep.plans},
                    run_dir=prep.report_dir,
                    transport_factory=transport_factory,
                    listener=listener,
                    options=replace(prep.why, mask=repro_secrets.report_mask(runner.masker)),
                )
            except Exception as exc:  # the verdict and every hash stand: the report is written
                why = f"could not explain the difference ({type(exc).__name__}: {exc})"
                comparison = replace(comparison, reasons=(*comparison.reasons, why[:300]))
        try:
            write_report(prep.report_dir, result, comparison, formats=formats)
        except ReportWriteError as exc:
            exc.outcome = (result, comparison)  # what was gathered can still be shown
            raise

        def reuse(host: Host) -> Transport:  # the run's own connection, while it is open
            return runner.held.pop(host.name, None) or transport_factory(host)

        await _after(prep, result, comparison, reuse, runner.finals)
    finally:
        await close_held(runner)
    if prep.aborted:
        raise Aborted(_aborted_message(prep), outcome=(result, comparison))
    prep.finished_at = result.finished_at  # a --resume of it now has nothing to do
    _save_plan_or_fail(prep)
    return result, comparison


def _save_plan_or_fail(prep: Prepared) -> None:
    try:
        save_plan(prep)
    except OSError as e:
        raise ReportWriteError(
            f"{e.filename or prep.report_dir}: cannot write the run's plan: {e.strerror}"
        ) from e


def _aborted_message(prep: Prepared) -> str:
    """What a signal did to the run, and to the builds on the hosts."""
    where = f"the report of what was gathered is in {prep.report_dir}"
    if prep.aborted == "SIGHUP":
        return (
            f"stopped following by SIGHUP; the builds go on on the hosts (repro run --resume "
            f"{prep.run_id} --out {prep.out_dir} follows them again); {where}"
        )
    return f"aborted by {prep.aborted}; the running steps were killed on the hosts; {where}"


async def _after(
    prep: Prepared,
    result: RunResult,
    comparison: Comparison,
    transport_factory: Callable[[Host], Transport],
    finals: dict[str, Held] | None = None,
) -> None:
    """Record the run in the history and clean its work dirs per the hosts' retention; neither
    changes the verdict, so a failure is a note for the person, not an error. `finals`: the
    hosts' last replies, held open for the verdict (taken from it as they are answered)."""
    from repro import gc, history
    from repro.schema import to_dict

    try:
        history.record_run(
            prep.history or history.default_path(prep.out_dir),
            to_dict(result, comparison),
            prep.report_dir.resolve(),
        )
    except history.HistoryError as exc:
        prep.notes.append(f"not recorded in the history: {exc}")
    prep.notes.extend(await gc.after_run(prep, result, comparison, transport_factory, finals))
