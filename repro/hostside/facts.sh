# shellcheck shell=sh
# repro host facts (repro/facts.py): the helpers its fact table's snippets call. facts.py
# joins prelude.sh, this file and one `_rf_sec NAME` + snippet per fact into `_repro_facts`,
# sent on stdin to `sh -s -- WORK_DIR [create [SUBDIR...]]`, so nothing is ever interpolated
# into it. All work happens inside functions, read in full before anything runs, and with stdin
# from /dev/null: bash reads a piped script byte by byte, so a command that reads stdin would
# otherwise swallow the part of the script not yet read. Prints sections between marker lines;
# always exits 0.
#
# Cheap on purpose: at 100 hosts every process a host starts costs the controller's machine
# ~0.65 ms of CPU, so files are read with shell builtins and commands run only for facts no
# file holds. Output stays bounded without `head`/`cut`: files and captured output go through
# line-count and line-length checks; what is printed directly (date, nproc, uname, getconf)
# is short by construction.
# the login environment's locale, before the C locale below replaces it (a build-env fact)
_rf_lc_all=${LC_ALL-}
LC_ALL=C
export LC_ALL
# GNU nproc obeys these; the build's own settings must not shrink the core count we report
unset OMP_NUM_THREADS OMP_THREAD_LIMIT
_rf_nl='
'

_rf_have() { command -v "$1" >/dev/null 2>&1; }

_rf_sec() { printf '\n%s %s\n' '@@repro-facts@@' "$1"; }

# _rf_put TEXT MAX: TEXT's first line, left out when longer than MAX (no builtin cuts a line)
_rf_put() {
  _rf_p=${1%%"$_rf_nl"*}
  [ "${#_rf_p}" -gt "$2" ] || printf '%s\n' "$_rf_p"
}

# _rf_lines FILE LINES MAX [block]: FILE's first LINES lines, each left out when longer than
# MAX; with "block", stop at the first blank line
_rf_lines() {
  [ -r "$1" ] || return 0
  _rf_n=0
  while [ "$_rf_n" -lt "$2" ]; do
    _rf_l=
    IFS= read -r _rf_l || [ -n "$_rf_l" ] || break
    if [ "${4-}" = block ]; then
      case $_rf_l in *[![:space:]]*) ;; *) break ;; esac
    fi
    [ "${#_rf_l}" -gt "$3" ] || printf '%s\n' "$_rf_l"
    _rf_n=$((_rf_n + 1))
  done <"$1"
}

# the only commands that get a time limit: guix is slow, and a wedged daemon must not stall
# the run. Called in a subshell: it replaces that subshell, so timeout costs no extra process.
_rf_guix() {
  if [ -n "$_rf_timeout" ]; then exec timeout 20 guix "$@"; else exec guix "$@"; fi
}

# _rf_nproc LIST: how many CPUs an affinity list ("0-3,8,10-11") names; fails on anything else
_rf_nproc() {
  case $1 in *[0-9]*) ;; *) return 1 ;; esac
  _rf_c=0
  _rf_old=$IFS
  IFS=,
  for _rf_r in $1; do
    _rf_r=${_rf_r#"${_rf_r%%[! 	]*}"}
    _rf_r=${_rf_r%"${_rf_r##*[! 	]}"}
    case $_rf_r in
      *[!0-9-]* | "" | -* | *- | *-*-*) IFS=$_rf_old; return 1 ;;
      *-*) _rf_c=$((_rf_c + ${_rf_r#*-} - ${_rf_r%-*} + 1)) ;;
      *) _rf_c=$((_rf_c + 1)) ;;
    esac
  done
  IFS=$_rf_old
  [ "$_rf_c" -gt 0 ] && echo "$_rf_c"
}

# the CPUs this process may run on, as nproc counts them, from the affinity list ("0-3,8")
_rf_cores() {
  _rf_cpus=
  if [ -r /proc/self/status ]; then
    while IFS= read -r _rf_l; do
      case $_rf_l in Cpus_allowed_list:*) _rf_cpus=${_rf_l#*:}; break ;; esac
    done </proc/self/status
  fi
  _rf_nproc "$_rf_cpus" || nproc || getconf _NPROCESSORS_ONLN
}

# _rf_field FILE PREFIX MAX: FILE's first line that starts with PREFIX
_rf_field() {
  [ -r "$1" ] || return 0
  while IFS= read -r _rf_l; do
    case $_rf_l in "$2"*) _rf_put "$_rf_l" "$3"; break ;; esac
  done <"$1"
}

# The time (epoch seconds) without a `date` process. bash (sh on Fedora, Arch, Guix System)
# knows it. Elsewhere: Linux's boot time (btime in /proc/stat, which moves with every clock
# step) plus the seconds since boot; to a second or two, plenty for the clock-skew check.
# `date` where either file is missing or odd.
_rf_clock() {
  # shellcheck disable=SC3028  # bash only, and only when it is bash
  case ${BASH_VERSION-}:${EPOCHSECONDS-} in
    [5-9]*:[0-9]*) echo "$EPOCHSECONDS"; return ;;
  esac
  _rf_bt=
  _rf_up=
  if [ -r /proc/stat ] && [ -r /proc/uptime ]; then
    _rf_n=0
    while [ "$_rf_n" -lt 10000 ] && IFS=' ' read -r _rf_k _rf_v _rf_rest; do
      if [ "$_rf_k" = btime ]; then _rf_bt=$_rf_v; break; fi
      _rf_n=$((_rf_n + 1))
    done </proc/stat
    IFS=' ' read -r _rf_up _rf_rest </proc/uptime
    _rf_up=${_rf_up%%.*}
  fi
  case $_rf_bt in '' | *[!0-9]*) date +%s; return ;; esac
  case $_rf_up in '' | *[!0-9]*) date +%s; return ;; esac
  echo $((_rf_bt + _rf_up))
}

# what `uname -srm` prints, from the kernel's own files when it has them all (Linux >= 6.1)
_rf_uname() {
  _rf_k=/proc/sys/kernel
  if [ -r $_rf_k/ostype ] && [ -r $_rf_k/osrelease ] && [ -r $_rf_k/arch ] \
    && IFS= read -r _rf_os <$_rf_k/ostype && IFS= read -r _rf_rel <$_rf_k/osrelease \
    && IFS= read -r _rf_arch <$_rf_k/arch && [ -n "$_rf_os$_rf_rel$_rf_arch" ]; then
    _rf_put "$_rf_os $_rf_rel $_rf_arch" 512
  else
    uname -srm
  fi
}

_rf_os_release() {
  _rf_f=/etc/os-release
  [ -r "$_rf_f" ] || _rf_f=/usr/lib/os-release
  _rf_lines "$_rf_f" 60 4096
}

_rf_glibc() {
  if ! getconf GNU_LIBC_VERSION && _rf_have ldd; then
    _rf_put "$(ldd --version 2>&1)" 256
  fi
}

# systemd-detect-virt, kept per boot: it costs a few ms (4x any other command of this script),
# and what it says cannot change before a reboot. The answer is cached in ~/.cache/repro/virt
# under the kernel's boot id and the hostname (a container sharing the host's home has its own
# name); read back only if it looks like an answer, and written only where that dir exists.
_rf_virt() {
  _rf_have systemd-detect-virt || return 0
  _rf_key=
  _rf_cache=
  if [ -n "${HOME:-}" ] && [ -r /proc/sys/kernel/random/boot_id ] \
    && IFS= read -r _rf_key </proc/sys/kernel/random/boot_id; then
    _rf_h=
    [ -r /proc/sys/kernel/hostname ] && IFS= read -r _rf_h </proc/sys/kernel/hostname
    _rf_key="$_rf_key $_rf_h"
    _rf_cache=$HOME/.cache/repro/virt
    if [ -f "$_rf_cache" ] && IFS= read -r _rf_l <"$_rf_cache"; then
      _rf_v=${_rf_l#"$_rf_key "}
      if [ "$_rf_v" != "$_rf_l" ]; then
        case $_rf_v in *[!a-z0-9_-]* | "") ;; *) echo "$_rf_v"; return 0 ;; esac
      fi
    fi
  fi
  _rf_v=$(systemd-detect-virt)
  _rf_put "$_rf_v" 64
  [ -n "$_rf_cache" ] && [ -d "${_rf_cache%/*}" ] || return 0
  case $_rf_v in
    *[!a-z0-9_-]* | "") ;;
    *) printf '%s %s\n' "$_rf_key" "$_rf_v" >"$_rf_cache" 2>/dev/null ;;
  esac
  return 0
}

# _rf_existing PATH: $_rf_d is PATH's nearest existing ancestor (itself if it exists); without
# create, the work dir is usually made later. Each turn drops one trailing "/" or last name,
# so it ends: "/" and "." always exist.
_rf_existing() {
  _rf_d=${1:-.}
  while [ ! -e "$_rf_d" ]; do
    case $_rf_d in
      */*) _rf_d=${_rf_d%/*}; _rf_d=${_rf_d:-/} ;;
      *) _rf_d=. ;;
    esac
  done
}

# df for both directories at once; one at a time when that is not three clean lines (a
# failure on one of them, a mount point with a newline in its name)
_rf_df() {
  _rf_dfw=
  _rf_dft=
  _rf_have df || return 0
  if _rf_o=$(df -Pk -- "$1" "$2"); then
    _rf_r=${_rf_o#*"$_rf_nl"}
    _rf_a=${_rf_r%%"$_rf_nl"*}
    _rf_b=${_rf_r#*"$_rf_nl"}
    if [ "$_rf_a" != "$_rf_r" ] && [ "$_rf_b" = "${_rf_b%%"$_rf_nl"*}" ]; then
      _rf_dfw=${_rf_o%%"$_rf_nl"*}$_rf_nl$_rf_a
      _rf_dft=${_rf_o%%"$_rf_nl"*}$_rf_nl$_rf_b
      return 0
    fi
  fi
  _rf_dfw=$(df -Pk -- "$1")
  _rf_dft=$(df -Pk -- "$2")
}

# _rf_unsafe DIR...: whether another local user could swap or change DIR (the run dir), the
# DIRs after it (its subdirs) or a dir above it; $_rf_why says which and how. Each must be this
# user's (a dir above the run dir may be root's) and not writable by group or others unless it
# has the sticky bit (like /tmp). One `stat` for all (not POSIX, but GNU's and busybox's).
_rf_unsafe() {
  _rf_why=
  _rf_have stat || { _rf_why="refusing $1: cannot check who may write to it (no stat)"; return 0; }
  _rf_n=$#
  _rf_a=$1
  while :; do
    case $_rf_a in */*) _rf_a=${_rf_a%/*} ;; *) break ;; esac
    [ -n "$_rf_a" ] || break
    set -- "$_rf_a" "$@"
  done
  case $1 in /*) set -- / "$@" ;; esac
  _rf_above=$(($# - _rf_n))
  _rf_o=$(stat -L -c '%u %a' -- "$@") || { _rf_why="refusing $1: cannot stat it"; return 0; }
  _rf_o=$_rf_o$_rf_nl
  _rf_i=0
  for _rf_a do
    _rf_i=$((_rf_i + 1))
    _rf_l=${_rf_o%%"$_rf_nl"*} _rf_o=${_rf_o#*"$_rf_nl"}
    _rf_u=${_rf_l%% *} _rf_m=${_rf_l#* }
    case $_rf_u$_rf_m in '' | *[!0-9]*) _rf_why="refusing $_rf_a: cannot stat it"; return 0 ;; esac
    if [ ! -O "$_rf_a" ] && { [ "$_rf_i" -gt "$_rf_above" ] || [ "$_rf_u" != 0 ]; }; then
      _rf_why="refusing $_rf_a: it belongs to another user (uid $_rf_u)"
      return 0
    fi
    if [ $((0$_rf_m & 022)) -ne 0 ] && [ $((0$_rf_m & 01000)) -eq 0 ]; then
      _rf_why="refusing $_rf_a: others may write to it (mode $_rf_m, no sticky bit)"
      return 0
    fi
  done
  return 1
}

# _rf_work_dir [create [SUBDIR...]]: the work dir $_rf_w as "[path]" (so that no leading or
# trailing space is lost; a relative path is unknown here), made first with "create" (and the
# names after it inside it: the run's subdirectories, one mkdir), then whether it is writable
# (mkdir's complaint, if any, comes before: the verdict is always the last line). Measures the
# free space of it and of the temporary dir for the df sections.
_rf_work_dir() {
  _rf_why=
  case $_rf_w in
    *"$_rf_nl"*) ;;
    /*) [ "${#_rf_w}" -gt 4096 ] || printf '[%s]\n' "$_rf_w" ;;
  esac
  if [ "${1-}" = create ]; then
    shift
    _rf_n=$#
    for _rf_s do set -- "$@" "$_rf_w/$_rf_s"; done
    shift "$_rf_n"
    # what repro makes is the build user's alone: the run dir 0700, and everything in it
    umask 077
    { [ -d "$_rf_w" ] && [ $# -eq 0 ]; } || mkdir -p -- "$_rf_w" "$@" 2>&1
    # and another local user must not be able to change it under us
    [ -d "$_rf_w" ] && [ -w "$_rf_w" ] && _rf_unsafe "$_rf_w" "$@" && printf '%s\n' "$_rf_why"
  fi
  if [ -z "$_rf_why" ] && [ -d "$_rf_w" ] && [ -w "$_rf_w" ]; then
    echo writable
  else
    echo not-writable
  fi
  _rf_existing "$_rf_w"
  _rf_dw=$_rf_d
  _rf_existing "${TMPDIR:-/tmp}"
  _rf_df "$_rf_dw" "$_rf_d"
}

# _rf_print TEXT MAX: TEXT, left out when longer than MAX
_rf_print() { [ "${#1}" -gt "$2" ] || printf '%s\n' "$1"; }

_rf_guix_describe() {
  _rf_have guix || return 0
  _rf_o=$(_rf_guix describe --format=json)
  _rf_print "$_rf_o" 500000
}

_rf_guix_daemon() {
  # Asking the daemon is the check: `guix gc --list-roots` fails at once when no daemon
  # listens (on the default socket, GUIX_DAEMON_SOCKET, or guix://), and a socket file alone
  # proves nothing about a daemon behind it.
  _rf_have guix || return 0
  if (_rf_guix gc --list-roots >/dev/null 2>&1); then echo yes; else echo no-answer; fi
}

# _rf_start WORK_DIR: $_rf_w is the work dir ("~" and "~/…" are $HOME's; none: $HOME)
_rf_start() {
  _rf_w=${1:-$HOME}
  # shellcheck disable=SC2088  # a literal "~", from the controller
  case $_rf_w in
    "~") _rf_w=$HOME ;;
    "~/"*) _rf_w=$HOME/${_rf_w#"~/"} ;;
  esac
  _rf_timeout=
  if _rf_have timeout; then _rf_timeout=yes; fi
}

# what reprotest varies, as a step starts from it (a step's own env and --vary go on top);
# builtins and /proc only: no process per fact
_rf_build_env() {
  _rf_m=
  _rf_put "tz=${TZ-}" 256
  _rf_put "lang=${LANG-}" 256
  _rf_put "lc_all=$_rf_lc_all" 256
  _rf_put "user=${USER:-${LOGNAME-}}" 256
  _rf_put "home=${HOME-}" 1024
  _rf_put "source_date_epoch=${SOURCE_DATE_EPOCH-}" 64
  if [ -r /proc/self/status ]; then
    while IFS= read -r _rf_l; do
      case $_rf_l in Uid:* | Gid:* | Umask:*)
        # "Uid:<tab>real<tab>effective…": the real id, without a process; "Umask:<tab>0022"
        # (Linux 4.7 on) is this shell's, so the `$(umask)` subshell below is only a fallback
        _rf_v=${_rf_l#*:}
        _rf_v=${_rf_v#"${_rf_v%%[![:space:]]*}"}
        case $_rf_l in
          Umask:*) _rf_m=${_rf_v%%[[:space:]]*} ;;
          *) _rf_put "${_rf_l%%:*}=${_rf_v%%[[:space:]]*}" 64 ;;
        esac
        ;;
      esac
    done </proc/self/status
  fi
  case $_rf_m in [0-7][0-7][0-7][0-7]) ;; *) _rf_m=$(umask) ;; esac
  _rf_put "umask=$_rf_m" 64
  if [ -r /proc/sys/kernel/domainname ] && IFS= read -r _rf_l </proc/sys/kernel/domainname; then
    _rf_put "domain=$_rf_l" 256
  fi
}
