# shellcheck shell=sh
# What every command of the detached rounds starts with (repro/detach.py). Shell builtins
# (`read`, `printf`, tests, noclobber redirections) wherever one will do: a quick round costs
# the host the supervisor, a `sh` per step, one timer, one `wc` and one `cat`.
#
# bash as `sh` is in POSIX mode, but one called as bash is not, and only POSIX mode lets a
# trapped signal end a `wait` (the launcher's bounded wait needs that).
[ -z "${BASH_VERSION-}" ] || set -o posix
# `rd FILE` puts the file's first line in $v (empty if none).
rd() { v=; [ -s "$1" ] && IFS= read -r v < "$1"; return 0; }
# `num FILE`: the first word of its first line in $v if that is a plain number (digits, maybe
# a leading minus), else nothing. The state files are the supervisor's, but a step runs as the
# same user and may have written to them: what they hold is never spliced into a reply.
num() {
  rd "$1"
  v=${v%% *}
  case $v in -*) _n=${v#-} ;; *) _n=$v ;; esac
  case $_n in '' | *[!0-9]*) v= ;; esac
}
# `has FILE`: it holds a number (in $v)
has() { num "$1"; [ -n "$v" ]; }
# `put FILE VALUE`: VALUE written over the file's first 16 bytes, in place (`<>` neither
# truncates nor moves the file): the supervisor's state files are made at 16 bytes before any
# step runs, so a build that fills the disk cannot keep them from being written.
put() { printf '%-15s\n' "$2" 1<> "$1"; }
# The clock is seconds since boot from /proc/uptime (read, no `date` process); a build never
# outlives a reboot, so start and now always share it.
clock() { if IFS=' ' read -r now _ < /proc/uptime 2>/dev/null; then now=${now%.*}; else now=$(date +%s); fi; }
# `cookie PLAN`: $c, the cookie of round PLAN of the steps dir $d (see stop.sh), which names
# this host too: hosts may share a kernel (containers, a lab) and a run's paths.
cookie() {
  _h=
  [ -r /proc/sys/kernel/hostname ] && IFS= read -r _h < /proc/sys/kernel/hostname
  c="$_h:$d/$1"
}
# A zombie answers kill -0 until its new parent reaps it; it counts as gone.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ -r "/proc/$1/status" ] || return 0
  while read -r key val _; do
    if [ "$key" = State: ]; then [ "$val" != Z ]; return; fi
  done < "/proc/$1/status"
  return 0
}
