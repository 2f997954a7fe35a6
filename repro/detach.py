"""Builds that outlive the SSH connection: one detached supervisor per host and round runs the
steps in order, then hashes the artifacts; the controller follows it and can always reattach.

The supervisor runs in its own session and process group (setsid); each step's output goes to a
log file and its exit status to a file, all under the run's directory on the host. The
controller only ever sends short commands (launch, poll, kill), so a dropped link, a restarted
sshd or a dead controller never stops a build: whoever comes back reads the files and carries on.

Why one supervisor for the whole round rather than a launch per step: every process and every
SSH session a host starts costs (a lab of a hundred hosts shares two cores; so does a small VM),
and a playbook of quick steps then finishes in ONE round trip that also brings back every log
and the artifact hashes. Steps never depend on the controller between them (templates are
rendered before the run), so nothing is lost by not asking it.

Host-side layout in `<run_dir>/steps/`, per round `<r>` (the plan, `<r>-plan`) and per step key
`<r>-NN` (the last key of a round, `<r>-hash`, hashes the artifacts; its stderr goes to `.err`):
  <r>-plan.lock  created atomically (holding the host's clock) before launch: never run twice
  <r>-plan.pid   the supervisor's pid = the process group of every step of the round
  <r>-plan.rc    the exit status of the last step that ran, written when the supervisor ends
  <r>-plan.killed  the round was killed by `repro cancel` (a step it had not started reads so)
  <r>-plan.nap  a fifo nobody writes: the long wait naps on it with `read -t` (wait.sh)
  <key>.sh       the rendered step script (never re-quoted: an argument or an uploaded file)
  <key>.start    the host's clock (seconds since boot) when the step started, for timeouts
  <key>.pid      the supervisor's pid, written when the step starts
  <key>.lock     the step has started
  <key>.log      its stdout and stderr
  <key>.rc       its exit status, written when it ends
  <key>.killed   killed (or refused) on purpose: a timeout, Ctrl-C, `repro cancel`
  cancelled      left by `repro cancel`: no step of this run starts on this host any more
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace

from repro import hostside
from repro.errors import HostError
from repro.transport.base import Completed, Held, Transport

#: a poll waits on the host up to this long (hundredths of a second) for the step to finish, so
#: quick steps cost one round trip and a long one is looked at about once a second.
POLL_WAIT = 100
#: while a step runs, the controller's one channel to a host waits there up to this long
#: (seconds) for news before it answers anyway (`--host-wait`, `repro_host_wait`): a step that
#: ends, or vanishes, answers within about a second whatever this is. Each answer costs the host
#: a channel and 3-4 processes (docs/benchmarks.md: at 120 s that was 2.2 processes per host per
#: minute); a dead link is the keepalives' to find (20 s), a hung sshd the SSH backstop's.
HOST_WAIT = 600
#: with live output wanted (a terminal's progress, -v), a growing log answers the wait after
#: this long (seconds)
LIVE_GAP = 1
#: the most log bytes one reply brings back; a chattier step is simply followed over more polls.
LOG_CHUNK = 256 * 1024
#: the round's scripts travel in the exec request up to this size in all, quoted; larger ones
#: are uploaded first. With the ~9 KiB launcher the request stays within the 32 KiB payload
#: every SSH server must take (RFC 4253 6.1; OpenSSH takes more, dropbear does not), and far
#: below Linux's 128 KiB for the one argument the login shell gets it as.
MAX_ARG_SCRIPT = 20 * 1024
#: what an exec request may carry at most (RFC 4253's minimum payload, less the request's own
#: fields)
MAX_COMMAND = 32768 - 1024

# The host side is POSIX sh in repro/hostside/ (each file says what it expects), joined here
# once: every command is `sh -c SCRIPT NAME ARGS...`, the arguments quoted.
_LAUNCH = hostside.program("launch")
_POLL = hostside.program("poll")
_WAIT = hostside.program("wait")
#: the supervisor's own `sh -c` script: the launcher gets it as its first argument
_SUPERVISOR = hostside.program("supervisor")
_KILL = hostside.program("kill")
_KILL_ALL = hostside.program("cancel")


@dataclass(frozen=True)
class Poll:
    """One look at one step of a round."""

    key: str
    exit_status: int | None  # None while it runs (or if it vanished)
    alive: bool  # it runs, or waits for its turn under a live supervisor
    started: bool
    killed: bool  # killed on purpose (`repro cancel`, a timeout, Ctrl-C)
    size: int  # the log's size on the host
    data: bytes  # log bytes from the offset asked for
    next_offset: int
    elapsed: float | None  # host clock: seconds since the step started
    no_space: bool = False  # it failed, and the run dir's filesystem was full when it ended

    @property
    def chunk(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    @property
    def vanished(self) -> bool:
        """Not running and no exit status: killed (on purpose or from outside), refused by a
        cancelled run, or the host rebooted."""
        return not self.alive and self.exit_status is None

    @property
    def done(self) -> bool:
        """Ended, and all of its log has been read."""
        return self.exit_status is not None and self.next_offset >= self.size

    def __repr__(self) -> str:
        return f"Poll({self.key}, rc={self.exit_status}, alive={self.alive}, size={self.size})"


@dataclass(frozen=True)
class Reply:
    """The state of a round from one step on: a Poll per step reported, in order.

    The first is the step asked for; each further one follows a step that ended with status 0
    and whose whole log came with it.
    """

    polls: list[Poll]
    fresh: bool  # this call launched the round (False: it was launched already)
    # asked with hold: the round is over and the host waits, alive, for the run's verdict on
    # its run dir (reply.sh's `held`; repro/gc.py sends it)
    held: Held | None = None


def _sh(script: str, *args: str | int) -> str:
    """`sh -c` running `script` with `args`, every word quoted."""
    return " ".join(["sh", "-c", shlex.quote(script), "repro"] + [shlex.quote(str(a)) for a in args])


def scripts_fit(scripts: list[str]) -> bool:
    """Whether a round's scripts can travel as arguments of the launch (else: upload first)."""
    # quoted: a script of single quotes grows fivefold ('"'"' for each)
    size = sum(len(shlex.quote(s).encode()) + 1 for s in scripts)
    return size <= MAX_ARG_SCRIPT and not any("\0" in s for s in scripts)


async def launch(
    transport: Transport,
    step_dir: str,
    plan: str,
    work_dir: str,
    keys: list[str],
    scripts: list[str] | None,
    *,
    wait: int = POLL_WAIT,
    hold: bool = False,
) -> Reply:
    """Launch a round detached (never twice) and report it after waiting up to `wait`.

    `scripts` (one per key) travel with the command; None means they were uploaded already
    as `<step_dir>/<key>.sh` (see `scripts_fit`). With `hold`, a reply that ends the round
    comes with a `Held` (Reply.held).
    """
    _plain(step_dir, work_dir)
    how = "arg" if scripts is not None else "files"
    args: list[str | int] = [step_dir, plan, work_dir, wait, LOG_CHUNK, how, int(hold)]
    cmd = _sh(_LAUNCH, _SUPERVISOR, *args, len(keys), *keys, *(scripts or ()))
    res, held = await _exchange(transport, cmd, 60 + wait / 100, hold)
    what = f"could not launch the steps in {work_dir}"
    reply = await _parse_held(transport, res, held, cmd, 0, what)
    if reply is None:  # a log grew between `wc` and `cat`: ask again, a `head -c` per log
        return await poll(transport, step_dir, plan, keys, 0, 0, wait=0, exact=True, hold=hold)
    return reply


async def poll(
    transport: Transport,
    step_dir: str,
    plan: str,
    keys: list[str],
    index: int,
    offset: int,
    *,
    wait: int = POLL_WAIT,
    exact: bool = False,
    news: tuple[int, int] | None = None,
    hold: bool = False,
) -> Reply:
    """Look at a round from `keys[index]` on (its log from `offset`); with `news` (bound, gap)
    it is a `wait`."""
    _plain(step_dir)
    at = (step_dir, plan, index + 1, offset)
    if news is None:
        cmd = _sh(_POLL, *at, wait, LOG_CHUNK, int(exact), int(hold), *keys)
        timeout = 60 + wait / 100
    else:
        cmd = _sh(_WAIT, *at, *news, LOG_CHUNK, int(hold), *keys)
        timeout = 60 + news[0]
    res, held = await _exchange(transport, cmd, timeout, hold)
    what = f"could not read the state of {keys[index]}"
    reply = await _parse_held(transport, res, held, cmd, offset, what)
    if reply is None:
        if exact:
            raise HostError(
                f"the log of {keys[index]} changed size while it was read (truncated?)",
                host=transport.host.name,
                command=cmd,
            )
        return await poll(
            transport, step_dir, plan, keys, index, offset, wait=0, exact=True, hold=hold
        )
    return reply


async def wait(
    transport: Transport,
    step_dir: str,
    plan: str,
    keys: list[str],
    index: int,
    offset: int,
    *,
    bound: int = HOST_WAIT,
    gap: int = 0,
    hold: bool = False,
) -> Reply:
    """Like `poll`, but the host answers only when `keys[index]` ends or is gone, its log grows
    past `offset` (after `gap` seconds; 0: growth does not end the wait), or `bound` seconds
    pass. It costs the host no process per check (repro/hostside/wait.sh)."""
    news = (max(1, bound), max(0, gap))
    return await poll(transport, step_dir, plan, keys, index, offset, news=news, hold=hold)


async def _exchange(
    transport: Transport, cmd: str, timeout: float, hold: bool
) -> tuple[Completed, Held | None]:
    if hold:
        return await transport.run_held(cmd, timeout=timeout)
    return await transport.run(cmd, timeout=timeout), None


async def _parse_held(
    transport: Transport, res: Completed, held: Held | None, cmd: str, offset: int, what: str
) -> Reply | None:
    """`_parse`, and the held command in the Reply; dropped when the reply is not good."""
    try:
        reply = _parse(transport, res, cmd, offset, what)
    except BaseException:
        if held is not None:
            await held.drop()
        raise
    if held is None:
        return reply
    if reply is None:  # not used: the command reads end of file and keeps the run dir
        await held.drop()
        return None
    return replace(reply, held=held)


def _parse(
    transport: Transport, res: Completed, cmd: str, offset: int, what: str
) -> Reply | None:
    """The reply's Polls; None when the log bytes do not add up to what the headers say."""
    raw = res.stdout_bytes
    first, _, rest = raw.partition(b"\n")
    if not first.startswith(b"repro-plan ") or res.exit_status != 0:
        detail = (res.stderr or res.stdout).strip()[-300:]
        raise HostError.of(what, res, f"exit {res.exit_status}: {detail}", host=transport.host.name)
    top = _fields(first)
    count = _int(top.get("n"), 0)
    if count < 1:  # the step asked about is always reported: anything else would loop forever
        raise HostError(f"{what}: garbled reply (no step reported)", host=transport.host.name)
    now = _int(top.get("now"), -1)
    heads = []
    for _ in range(count):
        line, _, rest = rest.partition(b"\n")
        if not line.startswith(b"repro-poll "):
            raise HostError(f"{what}: garbled reply", host=transport.host.name, command=cmd)
        heads.append(_fields(line))
    if sum(max(0, _int(h.get("take"), 0)) for h in heads) != len(rest):
        return None
    polls = []
    for n, h in enumerate(heads):
        start = offset if n == 0 else 0
        take = max(0, _int(h.get("take"), 0))
        data, rest = rest[:take], rest[take:]
        rc = h.get("rc", "-")
        t0 = _int(h.get("t0"), -1)
        polls.append(
            Poll(
                key=h.get("key", ""),
                exit_status=int(rc) if rc != "-" and rc.lstrip("-").isdigit() else None,
                alive=h.get("alive") == "1",
                started=h.get("started") == "1",
                killed=h.get("killed") == "1",
                size=_int(h.get("size"), 0),
                data=data,
                next_offset=start + take,
                elapsed=float(now - t0) if t0 >= 0 and now >= 0 else None,
                no_space=h.get("nospace") == "1",
            )
        )
    return Reply(polls, top.get("fresh") == "1")


def _plain(*paths: str) -> None:
    # The host-side lists are one path per line; the runner's paths never hold a newline.
    if any("\n" in p for p in paths):
        raise ValueError(f"a path with a newline: {paths!r}")


def _fields(line: bytes) -> dict[str, str]:
    text = line.decode("ascii", errors="replace")
    return dict(kv.split("=", 1) for kv in text.split()[1:] if "=" in kv)


async def kill(
    transport: Transport, step_dir: str, key: str, *, grace: int = 5, plan: str = ""
) -> None:
    """Kill the step's whole process group on the host: TERM, then KILL after `grace` seconds.

    With `plan`, a step its round's supervisor has not reached yet is stopped too (the
    supervisor's group is killed, so the step never starts).
    """
    await transport.run(_sh(_KILL, step_dir, key, grace, plan), timeout=grace + 30)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


async def kill_all(transport: Transport, steps_dir: str, *, grace: int = 5) -> list[str]:
    """Cancel a run on one host (`repro cancel`): no step starts any more, every running one is
    killed. Returns the keys of the steps killed."""
    res = await transport.run(_sh(_KILL_ALL, steps_dir, grace), timeout=grace * 20 + 60)
    if res.exit_status != 0:
        raise HostError(
            f"could not mark {steps_dir} cancelled: {res.stderr.strip()[-300:]}",
            host=transport.host.name,
            exit_status=res.exit_status,
        )
    return [ln for ln in res.stdout.split() if ln]
