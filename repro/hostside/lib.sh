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
# `num FILE`: like rd, but $v is kept only if it is a plain number (digits, maybe a leading
# minus); anything else a file holds reads as nothing. What a step could write there is never
# spliced into the reply.
num() {
  rd "$1"
  case $v in -*) _n=${v#-} ;; *) _n=$v ;; esac
  case $_n in '' | *[!0-9]*) v= ;; esac
}
# The clock is seconds since boot from /proc/uptime (read, no `date` process); a build never
# outlives a reboot, so start and now always share it.
clock() { if IFS=' ' read -r now _ < /proc/uptime 2>/dev/null; then now=${now%.*}; else now=$(date +%s); fi; }
