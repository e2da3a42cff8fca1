"""A real, throwaway Dovecot for the IMAP tests.

Each instance lives in its own temporary folder (config, TLS files, users,
Maildirs, logs, sockets), listens on free loopback ports and is stopped and
removed at the end. The configuration comes from
``scripts/dovecot/dovecot.conf.in``, the same template a human uses through
``scripts/dovecot/throwaway.sh``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from imapclient import IMAPClient

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "scripts" / "dovecot" / "dovecot.conf.in"
ENSURE_INSTALLED = REPO / "scripts" / "dovecot" / "ensure-installed.sh"

# Users in each Dovecot's passwd-file; one per test that asks for a mailbox.
USERS = 40

PASSWD_FILE_PASSDB = """passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u @BASE@/users
}"""

# Dovecot asks the token's issuer whether the token is valid and whose it
# is (RFC 7662 introspection), and compares that user with the login name.
OAUTH2_PASSDB = """passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = @BASE@/oauth2.conf.ext
}"""


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """Make a CA and a server certificate signed by it, with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = ["openssl"]
    subprocess.run(
        [*run, "req", "-x509", *ec, "-days", "2", "-subj", "/CN=mailgate test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-keyout", folder / "ca.key", "-out", folder / "ca.crt"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*run, "req", *ec, "-subj", "/CN=localhost",
         "-keyout", folder / "server.key", "-out", folder / "server.csr"],
        check=True, capture_output=True,
    )  # fmt: skip
    (folder / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    subprocess.run(
        [*run, "x509", "-req", "-in", folder / "server.csr", "-days", "2",
         "-CA", folder / "ca.crt", "-CAkey", folder / "ca.key", "-CAcreateserial",
         "-extfile", folder / "server.ext", "-out", folder / "server.crt"],
        check=True, capture_output=True,
    )  # fmt: skip
    return TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")


def ensure_dovecot() -> None:
    """Install Dovecot when missing; a test that needs it must fail, not skip."""
    if shutil.which("dovecot") is None:
        subprocess.run(["sh", str(ENSURE_INSTALLED)], check=True)
    if shutil.which("dovecot") is None:
        raise RuntimeError(f"dovecot is not installed and {ENSURE_INSTALLED} could not install it")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Dovecot:
    """One running Dovecot; ``add_user`` makes passwd-file users on the fly."""

    def __init__(
        self,
        tls: TlsFiles,
        *,
        extra_config: str = "",
        oauth2_introspection_url: str | None = None,
    ) -> None:
        ensure_dovecot()
        # Not under pytest's tmp_path: that is private to root (0700), and
        # Dovecot's login and mail processes run as unprivileged users who
        # must reach their sockets and Maildirs.
        self.base = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))
        self.base.chmod(0o755)
        self.imap_port = free_port()
        self.imaps_port = free_port()
        mail_user = pwd.getpwnam("dovecot")
        self._uid, self._gid = mail_user.pw_uid, mail_user.pw_gid
        shutil.copy(tls.server_cert, self.base / "server.crt")
        shutil.copy(tls.server_key, self.base / "server.key")
        self.mail_root.mkdir()
        os.chown(self.mail_root, self._uid, self._gid)
        # Dovecot looks at a changed passwd-file at most once a second, so
        # users added between two quick logins may go unseen: make a pool
        # of users up front and hand them out.
        users = self.base / "users"
        users.write_text("".join(f"user{n}:{{PLAIN}}pw-user{n}-secret::::::\n" for n in range(1, USERS + 1)))
        users.chmod(0o644)
        self._next_user = 1
        if oauth2_introspection_url is None:
            passdb, mechanisms = PASSWD_FILE_PASSDB, "plain login"
        else:
            passdb, mechanisms = OAUTH2_PASSDB, "xoauth2 oauthbearer"
            (self.base / "oauth2.conf.ext").write_text(
                f"introspection_mode = post\n"
                f"introspection_url = {oauth2_introspection_url}\n"
                "force_introspection = yes\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )
        config = TEMPLATE.read_text()
        for name, value in {
            "@PASSDB@": passdb,
            "@AUTH_MECHANISMS@": mechanisms,
            "@BASE@": str(self.base),
            "@IMAP_PORT@": str(self.imap_port),
            "@IMAPS_PORT@": str(self.imaps_port),
        }.items():
            config = config.replace(name, value)
        self.config = self.base / "dovecot.conf"
        self.config.write_text(config)
        (self.base / "extra.conf").write_text(extra_config)
        self.start()

    @property
    def mail_root(self) -> Path:
        return self.base / "mail"

    # -- process ------------------------------------------------------------

    def start(self) -> None:
        # The master daemonizes and its children inherit our stdout and
        # stderr: with pipes, waiting for it would wait for Dovecot to exit.
        errors = self.base / "startup.err"
        with errors.open("wb") as stderr:
            done = subprocess.run(
                ["dovecot", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {errors.read_text().strip()}\n{self.log_tail()}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.imap_port), timeout=1) as sock,
            ):
                if sock.recv(100).startswith(b"* OK"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"dovecot did not answer on port {self.imap_port}\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the master and every process of this instance, as systemd would.

        Dovecot's master leaves running imap processes behind when it gets
        SIGTERM; a real restart (systemctl restart) ends the whole cgroup, so
        a client really sees its connection go.
        """
        pid_file = self.base / "run" / "master.pid"
        try:
            master = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        pids = [master, *self._instance_pids()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.05)
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _instance_pids(self) -> list[int]:
        # Dovecot titles its processes "<instance_name>/<service>".
        prefix = f"mailgate-{self.imap_port}/".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().startswith(b"dovecot-" + prefix):
                    pids.append(int(entry.name))
        return pids

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.base / "dovecot.log").read_text().splitlines()[-lines:])
        return ""

    # -- users and mail -----------------------------------------------------

    def take_user(self) -> tuple[str, str]:
        """A user nobody has used yet, and its password."""
        if self._next_user > USERS:
            raise RuntimeError(f"all {USERS} test users are taken; raise USERS")
        name = f"user{self._next_user}"
        self._next_user += 1
        return name, f"pw-{name}-secret"

    def client(self, user: str, password: str) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.imap_port, ssl=False, timeout=10)
        try:
            client.login(user, password)
        except Exception as exc:
            client.shutdown()
            raise RuntimeError(f"test login as {user} failed: {exc}\n{self.log_tail()}") from exc
        return client

    def drop_into_maildir(self, user: str, raws: list[bytes]) -> None:
        """Deliver straight into INBOX's new/ (like an LDA), fast for bulk tests."""
        new = self.mail_root / user / "new"
        if not new.is_dir():
            raise RuntimeError(f"{new} does not exist: log the user in once first")
        stamp = int(time.time())
        for number, raw in enumerate(raws):
            name = f"{stamp}.M{number}P{os.getpid()}.mailgate-test"
            tmp = self.mail_root / user / "tmp" / name
            tmp.write_bytes(raw)
            os.chown(tmp, self._uid, self._gid)
            tmp.rename(new / name)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    # A zombie has exited; only its parent's wait() is missing.
    return state != "Z"
