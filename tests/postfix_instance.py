"""A throwaway Postfix on loopback, configured from docs/deployment.md's own text.

The guide marks the configuration it shows with ``<!-- tested: NAME -->``
before a fenced block; :func:`guide_blocks` reads those blocks, so the test
and the guide cannot say different things. What the guide's text cannot be
used as-is for on a shared test machine is changed by :func:`localise`, and
only that:

* paths: ``/etc/postfix``, ``/etc/mailgate``, ``/var/lib/mailgate`` and the
  credentials directory become folders of this instance;
* ports: mailgate's LMTP port 2424 and Postfix's port 25 become free
  loopback ports (Postfix's ``smtp inet`` service listens on
  ``127.0.0.1:PORT``, never on port 25 or a non-loopback address);
* Postfix's commands (``postmap``, ``postfix reload``, ``postqueue``) run
  with ``MAIL_CONFIG`` naming this instance's config directory, Postfix's
  own way to choose an instance, so the guide's commands stay as written.

Everything else the instance needs (its own queue, data and log, chroot off
because the queue directory is not prepared as a chroot, local mailboxes
for the people in the test as aliases to Maildirs, and nothing ever sent
off the machine) is in :meth:`PostfixInstance.base_main_cf`: the test's
world, not the guide's advice.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "deployment.md"
DEBIAN_MASTER_CF = Path("/usr/share/postfix/master.cf.dist")

_BLOCK = re.compile(r"<!-- tested: ([\w-]+) -->\n```[\w-]*\n(.*?)\n```", re.DOTALL)
GUIDE_LMTP_PORT = 2424
GUIDE_POSTFIX_PORT = 25
CREDENTIALS = "/run/credentials/mailgate.service/reply-key"


def guide_blocks(path: Path = GUIDE) -> dict[str, str]:
    """The fenced blocks marked ``<!-- tested: NAME -->`` in the guide, by name."""
    blocks: dict[str, str] = {}
    for match in _BLOCK.finditer(path.read_text(encoding="utf-8")):
        name, text = match.group(1), match.group(2)
        assert name not in blocks, f"{path}: two blocks marked tested: {name}"
        blocks[name] = text + "\n"
    return blocks


@dataclass(frozen=True)
class Places:
    """Where this instance keeps what the guide puts in system folders."""

    root: Path
    lmtp_port: int
    smtp_port: int

    @property
    def postfix_config(self) -> Path:
        return self.root / "etc-postfix"

    @property
    def mailgate_config(self) -> Path:
        return self.root / "etc-mailgate"

    @property
    def state(self) -> Path:
        return self.root / "var-lib-mailgate"

    @property
    def mail(self) -> Path:
        return self.root / "mail"


def localise(text: str, places: Places) -> str:
    """The guide's text with this instance's paths and loopback ports (see the module doc)."""
    replacements = [
        (CREDENTIALS, str(places.mailgate_config / "reply.key")),
        ("/etc/postfix", str(places.postfix_config)),
        ("/etc/mailgate", str(places.mailgate_config)),
        ("/var/lib/mailgate", str(places.state)),
        (f"127.0.0.1:{GUIDE_LMTP_PORT}", f"127.0.0.1:{places.lmtp_port}"),
        (f"port: {GUIDE_LMTP_PORT}}}", f"port: {places.lmtp_port}}}"),
        (f"port: {GUIDE_POSTFIX_PORT}}}", f"port: {places.smtp_port}}}"),
    ]
    for old, new in replacements:
        text = text.replace(old, new)
    return text


@dataclass
class PostfixInstance:
    """``MAIL_CONFIG=DIR postfix start``: its own config, queue, data and log folders."""

    places: Places
    mailboxes: tuple[str, ...]
    started: bool = False

    @classmethod
    def create(cls, lmtp_port: int, smtp_port: int, mailboxes: tuple[str, ...]) -> PostfixInstance:
        # Not pytest's tmp_path: that is 0700 under root, and Postfix's daemons
        # run as the postfix user (and local delivery as nobody).
        root = Path(tempfile.mkdtemp(prefix="mailgate-postfix-"))
        root.chmod(0o755)
        return cls(Places(root, lmtp_port, smtp_port), mailboxes)

    @property
    def config_dir(self) -> Path:
        return self.places.postfix_config

    @property
    def maillog(self) -> Path:
        return self.places.root / "maillog"

    def base_main_cf(self) -> str:
        """The test's world: this instance's folders, loopback only, local mailboxes, nothing sent out."""
        root = self.places.root
        return "\n".join(
            [
                "# The throwaway test instance (tests/postfix_instance.py), not the guide's advice.",
                "compatibility_level = 3.6",
                f"queue_directory = {root}/spool",
                f"data_directory = {root}/data",
                f"maillog_file = {root}/maillog",
                f"maillog_file_prefixes = {root}",
                "inet_interfaces = 127.0.0.1",
                "inet_protocols = ipv4",
                "biff = no",
                "append_dot_mydomain = no",
                f"alias_maps = hash:{self.config_dir}/aliases",
                f"alias_database = hash:{self.config_dir}/aliases",
                # Local mailboxes for the people in the test; anything else
                # (another domain) is refused here instead of sent anywhere.
                "default_transport = error:the test instance sends nothing off this machine",
                "relay_transport = error:the test instance sends nothing off this machine",
                "",
            ]
        )

    def write(self, blocks: dict[str, str]) -> None:
        """main.cf, master.cf, aliases and the transport map, from the guide and the test's world."""
        places = self.places
        for folder in (places.postfix_config, places.mailgate_config, places.state):
            folder.mkdir(parents=True)
        # `postfix start` creates what is inside these (as postfix-files says), not them.
        (places.root / "spool").mkdir(mode=0o755)
        (places.root / "data").mkdir(mode=0o700)
        shutil.chown(places.root / "data", "postfix", "postfix")
        places.mail.mkdir(mode=0o777)
        places.mail.chmod(0o1777)  # local(8) writes the alias Maildirs as nobody
        main_cf = (
            self.base_main_cf()
            + "\n# docs/deployment.md, tested: postfix-debian-main\n"
            + localise(blocks["postfix-debian-main"], places)
            + "\n# docs/deployment.md, tested: postfix-main\n"
            + localise(blocks["postfix-main"], places)
        )
        (places.postfix_config / "main.cf").write_text(main_cf)
        master_cf = DEBIAN_MASTER_CF.read_text()
        smtpd = re.compile(r"^smtp(\s+inet\s)", re.MULTILINE)
        assert smtpd.search(master_cf), f"no smtp inet service in {DEBIAN_MASTER_CF}"
        master_cf = smtpd.sub(rf"127.0.0.1:{places.smtp_port}\1", master_cf, count=1)
        (places.postfix_config / "master.cf").write_text(master_cf)
        self.postconf("-F", "*/*/chroot = n")
        # Never port 25, never a non-loopback address: every inet service is 127.0.0.1:PORT.
        services = [line.split() for line in self.postconf("-M").splitlines() if line.strip()]
        inet = [fields[0] for fields in services if len(fields) > 1 and fields[1] == "inet"]
        assert inet == [f"127.0.0.1:{places.smtp_port}"], inet
        aliases = "".join(f"{name}: {places.mail / name}/\n" for name in self.mailboxes)
        (places.postfix_config / "aliases").write_text(aliases)
        self.run("postalias", str(places.postfix_config / "aliases"))
        (places.postfix_config / "mailgate_transport").write_text(
            localise(blocks["postfix-transport"], places)
        )

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self._env())
        assert result.returncode == 0, (
            f"{shlex.join(argv)}: exit {result.returncode}\n{result.stdout}{result.stderr}"
            f"Postfix log tail:\n{self.log()[-3000:]}"
        )
        return result

    def _env(self) -> dict[str, str]:
        return {**os.environ, "LC_ALL": "C", "MAIL_CONFIG": str(self.config_dir)}

    def postconf(self, *args: str) -> str:
        return self.run("postconf", *args).stdout

    def start(self) -> None:
        self.run("postfix", "start")
        self.started = True

    def shell(self, script: str) -> None:
        """A ``sh`` block of the guide, localised, as root."""
        self.run("sh", "-ec", localise(script, self.places))

    def running(self) -> bool:
        """``postfix status``: exit 0 while this instance's master process runs."""
        return (
            0
            == subprocess.run(
                ["postfix", "status"], capture_output=True, timeout=60, check=False, env=self._env()
            ).returncode
        )

    def stop(self) -> None:
        """Stop this instance (and only it: ``postfix stop`` with its MAIL_CONFIG)."""
        if not self.started:
            return
        subprocess.run(["postfix", "stop"], capture_output=True, timeout=60, check=False, env=self._env())
        deadline = time.monotonic() + 20
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.running():  # `postfix stop` did not finish: end its master process, by its pid file
            pid = int((self.places.root / "spool" / "pid" / "master.pid").read_text().split()[0])
            if Path(f"/proc/{pid}/comm").read_text().strip() == "master":
                os.kill(pid, 9)
        self.started = False

    def remove(self) -> None:
        shutil.rmtree(self.places.root, ignore_errors=True)

    def queue(self) -> list[dict[str, Any]]:
        """``postqueue -j``: the messages Postfix holds, one dict each."""
        out = self.run("postqueue", "-j").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def flush(self) -> None:
        self.run("postqueue", "-f")

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def mailbox(self, name: str) -> list[EmailMessage]:
        """Every message delivered to this person's Maildir, oldest first."""
        new = self.places.mail / name / "new"
        if not new.is_dir():
            return []
        paths = sorted(new.iterdir(), key=lambda p: (p.stat().st_mtime, p.name))
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in paths]
