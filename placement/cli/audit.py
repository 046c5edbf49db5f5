"""`placement-manager audit`: report drift between our records and the SPRM, and repair
it on request. Configured from the environment as `serve` is.

stdout: a table, or with --json exactly one object. stderr: one line per repair action,
or one line on an error. Exit status: 0 no drift (left), 1 drift (left), 2 error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from placement.config import Config, ConfigError, parse_duration
from placement.errors import UpstreamError
from placement.flows.drift import KINDS, AuditError, Findings, Repairs, scan
from placement.store import StoreError, make_store
from placement.store.drift import DriftStore
from placement.telemetry import context, logs
from placement.upstream.sprm import SprmClient

PROG = "placement-manager audit"
HELP = "report (and repair) drift between records and the SPRM"
DESCRIPTION = (
    "Compare every SPRM instance with every record: orphaned instances (no record), "
    "missing instances (a READY record whose instance is gone), stuck operations (in "
    "flight past their lease); and records whose id the API refuses. Dry unless told to "
    "repair. Exit status: 0 no drift, 1 drift, 2 error."
)


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: {message}\n")


def parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=DESCRIPTION)
    parser.add_argument(
        "--grace",
        type=_duration,
        metavar="DURATION",
        help="ignore instances and records younger than this, in Go syntax "
        "(default: the operation lease, so operations in flight are not reported)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    parser.add_argument(
        "--delete-orphans",
        action="store_true",
        help="delete orphaned instances from the SPRM (each checked again first)",
    )
    parser.add_argument(
        "--max-deletes",
        type=_count,
        default=100,
        metavar="N",
        help="delete at most N orphaned instances (100)",
    )
    parser.add_argument(
        "--forget-missing",
        action="store_true",
        help="remove records whose instance is gone (each checked again first)",
    )
    parser.add_argument(
        "--remove-invalid-ids",
        action="store_true",
        help="remove records whose id the API refuses (such as one ending in a newline),"
        " and their instances (each checked again first)",
    )
    return parser


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        return _error(f"invalid configuration: {exc}")
    # Findings and actions are the output; the service's log lines only on demand.
    logs.configure(config.log_level if config.log_level == "DEBUG" else "ERROR", config.log_format)
    db = config.database
    if db.type == "sqlite" and not Path(db.name).is_file():  # a typo must not look like drift
        return _error(f"no database at {db.describe()}")
    grace = config.operation_lease() if args.grace is None else args.grace
    store = make_store(config.database)
    sprm = SprmClient(config.sprm, config.retry, pool_size=2)
    context.begin(None, prefix="audit")
    try:
        store.open()
        drift = DriftStore(store)
        findings = scan(drift, sprm, grace)
        _print(findings, args.json)
        repairs = Repairs(drift, sprm, findings, config.operation_lease(), _say)
        left = findings.counts() | {"invalid_ids": len(findings.invalid_ids)}
        if args.remove_invalid_ids:  # first: a removed record is no longer missing
            kept = repairs.remove_invalid()
            removed = set(findings.invalid_ids) - set(kept)
            left["invalid_ids"] = len(kept)
            left["missing_instances"] = len(set(findings.missing_instances) - removed)
        if args.delete_orphans:
            left["orphaned_instances"] = len(repairs.delete_orphans(args.max_deletes))
        if args.forget_missing:
            left["missing_instances"] = len(repairs.forget_missing())
    except (StoreError, UpstreamError, AuditError) as exc:
        return _error(str(exc))
    finally:
        sprm.close()
        store.close()
    return 1 if any(left.values()) else 0


def _print(findings: Findings, as_json: bool) -> None:
    if as_json:
        print(json.dumps(findings.to_json()))
        return
    reported = (*KINDS, "invalid_ids")
    width = max(len(kind) for kind in reported)
    print(f"{'drift':<{width}}  count")
    for kind in reported:
        print(f"{kind:<{width}}  {len(getattr(findings, kind)):>5}")
    print(f"checked {findings.instances} instances and {findings.records} records")
    for kind in KINDS:
        ids = getattr(findings, kind)
        if ids:
            print(f"\n{kind}:")
            print("\n".join(f"  {each}" for each in ids))
    if findings.invalid_ids:  # shown as Python strings: one line each, whatever they hold
        print("\ninvalid_ids:")
        print("\n".join(f"  {each!r}" for each in findings.invalid_ids))


def _say(line: str) -> None:
    print(logs.mask_urls(line), file=sys.stderr, flush=True)


def _error(message: str) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"{PROG}: {logs.mask_urls(first)}", file=sys.stderr)
    logging.getLogger(__name__).debug("audit failed: %s", message)
    return 2


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)
