"""``mailgate ingest`` while the daemon runs: one fsync'd file, then exit 0.

An MTA's pipe transport starts a process for every message, so this path
pays for nothing it does not need: the standard library only (PyYAML when
the configuration file is not plain), no pydantic, no SQLAlchemy, no
click. It writes the message into the pipe folder the way Maildir does
(``tmp/``, fsync, rename into ``new/``, fsync the folder), so exit 0 is
said only once the message is durable, and wakes the daemon, which
imports the file into the inbound table and processes it like any other
mail (ingest/pipe_import.py).

The daemon holds an exclusive lock on ``.daemon.lock`` in that folder while
it runs. Without a daemon the lock is free and ``mailgate ingest`` takes the
full road instead: store the row and process it inline (cli/intake.py). A
daemon that stops just after the check is harmless: the file stays in
``new/`` and the next daemon imports it at start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mailgate.defaults import MAX_MESSAGE_BYTES, PIPE_FOLDER, config_path, resolve

LOCK_NAME = ".daemon.lock"
WAKE_NAME = ".wake"
# sysexits.h, as in errors.py (not imported: it would bring SQLAlchemy in).
EX_DATAERR = 65
EX_TEMPFAIL = 75


@dataclass(frozen=True)
class PipeSettings:
    folder: Path
    max_message_bytes: int


@dataclass(frozen=True)
class PipeRequest:
    """``mailgate [-c CONFIG] ingest [--sender S] [--recipient R]... [FILE]``."""

    config: str | None
    file: str | None
    sender: str | None
    recipients: tuple[str, ...]


def parse_argv(argv: list[str]) -> PipeRequest | None:
    """The ingest command line, or None for anything else (click handles that)."""
    config: str | None = None
    options: dict[str, str] = {}
    recipients: list[str] = []
    files: list[str] = []
    words = iter(argv)
    seen_command = False
    for word in words:
        name, equals, value = word.partition("=")
        if not seen_command and name in ("-c", "--config"):
            config = value if equals else next(words, None)
            if config is None:
                return None
        elif not seen_command and word == "ingest":
            seen_command = True
        elif seen_command and name in ("--sender", "--recipient"):
            given = value if equals else next(words, None)
            if given is None:
                return None
            if name == "--sender":
                options["sender"] = given
            else:
                recipients.append(given)
        elif seen_command and not word.startswith("-"):
            files.append(word)
        else:
            return None  # --help, an unknown option, another command
    if not seen_command or len(files) > 1:
        return None
    return PipeRequest(config, files[0] if files else None, options.get("sender"), tuple(recipients))


def read_settings(config_file: Path) -> PipeSettings | None:
    """The two keys this path needs, or None when the file needs the full check."""
    try:
        text = config_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    base = config_file.resolve().parent
    quick = _quick_pipe_folder(text)
    if quick is not None:
        return PipeSettings(resolve(base, quick), MAX_MESSAGE_BYTES)
    return _yaml_settings(text, base)


def _quick_pipe_folder(text: str) -> str | None:
    """``pipe_folder`` from the plain shapes of a configuration file, without PyYAML.

    Importing PyYAML costs more CPU than the rest of a pipe delivery, and a
    helpdesk's configuration names the folder, if at all, as a plain
    top-level line. Anything else (a changed size limit, several documents,
    a quoted or flow value we would have to interpret) answers None, and
    PyYAML reads the file. tests/test_pipe_settings.py holds the two readers
    to the same answers.
    """
    if "max_message_bytes" in text or "\n---" in text or text.startswith("---"):
        return None
    found: list[str] = []
    for line in text.splitlines():
        if line.startswith("pipe_folder"):
            key, colon, value = line.partition(":")
            if not colon or key.strip() != "pipe_folder":
                return None
            value = value.split(" #", 1)[0].strip()
            if not value or value[0] in "'\"{[&*!|>%@`#" or ": " in value or value.endswith(":"):
                return None
            if value in ("~", "null", "Null", "NULL"):
                return None
            found.append(value)
    # Named anywhere else (a flow mapping, a quoted key, a comment): ask PyYAML.
    if len(found) > 1 or text.count("pipe_folder") != len(found):
        return None
    return found[0] if found else PIPE_FOLDER


def _yaml_settings(text: str, base: Path) -> PipeSettings | None:
    import yaml

    try:
        document = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None
    if not isinstance(document, dict):
        return None
    folder = document.get("pipe_folder", PIPE_FOLDER)
    listen = document.get("listen") or {}
    limit = listen.get("max_message_bytes", MAX_MESSAGE_BYTES) if isinstance(listen, dict) else None
    if not isinstance(folder, str) or not isinstance(limit, int) or isinstance(limit, bool):
        return None
    return PipeSettings(resolve(base, folder), limit)


def daemon_running(folder: Path) -> bool:
    """Whether a ``mailgate run`` holds the pipe folder (see module docstring)."""
    return lock_held(folder / LOCK_NAME)


def lock_held(path: Path) -> bool:
    """Whether another process holds an flock on ``path`` (it dies with its holder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def drop(folder: Path, raw: bytes, sender: str | None, recipients: tuple[str, ...]) -> str:
    """Write one message durably into ``new/``; return its file name."""
    now = time.time()
    name = f"{time.time_ns()}.{os.getpid()}.{os.urandom(6).hex()}.msg"
    envelope = {"sender": sender, "recipients": list(recipients), "received_at": now}
    tmp = folder / "tmp" / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(json.dumps(envelope).encode() + b"\n")
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.rename(tmp, folder / "new" / name)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(folder / "new")
    _wake(folder)
    return name


def read_dropped(path: Path) -> tuple[dict[str, object], bytes]:
    """A dropped file's envelope and raw message (the inverse of drop())."""
    data = path.read_bytes()
    head, _, raw = data.partition(b"\n")
    envelope = json.loads(head)
    if not isinstance(envelope, dict):
        raise ValueError("envelope line is not an object")
    return envelope, raw


def fast_ingest(argv: list[str]) -> int | None:
    """Run ``ingest`` on the fast path and return its exit code, or None to take the full road."""
    request = parse_argv(argv)
    if request is None:
        return None
    settings = read_settings(config_path(request.config))
    if settings is None or not daemon_running(settings.folder):
        return None
    try:
        raw = Path(request.file).read_bytes() if request.file else sys.stdin.buffer.read()
    except OSError as exc:
        return _fail(f"cannot read {request.file}: {exc.strerror}", EX_TEMPFAIL)
    if not raw.strip():
        return _fail("empty message refused", EX_DATAERR)
    if len(raw) > settings.max_message_bytes:
        return _fail(
            f"message of {len(raw)} bytes is over the limit of {settings.max_message_bytes}", EX_DATAERR
        )
    try:
        name = drop(settings.folder, raw, request.sender, request.recipients)
    except OSError as exc:
        # Full disk, quota, permissions: the MTA keeps the message and retries.
        reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror
        return _fail(f"cannot store the message in {settings.folder}, try again later: {reason}", EX_TEMPFAIL)
    print(f"queued for the running daemon: {name}")
    return 0


def _fail(message: str, code: int) -> int:
    print(f"mailgate: {message}", file=sys.stderr)
    return code


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _wake(folder: Path) -> None:
    # Best effort: the daemon also looks every few seconds, so a lost
    # wake-up only delays the message, it never loses it.
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.sendto(b"w", str(folder / WAKE_NAME))
