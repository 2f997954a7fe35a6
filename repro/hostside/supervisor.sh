# shellcheck shell=sh
# The supervisor of one round (after lib.sh), started by launch.sh in its own session
# (setsid): its pid is the process group of every step of the round, so a timeout or a cancel
# kills them all with one `kill`. $1 step dir, $2 plan id, then the keys in order. Before each
# step it looks for `cancelled` (left by `repro cancel`); after a step that failed nothing
# more runs.
#
# A step is its script read by a subshell of this one: a fork, without exec'ing a new shell
# (the cost that counts when a host runs many quick steps). It must not see the supervisor's
# variables or functions, so they are dropped first; only _repro_f (the script's path) stays.
step() {
  (
    _repro_f=$d/$k.sh
    unset d p k rc now v _n
    unset -f rd num clock step
    # shellcheck disable=SC1090  # the step's own script
    . "$_repro_f"
  )
}
d=$1; p=$2; shift 2
echo $$ > "$d/$p.pid"
rc=0
for k do
  if [ -e "$d/cancelled" ]; then echo cancelled > "$d/$k.killed"; rc=130; break; fi
  clock; echo "$now" > "$d/$k.start"
  echo $$ > "$d/$k.pid"
  : > "$d/$k.lock"
  case $k in
    *-hash) step > "$d/$k.log" 2> "$d/$k.err" < /dev/null; rc=$? ;;
    *) step > "$d/$k.log" 2>&1 < /dev/null; rc=$? ;;
  esac
  echo $rc > "$d/$k.rc"
  [ $rc -eq 0 ] || break
done
echo $rc > "$d/$p.rc"
# Nothing of the round outlives it: what a step left running in the background (still in this
# process group) gets SIGTERM now; `repro cancel` KILLs whatever ignores it. One syscall, no wait.
trap '' TERM
kill -TERM "-$$" 2>/dev/null
exit 0
