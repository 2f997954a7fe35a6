# shellcheck shell=sh
# Cancel a run on one host (after lib.sh and stop.sh): first mark it cancelled, so no step
# starts from now on (the supervisor and the launcher check), then kill every group that has no
# exit status. A round launched a moment before the mark may not have written its pid yet: wait
# for it (bounded) rather than miss it. $1 steps dir (a leading `~/` is this host's $HOME: no
# round trip to ask for it), $2 grace seconds.
d=$1
# shellcheck disable=SC2088  # a literal "~/", from the controller
case $d in "~/"*) d=$HOME/${d#"~/"} ;; esac
mkdir -p -- "$d" && : > "$d/cancelled" || exit 1
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
  num "$d/$k.pid"; g=$v
  [ -n "$g" ] || continue
  group_live "$g" || continue
  # first: a poll that sees the step gone must see why
  echo cancelled > "$d/$k.killed"
  stop_group "$g" "$2"
  case $k in *-plan) ;; *) echo "$k" ;; esac
done
exit 0
