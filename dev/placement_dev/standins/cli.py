"""Run one stand-in in the foreground until SIGINT or SIGTERM:

    python -m placement_dev.standins policy [--port 8081] [--host 127.0.0.1] [--rules FILE]
    python -m placement_dev.standins sprm [--port 8082] [--host 127.0.0.1]
                                          [--nats-url URL] [--running-after SECONDS]

The default ports are the placement service's default upstream URLs. A bad rules file or
a busy port is one line on stderr and exit status 1. With --nats-url, the SPRM stand-in
publishes its instances' status events there (see placement_dev.standins.events).
"""

from __future__ import annotations

import argparse
import logging
import sys

from placement_dev.standins.base import StandIn
from placement_dev.standins.events import safe_url
from placement_dev.standins.policy import PolicyStandIn
from placement_dev.standins.rules import RulesError, load_rules
from placement_dev.standins.server import ServerError, exposure_warning, listen, serve_forever
from placement_dev.standins.sprm import SprmStandIn

PROG = "python -m placement_dev.standins"
log = logging.getLogger("placement_dev.standins")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    try:
        standin = _standin(args)
        sock = listen(args.host, args.port)
    except (RulesError, ServerError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    log.info("%s stand-in listening on http://%s:%d", standin.name, host, port)
    warning = exposure_warning(args.host)
    if warning:
        log.warning("%s", warning)
    if isinstance(standin, SprmStandIn) and standin.events is not None:
        log.info("sprm stand-in publishing status events to %s", safe_url(args.nats_url))
    serve_forever(standin, sock)
    if isinstance(standin, SprmStandIn):
        standin.close()
    log.info("%s stand-in stopped", standin.name)
    return 0


def _standin(args: argparse.Namespace) -> StandIn:
    if args.standin == "policy":
        return PolicyStandIn(load_rules(args.rules))
    return SprmStandIn(nats_url=args.nats_url, running_after=args.running_after)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Local stand-ins for the Policy Engine and the SPRM."
    )
    kinds = parser.add_subparsers(dest="standin", required=True)
    policy = kinds.add_parser("policy", help="the Policy Engine stand-in")
    policy.add_argument("--rules", help="rules file, YAML or JSON (default: packaged rules)")
    sprm = kinds.add_parser("sprm", help="the SPRM stand-in")
    for sub, port in ((policy, 8081), (sprm, 8082)):
        sub.add_argument("--port", type=int, default=port, help=f"default {port}; 0: any free")
        sub.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    sprm.add_argument(
        "--nats-url",
        metavar="URL",
        help="publish status events to this NATS server (JetStream stream dcm-status);"
        " default: none",
    )
    sprm.add_argument(
        "--running-after",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds from PROVISIONING to RUNNING (default 1)",
    )
    return parser
