"""Reading an inventory through Ansible's own `ansible-inventory --list`, for what only Ansible
reads (dynamic inventory plugins such as aws_ec2, scripts, vault): its semantics, not ours.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from repro.errors import InventoryError
from repro.jinja_vars import UnsafeText

#: how long `ansible-inventory` may take (a cloud plugin pages through an API)
TIMEOUT_SECONDS = 300.0
_MAX_OUTPUT = 256 * 1024 * 1024


def ansible_inventory_command() -> str | None:
    """`ansible-inventory` on PATH, else beside this Python (installed in the same venv)."""
    found = shutil.which("ansible-inventory")
    if found:
        return found
    beside = Path(sys.executable).parent / "ansible-inventory"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def ansible_list(paths: list[Path], why: Exception | None) -> tuple[dict[str, Any], str]:
    """`ansible-inventory -i PATH... --list`, parsed, and its last warning (Ansible only warns
    about a source it could not parse); every failure is one InventoryError line."""
    command = ansible_inventory_command()
    reason = f"{why}: " if why is not None else f"{', '.join(map(str, paths))}: "
    if command is None:
        raise InventoryError(
            f"{reason}reading it needs Ansible's ansible-inventory, which is not installed "
            "(pip install ansible-core)"
        )
    # No shell, and the path is one argument: nothing from the inventory is interpreted.
    argv = [command, *(arg for p in paths for arg in ("-i", str(p))), "--list"]
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=TIMEOUT_SECONDS, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise InventoryError(
            f"{reason}ansible-inventory took longer than {TIMEOUT_SECONDS:g}s"
        ) from None
    except OSError as exc:
        raise InventoryError(f"{reason}cannot run {command}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        last = _last_error(done.stderr.decode("utf-8", errors="replace"))
        raise InventoryError(f"{reason}ansible-inventory failed: {last}")
    if len(done.stdout) > _MAX_OUTPUT:
        raise InventoryError(f"{reason}ansible-inventory printed more than {_MAX_OUTPUT} bytes")
    try:
        data = json.loads(done.stdout, object_hook=_unwrap)
    except _Vaulted:
        raise InventoryError(
            f"{reason}ansible-inventory left a value vault-encrypted; give it the vault password "
            "(ANSIBLE_VAULT_PASSWORD_FILE)"
        ) from None
    except ValueError as exc:
        raise InventoryError(f"{reason}ansible-inventory printed no JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InventoryError(f"{reason}ansible-inventory printed no mapping of groups")
    return data, _last_error(done.stderr.decode("utf-8", errors="replace"))


class _Vaulted(Exception):
    pass


def _unwrap(obj: dict[str, Any]) -> Any:
    """Ansible's JSON markers: an unsafe string stays data (never templated); vault is refused."""
    if len(obj) == 1 and "__ansible_unsafe" in obj:
        return UnsafeText(obj["__ansible_unsafe"])
    if len(obj) == 1 and "__ansible_vault" in obj:
        raise _Vaulted()
    return obj


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR" in line[:10] or "WARNING" in line[:12]]
    text = (errors or lines or ["no message"])[-1]
    return " ".join(text.split())[:300]
