# shellcheck shell=sh
# Cancel a run on one host (after lib.sh and stop.sh): first mark it cancelled, so no step
# starts from now on (the supervisor and the launcher check), then kill every group that has no
# exit status, then what the run's rounds left outside their groups (found by their cookies).
# A round launched a moment before the mark may not have written its pid yet: wait for it
# (bounded) rather than miss it. $1 steps dir (a leading `~/` is this host's $HOME: no round
# trip to ask for it), $2 grace seconds. Prints the keys of the steps killed, and the plan ids of
# the rounds whose leftovers were.
d=$1; grace=$2
# shellcheck disable=SC2088  # a literal "~/", from the controller
case $d in "~/"*) d=$HOME/${d#"~/"} ;; esac
mkdir -p -- "$d" && : > "$d/cancelled" || exit 1
rm -f -- "$d/secrets"  # no step starts any more: nothing needs the run's secret values
plans=
for l in "$d"/*.lock; do
  [ -e "$l" ] || continue
  k=${l##*/}; k=${k%.lock}
  case $k in *-plan) plans="$plans $k" ;; esac
  i=0
  while ! has "$d/$k.pid" && ! has "$d/$k.rc" && [ ! -e "$d/$k.killed" ] && [ $i -lt 50 ]; do
    sleep 0.1; i=$((i+1))
  done
  # a step that ended is left alone; a round that ended is not, if something of it lives on
  case $k in *-plan) ;; *) has "$d/$k.rc" && continue ;; esac
  has "$d/$k.pid" || continue
  g=$v
  group_live "$g" || continue
  # first: a poll that sees the step gone must see why
  echo cancelled > "$d/$k.killed"
  stop_group "$g" "$grace"
  case $k in *-plan) ;; *) echo "$k" ;; esac
done
for k in $plans; do
  cookie "$k"
  cookie_pids "$c"
  [ -n "$_p" ] || continue
  reap "$grace" "$k"
  echo "$k"
done
exit 0
