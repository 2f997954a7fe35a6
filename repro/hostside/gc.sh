# shellcheck shell=sh
# Remove old run directories under a host's work base (after lib.sh, stop.sh and rundir.sh: rd,
# clock, group_live, ours, rmrun). Only what repro made is touched (rundir.sh). A run with a
# round still alive on the host, that may still be starting, or that the controller says can
# be resumed, is left alone and named.
#
# $1 work base (a leading ~/ is this host's $HOME)  $2 the name of a run's steps dir
# (repro.store)  $3 keep: how many of the newest run dirs to keep, -1 for no limit  $4 a run id
# to remove now if it is idle, or -  $5... run ids to keep.
# Prints one line per run dir it decides on: "removed ID", "kept ID busy|protected|failed".
# shellcheck disable=SC2154  # rd sets $v, clock sets $now (lib.sh)
base=$1 steps=$2 keep=$3 now_id=$4
shift 4
# shellcheck disable=SC2088  # a literal "~/", from the controller
case $base in "~") base=$HOME ;; "~/"*) base=$HOME/${base#"~/"} ;; esac
[ -d "$base" ] || exit 0
cd -P -- "$base" || exit 1

protected() {
  for p in "$@"; do [ "$p" = "$id" ] && return 0; done
  return 1
}

busy() {  # $1: a run dir; true while any round of it may still run or is about to start
  # Each pid file names a supervisor, the leader of its round's process group; a step or
  # round without an exit status may still have something of that group alive.
  for f in "$1/$steps"/*.pid; do
    [ -s "$f" ] || continue
    [ -s "${f%.pid}.rc" ] && continue
    rd "$f"
    case $v in '' | *[!0-9]*) continue ;; esac
    group_live "$v" && return 0
  done
  started=0
  for l in "$1/$steps"/*-plan.lock; do
    [ -e "$l" ] || continue
    started=1
    k=${l%.lock}
    [ -s "$k.rc" ] || [ -s "$k.pid" ] && continue
    # launched, no pid written yet: the first 30 s of a round
    rd "$l"; [ -n "$v" ] || return 0
    clock; [ $((now - v)) -lt 30 ] && return 0
  done
  # No round launched yet: a run that is still gathering facts or uploading (made < 1 h ago).
  [ $started = 1 ] || [ -z "$(find "$1" -maxdepth 0 -mmin -60)" ] || return 0
  return 1
}

remove() {  # $1 run id, $2... the protected ones
  id=$1
  shift
  if protected "$@"; then echo "kept $id protected"; return; fi
  if busy "$id"; then echo "kept $id busy"; return; fi
  if rmrun "$id"; then echo "removed $id"; else echo "kept $id failed"; fi
}

if [ "$now_id" != - ] && ours "$now_id" "$steps"; then
  remove "$now_id" "$@"
fi
[ "$keep" -ge 0 ] || exit 0
# Newest first: by when its steps dir last changed (a round's last file is written when it
# ends), not by name (two runs that start in the same second sort by a random suffix). The
# names are checked run ids, so ls's one-per-line output splits safely.
n=0
# shellcheck disable=SC2012
for id in $(for d in $run_id_glob; do ours "$d" "$steps" && echo "$d/$steps"; done | xargs -r ls -1dt -- | sed 's,/.*,,'); do
  n=$((n + 1))
  [ $n -le "$keep" ] && continue
  remove "$id" "$@"
done
