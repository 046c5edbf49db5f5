"""The status and problem-type mapping as a contract: the cases in tests/contract/*.yaml
(in the spirit of OpenStack placement's gabbi files), each run against the real app on
a real socket (uvicorn with the service's own protocol and limits), the Policy Engine
and the SPRM stood in for by `responses`.

A file holds `cases`, optional `defaults` (merged into each case; `request` key by key)
and optional `databases`. A case:

  name      its id (file/name/database)
  doc       optional: why the case matters
  given     resources that exist before: an id (READY), or {id, state: PROVISIONING}
  config    environment variables for the service (SVC_MAX_BODY_BYTES: "16")
  database  a fault made once the service is up: `broken` (its table dropped) or `away`
            (PostgreSQL refuses connections; SQLite is locked by another writer)
  policy    the Policy Engine's answer to an evaluation
  sprm      the SPRM's answers: {create, get, delete}, each an answer or a list of
            answers given in turn (the last repeats)
  request   method, path (below /api/v1alpha1), query, headers (a mapping, or a list of
            [name, value] pairs), and body (JSON; null: none) or raw_body (sent as it
            is, no Content-Type added); body_sent: send only that many bytes of the body;
            padding: add an X-Padding header of that many bytes
  expect    status; for a problem, its type (its status and title must be the error
            table's), optionally a substring of its detail, and headers it carries

An answer is `unreachable`, or {status, detail (of the problem it answers), body (instead
of the default), provider (an evaluation's selected provider)}. Unless told otherwise the
policies approve on kubevirt (the spec unchanged), and the SPRM creates (201), has no
instance (get: 404) and deletes (204).

Cases run on SQLite only: the mapping does not depend on the database (it is the
adapters' translation and `problems.py`'s table). A file with `databases: [pgsql,
sqlite]` (database.yaml: store failures, which each store translates itself) runs on
both.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import re
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
import requests
import responses
import yaml
from placement_dev.standins import BackgroundServer

from placement.config import Config, Database
from placement.http.connections import protocol
from placement.http.problems import PROBLEM_JSON, PROBLEM_TYPES
from placement.model import Placement
from placement.store import Lease, make_store
from placement.upstream import policy, sprm
from tests.harness.app import service_app

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
API = "/api/v1alpha1"
POLICY_URL = "http://policy.test:8081"
SPRM_URL = "http://sprm.test:8082"
EVALUATE = f"{POLICY_URL}{API}/policies:evaluateRequest"
INSTANCES = f"{SPRM_URL}{API}/service-type-instances"
GIVEN_SPEC = {"service_type": "vm", "vcpu": 2}

FILE_KEYS = {"defaults", "databases", "cases"}
CASE_KEYS = {"name", "doc", "given", "config", "database", "policy", "sprm", "request", "expect"}
REQUEST_KEYS = {"method", "path", "query", "headers", "body", "raw_body", "body_sent", "padding"}
EXPECT_KEYS = {"status", "type", "detail", "headers"}
ANSWER_KEYS = {"status", "detail", "body", "provider"}
SPRM_CALLS = {"create", "get", "delete"}
TYPES = {kind.value: row for kind, row in PROBLEM_TYPES.items()}

# Statuses any operation may answer, whatever it is (the README says so below its table
# of operations): 401 with authentication on, 408 and 431 for a request too slow or
# with too large a head, 503 while the database or the service is at a limit.
ANY_OPERATION = {401, 408, 431, 503}


@dataclass(frozen=True)
class Case:
    file: str
    data: dict[str, Any]
    database: str

    @property
    def id(self) -> str:
        return f"{self.file}/{self.data['name']}/{self.database}"

    @property
    def request(self) -> dict[str, Any]:
        request: dict[str, Any] = self.data["request"]
        return request

    @property
    def expect(self) -> dict[str, Any]:
        expect: dict[str, Any] = self.data["expect"]
        return expect


def load_cases() -> list[Case]:
    cases = []
    for path in sorted(HERE.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        _only(path.name, document, FILE_KEYS)
        defaults = document.get("defaults", {})
        for raw in document["cases"]:
            data = {**defaults, **raw}
            data["request"] = {**defaults.get("request", {}), **raw.get("request", {})}
            _validate(f"{path.name}: {data.get('name')}", data)
            for database in document.get("databases", ["sqlite"]):
                cases.append(Case(path.stem, data, database))
    ids = [case.id for case in cases]
    if len(ids) != len(set(ids)):
        raise ValueError("two cases of one file have the same name")
    return cases


def _only(where: str, mapping: Any, keys: set[str]) -> None:
    """A misspelt key would make a case test less than it says: refuse it."""
    if not isinstance(mapping, dict) or set(mapping) - keys:
        raise ValueError(f"{where}: unknown keys {sorted(set(mapping) - keys)} (known: {keys})")


def _validate(where: str, data: dict[str, Any]) -> None:
    _only(where, data, CASE_KEYS)
    if "name" not in data or "path" not in data["request"] or "status" not in data["expect"]:
        raise ValueError(f"{where}: a case needs a name, a request path and a status")
    _only(f"{where}: request", data["request"], REQUEST_KEYS)
    _only(f"{where}: expect", data["expect"], EXPECT_KEYS)
    _only(f"{where}: sprm", data.get("sprm", {}), SPRM_CALLS)
    for answer in [data.get("policy"), *data.get("sprm", {}).values()]:
        for each in answer if isinstance(answer, list) else [answer]:
            if each not in (None, "unreachable"):
                _only(f"{where}: answer", each, ANSWER_KEYS)
    if data["expect"].get("type") not in (None, *TYPES):
        raise ValueError(f"{where}: {data['expect']['type']} is no row of the error table")
    if data.get("database") not in (None, "broken", "away"):
        raise ValueError(f"{where}: database must be broken or away")


CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_case(case: Case, request: pytest.FixtureRequest) -> None:
    db: Database = request.getfixturevalue("pg_db" if case.database == "pgsql" else "sqlite_db")
    config = _config(case, db)
    _given(db, case.data.get("given", []))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        _program(mock, case.data)
        server = BackgroundServer(service_app(config), http=protocol(config.limits))
        with server, _fault(db, case.data.get("database")):
            status, headers, body = _send(server.port, case.request)
    _check(case, status, headers, body)


# --- arranging -----------------------------------------------------------------------


def _config(case: Case, db: Database) -> Config:
    env = {
        "UPSTREAM_RETRY_INITIAL_INTERVAL": "0",
        "UPSTREAM_RETRY_MAX_INTERVAL": "0",
        "POLICY_MANAGER_EVALUATION_URL": POLICY_URL,
        "SP_RESOURCE_MANAGER_URL": SPRM_URL,
        **case.data.get("config", {}),
    }
    return replace(Config.from_env(env), database=db)


def _given(db: Database, resources: list[Any]) -> None:
    store = make_store(db)
    store.open()
    try:
        for each in resources:
            resource = each if isinstance(each, dict) else {"id": each}
            lease = Lease("given", 3600)
            placement = Placement(resource["id"], "cat-1", GIVEN_SPEC, "kubevirt", "APPROVED")
            store.begin_create(placement, lease)
            if resource.get("state", "READY") == "READY":
                assert store.finish_create(resource["id"], lease.owner)
    finally:
        store.close()


def _program(mock: responses.RequestsMock, data: dict[str, Any]) -> None:
    _answer(mock, responses.POST, EVALUATE, data.get("policy", {}), _evaluation)
    calls = data.get("sprm", {})
    _answer(mock, responses.POST, INSTANCES, calls.get("create", {"status": 201}), _instance)
    one = re.compile(re.escape(INSTANCES) + r"/[^/?]+")
    _answer(mock, responses.GET, one, calls.get("get", {"status": 404}), _instance)
    _answer(mock, responses.DELETE, one, calls.get("delete", {"status": 204}), _instance)


def _answer(
    mock: responses.RequestsMock, method: str, url: Any, answers: Any, success: Any
) -> None:
    for answer in answers if isinstance(answers, list) else [answers]:
        if answer == "unreachable":
            mock.add(method, url, body=requests.ConnectionError("connection refused"))
            continue
        status = answer.get("status", 200)
        if "body" in answer:
            body = answer["body"]
            mock.add(
                method, url, status=status, body=body if isinstance(body, str) else json.dumps(body)
            )
        elif status >= 400:
            problem = {"type": "about:blank", "title": "Upstream problem", "status": status}
            mock.add(
                method, url, status=status, json={**problem, "detail": answer.get("detail", "no")}
            )
        else:
            mock.add_callback(method, url, callback=success(status, answer))


def _evaluation(status: int, answer: dict[str, Any]) -> Any:
    def evaluate(request: Any) -> tuple[int, dict[str, str], str]:
        spec = json.loads(request.body)["service_instance"]["spec"]
        verdict = {
            "status": "APPROVED",
            "selected_provider": answer.get("provider", "kubevirt"),
            "evaluated_service_instance": {"spec": spec},
        }
        return status, {}, json.dumps(verdict)

    return evaluate


def _instance(status: int, answer: dict[str, Any]) -> Any:
    def instance(request: Any) -> tuple[int, dict[str, str], str]:
        if status == 204:
            return status, {}, ""
        instance_id = str(request.url).split("?")[0].rsplit("/", 1)[-1]
        return status, {}, json.dumps({"id": instance_id, "provider_name": "kubevirt", "spec": {}})

    return instance


@contextlib.contextmanager
def _fault(db: Database, fault: str | None) -> Iterator[None]:
    if fault == "broken":
        _execute(db, "DROP TABLE resources")
        yield
    elif fault == "away" and db.type == "sqlite":
        with contextlib.closing(sqlite3.connect(db.name, isolation_level=None)) as writer:
            writer.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                writer.execute("ROLLBACK")
    elif fault == "away":
        _lock_out(db, True)
        try:
            yield
        finally:
            _lock_out(db, False)
    else:
        yield


def _execute(db: Database, statement: str) -> None:
    if db.type == "sqlite":
        with contextlib.closing(sqlite3.connect(db.name)) as conn:
            conn.execute(statement)
        return
    with psycopg.connect(
        host=db.host, port=db.port, dbname=db.name, user=db.user, autocommit=True
    ) as conn:
        conn.execute(statement)


def _lock_out(db: Database, out: bool) -> None:
    """PostgreSQL refuses new connections to the database and ends the open ones."""
    with psycopg.connect(
        host=db.host, port=db.port, dbname="postgres", user=db.user, autocommit=True
    ) as conn:
        conn.execute(f'ALTER DATABASE "{db.name}" ALLOW_CONNECTIONS {str(not out).lower()}')
        if out:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (db.name,),
            )


# --- the request -----------------------------------------------------------------------


def _send(port: int, spec: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Send the request as written (a raw socket: a body may stop short, a head may be
    too large) on a connection of its own; the answer once the service closes it."""
    method = spec.get("method", "GET")
    target = API + spec["path"] + ("?" + urlencode(spec["query"]) if "query" in spec else "")
    headers = spec.get("headers", {})
    pairs = [tuple(pair) for pair in (headers.items() if isinstance(headers, dict) else headers)]
    body = b""
    if spec.get("body") is not None:
        body = json.dumps(spec["body"]).encode()
        pairs.append(("Content-Type", "application/json"))
    elif "raw_body" in spec:
        body = spec["raw_body"].encode()
    if body or method in ("POST", "PUT", "PATCH"):
        pairs.append(("Content-Length", str(len(body))))
    if "padding" in spec:
        pairs.append(("X-Padding", "a" * spec["padding"]))
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in pairs]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body[: spec.get("body_sent", len(body))]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        with contextlib.suppress(OSError):  # refused before all was sent: read the answer
            sock.sendall(data)
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
    answer = http.client.HTTPResponse(_Received(received))  # type: ignore[arg-type]
    answer.begin()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


class _Received:
    """What http.client reads an answer from: the bytes received."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, _mode: str) -> io.BytesIO:
        return io.BytesIO(self._data)


def _check(case: Case, status: int, headers: dict[str, str], body: bytes) -> None:
    expect = case.expect
    assert status == expect["status"], f"{case.id}: {status} {body[:500]!r}"
    if "type" in expect:
        assert headers["content-type"] == PROBLEM_JSON
        problem = json.loads(body)
        row = TYPES[expect["type"]]
        assert problem["type"] == expect["type"], problem
        assert (
            (problem["status"], problem["title"]) == (row.status, row.title) == (status, row.title)
        )
        assert problem["detail"], problem
        assert expect.get("detail", "") in problem["detail"], problem
        assert problem.get("instance", API + case.request["path"]) == API + case.request["path"]
    for name, value in expect.get("headers", {}).items():
        assert headers.get(name.lower()) == str(value), (name, headers)


# --- what the cases must cover ---------------------------------------------------------


def test_the_cases_cover_every_row_of_the_error_table() -> None:
    """Every problem type a request can meet is shown by at least one case."""
    shown = {case.expect.get("type") for case in CASES}
    assert sorted(set(TYPES) - shown) == []


def test_the_cases_cover_every_answer_the_adapters_translate() -> None:
    """Each upstream answer a client can act on (the adapters' own tables) is shown."""
    shown: set[tuple[str, int, str]] = set()
    for case in CASES:
        programmed = [("policy", case.data.get("policy"))]
        programmed += [("sprm", answer) for answer in case.data.get("sprm", {}).values()]
        for upstream, answers in programmed:
            for answer in answers if isinstance(answers, list) else [answers]:
                if isinstance(answer, dict) and "status" in answer:
                    shown.add((upstream, answer["status"], case.expect.get("type", "")))
    for errors in (policy.ERRORS, sprm.ERRORS):
        for status, kind in errors.kinds.items():
            assert (errors.name, status, kind.value) in shown, (errors.name, status, kind)


# --- the README's table of operations, and the spec, say what the cases show ------------

SPEC = yaml.safe_load((ROOT / "api/v1alpha1/openapi.yaml").read_text())

# Statuses an operation answers that its spec does not declare (beyond `default`), each
# with why it stays: the contract shows the service as it is; the spec is to follow.
UNDECLARED: dict[tuple[str, str, int], str] = {}


def _operation(case: Case) -> tuple[str, str] | None:
    """The spec's (method, path template) the case's request is for, if any."""
    method = case.request.get("method", "GET")
    for template, operations in SPEC["paths"].items():
        parts = re.split(r"(\{[^}]+\})", template)
        pattern = "".join("[^/:]+" if p.startswith("{") else re.escape(p) for p in parts)
        if re.fullmatch(pattern, case.request["path"]) and method.lower() in operations:
            return method, template
    return None


def _shown() -> dict[tuple[str, str], set[int]]:
    shown: dict[tuple[str, str], set[int]] = {}
    for case in CASES:
        operation = _operation(case)
        if operation is not None:
            shown.setdefault(operation, set()).add(case.expect["status"])
    return shown


def _readme_operations() -> dict[tuple[str, str], tuple[int, set[int]]]:
    """The README's table of operations: (method, path) -> (success, errors)."""
    api = (ROOT / "README.md").read_text().split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    table: dict[tuple[str, str], tuple[int, set[int]]] = {}
    for line in api.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ("GET", "POST", "DELETE", "PUT", "PATCH"):
            path = re.match(r"`([^`?]+)", cells[1])
            assert path, line
            success = int(cells[2].split()[0])
            table[(cells[0], path.group(1))] = (
                success,
                {int(n) for n in re.findall(r"\d{3}", cells[3])},
            )
    return table


def test_the_readme_lists_for_each_operation_the_statuses_the_cases_show() -> None:
    shown = _shown()
    readme = _readme_operations()
    assert set(readme) == set(shown), "an operation without cases, or without a README row"
    for operation, (success, errors) in readme.items():
        statuses = shown[operation]
        assert {s for s in statuses if s < 400} == {success}, operation
        assert errors - ANY_OPERATION == {s for s in statuses if s >= 400} - ANY_OPERATION, (
            f"README.md's errors for {operation}: {sorted(errors)}; the cases show"
            f" {sorted(statuses)} (besides {sorted(ANY_OPERATION)}, any operation's)"
        )


def test_the_spec_declares_every_status_the_cases_show() -> None:
    for (method, path), statuses in _shown().items():
        declared = SPEC["paths"][path][method.lower()]["responses"]
        for status in statuses:
            if str(status) in declared or (method, path, status) in UNDECLARED:
                continue
            assert "default" in declared, (method, path, status)
            assert status in (500, 408, 431), (method, path, status)
