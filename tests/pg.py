"""A throwaway PostgreSQL server for the test session, and a fresh database per test.

The server runs from the distribution's binaries (``scripts/ensure-postgres.sh`` installs
them), as the ``postgres`` user when the tests run as root (initdb refuses root), in a
temporary folder that is removed afterwards. It listens on 127.0.0.1 on a free port with its
socket in that folder, trusts the ``postgres`` user on loopback and asks every other role for
a password (so authentication failures can be tested), and keeps ``fsync`` on: durability
tests kill processes and expect acknowledged spans to survive.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

SUPERUSER = "postgres"
# A role that must log in with a password, for the authentication-failure tests.
PASSWORD_ROLE = "hoptrace_pw"
PASSWORD = "right-password"

_HBA = f"""\
local all all trust
host all {SUPERUSER} 127.0.0.1/32 trust
host all {SUPERUSER} ::1/128 trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


def free_port() -> int:
    # Not conftest's: conftest imports this module for its fixture.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_bin() -> Path:
    """The newest installed server's bin folder; fails (never skips) when there is none."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        pytest.fail(
            "PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin/initdb): "
            "run scripts/ensure-postgres.sh (as root) once, then rerun the tests",
            pytrace=False,
        )
    return found[-1].parent


def _as_owner(cmd: list[str]) -> list[str]:
    """Run as ``postgres`` when we are root: initdb and postgres refuse to run as root."""
    return ["runuser", "-u", SUPERUSER, "--", *cmd] if os.geteuid() == 0 else cmd


def _workdir() -> Path:
    """A temporary folder the server's owner can write to, even when TMPDIR is private to root."""
    for parent in (None, "/tmp"):
        path = Path(tempfile.mkdtemp(prefix="hoptrace-pg-", dir=parent))
        if os.geteuid() != 0:
            return path
        shutil.chown(path, SUPERUSER, SUPERUSER)
        if subprocess.run(_as_owner(["test", "-w", str(path)]), capture_output=True).returncode == 0:
            return path
        shutil.rmtree(path, ignore_errors=True)
    raise RuntimeError("no temporary folder the postgres user can write to")


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the whole session: ``postgresql://postgres@127.0.0.1:PORT/postgres``."""
    bin_dir = server_bin()
    work = _workdir()
    data = work / "data"
    log = work / "server.log"
    port = free_port()
    try:
        # --no-sync only skips initdb's own flush of the files it writes; the server runs with fsync on.
        _run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"],
            "initdb",
        )  # fmt: skip
        hba = data / "pg_hba.conf"
        hba.write_text(_HBA)
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={work} -c fsync=on"
            " -c synchronous_commit=on -c max_connections=300"
        )
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
             "pg_ctl start")  # fmt: skip
        url = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        yield url
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(work, ignore_errors=True)


def create_database(server_url: str) -> str:
    """A new, empty database on the server (``hoptrace_<random>``); returns its URL."""
    name = f"hoptrace_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return _with_dbname(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    """Drop a database made by ``create_database``, closing whatever still uses it."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _with_dbname(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"
