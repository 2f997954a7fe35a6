# shellcheck shell=sh
# Ending what a round started (after lib.sh): the supervisor at the end of its round, the kill
# and the cancel.
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
  while group_live "$1" && [ "$_i" -lt $(($2 * 10)) ]; do sleep 0.1; _i=$((_i + 1)); done
  kill -KILL "-$1" 2>/dev/null
}
# The cookie. The launcher starts a round's supervisor with REPRO_COOKIE=<host>:<steps dir>/<plan
# id> in its environment (lib.sh's `cookie`), so every process of the round has it: its forks (/proc/PID/environ is
# what the process was exec'd with) and whatever they exec, in a new session (setsid) or not,
# unless it empties its environment on purpose. As Jenkins' ProcessTreeKiller does, the round's
# processes are found by it, not by their group or parent: one grep over the environments of
# this user's processes (other users' are not readable: skipped).
#
# `cookie_pids COOKIE`: $_p, the pids of the processes with the cookie, not this shell. grep
# runs without it, so it does not find itself.
cookie_pids() {
  _p=
  for _f in $(unset REPRO_COOKIE; exec grep -lszxF -e "REPRO_COOKIE=$1" /proc/[0-9]*/environ); do
    _f=${_f#/proc/}; _f=${_f%/environ}
    case $_f in '' | *[!0-9]*) continue ;; esac
    [ "$_f" = $$ ] || _p="$_p $_f"
  done
}
# `reap GRACE PLAN`: TERM every process with the cookie of round PLAN, wait up to GRACE seconds
# for them, KILL those left and what they forked meanwhile (looked for again: at most 3 times,
# so a fork bomb cannot hold it). Only `kill` and one grep when nothing is left.
reap() {
  _gr=$1
  cookie "$2"
  _r=0
  while [ $_r -lt 3 ]; do
    cookie_pids "$c"
    [ -n "$_p" ] || return 0
    # shellcheck disable=SC2086  # the pids are words
    if [ $_r -eq 0 ]; then
      kill -TERM $_p 2>/dev/null
      _i=0
      while [ $_i -lt $((_gr * 10)) ] && any_alive $_p; do sleep 0.1; _i=$((_i + 1)); done
    fi
    # shellcheck disable=SC2086
    kill -KILL $_p 2>/dev/null
    _r=$((_r + 1))
  done
}
any_alive() {
  for _x do alive "$_x" && return 0; done
  return 1
}
