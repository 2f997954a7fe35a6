"""The transport contract: every transport must pass every test here, unchanged.

To add a transport (fabric, OpenSSH hosts in namespaces), add an entry to RIGS: an async
context manager that yields a Rig (how to make a fresh transport, and a directory to work in).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from repro.errors import ConnectError, HostError, InventoryError
from repro.inventory import Host
from repro.lab import LocalLab
from repro.transport import make_transport
from repro.transport.asyncssh import AsyncsshTransport
from repro.transport.base import TooLarge, Transport
from repro.transport.fabric import FabricTransport
from repro.transport.local import LocalTransport

#: the whole body of one contract test must finish within this many seconds
TEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Rig:
    """One way of reaching one host, for the contract tests."""

    make: Callable[[], Transport]  # a fresh, unconnected transport to the same host
    workdir: str  # an absolute, empty directory on that host the test may write in
    # Whether a timed-out command is killed. OpenSSH refuses the "signal" request for root
    # logins ("session signalling requires privilege separation"), so a rig logging in to
    # sshd as root sets this False: there the command runs on until it ends by itself.
    kills_on_timeout: bool = True

    def __repr__(self) -> str:
        return f"Rig({self.workdir!r})"


RigFactory = Callable[[Path], AbstractAsyncContextManager[Rig]]


@asynccontextmanager
async def asyncssh_rig(tmp: Path) -> AsyncIterator[Rig]:
    async with LocalLab(tmp / "lab", n=1) as lab:
        host = lab.host("lab1")
        work = lab.hosts[0].root / "work"
        work.mkdir()
        yield Rig(lambda: AsyncsshTransport(host), str(work))


@asynccontextmanager
async def fabric_rig(tmp: Path) -> AsyncIterator[Rig]:
    async with LocalLab(tmp / "lab", n=1) as lab:
        host = lab.host("lab1")
        work = lab.hosts[0].root / "work"
        work.mkdir()
        yield Rig(lambda: FabricTransport(host), str(work))


@asynccontextmanager
async def _jump_rig(tmp: Path, kind: type[Transport]) -> AsyncIterator[Rig]:
    """lab2 reached only through lab1 as a ProxyJump host: both keys checked, every test."""
    async with LocalLab(tmp / "lab", n=2, jump_hosts=True) as lab:
        bastion = lab.hosts[0]
        host = dataclasses.replace(
            lab.host("lab2"), proxy_jump=f"{lab.user}@127.0.0.1:{bastion.port}"
        )
        work = lab.hosts[1].root / "work"
        work.mkdir()
        yield Rig(lambda: kind(host), str(work))


def asyncssh_jump_rig(tmp: Path) -> AbstractAsyncContextManager[Rig]:
    return _jump_rig(tmp, AsyncsshTransport)


def fabric_jump_rig(tmp: Path) -> AbstractAsyncContextManager[Rig]:
    return _jump_rig(tmp, FabricTransport)


@asynccontextmanager
async def local_rig(tmp: Path) -> AsyncIterator[Rig]:
    work = tmp / "local-work"
    work.mkdir()
    host = Host(name="here", address="localhost", connection="local")
    yield Rig(lambda: LocalTransport(host), str(work))


@asynccontextmanager
async def _openssh_rig(tmp: Path, kind: type[Transport]) -> AsyncIterator[Rig]:
    """A real OpenSSH sshd in its own network namespace (tests/conftest.py's netns tier).

    It logs in as root, so a timed-out command is not killed by a signal request (see Rig).
    A machine that cannot host the lab skips, unless REPRO_REQUIRE_NETNS=1 (CI), where it fails.
    """
    from repro.inventory import load_inventory
    from repro.netlab import NetnsLab
    from tests.conftest import _started_netlab

    lab = _started_netlab(NetnsLab(tmp / "netlab", 1))
    try:
        host = load_inventory(lab.inventory_path).hosts["h1"]
        workdir = "/root/contract-work"  # the host's private HOME, as its sshd sees it
        done = lab.exec("h1", ["mkdir", "-p", workdir])
        assert done.returncode == 0, done.stderr
        yield Rig(lambda: kind(host), workdir, kills_on_timeout=False)
    finally:
        lab.close()


def asyncssh_openssh_rig(tmp: Path) -> AbstractAsyncContextManager[Rig]:
    return _openssh_rig(tmp, AsyncsshTransport)


def fabric_openssh_rig(tmp: Path) -> AbstractAsyncContextManager[Rig]:
    return _openssh_rig(tmp, FabricTransport)


RIGS: dict[str, RigFactory] = {
    "asyncssh": asyncssh_rig,
    "fabric": fabric_rig,
    "local": local_rig,
    # through a ProxyJump host (lab1 forwarding to lab2)
    "asyncssh-jump": asyncssh_jump_rig,
    "fabric-jump": fabric_jump_rig,
    # the same contract on real OpenSSH hosts (root and network namespaces needed)
    "asyncssh-openssh": asyncssh_openssh_rig,
    "fabric-openssh": fabric_openssh_rig,
}

Body = Callable[[Transport, Rig], Awaitable[None]]


@pytest.fixture(
    params=[
        pytest.param(name, marks=pytest.mark.netns) if name.endswith("-openssh") else name
        for name in sorted(RIGS)
    ]
)
def contract(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Body], None]:
    """Run an async test body against a connected transport of the parametrized kind."""
    factory = RIGS[request.param]

    def check(body: Body) -> None:
        async def main() -> None:
            async with factory(tmp_path) as rig:
                transport = rig.make()
                await transport.connect()
                try:
                    await asyncio.wait_for(body(transport, rig), TEST_TIMEOUT)
                finally:
                    await transport.close()

        asyncio.run(main())

    return check


async def wait_until(predicate: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> bool:
    """Poll `predicate` until it holds or `seconds` pass; bounded, never spins forever."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return await predicate()


# --- exit status and output -------------------------------------------------------------------


def test_exit_statuses(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        assert (await t.run("true")).exit_status == 0
        assert (await t.run("false")).exit_status == 1
        assert (await t.run("exit 3")).exit_status == 3
        assert (await t.run("no-such-command-repro-xyz")).exit_status == 127
        # killed by a signal: the shell's 128 + N, not a negative number or None
        assert (await t.run("kill -9 $$")).exit_status == 137
        assert (await t.run("kill -TERM $$")).exit_status == 143

    contract(body)


def test_stdout_and_stderr_are_separate(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        r = await t.run("echo out; echo err >&2; echo out2; exit 4")
        assert (r.stdout, r.stderr, r.exit_status) == ("out\nout2\n", "err\n", 4)
        assert r.command == "echo out; echo err >&2; echo out2; exit 4"

    contract(body)


def test_large_output_does_not_deadlock(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        r = await t.run("head -c 3000000 /dev/zero | tr '\\0' a; head -c 500000 /dev/zero >&2")
        assert len(r.stdout) == 3_000_000 and set(r.stdout) == {"a"}
        assert len(r.stderr) == 500_000

    contract(body)


def test_non_utf8_output_is_replaced(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        r = await t.run("printf 'ok\\377\\376end'; printf 'x\\300' >&2")
        assert r.stdout == "ok\ufffd\ufffdend"
        assert r.stderr == "x\ufffd"
        r = await t.run("printf '\\303\\274'")  # valid UTF-8 stays as it is
        assert r.stdout == "\u00fc"

    contract(body)


# --- stdin ------------------------------------------------------------------------------------


def test_stdin_bytes_arrive_intact(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        payload = bytes(range(256)) * 4096  # 1 MiB, every byte value, NULs included
        r = await t.run("sha256sum", stdin=payload)
        assert r.exit_status == 0
        assert r.stdout.split()[0] == hashlib.sha256(payload).hexdigest()
        r = await t.run("wc -c", stdin=b"abc")
        assert r.stdout.strip() == "3"

    contract(body)


def test_no_stdin_means_end_of_file(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        # a `cat` left waiting for input would end in TimeoutError, not in "done"
        r = await t.run("cat; echo done", timeout=10)
        assert (r.stdout, r.exit_status) == ("done\n", 0)
        r = await t.run("wc -c", stdin=b"", timeout=10)
        assert r.stdout.strip() == "0"

    contract(body)


def test_command_that_ignores_stdin(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        r = await t.run("exit 0", stdin=b"x" * 2_000_000)
        assert r.exit_status == 0
        # The command may be gone before the first byte is sent (a `cat > missing/dir/f`
        # that fails at once): that is its exit status, never a lost connection. Racy by
        # nature, so tried a few times.
        for _ in range(5):
            r = await t.run("exec 0<&-; exit 3", stdin=b"y" * 100_000)
            assert r.exit_status == 3

    contract(body)


# --- quoting ----------------------------------------------------------------------------------

NASTY = [
    "plain",
    "",
    "with space\tand tab",
    "it's",
    '"double"',
    "back\\slash\\",
    "$HOME",
    "`id`",
    "semi;colon && echo injected | cat",
    "new\nline",
    "-n",
    "*",
    "~root",
    "\u00fcn\u00efc\u00f8d\u00e9 \u2603",
    "#not a comment",
]


def test_quoting_round_trip(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        canary = f"{rig.workdir}/pwned"
        values = NASTY + [f"$(touch {canary})", f"';touch {canary};'"]
        for value in values:
            r = await t.run(f"printf %s {shlex.quote(value)}")
            assert (r.exit_status, r.stdout) == (0, value), value
        r = await t.run(f"test -e {shlex.quote(canary)}")
        assert r.exit_status == 1, "a quoted value was executed"

    contract(body)


# --- timeouts ---------------------------------------------------------------------------------


def test_timeout_raises_and_leaves_the_transport_usable(
    contract: Callable[[Body], None],
) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        pidfile = shlex.quote(f"{rig.workdir}/pid")
        ended = shlex.quote(f"{rig.workdir}/ended")
        # The command ends only when the test lets it (or after 20 s): the TimeoutError must
        # come first, and then the command has not ended (order, not durations).
        gate = shlex.quote(f"{rig.workdir}/go")
        with pytest.raises(TimeoutError):
            await t.run(
                f"echo $$ > {pidfile}; exec sh -c 'i=0; while [ ! -e {gate} ] && [ $i -lt 200 ];"
                f" do sleep 0.1; i=$((i+1)); done; touch {ended}'",
                timeout=0.5,
            )
        assert (await t.run(f"test -e {ended}")).exit_status == 1, "run waited for the command"
        assert (await t.run("echo still here")).stdout == "still here\n"
        if not rig.kills_on_timeout:
            await t.run(f"touch {gate}")  # let it end rather than linger
            return

        async def gone() -> bool:
            r = await t.run(f"kill -0 $(cat {pidfile}) 2>/dev/null")
            return r.exit_status != 0

        assert await wait_until(gone, seconds=10), "the timed-out command is still running"

    contract(body)


# --- put --------------------------------------------------------------------------------------


def test_put_writes_atomically_with_mode(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        path = f"{rig.workdir}/it's a file.bin"
        q = shlex.quote(path)
        data = bytes(range(256)) * 10
        await t.put(data, path, mode=0o600)
        r = await t.run(f"base64 -w0 < {q}; echo; stat -c '%a %i' {q}")
        encoded, stat = r.stdout.splitlines()
        assert base64.b64decode(encoded) == data
        mode, inode = stat.split()
        assert mode == "600"

        await t.put(b"#!/bin/sh\necho replaced\n", path, mode=0o755)
        r = await t.run(f"{q}; stat -c '%a %i' {q}; ls -A {shlex.quote(rig.workdir)}")
        lines = r.stdout.splitlines()
        assert lines[0] == "replaced"
        new_mode, new_inode = lines[1].split()
        assert new_mode == "755"
        # a new inode: the file was renamed into place, never rewritten where readers see it
        assert new_inode != inode
        assert lines[2:] == ["it's a file.bin"], "the temp file was left behind"

    contract(body)


def test_put_into_missing_directory_fails_clearly(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        path = f"{rig.workdir}/no/such/dir/file"
        with pytest.raises(HostError, match="could not write"):
            await t.put(b"x", path)

    contract(body)


def test_put_can_make_its_directory_and_be_skipped(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        path = f"{rig.workdir}/new/dir/file"
        await t.put(b"first", path, make_parent=True)
        r = await t.run(f"cat {shlex.quote(path)}")
        assert r.stdout == "first"
        # the guard exists: nothing is written (a resumed run must not rewrite its inputs)
        await t.put(b"second", path, unless_exists=path)
        r = await t.run(f"cat {shlex.quote(path)}")
        assert r.stdout == "first"
        # the guard is absent: written
        await t.put(b"third", path, unless_exists=f"{rig.workdir}/no-such-lock")
        r = await t.run(f"cat {shlex.quote(path)}")
        assert r.stdout == "third"

    contract(body)


# --- get --------------------------------------------------------------------------------------


def test_get_streams_a_file_intact(contract: Callable[[Body], None], tmp_path: Path) -> None:
    got_dir = tmp_path / "got"
    got_dir.mkdir()

    async def body(t: Transport, rig: Rig) -> None:
        path = f"{rig.workdir}/it's an artifact.bin"
        # 5 MB of incompressible bytes: many chunks, every byte value, no newline framing
        made = await t.run(f"head -c 5000000 /dev/urandom > {shlex.quote(path)}; sha256sum < {shlex.quote(path)}")
        want = made.stdout.split()[0]
        seen: list[int] = []
        dest = got_dir / "fetched.bin"
        got = await t.get(path, dest, max_bytes=10_000_000, progress=seen.append)
        assert (got.size, got.sha256) == (5_000_000, want)
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == want
        assert dest.stat().st_mode & 0o777 == 0o600
        assert seen == sorted(seen) and seen[-1] == 5_000_000 and len(seen) > 1
        assert sorted(p.name for p in got_dir.iterdir()) == ["fetched.bin"]

    contract(body)


def test_get_refuses_what_is_not_a_regular_file(
    contract: Callable[[Body], None], tmp_path: Path
) -> None:
    got_dir = tmp_path / "got"
    got_dir.mkdir()

    async def body(t: Transport, rig: Rig) -> None:
        w = shlex.quote(rig.workdir)
        await t.run(f"echo secret > {w}/real; ln -s real {w}/link; mkdir {w}/dir")
        for name in ("link", "dir", "missing"):
            with pytest.raises(HostError, match="not a regular file") as caught:
                await t.get(f"{rig.workdir}/{name}", got_dir / name, max_bytes=100)
            assert caught.value.host == t.host.name
        assert list(got_dir.iterdir()) == []

    contract(body)


def test_get_stops_at_the_size_cap(contract: Callable[[Body], None], tmp_path: Path) -> None:
    got_dir = tmp_path / "got"
    got_dir.mkdir()

    async def body(t: Transport, rig: Rig) -> None:
        path = f"{rig.workdir}/big"
        await t.run(f"head -c 3000000 /dev/zero > {shlex.quote(path)}")
        with pytest.raises(TooLarge):
            await t.get(path, got_dir / "big", max_bytes=1_000_000)
        assert list(got_dir.iterdir()) == [], "a partial file was left behind"
        # the connection is still usable after the dropped channel
        assert (await t.run("echo still here")).stdout == "still here\n"
        got = await t.get(path, got_dir / "big", max_bytes=3_000_000)
        assert got.size == 3_000_000

    contract(body)


def test_fetches_dropped_mid_stream_leave_the_connection_usable(
    contract: Callable[[Body], None], tmp_path: Path
) -> None:
    """A fetch over its cap closes its channel while data is still arriving, again and again.

    paramiko once raced there: closing a channel closed its wake-up pipe while the transport
    thread could still write to it, and the EBADF killed the whole connection (fabric over a
    jump host failed about one run in three; twenty drops in a row make it all but certain).
    """

    async def body(t: Transport, rig: Rig) -> None:
        path = f"{rig.workdir}/big"
        await t.run(f"head -c 2000000 /dev/zero > {shlex.quote(path)}")
        for n in range(20):
            with pytest.raises(TooLarge):
                await t.get(path, tmp_path / "big", max_bytes=100_000 + n * 7_000)
        assert (await t.run("echo still here")).stdout == "still here\n"
        assert not (tmp_path / "big").exists()

    contract(body)


def test_stream_keeps_only_a_tail_of_stderr(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        chunks: list[bytes] = []
        done = await t.stream(
            "head -c 2000000 /dev/zero | tr '\\0' e >&2; printf abc; exit 5", chunks.append
        )
        assert (b"".join(chunks), done.exit_status, done.stdout) == (b"abc", 5, "")
        assert 0 < len(done.stderr) <= 64 * 1024 and set(done.stderr) == {"e"}

    contract(body)


# --- connection lifecycle ---------------------------------------------------------------------


def test_connect_and_close_are_idempotent(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        await t.connect()  # already connected: no-op
        assert t.connected
        await t.close()
        await t.close()
        assert not t.connected
        with pytest.raises(ConnectError):
            await t.run("true")
        await t.connect()  # a closed transport can connect again
        assert (await t.run("echo again")).stdout == "again\n"

        fresh = rig.make()
        assert not fresh.connected
        await fresh.close()  # closing what never connected is fine too
        async with fresh as entered:
            assert entered is fresh and fresh.connected
        assert not fresh.connected

    contract(body)


def test_detached_process_survives_the_command(contract: Callable[[Body], None]) -> None:
    async def body(t: Transport, rig: Rig) -> None:
        work = shlex.quote(rig.workdir)
        # The job waits (bounded) for the test's go, given only after run returned and the
        # connection closed: a run that waited for it would come back after its 20 s, with
        # bg.out already written.
        inner = shlex.quote(
            f"cd {work} && echo $$ > bg.pid && i=0 && while [ ! -e go ] && [ $i -lt 200 ];"
            " do sleep 0.1; i=$((i+1)); done; echo survived > bg.out"
        )
        r = await t.run(f"setsid sh -c {inner} > {work}/bg.log 2>&1 < /dev/null &")
        assert r.exit_status == 0
        assert (await t.run(f"test -e {work}/bg.out")).exit_status == 1, "run waited for the job"
        # the job must also outlive the connection that started it
        await t.close()
        again = rig.make()
        await again.connect()
        try:
            assert (await again.run(f"test -e {work}/bg.out")).exit_status == 1
            await again.run(f"touch {work}/go")

            async def finished() -> bool:
                r = await again.run(f"cat {work}/bg.out 2>/dev/null")
                return r.stdout == "survived\n"

            assert await wait_until(finished)
        finally:
            await again.close()

    contract(body)


def test_a_held_command_sends_its_reply_then_waits_for_a_word(
    contract: Callable[[Body], None],
) -> None:
    """run_held (the runner's last reply of a run, repro/gc.py): the reply comes back while the
    command still runs, also where a login shell keeps the output open (it did not exec the
    command); `finish` gives it a line and its status, `drop` gives it end of file. A transport
    that cannot hold (local) runs it like `run`, stdin at end of file, and says None."""

    async def body(t: Transport, rig: Rig) -> None:
        work = shlex.quote(rig.workdir)
        holder = (
            "printf 'reply\\n'; printf 'repro-held\\n'; exec >&- 2>&-; "
            f"IFS= read -r w || {{ echo eof > {work}/eof; exit 7; }}; "
            '[ "$w" = go ] && exit 5; exit 6'
        )
        done, held = await t.run_held("echo plain; echo err >&2; exit 3", timeout=10)
        assert (done.stdout, done.stderr, done.exit_status, held) == ("plain\n", "err\n", 3, None)
        done, held = await t.run_held(holder, timeout=10)
        if isinstance(t, LocalTransport):  # run to its end; the reply reads as a held one's
            assert (held, done.exit_status, done.stdout) == (None, 7, "reply\n")
            assert done.raw_stdout == b"reply\n"
            return
        assert held is not None and (done.stdout, done.exit_status) == ("reply\n", 0)
        assert await held.finish(b"go\n", timeout=10) == 5
        # the login shell as a parent that waits (bash with a trap, an old dash): the same
        done, held = await t.run_held(f"sh -c {shlex.quote(holder)}; exit $?", timeout=10)
        assert held is not None and done.stdout == "reply\n"
        assert await held.finish(b"other\n", timeout=10) == 6
        # dropped: end of file on its stdin; the connection goes on
        done, held = await t.run_held(holder, timeout=10)
        assert held is not None
        await held.drop()
        await held.drop()

        async def saw_eof() -> bool:
            return (await t.run(f"cat {work}/eof 2>/dev/null")).stdout == "eof\n"

        assert await wait_until(saw_eof)

    contract(body)


# --- choosing a transport ---------------------------------------------------------------------


def test_make_transport_picks_by_connection_and_transport() -> None:
    assert isinstance(make_transport(Host("a", "a", connection="local")), LocalTransport)
    assert isinstance(make_transport(Host("b", "b")), AsyncsshTransport)
    assert make_transport(Host("b", "b")).name == "asyncssh"
    with pytest.raises(InventoryError, match="repro_transport 'telnet'"):
        make_transport(Host("c", "c", transport="telnet"))
    with pytest.raises(InventoryError, match="ansible_connection 'docker'"):
        make_transport(Host("d", "d", connection="docker"))


def test_every_transport_in_the_table_is_made_by_name_and_has_a_contract_rig() -> None:
    from repro.cli import build_parser
    from repro.transport import LOCAL, TRANSPORTS

    assert {*TRANSPORTS, LOCAL.name} <= set(RIGS)  # every transport passes this suite
    for name in TRANSPORTS:
        assert make_transport(Host("b", "b", transport=name)).name == name
        assert build_parser().parse_args(["run", "--transport", name]).transport == name
    assert make_transport(Host("a", "a", connection="local")).name == LOCAL.name


def test_the_inventory_takes_exactly_the_transports_of_the_table(tmp_path: Path) -> None:
    from repro.inventory import load_inventory
    from repro.transport import TRANSPORTS

    for name in [*TRANSPORTS, "telnet"]:
        inv = tmp_path / f"{name}.yaml"
        inv.write_text(f"all:\n  hosts:\n    h1:\n      repro_transport: {name}\n")
        if name in TRANSPORTS:
            assert load_inventory(inv).hosts["h1"].transport == name
        else:
            with pytest.raises(InventoryError, match="repro_transport.*'telnet'"):
                load_inventory(inv)


# --- long waits ------------------------------------------------------------------------------


def test_a_quiet_long_command_outlives_many_keepalives(contract: Callable[[Body], None]) -> None:
    """The runner waits on a host on one quiet channel for minutes (repro.detach.wait): the
    keepalives that find a dead link must not take a live but silent one for dead. Tuned to
    give up after ~0.6 s of no answer, a command silent for 3 s still ends normally."""

    async def body(t: Transport, rig: Rig) -> None:
        tuned = dataclasses.replace(
            t.host,
            vars={**t.host.vars, "repro_keepalive_interval": 0.2, "repro_keepalive_count_max": 2},
        )
        quiet = type(t)(tuned)
        await quiet.connect()
        try:
            r = await quiet.run("sleep 3; echo still-here", timeout=20)
            assert (r.exit_status, r.stdout) == (0, "still-here\n")
            assert (await quiet.run("echo again")).stdout == "again\n"
        finally:
            await quiet.close()

    contract(body)
