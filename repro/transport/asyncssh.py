"""The default transport: one asyncssh connection per host, host keys always checked;
plus the helpers `repro hosts trust` uses to fetch and show a host's keys.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shlex
import signal
import socket
from pathlib import Path
from typing import Any

import asyncssh

from repro.errors import ConnectError, CredentialsError, HostKeyError, InventoryError
from repro.inventory import Host
from repro.transport.base import (
    HELD_MARK,
    Completed,
    Held,
    ReplyTooLarge,
    Sink,
    Transport,
    check_reply_size,
    os_reason,
    read_tail,
    tcp_keepalive,
    unresolved,
)
from repro.transport.route import Hop, Route, resolve

#: host vars (name, default) that tune the connection; seconds, except the count. A silent link
#: is given up after about interval x (count + 1) seconds: 20 s by default (docs/README), so a
#: dead host is noticed within 30 s even while its one channel waits quietly on a long step.
CONNECT_TIMEOUT = ("repro_connect_timeout", 10.0)
KEEPALIVE_INTERVAL = ("repro_keepalive_interval", 5.0)
KEEPALIVE_COUNT_MAX = ("repro_keepalive_count_max", 3)
#: on a link the kernel watches (base.tcp_keepalive), SSH keepalives go this many times less
#: often: 30 s by default, a hung sshd behind a live TCP stack given up after 2 minutes
SSH_BACKSTOP = 6

_DROP_SECONDS = 5.0  # how long a dropped held command gets to end by itself
_CHUNK = 256 * 1024  # what one read of a streamed stdout takes at most
_ERR_KEEP = 64 * 1024  # the tail of a streamed command's stderr that is kept

#: asyncssh's own ciphers, AES-GCM first: with AES instructions (every x86_64 of the last decade)
#: it is one C call per packet, where chacha20-poly1305 costs asyncssh two cipher contexts and a
#: MAC made in Python per packet (measured: 100 MB in 0.28 s against 0.42 s, and a third less
#: CPU on both ends). All are OpenSSH's defaults too; a server offering only chacha still gets it.
_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)

#: one algorithm per key type, so fetch_host_keys sees every key a server has, not just one
_HOST_KEY_ALGS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
)


class AsyncsshTransport(Transport):
    """Reach a host over SSH with asyncssh, honouring ~/.ssh/config and known_hosts."""

    name = "asyncssh"

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._jumps: list[asyncssh.SSHClientConnection] = []  # to the jump hosts, first first

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed"
        return f"AsyncsshTransport({self.host.name!r}, {state})"

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()  # drop a dead connection before opening a new one
        *self._jumps, self._conn = await _open(self.host)

    async def run(
        self, command: str, *, timeout: float | None = None, stdin: bytes | None = None
    ) -> Completed:
        done, _ = await self._run(command, timeout, stdin, hold=False)
        return done

    async def run_held(
        self, command: str, *, timeout: float | None = None
    ) -> tuple[Completed, Held | None]:
        return await self._run(command, timeout, None, hold=True)

    async def _run(
        self, command: str, timeout: float | None, stdin: bytes | None, *, hold: bool
    ) -> tuple[Completed, Held | None]:
        conn = self._require_connection(command)
        try:
            # DEVNULL when there is no input: asyncssh leaves stdin open otherwise, and a
            # command that reads it would hang until the timeout. A held command's stdin
            # stays open: its last word comes later (Held.finish).
            proc = await conn.create_process(
                command,
                stdin=asyncssh.PIPE if stdin or hold else asyncssh.DEVNULL,
                encoding=None,
            )
        except (asyncssh.Error, OSError) as exc:
            raise self._lost(command, exc) from None
        if stdin:
            try:
                proc.stdin.write(stdin)
                proc.stdin.write_eof()
            except (BrokenPipeError, ConnectionError, asyncssh.Error):
                # The command ended (or closed its stdin) before taking all of it, e.g. a
                # `cat > missing/dir/file` that fails at once: its exit status says what
                # happened; a connection that is really gone shows in wait() below.
                pass
        try:
            async with asyncio.timeout(timeout):
                # Read as it comes, bounded: a host must not be able to fill our memory.
                errs = asyncio.ensure_future(_bounded(proc.stderr, command, self.host.name))
                try:
                    out = await _bounded(proc.stdout, command, self.host.name, hold=hold)
                    if hold and out.endswith(HELD_MARK):  # the reply is whole; it waits
                        del out[-len(HELD_MARK) :]
                        reply = Completed(command, 0, _text(bytes(out)), "", bytes(out))
                        return reply, _HeldProcess(proc, self, command)
                    err = await errs
                finally:
                    errs.cancel()
                done = await proc.wait(check=False)
        except TimeoutError:
            _abandon(proc)
            raise TimeoutError(
                f"{self.host.name}: command timed out after {timeout:g}s: {command[:80]}"
            ) from None
        except ReplyTooLarge:
            _abandon(proc)
            raise
        except (asyncssh.Error, OSError) as exc:
            raise self._lost(command, exc) from None
        except asyncio.CancelledError:
            _abandon(proc)  # a cancelled run (Ctrl-C) leaves no channel behind
            raise
        status = _exit_status(done.exit_status, done.exit_signal)
        if status is None:
            # Neither a status nor a signal: the channel closed under us (sshd died).
            raise self._lost(command, None)
        return Completed(command, status, _text(bytes(out)), _text(bytes(err)), bytes(out)), None

    async def stream(
        self, command: str, sink: Sink, *, timeout: float | None = None
    ) -> Completed:
        conn = self._require_connection(command)
        try:
            proc = await conn.create_process(command, stdin=asyncssh.DEVNULL, encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise self._lost(command, exc) from None

        async def pump() -> tuple[bytes, asyncssh.SSHCompletedProcess]:
            errs = asyncio.ensure_future(read_tail(proc.stderr, _ERR_KEEP))
            try:
                while chunk := await proc.stdout.read(_CHUNK):
                    sink(chunk)
                err = await errs
            finally:
                errs.cancel()
            return err, await proc.wait(check=False)

        try:
            err, done = await asyncio.wait_for(pump(), timeout)
        except TimeoutError:
            _abandon(proc)
            raise TimeoutError(
                f"{self.host.name}: command timed out after {timeout:g}s: {command[:80]}"
            ) from None
        except (asyncssh.Error, OSError) as exc:
            _abandon(proc)
            raise self._lost(command, exc) from None
        except BaseException:
            _abandon(proc)  # the sink refused (too large) or we were cancelled
            raise
        status = _exit_status(done.exit_status, done.exit_signal)
        if status is None:
            raise self._lost(command, None)
        return Completed(command, status, "", _text(err))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        jumps, self._jumps = self._jumps, []
        # The target first: its channel rides inside the jump hosts' connections.
        for each in ([conn] if conn is not None else []) + jumps[::-1]:
            each.close()
            try:
                await asyncio.wait_for(each.wait_closed(), 5)
            except (TimeoutError, asyncssh.Error, OSError):
                pass  # already gone or unreachable: nothing left to release

    def _require_connection(self, command: str) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            raise ConnectError(
                "not connected (call connect() first)", host=self.host.name, command=command
            )
        if self._conn.is_closed():
            raise self._lost(command, None)
        return self._conn

    def _lost(self, command: str, exc: BaseException | None) -> ConnectError:
        reason = _one_line(str(exc)) if exc is not None and str(exc) else "connection closed"
        return ConnectError(f"connection lost: {reason}", host=self.host.name, command=command)


# --- connecting ---------------------------------------------------------------------------


def _kernel_keepalive(host: Host, conn: asyncssh.SSHClientConnection) -> None:
    """A direct TCP link is watched by the kernel at the configured interval and count
    (base.tcp_keepalive); the SSH keepalive then only backs it up, SSH_BACKSTOP times less
    often: it still finds a server that answers TCP but not SSH (sshd hung), later."""
    interval = _number_var(host, KEEPALIVE_INTERVAL)
    count = int(_number_var(host, KEEPALIVE_COUNT_MAX))
    if tcp_keepalive(conn.get_extra_info("socket"), interval, count):
        conn.set_keepalive(interval * SSH_BACKSTOP, count)


def _number_var(host: Host, var: tuple[str, float]) -> float:
    key, default = var
    value = host.vars.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InventoryError(f"host {host.name}: {key} must be a positive number, got {value!r}")
    return float(value)


def known_hosts_of(host: Host, route: Route) -> Path:
    """The known_hosts file the route's hops are checked against; HostKeyError if there is
    none (nothing is trusted without one, on either transport)."""
    if not route.known_hosts.is_file():
        raise HostKeyError(
            f"no known_hosts file at {route.known_hosts}; run `{trust_command(host)}` "
            "to check and record its host key",
            host=host.name,
        )
    return route.known_hosts


# A run connects to every host with the same known_hosts file and, usually, the same key: read
# and parse each once, not once per host (at a hundred hosts that is 10 000 keys decoded). Keyed
# by path, size and mtime, so a file rewritten meanwhile (`repro hosts trust`) is read again.
_PARSED: dict[tuple[str, str, int, int], Any] = {}


def _parsed(kind: str, path: Path) -> Any:
    st = path.stat()
    key = (kind, str(path), st.st_size, st.st_mtime_ns)
    if key not in _PARSED:
        if len(_PARSED) > 64:
            _PARSED.clear()
        if kind == "known_hosts":
            _PARSED[key] = asyncssh.read_known_hosts(str(path))
        else:
            _PARSED[key] = asyncssh.load_keypairs([str(path)])
    return _PARSED[key]


def _connect_kwargs(
    host: Host, hop: Hop, known_hosts: Path, tunnel: asyncssh.SSHClientConnection | None
) -> dict[str, Any]:
    """Everything explicit: the route already applied ~/.ssh/config (config=[] keeps asyncssh
    from applying it a second time, and from opening ProxyJump hops it would not check)."""
    kwargs: dict[str, Any] = {
        "port": hop.port,
        "username": hop.user,
        "known_hosts": _parsed("known_hosts", known_hosts),
        "config": [],
        "tunnel": tunnel,
        "proxy_command": None,
        "connect_timeout": _number_var(host, CONNECT_TIMEOUT),
        "keepalive_interval": _number_var(host, KEEPALIVE_INTERVAL),
        "keepalive_count_max": int(_number_var(host, KEEPALIVE_COUNT_MAX)),
        "encryption_algs": _CIPHERS,
    }
    if hop.key_files:
        # Only these keys; leaving client_keys out means agent + ~/.ssh/id_*.
        keys: list[Any] = []
        for name in hop.key_files:
            keys.extend(_parsed("key", Path(name).expanduser()))
        kwargs["client_keys"] = keys
    return kwargs


async def _open(host: Host) -> list[asyncssh.SSHClientConnection]:
    """Connections to every jump host, then the target (last); each hop's key is checked."""
    route = resolve(host)
    known_hosts = known_hosts_of(host, route)
    opened: list[asyncssh.SSHClientConnection] = []
    try:
        for hop in (*route.jumps, route.target):
            tunnel = opened[-1] if opened else None
            command = route.proxy_command if hop is route.target else None
            opened.append(await _open_hop(host, hop, known_hosts, tunnel, command))
    except BaseException:
        for conn in reversed(opened):
            conn.close()
        raise
    return opened


async def _open_hop(
    host: Host,
    hop: Hop,
    known_hosts: Path,
    tunnel: asyncssh.SSHClientConnection | None,
    proxy_command: str | None,
) -> asyncssh.SSHClientConnection:
    try:
        kwargs = _connect_kwargs(host, hop, known_hosts, tunnel)
        if proxy_command:
            kwargs["proxy_command"] = shlex.split(proxy_command)
        conn = await asyncssh.connect(hop.address, **kwargs)
        if tunnel is None and not proxy_command:
            _kernel_keepalive(host, conn)
        return conn
    except asyncssh.HostKeyNotVerifiable:
        raise await _host_key_error(host, hop, known_hosts, tunnel) from None
    except asyncssh.KeyExchangeFailed as exc:
        # known_hosts pins the host to key types the server no longer offers: a changed key.
        if _trusted_keys(hop, known_hosts):
            raise await _host_key_error(host, hop, known_hosts, tunnel) from None
        raise _connect_error(host, hop, f"key exchange failed: {_one_line(exc.reason)}") from None
    except asyncssh.PermissionDenied:
        raise _connect_error(
            host, hop, f"authentication failed for user {hop.user}", CredentialsError
        ) from None
    except TimeoutError:
        seconds = _number_var(host, CONNECT_TIMEOUT)
        raise _connect_error(host, hop, f"timed out after {seconds:g}s") from None
    except ConnectionRefusedError:
        raise _connect_error(host, hop, "connection refused") from None
    except socket.gaierror as exc:
        raise _connect_error(
            host, hop, f"cannot resolve host name {hop.address!r}", unresolved(exc)
        ) from None
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        keys = ", ".join(hop.key_files)
        raise _connect_error(
            host, hop, f"cannot use key {keys}: {_one_line(str(exc))}", CredentialsError
        ) from None
    except asyncssh.ChannelOpenError as exc:
        # The jump host would not forward to this hop (AllowTcpForwarding no, or unreachable).
        raise _connect_error(
            host, hop, f"the jump host refused to forward: {_one_line(exc.reason)}"
        ) from None
    except asyncssh.DisconnectError as exc:
        raise _connect_error(host, hop, _one_line(exc.reason) or "disconnected") from None
    except OSError as exc:
        if exc.filename:  # a key or config file, not the network
            raise _connect_error(host, hop, f"cannot read {exc.filename}: {exc.strerror}") from None
        raise _connect_error(host, hop, os_reason(exc)) from None


def _named(hop: Hop) -> str:
    """A hop as messages name it: the target by its address, a jump host by name and address."""
    if hop.label.startswith("jump host "):
        return f"{hop.label} ({hop.where})"
    return hop.where


def _connect_error(
    host: Host, hop: Hop, reason: str, kind: type[ConnectError] = ConnectError
) -> ConnectError:
    return kind(f"cannot connect to {_named(hop)}: {reason}", host=host.name)


def _trusted_keys(hop: Hop, known_hosts: Path) -> list[asyncssh.SSHKey]:
    try:
        entries = asyncssh.read_known_hosts(str(known_hosts))
    except (OSError, ValueError):
        return []
    addr = hop.address if _is_ip(hop.address) else ""
    return list(entries.match(hop.address, addr, hop.port)[0])


def trust_command(host: Host) -> str:
    """The command that records this host's key, with the inventory the host came from."""
    inventory = f"-i {shlex.quote(host.inventory)} " if host.inventory else ""
    return f"repro hosts trust {inventory}--limit {host.name}"


async def _host_key_error(
    host: Host, hop: Hop, known_hosts: Path, tunnel: asyncssh.SSHClientConnection | None
) -> HostKeyError:
    where = _named(hop)
    trusted = _trusted_keys(hop, known_hosts)
    if not trusted:
        return HostKeyError(
            f"host key for {where} is unknown (not in {known_hosts}); "
            f"run `{trust_command(host)}` to check and record it",
            host=host.name,
        )
    # The name and the address of a host match the same entry: show each key once.
    known = ", ".join(dict.fromkeys(str(k.get_fingerprint("sha256")) for k in trusted))
    offered = await _offered_fingerprints(host, hop, tunnel)
    forget = f"ssh-keygen -R {_known_hosts_name(hop)} -f {shlex.quote(str(known_hosts))}"
    return HostKeyError(
        f"host key for {where} has CHANGED since it was trusted in {known_hosts}: known "
        f"{known}, offered {offered} (a reinstalled host, or someone in the middle). Verify the "
        f"new key out of band; only if it is right, run `{forget}` and `{trust_command(host)}`",
        host=host.name,
    )


async def _offered_fingerprints(
    host: Host, hop: Hop, tunnel: asyncssh.SSHClientConnection | None
) -> str:
    """What the server presents now, fetched afresh: the handshake that failed does not say."""
    seconds = _number_var(host, CONNECT_TIMEOUT)
    try:
        # One handshake per key type; the whole look is bounded like one connect.
        keys = await asyncio.wait_for(
            fetch_host_keys(hop.address, hop.port, seconds, tunnel=tunnel), seconds
        )
    except TimeoutError:
        return f"(could not fetch it again: timed out after {seconds:g}s)"
    except ConnectError as exc:
        return f"(could not fetch it again: {exc.args[0] if exc.args else exc})"
    return ", ".join(fingerprint(line) for _, line in keys)


def _known_hosts_name(hop: Hop) -> str:
    """How known_hosts names the hop, quoted for a shell (`[addr]:port` off port 22)."""
    name = hop.address if hop.port == 22 else f"[{hop.address}]:{hop.port}"
    return shlex.quote(name)


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


# --- running ------------------------------------------------------------------------------


class _HeldProcess(Held["asyncssh.SSHClientProcess[bytes]"]):
    """An asyncssh process that has sent its reply and waits for a word on its stdin."""

    def __init__(
        self, proc: asyncssh.SSHClientProcess[bytes], owner: AsyncsshTransport, command: str
    ) -> None:
        super().__init__(proc, owner.host.name, command)
        self._owner = owner

    async def finish(self, data: bytes, *, timeout: float) -> int:
        proc = self._take()
        if proc is None:
            raise self._owner._lost(self._command, None)
        try:
            proc.stdin.write(data)
            proc.stdin.write_eof()
            done = await asyncio.wait_for(proc.wait(check=False), timeout)
        except TimeoutError:
            _abandon(proc)
            raise self._late(timeout) from None
        except (BrokenPipeError, ConnectionError, asyncssh.Error, OSError) as exc:
            _abandon(proc)
            raise self._owner._lost(self._command, exc) from None
        except asyncio.CancelledError:
            _abandon(proc)
            raise
        status = _exit_status(done.exit_status, done.exit_signal)
        if status is None:
            raise self._owner._lost(self._command, None)
        return status

    async def drop(self) -> None:
        proc = self._take()
        if proc is None:
            return
        try:  # end of file on its stdin, and a moment to end by itself (a held reply does)
            proc.stdin.write_eof()
            await asyncio.wait_for(proc.wait(check=False), _DROP_SECONDS)
        except (TimeoutError, BrokenPipeError, ConnectionError, asyncssh.Error, OSError):
            pass
        finally:
            proc.close()


def _exit_status(status: int | None, exit_signal: tuple[str, bool, str, str] | None) -> int | None:
    """The shell's convention for a command killed by a signal: 128 + its number.

    A signal name we do not know maps to -1; no status and no signal maps to None (the
    channel closed without an answer, which the caller treats as a lost connection).
    """
    if exit_signal:
        try:
            return 128 + int(signal.Signals["SIG" + exit_signal[0]])
        except KeyError:
            return -1
    if status is None or status < 0:
        return None
    return status


def _abandon(proc: asyncssh.SSHClientProcess[bytes]) -> None:
    # Ask the server to kill the command (OpenSSH >= 7.9 honours it), then drop the
    # channel so nothing more is read; the connection itself stays usable.
    try:
        proc.kill()
    except (OSError, asyncssh.Error):
        pass
    proc.close()


async def _bounded(stream: Any, command: str, host: str, *, hold: bool = False) -> bytearray:
    """All of `stream`, or ReplyTooLarge as soon as it passes MAX_REPLY bytes; with `hold`,
    only up to HELD_MARK where the bytes so far end with it (Transport.run_held)."""
    buf = bytearray()
    while chunk := await stream.read(65536):
        buf += chunk
        check_reply_size(len(buf), command, host)
        if hold and buf.endswith(HELD_MARK):
            break
    return buf


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


# --- host keys, for `repro hosts trust` -----------------------------------------------------


async def fetch_host_keys(
    address: str,
    port: int = 22,
    timeout: float = 10.0,
    *,
    tunnel: asyncssh.SSHClientConnection | None = None,
    proxy_command: str | None = None,
) -> list[tuple[str, str]]:
    """Every host key the server offers, as (key type, "type base64") public key lines.

    One handshake per key type, since a server presents only one key per handshake.
    Through `tunnel` (a checked connection to a jump host), or `proxy_command`, when given.
    Raises ConnectError if the server cannot be reached or offers no key at all.
    """
    where = f"{address}:{port}"
    found: list[tuple[str, str]] = []
    refusal = "no host key offered"
    for alg in _HOST_KEY_ALGS:
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(
                    address,
                    port,
                    server_host_key_algs=[alg],
                    tunnel=tunnel,
                    proxy_command=shlex.split(proxy_command) if proxy_command else None,
                    config=[],
                ),
                timeout,
            )
        except TimeoutError:
            raise ConnectError(f"timed out after {timeout:g}s", host=where) from None
        except ConnectionRefusedError:
            raise ConnectError("connection refused", host=where) from None
        except socket.gaierror:
            raise ConnectError(f"cannot resolve host name {address!r}", host=where) from None
        except (asyncssh.Error, ConnectionResetError, BrokenPipeError) as exc:
            # No key of this type: asyncssh reports a failed key exchange, while OpenSSH
            # just hangs up or resets ("no matching host key type found"). Try the next.
            refusal = _one_line(str(exc)) or refusal
            continue
        except OSError as exc:
            raise ConnectError(_one_line(exc.strerror or str(exc)), host=where) from None
        if key is not None:
            line = key.export_public_key("openssh").decode("ascii").split()
            entry = (line[0], f"{line[0]} {line[1]}")
            if entry not in found:
                found.append(entry)
    if not found:
        raise ConnectError(f"no host key offered ({refusal})", host=where)
    return found


def fingerprint(key_line: str) -> str:
    """The OpenSSH-style "SHA256:..." fingerprint of a public key line."""
    try:
        key = asyncssh.import_public_key(key_line.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ValueError(f"not an OpenSSH public key: {key_line[:40]!r}") from exc
    return str(key.get_fingerprint("sha256"))


def known_hosts_entry(address: str, port: int, key_line: str) -> str:
    """A known_hosts line for `key_line`, in the `[addr]:port` form OpenSSH uses off port 22."""
    name = address if port == 22 else f"[{address}]:{port}"
    keytype, data = key_line.split()[:2]
    return f"{name} {keytype} {data}"
