"""The environment every command repro runs on a host starts from: repro/hostside/prelude.sh
(a per-user Guix on PATH), so steps, preflight and facts all see the same `guix`."""

from __future__ import annotations

from repro import hostside

PRELUDE = hostside.load("prelude.sh")
