"""A private, throwaway PostgreSQL server for the cluster tests and benches.

The system PostgreSQL on 127.0.0.1:5432 is shared by the rest of the suite
and must never be restarted by a test; the cluster tests restart and kill
their database, so they get a server of their own: ``initdb`` as the
``postgres`` OS user (PostgreSQL refuses to run as root) into a temporary
folder, a free TCP port on 127.0.0.1 with trust authentication, its own
unix socket folder, and ``fsync`` on, so that a ``kill -9`` of the server
loses only what PostgreSQL itself would lose.

    with PgServer() as server:
        url = server.create_database("mailgate")   # postgresql+psycopg://...
        server.restart("fast")
        server.kill9(); server.start()

The binaries come from /usr/lib/postgresql/<version>/bin (Debian's layout;
``scripts/ensure-postgres.sh`` installs them when missing).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

OS_USER = "postgres"

# Enough for 3 instances x (daemon + 2 workers) x their pools, the test's own
# connections and the CLI; the default 100 is close to that.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "on",
    "synchronous_commit": "on",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] '",
}


def find_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl."""
    found = []
    for candidate in glob.glob("/usr/lib/postgresql/*/bin"):
        folder = Path(candidate)
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            with contextlib.suppress(ValueError):
                found.append((float(folder.parent.name), folder))
    if not found:
        raise RuntimeError(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin "
            "(initdb, pg_ctl); `sh scripts/ensure-postgres.sh` installs them"
        )
    return max(found)[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgServer:
    """One private PostgreSQL cluster: initdb'd on construction, started by ``start``."""

    def __init__(self, *, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        self.bin = find_bin_dir()
        self.user = pwd.getpwnam(OS_USER)
        self.base = Path(tempfile.mkdtemp(prefix="mailgate-pg-"))
        # The postgres user must reach its data and socket folders.
        self.base.chmod(0o755)
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"
        self.log_file = self.base / "server.log"
        for folder in (self.data, self.sockets):
            folder.mkdir(mode=0o700)
            os.chown(folder, self.user.pw_uid, self.user.pw_gid)
        self.log_file.touch()
        os.chown(self.log_file, self.user.pw_uid, self.user.pw_gid)
        self.port = port or free_port()
        self.restarts = 0
        self.kills = 0
        self._initdb({**SETTINGS, **(settings or {})})

    # -- addresses -----------------------------------------------------------

    @property
    def admin_url(self) -> str:
        """libpq URL of the ``postgres`` database (for psycopg)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of one database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    # -- lifecycle -----------------------------------------------------------

    def _checked(self, *command: str | Path) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["runuser", "-u", OS_USER, "--", *(str(part) for part in command)],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.base,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{Path(str(command[0])).name} failed ({done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}\n{self.log_tail()}"
            )
        return done

    def _initdb(self, settings: dict[str, str]) -> None:
        # --no-sync: initdb's own final flush only; the server runs with fsync on.
        self._checked(
            self.bin / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale", "C", "--no-sync",
        )  # fmt: skip
        lines = [f"{name} = {value}" for name, value in settings.items()]
        lines += [f"port = {self.port}", f"unix_socket_directories = '{self.sockets}'"]
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            conf.write("\n".join(lines) + "\n")

    def start(self, timeout: float = 60.0) -> PgServer:
        self._checked(
            self.bin / "pg_ctl", "-D", self.data, "-l", self.log_file,
            "-w", "-t", str(int(timeout)), "start",
        )  # fmt: skip
        self.wait_ready(timeout)
        return self

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        if self.pid() is None:
            return
        self._checked(self.bin / "pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: Literal["fast", "immediate"] = "fast") -> float:
        """Stop (fast: sessions ended cleanly; immediate: no shutdown checkpoint,
        crash recovery at start) and start again; the seconds it was away."""
        began = time.monotonic()
        self.stop(mode)
        self.start()
        self.restarts += 1
        return time.monotonic() - began

    def kill9(self) -> None:
        """SIGKILL the postmaster and every backend, as a crashed host would leave it."""
        master = self.pid()
        if master is None:
            return
        family = [master, *self._children(master)]
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # PostgreSQL refuses to start while the pid in postmaster.pid exists,
        # and a zombie does until its parent (pg_ctl's, often init) reaps it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in family):
            time.sleep(0.02)
        if Path(f"/proc/{master}").exists() and not _alive(master):
            (self.data / "postmaster.pid").unlink(missing_ok=True)
        self.kills += 1

    def remove(self) -> None:
        """Stop the server (immediately) and delete its folder."""
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        if self.pid() is not None:
            self.kill9()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    # -- state ---------------------------------------------------------------

    def pid(self) -> int | None:
        """The postmaster's pid while it runs (from postmaster.pid), else None."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def ready(self) -> bool:
        done = subprocess.run(
            [self.bin / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
            check=False,
        )
        return done.returncode == 0

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"private PostgreSQL on port {self.port} not ready\n{self.log_tail()}")

    def _children(self, parent: int) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text().rpartition(")")[2].split()
                    if int(stat[1]) == parent:
                        found.append(int(entry.name))
        return found

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- databases -----------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create ``name`` (dropping an older one); its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"
