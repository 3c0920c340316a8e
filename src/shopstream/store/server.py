"""A private PostgreSQL server under ``SHOPSTREAM_HOME``, started by ShopStream itself.

Binaries come from ``SHOPSTREAM_PG_BIN``, the ``pgserver`` wheel (PostgreSQL 16 in a pip
package), or a system installation. PostgreSQL refuses to run as root, so when we are root
the server runs as a dedicated system user that owns the data directory. The server listens
on a Unix socket (fast local COPY) and on 127.0.0.1 (JDBC tools, Spark).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Final
from urllib.parse import quote

from shopstream.store.roles import ROLE_FOR, DatabaseRole, Purpose

log = logging.getLogger(__name__)

SERVICE_USER = "shopstream"
DATABASE = "shopstream"
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_MAX_SOCKET_DIR = 80  # sun_path holds 107 bytes, and ".s.PGSQL.NNNNN" must fit after the dir
_ARCHIVE_TIMEOUT_SECONDS: Final = 60  # the most a committed batch waits to be archived
_RECOVERY_TIMEOUT_SECONDS: Final = 6 * 3600

_SERVER_SETTINGS = {
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "min_wal_size": "256MB",
    "checkpoint_timeout": "15min",
    "wal_buffers": "16MB",
    "maintenance_work_mem": "256MB",
    "work_mem": "32MB",
    "max_connections": "100",
    "log_min_messages": "warning",
}


# Objects in the public schema that the bootstrap superuser owns (an older ShopStream
# migrated as it) go to the owner role. Sequences tied to a column move with their table.
_HAND_OVER_OBJECTS: Final = b"""
DO $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT c.relname, c.relkind FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
           AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
           AND NOT (c.relkind = 'S' AND EXISTS (
                   SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s %I OWNER TO shopstream_owner',
                       CASE item.relkind WHEN 'v' THEN 'VIEW'
                                         WHEN 'm' THEN 'MATERIALIZED VIEW'
                                         WHEN 'S' THEN 'SEQUENCE'
                                         ELSE 'TABLE' END,
                       item.relname);
    END LOOP;
    FOR item IN
        SELECT p.oid::regprocedure AS signature FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public'
           AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO shopstream_owner', item.signature);
    END LOOP;
END
$$;
"""


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server cannot be set up here; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ServerState:
    """What a running or stopped embedded server needs to be reached again."""

    port: int
    password: str  # the bootstrap superuser's: only for setting up the roles below
    socket_dir: str
    bin_dir: str
    # Passwords of the owner, ingest and API login roles (see store.roles).
    role_passwords: dict[str, str] = field(default_factory=dict)


class EmbeddedPostgres:
    """Lifecycle of the private server: init once, then start/stop/status."""

    def __init__(
        self, home: Path, pg_bin: Path | None = None, wal_archive: Path | None = None
    ) -> None:
        self.root = home / "pg"
        self.wal_archive = wal_archive.expanduser().resolve() if wal_archive else None
        self.data_dir = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self._state_file = self.root / "server.json"
        self._lock_file = self.root / ".lock"
        self._pg_bin = pg_bin

    # -- public API -------------------------------------------------------------------

    def is_running(self) -> bool:
        state = self._load_state()
        if state is None or not (self.data_dir / "PG_VERSION").exists():
            return False
        result = self._run_as_service(
            [str(Path(state.bin_dir) / "pg_ctl"), "status", "-D", str(self.data_dir)], check=False
        )
        return result.returncode == 0

    def start(self, timeout_seconds: int = 60) -> bool:
        """Start the server if needed; True when this call started it. With a WAL archive,
        every finished WAL segment is copied there (at the latest after a minute), which
        with a base backup allows recovery to any moment since (``recover``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if self.is_running():
                return False
            state = self._initialise()
            private_directory(Path(state.socket_dir), self._service_account())
            if not _port_is_free(state.port):
                state = ServerState(_free_port(), state.password, state.socket_dir, state.bin_dir)
                self._save_state(state)
            options = " ".join(
                [
                    f"-p {state.port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-c unix_socket_directories='{state.socket_dir}'",
                    *self._archiving_options(),
                ]
            )
            recovering = (self.data_dir / "recovery.signal").exists()
            result = self._run_as_service(
                [
                    str(Path(state.bin_dir) / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    str(timeout_seconds),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    options,
                ],
                check=False,
            )
            if result.returncode != 0:
                raise EmbeddedDatabaseError(
                    f"PostgreSQL did not start ({result.stderr.strip() or result.stdout.strip()});"
                    f" see {self.log_file}"
                )
            if recovering:
                self._await_promotion(timeout_seconds)
            self._create_database(state)
            self._provision_roles(state)
            log.info("embedded PostgreSQL started on port %s", state.port)
            return True

    def _await_promotion(self, timeout_seconds: int) -> None:
        """pg_ctl returns once a recovering server is consistent; writing needs the end of
        recovery (the target reached, or the archive's end) and the promotion."""
        import psycopg

        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                with psycopg.connect(self.url(socket=True), connect_timeout=5) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row is not None and not row[0]:
                        return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise EmbeddedDatabaseError(f"recovery did not end in time; see {self.log_file}")
            time.sleep(0.5)

    def stop(self) -> bool:
        """Stop the server if it runs; True when this call stopped it."""
        with self._locked():
            state = self._load_state()
            if state is None or not self.is_running():
                return False
            self._run_as_service(
                [
                    str(Path(state.bin_dir) / "pg_ctl"),
                    "stop",
                    "-w",
                    "-m",
                    "fast",
                    "-D",
                    str(self.data_dir),
                ],
                check=True,
            )
            log.info("embedded PostgreSQL stopped")
            return True

    def url(self, *, socket: bool = False, purpose: Purpose | None = None) -> str:
        """The server's URL as the login role for ``purpose`` (None: the superuser, for
        setting up and for tests that create databases)."""
        state = self._load_state()
        if state is None:
            raise EmbeddedDatabaseError("the embedded database was never started: run `db up`")
        user, secret = SERVICE_USER, state.password
        if purpose is not None:
            user = ROLE_FOR[purpose].value
            secret = state.role_passwords.get(user, "")
        password = quote(secret, safe="")
        if socket:
            host = quote(state.socket_dir, safe="")
            return f"postgresql://{user}:{password}@/{DATABASE}?host={host}&port={state.port}"
        return f"postgresql://{user}:{password}@127.0.0.1:{state.port}/{DATABASE}"

    # -- point-in-time recovery ---------------------------------------------------------

    def base_backup(self, folder: Path) -> None:
        """A physical copy of the running cluster (``pg_basebackup``, with the WAL that
        makes it consistent) in ``folder/base``, and the server's state (its roles'
        passwords) in ``folder/server.json``: with the WAL archive, a starting point for
        recovery to any later moment."""
        state = self._load_state()
        if state is None or not self.is_running():
            raise EmbeddedDatabaseError("the embedded database is not running: `db up` first")
        admin_url = self.url(socket=True).replace(f"/{DATABASE}?", "/postgres?")
        done = subprocess.run(
            [str(Path(state.bin_dir) / "pg_basebackup"), f"--dbname={admin_url}",
             f"--pgdata={folder / 'base'}", "--format=plain", "--wal-method=stream",
             "--checkpoint=fast", "--no-sync"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise EmbeddedDatabaseError(f"pg_basebackup failed: {done.stderr.strip()[-2000:]}")
        # Holds passwords: created owner-only, never readable for a moment.
        descriptor = os.open(folder / "server.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(asdict(state)))

    def recover(self, backup: Path, archive: Path, until: datetime | None) -> None:
        """Make this home's (new) server the base backup in ``backup`` rolled forward
        through the WAL in ``archive`` up to ``until`` (None: all of it), then promoted.
        Recovery runs with hot standby off (no reader sees a half-recovered database), and
        the start waits for the promotion before it returns."""
        with self._locked():
            if (self.data_dir / "PG_VERSION").exists():
                raise EmbeddedDatabaseError(
                    f"{self.data_dir} holds a database already: recover into a new SHOPSTREAM_HOME"
                )
            old = ServerState(**json.loads((backup / "server.json").read_text()))
            owner = self._service_account()
            private_directory(self.root, owner)
            shutil.copytree(backup / "base", self.data_dir)
            if owner is not None:
                for path in [self.data_dir, *self.data_dir.rglob("*")]:
                    os.lchown(path, owner.pw_uid, owner.pw_gid)
            self.data_dir.chmod(0o700)
            target = {"recovery_target_time": until.isoformat()} if until else {}
            settings = {
                "restore_command": f"cp '{archive}/%f' '%p'",
                **target,
                "recovery_target_action": "promote",
                "hot_standby": "off",
            }
            with (self.data_dir / "postgresql.auto.conf").open("a") as handle:
                handle.writelines(
                    "{} = '{}'\n".format(key, value.replace("'", "''"))
                    for key, value in settings.items()
                )
            (self.data_dir / "recovery.signal").touch()
            socket_dir = self._socket_dir()
            private_directory(socket_dir, owner)
            self._save_state(
                ServerState(_free_port(), old.password, str(socket_dir),
                            str(self._find_binaries()), old.role_passwords)
            )  # fmt: skip
        self.start(timeout_seconds=_RECOVERY_TIMEOUT_SECONDS)
        import psycopg

        with psycopg.connect(self.url(socket=True), autocommit=True) as conn:
            for key in settings:
                conn.execute(f"ALTER SYSTEM RESET {key}")
            conn.execute("SELECT pg_reload_conf()")

    def _archiving_options(self) -> list[str]:
        if self.wal_archive is None:
            return []
        private_directory(self.wal_archive, self._service_account())
        copy = f"test ! -f {self.wal_archive}/%f && cp %p {self.wal_archive}/%f"
        return [
            "-c archive_mode=on",
            f"-c archive_command='{copy}'",
            f"-c archive_timeout={_ARCHIVE_TIMEOUT_SECONDS}",
        ]

    # -- set-up -----------------------------------------------------------------------

    def _initialise(self) -> ServerState:
        state = self._load_state()
        if state is not None and (self.data_dir / "PG_VERSION").exists():
            return state
        bin_dir = self._find_binaries()
        password = secrets.token_urlsafe(24)
        state = ServerState(_free_port(), password, str(self._socket_dir()), str(bin_dir))
        owner = self._service_account()
        self.root.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.root, Path(state.socket_dir)):
            private_directory(path, owner)
        self._check_reachable(self.root, owner)
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        pwfile = self.root / ".pwfile"
        pwfile.write_text(password)
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        pwfile.chmod(0o600)
        try:
            self._run_as_service(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SERVICE_USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                check=True,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write("\n# ShopStream embedded defaults\n")
            for key, value in _SERVER_SETTINGS.items():
                handle.write(f"{key} = '{value}'\n")
        self._save_state(state)
        return state

    def _create_database(self, state: ServerState) -> None:
        import psycopg
        from psycopg import sql

        admin_url = self.url(socket=True).replace(f"/{DATABASE}?", "/postgres?")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))

    def _provision_roles(self, state: ServerState) -> None:
        """Login roles for the owner, ingest and API (none a superuser); the owner owns the
        database and every object in its schema, also those an older version created as
        the superuser."""
        import psycopg
        from psycopg import sql

        passwords = dict(state.role_passwords)
        for role in DatabaseRole:
            passwords.setdefault(role.value, secrets.token_urlsafe(24))
        if passwords != state.role_passwords:
            state = replace(state, role_passwords=passwords)
            self._save_state(state)
        owner = sql.Identifier(DatabaseRole.OWNER.value)
        with psycopg.connect(self.url(socket=True), autocommit=True) as conn:
            for role in DatabaseRole:
                exists = conn.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (role.value,)
                ).fetchone()
                verb = "ALTER" if exists else "CREATE"
                conn.execute(
                    sql.SQL(
                        "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}"
                    ).format(
                        sql.SQL(verb),
                        sql.Identifier(role.value),
                        sql.Literal(passwords[role.value]),
                    )
                )
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(DATABASE), owner)
            )
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(owner))
            # A client that reconnected the moment the server came back may already be
            # loading: never wait on (or deadlock with) its locks. The objects stay usable;
            # the next start hands them over.
            conn.execute("SET lock_timeout = '1s'")
            try:
                conn.execute(_HAND_OVER_OBJECTS)
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as busy:
                log.info("tables in use: ownership handed over at the next start (%s)", busy)

    def _find_binaries(self) -> Path:
        owner = self._service_account()
        candidates: list[Path] = []
        if self._pg_bin is not None:
            candidates.append(self._pg_bin)
        bundled = importlib.util.find_spec("pgserver")
        if bundled is not None and bundled.origin is not None:
            candidates.append(Path(bundled.origin).parent / "pginstall" / "bin")
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
        candidates.extend(
            sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
        )
        for directory in candidates:
            if all((directory / name).exists() for name in _REQUIRED_BINARIES) and (
                owner is None or self._service_can_execute(directory / "postgres")
            ):
                return directory
        raise EmbeddedDatabaseError(
            "no usable PostgreSQL server binaries: install the pgserver wheel "
            "(make install does), set SHOPSTREAM_PG_BIN, or set SHOPSTREAM_DATABASE_URL"
        )

    def _socket_dir(self) -> Path:
        """``run/`` beside the data, or, when that path is too long for a socket, a new
        directory of unpredictable name in the system temp directory."""
        preferred = self.root / "run"
        if len(str(preferred)) <= _MAX_SOCKET_DIR:
            return preferred
        return Path(tempfile.mkdtemp(prefix="shopstream-"))

    # -- running as the service user ----------------------------------------------------

    def _service_account(self) -> pwd.struct_passwd | None:
        """The OS account the server runs as when we are root; None means ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    SERVICE_USER,
                ],
                check=True,
                capture_output=True,
            )
            return pwd.getpwnam(SERVICE_USER)

    def _run_as_service(self, args: list[str], *, check: bool) -> subprocess.CompletedProcess[str]:
        owner = self._service_account()
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            check=False,
            user=None if owner is None else owner.pw_uid,
            group=None if owner is None else owner.pw_gid,
            extra_groups=None if owner is None else [],
        )
        if check and result.returncode != 0:
            raise EmbeddedDatabaseError(
                f"{Path(args[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def _service_can_execute(self, path: Path) -> bool:
        return self._run_as_service(["test", "-x", str(path)], check=False).returncode == 0

    def _check_reachable(self, path: Path, owner: pwd.struct_passwd | None) -> None:
        if owner is None:
            return
        if self._run_as_service(["test", "-w", str(path)], check=False).returncode != 0:
            raise EmbeddedDatabaseError(
                f"user {SERVICE_USER!r} cannot reach {path}: PostgreSQL refuses to run as root, "
                "so its data directory must be traversable by that user. Point SHOPSTREAM_HOME "
                "to a directory outside private home folders (for example /var/lib/shopstream)."
            )

    # -- state file and lock ------------------------------------------------------------

    def _load_state(self) -> ServerState | None:
        try:
            return ServerState(**json.loads(self._state_file.read_text()))
        except FileNotFoundError:
            return None

    def _save_state(self, state: ServerState) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state)))
        tmp.chmod(0o600)
        tmp.replace(self._state_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock_file.open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def private_directory(path: Path, owner: pwd.struct_passwd | None) -> None:
    """Create ``path`` (mode 0700, for ``owner`` or ourselves), or accept it as it is only
    if it is a real directory owned by one of us: never follow a planted symlink, never
    take over someone else's directory."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        raise EmbeddedDatabaseError(
            f"refusing {path}: it is not a plain directory ({error.strerror}); remove it or"
            " choose another SHOPSTREAM_HOME"
        ) from error
    try:
        info = os.fstat(descriptor)
        allowed = {os.geteuid()} | ({owner.pw_uid} if owner is not None else set())
        if info.st_uid not in allowed:
            raise EmbeddedDatabaseError(
                f"refusing {path}: it belongs to uid {info.st_uid}, not to ShopStream;"
                " remove it or choose another SHOPSTREAM_HOME"
            )
        if owner is not None:
            os.fchown(descriptor, owner.pw_uid, owner.pw_gid)
        os.fchmod(descriptor, 0o700)
    finally:
        os.close(descriptor)


def _version_key(path: Path) -> float:
    try:
        return float(path.parent.name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    """Probe the way PostgreSQL binds (SO_REUSEADDR), so TIME_WAIT does not move the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
