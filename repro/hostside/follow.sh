# shellcheck shell=sh
# Following a step (after lib.sh; the launcher and the poll): $d step dir, $p plan id, $k key.
#
# Is step $k running? Its supervisor is alive; or it started (lock) and the pid is not written
# yet (the first 30 s); or it was not reached yet and the round's supervisor is alive (or was
# launched less than 30 s ago and has not written its pid yet). The supervisor makes every
# state file at launch, holding no number: only what it wrote since counts.
running() {
  if has "$d/$k.pid"; then alive "$v"; return; fi
  if [ -e "$d/$k.lock" ]; then
    [ ! -e "$d/$k.killed" ] || return 1
    has "$d/$k.start" || return 0
    clock; [ $((now - v)) -lt 30 ]; return
  fi
  [ ! -e "$d/$k.killed" ] && [ -e "$d/$p.lock" ] && ! has "$d/$p.rc" || return 1
  if has "$d/$p.pid"; then alive "$v"; return; fi
  has "$d/$p.lock" || return 1
  clock; [ $((now - v)) -lt 30 ]
}
# Wait (naps, at most $wt hundredths of a second) while step $k runs without an exit status.
# Naps start short: a step about to end costs ~20 ms, a long one is looked at once a second.
follow() {
  n=0
  while ! has "$d/$k.rc" && [ "$n" -lt "$wt" ] && running; do
    if [ "$n" -lt 20 ]; then sleep 0.02; n=$((n + 2)); else sleep 0.1; n=$((n + 10)); fi
  done
}
