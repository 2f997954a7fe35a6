"""The environment every command repro runs on a host starts from.

Commands arrive over SSH as `sh -c …` in a non-login shell, so /etc/profile.d/guix.sh never runs
and a per-user Guix (`guix pull` puts it in ~/.config/guix/current) is not on PATH. Steps,
preflight and facts must all see the same `guix`, so they all start with this prelude.
"""

from __future__ import annotations

PRELUDE = (
    'if [ -x "$HOME/.config/guix/current/bin/guix" ]; then '
    'PATH="$HOME/.config/guix/current/bin:$PATH"; export PATH; fi\n'
)
