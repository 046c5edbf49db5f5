"""Local stand-ins for the two upstreams of the placement service, the Policy Engine and
the SPRM: small HTTP servers speaking exactly `api/upstream/*.yaml`, for development,
demos and tests (functional and benchmark). They are not replacements for the real
services: decisions come from a rules file, instances live in memory.

Both record every API request and take programmable faults, from Python or over
admin endpoints under /_standin/. Run one in the foreground with
`python -m placement_dev.standins policy|sprm --port N`, or in a thread with
`PolicyStandIn().serve()` / `BackgroundServer(app)`.
"""

from placement_dev.standins.faults import GARBLE, HANG
from placement_dev.standins.policy import PolicyStandIn
from placement_dev.standins.recording import RecordedRequest
from placement_dev.standins.rules import Rules, RulesError, load_rules, parse_rules
from placement_dev.standins.server import BackgroundServer, ServerError
from placement_dev.standins.sprm import SprmStandIn

__all__ = [
    "GARBLE",
    "HANG",
    "BackgroundServer",
    "PolicyStandIn",
    "RecordedRequest",
    "Rules",
    "RulesError",
    "ServerError",
    "SprmStandIn",
    "load_rules",
    "parse_rules",
]
