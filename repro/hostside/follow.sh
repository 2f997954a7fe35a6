# shellcheck shell=sh
# Following a step (after lib.sh; the launcher and the poll): $d step dir, $p plan id, $k key.
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
  if [ -s "$d/$k.pid" ]; then num "$d/$k.pid"; [ -n "$v" ] && alive "$v"; return; fi
  if [ -e "$d/$k.lock" ]; then
    [ ! -e "$d/$k.killed" ] || return 1
    num "$d/$k.start"; [ -n "$v" ] || return 0
    clock; [ $((now - v)) -lt 30 ]; return
  fi
  [ ! -e "$d/$k.killed" ] && [ -e "$d/$p.lock" ] && [ ! -s "$d/$p.rc" ] || return 1
  if [ -s "$d/$p.pid" ]; then num "$d/$p.pid"; [ -n "$v" ] && alive "$v"; return; fi
  num "$d/$p.lock"; [ -n "$v" ] || return 1
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
