"""Transports: how the controller reaches a host (the contract is `base.Transport`);
`make_transport` picks one from the host's `ansible_connection` and `repro_transport`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from repro.errors import InventoryError

if TYPE_CHECKING:
    from repro.inventory import Host
    from repro.transport.base import Transport

TRANSPORTS = ("asyncssh", "fabric")


def make_transport(host: Host) -> Transport:
    """A fresh, unconnected transport for `host`."""
    if host.connection == "local":
        from repro.transport.local import LocalTransport

        return LocalTransport(host)
    if host.connection != "ssh":
        raise InventoryError(
            f"host {host.name}: ansible_connection {host.connection!r} is not supported "
            "(use ssh or local)"
        )
    if host.transport == "asyncssh":
        from repro.transport.asyncssh import AsyncsshTransport

        return AsyncsshTransport(host)
    if host.transport == "fabric":
        # Imported only when asked for: fabric pulls in paramiko and invoke.
        from repro.transport.fabric import FabricTransport

        return FabricTransport(host)
    raise InventoryError(
        f"host {host.name}: repro_transport {host.transport!r} is not one of "
        f"{', '.join(TRANSPORTS)}"
    )
