"""Transports: how the controller reaches a host (the contract is `base.Transport`).

`TRANSPORTS` is the one table of them: the inventory's `repro_transport` values, `--transport`'s
choices and `make_transport` all come from it. Adding one: its module here, and a line below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from repro.errors import InventoryError

if TYPE_CHECKING:
    from repro.inventory import Host
    from repro.transport.base import Transport


@dataclass(frozen=True)
class TransportSpec:
    """One way of reaching a host: the class `cls` in repro.transport.<module>."""

    name: str  # `repro_transport: NAME` in an inventory, `--transport NAME`
    module: str  # imported only when a host uses it (fabric pulls in paramiko and invoke)
    cls: str

    def make(self, host: Host) -> Transport:
        transport: type[Transport] = getattr(
            importlib.import_module(f"repro.transport.{self.module}"), self.cls
        )
        return transport(host)


#: the SSH transports, by name; the first is the default
TRANSPORTS: dict[str, TransportSpec] = {
    t.name: t
    for t in (
        TransportSpec("asyncssh", "asyncssh", "AsyncsshTransport"),
        TransportSpec("fabric", "fabric", "FabricTransport"),
    )
}
DEFAULT_TRANSPORT = next(iter(TRANSPORTS))
#: `ansible_connection: local`: no SSH, the controller's own machine
LOCAL = TransportSpec("local", "local", "LocalTransport")


def make_transport(host: Host) -> Transport:
    """A fresh, unconnected transport for `host`."""
    if host.connection == "local":
        return LOCAL.make(host)
    if host.connection != "ssh":
        raise InventoryError(
            f"host {host.name}: ansible_connection {host.connection!r} is not supported "
            "(use ssh or local)"
        )
    spec = TRANSPORTS.get(host.transport)
    if spec is None:
        raise InventoryError(
            f"host {host.name}: repro_transport {host.transport!r} is not one of "
            f"{', '.join(TRANSPORTS)}"
        )
    return spec.make(host)
