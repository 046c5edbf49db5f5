"""Fixtures of the image tests (`tox -e container`): the image built once per session, its
exported filesystem, a private PostgreSQL that checks passwords, and the stand-ins on the
host (the service image does not carry them for the tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from placement_dev.standins import PolicyStandIn, SprmStandIn
from pytest_postgresql.executors import PostgreSQLExecutor

from tests.container import images
from tests.harness.databases import PG_PASSWORD

COMPOSE = images.ROOT / "deploy" / "compose.yaml"
# What the test output says about how the image was built and run.
REPORT: list[str] = []


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@dataclass(frozen=True)
class Built:
    service: str
    dev: str
    base: str


@pytest.fixture(scope="session")
def podman() -> images.Podman:
    return images.Podman.for_tests()


@pytest.fixture(scope="session")
def built(podman: images.Podman) -> Built:
    """The service image and its dev target, tagged as compose names them, on the local
    stand-in base."""
    services = compose()["services"]
    service, dev = services["placement-manager-1"]["image"], services["policy-manager"]["image"]
    with images.locked():
        base = images.base_image(podman)
        base_arg = ("--build-arg", f"BASE_IMAGE={base}")
        containerfile = images.ROOT / "Containerfile"
        podman.build(containerfile, images.ROOT, service, *base_arg)
        podman.build(containerfile, images.ROOT, dev, *base_arg, "--target", "dev")
        podman.drop_untagged()
    REPORT.extend(podman.steps)
    REPORT.append(images.podman_run_refusal(podman, service))
    return Built(service, dev, base)


@dataclass(frozen=True)
class Tree:
    """An image's exported filesystem and configuration."""

    path: Path
    config: images.ImageConfig


def _tree(podman: images.Podman, image: str, where: Path) -> Tree:
    podman.export(image, where)
    # The names of DCM's services, on loopback: everything shares this machine's network.
    images.etc_hosts(where, ["postgres", "policy-manager", "service-provider-manager"])
    return Tree(where, podman.config(image))


@pytest.fixture(scope="session")
def tree(podman: images.Podman, built: Built, tmp_path_factory: pytest.TempPathFactory) -> Tree:
    exported = _tree(podman, built.service, tmp_path_factory.mktemp("image") / "rootfs")
    REPORT.append(podman.steps[-1])
    REPORT.append(f"ran {built.service} as: {images.how_it_runs(exported.config)}")
    return exported


@pytest.fixture(scope="session")
def dev_tree(podman: images.Podman, built: Built, tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return _tree(podman, built.dev, tmp_path_factory.mktemp("dev-image") / "rootfs")


@dataclass(frozen=True)
class Postgres:
    port: int
    name: str
    user: str
    password: str


@pytest.fixture(scope="session")
def postgres(postgresql_password_proc: PostgreSQLExecutor) -> Postgres:
    """A role and a database as DCM's would be: `placement` owning `placement-manager`."""
    db = Postgres(int(postgresql_password_proc.port), "placement-manager", "placement", "pw-Ä 1")
    admin = psycopg.connect(
        host=postgresql_password_proc.host,
        port=db.port,
        user=postgresql_password_proc.user,
        password=PG_PASSWORD,
        dbname="postgres",
        autocommit=True,
    )
    with admin:
        admin.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(db.user), psycopg.sql.Literal(db.password)
            )
        )
        admin.execute(
            psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                psycopg.sql.Identifier(db.name), psycopg.sql.Identifier(db.user)
            )
        )
    return db


@dataclass(frozen=True)
class StandIns:
    policy_port: int
    sprm_port: int
    sprm: SprmStandIn


@pytest.fixture
def standins() -> Iterator[StandIns]:
    sprm = SprmStandIn()
    with PolicyStandIn().serve() as policy_server, sprm.serve() as sprm_server:
        yield StandIns(policy_server.port, sprm_server.port, sprm)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("how the image was built and run")
        for line in REPORT:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"(as user {os.getuid()}; cache: {images.cache_dir()})")
