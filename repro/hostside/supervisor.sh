# shellcheck shell=sh
# The supervisor of one round (after lib.sh and stop.sh), started by launch.sh in its own
# session (setsid) with the round's cookie in its environment: its pid is the process group of
# the round's steps, so a timeout or a cancel kills them all with one `kill`, and the cookie
# finds what left the group. $1 step dir, $2 plan id, then the keys in order, the hashing last.
#
# Nothing a step can write is later run or trusted by it. Before any step runs, it reads every
# step's script and the hashing's into its own memory (as its positional parameters: key,
# script, key, script...) and makes every state file it will write, at 16 bytes (see `put`):
# a build that fills the disk cannot keep them from being written. A step's exit status stays
# in its memory too: when the round ends, after every process the round started is gone (the
# cookie), it writes them all again, so what a step wrote into those files is overwritten. The
# hashing starts only once the build's processes are gone: nothing changes an artifact after it
# was hashed. Before each step it looks for `cancelled` (left by `repro cancel`); after a step
# that failed nothing more runs but the reaping.
#
# A step is its script run by a subshell of this one: a fork, without exec'ing a new shell
# (the cost that counts when a host runs many quick steps). It sees none of the supervisor's
# variables, functions or parameters.
step() {
  (
    _repro_s=$1
    unset d p k s f c rc now v n nl ran all full reaped text line _n _p _r _i _gr _f _x _g _l _h
    unset -f rd num has put clock cookie alive group_live stop_group cookie_pids reap any_alive step slurp
    set --
    # shellcheck disable=SC2154  # _repro_s is set above, and unset before the script runs
    eval "unset _repro_s; $_repro_s"
  )
}
# `slurp FILE`: its text in $text, read with builtins (a file may lack the last newline)
slurp() {
  text=
  line=
  while IFS= read -r line; do text=$text$line$nl; done < "$1" || return 1
  text=$text$line
}
d=$1; p=$2; shift 2
# The run's secret values (repro.secrets: a 0600 file the controller wrote from stdin, one
# REPRO_SECRET_NAME=value line each) go into the environment every step inherits. Read as data,
# never run: a step can write that file, and nothing a step writes is run by the supervisor.
if [ -f "$d/secrets" ]; then
  while IFS= read -r _l || [ -n "$_l" ]; do
    _n=${_l%%=*}
    case $_n in REPRO_SECRET_*) ;; *) continue ;; esac
    case $_n in *[!A-Za-z0-9_]*) continue ;; esac
    export "$_n=${_l#*=}"
  done < "$d/secrets"
  unset _l _n
fi
nl='
'
put "$d/$p.pid" "$$" && put "$d/$p.rc" - || exit 1
n=$# all=
for k do
  all="$all$k$nl"
  slurp "$d/$k.sh" || exit 1
  set -- "$@" "$k" "$text"
  for f in rc start pid; do put "$d/$k.$f" - || exit 1; done
done
shift "$n"
text=
rc=0 ran='' reaped=''
while [ $# -gt 0 ]; do
  k=$1 s=$2; shift 2
  case $k in *-hash) reap 2 "$p"; reaped=1 ;; esac
  if [ -e "$d/cancelled" ]; then echo cancelled > "$d/$k.killed"; rc=130; break; fi
  clock; put "$d/$k.start" "$now"
  put "$d/$k.pid" "$$"
  : > "$d/$k.lock"
  case $k in
    *-hash) step "$s" > "$d/$k.log" 2> "$d/$k.err" < /dev/null; rc=$? ;;
    *) step "$s" > "$d/$k.log" 2>&1 < /dev/null; rc=$? ;;
  esac
  # A failed step on a full disk: said so beside its status (a file with data cannot be made).
  full=
  [ $rc -eq 0 ] || { echo "$rc" > "$d/$k.probe"; } 2>/dev/null || full=' nospace'
  put "$d/$k.rc" "$rc$full"
  ran="$ran$k $rc$full$nl"
  [ $rc -eq 0 ] || break
done
# Nothing of the round outlives it: what a step left running (in this process group or not)
# gets SIGTERM, and SIGKILL 2 s later if it is still there (done already before the hashing,
# which leaves nothing: one grep less per round). Then the record, written again.
trap '' TERM
kill -TERM "-$$" 2>/dev/null
[ -n "$reaped" ] || reap 2 "$p"
IFS=$nl
for k in $all; do put "$d/$k.rc" -; done
for line in $ran; do put "$d/${line%% *}.rc" "${line#* }"; done
put "$d/$p.rc" "$rc"
exit 0
