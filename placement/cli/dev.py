"""`placement-manager dev`: the service on SQLite with the Policy Engine and SPRM stand-ins,
in one process. The stand-ins and the stack are the dev distribution (the repository's
`dev/`, package `placement_dev`), which the service's wheel and image do not contain:
imported here only, when the command runs."""

from __future__ import annotations

import os

from placement.cli.serve import fail

HELP = "try it locally: the service on SQLite with both upstream stand-ins, one process"
MISSING = (
    "`placement-manager dev` needs the development stand-ins, which the service's package "
    "does not ship: install them beside it with `pip install ./dev` (from a clone of the "
    "repository)"
)


def main(argv: list[str]) -> int:
    try:
        from placement_dev import devstack
    except ImportError:
        return fail(MISSING)
    status: int = devstack.main(argv, os.environ)
    return status
