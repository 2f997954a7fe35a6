"""The exception tree: every message is written for the person at the terminal.

Input errors (exit 2) mean nothing was run. Host errors carry their result (host, command,
exit status, last lines of output) so a report can say exactly what went wrong where.
Controller errors (exit 4) are repro's own failures; Aborted (130) is the user's stop.
"""

from __future__ import annotations

from typing import Any


class ReproError(Exception):
    """Base of everything repro raises on purpose."""

    exit_code = 2


# --- bad input: exit 2, nothing was run ---------------------------------------------------


class InputError(ReproError):
    """Bad input or usage; raised before anything runs."""

    exit_code = 2


class InventoryError(InputError):
    """An inventory file is missing, malformed or inconsistent."""


class PlaybookError(InputError):
    """A playbook file is missing, malformed, or a value cannot be rendered safely."""


class UsageError(InputError):
    """A command-line value is malformed (e.g. `-e` without `=`)."""


class UnknownHostError(InputError, KeyError):
    """A --limit pattern or host name matches nothing in the inventory."""

    # KeyError.__str__ would wrap the message in quotes; keep the plain sentence.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ReportError(InputError):
    """A saved run directory or report.json cannot be read."""


# --- host outcomes: recorded per host, never stop the others --------------------------------


class HostError(ReproError):
    """Something went wrong on one host. Carries enough to explain it in a report."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        host: str,
        command: str | None = None,
        exit_status: int | None = None,
        tail: str = "",
    ) -> None:
        super().__init__(message)
        self.host = host
        self.command = command
        self.exit_status = exit_status
        self.tail = tail

    def __str__(self) -> str:
        return f"{self.host}: {self.args[0]}"

    @classmethod
    def of(cls, what: str, done: Any, detail: str, *, host: str) -> HostError:
        """`what` failed on `host`, as the finished command `done` (a transport's Completed)
        shows: `detail` (picked from its output by the caller) in the message; its command,
        exit status and the last 2000 characters of its stderr kept for the report."""
        return cls(
            f"{what}: {detail}",
            host=host,
            command=done.command,
            exit_status=done.exit_status,
            tail=done.stderr[-2000:],
        )


class ConnectError(HostError):
    """The host could not be reached or the connection was lost for good."""


class HostKeyError(ConnectError):
    """The host's key is unknown or differs from known_hosts. Never bypassed."""


class CredentialsError(ConnectError):
    """The host refused our credentials, or our key cannot be used: waiting will not help."""


class NameNotFound(ConnectError):
    """The resolver says the host's name does not exist (not a temporary failure): a typo, or a
    host gone from DNS. A host never reached in this run is not waited for on that."""


class StepFailed(HostError):
    """A playbook step exited non-zero on the host."""


class StepTimeout(StepFailed):
    """A playbook step ran past its timeout; its process group was killed."""


class UntrustedOutput(HostError):
    """The host sent back something that is not a valid name, hash or size."""


class Cancelled(HostError):
    """The run was cancelled (Ctrl-C or `repro cancel`) while this host was busy."""


# --- repro itself failed (exit 4), or the user stopped it (exit 130) --------------------------


class Unfinished(ReproError):
    """The run could not end as a run should; carries what it had gathered (`outcome`: its
    RunResult and Comparison), so the CLI can still show it."""

    def __init__(self, message: str, *, outcome: tuple[Any, Any] | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


class ControllerError(Unfinished):
    """repro could not do its own part on this machine: exit 4, never 1 (a difference) nor 2."""

    exit_code = 4


class ReportWriteError(ControllerError):
    """The controller cannot write a run's files (report, run.json): disk full, read-only."""


class Aborted(Unfinished):
    """The user stopped the run (SIGINT, SIGTERM, SIGHUP) and its report was written: exit 130."""

    exit_code = 130
