"""repro: run a pinned build on many hosts over SSH and compare what they produced.

The library never prints; it emits events and returns records. `repro.cli` is the only
module that talks to a terminal.
"""

__version__ = "0.1.0"
