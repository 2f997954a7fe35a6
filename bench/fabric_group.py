"""Fabric's ThreadingGroup over every host, four commands each, host keys checked (RejectPolicy).

Usage: fabric_group.py --hosts hosts.json --key KEY --known-hosts FILE --out out.json
Each command runs as one `group.run` across all hosts, the way Fabric's own docs use a group.
"""

from __future__ import annotations

import sys

import paramiko
from fabric import Config, Connection, ThreadingGroup
from fabric.exceptions import GroupException
from workload import COMMANDS, LabHost, driver_args, load_hosts, report_errors, write_outputs


def make_group(hosts: list[LabHost], key: str, known_hosts: str, timeout: float) -> ThreadingGroup:
    # Fabric defaults to AutoAddPolicy (trust whatever answers); the lab's known_hosts and
    # RejectPolicy make it check keys like the other controllers. No ssh_config, no agent.
    config = Config(overrides={"load_ssh_configs": False})
    conns = []
    for h in hosts:
        conn = Connection(
            h.address,
            user="root",
            port=22,
            config=config,
            connect_timeout=timeout,
            connect_kwargs={"key_filename": [key], "look_for_keys": False, "allow_agent": False},
        )
        conn.client.load_host_keys(known_hosts)
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        conns.append(conn)
    return ThreadingGroup.from_connections(conns)


def run_all(hosts: list[LabHost], key: str, known_hosts: str, timeout: float
            ) -> tuple[dict[str, list[str]], dict[str, str]]:
    names = {h.address: h.name for h in hosts}
    group = make_group(hosts, key, known_hosts, timeout)
    outputs: dict[str, list[str]] = {h.name: [] for h in hosts}
    errors: dict[str, str] = {}
    try:
        for cmd in COMMANDS:
            try:
                results = group.run(cmd, hide=True, warn=False, in_stream=False, timeout=timeout)
            except GroupException as exc:
                results = exc.result
            for conn, res in results.items():
                name = names[conn.host]
                if isinstance(res, BaseException):
                    errors.setdefault(name, f"{type(res).__name__}: {res}")
                else:
                    outputs[name].append(res.stdout)
    finally:
        group.close()
    return {n: o for n, o in outputs.items() if n not in errors}, errors


def main(argv: list[str] | None = None) -> int:
    args = driver_args(__doc__ or "", argv, "per connect and per command")
    hosts = load_hosts(args.hosts)
    outputs, errors = run_all(hosts, args.key, args.known_hosts, args.timeout)
    write_outputs(args.out, outputs, errors)
    return report_errors("fabric_group", errors)


if __name__ == "__main__":
    sys.exit(main())
