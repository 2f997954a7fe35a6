"""An ansible callback for bench/fanout.py: every task's stdout per host, written as JSON.

Enabled next to the default stdout callback (so ansible prints as usual); the file it writes
($BENCH_COLLECT_OUT) has the same shape as the bare controllers' out.json.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_collect"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.outputs: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}

    def v2_runner_on_ok(self, result: Any) -> None:
        name = result._host.get_name()
        self.outputs.setdefault(name, []).append(str(result._result.get("stdout", "")) + "\n")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        msg = result._result.get("stderr") or result._result.get("msg") or "failed"
        self.errors.setdefault(result._host.get_name(), " ".join(str(msg).split())[:200])

    def v2_runner_on_unreachable(self, result: Any) -> None:
        msg = result._result.get("msg") or "unreachable"
        self.errors.setdefault(result._host.get_name(), " ".join(str(msg).split())[:200])

    def v2_playbook_on_stats(self, stats: Any) -> None:
        path = os.environ.get("BENCH_COLLECT_OUT")
        if path:
            outputs = {n: o for n, o in self.outputs.items() if n not in self.errors}
            with open(path, "w", encoding="utf-8") as fh:
                json.dump({"outputs": outputs, "errors": self.errors}, fh, indent=1)
