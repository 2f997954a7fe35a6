# shellcheck shell=sh
# A run's directory under a host's work base, as repro made it (after lib.sh; for gc.sh and for
# the held reply in reply.sh). Only what repro made is ever removed: a directory (never a
# symlink), owned by us, named like a run id, holding the steps directory every run has; `rm`
# is given one plain name inside the base (the caller has cd'ed there with -P), so it can never
# be led out of it (GNU rm does not follow symlinks while it recurses).
run_id_glob='[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'

ours() {  # $1: a run dir repro made (a name in the cwd), $2 the name of its steps dir
  # shellcheck disable=SC2254  # the pattern is meant as a glob
  case $1 in $run_id_glob) ;; *) return 1 ;; esac
  [ -d "$1" ] && [ ! -L "$1" ] && [ -O "$1" ] && [ -d "$1/$2" ] && [ ! -L "$1/$2" ]
}

rmrun() {  # $1: a run dir (a name in the cwd); its whole tree goes, or it says no (status)
  rm -rf -- "$1" 2>/dev/null && return 0
  # Builds leave read-only trees (Go's module cache, copies out of a store): made writable only
  # then (one process less for every run that has none); chmod -R does not follow the symlinks
  # it meets, and rm -rf removes a symlink, never what it points to.
  chmod -R u+w -- "$1" 2>/dev/null
  rm -rf -- "$1"
}
