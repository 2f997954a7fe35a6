# shellcheck shell=sh
# The batch that hashes artifacts on the host (repro/artifacts.py): run by `find … -exec sh -c
# SCRIPT sh {} +` (or, when every artifact is one literal path, in a `$(…)` on those paths).
# The generated `classify PATH` (which specs match a path, so which names it gets) and, with
# manifests, hash-manifest.sh come first; both `queue PATH NAME`. A newline in a path could
# forge a whole output line, so such a path fails the command. `flush` hashes the queue with
# one sha256sum and one wc, and pairs their lines with the paths by position (both keep their
# arguments' order) after checking the counts. The queue is flushed every 32 KiB of paths: a
# long manifest never meets the argument limit, and appending to the queue (a copy of it in sh)
# stays cheap.
#
# nl and q: 64 `?` (one hash's worth of any characters); CR comes first from artifacts.py (a
# carriage return has no place in a text file, and `$(printf …)` would cost a process).
nl='
'
q='????????????????????????????????????????????????????????????????'
T='' N='' O=''
# Lists are split on newlines only and never globbed; no queued path has a newline.
IFS=$nl
set -f
c=0
queue() {
  T=$T$1$nl
  N=$N$2$nl
  c=$((c + ${#1} + 1))
  [ $c -lt 32768 ] || flush  # repro/artifacts.py _BATCH
}
bad() { printf 'repro: unexpected output from %s; nothing hashed\n' "$1" >&2; exit 1; }
# `first LIST`: $v is LIST's first line, $rest the lines after it
first() { v=${1%%"$nl"*} rest=${1#*"$nl"}; }
flush() {
  [ -n "$T" ] || return 0
  # shellcheck disable=SC2086  # split on newlines on purpose
  set -- $T
  n=$#
  if command -v sha256sum >/dev/null 2>&1; then H=$(sha256sum -- "$@")
  else H=$(shasum -a 256 -- "$@")  # BSD, macOS
  fi || { printf 'repro: cannot hash the artifacts\n' >&2; exit 1; }
  S=$(wc -c -- "$@") || { printf 'repro: cannot read the artifacts\n' >&2; exit 1; }
  # shellcheck disable=SC2086
  set -- $H
  [ $# -eq "$n" ] || bad sha256sum
  # shellcheck disable=SC2086
  set -- $S
  [ $# -eq "$n" ] || { [ "$n" -gt 1 ] && [ $# -eq $((n + 1)) ]; } || bad wc
  # The four lists in step, one line per file each ($S may end with wc's total: left over).
  H=$H$nl S=$S$nl
  while [ -n "$T" ]; do
    first "$T"; p=$v T=$rest
    first "$N"; m=$v N=$rest
    first "$H"; h=$v H=$rest
    first "$S"; s=$v S=$rest
    # The line must name its path. GNU escapes a name with \ or CR and marks the line with
    # a leading \: position pairs it, and the controller's parser refuses such a name.
    # shellcheck disable=SC2254,SC2295  # $q is a pattern on purpose
    case $h in
      $q"  $p"|$q" *$p") h=${h%"${h#$q}"};;
      \\$q" "*) h=${h#\\}; h=${h%"${h#$q}"};;
      *) bad sha256sum;;
    esac
    s=${s#"${s%%[! ]*}"}
    s=${s%%" "*}
    case $s in ''|*[!0-9]*) bad wc;; esac
    O=$O$h' '$s' '$m$nl
  done
  # printed once the whole batch checked out: a batch prints all its lines or none
  printf '%s' "$O"
  T='' N='' O='' c=0
}
for f do
  case $f in *"$nl"*) printf 'repro: refusing a file name with a newline\n' >&2; exit 1;; esac
  classify "$f"
done
flush
exit 0
