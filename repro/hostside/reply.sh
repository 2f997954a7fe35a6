# shellcheck shell=sh
# The reply of the launch, the poll and the wait (after lib.sh and rundir.sh; expects d, p, keys, i, off, chunk,
# exact, fresh, ended and hold). One header line for the round, one per step reported, then the steps' log
# bytes one after the other (each header says how many). Steps from the $i-th key of $keys on
# (its log from byte $off), for as long as they ended with status 0 and their whole log fits in
# the $chunk budget. Liveness is read BEFORE the rc file: a step that ends in between is seen
# as finished, never as vanished. One `wc` measures every log; when every step reported has
# ended, one `cat` sends them all (the controller checks the total against the sizes, and asks
# again with exact=1, a `head -c` per log, if something still wrote to a log after its step
# ended).
#
# The steps reported are kept as records, one line each of space-separated words (a key is
# [0-9a-z-], every other field a number, `-` or 0/1, read strictly): `record` and `part` take a
# record's words as their arguments.
nl='
'
# Has the round's supervisor ended? The launcher knows when it waited for it; otherwise /proc
# says, not a file a step could write: no process has the name the launcher gave it (a
# process's command line is its own; `-e` glued to the pattern, so grep does not find itself).
gone() {
  [ "$ended" = 1 ] && return 0
  cookie "$p"
  # shellcheck disable=SC2062  # the glob is the files; the pattern is glued to -e
  ! grep -qszxF "-erepro-supervisor:$c" /proc/[0-9]*/cmdline
}
# The reply that ends a round, held: asked for with hold=1 (repro.detach: the last round of a
# run whose ending can use it), once the hashing's status counts (its supervisor is gone)
# and every log is sent, it says so as the last bytes of its stdout (HELD_MARK,
# repro.transport.base: the controller has its whole reply then, even where a login shell that
# did not exec the command keeps the output open), closes its output and waits for one line on
# stdin: what becomes of
# the run's dir, known once every host has answered (repro/gc.py). "remove" removes it; any
# other line or end of file (the controller or the link gone) keeps it for `repro gc`. The
# run dir is $d's parent (repro.store), looked at as gc.sh does (rundir.sh). Exit 0: done as
# told; 3: not a run dir repro made; 4: it could not be removed. No channel, no shell more.
held() {
  printf 'repro-held\n'
  exec >&- 2>&-
  IFS= read -r _w || exit 0
  [ "$_w" = remove ] || exit 0
  _r=${d%/*}
  cd -P -- "${_r%/*}" 2>/dev/null || exit 3
  ours "${_r##*/}" "${d##*/}" || exit 3
  rmrun "${_r##*/}" || exit 4
  exit 0
}
record() { k=$1 rc=$2 a=$3 s=$4 x=$5 t=$6 h=$7 ns=$8; }
part() { k=$1 want=$2 o=$3; }
reply() {
  cnt=0; j=0; logs=; recs=
  for k in $keys; do
    j=$((j + 1)); [ $j -lt "$i" ] && continue
    cnt=$((cnt + 1))
    a=0; running && a=1
    rd "$d/$k.rc"
    ns=0; case $v in *' nospace'*) ns=1 ;; esac
    rc=-; has "$d/$k.rc" && rc=$v
    # the hashing's status counts once the supervisor is gone and has written it again: until
    # then it may be a step's forgery (with a forged list of hashes beside it)
    case $k in *-hash) [ "$rc" = - ] || gone || { rc=-; ns=0; } ;; esac
    s=0; [ -e "$d/$k.lock" ] && s=1
    x=0; [ -e "$d/$k.killed" ] && x=1
    # not started, and its round's supervisor was killed on purpose (`repro cancel` between
    # two steps): this step was cancelled too
    [ $s = 0 ] && [ -e "$d/$p.killed" ] && x=1
    t=-; has "$d/$k.start" && t=$v
    h=0; [ -s "$d/$k.log" ] && { h=1; logs="$logs$nl$d/$k.log"; }
    recs="$recs$k $rc $a $s $x $t $h $ns$nl"
    [ "$rc" = 0 ] || break
  done
  # lists hold one path per line (the step dir may have spaces; never a newline)
  set -f; IFS=$nl
  set --
  # shellcheck disable=SC2046,SC2086  # split on newlines on purpose
  [ -z "$logs" ] || set -- $(wc -c -- $logs)
  c=0; left=$chunk; all=1; cats=; heads=; parts=
  for r in $recs; do
    c=$((c + 1))
    IFS=' '
    # shellcheck disable=SC2086
    record $r
    IFS=$nl
    size=0
    if [ "$h" = 1 ] && [ $# -ge 1 ]; then
      size=${1#"${1%%[! ]*}"}; size=${size%%" "*}; shift
      case $size in ''|*[!0-9]*) size=0;; esac
    fi
    o=0; [ $c -eq 1 ] && o=$off
    want=$((size - o)); [ $want -lt 0 ] && want=0
    [ $want -gt "$left" ] && want=$left
    left=$((left - want))
    heads="${heads}repro-poll key=$k rc=$rc alive=$a started=$s killed=$x size=$size take=$want t0=$t nospace=$ns$nl"
    { [ "$o" -eq 0 ] && [ "$want" -eq "$size" ] && [ "$rc" != - ]; } || all=0
    [ "$want" -eq 0 ] || { cats="$cats$nl$d/$k.log"; parts="$parts$k $want $o$nl"; }
    # a step whose log is not all sent ends the reply: the next poll goes on from there
    [ "$want" -ge $((size - o)) ] || { cnt=$c; break; }
  done
  clock
  echo "repro-plan n=$cnt now=$now fresh=$fresh"
  printf '%s' "$heads"
  if [ "$all" = 1 ] && [ "$exact" != 1 ]; then
    # shellcheck disable=SC2086
    [ -z "$cats" ] || cat -- $cats
  else
    for r in $parts; do
      IFS=' '
      # shellcheck disable=SC2086
      part $r
      IFS=$nl
      if [ "$o" -eq 0 ]; then head -c "$want" -- "$d/$k.log"
      else tail -c +$((o + 1)) -- "$d/$k.log" | head -c "$want"; fi
    done
  fi
  # the last record is the hashing's, with its status, and every log went whole
  if [ "$hold" = 1 ] && [ "$all" = 1 ]; then
    case $k in *-hash) [ "$rc" = - ] || held ;; esac
  fi
  exit 0
}
reply
