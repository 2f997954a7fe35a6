# shellcheck shell=sh
# The long wait (after lib.sh and follow.sh, before rundir.sh and reply.sh): what the controller
# sends while a step runs, one channel per host, and that answers only when the step ends (or its round is
# gone), its log grows (only when asked to: $6 > 0), or the bound passes. $1 step dir, $2 plan
# id, $3 index of the key to follow (from 1), $4 its log offset, $5 the bound (seconds), $6 how
# soon log growth may end the wait (seconds; 0: it does not), $7 chunk, $8 hold (reply.sh),
# then the keys.
#
# The process budget: a wait of minutes must not start a process per check. It looks once a
# second with builtins only (the rc file, the supervisor's /proc entries, the clock) and naps
# with the builtin `read -t` on a fifo nobody writes (bash, busybox sh). A shell without it
# (dash) gets its ticks from ONE helper (bash or busybox, whichever is there) writing a line a
# second into a pipe it reads; with neither, it naps with `sleep 1` (a process a second: the
# cost of the old poll). The log's size comes from the supervisor's stdout, which during a step
# is the log itself: /proc/<pid>/fdinfo/1 holds its offset (checked to be the log with -ef).
d=$1; p=$2; i=$3; off=$4; bound=$5; gap=$6; chunk=$7; hold=$8; shift 8
fresh=0; exact=0; ended=0; keys=$*; wt=0
j=0
for k in $keys; do j=$((j + 1)); [ $j -lt "$i" ] || break; done
# Has step $k's log grown past $off? (1: no, or it cannot be told without a process)
grown() {
  has "$d/$k.pid" || return 1
  # shellcheck disable=SC3013  # -ef: dash, bash and busybox sh all have it
  [ "/proc/$v/fd/1" -ef "$d/$k.log" ] || return 1
  pos=
  while read -r key val _; do
    if [ "$key" = pos: ]; then pos=$val; break; fi
  done 2>/dev/null < "/proc/$v/fdinfo/1"
  case $pos in '' | *[!0-9]*) return 1 ;; esac
  [ "$pos" -gt "$off" ]
}
# One look: 0 while the wait goes on.
going() {
  # the hashing's status counts only once its supervisor is gone (reply.sh): wait for that
  case $k in
    *-hash) running || return 1 ;;
    *) ! has "$d/$k.rc" && running || return 1 ;;
  esac
  clock; [ $((now - t0)) -lt "$bound" ] || return 1
  [ "$gap" -gt 0 ] && [ $((now - t0)) -ge "$gap" ] && grown && return 1
  return 0
}
# The wait proper, after a first look (`nap` takes about a second).
await() { while nap && going; do :; done; }
# Naps with `read -t` on the fifo (fd 7); with `read` of the helper's ticks; or with `sleep`.
timed() {
  # shellcheck disable=SC3045  # only where the shell has it (probed first: dash says 2)
  nap() { read -r -t 1 _ <&7; [ $? -ne 2 ]; }
  await
}
ticked() {
  nap() { read -r _; }
  read -r tp
  await
  case $tp in '' | *[!0-9]*) ;; *) kill "$tp" 2>/dev/null ;; esac
}
slept() {
  nap() { sleep 1; }
  await
}
clock; t0=$now
if going; then
  napf=$d/$p.nap; rt=2
  if [ -p "$napf" ] || mkfifo -m 600 "$napf" 2>/dev/null; then
    exec 7<> "$napf"
    # shellcheck disable=SC3045
    { read -r -t 0 _ <&7; } 2>/dev/null; rt=$?
  fi
  helper=
  for h in bash busybox; do
    if command -v "$h" > /dev/null 2>&1; then helper=$h; break; fi
  done
  # The helper's ticks; its first line is its pid, for a kill once the wait is over.
  # shellcheck disable=SC2016  # the helper's own script
  tick='echo $$; exec 7<> "$1"; while :; do read -r -t 1 _ <&7; echo t || exit 0; done'
  if [ $rt -ne 2 ]; then timed
  elif [ ! -p "$napf" ] || [ -z "$helper" ]; then slept
  elif [ "$helper" = bash ]; then bash -c "$tick" tick "$napf" | ticked
  else busybox sh -c "$tick" tick "$napf" | ticked; fi
fi
