"""The Fabric transport (`repro_transport: fabric`): Fabric 3 / paramiko underneath, host keys
always checked against the same known_hosts as asyncssh, every blocking call in a thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import fabric
import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST, cMSG_CHANNEL_REQUEST, cMSG_CHANNEL_SUCCESS
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

from repro.errors import ConnectError, CredentialsError, HostKeyError, UsageError
from repro.inventory import Host
from repro.transport.asyncssh import (
    CONNECT_TIMEOUT,
    KEEPALIVE_COUNT_MAX,
    KEEPALIVE_INTERVAL,
    SSH_BACKSTOP,
    _exit_status,
    _named,
    _number_var,
    _one_line,
    known_hosts_of,
    trust_command,
)
from repro.transport.base import (
    HELD_MARK,
    Completed,
    Held,
    ReplyTooLarge,
    Sink,
    Transport,
    check_reply_size,
    os_reason,
    tcp_keepalive,
    unresolved,
)
from repro.transport.route import Hop, Route, resolve

T = TypeVar("T")

# paramiko logs what a server sends (its banner, its errors) with tracebacks; with no handler
# configured, Python's last-resort handler would print that raw to stderr, escape sequences
# and all, before the host key is even checked. Its failures reach the user as our errors.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

#: environment variable sizing the one thread pool every FabricTransport shares
POOL_SIZE_VAR = "REPRO_FABRIC_THREADS"
DEFAULT_POOL_SIZE = 32

_SEND_CHUNK = 32768  # paramiko's largest packet payload
_RECV_CHUNK = 65536
_ERR_KEEP = 64 * 1024  # the tail of a streamed command's stderr that is kept
_TICK = 0.2  # how often a worker blocked on a quiet command checks its stop flag and deadline
_WINDOW_TICK = 0.01  # how often a worker with stdin left checks for send window
_CLOSE_SECONDS = 5.0
_NO_AUTH_METHODS = "No authentication methods available"
#: the attribute our exit-signal handler leaves on a paramiko Channel (paramiko drops it)
_SIGNAL_ATTR = "_repro_exit_signal"

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def pool_size() -> int:
    """The shared pool's size: $REPRO_FABRIC_THREADS, else 32."""
    raw = os.environ.get(POOL_SIZE_VAR, "").strip()
    if not raw:
        return DEFAULT_POOL_SIZE
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"{POOL_SIZE_VAR} must be a positive whole number, got {raw!r}")
    return int(raw)


def executor() -> ThreadPoolExecutor:
    """The thread pool every FabricTransport runs its blocking calls in (made on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(pool_size(), thread_name_prefix="repro-fabric")
        return _pool


async def _in_thread(fn: Callable[[], T], cleanup: Callable[[T], None] | None = None) -> T:
    """`fn()` in the shared pool, never on the event loop thread.

    A cancelled caller cannot stop a thread already running; `cleanup` gets its result
    when it finishes, so a connection opened for nobody is closed.
    """
    cfut = executor().submit(fn)
    try:
        return await asyncio.wrap_future(cfut)
    except asyncio.CancelledError:
        if cleanup is not None and not cfut.cancel():
            cfut.add_done_callback(partial(_cleanup_result, cleanup))
        raise


def _cleanup_result(cleanup: Callable[[T], None], fut: Future[T]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        cleanup(fut.result())


@dataclass(frozen=True)
class _Settings:
    """The validated connection variables of one host."""

    timeout: float
    keepalive: float
    keepalive_count: int

    def __repr__(self) -> str:
        return f"_Settings(timeout={self.timeout:g}, keepalive={self.keepalive:g})"


@dataclass(frozen=True)
class _Outcome:
    """What one command sent back, before its status is interpreted."""

    status: int | None
    signal_name: str | None
    stdout: bytes
    stderr: bytes
    held: paramiko.Channel | None = None  # the command sent HELD_MARK and waits (run_held)

    def __repr__(self) -> str:
        return f"_Outcome(status={self.status}, signal={self.signal_name})"


class _Deadline(Exception):
    """The command ran past its timeout (private: TimeoutError is an OSError)."""


class _Stopped(Exception):
    """The caller went away (cancelled) while the command ran."""


class FabricTransport(Transport):
    """Reach a host with Fabric/paramiko; same behaviour as AsyncsshTransport."""

    name = "fabric"

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self._conn: Any = None  # fabric.Connection, opened

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed"
        return f"FabricTransport({self.host.name!r}, {state})"

    @property
    def connected(self) -> bool:
        return self._conn is not None and bool(self._conn.is_connected)

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()  # drop a dead connection before opening a new one
        settings = _settings(self.host)  # bad vars are an InventoryError, before any thread
        route = resolve(self.host)  # ~/.ssh/config read and checked before any thread
        known_hosts = known_hosts_of(self.host, route)
        self._conn = await _in_thread(
            partial(_open, self.host, route, known_hosts, settings), cleanup=_close_quietly
        )

    async def run(
        self, command: str, *, timeout: float | None = None, stdin: bytes | None = None
    ) -> Completed:
        done, _ = await self._exchange(command, timeout, stdin or b"", None)
        return done

    async def run_held(
        self, command: str, *, timeout: float | None = None
    ) -> tuple[Completed, Held | None]:
        return await self._exchange(command, timeout, b"", None, hold=True)

    async def stream(
        self, command: str, sink: Sink, *, timeout: float | None = None
    ) -> Completed:
        # The sink runs in the worker thread, as the bytes arrive.
        done, _ = await self._exchange(command, timeout, b"", sink)
        return done

    async def _exchange(
        self,
        command: str,
        timeout: float | None,
        stdin: bytes,
        sink: Sink | None,
        *,
        hold: bool = False,
    ) -> tuple[Completed, Held | None]:
        conn = self._require_connection(command)
        stop = threading.Event()
        exchange = partial(
            _exchange,
            conn.transport,
            command,
            stdin,
            timeout,
            stop,
            _open_timeout(conn),
            sink,
            hold,
        )
        try:
            outcome = await _in_thread(exchange, cleanup=_drop_held)
        except _Deadline:
            raise TimeoutError(
                f"{self.host.name}: command timed out after {timeout:g}s: {command[:80]}"
            ) from None
        except ReplyTooLarge as exc:  # raised in the worker, which knows no host
            raise ReplyTooLarge(exc.args[0], host=self.host.name, command=command) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost(command, exc, conn) from None
        except asyncio.CancelledError:
            stop.set()  # the worker kills the command and drops the channel within a tick
            raise
        out, err = _text(outcome.stdout), _text(outcome.stderr)
        if outcome.held is not None:
            held = _HeldChannel(outcome.held, self, command, conn)
            return Completed(command, 0, out, err, outcome.stdout), held
        status = _status(outcome)
        if status is None:
            # Neither a status nor a signal: the channel closed under us (sshd died).
            raise self._lost(command, None, conn)
        return Completed(command, status, out, err, outcome.stdout), None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await asyncio.wait_for(_in_thread(partial(_close_quietly, conn)), _CLOSE_SECONDS)
        except TimeoutError:
            pass  # the socket is closed first, so the reader thread ends on its own

    def _require_connection(self, command: str) -> Any:
        if self._conn is None:
            raise ConnectError(
                "not connected (call connect() first)", host=self.host.name, command=command
            )
        if not self._conn.is_connected:
            raise self._lost(command, None, self._conn)
        return self._conn

    def _lost(self, command: str, exc: BaseException | None, conn: Any) -> ConnectError:
        transport = conn.transport
        if exc is None and transport is not None:
            exc = transport.get_exception()  # why paramiko's reader thread stopped, if it knows
        reason = _one_line(str(exc)) if exc is not None and str(exc) else "connection closed"
        return ConnectError(f"connection lost: {reason}", host=self.host.name, command=command)


class _HeldChannel(Held[paramiko.Channel]):
    """A paramiko channel whose command has sent its reply and waits for a word on stdin."""

    def __init__(
        self, chan: paramiko.Channel, owner: FabricTransport, command: str, conn: Any
    ) -> None:
        super().__init__(chan, owner.host.name, command)
        self._owner = owner
        self._conn = conn

    async def finish(self, data: bytes, *, timeout: float) -> int:
        chan = self._take()
        if chan is None:
            raise self._owner._lost(self._command, None, self._conn)
        stop = threading.Event()
        try:
            outcome = await _in_thread(partial(_finish_held, chan, data, timeout, stop))
        except _Deadline:
            raise self._late(timeout) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._owner._lost(self._command, exc, self._conn) from None
        except asyncio.CancelledError:
            stop.set()
            raise
        status = _status(outcome)
        if status is None:
            raise self._owner._lost(self._command, None, self._conn)
        return status

    async def drop(self) -> None:
        chan = self._take()
        if chan is not None:
            await _in_thread(partial(_drop_channel, chan))


def _status(outcome: _Outcome) -> int | None:
    """An ended command's status as the shell gives it (128 + a signal's number); None when
    neither came: the channel closed under us (sshd died)."""
    sig = (outcome.signal_name, False, "", "") if outcome.signal_name is not None else None
    return _exit_status(outcome.status, sig)


def _finish_held(
    chan: paramiko.Channel, data: bytes, timeout: float, stop: threading.Event
) -> _Outcome:
    """Send the held command its word, end its stdin, and wait for its status (worker)."""
    deadline = time.monotonic() + timeout
    try:
        if data:
            chan.sendall(data)
        chan.shutdown_write()
        _wait_status(chan, deadline, stop)
    except BaseException:
        _abandon(chan)
        raise
    return _ended(chan, b"", b"")


def _drop_channel(chan: paramiko.Channel) -> None:
    """End of file on a held command's stdin, a moment to end by itself, then close (worker)."""
    try:
        chan.shutdown_write()
        chan.status_event.wait(_CLOSE_SECONDS)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    _close_channel(chan)


def _close_channel(chan: paramiko.Channel) -> None:
    try:
        chan.close()
    except (OSError, EOFError, paramiko.SSHException):
        pass


def _drop_held(outcome: _Outcome) -> None:
    """A held channel whose caller went away meanwhile (cancelled): close it."""
    if outcome.held is not None:
        _close_channel(outcome.held)


# --- connecting (worker threads) --------------------------------------------------------------


def _settings(host: Host) -> _Settings:
    return _Settings(
        timeout=_number_var(host, CONNECT_TIMEOUT),
        keepalive=_number_var(host, KEEPALIVE_INTERVAL),
        keepalive_count=int(_number_var(host, KEEPALIVE_COUNT_MAX)),
    )


class _UnknownHostKey(paramiko.SSHException):
    """Raised by _RejectUnknown; carries the key the server offered."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"{hostname} not found in known_hosts")
        self.key = key


class _RejectUnknown(paramiko.RejectPolicy):
    """RejectPolicy, raising an exception we can tell apart from every other SSHException."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> NoReturn:
        raise _UnknownHostKey(hostname, key)


def _connection(hop: Hop, settings: _Settings, gateway: Any) -> Any:
    """A fabric.Connection to one hop, not yet open, that trusts nothing by itself.

    The route already applied ~/.ssh/config: an empty SSHConfig keeps Fabric from applying it
    again, and from building ProxyJump gateways of its own (with AutoAddPolicy) out of it.
    """
    connect_kwargs: dict[str, Any] = {
        "timeout": settings.timeout,
        "banner_timeout": settings.timeout,
        "auth_timeout": settings.timeout,
        "channel_timeout": settings.timeout,
        # Only the route's keys when it names some; otherwise the agent and ~/.ssh/id_*.
        "look_for_keys": not hop.key_files,
        "allow_agent": not hop.key_files,
    }
    conn = fabric.Connection(
        hop.address,
        port=hop.port,
        user=hop.user,
        connect_kwargs=connect_kwargs,
        gateway=gateway if gateway is not None else False,
        config=fabric.Config(ssh_config=paramiko.SSHConfig()),
    )
    # Fabric int()s connect_timeout (0.5 would mean none at all), and refuses it next to
    # connect_kwargs["timeout"]: the float above is the one.
    conn.connect_timeout = None
    if hop.key_files:
        conn.connect_kwargs["key_filename"] = list(hop.key_files)
    return conn


def _open(host: Host, route: Route, known_hosts: Path, settings: _Settings) -> Any:
    """Open every jump host, then the target through them; each hop's key is checked."""
    trusted = _read_known_hosts(host, known_hosts)
    gateway: Any = route.proxy_command  # a ProxyCommand string, or None
    conn: Any = None
    for hop in (*route.jumps, route.target):
        conn = _connection(hop, settings, gateway)
        client = conn.client
        # Fabric sets AutoAddPolicy; never here, on no hop. Only this known_hosts.
        client.set_missing_host_key_policy(_RejectUnknown())
        for entry in trusted.entries:
            for name in entry.hostnames:
                client.get_host_keys().add(name, entry.key.get_name(), entry.key)
        try:
            conn.open()  # a gateway opened in the round before is not opened again
        except BaseException as exc:
            error = _connect_failure(host, hop, conn, trusted, settings, exc)
            _close_quietly(conn)  # and the jump hosts behind it
            if error is None:
                raise
            raise error from None
        _tune(conn.transport, settings)
        gateway = conn
    return conn


@dataclass(frozen=True)
class _KnownHosts:
    """The usable lines of one known_hosts file."""

    path: Path
    entries: list[HostKeyEntry]  # revoked keys already taken out
    revoked: frozenset[bytes]  # public key blobs marked @revoked

    def __repr__(self) -> str:
        return f"_KnownHosts({str(self.path)!r}, {len(self.entries)} keys)"


def _read_known_hosts(host: Host, path: Path) -> _KnownHosts:
    """Parse known_hosts as OpenSSH and asyncssh do, not as paramiko's load() does.

    paramiko's loader stops at the first line it cannot parse (an `@cert-authority` line
    is enough), while the file is shared with asyncssh and OpenSSH, which skip such lines.
    `@revoked` keys are never trusted; `@cert-authority` lines add nothing, since paramiko
    cannot check host certificates: fewer trusted keys, never more.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise HostKeyError(
            f"cannot read known_hosts file {path}: {exc.strerror or exc}", host=host.name
        ) from None
    trusted: list[HostKeyEntry] = []
    revoked: set[bytes] = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        marker = ""
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = _entry(line, lineno)
        if entry is None:
            continue
        if marker == "@revoked":
            revoked.add(entry.key.asbytes())
        elif not marker:
            trusted.append(entry)
    usable = [e for e in trusted if e.key.asbytes() not in revoked]
    return _KnownHosts(path, usable, frozenset(revoked))


def _entry(line: str, lineno: int) -> HostKeyEntry | None:
    try:
        entry: HostKeyEntry | None = HostKeyEntry.from_line(line, lineno)
    except (InvalidHostKey, paramiko.SSHException, ValueError, TypeError, IndexError):
        return None  # a malformed or unsupported key: skipped, as OpenSSH and asyncssh do
    if entry is None or entry.key is None:
        return None
    return entry


def _tune(transport: paramiko.Transport, settings: _Settings) -> None:
    # paramiko's keepalive never waits for an answer: on a direct TCP link the kernel gives up
    # on a silent peer after (count + 1) x interval (base.tcp_keepalive, as asyncssh does);
    # the SSH keepalive goes on, less often, to keep NAT and firewalls from forgetting us.
    watched = tcp_keepalive(transport.sock, settings.keepalive, settings.keepalive_count)
    transport.set_keepalive(max(1, int(settings.keepalive * (SSH_BACKSTOP if watched else 1))))
    _record_exit_signals(transport)


def _connect_failure(
    host: Host, hop: Hop, conn: Any, known: _KnownHosts, settings: _Settings, exc: BaseException
) -> ConnectError | None:
    """The ConnectError (or HostKeyError) for a failed open; None means re-raise as is."""
    where = _named(hop)
    known_hosts = known.path
    offered = getattr(exc, "key", None)
    if isinstance(offered, paramiko.PKey) and offered.asbytes() in known.revoked:
        return HostKeyError(
            f"host key for {where} ({offered.fingerprint}) is marked @revoked in "
            f"{known_hosts}; it is never trusted",
            host=host.name,
        )
    if isinstance(exc, _UnknownHostKey):
        return HostKeyError(
            f"host key for {where} is unknown (not in {known_hosts}; it offers "
            f"{exc.key.get_name()} {exc.key.fingerprint}); run `{trust_command(host)}` "
            "to check and record it",
            host=host.name,
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyError(
            f"host key for {where} has CHANGED since it was trusted in {known_hosts} "
            f"(known_hosts has {exc.expected_key.fingerprint}, the host offers "
            f"{exc.key.fingerprint}: a reinstalled host, or someone in the middle); "
            f"verify it out of band; only if it is right, remove the old key and run "
            f"`{trust_command(host)}`",
            host=host.name,
        )
    reason = _failure_reason(conn, settings, exc)
    if reason is None:
        return None
    # what waiting cannot mend: the run does not retry it for the reconnect window
    refused = isinstance(exc, (paramiko.AuthenticationException, paramiko.PasswordRequiredException))
    kind = CredentialsError if refused or str(exc) == _NO_AUTH_METHODS else ConnectError
    if isinstance(exc, socket.gaierror):
        kind = unresolved(exc)
    return kind(f"cannot connect to {where}: {reason}", host=host.name)


def _failure_reason(conn: Any, settings: _Settings, exc: BaseException) -> str | None:
    """The same short reasons asyncssh.py gives, for paramiko's exceptions."""
    if isinstance(exc, paramiko.ChannelException):
        # The jump host would not forward to this hop (AllowTcpForwarding no, or unreachable).
        return f"the jump host refused to forward: {_one_line(exc.text)}"
    if isinstance(exc, paramiko.AuthenticationException) or str(exc) == _NO_AUTH_METHODS:
        # (the second: paramiko had no key at all to offer, not even from the agent)
        return f"authentication failed for user {conn.user}"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        # paramiko's own text drops the errno ("[Errno None] Unable to connect to port 22")
        reasons = [os_reason(e) for e in exc.errors.values() if isinstance(e, OSError)]
        return "; ".join(dict.fromkeys(reasons)) or _one_line(str(exc))
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name {conn.host!r}"
    if isinstance(exc, TimeoutError) or _negotiation_timed_out(conn, exc):
        return f"timed out after {settings.timeout:g}s"
    if isinstance(exc, paramiko.PasswordRequiredException):
        return f"cannot use key {_key_names(conn)}: it is encrypted and no passphrase was given"
    if isinstance(exc, OSError):
        if exc.filename:  # a key or config file, not the network
            return f"cannot read {exc.filename}: {exc.strerror}"
        return os_reason(exc)
    if isinstance(exc, (paramiko.SSHException, EOFError, ValueError)):
        return _one_line(str(exc)) or "disconnected"
    return None


def _negotiation_timed_out(conn: Any, exc: BaseException) -> bool:
    """Whether the handshake ran out of time (paramiko says "No existing session" or
    "Error reading SSH protocol banner" with a socket timeout behind it)."""
    if not isinstance(exc, paramiko.SSHException):
        return False
    if isinstance(exc.__context__, TimeoutError):
        return True
    transport = conn.client.get_transport()
    if transport is None or transport.initial_kex_done:
        return False
    # start_client gave up first; the banner read may or may not have timed out by now too.
    pending = transport.get_exception()
    return pending is None or isinstance(pending.__context__, TimeoutError)


def _key_names(conn: Any) -> str:
    names = conn.connect_kwargs.get("key_filename") or []
    return ", ".join(str(n) for n in names) or "(from ~/.ssh)"


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except (OSError, EOFError, paramiko.SSHException):
        pass  # already gone: nothing left to release
    client = getattr(conn, "client", None)
    if client is not None:
        # Fabric closes only a connected client; a half-open one (failed handshake) too.
        client.close()
    gateway = getattr(conn, "gateway", None)
    if isinstance(gateway, fabric.Connection):
        _close_quietly(gateway)  # Fabric leaves a jump host open when its target closes


def _open_timeout(conn: Any) -> float:
    timeout = conn.connect_kwargs.get("timeout")
    return float(timeout) if timeout else float(CONNECT_TIMEOUT[1])


# --- exit signals -------------------------------------------------------------------------------


def _record_exit_signals(transport: Any) -> None:
    """Keep the "exit-signal" request paramiko ignores, so `kill -9` reads as 137 not "lost".

    The handler table is a class attribute read per message; a copy on this one transport
    leaves every other paramiko user alone.
    """
    table = dict(type(transport)._channel_handler_table)
    table[MSG_CHANNEL_REQUEST] = partial(_handle_request, table[MSG_CHANNEL_REQUEST])
    transport._channel_handler_table = table


def _handle_request(default: Callable[[Any, Any], None], chan: Any, m: paramiko.Message) -> None:
    start = m.packet.tell()
    if m.get_string() != b"exit-signal":
        m.packet.seek(start)
        default(chan, m)
        return
    want_reply = m.get_boolean()
    # Not trusted: only a name signal.Signals knows turns into a number (see _exit_status).
    name = m.get_string().decode("ascii", errors="replace")[:32]
    setattr(chan, _SIGNAL_ATTR, name)
    chan.status_event.set()
    if want_reply:  # RFC 4254 says it never does; answer anyway rather than leave it waiting
        reply = paramiko.Message()
        reply.add_byte(cMSG_CHANNEL_SUCCESS)
        reply.add_int(chan.remote_chanid)
        chan.transport._send_user_message(reply)


def _send_signal(chan: Any, name: str) -> None:
    """Ask the server to signal the command (paramiko has no call for the "signal" request)."""
    m = paramiko.Message()
    m.add_byte(cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("signal")
    m.add_boolean(False)
    m.add_string(name)
    chan.transport._send_user_message(m)


# --- running (worker threads) -------------------------------------------------------------------


def _exchange(
    transport: Any,
    command: str,
    stdin: bytes,
    timeout: float | None,
    stop: threading.Event,
    open_timeout: float,
    sink: Sink | None = None,
    hold: bool = False,
) -> _Outcome:
    """Run one command on a new channel; stdout and stderr are drained before the status.

    With a `sink`, stdout goes to it as it arrives (not kept) and only stderr's tail is kept.
    With `hold`, stdin stays open, and a command whose stdout ends with HELD_MARK is returned
    alive, its channel in the outcome (Transport.run_held).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    if transport is None or not transport.active:
        raise EOFError("connection closed")
    out, err = bytearray(), bytearray()
    chan = transport.open_session(timeout=open_timeout)
    try:
        chan.exec_command(command)
        # A reply is kept whole only up to MAX_REPLY: a host must not fill our memory.
        on_err = partial(_bounded, err) if sink is None else partial(_keep_tail, err)
        on_out = partial(_bounded, out) if sink is None else sink
        if _pump(chan, stdin, deadline, stop, on_out, on_err, held=out if hold else None):
            del out[-len(HELD_MARK) :]
            return _Outcome(None, None, bytes(out), b"", held=chan)
        _wait_status(chan, deadline, stop)
    except BaseException:
        _abandon(chan)
        raise
    return _ended(chan, bytes(out), bytes(err))


def _ended(chan: paramiko.Channel, out: bytes, err: bytes) -> _Outcome:
    """Close a channel whose command has ended; its status (or signal) and output."""
    chan.close()
    status = chan.exit_status if chan.exit_status >= 0 else None
    return _Outcome(status, getattr(chan, _SIGNAL_ATTR, None), out, err)


def _bounded(buf: bytearray, data: bytes) -> None:
    buf += data
    check_reply_size(len(buf), "", "")  # the caller names the host


def _keep_tail(buf: bytearray, data: bytes) -> None:
    """Append, keeping only the last _ERR_KEEP bytes (a streamed command's stderr is untrusted)."""
    buf += data
    if len(buf) > _ERR_KEEP:
        del buf[:-_ERR_KEEP]


def _pump(
    chan: paramiko.Channel,
    stdin: bytes,
    deadline: float | None,
    stop: threading.Event,
    on_out: Callable[[bytes], object],
    on_err: Callable[[bytes], object],
    *,
    held: bytearray | None = None,
) -> bool:
    """Feed stdin and read stdout/stderr together until both reach end of file; with `held`
    (stdout's buffer), until it ends with HELD_MARK (True: the command waits for a word)."""
    sent = 0
    writing = bool(stdin)
    if not writing and held is None:
        chan.shutdown_write()  # end of file at once: a command reading stdin must not hang
    wake = _Wake.on(chan)
    while True:
        _check(deadline, stop)
        if writing and chan.send_ready():
            sent, writing = _feed(chan, stdin, sent)
        wake.reset()  # before looking: whatever arrives from here on wakes the wait below
        # EOF first: data that raced in after it is still read below, before we stop.
        at_eof = chan.eof_received or chan.closed
        while chan.recv_ready():
            on_out(chan.recv(_RECV_CHUNK))
        while chan.recv_stderr_ready():
            on_err(chan.recv_stderr(_RECV_CHUNK))
        if held is not None and held.endswith(HELD_MARK):
            return True
        if at_eof and not writing:
            return False
        if writing and not at_eof:
            wake.wait(_WINDOW_TICK)
        elif writing:
            time.sleep(_WINDOW_TICK)  # the wake event stays set after EOF
        else:
            wake.wait(_wait(deadline))


class _Wake(threading.Event):
    """Set when either of a channel's streams gets data or reaches its end.

    Not paramiko's `chan.fileno()`: that pipe is closed by `chan.close()` in one thread while
    the transport thread may still be writing to it for data in flight, and the write then
    fails with EBADF and kills the whole connection (or lands in whatever reused the fd number).
    An Event holds no file descriptor. Its `clear` is the buffers' (each clears on emptying
    itself, which would lose the other stream's wake-up); only the reader resets it, before it
    looks at both streams.
    """

    @classmethod
    def on(cls, chan: paramiko.Channel) -> _Wake:
        wake = cls()
        chan.in_buffer.set_event(wake)
        chan.in_stderr_buffer.set_event(wake)
        return wake

    def clear(self) -> None:
        pass  # a buffer that emptied itself: the reader resets, not the buffers

    def reset(self) -> None:
        super().clear()


def _feed(chan: paramiko.Channel, stdin: bytes, sent: int) -> tuple[int, bool]:
    """Send the next piece of stdin; (bytes sent so far, whether any is left to send)."""
    try:
        n = chan.send(stdin[sent : sent + _SEND_CHUNK])
    except OSError:
        n = 0  # the channel closed: the command is gone and wants no more input
    if n == 0:
        return sent, False
    sent += n
    if sent >= len(stdin):
        chan.shutdown_write()
        return sent, False
    return sent, True


def _wait_status(chan: paramiko.Channel, deadline: float | None, stop: threading.Event) -> None:
    # Output can end before the command does (it closed stdout and runs on).
    while not chan.status_event.wait(_wait(deadline)):
        _check(deadline, stop)


def _check(deadline: float | None, stop: threading.Event) -> None:
    if stop.is_set():
        raise _Stopped()
    if deadline is not None and time.monotonic() >= deadline:
        raise _Deadline()


def _wait(deadline: float | None) -> float:
    if deadline is None:
        return _TICK
    return max(0.0, min(_TICK, deadline - time.monotonic()))


def _abandon(chan: paramiko.Channel) -> None:
    # Ask the server to kill the command (OpenSSH >= 7.9 honours it), then drop the channel
    # so nothing more is read; the connection itself stays usable.
    try:
        if chan.active and not chan.closed:
            _send_signal(chan, "KILL")
    except (OSError, EOFError, paramiko.SSHException):
        pass
    try:
        chan.close()
    except (OSError, EOFError, paramiko.SSHException):
        pass


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
