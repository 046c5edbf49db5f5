"""The processes under test and around them: the stand-ins, the service, the floor, the
peer, and the data they serve (seeded with COPY; ids created and deleted by the scenarios)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.pg import PrivatePostgres
from bench.procs import BenchError, Child, free_port, http_ok, wait_until

PREFIX = "/api/v1alpha1"
REPO = Path(__file__).resolve().parent.parent
TEMPLATE_DB = "bench_template"
SERVICE_DB, FLOOR_DB, PEER_DB = "bench_service", "bench_floor", "bench_peer"
PEER_APP = "bench.peer:app"
COPY_COLUMNS = (
    "id, catalog_item_instance_id, original_spec, provider_name, approval_status, path,"
    " create_time, update_time, status, status_message, status_time"
)
# The provider's status of seeded rows, by index modulo 10 (as events and creates leave
# them): a status with a message, one without, or (1 in 10) none yet.
_SEED_STATUSES = ("RUNNING", "PROVISIONED", "RUNNING", "STOPPED", "RUNNING")
CREATE_BODY = json.dumps(
    {
        "catalog_item_instance_id": "cat-bench",
        "spec": {
            "service_type": "vm",
            "environment": "dev",
            "cpu": 2,
            "memory": "4Gi",
            "image": "fedora-40",
        },
    },
    separators=(",", ":"),
)
# The only variables the service inherits: it runs on its own defaults plus what the
# benchmark sets (and --service-env), whatever the caller's environment holds (PYTHONPATH:
# which code runs, e.g. a work tree ahead of an editable install elsewhere).
_INHERITED = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "PYTHONPATH",
)
_STARTUP_TIMEOUT = 60.0
_TIMES = ("create_time", "update_time")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z")  # Go's RFC3339Nano, UTC


def seeded_id(index: int) -> str:
    return f"r{index:07d}"


def seed_lines(rows: int) -> Iterator[bytes]:
    """Seed rows in COPY text format: ids r0000000..., create_time one second apart
    (plus varying microseconds) from 2025-01-01, two providers, small specs."""
    base = datetime(2025, 1, 1, tzinfo=UTC)
    providers = ("local-kubevirt", "local-openshift")
    for index in range(rows):
        rid = seeded_id(index)
        moment = base + timedelta(seconds=index, microseconds=(index * 7919) % 1_000_000)
        stamp = moment.isoformat(sep=" ")
        spec = json.dumps(
            {
                "service_type": "vm",
                "environment": "dev",
                "cpu": index % 8 + 1,
                "memory": f"{index % 16 + 1}Gi",
                "image": "fedora-40",
                "labels": {"team": f"t{index % 50}"},
            },
            separators=(",", ":"),
        )
        provider = providers[index % 2]
        fields = (rid, f"cat-{index % 1000}", spec, provider, "APPROVED", f"resources/{rid}")
        yield ("\t".join((*fields, stamp, stamp, *_seed_status(index, moment))) + "\n").encode()


def _seed_status(index: int, created: datetime) -> tuple[str, str, str]:
    """status, status_message, status_time of a seeded row, in COPY text (\\N: NULL)."""
    if index % 10 == 9:
        return ("\\N", "\\N", "\\N")
    status = _SEED_STATUSES[index % len(_SEED_STATUSES)]
    message = f"{status.lower()} since boot {index % 7}" if index % 2 == 0 else "\\N"
    return (status, message, (created + timedelta(minutes=1)).isoformat(sep=" "))


def copy_rows(conninfo: str, lines: Iterator[bytes]) -> int:
    count = 0
    statement = f"COPY resources ({COPY_COLUMNS}) FROM STDIN"
    with (
        psycopg.connect(conninfo, autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy(statement) as copy,
    ):
        chunk: list[bytes] = []
        for line in lines:
            chunk.append(line)
            count += 1
            if len(chunk) >= 5000:
                copy.write(b"".join(chunk))
                chunk = []
        if chunk:
            copy.write(b"".join(chunk))
    return count


def _spare_lines(ids: Sequence[str]) -> Iterator[bytes]:
    stamp = datetime.now(UTC).isoformat(sep=" ")
    spec = json.loads(CREATE_BODY)["spec"]
    for rid in ids:
        fields = (rid, "cat-bench", json.dumps(spec), "local-kubevirt", "APPROVED")
        status = ("PROVISIONED", "\\N", stamp)  # as the SPRM stand-in's create answer leaves it
        yield ("\t".join((*fields, f"resources/{rid}", stamp, stamp, *status)) + "\n").encode()


def http_json(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """One request; its status and JSON body (None when empty)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw) if raw else None
        except ValueError:
            return error.code, raw.decode(errors="replace")


@dataclass
class StandIns:
    """The Policy Engine and SPRM stand-ins, one process each
    (`python -m placement_dev.standins`)."""

    tmp: Path
    children: dict[str, Child] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        for kind in ("policy", "sprm"):
            for attempt in range(3):
                port = free_port()
                child = Child(
                    f"{kind} stand-in",
                    [sys.executable, "-m", "placement_dev.standins", kind, "--port", str(port)],
                    log=self.tmp / f"standin-{kind}.log",
                    cwd=REPO,
                )
                url = f"http://127.0.0.1:{port}"
                try:
                    wait_until(
                        lambda url=url: http_ok(f"{url}/_standin/faults"),
                        child,
                        _STARTUP_TIMEOUT,
                        "answer on its admin endpoint",
                    )
                except BenchError:
                    child.stop()
                    if attempt == 2:
                        raise
                    continue
                self.children[kind], self.urls[kind] = child, url
                break

    def set_latency(self, seconds: float) -> None:
        """Delay every Policy Engine evaluation and SPRM create by `seconds` (0: none)."""
        for kind, operation in (("policy", "evaluate"), ("sprm", "create")):
            status, body = http_json(
                "POST",
                f"{self.urls[kind]}/_standin/faults",
                {"action": "delay", "operation": operation, "seconds": seconds},
            )
            if status != 204:
                raise BenchError(f"{kind} stand-in refused a delay: {status} {body}")

    def pids(self) -> dict[str, int]:
        return {kind: child.pid for kind, child in self.children.items()}

    def stop(self) -> None:
        for child in self.children.values():
            child.stop()
        self.children.clear()

    async def _create_instances(self, ids: Sequence[str], concurrency: int = 64) -> None:
        import aiohttp

        spec = json.loads(CREATE_BODY)["spec"]
        url = f"{self.urls['sprm']}{PREFIX}/service-type-instances"
        queue = list(ids)
        failures: list[str] = []

        async def worker(session: aiohttp.ClientSession) -> None:
            while queue:
                rid = queue.pop()
                body = {"provider_name": "local-kubevirt", "spec": spec}
                async with session.post(url, params={"id": rid}, json=body) as answer:
                    if answer.status != 201:
                        failures.append(f"{rid}: {answer.status}")

        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        if failures:
            raise BenchError(f"SPRM stand-in refused spare instances: {failures[:3]}")

    def create_instances(self, ids: Sequence[str]) -> None:
        asyncio.run(self._create_instances(ids))


@dataclass
class Target:
    """The service, the floor or the peer, with `workers` processes, on its own database."""

    name: str  # "service", "floor" or "peer"
    tag: str  # one letter in the ids it creates
    database: str
    child: Child | None = None
    url: str = ""
    workers: int = 1
    cpus: frozenset[int] | None = None  # the cores it was pinned to (None: not pinned)
    # Where each of its processes placed itself once started (the service keeps to one CPU
    # of its own, SVC_CPU_AFFINITY): unpinned, that is where it runs, as deployed.
    own_cpus: dict[int, frozenset[int]] = field(default_factory=dict)

    def pids(self) -> list[int]:
        from bench.procs import tree

        return tree(self.child.pid) if self.child else []

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(timeout=35)
            self.child = None


def service_command() -> list[str]:
    """`placement-manager serve` from the benchmark's own environment."""
    script = Path(sys.executable).parent / "placement-manager"
    if script.is_file():
        return [str(script), "serve"]
    found = shutil.which("placement-manager")
    if found and Path(found).resolve().parent == Path(sys.executable).resolve().parent:
        return [found, "serve"]
    return [sys.executable, "-m", "placement", "serve"]


def service_env(
    pg: PrivatePostgres,
    database: str,
    port: int,
    standins: StandIns,
    workers: int,
    overrides: Mapping[str, str],
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key in _INHERITED}
    env.update(
        {
            "DB_TYPE": "pgsql",
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(pg.port),
            "DB_NAME": database,
            "DB_USER": "bench",
            "SVC_ADDRESS": f"127.0.0.1:{port}",
            "SVC_WORKERS": str(workers),
            "POLICY_MANAGER_EVALUATION_URL": standins.urls["policy"],
            "SP_RESOURCE_MANAGER_URL": standins.urls["sprm"],
        }
    )
    env.update(overrides)
    return env


def service_launch(
    target: Target,
    pg: PrivatePostgres,
    standins: StandIns,
    tmp: Path,
    workers: int,
    overrides: Mapping[str, str],
    cpus: frozenset[int] | None = None,
) -> Launch:
    """`placement-manager serve` at its defaults (info-level logs, one line a request)."""

    def command(port: int) -> tuple[list[str], dict[str, str]]:
        env = service_env(pg, target.database, port, standins, workers, overrides)
        return service_command(), env

    return Launch(target, tmp, workers, pg.port, command, cpus)


@dataclass(frozen=True)
class Reference:
    """How to run the floor or the peer: an ASGI app under uvicorn, configured through
    environment variables named `<prefix>_DSN` and so on."""

    app: str  # module:attribute
    prefix: str  # "FLOOR" or "PEER"
    log_level: str  # uvicorn's --log-level
    access_log: bool


FLOOR = Reference("bench.floor:app", "FLOOR", "warning", access_log=False)


def peer(app: str = PEER_APP) -> Reference:
    """The peer at the service's log level: info, with uvicorn's access line a request."""
    return Reference(app, "PEER", "info", access_log=True)


def reference_launch(
    reference: Reference,
    target: Target,
    pg: PrivatePostgres,
    standins: StandIns,
    tmp: Path,
    workers: int,
    pool_size: int,
    token_key: str,
    cpus: frozenset[int] | None = None,
) -> Launch:
    """The floor or the peer: `uvicorn APP --workers N --loop uvloop --http httptools`."""

    def command(port: int) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        env.update(
            {
                f"{reference.prefix}_DSN": pg.conninfo(target.database),
                f"{reference.prefix}_POOL_SIZE": str(pool_size),
                f"{reference.prefix}_POLICY_URL": standins.urls["policy"],
                f"{reference.prefix}_SPRM_URL": standins.urls["sprm"],
                f"{reference.prefix}_TOKEN_KEY": token_key,
            }
        )
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            reference.app,
            "--app-dir",
            str(REPO),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            reference.log_level,
        ]
        if not reference.access_log:
            argv.append("--no-access-log")
        return argv, env

    return Launch(target, tmp, workers, pg.port, command, cpus)


def _workers_ready(root: int, workers: int, db_port: int) -> bool:
    from bench.procs import connected_to, tree

    children = [pid for pid in tree(root) if pid != root]
    ready = [pid for pid in children if connected_to(pid, db_port)]
    return len(ready) >= workers


@dataclass
class Launch:
    """A target to start: how to run it, and the process once launched."""

    target: Target
    tmp: Path
    workers: int
    db_port: int
    command: Any  # port -> (argv, environment)
    cpus: frozenset[int] | None
    child: Child | None = None
    url: str = ""

    def launch(self) -> None:
        """Start on a free port (it may be taken meanwhile: `start` tries again)."""
        port = free_port()
        argv, env = self.command(port)
        log = self.tmp / f"{self.target.name}-{self.workers}w.log"
        self.child = Child(self.target.name, argv, log=log, env=env, cwd=REPO, cpus=self.cpus)
        self.url = f"http://127.0.0.1:{port}"

    def wait(self) -> None:
        """Until /health answers 200 and every worker process is there."""
        assert self.child is not None
        url, child = self.url, self.child
        wait_until(
            lambda: http_ok(f"{url}{PREFIX}/health"), child, _STARTUP_TIMEOUT, "healthy answer"
        )
        if self.workers > 1:
            # Every worker has opened its database pool before it serves.
            wait_until(
                lambda: _workers_ready(child.pid, self.workers, self.db_port),
                child,
                _STARTUP_TIMEOUT,
                f"{self.workers} workers connected to the database",
            )

    def port_taken(self) -> bool:
        assert self.child is not None
        return "address already in use" in self.child.log.read_text(errors="replace").lower()


def start_all(*launches: Launch) -> None:
    """Start every target at once (they start in parallel), then wait for each; a target
    whose port was taken meanwhile is started again on another (up to 3 tries)."""
    for each in launches:
        each.launch()
    try:
        for each in launches:
            for attempt in range(3):
                try:
                    each.wait()
                    break
                except BenchError:
                    assert each.child is not None
                    each.child.stop()
                    if attempt == 2 or not each.port_taken():
                        raise
                    each.launch()
    except BaseException:
        for each in launches:
            if each.child is not None:
                each.child.stop()
        raise
    if any(each.workers > 1 for each in launches):
        time.sleep(0.5)
    for each in launches:
        target = each.target
        target.child, target.url, target.workers = each.child, each.url, each.workers
        target.cpus = each.cpus


def walk_pages(base_url: str, pages: int, size: int = 100) -> tuple[str, list[str]]:
    """Follow `pages` next_page_tokens from the first page; the deep page's path and the
    ids on it."""
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    path = f"{PREFIX}/resources?max_page_size={size}"
    try:
        for _ in range(pages + 1):
            conn.request("GET", path)
            answer = conn.getresponse()
            body = json.loads(answer.read())
            if answer.status != 200:
                raise BenchError(f"{base_url}{path}: {answer.status} {body}")
            ids = [each["id"] for each in body["resources"]]
            deep_path = path
            token = body.get("next_page_token")
            if not token:
                break
            path = f"{PREFIX}/resources?max_page_size={size}&page_token={urllib.parse.quote(token)}"
    finally:
        conn.close()
    return deep_path, ids


def check_same_answers(targets: Sequence[Target], deep: Mapping[str, str]) -> None:
    """Every target must answer what the first (the service) answers, on the same data:
    health, GET by id (a seeded id, an unknown one, one against the id pattern), the
    first page, a create, a delete and the deep page. Any difference stops the benchmark."""
    service, others = targets[0], targets[1:]

    def each(method: str, path: str, body: Any = None) -> dict[str, tuple[int, Any]]:
        return {t.name: http_json(method, t.url + path, body) for t in targets}

    def same(what: str, answers: Mapping[str, Any], status: int) -> None:
        for other in others:
            if answers[other.name] != answers[service.name]:
                raise BenchError(f"{other.name} and {service.name} disagree on {what}: {answers}")
        if answers[service.name][0] != status:
            raise BenchError(f"{what}: expected {status}, got {answers}")

    same("health", each("GET", f"{PREFIX}/health"), 200)
    same("GET by id", each("GET", f"{PREFIX}/resources/{seeded_id(0)}"), 200)
    for what, rid, status in (
        ("GET by id of an unknown id", "nowhere-0", 404),
        ("GET by id against the id pattern", "Not_An_Id", 400),
    ):
        answers = each("GET", f"{PREFIX}/resources/{rid}")
        same(what, {name: (code, None) for name, (code, _) in answers.items()}, status)
    answers = each("GET", f"{PREFIX}/resources?max_page_size=100")
    same(
        "the first page of the list",
        {name: (status, body["resources"]) for name, (status, body) in answers.items()},
        200,
    )
    for name, (_, body) in answers.items():
        if not body.get("next_page_token"):
            raise BenchError(f"{name}: the first page has no next_page_token")
    spec = json.loads(CREATE_BODY)
    shapes = {}
    for target in targets:
        rid = f"xshape-{target.tag}"
        status, body = http_json("POST", f"{target.url}{PREFIX}/resources?id={rid}", spec)
        if status != 201:
            raise BenchError(f"{target.name}: create answered {status} {body}")
        if body["id"] != rid or body["path"] != f"resources/{rid}":
            raise BenchError(f"{target.name}: create answered another id: {body}")
        stamps = ("id", "path", "status_time", *_TIMES)
        unstamped = {k: v for k, v in body.items() if k not in stamps}
        formats = [bool(_RFC3339.fullmatch(body[key])) for key in _TIMES]
        # The SPRM's status is as of the record's creation.
        status_time = body.get("status_time") == body["create_time"] if "status" in body else None
        shapes[target.name] = (
            status,
            unstamped | {"keys": sorted(body), "rfc3339": formats, "status_time": status_time},
        )
    same("create", shapes, 201)
    for target in targets:
        status, body = http_json("DELETE", f"{target.url}{PREFIX}/resources/xshape-{target.tag}")
        if status != 204:
            raise BenchError(f"{target.name}: delete answered {status} {body}")
    if not deep:
        return
    deep_pages = {}
    for target in targets:
        status, body = http_json("GET", target.url + deep[target.name])
        if status != 200 or len(body["resources"]) == 0:
            raise BenchError(f"{target.name}: the deep page answered {status}")
        deep_pages[target.name] = (status, body["resources"])
    same("the deep page", deep_pages, 200)


def deletable_ids(pg: PrivatePostgres, target: Target) -> list[str]:
    """Ids the scenarios created through `target` (and spares), still there and READY."""
    with psycopg.connect(pg.conninfo(target.database), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id FROM resources WHERE (id LIKE 'x%' OR id LIKE 'y%') AND state = 'READY'"
            " ORDER BY create_time, id"
        ).fetchall()
    return [row[0] for row in rows]


def add_spares(pg: PrivatePostgres, standins: StandIns, target: Target, ids: Sequence[str]) -> None:
    """Resources to delete beyond those the create scenarios left: an SPRM instance and
    a READY record each, as a create would have made them."""
    standins.create_instances(ids)
    copy_rows(pg.conninfo(target.database), _spare_lines(ids))


def seed_template(
    pg: PrivatePostgres,
    standins: StandIns,
    tmp: Path,
    rows: int,
    overrides: Mapping[str, str],
) -> dict[str, Any]:
    """The template database: the service creates its schema (its own migrations, run at
    start-up), then COPY seeds it; the service's, the floor's and the peer's databases are
    copies."""
    started = time.monotonic()
    pg.execute("postgres", f'CREATE DATABASE "{TEMPLATE_DB}"')
    migrator = Target("service", "m", TEMPLATE_DB)
    start_all(service_launch(migrator, pg, standins, tmp, 1, overrides))
    migrator.stop()
    migrated = time.monotonic()
    count = copy_rows(pg.conninfo(TEMPLATE_DB), seed_lines(rows))
    pg.execute(TEMPLATE_DB, "VACUUM ANALYZE resources")
    copied = time.monotonic()
    for name in (SERVICE_DB, FLOOR_DB, PEER_DB):
        pg.execute("postgres", f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    return {
        "rows": count,
        "migrate_s": round(migrated - started, 2),
        "copy_s": round(copied - migrated, 2),
        "clone_s": round(time.monotonic() - copied, 2),
    }
