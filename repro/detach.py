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
from dataclasses import dataclass

from repro.errors import HostError
from repro.transport.base import Completed, Transport

#: a poll waits on the host up to this long (hundredths of a second) for the step to finish, so
#: quick steps cost one round trip and a long one is looked at about once a second.
POLL_WAIT = 100
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

# Shell builtins (`read`, `printf`, tests, noclobber redirections) wherever one will do: a
# quick round costs the host the supervisor, a `sh` per step, one timer, one `wc` and one `cat`.
#
# `rd FILE` puts the file's first line in $v (empty if none). The clock is seconds since boot
# from /proc/uptime (read, no `date` process); a build never outlives a reboot, so start and
# now always share it. bash as `sh` is in POSIX mode, but one called as bash is not, and only
# POSIX mode lets a trapped signal end a `wait` (the launcher's bounded wait needs that).
_LIB = r"""
[ -z "${BASH_VERSION-}" ] || set -o posix
nl='
'
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
# Is step $k running? Its supervisor is alive; or it started (lock) and the pid is not written
# yet (the first 30 s); or it was not reached yet and the round's supervisor is alive (or was
# launched less than 30 s ago and has not written its pid yet).
running() {
  if [ -s "$d/$k.pid" ]; then rd "$d/$k.pid"; alive "$v"; return; fi
  if [ -e "$d/$k.lock" ]; then
    [ ! -e "$d/$k.killed" ] || return 1
    rd "$d/$k.start"; [ -n "$v" ] || return 0
    clock; [ $((now - v)) -lt 30 ]; return
  fi
  [ ! -e "$d/$k.killed" ] && [ -e "$d/$p.lock" ] && [ ! -s "$d/$p.rc" ] || return 1
  if [ -s "$d/$p.pid" ]; then rd "$d/$p.pid"; alive "$v"; return; fi
  rd "$d/$p.lock"; [ -n "$v" ] || return 1
  clock; [ $((now - v)) -lt 30 ]
}
# Wait (naps, at most $wt hundredths of a second) while step $k runs without an exit status.
# Naps start short: a step about to end costs ~20 ms, a long one is looked at once a second.
follow() {
  n=0
  while [ ! -s "$d/$k.rc" ] && [ $n -lt "$wt" ] && running; do
    if [ $n -lt 20 ]; then sleep 0.02; n=$((n + 2)); else sleep 0.1; n=$((n + 10)); fi
  done
}
"""

# The reply: one header line for the round, one per step reported, then the steps' log bytes
# one after the other (each header says how many). Steps from the $i-th key of $keys on (its log
# from byte $off), for as long as they ended with status 0 and their whole log fits in the
# $chunk budget. Liveness is read BEFORE the rc file: a step that ends in between is seen as
# finished, never as vanished. One `wc` measures every log; when every step reported has ended,
# one `cat` sends them all (the controller checks the total against the sizes, and asks again
# with exact=1, a `head -c` per log, if something still wrote to a log after its step ended).
_REPLY = r"""
reply() {
  cnt=0; j=0; logs=
  for k in $keys; do
    j=$((j + 1)); [ $j -lt $i ] && continue
    cnt=$((cnt + 1))
    a=0; running && a=1
    rc=-; rd "$d/$k.rc"; [ -n "$v" ] && rc=$v
    s=0; [ -e "$d/$k.lock" ] && s=1
    x=0; [ -e "$d/$k.killed" ] && x=1
    # not started, and its round's supervisor was killed on purpose (`repro cancel` between
    # two steps): this step was cancelled too
    [ $s = 0 ] && [ -e "$d/$p.killed" ] && x=1
    t=-; rd "$d/$k.start"; [ -n "$v" ] && t=$v
    h=0; [ -s "$d/$k.log" ] && { h=1; logs="$logs$nl$d/$k.log"; }
    eval "K$cnt=\$k R$cnt=\$rc A$cnt=\$a S$cnt=\$s X$cnt=\$x T$cnt=\$t H$cnt=\$h"
    [ "$rc" = 0 ] || break
  done
  # lists hold one path per line (the step dir may have spaces; never a newline)
  set -f; IFS=$nl
  if [ -n "$logs" ]; then set -- $(wc -c -- $logs); else set --; fi
  c=0; left=$chunk; all=1; cats=
  while [ $c -lt $cnt ]; do
    c=$((c + 1))
    eval "k=\$K$c h=\$H$c rc=\$R$c"
    size=0
    if [ "$h" = 1 ] && [ $# -ge 1 ]; then
      size=${1#"${1%%[! ]*}"}; size=${size%%" "*}; shift
      case $size in ''|*[!0-9]*) size=0;; esac
    fi
    o=0; [ $c -eq 1 ] && o=$off
    want=$((size - o)); [ $want -lt 0 ] && want=0
    [ $want -gt $left ] && want=$left
    left=$((left - want))
    eval "Z$c=\$size W$c=\$want O$c=\$o"
    { [ $o -eq 0 ] && [ $want -eq $size ] && [ "$rc" != - ]; } || all=0
    [ $want -eq 0 ] || cats="$cats$nl$d/$k.log"
    # a step whose log is not all sent ends the reply: the next poll goes on from there
    [ $want -ge $((size - o)) ] || { cnt=$c; break; }
  done
  clock
  echo "repro-plan n=$cnt now=$now fresh=$fresh"
  c=0
  while [ $c -lt $cnt ]; do
    c=$((c + 1))
    eval "echo \"repro-poll key=\$K$c rc=\$R$c alive=\$A$c started=\$S$c killed=\$X$c size=\$Z$c take=\$W$c t0=\$T$c\""
  done
  if [ "$all" = 1 ] && [ "$exact" != 1 ]; then
    [ -z "$cats" ] || cat -- $cats
  else
    c=0
    while [ $c -lt $cnt ]; do
      c=$((c + 1))
      eval "k=\$K$c want=\$W$c o=\$O$c"
      [ "$want" -gt 0 ] || continue
      if [ "$o" -eq 0 ]; then head -c "$want" -- "$d/$k.log"
      else tail -c +$((o + 1)) -- "$d/$k.log" | head -c "$want"; fi
    done
  fi
  exit 0
}
"""

# The supervisor, in its own session (setsid): its pid is the process group of every step of
# the round, so a timeout or a cancel kills them all with one `kill`. $1 step dir, $2 plan id,
# then the keys in order. Before each step it looks for `cancelled` (left by `repro cancel`);
# after a step that failed nothing more runs.
_SUPERVISOR = r"""
# A step is its script read by a subshell of this one: a fork, without exec'ing a new shell
# (the cost that counts when a host runs many quick steps). It must not see the supervisor's
# variables or functions, so they are dropped first; only _repro_f (the script's path) stays.
step() {
  (
    _repro_f=$d/$k.sh
    # the run's secret values (a 0600 file; repro.secrets): in the environment, not the script
    [ ! -f "$d/secrets" ] || . "$d/secrets"
    unset d p k rc now v nl key val
    unset -f rd clock alive running follow step
    . "$_repro_f"
  )
}
d=$1; p=$2; shift 2
echo $$ > "$d/$p.pid"
rc=0
for k do
  if [ -e "$d/cancelled" ]; then echo cancelled > "$d/$k.killed"; rc=130; break; fi
  clock; echo "$now" > "$d/$k.start"
  echo $$ > "$d/$k.pid"
  : > "$d/$k.lock"
  case $k in
    *-hash) step > "$d/$k.log" 2> "$d/$k.err" < /dev/null; rc=$? ;;
    *) step > "$d/$k.log" 2>&1 < /dev/null; rc=$? ;;
  esac
  echo $rc > "$d/$k.rc"
  [ $rc -eq 0 ] || break
done
echo $rc > "$d/$p.rc"
# Nothing of the round outlives it: what a step left running in the background (still in this
# process group) gets SIGTERM now; `repro cancel` KILLs whatever ignores it. One syscall, no wait.
trap '' TERM
kill -TERM "-$$" 2>/dev/null
exit 0
"""

# The launcher. $1 step dir, $2 plan id, $3 work dir, $4 wait (hundredths), $5 chunk, $6 how
# the scripts come: `arg` (one argument each after the keys: the exec request carries the whole
# command line or nothing, so a script never arrives cut short) or `files` (uploaded already as
# <key>.sh), $7 the number of keys, then the keys. The plan lock is created with noclobber
# (O_EXCL): if it exists the round was already launched (the reply to an earlier launch was
# lost with the connection, or this is --resume) and this simply reports its state. The
# supervisor is this shell's child, so a quick round is waited for with `wait`, bounded by a
# timer whose SIGCHLD also ends the wait: no naps, no polling.
_LAUNCH = (
    r"""
set -u
d=$1; p=$2; w=$3; wt=$4; chunk=$5; how=$6; m=$7; shift 7
i=1; off=0; fresh=0; exact=0; keys=
while [ $m -gt 0 ]; do keys="$keys $1"; shift; m=$((m - 1)); done
{ [ -d "$d" ] && [ -d "$w" ]; } || mkdir -p -- "$d" "$w" || exit 90
clock
set -C
if [ -e "$d/cancelled" ] && { echo "$now" > "$d/$p.lock"; } 2>/dev/null; then
  # `repro cancel` came first: the round never starts; its first step reads as cancelled.
  set +C
  for k in $keys; do echo cancelled > "$d/$k.killed"; break; done
  echo 130 > "$d/$p.rc"
elif { echo "$now" > "$d/$p.lock"; } 2>/dev/null; then
  set +C
  fresh=1
  for k in $keys; do
    if [ "$how" = arg ]; then printf '%s\n' "$1" > "$d/$k.sh" || exit 91; shift
    elif [ ! -f "$d/$k.sh" ]; then echo "repro: $k.sh was not uploaded" >&2; exit 92; fi
  done
  trap : CHLD
  (cd -- "$w" && exec setsid sh -c "$0" repro-supervisor "$d" "$p" $keys) > /dev/null 2>&1 < /dev/null &
  sup=$!
  if [ "$wt" -ge 50 ]; then
    # A timer that ended before `wait` began would leave it waiting for the whole round: a
    # race only a wait of a few hundredths can lose, so short waits nap instead (below).
    f=$((wt % 100)); [ $f -lt 10 ] && f=0$f
    sleep "$((wt / 100)).$f" &
    timer=$!
    wait "$sup"
    kill "$timer" 2>/dev/null
  else
    for k in $keys; do follow; break; done
  fi
  trap - CHLD
else
  set +C
  for k in $keys; do follow; break; done
fi
"""
    + _REPLY
    + "reply\n"
)

# The poll. $1 step dir, $2 plan id, $3 index of the key to follow (from 1), $4 its log
# offset, $5 wait (hundredths), $6 chunk, $7 exact (1: a `head -c` per log), then the keys.
_POLL = (
    r"""
d=$1; p=$2; i=$3; off=$4; wt=$5; chunk=$6; exact=$7; shift 7
fresh=0; keys=$*
j=0
for k in $keys; do j=$((j + 1)); [ $j -lt $i ] || { follow; break; }; done
"""
    + _REPLY
    + "reply\n"
)

# What only the kill scripts need (kept out of _LIB: it rides in every launch and supervisor).
_STOP = r"""
# Has process group $1 a member that is not a zombie? kill -0 says yes while one is left to
# reap, and where PID 1 reaps orphans slowly (a container without an init) that made every kill
# wait out its grace; so the members' states are read from /proc (only on the kill path).
group_live() {
  kill -0 "-$1" 2>/dev/null || return 1
  [ -r /proc/self/stat ] || return 0
  _g=$1
  for _f in /proc/[0-9]*/stat; do
    _l=
    IFS= read -r _l < "$_f" 2>/dev/null || [ -n "$_l" ] || continue
    set -f; set -- ${_l##*) }; set +f  # after "(comm) ": state, ppid, pgrp, ...
    [ "${3-}" = "$_g" ] && [ "$1" != Z ] && return 0
  done
  return 1
}
# TERM group $1, wait up to $2 seconds for what is left of it, KILL that.
stop_group() {
  kill -TERM "-$1" 2>/dev/null
  _i=0
  while group_live "$1" && [ $_i -lt $(($2 * 10)) ]; do sleep 0.1; _i=$((_i + 1)); done
  kill -KILL "-$1" 2>/dev/null
}
"""

# The kill. $1 step dir, $2 key, $3 grace seconds, $4 plan id. TERM the group, then KILL what
# is left. A step not reached yet has no pid of its own: its round's supervisor is the group.
_KILL = r"""
d=$1; k=$2; p=$4
g=
if [ -s "$d/$k.pid" ]; then rd "$d/$k.pid"; g=$v
elif [ -n "$p" ] && [ -s "$d/$p.pid" ]; then rd "$d/$p.pid"; g=$v
fi
[ -n "$g" ] || { echo none; exit 0; }
# The marker goes first: a poll that sees the step gone must also see why.
[ -s "$d/$k.rc" ] || echo killed > "$d/$k.killed"
# dash's kill takes no `--`; "-$g" after the signal is read as a process group.
stop_group "$g" "$3"
echo done
"""


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


def _sh(script: str, *args: str | int, zero: str = "repro") -> str:
    """`sh -c` running _LIB + `script` with `zero` as $0 and `args`, every word quoted."""
    return " ".join(
        ["sh", "-c", shlex.quote(_LIB + script), shlex.quote(zero)]
        + [shlex.quote(str(a)) for a in args]
    )


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
) -> Reply:
    """Launch a round detached (never twice) and report it after waiting up to `wait`.

    `scripts` (one per key) travel with the command; None means they were uploaded already
    as `<step_dir>/<key>.sh` (see `scripts_fit`).
    """
    _plain(step_dir, work_dir)
    how = "arg" if scripts is not None else "files"
    # The supervisor's script is the launcher's $0: it runs it with `sh -c "$0"`.
    args: list[str | int] = [step_dir, plan, work_dir, wait, LOG_CHUNK, how, len(keys), *keys]
    cmd = _sh(_LAUNCH, *args, *(scripts or ()), zero=_LIB + _SUPERVISOR)
    res = await transport.run(cmd, timeout=60 + wait / 100)
    reply = _parse(transport, res, cmd, 0, f"could not launch the steps in {work_dir}")
    if reply is None:  # a log grew between `wc` and `cat`: ask again, a `head -c` per log
        return await poll(transport, step_dir, plan, keys, 0, 0, wait=0, exact=True)
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
) -> Reply:
    """Look at a round from `keys[index]` on (its log from `offset`)."""
    _plain(step_dir)
    cmd = _sh(_POLL, step_dir, plan, index + 1, offset, wait, LOG_CHUNK, int(exact), *keys)
    res = await transport.run(cmd, timeout=60 + wait / 100)
    reply = _parse(transport, res, cmd, offset, f"could not read the state of {keys[index]}")
    if reply is None:
        if exact:
            raise HostError(
                f"the log of {keys[index]} changed size while it was read (truncated?)",
                host=transport.host.name,
                command=cmd,
            )
        return await poll(transport, step_dir, plan, keys, index, offset, wait=0, exact=True)
    return reply


def _parse(
    transport: Transport, res: Completed, cmd: str, offset: int, what: str
) -> Reply | None:
    """The reply's Polls; None when the log bytes do not add up to what the headers say."""
    raw = res.raw_stdout or res.stdout.encode()
    first, _, rest = raw.partition(b"\n")
    if not first.startswith(b"repro-plan ") or res.exit_status != 0:
        detail = (res.stderr or res.stdout).strip()[-300:]
        raise HostError(
            f"{what}: exit {res.exit_status}: {detail}",
            host=transport.host.name,
            command=cmd,
            exit_status=res.exit_status,
            tail=res.stderr[-2000:],
        )
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
    await transport.run(_sh(_STOP + _KILL, step_dir, key, grace, plan), timeout=grace + 30)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


# Cancel a run on one host: first mark it cancelled, so no step starts from now on (the
# supervisor and the launcher check), then kill every group that has no exit status. A round
# launched a moment before the mark may not have written its pid yet: wait for it (bounded)
# rather than miss it. $1 steps dir (a leading `~/` is this host's $HOME: no round trip to ask
# for it), $2 grace seconds.
_KILL_ALL = r"""
d=$1
case $d in "~/"*) d=$HOME/${d#"~/"} ;; esac
mkdir -p -- "$d" && : > "$d/cancelled" || exit 1
rm -f -- "$d/secrets"  # no step starts any more: nothing needs the run's secret values
for l in "$d"/*.lock; do
  [ -e "$l" ] || continue
  k=${l##*/}; k=${k%.lock}
  i=0
  while [ ! -s "$d/$k.pid" ] && [ ! -s "$d/$k.rc" ] && [ ! -e "$d/$k.killed" ] && [ $i -lt 50 ]; do
    sleep 0.1; i=$((i+1))
  done
  # a step that ended is left alone; a round that ended is not, if something of it lives on
  case $k in *-plan) ;; *) [ -s "$d/$k.rc" ] && continue ;; esac
  [ -s "$d/$k.pid" ] || continue
  rd "$d/$k.pid"; g=$v
  group_live "$g" || continue
  echo cancelled > "$d/$k.killed"  # first: a poll that sees the step gone must see why
  stop_group "$g" "$2"
  case $k in *-plan) ;; *) echo "$k" ;; esac
done
exit 0
"""


async def kill_all(transport: Transport, steps_dir: str, *, grace: int = 5) -> list[str]:
    """Cancel a run on one host (`repro cancel`): no step starts any more, every running one is
    killed. Returns the keys of the steps killed."""
    res = await transport.run(_sh(_STOP + _KILL_ALL, steps_dir, grace), timeout=grace * 20 + 60)
    if res.exit_status != 0:
        raise HostError(
            f"could not mark {steps_dir} cancelled: {res.stderr.strip()[-300:]}",
            host=transport.host.name,
            exit_status=res.exit_status,
        )
    return [ln for ln in res.stdout.split() if ln]
