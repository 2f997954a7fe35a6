"""Steps that outlive the SSH connection: start detached on the host, then follow and reattach.

Each step runs in its own session and process group (setsid) with output to a log file and its
exit status written to a file, all under the run's directory on the host. The controller only
ever sends short commands (start, poll, kill), so a dropped link, a restarted sshd or a dead
controller never stops a build: whoever comes back reads the files and carries on.

Host-side layout, per step `<key>` (e.g. `1-03` for round 1, step 3) in `<run_dir>/steps/`:
  <key>.sh     the rendered step script (sent on stdin: never re-quoted)
  <key>.lock   created atomically before launch: a step is never started twice
  <key>.pid    the process group leader's pid (= the group id)
  <key>.start  the host's clock (epoch seconds) when the step started, for timeouts on resume
  <key>.log    stdout and stderr
  <key>.rc     the exit status, written (atomically) when the step ends
  <key>.killed the step was killed (or refused) on purpose: a timeout, Ctrl-C, `repro cancel`
  cancelled    left by `repro cancel`: no step of this run starts on this host any more
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from repro.transport.base import Completed, Transport

#: a poll waits on the host up to this long (hundredths of a second) for the step to finish, so
#: a quick step costs one round trip and a long one is looked at about once a second.
POLL_WAIT = 100
#: the most log bytes one poll brings back; a chattier step is simply followed over more polls.
LOG_CHUNK = 256 * 1024
#: a step script up to this size travels as an argument of the exec request (Linux takes one
#: argument of up to 128 KiB); a larger one goes on stdin
MAX_ARG_SCRIPT = 64 * 1024

# Every process a host starts costs: on a small host, or a lab of a hundred on one machine, a
# `cat` per fact adds up. So these scripts use shell builtins (`read`, `printf`, tests,
# noclobber redirections) wherever one will do; a quick step costs the launcher about four
# processes besides the step itself (cat, setsid's sh, one nap, head).
#
# Helpers shared by the launcher and the poll. The clock is seconds since boot from
# /proc/uptime (read, no `date` process); a step never outlives a reboot, so start and now
# always share it. `rd FILE` puts the file's first line in $v (empty if none).
_LIB = r"""
rd() { v=; [ -s "$1" ] && IFS= read -r v < "$1"; return 0; }
clock() { if IFS=' ' read -r now _ < /proc/uptime 2>/dev/null; then now=${now%.*}; else now=$(date +%s); fi; }
# A zombie answers kill -0 until its new parent reaps it; it counts as gone.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ -r "/proc/$1/status" ] || return 0
  while read -r key val _; do
    if [ "$key" = State: ]; then [ "$val" != Z ]; return; fi
  done < "/proc/$1/status"
  return 0
}
"""

# What every look at a step ends with: wait (bounded) for it to finish, then one header line
# and the log from the offset. Expects d, k, off, wt (wait, hundredths of a second), chunk.
# Naps start short, so a step that takes a few milliseconds costs one round trip and ~20 ms,
# and a long one is looked at about once a second. Liveness is read BEFORE the rc file: a step
# that ends in between is seen as finished, never as vanished.
_STATE = r"""
# Running = the pid is alive, or the launcher has not written it yet (the first 30 s).
running() {
  if [ -s "$d/$k.pid" ]; then rd "$d/$k.pid"; alive "$v"; return; fi
  [ -e "$d/$k.lock" ] || return 1
  [ ! -e "$d/$k.killed" ] || return 1  # refused by a cancelled run: never launched
  rd "$d/$k.start"; [ -n "$v" ] || return 0
  clock; [ $((now - v)) -lt 30 ]
}
n=0
while [ ! -s "$d/$k.rc" ] && [ $n -lt "$wt" ] && running; do
  if [ $n -lt 20 ]; then sleep 0.02; n=$((n + 2)); else sleep 0.1; n=$((n + 10)); fi
done
alive=0; running && alive=1
rc=-; rd "$d/$k.rc"; [ -n "$v" ] && rc=$v
started=0; [ -e "$d/$k.lock" ] && started=1
killed=0; [ -e "$d/$k.killed" ] && killed=1
t0=-; rd "$d/$k.start"; [ -n "$v" ] && t0=$v
if [ "$fresh" = 1 ] && [ "$rc" != - ]; then
  # A step that ended while its launcher waited: send up to a chunk of its log without
  # measuring it first (no `wc`); the controller can tell whether that was all of it.
  size=-1; want=$chunk; [ -s "$d/$k.log" ] || want=0
else
  size=0; [ -s "$d/$k.log" ] && size=$(($(wc -c < "$d/$k.log")))
  want=$((size - off)); [ $want -gt "$chunk" ] && want=$chunk; [ $want -lt 0 ] && want=0
fi
clock
echo "repro-poll rc=$rc alive=$alive started=$started killed=$killed size=$size take=$want t0=$t0 now=$now fresh=$fresh"
if [ $want -gt 0 ]; then
  if [ "$off" -eq 0 ]; then head -c $want -- "$d/$k.log"
  else tail -c +$((off + 1)) -- "$d/$k.log" | head -c $want; fi
fi
exit 0
"""

# The launcher. $1 step dir, $2 key, $3 work dir, $4 wait (hundredths), $5 chunk, $6 how the
# script comes: `arg` (it is $7: the exec request carries the whole command line or nothing,
# so it can never arrive cut short; no `cat` either) or `stdin` (large scripts; $7 is the
# marker line the controller appended, and a script without it as its last line arrived
# truncated, so it must never run, nor hold the lock, and the controller's retry starts the
# step afresh). The lock is created with noclobber (O_EXCL): if it exists the step was already
# started (e.g. the reply to an earlier start was lost with the connection): it is never
# started twice, and this simply reports its state. Once `repro cancel` has left `cancelled`
# in the step dir, no step of the run starts any more, whichever controller asks (a host
# still waiting for its turn, the next step, a --resume).
_START = (
    r"""
set -u
d=$1; k=$2; w=$3; wt=$4; chunk=$5; how=$6; off=0; fresh=0
{ [ -d "$d" ] && [ -d "$w" ]; } || mkdir -p -- "$d" "$w" || exit 90
t="$d/.$k.sh.$$"
if [ "$how" = arg ]; then
  printf '%s\n' "$7" > "$t" || exit 91
else
  cat > "$t" || { rm -f -- "$t"; exit 91; }
  last=
  while IFS= read -r line || [ -n "$line" ]; do last=$line; done < "$t"
  if [ "$last" != "$7" ]; then
    rm -f -- "$t"; echo "repro: step script arrived truncated; not started" >&2; exit 93
  fi
fi
set -C
if [ -e "$d/cancelled" ] && { true > "$d/$k.lock"; } 2>/dev/null; then
  # `repro cancel` came first: the step is marked started and killed, and never launched.
  set +C
  rm -f -- "$t"
  echo cancelled > "$d/$k.killed"
elif { true > "$d/$k.lock"; } 2>/dev/null; then
  set +C
  fresh=1
  clock; echo "$now" > "$d/$k.start"
  # setsid: own session and process group, so a lost connection sends it no SIGHUP and a
  # timeout or cancel can kill the whole group. The inner sh records the group id first;
  # pid and rc are written in one `echo` each and read only when non-empty.
  (cd -- "$w" && exec setsid sh -c 'echo $$ > "$1/$2.pid"
    sh -- "$3"; rc=$?
    echo $rc > "$1/$2.rc"' repro-step "$d" "$k" "$t" > "$d/$k.log" 2>&1 < /dev/null) &
else
  set +C
  rm -f -- "$t"
fi
"""
    + _STATE
)

# The poll. $1 step dir, $2 key, $3 log offset, $4 wait (hundredths), $5 chunk size.
_POLL = (
    r"""
d=$1; k=$2; off=$3; wt=$4; chunk=$5; fresh=0
"""
    + _STATE
)

# The kill. $1 step dir, $2 key, $3 grace seconds. TERM the group, then KILL what is left.
_KILL = r"""
d=$1; k=$2
[ -s "$d/$k.pid" ] || { echo none; exit 0; }
rd "$d/$k.pid"; g=$v
# The marker goes first: a poll that sees the step gone must also see why.
[ -s "$d/$k.rc" ] || echo killed > "$d/$k.killed"
# dash's kill takes no `--`; "-$g" after the signal is read as a process group.
kill -TERM "-$g" 2>/dev/null
i=0
while kill -0 "-$g" 2>/dev/null && [ $i -lt $(($3 * 10)) ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "-$g" 2>/dev/null
echo done
"""


@dataclass(frozen=True)
class Poll:
    """One look at a detached step."""

    exit_status: int | None  # None while it runs (or if it vanished)
    alive: bool
    started: bool
    killed: bool  # killed on purpose (`repro cancel`, a timeout, Ctrl-C)
    size: int  # the log's size on the host
    chunk: str  # log text from the offset asked for
    next_offset: int
    elapsed: float | None  # host clock: seconds since the step started
    fresh: bool = False  # this call started the step (False: it was already started)

    @property
    def vanished(self) -> bool:
        """Started, not running, and no exit status: killed from outside or the host rebooted."""
        return self.started and not self.alive and self.exit_status is None

    def __repr__(self) -> str:
        return f"Poll(rc={self.exit_status}, alive={self.alive}, size={self.size})"


def _sh(script: str, *args: str | int) -> str:
    return (
        "sh -c "
        + shlex.quote(_LIB + script)
        + " repro "
        + " ".join(shlex.quote(str(a)) for a in args)
    )


async def start(
    transport: Transport,
    step_dir: str,
    key: str,
    work_dir: str,
    script: str,
    *,
    wait: int = POLL_WAIT,
) -> Poll:
    """Start a step detached (never twice) and return its state after waiting up to `wait`."""
    if len(script.encode()) <= MAX_ARG_SCRIPT and "\0" not in script:
        cmd = _sh(_START, step_dir, key, work_dir, wait, LOG_CHUNK, "arg", script)
        data = None
    else:
        # Too long for one argument: on stdin, with a marker that must come last, so the
        # host runs the script only if it arrived whole.
        mark = f"# repro: end of step {key}"
        data = (script.rstrip("\n") + "\n" + mark + "\n").encode()
        cmd = _sh(_START, step_dir, key, work_dir, wait, LOG_CHUNK, "stdin", mark)
    res = await transport.run(cmd, stdin=data, timeout=60 + wait / 100)
    return _parse(transport, res, cmd, key, 0, f"could not start step {key} in {work_dir}")


async def poll(
    transport: Transport, step_dir: str, key: str, offset: int, *, wait: int = POLL_WAIT
) -> Poll:
    """Look at a step: exit status if finished, and the log from `offset` on."""
    cmd = _sh(_POLL, step_dir, key, offset, wait, LOG_CHUNK)
    res = await transport.run(cmd, timeout=60 + wait / 100)
    return _parse(transport, res, cmd, key, offset, f"could not read the state of step {key}")


def _parse(
    transport: Transport, res: Completed, cmd: str, key: str, offset: int, what: str
) -> Poll:
    header, _, chunk = res.stdout.partition("\n")
    if not header.startswith("repro-poll ") or res.exit_status != 0:
        from repro.errors import HostError

        detail = (res.stderr or res.stdout).strip()[-300:]
        raise HostError(
            f"{what}: exit {res.exit_status}: {detail}",
            host=transport.host.name,
            command=cmd,
            exit_status=res.exit_status,
            tail=res.stderr[-2000:],
        )
    fields = dict(kv.split("=", 1) for kv in header.split()[1:] if "=" in kv)
    rc = fields.get("rc", "-")
    take = _int(fields.get("take"), 0)
    size = _int(fields.get("size"), 0)
    if size < 0:
        # The launcher sent up to `take` bytes of a finished step's log without measuring it.
        # Decoding never turns fewer than one byte into a character, nor more than four, so
        # a text this short cannot have been cut at `take`: it is the whole log. Otherwise
        # drop it and let a measured poll read from the start.
        if len(chunk) * 4 < take:
            size = offset + len(chunk.encode("utf-8", "replace"))
            take = size - offset
        else:
            chunk, take, size = "", 0, offset + 1
    t0, now = _int(fields.get("t0"), -1), _int(fields.get("now"), -1)
    return Poll(
        exit_status=int(rc) if rc != "-" and rc.lstrip("-").isdigit() else None,
        alive=fields.get("alive") == "1",
        started=fields.get("started") == "1",
        killed=fields.get("killed") == "1",
        size=size,
        chunk=chunk,
        next_offset=offset + take,
        elapsed=float(now - t0) if t0 >= 0 and now >= 0 else None,
        fresh=fields.get("fresh") == "1",
    )


async def kill(transport: Transport, step_dir: str, key: str, *, grace: int = 5) -> None:
    """Kill the step's whole process group on the host: TERM, then KILL after `grace` seconds."""
    await transport.run(_sh(_KILL, step_dir, key, grace), timeout=grace + 30)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


# Cancel a run on one host: first mark it cancelled, so no step starts from now on (the
# launcher checks), then kill every step that has no exit status. A step launched a moment
# before the mark may not have written its pid yet: wait for it (bounded) rather than miss it.
# $1 steps dir, $2 grace seconds.
_KILL_ALL = r"""
d=$1
mkdir -p -- "$d" && : > "$d/cancelled" || exit 1
for l in "$d"/*.lock; do
  [ -e "$l" ] || continue
  k=${l##*/}; k=${k%.lock}
  i=0
  while [ ! -s "$d/$k.pid" ] && [ ! -s "$d/$k.rc" ] && [ ! -e "$d/$k.killed" ] && [ $i -lt 50 ]; do
    sleep 0.1; i=$((i+1))
  done
  [ -s "$d/$k.rc" ] && continue
  [ -s "$d/$k.pid" ] || continue
  rd "$d/$k.pid"; g=$v
  kill -0 "-$g" 2>/dev/null || continue
  echo cancelled > "$d/$k.killed"  # first: a poll that sees the step gone must see why
  kill -TERM "-$g" 2>/dev/null
  i=0
  while kill -0 "-$g" 2>/dev/null && [ $i -lt $(($2 * 10)) ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "-$g" 2>/dev/null
  echo "$k"
done
exit 0
"""


async def kill_all(transport: Transport, steps_dir: str, *, grace: int = 5) -> list[str]:
    """Cancel a run on one host (`repro cancel`): no step starts any more, every running one is
    killed. Returns the keys of the steps killed."""
    res = await transport.run(_sh(_KILL_ALL, steps_dir, grace), timeout=grace * 20 + 60)
    if res.exit_status != 0:
        from repro.errors import HostError

        raise HostError(
            f"could not mark {steps_dir} cancelled: {res.stderr.strip()[-300:]}",
            host=transport.host.name,
            exit_status=res.exit_status,
        )
    return [ln for ln in res.stdout.split() if ln]
