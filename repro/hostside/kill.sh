# shellcheck shell=sh
# The kill (after lib.sh and stop.sh). $1 step dir, $2 key, $3 grace seconds, $4 plan id. TERM
# the group, then KILL what is left. A step not reached yet has no pid of its own: its round's
# supervisor is the group.
d=$1; k=$2; p=$4
g=
if [ -s "$d/$k.pid" ]; then num "$d/$k.pid"; g=$v
elif [ -n "$p" ] && [ -s "$d/$p.pid" ]; then num "$d/$p.pid"; g=$v
fi
[ -n "$g" ] || { echo none; exit 0; }
# The marker goes first: a poll that sees the step gone must also see why.
[ -s "$d/$k.rc" ] || echo killed > "$d/$k.killed"
stop_group "$g" "$3"
echo 'done'
