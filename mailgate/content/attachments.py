"""Attachment metadata: decoded filenames, content ids, size limits."""

from __future__ import annotations

import hashlib
import re
from email.message import Message

from mailgate.content.headers import decode_header_value, unfold
from mailgate.message import Attachment

_UNSAFE_IN_NAME = re.compile(r"[\x00-\x1f\x7f]")

# Names for parts that carry none, by content type, so an agent sees
# something better than "attachment" (the extensions are what desktop
# mail clients use when saving such parts).
_DEFAULT_NAMES = {
    "text/calendar": "invite.ics",
    "application/pgp-signature": "signature.asc",
    "application/pkcs7-signature": "smime.p7s",
    "application/x-pkcs7-signature": "smime.p7s",
    "application/pkcs7-mime": "smime.p7m",
    "application/x-pkcs7-mime": "smime.p7m",
    "application/ms-tnef": "winmail.dat",
}


def _clean_name(name: str) -> str:
    """A filename without control characters or the sender's folders."""
    name = _UNSAFE_IN_NAME.sub("", name).strip().strip('"').strip()
    # Windows clients sometimes send the full local path ("C:\\Users\\x\\a.doc").
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return name[:255]


def raw_filename(part: Message, defects: list[str], hint: str | None = None) -> str:
    """The decoded filename of a part, or "" when it has none.

    compat32 joins RFC 2231 continuations and charsets (``filename*0*=``) in
    ``get_filename``; many clients instead put RFC 2047 encoded words inside
    the quoted parameter, which RFC 2047 section 5 forbids but everyone reads.
    """
    try:
        name = part.get_filename() or part.get_param("name") or ""
    except Exception:  # parameter parsing has raised on odd quoting
        defects.append("attachment filename unreadable")
        return ""
    if isinstance(name, tuple):
        # An RFC 2231 value with an unknown charset comes back undecoded.
        _charset, _language, value = name
        name = value.encode("latin-1", "replace").decode("utf-8", "replace") if value else ""
    name = decode_header_value(unfold(str(name)), defects, hint)
    return _clean_name(name)


# Stems for unnamed parts by main type, and extensions for common subtypes
# (mimetypes.guess_extension depends on the host's /etc/mime.types).
_STEMS = {"image": "image", "video": "video", "audio": "audio", "text": "document"}
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/webp": ".webp",
    "image/tiff": ".tif",
    "image/svg+xml": ".svg",
    "video/quicktime": ".mov",
    "video/mp4": ".mp4",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "text/html": ".html",
    "text/plain": ".txt",
    "text/csv": ".csv",
    "text/calendar": ".ics",
}
_NAME_CHARS = re.compile(r"^[\w\-. ]{1,200}$")


def default_filename(content_type: str, part: Message, cid: str | None) -> str:
    """A filename for a part that brought none.

    Outlook gives inline images a Content-ID like ``image001.png@01D2...``
    whose local part is the original filename; otherwise the name is made
    from the content type ("image.jpg", "document.html"), as desktop clients
    do when saving such parts.
    """
    if content_type in _DEFAULT_NAMES:
        return _DEFAULT_NAMES[content_type]
    if content_type.startswith("message/"):
        description = part.get("content-description")
        stem = _clean_name(decode_header_value(str(description))) if description else ""
        extension = ".eml" if content_type in ("message/rfc822", "message/global") else ".txt"
        return (stem or content_type.split("/", 1)[1]) + extension
    extension = _EXTENSIONS.get(content_type, "")
    if cid and "@" in cid:
        # Outlook's "image001.png@01D2..." keeps the original filename.
        local = cid.split("@", 1)[0]
        if "." in local and _NAME_CHARS.match(local):
            return _clean_name(local)
    type_stem = _STEMS.get(content_type.split("/", 1)[0])
    if type_stem and extension:
        return type_stem + extension
    return "file"


def unique_filename(name: str, taken: set[str]) -> str:
    """``name``, or ``name`` with a counter before the extension if already taken."""
    if name not in taken:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    for counter in range(1, 10_000):
        candidate = f"{stem}{counter}.{extension}" if dot else f"{stem}{counter}"
        if candidate not in taken:
            return candidate
    return name


def content_id(part: Message) -> str | None:
    """The Content-ID without angle brackets, as ``cid:`` URLs write it (RFC 2392)."""
    value = part.get("content-id")
    if value is None:
        return None
    cid = unfold(str(value)).strip().strip("<>").strip()
    return cid or None


def make_attachment(
    *,
    filename: str,
    content_type: str,
    data: bytes,
    max_bytes: int,
    defects: list[str],
    cid: str | None = None,
    inline: bool = False,
) -> Attachment:
    """An Attachment; above ``max_bytes`` the content is dropped and a defect noted."""
    digest = hashlib.sha256(data).hexdigest()
    content = data
    if len(data) > max_bytes:
        defects.append(f"attachment {filename!r} of {len(data)} bytes exceeds {max_bytes}, content dropped")
        content = b""
    return Attachment(
        filename=filename,
        content_type=content_type,
        size=len(data),
        sha256=digest,
        content=content,
        content_id=cid,
        inline=inline,
    )
