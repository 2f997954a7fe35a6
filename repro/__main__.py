"""`python -m repro`: the same command line as the `repro` script."""

from repro.cli import main_entry

main_entry()
