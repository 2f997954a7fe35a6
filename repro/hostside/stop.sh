# shellcheck shell=sh
# What only the kill scripts need (kept out of lib.sh: that rides in every launch and
# supervisor).
#
# Has process group $1 a member that is not a zombie? kill -0 says yes while one is left to
# reap, and where PID 1 reaps orphans slowly (a container without an init) that made every kill
# wait out its grace; so the members' states are read from /proc (only on the kill path).
group_live() {
  kill -0 "-$1" 2>/dev/null || return 1
  [ -r /proc/self/stat ] || return 0
  _g=$1
  for _f in /proc/[0-9]*/stat; do
    _l=
    IFS= read -r _l < "$_f" 2>/dev/null || [ -n "$_l" ] || continue
    # after "(comm) ": state, ppid, pgrp, ...
    set -f
    # shellcheck disable=SC2086
    set -- ${_l##*) }
    set +f
    [ "${3-}" = "$_g" ] && [ "$1" != Z ] && return 0
  done
  return 1
}
# TERM group $1, wait up to $2 seconds for what is left of it, KILL that.
# dash's kill takes no `--`; "-$g" after the signal is read as a process group.
stop_group() {
  kill -TERM "-$1" 2>/dev/null
  _i=0
  while group_live "$1" && [ $_i -lt $(($2 * 10)) ]; do sleep 0.1; _i=$((_i + 1)); done
  kill -KILL "-$1" 2>/dev/null
}
