"""A private PostgreSQL for the benchmark: initdb into a temporary directory, served on a
free loopback port (its unix socket in that directory), stopped and removed at the end.

It is tuned for a benchmark, not for keeping data: fsync, synchronous_commit and
full_page_writes are off (a crash may lose or corrupt it; it is thrown away anyway).
initdb refuses to run as root: when the benchmark runs as root, initdb and postgres run
as an unprivileged user (`--pg-user`, default $SUDO_USER or nobody) through `runuser`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg

from bench.procs import BenchError, Child, free_port, wait_until

USER = "bench"  # the database superuser initdb creates (trust authentication, loopback only)

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "300",
    "shared_buffers": "128MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "timezone": "'UTC'",
    "log_min_messages": "warning",
    "log_checkpoints": "off",
}


def find_bindir() -> Path:
    """PostgreSQL's server binaries: $PG_BINDIR, `pg_config --bindir`, or the newest
    /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run(  # noqa: S603 - a fixed command
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if found.returncode == 0:
            candidates.append(Path(found.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise BenchError(
        "PostgreSQL server binaries (initdb, postgres) not found: install them"
        " (Debian: apt-get install postgresql) or set PG_BINDIR"
    )


def default_pg_user() -> str:
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user and sudo_user != "root":
        return sudo_user
    return "nobody"


class PrivatePostgres:
    """initdb + postgres in `root` (a directory the caller removes afterwards)."""

    def __init__(self, root: Path, bindir: Path, run_as: str | None) -> None:
        self.root, self.bindir = root, bindir
        self.data, self.sockets, self.log = root / "pgdata", root / "pgsock", root / "postgres.log"
        self.run_as = run_as  # None: as ourselves (not root)
        self.port = 0
        self.child: Child | None = None

    def _prefix(self) -> list[str]:
        if self.run_as is None:
            return []
        runuser = shutil.which("runuser")
        if runuser is None:
            raise BenchError("running as root needs runuser (util-linux) to start PostgreSQL")
        return [runuser, "-u", self.run_as, "--"]

    def start(self) -> None:
        for path in (self.data, self.sockets):
            path.mkdir(mode=0o700)
        if self.run_as is not None:
            try:
                account = pwd.getpwnam(self.run_as)
            except KeyError:
                raise BenchError(f"--pg-user {self.run_as}: no such user") from None
            os.chmod(self.root, 0o711)  # noqa: S103 - the user must reach its directories
            for path in (self.data, self.sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        initdb = subprocess.run(  # noqa: S603 - argv built here
            [
                *self._prefix(),
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
        )
        if initdb.returncode != 0:
            detail = (initdb.stderr or initdb.stdout).strip().splitlines()[-3:]
            raise BenchError("initdb failed: " + " | ".join(detail))
        for attempt in range(5):
            self.port = free_port()
            settings = {
                **SETTINGS,
                "port": str(self.port),
                "unix_socket_directories": f"'{self.sockets}'",
            }
            argv = [*self._prefix(), str(self.bindir / "postgres"), "-D", str(self.data)]
            for name, value in settings.items():
                argv += ["-c", f"{name}={value.strip(chr(39))}"]
            # SIGINT is PostgreSQL's "fast" shutdown.
            self.child = Child(
                "postgres", argv, log=self.log, cwd=self.root, stop_signal=signal.SIGINT
            )
            try:
                wait_until(self._ready, self.child, 30, "accepting connections")
                return
            except BenchError:
                self.child.stop()
                if attempt == 4 or "could not bind" not in self.log.read_text(errors="replace"):
                    raise

    def _ready(self) -> bool:
        try:
            psycopg.connect(self.conninfo("postgres"), connect_timeout=1).close()
            return True
        except psycopg.OperationalError:
            return False

    def conninfo(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={USER}"

    def execute(self, dbname: str, *statements: str) -> None:
        with psycopg.connect(self.conninfo(dbname), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(timeout=20)
            self.child = None

    def version(self) -> str:
        found = subprocess.run(  # noqa: S603 - argv built here
            [str(self.bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        return found.stdout.strip()
