"""The floor for a Python controller: plain asyncssh, every host at once, four commands each.

Usage: bare_asyncssh.py --hosts hosts.json --key KEY --known-hosts FILE --out out.json
(bench/fanout.py writes hosts.json and checks out.json). Host keys are checked.
"""

from __future__ import annotations

import asyncio
import sys

import asyncssh
from workload import COMMANDS, LabHost, driver_args, load_hosts, report_errors, write_outputs


async def one_host(host: LabHost, key: str, known_hosts: str, timeout: float) -> list[str]:
    # config=[]: nothing from ~/.ssh/config may change what is measured.
    async with asyncssh.connect(
        host.address,
        username="root",
        client_keys=[key],
        known_hosts=known_hosts,
        config=[],
        agent_path=None,
        connect_timeout=timeout,
    ) as conn:
        outs = []
        for cmd in COMMANDS:
            res = await conn.run(cmd, check=True, timeout=timeout, stdin=asyncssh.DEVNULL)
            outs.append(str(res.stdout))
        return outs


async def run_all(hosts: list[LabHost], key: str, known_hosts: str, timeout: float
                  ) -> tuple[dict[str, list[str]], dict[str, str]]:
    results = await asyncio.gather(
        *(one_host(h, key, known_hosts, timeout) for h in hosts), return_exceptions=True
    )
    outputs: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for host, res in zip(hosts, results):
        if isinstance(res, BaseException):
            errors[host.name] = f"{type(res).__name__}: {res}"
        else:
            outputs[host.name] = res
    return outputs, errors


def main(argv: list[str] | None = None) -> int:
    args = driver_args(__doc__ or "", argv, "per connect and per command")
    hosts = load_hosts(args.hosts)
    outputs, errors = asyncio.run(run_all(hosts, args.key, args.known_hosts, args.timeout))
    write_outputs(args.out, outputs, errors)
    return report_errors("bare_asyncssh", errors)


if __name__ == "__main__":
    sys.exit(main())
