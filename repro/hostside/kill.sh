# shellcheck shell=sh
# The kill (after lib.sh and stop.sh). $1 step dir, $2 key, $3 grace seconds, $4 plan id. TERM
# the group, then KILL what is left; then whatever of the round left the group (the cookie). A
# step not reached yet has no pid of its own: its round's supervisor is the group.
d=$1; k=$2; p=$4
g=
if has "$d/$k.pid"; then g=$v
elif [ -n "$p" ] && has "$d/$p.pid"; then g=$v
fi
if [ -n "$g" ]; then
  # The marker goes first: a poll that sees the step gone must also see why.
  has "$d/$k.rc" || echo killed > "$d/$k.killed"
  stop_group "$g" "$3"
fi
[ -z "$p" ] || reap "$3" "$p"
if [ -n "$g" ]; then echo 'done'; else echo none; fi
