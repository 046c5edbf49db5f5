"""`placement-manager`: the service's command line.

- `serve` (cli/serve.py): the API, configured by environment variables;
- `audit` (cli/audit.py): drift between the records and the SPRM, and its repair;
- `dev` (cli/dev.py): the service with both upstream stand-ins, to try it locally; the
  stand-ins are a distribution of their own (dev/), imported only by this command.
"""

from __future__ import annotations

import argparse
import sys

from placement.cli import audit, dev, serve


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    # `audit` and `dev` parse their own flags (bad ones: one line, their exit status).
    if given[:1] == ["audit"]:
        return audit.main(given[1:])
    if given[:1] == ["dev"]:
        return dev.main(given[1:])
    parser = argparse.ArgumentParser(prog="placement-manager", description="DCM placement service.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the API (configured by environment variables)")
    commands.add_parser("dev", help=dev.HELP, add_help=False)
    commands.add_parser("audit", help=audit.HELP, add_help=False)
    parser.parse_args(given)
    return serve.serve()
