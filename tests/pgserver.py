"""A throwaway PostgreSQL server for the test suite.

It uses the binaries of Debian's ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``, newest version first) or those in
``$PG_BIN``. ``initdb`` and ``postgres`` refuse to run as root, so when the
tests run as root (as CI does) both run as the ``postgres`` system user that
the Debian package creates, and the data directory is owned by that user.

The server listens on 127.0.0.1 only, on a free port, with Unix sockets
disabled, trusts connections from 127.0.0.1 (as the ``shipyard`` superuser) and nothing else,
and trades durability for speed (fsync, synchronous_commit and
full_page_writes off).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

SUPERUSER = "shipyard"
SYSTEM_USER = "postgres"  # created by Debian's postgresql-common
INSTALL_HINT = "apt-get install postgresql (Debian 12: PostgreSQL 15 in /usr/lib/postgresql/15/bin), or set PG_BIN"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def _version_key(path: str) -> tuple:
    version = Path(path).parent.name
    return tuple(int(part) if part.isdigit() else -1 for part in re.split(r"[.]", version))


def find_bin_dir() -> Path | str:
    """The directory holding ``initdb`` and ``postgres``, or a reason why there is none."""
    override = os.environ.get("PG_BIN")
    if override:
        candidates = [override]
    else:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        directory = Path(candidate)
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "postgres")):
            return directory
    if override:
        return f"PG_BIN={override} has no executable initdb and postgres"
    return f"no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: {INSTALL_HINT}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _traversable(path: Path, uid: int, gids: set[int]) -> bool:
    """Whether a process with ``uid``/``gids`` may enter every directory down to ``path``."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


class PostgresServer:
    """A PostgreSQL server in a temp dir, on loopback, for one test session."""

    def __init__(self, base_dir: Path):
        self.base_dir = Path(base_dir)
        self.port: int | None = None
        self._process: subprocess.Popen | None = None
        self._run_dir: Path | None = None  # the fresh temp dir holding data/, removed by stop()
        self._log_path = self.base_dir / "postgres.log"
        self._log_file = None

    # -- finding the binaries and the user to run them as ---------------------------------

    @staticmethod
    def available() -> str | None:
        """None if the server can be run here, else the reason it cannot."""
        found = find_bin_dir()
        if isinstance(found, str):
            return found
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                return f"running as root, but there is no {SYSTEM_USER!r} user to run PostgreSQL as: {INSTALL_HINT}"
        return None

    def _user_kwargs(self) -> dict:
        """subprocess arguments that drop root to the postgres user (nothing when not root).

        Popen's user/group/extra_groups switch credentials in the forked child right
        before exec: no runuser/PAM in between, so the pid we hold is the postmaster
        itself and our signals reach it directly.
        """
        if os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam(SYSTEM_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env.pop("LANG", None)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SYSTEM_USER)
            env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
        return env

    def _make_run_dir(self) -> Path:
        """A fresh temp dir that the server's user can reach, owned by that user."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return Path(tempfile.mkdtemp(prefix="pg-", dir=self.base_dir))
        entry = pwd.getpwnam(SYSTEM_USER)
        gids = {entry.pw_gid, *(g for g in os.getgrouplist(entry.pw_name, entry.pw_gid))}
        # pytest's base temp dir is private to root (0700), which the postgres user cannot
        # enter: then fall back to a fresh dir in the system temp dir.
        parent = self.base_dir if _traversable(self.base_dir, entry.pw_uid, gids) else None
        run_dir = Path(tempfile.mkdtemp(prefix="shipyard-pg-", dir=parent))
        if not _traversable(run_dir.parent, entry.pw_uid, gids):
            shutil.rmtree(run_dir, ignore_errors=True)
            raise RuntimeError(f"the {SYSTEM_USER} user cannot reach {run_dir.parent}; set TMPDIR to a directory it can enter")
        os.chown(run_dir, entry.pw_uid, entry.pw_gid)
        return run_dir

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        reason = self.available()
        if reason:
            raise RuntimeError(f"cannot start PostgreSQL: {reason}")
        bin_dir = find_bin_dir()
        assert isinstance(bin_dir, Path)
        self._run_dir = self._make_run_dir()
        atexit.register(self.stop)  # no server or temp dir outlives a crashed interpreter
        data_dir = self._run_dir / "data"
        self._log_file = open(self._log_path, "ab", buffering=0)

        initdb = [
            str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--no-locale", "--no-sync",
        ]  # fmt: skip
        result = subprocess.run(
            initdb, cwd=self._run_dir, env=self._env(), stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT, **self._user_kwargs(),
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {result.returncode}):\n{self.log_tail()}")
        # Trust TCP from 127.0.0.1 and nothing else (initdb's default file also trusts
        # Unix-socket and ::1 connections).
        (data_dir / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")

        # Another worker may take the port between our probe and the bind: try a few.
        for attempt in range(5):
            self.port = _free_port()
            log_offset = self._log_path.stat().st_size
            self._spawn(bin_dir, data_dir)
            try:
                self._wait_ready()
                return
            except RuntimeError:
                exited = self._process.poll() is not None
                in_use = exited and b"already in use" in self._log_path.read_bytes()[log_offset:]
                self._kill()
                if not in_use or attempt == 4:
                    raise

    def _spawn(self, bin_dir: Path, data_dir: Path) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            "logging_collector": "off",
        }
        command = [str(bin_dir / "postgres"), "-D", str(data_dir)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        self._process = subprocess.Popen(
            command, cwd=self._run_dir, env=self._env(), stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True, **self._user_kwargs(),
        )  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited with status {self._process.returncode}:\n{self.log_tail()}")
            try:
                with psycopg.connect(**self._connect_args("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                error = exc
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections within {START_TIMEOUT:.0f} s ({error}):\n{self.log_tail()}")

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then remove the temp dir."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGQUIT)  # immediate shutdown
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- using it ----------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def _connect_args(self, database: str) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "user": SUPERUSER, "dbname": database, "sslmode": "disable"}

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database, empty or a copy of ``template`` (which nobody may be connected to)."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(**self._connect_args("postgres"), autocommit=True) as conn:
            conn.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any connection still open to it."""
        with psycopg.connect(**self._connect_args("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
