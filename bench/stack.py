"""The processes under test and around them: the stand-ins, the service, the floor, and
the data they serve (seeded with COPY; ids created and deleted by the scenarios)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
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
TEMPLATE_DB, SERVICE_DB, FLOOR_DB = "bench_template", "bench_service", "bench_floor"
COPY_COLUMNS = (
    "id, catalog_item_instance_id, original_spec, provider_name, approval_status, path,"
    " create_time, update_time"
)
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
# benchmark sets (and --service-env), whatever the caller's environment holds.
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")
_STARTUP_TIMEOUT = 60.0


def seeded_id(index: int) -> str:
    return f"r{index:07d}"


def _copy_lines(rows: int) -> Iterator[bytes]:
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
        yield ("\t".join((*fields, stamp, stamp)) + "\n").encode()


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
        yield ("\t".join((*fields, f"resources/{rid}", stamp, stamp)) + "\n").encode()


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
    """The service or the floor, with `workers` processes, on its own database."""

    name: str  # "service" or "floor"
    tag: str  # one letter in the ids it creates
    database: str
    child: Child | None = None
    url: str = ""
    workers: int = 1

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
            "SVC_LOG_LEVEL": "warn",
            "POLICY_MANAGER_EVALUATION_URL": standins.urls["policy"],
            "SP_RESOURCE_MANAGER_URL": standins.urls["sprm"],
        }
    )
    env.update(overrides)
    return env


def start_service(
    target: Target,
    pg: PrivatePostgres,
    standins: StandIns,
    tmp: Path,
    workers: int,
    overrides: Mapping[str, str],
) -> None:
    def command(port: int) -> tuple[list[str], dict[str, str]]:
        env = service_env(pg, target.database, port, standins, workers, overrides)
        return service_command(), env

    _start(target, tmp, workers, pg.port, command)


def start_floor(
    target: Target,
    pg: PrivatePostgres,
    standins: StandIns,
    tmp: Path,
    workers: int,
    pool_size: int,
    token_key: str,
) -> None:
    def command(port: int) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        env.update(
            {
                "FLOOR_DSN": pg.conninfo(target.database),
                "FLOOR_POOL_SIZE": str(pool_size),
                "FLOOR_POLICY_URL": standins.urls["policy"],
                "FLOOR_SPRM_URL": standins.urls["sprm"],
                "FLOOR_TOKEN_KEY": token_key,
            }
        )
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.floor:app",
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
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        return argv, env

    _start(target, tmp, workers, pg.port, command)


def _workers_ready(root: int, workers: int, db_port: int) -> bool:
    from bench.procs import connected_to, tree

    children = [pid for pid in tree(root) if pid != root]
    ready = [pid for pid in children if connected_to(pid, db_port)]
    return len(ready) >= workers


def _start(target: Target, tmp: Path, workers: int, db_port: int, command: Any) -> None:
    """Start on a free port (a few tries: the port may be taken meanwhile); return once
    /health answers 200 and every worker process is there."""
    for attempt in range(3):
        port = free_port()
        argv, env = command(port)
        log = tmp / f"{target.name}-{workers}w.log"
        child = Child(target.name, argv, log=log, env=env, cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(
                lambda url=url: http_ok(f"{url}{PREFIX}/health"),
                child,
                _STARTUP_TIMEOUT,
                "healthy answer",
            )
            if workers > 1:
                # Every worker has opened its database pool before it serves.
                wait_until(
                    lambda child=child: _workers_ready(child.pid, workers, db_port),
                    child,
                    _STARTUP_TIMEOUT,
                    f"{workers} workers connected to the database",
                )
                time.sleep(0.5)
        except BenchError:
            child.stop()
            in_use = "address already in use" in log.read_text(errors="replace").lower()
            if attempt == 2 or not in_use:
                raise
            continue
        target.child, target.url, target.workers = child, url, workers
        return


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


def check_same_answers(service: Target, floor: Target, deep: dict[str, str]) -> None:
    """The floor must answer what the service answers (same data, same JSON): GET, the
    first page, a create and a delete. Any difference stops the benchmark."""

    def both(method: str, path: str, body: Any = None) -> dict[str, tuple[int, Any]]:
        return {t.name: http_json(method, t.url + path, body) for t in (service, floor)}

    answers = both("GET", f"{PREFIX}/resources/{seeded_id(0)}")
    if answers["service"] != answers["floor"] or answers["service"][0] != 200:
        raise BenchError(f"floor and service disagree on GET by id: {answers}")
    answers = both("GET", f"{PREFIX}/resources?max_page_size=100")
    pages = {name: (status, body["resources"]) for name, (status, body) in answers.items()}
    if pages["service"] != pages["floor"] or pages["service"][0] != 200:
        raise BenchError("floor and service disagree on the first page of the list")
    for name, (_, body) in answers.items():
        if not body.get("next_page_token"):
            raise BenchError(f"{name}: the first page has no next_page_token")
    spec = json.loads(CREATE_BODY)
    created = {}
    for target in (service, floor):
        rid = f"xshape-{target.tag}"
        created[target.name] = http_json("POST", f"{target.url}{PREFIX}/resources?id={rid}", spec)
    shapes = {}
    for name, (status, body) in created.items():
        if status != 201:
            raise BenchError(f"{name}: create answered {status} {body}")
        shapes[name] = {
            key: value
            for key, value in body.items()
            if key not in ("id", "path", "create_time", "update_time")
        } | {"keys": sorted(body)}
    if shapes["service"] != shapes["floor"]:
        raise BenchError(f"floor and service disagree on create: {created}")
    for target in (service, floor):
        status, body = http_json("DELETE", f"{target.url}{PREFIX}/resources/xshape-{target.tag}")
        if status != 204:
            raise BenchError(f"{target.name}: delete answered {status} {body}")
    if not deep:
        return
    deep_pages = {}
    for target in (service, floor):
        status, body = http_json("GET", target.url + deep[target.name])
        if status != 200 or len(body["resources"]) == 0:
            raise BenchError(f"{target.name}: the deep page answered {status}")
        deep_pages[target.name] = body["resources"]
    if deep_pages["service"] != deep_pages["floor"]:
        raise BenchError("floor and service disagree on the deep page")


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
    start-up), then COPY seeds it; the service's and the floor's databases are copies."""
    started = time.monotonic()
    pg.execute("postgres", f'CREATE DATABASE "{TEMPLATE_DB}"')
    migrator = Target("service", "m", TEMPLATE_DB)
    start_service(migrator, pg, standins, tmp, 1, overrides)
    migrator.stop()
    migrated = time.monotonic()
    count = copy_rows(pg.conninfo(TEMPLATE_DB), _copy_lines(rows))
    pg.execute(TEMPLATE_DB, "VACUUM ANALYZE resources")
    copied = time.monotonic()
    for name in (SERVICE_DB, FLOOR_DB):
        pg.execute("postgres", f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    return {
        "rows": count,
        "migrate_s": round(migrated - started, 2),
        "copy_s": round(copied - migrated, 2),
        "clone_s": round(time.monotonic() - copied, 2),
    }
