"""A real PostgreSQL server of our own, in a temporary folder on a free loopback port.

    with PgServer() as pg:
        url = pg.create_database("t1")   # "postgresql+psycopg://postgres@127.0.0.1:PORT/t1"

Debian's server binaries (``/usr/lib/postgresql/<version>/bin``) are run directly: never
``pg_ctlcluster`` and never the machine's own cluster, so test sessions running side by
side each have their own server. ``initdb`` and ``pg_ctl`` refuse to run as root; as root
they run as the ``postgres`` user through ``runuser``, on a folder that user owns.

``durable=False`` (the default, for tests) turns off fsync and synchronous commit: a crash
of the machine would lose the server's data, which a test server never keeps anyway. The
benchmarks pass ``durable=True`` to measure what a real installation pays.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
INSTALL_HINT = "needs PostgreSQL's server binaries: apt-get install postgresql"


def server_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin folder, or None."""
    env = os.environ.get("DIGEST_PG_BINDIR")
    if env:
        return Path(env) if (Path(env) / "pg_ctl").exists() else None
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).resolve().parent if which else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self, *, durable: bool = False, settings: dict[str, str] | None = None) -> None:
        bindir = server_bindir()
        if bindir is None:
            raise RuntimeError(INSTALL_HINT)
        self.bindir = bindir
        self.durable = durable
        self.settings = settings or {}
        self.root = Path(tempfile.mkdtemp(prefix="digest-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.as_root = os.geteuid() == 0
        self.started = False

    # -- running the server's own tools ------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(
            cmd, check=check, capture_output=True, text=True, timeout=120, cwd=self.root
        )

    def start(self) -> PgServer:
        if self.as_root:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = {
            "listen_addresses": HOST,
            "unix_socket_directories": str(self.root),
            "max_connections": "100",
            **({} if self.durable else {"fsync": "off", "synchronous_commit": "off"}),
            **({} if self.durable else {"full_page_writes": "off"}),
            **self.settings,
        }
        for attempt in range(5):  # another process may take the port between pick and bind
            self.port = free_port()
            opts = " ".join(f"-c {k}={v}" for k, v in {**options, "port": str(self.port)}.items())
            done = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start",
                check=False,
            )  # fmt: skip
            if done.returncode == 0:
                self.started = True
                return self
            if attempt == 4:
                raise RuntimeError(f"PostgreSQL did not start: {done.stderr}{self.server_log()}")
            time.sleep(0.2)
        raise AssertionError("unreachable")

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.started:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------------------
    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        """One statement, outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(
            host=HOST, port=self.port, user="postgres", dbname=database, autocommit=True
        ) as conn:
            conn.execute(statement.encode())

    def create_database(self, name: str, template: str = "template1") -> str:
        """A new empty database (a copy of ``template``); returns its SQLAlchemy URL."""
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
