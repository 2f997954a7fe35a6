"""Detached signatures made and checked with the tools people already hold keys for: gpg
(`--detach-sign`, verified against a directory of public keys) and `ssh-keygen -Y` (allowed_signers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from repro.errors import InputError

Outcome = Literal["good", "bad", "unknown-key", "missing"]
NAMESPACE = "repro"  # ssh-keygen -Y namespace: a signature made for git or a file cannot pass
KEY_SUFFIXES = (".gpg", ".asc", ".pub", ".key")
_TIMEOUT = 60


class SigningError(InputError):
    """A key or tool needed to sign is missing or refused (nothing half-signed is left)."""


@dataclass(frozen=True)
class Check:
    """One signature checked: `good` (by `signer`), `bad` (tampered), or undecidable."""

    outcome: Outcome
    signer: str = ""  # key fingerprint (gpg) or principal (ssh)
    detail: str = ""

    def __repr__(self) -> str:
        return f"Check({self.outcome}, {self.signer!r})"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SigningError(f"{name} is not installed (scripts/sysdeps.sh installs it)")
    return path


def _run(
    argv: list[str], *, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv, input=stdin, capture_output=True, timeout=_TIMEOUT, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


# --- gpg -------------------------------------------------------------------------------------


def key_files(keys: Path) -> list[Path]:
    """Public key files in a keys dir (guix.sigs' builder-keys/ holds `<signer>.gpg`)."""
    if not keys.is_dir():
        raise InputError(f"{keys}: not a directory of public keys")
    return sorted(p for p in keys.iterdir() if p.suffix in KEY_SUFFIXES and p.is_file())


def gpg_verify(data: Path, sig: Path, keys: list[Path]) -> Check:
    """Check `sig` over `data` with only `keys` trusted, in a throwaway GNUPGHOME: nothing of the
    user's own keyring (or a key a signer shipped beside their files) can vouch for anything."""
    if not sig.is_file():
        return Check("missing", detail=f"no signature {sig.name}")
    if not keys:
        return Check("unknown-key", detail="no public key to check it with")
    gpg = _tool("gpg")
    home = tempfile.mkdtemp(prefix="repro-gpg-")
    try:
        base = [gpg, "--homedir", home, "--batch", "--no-tty", "--no-autostart"]
        imported = _run([*base, "--import", *map(str, keys)])
        if imported.returncode != 0 and b"imported:" not in imported.stderr:
            return Check("unknown-key", detail="the public keys could not be imported")
        done = _run([*base, "--status-fd", "1", "--verify", str(sig), str(data)])
    finally:
        shutil.rmtree(home, ignore_errors=True)
    status = [line.split()[1:] for line in done.stdout.decode(errors="replace").splitlines()
              if line.startswith("[GNUPG:] ") and len(line.split()) > 1]  # fmt: skip
    words = {s[0]: s[1:] for s in status}
    if "BADSIG" in words:
        return Check("bad", detail="BAD signature: the file was changed after it was signed")
    if "VALIDSIG" in words and done.returncode == 0 and "REVKEYSIG" not in words:
        fpr = words["VALIDSIG"][-1] if words["VALIDSIG"] else ""
        note = " (key since expired)" if "EXPKEYSIG" in words else ""
        return Check("good", fpr, f"good signature by {fpr}{note}")
    if "NO_PUBKEY" in words or "ERRSIG" in words:
        return Check("unknown-key", detail="signed by a key not in the keys given")
    return Check("unknown-key", detail="gpg could not decide (" + ", ".join(words) + ")")


def gpg_check_key(key: str | None) -> None:
    """Raise SigningError now, before a long run, when gpg has no secret key to sign with."""
    done = _run(
        [_tool("gpg"), "--batch", "--no-tty", "--list-secret-keys", *([key] if key else [])]
    )
    if done.returncode != 0 or not done.stdout.strip():
        which = f"key {key!r}" if key else "default key"
        raise SigningError(f"gpg has no secret {which} to sign with (gpg --list-secret-keys)")


def gpg_sign(path: Path, key: str | None) -> Path:
    """`gpg --detach-sign --armor` with the user's own keyring; returns `<path>.asc`."""
    out = path.with_name(path.name + ".asc")
    argv = [_tool("gpg"), "--batch", "--yes", "--armor", "--detach-sign", "-o", str(out)]
    done = _run([*argv, *(["--local-user", key] if key else []), str(path)])
    if done.returncode != 0:
        out.unlink(missing_ok=True)
        raise SigningError(f"gpg could not sign {path.name}: {_last(done.stderr)}")
    return out


# --- ssh-keygen -Y ---------------------------------------------------------------------------


def ssh_sign(path: Path, key: Path, namespace: str = NAMESPACE) -> Path:
    """`ssh-keygen -Y sign` with a private key file; returns `<path>.sig`."""
    if not key.is_file():
        raise SigningError(f"{key}: no such SSH key")
    out = path.with_name(path.name + ".sig")
    out.unlink(missing_ok=True)  # ssh-keygen asks before overwriting; there is no one to answer
    done = _run([_tool("ssh-keygen"), "-q", "-Y", "sign", "-f", str(key), "-n", namespace,
                 str(path)], stdin=b"")  # fmt: skip
    if done.returncode != 0 or not out.is_file():
        out.unlink(missing_ok=True)
        raise SigningError(
            f"ssh-keygen could not sign {path.name} with {key}: {_last(done.stderr)}"
        )
    return out


def ssh_verify(data: Path, sig: Path, allowed: Path, namespace: str = NAMESPACE) -> Check:
    """Who signed (`-Y find-principals`), then whether the bytes are theirs (`-Y verify`)."""
    if not sig.is_file():
        return Check("missing", detail=f"no signature {sig.name}")
    keygen = _tool("ssh-keygen")
    found = _run([keygen, "-Y", "find-principals", "-s", str(sig), "-f", str(allowed),
                  "-n", namespace])  # fmt: skip
    principals = found.stdout.decode(errors="replace").split()
    if found.returncode != 0 or not principals:
        return Check("unknown-key", detail=f"the key that made {sig.name} is not in {allowed.name}")
    checked = _run([keygen, "-Y", "verify", "-f", str(allowed), "-I", principals[0],
                    "-n", namespace, "-s", str(sig)], stdin=data.read_bytes())  # fmt: skip
    if checked.returncode != 0:
        return Check(
            "bad", principals[0], "BAD signature: the file was changed after it was signed"
        )
    return Check("good", principals[0], f"good signature by {principals[0]}")


def _last(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1][:200] if lines else "no message"
