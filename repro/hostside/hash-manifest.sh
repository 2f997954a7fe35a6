# shellcheck shell=sh
# `manifest FILE BASE` (repro/artifacts.py, before hash.sh): a SHA256SUMS-style manifest.
# Every listed name that is a regular file (not a symlink) inside the work dir ($W, physical)
# is queued under its listed name; unsafe names and files outside are skipped with a warning.
# The real file is hashed, never the claim. `cd -P` + $PWD resolve the file's dir without a
# `$(…)` process per listed file.
cd -P -- . || exit 1
W=$PWD last=''
manifest() {
  d=${1%/*}
  while IFS= read -r line || [ -n "$line" ]; do
    # shellcheck disable=SC2295  # $q is a pattern: 64 characters of any kind
    rest=${line#$q}
    case ${line%"$rest"} in ''|*[!0-9a-fA-F]*) continue;; esac
    case $rest in '  '*|' *'*) l=${rest#??}; l=${l%"$CR"};; *) continue;; esac
    case /$l/ in //*|*//*|*/./*|*/../*)
      printf 'repro: %s lists an unsafe name; skipped\n' "$1" >&2; continue;;
    esac
    t=$d/$2/$l
    if [ ! -f "$t" ] || [ -L "$t" ]; then continue; fi
    # Listed files share a few dirs: each dir is resolved once, not once per file.
    if [ "${t%/*}" != "$last" ]; then
      cd -P -- "${t%/*}" 2>/dev/null || continue
      td=$PWD last=${t%/*}
      cd -P -- "$W" || exit 1
    fi
    case $td/ in "$W"/*) ;; *)
      printf 'repro: %s lists a file outside the work dir; skipped\n' "$1" >&2; continue;;
    esac
    queue "$t" "$l"
  done < "$1"
}
