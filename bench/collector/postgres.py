"""A PostgreSQL server for the benchmarks: Debian's binaries, loopback only, a child of the run.

Started the way ``tests/pg.py`` starts the test suite's (that module is a pytest fixture, so it
is not imported here): ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/*/bin``, run as the
``postgres`` user when we are root (initdb refuses root), listening on 127.0.0.1 on a free port,
trusting ``postgres`` on loopback, ``fsync`` and ``synchronous_commit`` on: ingest figures are
for durable commits. The data folder is either temporary (removed afterwards) or kept under
``bench/out/`` so populated stores survive from one run to the next; the server is stopped with
the run either way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench.measure import free_port

SUPERUSER = "postgres"
_HBA = f"""\
local all all trust
host all {SUPERUSER} 127.0.0.1/32 trust
"""


def server_bin() -> Path:
    """The newest installed server's bin folder; RuntimeError saying how to install one."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise RuntimeError("PostgreSQL server binaries are missing: run scripts/ensure-postgres.sh (as root) once")
    return found[-1].parent


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SUPERUSER, "--", *cmd] if os.geteuid() == 0 else cmd


def _own(path: Path) -> None:
    """Hand a folder to the server's user (when we are root), parents made traversable."""
    if os.geteuid() == 0:
        shutil.chown(path, SUPERUSER, SUPERUSER)


def _run(cmd: list[str], what: str, timeout_s: float = 300) -> None:
    done = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


@contextmanager
def postgres_server(keep_in: Path | None = None) -> Iterator[str]:
    """A running server; yields ``postgresql://postgres@127.0.0.1:PORT/postgres``.

    ``keep_in``: a folder whose ``data`` cluster is reused (created on first use) and kept;
    without it the cluster lives in a temporary folder removed afterwards.
    """
    bin_dir = server_bin()
    work = keep_in if keep_in is not None else Path(tempfile.mkdtemp(prefix="hoptrace-bench-pg-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    _own(work)
    data, sockets = work / "data", Path(tempfile.mkdtemp(prefix="hoptrace-bench-pgsock-", dir="/tmp"))
    _own(sockets)
    port = free_port()
    try:
        if not (data / "PG_VERSION").exists():
            _run([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync"], "initdb")  # fmt: skip
            (data / "pg_hba.conf").write_text(_HBA)
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets}"
            " -c fsync=on -c synchronous_commit=on -c max_connections=100"
            # Fewer checkpoints while millions of rows go in; durability is unchanged.
            " -c max_wal_size=4GB -c shared_buffers=256MB"
        )
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(work / "server.log"), "-o", options, "-w",
              "-t", "120", "start"], "pg_ctl start")  # fmt: skip
        yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            # A fast (clean) stop, so a kept cluster needs no recovery next time.
            subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                           capture_output=True, timeout=300)  # fmt: skip
        shutil.rmtree(sockets, ignore_errors=True)
        if keep_in is None:
            shutil.rmtree(work, ignore_errors=True)


def database(server_url: str, name: str, *, fresh: bool) -> str:
    """The URL of database ``name`` on the server, created if missing (dropped first if ``fresh``)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rpartition("/")[0] + "/" + name
