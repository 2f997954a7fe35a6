# shellcheck shell=sh
# The launcher (after lib.sh, follow.sh; before rundir.sh, reply.sh). $1 the supervisor's script (lib.sh +
# supervisor.sh: it runs as `sh -c` of its own, in a new session), $2 step dir, $3 plan id, $4
# work dir, $5 wait (hundredths), $6 chunk, $7 how the scripts come: `arg` (one argument each
# after the keys: the exec request carries the whole command line or nothing, so a script never
# arrives cut short) or `files` (uploaded already as <key>.sh), $8 hold (1: a reply that ends
# the round waits for the run's verdict, reply.sh), $9 the number of keys, then the keys. The plan lock is created with noclobber (O_EXCL): if it exists the round was already
# launched (the reply to an earlier launch was lost with the connection, or this is --resume)
# and this simply reports its state. The supervisor is this shell's child, so a quick round is
# waited for with `wait`, bounded by a timer whose SIGCHLD also ends the wait: no naps, no
# polling.
set -u
sup=$1; d=$2; p=$3; w=$4; wt=$5; chunk=$6; how=$7; hold=$8; m=$9; shift 9
i=1; off=0; fresh=0; exact=0; ended=0; keys=
while [ "$m" -gt 0 ]; do keys="$keys $1"; shift; m=$((m - 1)); done
# what repro makes is the build user's alone (the run dir 0700: the facts round trip made it so)
{ [ -d "$d" ] && [ -d "$w" ]; } || (umask 077 && mkdir -p -- "$d" "$w") || exit 90
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
  # The scripts are the user's alone (0600): they may hold secrets. The steps get the login's
  # umask back, read without a `$(…)` process.
  umask > "$d/$p.umask" && IFS= read -r mask < "$d/$p.umask" || exit 91
  umask 077
  for k in $keys; do
    if [ "$how" = arg ]; then printf '%s\n' "$1" > "$d/$k.sh" || exit 91; shift
    elif [ ! -f "$d/$k.sh" ]; then echo "repro: $k.sh was not uploaded" >&2; exit 92; fi
  done
  umask "$mask"
  trap : CHLD
  cookie "$p"
  # shellcheck disable=SC2086  # the keys are words
  (cd -- "$w" && REPRO_COOKIE=$c && export REPRO_COOKIE &&
    exec setsid sh -c "$sup" "repro-supervisor:$c" "$d" "$p" $keys) > /dev/null 2>&1 < /dev/null &
  pid=$!
  if [ "$wt" -ge 50 ]; then
    # A timer that ended before `wait` began would leave it waiting for the whole round: a
    # race only a wait of a few hundredths can lose, so short waits nap instead (below).
    f=$((wt % 100)); [ $f -lt 10 ] && f=0$f
    sleep "$((wt / 100)).$f" &
    timer=$!
    wait "$pid"
    kill -0 "$pid" 2>/dev/null || ended=1
    kill "$timer" 2>/dev/null
  else
    for k in $keys; do follow; break; done
  fi
  trap - CHLD
else
  set +C
  for k in $keys; do follow; break; done
fi
