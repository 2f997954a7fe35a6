"""Real gpg keys for tests: a throwaway GNUPGHOME (short path, for gpg-agent's socket) where
keys are generated, files signed and public keys exported, as a builder would with their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


class GpgKeys:
    def __init__(self) -> None:
        self.home = tempfile.mkdtemp(prefix="rg", dir="/tmp")
        self.env = {**os.environ, "GNUPGHOME": self.home}

    def gpg(self, *argv: str) -> bytes:
        done = subprocess.run(
            ["gpg", "--batch", "--no-tty", *argv],
            env=self.env, capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        return done.stdout

    def make(self, name: str) -> str:
        """A new ed25519 signing key for `name`; returns its fingerprint."""
        uid = f"{name} <{name}@builders.example>"
        self.gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        for line in self.gpg("--with-colons", "--list-keys", uid).decode().splitlines():
            if line.startswith("fpr:"):
                return line.split(":")[9]
        raise AssertionError(f"no fingerprint for {uid}")

    def sign(self, name: str, path: Path) -> Path:
        out = path.with_name(path.name + ".asc")
        self.gpg("--yes", "--armor", "--local-user", f"{name}@builders.example",
                 "--detach-sign", "-o", str(out), str(path))  # fmt: skip
        return out

    def export(self, name: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.gpg("--armor", "--export", f"{name}@builders.example"))
        return dest

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "all"],
                       capture_output=True, timeout=30, check=False)  # fmt: skip
        shutil.rmtree(self.home, ignore_errors=True)
