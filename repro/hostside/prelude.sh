# shellcheck shell=sh
# The environment every command repro runs on a host starts from (steps, preflight, facts).
# Commands arrive over SSH as `sh -c …` in a non-login shell, so /etc/profile.d/guix.sh never
# runs and a per-user Guix (`guix pull` puts it in ~/.config/guix/current) is not on PATH.
if [ -x "$HOME/.config/guix/current/bin/guix" ]; then PATH="$HOME/.config/guix/current/bin:$PATH"; export PATH; fi
